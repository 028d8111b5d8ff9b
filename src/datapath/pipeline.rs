//! The pure per-packet core: looks at a frame received on an interface and
//! decides its [`Verdict`], rewriting the frame in place when it is sent on.
//! It knows nothing of DPDK and is tested with byte fixtures.
//!
//! Until service sequencing lands, seqd answers ARP requests for its
//! interfaces' own addresses and drops everything else with a counted reason.

use std::net::Ipv4Addr;

use super::counters::DropReason;
use super::packet::arp::{ArpOperation, ArpPacket};
use super::packet::ethernet::{self, EthernetFrame};
use super::packet::ipv4::Ipv4Packet;
use super::packet::tcp::TcpPacket;
use super::packet::udp::UdpPacket;
use super::packet::{Error as PacketError, EtherType, IpProtocol, MacAddr};

/// What happens to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the (rewritten) frame out of interface `iface`.
    Forward { iface: u16 },
    /// Free it and count it under `reason`.
    Drop(DropReason),
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
}

/// Parses and validates the IPv4 packet and its TCP/UDP header.
pub fn ipv4_key(l3: &[u8]) -> Result<Ipv4Key, DropReason> {
    let ip = Ipv4Packet::new_checked(l3)?;
    let protocol = ip.protocol();
    let ports = if ip.frag_offset() != 0 {
        None
    } else {
        match protocol {
            IpProtocol::Tcp => {
                let t = TcpPacket::new_checked(ip.payload())?;
                Some((t.src_port(), t.dst_port()))
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
    })
}

/// The compiled, immutable view of seqd's interfaces the workers share.
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

    /// Decides what to do with `frame`, received on interface `in_iface`.
    #[inline]
    pub fn process(&self, in_iface: u16, frame: &mut [u8]) -> Verdict {
        match self.classify(in_iface, frame) {
            Ok(v) => v,
            Err(reason) => Verdict::Drop(reason),
        }
    }

    fn classify(&self, in_iface: u16, frame: &mut [u8]) -> Result<Verdict, DropReason> {
        let iface = self
            .interfaces
            .get(in_iface as usize)
            .ok_or(DropReason::Malformed)?;
        let l2 = ethernet::parse_l2(frame)?;
        // Ports run promiscuous (and af_packet sees everything): filter here.
        let dst = EthernetFrame::new_unchecked(&*frame).dst_addr();
        if dst != iface.mac && !dst.is_broadcast() {
            return Err(DropReason::NotOurMac);
        }
        if l2.vlan.is_some() {
            return Err(DropReason::UnknownVlan);
        }
        match l2.ethertype {
            EtherType::Arp => self.arp(in_iface, iface, frame, l2.l3_offset),
            EtherType::Ipv4 => {
                let _key = ipv4_key(&frame[l2.l3_offset..])?;
                Err(DropReason::NoService)
            }
            _ => Err(DropReason::UnsupportedEthertype),
        }
    }

    /// Turns an ARP request for the interface's address into the reply, in
    /// place, and sends it back out of the same interface.
    fn arp(
        &self,
        in_iface: u16,
        iface: &Interface,
        frame: &mut [u8],
        l3: usize,
    ) -> Result<Verdict, DropReason> {
        let (eth, rest) = frame.split_at_mut(l3);
        let mut arp = ArpPacket::new_checked(&mut rest[..])?;
        if arp.operation() != ArpOperation::Request {
            return Err(DropReason::ArpIgnored);
        }
        if arp.target_protocol_addr() != iface.ipv4 {
            return Err(DropReason::ArpNotOurs);
        }
        let asker_mac = arp.sender_hardware_addr();
        let asker_ip = arp.sender_protocol_addr();
        arp.set_operation(ArpOperation::Reply);
        arp.set_target_hardware_addr(asker_mac);
        arp.set_target_protocol_addr(asker_ip);
        arp.set_sender_hardware_addr(iface.mac);
        arp.set_sender_protocol_addr(iface.ipv4);
        // Whatever padding followed the request must not leak into the reply.
        rest[ArpPacket::<&[u8]>::LEN..].fill(0);
        let mut eth = EthernetFrame::new_unchecked(eth);
        eth.set_dst_addr(asker_mac);
        eth.set_src_addr(iface.mac);
        Ok(Verdict::Forward { iface: in_iface })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUR_MAC: [u8; 6] = [0x02, 0x70, 0x63, 0x61, 0x70, 0x00];
    const ASKER_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    fn dp() -> Datapath {
        Datapath::new(vec![
            Interface {
                mac: MacAddr(OUR_MAC),
                ipv4: Ipv4Addr::new(192, 0, 2, 1),
            },
            Interface {
                mac: MacAddr([2, 0, 0, 0, 0, 2]),
                ipv4: Ipv4Addr::new(198, 51, 100, 1),
            },
        ])
    }

    /// Hand-made ARP frame: who-has `target` tell 192.0.2.99.
    fn arp_frame(op: u8, target: [u8; 4], pad: usize) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&ASKER_MAC);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, op]);
        f.extend_from_slice(&ASKER_MAC);
        f.extend_from_slice(&[192, 0, 2, 99]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target);
        f.extend(std::iter::repeat_n(0xaa, pad));
        f
    }

    #[test]
    fn answers_arp_for_own_address() {
        let mut f = arp_frame(1, [192, 0, 2, 1], 18);
        assert_eq!(dp().process(0, &mut f), Verdict::Forward { iface: 0 });
        let mut want = ASKER_MAC.to_vec();
        want.extend_from_slice(&OUR_MAC);
        want.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
        want.extend_from_slice(&OUR_MAC);
        want.extend_from_slice(&[192, 0, 2, 1]);
        want.extend_from_slice(&ASKER_MAC);
        want.extend_from_slice(&[192, 0, 2, 99]);
        want.extend_from_slice(&[0; 18]);
        assert_eq!(f, want);
    }

    #[test]
    fn arp_for_other_interface_address_is_not_ours() {
        // 198.51.100.1 belongs to interface 1, not the one it arrived on.
        let mut f = arp_frame(1, [198, 51, 100, 1], 0);
        assert_eq!(
            dp().process(0, &mut f),
            Verdict::Drop(DropReason::ArpNotOurs)
        );
        let mut f = arp_frame(2, [192, 0, 2, 1], 0);
        assert_eq!(
            dp().process(0, &mut f),
            Verdict::Drop(DropReason::ArpIgnored)
        );
    }

    #[test]
    fn every_truncation_is_dropped_not_panicking() {
        let full = arp_frame(1, [192, 0, 2, 1], 0);
        for n in 0..full.len() {
            let mut f = full[..n].to_vec();
            assert_eq!(
                dp().process(0, &mut f),
                Verdict::Drop(DropReason::Truncated),
                "len {n}"
            );
        }
    }

    fn ipv4_udp(dst: [u8; 4]) -> Vec<u8> {
        let mut f = OUR_MAC.to_vec();
        f.extend_from_slice(&ASKER_MAC);
        f.extend_from_slice(&[0x08, 0x00]);
        // 20-byte IPv4 header (checksum not checked here) + 8-byte UDP + 4 data.
        f.extend_from_slice(&[0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 99]);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, 12, 0, 0, 1, 2, 3, 4]);
        f
    }

    #[test]
    fn ipv4_without_service_is_dropped() {
        let mut f = ipv4_udp([203, 0, 113, 7]);
        assert_eq!(
            dp().process(0, &mut f),
            Verdict::Drop(DropReason::NoService)
        );
        let k = ipv4_key(&f[14..]).unwrap();
        assert_eq!(k.ports, Some((12345, 53)));
        assert_eq!(k.protocol, IpProtocol::Udp);
    }

    #[test]
    fn frames_for_other_macs_are_dropped() {
        let mut f = ipv4_udp([192, 0, 2, 1]);
        f[5] ^= 1;
        assert_eq!(
            dp().process(0, &mut f),
            Verdict::Drop(DropReason::NotOurMac)
        );
        let mut f = ipv4_udp([192, 0, 2, 1]);
        f[..6].copy_from_slice(&[0x01, 0x00, 0x5e, 0, 0, 1]);
        assert_eq!(
            dp().process(0, &mut f),
            Verdict::Drop(DropReason::NotOurMac)
        );
        // The same frame on interface 1 (another MAC) is not ours either.
        let mut f = ipv4_udp([192, 0, 2, 1]);
        assert_eq!(
            dp().process(1, &mut f),
            Verdict::Drop(DropReason::NotOurMac)
        );
    }

    #[test]
    fn truncated_and_malformed_ipv4() {
        let full = ipv4_udp([203, 0, 113, 7]);
        // Cut inside the UDP header: the IP total length no longer fits.
        let mut f = full[..14 + 20 + 4].to_vec();
        assert_eq!(
            dp().process(0, &mut f),
            Verdict::Drop(DropReason::Truncated)
        );
        let mut f = full.clone();
        f[14] = 0x65; // version 6 in an IPv4 ethertype
        assert_eq!(
            dp().process(0, &mut f),
            Verdict::Drop(DropReason::Malformed)
        );
        let mut f = full.clone();
        f[14] = 0x44; // IHL 4
        assert_eq!(
            dp().process(0, &mut f),
            Verdict::Drop(DropReason::Malformed)
        );
    }

    #[test]
    fn non_first_fragment_has_no_ports() {
        let mut f = ipv4_udp([203, 0, 113, 7]);
        f[14 + 6] = 0x00;
        f[14 + 7] = 0x03; // fragment offset 3 (x 8 bytes)
        assert_eq!(ipv4_key(&f[14..]).unwrap().ports, None);
    }

    #[test]
    fn other_frames() {
        let mut f = ipv4_udp([203, 0, 113, 7]);
        f[12] = 0x86;
        f[13] = 0xdd;
        assert_eq!(
            dp().process(0, &mut f),
            Verdict::Drop(DropReason::UnsupportedEthertype)
        );
        let mut tagged = f[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a, 0x08, 0x00]);
        tagged.extend_from_slice(&ipv4_udp([203, 0, 113, 7])[14..]);
        assert_eq!(
            dp().process(0, &mut tagged),
            Verdict::Drop(DropReason::UnknownVlan)
        );
    }
}
