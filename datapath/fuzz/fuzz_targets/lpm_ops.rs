//! Arbitrary insert/remove/lookup sequences on the IPv4 and IPv6 tables, checked against a
//! linear longest-prefix oracle after every operation.
#![no_main]

use datapath::lpm::{Lpm4, Lpm6, Qsbr};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// One table per family for the whole run (a fresh one per input would cost 64 MiB of
/// zeroing): every input removes what it inserted, so each starts from empty tables.
static TABLES: Mutex<Option<(Lpm4, Lpm6)>> = Mutex::new(None);

/// `key` with the bits past `len` cleared (left-aligned in 128 bits for both families).
fn mask(key: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        key & (u128::MAX << (128 - u32::from(len)))
    }
}

fuzz_target!(|data: &[u8]| {
    let mut guard = TABLES.lock().unwrap_or_else(|e| e.into_inner());
    let (t4, t6) = guard.get_or_insert_with(|| {
        (
            Lpm4::new(64, Qsbr::new()).expect("map table"),
            Lpm6::new(256, Qsbr::new()).expect("map table"),
        )
    });
    assert!(t4.is_empty() && t6.is_empty());
    let mut rules4: BTreeMap<(u8, u128), u32> = BTreeMap::new();
    let mut rules6: BTreeMap<(u8, u128), u32> = BTreeMap::new();
    // An operation is 6 bytes: kind, four address bytes, length. IPv6 addresses put the four
    // bytes at the top and repeat them lower down, so prefixes nest across every level.
    for op in data.chunks_exact(6).take(64) {
        let v6 = op[0] & 0x80 != 0;
        let x = u32::from_be_bytes([op[1], op[2], op[3], op[4]]);
        let (addr, len, rules) = if v6 {
            let a = (0x2001_0db8u128 << 96) ^ (u128::from(x) << 72) ^ u128::from(x);
            // Lengths 24..=128: shorter ones rewrite millions of first-level entries.
            (a, 24 + op[5] % 105, &mut rules6)
        } else {
            // Lengths 8..=32, for the same reason.
            (u128::from(x) << 96, 8 + op[5] % 25, &mut rules4)
        };
        let key = mask(addr, len);
        let nh = u32::from(op[0] & 0x7f);
        match op[0] % 3 {
            0 => {
                let got = if v6 {
                    t6.insert(addr, len, nh)
                } else {
                    t4.insert((addr >> 96) as u32, len, nh)
                };
                if let Ok(old) = got {
                    assert_eq!(old, rules.insert((len, key), nh));
                }
            }
            1 => {
                let got = if v6 {
                    t6.remove(addr, len)
                } else {
                    t4.remove((addr >> 96) as u32, len)
                };
                assert_eq!(got, rules.remove(&(len, key)));
            }
            _ => {}
        }
        let want = rules
            .iter()
            .filter(|((l, p), _)| mask(addr, *l) == *p)
            .max_by_key(|((l, _), _)| *l)
            .map(|(_, &nh)| nh);
        let got = if v6 {
            t6.lookup(addr)
        } else {
            t4.lookup((addr >> 96) as u32)
        };
        assert_eq!(got, want, "{addr:#x}");
    }
    for &(len, key) in rules4.keys() {
        t4.remove((key >> 96) as u32, len);
    }
    for &(len, key) in rules6.keys() {
        t6.remove(key, len);
    }
    assert_eq!(t4.lookup(0x0a00_0001), None);
    assert_eq!(t6.lookup(0x2001_0db8u128 << 96), None);
});
