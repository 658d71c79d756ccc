//! Criterion benches of the datapath: wire parsing, the plain routing pipeline on a batch of 32,
//! and a full worker poll (rx refill, pipeline, TX grouping, counters) over an in-memory port.
//! Report ns/packet = time per iteration / 32. Run with `cargo bench -p gateway-benches`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use datapath::pipeline::batch::Batch;
use datapath::pipeline::Pipeline;
use datapath::port::Port;
use datapath::stats::{PortStats, Stats};
use datapath::wire::Ipv4Packet;
use datapath::worker::Worker;
use gateway_benches::{bench_fib as fib, bench_frames as frames, BURST};
use std::sync::Arc;

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
    fn tx(&mut self, _batch: &mut Batch, idx: &[u8]) -> usize {
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
    // Baseline in the same run: the peer crate etherparse parsing the same header and
    // computing its checksum.
    g.bench_function("etherparse_ipv4_parse_and_checksum", |b| {
        b.iter(|| {
            let h = etherparse::Ipv4HeaderSlice::from_slice(black_box(&f[0][14..])).unwrap();
            let hdr = h.to_header();
            black_box(
                hdr.calc_header_checksum() == h.header_checksum() && h.destination() != [0; 4],
            )
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
        // The bench must forward, not drop: a silent drop would be a fast lie.
        worker.poll(&fib);
        assert!(
            stats.ports[1].tx_packets.get() > 0,
            "{name}: nothing forwarded"
        );
        assert_eq!(
            stats.ports[0].drops.iter().map(|d| d.get()).sum::<u64>(),
            0,
            "{name}: drops"
        );
        g.bench_function(format!("worker_poll_{name}"), |b| {
            b.iter(|| black_box(worker.poll(&fib)))
        });
    }
    g.finish();
}

/// Decap + route + rewrite per tunnel kind on the full DFZ table (886k prefixes), next to
/// plain IPv4 on the same table; inner destinations are addresses inside the table.
fn bench_tunnels(c: &mut Criterion) {
    use gateway_benches::rib::{load_dfz, traffic_v4};
    use gateway_benches::{burst, fib_with, Kind};
    let routes = load_dfz().expect("DFZ table");
    let fib = fib_with(&routes);
    let dsts: Vec<u32> = traffic_v4(&routes, 5).in_table[..4096].to_vec();
    let mut g = c.benchmark_group("tunnel_batch32_full_table");
    g.throughput(Throughput::Elements(BURST as u64));
    for kind in [
        Kind::Plain4,
        Kind::Gtpu,
        Kind::Vxlan,
        Kind::Ipip,
        Kind::Geneve,
        Kind::GtpuEncap,
        Kind::GeneveEncap,
    ] {
        // Rotate through 128 bursts so destinations vary like traffic, not one cached batch.
        let bursts: Vec<Vec<Vec<u8>>> = (0..128)
            .map(|k| burst(kind, &dsts[k * 32..k * 32 + 32]))
            .collect();
        let mut batch = Batch::new();
        let mut pipe = Pipeline::new();
        let mut k = 0;
        let mut check = |pipe: &mut Pipeline, batch: &mut Batch| {
            let b = &bursts[k % bursts.len()];
            k += 1;
            for (buf, f) in batch.bufs.iter_mut().zip(b) {
                buf.load(f, 0);
            }
            batch.len = BURST;
            pipe.process(batch, &fib)
                .iter()
                .filter(|v| matches!(v, datapath::pipeline::Next::Tx(_)))
                .count()
        };
        // Every packet must be decapsulated and forwarded, or the figure means nothing.
        assert_eq!(
            check(&mut pipe, &mut batch),
            BURST,
            "{kind:?}: not all forwarded"
        );
        g.bench_function(format!("{kind:?}").to_lowercase(), |b| {
            b.iter(|| black_box(check(&mut pipe, &mut batch)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_wire, bench_pipeline, bench_tunnels);
criterion_main!(benches);
