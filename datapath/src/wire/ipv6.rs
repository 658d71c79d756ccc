//! IPv6 headers (RFC 8200) and the walk over their extension headers.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Traffic Class |           Flow Label                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Payload Length        |  Next Header  |   Hop Limit   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                   Source Address (128 bits)                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                Destination Address (128 bits)                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! Payload Length counts the bytes after this 40-byte header, extension headers included.
//! Jumbograms (RFC 2675, Payload Length 0 with a Jumbo option) are not supported.

use super::ip_proto;

/// Byte ranges of the fixed header.
pub mod field {
    use core::ops::Range;
    /// Version, traffic class, flow label.
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    /// Payload length.
    pub const LENGTH: Range<usize> = 4..6;
    /// Next header.
    pub const NXT_HDR: usize = 6;
    /// Hop limit.
    pub const HOP_LIMIT: usize = 7;
    /// Source address.
    pub const SRC: Range<usize> = 8..24;
    /// Destination address.
    pub const DST: Range<usize> = 24..40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::DST.end;
/// The smallest MTU every IPv6 link has (RFC 8200 section 5): an ICMPv6 error must fit it
/// (RFC 4443 section 2.4(c)).
pub const MIN_MTU: usize = 1280;

/// How many extension headers a walk follows before giving up (RFC 8200 sets no limit; real
/// traffic carries at most a few, and a bound keeps the work per packet fixed).
pub const MAX_EXT_HEADERS: usize = 8;

/// Why bytes are not a valid IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the 40-byte header.
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// Version nibble is not 6.
    BadVersion {
        /// Version seen.
        version: u8,
    },
    /// Payload Length runs past the buffer.
    BadPayloadLength {
        /// Payload Length field.
        payload_len: usize,
        /// Bytes available after the fixed header.
        available: usize,
    },
    /// An extension header runs past the payload.
    ExtHeaderTruncated {
        /// Offset of the extension header from the start of the IPv6 header.
        offset: usize,
        /// Its next-header value (its own type).
        kind: u8,
    },
    /// More than [`MAX_EXT_HEADERS`] extension headers.
    TooManyExtHeaders,
}

/// A view of an IPv6 packet. After [`Packet::check_len`] no accessor panics; `payload` ends at
/// Payload Length. `set_payload_len` voids the check.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// The upper-layer header found by [`Packet::upper_layer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// Its protocol number (the last Next Header).
    pub protocol: u8,
    /// Its offset from the start of the IPv6 header.
    pub offset: usize,
    /// A Fragment header was present with a non-zero offset: no upper-layer header here.
    pub later_fragment: bool,
    /// A Fragment header was present that makes this a fragment: a non-zero offset or the M
    /// flag. An atomic fragment (offset 0, M 0) is a whole packet and is processed as one
    /// (RFC 6946 section 4).
    pub fragment: bool,
    /// Segments Left of the first Routing header that has segments left, else 0. Such a packet
    /// is addressed to the current segment, not to its final destination: a router forwards it
    /// unchanged (RFC 8200 section 4.4), but a tunnel endpoint must not take it as its own.
    pub segments_left: u8,
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
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// Checks the fixed header, version and Payload Length.
    ///
    /// # Errors
    /// [`Error::TooShort`], [`Error::BadVersion`], [`Error::BadPayloadLength`].
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::TooShort { len });
        }
        if self.version() != 6 {
            return Err(Error::BadVersion {
                version: self.version(),
            });
        }
        let payload_len = usize::from(self.payload_len());
        if payload_len > len - HEADER_LEN {
            return Err(Error::BadPayloadLength {
                payload_len,
                available: len - HEADER_LEN,
            });
        }
        Ok(())
    }
    /// Version nibble.
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW.start] >> 4
    }
    /// Traffic class.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        let b = self.buffer.as_ref();
        (b[0] << 4) | (b[1] >> 4)
    }
    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([0, b[1] & 0x0f, b[2], b[3]])
    }
    /// Payload Length.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::LENGTH];
        u16::from_be_bytes([b[0], b[1]])
    }
    /// Total length of the packet (header + payload).
    #[inline]
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }
    /// Next Header of the fixed header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }
    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }
    /// Source address, big-endian as an integer.
    #[inline]
    pub fn src(&self) -> u128 {
        read_u128(&self.buffer.as_ref()[field::SRC])
    }
    /// Destination address as an integer.
    #[inline]
    pub fn dst(&self) -> u128 {
        read_u128(&self.buffer.as_ref()[field::DST])
    }
    /// The payload, bounded by Payload Length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.total_len()]
    }

    /// Walks Hop-by-Hop, Routing, Fragment, Destination Options and AH headers to the first
    /// other header (RFC 8200 section 4), at most [`MAX_EXT_HEADERS`] of them.
    ///
    /// # Errors
    /// [`Error::ExtHeaderTruncated`], [`Error::TooManyExtHeaders`].
    pub fn upper_layer(&self) -> Result<UpperLayer, Error> {
        let end = self.total_len();
        let b = self.buffer.as_ref();
        let mut kind = self.next_header();
        let mut offset = HEADER_LEN;
        let mut fragment = false;
        let mut later_fragment = false;
        let mut segments_left = 0u8;
        for _ in 0..=MAX_EXT_HEADERS {
            let len = match kind {
                ip_proto::HOPOPT | ip_proto::IPV6_ROUTE | ip_proto::IPV6_OPTS => {
                    let l = b.get(offset + 1).filter(|_| offset + 2 <= end);
                    let Some(&l) = l else {
                        return Err(Error::ExtHeaderTruncated { offset, kind });
                    };
                    (usize::from(l) + 1) * 8
                }
                ip_proto::IPV6_FRAG => {
                    if offset + 8 > end {
                        return Err(Error::ExtHeaderTruncated { offset, kind });
                    }
                    let field = u16::from_be_bytes([b[offset + 2], b[offset + 3]]);
                    let off = field & 0xfff8;
                    fragment = off != 0 || field & 1 != 0;
                    later_fragment = off != 0;
                    8
                }
                ip_proto::AH => {
                    let Some(&l) = b.get(offset + 1).filter(|_| offset + 2 <= end) else {
                        return Err(Error::ExtHeaderTruncated { offset, kind });
                    };
                    (usize::from(l) + 2) * 4
                }
                protocol => {
                    return Ok(UpperLayer {
                        protocol,
                        offset,
                        later_fragment,
                        fragment,
                        segments_left,
                    })
                }
            };
            if offset + len > end {
                return Err(Error::ExtHeaderTruncated { offset, kind });
            }
            if kind == ip_proto::IPV6_ROUTE && segments_left == 0 {
                // Routing header: Next Header, Hdr Ext Len, Routing Type, Segments Left. Its
                // length is at least 8, checked just above.
                segments_left = b[offset + 3];
            }
            kind = b[offset];
            offset += len;
            if later_fragment {
                return Ok(UpperLayer {
                    protocol: kind,
                    offset,
                    later_fragment,
                    fragment,
                    segments_left,
                });
            }
        }
        Err(Error::TooManyExtHeaders)
    }
}

#[inline]
fn read_u128(b: &[u8]) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(b);
    u128::from_be_bytes(a)
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 6, traffic class and flow label.
    #[inline]
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let v = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets Payload Length. Voids `check_len`.
    #[inline]
    pub fn set_payload_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets Next Header.
    #[inline]
    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = v;
    }
    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }
    /// Sets the source address.
    #[inline]
    pub fn set_src(&mut self, v: u128) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the destination address.
    #[inline]
    pub fn set_dst(&mut self, v: u128) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&v.to_be_bytes());
    }
}

/// A parsed IPv6 fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src: u128,
    /// Destination address.
    pub dst: u128,
    /// Next header.
    pub next_header: u8,
    /// Payload length.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label.
    pub flow_label: u32,
}

impl Repr {
    /// Parses the fixed header.
    ///
    /// # Errors
    /// See [`Packet::check_len`].
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, Error> {
        p.check_len()?;
        Ok(Repr {
            src: p.src(),
            dst: p.dst(),
            next_header: p.next_header(),
            payload_len: usize::from(p.payload_len()),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
        })
    }
    /// Bytes [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }
    /// Writes the fixed header into `p` (at least [`HEADER_LEN`] bytes).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_version_tc_flow(self.traffic_class, self.flow_label);
        p.set_payload_len(u16::try_from(self.payload_len).unwrap_or(u16::MAX));
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src(self.src);
        p.set_dst(self.dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::{IPV6_EXT, IPV6_UDP};
    use proptest::prelude::*;

    #[test]
    fn deconstruct_reads_fixture_fields() {
        let p = Packet::new_checked(&IPV6_UDP[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 12);
        assert_eq!(p.next_header(), 17);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src(), 0xfd00_000a_0000_0000_0000_0000_0000_0010);
        assert_eq!(p.dst(), 0xfd00_0000_0000_10c0_0000_0000_0000_0002);
    }

    #[test]
    fn construct_writes_fixture_bytes() {
        let mut buf = [0xa5u8; 40];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_version_tc_flow(0, 0x12345);
        p.set_payload_len(12);
        p.set_next_header(17);
        p.set_hop_limit(64);
        p.set_src(0xfd00_000a_0000_0000_0000_0000_0000_0010);
        p.set_dst(0xfd00_0000_0000_10c0_0000_0000_0000_0002);
        assert_eq!(&buf[..], &IPV6_UDP[..40]);
    }

    #[test]
    fn repr_round_trips() {
        let r = Repr::parse(&Packet::new_unchecked(&IPV6_UDP[..])).unwrap();
        let mut buf = [0xa5u8; 40];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..], &IPV6_UDP[..40]);
    }

    #[test]
    fn walk_finds_udp_after_hop_by_hop_destination_and_fragment() {
        let p = Packet::new_checked(&IPV6_EXT[..]).unwrap();
        let ul = p.upper_layer().unwrap();
        assert_eq!(
            ul,
            UpperLayer {
                protocol: 17,
                offset: 64,
                later_fragment: false,
                // The fixture's Fragment header is atomic (offset 0, M 0): a whole packet.
                fragment: false,
                segments_left: 0,
            }
        );
        // With M set it is the first fragment of several.
        let mut first = IPV6_EXT.to_vec();
        first[59] = 1;
        let ul = Packet::new_checked(&first[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert!(ul.fragment && !ul.later_fragment);
    }

    #[test]
    fn walk_reports_the_segments_left_of_a_routing_header() {
        // A type 4 (segment routing) header with one more segment, then UDP.
        let mut buf = IPV6_UDP[..40].to_vec();
        buf[6] = ip_proto::IPV6_ROUTE;
        buf.extend_from_slice(&[ip_proto::UDP, 2, 4, 1, 0, 0, 0, 0]);
        buf.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        buf.extend_from_slice(&IPV6_UDP[40..]);
        buf[5] = (buf.len() - 40) as u8;
        let ul = Packet::new_checked(&buf[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!((ul.protocol, ul.offset, ul.segments_left), (17, 64, 1));
        buf[43] = 0;
        let ul = Packet::new_checked(&buf[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!(ul.segments_left, 0);
    }

    #[test]
    fn walk_without_extension_headers_is_immediate() {
        let p = Packet::new_checked(&IPV6_UDP[..]).unwrap();
        assert_eq!(p.upper_layer().unwrap().offset, 40);
    }

    #[test]
    fn extension_header_past_payload_length_is_truncated() {
        // Shrink Payload Length so the destination options header no longer fits.
        let mut buf = IPV6_EXT.to_vec();
        buf[5] = 12;
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            p.upper_layer(),
            Err(Error::ExtHeaderTruncated {
                offset: 48,
                kind: ip_proto::IPV6_OPTS
            })
        );
    }

    #[test]
    fn endless_extension_chain_is_bounded() {
        // Nine destination-options headers, each pointing at the next.
        let mut buf = IPV6_UDP[..40].to_vec();
        buf[6] = ip_proto::IPV6_OPTS;
        for _ in 0..9 {
            buf.extend_from_slice(&[ip_proto::IPV6_OPTS, 0, 1, 4, 0, 0, 0, 0]);
        }
        buf[5] = 72;
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(Error::TooManyExtHeaders));
    }

    #[test]
    fn bad_version_is_reported() {
        let mut buf = IPV6_UDP.to_vec();
        buf[0] = 0x40;
        assert_eq!(
            Packet::new_checked(&buf[..]).err(),
            Some(Error::BadVersion { version: 4 })
        );
    }

    #[test]
    fn every_truncation_errors_and_never_panics() {
        for len in 0..IPV6_UDP.len() {
            let want = if len < HEADER_LEN {
                Error::TooShort { len }
            } else {
                Error::BadPayloadLength {
                    payload_len: 12,
                    available: len - HEADER_LEN,
                }
            };
            assert_eq!(Packet::new_checked(&IPV6_UDP[..len]).err(), Some(want));
        }
    }

    proptest! {
        #[test]
        fn repr_round_trips_any(src: u128, dst: u128, next_header: u8, payload_len in 0usize..1500,
                                hop_limit: u8, traffic_class: u8, flow_label in 0u32..0x10_0000) {
            let r = Repr { src, dst, next_header, payload_len, hop_limit, traffic_class, flow_label };
            let mut buf = vec![0u8; HEADER_LEN + payload_len];
            r.emit(&mut Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_unchecked(&buf[..])), Ok(r));
        }

        #[test]
        fn walking_arbitrary_bytes_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..120), nh: u8) {
            let mut buf = IPV6_UDP[..40].to_vec();
            buf[6] = nh;
            buf[4..6].copy_from_slice(&(tail.len() as u16).to_be_bytes());
            buf.extend_from_slice(&tail);
            let p = Packet::new_checked(&buf[..]).unwrap();
            if let Ok(ul) = p.upper_layer() {
                prop_assert!(ul.offset <= buf.len());
            }
        }
    }
}
