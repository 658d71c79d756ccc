//! Geneve headers (RFC 8926 section 3.4).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |        Virtual Network Identifier (VNI)       |    Reserved   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Variable-Length Options                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! Opt Len counts the options in 4-byte words. Each option (section 3.5) is a 4-byte header
//! (class, type with the critical bit on top, 5-bit length in words) and its data. The
//! Protocol Type is an EtherType: 0x6558 (Transparent Ethernet Bridging) for an Ethernet
//! payload, or the IP EtherTypes for an IP payload. Reserved bits are ignored on receipt, as
//! the RFC says; a version other than 0 is refused (section 3.4: "packets containing unknown
//! versions MUST be dropped").

/// Byte ranges of the header.
pub mod field {
    use core::ops::Range;
    /// Version (2 bits) and Opt Len (6 bits).
    pub const VER_OPT_LEN: usize = 0;
    /// O and C flags and reserved bits.
    pub const FLAGS: usize = 1;
    /// Protocol Type.
    pub const PROTOCOL: Range<usize> = 2..4;
    /// VNI (24 bits).
    pub const VNI: Range<usize> = 4..7;
    /// Reserved octet after the VNI.
    pub const RESERVED: usize = 7;
    /// End of the fixed header; the options follow.
    pub const END: usize = 8;

    /// Fields of an option header, from its start.
    pub mod option {
        use core::ops::Range;
        /// Option Class.
        pub const CLASS: Range<usize> = 0..2;
        /// Type; its top bit is the critical bit.
        pub const TYPE: usize = 2;
        /// Reserved (3 bits) and Length (5 bits, in 4-byte words, excluding this header).
        pub const LEN: usize = 3;
        /// End of the option header.
        pub const END: usize = 4;
    }
}

/// Fixed header length.
pub const HEADER_LEN: usize = field::END;
/// The IANA port.
pub const UDP_PORT: u16 = 6081;
/// Protocol Type of an Ethernet payload (Transparent Ethernet Bridging).
pub const PROTOCOL_ETHERNET: u16 = 0x6558;
/// The longest options area Opt Len can describe: 63 words.
pub const OPTIONS_MAX: usize = 63 * 4;
const OAM_FLAG: u8 = 0x80;
const CRITICAL_FLAG: u8 = 0x40;
const CRITICAL_TYPE: u8 = 0x80;
const WORD: usize = 4;

/// Why bytes are not a usable Geneve header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the fixed header, or than the options Opt Len announces.
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// A version other than 0.
    BadVersion {
        /// The version.
        version: u8,
    },
    /// An option whose length runs past the options area.
    OptionOverrun {
        /// Offset of the option's header from the start of the Geneve header.
        at: usize,
    },
    /// An option with the critical bit set: the gateway understands no option, so it must
    /// not decapsulate (section 3.5.1).
    CriticalOption {
        /// Option Class.
        class: u16,
        /// Type (critical bit included).
        kind: u8,
    },
}

/// A view of a Geneve header, its options and its payload.
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
    /// Checks the length (fixed header and the options Opt Len announces) and the version.
    /// The options themselves are checked by [`Packet::check_options`].
    ///
    /// # Errors
    /// [`Error::TooShort`], [`Error::BadVersion`].
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::TooShort { len });
        }
        if self.version() != 0 {
            return Err(Error::BadVersion {
                version: self.version(),
            });
        }
        if len < self.header_len() {
            return Err(Error::TooShort { len });
        }
        Ok(())
    }
    /// Walks the options, bounded by Opt Len: each must end inside the options area, and
    /// none may be critical (the gateway implements no option). Needs [`Packet::check_len`].
    ///
    /// # Errors
    /// [`Error::OptionOverrun`], [`Error::CriticalOption`].
    pub fn check_options(&self) -> Result<(), Error> {
        let end = self.header_len();
        let b = self.buffer.as_ref();
        let mut at = HEADER_LEN;
        // Each option takes at least one word, so the walk ends after at most 63 steps.
        while at < end {
            let Some(h) = b
                .get(at..at + field::option::END)
                .filter(|_| at + WORD <= end)
            else {
                return Err(Error::OptionOverrun { at });
            };
            let len = field::option::END + usize::from(h[field::option::LEN] & 0x1f) * WORD;
            if at + len > end {
                return Err(Error::OptionOverrun { at });
            }
            let kind = h[field::option::TYPE];
            if kind & CRITICAL_TYPE != 0 {
                let c = &h[field::option::CLASS];
                return Err(Error::CriticalOption {
                    class: u16::from_be_bytes([c[0], c[1]]),
                    kind,
                });
            }
            at += len;
        }
        Ok(())
    }
    /// Version.
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_OPT_LEN] >> 6
    }
    /// Bytes of options (Opt Len in bytes).
    #[inline]
    pub fn options_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_OPT_LEN] & 0x3f) * WORD
    }
    /// Bytes from the start of the header to the payload.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }
    /// The O flag: a control message, never forwarded as data (section 3.4).
    #[inline]
    pub fn oam(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & OAM_FLAG != 0
    }
    /// The C flag: critical options present.
    #[inline]
    pub fn critical(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & CRITICAL_FLAG != 0
    }
    /// Protocol Type.
    #[inline]
    pub fn protocol(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::PROTOCOL];
        u16::from_be_bytes([b[0], b[1]])
    }
    /// VNI.
    #[inline]
    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }
    /// The options.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }
    /// The encapsulated frame or packet.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 0, no options and no flags (clearing the reserved bits).
    #[inline]
    pub fn clear_flags(&mut self) {
        let b = self.buffer.as_mut();
        b[field::VER_OPT_LEN] = 0;
        b[field::FLAGS] = 0;
    }
    /// Sets the Protocol Type.
    #[inline]
    pub fn set_protocol(&mut self, v: u16) {
        self.buffer.as_mut()[field::PROTOCOL].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the VNI (and clears the reserved octet after it).
    #[inline]
    pub fn set_vni(&mut self, v: u32) {
        let b = self.buffer.as_mut();
        b[field::VNI].copy_from_slice(&v.to_be_bytes()[1..]);
        b[field::RESERVED] = 0;
    }
}

/// A parsed Geneve header. Options are checked by [`Packet::check_options`] and not kept:
/// the gateway sends none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// VNI (24 bits).
    pub vni: u32,
    /// Protocol Type of the payload.
    pub protocol: u16,
}

impl Repr {
    /// Parses a header.
    ///
    /// # Errors
    /// See [`Packet::check_len`].
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, Error> {
        p.check_len()?;
        Ok(Repr {
            vni: p.vni(),
            protocol: p.protocol(),
        })
    }
    /// Bytes [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }
    /// Writes version 0, no options, no flags, the Protocol Type and the VNI.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.clear_flags();
        p.set_protocol(self.protocol);
        p.set_vni(self.vni & 0x00ff_ffff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::GENEVE_CRITICAL as CRITICAL;
    use proptest::prelude::*;

    #[test]
    fn deconstruct_reads_every_field() {
        let p = Packet::new_checked(&CRITICAL[..]).unwrap();
        assert_eq!(p.version(), 0);
        assert_eq!((p.options_len(), p.header_len()), (8, 16));
        assert_eq!((p.protocol(), p.vni()), (PROTOCOL_ETHERNET, 7));
        assert!(!p.oam() && !p.critical());
        assert_eq!(p.payload(), [0xff, 0xff]);
        assert_eq!(
            p.check_options(),
            Err(Error::CriticalOption {
                class: 0x0102,
                kind: 0x80
            })
        );
    }

    #[test]
    fn construct_writes_fixture_bytes() {
        let mut buf = [0xa5u8; 8];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.clear_flags();
        p.set_protocol(PROTOCOL_ETHERNET);
        p.set_vni(7);
        // The fixture without its options: Opt Len 0.
        assert_eq!(buf, [0x00, 0x00, 0x65, 0x58, 0x00, 0x00, 0x07, 0x00]);
        assert_eq!(&buf[1..], &CRITICAL[1..8]);
    }

    #[test]
    fn a_non_critical_option_is_skipped() {
        let mut b = CRITICAL;
        b[10] = 0x01;
        assert_eq!(Packet::new_checked(&b[..]).unwrap().check_options(), Ok(()));
    }

    #[test]
    fn an_option_past_the_options_area_is_refused() {
        let mut b = CRITICAL;
        b[10] = 0x01;
        b[11] = 0x02; // 8 bytes of data announced, 4 left in Opt Len's area
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().check_options(),
            Err(Error::OptionOverrun { at: 8 })
        );
    }

    #[test]
    fn unknown_versions_and_truncations_are_refused() {
        let mut b = CRITICAL;
        b[0] |= 0x40;
        assert_eq!(
            Packet::new_checked(&b[..]).err(),
            Some(Error::BadVersion { version: 1 })
        );
        for len in 0..16 {
            assert_eq!(
                Packet::new_checked(&CRITICAL[..len]).err(),
                Some(Error::TooShort { len }),
                "{len}"
            );
        }
    }

    #[test]
    fn oam_and_reserved_bits() {
        let mut b = CRITICAL;
        b[1] = 0x80 | 0x3f;
        b[7] = 0xff;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.oam() && !p.critical());
        assert_eq!(p.vni(), 7);
    }

    proptest! {
        #[test]
        fn repr_round_trips_any(vni in 0u32..(1 << 24), protocol: u16) {
            let mut buf = [0xa5u8; 8];
            Repr { vni, protocol }.emit(&mut Packet::new_unchecked(&mut buf[..]));
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(p.check_options(), Ok(()));
            prop_assert_eq!(Repr::parse(&p), Ok(Repr { vni, protocol }));
        }

        /// No byte string makes the view or the option walk panic, and a walk that passes
        /// stays inside the options.
        #[test]
        fn any_bytes_are_safe(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(p) = Packet::new_checked(&b[..]) {
                let _ = p.check_options();
                prop_assert!(p.header_len() <= b.len());
                let _ = (p.options(), p.payload(), p.vni(), p.protocol());
            }
        }
    }
}
