//! Criterion benches of the datapath: wire parsing, the plain routing pipeline on a batch of 32,
//! and a full worker poll (rx refill, pipeline, TX grouping, counters) over an in-memory port.
//! Report ns/packet = time per iteration / 32. Run with `cargo bench -p gateway-benches`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use datapath::craft::{udp_frame, UdpSpec};
use datapath::fib::{Fib, FibBuilder, PortInfo, RouteAction};
use datapath::pipeline::batch::Batch;
use datapath::pipeline::Pipeline;
use datapath::port::Port;
use datapath::stats::{PortStats, Stats};
use datapath::wire::Ipv4Packet;
use datapath::worker::Worker;
use std::net::IpAddr;
use std::sync::Arc;

const BURST: usize = 32;
const EXT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

fn fib() -> Fib {
    let mut b = FibBuilder::new();
    b.add_port(PortInfo {
        mac: EXT_MAC,
        mtu: 1500,
        promiscuous: false,
    })
    .unwrap();
    b.add_port(PortInfo {
        mac: [0x02, 0, 0, 0, 1, 1],
        mtu: 1500,
        promiscuous: false,
    })
    .unwrap();
    b.add_address(0, "192.0.2.1".parse().unwrap(), 24);
    b.add_address(1, "172.18.0.1".parse().unwrap(), 16);
    b.add_address(1, "fd00:0:0:10c0::1".parse().unwrap(), 64);
    for (i, n) in ["172.18.0.2", "172.18.0.3", "fd00:0:0:10c0::2"]
        .iter()
        .enumerate()
    {
        b.add_neighbor(n.parse().unwrap(), [0x02, 0, 0, 0, 2, i as u8]);
    }
    let via = |a: &str| RouteAction::Via(vec![(a.parse().unwrap(), 1)]);
    // A few hundred /24 pod routes plus the service range, like a mid-size cluster.
    for i in 0..=255u8 {
        let p: IpAddr = IpAddr::from([10, 244, i, 0]);
        b.add_route(p, 24, &via("172.18.0.2"), false).unwrap();
    }
    b.add_route("10.96.0.0".parse().unwrap(), 12, &via("172.18.0.3"), false)
        .unwrap();
    b.add_route(
        "fd00:0:0:1040::".parse().unwrap(),
        108,
        &via("fd00:0:0:10c0::2"),
        false,
    )
    .unwrap();
    b.build().unwrap()
}

fn frames(ipv6: bool) -> Vec<Vec<u8>> {
    (0..BURST)
        .map(|i| {
            let (src, dst): (IpAddr, IpAddr) = if ipv6 {
                (
                    "fd00:a::10".parse().unwrap(),
                    IpAddr::from([0xfd00, 0, 0, 0x1040, 0, 0, 0, i as u16 + 1]),
                )
            } else {
                (
                    IpAddr::from([192, 0, 2, 10]),
                    IpAddr::from([10, 244, (i * 7) as u8, 9]),
                )
            };
            udp_frame(&UdpSpec {
                src_mac: [0x02, 0, 0, 0, 0, 0x99],
                dst_mac: EXT_MAC,
                src,
                dst,
                src_port: 1000 + i as u16,
                dst_port: 53,
                ttl: 64,
                payload_len: 18,
            })
        })
        .collect()
}

/// A port that "receives" the same burst again on every poll (as a NIC would DMA it) and
/// counts what it transmits.
struct LoopPort {
    frames: Vec<Vec<u8>>,
    sent: u64,
}

impl Port for LoopPort {
    fn rx(&mut self, batch: &mut Batch, max: usize, _stats: &PortStats) -> usize {
        let n = self.frames.len().min(max);
        for (b, f) in batch.bufs.iter_mut().zip(&self.frames[..n]) {
            b.load(f, 0);
        }
        batch.len = n;
        n
    }
    fn tx(&mut self, _batch: &Batch, idx: &[u8]) -> usize {
        self.sent += idx.len() as u64;
        idx.len()
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

fn bench_wire(c: &mut Criterion) {
    let f = frames(false);
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ipv4_parse_and_verify_checksum", |b| {
        b.iter(|| {
            let p = Ipv4Packet::new_checked(black_box(&f[0][14..])).unwrap();
            black_box(p.verify_checksum() && p.dst() != 0)
        })
    });
    g.finish();
}

fn bench_pipeline(c: &mut Criterion) {
    let fib = fib();
    let mut g = c.benchmark_group("pipeline_batch32");
    g.throughput(Throughput::Elements(BURST as u64));
    for (name, ipv6) in [("ipv4", false), ("ipv6", true)] {
        let input = frames(ipv6);
        let mut batch = Batch::new();
        let mut pipe = Pipeline::new();
        g.bench_function(format!("refill_only_{name}"), |b| {
            b.iter(|| {
                for (buf, f) in batch.bufs.iter_mut().zip(&input) {
                    buf.load(f, 0);
                }
                black_box(batch.bufs[0].len())
            })
        });
        g.bench_function(format!("refill_and_process_{name}"), |b| {
            b.iter(|| {
                for (buf, f) in batch.bufs.iter_mut().zip(&input) {
                    buf.load(f, 0);
                }
                batch.len = BURST;
                let next = pipe.process(&mut batch, &fib);
                black_box(next[BURST - 1])
            })
        });
        let stats = Arc::new(Stats::default());
        let ports: Vec<Box<dyn Port>> = vec![
            Box::new(LoopPort {
                frames: input.clone(),
                sent: 0,
            }),
            Box::new(LoopPort {
                frames: Vec::new(),
                sent: 0,
            }),
        ];
        let mut worker = Worker::new(ports, BURST, stats.clone());
        g.bench_function(format!("worker_poll_{name}"), |b| {
            b.iter(|| black_box(worker.poll(&fib)))
        });
        // The bench must have forwarded, not dropped: a silent drop would be a fast lie.
        assert!(
            stats.ports[1].tx_packets.get() > 0,
            "{name}: nothing forwarded"
        );
        assert_eq!(
            stats.ports[0].drops.iter().map(|d| d.get()).sum::<u64>(),
            0,
            "{name}: drops"
        );
    }
    g.finish();
}

criterion_group!(benches, bench_wire, bench_pipeline);
criterion_main!(benches);
