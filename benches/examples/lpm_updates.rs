//! Route updates per second on the full IPv4 DFZ table while another thread looks up
//! continuously, and the lookups per second that thread keeps meanwhile.
//!
//! The writer alternately removes and re-inserts prefixes drawn from the table (a BGP-like
//! churn: withdraw then re-announce), so the table stays full-size throughout. The reader is a
//! registered QSBR reader reporting a quiescent point every 32 lookups.
//!
//! `cargo run --release -p gateway-benches --example lpm_updates`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use datapath::lpm::{Lpm4, Qsbr};
use gateway_benches::look_until;
use gateway_benches::rib::{load_dfz, traffic_v4, Rng};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

const UPDATES: usize = 2_000_000;

fn main() {
    let routes = load_dfz().expect("DFZ table");
    let qsbr = Qsbr::new();
    let mut t = Lpm4::build(&routes, qsbr.clone()).unwrap();
    let traffic = Arc::new(traffic_v4(&routes, 9).in_table);
    for run in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let looked = Arc::new(AtomicU64::new(0));
        let reader = {
            let (table, traffic, stop, looked) =
                (t.reader(), traffic.clone(), stop.clone(), looked.clone());
            let reg = qsbr.register().unwrap();
            std::thread::spawn(move || {
                let began = Instant::now();
                let n = look_until(&traffic, &stop, |batch, out| {
                    table.lookup_bulk(batch, out);
                    reg.quiescent();
                });
                // Lookups per second over the reader's own running time.
                looked.store(
                    (n as f64 / began.elapsed().as_secs_f64()) as u64,
                    Ordering::Relaxed,
                );
            })
        };
        let mut r = Rng(1000 + run);
        // Only prefixes of /8 and longer churn: shorter ones are a handful of rare events.
        let start = Instant::now();
        let mut done = 0usize;
        while done < UPDATES {
            let (a, l, n) = routes[r.below(routes.len() as u64) as usize];
            if l < 8 {
                continue;
            }
            t.remove(a, l);
            t.insert(a, l, n).unwrap();
            done += 2;
        }
        let secs = start.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
        let lps = looked.load(Ordering::Relaxed) as f64;
        println!(
            "run {run}: {:.2} M updates/s ({} updates in {:.3} s) while the reader did {:.1} M lookups/s (bulk 32, in-table)",
            done as f64 / secs / 1e6,
            done,
            secs,
            lps / 1e6
        );
    }
    let thp = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    let thp = thp
        .lines()
        .find(|l| l.starts_with("AnonHugePages"))
        .unwrap_or("AnonHugePages: ?");
    println!("{thp}");
    println!(
        "table: {} prefixes, {} groups in use, {:.1} MiB of entries",
        t.len(),
        t.groups_in_use(),
        t.memory_bytes() as f64 / (1 << 20) as f64
    );
}
