//! Small rule lists matched eight rules at a time.
//!
//! Most rule lists are short (a customer's ten rules, an interface's few
//! provider rules) and use many different prefix lengths, so a tuple space
//! would probe a hash table per length. Here each block of eight rules is
//! stored field by field (structure of arrays, three cache lines), every
//! rule of a block is tested at once without a branch — the compiler turns
//! the loop over the eight lanes into vector compares — and the lowest set
//! bit of the resulting mask is the first matching rule. Blocks are in rank
//! order, so the first block with a match decides. A list of up to
//! [`MAX_RULES`] rules takes at most four blocks; longer lists use the
//! tuple space ([`super::tss`]).

use super::tss::Hit;
use super::{Action, PacketFields, Rule};

/// Rules per block.
pub(super) const LANES: usize = 8;

/// The longest list matched by lanes.
pub(super) const MAX_RULES: usize = 4 * LANES;

/// Rule ids must leave the two top bits of a lane's tag free.
pub(super) const MAX_ID: u32 = (1 << 30) - 1;

const TAG_DENY: u32 = 1 << 31;
const TAG_NEEDS_PORTS: u32 = 1 << 30;
const TAG_ID: u32 = MAX_ID;

/// Eight rules, one field per array, every field 32 bits wide so that the
/// loop over the lanes compiles to plain vector compares (mixed widths
/// defeat the vectorizer): 192 bytes, three cache lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
pub(super) struct Block {
    src: [u32; LANES],
    src_mask: [u32; LANES],
    /// `value | mask << 16` over the packet's `protocol << 8 | tcp_flags`.
    proto_flags: [u32; LANES],
    /// `lo | (hi - lo) << 16`: a port is in the range when `port - lo`
    /// (mod 2^16) is at most `hi - lo`.
    dst_ports: [u32; LANES],
    src_ports: [u32; LANES],
    /// Rule id | [`TAG_DENY`] | [`TAG_NEEDS_PORTS`].
    tag: [u32; LANES],
}

const _: () = assert!(std::mem::size_of::<Block>() == 192);

impl Block {
    /// A block whose lanes match nothing: `src & 0 == 1` never holds.
    const EMPTY: Block = Block {
        src: [1; LANES],
        src_mask: [0; LANES],
        proto_flags: [0; LANES],
        dst_ports: [0; LANES],
        src_ports: [0; LANES],
        tag: [0; LANES],
    };

    fn set(&mut self, lane: usize, r: &Rule) {
        let (mut proto_mask, mut proto) = match r.protocol.number() {
            Some(n) => (0xffu32, n as u32),
            None => (0, 0),
        };
        let (flags_mask, flags) = match r.tcp_flags {
            // A flag test narrows the protocol to TCP (validated).
            Some(f) => {
                proto_mask = 0xff;
                proto = super::Protocol::TCP as u32;
                (f.mask as u32, f.value as u32)
            }
            None => (0, 0),
        };
        let needs_ports = r.tcp_flags.is_some()
            || r.dst_ports != super::PortRange::ANY
            || r.src_ports != super::PortRange::ANY;
        let range = |p: super::PortRange| p.lo as u32 | ((p.hi - p.lo) as u32) << 16;
        self.src[lane] = r.src.addr & r.src.mask();
        self.src_mask[lane] = r.src.mask();
        self.proto_flags[lane] = (proto << 8 | flags) | (proto_mask << 8 | flags_mask) << 16;
        self.dst_ports[lane] = range(r.dst_ports);
        self.src_ports[lane] = range(r.src_ports);
        self.tag[lane] = (r.id & TAG_ID)
            | if r.action == Action::Deny {
                TAG_DENY
            } else {
                0
            }
            | if needs_ports { TAG_NEEDS_PORTS } else { 0 };
    }

    /// Bit `i` set when lane `i` matches `p`. Without a transport header a
    /// packet's ports and flags are 0 and it matches only rules that need
    /// neither.
    #[inline(always)]
    fn matching(&self, p: &PacketFields) -> u32 {
        let no_ports = if p.has_ports { 0 } else { TAG_NEEDS_PORTS };
        let pf = (p.protocol as u32) << 8 | p.tcp_flags as u32;
        let (dport, sport) = (p.dst_port as u32, p.src_port as u32);
        // Two halves of four lanes: each half is one 128-bit vector of
        // compares, which the baseline x86-64 target has.
        let mut m = 0;
        for h in 0..LANES / 4 {
            let mut ok = [0u32; 4];
            for (j, o) in ok.iter_mut().enumerate() {
                let i = h * 4 + j;
                let in_range = |port: u32, r: u32| (port.wrapping_sub(r) & 0xffff) <= r >> 16;
                let hit = (p.src & self.src_mask[i] == self.src[i])
                    & (pf & (self.proto_flags[i] >> 16) == self.proto_flags[i] & 0xffff)
                    & in_range(dport, self.dst_ports[i])
                    & in_range(sport, self.src_ports[i])
                    & (self.tag[i] & no_ports == 0);
                *o = (hit as u32) << i;
            }
            m |= ok[0] | ok[1] | ok[2] | ok[3];
        }
        m
    }

    #[inline(always)]
    fn hit(&self, lane: usize) -> Hit {
        let t = self.tag[lane];
        Hit {
            id: t & TAG_ID,
            action: if t & TAG_DENY != 0 {
                Action::Deny
            } else {
                Action::Allow
            },
        }
    }
}

/// Compiles rules given in rank order (validated, at most [`MAX_RULES`],
/// ids at most [`MAX_ID`]) into blocks appended to `out`; returns how many.
pub(super) fn compile<'a>(rules: impl Iterator<Item = &'a Rule>, out: &mut Vec<Block>) -> usize {
    let first = out.len();
    for (i, r) in rules.enumerate() {
        if i % LANES == 0 {
            out.push(Block::EMPTY);
        }
        let b = out.last_mut().expect("pushed above");
        b.set(i % LANES, r);
    }
    out.len() - first
}

/// Packs the first `n` lanes of each list of blocks, in order, into new
/// blocks appended to `out` (a list of rules already compiled, put after
/// another without recompiling either); returns how many.
pub(super) fn concat(lists: &[(&[Block], usize)], out: &mut Vec<Block>) -> usize {
    let first = out.len();
    let mut at = 0;
    for &(blocks, n) in lists {
        for k in 0..n {
            let (b, lane) = (&blocks[k / LANES], k % LANES);
            if at % LANES == 0 {
                out.push(Block::EMPTY);
            }
            let o = out.last_mut().expect("pushed above");
            let j = at % LANES;
            o.src[j] = b.src[lane];
            o.src_mask[j] = b.src_mask[lane];
            o.proto_flags[j] = b.proto_flags[lane];
            o.dst_ports[j] = b.dst_ports[lane];
            o.src_ports[j] = b.src_ports[lane];
            o.tag[j] = b.tag[lane];
            at += 1;
        }
    }
    out.len() - first
}

/// The first matching rule of the blocks of one list.
#[inline(always)]
pub(super) fn find(blocks: &[Block], p: &PacketFields) -> Option<Hit> {
    for b in blocks {
        let m = b.matching(p);
        if m != 0 {
            return Some(b.hit(m.trailing_zeros() as usize));
        }
    }
    None
}

/// Starts loading `blocks` (up to the first two) into the cache.
#[inline(always)]
pub(super) fn prefetch(blocks: &[Block]) {
    use crate::datapath::dpdk::prefetch;
    for b in blocks.iter().take(2) {
        // The first field of each of the block's three lines.
        prefetch(&b.src);
        prefetch(&b.dst_ports);
        prefetch(&b.tag);
    }
}
