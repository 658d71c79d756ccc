//! Criterion bench of the traffic generator's frame construction (ns per frame), so the
//! generator is never what a benchmark measures: `LiveSender::render_into` (what the AF_XDP
//! and AF_PACKET senders and the pcap writer do per frame: copy the template, set the flow
//! fields and the stamp, complete the checksums), against etherparse's `PacketBuilder`
//! building the same UDP/IPv4 frame from scratch. Run with
//! `cargo bench -p gateway-benches --bench pktgen`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

#[derive(Parser)]
struct T {
    #[command(flatten)]
    spec: gateway::tools::pktgen::Spec,
}

fn bench_construct(c: &mut Criterion) {
    let mut g = c.benchmark_group("pktgen");
    g.throughput(Throughput::Elements(1));
    let cases: [(&str, &[&str]); 4] = [
        ("plain4_64", &["--flows", "16", "--vary", "sport,src"]),
        ("vxlan_96", &["--kind", "vxlan", "--flows", "16"]),
        (
            "gtpu_90",
            &["--kind", "gtpu", "--flows", "16", "--vary", "teid,sport"],
        ),
        ("plain4_1518", &["--flows", "16", "--size", "1518"]),
    ];
    for (name, args) in cases {
        let spec = T::parse_from([&["t"], args].concat()).spec;
        let snd = gateway::tools::pktgen::sender(&spec, spec.size).unwrap();
        let mut buf = vec![0u8; snd.frame.len()];
        let mut seq = 0u32;
        g.bench_function(format!("render_{name}"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                snd.render_into(black_box(&mut buf), seq, u64::from(seq) << 8);
            })
        });
    }
    // The peer: etherparse builds Ethernet/IPv4/UDP with both checksums from the same
    // addresses and an 18-byte payload (a 60-byte frame, as plain4_64).
    let payload = [0u8; 18];
    let mut out = Vec::with_capacity(64);
    let mut port = 0u16;
    g.bench_function("etherparse_packetbuilder_plain4_64", |b| {
        b.iter(|| {
            port = port.wrapping_add(1);
            out.clear();
            etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0x99], [2, 0, 0, 0, 0, 1])
                .ipv4([192, 0, 2, 10], [192, 0, 2, 1], 64)
                .udp(10000 + (port & 15), 9)
                .write(&mut out, black_box(&payload))
                .unwrap();
            black_box(&out);
        })
    });
    g.finish();
}

criterion_group!(benches, bench_construct);
criterion_main!(benches);
