//! Runs a worker's whole poll (in-memory ports, the pipeline, counting, TX grouping) over
//! `iterations` bursts of 32 plain IPv4 packets, for instruction counting under callgrind
//! (`benches/callgrind.sh worker`): the difference between two iteration counts, divided by the
//! packets, is the per-packet cost of a poll. It measures what the pipeline loop cannot: the
//! worker's own per-batch work, such as the unarmed trace check.
//!
//! Usage: `worker_loop <iterations>`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use datapath::port::mem::MemPort;
use datapath::port::Port;
use datapath::stats::Stats;
use datapath::worker::Worker;
use gateway_benches::{bench_fib, burst, Kind, BURST};
use std::sync::Arc;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let fib = bench_fib();
    let dsts: Vec<u32> = (0..32)
        .map(|i| u32::from_be_bytes([10, 244, (i * 7) as u8, 9]))
        .collect();
    let input = burst(Kind::Plain4, &dsts);
    let frames = (0..n).flat_map(|_| input.iter().cloned());
    let ports: Vec<Box<dyn Port>> = vec![
        Box::new(MemPort::counting(frames)),
        Box::new(MemPort::counting(Vec::new())),
    ];
    let mut worker = Worker::new(ports, BURST, Arc::new(Stats::default()));
    let mut received = 0;
    for _ in 0..n {
        received += worker.poll(&fib);
    }
    let tx = worker.stats().ports[0].tx_packets.get() + worker.stats().ports[1].tx_packets.get();
    assert_eq!(received, n * BURST, "every packet must be received");
    assert_eq!(tx as usize, n * BURST, "every packet must be forwarded");
    println!("{tx}");
}
