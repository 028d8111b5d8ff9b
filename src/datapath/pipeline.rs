//! The pure per-packet core: looks at a frame received on an interface and
//! decides its [`Verdict`] against the compiled [`Tables`]. It knows nothing
//! of DPDK and is tested with byte fixtures.
//!
//! Steering (docs/sequencing.md has the full contract): the sender is known
//! by (interface, VLAN, source MAC); a packet whose destination is a service
//! IP and port goes forward to the next hop of that port's sequence; a packet
//! whose source is one goes back the other way, to the client side at the
//! end. Only the Ethernet header changes, except toward and from an end
//! device in NAT mode (destination/source address) or with port translation.
//! The worker applies the decision: [`apply_rewrite`] for L3/L4, then a new
//! Ethernet header written by [`write_l2`].

use std::net::Ipv4Addr;

use super::counters::DropReason;
use super::packet::arp::{ArpOperation, ArpPacket};
use super::packet::checksum;
use super::packet::ethernet::{self, EthernetFrame};
use super::packet::ipv4::Ipv4Packet;
use super::packet::tcp::TcpPacket;
use super::packet::udp::UdpPacket;
use super::packet::{Error as PacketError, EtherType, IpProtocol, MacAddr};
use super::tables::{Copies, DeviceId, DeviceMode, Leg, NextMac, PortHot, ReturnMatch, Tables};
use crate::acl::{Action, Decision, PacketFields, SetRef};

/// What happens to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Rewrite L3/L4, then send to `to` with a new Ethernet header.
    Steer(Steer),
    /// Send the frame, already rewritten in place, back out of `iface`
    /// (an ARP reply).
    Bounce { iface: u16 },
    /// Used up by seqd itself (an ARP reply it learnt from).
    Consumed,
    /// Denied by the interface's ACL (dropped as `acl_deny`).
    Denied(AclHit),
    /// Free it and count it under `reason`.
    Drop(DropReason),
}

/// Which service counter a steered packet adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Entering its sequence from the client side (or a proxy).
    In(u32),
    /// Leaving toward the client side.
    Out(u32),
    /// Between hops.
    Transit,
}

/// Which ACL entry decided a packet, for its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclHit {
    /// The interface has no ACL.
    None,
    /// A rule (its id).
    Rule(u32),
    /// A rule set's default action (its default slot).
    Default(u32),
}

/// A steering decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steer {
    pub to: Leg,
    /// The device `to` belongs to (None: the gateway).
    pub to_device: Option<DeviceId>,
    /// The device the packet came from (None: a client).
    pub from_device: Option<DeviceId>,
    /// Length of the Ethernet header as received (14, or 18 when tagged).
    pub l3_offset: u8,
    pub rewrite: Rewrite,
    /// Passive devices that get a copy, with the leg each is reached on.
    pub copies: Copies,
    /// Copy what arrived (return traffic from a hop) rather than what is sent.
    pub copies_before_rewrite: bool,
    pub count: Count,
    /// The ACL entry that allowed it.
    pub acl: AclHit,
}

/// L3/L4 fields to change; None leaves a field as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rewrite {
    pub src_ip: Option<Ipv4Addr>,
    pub dst_ip: Option<Ipv4Addr>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
}

impl Rewrite {
    #[inline]
    pub fn is_empty(&self) -> bool {
        *self == Rewrite::default()
    }
}

/// What the datapath knows about one of seqd's own interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interface {
    pub mac: MacAddr,
    pub ipv4: Ipv4Addr,
}

impl From<PacketError> for DropReason {
    fn from(e: PacketError) -> Self {
        match e {
            PacketError::Truncated => DropReason::Truncated,
            PacketError::Malformed => DropReason::Malformed,
        }
    }
}

/// The L3/L4 fields classification needs, read once per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Key {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: IpProtocol,
    /// Source and destination ports for TCP/UDP first fragments; None for other
    /// protocols and for non-first fragments (which carry no L4 header).
    pub ports: Option<(u16, u16)>,
    /// A non-first fragment.
    pub later_fragment: bool,
    /// TCP flags (0 for other protocols).
    pub tcp_flags: u8,
}

/// Parses and validates the IPv4 packet and its TCP/UDP header.
#[inline]
pub fn ipv4_key(l3: &[u8]) -> Result<Ipv4Key, DropReason> {
    let ip = Ipv4Packet::new_checked(l3)?;
    let protocol = ip.protocol();
    let later_fragment = ip.frag_offset() != 0;
    let mut tcp_flags = 0;
    let ports = if later_fragment {
        None
    } else {
        match protocol {
            IpProtocol::Tcp => {
                let t = TcpPacket::new_checked(ip.payload())?;
                tcp_flags = t.flags().bits();
                Some((t.src_port(), t.dst_port()))
            }
            // A first fragment holds only part of the datagram its UDP length
            // counts: check the header alone.
            IpProtocol::Udp if ip.more_frags() => {
                let u = UdpPacket::new_unchecked(ip.payload());
                if ip.payload().len() < UdpPacket::<&[u8]>::HEADER_LEN {
                    return Err(DropReason::Truncated);
                }
                Some((u.src_port(), u.dst_port()))
            }
            IpProtocol::Udp => {
                let u = UdpPacket::new_checked(ip.payload())?;
                Some((u.src_port(), u.dst_port()))
            }
            _ => None,
        }
    };
    Ok(Ipv4Key {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        protocol,
        ports,
        later_fragment,
        tcp_flags,
    })
}

/// Applies `rw` to an IPv4 packet already validated by [`ipv4_key`],
/// updating the IPv4 and TCP/UDP checksums incrementally (RFC 1624). A UDP
/// checksum of 0 (none) stays 0.
#[inline]
pub fn apply_rewrite(l3: &mut [u8], rw: &Rewrite) {
    if rw.is_empty() {
        return;
    }
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut *l3) else {
        return;
    };
    let (old_src, old_dst) = (ip.src_addr(), ip.dst_addr());
    let mut csum = ip.checksum();
    if let Some(a) = rw.src_ip {
        csum = checksum::update_addr(csum, old_src, a);
        ip.set_src_addr(a);
    }
    if let Some(a) = rw.dst_ip {
        csum = checksum::update_addr(csum, old_dst, a);
        ip.set_dst_addr(a);
    }
    ip.set_checksum(csum);
    if ip.frag_offset() != 0 {
        return;
    }
    // Raw offsets: a first fragment's L4 header is complete, but its UDP
    // length covers the whole datagram; ipv4_key checked the header is here.
    let (csum_at, udp) = match ip.protocol() {
        IpProtocol::Tcp => (16, false),
        IpProtocol::Udp => (6, true),
        _ => return,
    };
    let l4 = ip.payload_mut();
    if l4.len() < csum_at + 2 {
        return;
    }
    let get = |b: &[u8], at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    let old_c = get(l4, csum_at);
    let mut c = old_c;
    if let Some(a) = rw.src_ip {
        c = checksum::update_addr(c, old_src, a);
    }
    if let Some(a) = rw.dst_ip {
        c = checksum::update_addr(c, old_dst, a);
    }
    for (at, new) in [(0, rw.src_port), (2, rw.dst_port)] {
        if let Some(p) = new {
            c = checksum::update_u16(c, get(l4, at), p);
            l4[at..at + 2].copy_from_slice(&p.to_be_bytes());
        }
    }
    // A UDP checksum of 0 means none was sent: leave it so.
    if udp {
        if old_c != 0 {
            l4[csum_at..csum_at + 2].copy_from_slice(&checksum::udp_nonzero(c).to_be_bytes());
        }
    } else {
        l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// Length of the Ethernet header for a leg.
#[inline(always)]
pub fn l2_len(vlan: Option<u16>) -> usize {
    if vlan.is_some() {
        18
    } else {
        14
    }
}

/// Writes an Ethernet header (with an 802.1Q tag, PCP 0, when `vlan` is set)
/// for an IPv4 payload at the start of `frame`, which must hold
/// [`l2_len`]`(vlan)` bytes of header.
#[inline]
pub fn write_l2(
    frame: &mut [u8],
    dst: MacAddr,
    src: MacAddr,
    vlan: Option<u16>,
    ethertype: EtherType,
) {
    frame[0..6].copy_from_slice(&dst.0);
    frame[6..12].copy_from_slice(&src.0);
    let et = u16::from(ethertype).to_be_bytes();
    match vlan {
        Some(v) => {
            frame[12..14].copy_from_slice(&u16::from(EtherType::Vlan).to_be_bytes());
            frame[14..16].copy_from_slice(&(v & 0x0fff).to_be_bytes());
            frame[16..18].copy_from_slice(&et);
        }
        None => frame[12..14].copy_from_slice(&et),
    }
}

/// Writes an ARP request from `iface` for `target` (42 bytes, 46 tagged).
pub fn write_arp_request(frame: &mut [u8], iface: &Interface, vlan: Option<u16>, target: Ipv4Addr) {
    let l2 = l2_len(vlan);
    write_l2(frame, MacAddr::BROADCAST, iface.mac, vlan, EtherType::Arp);
    let mut arp = ArpPacket::new_unchecked(&mut frame[l2..l2 + ArpPacket::<&[u8]>::LEN]);
    arp.set_ethernet_ipv4();
    arp.set_operation(ArpOperation::Request);
    arp.set_sender_hardware_addr(iface.mac);
    arp.set_sender_protocol_addr(iface.ipv4);
    arp.set_target_hardware_addr(MacAddr::ZERO);
    arp.set_target_protocol_addr(target);
}

/// Length of an ARP request frame on a leg.
pub fn arp_request_len(vlan: Option<u16>) -> usize {
    l2_len(vlan) + ArpPacket::<&[u8]>::LEN
}

/// seqd's interfaces: the part of the datapath fixed at start.
#[derive(Debug, Clone)]
pub struct Datapath {
    interfaces: Box<[Interface]>,
}

impl Datapath {
    pub fn new(interfaces: Vec<Interface>) -> Self {
        Datapath {
            interfaces: interfaces.into_boxed_slice(),
        }
    }

    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    #[inline]
    pub fn interface(&self, i: u16) -> Option<&Interface> {
        self.interfaces.get(i as usize)
    }

    /// Decides what to do with `frame`, received on interface `in_iface`.
    /// `now_tsc` timestamps what ARP learns. One packet through the same
    /// three passes a burst takes ([`Datapath::prepare`],
    /// [`Datapath::lookup_burst`], [`Datapath::finish`]).
    #[inline]
    pub fn process(&self, t: &Tables, in_iface: u16, frame: &mut [u8], now_tsc: u64) -> Verdict {
        let mut p = [self.prepare(t, in_iface, frame)];
        self.lookup_burst(t, in_iface, &mut p);
        self.finish(t, in_iface, frame, &p[0], now_tsc)
    }

    /// Pass 1 of a burst: reads the headers (the frame is not changed),
    /// hashes the packet's keys and prefetches their table buckets.
    #[inline]
    pub fn prepare(&self, t: &Tables, in_iface: u16, frame: &[u8]) -> Prepared {
        match self.prepare_checked(t, in_iface, frame) {
            Ok(p) => p,
            Err(reason) => Prepared {
                stage: Stage::Drop(reason),
                ..Prepared::default()
            },
        }
    }

    #[inline(always)]
    fn prepare_checked(
        &self,
        t: &Tables,
        in_iface: u16,
        frame: &[u8],
    ) -> Result<Prepared, DropReason> {
        let iface = self.interface(in_iface).ok_or(DropReason::Malformed)?;
        let l2 = ethernet::parse_l2(frame)?;
        let eth = EthernetFrame::new_unchecked(frame);
        let (dst_mac, src_mac) = (eth.dst_addr(), eth.src_addr());
        // Ports run promiscuous (and af_packet sees everything): filter here.
        if dst_mac != iface.mac && !dst_mac.is_broadcast() {
            return Err(DropReason::NotOurMac);
        }
        if l2.vlan.is_some() && !t.has_devices_on(in_iface, l2.vlan) {
            return Err(DropReason::UnknownVlan);
        }
        let mut p = Prepared {
            vlan: l2.vlan,
            l3_offset: l2.l3_offset as u8,
            src_mac,
            ..Prepared::default()
        };
        match l2.ethertype {
            EtherType::Arp => p.stage = Stage::Arp,
            EtherType::Ipv4 => {
                let key = ipv4_key(&frame[l2.l3_offset..])?;
                if let Some((sport, dport)) = key.ports {
                    (p.fwd_hash, p.rev_hash) =
                        t.prefetch_flow(key.protocol, key.src, sport, key.dst, dport);
                }
                if let Some(acl) = t.acl() {
                    acl.prefetch(in_iface, u32::from(key.dst));
                }
                p.key = key;
                p.stage = Stage::Ipv4;
            }
            _ => return Err(DropReason::UnsupportedEthertype),
        }
        Ok(p)
    }

    /// Pass 2 of a burst: the sender, source verification, the service
    /// port and the ACL of every packet. Lookups only: nothing is counted
    /// or changed.
    #[inline]
    pub fn lookup_burst(&self, t: &Tables, in_iface: u16, burst: &mut [Prepared]) {
        self.lookup_burst_with(t, in_iface, burst, |_| {});
    }

    /// [`Datapath::lookup_burst`], calling `touch` with the counter slot of
    /// each service port found and each ACL rule that decided, as soon as
    /// it is known: the worker prefetches those counters then, a burst's
    /// worth of work before it adds to them.
    #[inline]
    pub fn lookup_burst_with(
        &self,
        t: &Tables,
        in_iface: u16,
        burst: &mut [Prepared],
        mut touch: impl FnMut(Touch),
    ) {
        let acl = t.acl().filter(|a| a.has_rules(in_iface));
        // An ARP packet may teach a device's MAC (learnt when it is
        // finished, in order): the packets after it in the burst look their
        // sender up then, in `finish`, as they would one by one.
        let mut after_arp = false;
        for chunk in burst.chunks_mut(ACL_CHUNK) {
            // Each packet's customer set, found (and its rules' loads
            // started) in the first loop, matched in the second.
            let mut sets = [SetRef::default(); ACL_CHUNK];
            for (p, set) in chunk.iter_mut().zip(sets.iter_mut()) {
                if p.stage == Stage::Arp {
                    after_arp = true;
                }
                if p.stage != Stage::Ipv4 {
                    continue;
                }
                if after_arp {
                    p.deferred = true;
                    continue;
                }
                let key = p.key;
                let sender = t.sender(in_iface, p.vlan, p.src_mac);
                let from_client = sender.is_none()
                    && p.vlan.is_none()
                    && t.client.is_some_and(|c| c.iface == in_iface);
                // Off the client side, only known devices may send (source
                // verification), whatever the packet is for.
                if sender.is_none() && !from_client && t.client.is_some() {
                    p.stage = Stage::Drop(DropReason::SourceNotVerified);
                    continue;
                }
                p.sender = sender;
                p.from_client = from_client;
                if let Some((sport, dport)) = key.ports {
                    p.found = match t.forward_hashed(key.protocol, key.dst, dport, p.fwd_hash) {
                        Some(hot) => Found::Forward(hot),
                        None => t
                            .reverse_hashed(key.protocol, key.src, sport, p.rev_hash)
                            .map_or(Found::None, Found::Reverse),
                    };
                    if let Found::Forward(h) | Found::Reverse(ReturnMatch { port: h, .. }) =
                        &p.found
                    {
                        t.prefetch_hops(h);
                        touch(Touch::Service(h.slot));
                    }
                }
                // The interface's ACL, before the packet is steered; the
                // service IP is the destination.
                if let Some(acl) = acl {
                    *set = acl.locate(in_iface, u32::from(key.dst));
                }
            }
            if let Some(acl) = acl {
                for (p, set) in chunk.iter_mut().zip(&sets) {
                    if p.stage == Stage::Ipv4 && !p.deferred {
                        p.acl = acl_hit(acl.decide(in_iface, *set, &acl_fields(&p.key)));
                        if let Some(r) = p.acl_rule() {
                            touch(Touch::AclRule(r));
                        }
                    }
                }
            }
        }
    }

    /// Pass 3 of a burst: the verdict of one packet, from what the first
    /// two passes found. Changes the frame only for ARP replies.
    #[inline]
    pub fn finish(
        &self,
        t: &Tables,
        in_iface: u16,
        frame: &mut [u8],
        p: &Prepared,
        now_tsc: u64,
    ) -> Verdict {
        match p.stage {
            Stage::Drop(reason) => Verdict::Drop(reason),
            Stage::Arp => {
                let Some(iface) = self.interface(in_iface) else {
                    return Verdict::Drop(DropReason::Malformed);
                };
                let l3 = p.l3_offset as usize;
                match self.arp(t, in_iface, iface, p.vlan, frame, l3, now_tsc) {
                    Ok(v) => v,
                    Err(reason) => Verdict::Drop(reason),
                }
            }
            Stage::Ipv4 if p.deferred => {
                let mut q = [Prepared {
                    deferred: false,
                    ..*p
                }];
                self.lookup_burst(t, in_iface, &mut q);
                self.finish(t, in_iface, frame, &q[0], now_tsc)
            }
            Stage::Ipv4 => {
                let acl = match p.acl {
                    Ok(hit) => hit,
                    Err(hit) => return Verdict::Denied(hit),
                };
                match steer(t, p, p.l3_offset) {
                    Ok(mut s) => {
                        s.acl = acl;
                        Verdict::Steer(s)
                    }
                    Err(reason) => Verdict::Drop(reason),
                }
            }
        }
    }

    /// Answers requests for the interface's address (and service IPs on the
    /// client side) in place; learns replies for addresses seqd resolves.
    #[allow(clippy::too_many_arguments)]
    fn arp(
        &self,
        t: &Tables,
        in_iface: u16,
        iface: &Interface,
        vlan: Option<u16>,
        frame: &mut [u8],
        l3: usize,
        now_tsc: u64,
    ) -> Result<Verdict, DropReason> {
        let (eth, rest) = frame.split_at_mut(l3);
        let mut arp = ArpPacket::new_checked(&mut rest[..])?;
        let sender_ip = arp.sender_protocol_addr();
        let sender_mac = arp.sender_hardware_addr();
        // Learn from any ARP about an address seqd resolves (RFC 826 merge).
        let learnt = match t.neighbors.slot_of(in_iface, vlan, sender_ip) {
            Some(slot) if sender_mac.is_unicast() => {
                t.neighbors.learn(slot, sender_mac, now_tsc);
                true
            }
            _ => false,
        };
        match arp.operation() {
            ArpOperation::Request => {
                let target = arp.target_protocol_addr();
                let ours = target == iface.ipv4
                    || (vlan.is_none()
                        && t.client.is_some_and(|c| c.iface == in_iface)
                        && t.is_service_ip(target));
                if !ours {
                    return if learnt {
                        Ok(Verdict::Consumed)
                    } else {
                        Err(DropReason::ArpNotOurs)
                    };
                }
                arp.set_operation(ArpOperation::Reply);
                arp.set_target_hardware_addr(sender_mac);
                arp.set_target_protocol_addr(sender_ip);
                arp.set_sender_hardware_addr(iface.mac);
                arp.set_sender_protocol_addr(target);
                // Whatever padding followed the request must not leak into the reply.
                rest[ArpPacket::<&[u8]>::LEN..].fill(0);
                let mut eth = EthernetFrame::new_unchecked(eth);
                eth.set_dst_addr(sender_mac);
                eth.set_src_addr(iface.mac);
                Ok(Verdict::Bounce { iface: in_iface })
            }
            _ if learnt => Ok(Verdict::Consumed),
            _ => Err(DropReason::ArpIgnored),
        }
    }
}

/// Packets whose ACL lookups are made together (the ACL's own burst).
const ACL_CHUNK: usize = crate::acl::BURST;

/// The fields the ACL matches on.
#[inline(always)]
fn acl_fields(key: &Ipv4Key) -> PacketFields {
    let (src_port, dst_port) = key.ports.unwrap_or((0, 0));
    PacketFields {
        src: u32::from(key.src),
        protocol: u8::from(key.protocol),
        src_port,
        dst_port,
        has_ports: key.ports.is_some(),
        tcp_flags: key.tcp_flags,
    }
}

/// An ACL decision as Ok with the entry that allowed the packet, Err with
/// the one that denied it.
#[inline(always)]
fn acl_hit(d: Option<Decision>) -> Result<AclHit, AclHit> {
    let Some(d) = d else {
        return Ok(AclHit::None);
    };
    let hit = match (d.rule, d.default_tag) {
        (Some(id), _) => AclHit::Rule(id),
        (None, Some(slot)) => AclHit::Default(slot),
        (None, None) => AclHit::None,
    };
    match d.action {
        Action::Allow => Ok(hit),
        Action::Deny => Err(hit),
    }
}

/// A counter slot a packet will add to, reported by
/// [`Datapath::lookup_burst_with`] as soon as it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touch {
    Service(u32),
    AclRule(u32),
}

/// What a packet's keys matched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Found {
    #[default]
    None,
    Forward(PortHot),
    Reverse(ReturnMatch),
}

/// How far a packet got in [`Datapath::prepare`] and
/// [`Datapath::lookup_burst`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Stage {
    /// Decided: dropped.
    Drop(DropReason),
    /// ARP: decided in [`Datapath::finish`] (it may answer in place).
    Arp,
    #[default]
    Ipv4,
}

/// One packet between the passes of a burst: its headers, the hashes of
/// its keys, then what they matched. Plain data, kept in a per-worker
/// array.
#[derive(Debug, Clone, Copy)]
pub struct Prepared {
    stage: Stage,
    vlan: Option<u16>,
    l3_offset: u8,
    src_mac: MacAddr,
    key: Ipv4Key,
    fwd_hash: u64,
    rev_hash: u64,
    sender: Option<DeviceId>,
    from_client: bool,
    found: Found,
    acl: Result<AclHit, AclHit>,
    /// After an ARP packet in its burst: looked up in `finish`.
    deferred: bool,
}

impl Default for Prepared {
    fn default() -> Self {
        Prepared {
            stage: Stage::Ipv4,
            vlan: None,
            l3_offset: 0,
            src_mac: MacAddr::ZERO,
            key: Ipv4Key {
                src: Ipv4Addr::UNSPECIFIED,
                dst: Ipv4Addr::UNSPECIFIED,
                protocol: IpProtocol::Tcp,
                ports: None,
                later_fragment: false,
                tcp_flags: 0,
            },
            fwd_hash: 0,
            rev_hash: 0,
            sender: None,
            from_client: false,
            found: Found::None,
            acl: Ok(AclHit::None),
            deferred: false,
        }
    }
}

impl Prepared {
    /// The ACL rule that decided the packet, if any.
    #[inline(always)]
    pub fn acl_rule(&self) -> Option<u32> {
        match self.acl {
            Ok(AclHit::Rule(r)) | Err(AclHit::Rule(r)) => Some(r),
            _ => None,
        }
    }
}

/// The steering decision for an IPv4 packet (see the module doc).
#[inline]
fn steer(t: &Tables, pre: &Prepared, l3_offset: u8) -> Result<Steer, DropReason> {
    let (key, sender, from_client) = (pre.key, pre.sender, pre.from_client);
    let Some((sport, dport)) = key.ports else {
        return Err(if key.later_fragment {
            DropReason::FragmentNoPort
        } else {
            DropReason::NoService
        });
    };
    if let Found::Forward(p) = pre.found {
        let hops = t.hops(&p);
        let (hop, count) = match sender {
            None if from_client => (0, Count::In(p.slot)),
            None => return Err(DropReason::SourceNotVerified),
            Some(d) => match hops.iter().position(|&h| h == d) {
                Some(k) if k + 1 < hops.len() => (k + 1, Count::Transit),
                // The end device talking to its own service forward: a loop.
                Some(_) => return Err(DropReason::SourceNotVerified),
                None if t.is_passive(&p, d) => {
                    let mut s = to_hop(
                        t,
                        &p,
                        hops,
                        p.alerts_to as usize,
                        key,
                        dport,
                        l3_offset,
                        Count::Transit,
                    );
                    s.from_device = Some(d);
                    s.copies = Copies::default();
                    return Ok(s);
                }
                // A device outside this sequence asking for the service: a proxy.
                None => (0, Count::In(p.slot)),
            },
        };
        let mut s = to_hop(t, &p, hops, hop, key, dport, l3_offset, count);
        s.from_device = sender;
        return Ok(s);
    }
    if let Found::Reverse(m) = pre.found {
        let p = m.port;
        let hops = t.hops(&p);
        let d = sender.ok_or(DropReason::SourceNotVerified)?;
        let k = hops
            .iter()
            .position(|&h| h == d)
            .ok_or(DropReason::SourceNotVerified)?;
        let end = hops.len() - 1;
        if m.from_end_side && k != end {
            return Err(DropReason::SourceNotVerified);
        }
        let mut rewrite = Rewrite::default();
        if k == end {
            let dev = &t.devices[d as usize];
            if dev.mode == DeviceMode::Nat && key.src != p.ip {
                rewrite.src_ip = Some(p.ip);
            }
            if let Some(tp) = p.translate_to() {
                if sport == tp && !t.is_dynamic(&p, sport) {
                    rewrite.src_port = Some(p.port);
                }
            }
        }
        let (to, to_device, count) = if k == 0 {
            client_side(t, key.dst, p.slot)?
        } else {
            let dev = hops[k - 1];
            (
                t.devices[dev as usize].server_leg,
                Some(dev),
                Count::Transit,
            )
        };
        return Ok(Steer {
            to,
            to_device,
            from_device: Some(d),
            l3_offset,
            rewrite,
            copies: t.copies(&p, k),
            copies_before_rewrite: true,
            count,
            acl: AclHit::None,
        });
    }
    Err(DropReason::NoService)
}

/// Forward to hop `j` of `p`: its client leg, with NAT and port translation
/// when it is the end device.
#[allow(clippy::too_many_arguments)]
#[inline]
fn to_hop(
    t: &Tables,
    p: &PortHot,
    hops: &[DeviceId],
    j: usize,
    key: Ipv4Key,
    dport: u16,
    l3_offset: u8,
    count: Count,
) -> Steer {
    let device = hops[j];
    let dev = &t.devices[device as usize];
    let mut rewrite = Rewrite::default();
    if j + 1 == hops.len() {
        if dev.mode == DeviceMode::Nat {
            rewrite.dst_ip = dev.ipv4.filter(|&a| a != key.dst);
        }
        if let Some(tp) = p.translate_to() {
            if dport == p.port {
                rewrite.dst_port = Some(tp);
            }
        }
    }
    Steer {
        to: dev.client_leg,
        to_device: Some(device),
        from_device: None,
        l3_offset,
        rewrite,
        copies: t.copies(p, j),
        copies_before_rewrite: false,
        count,
        acl: AclHit::None,
    }
}

/// Toward the client side: to the device that asked, if the destination is a
/// device (a proxy), else to the gateway.
#[inline]
fn client_side(
    t: &Tables,
    dst: Ipv4Addr,
    port: u32,
) -> Result<(Leg, Option<DeviceId>, Count), DropReason> {
    if let Some(d) = t.device_by_ip(dst) {
        return Ok((t.devices[d as usize].client_leg, Some(d), Count::Out(port)));
    }
    let c = t.client.ok_or(DropReason::NoService)?;
    Ok((
        Leg {
            iface: c.iface,
            vlan: None,
            mac: c.gateway,
        },
        None,
        Count::Out(port),
    ))
}

/// Convenience for tests and tools: the MAC a leg resolves to now.
pub fn leg_mac(t: &Tables, leg: &Leg) -> Option<MacAddr> {
    match leg.mac {
        NextMac::Static(m) => Some(m),
        NextMac::Neighbor(s) => t.neighbors.mac(s),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::datapath::neighbor::Neighbors;
    use crate::datapath::tables::{ClientSide, Device, Hop, ServicePort};

    const OUR_MAC: [u8; 6] = [0x02, 0x70, 0x63, 0x61, 0x70, 0x00];
    const DEV_IF_MAC: [u8; 6] = [0x02, 0x70, 0x63, 0x61, 0x70, 0x01];
    const ASKER_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    const FW_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0, 0, 0x10];
    const WEB_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0, 0, 0x30];
    const GW_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0, 0, 0xfe];
    const SVC: [u8; 4] = [203, 0, 113, 10];
    const WEB_IP: [u8; 4] = [198, 51, 100, 30];
    const CLIENT_IP: [u8; 4] = [192, 0, 2, 99];

    fn dp() -> Datapath {
        Datapath::new(vec![
            Interface {
                mac: MacAddr(OUR_MAC),
                ipv4: Ipv4Addr::new(192, 0, 2, 1),
            },
            Interface {
                mac: MacAddr(DEV_IF_MAC),
                ipv4: Ipv4Addr::new(198, 51, 100, 1),
            },
        ])
    }

    fn leg(mac: [u8; 6]) -> Leg {
        Leg {
            iface: 1,
            vlan: None,
            mac: NextMac::Static(MacAddr(mac)),
        }
    }

    fn no_tables() -> Tables {
        Tables::build(0, None, vec![], vec![], Arc::new(Neighbors::default())).unwrap()
    }

    /// fw (alias) then web (nat, port 80 -> 8080) for SVC:80/tcp.
    fn chain() -> Tables {
        let devices = vec![
            Device {
                name: "fw".into(),
                slot: 0,
                mode: DeviceMode::Alias,
                ipv4: None,
                client_leg: leg(FW_MAC),
                server_leg: leg(FW_MAC),
            },
            Device {
                name: "web".into(),
                slot: 1,
                mode: DeviceMode::Nat,
                ipv4: Some(WEB_IP.into()),
                client_leg: leg(WEB_MAC),
                server_leg: leg(WEB_MAC),
            },
        ];
        let ports = vec![ServicePort {
            slot: 0,
            service: "acme".into(),
            ip: SVC.into(),
            protocol: IpProtocol::Tcp,
            port: 80,
            translate_to: Some(8080),
            dynamic: None,
            hops: vec![
                Hop {
                    device: 0,
                    copies: Copies::default(),
                },
                Hop {
                    device: 1,
                    copies: Copies::default(),
                },
            ],
            alerts_to: 1,
        }];
        let client = ClientSide {
            iface: 0,
            gateway: NextMac::Static(MacAddr(GW_MAC)),
        };
        Tables::build(
            1,
            Some(client),
            devices,
            ports,
            Arc::new(Neighbors::default()),
        )
        .unwrap()
    }

    /// Hand-made ARP frame: who-has `target` tell 192.0.2.99.
    fn arp_frame(op: u8, target: [u8; 4], pad: usize) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&ASKER_MAC);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, op]);
        f.extend_from_slice(&ASKER_MAC);
        f.extend_from_slice(&CLIENT_IP);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target);
        f.extend(std::iter::repeat_n(0xaa, pad));
        f
    }

    /// An Ethernet/IPv4/TCP frame built by etherparse (independent of seqd).
    fn tcp(
        dst_mac: [u8; 6],
        src_mac: [u8; 6],
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
    ) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac)
            .ipv4(src, dst, 64)
            .tcp(sport, dport, 1000, 4096)
            .syn();
        let mut out = Vec::new();
        b.write(&mut out, b"hello").unwrap();
        out
    }

    #[test]
    fn answers_arp_for_own_address() {
        let mut f = arp_frame(1, [192, 0, 2, 1], 18);
        assert_eq!(
            dp().process(&no_tables(), 0, &mut f, 0),
            Verdict::Bounce { iface: 0 }
        );
        let mut want = ASKER_MAC.to_vec();
        want.extend_from_slice(&OUR_MAC);
        want.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
        want.extend_from_slice(&OUR_MAC);
        want.extend_from_slice(&[192, 0, 2, 1]);
        want.extend_from_slice(&ASKER_MAC);
        want.extend_from_slice(&CLIENT_IP);
        want.extend_from_slice(&[0; 18]);
        assert_eq!(f, want);
    }

    #[test]
    fn answers_arp_for_service_ips_only_on_the_client_side() {
        let t = chain();
        let mut f = arp_frame(1, SVC, 0);
        assert_eq!(dp().process(&t, 0, &mut f, 0), Verdict::Bounce { iface: 0 });
        assert_eq!(
            &f[28..32],
            &SVC,
            "sender protocol address is the service IP"
        );
        let mut f = arp_frame(1, SVC, 0);
        assert_eq!(
            dp().process(&t, 1, &mut f, 0),
            Verdict::Drop(DropReason::ArpNotOurs)
        );
    }

    #[test]
    fn learns_arp_replies_for_wanted_neighbors_only() {
        let n = Arc::new(Neighbors::new(vec![
            crate::datapath::neighbor::NeighborKey {
                iface: 0,
                vlan: None,
                ip: CLIENT_IP.into(),
            },
        ]));
        let t = Tables::build(0, None, vec![], vec![], n).unwrap();
        let mut reply = arp_frame(2, [192, 0, 2, 1], 0);
        reply[..6].copy_from_slice(&OUR_MAC);
        assert_eq!(dp().process(&t, 0, &mut reply, 5), Verdict::Consumed);
        assert_eq!(t.neighbors.mac(0), Some(MacAddr(ASKER_MAC)));
        // The same reply on the other interface is not for a wanted neighbor.
        let mut reply = arp_frame(2, [198, 51, 100, 1], 0);
        reply[..6].copy_from_slice(&DEV_IF_MAC);
        assert_eq!(
            dp().process(&t, 1, &mut reply, 5),
            Verdict::Drop(DropReason::ArpIgnored)
        );
    }

    #[test]
    fn every_truncation_is_dropped_not_panicking() {
        let full = tcp(OUR_MAC, GW_MAC, CLIENT_IP, 40000, SVC, 80);
        for n in 0..full.len() {
            let mut f = full[..n].to_vec();
            let v = dp().process(&chain(), 0, &mut f, 0);
            assert_eq!(v, Verdict::Drop(DropReason::Truncated), "len {n}");
        }
    }

    #[test]
    fn steers_forward_through_the_chain_and_back() {
        let t = chain();
        let d = dp();
        // Client -> fw: Ethernet only, counted in.
        let mut f = tcp(OUR_MAC, GW_MAC, CLIENT_IP, 40000, SVC, 80);
        let Verdict::Steer(s) = d.process(&t, 0, &mut f, 0) else {
            panic!()
        };
        assert_eq!(
            (s.to, s.to_device, s.count, s.rewrite),
            (leg(FW_MAC), Some(0), Count::In(0), Rewrite::default())
        );
        // fw -> web: NAT and port translation at the end.
        let mut f = tcp(DEV_IF_MAC, FW_MAC, CLIENT_IP, 40000, SVC, 80);
        let Verdict::Steer(s) = d.process(&t, 1, &mut f, 0) else {
            panic!()
        };
        assert_eq!(s.to, leg(WEB_MAC));
        assert_eq!(s.rewrite.dst_ip, Some(WEB_IP.into()));
        assert_eq!(s.rewrite.dst_port, Some(8080));
        // web's reply -> fw with the service address restored.
        let mut f = tcp(DEV_IF_MAC, WEB_MAC, WEB_IP, 8080, CLIENT_IP, 40000);
        let Verdict::Steer(s) = d.process(&t, 1, &mut f, 0) else {
            panic!()
        };
        assert_eq!(s.to, leg(FW_MAC));
        assert_eq!(
            (s.rewrite.src_ip, s.rewrite.src_port),
            (Some(SVC.into()), Some(80))
        );
        // fw's reply -> the gateway, counted out.
        let mut f = tcp(DEV_IF_MAC, FW_MAC, SVC, 80, CLIENT_IP, 40000);
        let Verdict::Steer(s) = d.process(&t, 1, &mut f, 0) else {
            panic!()
        };
        assert_eq!(s.to.iface, 0);
        assert_eq!(s.to.mac, NextMac::Static(MacAddr(GW_MAC)));
        assert_eq!(s.count, Count::Out(0));
    }

    #[test]
    fn source_verification() {
        let t = chain();
        let d = dp();
        // web (the end) sending forward to its own service.
        let mut f = tcp(DEV_IF_MAC, WEB_MAC, WEB_IP, 1234, SVC, 80);
        assert_eq!(
            d.process(&t, 1, &mut f, 0),
            Verdict::Drop(DropReason::SourceNotVerified)
        );
        // An unknown MAC on the device interface.
        let mut f = tcp(DEV_IF_MAC, ASKER_MAC, CLIENT_IP, 40000, SVC, 80);
        assert_eq!(
            d.process(&t, 1, &mut f, 0),
            Verdict::Drop(DropReason::SourceNotVerified)
        );
        // A client posing as the service.
        let mut f = tcp(OUR_MAC, GW_MAC, SVC, 80, CLIENT_IP, 40000);
        assert_eq!(
            d.process(&t, 0, &mut f, 0),
            Verdict::Drop(DropReason::SourceNotVerified)
        );
        // The firewall sending a reply as if it were the NAT server.
        let mut f = tcp(DEV_IF_MAC, FW_MAC, WEB_IP, 8080, CLIENT_IP, 40000);
        assert_eq!(
            d.process(&t, 1, &mut f, 0),
            Verdict::Drop(DropReason::SourceNotVerified)
        );
        // Nothing for this port.
        let mut f = tcp(OUR_MAC, GW_MAC, CLIENT_IP, 40000, SVC, 81);
        assert_eq!(
            d.process(&t, 0, &mut f, 0),
            Verdict::Drop(DropReason::NoService)
        );
    }

    #[test]
    fn frames_for_other_macs_and_vlans() {
        let t = chain();
        let mut f = tcp(OUR_MAC, GW_MAC, CLIENT_IP, 40000, SVC, 80);
        f[5] ^= 1;
        assert_eq!(
            dp().process(&t, 0, &mut f, 0),
            Verdict::Drop(DropReason::NotOurMac)
        );
        let mut f = tcp(OUR_MAC, GW_MAC, CLIENT_IP, 40000, SVC, 80);
        f[..6].copy_from_slice(&[0x01, 0x00, 0x5e, 0, 0, 1]);
        assert_eq!(
            dp().process(&t, 0, &mut f, 0),
            Verdict::Drop(DropReason::NotOurMac)
        );
        let f = tcp(OUR_MAC, GW_MAC, CLIENT_IP, 40000, SVC, 80);
        let mut tagged = f[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
        tagged.extend_from_slice(&f[12..]);
        assert_eq!(
            dp().process(&t, 0, &mut tagged, 0),
            Verdict::Drop(DropReason::UnknownVlan)
        );
        let mut v6 = f.clone();
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(
            dp().process(&t, 0, &mut v6, 0),
            Verdict::Drop(DropReason::UnsupportedEthertype)
        );
    }

    #[test]
    fn write_l2_tagged_and_untagged() {
        let mut h = [0u8; 18];
        write_l2(
            &mut h,
            MacAddr(WEB_MAC),
            MacAddr(DEV_IF_MAC),
            Some(100),
            EtherType::Ipv4,
        );
        let mut want = WEB_MAC.to_vec();
        want.extend_from_slice(&DEV_IF_MAC);
        want.extend_from_slice(&[0x81, 0x00, 0x00, 100, 0x08, 0x00]);
        assert_eq!(h.to_vec(), want);
        let mut h = [0u8; 14];
        write_l2(
            &mut h,
            MacAddr(WEB_MAC),
            MacAddr(DEV_IF_MAC),
            None,
            EtherType::Arp,
        );
        assert_eq!(&h[12..], &[0x08, 0x06]);
    }

    /// NAT and port rewrites, applied incrementally, equal a packet built
    /// from scratch (full checksums by etherparse) over random packets.
    #[test]
    fn rewrite_equals_full_recompute() {
        use proptest::prelude::*;
        let mut runner = proptest::test_runner::TestRunner::default();
        let strategy = (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..64),
        );
        runner
            .run(
                &strategy,
                |(src, dst, new_dst, sport, dport, new_dport, udp, payload)| {
                    let build = |d: [u8; 4], dp: u16| {
                        let b =
                            etherparse::PacketBuilder::ethernet2([0; 6], [0; 6]).ipv4(src, d, 64);
                        let mut out = Vec::new();
                        if udp {
                            b.udp(sport, dp).write(&mut out, &payload).unwrap();
                        } else {
                            b.tcp(sport, dp, 7, 1024)
                                .ack(99)
                                .write(&mut out, &payload)
                                .unwrap();
                        }
                        out
                    };
                    let mut got = build(dst, dport);
                    apply_rewrite(
                        &mut got[14..],
                        &Rewrite {
                            dst_ip: Some(new_dst.into()),
                            dst_port: Some(new_dport),
                            ..Rewrite::default()
                        },
                    );
                    prop_assert_eq!(got, build(new_dst, new_dport));
                    Ok(())
                },
            )
            .unwrap();
    }

    #[test]
    fn udp_without_checksum_stays_without() {
        let b = etherparse::PacketBuilder::ethernet2([0; 6], [0; 6])
            .ipv4(CLIENT_IP, SVC, 64)
            .udp(5000, 53);
        let mut f = Vec::new();
        b.write(&mut f, b"q").unwrap();
        f[14 + 20 + 6] = 0;
        f[14 + 20 + 7] = 0;
        apply_rewrite(
            &mut f[14..],
            &Rewrite {
                dst_ip: Some(WEB_IP.into()),
                dst_port: Some(5353),
                ..Rewrite::default()
            },
        );
        assert_eq!(&f[14 + 20 + 6..14 + 20 + 8], &[0, 0]);
        assert_eq!(&f[14 + 16..14 + 20], &WEB_IP);
        assert_eq!(&f[14 + 22..14 + 24], &5353u16.to_be_bytes());
        let ip = etherparse::Ipv4HeaderSlice::from_slice(&f[14..]).unwrap();
        assert_eq!(ip.header_checksum(), ip.to_header().calc_header_checksum());
    }
}
