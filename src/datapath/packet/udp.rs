//! UDP datagram headers (RFC 768).

use std::net::Ipv4Addr;

use super::{checksum, Error, IpProtocol, Result};

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
    pub const PAYLOAD: usize = 8;
}

/// A view of a UDP datagram.
///
/// After [`check_len`](Self::check_len): `8 <= len() <= buffer length`.
/// Bytes past `len()` are excluded from the payload and the checksum.
///
/// A checksum field of `0` means the sender computed none: it verifies as
/// correct, and a rewrite must leave it `0` (see [`checksum`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Length of the UDP header.
    pub const HEADER_LEN: usize = field::PAYLOAD;

    /// Wraps `buffer` without checking it: accessors may panic until
    /// [`check_len`](Self::check_len) has passed.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` if shorter than 8 bytes; `Malformed` if the length field
    /// is below 8; `Truncated` if the buffer is shorter than the length
    /// field.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let buf_len = self.buffer.as_ref().len();
        if buf_len < Self::HEADER_LEN {
            return Err(Error::Truncated);
        }
        Self::check_len_field(self.len(), buf_len)
    }

    #[inline]
    fn check_len_field(len: u16, buf_len: usize) -> Result<()> {
        if usize::from(len) < Self::HEADER_LEN {
            Err(Error::Malformed)
        } else if usize::from(len) > buf_len {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
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
    pub fn src_port(&self) -> u16 {
        self.get_u16(field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.get_u16(field::DST_PORT)
    }

    /// The length field: header plus payload, in bytes.
    #[inline]
    #[allow(clippy::len_without_is_empty)] // never empty: a checked len() is >= 8
    pub fn len(&self) -> u16 {
        self.get_u16(field::LENGTH)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.get_u16(field::CHECKSUM)
    }

    /// The payload, `8..len()`.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..usize::from(self.len())]
    }

    #[inline]
    fn compute_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let len = self.len();
        let data = &self.buffer.as_ref()[..usize::from(len)];
        let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::Udp, len);
        checksum::fold(pseudo + checksum::sum(data))
    }

    /// True if the checksum over the pseudo-header and `len()` bytes is
    /// correct, or if the checksum field is `0` (none was computed).
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0 || self.compute_v4(src, dst) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    #[inline]
    fn set_u16(&mut self, r: core::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the source port; the checksum is not updated (see
    /// [`checksum::update_u16`] and [`checksum::udp_nonzero`]).
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        self.set_u16(field::SRC_PORT, port);
    }

    /// Sets the destination port; the checksum is not updated.
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        self.set_u16(field::DST_PORT, port);
    }

    /// Sets the length field, after checking it like
    /// [`check_len`](Self::check_len) does (`Malformed` below 8,
    /// `Truncated` beyond the buffer), so the view stays valid. On error
    /// nothing is written.
    #[inline]
    pub fn set_len(&mut self, len: u16) -> Result<()> {
        Self::check_len_field(len, self.buffer.as_ref().len())?;
        self.set_u16(field::LENGTH, len);
        Ok(())
    }

    /// Sets the checksum field; `0` means "no checksum".
    #[inline]
    pub fn set_checksum(&mut self, csum: u16) {
        self.set_u16(field::CHECKSUM, csum);
    }

    /// Computes the checksum over the pseudo-header and `len()` bytes and
    /// stores it; a computed `0` is stored as `0xffff` (RFC 768).
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let csum = checksum::udp_nonzero(self.compute_v4(src, dst));
        self.set_checksum(csum);
    }

    /// The payload, `8..len()`, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[field::PAYLOAD..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 199);

    /// 0x1234 -> 53, length 12, checksum 0x674e for SRC -> DST.
    const DATAGRAM: [u8; 12] = [
        0x12, 0x34, 0x00, 0x35, // ports
        0x00, 0x0c, 0x67, 0x4e, // length, checksum
        0x01, 0x02, 0x03, 0x04, // payload
    ];

    /// Source port 0x1235, checksum 0x674d.
    const REWRITTEN: [u8; 12] = [
        0x12, 0x35, 0x00, 0x35, //
        0x00, 0x0c, 0x67, 0x4d, //
        0x01, 0x02, 0x03, 0x04,
    ];

    #[test]
    fn parse_fields() {
        let p = UdpPacket::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!(p.src_port(), 0x1234);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 12);
        assert_eq!(p.checksum(), 0x674e);
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(SRC, Ipv4Addr::new(192, 168, 0, 198)));
        assert_eq!(p.into_inner(), &DATAGRAM[..]);
    }

    #[test]
    fn set_and_compare() {
        let mut b = DATAGRAM;
        let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
        p.set_src_port(0x1235);
        assert!(!p.verify_checksum(SRC, DST));
        p.fill_checksum(SRC, DST);
        assert_eq!(b, REWRITTEN);

        // Built from zeros.
        let mut b = [0u8; 12];
        let mut p = UdpPacket::new_unchecked(&mut b[..]);
        p.set_src_port(0x1235);
        p.set_dst_port(53);
        p.set_len(12).unwrap();
        p.payload_mut().copy_from_slice(&[1, 2, 3, 4]);
        p.set_checksum(0x674d);
        assert_eq!(b, REWRITTEN);
    }

    #[test]
    fn zero_checksum_means_none() {
        let mut b = DATAGRAM;
        b[6] = 0;
        b[7] = 0;
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum(SRC, DST));
        assert!(p.verify_checksum(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Choose the payload's first word so that the checksum computes to 0.
        let mut b = DATAGRAM;
        b[8] = 0;
        b[9] = 0;
        let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
        p.fill_checksum(SRC, DST);
        let word = p.checksum();
        p.payload_mut()[..2].copy_from_slice(&word.to_be_bytes());
        p.fill_checksum(SRC, DST);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(SRC, DST));
    }

    #[test]
    fn odd_length() {
        // 5 payload bytes, checksum 0x624c.
        let b = [
            0x12, 0x34, 0x00, 0x35, 0x00, 0x0d, 0x62, 0x4c, 0x01, 0x02, 0x03, 0x04, 0x05,
        ];
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum(SRC, DST));
        let mut c = b;
        let mut p = UdpPacket::new_checked(&mut c[..]).unwrap();
        p.fill_checksum(SRC, DST);
        assert_eq!(c, b);
    }

    #[test]
    fn truncated() {
        for len in 0..DATAGRAM.len() {
            assert_eq!(
                UdpPacket::new_checked(&DATAGRAM[..len]).unwrap_err(),
                Error::Truncated,
                "len {len}"
            );
        }
    }

    #[test]
    fn overlong_excluded() {
        let mut b = [0xeeu8; 20];
        b[..12].copy_from_slice(&DATAGRAM);
        let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert!(p.verify_checksum(SRC, DST));
        p.set_checksum(0x1111);
        p.fill_checksum(SRC, DST);
        assert_eq!(p.checksum(), 0x674e);
        assert_eq!(p.payload_mut().len(), 4);
    }

    #[test]
    fn malformed() {
        for len in 0..8u16 {
            let mut b = DATAGRAM;
            b[4..6].copy_from_slice(&len.to_be_bytes());
            assert_eq!(
                UdpPacket::new_checked(&b[..]).unwrap_err(),
                Error::Malformed
            );
        }
        // Length 8: header only.
        let mut b = DATAGRAM;
        b[4..6].copy_from_slice(&8u16.to_be_bytes());
        assert_eq!(
            UdpPacket::new_checked(&b[..]).unwrap().payload(),
            &[] as &[u8]
        );
    }

    #[test]
    fn set_len_keeps_view_valid() {
        let mut b = DATAGRAM;
        let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.set_len(7), Err(Error::Malformed));
        assert_eq!(p.set_len(13), Err(Error::Truncated));
        assert_eq!(p.len(), 12);
        p.set_len(10).unwrap();
        assert_eq!(p.payload(), &[1, 2]);
        assert_eq!(&b[4..6], &[0, 10]);
    }
}
