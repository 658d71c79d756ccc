//! Geneve encapsulation with real peers on both sides (the machines have no kernel geneve
//! module, so tshark and a second gateway play them): gateway A encapsulates pod traffic into
//! Geneve with an inner Ethernet header (the peers' MAC configured, as Cilium expects) and
//! without (bare IP), over IPv4 and IPv6, for IPv4 and IPv6 inner packets; tshark dissects
//! every frame A emits and must find the VNIs, Protocol Types and ports, one UDP source port
//! per inner flow, and no expert warning with checksums validated. Then gateway B, configured
//! as the peer, decapsulates A's output and must recover A's input packets with their hop
//! limit two lower and their payload intact. scapy-crafted cases of hostile Geneve are in
//! `tunnel_crafted.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use etherparse::{NetSlice, PacketBuilder, SlicedPacket};
use gateway_tests::{read_pcap, run_offline as run, scratch, tshark, write_pcap};
use std::collections::{BTreeSet, HashMap};

const PODS_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const POD_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];

const A: &str = r#"
[gateway]
workers = [0]
[[port]]
name = "ext"
driver = "pcap"
tx = "{d}/a-ext-out.pcap"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1/24", "fd00:a::1/64"]
[[port]]
name = "pods"
driver = "pcap"
rx = "{d}/a-in.pcap"
tx = "{d}/a-pods-out.pcap"
mac = "02:00:00:00:01:01"
addresses = ["172.18.0.1/16", "fd00:18::1/64"]
[[neighbor]]
address = "192.0.2.10"
mac = "02:00:00:00:0b:01"
port = "ext"
[[neighbor]]
address = "fd00:a::10"
mac = "02:00:00:00:0b:01"
port = "ext"
[[tunnel]]
name = "cilium"
kind = "geneve"
local = "192.0.2.1"
vni = 2
peers = ["192.0.2.10"]
peer_mac = "02:00:00:00:0b:09"
[[tunnel]]
name = "bare"
kind = "geneve"
local = "192.0.2.1"
vni = 3
peers = ["192.0.2.10"]
[[tunnel]]
name = "six"
kind = "geneve"
local = "fd00:a::1"
udp_port = 6082
vni = 4
peers = ["fd00:a::10"]
[[route]]
prefix = "10.60.0.0/16"
tunnel = "cilium"
[[route]]
prefix = "fd00:60::/64"
tunnel = "cilium"
[[route]]
prefix = "10.61.0.0/16"
tunnel = "bare"
[[route]]
prefix = "10.62.0.0/16"
tunnel = "six"
"#;

const B: &str = r#"
[gateway]
workers = [0]
[[port]]
name = "ext"
driver = "pcap"
rx = "{d}/a-ext-out.pcap"
tx = "{d}/b-ext-out.pcap"
mac = "02:00:00:00:0b:01"
addresses = ["192.0.2.10/24", "fd00:a::10/64"]
[[port]]
name = "inside"
driver = "pcap"
tx = "{d}/b-inside-out.pcap"
mac = "02:00:00:00:0b:02"
addresses = ["172.30.0.1/16", "fd00:30::1/64"]
[[neighbor]]
address = "172.30.0.2"
mac = "02:00:00:00:0b:03"
port = "inside"
[[neighbor]]
address = "fd00:30::2"
mac = "02:00:00:00:0b:03"
port = "inside"
[[route]]
prefix = "10.0.0.0/8"
via = "172.30.0.2"
[[route]]
prefix = "fd00:60::/64"
via = "fd00:30::2"
[[tunnel]]
name = "cilium"
kind = "geneve"
local = "192.0.2.10"
vni = 2
peers = ["192.0.2.1"]
[[tunnel]]
name = "bare"
kind = "geneve"
local = "192.0.2.10"
vni = 3
peers = ["192.0.2.1"]
[[tunnel]]
name = "six"
kind = "geneve"
local = "fd00:a::10"
udp_port = 6082
vni = 4
peers = ["fd00:a::1"]
"#;

/// A UDP packet from a pod to `dst` (IPv4 or IPv6) from source port `sport`, with `ttl`.
fn pod_packet(dst: &str, sport: u16, ttl: u8) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(POD_MAC, PODS_MAC);
    let b = match dst.parse::<std::net::IpAddr>().unwrap() {
        std::net::IpAddr::V4(d) => b.ipv4([10, 244, 1, 5], d.octets(), ttl),
        std::net::IpAddr::V6(d) => b.ipv6(
            "fd00:244::5"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
            d.octets(),
            ttl,
        ),
    };
    let payload: Vec<u8> = (0..48u8).map(|i| i ^ sport as u8).collect();
    let mut out = Vec::new();
    b.udp(sport, 50001).write(&mut out, &payload).unwrap();
    out
}

/// (hop limit, source, destination, L4 payload) of a frame's IP packet.
fn inner_view(frame: &[u8]) -> (u8, String, String, Vec<u8>) {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    match p.net.unwrap() {
        NetSlice::Ipv4(h) => (
            h.header().ttl(),
            format!("{:?}", h.header().source()),
            format!("{:?}", h.header().destination()),
            h.payload().payload.to_vec(),
        ),
        NetSlice::Ipv6(h) => (
            h.header().hop_limit(),
            format!("{:?}", h.header().source()),
            format!("{:?}", h.header().destination()),
            h.payload().payload.to_vec(),
        ),
    }
}

#[test]
fn geneve_encapsulation_dissects_cleanly_and_round_trips_through_a_peer() {
    let dir = scratch("geneve");
    // Four flows to each route, each flow sent twice.
    let dsts = ["10.60.0.1", "fd00:60::1", "10.61.0.1", "10.62.0.1"];
    let mut input = Vec::new();
    for dst in dsts {
        for _round in 0..2 {
            for sport in 40000..40004u16 {
                input.push((dst, sport, pod_packet(dst, sport, 64)));
            }
        }
    }
    let frames: Vec<Vec<u8>> = input.iter().map(|(.., f)| f.clone()).collect();
    write_pcap(&dir.join("a-in.pcap"), &frames);
    let a = run(A, &dir, "a.toml");
    let pods = &a["ports"]["pods"];
    assert_eq!(pods["drops"], serde_json::json!({}), "{a}");
    assert_eq!(
        pods["tunnels"],
        serde_json::json!({"geneve": {"decap": 0, "encap": input.len()}}),
        "{a}"
    );
    assert_eq!(a["ports"]["ext"]["tx_packets"], input.len(), "{a}");

    let out = dir.join("a-ext-out.pcap");
    // With the peers' MAC configured, the inner frame is addressed to the peer's device (after
    // Ethernet, IPv4, UDP and Geneve: 14 + 20 + 8 + 8 bytes) from the port toward it.
    for ((dst, ..), frame) in input.iter().zip(read_pcap(&out)) {
        if dst.starts_with("10.60") || dst.starts_with("fd00:60") {
            assert_eq!(
                &frame[50..62],
                &[2, 0, 0, 0, 0x0b, 9, 2, 0, 0, 0, 0, 1],
                "{dst}"
            );
        }
    }
    if let Some(fields) = tshark(
        &out,
        &[
            "-d",
            "udp.port==6082,geneve",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-E",
            "occurrence=f",
            "-e",
            "geneve.vni",
            "-e",
            "geneve.proto_type",
            "-e",
            "geneve.version",
            "-e",
            "udp.dstport",
            "-e",
            "udp.srcport",
            "-e",
            "eth.dst",
        ],
    ) {
        let lines: Vec<&str> = fields.lines().collect();
        assert_eq!(lines.len(), input.len(), "{fields}");
        let mut sport_of: HashMap<(&str, u16), String> = HashMap::new();
        let mut sports: HashMap<&str, BTreeSet<String>> = HashMap::new();
        for ((dst, sport, _), line) in input.iter().zip(&lines) {
            let f: Vec<&str> = line.split('|').collect();
            let (vni, proto, port) = match *dst {
                "10.60.0.1" => ("0x000002", "0x6558", "6081"),
                "fd00:60::1" => ("0x000002", "0x6558", "6081"),
                "10.61.0.1" => ("0x000003", "0x0800", "6081"),
                _ => ("0x000004", "0x0800", "6082"),
            };
            assert_eq!(
                (f[0], f[1], f[2], f[3]),
                (vni, proto, "0", port),
                "{dst}: {line}"
            );
            if proto == "0x6558" {
                // The first Ethernet destination is the peer's.
                assert_eq!(f[5], "02:00:00:00:0b:01", "{line}");
            }
            // RFC 8926 3.3: the source port follows the inner flow, in the dynamic range.
            let p: u16 = f[4].parse().unwrap();
            assert!(p >= 49152, "{line}");
            let first = sport_of.entry((*dst, *sport)).or_insert(f[4].to_string());
            assert_eq!(first, f[4], "flow {dst}:{sport} changed source port");
            sports.entry(*dst).or_default().insert(f[4].to_string());
        }
        for (dst, s) in &sports {
            assert!(
                s.len() > 1,
                "the flows to {dst} share one source port: {s:?}"
            );
        }
        let warnings = tshark(
            &out,
            &[
                "-o",
                "ip.check_checksum:TRUE",
                "-o",
                "udp.check_checksum:TRUE",
                "-Y",
                "_ws.expert.severity >= warning",
            ],
        )
        .unwrap();
        assert!(
            warnings.trim().is_empty(),
            "tshark warns about emitted frames:\n{warnings}"
        );
    }

    // Gateway B, the peer, decapsulates what A sent.
    let b = run(B, &dir, "b.toml");
    let ext = &b["ports"]["ext"];
    assert_eq!(ext["drops"], serde_json::json!({}), "{b}");
    assert_eq!(
        ext["tunnels"],
        serde_json::json!({"geneve": {"decap": input.len(), "encap": 0}}),
        "{b}"
    );
    let back = read_pcap(&dir.join("b-inside-out.pcap"));
    assert_eq!(back.len(), input.len());
    for ((dst, ..), (sent, got)) in input.iter().zip(frames.iter().zip(&back)) {
        let (s, g) = (inner_view(sent), inner_view(got));
        assert_eq!(
            g.0 + 2,
            s.0,
            "{dst}: each gateway decrements the hop limit once"
        );
        assert_eq!((&g.1, &g.2, &g.3), (&s.1, &s.2, &s.3), "{dst}: intact");
    }
}
