//! `gateway demo` without network namespaces: mixed traffic generated in memory (plain, GTP-U,
//! VXLAN and IPIP from the external network; downlink from the pods that is GTP-U
//! encapsulated), run through the real pipeline with the configuration below, and the counters
//! shown.

use crate::{report, tables};
use anyhow::{anyhow, bail, Result};
use datapath::craft::{
    geneve_payload, gtpu_payload, ipv4_frame, ipv4_udp_frame, udp_frame, vxlan_payload, UdpSpec,
};
use datapath::port::mem::MemPort;
use datapath::port::Port;
use datapath::stats::{snapshot, Stats};
use datapath::worker::Worker;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// The demo's configuration: an external port and a pod-network port, no default route, and
/// one tunnel of each kind.
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

[[neighbor]]
address = "192.0.2.10"
mac = "02:00:00:00:00:0a"
port = "ext"

[[tunnel]]
name = "ran"                      # GTP-U from a mobile core's gNB
kind = "gtpu"
local = "192.0.2.1"
peer = "192.0.2.10"
[[tunnel.session]]
ue = "10.46.0.0/16"
teid_in = 0x1001
teid_out = 0x2001
qfi = 9

[[tunnel]]
name = "calico"                   # VXLAN from another cluster's Calico nodes
kind = "vxlan"
local = "192.0.2.1"
vni = 4096
peers = ["192.0.2.20"]

[[tunnel]]
name = "kr"                       # IPIP from kube-router
kind = "ipip"
local = "192.0.2.1"
peers = ["192.0.2.30"]

[[tunnel]]
name = "peer-cluster"             # Geneve (Ethernet inside) from another cluster's gateway
kind = "geneve"
local = "192.0.2.1"
vni = 2
peers = ["192.0.2.40"]

[[route]]
prefix = "10.46.0.0/16"           # downlink to the UEs: encapsulated toward the gNB
tunnel = "ran"
"#;
/// How a generated packet is carried.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wrap {
    /// Plain, from the external host.
    Plain,
    /// GTP-U G-PDU from the gNB (TEID 0x1001, QFI 9).
    Gtpu,
    /// VXLAN VNI 4096 from a Calico node.
    Vxlan,
    /// IPIP from a kube-router node.
    Ipip,
    /// Geneve VNI 2 (Ethernet inside) from a peer cluster's gateway.
    Geneve,
    /// Plain, from a pod (downlink toward a UE).
    FromPod,
}

struct Kind {
    what: &'static str,
    weight: u32,
    dst: &'static str,
    ttl: u8,
    corrupt: bool,
    wrap: Wrap,
}

const fn kind(what: &'static str, weight: u32, dst: &'static str, wrap: Wrap) -> Kind {
    Kind {
        what,
        weight,
        dst,
        ttl: 64,
        corrupt: false,
        wrap,
    }
}

const KINDS: &[Kind] = &[
    kind(
        "IPv4 to a pod (10.244.0.0/16)",
        24,
        "10.244.1.7",
        Wrap::Plain,
    ),
    kind(
        "IPv4 to a service, ECMP over two nodes",
        12,
        "10.96.0.10",
        Wrap::Plain,
    ),
    kind(
        "IPv6 to a service (fd00:0:0:1040::/108)",
        12,
        "fd00:0:0:1040::a",
        Wrap::Plain,
    ),
    kind(
        "GTP-U uplink from the gNB to a pod (decap)",
        16,
        "10.244.2.9",
        Wrap::Gtpu,
    ),
    kind(
        "VXLAN from a Calico node to a service (decap)",
        12,
        "10.96.0.10",
        Wrap::Vxlan,
    ),
    kind(
        "IPIP from kube-router to a pod (decap)",
        8,
        "10.244.3.3",
        Wrap::Ipip,
    ),
    kind(
        "Geneve from a peer cluster to a pod (decap)",
        8,
        "10.244.3.4",
        Wrap::Geneve,
    ),
    kind(
        "downlink from a pod to a UE (GTP-U encap)",
        16,
        "10.46.0.7",
        Wrap::FromPod,
    ),
    kind("to a blackholed range", 4, "203.0.113.9", Wrap::Plain),
    kind(
        "to an address with no route (no default route)",
        4,
        "198.51.100.1",
        Wrap::Plain,
    ),
    Kind {
        what: "TTL 1",
        weight: 4,
        dst: "10.244.1.7",
        ttl: 1,
        corrupt: false,
        wrap: Wrap::Plain,
    },
    Kind {
        what: "corrupted IPv4 header checksum",
        weight: 4,
        dst: "10.244.1.7",
        ttl: 64,
        corrupt: true,
        wrap: Wrap::Plain,
    },
    kind("to the gateway's own address", 4, "192.0.2.1", Wrap::Plain),
];

const GW: u32 = 0xc000_0201;
const EXT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];

/// One generated frame, and whether it enters from the pods' side.
fn frame(kind: &Kind, i: usize) -> (Vec<u8>, bool) {
    let dst: IpAddr = kind.dst.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let src: IpAddr = match (kind.wrap, dst.is_ipv4()) {
        (Wrap::FromPod, _) => IpAddr::from([10, 244, 1, 5]),
        (Wrap::Gtpu, _) => IpAddr::from([10, 46, 0, (i % 200) as u8 + 1]),
        (_, true) => IpAddr::from([192, 0, 2, 100 + (i % 50) as u8]),
        (_, false) => IpAddr::from([0xfd00, 0xa, 0, 0, 0, 0, 0, 0x10 + (i % 50) as u16]),
    };
    let (src_mac, dst_mac) = match kind.wrap {
        Wrap::FromPod => ([0x02, 0, 0, 0, 0x02, 0x01], [0x02, 0, 0, 0, 0x01, 0x01]),
        _ => ([0x02, 0, 0, 0, 0, 0x99], EXT_MAC),
    };
    let mut f = udp_frame(&UdpSpec {
        src_mac,
        dst_mac,
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
    let outer = match kind.wrap {
        Wrap::Plain => f,
        Wrap::FromPod => return (f, true),
        Wrap::Gtpu => ipv4_udp_frame(
            PEER_MAC,
            EXT_MAC,
            (0xc000_020a, 2152),
            (GW, 2152),
            &gtpu_payload(0x1001, Some(9), &f[14..]),
        ),
        Wrap::Vxlan => ipv4_udp_frame(
            PEER_MAC,
            EXT_MAC,
            (0xc000_0214, 49152),
            (GW, 4789),
            &vxlan_payload(4096, &f),
        ),
        Wrap::Ipip => ipv4_frame(PEER_MAC, EXT_MAC, 0xc000_021e, GW, 4, &f[14..]),
        Wrap::Geneve => ipv4_udp_frame(
            PEER_MAC,
            EXT_MAC,
            (0xc000_0228, 49152),
            (GW, 6081),
            &geneve_payload(2, datapath::wire::geneve::PROTOCOL_ETHERNET, &f),
        ),
    };
    (outer, false)
}

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
    let (mut from_ext, mut from_pods) = (Vec::new(), Vec::new());
    for i in 0..packets {
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
        match frame(&KINDS[k], i) {
            (f, true) => from_pods.push(f),
            (f, false) => from_ext.push(f),
        }
    }

    println!(
        "gateway demo (in memory): {packets} packets, plain and tunnelled, from the external \
         network and from the pods\n"
    );
    println!("traffic generated:");
    for (k, n) in KINDS.iter().zip(&counts) {
        println!("  {:>6}  {}", n, k.what);
    }
    let stats = Arc::new(Stats::default());
    let ports: Vec<Box<dyn Port>> = vec![
        Box::new(MemPort::counting(from_ext)),
        Box::new(MemPort::counting(from_pods)),
    ];
    let mut worker = Worker::new(ports, cfg.burst, stats.clone());
    worker.run_to_end(&fib)?;
    println!("\nwhat the gateway did (decap: tunnel packets stripped; ext tx: GTP-U downlink):");
    print!(
        "{}",
        report::table(&cfg, &snapshot([&*stats], cfg.ports.len()))
    );
    println!("\nconfiguration used:{DEMO_CONFIG}");
    Ok(())
}

/// Sends every frame of `pcap` out of `interface` (AF_PACKET); returns how many were sent.
pub fn replay(interface: &str, pcap: &Path) -> Result<usize> {
    use datapath::pipeline::batch::Batch;
    use datapath::port::af_packet::AfPacketPort;
    use datapath::port::pcap::{PcapReader, Record};
    let mut port = AfPacketPort::open(interface).map_err(|e| anyhow!("{interface}: {e}"))?;
    let mut reader =
        PcapReader::open(pcap, [0; 6]).map_err(|e| anyhow!("{}: {e}", pcap.display()))?;
    let mut batch = Batch::new();
    let mut sent = 0;
    loop {
        let mut n = 0;
        while n < batch.bufs.len() {
            match reader
                .next_into(&mut batch.bufs[n])
                .map_err(|e| anyhow!("{e}"))?
            {
                Record::Frame => n += 1,
                Record::Oversize => {}
                Record::End => break,
            }
        }
        if n == 0 {
            return Ok(sent);
        }
        batch.len = n;
        let idx: Vec<u8> = (0..n as u8).collect();
        sent += port.tx(&mut batch, &idx);
    }
}

/// Frames the external host sends through its own code (no kernel GTP, IPIP or Geneve module
/// here): GTP-U uplink from UE 10.46.0.7, IPIP from 10.99.0.1 and Geneve (VNI 2, Ethernet
/// inside, as Cilium sends) from 10.98.0.1, all to pod 10.244.2.6 (UDP to a closed port, so
/// the pod answers with ICMP port unreachable: the GTP-U and Geneve answers go back
/// encapsulated).
fn uplink_frames(count: usize) -> Vec<Vec<u8>> {
    let peer_mac = [0x02, 0, 0, 0, 0, 0x99];
    let mut out = Vec::new();
    for i in 0..count {
        for (src, wrap) in [
            ([10, 46, 0, 7], Wrap::Gtpu),
            ([10, 99, 0, 1], Wrap::Ipip),
            ([10, 98, 0, 1], Wrap::Geneve),
        ] {
            let inner = udp_frame(&UdpSpec {
                src_mac: [0x02, 0, 0, 0, 0x09, 0x0a],
                dst_mac: EXT_MAC,
                src: IpAddr::from(src),
                dst: IpAddr::from([10, 244, 2, 6]),
                src_port: 40000 + i as u16,
                dst_port: 33434,
                ttl: 64,
                payload_len: 32,
            });
            out.push(match wrap {
                Wrap::Gtpu => ipv4_udp_frame(
                    peer_mac,
                    EXT_MAC,
                    (0xc000_020a, 2152),
                    (GW, 2152),
                    &gtpu_payload(0x1001, Some(9), &inner[14..]),
                ),
                Wrap::Geneve => ipv4_udp_frame(
                    peer_mac,
                    EXT_MAC,
                    (0xc000_020a, 50000 + i as u16),
                    (GW, 6081),
                    &geneve_payload(2, datapath::wire::geneve::PROTOCOL_ETHERNET, &inner),
                ),
                _ => ipv4_frame(peer_mac, EXT_MAC, 0xc000_020a, GW, 4, &inner[14..]),
            });
        }
    }
    out
}

/// What the namespace demo adds to the lab's configuration: a Geneve tunnel from the external
/// host, and its side's addresses routed back into it (the lab itself has no Geneve: the
/// machines it runs on have no kernel Geneve device to be its peer).
const DEMO_GENEVE: &str = r#"
[[tunnel]]
name = "cilium"
kind = "geneve"
local = "192.0.2.1"
vni = 2
peers = ["192.0.2.10"]
peer_mac = "02:00:00:00:09:0a"    # Ethernet inside, as Cilium's device expects

[[route]]
prefix = "10.98.0.0/24"           # the external host's Geneve side: replies re-encapsulated
tunnel = "cilium"
"#;

/// Progress on stdout that never fails (a closed pipe must not stop the cleanup).
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// The namespace demo (needs root): builds the [`crate::tools::lab`] topology, runs the gateway in
/// its namespace for `seconds`, sends traffic from the external host, removes the topology,
/// then reports.
pub fn namespaces(seconds: f64) -> Result<()> {
    use std::process::Command;
    // Ctrl-C reaches the whole process group: the gateway stops cleanly, and the demo must
    // live on to remove the namespaces.
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, std::sync::Arc::clone(&interrupted))?;
    }
    crate::tools::lab::Lab::check_tools()?;
    let exe = std::env::current_exe()?;
    let tag = std::process::id().to_string();
    let dir = std::env::temp_dir().join(format!("gateway-demo-{tag}"));
    std::fs::create_dir_all(&dir)?;
    let result = (|| -> Result<String> {
        say("gateway demo: building namespaces (external host, gateway, pods) ...");
        let lab = crate::tools::lab::Lab::build(&tag)?;
        let cfg = dir.join("gateway.toml");
        let config = crate::tools::lab::config_for("af_xdp") + DEMO_GENEVE;
        std::fs::write(&cfg, &config)?;
        let frames = dir.join("uplink.pcap");
        let mut w = datapath::port::pcap::PcapWriter::create(&frames)?;
        for f in uplink_frames(10) {
            w.write(&f, 0)?;
        }
        w.flush()?;
        say(&format!(
            "running the gateway on AF_XDP for {seconds} s (Ctrl-C stops it early) and sending \
             traffic; its counters every second:"
        ));
        let mut gw = Command::new("ip")
            .args(["netns", "exec", &lab.gw])
            .arg(&exe)
            .args([
                "run",
                "--watch",
                "--duration",
                &seconds.to_string(),
                "--config",
            ])
            .arg(&cfg)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        // The gateway's output, shown as it comes (the per-second lines) and kept for the end.
        let echo = gw.stdout.take().map(|out| {
            std::thread::spawn(move || {
                use std::io::BufRead;
                let mut all = String::new();
                for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    say(&format!("  | {line}"));
                    all += &line;
                    all.push('\n');
                }
                all
            })
        });
        std::thread::sleep(std::time::Duration::from_millis(1200));
        let ping = |args: &[&str]| -> String {
            let out = lab.exec(
                &lab.ext,
                &[&["ping", "-c", "5", "-i", "0.2", "-W", "1"][..], args].concat(),
            );
            match out {
                Ok(o) => String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .find(|l| l.contains("received"))
                    .unwrap_or("")
                    .to_string(),
                Err(e) => format!("failed: {e}"),
            }
        };
        let mut report = String::from("\nfrom the external host:\n");
        report += &format!(
            "  plain ping to pod 10.244.2.6:                   {}\n",
            ping(&["10.244.2.6"])
        );
        report += &format!(
            "  ping via kernel VXLAN (VNI 4096) to 10.244.1.5: {}\n",
            ping(&["-I", "10.99.0.1", "10.244.1.5"])
        );
        report += &format!(
            "  plain IPv6 ping to pod fd00:244::6 (NDP):       {}\n",
            ping(&["fd00:244::6"])
        );
        let sent = lab.exec(
            &lab.ext,
            &[
                &exe.display().to_string(),
                "replay",
                "--interface",
                "ext-a",
                "--pcap",
                &frames.display().to_string(),
            ],
        );
        report += &match sent {
            Ok(o) => format!(
                "  GTP-U (TEID 0x1001, QFI 9), IPIP and Geneve (VNI 2) uplink: {}\n",
                String::from_utf8_lossy(&o.stdout).trim()
            ),
            Err(e) => format!("  GTP-U, IPIP and Geneve uplink: failed: {e}\n"),
        };
        let out = gw.wait_with_output()?;
        let stdout = echo.and_then(|h| h.join().ok()).unwrap_or_default();
        if !out.status.success() {
            bail!(
                "the gateway failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        report += &String::from_utf8_lossy(&out.stderr);
        report += "\nwhat the gateway did (decap: tunnel packets stripped; ext tx: replies, \
                   re-encapsulated in GTP-U toward the UEs and in VXLAN and Geneve toward the \
                   external host):\n";
        // The totals table follows the per-second lines.
        report += stdout
            .find("\nport ")
            .map_or(stdout.as_str(), |i| &stdout[i + 1..]);
        report += &format!("\nconfiguration used:{config}");
        drop(lab);
        report += "namespaces removed.\n";
        Ok(report)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    say(&result?);
    Ok(())
}
