//! Our route tables against DPDK's (`rte_fib`, `rte_fib6`, `rte_lpm`, `rte_lpm6`, Debian's
//! DPDK through `dpdk/shim.c`), in one process, on the real DFZ table (886,117 IPv4 prefixes)
//! and the generated ~200k-prefix IPv6 table. Before anything is timed, every DPDK table must
//! give our answer for every address of every traffic set: a disagreement ends the run with
//! the address.
//!
//! Lookups are timed in thread CPU time, 4M addresses a pass in batches of 32, the tables
//! interleaved pass by pass (so a noisy neighbour slows all alike); the median of 5 passes
//! and the spread are printed. Builds are timed alone.
//!
//! `cargo run --release -p gateway-benches --features dpdk --example lpm_dpdk -- [--check]
//! [--memory huge|ordinary] [--no-lpm4] [--only TEXT] [--updates SECONDS]`
//!
//! `--check` (tests/run.sh) only builds the tables and compares answers, skipping `rte_lpm`'s
//! slow IPv4 build. `--only TEXT` times only the traffic patterns whose name holds TEXT.
//! `--updates SECONDS` then churns the DFZ while a reader thread looks up, ours against
//! `rte_lpm` with RCU (the one DPDK table of 22.11 that may be read while it is written:
//! `rte_fib` gained RCU only in later releases), three alternated rounds of SECONDS each. `benches/lpm_dpdk.sh` reserves hugepages, runs it and gives them back.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use datapath::lpm::{Lpm4, Lpm6, Qsbr, NO_ROUTE};
use gateway_benches::dpdk::{self, to_wire, Lookup, Memory};
use gateway_benches::rib::{gen_ipv6, load_dfz, traffic_v4, traffic_v6, Rng};
use gateway_benches::{
    look_until, thread_cpu_seconds, thread_user_kernel_seconds, write_while_reading,
};
use std::sync::Arc;
use std::time::Instant;

const BATCH: usize = 32;
const PASS: usize = 4 << 20;
const PASSES: usize = 5;

/// A lookup over one batch of addresses into one batch of answers.
type BatchFn<'a, A> = Box<dyn Fn(&[A], &mut [u32]) + 'a>;

/// A named bulk lookup over one batch, with what must happen before each of its passes.
struct Variant<'a, A> {
    name: &'static str,
    before: Box<dyn Fn() + 'a>,
    lookup: BatchFn<'a, A>,
}

fn variant<'a, A>(name: &'static str, lookup: impl Fn(&[A], &mut [u32]) + 'a) -> Variant<'a, A> {
    Variant {
        name,
        before: Box::new(|| {}),
        lookup: Box::new(lookup),
    }
}

/// Times every variant over `addrs`, interleaved; prints median, min and max in million
/// lookups a second of thread CPU time.
fn time_all<A>(pattern: &str, addrs: &[A], variants: &[Variant<A>]) {
    // `--only TEXT` times only the patterns whose name holds TEXT (for a profile of one).
    if arg("--only").is_some_and(|only| !pattern.contains(&only)) {
        return;
    }
    let mut out = [0u32; BATCH];
    let mut rates = vec![Vec::new(); variants.len()];
    for pass in 0..PASSES {
        // Each pass starts with the next variant: the first of a pass runs on caches the
        // previous one filled with its own table, which cost the first one up to a third of
        // its rate on the uniform IPv6 set.
        for j in 0..variants.len() {
            let at = (pass + j) % variants.len();
            let (v, r) = (&variants[at], &mut rates[at]);
            (v.before)();
            let f = &v.lookup;
            // Untimed first: a variant follows another one's table in the caches and the
            // TLB, and without this the one after `rte_lpm6` (always the same, as the order
            // only rotates) lost a quarter of its uniform IPv6 rate.
            for c in addrs[..addrs.len() / 4].chunks_exact(BATCH) {
                f(c, &mut out);
            }
            let t = thread_cpu_seconds();
            let mut s = 0u32;
            let mut done = 0;
            while done < PASS {
                for c in addrs.chunks_exact(BATCH) {
                    f(c, &mut out);
                    s = s.wrapping_add(out[BATCH - 1]);
                }
                done += addrs.len() / BATCH * BATCH;
            }
            std::hint::black_box(s);
            r.push(done as f64 / (thread_cpu_seconds() - t) / 1e6);
        }
    }
    println!("-- {pattern}");
    for (v, r) in variants.iter().zip(&mut rates) {
        r.sort_by(f64::total_cmp);
        println!(
            "{:<40} median {:>7.1} Mlps  (min {:.1}, max {:.1})",
            v.name,
            r[PASSES / 2],
            r[0],
            r[PASSES - 1]
        );
    }
}

/// Panics with the first address where `theirs` disagrees with `ours`.
fn agree<A: Copy + std::fmt::Debug, W>(
    name: &str,
    addrs: &[A],
    wire: &[W],
    ours: impl Fn(A) -> u32,
    theirs: impl Fn(&[W], &mut [u32]),
) -> usize {
    let mut out = [0u32; BATCH];
    for (c, w) in addrs.chunks(BATCH).zip(wire.chunks(BATCH)) {
        theirs(w, &mut out[..c.len()]);
        for (&a, &o) in c.iter().zip(&out) {
            let want = ours(a);
            assert_eq!(o, want, "{name} answers {o:#x} for {a:x?}, ours {want:#x}");
        }
    }
    addrs.len()
}

/// Adds every route to a DPDK table; a refused route ends the run, naming it.
fn fill<T, A: Copy + std::fmt::LowerHex>(
    mut table: T,
    routes: &[(A, u8, u32)],
    add: impl Fn(&mut T, A, u8, u32) -> Result<(), dpdk::Error>,
) -> T {
    for &(a, len, nh) in routes {
        add(&mut table, a, len, nh).unwrap_or_else(|e| panic!("{a:#x}/{len}: {e}"));
    }
    table
}

fn timed<T>(what: &str, n: usize, f: impl FnOnce() -> T) -> T {
    let (user0, kernel0) = thread_user_kernel_seconds();
    let t = Instant::now();
    let v = f();
    let s = t.elapsed().as_secs_f64();
    let (user1, kernel1) = thread_user_kernel_seconds();
    println!(
        "build {what:<34} {s:>7.2} s  ({:.2} µs a route; user {:.2} s, kernel {:.2} s)",
        s * 1e6 / n as f64,
        user1 - user0,
        kernel1 - kernel0
    );
    v
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let flag = |f: &str| std::env::args().any(|a| a == f);
    let check = flag("--check");
    let memory = match arg("--memory").as_deref() {
        Some("huge") => Memory::Huge,
        Some("ordinary") | None => Memory::Ordinary,
        Some(other) => panic!("--memory huge|ordinary, not {other}"),
    };
    let avx512 = std::arch::is_x86_feature_detected!("avx512f");
    dpdk::init(memory, 3072, avx512).unwrap_or_else(|e| panic!("DPDK's EAL: {e}"));
    println!(
        "DPDK 22.11 (Debian's libdpdk-dev) EAL on {}; the CPU {} AVX-512",
        match memory {
            Memory::Huge => "2 MiB hugepages",
            Memory::Ordinary => "ordinary pages (--no-huge)",
        },
        if avx512 { "has" } else { "lacks" }
    );

    // IPv4: the DFZ.
    let routes = load_dfz().expect("read ../shared/testdata/rib/dfz-ipv4.csv.gz");
    let n4 = routes.len();
    let qsbr4 = Qsbr::new();
    let mut ours4 = timed("ours IPv4 (Lpm4::build)", n4, || {
        Lpm4::build(&routes, qsbr4.clone()).unwrap()
    });
    let r4 = ours4.reader();
    let fib4 = timed("rte_fib DIR-24-8 (rte_fib_add)", n4, || {
        let f = dpdk::Fib4::new("fib4", n4 as u32 + 1024, 1 << 16).unwrap();
        fill(f, &routes, dpdk::Fib4::add)
    });
    let lpm4 = (!check && !flag("--no-lpm4")).then(|| {
        timed("rte_lpm (rte_lpm_add)", n4, || {
            let l = dpdk::Lpm4::new("lpm4", (n4 + 1024) as u32, 1 << 16).unwrap();
            fill(l, &routes, dpdk::Lpm4::add)
        })
    });
    let t4 = traffic_v4(&routes, 42);
    let ours4_one = |a: u32| r4.lookup(a).unwrap_or(NO_ROUTE);
    let fib4_avx = avx512 && fib4.select(Lookup::Avx512).is_ok();
    let mut checked = 0;
    for set in [&t4.in_table, &t4.hot, &t4.random] {
        fib4.select(Lookup::Scalar).unwrap();
        checked += agree("rte_fib scalar", set, set, ours4_one, |a, o| {
            fib4.lookup_bulk(a, o)
        });
        if fib4_avx {
            fib4.select(Lookup::Avx512).unwrap();
            checked += agree("rte_fib AVX-512", set, set, ours4_one, |a, o| {
                fib4.lookup_bulk(a, o)
            });
        }
        if let Some(l) = &lpm4 {
            checked += agree("rte_lpm x4", set, set, ours4_one, |a, o| l.lookup_x4(a, o));
        }
    }
    println!(
        "IPv4: {checked} answers from DPDK's tables agree with ours{}",
        if fib4_avx {
            " (rte_fib scalar and AVX-512)"
        } else {
            " (rte_fib scalar; no AVX-512 lookup here)"
        }
    );

    // IPv6: the generated table.
    let routes6 = gen_ipv6(7);
    let n6 = routes6.len();
    let ours6 = timed("ours IPv6 (Lpm6::build)", n6, || {
        Lpm6::build(&routes6, Qsbr::new()).unwrap()
    });
    let r6 = ours6.reader();
    let fib6 = timed("rte_fib6 trie (rte_fib6_add)", n6, || {
        let f = dpdk::Fib6::new("fib6", n6 as u32 + 1024, 1 << 20).unwrap();
        fill(f, &routes6, dpdk::Fib6::add)
    });
    let lpm6 = timed("rte_lpm6 (rte_lpm6_add)", n6, || {
        let l = dpdk::Lpm6::new("lpm6", (n6 + 1024) as u32, 1 << 20).unwrap();
        fill(l, &routes6, dpdk::Lpm6::add)
    });
    let t6 = traffic_v6(&routes6, 42);
    let ours6_one = |a: u128| r6.lookup(a).unwrap_or(NO_ROUTE);
    let fib6_avx = avx512 && fib6.select(Lookup::Avx512).is_ok();
    let wire6 = [to_wire(&t6.in_table), to_wire(&t6.hot), to_wire(&t6.random)];
    let mut checked6 = 0;
    for (set, wire) in [&t6.in_table, &t6.hot, &t6.random].into_iter().zip(&wire6) {
        fib6.select(Lookup::Scalar).unwrap();
        checked6 += agree("rte_fib6 scalar", set, wire, ours6_one, |a, o| {
            fib6.lookup_bulk(a, o)
        });
        if fib6_avx {
            fib6.select(Lookup::Avx512).unwrap();
            checked6 += agree("rte_fib6 AVX-512", set, wire, ours6_one, |a, o| {
                fib6.lookup_bulk(a, o)
            });
        }
        checked6 += agree("rte_lpm6", set, wire, ours6_one, |a, o| {
            lpm6.lookup_bulk(a, o)
        });
    }
    println!("IPv6: {checked6} answers from DPDK's tables agree with ours");
    if check {
        return;
    }

    for (pattern, set) in [
        ("IPv4 DFZ, in table", &t4.in_table),
        ("IPv4 DFZ, 10k hot", &t4.hot),
        ("IPv4 DFZ, uniform", &t4.random),
    ] {
        let fib = &fib4;
        let mut v: Vec<Variant<u32>> = vec![
            variant("ours lookup_bulk (32)", |a, o| r4.lookup_bulk(a, o)),
            variant("ours lookup_bulk_portable (32)", |a, o| {
                r4.lookup_bulk_portable(a, o)
            }),
            variant("ours lookup", |a: &[u32], o: &mut [u32]| {
                for (x, &y) in o.iter_mut().zip(a) {
                    *x = r4.lookup(y).unwrap_or(NO_ROUTE);
                }
            }),
            Variant {
                name: "rte_fib_lookup_bulk, scalar",
                before: Box::new(|| fib.select(Lookup::Scalar).unwrap()),
                lookup: Box::new(|a, o| fib.lookup_bulk(a, o)),
            },
        ];
        if fib4_avx {
            v.push(Variant {
                name: "rte_fib_lookup_bulk, AVX-512",
                before: Box::new(|| fib.select(Lookup::Avx512).unwrap()),
                lookup: Box::new(|a, o| fib.lookup_bulk(a, o)),
            });
        }
        if let Some(l) = &lpm4 {
            v.push(variant("rte_lpm_lookupx4", |a, o| l.lookup_x4(a, o)));
        }
        time_all(pattern, set, &v);
    }
    for ((pattern, set), wire) in [
        ("IPv6 200k, in table", &t6.in_table),
        ("IPv6 200k, 10k hot", &t6.hot),
        ("IPv6 200k, uniform", &t6.random),
    ]
    .into_iter()
    .zip(&wire6)
    {
        // Ours read u128 addresses, DPDK's wire bytes: each variant gets its own form, indexed
        // by the batch's position so both walk the same addresses.
        let base = set.as_ptr() as usize;
        let at = move |a: &[u128]| (a.as_ptr() as usize - base) / 16;
        let (fib, lpm6) = (&fib6, &lpm6);
        let mut v: Vec<Variant<u128>> = vec![
            variant("ours lookup_bulk (32)", |a, o| r6.lookup_bulk(a, o)),
            variant("ours lookup_bulk_vector (32)", |a, o| {
                r6.lookup_bulk_vector(a, o)
            }),
            variant("ours lookup_bulk_portable (32)", |a, o| {
                r6.lookup_bulk_portable(a, o)
            }),
            variant("ours lookup", |a: &[u128], o: &mut [u32]| {
                for (x, &y) in o.iter_mut().zip(a) {
                    *x = r6.lookup(y).unwrap_or(NO_ROUTE);
                }
            }),
            Variant {
                name: "rte_fib6_lookup_bulk, scalar",
                before: Box::new(|| fib.select(Lookup::Scalar).unwrap()),
                lookup: Box::new(move |a, o| {
                    let i = at(a);
                    fib.lookup_bulk(&wire[i..i + a.len()], o)
                }),
            },
        ];
        if fib6_avx {
            v.push(Variant {
                name: "rte_fib6_lookup_bulk, AVX-512",
                before: Box::new(|| fib.select(Lookup::Avx512).unwrap()),
                lookup: Box::new(move |a, o| {
                    let i = at(a);
                    fib.lookup_bulk(&wire[i..i + a.len()], o)
                }),
            });
        }
        v.push(variant("rte_lpm6_lookup_bulk_func", move |a, o| {
            let i = at(a);
            lpm6.lookup_bulk(&wire[i..i + a.len()], o)
        }));
        time_all(pattern, set, &v);
    }
    if let (Some(seconds), Some(lpm)) = (arg("--updates").and_then(|s| s.parse().ok()), lpm4) {
        updates(seconds, &routes, &t4.in_table, (&mut ours4, &qsbr4), lpm);
    }
}

/// Route churn while another thread looks up in-table addresses in batches of 32: a random
/// DFZ prefix of /8 or longer withdrawn and announced again with its next hop (two updates), ours against
/// `rte_lpm` with RCU, the same prefixes in the same order, three alternated rounds of
/// `seconds` each. The tables must agree again afterwards.
fn updates(
    seconds: f64,
    routes: &[(u32, u8, u32)],
    addrs: &[u32],
    (ours, qsbr): (&mut Lpm4, &Arc<Qsbr>),
    mut lpm: dpdk::Lpm4,
) {
    let mut rcu = lpm.rcu_reader().unwrap_or_else(|e| panic!("{e}"));
    // Each prefix once, with the next hop both tables hold (the later of equal prefixes), so
    // that a withdrawal and announcement leaves the table as it was, however many rounds of
    // it either table makes.
    let mut held = std::collections::HashMap::new();
    for &(a, len, nh) in routes {
        if len >= 8 {
            held.insert((a & (u32::MAX << (32 - u32::from(len))), len), nh);
        }
    }
    let mut churned: Vec<(u32, u8, u32)> =
        held.into_iter().map(|((a, l), nh)| (a, l, nh)).collect();
    churned.sort_unstable();
    let pick = |r: &mut Rng| churned[r.below(churned.len() as u64) as usize];
    println!("-- updates while a reader looks up (DFZ, in-table addresses, {seconds} s a round)");
    for round in 0..3 {
        let reader = ours.reader();
        let mut r = Rng(1000 + round);
        let (w, l) = write_while_reading(
            seconds,
            |stop| {
                let reg = qsbr.register().unwrap();
                look_until(addrs, stop, |batch, out| {
                    reader.lookup_bulk(batch, out);
                    reg.quiescent();
                })
            },
            || {
                let (a, len, nh) = pick(&mut r);
                ours.remove(a, len);
                ours.insert(a, len, nh).unwrap();
                2
            },
        );
        println!("ours (Lpm4, QSBR)                 round {round}: {:>10.0} updates/s, reader {:>6.1} Mlps", w, l / 1e6);
        let mut r = Rng(1000 + round);
        let rcu = &mut rcu;
        let (w, l) = write_while_reading(
            seconds,
            |stop| rcu.look_until(addrs, stop),
            || {
                let (a, len, nh) = pick(&mut r);
                lpm.delete(a, len)
                    .unwrap_or_else(|e| panic!("{a:#x}/{len}: {e}"));
                lpm.add(a, len, nh)
                    .unwrap_or_else(|e| panic!("{a:#x}/{len}: {e}"));
                2
            },
        );
        println!("rte_lpm (RCU, defer queue)        round {round}: {:>10.0} updates/s, reader {:>6.1} Mlps", w, l / 1e6);
    }
    let ours_one = |a: u32| ours.lookup(a).unwrap_or(NO_ROUTE);
    let n = agree(
        "rte_lpm x4 after the churn",
        addrs,
        addrs,
        ours_one,
        |a, o| lpm.lookup_x4(a, o),
    );
    println!("after the churn: {n} answers from rte_lpm agree with ours");
}
