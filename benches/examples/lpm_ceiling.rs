//! Our IPv4 table against a plain DIR-24-8 (`Vec<u32>` entries, no atomics, no writer), the
//! ceiling the issue quotes ("a plain DIR-24-8 measured on these machines"), on the full DFZ
//! table, in one process so both see the same machine. Seven timed passes of 5M lookups each
//! per row; the median and the spread are printed.
//!
//! `cargo run --release -p gateway-benches --example lpm_ceiling`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, unsafe_code)]

use datapath::lpm::{Lpm4, Qsbr, NO_ROUTE};
use gateway_benches::rib::{load_dfz, traffic_v4};
use std::time::Instant;

const EXT: u32 = 1 << 31;
const VALID: u32 = 1 << 30;
const HUGE: usize = 2 << 20;

/// A DIR-24-8 in plain vectors, built by painting prefixes shortest first.
struct Plain {
    t24: Vec<u32>,
    groups: Vec<u32>,
}

impl Plain {
    fn build(routes: &[(u32, u8, u32)], huge_pages: bool) -> Plain {
        let mut t24 = vec![0u32; 1 << 24];
        if huge_pages {
            let p = t24.as_mut_ptr() as usize;
            let start = p.next_multiple_of(HUGE);
            // SAFETY: advice on whole pages inside the vector's own allocation (the 2 MiB
            // aligned range after `start` ends one huge page before the vector does);
            // failure only means no huge pages.
            unsafe {
                libc::madvise(start as *mut _, (64 << 20) - HUGE, libc::MADV_HUGEPAGE);
            }
        }
        let mut groups: Vec<u32> = Vec::new();
        let mut sorted = routes.to_vec();
        sorted.sort_by_key(|r| r.1);
        for &(a, len, nh) in &sorted {
            let v = (nh & 0xffff) | VALID;
            let s = (a >> 8) as usize;
            if len <= 24 {
                for e in &mut t24[s..s + (1 << (24 - len))] {
                    if *e & EXT != 0 {
                        let g = (*e & 0xff_ffff) as usize;
                        groups[g * 256..g * 256 + 256].fill(v);
                    } else {
                        *e = v;
                    }
                }
            } else {
                if t24[s] & EXT == 0 {
                    let fill = t24[s];
                    t24[s] = EXT | (groups.len() / 256) as u32;
                    groups.extend(std::iter::repeat_n(fill, 256));
                }
                let at = ((t24[s] & 0xff_ffff) as usize) * 256 + (a & 0xff) as usize;
                groups[at..at + (1 << (32 - len))].fill(v);
            }
        }
        Plain { t24, groups }
    }

    fn lookup_bulk(&self, addrs: &[u32], out: &mut [u32]) {
        let t24: &[u32; 1 << 24] = self.t24.as_slice().try_into().unwrap();
        for (o, &a) in out.iter_mut().zip(addrs) {
            *o = t24[(a >> 8) as usize];
        }
        for (o, &a) in out.iter_mut().zip(addrs) {
            let mut e = *o;
            if e & EXT != 0 {
                e = self.groups[(((e & 0xff_ffff) as usize) << 8) | (a & 0xff) as usize];
            }
            *o = if e & VALID != 0 { e & 0xffff } else { NO_ROUTE };
        }
    }

    /// [`Plain::lookup_bulk`] with every first-level line prefetched before any is loaded.
    fn lookup_bulk_prefetch(&self, addrs: &[u32], out: &mut [u32]) {
        let t24: &[u32; 1 << 24] = self.t24.as_slice().try_into().unwrap();
        for &a in addrs {
            // SAFETY: a prefetch hint never faults; the address is inside `t24`.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    t24.as_ptr().add((a >> 8) as usize).cast::<i8>(),
                );
            }
        }
        self.lookup_bulk(addrs, out)
    }
}

/// Times every variant on `addrs`, interleaved (one pass of each per round, seven rounds), so
/// that a noisy neighbour slows all of them alike; prints each one's median and spread.
/// A named bulk lookup.
type Variant<'a> = (&'a str, &'a dyn Fn(&[u32], &mut [u32]));

fn time_all(addrs: &[u32], variants: &[Variant]) {
    let mut out = [0u32; 32];
    let mut rates = vec![Vec::new(); variants.len()];
    for _ in 0..7 {
        for ((_, f), r) in variants.iter().zip(&mut rates) {
            let t = Instant::now();
            let mut s = 0u32;
            for _ in 0..5 {
                for c in addrs.chunks_exact(32) {
                    f(c, &mut out);
                    s = s.wrapping_add(out[31]);
                }
            }
            std::hint::black_box(s);
            r.push(5.0 * addrs.len() as f64 / t.elapsed().as_secs_f64() / 1e6);
        }
    }
    for ((name, _), r) in variants.iter().zip(&mut rates) {
        r.sort_by(f64::total_cmp);
        println!(
            "{name:<34} median {:>6.1} Mlps  (min {:.1}, max {:.1})",
            r[3], r[0], r[6]
        );
    }
}

fn main() {
    let routes = load_dfz().expect("read ../shared/testdata/rib/dfz-ipv4.csv.gz");
    let ours = Lpm4::build(&routes, Qsbr::new()).unwrap();
    let reader = ours.reader();
    let plain = Plain::build(&routes, false);
    let plain_huge = Plain::build(&routes, true);
    let traffic = traffic_v4(&routes, 42);
    for &a in traffic.in_table.iter().chain(&traffic.random).take(400_000) {
        let mut o = [0u32; 1];
        plain_huge.lookup_bulk(&[a], &mut o);
        let want = reader.lookup(a).map_or(NO_ROUTE, |n| n & 0xffff);
        assert_eq!(o[0], want, "plain DIR-24-8 disagrees on {a:#x}");
        plain_huge.lookup_bulk_prefetch(&[a], &mut o);
        assert_eq!(
            o[0], want,
            "plain DIR-24-8 with prefetch disagrees on {a:#x}"
        );
    }
    for (name, addrs) in [
        ("in_table", &traffic.in_table),
        ("hot10k", &traffic.hot),
        ("random", &traffic.random),
    ] {
        println!("-- {name}");
        time_all(
            addrs,
            &[
                ("ours bulk32", &|a, o| reader.lookup_bulk(a, o)),
                ("ours single", &|a, o| {
                    for (x, &y) in o.iter_mut().zip(a) {
                        *x = reader.lookup(y).unwrap_or(NO_ROUTE);
                    }
                }),
                ("plain bulk32, 4 KiB pages", &|a, o| plain.lookup_bulk(a, o)),
                ("plain bulk32, huge pages", &|a, o| {
                    plain_huge.lookup_bulk(a, o)
                }),
                ("plain bulk32, huge, prefetch", &|a, o| {
                    plain_huge.lookup_bulk_prefetch(a, o)
                }),
            ],
        );
    }
}
