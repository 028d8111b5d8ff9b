//! TCP segment headers (RFC 9293).

use core::fmt;
use core::ops::BitOr;
use std::net::Ipv4Addr;

use super::{checksum, Error, IpProtocol, Result};

/// The TCP flags byte (byte 13; the NS bit of byte 12 is not included).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);
    pub const URG: TcpFlags = TcpFlags(0x20);
    pub const ECE: TcpFlags = TcpFlags(0x40);
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// True if every flag set in `other` is set in `self`.
    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    #[inline]
    pub const fn bits(self) -> u8 {
        self.0
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;

    #[inline]
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for TcpFlags {
    /// Names the set flags, e.g. `TcpFlags(SYN|ACK)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        f.write_str("TcpFlags(")?;
        let mut first = true;
        for (bit, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        f.write_str(")")
    }
}

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
    /// End of the fixed header, start of the options.
    pub const OPTIONS: usize = 20;
}

/// A view of a TCP segment.
///
/// The buffer must be exactly the segment (the IPv4 payload): TCP has no
/// length field, so every byte after the header is payload, and the
/// checksum covers the whole buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Length of the header without options.
    pub const MIN_HEADER_LEN: usize = field::OPTIONS;

    /// Wraps `buffer` without checking it: accessors may panic until
    /// [`check_len`](Self::check_len) has passed.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` if shorter than 20 bytes or than the data offset says;
    /// `Malformed` if the data offset is below 5.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < field::OPTIONS {
            return Err(Error::Truncated);
        }
        let hlen = self.header_len();
        if hlen < field::OPTIONS {
            return Err(Error::Malformed);
        }
        if len < hlen {
            return Err(Error::Truncated);
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
    fn get_u32(&self, r: core::ops::Range<usize>) -> u32 {
        let b = &self.buffer.as_ref()[r];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        self.get_u16(field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.get_u16(field::DST_PORT)
    }

    #[inline]
    pub fn seq_number(&self) -> u32 {
        self.get_u32(field::SEQ_NUM)
    }

    #[inline]
    pub fn ack_number(&self) -> u32 {
        self.get_u32(field::ACK_NUM)
    }

    /// Header length in bytes (data offset × 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    #[inline]
    pub fn window(&self) -> u16 {
        self.get_u16(field::WINDOW)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.get_u16(field::CHECKSUM)
    }

    #[inline]
    pub fn urgent(&self) -> u16 {
        self.get_u16(field::URGENT)
    }

    /// The option bytes, `20..header_len()`.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    /// Everything after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    #[inline]
    fn compute(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let data = self.buffer.as_ref();
        // An IPv4 segment is at most 65515 bytes, so the length fits.
        let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::Tcp, data.len() as u16);
        checksum::fold(pseudo + checksum::sum(data))
    }

    /// True if the checksum over the pseudo-header and the whole buffer is
    /// correct.
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.compute(src, dst) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the source port; the checksum is not updated (see
    /// [`checksum::update_u16`]).
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&port.to_be_bytes());
    }

    /// Sets the destination port; the checksum is not updated.
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&port.to_be_bytes());
    }

    #[inline]
    pub fn set_checksum(&mut self, csum: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&csum.to_be_bytes());
    }

    /// Computes the checksum over the pseudo-header and the whole buffer and
    /// stores it.
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let csum = self.compute(src, dst);
        self.set_checksum(csum);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 199);

    /// 12345 -> 80, SYN|ACK, data offset 6 with an MSS option, payload "hi",
    /// checksum 0x62eb for SRC -> DST.
    const SEGMENT: [u8; 26] = [
        0x30, 0x39, 0x00, 0x50, // ports
        0x01, 0x02, 0x03, 0x04, // seq
        0x0a, 0x0b, 0x0c, 0x0d, // ack
        0x60, 0x12, 0xff, 0xff, // data offset 6, SYN|ACK, window
        0x62, 0xeb, 0x00, 0x00, // checksum, urgent
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        b'h', b'i',
    ];

    /// The same with ports 12346 -> 8080, checksum 0x43aa.
    const REWRITTEN: [u8; 26] = [
        0x30, 0x3a, 0x1f, 0x90, //
        0x01, 0x02, 0x03, 0x04, //
        0x0a, 0x0b, 0x0c, 0x0d, //
        0x60, 0x12, 0xff, 0xff, //
        0x43, 0xaa, 0x00, 0x00, //
        0x02, 0x04, 0x05, 0xb4, //
        b'h', b'i',
    ];

    #[test]
    fn parse_fields() {
        let p = TcpPacket::new_checked(&SEGMENT[..]).unwrap();
        assert_eq!(p.src_port(), 12345);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.seq_number(), 0x0102_0304);
        assert_eq!(p.ack_number(), 0x0a0b_0c0d);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.flags(), TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!(p.window(), 0xffff);
        assert_eq!(p.checksum(), 0x62eb);
        assert_eq!(p.urgent(), 0);
        assert_eq!(p.options(), &[2, 4, 5, 0xb4]);
        assert_eq!(p.payload(), b"hi");
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(SRC, Ipv4Addr::new(192, 168, 0, 198)));
        assert_eq!(p.into_inner(), &SEGMENT[..]);
    }

    #[test]
    fn set_and_compare() {
        let mut b = SEGMENT;
        let mut p = TcpPacket::new_checked(&mut b[..]).unwrap();
        p.set_src_port(12346);
        p.set_dst_port(8080);
        assert!(!p.verify_checksum(SRC, DST));
        p.fill_checksum(SRC, DST);
        assert_eq!(b, REWRITTEN);

        // Incrementally.
        let mut b = SEGMENT;
        let mut p = TcpPacket::new_checked(&mut b[..]).unwrap();
        let mut c = checksum::update_u16(p.checksum(), p.src_port(), 12346);
        c = checksum::update_u16(c, p.dst_port(), 8080);
        p.set_src_port(12346);
        p.set_dst_port(8080);
        p.set_checksum(c);
        assert_eq!(b, REWRITTEN);

        let mut b = SEGMENT;
        let mut p = TcpPacket::new_checked(&mut b[..]).unwrap();
        p.payload_mut().copy_from_slice(b"yo");
        assert_eq!(&b[24..], b"yo");
    }

    #[test]
    fn fill_checksum_odd_length_and_empty_payload() {
        let mut b = SEGMENT;
        let mut p = TcpPacket::new_checked(&mut b[..25]).unwrap();
        p.fill_checksum(SRC, DST);
        assert!(p.verify_checksum(SRC, DST));
        assert_eq!(p.payload(), b"h");

        let mut b = SEGMENT;
        let mut p = TcpPacket::new_checked(&mut b[..24]).unwrap();
        assert_eq!(p.payload(), b"");
        p.fill_checksum(SRC, DST);
        assert!(p.verify_checksum(SRC, DST));
    }

    #[test]
    fn flags() {
        let f = TcpFlags::SYN | TcpFlags::ACK;
        assert!(f.contains(TcpFlags::SYN));
        assert!(f.contains(TcpFlags::ACK));
        assert!(f.contains(TcpFlags::SYN | TcpFlags::ACK));
        assert!(!f.contains(TcpFlags::FIN));
        assert!(!f.contains(TcpFlags::SYN | TcpFlags::RST));
        assert!(f.contains(TcpFlags::default()));
        assert_eq!(f.bits(), 0x12);
        let all = [
            TcpFlags::FIN,
            TcpFlags::SYN,
            TcpFlags::RST,
            TcpFlags::PSH,
            TcpFlags::ACK,
            TcpFlags::URG,
            TcpFlags::ECE,
            TcpFlags::CWR,
        ];
        let bits: Vec<u8> = all.iter().map(|f| f.bits()).collect();
        assert_eq!(bits, [1, 2, 4, 8, 16, 32, 64, 128]);
        assert_eq!(format!("{f:?}"), "TcpFlags(SYN|ACK)");
        assert_eq!(format!("{:?}", TcpFlags(0)), "TcpFlags()");
    }

    #[test]
    fn truncated() {
        for len in 0..24 {
            assert_eq!(
                TcpPacket::new_checked(&SEGMENT[..len]).unwrap_err(),
                Error::Truncated,
                "len {len}"
            );
        }
        // Data offset 15: 60 bytes of header in a 26-byte buffer.
        let mut b = SEGMENT;
        b[12] = 0xf0;
        assert_eq!(
            TcpPacket::new_checked(&b[..]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn overlong_is_payload() {
        let mut b = [0u8; 40];
        b[..26].copy_from_slice(&SEGMENT);
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload().len(), 16);
        assert_eq!(&p.payload()[..2], b"hi");
    }

    #[test]
    fn malformed() {
        for doff in 0..5u8 {
            let mut b = SEGMENT;
            b[12] = doff << 4;
            assert_eq!(
                TcpPacket::new_checked(&b[..]).unwrap_err(),
                Error::Malformed,
                "doff {doff}"
            );
        }
        // Data offset 5 with the buffer ending at 20 is fine.
        let mut b = SEGMENT;
        b[12] = 0x50;
        let p = TcpPacket::new_checked(&b[..20]).unwrap();
        assert_eq!(p.options(), &[] as &[u8]);
        assert_eq!(p.payload(), &[] as &[u8]);
    }
}
