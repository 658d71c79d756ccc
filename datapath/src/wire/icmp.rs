//! ICMP (RFC 792) and ICMPv6 (RFC 4443) headers: the eight bytes both share, and the messages
//! the gateway sends or reads on the fast path.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |     Code      |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Identifier / unused          |  Sequence / Next-Hop MTU      |   (ICMPv6 too big: MTU,
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+    all 32 bits)
//! |     Data (for errors: as much of the offending packet as fits) ...
//! ```
//!
//! The ICMPv4 checksum covers the message; the ICMPv6 one also the IPv6 pseudo-header, so it is
//! filled with the addresses once they are known ([`Packet::fill_checksum`]).

use super::checksum;

/// Byte ranges of the header.
pub mod field {
    use core::ops::Range;
    /// Message type.
    pub const TYPE: usize = 0;
    /// Code.
    pub const CODE: usize = 1;
    /// Checksum.
    pub const CHECKSUM: Range<usize> = 2..4;
    /// The type-specific second word.
    pub const REST: Range<usize> = 4..8;
    /// Echo identifier.
    pub const ECHO_IDENT: Range<usize> = 4..6;
    /// Echo sequence number.
    pub const ECHO_SEQ: Range<usize> = 6..8;
    /// ICMPv4 fragmentation needed: the next-hop MTU (RFC 1191).
    pub const NEXT_HOP_MTU: Range<usize> = 6..8;
    /// ICMPv6 packet too big: the MTU.
    pub const MTU: Range<usize> = 4..8;
}

/// Header length: type, code, checksum and the second word.
pub const HEADER_LEN: usize = field::REST.end;

/// ICMPv4 message types (IANA "ICMP Type Numbers").
pub mod v4 {
    /// Echo Reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination Unreachable.
    pub const DST_UNREACHABLE: u8 = 3;
    /// Source Quench (deprecated, still an error).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect.
    pub const REDIRECT: u8 = 5;
    /// Echo Request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time Exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter Problem.
    pub const PARAM_PROBLEM: u8 = 12;
    /// Destination Unreachable code: fragmentation needed and DF set.
    pub const CODE_FRAG_NEEDED: u8 = 4;
}

/// ICMPv6 message types (IANA "ICMPv6 Parameters"); below 128 are errors.
pub mod v6 {
    /// Destination Unreachable.
    pub const DST_UNREACHABLE: u8 = 1;
    /// Packet Too Big.
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time Exceeded.
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter Problem.
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo Request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo Reply.
    pub const ECHO_REPLY: u8 = 129;
}

/// Whether a message of this type is an error (no error may be sent about one: RFC 1812
/// 4.3.2.7, RFC 4443 2.4(e)).
pub fn is_error(ipv6: bool, msg_type: u8) -> bool {
    if ipv6 {
        msg_type < 128
    } else {
        matches!(
            msg_type,
            v4::DST_UNREACHABLE
                | v4::SOURCE_QUENCH
                | v4::REDIRECT
                | v4::TIME_EXCEEDED
                | v4::PARAM_PROBLEM
        )
    }
}

/// Why bytes are not an ICMP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the header.
    TooShort {
        /// Bytes available.
        len: usize,
    },
}

/// A view of an ICMP or ICMPv6 message.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps and checks.
    ///
    /// # Errors
    /// See [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the header fits.
    ///
    /// # Errors
    /// [`Error::TooShort`].
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::TooShort { len });
        }
        Ok(())
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::CHECKSUM];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The second word: echo identifier and sequence, or the MTU of a too-big error.
    #[inline]
    pub fn rest(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::REST];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// What follows the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// Whether the checksum verifies, over the message and `pseudo` (0 for ICMPv4; the IPv6
    /// pseudo-header's sum, [`super::udp::pseudo_header_v6`], for ICMPv6).
    pub fn verify_checksum(&self, pseudo: u32) -> bool {
        checksum::sum(self.buffer.as_ref(), pseudo) as u16 == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the type.
    #[inline]
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }

    /// Sets the code.
    #[inline]
    pub fn set_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }

    /// Sets the checksum.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the second word.
    #[inline]
    pub fn set_rest(&mut self, v: u32) {
        self.buffer.as_mut()[field::REST].copy_from_slice(&v.to_be_bytes());
    }

    /// Computes the checksum over the whole buffer and `pseudo` (see
    /// [`Packet::verify_checksum`]).
    pub fn fill_checksum(&mut self, pseudo: u32) {
        self.set_checksum(0);
        let c = !(checksum::sum(self.buffer.as_ref(), pseudo) as u16);
        self.set_checksum(c);
    }
}

/// The messages the gateway builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr {
    /// ICMPv4 Destination Unreachable, fragmentation needed and DF set, with the next-hop MTU
    /// (RFC 1191).
    FragNeeded {
        /// The MTU the packet exceeded.
        mtu: u16,
    },
    /// ICMPv6 Packet Too Big (RFC 4443 3.2).
    PacketTooBig {
        /// The MTU the packet exceeded.
        mtu: u32,
    },
    /// Time Exceeded, code 0: the TTL or hop limit ran out in transit.
    TimeExceeded {
        /// ICMPv6 rather than ICMPv4.
        ipv6: bool,
    },
    /// Echo Request.
    EchoRequest {
        /// ICMPv6 rather than ICMPv4.
        ipv6: bool,
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq: u16,
    },
    /// Echo Reply.
    EchoReply {
        /// ICMPv6 rather than ICMPv4.
        ipv6: bool,
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq: u16,
    },
}

impl Repr {
    /// Reads a message of the family `ipv6` (only the kinds [`Repr`] has).
    ///
    /// # Errors
    /// [`Error::TooShort`]; `None` inside for a message of another kind.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>, ipv6: bool) -> Result<Option<Self>, Error> {
        p.check_len()?;
        let (t, c, rest) = (p.msg_type(), p.code(), p.rest());
        let (ident, seq) = ((rest >> 16) as u16, rest as u16);
        Ok(match (ipv6, t, c) {
            (false, v4::DST_UNREACHABLE, v4::CODE_FRAG_NEEDED) => {
                Some(Repr::FragNeeded { mtu: rest as u16 })
            }
            (true, v6::PACKET_TOO_BIG, 0) => Some(Repr::PacketTooBig { mtu: rest }),
            (false, v4::TIME_EXCEEDED, 0) | (true, v6::TIME_EXCEEDED, 0) => {
                Some(Repr::TimeExceeded { ipv6 })
            }
            (false, v4::ECHO_REQUEST, 0) | (true, v6::ECHO_REQUEST, 0) => {
                Some(Repr::EchoRequest { ipv6, ident, seq })
            }
            (false, v4::ECHO_REPLY, 0) | (true, v6::ECHO_REPLY, 0) => {
                Some(Repr::EchoReply { ipv6, ident, seq })
            }
            _ => None,
        })
    }

    /// Whether this is an ICMPv6 message.
    pub fn is_ipv6(&self) -> bool {
        match *self {
            Repr::FragNeeded { .. } => false,
            Repr::PacketTooBig { .. } => true,
            Repr::TimeExceeded { ipv6 }
            | Repr::EchoRequest { ipv6, .. }
            | Repr::EchoReply { ipv6, .. } => ipv6,
        }
    }

    /// Writes the header into `p` (at least [`HEADER_LEN`] bytes) with a zero checksum; the
    /// caller fills it once the payload is in place ([`Packet::fill_checksum`]).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        let echo = |ident: u16, seq: u16| (u32::from(ident) << 16) | u32::from(seq);
        let (t, c, rest) = match *self {
            Repr::FragNeeded { mtu } => (v4::DST_UNREACHABLE, v4::CODE_FRAG_NEEDED, u32::from(mtu)),
            Repr::PacketTooBig { mtu } => (v6::PACKET_TOO_BIG, 0, mtu),
            Repr::TimeExceeded { ipv6: false } => (v4::TIME_EXCEEDED, 0, 0),
            Repr::TimeExceeded { ipv6: true } => (v6::TIME_EXCEEDED, 0, 0),
            Repr::EchoRequest { ipv6, ident, seq } => (
                if ipv6 {
                    v6::ECHO_REQUEST
                } else {
                    v4::ECHO_REQUEST
                },
                0,
                echo(ident, seq),
            ),
            Repr::EchoReply { ipv6, ident, seq } => (
                if ipv6 { v6::ECHO_REPLY } else { v4::ECHO_REPLY },
                0,
                echo(ident, seq),
            ),
        };
        p.set_msg_type(t);
        p.set_code(c);
        p.set_checksum(0);
        p.set_rest(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_repr_emits_what_parse_reads_back() {
        let all = [
            Repr::FragNeeded { mtu: 1400 },
            Repr::PacketTooBig { mtu: 1280 },
            Repr::TimeExceeded { ipv6: false },
            Repr::TimeExceeded { ipv6: true },
            Repr::EchoRequest {
                ipv6: false,
                ident: 7,
                seq: 9,
            },
            Repr::EchoReply {
                ipv6: true,
                ident: 0xbeef,
                seq: 1,
            },
        ];
        for r in all {
            let mut b = [0xaau8; HEADER_LEN + 4];
            let mut p = Packet::new_unchecked(&mut b[..]);
            r.emit(&mut p);
            p.fill_checksum(0);
            assert!(p.verify_checksum(0));
            assert_eq!(Repr::parse(&p, r.is_ipv6()), Ok(Some(r)));
            assert!(
                is_error(r.is_ipv6(), p.msg_type())
                    == !matches!(r, Repr::EchoRequest { .. } | Repr::EchoReply { .. })
            );
        }
    }

    #[test]
    fn the_wire_layout_is_rfc_792_and_4443s() {
        let mut b = [0u8; HEADER_LEN];
        Repr::FragNeeded { mtu: 1400 }.emit(&mut Packet::new_unchecked(&mut b[..]));
        assert_eq!(b, [3, 4, 0, 0, 0, 0, 0x05, 0x78]);
        Repr::PacketTooBig { mtu: 1280 }.emit(&mut Packet::new_unchecked(&mut b[..]));
        assert_eq!(b, [2, 0, 0, 0, 0, 0, 0x05, 0x00]);
        Repr::TimeExceeded { ipv6: false }.emit(&mut Packet::new_unchecked(&mut b[..]));
        assert_eq!(b, [11, 0, 0, 0, 0, 0, 0, 0]);
        // An Echo Request's checksum, worked out by hand: the ones' complement of
        // 0x0800 + 0x1234 + 0x0001 + 0x6869.
        let mut echo = [8, 0, 0, 0, 0x12, 0x34, 0, 1, b'h', b'i'];
        Packet::new_unchecked(&mut echo[..]).fill_checksum(0);
        assert_eq!(&echo[2..4], &[0x7d, 0x61]);
    }

    #[test]
    fn short_buffers_are_refused_not_read() {
        assert_eq!(
            Packet::new_checked(&[0u8; 7][..]).err(),
            Some(Error::TooShort { len: 7 })
        );
        assert!(Repr::parse(&Packet::new_unchecked(&[0u8; 3][..]), false).is_err());
    }
}
