//! GTP-U headers (3GPP TS 29.281 section 5) and the PDU Session Container extension
//! (TS 38.415 section 5.5.2).
//!
//! ```text
//!   Bits  8   7   6   5   4   3   2   1
//!       +-----------+---+---+---+---+---+
//! Oct 1 |  Version  |PT |(*)| E | S |PN |   Version 1, PT 1 = GTP (not GTP')
//!       +-----------+---+---+---+---+---+
//!     2 |          Message Type          |   255 = G-PDU (user data)
//!       +--------------------------------+
//!   3-4 |            Length              |   octets after the first 8
//!       +--------------------------------+
//!   5-8 |  Tunnel Endpoint Identifier    |
//!       +--------------------------------+
//!  9-10 |  Sequence Number  (if E|S|PN)  |
//!    11 |  N-PDU Number     (if E|S|PN)  |
//!    12 |  Next Ext. Header (if E|S|PN)  |
//!       +--------------------------------+
//! ```
//! If any of E, S, PN is set, all four optional octets are present (29.281 5.1). Each
//! extension header is `[length in 4-octet units][content][next type]`; a zero length is an
//! error. The two high bits of a type say whether a receiver must understand it (29.281 5.2.1):
//! `1x` means comprehension required, and an unknown such type drops the packet.
//!
//! The payload is bounded by the Length field, not by the buffer: trailing bytes are ignored
//! and a Length past the buffer is an error. All offsets are `usize` and checked, so a Length
//! near 65535 cannot wrap (the 16-bit wrap gopacket's `layers/gtp.go` guards against).

/// Byte ranges of the mandatory header and the optional octets.
pub mod field {
    use core::ops::Range;
    /// Version, PT, E, S, PN.
    pub const FLAGS: usize = 0;
    /// Message type.
    pub const MSG_TYPE: usize = 1;
    /// Length.
    pub const LENGTH: Range<usize> = 2..4;
    /// TEID.
    pub const TEID: Range<usize> = 4..8;
    /// Sequence number (optional).
    pub const SEQUENCE: Range<usize> = 8..10;
    /// N-PDU number (optional).
    pub const NPDU: usize = 10;
    /// Next extension header type (optional).
    pub const NEXT_EXT: usize = 11;
    /// End of the optional octets.
    pub const OPTIONAL_END: usize = 12;
}

/// Length of the mandatory header.
pub const HEADER_LEN: usize = field::TEID.end;
/// The UDP port of GTP-U.
pub const UDP_PORT: u16 = 2152;
/// Most extension headers a walk follows.
pub const MAX_EXT_HEADERS: usize = 8;

/// Message types (29.281 table 6.1-1).
pub mod msg {
    /// Echo Request.
    pub const ECHO_REQUEST: u8 = 1;
    /// Echo Response.
    pub const ECHO_RESPONSE: u8 = 2;
    /// Error Indication.
    pub const ERROR_INDICATION: u8 = 26;
    /// Supported Extension Headers Notification.
    pub const SUPPORTED_EXT_HEADERS: u8 = 31;
    /// End Marker.
    pub const END_MARKER: u8 = 254;
    /// G-PDU: user data.
    pub const G_PDU: u8 = 255;
}

/// Extension header types this gateway understands (29.281 5.2.2, 38.415).
pub mod ext {
    /// PDU Session Container.
    pub const PDU_SESSION_CONTAINER: u8 = 0x85;
    /// PDCP PDU Number.
    pub const PDCP_PDU_NUMBER: u8 = 0xc0;
    /// UDP Port.
    pub const UDP_PORT: u8 = 0x40;
    /// Service Class Indicator.
    pub const SERVICE_CLASS: u8 = 0x20;
    /// RAN Container.
    pub const RAN_CONTAINER: u8 = 0x81;
    /// Long PDCP PDU Number (two forms).
    pub const LONG_PDCP_PDU_NUMBER: [u8; 2] = [0x82, 0x83];
    /// NR RAN Container.
    pub const NR_RAN_CONTAINER: u8 = 0x84;
}

/// Why bytes are not a usable GTP-U message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the mandatory header, or than the optional octets the flags announce.
    TooShort {
        /// Bytes available.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// Version is not 1, or PT is 0 (GTP').
    BadVersion {
        /// The flags octet.
        flags: u8,
    },
    /// Length runs past the buffer, or is shorter than the optional octets.
    BadLength {
        /// Length field.
        length: usize,
        /// Bytes available after the mandatory header.
        available: usize,
    },
    /// An extension header with length 0.
    ZeroExtLength {
        /// Its type.
        kind: u8,
    },
    /// An extension header past the end of the message.
    ExtTruncated {
        /// Its type.
        kind: u8,
    },
    /// More than [`MAX_EXT_HEADERS`] extension headers.
    TooManyExtHeaders,
    /// An unknown extension header the receiver is required to understand.
    UnknownRequiredExt {
        /// Its type.
        kind: u8,
    },
}

/// What the extension walk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Walk {
    /// Offset of the T-PDU (payload) from the start of the GTP-U header.
    pub payload_off: usize,
    /// End of the payload (8 + Length).
    pub payload_end: usize,
    /// QFI from a PDU Session Container, if present.
    pub qfi: Option<u8>,
}

/// A view of a GTP-U message. After [`Packet::check_len`] no accessor panics. `set_length`
/// and `set_flags` void the check.
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

    /// Checks the mandatory header, version/PT, the optional octets and Length.
    ///
    /// # Errors
    /// [`Error::TooShort`], [`Error::BadVersion`], [`Error::BadLength`].
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::TooShort {
                len,
                need: HEADER_LEN,
            });
        }
        let flags = self.flags();
        if flags >> 5 != 1 || flags & 0x10 == 0 {
            return Err(Error::BadVersion { flags });
        }
        let need = self.header_len();
        if len < need {
            return Err(Error::TooShort { len, need });
        }
        let length = usize::from(self.length());
        if HEADER_LEN + length > len || HEADER_LEN + length < need {
            return Err(Error::BadLength {
                length,
                available: len - HEADER_LEN,
            });
        }
        Ok(())
    }

    /// The flags octet.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }
    /// E, S or PN set: the four optional octets are present.
    #[inline]
    pub fn has_optional(&self) -> bool {
        self.flags() & 0x07 != 0
    }
    /// E: an extension header follows.
    #[inline]
    pub fn has_ext(&self) -> bool {
        self.flags() & 0x04 != 0
    }
    /// S: the sequence number is meaningful.
    #[inline]
    pub fn has_seq(&self) -> bool {
        self.flags() & 0x02 != 0
    }
    /// Header length including the optional octets (not the extension headers).
    #[inline]
    pub fn header_len(&self) -> usize {
        if self.has_optional() {
            field::OPTIONAL_END
        } else {
            HEADER_LEN
        }
    }
    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::MSG_TYPE]
    }
    /// Length field.
    #[inline]
    pub fn length(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::LENGTH];
        u16::from_be_bytes([b[0], b[1]])
    }
    /// TEID.
    #[inline]
    pub fn teid(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::TEID];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    /// Sequence number (0 when the optional octets are absent).
    #[inline]
    pub fn seq(&self) -> u16 {
        if !self.has_optional() {
            return 0;
        }
        let b = &self.buffer.as_ref()[field::SEQUENCE];
        u16::from_be_bytes([b[0], b[1]])
    }
    /// Next extension header type (0 when absent).
    #[inline]
    pub fn next_ext(&self) -> u8 {
        if self.has_ext() {
            self.buffer.as_ref()[field::NEXT_EXT]
        } else {
            0
        }
    }

    /// Walks the extension headers (bounded), bounded by Length, and returns where the
    /// payload is and the QFI of a PDU Session Container.
    ///
    /// # Errors
    /// [`Error::ZeroExtLength`], [`Error::ExtTruncated`], [`Error::TooManyExtHeaders`],
    /// [`Error::UnknownRequiredExt`].
    pub fn walk(&self) -> Result<Walk, Error> {
        let b = self.buffer.as_ref();
        let end = HEADER_LEN + usize::from(self.length());
        let mut w = Walk {
            payload_off: self.header_len(),
            payload_end: end,
            qfi: None,
        };
        let mut kind = self.next_ext();
        for _ in 0..MAX_EXT_HEADERS {
            if kind == 0 {
                return Ok(w);
            }
            let off = w.payload_off;
            let Some(&units) = b.get(off).filter(|_| off < end) else {
                return Err(Error::ExtTruncated { kind });
            };
            let len = usize::from(units) * 4;
            if len == 0 {
                return Err(Error::ZeroExtLength { kind });
            }
            if off + len > end {
                return Err(Error::ExtTruncated { kind });
            }
            if kind == ext::PDU_SESSION_CONTAINER && len >= 4 {
                w.qfi = Some(b[off + 2] & 0x3f);
            } else if !understood(kind) && kind & 0x80 != 0 {
                return Err(Error::UnknownRequiredExt { kind });
            }
            kind = b[off + len - 1];
            w.payload_off = off + len;
        }
        if kind == 0 {
            Ok(w)
        } else {
            Err(Error::TooManyExtHeaders)
        }
    }
}

fn understood(kind: u8) -> bool {
    matches!(
        kind,
        ext::PDU_SESSION_CONTAINER
            | ext::PDCP_PDU_NUMBER
            | ext::UDP_PORT
            | ext::SERVICE_CLASS
            | ext::RAN_CONTAINER
            | ext::NR_RAN_CONTAINER
            | 0x82
            | 0x83
    )
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags octet. Voids `check_len`.
    #[inline]
    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS] = v;
    }
    /// Sets the message type.
    #[inline]
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::MSG_TYPE] = v;
    }
    /// Sets Length. Voids `check_len`.
    #[inline]
    pub fn set_length(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the TEID.
    #[inline]
    pub fn set_teid(&mut self, v: u32) {
        self.buffer.as_mut()[field::TEID].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets sequence number, N-PDU number and next extension type (the optional octets,
    /// which must be present).
    #[inline]
    pub fn set_optional(&mut self, seq: u16, npdu: u8, next_ext: u8) {
        let b = self.buffer.as_mut();
        b[field::SEQUENCE].copy_from_slice(&seq.to_be_bytes());
        b[field::NPDU] = npdu;
        b[field::NEXT_EXT] = next_ext;
    }
}

/// A GTP-U header to build: the mandatory header, an optional sequence number, and an
/// optional PDU Session Container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Message type.
    pub msg_type: u8,
    /// TEID.
    pub teid: u32,
    /// Sequence number (sets S).
    pub seq: Option<u16>,
    /// PDU Session Container: (PDU type 0 = DL / 1 = UL, QFI). Sets E.
    pub psc: Option<(u8, u8)>,
    /// Bytes of payload after the header.
    pub payload_len: usize,
}

impl Repr {
    /// Parses a checked message. The sequence number is kept only when S is set; a PDU
    /// Session Container is kept when it is the first extension.
    ///
    /// # Errors
    /// Any [`Error`] of [`Packet::check_len`] and [`Packet::walk`].
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, Error> {
        p.check_len()?;
        let w = p.walk()?;
        let b = p.buffer.as_ref();
        let psc = if p.next_ext() == ext::PDU_SESSION_CONTAINER {
            w.qfi.map(|q| (b[field::OPTIONAL_END + 1] >> 4, q))
        } else {
            None
        };
        Ok(Repr {
            msg_type: p.msg_type(),
            teid: p.teid(),
            seq: p.has_seq().then(|| p.seq()),
            psc,
            payload_len: w.payload_end - w.payload_off,
        })
    }

    /// Header bytes [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        let optional = if self.seq.is_some() || self.psc.is_some() {
            4
        } else {
            0
        };
        let psc = if self.psc.is_some() { 4 } else { 0 };
        HEADER_LEN + optional + psc
    }

    /// Writes the header into the first [`Repr::buffer_len`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        let mut flags = 0x30u8;
        if self.seq.is_some() {
            flags |= 0x02;
        }
        if self.psc.is_some() {
            flags |= 0x04;
        }
        let after = self.buffer_len() - HEADER_LEN + self.payload_len;
        let mut p = Packet::new_unchecked(&mut *buf);
        p.set_flags(flags);
        p.set_msg_type(self.msg_type);
        p.set_length(u16::try_from(after).unwrap_or(u16::MAX));
        p.set_teid(self.teid);
        if flags & 0x07 != 0 {
            let next = if self.psc.is_some() {
                ext::PDU_SESSION_CONTAINER
            } else {
                0
            };
            p.set_optional(self.seq.unwrap_or(0), 0, next);
        }
        if let Some((pdu_type, qfi)) = self.psc {
            // One 4-octet unit: PDU type, QFI (38.415 5.5.2.1 DL / 5.5.2.2 UL), next type 0.
            if let Some(e) = buf.get_mut(field::OPTIONAL_END..field::OPTIONAL_END + 4) {
                e.copy_from_slice(&[1, pdu_type << 4, qfi & 0x3f, 0]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::{GTPU_PLAIN, GTPU_PSC, GTPU_SEQ};
    use proptest::prelude::*;

    #[test]
    fn deconstruct_plain_g_pdu() {
        let p = Packet::new_checked(&GTPU_PLAIN[..]).unwrap();
        assert_eq!(
            (p.msg_type(), p.teid(), p.length()),
            (msg::G_PDU, 0x1001, 4)
        );
        assert_eq!(
            p.walk().unwrap(),
            Walk {
                payload_off: 8,
                payload_end: 12,
                qfi: None
            }
        );
    }

    #[test]
    fn deconstruct_sequence_number() {
        let p = Packet::new_checked(&GTPU_SEQ[..]).unwrap();
        assert!(p.has_seq());
        assert_eq!(p.seq(), 0x0102);
        assert_eq!(p.walk().unwrap().payload_off, 12);
    }

    #[test]
    fn deconstruct_pdu_session_container() {
        let p = Packet::new_checked(&GTPU_PSC[..]).unwrap();
        let w = p.walk().unwrap();
        assert_eq!(
            w,
            Walk {
                payload_off: 16,
                payload_end: 20,
                qfi: Some(9)
            }
        );
    }

    #[test]
    fn construct_each_fixture_through_repr() {
        for (fixture, repr) in [
            (
                &GTPU_PLAIN[..],
                Repr {
                    msg_type: 255,
                    teid: 0x1001,
                    seq: None,
                    psc: None,
                    payload_len: 4,
                },
            ),
            (
                &GTPU_SEQ[..],
                Repr {
                    msg_type: 255,
                    teid: 0x1001,
                    seq: Some(0x0102),
                    psc: None,
                    payload_len: 4,
                },
            ),
            (
                &GTPU_PSC[..],
                Repr {
                    msg_type: 255,
                    teid: 0x2001,
                    seq: None,
                    psc: Some((1, 9)),
                    payload_len: 4,
                },
            ),
        ] {
            assert_eq!(Repr::parse(&Packet::new_unchecked(fixture)).unwrap(), repr);
            let mut buf = vec![0xa5u8; fixture.len()];
            repr.emit(&mut buf);
            let hl = repr.buffer_len();
            assert_eq!(&buf[..hl], &fixture[..hl]);
        }
    }

    #[test]
    fn zero_length_extension_is_an_error() {
        let mut b = GTPU_PSC.to_vec();
        b[12] = 0;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.walk(), Err(Error::ZeroExtLength { kind: 0x85 }));
    }

    #[test]
    fn extension_past_length_is_truncated() {
        let mut b = GTPU_PSC.to_vec();
        b[12] = 3; // 12 bytes of extension in a message with 8 after the optional octets
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.walk(), Err(Error::ExtTruncated { kind: 0x85 }));
    }

    #[test]
    fn unknown_comprehension_required_extension_is_refused_and_optional_one_skipped() {
        let mut b = GTPU_PSC.to_vec();
        b[11] = 0xd7;
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().walk(),
            Err(Error::UnknownRequiredExt { kind: 0xd7 })
        );
        b[11] = 0x17;
        assert_eq!(
            Packet::new_checked(&b[..])
                .unwrap()
                .walk()
                .unwrap()
                .payload_off,
            16
        );
    }

    #[test]
    fn endless_extension_chain_is_bounded() {
        let mut b = vec![0x34, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x40];
        for _ in 0..20 {
            b.extend_from_slice(&[1, 0, 0, 0x40]);
        }
        let len = (b.len() - 8) as u16;
        b[2..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().walk(),
            Err(Error::TooManyExtHeaders)
        );
    }

    #[test]
    fn wrong_version_and_gtp_prime_are_refused() {
        let mut b = GTPU_PLAIN.to_vec();
        b[0] = 0x50;
        assert_eq!(
            Packet::new_checked(&b[..]).err(),
            Some(Error::BadVersion { flags: 0x50 })
        );
        b[0] = 0x20;
        assert_eq!(
            Packet::new_checked(&b[..]).err(),
            Some(Error::BadVersion { flags: 0x20 })
        );
    }

    #[test]
    fn length_past_the_buffer_is_refused_and_trailing_bytes_are_ignored() {
        let mut b = GTPU_PLAIN.to_vec();
        b[3] = 5;
        assert_eq!(
            Packet::new_checked(&b[..]).err(),
            Some(Error::BadLength {
                length: 5,
                available: 4
            })
        );
        let mut b = GTPU_PLAIN.to_vec();
        b.extend_from_slice(&[0xee; 6]);
        assert_eq!(
            Packet::new_checked(&b[..])
                .unwrap()
                .walk()
                .unwrap()
                .payload_end,
            12
        );
    }

    #[test]
    fn near_max_length_cannot_wrap() {
        let mut b = GTPU_PLAIN.to_vec();
        b[2..4].copy_from_slice(&0xffffu16.to_be_bytes());
        assert!(matches!(
            Packet::new_checked(&b[..]),
            Err(Error::BadLength { length: 65535, .. })
        ));
    }

    #[test]
    fn every_truncation_errors() {
        for fixture in [&GTPU_PLAIN[..], &GTPU_SEQ[..], &GTPU_PSC[..]] {
            for len in 0..fixture.len() {
                assert!(Packet::new_checked(&fixture[..len]).is_err(), "len {len}");
            }
        }
    }

    proptest! {
        #[test]
        fn repr_round_trips(msg_type: u8, teid: u32, seq: Option<u16>,
                            psc in proptest::option::of((0u8..2, 0u8..64)), payload_len in 0usize..1400) {
            let r = Repr { msg_type, teid, seq, psc, payload_len };
            let mut buf = vec![0u8; r.buffer_len() + payload_len];
            r.emit(&mut buf);
            prop_assert_eq!(Repr::parse(&Packet::new_unchecked(&buf[..])), Ok(r));
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = Packet::new_checked(&b[..]) {
                if let Ok(w) = p.walk() {
                    prop_assert!(w.payload_off <= w.payload_end && w.payload_end <= b.len());
                }
            }
        }
    }
}
