//! Longest-prefix match: our tables against the Rust crates people would otherwise use, on
//! the real IPv4 DFZ table and a generated ~200k-prefix IPv6 table, for three kinds of traffic.
//! Also build time and memory (counted by a wrapping allocator, so every table is measured the
//! same way). Every table is checked to give the same answers before anything is timed.
//!
//! `cargo bench -p gateway-benches --bench lpm`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use datapath::lpm::{Lpm4, Lpm6, Qsbr, NO_ROUTE};
use gateway_benches::rib::{gen_ipv6, load_dfz, traffic_v4, traffic_v6, Traffic, TRAFFIC_LEN};
use ip_network_table_deps_treebitmap::IpLookupTable;
use ipnet::{Ipv4Net, Ipv6Net};
use iptrie::{Ipv4Prefix, Ipv4RTrieMap, Ipv6Prefix, Ipv6RTrieMap};
use prefix_trie::PrefixMap;
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

/// Counts live heap bytes, to report each table's memory the same way.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
// SAFETY: forwards to the system allocator unchanged; only counts sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` was allocated by `System` with this layout.
        unsafe { System.dealloc(p, l) }
    }
}
#[global_allocator]
static ALLOC: Counting = Counting;

/// Builds with `f`, reporting seconds and heap bytes kept.
fn measured<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let before = LIVE.load(Ordering::Relaxed);
    let t = Instant::now();
    let v = f();
    let secs = t.elapsed().as_secs_f64();
    let mib = (LIVE.load(Ordering::Relaxed) - before) as f64 / (1 << 20) as f64;
    eprintln!("build {name:<28} {secs:>7.3} s  {mib:>8.1} MiB");
    v
}

const BLOCK: usize = 4096;

/// Runs `f` over successive blocks of `addrs`.
fn blocks<'a, A: Copy>(addrs: &'a [A]) -> impl FnMut() -> &'a [A] + 'a {
    let mut at = 0;
    move || {
        let b = &addrs[at..at + BLOCK];
        at = (at + BLOCK) % TRAFFIC_LEN;
        b
    }
}

/// Checks that every peer answers like ours on the first 200k in-table and random addresses,
/// then benches single and bulk lookups for ours and each peer on the three traffic sets.
fn lookup_groups<A: Copy + std::fmt::Debug>(
    c: &mut Criterion,
    family: &str,
    traffic: &Traffic<A>,
    ours: &dyn Fn(A) -> u32,
    ours_bulk: &dyn Fn(&[A], &mut [u32]),
    peers: &[(&str, &dyn Fn(A) -> u32)],
) {
    // Every table must give the same answers, or the comparison means nothing.
    for &a in traffic.in_table.iter().chain(&traffic.random).take(200_000) {
        let want = ours(a);
        for (name, peer) in peers {
            assert_eq!(peer(a), want, "{name} disagrees on {a:?}");
        }
    }
    for (name, addrs) in [
        ("random", &traffic.random),
        ("in_table", &traffic.in_table),
        ("hot10k", &traffic.hot),
    ] {
        let mut g = c.benchmark_group(format!("lpm_{family}_{name}"));
        g.throughput(Throughput::Elements(BLOCK as u64));
        let mut next = blocks(addrs);
        g.bench_function("ours_single", |b| {
            b.iter(|| {
                next()
                    .iter()
                    .map(|&a| ours(a))
                    .fold(0u32, u32::wrapping_add)
            })
        });
        let mut next = blocks(addrs);
        let mut out = [0u32; 32];
        g.bench_function("ours_bulk32", |b| {
            b.iter(|| {
                let mut s = 0u32;
                for chunk in next().chunks_exact(32) {
                    ours_bulk(chunk, &mut out);
                    s = s.wrapping_add(out[31]);
                }
                s
            })
        });
        for (peer_name, peer) in peers {
            let mut next = blocks(addrs);
            g.bench_function(*peer_name, |b| {
                b.iter(|| {
                    next()
                        .iter()
                        .map(|&a| peer(a))
                        .fold(0u32, u32::wrapping_add)
                })
            });
        }
        g.finish();
    }
}

fn bench_v4(c: &mut Criterion) {
    let routes = load_dfz().expect("read ../shared/testdata/rib/dfz-ipv4.csv.gz");
    eprintln!("IPv4: {} routes from the DFZ table", routes.len());
    let ours = measured("ours (DIR-24-8)", || {
        Lpm4::build(&routes, Qsbr::new()).unwrap()
    });
    eprintln!(
        "  ours v4: {:.1} MiB of entries mapped (not on the heap count above), {} groups in use",
        ours.memory_bytes() as f64 / (1 << 20) as f64,
        ours.groups_in_use()
    );
    let reader = ours.reader();
    let tbm = measured("treebitmap", || {
        let mut t = IpLookupTable::new();
        for &(a, l, n) in &routes {
            t.insert(Ipv4Addr::from(a), u32::from(l), n);
        }
        t
    });
    let ptrie = measured("prefix-trie", || {
        let mut t: PrefixMap<Ipv4Net, u32> = PrefixMap::new();
        for &(a, l, n) in &routes {
            t.insert(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap(), n);
        }
        t
    });
    let lc = measured("iptrie LCTrieMap", || {
        let mut t = Ipv4RTrieMap::with_root(NO_ROUTE);
        for &(a, l, n) in &routes {
            t.insert(Ipv4Prefix::new(Ipv4Addr::from(a), l).unwrap(), n);
        }
        t.compress()
    });
    let traffic = traffic_v4(&routes, 42);
    let host = |a: u32| Ipv4Net::new(Ipv4Addr::from(a), 32).unwrap();
    lookup_groups(
        c,
        "v4",
        &traffic,
        &|a| reader.lookup(a).unwrap_or(NO_ROUTE),
        &|a, o| reader.lookup_bulk(a, o),
        &[
            ("treebitmap", &|a| {
                tbm.longest_match(Ipv4Addr::from(a))
                    .map_or(NO_ROUTE, |m| *m.2)
            }),
            ("prefix_trie", &|a| {
                ptrie.get_lpm(&host(a)).map_or(NO_ROUTE, |m| *m.1)
            }),
            ("iptrie_lctrie", &|a| *lc.lookup(&Ipv4Addr::from(a)).1),
        ],
    );
    let mut g = c.benchmark_group("lpm_v4_build_full_table");
    g.sample_size(10);
    g.bench_function("ours", |b| {
        b.iter_batched(
            || (),
            |_| black_box(Lpm4::build(&routes, Qsbr::new()).unwrap().len()),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn bench_v6(c: &mut Criterion) {
    let routes = gen_ipv6(7);
    eprintln!("IPv6: {} generated routes", routes.len());
    let ours = measured("ours v6 (24-8-8... trie)", || {
        Lpm6::build(&routes, Qsbr::new()).unwrap()
    });
    eprintln!(
        "  ours v6: {:.1} MiB of entries mapped (not on the heap count above), {} groups in use",
        ours.memory_bytes() as f64 / (1 << 20) as f64,
        ours.groups_in_use()
    );
    let reader = ours.reader();
    let tbm = measured("treebitmap v6", || {
        let mut t = IpLookupTable::new();
        for &(a, l, n) in &routes {
            t.insert(Ipv6Addr::from(a), u32::from(l), n);
        }
        t
    });
    let ptrie = measured("prefix-trie v6", || {
        let mut t: PrefixMap<Ipv6Net, u32> = PrefixMap::new();
        for &(a, l, n) in &routes {
            t.insert(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap(), n);
        }
        t
    });
    let lc = measured("iptrie LCTrieMap v6", || {
        let mut t = Ipv6RTrieMap::with_root(NO_ROUTE);
        for &(a, l, n) in &routes {
            t.insert(Ipv6Prefix::new(Ipv6Addr::from(a), l).unwrap(), n);
        }
        t.compress()
    });
    let traffic = traffic_v6(&routes, 43);
    let host = |a: u128| Ipv6Net::new(Ipv6Addr::from(a), 128).unwrap();
    lookup_groups(
        c,
        "v6",
        &traffic,
        &|a| reader.lookup(a).unwrap_or(NO_ROUTE),
        &|a, o| reader.lookup_bulk(a, o),
        &[
            ("treebitmap", &|a| {
                tbm.longest_match(Ipv6Addr::from(a))
                    .map_or(NO_ROUTE, |m| *m.2)
            }),
            ("prefix_trie", &|a| {
                ptrie.get_lpm(&host(a)).map_or(NO_ROUTE, |m| *m.1)
            }),
            ("iptrie_lctrie", &|a| *lc.lookup(&Ipv6Addr::from(a)).1),
        ],
    );
}

criterion_group!(benches, bench_v4, bench_v6);
criterion_main!(benches);
