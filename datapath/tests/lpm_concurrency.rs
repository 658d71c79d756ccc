//! Readers look up continuously while the single writer inserts and removes routes; every
//! answer must be one the table gave before or after some update, never anything else. The
//! toggled prefixes are disjoint, so for each probe the allowed answers are exactly two: with
//! and without the one toggled prefix that covers it. A table of only a few groups forces
//! group collapse, retirement and reuse under the readers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use datapath::lpm::{Error, Lpm4, Lpm6, Qsbr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const READERS: usize = 1;
const CYCLES: usize = 30_000;

/// Base routes: a default-free set of covering prefixes.
fn base() -> Vec<(u32, u8, u32)> {
    vec![
        (0x0a00_0000, 8, 1),
        (0x0a01_0000, 16, 2),
        (0xc000_0000, 8, 3),
    ]
}

/// Toggled routes: disjoint from each other, nested inside the base ones; many longer than
/// /24 so each toggle allocates a group and each removal collapses and retires it.
fn toggled() -> Vec<(u32, u8, u32)> {
    let mut v = Vec::new();
    for i in 0..16u32 {
        v.push((0x0a01_0000 | (i << 8) | 0x80, 25, 100 + i)); // 10.1.i.128/25
        v.push((0x0a02_0000 | (i << 8) | 0x07, 32, 200 + i)); // 10.2.i.7/32
        v.push((0xc000_0000 | ((i + 1) << 16), 16, 300 + i)); // 192.(i+1).0.0/16
    }
    v
}

fn covers(p: u32, l: u8, a: u32) -> bool {
    l == 0 || (a ^ p) >> (32 - u32::from(l)) == 0
}

fn oracle(rules: &[(u32, u8, u32)], a: u32) -> Option<u32> {
    rules
        .iter()
        .filter(|r| covers(r.0, r.1, a))
        .max_by_key(|r| r.1)
        .map(|r| r.2)
}

#[test]
fn ipv4_readers_only_ever_see_the_table_before_or_after_an_update() {
    let qsbr = Qsbr::new();
    let mut t = Lpm4::new(4, qsbr.clone()).unwrap();
    for (a, l, n) in base() {
        t.insert(a, l, n).unwrap();
    }
    let tog = toggled();
    // Probes inside and around every toggled prefix, with both allowed answers.
    let mut probes: Vec<(u32, [Option<u32>; 2])> = Vec::new();
    for &(p, l, _) in &tog {
        for a in [
            p,
            p | 1,
            p ^ 0x40,
            p.wrapping_sub(1),
            p | ((1u32 << (32 - l)) - 1),
        ] {
            let without = oracle(&base(), a);
            let mut with_rules = base();
            with_rules.extend(tog.iter().filter(|r| covers(r.0, r.1, a)));
            probes.push((a, [without, oracle(&with_rules, a)]));
        }
    }
    let probes = Arc::new(probes);
    let stop = Arc::new(AtomicBool::new(false));
    let checked = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (table, probes, stop, checked) =
                (t.reader(), probes.clone(), stop.clone(), checked.clone());
            let reg = qsbr.register().unwrap();
            std::thread::spawn(move || {
                let mut n = 0u64;
                let mut bulk_in = [0u32; 32];
                let mut bulk_out = [0u32; 32];
                while !stop.load(Ordering::Relaxed) {
                    for chunk in probes.chunks(32) {
                        for (i, (a, _)) in chunk.iter().enumerate() {
                            bulk_in[i] = *a;
                        }
                        table.lookup_bulk(&bulk_in[..chunk.len()], &mut bulk_out[..chunk.len()]);
                        for (i, (a, allowed)) in chunk.iter().enumerate() {
                            let single = table.lookup(*a);
                            let bulk = (bulk_out[i] != u32::MAX).then_some(bulk_out[i]);
                            assert!(
                                allowed.contains(&single),
                                "{a:#x}: {single:?} not in {allowed:?}"
                            );
                            assert!(
                                allowed.contains(&bulk),
                                "{a:#x}: bulk {bulk:?} not in {allowed:?}"
                            );
                            n += 2;
                        }
                        reg.quiescent();
                    }
                }
                checked.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();

    let mut retries = 0u64;
    for cycle in 0..CYCLES {
        let (a, l, n) = tog[cycle % tog.len()];
        loop {
            match t.insert(a, l, n) {
                Ok(_) => break,
                Err(Error::OutOfGroups) => {
                    // Every group is retired and waiting for the readers' next quiescent point.
                    retries += 1;
                    std::thread::yield_now();
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        if cycle % 3 != 2 {
            assert_eq!(t.remove(a, l), Some(n));
        }
        if cycle % tog.len() == tog.len() - 1 {
            for &(a, l, _) in &tog {
                t.remove(a, l);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join()
            .expect("reader saw an answer outside the old or new table");
    }
    assert!(checked.load(Ordering::Relaxed) > 0, "readers ran");
    eprintln!(
        "checked {} lookups, {retries} insert retries waiting for quiescence",
        checked.load(Ordering::Relaxed)
    );
}

#[test]
fn ipv6_readers_only_ever_see_the_table_before_or_after_an_update() {
    let qsbr = Qsbr::new();
    let mut t = Lpm6::new(64, qsbr.clone()).unwrap();
    let base: u128 = 0x2001_0db8u128 << 96;
    t.insert(base, 32, 1).unwrap();
    let table = t.reader();
    let reg = qsbr.register().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let reader = std::thread::spawn(move || {
        let mut n = 0u64;
        let addrs: Vec<u128> = (0..16u128).map(|i| base | (i << 80) | 5).collect();
        let mut walked = [0u32; 16];
        while !s2.load(Ordering::Relaxed) {
            // The level-by-level bulk walk too: it reads each level in a separate pass.
            table.lookup_bulk_levelwise(&addrs, &mut walked);
            for (i, (&a, &w)) in addrs.iter().zip(&walked).enumerate() {
                let got = table.lookup(a);
                assert!(
                    got == Some(1) || got == Some(100 + i as u32),
                    "{a:#x}: {got:?}"
                );
                assert!(w == 1 || w == 100 + i as u32, "bulk {a:#x}: {w}");
                n += 1;
            }
            reg.quiescent();
        }
        n
    });
    for cycle in 0..2000u128 {
        let i = cycle % 16;
        let p = base | (i << 80) | 5;
        // A /128 inside its own /48: thirteen levels linked and later collapsed.
        loop {
            match t.insert(p, 128, 100 + i as u32) {
                Ok(_) => break,
                Err(Error::OutOfGroups) => std::thread::yield_now(),
                Err(e) => panic!("{e:?}"),
            }
        }
        t.remove(p, 128);
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().expect("reader saw a torn answer") > 0);
}
