//! IPv4 headers (RFC 791), and the IP protocol numbers shared with IPv6.

use core::fmt;
use std::net::Ipv4Addr;

use super::{checksum, Error, Result};

/// An IP protocol number (IPv4 `protocol`, IPv6 `next header`).
///
/// `From<u8>` maps every known value to its named variant, so `Unknown`
/// never holds one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpProtocol {
    Icmp,
    Tcp,
    Udp,
    Icmpv6,
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    #[inline]
    fn from(v: u8) -> Self {
        match v {
            1 => IpProtocol::Icmp,
            6 => IpProtocol::Tcp,
            17 => IpProtocol::Udp,
            58 => IpProtocol::Icmpv6,
            other => IpProtocol::Unknown(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    #[inline]
    fn from(p: IpProtocol) -> u8 {
        match p {
            IpProtocol::Icmp => 1,
            IpProtocol::Tcp => 6,
            IpProtocol::Udp => 17,
            IpProtocol::Icmpv6 => 58,
            IpProtocol::Unknown(v) => v,
        }
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpProtocol::Icmp => f.write_str("ICMP"),
            IpProtocol::Tcp => f.write_str("TCP"),
            IpProtocol::Udp => f.write_str("UDP"),
            IpProtocol::Icmpv6 => f.write_str("ICMPv6"),
            IpProtocol::Unknown(v) => write!(f, "{v}"),
        }
    }
}

mod field {
    use core::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
    /// End of the fixed header, start of the options.
    pub const OPTIONS: usize = 20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
///
/// After [`check_len`](Self::check_len): `20 <= header_len() <= total_len()
/// <= buffer length`. Bytes past `total_len()` (Ethernet padding) are
/// allowed and belong to neither the header nor [`payload`](Self::payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Length of the header without options.
    pub const MIN_HEADER_LEN: usize = field::OPTIONS;

    /// Wraps `buffer` without checking it: accessors may panic until
    /// [`check_len`](Self::check_len) has passed.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks, in order: at least 20 bytes (`Truncated`); version 4, IHL at
    /// least 5, total length at least the header length (`Malformed`); the
    /// buffer holds the total length (`Truncated`). The header checksum is
    /// not checked here: see [`verify_checksum`](Self::verify_checksum).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < field::OPTIONS {
            return Err(Error::Truncated);
        }
        if self.version() != 4 || self.header_len() < field::OPTIONS {
            return Err(Error::Malformed);
        }
        let total = usize::from(self.total_len());
        if total < self.header_len() {
            return Err(Error::Malformed);
        }
        if len < total {
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
    fn get_addr(&self, r: core::ops::Range<usize>) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[r];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The whole second byte: DSCP in the high 6 bits, ECN in the low 2.
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Total length of the packet, header included, in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        self.get_u16(field::LENGTH)
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        self.get_u16(field::IDENT)
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.get_u16(field::FLG_OFF) & FLAG_DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        self.get_u16(field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in 8-byte units.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        self.get_u16(field::FLG_OFF) & OFFSET_MASK
    }

    /// True for any fragment: more fragments follow, or the offset is not 0.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.get_u16(field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// True for the first fragment of a fragmented packet (offset 0, more
    /// fragments follow). An unfragmented packet is not a first fragment;
    /// whether the L4 header is present at all is `frag_offset() == 0`.
    #[inline]
    pub fn is_first_fragment(&self) -> bool {
        self.get_u16(field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) == FLAG_MF
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.get_u16(field::CHECKSUM)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        self.get_addr(field::SRC_ADDR)
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        self.get_addr(field::DST_ADDR)
    }

    /// The option bytes, `20..header_len()` (empty without options).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    /// The payload, `header_len()..total_len()`: trailing padding excluded.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    /// True if the header checksum is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(&self.buffer.as_ref()[..self.header_len()])) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the source address. The checksum is not updated: call
    /// [`fill_checksum`](Self::fill_checksum), or update it incrementally with
    /// [`checksum::update_addr`].
    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address; the checksum is not updated.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the TTL; the checksum is not updated.
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    #[inline]
    pub fn set_checksum(&mut self, csum: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&csum.to_be_bytes());
    }

    /// Computes the header checksum over `header_len()` bytes and stores it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let csum = checksum::fold(checksum::sum(&self.buffer.as_ref()[..self.header_len()]));
        self.set_checksum(csum);
    }

    /// The payload, `header_len()..total_len()`, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IHL 6 with 4 option bytes, DSCP EF, ident 0x1234, MF set, offset
    /// 0x123, TTL 64, TCP, checksum 0x781d, 10.0.0.1 -> 192.168.1.2, 8
    /// payload bytes.
    const PACKET: [u8; 32] = [
        0x46, 0xb8, 0x00, 0x20, // ver/ihl, dscp/ecn, total length 32
        0x12, 0x34, 0x21, 0x23, // ident, MF + offset 0x123
        0x40, 0x06, 0x78, 0x1d, // ttl, proto, checksum
        0x0a, 0x00, 0x00, 0x01, // src
        0xc0, 0xa8, 0x01, 0x02, // dst
        0x01, 0x01, 0x01, 0x00, // options: NOP NOP NOP EOL
        0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, // payload
    ];

    /// The same after src 172.16.0.9, dst 8.8.8.8, TTL 63, checksum 0x889f.
    const REWRITTEN: [u8; 32] = [
        0x46, 0xb8, 0x00, 0x20, //
        0x12, 0x34, 0x21, 0x23, //
        0x3f, 0x06, 0x88, 0x9f, //
        0xac, 0x10, 0x00, 0x09, //
        0x08, 0x08, 0x08, 0x08, //
        0x01, 0x01, 0x01, 0x00, //
        0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04,
    ];

    /// The classic header, 0x73 = 115 bytes long, UDP, checksum b861.
    const CLASSIC: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    fn classic_packet() -> [u8; 115] {
        let mut b = [0x55u8; 115];
        b[..20].copy_from_slice(&CLASSIC);
        b
    }

    #[test]
    fn parse_fields() {
        let p = Ipv4Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.dscp_ecn(), 0xb8);
        assert_eq!(p.total_len(), 32);
        assert_eq!(p.ident(), 0x1234);
        assert!(!p.dont_frag());
        assert!(p.more_frags());
        assert_eq!(p.frag_offset(), 0x123);
        assert!(p.is_fragment());
        assert!(!p.is_first_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::Tcp);
        assert_eq!(p.checksum(), 0x781d);
        assert!(p.verify_checksum());
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 1, 2));
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4]);
        assert_eq!(p.into_inner(), &PACKET[..]);
    }

    #[test]
    fn known_answer_classic() {
        let b = classic_packet();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.options(), &[] as &[u8]);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert!(!p.is_fragment());
        assert!(!p.is_first_fragment());
        assert_eq!(p.protocol(), IpProtocol::Udp);
        assert_eq!(p.checksum(), 0xb861);
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 95);

        let mut b = classic_packet();
        b[10] = 0;
        b[11] = 0;
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert_eq!(p.checksum(), 0xb861);
        assert_eq!(b, classic_packet());
    }

    #[test]
    fn set_and_compare() {
        let mut b = PACKET;
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_src_addr(Ipv4Addr::new(172, 16, 0, 9));
        p.set_dst_addr(Ipv4Addr::new(8, 8, 8, 8));
        p.set_ttl(63);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(b, REWRITTEN);

        // The same through the incremental update.
        let mut b = PACKET;
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        let mut c = p.checksum();
        c = checksum::update_addr(c, p.src_addr(), Ipv4Addr::new(172, 16, 0, 9));
        c = checksum::update_addr(c, p.dst_addr(), Ipv4Addr::new(8, 8, 8, 8));
        // TTL shares its 16-bit word with the protocol.
        c = checksum::update_u16(c, u16::from_be_bytes([64, 6]), u16::from_be_bytes([63, 6]));
        p.set_src_addr(Ipv4Addr::new(172, 16, 0, 9));
        p.set_dst_addr(Ipv4Addr::new(8, 8, 8, 8));
        p.set_ttl(63);
        p.set_checksum(c);
        assert_eq!(b, REWRITTEN);

        let mut b = PACKET;
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.payload_mut().copy_from_slice(&[9; 8]);
        assert_eq!(&b[24..], &[9; 8]);
        assert_eq!(&b[..24], &PACKET[..24]);
    }

    #[test]
    fn fragment_flags() {
        let mut b = classic_packet();
        let cases = [
            // flags/offset word, is_fragment, is_first_fragment, offset
            (0x0000u16, false, false, 0),
            (0x4000, false, false, 0),
            (0x2000, true, true, 0),
            (0x6000, true, true, 0), // DF and MF: odd, but still a first fragment
            (0x2001, true, false, 1),
            (0x0010, true, false, 0x10), // last fragment
            (0x1fff, true, false, 0x1fff),
            (0x8000, false, false, 0), // reserved bit alone is not a fragment
        ];
        for (word, frag, first, off) in cases {
            b[6..8].copy_from_slice(&word.to_be_bytes());
            let p = Ipv4Packet::new_checked(&b[..]).unwrap();
            assert_eq!(p.is_fragment(), frag, "{word:#06x}");
            assert_eq!(p.is_first_fragment(), first, "{word:#06x}");
            assert_eq!(p.frag_offset(), off, "{word:#06x}");
        }
    }

    #[test]
    fn truncated() {
        // Every length short of the total length fails, the header's 24
        // bytes included.
        for len in 0..PACKET.len() {
            assert_eq!(
                Ipv4Packet::new_checked(&PACKET[..len]).unwrap_err(),
                Error::Truncated,
                "len {len}"
            );
        }
        let b = classic_packet();
        for len in 0..b.len() {
            assert_eq!(
                Ipv4Packet::new_checked(&b[..len]).unwrap_err(),
                Error::Truncated
            );
        }
    }

    #[test]
    fn overlong_padding_excluded() {
        // A 20-byte header plus 6 bytes of data, padded to 46 bytes.
        let mut b = [0u8; 46];
        b[..20].copy_from_slice(&CLASSIC);
        b[2..4].copy_from_slice(&26u16.to_be_bytes());
        b[20..26].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.payload(), &[1, 2, 3, 4, 5, 6]);
        assert_eq!(p.payload_mut().len(), 6);

        let mut b = [0xffu8; 40];
        b[..32].copy_from_slice(&PACKET);
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload(), &PACKET[24..]);
        assert!(p.verify_checksum());
    }

    #[test]
    fn header_only() {
        let mut b = CLASSIC;
        b[2..4].copy_from_slice(&20u16.to_be_bytes());
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload(), &[] as &[u8]);
    }

    #[test]
    fn malformed() {
        let b = classic_packet();
        let cases: [(usize, u8); 5] = [
            (0, 0x65), // version 6
            (0, 0x05), // version 0
            (0, 0x44), // IHL 4
            (0, 0x40), // IHL 0
            (3, 0x13), // total length 19 < 20
        ];
        for (at, v) in cases {
            let mut m = b;
            m[at] = v;
            assert_eq!(
                Ipv4Packet::new_checked(&m[..]).unwrap_err(),
                Error::Malformed,
                "byte {at} = {v:#x}"
            );
        }
        // Total length 0.
        let mut m = b;
        m[2..4].copy_from_slice(&[0, 0]);
        assert_eq!(
            Ipv4Packet::new_checked(&m[..]).unwrap_err(),
            Error::Malformed
        );
        // Total length 20 with IHL 6 (header longer than the packet).
        let mut m = PACKET;
        m[2..4].copy_from_slice(&20u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&m[..]).unwrap_err(),
            Error::Malformed
        );
        // IHL 15 (60 bytes) in a 32-byte packet that claims 64.
        let mut m = PACKET;
        m[0] = 0x4f;
        m[2..4].copy_from_slice(&64u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&m[..]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn protocol_numbers() {
        for (v, p) in [
            (1u8, IpProtocol::Icmp),
            (6, IpProtocol::Tcp),
            (17, IpProtocol::Udp),
            (58, IpProtocol::Icmpv6),
            (132, IpProtocol::Unknown(132)),
        ] {
            assert_eq!(IpProtocol::from(v), p);
            assert_eq!(u8::from(p), v);
        }
        assert_eq!(IpProtocol::Udp.to_string(), "UDP");
        assert_eq!(IpProtocol::Unknown(47).to_string(), "47");
    }

    #[test]
    fn any_buffer_never_panics() {
        // Every 2-byte variation of the first word over every length: the
        // checked constructor either fails or yields a view whose accessors
        // all work.
        let base = classic_packet();
        for first in 0..=0xffu8 {
            for len_hi in [0u8, 0x14, 0x20, 0x73, 0xff] {
                let mut b = base;
                b[0] = first;
                b[3] = len_hi;
                for len in 0..b.len() {
                    if let Ok(p) = Ipv4Packet::new_checked(&b[..len]) {
                        let _ = (p.options(), p.payload(), p.verify_checksum());
                    }
                }
            }
        }
    }
}
