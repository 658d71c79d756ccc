//! Real tunnel captures through the gateway: each capture is replayed into a gateway whose
//! tunnels match the capture's endpoints (written from what tshark shows of each file), the
//! counts per drop reason are asserted per file, and every decapsulated packet the gateway
//! emits is checked against tshark's own dissection of the innermost IP header of the input
//! (addresses, IPv4 identification, and TTL or hop limit one lower).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use etherparse::{NetSlice, SlicedPacket};
use gateway_tests::{read_pcap, scratch, shared_pcap_dir};
use serde_json::Value;
use std::collections::HashMap;
use std::process::Command;

/// Source, destination, TTL or hop limit, IPv4 identification.
type InnerKey = (String, String, u8, Option<u16>);

struct Case {
    file: &'static str,
    /// Addresses of the external port (the tunnels' local endpoints), with prefix length.
    addrs: &'static [&'static str],
    tunnels: &'static str,
    decap: u64,
    tx: u64,
    local: u64,
    drops: &'static [(&'static str, u64)],
}

const CASES: &[Case] = &[
    Case {
        file: "arkime_gtp-u.pcap",
        addrs: &["192.168.40.178/32", "192.168.40.179/32"],
        tunnels: r#"
[[tunnel]]
name = "to179"
kind = "gtpu"
local = "192.168.40.179"
peer = "192.168.40.178"
[[tunnel.session]]
ue = "192.168.40.178/32"
teid_in = 1
teid_out = 1
[[tunnel]]
name = "to178"
kind = "gtpu"
local = "192.168.40.178"
peer = "192.168.40.179"
[[tunnel.session]]
ue = "202.11.40.158/32"
teid_in = 1
teid_out = 1
"#,
        // Uplink ICMP to 202.11.40.158 is routed; the replies' inner destination is
        // 192.168.40.178, one of the gateway's own addresses here: no stack runs inside
        // tunnels, so they stop as tunnel_inner_local.
        decap: 102,
        tx: 51,
        local: 0,
        drops: &[("tunnel_inner_local", 51)],
    },
    Case {
        file: "zeek_gtp_ext_header.pcap",
        addrs: &["10.155.148.157/24"],
        tunnels: r#"
[[tunnel]]
name = "gn"
kind = "gtpu"
local = "10.155.148.157"
peer = "10.155.148.149"
[[tunnel.session]]
ue = "10.200.0.0/24"
teid_in = 0x00100657
teid_out = 1
"#,
        // The G-PDU (E+S flags, PDCP PDU Number extension) arrives as two outer fragments.
        decap: 0,
        tx: 0,
        local: 0,
        drops: &[("outer_fragment", 2)],
    },
    Case {
        file: "zeek_gtp9_unknown_or_too_short_payload.pcap",
        addrs: &["213.72.147.186/32", "173.86.159.28/32"],
        tunnels: r#"
[[tunnel]]
name = "up"
kind = "gtpu"
local = "213.72.147.186"
peer = "173.86.159.28"
[[tunnel.session]]
ue = "10.131.119.0/24"
teid_in = 0x9813014c
teid_out = 1
[[tunnel]]
name = "down"
kind = "gtpu"
local = "173.86.159.28"
peer = "213.72.147.186"
[[tunnel.session]]
ue = "217.20.156.0/24"
teid_in = 0x000209e5
teid_out = 1
"#,
        // Frame 12's payload is not IP; frame 11's inner IPv4 is longer than its data.
        decap: 3,
        tx: 3,
        local: 0,
        drops: &[("gtpu_inner_not_ip", 1), ("ipv4_bad_length", 1), ("outer_fragment", 14)],
    },
    Case {
        file: "zeek_gtp2_different_udp_port.pcap",
        addrs: &["167.55.105.244/32", "207.233.125.40/32"],
        tunnels: r#"
[[tunnel]]
name = "up"
kind = "gtpu"
local = "167.55.105.244"
peer = "207.233.125.40"
[[tunnel.session]]
ue = "173.199.115.0/24"
teid_in = 0x0000bf2e
teid_out = 1
[[tunnel]]
name = "down"
kind = "gtpu"
local = "207.233.125.40"
peer = "167.55.105.244"
[[tunnel.session]]
ue = "10.131.17.0/24"
teid_in = 0x9e40ba4f
teid_out = 1
"#,
        // The manifest's 84 outer IPv4 fragments are counted, the other 36 decapsulated.
        decap: 36,
        tx: 36,
        local: 0,
        drops: &[("outer_fragment", 84)],
    },
    Case {
        file: "zeek_gtp10_not_0xff.pcap",
        addrs: &["247.56.43.248/32", "237.56.101.238/32", "247.56.43.214/32"],
        tunnels: "",
        // Anonymised addresses in 237/8 and 240/4 are martian sources: dropped before decap.
        decap: 0,
        tx: 0,
        local: 0,
        drops: &[("martian_source", 3)],
    },
    Case {
        file: "ndpi_ipv6_in_gtp.pcap",
        addrs: &["10.238.254.75/32", "10.238.254.77/32", "10.238.0.1/17"],
        tunnels: r#"
[[tunnel]]
name = "a"
kind = "gtpu"
local = "10.238.254.75"
peer = "10.238.80.26"
[[tunnel.session]]
ue = "2607:fc20::/32"
teid_in = 0x12808fb8
teid_out = 1
[[tunnel]]
name = "b"
kind = "gtpu"
local = "10.238.254.77"
peer = "10.238.36.92"
[[tunnel.session]]
ue = "2a01:4c8::/32"
teid_in = 0x074c15b0
teid_out = 1
"#,
        decap: 2,
        tx: 2,
        local: 0,
        drops: &[],
    },
    Case {
        file: "arkime_ipv6-gtp6.pcap",
        addrs: &["1111:2222:3333:4444:5555:6666::/64"],
        tunnels: r#"
[[tunnel]]
name = "v6"
kind = "gtpu"
local = "1111:2222:3333:4444:5555:6666::"
peer = "1111:2222:3333:4444:5555:6666:0:1"
[[tunnel.session]]
ue = "10.200.0.0/24"
teid_in = 0x022be642
teid_out = 1
"#,
        // tshark also finds its UDP checksum bad.
        decap: 0,
        tx: 0,
        local: 0,
        drops: &[("udp_bad_checksum", 1)],
    },
    Case {
        file: "zeek_vxlan.pcap",
        addrs: &["192.168.56.11/32", "192.168.56.12/32"],
        tunnels: r#"
[[tunnel]]
name = "to12"
kind = "vxlan"
local = "192.168.56.12"
vni = 123
peers = ["192.168.56.11"]
[[tunnel]]
name = "to11"
kind = "vxlan"
local = "192.168.56.11"
vni = 123
peers = ["192.168.56.12"]
"#,
        // Two inner frames are ARP.
        decap: 8,
        tx: 8,
        local: 0,
        drops: &[("vxlan_inner_not_ip", 2)],
    },
    Case {
        file: "sv_vxlan-non-zero-reserved-fields.pcap",
        addrs: &["192.168.1.52/32", "192.168.1.134/32"],
        tunnels: r#"
[[tunnel]]
name = "to52"
kind = "vxlan"
local = "192.168.1.52"
vni = 11
peers = ["192.168.1.134"]
[[tunnel]]
name = "to134"
kind = "vxlan"
local = "192.168.1.134"
vni = 11
peers = ["192.168.1.52"]
"#,
        // Every reserved bit set: decapsulated all the same (RFC 7348). Half the inner
        // packets are for 192.168.1.134, one of the gateway's addresses here (tunnel_inner_local).
        decap: 10,
        tx: 5,
        local: 0,
        drops: &[("tunnel_inner_local", 5)],
    },
    Case {
        file: "ndpi_vxlan.pcap",
        addrs: &["192.168.22.4/32", "192.168.22.5/32"],
        tunnels: r#"
[[tunnel]]
name = "to5"
kind = "vxlan"
local = "192.168.22.5"
vni = 1111
peers = ["192.168.22.4"]
[[tunnel]]
name = "to4"
kind = "vxlan"
local = "192.168.22.4"
vni = 1111
peers = ["192.168.22.5"]
"#,
        // Behind an 802.1Q tag. tshark finds the same 73 outer UDP checksums bad.
        decap: 54,
        tx: 54,
        local: 0,
        drops: &[("udp_bad_checksum", 73)],
    },
    Case {
        file: "sv_vxlan-arp.pcap",
        addrs: &["192.168.203.1/32", "192.168.202.1/32"],
        tunnels: "[[tunnel]]\nname = \"a\"\nkind = \"vxlan\"\nlocal = \"192.168.203.1\"\nvni = 100\npeers = [\"192.168.202.1\"]\n[[tunnel]]\nname = \"b\"\nkind = \"vxlan\"\nlocal = \"192.168.202.1\"\nvni = 100\npeers = [\"192.168.203.1\"]\n",
        // Inner ARP only.
        decap: 0,
        tx: 0,
        local: 0,
        drops: &[("vxlan_inner_not_ip", 2)],
    },
    Case {
        file: "tcpdump_gso-ipv6-vxlan-ipv4.pcap",
        addrs: &["2604:1380:4091:ce00::d/64"],
        tunnels: r#"
[[tunnel]]
name = "gso"
kind = "vxlan"
local = "2604:1380:4091:ce00::d"
vni = 5001
peers = ["2604:1380:4091:ce00::b"]
"#,
        // A GSO super-frame captured before checksum offload: its checksum is not filled in.
        decap: 0,
        tx: 0,
        local: 0,
        drops: &[("udp_bad_checksum", 1)],
    },
    Case {
        file: "zeek_4in4.pcap",
        addrs: &["5.6.7.8/32", "1.2.3.1/29"],
        tunnels: "[[tunnel]]\nname = \"k\"\nkind = \"ipip\"\nlocal = \"5.6.7.8\"\npeers = [\"1.2.3.4\"]\n",
        decap: 1,
        tx: 1,
        local: 0,
        drops: &[],
    },
    Case {
        file: "zeek_6in4.pcap",
        addrs: &["5.6.7.8/32", "1.2.3.1/29"],
        tunnels: "[[tunnel]]\nname = \"k\"\nkind = \"ipip\"\nlocal = \"5.6.7.8\"\npeers = [\"1.2.3.4\"]\n",
        decap: 1,
        tx: 1,
        local: 0,
        drops: &[],
    },
    Case {
        file: "zeek_4in6.pcap",
        addrs: &["2001:4860:0:2001::68/128", "2002:4637:d5d3::1/64"],
        tunnels: "[[tunnel]]\nname = \"k\"\nkind = \"ipip\"\nlocal = \"2001:4860:0:2001::68\"\npeers = [\"2002:4637:d5d3::4637:d5d3\"]\n",
        decap: 1,
        tx: 1,
        local: 0,
        drops: &[],
    },
    Case {
        file: "zeek_6in6.pcap",
        addrs: &["2001:4f8:4:7:2e0:81ff:fe52:9a6b/64"],
        tunnels: "[[tunnel]]\nname = \"k\"\nkind = \"ipip\"\nlocal = \"2001:4f8:4:7:2e0:81ff:fe52:9a6b\"\npeers = [\"2001:4f8:4:7:2e0:81ff:fe52:ffff\"]\n",
        decap: 1,
        tx: 1,
        local: 0,
        drops: &[],
    },
    Case {
        file: "sv_ip_in_ip.pcap",
        addrs: &["10.1.0.237/32", "10.0.0.94/32"],
        tunnels: "[[tunnel]]\nname = \"a\"\nkind = \"ipip\"\nlocal = \"10.1.0.237\"\npeers = [\"10.0.0.94\"]\n[[tunnel]]\nname = \"b\"\nkind = \"ipip\"\nlocal = \"10.0.0.94\"\npeers = [\"10.1.0.237\"]\n",
        decap: 6,
        tx: 6,
        local: 0,
        drops: &[],
    },
    Case {
        file: "sv_wrong-version-ipv4-ipv6.pcap",
        addrs: &["2001:db8:85a3::8a2e:370:7335/64"],
        tunnels: "[[tunnel]]\nname = \"k\"\nkind = \"ipip\"\nlocal = \"2001:db8:85a3::8a2e:370:7335\"\npeers = [\"2001:db8:85a3::8a2e:370:7334\"]\n",
        // The inner header's version nibble is wrong: caught by the inner validation.
        decap: 0,
        tx: 0,
        local: 0,
        drops: &[("ipv4_bad_version", 1)],
    },
    Case {
        file: "sv_wrong-version-ipv6-ipv6.pcap",
        addrs: &["2001:db8:85a3::8a2e:370:7335/64"],
        tunnels: "[[tunnel]]\nname = \"k\"\nkind = \"ipip\"\nlocal = \"2001:db8:85a3::8a2e:370:7335\"\npeers = [\"2001:db8:85a3::8a2e:370:7334\"]\n",
        // Same, for 6in6.
        decap: 0,
        tx: 0,
        local: 0,
        drops: &[("ipv6_bad_version", 1)],
    },
];

fn ip6(s: &str) -> String {
    s.parse::<std::net::Ipv6Addr>()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| s.to_string())
}

/// Innermost IPv4 (src, dst, ttl, id) and IPv6 (src, dst, hop limit) of every frame, as
/// tshark dissects them.
fn tshark_inner(file: &std::path::Path) -> Option<Vec<InnerKey>> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-T", "fields", "-E", "occurrence=l", "-E", "separator=|"])
        .args([
            "-e", "ip.src", "-e", "ip.dst", "-e", "ip.ttl", "-e", "ip.id",
        ])
        .args(["-e", "ipv6.src", "-e", "ipv6.dst", "-e", "ipv6.hlim"])
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        _ => {
            gateway::skipped("tshark not installed, inner packets not cross-checked");
            return None;
        }
    };
    let mut v = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('|').collect();
        if f.len() < 7 {
            continue;
        }
        if !f[0].is_empty() {
            let id = u16::from_str_radix(f[3].trim_start_matches("0x"), 16).ok();
            v.push((
                f[0].to_string(),
                f[1].to_string(),
                f[2].parse().unwrap_or(0),
                id,
            ));
        }
        if !f[4].is_empty() {
            v.push((ip6(f[4]), ip6(f[5]), f[6].parse().unwrap_or(0), None));
        }
    }
    Some(v)
}

/// Unfragmented frames whose outermost UDP checksum tshark finds bad (fragments are counted
/// as `outer_fragment` before any checksum is looked at).
fn tshark_bad_udp_checksums(file: &std::path::Path) -> u64 {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-o", "ip.defragment:FALSE", "-o", "udp.check_checksum:TRUE"])
        .args(["-Y", "!(ip.flags.mf == 1) && !(ip.frag_offset > 0)"])
        .args([
            "-T",
            "fields",
            "-E",
            "occurrence=f",
            "-e",
            "udp.checksum.status",
        ])
        .output()
        .unwrap();
    // Status 0 is "Bad" in Wireshark's checksum status enumeration.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim() == "0")
        .count() as u64
}

fn run(case: &Case) -> (Value, Vec<Vec<u8>>) {
    let dir = scratch(&format!("tunnel-{}", case.file));
    // Each tunnel peer lies in a connected subnet of `ext` (or is one of its addresses): a
    // tunnel packet is decapsulated only on the port its peer is reached through.
    let addrs: Vec<String> = case.addrs.iter().map(|a| format!("\"{a}\"")).collect();
    let cfg = format!(
        r#"
[gateway]
workers = [0]

[[port]]
name = "ext"
driver = "pcap"
rx = "{rx}"
tx = "{d}/ext-out.pcap"
mac = "02:00:00:00:00:01"
addresses = [{addrs}]
promiscuous = true
vlans = [{vlans}]

[[port]]
name = "pods"
driver = "pcap"
tx = "{d}/pods-out.pcap"
mac = "02:00:00:00:01:01"
addresses = ["172.31.0.1/16", "fd31::1/64"]
mtu = 9000

[[neighbor]]
address = "172.31.0.2"
mac = "02:00:00:00:02:01"
port = "pods"

[[neighbor]]
address = "fd31::2"
mac = "02:00:00:00:02:02"
port = "pods"

[[route]]
prefix = "0.0.0.0/0"
via = "172.31.0.2"

[[route]]
prefix = "::/0"
via = "fd31::2"
{tunnels}"#,
        rx = shared_pcap_dir().join(case.file).display(),
        d = dir.display(),
        addrs = addrs.join(", "),
        tunnels = case.tunnels,
        // Foreign captures carry whatever VLANs their network had: accept every ID.
        vlans = (1..=4094)
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, cfg).unwrap();
    let cfg =
        config::load_file(&path, config::Machine { cores: 1 }).unwrap_or_else(|e| panic!("{e}"));
    let outcome = gateway::tables::run_offline(&cfg).unwrap();
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    (
        gateway::report::json(&cfg, &outcome.stats),
        read_pcap(&dir.join("pods-out.pcap")),
    )
}

#[test]
fn real_tunnel_captures_decapsulate_as_tshark_dissects_them() {
    let mut report = Vec::new();
    for case in CASES {
        let (json, out) = run(case);
        let ext = &json["ports"]["ext"];
        let got_drops: Vec<(String, u64)> = ext["drops"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect();
        let want_drops: Vec<(String, u64)> = case
            .drops
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let got = (
            ext["decap"].as_u64().unwrap(),
            json["ports"]["pods"]["tx_packets"].as_u64().unwrap(),
            ext["local"].as_u64().unwrap(),
        );
        if got != (case.decap, case.tx, case.local) || got_drops != want_drops {
            report.push(format!(
                "{}: decap/tx/local {got:?} drops {got_drops:?}",
                case.file
            ));
            continue;
        }
        let Some(inner) = tshark_inner(&shared_pcap_dir().join(case.file)) else {
            continue;
        };
        let ours = case
            .drops
            .iter()
            .find(|d| d.0 == "udp_bad_checksum")
            .map_or(0, |d| d.1);
        assert_eq!(
            tshark_bad_udp_checksums(&shared_pcap_dir().join(case.file)),
            ours,
            "{}: bad UDP checksums vs tshark",
            case.file
        );
        let mut pool: HashMap<InnerKey, usize> = HashMap::new();
        for k in inner {
            *pool.entry(k).or_default() += 1;
        }
        for (i, frame) in out.iter().enumerate() {
            let p = SlicedPacket::from_ethernet(frame).unwrap();
            let key = match p.net.unwrap() {
                NetSlice::Ipv4(h) => {
                    let h = h.header();
                    (
                        h.source_addr().to_string(),
                        h.destination_addr().to_string(),
                        h.ttl() + 1,
                        Some(h.identification()),
                    )
                }
                NetSlice::Ipv6(h) => {
                    let h = h.header();
                    (
                        h.source_addr().to_string(),
                        h.destination_addr().to_string(),
                        h.hop_limit() + 1,
                        None,
                    )
                }
            };
            let n = pool.get_mut(&key).unwrap_or_else(|| {
                panic!(
                    "{}: emitted frame {i} {key:?} matches no inner packet tshark saw",
                    case.file
                )
            });
            assert!(
                *n > 0,
                "{}: frame {i} {key:?} emitted more often than received",
                case.file
            );
            *n -= 1;
        }
    }
    assert!(
        report.is_empty(),
        "unexpected results:\n{}",
        report.join("\n")
    );
}
