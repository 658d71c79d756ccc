//! pcap in → gateway → pcap out for plain IPv4 and IPv6 routing. Input and expected output are
//! built independently with etherparse; the output must match byte for byte, and the counters
//! JSON must equal the expected counts. Each drop case lands on its named reason.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use etherparse::PacketBuilder;
use gateway_tests::{read_pcap, scratch, write_pcap};
use serde_json::json;
use std::path::Path;

const EXT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const PODS_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
const NODE2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x01];
const NODE6_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x03];

fn config(dir: &Path) -> String {
    format!(
        r#"
[gateway]
name = "e2e"
workers = [0]

[[port]]
name = "ext"
driver = "pcap"
rx = "{d}/in.pcap"
tx = "{d}/ext-out.pcap"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1/24", "fd00:a::1/64"]
vlans = [100]

[[port]]
name = "pods"
driver = "pcap"
tx = "{d}/pods-out.pcap"
mac = "02:00:00:00:01:01"
addresses = ["172.18.0.1/16", "fd00:0:0:10c0::1/64"]

[[neighbor]]
address = "172.18.0.2"
mac = "02:00:00:00:02:01"
port = "pods"

[[neighbor]]
address = "fd00:0:0:10c0::2"
mac = "02:00:00:00:02:03"
port = "pods"

[[route]]
prefix = "10.244.0.0/16"
via = "172.18.0.2"

[[route]]
prefix = "fd00:0:0:1040::/108"
via = "fd00:0:0:10c0::2"

[[route]]
prefix = "203.0.113.0/24"
action = "drop"
"#,
        d = dir.display()
    )
}

fn v4(src_mac: [u8; 6], dst_mac: [u8; 6], dst: [u8; 4], ttl: u8, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4([192, 0, 2, 10], dst, ttl)
        .udp(40000, 5000);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("build");
    out
}

fn v6(src_mac: [u8; 6], dst_mac: [u8; 6], dst: [u8; 16], hop: u8, payload: &[u8]) -> Vec<u8> {
    let src = "fd00:a::10".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv6(src, dst, hop)
        .udp(40000, 5000);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("build");
    out
}

fn ip6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

#[test]
fn routes_ipv4_and_ipv6_and_counts_every_drop_by_reason() {
    let dir = scratch("forwarding");
    let pod = [10, 244, 3, 4];
    let svc6 = ip6("fd00:0:0:1040::a");
    let mut bad_checksum = v4(HOST_MAC, EXT_MAC, pod, 64, b"bad");
    bad_checksum[24] ^= 0x55;
    // A VLAN-tagged frame: forwarded untagged.
    let tagged = {
        let b = PacketBuilder::ethernet2(HOST_MAC, EXT_MAC)
            .single_vlan(etherparse::VlanId::try_new(100).unwrap())
            .ipv4([192, 0, 2, 10], pod, 20)
            .udp(1, 2);
        let mut out = Vec::new();
        b.write(&mut out, b"tagged").unwrap();
        out
    };
    // Link padding after a short datagram: trimmed on output.
    let mut padded = v4(HOST_MAC, EXT_MAC, pod, 9, b"");
    padded.extend_from_slice(&[0; 18]);
    let input = vec![
        v4(HOST_MAC, EXT_MAC, pod, 64, b"hello pod"),
        v6(HOST_MAC, EXT_MAC, svc6, 64, b"hello svc6"),
        v4(HOST_MAC, EXT_MAC, pod, 1, b"ttl one"),
        v6(HOST_MAC, EXT_MAC, svc6, 1, b"hop one"),
        bad_checksum,
        v4(HOST_MAC, EXT_MAC, [198, 51, 100, 1], 64, b"nowhere"),
        v4(HOST_MAC, EXT_MAC, [203, 0, 113, 7], 64, b"blackhole"),
        v4(HOST_MAC, EXT_MAC, [192, 0, 2, 1], 64, b"for me"),
        v4(HOST_MAC, [0x02, 0, 0, 0, 0, 0x77], pod, 64, b"other mac"),
        tagged,
        padded,
        vec![0x02, 0, 0, 0, 0, 1, 0x02],
    ];
    write_pcap(&dir.join("in.pcap"), &input);
    let cfg_path = dir.join("gateway.toml");
    std::fs::write(&cfg_path, config(&dir)).unwrap();
    let cfg = config::load_file(&cfg_path, config::Machine { cores: 1 }).unwrap();
    let outcome = gateway::tables::run_offline(&cfg).unwrap();
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);

    let expected = vec![
        v4(PODS_MAC, NODE2_MAC, pod, 63, b"hello pod"),
        v6(PODS_MAC, NODE6_MAC, svc6, 63, b"hello svc6"),
        {
            let b = PacketBuilder::ethernet2(PODS_MAC, NODE2_MAC)
                .ipv4([192, 0, 2, 10], pod, 19)
                .udp(1, 2);
            let mut out = Vec::new();
            b.write(&mut out, b"tagged").unwrap();
            out
        },
        v4(PODS_MAC, NODE2_MAC, pod, 8, b""),
    ];
    let got = read_pcap(&dir.join("pods-out.pcap"));
    assert_eq!(got.len(), expected.len(), "forwarded frame count");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "frame {i} differs");
    }
    assert!(
        read_pcap(&dir.join("ext-out.pcap")).is_empty(),
        "nothing reflected back out"
    );

    let rx_bytes: usize = input.iter().map(Vec::len).sum();
    let tx_bytes: usize = expected.iter().map(Vec::len).sum();
    let json = gateway::report::json(&cfg, &outcome.stats);
    assert_eq!(
        json,
        json!({
            "ports": {
                "ext": {
                    "rx_packets": 12, "rx_bytes": rx_bytes, "tx_packets": 0, "tx_bytes": 0,
                    "local": 1, "decap": 0, "replies_limited": 0, "tunnels": {},
                    "drops": {
                        "eth_too_short": 1,
                        "l2_other_host": 1,
                        "ipv4_bad_checksum": 1,
                        "ttl_expired": 2,
                        "no_route": 1,
                        "blackhole": 1,
                    }
                },
                "pods": {
                    "rx_packets": 0, "rx_bytes": 0, "tx_packets": 4, "tx_bytes": tx_bytes,
                    "local": 0, "decap": 0, "replies_limited": 0, "tunnels": {}, "drops": {}
                }
            },
            "drops": {
                "eth_too_short": 1, "l2_other_host": 1, "ipv4_bad_checksum": 1,
                "ttl_expired": 2, "no_route": 1, "blackhole": 1
            }
        })
    );
}

#[test]
fn packet_back_toward_its_input_port_is_not_reflected() {
    let dir = scratch("hairpin");
    // From a pod, to another pod on the same port: the gateway must not send it back out.
    let input = vec![v4(NODE2_MAC, PODS_MAC, [10, 244, 9, 9], 64, b"loop")];
    let cfg_src = config(&dir).replace(
        "tx = \"{d}/pods-out.pcap\""
            .replace("{d}", &dir.display().to_string())
            .as_str(),
        &format!(
            "tx = \"{0}/pods-out.pcap\"\nrx = \"{0}/in.pcap\"",
            dir.display()
        ),
    );
    let cfg_src = cfg_src.replacen(&format!("rx = \"{}/in.pcap\"\n", dir.display()), "", 1);
    write_pcap(&dir.join("in.pcap"), &input);
    let cfg_path = dir.join("gateway.toml");
    std::fs::write(&cfg_path, cfg_src).unwrap();
    let cfg = config::load_file(&cfg_path, config::Machine { cores: 1 }).unwrap();
    let outcome = gateway::tables::run_offline(&cfg).unwrap();
    let json = gateway::report::json(&cfg, &outcome.stats);
    assert_eq!(json["ports"]["pods"]["drops"], json!({ "hairpin": 1 }));
    assert!(read_pcap(&dir.join("pods-out.pcap")).is_empty());
}

/// Sets or clears DF on the IPv4 packet of a frame built by [`v4`] and fixes its checksum.
fn with_df(mut f: Vec<u8>, df: bool) -> Vec<u8> {
    let mut ip = datapath::wire::Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.set_flags_and_offset(df, false, 0);
    ip.fill_checksum();
    f
}

#[test]
fn packet_too_big_or_out_of_ttl_gets_icmp_back_to_its_source() {
    let dir = scratch("too-big");
    let cfg_src = config(&dir)
        .replacen("addresses = [\"172.18.0.1/16\", \"fd00:0:0:10c0::1/64\"]", "addresses = [\"172.18.0.1/16\", \"fd00:0:0:10c0::1/64\"]\nmtu = 1400", 1)
        + "\n[[neighbor]]\naddress = \"192.0.2.10\"\nmac = \"02:00:00:00:00:99\"\nport = \"ext\"\n\n[[neighbor]]\naddress = \"fd00:a::10\"\nmac = \"02:00:00:00:00:99\"\nport = \"ext\"\n";
    let big = vec![0x5a; 1400];
    let input = vec![
        with_df(v4(HOST_MAC, EXT_MAC, [10, 244, 3, 4], 64, &big), true),
        v6(HOST_MAC, EXT_MAC, ip6("fd00:0:0:1040::a"), 64, &big),
        with_df(v4(HOST_MAC, EXT_MAC, [10, 244, 3, 4], 64, &big), false), // no error without DF
        v4(HOST_MAC, EXT_MAC, [10, 244, 3, 4], 1, b"ttl"), // time exceeded, DF or not
        v6(HOST_MAC, EXT_MAC, ip6("fd00:0:0:1040::a"), 1, b"hop"),
    ];
    write_pcap(&dir.join("in.pcap"), &input);
    let cfg_path = dir.join("gateway.toml");
    std::fs::write(&cfg_path, cfg_src).unwrap();
    let cfg = config::load_file(&cfg_path, config::Machine { cores: 1 })
        .unwrap_or_else(|e| panic!("{e}"));
    let outcome = gateway::tables::run_offline(&cfg).unwrap();
    let json = gateway::report::json(&cfg, &outcome.stats);
    assert_eq!(
        json["ports"]["ext"]["drops"],
        json!({ "mtu_exceeded": 3, "ttl_expired": 2 }),
        "{json}"
    );
    assert_eq!(json["ports"]["ext"]["tx_packets"], 4, "{json}");
    let errors = read_pcap(&dir.join("ext-out.pcap"));
    assert_eq!(errors.len(), 4);
    // Each error quotes the start of the packet it answers and fits the minimum MTU.
    assert!(errors.iter().all(|e| e.len() <= 14 + 1280));
    let Ok(out) = std::process::Command::new("tshark")
        .arg("-r")
        .arg(dir.join("ext-out.pcap"))
        // tshark always checks ICMP and ICMPv6 checksums; the IPv4 header check is opt-in.
        .args(["-o", "ip.check_checksum:TRUE"])
        .args([
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "icmp.type",
            "-e",
            "icmp.code",
        ])
        .args([
            "-e",
            "icmp.mtu",
            "-e",
            "ipv6.src",
            "-e",
            "ipv6.dst",
            "-e",
            "icmpv6.type",
            "-e",
            "icmpv6.mtu",
            "-e",
            "icmpv6.code",
        ])
        .args(["-e", "_ws.expert.severity", "-E", "occurrence=f"])
        .output()
    else {
        gateway::skipped("tshark not installed, ICMP errors not dissected");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("192.0.2.1|192.0.2.10|3|4|1400|"),
        "fragmentation needed: {}",
        lines[0]
    );
    assert!(
        lines[1].contains("|fd00:a::1|fd00:a::10|2|1400|"),
        "packet too big: {}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("192.0.2.1|192.0.2.10|11|0||"),
        "time exceeded: {}",
        lines[2]
    );
    assert!(
        lines[3].contains("|fd00:a::1|fd00:a::10|3||0|"),
        "hop limit exceeded: {}",
        lines[3]
    );
    // No expert warning or error; a note is expected on time exceeded, whose quoted packet
    // has TTL 1.
    const PI_WARN: u32 = 0x0060_0000;
    assert!(
        lines.iter().all(|l| l
            .rsplit('|')
            .next()
            .is_none_or(|s| s.is_empty() || s.parse::<u32>().is_ok_and(|v| v < PI_WARN))),
        "tshark expert warning on an ICMP error:\n{text}"
    );
}
