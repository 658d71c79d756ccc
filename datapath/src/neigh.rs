//! The dynamic neighbour table: IP address → MAC, learned by ARP and NDP on the control
//! thread (its single writer) and read by every worker on the packet path without locks.
//!
//! Open addressing over a fixed array of atomic slots, made once, so it never grows. A slot
//! that is no longer current (aged out, evicted) keeps its key with the valid bit cleared: a
//! tombstone. Probe chains stop only at a never-used slot, so tombstones never break them, and
//! the writer reuses a tombstone for a new key: the table reclaims itself, whatever churn it
//! sees (a slot once used is never lost).
//!
//! Because a slot's key can change, a reader validates what it read as a seqlock does: the
//! state word carries a version that the writer bumps (with the valid bit clear) before it
//! rewrites the key, and the reader compares the state before and after reading the key. Keys
//! are [`crate::fib::ip_key`] values (IPv4 mapped into IPv6).
//!
//! Each slot also has a `used` flag that a lookup sets (only when it is clear, so a busy entry
//! costs one load, not a store per packet). The writer takes and clears it to tell entries in
//! use from entries nobody has forwarded to since the last look ([`NeighTable::take_used`]).

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};

const VALID: u64 = 1 << 63;
const USED: u64 = 1 << 62;
const VERSION_SHIFT: u32 = 48;
const VERSION_MASK: u64 = ((1 << 14) - 1) << VERSION_SHIFT;
const MAC_MASK: u64 = (1 << 48) - 1;
/// Longest probe sequence tried before a lookup gives up (the table is kept under half full).
const MAX_PROBE: usize = 32;
/// Reads of a slot retried while the writer is rewriting it, before the lookup says "unknown"
/// (the packet is then dropped as unresolved, as for any entry being replaced).
const READ_RETRIES: usize = 4;

struct Slot {
    hi: AtomicU64,
    lo: AtomicU64,
    /// 0: never used. Otherwise USED, a version, VALID when the MAC is current, and the MAC.
    state: AtomicU64,
    /// Set by lookups, cleared by the writer.
    used: AtomicBool,
}

/// The table. Share it as `Arc<NeighTable>`; only one thread may call the writer methods.
pub struct NeighTable {
    slots: Box<[Slot]>,
    mask: usize,
}

impl Default for NeighTable {
    /// Room for 4096 neighbours.
    fn default() -> Self {
        NeighTable::new(4096)
    }
}

impl std::fmt::Debug for NeighTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NeighTable({} slots)", self.slots.len())
    }
}

fn mac_bits(mac: [u8; 6]) -> u64 {
    let mut b = [0u8; 8];
    b[2..].copy_from_slice(&mac);
    u64::from_be_bytes(b)
}

fn bits_mac(v: u64) -> [u8; 6] {
    let b = (v & MAC_MASK).to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

fn hash(key: u128) -> usize {
    let x = (key as u64) ^ ((key >> 64) as u64).rotate_left(17);
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize
}

impl NeighTable {
    /// A table holding up to `capacity` neighbours (rounded up; twice as many slots).
    pub fn new(capacity: usize) -> Self {
        let n = (capacity.max(8) * 2).next_power_of_two();
        let slots = (0..n)
            .map(|_| Slot {
                hi: AtomicU64::new(0),
                lo: AtomicU64::new(0),
                state: AtomicU64::new(0),
                used: AtomicBool::new(false),
            })
            .collect();
        NeighTable { slots, mask: n - 1 }
    }

    /// How many neighbours the table is sized for: the resolver keeps at most this many
    /// current, so probe chains stay short.
    pub fn capacity(&self) -> usize {
        self.slots.len() / 2
    }

    /// Reader: the state of `s` if its key is `(hi, lo)`, read consistently; `None` when the
    /// slot holds another key. `Err(())` when the writer kept rewriting it.
    #[inline]
    fn read_slot(s: &Slot, hi: u64, lo: u64) -> Result<Option<u64>, ()> {
        for _ in 0..READ_RETRIES {
            let st = s.state.load(Ordering::Acquire);
            if st == 0 {
                return Ok(Some(0));
            }
            let same = s.hi.load(Ordering::Relaxed) == hi && s.lo.load(Ordering::Relaxed) == lo;
            fence(Ordering::Acquire);
            if s.state.load(Ordering::Relaxed) == st {
                return Ok(same.then_some(st));
            }
        }
        Err(())
    }

    /// The MAC of `key`, if it is known and current. Lock-free, no allocation; marks the entry
    /// used.
    #[inline]
    pub fn lookup(&self, key: u128) -> Option<[u8; 6]> {
        let (hi, lo) = ((key >> 64) as u64, key as u64);
        let mut i = hash(key) & self.mask;
        for _ in 0..MAX_PROBE {
            let s = &self.slots[i];
            match Self::read_slot(s, hi, lo) {
                Ok(Some(0)) | Err(()) => return None,
                Ok(Some(st)) => {
                    if st & VALID == 0 {
                        return None;
                    }
                    if !s.used.load(Ordering::Relaxed) {
                        s.used.store(true, Ordering::Relaxed);
                    }
                    return Some(bits_mac(st));
                }
                Ok(None) => {}
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Writer: the slot holding `key` (current or a tombstone), else the first reusable slot
    /// of its probe chain (never used, or a tombstone of another key) with `false`.
    fn find_for_write(&self, key: u128) -> Option<(&Slot, bool)> {
        let (hi, lo) = ((key >> 64) as u64, key as u64);
        let mut i = hash(key) & self.mask;
        let mut free = None;
        for _ in 0..MAX_PROBE {
            let s = &self.slots[i];
            // The writer is the only thread that changes keys: plain loads suffice.
            let st = s.state.load(Ordering::Relaxed);
            if st == 0 {
                return Some(free.unwrap_or((s, false)));
            }
            if s.hi.load(Ordering::Relaxed) == hi && s.lo.load(Ordering::Relaxed) == lo {
                return Some((s, true));
            }
            if st & VALID == 0 && free.is_none() {
                free = Some((s, false));
            }
            i = (i + 1) & self.mask;
        }
        free
    }

    /// Writer: `key` is at `mac`. False when every slot of its probe chain holds a current
    /// entry (the caller evicts one and tries again, or counts the refusal).
    pub fn set(&self, key: u128, mac: [u8; 6]) -> bool {
        let Some((s, same_key)) = self.find_for_write(key) else {
            return false;
        };
        let st = s.state.load(Ordering::Relaxed);
        let mut version = st & VERSION_MASK;
        if !same_key {
            // Readers that began before this must not pair the old state with the new key:
            // bump the version, invalid, before the key changes (the seqlock's odd phase).
            version = (version + (1 << VERSION_SHIFT)) & VERSION_MASK;
            s.state.store(USED | version, Ordering::Relaxed);
            fence(Ordering::Release);
            s.hi.store((key >> 64) as u64, Ordering::Relaxed);
            s.lo.store(key as u64, Ordering::Relaxed);
            s.used.store(false, Ordering::Relaxed);
        }
        s.state
            .store(USED | version | VALID | mac_bits(mac), Ordering::Release);
        true
    }

    /// Writer: `key` is no longer current (aged out or evicted); its slot becomes reusable.
    pub fn invalidate(&self, key: u128) {
        if let Some((s, true)) = self.find_for_write(key) {
            let st = s.state.load(Ordering::Relaxed);
            s.state.store(st & !VALID, Ordering::Release);
        }
    }

    /// Writer: whether a lookup found `key` since the last call, clearing the mark.
    pub fn take_used(&self, key: u128) -> bool {
        match self.find_for_write(key) {
            Some((s, true)) => s.used.swap(false, Ordering::Relaxed),
            _ => false,
        }
    }

    /// Current entries (a scan: for counters, not the packet path).
    pub fn len(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.state.load(Ordering::Relaxed) & VALID != 0)
            .count()
    }

    /// True when no entry is current.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn set_lookup_invalidate_and_full() {
        let t = NeighTable::new(8);
        assert_eq!(t.lookup(5), None);
        assert!(t.set(5, [1, 2, 3, 4, 5, 6]));
        assert_eq!(t.lookup(5), Some([1, 2, 3, 4, 5, 6]));
        assert!(t.set(5, [9; 6]));
        assert_eq!(t.lookup(5), Some([9; 6]));
        t.invalidate(5);
        assert_eq!(t.lookup(5), None);
        assert!(t.set(5, [7; 6]));
        assert_eq!(t.lookup(5), Some([7; 6]));
        // 16 slots: the table refuses rather than grows.
        let mut stored = 0;
        for k in 100..200u128 {
            stored += usize::from(t.set(k << 70 | k, [k as u8; 6]));
        }
        assert!(stored < 16);
        assert_eq!(t.lookup(5), Some([7; 6]));
    }

    #[test]
    fn churn_never_fills_the_table_when_entries_are_invalidated() {
        // 100k distinct neighbours pass through a table of 64, at most 32 current at once:
        // every insert must find a slot (tombstones are reused), and old keys stay gone.
        let t = NeighTable::new(32);
        let mut live = std::collections::VecDeque::new();
        for k in 1..100_000u128 {
            let key = (0xfd00u128 << 112) | k.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            assert!(t.set(key, [k as u8; 6]), "insert {k} refused");
            live.push_back(key);
            if live.len() > 32 {
                let old = live.pop_front().unwrap();
                t.invalidate(old);
                assert_eq!(t.lookup(old), None);
            }
            assert_eq!(t.lookup(key), Some([k as u8; 6]));
        }
        assert_eq!(t.len(), 32);
    }

    #[test]
    fn lookups_mark_entries_used_and_the_writer_takes_the_mark() {
        let t = NeighTable::new(8);
        assert!(t.set(7, [1; 6]));
        assert!(!t.take_used(7));
        assert_eq!(t.lookup(7), Some([1; 6]));
        assert!(t.take_used(7));
        assert!(!t.take_used(7));
        assert!(!t.take_used(8));
    }

    #[test]
    fn readers_never_pair_a_key_with_another_keys_mac_while_slots_are_reused() {
        // A table of 16 slots under constant reuse: the MAC a reader gets is always the one
        // written for the key it asked about (each key's MAC bytes encode the key).
        let t = Arc::new(NeighTable::new(8));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r = {
            let (t, stop) = (t.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut hits = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for k in 1..=40u128 {
                        if let Some(m) = t.lookup(k) {
                            assert_eq!(m, [k as u8; 6], "key {k}");
                            hits += 1;
                        }
                    }
                }
                hits
            })
        };
        for round in 0..200_000u128 {
            let k = round % 40 + 1;
            t.set(k, [k as u8; 6]);
            t.invalidate((round + 20) % 40 + 1);
        }
        stop.store(true, Ordering::Relaxed);
        assert!(r.join().unwrap() > 0);
    }

    #[test]
    fn readers_never_see_a_torn_entry() {
        let t = Arc::new(NeighTable::new(1024));
        let r = {
            let t = t.clone();
            std::thread::spawn(move || {
                for _ in 0..200_000 {
                    for k in 1..64u128 {
                        if let Some(m) = t.lookup(k) {
                            // Every MAC ever written for k has all bytes equal to k or k+1.
                            assert!(m.iter().all(|&b| b == m[0]));
                            assert!(m[0] == k as u8 || m[0] == k as u8 + 1, "{k} {m:?}");
                        }
                    }
                }
            })
        };
        for round in 0..2000u32 {
            for k in 1..64u128 {
                let b = k as u8 + (round % 2) as u8;
                t.set(k, [b; 6]);
            }
        }
        r.join().unwrap();
    }
}
