//! IPv6 longest-prefix match: one hash map per prefix length, probed from the longest length
//! present. Correct for any table; its cost grows with the number of distinct lengths.

use super::{Error, MAX_NEXT_HOP, NO_ROUTE};
use hashbrown::HashMap;

/// An IPv6 longest-prefix-match table.
pub struct Lpm6 {
    /// (length, prefixes of that length → next hop), longest first.
    levels: Vec<(u8, HashMap<u128, u32>)>,
    rules: usize,
}

/// `addr` with the bits past `len` cleared.
#[inline]
pub fn mask(addr: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        addr & (u128::MAX << (128 - u32::from(len.min(128))))
    }
}

impl Lpm6 {
    /// Builds a table from `(prefix, length, next hop)`; the later of two equal prefixes wins.
    ///
    /// # Errors
    /// [`Error::BadPrefixLen`], [`Error::NextHopTooLarge`].
    pub fn build(routes: &[(u128, u8, u32)]) -> Result<Self, Error> {
        let mut levels: Vec<(u8, HashMap<u128, u32>)> = Vec::new();
        for &(addr, len, nh) in routes {
            if len > 128 {
                return Err(Error::BadPrefixLen { len });
            }
            if nh > MAX_NEXT_HOP {
                return Err(Error::NextHopTooLarge { next_hop: nh });
            }
            let level = match levels.iter().position(|l| l.0 == len) {
                Some(i) => &mut levels[i].1,
                None => {
                    levels.push((len, HashMap::new()));
                    let last = levels.len() - 1;
                    &mut levels[last].1
                }
            };
            level.insert(mask(addr, len), nh);
        }
        levels.sort_by_key(|l| std::cmp::Reverse(l.0));
        let rules = levels.iter().map(|l| l.1.len()).sum();
        Ok(Lpm6 { levels, rules })
    }

    /// The next hop of the longest prefix covering `addr`.
    #[inline]
    pub fn lookup(&self, addr: u128) -> Option<u32> {
        self.levels
            .iter()
            .find_map(|(len, m)| m.get(&mask(addr, *len)).copied())
    }

    /// Bulk form of [`Lpm6::lookup`], writing [`NO_ROUTE`] for misses.
    pub fn lookup_bulk(&self, addrs: &[u128], out: &mut [u32]) {
        for (o, &a) in out.iter_mut().zip(addrs) {
            *o = self.lookup(a).unwrap_or(NO_ROUTE);
        }
    }

    /// Number of distinct prefixes.
    pub fn len(&self) -> usize {
        self.rules
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.rules == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> u128 {
        u128::from(s.parse::<std::net::Ipv6Addr>().unwrap())
    }

    #[test]
    fn longest_prefix_wins() {
        let t = Lpm6::build(&[
            (0, 0, 1),
            (ip("fd00::"), 8, 2),
            (ip("fd00:0:0:10c0::"), 58, 3),
            (ip("fd00:0:0:10c0::1"), 128, 4),
        ])
        .unwrap();
        assert_eq!(t.lookup(ip("2001:db8::1")), Some(1));
        assert_eq!(t.lookup(ip("fd12::1")), Some(2));
        assert_eq!(t.lookup(ip("fd00:0:0:10c1::5")), Some(3));
        assert_eq!(t.lookup(ip("fd00:0:0:10c0::1")), Some(4));
        assert_eq!(t.len(), 4);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn agrees_with_a_linear_oracle(
            routes in proptest::collection::vec((any::<u128>(), 0u8..=128, 0u32..1000), 0..30),
            probes in proptest::collection::vec(any::<u128>(), 30),
        ) {
            let t = Lpm6::build(&routes).unwrap();
            for a in probes.into_iter().chain(routes.iter().map(|r| r.0)) {
                let mut best: Option<(u8, u32)> = None;
                for &(p, l, nh) in &routes {
                    if mask(a, l) == mask(p, l) && best.is_none_or(|(bl, _)| l >= bl) {
                        best = Some((l, nh));
                    }
                }
                prop_assert_eq!(t.lookup(a), best.map(|b| b.1));
            }
        }
    }
}
