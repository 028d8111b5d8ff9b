//! Interface-scoped access control lists, indexed by service IP.
//!
//! Each interface has its own rules. A *provider* rule applies to every
//! service on the interface and is evaluated before any *customer* rule; a
//! customer rule belongs to one service IP. Within each list the lowest
//! priority number matches first; when nothing matches, the service's
//! default action applies (the customer set's default, or the interface's
//! default for a service without customer rules).
//!
//! # Design note: how a lookup scales
//!
//! **Finding the rules.** [`AclTable`] holds, per interface, one compiled
//! provider set (its rules and the interface default) in a plain array, and
//! one customer set per `(interface, service IP)`, found through a 16-byte
//! slot of an open-addressing index. A set of up to 32 rules (counting the
//! interface's provider rules, which are copied in front of it) is matched
//! by lanes (`lanes.rs`: eight rules per three-cache-line block, one
//! branch-free vector pass per block), its blocks packed in one arena that
//! the slot points into, so a packet costs one index slot and the set's
//! blocks, and one match. Longer sets are matched as below, after the
//! provider set.
//!
//! The rest of this note describes the tuple space, used for long lists.
//!
//! **Matching one set: tuple-space search, source prefix first.** The
//! tuples of Srinivasan et al. are split in two levels, because the source
//! prefix is what separates rules in these lists (one client per rule) and
//! the port/protocol shapes are few:
//!
//! 1. *Source prefix.* Rules are grouped by their exact source prefix. One
//!    hash table per set maps `(prefix length, masked source)` to its
//!    group; a lookup makes one probe per distinct prefix length of the set
//!    (hosts, /24s, a /16 and /0 give 4), whatever the rule count.
//! 2. *The group* holds the rules of that one prefix, by rank; a rule that
//!    an earlier rule of the group covers (every packet it matches, the
//!    earlier one matches too) is dropped at compile time. A group of up to
//!    4 rules is scanned linearly over 24-byte records. A larger group gets
//!    its own tuple space over protocol, ports and TCP flags: tuple = (dst
//!    port block length, src port block length, protocol, flag test), key =
//!    the masked ports. Port ranges do not hash, so each range is expanded
//!    at compile time into the fewest prefix-aligned blocks: at most
//!    2·16 − 2 = 30 per range (reached by `1..=65534`), so at most
//!    30 × 30 = 900 entries for a rule with two worst-case ranges. Ranges
//!    met in practice are cheap: exact or any is 1 block, `0-1023` 1,
//!    `1024-65535` 6, `8000-8999` 6. Two entries of one tuple with the same
//!    key match the same packets, so only the better one is kept and every
//!    probe is one exact hash find — no candidate lists. A large group
//!    whose rules are so varied that its tuples outnumber a quarter of its
//!    rules stays linear (a probe costs about 4 record checks).
//!
//! *Early stop.* The rules of a set are ranked: provider rules by priority,
//! then customer rules by priority. Prefix lengths and nested tuples are
//! probed in order of the best rank they hold, scans stop at the first
//! match, and once a match beats the best rank of everything left the
//! lookup ends. A nested tuple whose protocol, flags or port requirement
//! the packet fails is skipped without hashing.
//!
//! **Complexity.** A lookup costs L probes for the L distinct prefix
//! lengths of the set (L ≤ 33; real sets have 2 to 5), plus, for each
//! prefix that exists, its group: at most 4 record checks, or at most T_g
//! probes for a nested group with T_g tuples, or (when linear because too
//! varied) at most 4·T_g record checks. T_g is bounded by the distinct
//! port-block lengths × protocol/flag variants of the group, not by its
//! rule count; realistic groups have 1 to 10. So the cost depends on the
//! distinct *masks* in the set, not on the number N of rules: measured
//! 15–20 ns for 1 to 1,000 rules. The worst case is a set whose rules use
//! every prefix length, and under one prefix every combination of port
//! block lengths and flag tests: a few hundred probes, still independent
//! of N once the shapes are exhausted. Compile time and memory are
//! O(N · E), E the range expansion factor of nested groups (1 without
//! ranges, ≤ 900).
//!
//! **Memory per rule.** A rule in lanes is 24 bytes (a block of eight is
//! 192), plus one 16-byte index slot per set (the index at most half
//! full); ten customer rules and one provider rule take two blocks, 384
//! bytes. In the tuple space a linear rule is one 24-byte record, a nested
//! rule one 16-byte hash entry per expanded block plus its 8-byte verdict,
//! and each distinct prefix a 16-byte group entry (hash table at most 7/8
//! full, plus one control byte). `memory_bytes` gives the real figure.
//!
//! **No allocation, no locks per lookup.** The tables are immutable after
//! [`AclTableBuilder::build`]; the control plane swaps a whole new table
//! in, so a burst never sees half an update. A burst is looked up in
//! stages: [`AclTable::prefetch`] loads each packet's index slot a pass
//! ahead, [`AclTable::locate`] reads it and starts loading the set's
//! blocks, and [`AclTable::decide`] matches once every packet of the burst
//! has been located, so the cache misses of different packets overlap.
//!
//! # IPv6
//!
//! Rules and packets are IPv4 now. [`SrcPrefix`] keeps the `{ addr, len }`
//! shape; IPv6 turns it into an enum (`V4 { addr: u32, len }` /
//! `V6 { addr: u128, len }`) and each set gets a second matcher for IPv6
//! with a 128-bit masked source as its group key (the groups and their
//! port tuples are unchanged). A packet is one family, so it probes only
//! its family's prefixes and IPv4 keeps its 64-bit keys.

mod lanes;
mod tss;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use tss::{fold, GroupPolicy, Hit, Matcher};

pub use tss::Stats as MatchStats;

/// What to do with a matching packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Allow,
    Deny,
}

/// The IP protocol a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Every protocol.
    Any,
    /// IP protocol 6.
    Tcp,
    /// IP protocol 17.
    Udp,
    /// IP protocol 1.
    Icmp,
}

impl Protocol {
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMP: u8 = 1;

    /// The IP protocol number, None for [`Protocol::Any`].
    pub const fn number(self) -> Option<u8> {
        match self {
            Protocol::Any => None,
            Protocol::Tcp => Some(Self::TCP),
            Protocol::Udp => Some(Self::UDP),
            Protocol::Icmp => Some(Self::ICMP),
        }
    }
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    /// Every port: `0..=65535`.
    pub const ANY: PortRange = PortRange {
        lo: 0,
        hi: u16::MAX,
    };

    /// One port.
    pub const fn exact(port: u16) -> PortRange {
        PortRange { lo: port, hi: port }
    }

    #[inline]
    pub const fn contains(self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

/// A TCP flag test: matches when `flags & mask == value`. Only TCP packets
/// with their TCP header (`has_ports`) can match a rule that has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpFlagsMatch {
    pub mask: u8,
    pub value: u8,
}

impl TcpFlagsMatch {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;

    /// A connection-opening segment: SYN set, ACK clear.
    pub const OPENING: TcpFlagsMatch = TcpFlagsMatch {
        mask: Self::SYN | Self::ACK,
        value: Self::SYN,
    };
}

/// A source prefix. IPv4 now; see the module doc for how IPv6 fits in (this
/// becomes an enum of a V4 and a V6 prefix, the same `{ addr, len }` shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SrcPrefix {
    /// Network address, host order; host bits must be zero.
    pub addr: u32,
    /// 0 (every address) to 32 (one host).
    pub len: u8,
}

impl SrcPrefix {
    /// Every address: `0.0.0.0/0`.
    pub const ANY: SrcPrefix = SrcPrefix { addr: 0, len: 0 };

    /// One host: `addr/32`.
    pub const fn host(addr: u32) -> SrcPrefix {
        SrcPrefix { addr, len: 32 }
    }

    /// The network mask (`len` leading ones); 0 for `/0`.
    pub const fn mask(self) -> u32 {
        if self.len == 0 {
            0
        } else if self.len >= 32 {
            u32::MAX
        } else {
            u32::MAX << (32 - self.len)
        }
    }
}

/// One access rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule {
    /// The caller's identifier, returned on match (counters are indexed by
    /// it).
    pub id: u32,
    /// Lower is evaluated first; unique within one rule list.
    pub priority: u32,
    pub src: SrcPrefix,
    pub protocol: Protocol,
    /// A packet without ports (ICMP, other protocols, non-first fragments)
    /// matches a rule only if both its port ranges are [`PortRange::ANY`]
    /// (and it has no TCP flag test).
    pub dst_ports: PortRange,
    pub src_ports: PortRange,
    /// Only with protocol TCP or Any (which it then narrows to TCP).
    pub tcp_flags: Option<TcpFlagsMatch>,
    pub action: Action,
}

/// The fields of one packet the rules look at (ports 0 and `has_ports`
/// false for ICMP and other packets without a transport header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketFields {
    pub src: u32,
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub has_ports: bool,
    pub tcp_flags: u8,
}

/// The outcome of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub action: Action,
    /// The matching rule's id; None when the default action applied.
    pub rule: Option<u32>,
}

impl From<Hit> for Verdict {
    #[inline(always)]
    fn from(h: Hit) -> Verdict {
        Verdict {
            action: h.action,
            rule: Some(h.id),
        }
    }
}

/// Which rule list a rule came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleList {
    /// Provider rules; `iface` is known when the error comes from
    /// [`AclTableBuilder::build`].
    Provider { iface: Option<u16> },
    /// Customer rules; `iface` and `service_ip` are known when the error
    /// comes from [`AclTableBuilder::build`].
    Customer {
        iface: Option<u16>,
        service_ip: Option<u32>,
    },
}

/// Which port range of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortField {
    Dst,
    Src,
}

/// What is wrong with one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleProblem {
    /// Another rule of the same list (`other_rule`) has this priority.
    DuplicatePriority { priority: u32, other_rule: u32 },
    /// The prefix length is above 32.
    PrefixTooLong { len: u8 },
    /// The address has bits set past the prefix length (not masked off
    /// silently: the rule would not say what its author meant).
    HostBitsSet { addr: u32, len: u8 },
    /// `lo > hi`.
    PortRangeReversed { field: PortField, lo: u16, hi: u16 },
    /// A TCP flag test on a protocol other than TCP or Any.
    TcpFlagsWithoutTcp { protocol: Protocol },
    /// The flag value has bits outside the mask: the rule could never match.
    TcpFlagsValueOutsideMask { mask: u8, value: u8 },
    /// A port range on ICMP, which has no ports: the rule could never match.
    PortsWithoutPorts { protocol: Protocol },
}

/// A rule set or table that cannot be compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclError {
    /// One rule is invalid.
    Rule {
        list: RuleList,
        rule: u32,
        problem: RuleProblem,
    },
    /// `add_provider` was called twice for one interface.
    DuplicateProviderSet { iface: u16 },
    /// `add_customer` was called twice for one (interface, service IP).
    DuplicateCustomerSet { iface: u16, service_ip: u32 },
}

impl AclError {
    /// The id of the offending rule, if the error is about one.
    pub fn rule(&self) -> Option<u32> {
        match self {
            AclError::Rule { rule, .. } => Some(*rule),
            _ => None,
        }
    }

    fn with_location(self, iface: u16, service_ip: Option<u32>) -> AclError {
        match self {
            AclError::Rule {
                list,
                rule,
                problem,
            } => AclError::Rule {
                list: match list {
                    RuleList::Provider { .. } => RuleList::Provider { iface: Some(iface) },
                    RuleList::Customer { .. } => RuleList::Customer {
                        iface: Some(iface),
                        service_ip,
                    },
                },
                rule,
                problem,
            },
            other => other,
        }
    }
}

fn ip(a: u32) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(a)
}

impl fmt::Display for RuleList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RuleList::Provider { iface: None } => write!(f, "provider rules"),
            RuleList::Provider { iface: Some(i) } => {
                write!(f, "provider rules of interface {i}")
            }
            RuleList::Customer {
                iface: Some(i),
                service_ip: Some(s),
            } => write!(f, "customer rules of service {} on interface {i}", ip(s)),
            RuleList::Customer { .. } => write!(f, "customer rules"),
        }
    }
}

impl fmt::Display for AclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AclError::Rule {
                list,
                rule,
                problem,
            } => {
                write!(f, "rule {rule} ({list}): ")?;
                match problem {
                    RuleProblem::DuplicatePriority {
                        priority,
                        other_rule,
                    } => write!(
                        f,
                        "priority {priority} is also that of rule {other_rule}; \
                         priorities must be unique so the first match is unambiguous"
                    ),
                    RuleProblem::PrefixTooLong { len } => {
                        write!(f, "prefix length {len} is above 32")
                    }
                    RuleProblem::HostBitsSet { addr, len } => write!(
                        f,
                        "source {}/{len} has host bits set (did you mean {}/{len}?)",
                        ip(addr),
                        ip(addr & SrcPrefix { addr, len }.mask())
                    ),
                    RuleProblem::PortRangeReversed { field, lo, hi } => write!(
                        f,
                        "{} port range {lo}-{hi} is upside down (lo > hi)",
                        match field {
                            PortField::Dst => "destination",
                            PortField::Src => "source",
                        }
                    ),
                    RuleProblem::TcpFlagsWithoutTcp { protocol } => {
                        write!(f, "TCP flags need protocol TCP (or any), not {protocol:?}")
                    }
                    RuleProblem::TcpFlagsValueOutsideMask { mask, value } => write!(
                        f,
                        "TCP flag value {value:#04x} has bits outside mask {mask:#04x}; \
                         the rule could never match"
                    ),
                    RuleProblem::PortsWithoutPorts { protocol } => write!(
                        f,
                        "{protocol:?} has no ports, so a port range means the rule \
                         could never match"
                    ),
                }
            }
            AclError::DuplicateProviderSet { iface } => {
                write!(f, "interface {iface} has provider rules twice")
            }
            AclError::DuplicateCustomerSet { iface, service_ip } => write!(
                f,
                "service {} on interface {iface} has customer rules twice",
                ip(service_ip)
            ),
        }
    }
}

impl std::error::Error for AclError {}

/// Checks one list and returns it sorted by priority.
fn validate(rules: &[Rule], list: RuleList) -> Result<Vec<&Rule>, AclError> {
    let bad = |r: &Rule, problem| AclError::Rule {
        list,
        rule: r.id,
        problem,
    };
    for r in rules {
        if r.src.len > 32 {
            return Err(bad(r, RuleProblem::PrefixTooLong { len: r.src.len }));
        }
        if r.src.addr & !r.src.mask() != 0 {
            return Err(bad(
                r,
                RuleProblem::HostBitsSet {
                    addr: r.src.addr,
                    len: r.src.len,
                },
            ));
        }
        for (field, pr) in [(PortField::Dst, r.dst_ports), (PortField::Src, r.src_ports)] {
            if pr.lo > pr.hi {
                return Err(bad(
                    r,
                    RuleProblem::PortRangeReversed {
                        field,
                        lo: pr.lo,
                        hi: pr.hi,
                    },
                ));
            }
        }
        if r.protocol == Protocol::Icmp
            && (r.dst_ports != PortRange::ANY || r.src_ports != PortRange::ANY)
        {
            return Err(bad(
                r,
                RuleProblem::PortsWithoutPorts {
                    protocol: r.protocol,
                },
            ));
        }
        if let Some(fl) = r.tcp_flags {
            if !matches!(r.protocol, Protocol::Tcp | Protocol::Any) {
                return Err(bad(
                    r,
                    RuleProblem::TcpFlagsWithoutTcp {
                        protocol: r.protocol,
                    },
                ));
            }
            if fl.value & !fl.mask != 0 {
                return Err(bad(
                    r,
                    RuleProblem::TcpFlagsValueOutsideMask {
                        mask: fl.mask,
                        value: fl.value,
                    },
                ));
            }
        }
    }
    let mut sorted: Vec<&Rule> = rules.iter().collect();
    // Stable: of two rules with one priority, the later one is reported.
    sorted.sort_by_key(|r| r.priority);
    for w in sorted.windows(2) {
        if w[0].priority == w[1].priority {
            return Err(bad(
                w[1],
                RuleProblem::DuplicatePriority {
                    priority: w[1].priority,
                    other_rule: w[0].id,
                },
            ));
        }
    }
    Ok(sorted)
}

/// One compiled, immutable rule set: provider rules (all first, by
/// priority), then customer rules (by priority), then the default action.
#[derive(Debug, Clone)]
pub struct RuleSet {
    kind: Kind,
    rules: u32,
    default: Action,
}

/// How a rule set is matched: short lists eight rules at a time, long
/// ones by tuple-space search.
#[derive(Debug, Clone)]
enum Kind {
    Lanes(Box<[lanes::Block]>),
    Tss(Matcher),
}

/// Whether a validated list is matched by lanes.
fn fits_lanes(rules: &[&Rule], policy: GroupPolicy) -> bool {
    policy == GroupPolicy::Auto
        && rules.len() <= lanes::MAX_RULES
        && rules.iter().all(|r| r.id <= lanes::MAX_ID)
}

impl RuleSet {
    /// Validates and compiles the two lists. Errors name the rule id.
    pub fn compile(
        provider: &[Rule],
        customer: &[Rule],
        default: Action,
    ) -> Result<RuleSet, AclError> {
        Self::compile_with(provider, customer, default, GroupPolicy::Auto)
    }

    fn compile_with(
        provider: &[Rule],
        customer: &[Rule],
        default: Action,
        policy: GroupPolicy,
    ) -> Result<RuleSet, AclError> {
        let mut all = validate(provider, RuleList::Provider { iface: None })?;
        all.extend(validate(
            customer,
            RuleList::Customer {
                iface: None,
                service_ip: None,
            },
        )?);
        Ok(Self::from_ranked(all, default, policy))
    }

    /// Compiles validated rules in rank order.
    fn from_ranked(rules: Vec<&Rule>, default: Action, policy: GroupPolicy) -> RuleSet {
        let kind = if fits_lanes(&rules, policy) {
            let mut blocks = Vec::new();
            lanes::compile(rules.iter().copied(), &mut blocks);
            Kind::Lanes(blocks.into_boxed_slice())
        } else {
            Kind::Tss(Matcher::new(rules.iter().copied(), policy))
        };
        RuleSet {
            kind,
            rules: rules.len() as u32,
            default,
        }
    }

    #[inline(always)]
    fn find(&self, p: &PacketFields) -> Option<Hit> {
        match &self.kind {
            Kind::Lanes(b) => lanes::find(b, p),
            Kind::Tss(m) => m.find(p),
        }
    }

    /// The first matching rule's action and id, or the default action.
    #[inline]
    pub fn lookup(&self, p: &PacketFields) -> Verdict {
        match self.find(p) {
            Some(h) => h.into(),
            None => self.default_verdict(),
        }
    }

    #[inline(always)]
    fn default_verdict(&self) -> Verdict {
        Verdict {
            action: self.default,
            rule: None,
        }
    }

    /// The default action.
    pub fn default_action(&self) -> Action {
        self.default
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.rules as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How the set was compiled: prefix lengths, groups, nested groups,
    /// the most hash probes a lookup can make.
    pub fn stats(&self) -> MatchStats {
        match &self.kind {
            Kind::Lanes(b) => MatchStats {
                kept: self.len(),
                lane_blocks: b.len(),
                ..MatchStats::default()
            },
            Kind::Tss(m) => m.stats(),
        }
    }

    /// Approximate bytes held, heap and the struct itself.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.heap_bytes()
    }

    fn heap_bytes(&self) -> usize {
        match &self.kind {
            Kind::Lanes(b) => std::mem::size_of_val(&**b),
            Kind::Tss(m) => m.heap_bytes(),
        }
    }
}

/// One interface's ACL state.
#[derive(Debug, Clone)]
struct IfaceAcl {
    /// Whether the interface has any ACL at all.
    active: bool,
    /// Provider rules and the interface default (Allow when only customer
    /// rules were given).
    provider: RuleSet,
    /// The caller's tag for the interface default ([`NO_TAG`]: none).
    tag: u32,
}

/// "No tag" in [`Slot::tag`] and [`IfaceAcl::tag`].
const NO_TAG: u32 = u32::MAX;
/// [`Slot::key`] of an empty slot (a real key has 16 zero top bits).
const EMPTY_KEY: u64 = u64::MAX;

/// [`Slot::info`]: the first block (or the index in `large`) in the low
/// bits, then the block count, then whether the set is large, then its
/// default action.
const INFO_START: u32 = (1 << 27) - 1;
const INFO_BLOCKS_SHIFT: u32 = 27;
const INFO_LARGE: u32 = 1 << 30;
const INFO_DENY: u32 = 1 << 31;

/// One slot of the customer-set index: 16 bytes, four to a cache line.
/// A short set's rules are blocks in the table's arena, found from here
/// with no further indirection: the slot is prefetched a pass before the
/// lookup, the blocks when the slot is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(16))]
struct Slot {
    /// `iface << 32 | service_ip`, or [`EMPTY_KEY`].
    key: u64,
    info: u32,
    /// The caller's tag for this set's default ([`NO_TAG`]: none).
    tag: u32,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 16);

impl Slot {
    const EMPTY: Slot = Slot {
        key: EMPTY_KEY,
        info: 0,
        tag: NO_TAG,
    };
}

/// The customer set a packet's service IP has on its interface, as found
/// by [`AclTable::locate`] and matched by [`AclTable::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetRef {
    info: u32,
    tag: u32,
    present: bool,
}

/// What the ACL decided for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// The matching rule's id; None when a default decided.
    pub rule: Option<u32>,
    /// When a default decided: the tag given to that default by
    /// [`AclTable::set_default_tags`], if any.
    pub default_tag: Option<u32>,
}

impl From<Decision> for Verdict {
    #[inline(always)]
    fn from(d: Decision) -> Verdict {
        Verdict {
            action: d.action,
            rule: d.rule,
        }
    }
}

/// Packets per burst stage in [`AclTable::lookup_burst`] (stack scratch).
pub const BURST: usize = 32;

const INDEX_MUL: u64 = 0x9e37_79b9_7f4a_7c15;

/// All rule sets of all interfaces.
#[derive(Debug, Clone)]
pub struct AclTable {
    /// Indexed by interface; shorter than the highest interface index when
    /// the later ones have no ACL.
    ifaces: Box<[IfaceAcl]>,
    /// Open addressing, linear probing, at most half full: a set is found
    /// in its home slot almost always, so [`AclTable::prefetch`] can bring
    /// it in a pass ahead of [`AclTable::locate`].
    index: Box<[Slot]>,
    /// `index.len() - 1` (a power of two, or 0 when empty).
    mask: usize,
    /// The blocks of every short customer set (its interface's provider
    /// rules, then its own), set after set.
    blocks: Box<[lanes::Block]>,
    /// Customer sets too long for lanes.
    large: Box<[Arc<RuleSet>]>,
    sets: usize,
    rules: usize,
    seed: u64,
}

#[inline(always)]
fn index_key(iface: u16, service_ip: u32) -> u64 {
    ((iface as u64) << 32) | service_ip as u64
}

#[inline(always)]
fn tag_opt(tag: u32) -> Option<u32> {
    (tag != NO_TAG).then_some(tag)
}

impl AclTable {
    pub fn builder() -> AclTableBuilder {
        AclTableBuilder::default()
    }

    /// An empty table: no interface has an ACL.
    pub fn empty() -> AclTable {
        AclTable {
            ifaces: Box::new([]),
            index: Box::new([]),
            mask: 0,
            blocks: Box::new([]),
            large: Box::new([]),
            sets: 0,
            rules: 0,
            seed: 0,
        }
    }

    /// Whether the interface has an ACL; when not, every packet is allowed
    /// and [`AclTable::lookup`] returns None.
    #[inline]
    pub fn has_rules(&self, iface: u16) -> bool {
        self.ifaces.get(iface as usize).is_some_and(|i| i.active)
    }

    #[inline(always)]
    fn iface(&self, iface: u16) -> Option<&IfaceAcl> {
        self.ifaces.get(iface as usize).filter(|i| i.active)
    }

    #[inline(always)]
    fn index_hash(&self, key: u64) -> u64 {
        fold(key ^ self.seed, INDEX_MUL)
    }

    #[inline(always)]
    fn find_slot(&self, key: u64) -> Option<&Slot> {
        let mut i = self.index_hash(key) as usize & self.mask;
        // At most half full: an empty slot ends every probe.
        for _ in 0..self.index.len() {
            let s = self.index.get(i)?;
            if s.key == key {
                return Some(s);
            }
            if s.key == EMPTY_KEY {
                return None;
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Gives each default action a tag that [`AclTable::decide`] returns
    /// when that default decides (the datapath's counter slots): `tag(iface,
    /// None)` for an interface's default, `tag(iface, Some(service_ip))`
    /// for a customer set's.
    pub fn set_default_tags(&mut self, tag: impl Fn(u16, Option<u32>) -> Option<u32>) {
        for (i, ia) in self.ifaces.iter_mut().enumerate() {
            ia.tag = tag(i as u16, None).unwrap_or(NO_TAG);
        }
        for s in self.index.iter_mut().filter(|s| s.key != EMPTY_KEY) {
            s.tag = tag((s.key >> 32) as u16, Some(s.key as u32)).unwrap_or(NO_TAG);
        }
    }

    /// The tag of the default that decides a packet to `service_ip` on
    /// `iface` when no rule matches: its customer set's, else the
    /// interface's.
    pub fn default_tag(&self, iface: u16, service_ip: u32) -> Option<u32> {
        let ia = self.iface(iface)?;
        self.find_slot(index_key(iface, service_ip))
            .and_then(|s| tag_opt(s.tag))
            .or_else(|| tag_opt(ia.tag))
    }

    /// Starts loading the index slot of `service_ip` on `iface` into the
    /// cache, for [`AclTable::locate`] a pass later.
    #[inline(always)]
    pub fn prefetch(&self, iface: u16, service_ip: u32) {
        let h = self.index_hash(index_key(iface, service_ip));
        if let Some(b) = self.index.get(h as usize & self.mask) {
            crate::datapath::dpdk::prefetch(b);
        }
    }

    /// Finds the customer set of `service_ip` on `iface` and starts loading
    /// its rules, for [`AclTable::decide`] a pass later.
    #[inline(always)]
    pub fn locate(&self, iface: u16, service_ip: u32) -> SetRef {
        let Some(s) = self.find_slot(index_key(iface, service_ip)) else {
            return SetRef::default();
        };
        if s.info & INFO_LARGE == 0 {
            lanes::prefetch(self.small_blocks(s.info));
        }
        SetRef {
            info: s.info,
            tag: s.tag,
            present: true,
        }
    }

    #[inline(always)]
    fn small_blocks(&self, info: u32) -> &[lanes::Block] {
        let start = (info & INFO_START) as usize;
        let n = ((info >> INFO_BLOCKS_SHIFT) & 7) as usize;
        self.blocks.get(start..start + n).unwrap_or(&[])
    }

    /// The decision for a packet arriving on `iface` whose service IP has
    /// the customer set `set` (from [`AclTable::locate`]): the interface's
    /// provider rules, then the customer rules and default, or the
    /// interface default when the service has no customer rules. None when
    /// the interface has no ACL (allowed).
    #[inline(always)]
    pub fn decide(&self, iface: u16, set: SetRef, p: &PacketFields) -> Option<Decision> {
        let ia = self.iface(iface)?;
        let rule = |h: Hit| Decision {
            action: h.action,
            rule: Some(h.id),
            default_tag: None,
        };
        // A short customer set holds the provider rules first: one match.
        let small = set.present && set.info & INFO_LARGE == 0;
        if !small {
            if let Some(h) = ia.provider.find(p) {
                return Some(rule(h));
            }
        }
        if !set.present {
            return Some(Decision {
                action: ia.provider.default,
                rule: None,
                default_tag: tag_opt(ia.tag),
            });
        }
        let (hit, default) = if small {
            let default = if set.info & INFO_DENY != 0 {
                Action::Deny
            } else {
                Action::Allow
            };
            (lanes::find(self.small_blocks(set.info), p), default)
        } else {
            match self.large.get((set.info & INFO_START) as usize) {
                Some(l) => (l.find(p), l.default),
                None => (None, ia.provider.default),
            }
        };
        Some(match hit {
            Some(h) => rule(h),
            None => Decision {
                action: default,
                rule: None,
                default_tag: tag_opt(set.tag),
            },
        })
    }

    /// The verdict for a packet to `service_ip` arriving on `iface` (see
    /// [`AclTable::decide`]). None when the interface has no ACL.
    #[inline]
    pub fn lookup(&self, iface: u16, service_ip: u32, p: &PacketFields) -> Option<Verdict> {
        self.iface(iface)?;
        self.decide(iface, self.locate(iface, service_ip), p)
            .map(Verdict::from)
    }

    /// [`AclTable::lookup`] for a burst of `(service IP, packet)` arriving
    /// on one interface; `out[i]` gets the verdict of `keys[i]`. Finds every
    /// set first (starting the loads of their rules), then matches, so the
    /// cache misses of different packets overlap.
    ///
    /// Panics if `out` is shorter than `keys`.
    #[inline]
    pub fn lookup_burst(
        &self,
        iface: u16,
        keys: &[(u32, PacketFields)],
        out: &mut [Option<Verdict>],
    ) {
        assert!(
            out.len() >= keys.len(),
            "lookup_burst: out is shorter than keys"
        );
        let out = &mut out[..keys.len()];
        if self.iface(iface).is_none() {
            out.fill(None);
            return;
        }
        for (kc, oc) in keys.chunks(BURST).zip(out.chunks_mut(BURST)) {
            let mut sets = [SetRef::default(); BURST];
            for (s, k) in sets.iter_mut().zip(kc) {
                *s = self.locate(iface, k.0);
            }
            for ((o, s), k) in oc.iter_mut().zip(&sets).zip(kc) {
                *o = self.decide(iface, *s, &k.1).map(Verdict::from);
            }
        }
    }

    /// The number of rules, provider and customer.
    pub fn len(&self) -> usize {
        self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of customer sets.
    pub fn customer_sets(&self) -> usize {
        self.sets
    }

    /// Approximate bytes held: every set, the index and the table itself.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self
                .ifaces
                .iter()
                .map(|i| i.provider.memory_bytes())
                .sum::<usize>()
            + std::mem::size_of_val(&*self.index)
            + std::mem::size_of_val(&*self.blocks)
            + self.large.iter().map(|l| l.memory_bytes()).sum::<usize>()
    }
}

impl Default for AclTable {
    fn default() -> AclTable {
        AclTable::empty()
    }
}

/// Collects rule lists; [`AclTableBuilder::build`] validates and compiles
/// them.
#[derive(Debug, Default, Clone)]
pub struct AclTableBuilder {
    providers: Vec<(u16, Vec<Rule>, Action)>,
    customers: Vec<(u16, u32, CustomerRules)>,
}

/// A customer set as given to the builder: rules to compile, or a set
/// compiled already (by [`AclTableBuilder::compile_customer`], for a set
/// an update did not change).
#[derive(Debug, Clone)]
enum CustomerRules {
    Rules(Vec<Rule>, Action),
    Compiled(Arc<RuleSet>),
}

impl AclTableBuilder {
    /// The provider rules of `iface` (evaluated before any customer rule of
    /// that interface) and the interface default, used for services
    /// without customer rules. An interface with only customer rules gets
    /// an empty provider list and default Allow.
    pub fn add_provider(&mut self, iface: u16, rules: Vec<Rule>, default: Action) -> &mut Self {
        self.providers.push((iface, rules, default));
        self
    }

    /// The customer rules of one service on `iface`, and its default.
    pub fn add_customer(
        &mut self,
        iface: u16,
        service_ip: u32,
        rules: Vec<Rule>,
        default: Action,
    ) -> &mut Self {
        self.customers
            .push((iface, service_ip, CustomerRules::Rules(rules, default)));
        self
    }

    /// Validates and compiles one customer set on its own, as
    /// [`AclTableBuilder::build`] would (errors name the rule, interface
    /// and service), for [`AclTableBuilder::add_compiled_customer`].
    pub fn compile_customer(
        iface: u16,
        service_ip: u32,
        rules: &[Rule],
        default: Action,
    ) -> Result<RuleSet, AclError> {
        RuleSet::compile(&[], rules, default).map_err(|e| e.with_location(iface, Some(service_ip)))
    }

    /// A customer set compiled already: what an update that left this set
    /// as it was reuses instead of compiling it again.
    pub fn add_compiled_customer(
        &mut self,
        iface: u16,
        service_ip: u32,
        set: Arc<RuleSet>,
    ) -> &mut Self {
        self.customers
            .push((iface, service_ip, CustomerRules::Compiled(set)));
        self
    }

    /// Validates and compiles every list. Errors name the rule id, its
    /// interface and service.
    pub fn build(&self) -> Result<AclTable, AclError> {
        let n_ifaces = self
            .providers
            .iter()
            .map(|p| p.0)
            .chain(self.customers.iter().map(|c| c.0))
            .max()
            .map_or(0, |m| m as usize + 1);
        let empty = RuleSet::compile(&[], &[], Action::Allow)?;
        let mut ifaces = vec![
            IfaceAcl {
                active: false,
                provider: empty,
                tag: NO_TAG,
            };
            n_ifaces
        ];
        let mut rule_count = 0;
        let mut seen_provider = vec![false; n_ifaces];
        for (iface, rules, default) in &self.providers {
            let i = *iface as usize;
            if std::mem::replace(&mut seen_provider[i], true) {
                return Err(AclError::DuplicateProviderSet { iface: *iface });
            }
            // Copied in front of every short customer set of the interface.
            let set = RuleSet::compile(rules, &[], *default)
                .map_err(|e| e.with_location(*iface, None))?;
            rule_count += set.len();
            ifaces[i].active = true;
            ifaces[i].provider = set;
        }

        let seed = tss::random_seed();
        let slots = if self.customers.is_empty() {
            0
        } else {
            (2 * self.customers.len()).next_power_of_two()
        };
        let mask = slots.saturating_sub(1);
        let mut index = vec![Slot::EMPTY; slots];
        let mut blocks = Vec::new();
        let mut large = Vec::new();
        let hash = |key: u64| fold(key ^ seed, INDEX_MUL);
        for (iface, service_ip, rules) in &self.customers {
            let key = index_key(*iface, *service_ip);
            let mut i = hash(key) as usize & mask;
            while index[i].key != EMPTY_KEY {
                if index[i].key == key {
                    return Err(AclError::DuplicateCustomerSet {
                        iface: *iface,
                        service_ip: *service_ip,
                    });
                }
                i = (i + 1) & mask;
            }
            let owned;
            let set: &RuleSet = match rules {
                CustomerRules::Rules(rules, default) => {
                    owned = Self::compile_customer(*iface, *service_ip, rules, *default)?;
                    &owned
                }
                CustomerRules::Compiled(set) => set,
            };
            rule_count += set.len();
            let deny = if set.default == Action::Deny {
                INFO_DENY
            } else {
                0
            };
            let provider = &ifaces[*iface as usize].provider;
            let info = match (&provider.kind, &set.kind) {
                (Kind::Lanes(p), Kind::Lanes(c))
                    if provider.len() + set.len() <= lanes::MAX_RULES
                        && blocks.len() + lanes::MAX_RULES / lanes::LANES
                            <= INFO_START as usize =>
                {
                    // The provider's rules, then the customer's, packed.
                    let start = blocks.len() as u32;
                    let n = lanes::concat(&[(p, provider.len()), (c, set.len())], &mut blocks);
                    start | (n as u32) << INFO_BLOCKS_SHIFT | deny
                }
                _ => {
                    large.push(match rules {
                        CustomerRules::Compiled(set) => Arc::clone(set),
                        CustomerRules::Rules(..) => Arc::new(set.clone()),
                    });
                    (large.len() - 1) as u32 | INFO_LARGE | deny
                }
            };
            index[i] = Slot {
                key,
                info,
                tag: NO_TAG,
            };
            ifaces[*iface as usize].active = true;
        }
        Ok(AclTable {
            ifaces: ifaces.into_boxed_slice(),
            index: index.into_boxed_slice(),
            mask,
            blocks: blocks.into_boxed_slice(),
            large: large.into_boxed_slice(),
            sets: self.customers.len(),
            rules: rule_count,
            seed,
        })
    }
}
