//! UDP headers (RFC 768).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Source Port          |       Destination Port        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |            Length             |           Checksum            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! Length covers header and data. A zero checksum means "not computed", which RFC 768 allows
//! over IPv4 and RFC 8200 section 8.1 forbids over IPv6 (except as RFC 6935 relaxes for
//! tunnels, which the tunnel code decides).

use super::checksum;

/// Byte ranges of the header.
pub mod field {
    use core::ops::Range;
    /// Source port.
    pub const SRC_PORT: Range<usize> = 0..2;
    /// Destination port.
    pub const DST_PORT: Range<usize> = 2..4;
    /// Length.
    pub const LENGTH: Range<usize> = 4..6;
    /// Checksum.
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Header length.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// Why bytes are not a valid UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the header.
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// Length below 8 or past the buffer.
    BadLength {
        /// Length field.
        udp_len: usize,
        /// Bytes available.
        len: usize,
    },
}

/// A view of a UDP datagram. After [`Packet::check_len`] no accessor panics; `payload` ends at
/// Length. `set_len` voids the check.
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
    /// Checks the header and Length.
    ///
    /// # Errors
    /// [`Error::TooShort`], [`Error::BadLength`].
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::TooShort { len });
        }
        let udp_len = usize::from(self.len());
        if udp_len < HEADER_LEN || udp_len > len {
            return Err(Error::BadLength { udp_len, len });
        }
        Ok(())
    }
    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        self.read_u16(field::SRC_PORT.start)
    }
    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.read_u16(field::DST_PORT.start)
    }
    /// Length field.
    #[inline]
    pub fn len(&self) -> u16 {
        self.read_u16(field::LENGTH.start)
    }
    /// True when Length is zero (never, after `check_len`).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM.start)
    }
    /// The data, bounded by Length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }
    /// Verifies the checksum given the pseudo-header sum ([`pseudo_header_v4`] or
    /// [`pseudo_header_v6`]). A zero field verifies (the caller decides whether zero is allowed).
    /// Under `cfg(fuzzing)` it always verifies.
    #[inline(always)]
    pub fn verify_checksum(&self, pseudo: u32) -> bool {
        if cfg!(fuzzing) || self.checksum() == 0 {
            return true;
        }
        checksum::sum_wide(&self.buffer.as_ref()[..usize::from(self.len())], pseudo) == 0xffff
    }
    #[inline(always)]
    fn read_u16(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        self.write_u16(field::SRC_PORT.start, v);
    }
    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        self.write_u16(field::DST_PORT.start, v);
    }
    /// Sets Length. Voids `check_len`.
    #[inline]
    pub fn set_len(&mut self, v: u16) {
        self.write_u16(field::LENGTH.start, v);
    }
    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.write_u16(field::CHECKSUM.start, v);
    }
    /// Computes the checksum over header and data with the pseudo-header sum. A result of zero
    /// is sent as 0xffff (RFC 768).
    pub fn fill_checksum(&mut self, pseudo: u32) {
        self.set_checksum(0);
        let len = usize::from(self.len());
        let c = !(checksum::sum(&self.buffer.as_ref()[..len], pseudo) as u16);
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
    #[inline(always)]
    fn write_u16(&mut self, at: usize, v: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
}

/// The one's-complement sum of the IPv4 pseudo-header (RFC 768).
#[inline]
pub fn pseudo_header_v4(src: u32, dst: u32, protocol: u8, len: u16) -> u32 {
    // Each address as one 32-bit word (2^16 ≡ 1 mod 2^16 - 1, so it counts as its two
    // halves), the protocol (behind a zero byte) and the length.
    checksum::fold(u64::from(src) + u64::from(dst) + u64::from(protocol) + u64::from(len))
}

/// The one's-complement sum of the IPv6 pseudo-header (RFC 8200 section 8.1).
pub fn pseudo_header_v6(src: u128, dst: u128, protocol: u8, len: u32) -> u32 {
    // The 32-bit words of both addresses (2^16 ≡ 1 mod 2^16 - 1, so a 32-bit word counts as
    // its two halves), the length and the protocol.
    let words = |a: u128| {
        u64::from(a as u32)
            + u64::from((a >> 32) as u32)
            + u64::from((a >> 64) as u32)
            + u64::from((a >> 96) as u32)
    };
    checksum::fold(words(src) + words(dst) + u64::from(len) + u64::from(protocol))
}

/// A parsed UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Data length.
    pub payload_len: usize,
}

impl Repr {
    /// Parses a datagram (the checksum is the caller's, since it needs the IP header).
    ///
    /// # Errors
    /// See [`Packet::check_len`].
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, Error> {
        p.check_len()?;
        Ok(Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            payload_len: usize::from(p.len()) - HEADER_LEN,
        })
    }
    /// Header bytes [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }
    /// Writes the header with a zero checksum; call `fill_checksum` once the data is in place.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        let len = HEADER_LEN.saturating_add(self.payload_len);
        p.set_len(u16::try_from(len).unwrap_or(u16::MAX));
        p.set_checksum(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::{ipv4_udp, IPV6_UDP};
    use proptest::prelude::*;

    fn udp4() -> &'static [u8] {
        &ipv4_udp()[20..]
    }
    const SRC4: u32 = 0xc000_020a;
    const DST4: u32 = 0xac12_0002;

    proptest! {
        /// The pseudo-header sums equal the RFC 1071 sum of the pseudo-header's bytes as
        /// RFC 768 and RFC 8200 section 8.1 lay them out.
        #[test]
        fn pseudo_headers_sum_like_their_bytes(
            s4: u32, d4: u32, s6: u128, d6: u128, proto: u8, len: u16, len6: u32,
        ) {
            let mut b = [0u8; 12];
            b[0..4].copy_from_slice(&s4.to_be_bytes());
            b[4..8].copy_from_slice(&d4.to_be_bytes());
            b[9] = proto;
            b[10..12].copy_from_slice(&len.to_be_bytes());
            prop_assert_eq!(pseudo_header_v4(s4, d4, proto, len), checksum::sum(&b, 0));
            let mut b = [0u8; 40];
            b[0..16].copy_from_slice(&s6.to_be_bytes());
            b[16..32].copy_from_slice(&d6.to_be_bytes());
            b[32..36].copy_from_slice(&len6.to_be_bytes());
            b[39] = proto;
            prop_assert_eq!(pseudo_header_v6(s6, d6, proto, len6), checksum::sum(&b, 0));
        }
    }

    #[test]
    fn deconstruct_reads_fixture_fields() {
        let p = Packet::new_checked(udp4()).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (40000, 5000, 12));
        assert_eq!(p.checksum(), 0x031e);
        assert_eq!(p.payload(), b"ping");
        assert!(p.verify_checksum(pseudo_header_v4(SRC4, DST4, 17, 12)));
    }

    #[test]
    fn ipv6_checksum_verifies() {
        let p = Packet::new_checked(&IPV6_UDP[40..]).unwrap();
        let ip = crate::wire::Ipv6Packet::new_checked(&IPV6_UDP[..]).unwrap();
        assert!(p.verify_checksum(pseudo_header_v6(ip.src(), ip.dst(), 17, 12)));
    }

    #[test]
    fn construct_writes_fixture_bytes() {
        let mut buf = [0xa5u8; 12];
        buf[8..].copy_from_slice(b"ping");
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(40000);
        p.set_dst_port(5000);
        p.set_len(12);
        p.fill_checksum(pseudo_header_v4(SRC4, DST4, 17, 12));
        assert_eq!(&buf[..], udp4());
    }

    #[test]
    fn repr_round_trips() {
        let r = Repr::parse(&Packet::new_unchecked(udp4())).unwrap();
        assert_eq!(
            r,
            Repr {
                src_port: 40000,
                dst_port: 5000,
                payload_len: 4
            }
        );
        let mut buf = [0xa5u8; 12];
        buf[8..].copy_from_slice(b"ping");
        let mut p = Packet::new_unchecked(&mut buf[..]);
        r.emit(&mut p);
        p.fill_checksum(pseudo_header_v4(SRC4, DST4, 17, 12));
        assert_eq!(&buf[..], udp4());
    }

    #[test]
    fn corrupted_data_fails_the_checksum() {
        let mut buf = udp4().to_vec();
        buf[9] ^= 0x10;
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(!p.verify_checksum(pseudo_header_v4(SRC4, DST4, 17, 12)));
    }

    #[test]
    fn length_below_header_is_bad() {
        let mut buf = udp4().to_vec();
        buf[5] = 7;
        assert_eq!(
            Packet::new_checked(&buf[..]).err(),
            Some(Error::BadLength {
                udp_len: 7,
                len: 12
            })
        );
    }

    #[test]
    fn every_truncation_errors() {
        for len in 0..12 {
            let want = if len < 8 {
                Error::TooShort { len }
            } else {
                Error::BadLength { udp_len: 12, len }
            };
            assert_eq!(Packet::new_checked(&udp4()[..len]).err(), Some(want));
        }
    }

    proptest! {
        #[test]
        fn repr_round_trips_any(src_port: u16, dst_port: u16, payload_len in 0usize..1472) {
            let r = Repr { src_port, dst_port, payload_len };
            let mut buf = vec![0u8; HEADER_LEN + payload_len];
            r.emit(&mut Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_unchecked(&buf[..])), Ok(r));
        }
    }
}
