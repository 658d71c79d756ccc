//! IPv4 headers (RFC 791), options honoured through IHL.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |  DSCP/ECN     |          Total Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Identification        |Flags|      Fragment Offset    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       Source Address                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Destination Address                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Options (IHL > 5)                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! IHL counts 32-bit words (5..=15); Total Length counts the whole datagram in bytes. Flags:
//! bit 1 DF (don't fragment), bit 2 MF (more fragments); the offset counts 8-byte units.

use super::checksum;

/// Byte ranges of the fixed header.
pub mod field {
    use core::ops::Range;
    /// Version and IHL.
    pub const VER_IHL: usize = 0;
    /// DSCP and ECN.
    pub const DSCP_ECN: usize = 1;
    /// Total length.
    pub const LENGTH: Range<usize> = 2..4;
    /// Identification.
    pub const IDENT: Range<usize> = 4..6;
    /// Flags and fragment offset.
    pub const FLG_OFF: Range<usize> = 6..8;
    /// Time to live.
    pub const TTL: usize = 8;
    /// Protocol.
    pub const PROTOCOL: usize = 9;
    /// Header checksum.
    pub const CHECKSUM: Range<usize> = 10..12;
    /// Source address.
    pub const SRC: Range<usize> = 12..16;
    /// Destination address.
    pub const DST: Range<usize> = 16..20;
    /// TTL and protocol as one 16-bit word, for the incremental checksum update.
    pub const TTL_PROTO: Range<usize> = 8..10;
}

/// Length of the header without options.
pub const HEADER_LEN: usize = field::DST.end;

/// Why bytes are not a valid IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the 20-byte fixed header.
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// Version nibble is not 4.
    BadVersion {
        /// The version seen.
        version: u8,
    },
    /// IHL below 5, or the options run past the buffer.
    BadIhl {
        /// IHL seen (32-bit words).
        ihl: u8,
        /// Bytes available.
        len: usize,
    },
    /// Total Length below the header length or above the bytes available.
    BadTotalLength {
        /// Total Length field.
        total_len: usize,
        /// Header length from IHL.
        header_len: usize,
        /// Bytes available.
        len: usize,
    },
    /// The header checksum does not verify.
    BadChecksum {
        /// Checksum field value.
        found: u16,
    },
}

/// A view of an IPv4 packet.
///
/// After [`Packet::check_len`] no accessor panics, and `payload` ends at Total Length (link
/// padding excluded). `set_header_len` and `set_total_len` void the check.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps and runs [`Packet::check_len`].
    ///
    /// # Errors
    /// See [`Packet::check_len`].
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the fixed header, version, IHL and Total Length against the buffer.
    ///
    /// # Errors
    /// [`Error::TooShort`], [`Error::BadVersion`], [`Error::BadIhl`], [`Error::BadTotalLength`].
    #[inline(always)]
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        // Almost every header is version 4 with no options: one compare settles both fields.
        if let Some(&[0x45, _, hi, lo]) = self.buffer.as_ref().first_chunk::<4>() {
            let total_len = usize::from(u16::from_be_bytes([hi, lo]));
            if (HEADER_LEN..=len).contains(&total_len) {
                return Ok(());
            }
        }
        if len < HEADER_LEN {
            return Err(Error::TooShort { len });
        }
        if self.version() != 4 {
            return Err(Error::BadVersion {
                version: self.version(),
            });
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN || header_len > len {
            return Err(Error::BadIhl {
                ihl: self.buffer.as_ref()[field::VER_IHL] & 0x0f,
                len,
            });
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len || total_len > len {
            return Err(Error::BadTotalLength {
                total_len,
                header_len,
                len,
            });
        }
        Ok(())
    }

    /// Consumes the view and returns the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version nibble.
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }
    /// Header length in bytes (IHL × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }
    /// DSCP and ECN byte.
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }
    /// Total Length.
    #[inline]
    pub fn total_len(&self) -> u16 {
        self.read_u16(field::LENGTH.start)
    }
    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        self.read_u16(field::IDENT.start)
    }
    /// Don't Fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.read_u16(field::FLG_OFF.start) & 0x4000 != 0
    }
    /// More Fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.read_u16(field::FLG_OFF.start) & 0x2000 != 0
    }
    /// Fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.read_u16(field::FLG_OFF.start) & 0x1fff) << 3
    }
    /// True for any fragment (MF set or a non-zero offset).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.read_u16(field::FLG_OFF.start) & 0x3fff != 0
    }
    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }
    /// Protocol of the payload.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }
    /// Header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM.start)
    }
    /// Source address as a host-order integer.
    #[inline]
    pub fn src(&self) -> u32 {
        self.read_u32(field::SRC.start)
    }
    /// Destination address as a host-order integer.
    #[inline]
    pub fn dst(&self) -> u32 {
        self.read_u32(field::DST.start)
    }
    /// True when the header checksum verifies. Under `cfg(fuzzing)` it always does, so the
    /// fuzzer reaches past it. Always inlined: out of line, the call cost as much as the sum
    /// (callgrind, BENCHMARKS.md).
    #[inline(always)]
    pub fn verify_checksum(&self) -> bool {
        if cfg!(fuzzing) {
            return true;
        }
        let b = self.buffer.as_ref();
        if let Some(h) = b.first_chunk::<HEADER_LEN>() {
            if self.header_len() == HEADER_LEN {
                return checksum::sum_header(h) == 0xffff;
            }
        }
        checksum::sum(&b[..self.header_len()], 0) == 0xffff
    }
    /// The payload, bounded by Total Length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    #[inline(always)]
    fn read_u16(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }
    #[inline(always)]
    fn read_u32(&self, at: usize) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 4 and the header length in bytes (a multiple of 4). Voids `check_len`.
    #[inline]
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }
    /// Sets DSCP/ECN.
    #[inline]
    pub fn set_dscp_ecn(&mut self, v: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = v;
    }
    /// Sets Total Length. Voids `check_len`.
    #[inline]
    pub fn set_total_len(&mut self, v: u16) {
        self.write_u16(field::LENGTH.start, v);
    }
    /// Sets Identification.
    #[inline]
    pub fn set_ident(&mut self, v: u16) {
        self.write_u16(field::IDENT.start, v);
    }
    /// Sets flags and fragment offset (offset in bytes, a multiple of 8).
    #[inline]
    pub fn set_flags_and_offset(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let v = (u16::from(dont_frag) << 14) | (u16::from(more_frags) << 13) | (offset >> 3);
        self.write_u16(field::FLG_OFF.start, v);
    }
    /// Sets TTL (the checksum is not updated).
    #[inline]
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }
    /// Sets Protocol.
    #[inline]
    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }
    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.write_u16(field::CHECKSUM.start, v);
    }
    /// Sets the source address.
    #[inline]
    pub fn set_src(&mut self, v: u32) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the destination address.
    #[inline]
    pub fn set_dst(&mut self, v: u32) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&v.to_be_bytes());
    }
    /// Recomputes the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(&self.buffer.as_ref()[..self.header_len()]);
        self.set_checksum(c);
    }
    /// Decrements TTL by one and updates the checksum incrementally (RFC 1624). The caller has
    /// checked TTL > 0.
    #[inline]
    pub fn decrement_ttl(&mut self) {
        let old = self.read_u16(field::TTL_PROTO.start);
        self.write_u16(field::TTL_PROTO.start, old.wrapping_sub(0x0100));
        let c = checksum::add_ttl_step(self.checksum());
        self.set_checksum(c);
    }
    #[inline(always)]
    fn write_u16(&mut self, at: usize, v: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
}

/// A parsed IPv4 header (options are validated through IHL but not represented).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src: u32,
    /// Destination address.
    pub dst: u32,
    /// Payload protocol.
    pub protocol: u8,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP/ECN.
    pub dscp_ecn: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment.
    pub dont_frag: bool,
}

impl Repr {
    /// Parses and validates a packet, checksum included. Fragments are represented by their
    /// header only; reassembly is not done.
    ///
    /// # Errors
    /// Any [`Error`].
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, Error> {
        p.check_len()?;
        if !p.verify_checksum() {
            return Err(Error::BadChecksum {
                found: p.checksum(),
            });
        }
        Ok(Repr {
            src: p.src(),
            dst: p.dst(),
            protocol: p.protocol(),
            payload_len: usize::from(p.total_len()) - p.header_len(),
            ttl: p.ttl(),
            dscp_ecn: p.dscp_ecn(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
        })
    }

    /// Bytes of header [`Repr::emit`] writes (no options).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header with a correct checksum into `p`, which holds at least
    /// [`HEADER_LEN`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_version_and_header_len(HEADER_LEN);
        p.set_dscp_ecn(self.dscp_ecn);
        let total = HEADER_LEN.saturating_add(self.payload_len);
        p.set_total_len(u16::try_from(total).unwrap_or(u16::MAX));
        p.set_ident(self.ident);
        p.set_flags_and_offset(self.dont_frag, false, 0);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src(self.src);
        p.set_dst(self.dst);
        p.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::{ipv4_udp, IPV4_OPTIONS};
    use proptest::prelude::*;

    #[test]
    fn deconstruct_reads_fixture_fields() {
        let p = Packet::new_checked(ipv4_udp()).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 32);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), 17);
        assert_eq!(p.src(), 0xc000_020a);
        assert_eq!(p.dst(), 0xac12_0002);
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 12);
    }

    #[test]
    fn options_are_skipped_through_ihl() {
        let p = Packet::new_checked(&IPV4_OPTIONS[..]).unwrap();
        assert_eq!(p.header_len(), 28);
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &IPV4_OPTIONS[28..]);
    }

    #[test]
    fn construct_writes_fixture_bytes() {
        let mut buf = [0xa5u8; 20];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_version_and_header_len(20);
        p.set_dscp_ecn(0);
        p.set_total_len(32);
        p.set_ident(0x1234);
        p.set_flags_and_offset(true, false, 0);
        p.set_ttl(64);
        p.set_protocol(17);
        p.set_src(0xc000_020a);
        p.set_dst(0xac12_0002);
        p.fill_checksum();
        assert_eq!(&buf[..], &ipv4_udp()[..20]);
    }

    #[test]
    fn repr_parse_then_emit_round_trips() {
        let r = Repr::parse(&Packet::new_unchecked(ipv4_udp())).unwrap();
        assert_eq!(r.payload_len, 12);
        let mut buf = [0xa5u8; 20];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..], &ipv4_udp()[..20]);
    }

    #[test]
    fn decrement_ttl_keeps_the_checksum_valid() {
        let mut buf = ipv4_udp().to_vec();
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.decrement_ttl();
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
    }

    #[test]
    fn bad_version_is_reported_with_the_version_seen() {
        let mut buf = ipv4_udp().to_vec();
        buf[0] = 0x65;
        assert_eq!(
            Packet::new_checked(&buf[..]).err(),
            Some(Error::BadVersion { version: 6 })
        );
    }

    #[test]
    fn ihl_below_five_is_bad() {
        let mut buf = ipv4_udp().to_vec();
        buf[0] = 0x44;
        assert_eq!(
            Packet::new_checked(&buf[..]).err(),
            Some(Error::BadIhl { ihl: 4, len: 32 })
        );
    }

    #[test]
    fn ihl_past_the_buffer_is_bad() {
        let buf = &IPV4_OPTIONS[..24];
        assert_eq!(
            Packet::new_checked(buf).err(),
            Some(Error::BadIhl { ihl: 7, len: 24 })
        );
    }

    #[test]
    fn total_length_past_the_buffer_is_bad() {
        let mut buf = ipv4_udp().to_vec();
        buf[3] = 33;
        assert_eq!(
            Packet::new_checked(&buf[..]).err(),
            Some(Error::BadTotalLength {
                total_len: 33,
                header_len: 20,
                len: 32
            })
        );
    }

    #[test]
    fn bad_checksum_is_rejected_by_parse() {
        let mut buf = ipv4_udp().to_vec();
        buf[11] ^= 1;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&buf[..])).err(),
            Some(Error::BadChecksum { found: 0xba7b })
        );
    }

    #[test]
    fn trailing_link_padding_is_excluded_from_the_payload() {
        let mut buf = ipv4_udp().to_vec();
        buf.extend_from_slice(&[0; 14]);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.payload().len(), 12);
    }

    #[test]
    fn every_truncation_errors_and_never_panics() {
        let full = ipv4_udp();
        for len in 0..full.len() {
            let err = Packet::new_checked(&full[..len]).err();
            let want = if len < HEADER_LEN {
                Error::TooShort { len }
            } else {
                Error::BadTotalLength {
                    total_len: 32,
                    header_len: 20,
                    len,
                }
            };
            assert_eq!(err, Some(want), "len {len}");
        }
    }

    proptest! {
        #[test]
        fn repr_round_trips(src: u32, dst: u32, protocol: u8, payload_len in 0usize..1480,
                            ttl: u8, dscp_ecn: u8, ident: u16, dont_frag: bool) {
            let r = Repr { src, dst, protocol, payload_len, ttl, dscp_ecn, ident, dont_frag };
            let mut buf = vec![0u8; HEADER_LEN + payload_len];
            r.emit(&mut Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_unchecked(&buf[..])), Ok(r));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.payload(), p.verify_checksum(), p.frag_offset());
            }
        }
    }
}
