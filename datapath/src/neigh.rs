//! The dynamic neighbour table: IP address → MAC, learned by ARP and NDP on the control
//! thread (its single writer) and read by every worker on the packet path without locks.
//!
//! Open addressing over a fixed array of atomic slots, made once. A slot's key is written once
//! and never changes afterwards (entries that age out keep their key with the valid bit
//! cleared), so probe chains never break and a reader needs no retry loop: it loads the state
//! word with acquire ordering, and the key written before it with release ordering is then
//! visible. Keys are [`crate::fib::ip_key`] values (IPv4 mapped into IPv6).

use std::sync::atomic::{AtomicU64, Ordering};

const VALID: u64 = 1 << 63;
const USED: u64 = 1 << 62;
const MAC_MASK: u64 = (1 << 48) - 1;
/// Longest probe sequence tried before a lookup gives up (the table is kept under half full).
const MAX_PROBE: usize = 32;

struct Slot {
    hi: AtomicU64,
    lo: AtomicU64,
    /// 0: never used. Otherwise USED, VALID when the MAC is current, and the MAC.
    state: AtomicU64,
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
            })
            .collect();
        NeighTable { slots, mask: n - 1 }
    }

    /// The slot holding `key`, and its state word (acquire-loaded: the key is visible).
    fn find(&self, key: u128) -> Option<(&Slot, u64)> {
        let (hi, lo) = ((key >> 64) as u64, key as u64);
        let mut i = hash(key) & self.mask;
        for _ in 0..MAX_PROBE {
            let s = &self.slots[i];
            let st = s.state.load(Ordering::Acquire);
            if st == 0 {
                return None;
            }
            if s.hi.load(Ordering::Relaxed) == hi && s.lo.load(Ordering::Relaxed) == lo {
                return Some((s, st));
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// The MAC of `key`, if it is known and current. Lock-free, no allocation.
    #[inline]
    pub fn lookup(&self, key: u128) -> Option<[u8; 6]> {
        self.find(key)
            .and_then(|(_, st)| (st & VALID != 0).then(|| bits_mac(st)))
    }

    fn find_or_claim(&self, key: u128) -> Option<&Slot> {
        let (hi, lo) = ((key >> 64) as u64, key as u64);
        let mut i = hash(key) & self.mask;
        for _ in 0..MAX_PROBE {
            let s = &self.slots[i];
            let st = s.state.load(Ordering::Relaxed);
            if st == 0 {
                s.hi.store(hi, Ordering::Relaxed);
                s.lo.store(lo, Ordering::Relaxed);
                return Some(s);
            }
            if s.hi.load(Ordering::Relaxed) == hi && s.lo.load(Ordering::Relaxed) == lo {
                return Some(s);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Writer: `key` is at `mac`. False when the table is full.
    pub fn set(&self, key: u128, mac: [u8; 6]) -> bool {
        match self.find_or_claim(key) {
            Some(s) => {
                s.state
                    .store(USED | VALID | mac_bits(mac), Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// Writer: `key` is no longer current (it aged out unanswered).
    pub fn invalidate(&self, key: u128) {
        if let Some((s, st)) = self.find(key) {
            s.state.store(st & !VALID, Ordering::Release);
        }
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
