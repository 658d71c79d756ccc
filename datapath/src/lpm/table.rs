//! The lookup side of the route tables: a DIR-24-8 trie (as DPDK's rte_lpm and rte_lpm6) whose
//! entries are atomics updated in place by one writer ([`super::builder`]).
//!
//! Level 0 (`tbl24`) is indexed by the top 24 bits of the address. An extended entry points to
//! a group of 256 entries indexed by the next 8 bits; IPv4 needs at most one such level (two
//! loads per lookup), IPv6 up to thirteen. An entry is a `u32`:
//!
//! ```text
//!  31          23 22 21 20                              0
//! +--------------+--+--+--------------------------------+
//! |    depth     |X |V |  next-hop index or group index  |
//! +--------------+--+--+--------------------------------+
//! ```
//! V: valid; X: extended (the index is a group); depth: length of the prefix that wrote it.
//!
//! Readers never lock and never retry. Every address's answer is decided by exactly one entry,
//! which the writer replaces with a single atomic store, so a lookup returns the answer of the
//! table either before or after any update. A new group is filled before the release store that
//! links it, and an unlinked group is reused only after every reader has passed a quiescent
//! point ([`super::publish`]).

use super::NO_ROUTE;
use crate::hugemem::HugeAtomics;
use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Bits of the index field.
pub const INDEX_BITS: u32 = 21;
/// Mask of the index field.
pub const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
/// Valid bit.
pub const VALID: u32 = 1 << INDEX_BITS;
/// Extended bit.
pub const EXT: u32 = 1 << (INDEX_BITS + 1);
const DEPTH_SHIFT: u32 = INDEX_BITS + 2;
const _: () = assert!(DEPTH_SHIFT + 8 <= 32, "an entry must fit a u32");

/// Entries in level 0.
pub const TBL24_LEN: usize = 1 << 24;
/// Entries in a group.
pub const GROUP_LEN: usize = 256;
/// Entries per huge page, the unit in which group memory is committed.
const PAGE_ENTRIES: usize = (2 << 20) / 4;
/// Groups (of 1 KiB) below which [`Lpm6Table::lookup_bulk`] takes the table to be cache
/// resident: 1 MiB, the L2 cache of one core on the development machines.
pub const SMALL_TABLE_GROUPS: usize = 1024;
/// Levels below level 0 an IPv6 lookup may walk: (128 - 24) / 8.
pub const MAX_LEVELS: usize = 13;

/// A valid, non-extended entry.
#[inline]
pub const fn entry(next_hop: u32, depth: u8) -> u32 {
    (next_hop & INDEX_MASK) | VALID | ((depth as u32) << DEPTH_SHIFT)
}

/// An extended entry pointing at `group`.
#[inline]
pub const fn ext(group: u32) -> u32 {
    (group & INDEX_MASK) | VALID | EXT
}

/// The depth field.
#[inline]
pub const fn depth_of(e: u32) -> u8 {
    (e >> DEPTH_SHIFT) as u8
}

/// The index field.
#[inline]
pub const fn index_of(e: u32) -> u32 {
    e & INDEX_MASK
}

/// The shared trie. Lookups go through [`Lpm4Table`] and [`Lpm6Table`].
///
/// All groups live in one mapping reserved for `max_groups` at creation: the kernel commits its
/// pages only as the writer first fills them, and a reader reaches any group with one index,
/// with no chunk table or allocation state to load on the way.
pub struct Trie {
    tbl24: HugeAtomics,
    groups: HugeAtomics,
    max_groups: usize,
    /// One past the highest group the writer has used (for [`Trie::memory_bytes`]).
    used: AtomicUsize,
}

impl Trie {
    /// An empty trie with room for `max_groups` groups (at most 2^21); `None` when the kernel
    /// cannot map the first level.
    pub fn new(max_groups: usize) -> Option<Self> {
        let max_groups = max_groups.clamp(1, 1 << INDEX_BITS);
        Some(Trie {
            tbl24: HugeAtomics::zeroed(TBL24_LEN)?,
            groups: HugeAtomics::zeroed(max_groups * GROUP_LEN)?,
            max_groups,
            used: AtomicUsize::new(0),
        })
    }

    /// Groups the trie can hold.
    pub fn max_groups(&self) -> usize {
        self.max_groups
    }

    /// Bytes of entries in memory: level 0 and the huge pages of groups the writer has used.
    pub fn memory_bytes(&self) -> usize {
        let group_entries = self.used.load(Ordering::Relaxed) * GROUP_LEN;
        (TBL24_LEN + group_entries.next_multiple_of(PAGE_ENTRIES)) * 4
    }

    /// Level 0 as a fixed-size array, so that an index taken from 24 address bits needs no
    /// bounds check.
    #[inline]
    fn level0(&self) -> Option<&[AtomicU32; TBL24_LEN]> {
        self.tbl24.as_slice().try_into().ok()
    }

    /// Loads a level-0 entry.
    #[inline]
    pub fn top(&self, slot: usize) -> u32 {
        self.tbl24
            .as_slice()
            .get(slot)
            .map_or(0, |e| e.load(Ordering::Acquire))
    }

    /// Loads entry `i` of `group` (0 past the groups the trie holds).
    #[inline]
    pub fn group_entry(&self, group: u32, i: usize) -> u32 {
        self.groups
            .as_slice()
            .get(((group as usize) << 8) | (i & 0xff))
            .map_or(0, |a| a.load(Ordering::Acquire))
    }

    /// Prefetches entry `i` of `group` (a hint; nothing happens past the groups).
    #[inline]
    fn prefetch_group_entry(&self, group: u32, i: usize) {
        self.groups.prefetch(((group as usize) << 8) | (i & 0xff));
    }

    pub(crate) fn store_top(&self, slot: usize, v: u32) {
        if let Some(e) = self.tbl24.as_slice().get(slot) {
            e.store(v, Ordering::Release);
        }
    }

    pub(crate) fn store_group(&self, group: u32, i: usize, v: u32) {
        if let Some(a) = self
            .groups
            .as_slice()
            .get(((group as usize) << 8) | (i & 0xff))
        {
            a.store(v, Ordering::Release);
        }
    }

    /// Notes that the writer is about to use `group`; false when it is out of range.
    pub(crate) fn ensure_group(&self, group: u32) -> bool {
        let g = group as usize;
        if g >= self.max_groups {
            return false;
        }
        self.used.fetch_max(g + 1, Ordering::Relaxed);
        true
    }

    #[inline]
    fn resolve(e: u32) -> u32 {
        if e & VALID != 0 {
            index_of(e)
        } else {
            NO_ROUTE
        }
    }

    /// IPv4 lookup: at most two loads.
    #[inline]
    pub fn lookup4(&self, a: u32) -> u32 {
        let Some(l0) = self.level0() else {
            return NO_ROUTE;
        };
        let mut e = l0[(a >> 8) as usize].load(Ordering::Acquire);
        if e & EXT != 0 {
            e = self.group_entry(index_of(e), (a & 0xff) as usize);
        }
        Self::resolve(e)
    }

    /// IPv6 lookup: level 0, then one group per further 8 bits while entries are extended.
    #[inline]
    pub fn lookup6(&self, a: u128) -> u32 {
        let Some(l0) = self.level0() else {
            return NO_ROUTE;
        };
        let mut e = l0[(a >> 104) as usize].load(Ordering::Acquire);
        let mut shift = 96u32;
        for _ in 0..MAX_LEVELS {
            if e & EXT == 0 {
                break;
            }
            e = self.group_entry(index_of(e), ((a >> shift) & 0xff) as usize);
            shift = shift.saturating_sub(8);
        }
        Self::resolve(e)
    }
}

/// The byte of `a` at bit offset `shift` (a multiple of 8 below 128). A `u128` shifted by a
/// variable amount costs about ten instructions; a `u64` half shifted by an amount that is the
/// same for the whole pass (so the branch is always predicted) costs two.
#[inline(always)]
fn byte_at(a: u128, shift: u32) -> usize {
    if shift >= 64 {
        (((a >> 64) as u64) >> (shift - 64)) as u8 as usize
    } else {
        ((a as u64) >> shift) as u8 as usize
    }
}

/// A bulk lookup of a batch: `vector` takes the front it can (whole sixteens on AVX-512F,
/// nothing elsewhere) and says how many it did, `portable` the rest.
#[inline(always)]
fn split_bulk<A>(
    addrs: &[A],
    out: &mut [u32],
    vector: impl FnOnce(&[A], &mut [u32]) -> usize,
    portable: impl FnOnce(&[A], &mut [u32]),
) {
    let n = addrs.len().min(out.len());
    let done = vector(&addrs[..n], &mut out[..n]).min(n);
    portable(&addrs[done..n], &mut out[done..n]);
}

/// The IPv4 lookup view a worker holds.
#[derive(Clone)]
pub struct Lpm4Table(pub(crate) std::sync::Arc<Trie>);

impl Lpm4Table {
    /// The next hop of the longest prefix covering `addr`.
    #[inline]
    pub fn lookup(&self, addr: u32) -> Option<u32> {
        let nh = self.0.lookup4(addr);
        (nh != NO_ROUTE).then_some(nh)
    }

    /// Looks up every address of `addrs` into the same position of `out` ([`NO_ROUTE`] where
    /// none). The level-0 line of every address is prefetched first, and a group line as soon
    /// as its level-0 entry is read, so the batch's cache misses overlap: a prefetch retires
    /// at once, where a missing load would hold its place in the reorder window until the
    /// line arrived (19% more in-table lookups a second on the DFZ table, BENCHMARKS.md).
    ///
    /// On a CPU with AVX-512F, whole sixteens of the batch go through [`super::vector`]'s
    /// gathers instead, and only the rest through the path above.
    #[inline]
    pub fn lookup_bulk(&self, addrs: &[u32], out: &mut [u32]) {
        let (level0, groups) = (self.0.tbl24.as_slice(), self.0.groups.as_slice());
        split_bulk(
            addrs,
            out,
            |a, o| super::vector::lookup4(level0, groups, a, o),
            |a, o| self.lookup_bulk_portable(a, o),
        );
    }

    /// [`Lpm4Table::lookup_bulk`] without the vector path: what a CPU without AVX-512F runs
    /// (public so that tests and benches run it on any CPU).
    #[inline]
    pub fn lookup_bulk_portable(&self, addrs: &[u32], out: &mut [u32]) {
        let n = addrs.len().min(out.len());
        let (addrs, out) = (&addrs[..n], &mut out[..n]);
        if n == 0 {
            return;
        }
        let Some(l0) = self.0.level0() else {
            out.fill(NO_ROUTE);
            return;
        };
        for &a in addrs {
            self.0.tbl24.prefetch((a >> 8) as usize);
        }
        for (o, &a) in out.iter_mut().zip(addrs) {
            let e = l0[(a >> 8) as usize].load(Ordering::Acquire);
            if e & EXT != 0 {
                self.0
                    .prefetch_group_entry(index_of(e), (a & 0xff) as usize);
            }
            *o = e;
        }
        for (o, &a) in out.iter_mut().zip(addrs) {
            let mut e = *o;
            if e & EXT != 0 {
                e = self.0.group_entry(index_of(e), (a & 0xff) as usize);
            }
            *o = Trie::resolve(e);
        }
    }
}

/// Batches between two timings of each walk (a power of two).
const CHOICE_PERIOD: u32 = 512;
/// Consecutive batches a timing spans: one batch's time is its latency, as the clock reads
/// wait for the loads before them, while the walks differ in how much of one batch's work
/// overlaps the next's (in the pipeline, the other stages' too).
const CHOICE_RUN: u32 = 8;
/// Timings of each walk a choice rests on.
const CHOICE_SAMPLES: usize = 8;

/// What an IPv6 bulk lookup does, from the thread's batch count and choice ([`TICK6`]): the
/// first [`CHOICE_RUN`] batches of every [`CHOICE_PERIOD`] are timed on the vector walk, the
/// next as many on the portable one, and the rest run the chosen walk.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Run the vector walk (true) or the portable one, untimed.
    Run(bool),
    /// Run the vector walk or the portable one as batch `at` of a timed run.
    Time { vector: bool, at: u32 },
}

#[inline(always)]
fn step(tick: u32) -> Step {
    let phase = (tick >> 1) & (CHOICE_PERIOD - 1);
    if phase < 2 * CHOICE_RUN {
        Step::Time {
            vector: phase < CHOICE_RUN,
            at: phase % CHOICE_RUN,
        }
    } else {
        Step::Run(tick & 1 == 0)
    }
}

/// The timings one thread's choice between the IPv6 walks rests on. After 8 timed runs of
/// each walk, the walk whose median time an address was lower runs until the next choice. The median, so that a few runs the kernel interrupted
/// do not count. The cost: the slower walk on 8 batches in 512, and two clock reads a run.
#[derive(Clone, Copy)]
pub struct Choice6 {
    /// When the current run started, and the addresses it has looked up.
    run: Option<(Instant, usize)>,
    /// Picoseconds an address of this choice's timed runs, vector then portable, and how
    /// many there are.
    samples: [[u32; CHOICE_SAMPLES]; 2],
    taken: [usize; 2],
    /// The medians the current choice rests on (0 before the first).
    medians: [u32; 2],
}

impl Choice6 {
    const START: Choice6 = Choice6 {
        run: None,
        samples: [[0; CHOICE_SAMPLES]; 2],
        taken: [0; 2],
        medians: [0; 2],
    };

    /// Adds a timed run of `n` addresses; returns the new choice (true: the vector walk)
    /// once both walks have their samples.
    fn record(&mut self, vector: bool, took: Duration, n: usize) -> Option<bool> {
        let per = (took.as_nanos() * 1000 / n.max(1) as u128).min(u128::from(u32::MAX)) as u32;
        let k = usize::from(!vector);
        if let Some(slot) = self.samples[k].get_mut(self.taken[k]) {
            *slot = per;
            self.taken[k] += 1;
        }
        if self.taken.iter().any(|&t| t < CHOICE_SAMPLES) {
            return None;
        }
        for k in 0..2 {
            let mut s = self.samples[k];
            s.sort_unstable();
            self.medians[k] = s[CHOICE_SAMPLES / 2];
        }
        self.taken = [0; 2];
        Some(self.medians[0] <= self.medians[1])
    }
}

thread_local! {
    /// Each worker's own choice, as traffic, and so the faster walk, differs by worker: the
    /// batches it looked up, times two, plus one while the portable walk is chosen (the one
    /// word every batch reads and writes).
    static TICK6: Cell<u32> = const { Cell::new(0) };
    /// And the timings behind it, which only timed batches touch.
    static CHOICE6: Cell<Choice6> = const { Cell::new(Choice6::START) };
}

/// The IPv6 lookup view a worker holds.
#[derive(Clone)]
pub struct Lpm6Table(pub(crate) std::sync::Arc<Trie>);

impl Lpm6Table {
    /// The next hop of the longest prefix covering `addr`.
    #[inline]
    pub fn lookup(&self, addr: u128) -> Option<u32> {
        let nh = self.0.lookup6(addr);
        (nh != NO_ROUTE).then_some(nh)
    }

    /// Bulk form of [`Lpm6Table::lookup`], walked level by level across the whole batch: each
    /// level's loads for every address are issued together, and each load that finds an
    /// extended entry prefetches the line the next level will read, so the batch's misses at
    /// one level overlap instead of forming one dependent chain per address, and no load of
    /// the next pass waits in the reorder window (about 2.5 times the in-table lookups a
    /// second of the same walk without the prefetches, BENCHMARKS.md).
    ///
    /// A table whose groups fit in the L2 cache (fewer than [`SMALL_TABLE_GROUPS`]) is
    /// walked one address at a time instead: its loads hit, so the level passes and
    /// prefetches are overhead (the pipeline bench's 11-level walk to a /108 took 3.6-3.8 µs a
    /// batch of 32 level by level against 2.3 µs one at a time, BENCHMARKS.md).
    ///
    /// On a CPU with AVX-512F, the vector walk ([`Lpm6Table::lookup_bulk_vector`]) is faster
    /// where the table's lines are cached and slower where most loads miss, so each thread
    /// times both on its own traffic now and then and runs the faster ([`Choice6`]).
    #[inline]
    pub fn lookup_bulk(&self, addrs: &[u128], out: &mut [u32]) {
        if !super::vector::measured() {
            return self.lookup_bulk_vector(addrs, out);
        }
        let tick = TICK6.with(|t| {
            let v = t.get().wrapping_add(2);
            t.set(v);
            v
        });
        match step(tick) {
            Step::Run(true) => self.lookup_bulk_vector(addrs, out),
            Step::Run(false) => self.lookup_bulk_portable(addrs, out),
            Step::Time { vector, at } => self.lookup_bulk_timed(vector, at, addrs, out),
        }
    }

    /// Batch `at` of a timed run of [`Lpm6Table::lookup_bulk`], and the choice the run may
    /// change when it ends.
    #[inline(never)]
    fn lookup_bulk_timed(&self, vector: bool, at: u32, addrs: &[u128], out: &mut [u32]) {
        let mut c = CHOICE6.with(Cell::get);
        if at == 0 {
            c.run = Some((Instant::now(), 0));
        }
        if vector {
            self.lookup_bulk_vector(addrs, out);
        } else {
            self.lookup_bulk_portable(addrs, out);
        }
        let mut chose = None;
        if let Some((start, n)) = c.run {
            let n = n + addrs.len();
            c.run = Some((start, n));
            if at == CHOICE_RUN - 1 {
                chose = c.record(vector, start.elapsed(), n);
                c.run = None;
            }
        }
        CHOICE6.with(|cell| cell.set(c));
        if let Some(v) = chose {
            TICK6.with(|t| t.set(t.get() & !1 | u32::from(!v)));
        }
    }

    /// [`Lpm6Table::lookup_bulk`] always on the vector walk where the CPU has AVX-512F:
    /// whole sixteens of the batch walk the levels with [`super::vector`]'s gathers, two
    /// sixteens together, and only the rest take the portable path.
    #[inline]
    pub fn lookup_bulk_vector(&self, addrs: &[u128], out: &mut [u32]) {
        let (level0, groups) = (self.0.tbl24.as_slice(), self.0.groups.as_slice());
        split_bulk(
            addrs,
            out,
            |a, o| super::vector::lookup6(level0, groups, a, o),
            |a, o| self.lookup_bulk_portable(a, o),
        );
    }

    /// [`Lpm6Table::lookup_bulk`] without the vector path: what a CPU without AVX-512F runs
    /// (public so that tests and benches run it on any CPU).
    #[inline]
    pub fn lookup_bulk_portable(&self, addrs: &[u128], out: &mut [u32]) {
        let n = addrs.len().min(out.len());
        let (addrs, out) = (&addrs[..n], &mut out[..n]);
        if self.0.used.load(Ordering::Relaxed) < SMALL_TABLE_GROUPS {
            for (o, &a) in out.iter_mut().zip(addrs) {
                *o = self.0.lookup6(a);
            }
        } else {
            self.lookup_bulk_levelwise(addrs, out);
        }
    }

    /// The level-by-level walk of [`Lpm6Table::lookup_bulk`] for tables too large for the
    /// cache, whatever the table's size (public so that tests and benches can run it on small
    /// tables too).
    #[inline]
    pub fn lookup_bulk_levelwise(&self, addrs: &[u128], out: &mut [u32]) {
        let n = addrs.len().min(out.len());
        let (addrs, out) = (&addrs[..n], &mut out[..n]);
        let Some(l0) = self.0.level0() else {
            out.fill(NO_ROUTE);
            return;
        };
        for &a in addrs {
            self.0.tbl24.prefetch((a >> 104) as usize);
        }
        let mut pending = false;
        for (o, &a) in out.iter_mut().zip(addrs) {
            *o = l0[(a >> 104) as usize].load(Ordering::Acquire);
            if *o & EXT != 0 {
                self.0
                    .prefetch_group_entry(index_of(*o), ((a >> 96) & 0xff) as usize);
                pending = true;
            }
        }
        let groups = self.0.groups.as_slice();
        // Level k (1-based) indexes its group with address byte k + 2.
        for level in 1..=MAX_LEVELS {
            if !pending {
                break;
            }
            pending = false;
            let shift = 128 - 8 * (level as u32 + 3);
            let below = shift.saturating_sub(8);
            for (o, &a) in out.iter_mut().zip(addrs) {
                if *o & EXT != 0 {
                    let at = ((index_of(*o) as usize) << 8) | byte_at(a, shift);
                    *o = groups.get(at).map_or(0, |e| e.load(Ordering::Acquire));
                    if *o & EXT != 0 {
                        let next = ((index_of(*o) as usize) << 8) | byte_at(a, below);
                        self.0.groups.prefetch(next);
                        pending = true;
                    }
                }
            }
        }
        for o in out.iter_mut() {
            *o = Trie::resolve(*o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{step, Choice6, Step, CHOICE_PERIOD, CHOICE_RUN, CHOICE_SAMPLES};
    use std::time::Duration;

    /// Records `rounds` timings of each walk (nanoseconds for a batch of 32 on the vector
    /// walk or not, in round `r`); returns the last choice made.
    fn settle(
        c: &mut Choice6,
        rounds: usize,
        mut ns: impl FnMut(usize, bool) -> u64,
    ) -> Option<bool> {
        let mut chose = None;
        for r in 0..rounds {
            for vector in [true, false] {
                let d = Duration::from_nanos(ns(r, vector));
                chose = c.record(vector, d, 32).or(chose);
            }
        }
        chose
    }

    #[test]
    fn the_faster_walk_runs_and_a_change_of_traffic_moves_the_choice() {
        let mut c = Choice6::START;
        assert_eq!(settle(&mut c, CHOICE_SAMPLES - 1, |_, _| 1), None);
        let mut c = Choice6::START;
        let v = |v| if v { 400 } else { 700 };
        assert_eq!(settle(&mut c, CHOICE_SAMPLES, |_, x| v(x)), Some(true));
        assert_eq!(c.medians, [12_500, 21_875], "picoseconds an address");
        let p = |v| if v { 800 } else { 600 };
        assert_eq!(settle(&mut c, CHOICE_SAMPLES, |_, x| p(x)), Some(false));
    }

    #[test]
    fn a_few_batches_the_kernel_interrupted_do_not_flip_the_choice() {
        // Three of every eight vector timings take 50 µs.
        let mut c = Choice6::START;
        let chose = settle(&mut c, 4 * CHOICE_SAMPLES, |r, v| match (v, r % 8) {
            (true, 0..=2) => 50_000,
            (true, _) => 500,
            (false, _) => 600,
        });
        assert_eq!(chose, Some(true), "{:?}", c.medians);
    }

    #[test]
    fn each_period_starts_with_a_timed_run_of_each_walk() {
        let steps: Vec<Step> = (0..2 * CHOICE_PERIOD).map(|b| step(b * 2 + 1)).collect();
        let timed = |v| {
            steps
                .iter()
                .filter(|s| matches!(s, Step::Time { vector, .. } if *vector == v))
                .count()
        };
        let run = 2 * CHOICE_RUN as usize;
        assert_eq!((timed(true), timed(false)), (run, run));
        assert_eq!(
            steps[0],
            Step::Time {
                vector: true,
                at: 0
            }
        );
        assert_eq!(
            steps[2 * CHOICE_RUN as usize - 1],
            Step::Time {
                vector: false,
                at: CHOICE_RUN - 1
            }
        );
        assert_eq!(
            steps.iter().filter(|s| **s == Step::Run(false)).count(),
            2 * (CHOICE_PERIOD - 2 * CHOICE_RUN) as usize,
            "bit 0 set: the portable walk runs"
        );
    }
}
