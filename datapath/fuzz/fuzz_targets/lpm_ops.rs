//! Arbitrary insert/remove/lookup sequences on the IPv4 table, checked against a linear
//! longest-prefix oracle after every operation.
#![no_main]

use datapath::lpm::{Lpm4, Qsbr};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// One table for the whole run (a fresh one per input would cost 64 MiB of zeroing): every
/// input removes what it inserted, so each starts from an empty table.
static TABLE: Mutex<Option<Lpm4>> = Mutex::new(None);

fn covers(p: u32, l: u8, a: u32) -> bool {
    l == 0 || (a ^ p) >> (32 - u32::from(l)) == 0
}

fuzz_target!(|data: &[u8]| {
    let mut guard = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let t = guard.get_or_insert_with(|| Lpm4::new(64, Qsbr::new()).expect("map table"));
    assert!(t.is_empty());
    let mut rules: BTreeMap<(u8, u32), u32> = BTreeMap::new();
    for op in data.chunks_exact(6).take(64) {
        let addr = u32::from_be_bytes([op[1], op[2], op[3], op[4]]);
        // Lengths 8..=32: shorter ones rewrite millions of entries per operation and are
        // covered by the property tests instead.
        let len = 8 + op[5] % 25;
        let key = addr & (u32::MAX << (32 - u32::from(len)));
        match op[0] % 3 {
            0 => {
                let nh = u32::from(op[0]);
                if let Ok(old) = t.insert(addr, len, nh) {
                    assert_eq!(old, rules.insert((len, key), nh));
                }
            }
            1 => assert_eq!(t.remove(addr, len), rules.remove(&(len, key))),
            _ => {}
        }
        let want = rules
            .iter()
            .filter(|((l, p), _)| covers(*p, *l, addr))
            .max_by_key(|((l, _), _)| *l)
            .map(|(_, &nh)| nh);
        assert_eq!(t.lookup(addr), want, "{addr:#x}");
    }
    for &(len, key) in rules.keys() {
        t.remove(key, len);
    }
    assert_eq!(t.lookup(0x0a00_0001), None);
});
