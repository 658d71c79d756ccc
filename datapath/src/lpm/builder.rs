//! The single writer of a route table: keeps the rules (every prefix by length), applies each
//! insert or remove to the shared [`Trie`] with single atomic stores, allocates groups, and
//! retires unlinked groups through [`Qsbr`] so they are reused only after every reader has
//! passed a quiescent point.
//!
//! Keys are kept left-aligned in a `u128` so one implementation serves both families: an IPv4
//! address `a` is `(a as u128) << 96` with a width of 32 bits.

use super::publish::Qsbr;
use super::table::{
    depth_of, entry, ext, index_of, Lpm4Table, Lpm6Table, Trie, EXT, GROUP_LEN, INDEX_MASK, VALID,
};
use super::{Error, MAX_NEXT_HOP};
use hashbrown::HashMap;
use std::collections::VecDeque;
use std::sync::Arc;

/// Groups an IPv4 table may use by default: a full Internet table needs a few thousand.
pub const DEFAULT_GROUPS_V4: usize = 1 << 16;
/// Groups an IPv6 table may use by default.
pub const DEFAULT_GROUPS_V6: usize = 1 << 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Insert,
    Remove,
}

#[derive(Clone, Copy)]
enum Slot {
    Top(usize),
    Group(u32, usize),
}

/// `key` with the bits past `len` cleared (left-aligned keys).
#[inline]
fn mask(key: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        key & !(u128::MAX.checked_shr(u32::from(len)).unwrap_or(0))
    }
}

/// Whether an operation on a prefix of `len` bits writes a slot holding `cur` (not extended)
/// that the prefix covers.
#[inline]
fn owns(cur: u32, len: u8, op: Op) -> bool {
    match op {
        // Anything written by a prefix no longer than this one is covered by it.
        Op::Insert => cur & VALID == 0 || depth_of(cur) <= len,
        // Inside the removed prefix's range, its own length identifies its entries.
        Op::Remove => cur & VALID != 0 && depth_of(cur) == len,
    }
}

/// Inserts `routes` into `w`, shortest prefixes first so each entry is written as few times
/// as possible (of two equal prefixes the later wins: the sort is stable), with each
/// length's rule map sized once for its routes instead of grown by rehashing. (Sorting each
/// length by address too, so the table is written front to back, saved as much in writes
/// as the costlier sort took: 0.15 s for the DFZ either way.)
fn build_into(w: &mut Writer, routes: impl Iterator<Item = (u128, u8, u32)>) -> Result<(), Error> {
    let mut sorted: Vec<_> = routes.collect();
    sorted.sort_by_key(|r| r.1);
    for (len, rules) in w.rules.iter_mut().enumerate() {
        let start = sorted.partition_point(|r| usize::from(r.1) < len);
        let end = sorted.partition_point(|r| usize::from(r.1) <= len);
        rules.reserve(end - start);
    }
    for (a, l, nh) in sorted {
        w.insert(a, l, nh)?;
    }
    Ok(())
}

struct Writer {
    trie: Arc<Trie>,
    width: u8,
    rules: Vec<HashMap<u128, u32>>,
    count: usize,
    free: Vec<u32>,
    next_group: u32,
    retired: VecDeque<(u64, u32)>,
    qsbr: Arc<Qsbr>,
}

impl Writer {
    /// The longest rule covering `key`: (prefix, length, next hop). A scan of the rule maps
    /// from the longest length down: for look-ups by an operator, not the packet path.
    fn longest(&self, key: u128) -> Option<(u128, u8, u32)> {
        (0..=self.width).rev().find_map(|len| {
            let k = mask(key, len);
            self.rules[usize::from(len)].get(&k).map(|&nh| (k, len, nh))
        })
    }

    /// Every rule, by prefix then length.
    fn rules(&self) -> Vec<(u128, u8, u32)> {
        let mut v: Vec<(u128, u8, u32)> = self
            .rules
            .iter()
            .enumerate()
            .flat_map(|(len, m)| m.iter().map(move |(&k, &nh)| (k, len as u8, nh)))
            .collect();
        v.sort_unstable();
        v
    }

    fn new(width: u8, max_groups: usize, qsbr: Arc<Qsbr>) -> Result<Self, Error> {
        Ok(Writer {
            trie: Arc::new(Trie::new(max_groups).ok_or(Error::OutOfMemory)?),
            width,
            rules: (0..=width).map(|_| HashMap::new()).collect(),
            count: 0,
            free: Vec::new(),
            next_group: 0,
            retired: VecDeque::new(),
            qsbr,
        })
    }

    fn load(&self, s: Slot) -> u32 {
        match s {
            Slot::Top(i) => self.trie.top(i),
            Slot::Group(g, i) => self.trie.group_entry(g, i),
        }
    }

    fn store(&self, s: Slot, v: u32) {
        match s {
            Slot::Top(i) => self.trie.store_top(i, v),
            Slot::Group(g, i) => self.trie.store_group(g, i, v),
        }
    }

    /// Moves retired groups whose epoch every reader has passed back to the free list.
    fn reclaim(&mut self) {
        while let Some(&(epoch, g)) = self.retired.front() {
            if !self.qsbr.is_safe(epoch) {
                break;
            }
            self.retired.pop_front();
            self.free.push(g);
        }
    }

    fn groups_available(&self) -> usize {
        self.free.len()
            + self
                .trie
                .max_groups()
                .saturating_sub(self.next_group as usize)
    }

    fn alloc_group(&mut self, fill: u32) -> Option<u32> {
        let g = match self.free.pop() {
            Some(g) => g,
            None => {
                let g = self.next_group;
                if g as usize >= self.trie.max_groups() || !self.trie.ensure_group(g) {
                    return None;
                }
                self.next_group += 1;
                g
            }
        };
        // Filled before anything links it, so no reader can see it half made.
        for i in 0..GROUP_LEN {
            self.trie.store_group(g, i, fill);
        }
        Some(g)
    }

    /// Groups an insert of `key/len` must allocate.
    fn groups_needed(&self, key: u128, len: u8) -> usize {
        if len <= 24 {
            return 0;
        }
        let levels = usize::from(len - 24).div_ceil(8);
        let mut e = self.trie.top((key >> 104) as usize);
        for level in 0..levels {
            if e & EXT == 0 {
                return levels - level;
            }
            let shift = 96 - 8 * level as u32;
            e = self
                .trie
                .group_entry(index_of(e), ((key >> shift) & 0xff) as usize);
        }
        0
    }

    fn insert(&mut self, key: u128, len: u8, nh: u32) -> Result<Option<u32>, Error> {
        if len > self.width {
            return Err(Error::BadPrefixLen { len });
        }
        if nh > MAX_NEXT_HOP {
            return Err(Error::NextHopTooLarge { next_hop: nh });
        }
        let key = mask(key, len);
        self.reclaim();
        if self.groups_needed(key, len) > self.groups_available() {
            return Err(Error::OutOfGroups);
        }
        let old = self.rules[usize::from(len)].insert(key, nh);
        if old.is_none() {
            self.count += 1;
        }
        self.apply(key, len, entry(nh, len), Op::Insert);
        Ok(old)
    }

    fn remove(&mut self, key: u128, len: u8) -> Option<u32> {
        if len > self.width {
            return None;
        }
        let key = mask(key, len);
        let old = self.rules[usize::from(len)].remove(&key)?;
        self.count -= 1;
        self.reclaim();
        // What covers the removed prefix now: the longest shorter rule, or nothing.
        let replacement = (0..len)
            .rev()
            .find_map(|d| {
                self.rules[usize::from(d)]
                    .get(&mask(key, d))
                    .map(|&n| entry(n, d))
            })
            .unwrap_or(0);
        self.apply(key, len, replacement, Op::Remove);
        Some(old)
    }

    fn apply(&mut self, key: u128, len: u8, e: u32, op: Op) {
        let top = (key >> 104) as usize;
        if len <= 24 {
            let count = 1usize << (24 - len);
            // Most of a table's writes are here (24M level-0 entries for the DFZ), so the
            // common slot, one not extended, is decided in line; `update` takes the rest.
            for s in top..top + count {
                let cur = self.trie.top(s);
                if cur & EXT != 0 {
                    self.update(Slot::Top(s), 24, len, e, op);
                } else if owns(cur, len, op) {
                    self.trie.store_top(s, e);
                }
            }
        } else {
            self.descend(Slot::Top(top), 1, key, len, e, op);
        }
    }

    /// Applies the operation below `parent`, which covers bits up to `24 + 8 * (level - 1)`.
    fn descend(&mut self, parent: Slot, level: u32, key: u128, len: u8, e: u32, op: Op) {
        let cur = self.load(parent);
        let g = if cur & EXT != 0 {
            index_of(cur)
        } else if op == Op::Remove {
            return;
        } else {
            let fill = if cur & VALID != 0 { cur } else { 0 };
            let Some(g) = self.alloc_group(fill) else {
                return;
            };
            self.store(parent, ext(g));
            g
        };
        let base = 24 + 8 * level;
        let idx = ((key >> (128 - base)) & 0xff) as usize;
        if u32::from(len) <= base {
            let count = 1usize << (base - u32::from(len));
            for i in idx..idx + count {
                self.update(Slot::Group(g, i), base, len, e, op);
            }
        } else {
            self.descend(Slot::Group(g, idx), level + 1, key, len, e, op);
        }
        if op == Op::Remove {
            self.collapse(parent, base - 8, g);
        }
    }

    /// Writes `e` into a slot covered by the prefix, if the prefix owns it. The slot covers
    /// the first `covers` bits of the addresses below it.
    fn update(&mut self, s: Slot, covers: u32, len: u8, e: u32, op: Op) {
        let cur = self.load(s);
        if cur & EXT != 0 {
            let g = index_of(cur);
            for i in 0..GROUP_LEN {
                self.update(Slot::Group(g, i), covers + 8, len, e, op);
            }
            if op == Op::Remove {
                self.collapse(s, covers, g);
            }
            return;
        }
        if owns(cur, len, op) {
            self.store(s, e);
        }
    }

    /// Replaces the link to `g` by the single value all its entries hold, and retires `g`.
    /// `covers` is the bits the parent slot covers: an entry written by a longer prefix (two
    /// equal /25s fill a whole group alike) stays in its group, since a slot must never hold
    /// an entry deeper than itself: removing those prefixes walks down to their group, and
    /// would find none.
    fn collapse(&mut self, parent: Slot, covers: u32, g: u32) {
        let first = self.trie.group_entry(g, 0);
        if first & EXT != 0 || (first & VALID != 0 && u32::from(depth_of(first)) > covers) {
            return;
        }
        if (1..GROUP_LEN).any(|i| self.trie.group_entry(g, i) != first) {
            return;
        }
        self.store(parent, first);
        let epoch = self.qsbr.retire();
        self.retired.push_back((epoch, g & INDEX_MASK));
    }

    fn groups_in_use(&self) -> usize {
        self.next_group as usize - self.free.len() - self.retired.len()
    }
}

/// The IPv4 table's writer. Readers hold [`Lpm4Table`] handles from [`Lpm4::reader`].
pub struct Lpm4 {
    w: Writer,
}

impl Lpm4 {
    /// An empty table with room for `max_groups` second-level groups; readers register with
    /// `qsbr`.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] when the kernel cannot map the first level.
    pub fn new(max_groups: usize, qsbr: Arc<Qsbr>) -> Result<Self, Error> {
        Ok(Lpm4 {
            w: Writer::new(32, max_groups, qsbr)?,
        })
    }

    /// Builds a table from `(prefix, length, next hop)` routes, shortest prefixes first so each
    /// entry is written as few times as possible. Of two equal prefixes the later wins.
    ///
    /// # Errors
    /// [`Error`] for a bad length or next hop, or when the groups run out.
    pub fn build(routes: &[(u32, u8, u32)], qsbr: Arc<Qsbr>) -> Result<Self, Error> {
        let mut t = Self::new(DEFAULT_GROUPS_V4, qsbr)?;
        let keyed = routes
            .iter()
            .map(|&(a, l, nh)| (u128::from(a) << 96, l, nh));
        build_into(&mut t.w, keyed)?;
        Ok(t)
    }

    /// A lookup handle for a reader.
    pub fn reader(&self) -> Lpm4Table {
        Lpm4Table(self.w.trie.clone())
    }

    /// Adds or replaces a route; returns the previous next hop of that exact prefix.
    ///
    /// # Errors
    /// [`Error::BadPrefixLen`], [`Error::NextHopTooLarge`], [`Error::OutOfGroups`] (nothing
    /// changed).
    pub fn insert(&mut self, addr: u32, len: u8, next_hop: u32) -> Result<Option<u32>, Error> {
        self.w.insert(u128::from(addr) << 96, len, next_hop)
    }

    /// Removes a route; returns its next hop, or `None` if there was no such prefix.
    pub fn remove(&mut self, addr: u32, len: u8) -> Option<u32> {
        self.w.remove(u128::from(addr) << 96, len)
    }

    /// The next hop of the longest prefix covering `addr`.
    #[inline]
    pub fn lookup(&self, addr: u32) -> Option<u32> {
        self.reader().lookup(addr)
    }

    /// The longest route covering `addr`: (prefix, length, next hop).
    pub fn longest_match(&self, addr: u32) -> Option<(u32, u8, u32)> {
        self.w
            .longest(u128::from(addr) << 96)
            .map(|(k, l, nh)| ((k >> 96) as u32, l, nh))
    }

    /// Every route, by prefix then length: (prefix, length, next hop).
    pub fn routes(&self) -> Vec<(u32, u8, u32)> {
        self.w
            .rules()
            .into_iter()
            .map(|(k, l, nh)| ((k >> 96) as u32, l, nh))
            .collect()
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.w.count
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.w.count == 0
    }

    /// Bytes of entries allocated (level 0 plus the huge pages of groups used).
    pub fn memory_bytes(&self) -> usize {
        self.w.trie.memory_bytes()
    }

    /// Groups linked into the table now.
    pub fn groups_in_use(&self) -> usize {
        self.w.groups_in_use()
    }
}

/// The IPv6 table's writer. Readers hold [`Lpm6Table`] handles from [`Lpm6::reader`].
pub struct Lpm6 {
    w: Writer,
}

impl Lpm6 {
    /// An empty table with room for `max_groups` groups.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] when the kernel cannot map the first level.
    pub fn new(max_groups: usize, qsbr: Arc<Qsbr>) -> Result<Self, Error> {
        Ok(Lpm6 {
            w: Writer::new(128, max_groups, qsbr)?,
        })
    }

    /// Builds a table from `(prefix, length, next hop)` routes.
    ///
    /// # Errors
    /// [`Error`] for a bad length or next hop, or when the groups run out.
    pub fn build(routes: &[(u128, u8, u32)], qsbr: Arc<Qsbr>) -> Result<Self, Error> {
        let mut t = Self::new(DEFAULT_GROUPS_V6, qsbr)?;
        build_into(&mut t.w, routes.iter().copied())?;
        Ok(t)
    }

    /// A lookup handle for a reader.
    pub fn reader(&self) -> Lpm6Table {
        Lpm6Table(self.w.trie.clone())
    }

    /// Adds or replaces a route.
    ///
    /// # Errors
    /// As [`Lpm4::insert`].
    pub fn insert(&mut self, addr: u128, len: u8, next_hop: u32) -> Result<Option<u32>, Error> {
        self.w.insert(addr, len, next_hop)
    }

    /// Removes a route.
    pub fn remove(&mut self, addr: u128, len: u8) -> Option<u32> {
        self.w.remove(addr, len)
    }

    /// The next hop of the longest prefix covering `addr`.
    #[inline]
    pub fn lookup(&self, addr: u128) -> Option<u32> {
        self.reader().lookup(addr)
    }

    /// The longest route covering `addr`: (prefix, length, next hop).
    pub fn longest_match(&self, addr: u128) -> Option<(u128, u8, u32)> {
        self.w.longest(addr)
    }

    /// Every route, by prefix then length: (prefix, length, next hop).
    pub fn routes(&self) -> Vec<(u128, u8, u32)> {
        self.w.rules()
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.w.count
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.w.count == 0
    }

    /// Bytes of entries allocated.
    pub fn memory_bytes(&self) -> usize {
        self.w.trie.memory_bytes()
    }

    /// Groups linked into the table now.
    pub fn groups_in_use(&self) -> usize {
        self.w.groups_in_use()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn ip4(s: &str) -> u32 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap())
    }

    #[test]
    fn longest_prefix_wins_and_removal_restores_the_covering_route() {
        let mut t = Lpm4::new(16, Qsbr::new()).unwrap();
        t.insert(ip4("10.0.0.0"), 8, 1).unwrap();
        t.insert(ip4("10.1.0.0"), 16, 2).unwrap();
        t.insert(ip4("10.1.2.128"), 25, 3).unwrap();
        t.insert(ip4("10.1.2.200"), 32, 4).unwrap();
        assert_eq!(t.lookup(ip4("10.9.9.9")), Some(1));
        assert_eq!(t.lookup(ip4("10.1.2.1")), Some(2));
        assert_eq!(t.lookup(ip4("10.1.2.129")), Some(3));
        assert_eq!(t.lookup(ip4("10.1.2.200")), Some(4));
        assert_eq!(t.remove(ip4("10.1.2.128"), 25), Some(3));
        assert_eq!(t.lookup(ip4("10.1.2.129")), Some(2));
        assert_eq!(t.lookup(ip4("10.1.2.200")), Some(4));
        assert_eq!(t.remove(ip4("10.1.0.0"), 16), Some(2));
        assert_eq!(t.lookup(ip4("10.1.2.1")), Some(1));
        assert_eq!(t.lookup(ip4("10.1.2.200")), Some(4));
        assert_eq!(t.remove(ip4("10.0.0.0"), 8), Some(1));
        assert_eq!(t.lookup(ip4("10.1.2.1")), None);
        assert_eq!(t.remove(ip4("10.0.0.0"), 8), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn removing_the_last_long_prefix_collapses_its_group_and_reuses_it_after_quiescence() {
        let q = Qsbr::new();
        let reader = q.register().unwrap();
        let mut t = Lpm4::new(1, q).unwrap();
        t.insert(ip4("10.0.0.0"), 8, 1).unwrap();
        t.insert(ip4("10.0.0.1"), 32, 2).unwrap();
        assert_eq!(t.groups_in_use(), 1);
        t.remove(ip4("10.0.0.1"), 32);
        assert_eq!(t.groups_in_use(), 0);
        assert_eq!(t.lookup(ip4("10.0.0.1")), Some(1));
        // The only group is retired; until the reader passes a quiescent point it is not free.
        assert_eq!(t.insert(ip4("10.0.0.2"), 32, 3), Err(Error::OutOfGroups));
        assert_eq!(
            t.lookup(ip4("10.0.0.2")),
            Some(1),
            "a failed insert changes nothing"
        );
        reader.quiescent();
        assert_eq!(t.insert(ip4("10.0.0.2"), 32, 3), Ok(None));
        assert_eq!(t.lookup(ip4("10.0.0.2")), Some(3));
    }

    #[test]
    fn a_group_filled_by_longer_prefixes_alone_is_not_collapsed_into_its_slot() {
        // Found by the lpm_ops fuzz target: two /25s with one next hop fill their group with
        // one value; collapsing it into the /24 slot left a /25 entry there, which removing
        // the /25s did not clear, and a /8 inserted later did not overwrite.
        let mut t = Lpm4::new(16, Qsbr::new()).unwrap();
        t.insert(ip4("10.0.0.0"), 25, 1).unwrap();
        t.insert(ip4("10.0.0.128"), 25, 1).unwrap();
        t.insert(ip4("10.0.0.0"), 26, 2).unwrap();
        t.remove(ip4("10.0.0.0"), 26);
        assert_eq!(t.lookup(ip4("10.0.0.1")), Some(1));
        assert_eq!(t.remove(ip4("10.0.0.0"), 25), Some(1));
        assert_eq!(t.lookup(ip4("10.0.0.1")), None);
        assert_eq!(t.lookup(ip4("10.0.0.129")), Some(1));
        assert_eq!(t.remove(ip4("10.0.0.128"), 25), Some(1));
        assert_eq!(t.lookup(ip4("10.0.0.129")), None);
        assert_eq!(t.groups_in_use(), 0, "the emptied group does collapse");
        t.insert(ip4("10.0.0.0"), 8, 3).unwrap();
        assert_eq!(t.lookup(ip4("10.0.0.129")), Some(3));
    }

    #[test]
    fn bad_lengths_and_next_hops_are_errors() {
        let mut t = Lpm4::new(1, Qsbr::new()).unwrap();
        assert_eq!(t.insert(0, 33, 1), Err(Error::BadPrefixLen { len: 33 }));
        assert_eq!(
            t.insert(0, 8, MAX_NEXT_HOP + 1),
            Err(Error::NextHopTooLarge {
                next_hop: MAX_NEXT_HOP + 1
            })
        );
        let mut t6 = Lpm6::new(1, Qsbr::new()).unwrap();
        assert_eq!(t6.insert(0, 129, 1), Err(Error::BadPrefixLen { len: 129 }));
    }

    #[test]
    fn ipv6_host_route_inside_a_slash_48_walks_every_level() {
        let mut t = Lpm6::new(64, Qsbr::new()).unwrap();
        let p: u128 = "2001:db8:1::".parse::<std::net::Ipv6Addr>().unwrap().into();
        t.insert(0, 0, 1).unwrap();
        t.insert(p, 48, 2).unwrap();
        t.insert(p | 5, 128, 3).unwrap();
        assert_eq!(t.lookup(p | 5), Some(3));
        assert_eq!(t.lookup(p | 6), Some(2));
        assert_eq!(t.lookup(!p), Some(1));
        let mut out = [0; 3];
        t.reader()
            .lookup_bulk_levelwise(&[p | 6, p | 5, !p], &mut out);
        assert_eq!(
            out,
            [2, 3, 1],
            "the bulk walk goes as deep as the deepest address"
        );
        assert_eq!(t.groups_in_use(), 13);
        t.remove(p | 5, 128);
        assert_eq!(t.lookup(p | 5), Some(2));
        assert_eq!(t.groups_in_use(), 3, "groups below the /48 collapse");
    }

    #[derive(Debug, Clone)]
    enum OpV4 {
        Insert(u32, u8, u32),
        Remove(u32, u8),
    }

    /// Addresses drawn near a few bases so that prefixes overlap and nest.
    fn addr4() -> impl Strategy<Value = u32> {
        (
            prop::sample::select(vec![
                0u32,
                0x0a00_0000,
                0x0a01_0200,
                0xc000_0200,
                0xffff_ffff,
            ]),
            any::<u16>(),
        )
            .prop_map(|(b, x)| b ^ u32::from(x & 0x0fff))
    }

    fn op4() -> impl Strategy<Value = OpV4> {
        // Short prefixes rewrite millions of first-level entries; draw them, but rarely.
        let len = prop_oneof![1 => Just(0u8), 1 => 1u8..8, 2 => Just(32u8), 12 => 8u8..=32];
        prop_oneof![
            3 => (addr4(), len.clone(), 0u32..4).prop_map(|(a, l, n)| OpV4::Insert(a, l, n)),
            1 => (addr4(), len).prop_map(|(a, l)| OpV4::Remove(a, l)),
        ]
    }

    fn oracle4(rules: &BTreeMap<(u8, u32), u32>, a: u32) -> Option<u32> {
        rules
            .iter()
            .filter(|((l, p), _)| mask(u128::from(a) << 96, *l) == u128::from(*p) << 96)
            .max_by_key(|((l, _), _)| *l)
            .map(|(_, &nh)| nh)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn ipv4_agrees_with_a_linear_oracle_under_inserts_and_removes(
            ops in prop::collection::vec(op4(), 1..60),
            probes in prop::collection::vec(addr4(), 40),
        ) {
            let q = Qsbr::new();
            let mut t = Lpm4::new(64, q).unwrap();
            let mut rules = BTreeMap::new();
            for op in &ops {
                match *op {
                    OpV4::Insert(a, l, n) => {
                        let key = (mask(u128::from(a) << 96, l) >> 96) as u32;
                        prop_assert_eq!(t.insert(a, l, n).unwrap(), rules.insert((l, key), n));
                    }
                    OpV4::Remove(a, l) => {
                        let key = (mask(u128::from(a) << 96, l) >> 96) as u32;
                        prop_assert_eq!(t.remove(a, l), rules.remove(&(l, key)));
                    }
                }
                for &p in &probes {
                    prop_assert_eq!(t.lookup(p), oracle4(&rules, p), "addr {:#x} after {:?}", p, op);
                }
            }
            prop_assert_eq!(t.len(), rules.len());
            // Bulk and single lookups agree, on the vector path (where the CPU has it) and
            // the portable one.
            let (mut out, mut portable) = (vec![0; probes.len()], vec![0; probes.len()]);
            t.reader().lookup_bulk(&probes, &mut out);
            t.reader().lookup_bulk_portable(&probes, &mut portable);
            for ((p, o), q) in probes.iter().zip(out).zip(portable) {
                prop_assert_eq!(t.lookup(*p).unwrap_or(super::super::NO_ROUTE), o);
                prop_assert_eq!(o, q);
            }
        }

        #[test]
        fn a_built_table_agrees_with_the_oracle_and_the_later_of_equal_prefixes_wins(
            routes in prop::collection::vec((addr4(), prop_oneof![1 => 0u8..8, 12 => 8u8..=32], 0u32..4), 1..80),
            probes in prop::collection::vec(addr4(), 40),
        ) {
            // Unsorted, with equal prefixes drawn often (addresses near five bases): the
            // oracle keeps the last of each, as `build` must.
            let mut rules = BTreeMap::new();
            for &(a, l, n) in &routes {
                rules.insert((l, (mask(u128::from(a) << 96, l) >> 96) as u32), n);
            }
            let t = Lpm4::build(&routes, Qsbr::new()).unwrap();
            prop_assert_eq!(t.len(), rules.len());
            for &p in probes.iter().chain(routes.iter().map(|r| &r.0)) {
                prop_assert_eq!(t.lookup(p), oracle4(&rules, p), "addr {:#x}", p);
            }
        }

        #[test]
        fn ipv6_agrees_with_a_linear_oracle_under_inserts_and_removes(
            ops in prop::collection::vec(
                (prop::sample::select(vec![0u128, 0x2001_0db8u128 << 96, (0x2001_0db8_0001u128 << 80) | 0xff, u128::MAX]),
                 any::<u32>(),
                 prop_oneof![1 => Just(0u8), 1 => 1u8..24, 2 => Just(128u8), 2 => Just(48u8), 2 => Just(64u8), 10 => 24u8..=128],
                 0u32..4,
                 prop::bool::weighted(0.25)),
                1..40),
            probes in prop::collection::vec((prop::sample::select(vec![0u128, 0x2001_0db8u128 << 96, u128::MAX]), any::<u32>()), 30),
        ) {
            let mut t = Lpm6::new(4096, Qsbr::new()).unwrap();
            let mut rules: BTreeMap<(u8, u128), u32> = BTreeMap::new();
            let probes: Vec<u128> = probes.iter().map(|&(b, x)| b ^ u128::from(x)).collect();
            for &(base, x, l, n, remove) in &ops {
                let a = base ^ (u128::from(x) << 40) ^ u128::from(x);
                let key = mask(a, l);
                if remove {
                    prop_assert_eq!(t.remove(a, l), rules.remove(&(l, key)));
                } else {
                    prop_assert_eq!(t.insert(a, l, n).unwrap(), rules.insert((l, key), n));
                }
                for &p in probes.iter().chain(std::iter::once(&a)) {
                    let want = rules.iter().filter(|((l, k), _)| mask(p, *l) == *k).max_by_key(|((l, _), _)| *l).map(|(_, &n)| n);
                    prop_assert_eq!(t.lookup(p), want, "addr {:#x}", p);
                }
            }
            // The bulk walk (level by level, with prefetches) agrees with the oracle on the
            // probes and on every address an operation used, at every depth they reach.
            let all: Vec<u128> = probes
                .iter()
                .copied()
                .chain(ops.iter().map(|&(base, x, ..)| base ^ (u128::from(x) << 40) ^ u128::from(x)))
                .collect();
            let (mut out, mut walked) = (vec![0; all.len()], vec![0; all.len()]);
            t.reader().lookup_bulk(&all, &mut out);
            t.reader().lookup_bulk_levelwise(&all, &mut walked);
            for ((&p, &o), &w) in all.iter().zip(&out).zip(&walked) {
                let want = rules.iter().filter(|((l, k), _)| mask(p, *l) == *k).max_by_key(|((l, _), _)| *l).map_or(super::super::NO_ROUTE, |(_, &n)| n);
                prop_assert_eq!(o, want, "bulk addr {:#x}", p);
                prop_assert_eq!(w, want, "level-by-level walk, addr {:#x}", p);
            }
        }
    }
}
