//! ARP for IPv4 over Ethernet (RFC 826): the only kind this view accepts.

use std::net::Ipv4Addr;

use super::{Error, MacAddr, Result};

/// The ARP opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    Request,
    Reply,
    Unknown(u16),
}

impl From<u16> for ArpOperation {
    #[inline]
    fn from(v: u16) -> Self {
        match v {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => ArpOperation::Unknown(other),
        }
    }
}

impl From<ArpOperation> for u16 {
    #[inline]
    fn from(op: ArpOperation) -> u16 {
        match op {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Unknown(v) => v,
        }
    }
}

mod field {
    use core::ops::Range;

    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Hardware type Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;
/// Protocol type IPv4 (its EtherType).
pub const PTYPE_IPV4: u16 = 0x0800;

/// A view of an Ethernet/IPv4 ARP packet (28 bytes). Bytes after the 28
/// (Ethernet padding) are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Length of an Ethernet/IPv4 ARP packet.
    pub const LEN: usize = field::TPA.end;

    /// Wraps `buffer` without checking it: accessors may panic until
    /// [`check_len`](Self::check_len) has passed.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` if shorter than 28 bytes; `Malformed` unless the hardware
    /// type is Ethernet (1) with length 6 and the protocol type IPv4
    /// (0x0800) with length 4.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < Self::LEN {
            return Err(Error::Truncated);
        }
        if self.hardware_type() != HTYPE_ETHERNET
            || self.protocol_type() != PTYPE_IPV4
            || self.hardware_len() != 6
            || self.protocol_len() != 4
        {
            return Err(Error::Malformed);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn get_u16(&self, r: core::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    #[inline]
    fn get_ipv4(&self, r: core::ops::Range<usize>) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[r];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    #[inline]
    pub fn hardware_type(&self) -> u16 {
        self.get_u16(field::HTYPE)
    }

    #[inline]
    pub fn protocol_type(&self) -> u16 {
        self.get_u16(field::PTYPE)
    }

    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    #[inline]
    pub fn operation(&self) -> ArpOperation {
        ArpOperation::from(self.get_u16(field::OPER))
    }

    #[inline]
    pub fn sender_hardware_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::SHA])
    }

    #[inline]
    pub fn sender_protocol_addr(&self) -> Ipv4Addr {
        self.get_ipv4(field::SPA)
    }

    #[inline]
    pub fn target_hardware_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::THA])
    }

    #[inline]
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        self.get_ipv4(field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    #[inline]
    fn set_u16(&mut self, r: core::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_hardware_type(&mut self, v: u16) {
        self.set_u16(field::HTYPE, v);
    }

    #[inline]
    pub fn set_protocol_type(&mut self, v: u16) {
        self.set_u16(field::PTYPE, v);
    }

    #[inline]
    pub fn set_hardware_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::HLEN] = v;
    }

    #[inline]
    pub fn set_protocol_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::PLEN] = v;
    }

    /// Sets the four fixed fields to Ethernet/IPv4: hardware type 1,
    /// protocol type 0x0800, lengths 6 and 4.
    #[inline]
    pub fn set_ethernet_ipv4(&mut self) {
        self.set_hardware_type(HTYPE_ETHERNET);
        self.set_protocol_type(PTYPE_IPV4);
        self.set_hardware_len(6);
        self.set_protocol_len(4);
    }

    #[inline]
    pub fn set_operation(&mut self, op: ArpOperation) {
        self.set_u16(field::OPER, u16::from(op));
    }

    #[inline]
    pub fn set_sender_hardware_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(addr.as_bytes());
    }

    #[inline]
    pub fn set_sender_protocol_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&addr.octets());
    }

    #[inline]
    pub fn set_target_hardware_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(addr.as_bytes());
    }

    #[inline]
    pub fn set_target_protocol_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&addr.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Who has 192.168.1.2? Tell 192.168.1.1 (02:00:00:00:00:01).
    const REQUEST: [u8; 28] = [
        0x00, 0x01, // htype Ethernet
        0x08, 0x00, // ptype IPv4
        0x06, 0x04, // hlen, plen
        0x00, 0x01, // request
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // sha
        0xc0, 0xa8, 0x01, 0x01, // spa
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tha
        0xc0, 0xa8, 0x01, 0x02, // tpa
    ];

    /// 192.168.1.2 is at 02:00:00:00:00:02.
    const REPLY: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, //
        0x00, 0x02, // reply
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // sha
        0xc0, 0xa8, 0x01, 0x02, // spa
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // tha
        0xc0, 0xa8, 0x01, 0x01, // tpa
    ];

    #[test]
    fn parse_fields() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(p.hardware_type(), 1);
        assert_eq!(p.protocol_type(), 0x0800);
        assert_eq!(p.hardware_len(), 6);
        assert_eq!(p.protocol_len(), 4);
        assert_eq!(p.operation(), ArpOperation::Request);
        assert_eq!(p.sender_hardware_addr(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(p.sender_protocol_addr(), Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(p.target_hardware_addr(), MacAddr::ZERO);
        assert_eq!(p.target_protocol_addr(), Ipv4Addr::new(192, 168, 1, 2));
        assert_eq!(p.into_inner(), &REQUEST[..]);
    }

    #[test]
    fn set_and_compare() {
        let mut buf = [0u8; 28];
        let mut p = ArpPacket::new_unchecked(&mut buf[..]);
        p.set_ethernet_ipv4();
        p.set_operation(ArpOperation::Reply);
        p.set_sender_hardware_addr(MacAddr([2, 0, 0, 0, 0, 2]));
        p.set_sender_protocol_addr(Ipv4Addr::new(192, 168, 1, 2));
        p.set_target_hardware_addr(MacAddr([2, 0, 0, 0, 0, 1]));
        p.set_target_protocol_addr(Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(buf, REPLY);

        // Turn the request into the reply in place, field by field.
        let mut buf = REQUEST;
        let mut p = ArpPacket::new_checked(&mut buf[..]).unwrap();
        let (sha, spa) = (p.sender_hardware_addr(), p.sender_protocol_addr());
        let tpa = p.target_protocol_addr();
        p.set_operation(ArpOperation::Reply);
        p.set_target_hardware_addr(sha);
        p.set_target_protocol_addr(spa);
        p.set_sender_hardware_addr(MacAddr([2, 0, 0, 0, 0, 2]));
        p.set_sender_protocol_addr(tpa);
        assert_eq!(buf, REPLY);

        let mut buf = REQUEST;
        let mut p = ArpPacket::new_unchecked(&mut buf[..]);
        p.set_hardware_type(6);
        p.set_protocol_type(0x86dd);
        p.set_hardware_len(8);
        p.set_protocol_len(16);
        assert_eq!(&buf[..6], &[0x00, 0x06, 0x86, 0xdd, 0x08, 0x10]);
    }

    #[test]
    fn operations() {
        for (v, op) in [
            (1, ArpOperation::Request),
            (2, ArpOperation::Reply),
            (3, ArpOperation::Unknown(3)),
        ] {
            assert_eq!(ArpOperation::from(v), op);
            assert_eq!(u16::from(op), v);
        }
        let mut buf = REQUEST;
        buf[7] = 9;
        let p = ArpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.operation(), ArpOperation::Unknown(9));
    }

    #[test]
    fn truncated() {
        for len in 0..ArpPacket::<&[u8]>::LEN {
            assert_eq!(
                ArpPacket::new_checked(&REQUEST[..len]).unwrap_err(),
                Error::Truncated,
                "len {len}"
            );
        }
    }

    #[test]
    fn padding_ignored() {
        let mut buf = [0xee; 46];
        buf[..28].copy_from_slice(&REQUEST);
        let p = ArpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.target_protocol_addr(), Ipv4Addr::new(192, 168, 1, 2));
    }

    #[test]
    fn malformed() {
        for (at, v) in [(1, 6u8), (0, 1), (2, 0x86), (3, 0x01), (4, 8), (5, 16)] {
            let mut buf = REQUEST;
            buf[at] = v;
            assert_eq!(
                ArpPacket::new_checked(&buf[..]).unwrap_err(),
                Error::Malformed,
                "byte {at} = {v:#x}"
            );
        }
        // Truncation is reported before the field values are looked at.
        let mut buf = REQUEST;
        buf[1] = 6;
        assert_eq!(
            ArpPacket::new_checked(&buf[..20]).unwrap_err(),
            Error::Truncated
        );
    }
}
