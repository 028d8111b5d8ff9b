//! The compiled service tables the workers classify against.
//!
//! A [`Tables`] is immutable once built: the control side compiles the
//! configuration into one off the datapath, and each worker holds its own
//! copy (see [`Published`]), switching to a new version between bursts. The
//! only mutable part is the neighbor (ARP) state, shared by all copies
//! through atomics.
//!
//! # Design note: the lookups a packet makes
//!
//! A packet makes up to three lookups: its sender (interface, VLAN, source
//! MAC), the forward key (protocol, destination, destination port) and, when
//! that misses, the return key (protocol, source, source port). The service
//! keys live in [`FlatTable`]s: open addressing over 64-byte buckets of two
//! 32-byte slots, each slot holding the packed key and the compact
//! [`PortHot`] itself, at most half full. A lookup is one multiply for the
//! hash, then one cache line in the common case (a hit, or a miss that finds
//! an empty slot in the home bucket); collisions spill linearly into the
//! next bucket. Because the home bucket is known from the key alone, the
//! worker splits a burst into passes (as DPDK's `rte_hash_lookup_bulk` and
//! VPP's quad loops do): hash every packet's keys and prefetch their
//! buckets, then look them all up, then act, so the cache misses of one
//! burst overlap instead of following each other.
//!
//! Memory: 32 bytes per slot, 2 to 4 slots per key, so 64 to 128 bytes per
//! service port in each of the forward and return tables. Dynamic port
//! ranges (rare) stay in a hashbrown map consulted only when some exist.
//! The sender table is a small [`FlatTable`] too (a few slots per device leg).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hashbrown::{HashMap, HashSet};

use super::neighbor::Neighbors;
use super::packet::{IpProtocol, MacAddr};
use crate::acl::AclTable;

pub type DeviceId = u16;

/// Most passive devices that get copies at one hop.
pub const MAX_COPIES: usize = 4;
/// Most hops in one sequence.
pub const MAX_HOPS: usize = 16;

/// How a device accepts traffic for a service IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceMode {
    /// The service IP is on the device's loopback: sent unmodified.
    Loopback,
    /// The service IP is one of the device's aliases: sent unmodified.
    Alias,
    /// The device only has its own IP: destination NAT on the way in,
    /// reverse NAT on the way out.
    Nat,
}

/// The destination MAC of a leg: configured, or learnt by ARP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextMac {
    Static(MacAddr),
    /// A slot of [`Neighbors`].
    Neighbor(u32),
}

/// Where a frame goes on one of seqd's interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leg {
    pub iface: u16,
    pub vlan: Option<u16>,
    pub mac: NextMac,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    /// Counter slot, stable across versions.
    pub slot: u32,
    pub mode: DeviceMode,
    pub ipv4: Option<Ipv4Addr>,
    /// The leg facing the client side (or the only leg): forward traffic
    /// goes in here, return traffic comes back out here.
    pub client_leg: Leg,
    /// The leg facing the servers; equal to `client_leg` for one leg.
    pub server_leg: Leg,
}

/// Passive devices that get a copy at one hop; a fixed array, so a decision
/// carries them without allocating.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copies {
    len: u8,
    ids: [DeviceId; MAX_COPIES],
}

impl Copies {
    pub fn new(ids: &[DeviceId]) -> Option<Copies> {
        if ids.len() > MAX_COPIES {
            return None;
        }
        let mut c = Copies {
            len: ids.len() as u8,
            ids: [0; MAX_COPIES],
        };
        c.ids[..ids.len()].copy_from_slice(ids);
        Some(c)
    }

    #[inline]
    pub fn as_slice(&self) -> &[DeviceId] {
        &self.ids[..self.len as usize]
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub device: DeviceId,
    pub copies: Copies,
}

/// One (service, protocol, port) and its sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Counter slot, stable across versions.
    pub slot: u32,
    pub service: String,
    pub ip: Ipv4Addr,
    pub protocol: IpProtocol,
    pub port: u16,
    /// The port the end device listens on, when it differs from `port`.
    pub translate_to: Option<u16>,
    /// Negotiated ports (inclusive) that follow this sequence untranslated.
    pub dynamic: Option<(u16, u16)>,
    /// Inline hops, then the end device last.
    pub hops: Vec<Hop>,
    /// Index into `hops` that passive devices' output goes to.
    pub alerts_to: usize,
}

impl ServicePort {
    #[inline]
    pub fn end(&self) -> &Hop {
        &self.hops[self.hops.len() - 1]
    }

    /// Position of `device` among the hops.
    #[inline]
    pub fn hop_of(&self, device: DeviceId) -> Option<usize> {
        self.hops.iter().position(|h| h.device == device)
    }

    /// Whether `device` gets copies somewhere in this sequence.
    #[inline]
    pub fn is_passive(&self, device: DeviceId) -> bool {
        self.hops
            .iter()
            .any(|h| h.copies.as_slice().contains(&device))
    }
}

/// The client side: the interface toward the router and its gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSide {
    pub iface: u16,
    pub gateway: NextMac,
}

/// A flow key (protocol, address, port) packed in one integer.
#[inline(always)]
pub fn flow_key(protocol: IpProtocol, ip: Ipv4Addr, port: u16) -> u64 {
    (u32::from(ip) as u64) << 24 | (port as u64) << 8 | u8::from(protocol) as u64
}

#[inline(always)]
fn range_key(protocol: IpProtocol, ip: Ipv4Addr) -> u64 {
    (u32::from(ip) as u64) << 8 | u8::from(protocol) as u64
}

/// (interface, VLAN or untagged) packed.
#[inline(always)]
pub fn segment_key(iface: u16, vlan: Option<u16>) -> u32 {
    (iface as u32) << 16 | vlan.map_or(0xffff, |v| v as u32 & 0x0fff)
}

#[inline(always)]
fn sender_key(iface: u16, vlan: Option<u16>, mac: MacAddr) -> u128 {
    let m = mac.0;
    let mac = u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]]);
    (segment_key(iface, vlan) as u128) << 64 | mac as u128
}

/// What the datapath reads of a service port on every packet. Compact (24
/// bytes), and stored in the lookup tables themselves, so finding a port is
/// one bucket access; the cold rest (names, copies, dynamic range) stays in
/// [`Tables::ports`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortHot {
    /// Index into `ports`.
    pub index: u32,
    /// Counter slot (stable across versions).
    pub slot: u32,
    pub ip: Ipv4Addr,
    pub port: u16,
    /// 0: no translation.
    pub translate_to: u16,
    /// The sequence: `hop_devices[hop_start..hop_start + hop_len]`.
    pub hop_start: u32,
    pub hop_len: u8,
    pub alerts_to: u8,
    /// Some hop has passive devices (look in `ports` for which).
    pub has_copies: bool,
    /// [`HOT_DYNAMIC`] and, in the return table, [`HOT_END_SIDE`].
    flags: u8,
}

/// The port has a dynamic range (in `ports`).
const HOT_DYNAMIC: u8 = 1;
/// A return-table entry keyed by the end device's own address/port.
const HOT_END_SIDE: u8 = 2;

const _: () = assert!(std::mem::size_of::<PortHot>() == 24);
const _: () = assert!(std::mem::size_of::<Bucket<u64, PortHot>>() == 64);

impl Default for PortHot {
    fn default() -> Self {
        PortHot {
            index: 0,
            slot: 0,
            ip: Ipv4Addr::UNSPECIFIED,
            port: 0,
            translate_to: 0,
            hop_start: 0,
            hop_len: 0,
            alerts_to: 0,
            has_copies: false,
            flags: 0,
        }
    }
}

impl PortHot {
    #[inline(always)]
    pub fn translate_to(&self) -> Option<u16> {
        (self.translate_to != 0).then_some(self.translate_to)
    }

    /// Whether the port has a dynamic range ([`Tables::is_dynamic`]).
    #[inline(always)]
    pub fn has_dynamic(&self) -> bool {
        self.flags & HOT_DYNAMIC != 0
    }
}

/// A return-direction match: the service port, and whether the packet came
/// with the end device's own address/port (reverse NAT and translation due).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReturnMatch {
    pub port: PortHot,
    pub from_end_side: bool,
}

impl ReturnMatch {
    #[inline(always)]
    fn from_hot(h: PortHot) -> ReturnMatch {
        ReturnMatch {
            port: PortHot {
                flags: h.flags & !HOT_END_SIDE,
                ..h
            },
            from_end_side: h.flags & HOT_END_SIDE != 0,
        }
    }

    #[inline(always)]
    fn to_hot(self) -> PortHot {
        PortHot {
            flags: self.port.flags | if self.from_end_side { HOT_END_SIDE } else { 0 },
            ..self.port
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct PortRange {
    lo: u16,
    hi: u16,
    port: PortHot,
    from_end_side: bool,
}

/// Why tables could not be built: two entries claim the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableError(pub String);

impl std::fmt::Display for TableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TableError {}

/// Everything a worker classifies against, for one version of the config.
#[derive(Debug, Clone)]
pub struct Tables {
    pub version: u64,
    pub client: Option<ClientSide>,
    pub devices: Vec<Device>,
    pub ports: Vec<ServicePort>,
    pub neighbors: Arc<Neighbors>,
    /// Every sequence's devices, back to back (see [`PortHot`]).
    hop_devices: Vec<DeviceId>,
    forward: FlatTable<PortHot>,
    forward_ranges: HashMap<u64, Box<[PortRange]>>,
    /// [`ReturnMatch`]es, stored as [`PortHot`] with [`HOT_END_SIDE`].
    reverse: FlatTable<PortHot>,
    reverse_ranges: HashMap<u64, Box<[PortRange]>>,
    senders: FlatTable<DeviceId, u128>,
    /// Legs whose MAC is learnt by ARP, per segment: (neighbor slot, device).
    arp_senders: HashMap<u32, Vec<(u32, DeviceId)>>,
    device_segments: HashSet<u32>,
    device_by_ip: HashMap<u32, DeviceId>,
    service_ips: HashSet<u32>,
    /// The ACLs, which also hold each default action's counter slot.
    acl: Option<Arc<AclTable>>,
}

impl Tables {
    /// Builds the lookups. The compiler has validated names and sequences;
    /// this rejects only key collisions it cannot see per service.
    pub fn build(
        version: u64,
        client: Option<ClientSide>,
        devices: Vec<Device>,
        ports: Vec<ServicePort>,
        neighbors: Arc<Neighbors>,
    ) -> Result<Tables, TableError> {
        let n_ports = ports.len();
        let mut t = Tables {
            version,
            client,
            devices,
            ports,
            neighbors,
            hop_devices: Vec::new(),
            forward: FlatTable::with_capacity(n_ports),
            forward_ranges: HashMap::new(),
            reverse: FlatTable::with_capacity(2 * n_ports),
            reverse_ranges: HashMap::new(),
            senders: FlatTable::default(),
            arp_senders: HashMap::new(),
            device_segments: HashSet::new(),
            device_by_ip: HashMap::new(),
            service_ips: HashSet::with_capacity(n_ports),
            acl: None,
        };
        for (id, d) in t.devices.iter().enumerate() {
            for leg in [d.client_leg, d.server_leg] {
                if let NextMac::Static(mac) = leg.mac {
                    let key = sender_key(leg.iface, leg.vlan, mac);
                    if let Some(other) = t.senders.get(key) {
                        if other as usize != id {
                            return Err(TableError(format!(
                                "devices {:?} and {:?} share MAC {mac} on one interface and VLAN",
                                t.devices[other as usize].name, d.name
                            )));
                        }
                    }
                    t.senders.insert(key, id as DeviceId);
                }
                if let NextMac::Neighbor(slot) = leg.mac {
                    let v = t
                        .arp_senders
                        .entry(segment_key(leg.iface, leg.vlan))
                        .or_default();
                    if !v.contains(&(slot, id as DeviceId)) {
                        v.push((slot, id as DeviceId));
                    }
                }
                t.device_segments.insert(segment_key(leg.iface, leg.vlan));
            }
            if let Some(ip) = d.ipv4 {
                t.device_by_ip.insert(u32::from(ip), id as DeviceId);
            }
        }
        for (i, p) in t.ports.iter().enumerate() {
            let hot = PortHot {
                index: i as u32,
                slot: p.slot,
                ip: p.ip,
                port: p.port,
                translate_to: p.translate_to.unwrap_or(0),
                hop_start: t.hop_devices.len() as u32,
                hop_len: p.hops.len() as u8,
                alerts_to: p.alerts_to as u8,
                has_copies: p.hops.iter().any(|h| !h.copies.is_empty()),
                flags: if p.dynamic.is_some() { HOT_DYNAMIC } else { 0 },
            };
            if p.hops.is_empty() || p.hops.len() > MAX_HOPS {
                return Err(TableError(format!(
                    "service {:?} port {}: 1-{MAX_HOPS} hops",
                    p.service, p.port
                )));
            }
            t.hop_devices.extend(p.hops.iter().map(|h| h.device));
            t.service_ips.insert(u32::from(p.ip));
            let name = || format!("service {:?} {} port {}", p.service, p.protocol, p.port);
            let k = flow_key(p.protocol, p.ip, p.port);
            if t.forward.insert(k, hot).is_some() {
                return Err(TableError(format!(
                    "{}: {}:{} is defined twice",
                    name(),
                    p.ip,
                    p.port
                )));
            }
            let end = &t.devices[p.end().device as usize];
            let (end_ip, end_port) = match end.mode {
                DeviceMode::Nat => (end.ipv4.unwrap_or(p.ip), p.translate_to.unwrap_or(p.port)),
                _ => (p.ip, p.translate_to.unwrap_or(p.port)),
            };
            t.reverse.insert(
                k,
                ReturnMatch {
                    port: hot,
                    from_end_side: false,
                }
                .to_hot(),
            );
            if (end_ip, end_port) != (p.ip, p.port) {
                let k = flow_key(p.protocol, end_ip, end_port);
                let m = ReturnMatch {
                    port: hot,
                    from_end_side: true,
                };
                if let Some(prev) = t.reverse.insert(k, m.to_hot()) {
                    if prev.index != hot.index {
                        let other = &t.ports[prev.index as usize];
                        return Err(TableError(format!(
                            "{}: replies from {end_ip}:{end_port} would also match service {:?} port {}",
                            name(),
                            other.service,
                            other.port
                        )));
                    }
                }
            }
            if let Some((lo, hi)) = p.dynamic {
                let r = PortRange {
                    lo,
                    hi,
                    port: hot,
                    from_end_side: false,
                };
                push_range(&mut t.forward_ranges, range_key(p.protocol, p.ip), r);
                push_range(&mut t.reverse_ranges, range_key(p.protocol, p.ip), r);
                if end_ip != p.ip {
                    let r = PortRange {
                        from_end_side: true,
                        ..r
                    };
                    push_range(&mut t.reverse_ranges, range_key(p.protocol, end_ip), r);
                }
            }
        }
        for ranges in t.forward_ranges.values().chain(t.reverse_ranges.values()) {
            for w in ranges.windows(2) {
                if w[0].hi >= w[1].lo {
                    let (a, b) = (
                        &t.ports[w[0].port.index as usize],
                        &t.ports[w[1].port.index as usize],
                    );
                    return Err(TableError(format!(
                        "dynamic ports {}-{} of service {:?} port {} overlap {}-{} of service {:?} port {}",
                        w[0].lo, w[0].hi, a.service, a.port, w[1].lo, w[1].hi, b.service, b.port
                    )));
                }
            }
        }
        Ok(t)
    }

    /// The hashes of a packet's forward and return keys, with their
    /// buckets prefetched: the first pass of a burst (see the module doc).
    #[inline(always)]
    pub fn prefetch_flow(
        &self,
        protocol: IpProtocol,
        src: Ipv4Addr,
        sport: u16,
        dst: Ipv4Addr,
        dport: u16,
    ) -> (u64, u64) {
        let f = flow_key(protocol, dst, dport).hash();
        let r = flow_key(protocol, src, sport).hash();
        self.forward.prefetch(f);
        self.reverse.prefetch(r);
        (f, r)
    }

    /// The service port a forward-direction packet is for.
    #[inline]
    pub fn forward(&self, protocol: IpProtocol, dst: Ipv4Addr, dport: u16) -> Option<PortHot> {
        self.forward_hashed(protocol, dst, dport, flow_key(protocol, dst, dport).hash())
    }

    /// [`Tables::forward`] with the hash from [`Tables::prefetch_flow`].
    #[inline(always)]
    pub fn forward_hashed(
        &self,
        protocol: IpProtocol,
        dst: Ipv4Addr,
        dport: u16,
        hash: u64,
    ) -> Option<PortHot> {
        if let Some(p) = self
            .forward
            .get_hashed(flow_key(protocol, dst, dport), hash)
        {
            return Some(p);
        }
        if self.forward_ranges.is_empty() {
            return None;
        }
        find_range(self.forward_ranges.get(&range_key(protocol, dst))?, dport).map(|r| r.port)
    }

    /// The service port a return-direction packet belongs to.
    #[inline]
    pub fn reverse(&self, protocol: IpProtocol, src: Ipv4Addr, sport: u16) -> Option<ReturnMatch> {
        self.reverse_hashed(protocol, src, sport, flow_key(protocol, src, sport).hash())
    }

    /// [`Tables::reverse`] with the hash from [`Tables::prefetch_flow`].
    #[inline(always)]
    pub fn reverse_hashed(
        &self,
        protocol: IpProtocol,
        src: Ipv4Addr,
        sport: u16,
        hash: u64,
    ) -> Option<ReturnMatch> {
        if let Some(m) = self
            .reverse
            .get_hashed(flow_key(protocol, src, sport), hash)
        {
            return Some(ReturnMatch::from_hot(m));
        }
        if self.reverse_ranges.is_empty() {
            return None;
        }
        find_range(self.reverse_ranges.get(&range_key(protocol, src))?, sport).map(|r| {
            ReturnMatch {
                port: r.port,
                from_end_side: r.from_end_side,
            }
        })
    }

    /// The devices of a port's sequence, in order (the end device last).
    #[inline(always)]
    pub fn hops(&self, p: &PortHot) -> &[DeviceId] {
        let start = p.hop_start as usize;
        self.hop_devices
            .get(start..start + p.hop_len as usize)
            .unwrap_or(&[])
    }

    /// Whether `p` is a negotiated port of `port` rather than the service
    /// port itself (dynamic ports are never translated).
    #[inline]
    pub fn is_dynamic(&self, port: &PortHot, p: u16) -> bool {
        port.has_dynamic()
            && p != port.port
            && self
                .ports
                .get(port.index as usize)
                .and_then(|sp| sp.dynamic)
                .is_some_and(|(lo, hi)| p >= lo && p <= hi)
    }

    /// Starts loading the first device of a port's sequence.
    #[inline(always)]
    pub fn prefetch_hops(&self, p: &PortHot) {
        if let Some(d) = self.hop_devices.get(p.hop_start as usize) {
            super::dpdk::prefetch(d);
        }
    }

    /// Bytes the lookup structures hold (not the names in `ports`).
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        self.forward.memory_bytes()
            + self.reverse.memory_bytes()
            + self.senders.memory_bytes()
            + self.hop_devices.capacity() * size_of::<DeviceId>()
            + self.ports.capacity() * size_of::<ServicePort>()
            + self
                .ports
                .iter()
                .map(|p| p.service.capacity() + p.hops.capacity() * size_of::<Hop>())
                .sum::<usize>()
            + self.service_ips.allocation_size()
            + self.acl.as_ref().map_or(0, |a| a.memory_bytes())
    }

    /// The passive devices that get copies at hop `k` of a port.
    #[inline]
    pub fn copies(&self, p: &PortHot, k: usize) -> Copies {
        if !p.has_copies {
            return Copies::default();
        }
        self.ports
            .get(p.index as usize)
            .and_then(|sp| sp.hops.get(k))
            .map_or(Copies::default(), |h| h.copies)
    }

    /// Whether `device` gets copies somewhere in the port's sequence.
    #[inline]
    pub fn is_passive(&self, p: &PortHot, device: DeviceId) -> bool {
        p.has_copies
            && self
                .ports
                .get(p.index as usize)
                .is_some_and(|sp| sp.is_passive(device))
    }

    /// The device that sent a frame, by interface, VLAN and source MAC.
    #[inline]
    pub fn sender(&self, iface: u16, vlan: Option<u16>, mac: MacAddr) -> Option<DeviceId> {
        if let Some(d) = self.senders.get(sender_key(iface, vlan, mac)) {
            return Some(d);
        }
        if self.arp_senders.is_empty() {
            return None;
        }
        // Devices known by IP: their MAC is whatever ARP last said.
        self.arp_senders
            .get(&segment_key(iface, vlan))?
            .iter()
            .find(|&&(slot, _)| self.neighbors.mac(slot) == Some(mac))
            .map(|&(_, d)| d)
    }

    /// Whether some device is on this interface and VLAN.
    #[inline]
    pub fn has_devices_on(&self, iface: u16, vlan: Option<u16>) -> bool {
        self.device_segments.contains(&segment_key(iface, vlan))
    }

    #[inline]
    pub fn device_by_ip(&self, ip: Ipv4Addr) -> Option<DeviceId> {
        if self.device_by_ip.is_empty() {
            return None;
        }
        self.device_by_ip.get(&u32::from(ip)).copied()
    }

    #[inline]
    pub fn is_service_ip(&self, ip: Ipv4Addr) -> bool {
        self.service_ips.contains(&u32::from(ip))
    }

    /// Adds the ACLs: `defaults` gives each rule set's default-action slot,
    /// by (interface, service IP; None for the interface's provider set).
    pub fn with_acl(
        mut self,
        mut acl: AclTable,
        defaults: impl IntoIterator<Item = ((u16, Option<Ipv4Addr>), u32)>,
    ) -> Tables {
        // The ACL returns a default's counter slot itself: no hash lookup
        // per packet, and no copy of the slots here.
        let slots: HashMap<(u16, Option<Ipv4Addr>), u32> = defaults.into_iter().collect();
        acl.set_default_tags(|iface, ip| slots.get(&(iface, ip.map(Ipv4Addr::from))).copied());
        self.acl = Some(Arc::new(acl));
        self
    }

    #[inline(always)]
    pub fn acl(&self) -> Option<&AclTable> {
        self.acl.as_deref()
    }

    /// The default-action slot that decided a packet to `dst` on `iface`:
    /// the service's own set, else the interface's provider set.
    pub fn acl_default_slot(&self, iface: u16, dst: Ipv4Addr) -> Option<u32> {
        self.acl.as_ref()?.default_tag(iface, u32::from(dst))
    }

    /// The counter slot of a device.
    #[inline(always)]
    pub fn device_slot(&self, d: DeviceId) -> Option<usize> {
        self.devices.get(d as usize).map(|dev| dev.slot as usize)
    }

    /// The destination MAC of a leg, if known.
    #[inline]
    pub fn resolve(&self, mac: NextMac) -> Option<MacAddr> {
        match mac {
            NextMac::Static(m) => Some(m),
            NextMac::Neighbor(slot) => self.neighbors.mac(slot),
        }
    }
}

fn push_range(map: &mut HashMap<u64, Box<[PortRange]>>, key: u64, r: PortRange) {
    let mut v: Vec<PortRange> = map.remove(&key).map(Vec::from).unwrap_or_default();
    v.push(r);
    v.sort_by_key(|r| r.lo);
    map.insert(key, v.into_boxed_slice());
}

#[inline]
fn find_range(ranges: &[PortRange], p: u16) -> Option<&PortRange> {
    // Sorted and disjoint: the last range starting at or below p is the only candidate.
    let i = ranges.partition_point(|r| r.lo <= p);
    let r = ranges.get(i.checked_sub(1)?)?;
    (p <= r.hi).then_some(r)
}

/// A key of a [`FlatTable`]: a packed integer with one value no real key
/// takes (it marks an empty slot).
pub trait FlatKey: Copy + Eq {
    const EMPTY: Self;
    /// A well-mixed 64-bit hash (the table takes its high bits).
    fn hash(self) -> u64;
}

/// Fibonacci hashing: one multiply by 2^64 / φ; the high bits are well mixed
/// even for keys that differ only in their low bits (consecutive IPs).
const FIB: u64 = 0x9e37_79b9_7f4a_7c15;

impl FlatKey for u64 {
    // Flow keys use 56 bits, so all ones is never a key.
    const EMPTY: u64 = u64::MAX;
    #[inline(always)]
    fn hash(self) -> u64 {
        (self ^ (self >> 29)).wrapping_mul(FIB)
    }
}

impl FlatKey for u128 {
    // Sender keys use 80 bits.
    const EMPTY: u128 = u128::MAX;
    #[inline(always)]
    fn hash(self) -> u64 {
        ((self as u64) ^ ((self >> 64) as u64).wrapping_mul(0xff51_afd7_ed55_8ccd)).hash()
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot<K, V> {
    key: K,
    val: V,
}

/// Slots per bucket: a bucket of the service tables (32-byte slots) is one
/// cache line.
const SLOTS: usize = 2;

#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Bucket<K, V> {
    slots: [Slot<K, V>; SLOTS],
}

/// An immutable-after-build open-addressing hash table on packed integer
/// keys (see the module's design note): buckets of [`SLOTS`] slots, probed
/// linearly from the home bucket, at most half full so that almost every
/// lookup ends in its home bucket. No tombstones: entries are never removed
/// (a new version is built instead).
#[derive(Debug, Clone)]
pub struct FlatTable<V, K: FlatKey = u64> {
    buckets: Box<[Bucket<K, V>]>,
    /// `buckets.len() - 1`; buckets.len() is a power of two.
    mask: usize,
    /// Right shift that keeps the hash bits selecting a bucket.
    shift: u32,
    len: usize,
}

impl<V: Copy + Default, K: FlatKey> Default for FlatTable<V, K> {
    fn default() -> Self {
        Self::with_buckets(1)
    }
}

impl<V: Copy + Default, K: FlatKey> FlatTable<V, K> {
    fn with_buckets(n: usize) -> Self {
        let n = n.max(1).next_power_of_two();
        let empty = Bucket {
            slots: [Slot {
                key: K::EMPTY,
                val: V::default(),
            }; SLOTS],
        };
        FlatTable {
            buckets: vec![empty; n].into_boxed_slice(),
            mask: n - 1,
            shift: 64 - n.trailing_zeros(),
            len: 0,
        }
    }

    /// A table sized for `n` keys without growing.
    pub fn with_capacity(n: usize) -> Self {
        Self::with_buckets((2 * n).div_ceil(SLOTS))
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the slot array.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.buckets)
    }

    /// The home bucket of a key's hash.
    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        // shift is 64 for one bucket: checked_shr gives 0 then.
        hash.checked_shr(self.shift).unwrap_or(0) as usize & self.mask
    }

    /// The hash of a key, for [`FlatTable::prefetch`] and
    /// [`FlatTable::get_hashed`].
    #[inline(always)]
    pub fn hash(key: K) -> u64 {
        key.hash()
    }

    /// Starts loading the home bucket of `hash` into the cache.
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        if let Some(b) = self.buckets.get(self.home(hash)) {
            super::dpdk::prefetch(b);
        }
    }

    #[inline(always)]
    pub fn get(&self, key: K) -> Option<V> {
        self.get_hashed(key, key.hash())
    }

    /// Lookup with the hash computed beforehand.
    #[inline(always)]
    pub fn get_hashed(&self, key: K, hash: u64) -> Option<V> {
        let mut b = self.home(hash);
        // At most half full: an empty slot always ends the probe; the
        // bound is only a guard.
        for _ in 0..self.buckets.len() {
            let bucket = self.buckets.get(b)?;
            for s in &bucket.slots {
                if s.key == key {
                    return Some(s.val);
                }
                if s.key == K::EMPTY {
                    return None;
                }
            }
            b = (b + 1) & self.mask;
        }
        None
    }

    /// Inserts or replaces; returns the previous value.
    pub fn insert(&mut self, key: K, val: V) -> Option<V> {
        debug_assert!(key != K::EMPTY);
        if 2 * (self.len + 1) > self.buckets.len() * SLOTS {
            self.grow();
        }
        let mut b = self.home(key.hash());
        loop {
            for s in self.buckets[b].slots.iter_mut() {
                if s.key == key {
                    return Some(std::mem::replace(&mut s.val, val));
                }
                if s.key == K::EMPTY {
                    *s = Slot { key, val };
                    self.len += 1;
                    return None;
                }
            }
            b = (b + 1) & self.mask;
        }
    }

    fn grow(&mut self) {
        let mut bigger = Self::with_buckets(self.buckets.len() * 2);
        for b in self.buckets.iter() {
            for s in &b.slots {
                if s.key != K::EMPTY {
                    bigger.insert(s.key, s.val);
                }
            }
        }
        *self = bigger;
    }
}

/// The tables the workers use, swapped whole. Workers on one NUMA socket
/// share one immutable copy (read-only lines are shared by every core's
/// cache at no cost); each further socket gets its own copy in its local
/// memory, as per-socket tables in DPDK applications do. At 1,000,000
/// services a copy is about half a gigabyte, so one per worker would not
/// fit the budget, and cloning it would be most of the publish time.
pub struct Published {
    version: AtomicU64,
    /// One per distinct socket.
    slots: Box<[ArcSwap<Tables>]>,
    /// Worker index → its socket's slot.
    slot_of: Box<[usize]>,
}

impl Published {
    /// `workers` workers, all on one socket: one shared copy.
    pub fn new(tables: Tables, workers: usize) -> Published {
        Self::on_sockets(tables, &vec![0; workers.max(1)])
    }

    /// One worker per entry of `sockets` (its NUMA socket): one copy per
    /// distinct socket.
    pub fn on_sockets(tables: Tables, sockets: &[i32]) -> Published {
        let mut distinct: Vec<i32> = Vec::new();
        let slot_of = sockets
            .iter()
            .map(|s| match distinct.iter().position(|d| d == s) {
                Some(i) => i,
                None => {
                    distinct.push(*s);
                    distinct.len() - 1
                }
            })
            .collect();
        let version = AtomicU64::new(tables.version);
        Published {
            version,
            slots: Self::copies(tables, distinct.len().max(1))
                .into_iter()
                .map(ArcSwap::new)
                .collect(),
            slot_of,
        }
    }

    /// `n` copies: the tables themselves, then clones.
    fn copies(tables: Tables, n: usize) -> Vec<Arc<Tables>> {
        let first = Arc::new(tables);
        let mut out: Vec<Arc<Tables>> = (1..n).map(|_| Arc::new((*first).clone())).collect();
        out.insert(0, first);
        out
    }

    /// The version most recently published.
    #[inline(always)]
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Worker `w`'s current tables.
    pub fn load(&self, w: usize) -> Arc<Tables> {
        self.slots[self.slot_of.get(w).copied().unwrap_or(0)].load_full()
    }

    /// The number of copies held (one per socket with workers).
    pub fn copies_held(&self) -> usize {
        self.slots.len()
    }

    /// Installs `tables` for every worker (one copy per socket), then bumps
    /// the version workers watch.
    pub fn publish(&self, tables: Tables) {
        let v = tables.version;
        for (s, t) in self
            .slots
            .iter()
            .zip(Self::copies(tables, self.slots.len()))
        {
            s.store(t);
        }
        self.version.store(v, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(iface: u16, mac: u8) -> Leg {
        Leg {
            iface,
            vlan: None,
            mac: NextMac::Static(MacAddr([2, 0, 0, 0, 0, mac])),
        }
    }

    fn device(name: &str, mode: DeviceMode, ip: Option<[u8; 4]>, mac: u8) -> Device {
        Device {
            name: name.into(),
            slot: 0,
            mode,
            ipv4: ip.map(Ipv4Addr::from),
            client_leg: leg(1, mac),
            server_leg: leg(1, mac),
        }
    }

    fn port(service: &str, ip: [u8; 4], port: u16, hops: &[DeviceId]) -> ServicePort {
        ServicePort {
            slot: 0,
            service: service.into(),
            ip: ip.into(),
            protocol: IpProtocol::Tcp,
            port,
            translate_to: None,
            dynamic: None,
            hops: hops
                .iter()
                .map(|&d| Hop {
                    device: d,
                    copies: Copies::default(),
                })
                .collect(),
            alerts_to: hops.len() - 1,
        }
    }

    fn build(devices: Vec<Device>, ports: Vec<ServicePort>) -> Result<Tables, TableError> {
        Tables::build(1, None, devices, ports, Arc::new(Neighbors::default()))
    }

    #[test]
    fn exact_ranges_and_nat_reverse_keys() {
        let mut web = port("a", [203, 0, 113, 10], 80, &[0]);
        web.translate_to = Some(8080);
        web.dynamic = Some((1025, 1125));
        let mut mail = port("a", [203, 0, 113, 10], 25, &[1]);
        mail.dynamic = Some((1126, 1300));
        let t = build(
            vec![
                device("web", DeviceMode::Nat, Some([10, 0, 0, 5]), 5),
                device("mail", DeviceMode::Alias, None, 6),
            ],
            vec![web, mail],
        )
        .unwrap();
        let svc = Ipv4Addr::new(203, 0, 113, 10);
        let fwd = |p: IpProtocol, port: u16| t.forward(p, svc, port).map(|h| h.index);
        assert_eq!(fwd(IpProtocol::Tcp, 80), Some(0));
        assert_eq!(fwd(IpProtocol::Udp, 80), None);
        assert_eq!(fwd(IpProtocol::Tcp, 1025), Some(0));
        assert_eq!(fwd(IpProtocol::Tcp, 1125), Some(0));
        assert_eq!(fwd(IpProtocol::Tcp, 1126), Some(1));
        assert_eq!(fwd(IpProtocol::Tcp, 1301), None);
        assert_eq!(fwd(IpProtocol::Tcp, 1024), None);
        let web = t.forward(IpProtocol::Tcp, svc, 80).unwrap();
        assert_eq!(t.hops(&web), &[0]);
        assert_eq!(web.translate_to(), Some(8080));
        assert!(t.is_dynamic(&web, 1100) && !t.is_dynamic(&web, 80) && !t.is_dynamic(&web, 1200));
        let nat = Ipv4Addr::new(10, 0, 0, 5);
        let rev = |ip: Ipv4Addr, port: u16| {
            t.reverse(IpProtocol::Tcp, ip, port)
                .map(|m| (m.port.index, m.from_end_side))
        };
        assert_eq!(rev(nat, 8080), Some((0, true)));
        assert_eq!(rev(svc, 80), Some((0, false)));
        assert_eq!(rev(nat, 1100), Some((0, true)));
        assert_eq!(t.reverse(IpProtocol::Tcp, nat, 80), None);
        assert_eq!(t.sender(1, None, MacAddr([2, 0, 0, 0, 0, 6])), Some(1));
        assert_eq!(t.sender(1, Some(4), MacAddr([2, 0, 0, 0, 0, 6])), None);
        assert_eq!(t.device_by_ip(nat), Some(0));
        assert!(t.is_service_ip(svc));
    }

    #[test]
    fn collisions_are_errors() {
        let d = || vec![device("web", DeviceMode::Alias, None, 5)];
        let e = build(
            d(),
            vec![
                port("a", [1, 1, 1, 1], 80, &[0]),
                port("b", [1, 1, 1, 1], 80, &[0]),
            ],
        );
        assert!(e.unwrap_err().0.contains("defined twice"));
        let mut a = port("a", [1, 1, 1, 1], 80, &[0]);
        a.dynamic = Some((2000, 3000));
        let mut b = port("a", [1, 1, 1, 1], 81, &[0]);
        b.dynamic = Some((3000, 4000));
        assert!(build(d(), vec![a, b]).unwrap_err().0.contains("overlap"));
    }

    /// A worker reading while the control side publishes sees whole
    /// versions only: every table it loads is consistent with its version.
    #[test]
    fn readers_never_see_half_a_version() {
        let svc = Ipv4Addr::new(203, 0, 113, 10);
        let version = |v: u64| {
            // Version v serves port 1000 + v, to device v % 2, and nothing else.
            let mut p = port(
                "a",
                [203, 0, 113, 10],
                1000 + v as u16,
                &[(v % 2) as DeviceId],
            );
            p.translate_to = Some(2000 + v as u16);
            let mut t = build(
                vec![
                    device("d0", DeviceMode::Alias, None, 1),
                    device("d1", DeviceMode::Alias, None, 2),
                ],
                vec![p],
            )
            .unwrap();
            t.version = v;
            t
        };
        let published = Arc::new(Published::new(version(1), 1));
        let reader = {
            let published = Arc::clone(&published);
            std::thread::spawn(move || {
                let mut seen = 0u64;
                while seen < 200 {
                    let t = published.load(0);
                    let v = t.version;
                    let p = t
                        .forward(IpProtocol::Tcp, svc, 1000 + v as u16)
                        .expect("the version's own port");
                    assert_eq!(t.hops(&p), &[(v % 2) as DeviceId]);
                    assert_eq!(p.translate_to(), Some(2000 + v as u16));
                    assert!(t
                        .forward(IpProtocol::Tcp, svc, 1000 + v as u16 + 1)
                        .is_none());
                    assert!(v >= seen, "versions only move forward");
                    seen = v;
                }
            })
        };
        for v in 2..=200 {
            published.publish(version(v));
        }
        reader.join().unwrap();
    }

    #[test]
    fn publish_swaps_every_worker() {
        let t = build(vec![device("web", DeviceMode::Alias, None, 5)], vec![]).unwrap();
        // Workers 0 and 2 on socket 0, worker 1 on socket 1.
        let p = Published::on_sockets(t.clone(), &[0, 1, 0]);
        assert_eq!(p.version(), 1);
        assert_eq!(p.copies_held(), 2);
        let mut t2 = t.clone();
        t2.version = 2;
        p.publish(t2);
        assert_eq!(p.version(), 2);
        for w in 0..3 {
            assert_eq!(p.load(w).version, 2);
        }
        assert!(Arc::ptr_eq(&p.load(0), &p.load(2)), "one copy per socket");
        assert!(
            !Arc::ptr_eq(&p.load(0), &p.load(1)),
            "each socket has its own copy"
        );
        let one = Published::new(t, 2);
        assert_eq!(one.copies_held(), 1);
        assert!(Arc::ptr_eq(&one.load(0), &one.load(1)));
    }
}
