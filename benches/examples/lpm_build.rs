//! How long the full IPv4 DFZ table (and the generated IPv6 table) takes to build, in wall
//! time: five builds each, alternated, the median and the spread. Issue 21 asks for the DFZ
//! in under 0.5 s.
//!
//! `cargo run --release -p gateway-benches --example lpm_build`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use datapath::lpm::{Lpm4, Lpm6, Qsbr};
use gateway_benches::rib::{gen_ipv6, load_dfz};
use gateway_benches::thread_user_kernel_seconds;
use std::time::Instant;

fn main() {
    let routes = load_dfz().expect("DFZ table");
    let routes6 = gen_ipv6(7);
    let (mut t4, mut t6) = (Vec::new(), Vec::new());
    let mut kernel4 = Vec::new();
    let rounds = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5usize);
    for _ in 0..rounds {
        let k = thread_user_kernel_seconds().1;
        let t = Instant::now();
        let table = Lpm4::build(&routes, Qsbr::new()).unwrap();
        t4.push(t.elapsed().as_secs_f64());
        kernel4.push(thread_user_kernel_seconds().1 - k);
        std::hint::black_box(table.len());
        drop(table);
        let t = Instant::now();
        let table = Lpm6::build(&routes6, Qsbr::new()).unwrap();
        t6.push(t.elapsed().as_secs_f64());
        std::hint::black_box(table.len());
    }
    println!("IPv4 builds in order: {t4:.3?} (kernel time {kernel4:.3?}); IPv6: {t6:.3?}");
    for (what, n, mut v) in [("IPv4 DFZ", routes.len(), t4), ("IPv6", routes6.len(), t6)] {
        v.sort_by(f64::total_cmp);
        let (min, max) = (v[0], v[v.len() - 1]);
        println!(
            "build {what:<9} {n:>7} routes: median {:.3} s (min {min:.3}, max {max:.3})",
            v[v.len() / 2]
        );
    }
}
