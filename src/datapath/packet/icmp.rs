//! ICMPv4 messages (RFC 792): the common 8-byte header, with the echo
//! identifier and sequence number read from its second half.

use super::{checksum, Error, Result};

/// The ICMPv4 message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Message {
    EchoReply,
    DstUnreachable,
    Redirect,
    EchoRequest,
    TimeExceeded,
    ParamProblem,
    Unknown(u8),
}

impl From<u8> for Icmpv4Message {
    #[inline]
    fn from(v: u8) -> Self {
        match v {
            0 => Icmpv4Message::EchoReply,
            3 => Icmpv4Message::DstUnreachable,
            5 => Icmpv4Message::Redirect,
            8 => Icmpv4Message::EchoRequest,
            11 => Icmpv4Message::TimeExceeded,
            12 => Icmpv4Message::ParamProblem,
            other => Icmpv4Message::Unknown(other),
        }
    }
}

impl From<Icmpv4Message> for u8 {
    #[inline]
    fn from(m: Icmpv4Message) -> u8 {
        match m {
            Icmpv4Message::EchoReply => 0,
            Icmpv4Message::DstUnreachable => 3,
            Icmpv4Message::Redirect => 5,
            Icmpv4Message::EchoRequest => 8,
            Icmpv4Message::TimeExceeded => 11,
            Icmpv4Message::ParamProblem => 12,
            Icmpv4Message::Unknown(v) => v,
        }
    }
}

mod field {
    use core::ops::Range;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    pub const PAYLOAD: usize = 8;
}

/// A view of an ICMPv4 message.
///
/// The buffer must be exactly the message (the IPv4 payload): the checksum
/// covers all of it. `echo_ident`/`echo_seq_no` read bytes 4..8, which hold
/// those fields in echo requests and replies and other things in other
/// messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Length of the ICMPv4 header.
    pub const HEADER_LEN: usize = field::PAYLOAD;

    /// Wraps `buffer` without checking it: accessors may panic until
    /// [`check_len`](Self::check_len) has passed.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` if shorter than the 8-byte header.
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
    fn get_u16(&self, r: core::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    #[inline]
    pub fn msg_type(&self) -> Icmpv4Message {
        Icmpv4Message::from(self.buffer.as_ref()[field::TYPE])
    }

    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.get_u16(field::CHECKSUM)
    }

    #[inline]
    pub fn echo_ident(&self) -> u16 {
        self.get_u16(field::ECHO_IDENT)
    }

    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        self.get_u16(field::ECHO_SEQNO)
    }

    /// Everything after the 8-byte header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }

    /// True if the checksum over the whole buffer is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.buffer.as_ref())) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    #[inline]
    fn set_u16(&mut self, r: core::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_msg_type(&mut self, t: Icmpv4Message) {
        self.buffer.as_mut()[field::TYPE] = u8::from(t);
    }

    #[inline]
    pub fn set_code(&mut self, code: u8) {
        self.buffer.as_mut()[field::CODE] = code;
    }

    #[inline]
    pub fn set_checksum(&mut self, csum: u16) {
        self.set_u16(field::CHECKSUM, csum);
    }

    #[inline]
    pub fn set_echo_ident(&mut self, ident: u16) {
        self.set_u16(field::ECHO_IDENT, ident);
    }

    #[inline]
    pub fn set_echo_seq_no(&mut self, seq: u16) {
        self.set_u16(field::ECHO_SEQNO, seq);
    }

    /// Computes the checksum over the whole buffer and stores it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let csum = checksum::fold(checksum::sum(self.buffer.as_ref()));
        self.set_checksum(csum);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Echo request, ident 0x1234, seq 1, payload "abcdefgh", checksum 0x5435.
    const REQUEST: [u8; 16] = [
        0x08, 0x00, 0x54, 0x35, // type, code, checksum
        0x12, 0x34, 0x00, 0x01, // ident, seq
        b'a', b'b', b'c', b'd', b'e', b'f', b'g', b'h',
    ];

    /// The matching echo reply, checksum 0x5c35.
    const REPLY: [u8; 16] = [
        0x00, 0x00, 0x5c, 0x35, //
        0x12, 0x34, 0x00, 0x01, //
        b'a', b'b', b'c', b'd', b'e', b'f', b'g', b'h',
    ];

    #[test]
    fn parse_fields() {
        let p = Icmpv4Packet::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(p.msg_type(), Icmpv4Message::EchoRequest);
        assert_eq!(p.code(), 0);
        assert_eq!(p.checksum(), 0x5435);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq_no(), 1);
        assert_eq!(p.payload(), b"abcdefgh");
        assert!(p.verify_checksum());
        assert_eq!(p.into_inner(), &REQUEST[..]);
    }

    #[test]
    fn set_and_compare() {
        // Request to reply in place: full recompute and incremental agree.
        let mut b = REQUEST;
        let mut p = Icmpv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_msg_type(Icmpv4Message::EchoReply);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert_eq!(b, REPLY);

        let mut b = REQUEST;
        let mut p = Icmpv4Packet::new_checked(&mut b[..]).unwrap();
        let c = checksum::update_u16(p.checksum(), 0x0800, 0x0000);
        p.set_msg_type(Icmpv4Message::EchoReply);
        p.set_checksum(c);
        assert_eq!(b, REPLY);

        // Built from zeros.
        let mut b = [0u8; 16];
        let mut p = Icmpv4Packet::new_unchecked(&mut b[..]);
        p.set_msg_type(Icmpv4Message::EchoRequest);
        p.set_code(0);
        p.set_echo_ident(0x1234);
        p.set_echo_seq_no(1);
        p.payload_mut().copy_from_slice(b"abcdefgh");
        p.fill_checksum();
        assert_eq!(b, REQUEST);

        let mut p = Icmpv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_code(3);
        assert_eq!(p.code(), 3);
    }

    #[test]
    fn message_types() {
        for (v, m) in [
            (0u8, Icmpv4Message::EchoReply),
            (3, Icmpv4Message::DstUnreachable),
            (5, Icmpv4Message::Redirect),
            (8, Icmpv4Message::EchoRequest),
            (11, Icmpv4Message::TimeExceeded),
            (12, Icmpv4Message::ParamProblem),
            (13, Icmpv4Message::Unknown(13)),
        ] {
            assert_eq!(Icmpv4Message::from(v), m);
            assert_eq!(u8::from(m), v);
        }
    }

    #[test]
    fn truncated() {
        for len in 0..8 {
            assert_eq!(
                Icmpv4Packet::new_checked(&REQUEST[..len]).unwrap_err(),
                Error::Truncated,
                "len {len}"
            );
        }
        let p = Icmpv4Packet::new_checked(&REQUEST[..8]).unwrap();
        assert_eq!(p.payload(), &[] as &[u8]);
    }

    #[test]
    fn odd_and_overlong() {
        // The buffer is the message: an extra byte is payload, and is
        // covered by the checksum.
        let mut b = [0u8; 17];
        b[..16].copy_from_slice(&REQUEST);
        b[16] = 0x01;
        let mut p = Icmpv4Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.payload().len(), 9);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        // 0x5435 minus the padded trailing word 0x0100.
        assert_eq!(p.checksum(), 0x5335);
    }
}
