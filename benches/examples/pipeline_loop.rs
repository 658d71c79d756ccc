//! Runs the plain routing pipeline over a batch of 32 packets `N` times, for instruction
//! counting under callgrind (see `benches/callgrind.sh`): the difference between two values of
//! `N`, divided by the packets, is the per-packet cost with all setup cancelled out.
//!
//! Usage: `pipeline_loop <ipv4|ipv6> <iterations>`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use datapath::pipeline::batch::Batch;
use datapath::pipeline::{Next, Pipeline};
use gateway_benches::{bench_fib, bench_frames, BURST};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ipv6 = args.get(1).map(String::as_str) == Some("ipv6");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let fib = bench_fib();
    let input = bench_frames(ipv6);
    let mut batch = Batch::new();
    let mut pipe = Pipeline::new();
    let mut forwarded = 0usize;
    for _ in 0..n {
        for (buf, f) in batch.bufs.iter_mut().zip(&input) {
            buf.load(f, 0);
        }
        batch.len = BURST;
        forwarded += pipe
            .process(&mut batch, &fib)
            .iter()
            .filter(|v| matches!(v, Next::Tx(_)))
            .count();
    }
    assert_eq!(forwarded, n * BURST, "every packet must be forwarded");
    println!("{forwarded}");
}
