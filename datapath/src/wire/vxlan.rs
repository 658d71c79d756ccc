//! VXLAN headers (RFC 7348 section 5).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! The I flag must be set for a valid VNI. Every other bit is reserved and, as RFC 7348 says,
//! "MUST be ignored on receipt": a packet with reserved bits set (for example the Group Policy
//! extension's G bit, or suricata-verify's all-ones capture) is decapsulated. FD.io VPP's
//! `vxlan/decap.c` drops such packets instead; this gateway follows the RFC.

/// Byte ranges of the header.
pub mod field {
    use core::ops::Range;
    /// Flags.
    pub const FLAGS: usize = 0;
    /// VNI (24 bits).
    pub const VNI: Range<usize> = 4..7;
    /// End of the header.
    pub const END: usize = 8;
}

/// Header length.
pub const HEADER_LEN: usize = field::END;
/// The IANA port (Calico); Linux's historical default, used by Flannel and Cilium, is 8472.
pub const UDP_PORT: u16 = 4789;
const I_FLAG: u8 = 0x08;

/// Why bytes are not a usable VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the header.
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// The I flag is clear: no valid VNI.
    NoVni {
        /// The flags octet.
        flags: u8,
    },
}

/// A view of a VXLAN header and its payload (an Ethernet frame).
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
    /// Checks the length and the I flag (reserved bits are ignored).
    ///
    /// # Errors
    /// [`Error::TooShort`], [`Error::NoVni`].
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::TooShort { len });
        }
        if self.flags() & I_FLAG == 0 {
            return Err(Error::NoVni {
                flags: self.flags(),
            });
        }
        Ok(())
    }
    /// Flags octet.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }
    /// VNI.
    #[inline]
    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }
    /// The encapsulated frame.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags octet (and clears the reserved bytes after it).
    #[inline]
    pub fn set_flags(&mut self, v: u8) {
        let b = self.buffer.as_mut();
        b[field::FLAGS] = v;
        b[1..4].fill(0);
    }
    /// Sets the VNI (and clears the last reserved byte).
    #[inline]
    pub fn set_vni(&mut self, v: u32) {
        let b = self.buffer.as_mut();
        b[field::VNI].copy_from_slice(&v.to_be_bytes()[1..]);
        b[7] = 0;
    }
}

/// A parsed VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// VNI (24 bits).
    pub vni: u32,
}

impl Repr {
    /// Parses a header.
    ///
    /// # Errors
    /// See [`Packet::check_len`].
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, Error> {
        p.check_len()?;
        Ok(Repr { vni: p.vni() })
    }
    /// Bytes [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }
    /// Writes the header with only the I flag set.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_flags(I_FLAG);
        p.set_vni(self.vni & 0x00ff_ffff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::VXLAN_4096;
    use proptest::prelude::*;

    #[test]
    fn deconstruct_reads_vni_and_payload() {
        let p = Packet::new_checked(&VXLAN_4096[..]).unwrap();
        assert_eq!(p.vni(), 4096);
        assert_eq!(p.payload(), b"xx");
    }

    #[test]
    fn construct_writes_fixture_bytes() {
        let mut buf = [0xa5u8; 8];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_flags(0x08);
        p.set_vni(4096);
        assert_eq!(&buf[..], &VXLAN_4096[..8]);
    }

    #[test]
    fn repr_round_trips() {
        let r = Repr::parse(&Packet::new_unchecked(&VXLAN_4096[..])).unwrap();
        let mut buf = [0xa5u8; 8];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..], &VXLAN_4096[..8]);
    }

    #[test]
    fn i_flag_unset_is_refused() {
        let mut b = VXLAN_4096;
        b[0] = 0x00;
        assert_eq!(
            Packet::new_checked(&b[..]).err(),
            Some(Error::NoVni { flags: 0 })
        );
    }

    #[test]
    fn reserved_bits_are_ignored_on_receipt() {
        // As in suricata-verify's capture: every reserved bit set.
        let mut b = VXLAN_4096;
        b[0] = 0xff;
        b[1..4].fill(0xff);
        b[7] = 0xff;
        assert_eq!(Packet::new_checked(&b[..]).unwrap().vni(), 4096);
    }

    #[test]
    fn every_truncation_errors() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&VXLAN_4096[..len]).err(),
                Some(Error::TooShort { len })
            );
        }
    }

    proptest! {
        #[test]
        fn repr_round_trips_any(vni in 0u32..(1 << 24)) {
            let mut buf = [0u8; 8];
            Repr { vni }.emit(&mut Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_unchecked(&buf[..])), Ok(Repr { vni }));
        }
    }
}
