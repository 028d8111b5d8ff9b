//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! A checksum is built from *partial sums*: [`sum`] over some bytes and
//! [`pseudo_header_v4`] over a TCP/UDP pseudo-header each return a
//! ones'-complement sum already folded to at most `0xffff`, so a handful of
//! them can be added as plain `u32`s; [`fold`] then turns the total into the
//! complemented 16-bit checksum that goes into the header. To verify, sum the
//! data *including* its checksum field: `fold(..) == 0` means it is correct.
//!
//! The incremental updates ([`update_u16`], [`update_u32`], [`update_addr`])
//! use RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`, which never produces the
//! "negative zero" that eqn. 2 can: for a checksum that was correct before,
//! the result is bit-for-bit what a full recompute gives (over data that is
//! not all zeros, which no real header or pseudo-header is). They are what a
//! NAT or a port rewrite uses: change a field, update the checksum in place
//! in a few instructions, and never touch the payload.
//!
//! # UDP
//!
//! A UDP checksum field of `0` means "no checksum" (RFC 768). A caller that
//! rewrites an address or port of such a datagram must leave the field `0`
//! and must not update it. The other way round, a computed UDP checksum of
//! `0` is sent as `0xffff`: after updating a UDP checksum, pass the result
//! through [`udp_nonzero`].
//!
//! All sums are computed on big-endian 16-bit words, so results are in host
//! order, ready for `u16::to_be_bytes`.

use std::net::Ipv4Addr;

use super::IpProtocol;

/// Adds with end-around carry: the ones'-complement addition of 64-bit
/// words. It keeps the sum congruent modulo `0xffff` (since `2^64 ≡ 1`), and
/// is zero only when both inputs are.
#[inline(always)]
fn add_carry(acc: u64, v: u64) -> u64 {
    let (s, carry) = acc.overflowing_add(v);
    // On overflow `s < v`, so adding the carry back cannot overflow again.
    s + u64::from(carry)
}

/// Folds a 64-bit ones'-complement sum to 16 bits (at most `0xffff`),
/// keeping it congruent modulo `0xffff`. Zero stays zero, and nothing else
/// becomes zero.
#[inline(always)]
fn fold64(acc: u64) -> u32 {
    let mut x = (acc >> 32) + (acc & 0xffff_ffff); // < 2^33
    x = (x >> 16) + (x & 0xffff); // < 2^17 + 2^16
    x = (x >> 16) + (x & 0xffff); // <= 0x1_0001
    x = (x >> 16) + (x & 0xffff); // <= 0xffff
    x as u32
}

/// The ones'-complement sum of `data` as big-endian 16-bit words, folded to
/// at most `0xffff`. An odd final byte is padded with a zero byte on the
/// right (RFC 1071). The result is `0` only if every byte is zero.
///
/// Reads 8 bytes per step into a 64-bit accumulator with end-around carry;
/// exact for any length.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    let (words, rest) = data.as_chunks::<8>();
    let mut acc = 0u64;
    for w in words {
        acc = add_carry(acc, u64::from_be_bytes(*w));
    }
    let (pairs, last) = rest.as_chunks::<2>();
    for p in pairs {
        acc = add_carry(acc, u64::from(u16::from_be_bytes(*p)));
    }
    if let [b] = last {
        acc = add_carry(acc, u64::from(*b) << 8);
    }
    fold64(acc)
}

/// Folds a sum of partial sums (any `u32`) and complements it: the value to
/// store in a checksum field, or, over data that includes its checksum, `0`
/// when that checksum is correct.
#[inline]
pub fn fold(sum: u32) -> u16 {
    !(fold64(u64::from(sum)) as u16)
}

/// Adds several partial sums and [`fold`]s them.
#[inline]
pub fn combine(sums: &[u32]) -> u16 {
    let mut acc = 0u64;
    for &s in sums {
        acc = add_carry(acc, u64::from(s));
    }
    !(fold64(acc) as u16)
}

/// The partial sum of the IPv4 pseudo-header of a TCP or UDP segment:
/// source and destination address, protocol, and `len`, the length of the
/// L4 header plus payload.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: IpProtocol, len: u16) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    let acc = (s >> 16)
        + (s & 0xffff)
        + (d >> 16)
        + (d & 0xffff)
        + u32::from(u8::from(proto))
        + u32::from(len);
    fold64(u64::from(acc))
}

/// Updates checksum `csum` after a 16-bit word of the covered data changed
/// from `old` to `new` (RFC 1624 eqn. 3). The word must sit at an even
/// offset of the covered data (all port, address, ident and length fields
/// do). For UDP, see [`udp_nonzero`].
#[inline]
pub fn update_u16(csum: u16, old: u16, new: u16) -> u16 {
    let x = u32::from(!csum) + u32::from(!old) + u32::from(new);
    !(fold64(u64::from(x)) as u16)
}

/// Updates checksum `csum` after a 32-bit value at an even offset of the
/// covered data changed from `old` to `new`, as two 16-bit words.
#[inline]
pub fn update_u32(csum: u16, old: u32, new: u32) -> u16 {
    let x = u32::from(!csum)
        + u32::from(!((old >> 16) as u16))
        + u32::from(!(old as u16))
        + (new >> 16)
        + (new & 0xffff);
    !(fold64(u64::from(x)) as u16)
}

/// Updates checksum `csum` after an IPv4 address changed from `old` to
/// `new`: the IPv4 header checksum, or a TCP/UDP checksum through its
/// pseudo-header.
#[inline]
pub fn update_addr(csum: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    update_u32(csum, u32::from(old), u32::from(new))
}

/// Maps a computed UDP checksum of `0` to `0xffff`, its other
/// ones'-complement form, since `0` in a UDP header means "no checksum"
/// (RFC 768). Apply it after [`fold`] or an update of a UDP checksum.
#[inline]
pub fn udp_nonzero(csum: u16) -> u16 {
    if csum == 0 {
        0xffff
    } else {
        csum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An independent, naive reference: concatenates the parts, sums 16-bit
    /// words with a u32 and folds with a loop.
    fn reference(parts: &[&[u8]]) -> u16 {
        let bytes: Vec<u8> = parts.concat();
        let mut acc: u32 = 0;
        let mut i = 0;
        while i < bytes.len() {
            let hi = bytes[i] as u32;
            let lo = if i + 1 < bytes.len() {
                bytes[i + 1] as u32
            } else {
                0
            };
            acc += (hi << 8) | lo;
            while acc > 0xffff {
                acc = (acc & 0xffff) + (acc >> 16);
            }
            i += 2;
        }
        !(acc as u16)
    }

    fn pseudo_bytes(src: [u8; 4], dst: [u8; 4], proto: u8, len: usize) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.push(0);
        p.push(proto);
        p.extend_from_slice(&(len as u16).to_be_bytes());
        p
    }

    fn get16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    fn put16(b: &mut [u8], at: usize, v: u16) {
        b[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    /// The classic example: 45 00 00 73 00 00 40 00 40 11 b8 61 c0 a8 00 01 c0 a8 00 c7.
    const CLASSIC: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn known_answer_ipv4_header() {
        let mut h = CLASSIC;
        // Verifying over the header with its checksum gives 0.
        assert_eq!(fold(sum(&h)), 0);
        // Computing with the field zeroed gives b861.
        h[10] = 0;
        h[11] = 0;
        assert_eq!(fold(sum(&h)), 0xb861);
        assert_eq!(reference(&[&h]), 0xb861);
        assert_eq!(combine(&[sum(&h[..10]), sum(&h[10..])]), 0xb861);
    }

    #[test]
    fn known_answer_rfc1071() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&d), 0xddf2);
        assert_eq!(fold(sum(&d)), !0xddf2);
    }

    #[test]
    fn edge_sums() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(sum(&[0; 33]), 0);
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0xff; 64]), 0xffff);
        assert_eq!(fold(0), 0xffff);
        assert_eq!(fold(0xffff), 0);
        assert_eq!(fold(0x1_fffe), 0);
        assert_eq!(fold(u32::MAX), 0);
        assert_eq!(combine(&[]), 0xffff);
        // u32::MAX = 0xffff * 0x10001 is a ones'-complement zero.
        assert_eq!(combine(&[u32::MAX, u32::MAX, 1]), !0x0001);
    }

    #[test]
    fn pseudo_header_matches_bytes() {
        let src = Ipv4Addr::new(192, 168, 0, 1);
        let dst = Ipv4Addr::new(10, 255, 254, 7);
        let p = pseudo_bytes(src.octets(), dst.octets(), 17, 0x1234);
        assert_eq!(pseudo_header_v4(src, dst, IpProtocol::Udp, 0x1234), sum(&p));
        let ff = Ipv4Addr::new(255, 255, 255, 255);
        let p = pseudo_bytes(ff.octets(), ff.octets(), 6, 0xffff);
        assert_eq!(pseudo_header_v4(ff, ff, IpProtocol::Tcp, 0xffff), sum(&p));
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 section 4: eqn. 3 gives 0x0000 where eqn. 2 gave 0xffff.
        assert_eq!(update_u16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn udp_zero_maps_to_ffff() {
        assert_eq!(udp_nonzero(0), 0xffff);
        assert_eq!(udp_nonzero(0x1234), 0x1234);
        assert_eq!(udp_nonzero(0xffff), 0xffff);
    }

    /// Every new value of one 16-bit word, including the ones that make the
    /// result 0x0000, against a full recompute.
    #[test]
    fn exhaustive_ident_update_ipv4() {
        let mut h = CLASSIC;
        let mut csum = get16(&h, 10);
        let mut old = get16(&h, 4);
        for new in 0..=0xffffu16 {
            csum = update_u16(csum, old, new);
            put16(&mut h, 4, new);
            put16(&mut h, 10, 0);
            assert_eq!(csum, reference(&[&h]), "ident {new:#06x}");
            put16(&mut h, 10, csum);
            old = new;
        }
    }

    /// Same for a UDP port, through the `0 -> 0xffff` mapping: the result is
    /// never 0.
    #[test]
    fn exhaustive_port_update_udp() {
        let src = [10, 0, 0, 1];
        let dst = [10, 0, 0, 2];
        let mut d = [
            0x30, 0x39, 0x00, 0x35, 0x00, 0x0b, 0x00, 0x00, 0x61, 0x62, 0x63,
        ];
        let ph = pseudo_bytes(src, dst, 17, d.len());
        let mut csum = udp_nonzero(reference(&[&ph, &d]));
        let mut old = get16(&d, 0);
        let mut saw_ffff = false;
        for new in 0..=0xffffu16 {
            csum = udp_nonzero(update_u16(csum, old, new));
            put16(&mut d, 0, new);
            put16(&mut d, 6, 0);
            assert_eq!(csum, udp_nonzero(reference(&[&ph, &d])), "port {new}");
            saw_ffff |= csum == 0xffff;
            put16(&mut d, 6, csum);
            old = new;
        }
        assert!(saw_ffff, "the sweep must cross the zero checksum");
    }

    fn ipv4_header(mut h: [u8; 20]) -> [u8; 20] {
        h[0] = 0x45;
        put16(&mut h, 10, 0);
        let c = reference(&[&h]);
        put16(&mut h, 10, c);
        h
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn sum_matches_reference(data in prop::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(fold(sum(&data)), reference(&[&data]));
            // Any split point at an even offset gives the same total.
            let mid = (data.len() / 2) & !1;
            prop_assert_eq!(
                combine(&[sum(&data[..mid]), sum(&data[mid..])]),
                reference(&[&data])
            );
        }

        #[test]
        fn ipv4_address_update(h in any::<[u8; 20]>(), new_src: u32, new_dst: u32) {
            let mut h = ipv4_header(h);
            let old_src = Ipv4Addr::from([h[12], h[13], h[14], h[15]]);
            let old_dst = Ipv4Addr::from([h[16], h[17], h[18], h[19]]);
            let mut c = update_addr(get16(&h, 10), old_src, Ipv4Addr::from(new_src));
            c = update_addr(c, old_dst, Ipv4Addr::from(new_dst));
            h[12..16].copy_from_slice(&new_src.to_be_bytes());
            h[16..20].copy_from_slice(&new_dst.to_be_bytes());
            put16(&mut h, 10, 0);
            prop_assert_eq!(c, reference(&[&h]));
        }

        /// A header whose checksum is 0x0000 (the ident is chosen to make it
        /// so), then an address change.
        #[test]
        fn ipv4_update_from_zero_checksum(h in any::<[u8; 20]>(), new_src: u32) {
            let mut h = h;
            h[0] = 0x45;
            put16(&mut h, 4, 0);
            put16(&mut h, 10, 0);
            let ident = reference(&[&h]);
            put16(&mut h, 4, ident);
            prop_assert_eq!(reference(&[&h]), 0x0000);
            let old = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
            let c = update_u32(0x0000, old, new_src);
            h[12..16].copy_from_slice(&new_src.to_be_bytes());
            prop_assert_eq!(c, reference(&[&h]));
        }

        #[test]
        fn tcp_address_and_port_update(
            hdr in any::<[u8; 20]>(),
            payload in prop::collection::vec(any::<u8>(), 0..80),
            src: [u8; 4], dst: [u8; 4], new_src: [u8; 4], new_port: u16,
            zero_first: bool,
        ) {
            let mut seg = hdr.to_vec();
            seg[12] = 0x50;
            seg.extend_from_slice(&payload);
            put16(&mut seg, 16, 0);
            if zero_first {
                // Choose the urgent pointer so that the checksum is 0x0000.
                put16(&mut seg, 18, 0);
                let u = reference(&[&pseudo_bytes(src, dst, 6, seg.len()), &seg]);
                put16(&mut seg, 18, u);
            }
            let c0 = reference(&[&pseudo_bytes(src, dst, 6, seg.len()), &seg]);
            if zero_first {
                prop_assert_eq!(c0, 0);
            }
            let mut c = update_addr(c0, Ipv4Addr::from(src), Ipv4Addr::from(new_src));
            c = update_u16(c, get16(&seg, 0), new_port);
            put16(&mut seg, 0, new_port);
            let full = reference(&[&pseudo_bytes(new_src, dst, 6, seg.len()), &seg]);
            prop_assert_eq!(c, full);
        }

        #[test]
        fn udp_address_and_port_update(
            hdr in any::<[u8; 8]>(),
            payload in prop::collection::vec(any::<u8>(), 2..80),
            src: [u8; 4], dst: [u8; 4], new_dst: [u8; 4], new_port: u16,
            zero_first: bool,
        ) {
            let mut d = hdr.to_vec();
            d.extend_from_slice(&payload);
            let len = d.len() as u16;
            put16(&mut d, 4, len);
            put16(&mut d, 6, 0);
            if zero_first {
                // Choose two payload bytes so that the computed checksum is
                // 0, which is sent as 0xffff.
                put16(&mut d, 8, 0);
                let v = reference(&[&pseudo_bytes(src, dst, 17, d.len()), &d]);
                put16(&mut d, 8, v);
            }
            let c0 = udp_nonzero(reference(&[&pseudo_bytes(src, dst, 17, d.len()), &d]));
            if zero_first {
                prop_assert_eq!(c0, 0xffff);
            }
            let mut c = update_addr(c0, Ipv4Addr::from(dst), Ipv4Addr::from(new_dst));
            c = udp_nonzero(update_u16(c, get16(&d, 2), new_port));
            put16(&mut d, 2, new_port);
            let full = udp_nonzero(reference(&[&pseudo_bytes(src, new_dst, 17, d.len()), &d]));
            prop_assert_eq!(c, full);
            prop_assert_ne!(c, 0);
        }

        /// Eqn. 3 against a full recompute for arbitrary words, from any
        /// checksum that a full compute can produce (0x0000..=0xfffe).
        #[test]
        fn update_u16_arbitrary(words in prop::collection::vec(any::<u16>(), 1..16), idx: prop::sample::Index, new: u16) {
            let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
            let i = idx.index(words.len());
            let before = reference(&[&bytes]);
            let old = get16(&bytes, 2 * i);
            put16(&mut bytes, 2 * i, new);
            let after = reference(&[&bytes]);
            // All-zero data sums to 0 rather than 0xffff (the two zeros of
            // ones' complement); no real header is all zeros, before or after.
            prop_assume!(words.iter().any(|&w| w != 0));
            prop_assume!(bytes.iter().any(|&b| b != 0));
            prop_assert_eq!(update_u16(before, old, new), after);
        }
    }
}
