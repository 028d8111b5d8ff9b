//! Zero-copy views of packet headers: Ethernet (with one 802.1Q tag), ARP,
//! IPv4, TCP, UDP and ICMPv4, plus the Internet checksum.
//!
//! Each header is a view `Packet<T: AsRef<[u8]>>` over a byte buffer that it
//! neither copies nor allocates. Getters need `AsRef<[u8]>`, setters
//! `AsMut<[u8]>`. Each header's byte layout is written once, in a small
//! `mod field` of byte ranges.
//!
//! # Contract
//!
//! The length (and the few field values that lengths depend on) are checked
//! once, at the door: `new_checked` (or `check_len` on a view built with
//! `new_unchecked`). After that check passes, **no accessor or setter can
//! panic**: every slice they take lies within the checked bounds, and no
//! setter can change a field that those bounds depend on (the one length
//! setter, `UdpPacket::set_len`, checks its value first). A view built with
//! `new_unchecked` and never checked gives no such promise: its accessors
//! may panic on a short buffer.
//!
//! Protocol numbers are enums with an `Unknown` variant, so reading a field
//! never fails. Nothing here knows about DPDK; the views work on any byte
//! slice, which is how they are tested.
//!
//! IPv6 is not parsed here yet, but the shared names leave room for it:
//! [`EtherType::Ipv6`] and [`IpProtocol`] (with `Icmpv6`) are common to both.

use core::fmt;

mod mac;
pub use mac::{MacAddr, ParseMacError};

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod tcp;
pub mod udp;

pub use ethernet::EtherType;
pub use ipv4::IpProtocol;

/// Why a buffer could not be viewed as a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the header, or than a length field in the
    /// header claims.
    Truncated,
    /// A field value makes the header invalid: IPv4 version other than 4,
    /// IHL below 5, total length below the header length, TCP data offset
    /// below 5, UDP length below 8, ARP hardware or protocol type or length
    /// other than Ethernet/IPv4.
    Malformed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated packet"),
            Error::Malformed => f.write_str("malformed header"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = core::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    #[test]
    fn error_display() {
        assert_eq!(Error::Truncated.to_string(), "truncated packet");
        assert_eq!(Error::Malformed.to_string(), "malformed header");
    }

    /// Reads every field of every view that `new_checked` accepts, and
    /// writes every writable one: none may panic, whatever the bytes.
    fn exercise(data: &[u8]) {
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let mut buf = data.to_vec();
        let _ = ethernet::parse_l2(data);
        if let Ok(mut p) = ethernet::EthernetFrame::new_checked(&mut buf[..]) {
            let _ = (p.dst_addr(), p.src_addr(), p.ethertype(), p.payload().len());
            p.set_ethertype(EtherType::Arp);
            p.payload_mut().fill(0);
        }
        let mut buf = data.to_vec();
        if let Ok(mut p) = ethernet::VlanHeader::new_checked(&mut buf[..]) {
            let _ = (
                p.pcp(),
                p.dei(),
                p.vlan_id(),
                p.inner_ethertype(),
                p.payload(),
            );
            p.set_vlan_id(7);
            p.payload_mut().fill(0);
        }
        let mut buf = data.to_vec();
        if let Ok(mut p) = arp::ArpPacket::new_checked(&mut buf[..]) {
            let _ = (
                p.operation(),
                p.sender_hardware_addr(),
                p.sender_protocol_addr(),
            );
            let _ = (p.target_hardware_addr(), p.target_protocol_addr());
            p.set_target_protocol_addr(a);
        }
        let mut buf = data.to_vec();
        if let Ok(mut p) = ipv4::Ipv4Packet::new_checked(&mut buf[..]) {
            let _ = (
                p.dscp_ecn(),
                p.ident(),
                p.dont_frag(),
                p.is_first_fragment(),
            );
            let _ = (p.ttl(), p.protocol(), p.src_addr(), p.dst_addr());
            let _ = (p.options(), p.payload(), p.verify_checksum());
            p.set_src_addr(a);
            p.fill_checksum();
            assert!(p.verify_checksum());
            p.payload_mut().fill(0);
        }
        let mut buf = data.to_vec();
        if let Ok(mut p) = tcp::TcpPacket::new_checked(&mut buf[..]) {
            let _ = (
                p.seq_number(),
                p.ack_number(),
                p.flags(),
                p.window(),
                p.urgent(),
            );
            let _ = (p.options(), p.payload());
            p.set_dst_port(80);
            p.fill_checksum(a, a);
            assert!(p.verify_checksum(a, a));
            p.payload_mut().fill(0);
        }
        let mut buf = data.to_vec();
        if let Ok(mut p) = udp::UdpPacket::new_checked(&mut buf[..]) {
            let _ = (p.src_port(), p.len(), p.payload(), p.verify_checksum(a, a));
            p.fill_checksum(a, a);
            assert!(p.verify_checksum(a, a));
            let _ = p.set_len(8);
            let _ = p.set_len(u16::MAX);
            p.payload_mut().fill(0);
        }
        let mut buf = data.to_vec();
        if let Ok(mut p) = icmp::Icmpv4Packet::new_checked(&mut buf[..]) {
            let _ = (
                p.msg_type(),
                p.code(),
                p.echo_ident(),
                p.echo_seq_no(),
                p.payload(),
            );
            p.fill_checksum();
            assert!(p.verify_checksum());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn no_panic_after_new_checked(data in prop::collection::vec(any::<u8>(), 0..80)) {
            exercise(&data);
        }

        /// Mostly-valid starts (IPv4 version/IHL, small length fields) reach
        /// the length arithmetic more often than uniform bytes do.
        #[test]
        fn no_panic_near_valid(ihl in 0u8..16, len in 0u16..90, data in prop::collection::vec(any::<u8>(), 0..80)) {
            let mut d = data;
            if d.len() >= 4 {
                d[0] = 0x40 | ihl;
                d[2..4].copy_from_slice(&len.to_be_bytes());
            }
            exercise(&d);
            if d.len() >= 6 {
                d[4..6].copy_from_slice(&len.to_be_bytes());
                let doff = 12 % d.len();
                d[doff] = ihl << 4;
            }
            exercise(&d);
        }
    }
}
