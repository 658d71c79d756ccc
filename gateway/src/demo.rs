//! `gateway demo` without network namespaces: mixed traffic generated in memory, run through
//! the real pipeline with the configuration below, and the counters shown.

use crate::{report, tables};
use anyhow::{anyhow, Result};
use datapath::craft::{udp_frame, UdpSpec};
use datapath::port::mem::MemPort;
use datapath::port::Port;
use datapath::stats::{snapshot, Stats};
use datapath::worker::Worker;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// The demo's configuration: an external port and a pod-network port, no default route.
pub const DEMO_CONFIG: &str = r#"
[gateway]
name = "demo"
workers = [0]

[[port]]
name = "ext"
driver = "memory"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1/24", "fd00:a::1/64"]

[[port]]
name = "pods"
driver = "memory"
mac = "02:00:00:00:01:01"
addresses = ["172.18.0.1/16", "fd00:0:0:10c0::1/64"]

[[neighbor]]
address = "172.18.0.2"
mac = "02:00:00:00:02:01"
port = "pods"

[[neighbor]]
address = "172.18.0.3"
mac = "02:00:00:00:02:02"
port = "pods"

[[neighbor]]
address = "fd00:0:0:10c0::2"
mac = "02:00:00:00:02:03"
port = "pods"

[[route]]
prefix = "10.244.0.0/16"          # pod CIDR behind node 172.18.0.2
via = "172.18.0.2"

[[route]]
prefix = "10.96.0.0/12"           # service range, spread over two nodes
via = ["172.18.0.2", "172.18.0.3"]

[[route]]
prefix = "fd00:0:0:1040::/108"    # IPv6 service range
via = "fd00:0:0:10c0::2"

[[route]]
prefix = "203.0.113.0/24"
action = "drop"
"#;

struct Kind {
    what: &'static str,
    weight: u32,
    dst: &'static str,
    ttl: u8,
    corrupt: bool,
}

const KINDS: &[Kind] = &[
    Kind {
        what: "IPv4 to a pod (10.244.0.0/16)",
        weight: 40,
        dst: "10.244.1.7",
        ttl: 64,
        corrupt: false,
    },
    Kind {
        what: "IPv4 to a service, ECMP over two nodes",
        weight: 20,
        dst: "10.96.0.10",
        ttl: 64,
        corrupt: false,
    },
    Kind {
        what: "IPv6 to a service (fd00:0:0:1040::/108)",
        weight: 20,
        dst: "fd00:0:0:1040::a",
        ttl: 64,
        corrupt: false,
    },
    Kind {
        what: "to a blackholed range",
        weight: 4,
        dst: "203.0.113.9",
        ttl: 64,
        corrupt: false,
    },
    Kind {
        what: "to an address with no route (no default route)",
        weight: 4,
        dst: "198.51.100.1",
        ttl: 64,
        corrupt: false,
    },
    Kind {
        what: "TTL 1",
        weight: 4,
        dst: "10.244.1.7",
        ttl: 1,
        corrupt: false,
    },
    Kind {
        what: "corrupted IPv4 header checksum",
        weight: 4,
        dst: "10.244.1.7",
        ttl: 64,
        corrupt: true,
    },
    Kind {
        what: "to the gateway's own address",
        weight: 4,
        dst: "192.0.2.1",
        ttl: 64,
        corrupt: false,
    },
];

/// Runs the in-memory demo with `packets` packets.
pub fn in_memory(packets: usize) -> Result<()> {
    let cfg = config::parse_and_validate(
        DEMO_CONFIG,
        "demo.toml",
        Path::new("."),
        config::Machine { cores: 1 },
    )
    .map_err(|e| anyhow!("{e}"))?;
    let fib = tables::build_fib(&cfg)?;
    let total_weight: u32 = KINDS.iter().map(|k| k.weight).sum();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut counts = vec![0usize; KINDS.len()];
    let frames: Vec<Vec<u8>> = (0..packets)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut pick = (seed % u64::from(total_weight)) as u32;
            let k = KINDS
                .iter()
                .position(|k| {
                    let hit = pick < k.weight;
                    pick = pick.saturating_sub(k.weight);
                    hit
                })
                .unwrap_or(0);
            counts[k] += 1;
            let kind = &KINDS[k];
            let dst: IpAddr = kind.dst.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
            let src: IpAddr = if dst.is_ipv4() {
                IpAddr::from([192, 0, 2, 10 + (i % 50) as u8])
            } else {
                IpAddr::from([0xfd00, 0xa, 0, 0, 0, 0, 0, 0x10 + (i % 50) as u16])
            };
            let mut f = udp_frame(&UdpSpec {
                src_mac: [0x02, 0, 0, 0, 0, 0x99],
                dst_mac: [0x02, 0, 0, 0, 0, 0x01],
                src,
                dst,
                src_port: 10000 + (i % 1000) as u16,
                dst_port: 53,
                ttl: kind.ttl,
                payload_len: 18,
            });
            if kind.corrupt {
                f[24] ^= 0xff;
            }
            f
        })
        .collect();

    println!(
        "gateway demo (in memory): {packets} packets from an external host into the pipeline\n"
    );
    println!("traffic generated:");
    for (k, n) in KINDS.iter().zip(&counts) {
        println!("  {:>6}  {}", n, k.what);
    }
    let stats = Arc::new(Stats::default());
    let ports: Vec<Box<dyn Port>> = vec![
        Box::new(MemPort::counting(frames)),
        Box::new(MemPort::counting([])),
    ];
    let mut worker = Worker::new(ports, cfg.burst, stats.clone());
    worker.run_to_end(&fib)?;
    println!("\nwhat the gateway did:");
    print!(
        "{}",
        report::table(&cfg, &snapshot([&*stats], cfg.ports.len()))
    );
    println!("\nconfiguration used:{DEMO_CONFIG}");
    Ok(())
}
