//! IEEE 802.1Q / 802.1ad VLAN tags, viewed from the TCI onwards (the tag's TPID is the
//! EtherType field of the header before it).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | PCP |D|        VID            |     Inner EtherType           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! PCP: priority code point; D: drop eligible indicator; VID: VLAN identifier (0 = priority
//! tag only, 4095 reserved).

/// Byte ranges of the tag.
pub mod field {
    use core::ops::Range;
    /// Tag control information (PCP, DEI, VID).
    pub const TCI: Range<usize> = 0..2;
    /// EtherType of what follows.
    pub const ETHERTYPE: Range<usize> = 2..4;
    /// Start of the payload.
    pub const PAYLOAD: usize = ETHERTYPE.end;
}

/// Length of one tag after its TPID.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// Why bytes are not a VLAN tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than a tag.
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// A third tag: more than QinQ's two.
    TooDeep,
}

/// A view of a VLAN tag. After [`Packet::check_len`] no accessor panics.
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
    /// [`Error::TooShort`].
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// Checks that the tag fits.
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
    /// VLAN identifier (12 bits).
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }
    /// Priority code point (3 bits).
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }
    /// Drop eligible indicator.
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }
    #[inline]
    fn tci(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::TCI];
        u16::from_be_bytes([b[0], b[1]])
    }
    /// EtherType of what follows the tag.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets PCP, DEI and VID.
    #[inline]
    pub fn set_tci(&mut self, pcp: u8, dei: bool, vid: u16) {
        let tci = (u16::from(pcp & 7) << 13) | (u16::from(dei) << 12) | (vid & 0x0fff);
        self.buffer.as_mut()[field::TCI].copy_from_slice(&tci.to_be_bytes());
    }
    /// Sets the inner EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, value: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&value.to_be_bytes());
    }
}

/// A parsed VLAN tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Priority code point.
    pub pcp: u8,
    /// Drop eligible.
    pub dei: bool,
    /// VLAN id.
    pub vid: u16,
    /// Inner EtherType.
    pub ethertype: u16,
}

impl Repr {
    /// Parses a tag.
    ///
    /// # Errors
    /// [`Error::TooShort`].
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, Error> {
        p.check_len()?;
        Ok(Repr {
            pcp: p.pcp(),
            dei: p.dei(),
            vid: p.vid(),
            ethertype: p.ethertype(),
        })
    }
    /// Bytes [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }
    /// Writes the tag.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_tci(self.pcp, self.dei, self.vid);
        p.set_ethertype(self.ethertype);
    }
}

/// Skips up to two 802.1Q / 802.1ad tags starting at `off` in `frame`, the first announced
/// by `ethertype`; returns the EtherType after them and the offset of what follows.
///
/// # Errors
/// [`Error::TooShort`], [`Error::TooDeep`].
#[inline]
pub fn skip_tags(frame: &[u8], mut ethertype: u16, mut off: usize) -> Result<(u16, usize), Error> {
    use super::EtherType;
    for _ in 0..2 {
        if ethertype != EtherType::VLAN && ethertype != EtherType::QINQ {
            return Ok((ethertype, off));
        }
        let tag = Packet::new_checked(frame.get(off..).unwrap_or_default())?;
        ethertype = tag.ethertype();
        off += HEADER_LEN;
    }
    if ethertype == EtherType::VLAN || ethertype == EtherType::QINQ {
        return Err(Error::TooDeep);
    }
    Ok((ethertype, off))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::VLAN_TAG;

    #[test]
    fn deconstruct_reads_pcp_dei_vid() {
        let p = Packet::new_checked(&VLAN_TAG[..]).unwrap();
        assert_eq!((p.pcp(), p.dei(), p.vid()), (5, true, 0x123));
        assert_eq!(p.ethertype(), 0x0800);
    }

    #[test]
    fn construct_writes_fixture_bytes() {
        let mut buf = [0xa5u8; HEADER_LEN];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_tci(5, true, 0x123);
        p.set_ethertype(0x0800);
        assert_eq!(buf, VLAN_TAG);
    }

    #[test]
    fn repr_round_trips() {
        let r = Repr::parse(&Packet::new_unchecked(&VLAN_TAG[..])).unwrap();
        let mut buf = [0xa5u8; HEADER_LEN];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, VLAN_TAG);
    }

    #[test]
    fn every_truncation_is_too_short() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&VLAN_TAG[..len]).err(),
                Some(Error::TooShort { len })
            );
        }
    }
}
