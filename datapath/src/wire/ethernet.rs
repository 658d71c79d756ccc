//! Ethernet II frames (IEEE 802.3 clause 3.2, DIX framing).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |              Destination MAC (6 octets)                       |
//! +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                               |                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//! |              Source MAC (6 octets)                            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          EtherType            |  Payload ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! The frame check sequence is not part of the buffer.

/// EtherType values the gateway dispatches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtherType;

impl EtherType {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IEEE 802.1Q customer VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// IEEE 802.1ad service VLAN tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
}

/// Byte ranges of the header.
pub mod field {
    use core::ops::Range;
    /// Destination MAC.
    pub const DST: Range<usize> = 0..6;
    /// Source MAC.
    pub const SRC: Range<usize> = 6..12;
    /// EtherType.
    pub const ETHERTYPE: Range<usize> = 12..14;
    /// Start of the payload.
    pub const PAYLOAD: usize = ETHERTYPE.end;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// Why bytes are not an Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the 14-byte header.
    TooShort {
        /// Bytes available.
        len: usize,
    },
}

/// A view of an Ethernet II frame.
///
/// After [`Packet::check_len`] succeeds no accessor panics; no setter changes the length.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer and checks that the header fits.
    ///
    /// # Errors
    /// [`Error::TooShort`].
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the header fits in the buffer.
    ///
    /// # Errors
    /// [`Error::TooShort`].
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            Err(Error::TooShort { len })
        } else {
            Ok(())
        }
    }

    /// Destination MAC.
    #[inline]
    pub fn dst(&self) -> [u8; 6] {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        m
    }

    /// Source MAC.
    #[inline]
    pub fn src(&self) -> [u8; 6] {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        m
    }

    /// EtherType.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The bytes after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the destination MAC.
    #[inline]
    pub fn set_dst(&mut self, mac: [u8; 6]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&mac);
    }

    /// Sets the source MAC.
    #[inline]
    pub fn set_src(&mut self, mac: [u8; 6]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&mac);
    }

    /// Sets the EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, value: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&value.to_be_bytes());
    }
}

/// A parsed Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Destination MAC.
    pub dst: [u8; 6],
    /// Source MAC.
    pub src: [u8; 6],
    /// EtherType.
    pub ethertype: u16,
}

impl Repr {
    /// Reads the header of a checked frame.
    ///
    /// # Errors
    /// [`Error::TooShort`].
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, Error> {
        p.check_len()?;
        Ok(Repr {
            dst: p.dst(),
            src: p.src(),
            ethertype: p.ethertype(),
        })
    }

    /// Bytes [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `p` (which must hold them).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_dst(self.dst);
        p.set_src(self.src);
        p.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::ETH_IPV4_UDP;

    #[test]
    fn deconstruct_reads_fixture_fields() {
        let p = Packet::new_checked(&ETH_IPV4_UDP[..]).unwrap();
        assert_eq!(p.dst(), [0x02, 0, 0, 0, 0, 0x01]);
        assert_eq!(p.src(), [0x02, 0, 0, 0, 0, 0x99]);
        assert_eq!(p.ethertype(), EtherType::IPV4);
        assert_eq!(p.payload().len(), ETH_IPV4_UDP.len() - HEADER_LEN);
    }

    #[test]
    fn construct_writes_fixture_bytes() {
        let mut buf = [0xa5u8; HEADER_LEN];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_dst([0x02, 0, 0, 0, 0, 0x01]);
        p.set_src([0x02, 0, 0, 0, 0, 0x99]);
        p.set_ethertype(EtherType::IPV4);
        assert_eq!(&buf[..], &ETH_IPV4_UDP[..HEADER_LEN]);
    }

    #[test]
    fn repr_parse_then_emit_round_trips() {
        let repr = Repr::parse(&Packet::new_unchecked(&ETH_IPV4_UDP[..])).unwrap();
        let mut buf = [0xa5u8; HEADER_LEN];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..], &ETH_IPV4_UDP[..HEADER_LEN]);
        assert_eq!(repr.buffer_len(), HEADER_LEN);
    }

    #[test]
    fn every_truncation_of_the_header_is_too_short() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&ETH_IPV4_UDP[..len]).err(),
                Some(Error::TooShort { len })
            );
        }
    }
}
