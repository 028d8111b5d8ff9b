//! The compiled matcher of one ordered rule list (see the design note in
//! the parent module).
//!
//! Two levels:
//!
//! 1. **Source prefix.** Rules are grouped by their exact source prefix
//!    (address and length). One hash table maps `mask << 32 | prefix` to
//!    the group; a lookup probes it once per distinct prefix length of the
//!    list, in order of the best rank each length holds.
//! 2. **The group.** The rules of one prefix, by rank, with the rules an
//!    earlier rule of the group covers dropped. A short group (or one whose
//!    shapes are too varied to pay off) is scanned linearly over 24-byte
//!    records that carry their verdict; a long one gets a nested tuple space over protocol, ports
//!    and TCP flags (`PortMatcher`), where port ranges are expanded into
//!    prefix-aligned blocks so every probe is one exact hash find.
//!
//! Ranks are global across the list: rank = position in (provider rules by
//! priority, customer rules by priority); the lowest matching rank wins.

use hashbrown::{HashMap, HashTable};

use super::{Action, PacketFields, PortRange, Protocol, Rule, TcpFlagsMatch};

/// The most prefix-aligned blocks a 16-bit port range expands to (2·16 − 2,
/// reached by `1..=65534`).
pub(super) const MAX_PORT_BLOCKS: usize = 30;

/// The most entries one rule expands to in a nested group: both port
/// ranges at their worst.
pub(super) const MAX_ENTRIES_PER_RULE: usize = MAX_PORT_BLOCKS * MAX_PORT_BLOCKS;

/// Groups up to this size are always scanned linearly.
pub(super) const LINEAR_ALWAYS: usize = 4;

/// A larger group is nested when its tuple count times this is below its
/// rule count: one hash probe costs about as much as checking this many
/// records.
pub(super) const PROBE_COST_IN_RECORDS: usize = 4;

/// Up to this many distinct prefixes, a compile finds a rule's group by a
/// scan of the groups so far; past it, by a hash map.
const SMALL_GROUP_SCAN: usize = 16;

/// How groups are compiled: [`GroupPolicy::Auto`] in production; the
/// tests force each kind so both are checked against the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GroupPolicy {
    Auto,
    #[cfg_attr(not(test), allow(dead_code))]
    Linear,
    #[cfg_attr(not(test), allow(dead_code))]
    Nested,
}

const NONE: u32 = u32::MAX;

/// What a lookup returns: the matching rule's id and action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hit {
    pub id: u32,
    pub action: Action,
}

/// 64×64→128-bit multiply, folded: the mixing step of foldhash/wyhash.
#[inline(always)]
pub(super) fn fold(a: u64, b: u64) -> u64 {
    let m = (a as u128) * (b as u128);
    (m as u64) ^ ((m >> 64) as u64)
}

/// A per-process random 64-bit seed (the keys come from configuration;
/// the seed keeps anyone writing rules from choosing colliding ones).
pub(super) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5eed_ac10);
    h.finish()
}

/// Splits an inclusive port range into the fewest prefix-aligned blocks,
/// each `(first port, prefix length)`; `0..=65535` is one block of length
/// 0. At most [`MAX_PORT_BLOCKS`].
pub(super) fn port_blocks(r: PortRange) -> Vec<(u16, u8)> {
    let mut out = Vec::new();
    let (mut lo, hi) = (r.lo as u32, r.hi as u32);
    while lo <= hi {
        // The largest aligned block starting at lo that ends at or before hi.
        let mut size: u32 = if lo == 0 {
            1 << 16
        } else {
            lo & lo.wrapping_neg()
        };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        out.push((lo as u16, 16 - size.trailing_zeros() as u8));
        lo += size;
    }
    debug_assert!(out.len() <= MAX_PORT_BLOCKS);
    out
}

/// The non-source conditions of a rule, normalized: a TCP flag test
/// narrows the protocol to TCP, and a port range or flag test needs a
/// transport header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cond {
    proto_mask: u8,
    proto: u8,
    flags_mask: u8,
    flags: u8,
    needs_ports: bool,
    dst: PortRange,
    src: PortRange,
}

impl Cond {
    fn of(r: &Rule) -> Cond {
        let (mut proto_mask, mut proto) = match r.protocol.number() {
            Some(n) => (0xff, n),
            None => (0, 0),
        };
        let (flags_mask, flags) = match r.tcp_flags {
            Some(TcpFlagsMatch { mask, value }) => {
                proto_mask = 0xff;
                proto = Protocol::TCP;
                (mask, value)
            }
            None => (0, 0),
        };
        Cond {
            proto_mask,
            proto,
            flags_mask,
            flags,
            needs_ports: r.tcp_flags.is_some()
                || r.dst_ports != PortRange::ANY
                || r.src_ports != PortRange::ANY,
            dst: r.dst_ports,
            src: r.src_ports,
        }
    }

    /// Does every packet that matches `b` also match `self`? (Then `b`,
    /// ranked after `self` in the same group, can never win.)
    fn covers(&self, b: &Cond) -> bool {
        let within =
            |outer: PortRange, inner: PortRange| outer.lo <= inner.lo && inner.hi <= outer.hi;
        self.proto_mask & !b.proto_mask == 0
            && b.proto & self.proto_mask == self.proto
            && self.flags_mask & !b.flags_mask == 0
            && b.flags & self.flags_mask == self.flags
            && (!self.needs_ports || b.needs_ports)
            && within(self.dst, b.dst)
            && within(self.src, b.src)
    }
}

/// One rule of a linearly scanned group: 24 bytes, the verdict inline so
/// a match costs no further load.
#[derive(Debug, Clone, Copy)]
struct Rec {
    rank: u32,
    id: u32,
    dst_lo: u16,
    dst_hi: u16,
    src_lo: u16,
    src_hi: u16,
    proto_mask: u8,
    proto: u8,
    flags_mask: u8,
    flags: u8,
    /// [`REC_NEEDS_PORTS`] | [`REC_DENY`].
    bits: u8,
}

const _: () = assert!(std::mem::size_of::<Rec>() == 24);

const REC_NEEDS_PORTS: u8 = 1;
const REC_DENY: u8 = 2;

impl Rec {
    fn new(rank: u32, hit: Hit, c: &Cond) -> Rec {
        Rec {
            rank,
            id: hit.id,
            dst_lo: c.dst.lo,
            dst_hi: c.dst.hi,
            src_lo: c.src.lo,
            src_hi: c.src.hi,
            proto_mask: c.proto_mask,
            proto: c.proto,
            flags_mask: c.flags_mask,
            flags: c.flags,
            bits: if c.needs_ports { REC_NEEDS_PORTS } else { 0 }
                | if hit.action == Action::Deny {
                    REC_DENY
                } else {
                    0
                },
        }
    }

    #[inline(always)]
    fn hit(&self) -> Hit {
        Hit {
            id: self.id,
            action: if self.bits & REC_DENY != 0 {
                Action::Deny
            } else {
                Action::Allow
            },
        }
    }

    /// Everything but the source, which the group's key already matched.
    /// Without a transport header a packet's ports are 0; a rule that
    /// looks at ports or flags needs the header, so they are not read.
    #[inline(always)]
    fn matches(&self, p: &PacketFields) -> bool {
        (p.protocol & self.proto_mask == self.proto)
            & (p.tcp_flags & self.flags_mask == self.flags)
            & (p.has_ports | (self.bits & REC_NEEDS_PORTS == 0))
            & (self.dst_lo <= p.dst_port)
            & (p.dst_port <= self.dst_hi)
            & (self.src_lo <= p.src_port)
            & (p.src_port <= self.src_hi)
    }
}

/// One distinct source prefix length of the list, as its mask (the mask
/// is also the high half of the group key, so lengths never collide).
#[derive(Debug, Clone, Copy, Default)]
struct Len {
    mask: u32,
    /// The best rank of any group at this length.
    best: u32,
}

/// Lengths kept inline: most sets have hosts, /24s, a /16 and /0.
const INLINE_LENGTHS: usize = 4;

/// The prefix lengths of a set, sorted by best rank; inline when few, so
/// they share the set header's cache line.
#[derive(Debug, Clone)]
enum Lengths {
    Inline(u8, [Len; INLINE_LENGTHS]),
    Heap(Box<[Len]>),
}

impl Lengths {
    fn new(v: Vec<Len>) -> Lengths {
        if v.len() <= INLINE_LENGTHS {
            let mut a = [Len::default(); INLINE_LENGTHS];
            a[..v.len()].copy_from_slice(&v);
            Lengths::Inline(v.len() as u8, a)
        } else {
            Lengths::Heap(v.into_boxed_slice())
        }
    }

    #[inline(always)]
    fn as_slice(&self) -> &[Len] {
        match self {
            Lengths::Inline(n, a) => &a[..*n as usize],
            Lengths::Heap(b) => b,
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Lengths::Inline(..) => 0,
            Lengths::Heap(b) => std::mem::size_of_val(&**b),
        }
    }
}

/// A group in the source-prefix table: `key = mask << 32 | prefix`. (Its
/// best rank is that of its first record or first tuple, which the scan
/// checks first.)
#[derive(Debug, Clone, Copy)]
struct GroupEntry {
    key: u64,
    /// Linear: records `start .. start + count` of `recs`. Nested:
    /// `nested[start]`, with `count == NESTED`.
    start: u32,
    count: u32,
}

const _: () = assert!(std::mem::size_of::<GroupEntry>() == 16);

const NESTED: u32 = u32::MAX;

#[inline(always)]
fn src_key(mask: u32, prefix: u32) -> u64 {
    ((mask as u64) << 32) | prefix as u64
}

/// A compiled, immutable rule list: the lowest-rank matching rule wins.
/// `repr(C)`: the fields a lookup reads first come first.
#[derive(Debug, Clone)]
#[repr(C)]
pub(super) struct Matcher {
    seed: u64,
    groups: HashTable<GroupEntry>,
    /// Sorted by `best`, ascending.
    lengths: Lengths,
    recs: Box<[Rec]>,
    nested: Box<[PortMatcher]>,
}

/// A rule of a group at compile time: rank, conditions, verdict.
type Member = (u32, Cond, Hit);

/// The shape of a compiled rule set, for statistics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Distinct source prefix lengths: the first-level hash probes.
    pub lengths: usize,
    /// Distinct source prefixes (groups).
    pub groups: usize,
    /// Groups matched by a nested tuple space rather than a linear scan.
    pub nested_groups: usize,
    /// Rules kept after dropping those an earlier rule of the group covers.
    pub kept: usize,
    /// Hash entries of the nested groups (after range expansion).
    pub nested_entries: usize,
    /// Tuples of the nested groups, summed.
    pub nested_tuples: usize,
    /// The most hash probes one lookup can make.
    pub max_probes: usize,
    /// Blocks of eight rules, when the set is matched by lanes instead (all
    /// the other figures are then 0 but `kept`).
    pub lane_blocks: usize,
}

const GROUP_MUL: u64 = 0x9e37_79b9_7f4a_7c15;

impl Matcher {
    /// Compiles rules given in rank order (index = rank); they are already
    /// validated.
    pub(super) fn new<'a>(rules: impl Iterator<Item = &'a Rule>, policy: GroupPolicy) -> Matcher {
        let seed = random_seed();
        // Groups in order of first appearance (so by best rank). The
        // members of all groups live in one vector, sorted by group below,
        // so a set costs a handful of allocations, not one per prefix
        // (allocation was a third of compiling 100,000 small sets).
        let mut groups: Vec<(u64, u32)> = Vec::new();
        let mut group_of: Option<HashMap<u64, u32>> = None;
        let mut tagged: Vec<(u32, Member)> = Vec::with_capacity(rules.size_hint().0);
        for (rank, r) in rules.enumerate() {
            let key = src_key(r.src.mask(), r.src.addr);
            // Small sets (the common case) search their few groups in place.
            let g = match &mut group_of {
                None => match groups.iter().position(|&(k, _)| k == key) {
                    Some(g) => g as u32,
                    None => {
                        groups.push((key, r.src.mask()));
                        if groups.len() > SMALL_GROUP_SCAN {
                            group_of = Some(
                                groups
                                    .iter()
                                    .enumerate()
                                    .map(|(g, &(k, _))| (k, g as u32))
                                    .collect(),
                            );
                        }
                        groups.len() as u32 - 1
                    }
                },
                Some(map) => *map.entry(key).or_insert_with(|| {
                    groups.push((key, r.src.mask()));
                    groups.len() as u32 - 1
                }),
            };
            let hit = Hit {
                id: r.id,
                action: r.action,
            };
            tagged.push((g, (rank as u32, Cond::of(r), hit)));
        }
        // Stable: each group's members stay in rank order.
        tagged.sort_by_key(|&(g, _)| g);
        let mut members: Vec<Member> = Vec::with_capacity(tagged.len());
        let mut spans: Vec<(usize, usize)> = Vec::with_capacity(groups.len());
        for chunk in tagged.chunk_by(|a, b| a.0 == b.0) {
            let start = members.len();
            for &(_, (rank, c, hit)) in chunk {
                // Drop a rule an earlier one covers (it could never win). The
                // check is bounded so compiling stays linear on huge groups.
                if !members[start..]
                    .iter()
                    .take(64)
                    .any(|(_, a, _)| a.covers(&c))
                {
                    members.push((rank, c, hit));
                }
            }
            spans.push((start, members.len()));
        }

        let mut recs = Vec::with_capacity(members.len());
        let mut nested = Vec::new();
        let mut table = HashTable::with_capacity(groups.len());
        let mut lengths: Vec<Len> = Vec::with_capacity(INLINE_LENGTHS);
        for (&(key, mask), &(a, b)) in groups.iter().zip(&spans) {
            let members = &members[a..b];
            let best = members[0].0;
            let count = members.len();
            let port_matcher = match policy {
                GroupPolicy::Linear => None,
                GroupPolicy::Nested => Some(PortMatcher::new(members, seed)),
                GroupPolicy::Auto if count <= LINEAR_ALWAYS => None,
                GroupPolicy::Auto => Some(PortMatcher::new(members, seed))
                    .filter(|m| m.tuples.len() * PROBE_COST_IN_RECORDS < count),
            };
            let (start, count) = match port_matcher {
                Some(m) => {
                    nested.push(m);
                    (nested.len() as u32 - 1, NESTED)
                }
                None => {
                    let start = recs.len() as u32;
                    recs.extend(
                        members
                            .iter()
                            .map(|(rank, c, hit)| Rec::new(*rank, *hit, c)),
                    );
                    (start, count as u32)
                }
            };
            let e = GroupEntry { key, start, count };
            table.insert_unique(fold(key ^ seed, GROUP_MUL), e, |e: &GroupEntry| {
                fold(e.key ^ seed, GROUP_MUL)
            });
            match lengths.iter_mut().find(|l| l.mask == mask) {
                Some(l) => l.best = l.best.min(best),
                None => lengths.push(Len { mask, best }),
            }
        }
        lengths.sort_by_key(|l| (l.best, l.mask));

        Matcher {
            seed,
            groups: table,
            lengths: Lengths::new(lengths),
            recs: recs.into_boxed_slice(),
            nested: nested.into_boxed_slice(),
        }
    }

    /// The best matching rule, or None.
    #[inline]
    pub(super) fn find(&self, p: &PacketFields) -> Option<Hit> {
        let mut best = NONE;
        let mut hit = None;
        for l in self.lengths.as_slice() {
            // Lengths are sorted by the best rank they hold: none of the
            // rest can beat what we have.
            if l.best >= best {
                break;
            }
            let Some(g) = self.group(l, p) else {
                continue;
            };
            if g.count == NESTED {
                if let Some(h) = self.nested[g.start as usize].find(p, &mut best) {
                    hit = Some(h);
                }
            } else {
                let recs = &self.recs[g.start as usize..(g.start + g.count) as usize];
                for r in recs {
                    if r.rank >= best {
                        break;
                    }
                    if r.matches(p) {
                        best = r.rank;
                        hit = Some(r.hit());
                        break;
                    }
                }
            }
        }
        hit
    }

    /// The group of the packet's source at one prefix length.
    #[inline(always)]
    fn group(&self, l: &Len, p: &PacketFields) -> Option<&GroupEntry> {
        let key = src_key(l.mask, p.src & l.mask);
        self.groups
            .find(fold(key ^ self.seed, GROUP_MUL), |e| e.key == key)
    }

    pub(super) fn stats(&self) -> Stats {
        Stats {
            lengths: self.lengths.as_slice().len(),
            groups: self.groups.len(),
            nested_groups: self.nested.len(),
            kept: self.recs.len() + self.nested.iter().map(|n| n.hits.len()).sum::<usize>(),
            nested_entries: self.nested.iter().map(|n| n.entries.len()).sum(),
            nested_tuples: self.nested.iter().map(|n| n.tuples.len()).sum(),
            max_probes: self.max_probes(),
            lane_blocks: 0,
        }
    }

    /// The most hash probes one lookup can make: one per prefix length,
    /// plus the tuples of the nested group of each length with the most.
    fn max_probes(&self) -> usize {
        let lengths = self.lengths.as_slice();
        lengths.len()
            + lengths
                .iter()
                .map(|l| {
                    self.groups
                        .iter()
                        .filter(|g| (g.key >> 32) as u32 == l.mask && g.count == NESTED)
                        .map(|g| self.nested[g.start as usize].tuples.len())
                        .max()
                        .unwrap_or(0)
                })
                .sum::<usize>()
    }

    /// Heap bytes held (not counting `size_of::<Matcher>()` itself).
    pub(super) fn heap_bytes(&self) -> usize {
        self.lengths.heap_bytes()
            + self.groups.allocation_size()
            + std::mem::size_of_val(&*self.recs)
            + std::mem::size_of_val(&*self.nested)
            + self
                .nested
                .iter()
                .map(PortMatcher::heap_bytes)
                .sum::<usize>()
    }
}

/// A tuple of a nested group: which bits of `dst_port << 16 | src_port`
/// its entries look at, the protocol and TCP flag test they share, and the
/// best rank any of them holds (tuples are sorted by it).
#[derive(Debug, Clone, Copy)]
struct Tuple {
    /// Odd, non-zero hash multiplier of this tuple, so equal keys of
    /// different tuples land in different buckets.
    mul: u64,
    mask: u32,
    best: u32,
    proto_mask: u8,
    proto: u8,
    flags_mask: u8,
    flags: u8,
    needs_ports: bool,
}

const _: () = assert!(std::mem::size_of::<Tuple>() == 24);

/// One entry of a nested group: 16 bytes.
#[derive(Debug, Clone, Copy)]
struct Entry {
    key: u32,
    tuple: u32,
    rank: u32,
    /// Index of the rule's verdict in the group's `hits`.
    local: u32,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 16);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Shape {
    mask: u32,
    proto_mask: u8,
    proto: u8,
    flags_mask: u8,
    flags: u8,
    needs_ports: bool,
}

#[inline]
fn port_mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        (0xffffu32 << (16 - len)) & 0xffff
    }
}

/// Tuple-space search over the non-source fields of one group (all its
/// rules share one source prefix). Two entries of one tuple with the same
/// key match exactly the same packets, so only the lower rank is kept and
/// each probe is a single find.
#[derive(Debug, Clone)]
struct PortMatcher {
    /// Sorted by `best`, ascending.
    tuples: Box<[Tuple]>,
    entries: HashTable<Entry>,
    /// The group's verdicts, by position in the group.
    hits: Box<[Hit]>,
    seed: u64,
}

impl PortMatcher {
    /// `members` are in rank order.
    fn new(members: &[Member], seed: u64) -> PortMatcher {
        let mut shapes: HashMap<Shape, u32> = HashMap::new();
        let mut tuple_list: Vec<(Shape, u32)> = Vec::new();
        let mut keyed: HashMap<(u32, u32), (u32, u32)> = HashMap::new();
        for (local, &(rank, c, _)) in members.iter().enumerate() {
            let dst_blocks = port_blocks(c.dst);
            let src_blocks = port_blocks(c.src);
            debug_assert!(dst_blocks.len() * src_blocks.len() <= MAX_ENTRIES_PER_RULE);
            for &(dv, dl) in &dst_blocks {
                for &(sv, sl) in &src_blocks {
                    let shape = Shape {
                        mask: (port_mask(dl) << 16) | port_mask(sl),
                        proto_mask: c.proto_mask,
                        proto: c.proto,
                        flags_mask: c.flags_mask,
                        flags: c.flags,
                        needs_ports: c.needs_ports,
                    };
                    let t = *shapes.entry(shape).or_insert_with(|| {
                        tuple_list.push((shape, rank));
                        (tuple_list.len() - 1) as u32
                    });
                    // Ranks only grow, so an existing entry already wins.
                    keyed
                        .entry((t, ((dv as u32) << 16) | sv as u32))
                        .or_insert((rank, local as u32));
                }
            }
        }
        // Tuples were created in rank order, so this is their order by best
        // rank already; the sort keeps that true whatever builds the list.
        let mut order: Vec<u32> = (0..tuple_list.len() as u32).collect();
        order.sort_by_key(|&i| (tuple_list[i as usize].1, i));
        let mut renumber = vec![0u32; tuple_list.len()];
        for (new, &old) in order.iter().enumerate() {
            renumber[old as usize] = new as u32;
        }
        let tuples: Box<[Tuple]> = order
            .iter()
            .enumerate()
            .map(|(new, &old)| {
                let (s, best) = tuple_list[old as usize];
                Tuple {
                    mul: fold(seed ^ (new as u64 + 1), 0x9e37_79b9_7f4a_7c15) | 1,
                    mask: s.mask,
                    best,
                    proto_mask: s.proto_mask,
                    proto: s.proto,
                    flags_mask: s.flags_mask,
                    flags: s.flags,
                    needs_ports: s.needs_ports,
                }
            })
            .collect();
        let hash = |key: u32, tuple: u32| fold(key as u64 ^ seed, tuples[tuple as usize].mul);
        let mut entries = HashTable::with_capacity(keyed.len());
        for ((t, key), (rank, local)) in keyed {
            let tuple = renumber[t as usize];
            let e = Entry {
                key,
                tuple,
                rank,
                local,
            };
            entries.insert_unique(hash(key, tuple), e, |e: &Entry| hash(e.key, e.tuple));
        }
        PortMatcher {
            tuples,
            entries,
            hits: members.iter().map(|m| m.2).collect(),
            seed,
        }
    }

    /// This group's best match if its rank is below `*best` (which it
    /// then lowers).
    #[inline]
    fn find(&self, p: &PacketFields, best: &mut u32) -> Option<Hit> {
        let mut found = None;
        let pkey = ((p.dst_port as u32) << 16) | p.src_port as u32;
        for (i, t) in self.tuples.iter().enumerate() {
            if t.best >= *best {
                break;
            }
            if (p.protocol & t.proto_mask != t.proto)
                | (p.tcp_flags & t.flags_mask != t.flags)
                | (t.needs_ports & !p.has_ports)
            {
                continue;
            }
            let key = pkey & t.mask;
            let tuple = i as u32;
            if let Some(e) = self.entries.find(fold(key as u64 ^ self.seed, t.mul), |e| {
                e.key == key && e.tuple == tuple
            }) {
                if e.rank < *best {
                    *best = e.rank;
                    found = Some(e);
                }
            }
        }
        found.map(|e| self.hits[e.local as usize])
    }

    fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.tuples)
            + self.entries.allocation_size()
            + std::mem::size_of_val(&*self.hits)
    }
}
