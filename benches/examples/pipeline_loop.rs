//! Runs the plain routing pipeline over a batch of 32 packets `N` times, for instruction
//! counting under callgrind (see `benches/callgrind.sh`): the difference between two values of
//! `N`, divided by the packets, is the per-packet cost with all setup cancelled out.
//!
//! Usage: `pipeline_loop <ipv4|ipv6|gtpu|vxlan|ipip|geneve|gtpu-encap|geneve-encap|ecmp> <iterations>`
//! (`ecmp`: plain IPv4 to a route over two next hops)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use datapath::pipeline::batch::Batch;
use datapath::pipeline::{Next, Pipeline};
use gateway_benches::{bench_fib, burst, Kind, BURST};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = match args.get(1).map(String::as_str) {
        Some("ipv6") => Kind::Plain6,
        Some("gtpu") => Kind::Gtpu,
        Some("vxlan") => Kind::Vxlan,
        Some("ipip") => Kind::Ipip,
        Some("gtpu-encap") => Kind::GtpuEncap,
        Some("geneve") => Kind::Geneve,
        Some("geneve-encap") => Kind::GeneveEncap,
        _ => Kind::Plain4,
    };
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let fib = bench_fib();
    let net = if args.get(1).map(String::as_str) == Some("ecmp") {
        97
    } else {
        244
    };
    let dsts: Vec<u32> = (0..32)
        .map(|i| u32::from_be_bytes([10, net, (i * 7) as u8, 9]))
        .collect();
    let input = burst(kind, &dsts);
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
