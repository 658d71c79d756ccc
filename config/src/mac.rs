//! A 48-bit IEEE 802 MAC address parsed from `aa:bb:cc:dd:ee:ff`.

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

/// Why a string is not a MAC address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a MAC address (expected six hex octets such as 02:00:00:00:00:01)")]
pub struct MacParseError(pub String);

impl MacAddr {
    /// True for group (multicast or broadcast) addresses: the I/G bit of the first octet.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }
    /// True for 00:00:00:00:00:00.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let part = parts.next().ok_or_else(|| MacParseError(s.to_string()))?;
            if part.len() != 2 {
                return Err(MacParseError(s.to_string()));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| MacParseError(s.to_string()))?;
        }
        if parts.next().is_some() {
            return Err(MacParseError(s.to_string()));
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parses_colon_and_dash_forms() {
        let want = MacAddr([0x02, 0, 0, 0, 0x01, 0xff]);
        assert_eq!("02:00:00:00:01:ff".parse::<MacAddr>(), Ok(want));
        assert_eq!("02-00-00-00-01-FF".parse::<MacAddr>(), Ok(want));
        assert_eq!(want.to_string(), "02:00:00:00:01:ff");
    }

    #[test]
    fn mac_rejects_wrong_lengths_and_digits() {
        for bad in [
            "",
            "02:00:00:00:01",
            "02:00:00:00:01:ff:00",
            "2:00:00:00:01:ff",
            "zz:00:00:00:00:00",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}
