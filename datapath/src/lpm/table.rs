//! IPv4 DIR-24-8 (as DPDK's rte_lpm): `tbl24` indexed by the top 24 address bits, and `tbl8`
//! groups of 256 entries for prefixes longer than /24.
//!
//! An entry is a `u32`: bits 0..24 the next-hop index (or, when extended, the tbl8 group),
//! bit 24 valid, bit 25 extended, bits 26..32 the depth of the prefix that wrote it.

use super::{Error, MAX_NEXT_HOP, NO_ROUTE};

const IDX_MASK: u32 = MAX_NEXT_HOP;
const VALID: u32 = 1 << 24;
const EXT: u32 = 1 << 25;
const DEPTH_SHIFT: u32 = 26;
const TBL24_LEN: usize = 1 << 24;
const GROUP_LEN: usize = 256;
/// The most tbl8 groups a table holds (the entry's index field bounds it at 2^24).
pub const MAX_GROUPS: usize = 1 << 20;

const _: () = assert!(core::mem::size_of::<u32>() == 4 && DEPTH_SHIFT + 6 <= 32);

#[inline]
const fn entry(next_hop: u32, depth: u8) -> u32 {
    (next_hop & IDX_MASK) | VALID | ((depth as u32) << DEPTH_SHIFT)
}

#[inline]
const fn depth_of(e: u32) -> u8 {
    (e >> DEPTH_SHIFT) as u8
}

/// An IPv4 longest-prefix-match table.
pub struct Lpm4 {
    tbl24: Box<[u32; TBL24_LEN]>,
    tbl8: Vec<u32>,
    rules: usize,
}

impl Lpm4 {
    /// Builds a table from `(prefix, length, next hop)` routes. Host bits of a prefix are
    /// ignored. When two routes have the same prefix the later one wins.
    ///
    /// # Errors
    /// [`Error::BadPrefixLen`], [`Error::NextHopTooLarge`], [`Error::OutOfGroups`].
    pub fn build(routes: &[(u32, u8, u32)]) -> Result<Self, Error> {
        let mut sorted: Vec<(u32, u8, u32)> = Vec::with_capacity(routes.len());
        for &(addr, len, nh) in routes {
            if len > 32 {
                return Err(Error::BadPrefixLen { len });
            }
            if nh > MAX_NEXT_HOP {
                return Err(Error::NextHopTooLarge { next_hop: nh });
            }
            sorted.push((mask(addr, len), len, nh));
        }
        // Shorter prefixes first, so a longer one always overwrites what it covers; a stable
        // sort keeps "later wins" for duplicates.
        sorted.sort_by_key(|r| r.1);
        let tbl24: Box<[u32; TBL24_LEN]> = vec![0u32; TBL24_LEN]
            .into_boxed_slice()
            .try_into()
            .map_err(|_| Error::OutOfGroups)?;
        let mut t = Lpm4 {
            tbl24,
            tbl8: Vec::new(),
            rules: 0,
        };
        let mut prev: Option<(u32, u8)> = None;
        for &(addr, len, nh) in &sorted {
            if prev != Some((addr, len)) {
                t.rules += 1;
            }
            prev = Some((addr, len));
            t.insert_ascending(addr, len, nh)?;
        }
        Ok(t)
    }

    /// Inserts a prefix no shorter than any inserted before it.
    fn insert_ascending(&mut self, addr: u32, len: u8, nh: u32) -> Result<(), Error> {
        let e = entry(nh, len);
        if len <= 24 {
            let start = (addr >> 8) as usize;
            let count = 1usize << (24 - len);
            for slot in &mut self.tbl24[start..start + count] {
                if *slot & EXT != 0 {
                    let g = (*slot & IDX_MASK) as usize * GROUP_LEN;
                    for ge in &mut self.tbl8[g..g + GROUP_LEN] {
                        if *ge & VALID == 0 || depth_of(*ge) <= len {
                            *ge = e;
                        }
                    }
                } else {
                    *slot = e;
                }
            }
            return Ok(());
        }
        let i = (addr >> 8) as usize;
        let cur = self.tbl24[i];
        let g = if cur & EXT != 0 {
            (cur & IDX_MASK) as usize
        } else {
            let g = self.tbl8.len() / GROUP_LEN;
            if g >= MAX_GROUPS {
                return Err(Error::OutOfGroups);
            }
            // The new group inherits the covering /0../24 entry, if any.
            self.tbl8.extend(std::iter::repeat_n(cur, GROUP_LEN));
            self.tbl24[i] = EXT | VALID | g as u32;
            g
        };
        let start = g * GROUP_LEN + (addr & 0xff) as usize;
        let count = 1usize << (32 - len);
        for ge in &mut self.tbl8[start..start + count] {
            if *ge & VALID == 0 || depth_of(*ge) <= len {
                *ge = e;
            }
        }
        Ok(())
    }

    /// The next hop of the longest prefix covering `addr`.
    #[inline]
    pub fn lookup(&self, addr: u32) -> Option<u32> {
        let mut e = self.tbl24[(addr >> 8) as usize];
        if e & EXT != 0 {
            e = self.second_level(e, addr);
        }
        (e & VALID != 0).then_some(e & IDX_MASK)
    }

    #[inline]
    fn second_level(&self, e: u32, addr: u32) -> u32 {
        let i = ((e & IDX_MASK) as usize) * GROUP_LEN + (addr & 0xff) as usize;
        self.tbl8.get(i).copied().unwrap_or(0)
    }

    /// Looks up every address of `addrs` into the same position of `out` ([`NO_ROUTE`] where
    /// none). All first-level loads are issued before any second-level one, so a batch's cache
    /// misses overlap. Extra elements of the longer slice are left alone.
    #[inline]
    pub fn lookup_bulk(&self, addrs: &[u32], out: &mut [u32]) {
        let n = addrs.len().min(out.len());
        for (o, &a) in out[..n].iter_mut().zip(&addrs[..n]) {
            *o = self.tbl24[(a >> 8) as usize];
        }
        for (o, &a) in out[..n].iter_mut().zip(&addrs[..n]) {
            let mut e = *o;
            if e & EXT != 0 {
                e = self.second_level(e, a);
            }
            *o = if e & VALID != 0 {
                e & IDX_MASK
            } else {
                NO_ROUTE
            };
        }
    }

    /// Number of distinct prefixes.
    pub fn len(&self) -> usize {
        self.rules
    }

    /// True when the table has no prefix.
    pub fn is_empty(&self) -> bool {
        self.rules == 0
    }

    /// Bytes held by the two levels.
    pub fn memory_bytes(&self) -> usize {
        TBL24_LEN * 4 + self.tbl8.capacity() * 4
    }
}

/// `addr` with the bits past `len` cleared.
#[inline]
pub fn mask(addr: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        addr & (u32::MAX << (32 - u32::from(len.min(32))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> u32 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap())
    }

    #[test]
    fn longest_prefix_wins_across_both_levels() {
        let t = Lpm4::build(&[
            (ip("10.0.0.0"), 8, 1),
            (ip("10.1.0.0"), 16, 2),
            (ip("10.1.2.0"), 24, 3),
            (ip("10.1.2.128"), 25, 4),
            (ip("10.1.2.200"), 32, 5),
        ])
        .unwrap();
        assert_eq!(t.lookup(ip("10.9.9.9")), Some(1));
        assert_eq!(t.lookup(ip("10.1.9.9")), Some(2));
        assert_eq!(t.lookup(ip("10.1.2.1")), Some(3));
        assert_eq!(t.lookup(ip("10.1.2.129")), Some(4));
        assert_eq!(t.lookup(ip("10.1.2.200")), Some(5));
        assert_eq!(t.lookup(ip("11.0.0.0")), None);
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn default_route_covers_everything_else() {
        let t = Lpm4::build(&[(0, 0, 7), (ip("192.0.2.1"), 32, 8)]).unwrap();
        assert_eq!(t.lookup(ip("255.255.255.255")), Some(7));
        assert_eq!(t.lookup(ip("192.0.2.1")), Some(8));
        assert_eq!(t.lookup(ip("192.0.2.2")), Some(7));
    }

    #[test]
    fn bad_lengths_and_next_hops_are_errors() {
        assert_eq!(
            Lpm4::build(&[(0, 33, 1)]).err(),
            Some(Error::BadPrefixLen { len: 33 })
        );
        assert_eq!(
            Lpm4::build(&[(0, 8, 1 << 24)]).err(),
            Some(Error::NextHopTooLarge { next_hop: 1 << 24 })
        );
    }

    #[test]
    fn bulk_lookup_matches_single_lookups() {
        let t = Lpm4::build(&[(ip("10.0.0.0"), 8, 1), (ip("10.0.0.64"), 26, 2)]).unwrap();
        let addrs = [ip("10.0.0.1"), ip("10.0.0.65"), ip("9.0.0.0")];
        let mut out = [0; 3];
        t.lookup_bulk(&addrs, &mut out);
        assert_eq!(out, [1, 2, NO_ROUTE]);
    }

    fn oracle(routes: &[(u32, u8, u32)], addr: u32) -> Option<u32> {
        let mut best: Option<(u8, u32)> = None;
        for &(a, l, nh) in routes {
            if mask(addr, l) == mask(a, l) && best.is_none_or(|(bl, _)| l >= bl) {
                best = Some((l, nh));
            }
        }
        best.map(|b| b.1)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn agrees_with_a_linear_oracle(
            routes in proptest::collection::vec((any::<u32>(), 0u8..=32, 0u32..1000), 0..40),
            probes in proptest::collection::vec(any::<u32>(), 50),
        ) {
            // Probe near the prefixes too, not only at random.
            let t = Lpm4::build(&routes).unwrap();
            let near = routes.iter().flat_map(|r| [r.0, r.0 ^ 1, r.0 | 0xff]);
            for a in probes.into_iter().chain(near) {
                prop_assert_eq!(t.lookup(a), oracle(&routes, a), "addr {:#x}", a);
            }
        }
    }
}
