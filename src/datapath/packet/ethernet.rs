//! Ethernet II frames, 802.1Q VLAN tags, and [`parse_l2`], which finds the
//! L3 header behind zero or one tag.

use core::fmt;

use super::{Error, MacAddr, Result};

/// The EtherType field (and a VLAN tag's inner EtherType).
///
/// `From<u16>` maps every known value to its named variant, so `Unknown`
/// never holds one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtherType {
    Ipv4,
    Arp,
    /// 802.1Q customer tag (TPID 0x8100).
    Vlan,
    /// 802.1ad service tag (TPID 0x88a8), the outer tag of Q-in-Q.
    QinQ,
    Ipv6,
    /// Any other value, including 802.3 length fields (< 0x0600).
    Unknown(u16),
}

impl From<u16> for EtherType {
    #[inline]
    fn from(v: u16) -> Self {
        match v {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x8100 => EtherType::Vlan,
            0x88a8 => EtherType::QinQ,
            0x86dd => EtherType::Ipv6,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    #[inline]
    fn from(t: EtherType) -> u16 {
        match t {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Vlan => 0x8100,
            EtherType::QinQ => 0x88a8,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Unknown(v) => v,
        }
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtherType::Ipv4 => f.write_str("IPv4"),
            EtherType::Arp => f.write_str("ARP"),
            EtherType::Vlan => f.write_str("802.1Q"),
            EtherType::QinQ => f.write_str("802.1ad"),
            EtherType::Ipv6 => f.write_str("IPv6"),
            EtherType::Unknown(v) => write!(f, "0x{v:04x}"),
        }
    }
}

mod field {
    use core::ops::Range;

    pub const DST_ADDR: Range<usize> = 0..6;
    pub const SRC_ADDR: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// A view of an Ethernet II frame: 14-byte header, then the payload (which
/// is everything after the header, including any padding or FCS the buffer
/// holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Length of the Ethernet header (without a VLAN tag).
    pub const HEADER_LEN: usize = field::PAYLOAD;

    /// Wraps `buffer` without checking it: accessors may panic until
    /// [`check_len`](Self::check_len) has passed.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps `buffer` after checking that it holds a whole header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// `Truncated` if the buffer is shorter than the 14-byte header.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < Self::HEADER_LEN {
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
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::DST_ADDR])
    }

    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    #[inline]
    pub fn ethertype(&self) -> EtherType {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        EtherType::from(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Everything after the 14-byte header (a VLAN tag, if any, included).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    #[inline]
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(addr.as_bytes());
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(addr.as_bytes());
    }

    #[inline]
    pub fn set_ethertype(&mut self, t: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&u16::from(t).to_be_bytes());
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

mod vlan_field {
    use core::ops::Range;

    pub const TCI: Range<usize> = 0..2;
    pub const ETHERTYPE: Range<usize> = 2..4;
    pub const PAYLOAD: usize = 4;
}

/// A view of the 4 bytes of an 802.1Q tag that follow the outer EtherType
/// (TPID): the TCI (priority, drop eligible, VLAN id) and the inner
/// EtherType. Build it over `EthernetFrame::payload()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanHeader<T> {
    /// Length of the tag after the TPID.
    pub const HEADER_LEN: usize = vlan_field::PAYLOAD;

    /// Wraps `buffer` without checking it: accessors may panic until
    /// [`check_len`](Self::check_len) has passed.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        VlanHeader { buffer }
    }

    /// Wraps `buffer` after checking that it holds the 4-byte tag.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let tag = Self::new_unchecked(buffer);
        tag.check_len()?;
        Ok(tag)
    }

    /// `Truncated` if the buffer is shorter than 4 bytes.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < Self::HEADER_LEN {
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
    fn tci(&self) -> u16 {
        let b = &self.buffer.as_ref()[vlan_field::TCI];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Priority code point, 0..=7.
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN identifier, 12 bits.
    #[inline]
    pub fn vlan_id(&self) -> u16 {
        self.tci() & 0x0fff
    }

    #[inline]
    pub fn inner_ethertype(&self) -> EtherType {
        let b = &self.buffer.as_ref()[vlan_field::ETHERTYPE];
        EtherType::from(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Everything after the tag.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[vlan_field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanHeader<T> {
    #[inline]
    fn set_tci(&mut self, tci: u16) {
        self.buffer.as_mut()[vlan_field::TCI].copy_from_slice(&tci.to_be_bytes());
    }

    /// Sets the priority; only the low 3 bits of `pcp` are used.
    #[inline]
    pub fn set_pcp(&mut self, pcp: u8) {
        self.set_tci((self.tci() & 0x1fff) | (u16::from(pcp & 0x7) << 13));
    }

    #[inline]
    pub fn set_dei(&mut self, dei: bool) {
        self.set_tci((self.tci() & !0x1000) | if dei { 0x1000 } else { 0 });
    }

    /// Sets the VLAN id; only the low 12 bits of `id` are used.
    #[inline]
    pub fn set_vlan_id(&mut self, id: u16) {
        self.set_tci((self.tci() & 0xf000) | (id & 0x0fff));
    }

    #[inline]
    pub fn set_inner_ethertype(&mut self, t: EtherType) {
        self.buffer.as_mut()[vlan_field::ETHERTYPE].copy_from_slice(&u16::from(t).to_be_bytes());
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[vlan_field::PAYLOAD..]
    }
}

/// What [`parse_l2`] found in front of the L3 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct L2 {
    /// The VLAN id of the 802.1Q tag, if the frame had one.
    pub vlan: Option<u16>,
    /// The EtherType of the L3 header (the inner one of a tagged frame).
    pub ethertype: EtherType,
    /// Offset of the L3 header from the start of the frame: 14 untagged, 18
    /// with one tag.
    pub l3_offset: usize,
}

/// Reads the Ethernet header and at most one 802.1Q tag (TPID 0x8100).
///
/// - Untagged: `vlan: None`, the frame's EtherType, `l3_offset: 14`.
/// - One 802.1Q tag: `vlan: Some(id)`, the inner EtherType, `l3_offset: 18`.
/// - Stacked tags (a tag whose inner EtherType is again `Vlan` or `QinQ`):
///   not an error. The outer VLAN id is reported with `ethertype` `Vlan` or
///   `QinQ` and `l3_offset: 18` (pointing at the second tag), so a caller
///   that only accepts IPv4/ARP drops it as an unsupported EtherType.
/// - An outer 802.1ad tag (TPID 0x88a8): the tag is not read; the result is
///   `vlan: None`, `ethertype: QinQ`, `l3_offset: 14`, again for the caller
///   to drop as unsupported.
///
/// Errors: `Truncated` if the frame is shorter than 14 bytes, or than 18
/// with an 802.1Q tag.
#[inline]
pub fn parse_l2(frame: &[u8]) -> Result<L2> {
    let eth = EthernetFrame::new_checked(frame)?;
    let ethertype = eth.ethertype();
    if ethertype != EtherType::Vlan {
        return Ok(L2 {
            vlan: None,
            ethertype,
            l3_offset: EthernetFrame::<&[u8]>::HEADER_LEN,
        });
    }
    let tag = VlanHeader::new_checked(eth.payload())?;
    Ok(L2 {
        vlan: Some(tag.vlan_id()),
        ethertype: tag.inner_ethertype(),
        l3_offset: EthernetFrame::<&[u8]>::HEADER_LEN + VlanHeader::<&[u8]>::HEADER_LEN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dst 02:00:00:00:00:02, src 02:00:00:00:00:01, IPv4, 4 payload bytes.
    const FRAME: [u8; 18] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
        0x08, 0x00, // IPv4
        0xde, 0xad, 0xbe, 0xef, // payload
    ];

    /// The same frame with an 802.1Q tag: PCP 5, DEI 1, VLAN 0x123, then ARP.
    const TAGGED: [u8; 22] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
        0x81, 0x00, // 802.1Q
        0xb1, 0x23, // PCP 5 (101), DEI 1, VID 0x123
        0x08, 0x06, // ARP
        0xde, 0xad, 0xbe, 0xef, // payload
    ];

    #[test]
    fn parse_fields() {
        let f = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(f.src_addr(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(f.ethertype(), EtherType::Ipv4);
        assert_eq!(f.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(f.into_inner(), &FRAME[..]);
    }

    #[test]
    fn set_and_compare() {
        let mut buf = [0u8; 18];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        f.set_dst_addr(MacAddr([2, 0, 0, 0, 0, 2]));
        f.set_src_addr(MacAddr([2, 0, 0, 0, 0, 1]));
        f.set_ethertype(EtherType::Ipv4);
        f.payload_mut().copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(buf, FRAME);

        let mut buf = FRAME;
        let mut f = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        f.set_ethertype(EtherType::Unknown(0x1234));
        assert_eq!(f.ethertype(), EtherType::Unknown(0x1234));
        assert_eq!(&buf[12..14], &[0x12, 0x34]);
    }

    #[test]
    fn truncated() {
        for len in 0..14 {
            assert_eq!(
                EthernetFrame::new_checked(&FRAME[..len]).unwrap_err(),
                Error::Truncated,
                "len {len}"
            );
            assert_eq!(parse_l2(&FRAME[..len]).unwrap_err(), Error::Truncated);
        }
        // A bare header is fine: empty payload.
        assert_eq!(
            EthernetFrame::new_checked(&FRAME[..14]).unwrap().payload(),
            &[] as &[u8]
        );
    }

    #[test]
    fn overlong_payload_includes_everything() {
        let mut buf = [0u8; 64];
        buf[..18].copy_from_slice(&FRAME);
        let f = EthernetFrame::new_checked(&buf[..]).unwrap();
        assert_eq!(f.payload().len(), 50);
        assert_eq!(&f.payload()[..4], &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn ethertype_conversions() {
        for (v, t) in [
            (0x0800, EtherType::Ipv4),
            (0x0806, EtherType::Arp),
            (0x8100, EtherType::Vlan),
            (0x88a8, EtherType::QinQ),
            (0x86dd, EtherType::Ipv6),
            (0x0042, EtherType::Unknown(0x0042)),
        ] {
            assert_eq!(EtherType::from(v), t);
            assert_eq!(u16::from(t), v);
        }
        assert_eq!(EtherType::Ipv4.to_string(), "IPv4");
        assert_eq!(EtherType::Unknown(0x88cc).to_string(), "0x88cc");
    }

    #[test]
    fn vlan_fields() {
        let f = EthernetFrame::new_checked(&TAGGED[..]).unwrap();
        assert_eq!(f.ethertype(), EtherType::Vlan);
        let t = VlanHeader::new_checked(f.payload()).unwrap();
        assert_eq!(t.pcp(), 5);
        assert!(t.dei());
        assert_eq!(t.vlan_id(), 0x123);
        assert_eq!(t.inner_ethertype(), EtherType::Arp);
        assert_eq!(t.payload(), &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn vlan_set_and_compare() {
        let mut buf = [0u8; 4];
        let mut t = VlanHeader::new_checked(&mut buf[..]).unwrap();
        t.set_pcp(5);
        t.set_dei(true);
        t.set_vlan_id(0x123);
        t.set_inner_ethertype(EtherType::Arp);
        assert_eq!(buf, [0xb1, 0x23, 0x08, 0x06]);

        // Each setter touches only its own bits.
        let mut t = VlanHeader::new_checked(&mut buf[..]).unwrap();
        t.set_vlan_id(0xffff); // masked to 0xfff
        assert_eq!((t.pcp(), t.dei(), t.vlan_id()), (5, true, 0xfff));
        t.set_dei(false);
        assert_eq!((t.pcp(), t.dei(), t.vlan_id()), (5, false, 0xfff));
        t.set_pcp(0xff); // masked to 7
        assert_eq!((t.pcp(), t.dei(), t.vlan_id()), (7, false, 0xfff));
        t.set_pcp(0);
        t.set_vlan_id(0);
        assert_eq!(&buf[..2], &[0, 0]);

        let mut buf = [0xaa; 6];
        let mut t = VlanHeader::new_checked(&mut buf[..]).unwrap();
        t.payload_mut().copy_from_slice(&[1, 2]);
        assert_eq!(buf, [0xaa, 0xaa, 0xaa, 0xaa, 1, 2]);
    }

    #[test]
    fn vlan_truncated() {
        for len in 0..4 {
            assert_eq!(
                VlanHeader::new_checked(&TAGGED[14..14 + len]).unwrap_err(),
                Error::Truncated
            );
        }
        for len in 14..18 {
            assert_eq!(
                parse_l2(&TAGGED[..len]).unwrap_err(),
                Error::Truncated,
                "len {len}"
            );
        }
    }

    #[test]
    fn l2_untagged() {
        assert_eq!(
            parse_l2(&FRAME).unwrap(),
            L2 {
                vlan: None,
                ethertype: EtherType::Ipv4,
                l3_offset: 14
            }
        );
    }

    #[test]
    fn l2_one_tag() {
        assert_eq!(
            parse_l2(&TAGGED).unwrap(),
            L2 {
                vlan: Some(0x123),
                ethertype: EtherType::Arp,
                l3_offset: 18
            }
        );
        // A bare tag with nothing after it parses; the L3 check is the caller's.
        assert_eq!(parse_l2(&TAGGED[..18]).unwrap().l3_offset, 18);
    }

    #[test]
    fn l2_stacked_tags_reported_as_unsupported() {
        let mut buf = [0u8; 26];
        buf[..16].copy_from_slice(&TAGGED[..16]);
        buf[16..18].copy_from_slice(&[0x81, 0x00]); // second 802.1Q tag
        buf[18..20].copy_from_slice(&[0x00, 0x07]);
        buf[20..22].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(
            parse_l2(&buf).unwrap(),
            L2 {
                vlan: Some(0x123),
                ethertype: EtherType::Vlan,
                l3_offset: 18
            }
        );
        buf[16..18].copy_from_slice(&[0x88, 0xa8]);
        assert_eq!(parse_l2(&buf).unwrap().ethertype, EtherType::QinQ);

        // An outer 802.1ad tag is not read at all.
        buf[12..14].copy_from_slice(&[0x88, 0xa8]);
        assert_eq!(
            parse_l2(&buf).unwrap(),
            L2 {
                vlan: None,
                ethertype: EtherType::QinQ,
                l3_offset: 14
            }
        );
    }
}
