//! Encapsulation with real peers on both sides: gateway A encapsulates pod traffic into GTP-U
//! (with and without a PDU Session Container, over IPv4 and IPv6), IPIP and VXLAN; tshark dissects
//! every frame A emits and must find the right TEIDs, QFIs and protocols and no expert warning
//! (checksums validated); then gateway B, configured as the peer, decapsulates A's output and
//! must recover A's input packets with TTL two lower.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use etherparse::{NetSlice, PacketBuilder, SlicedPacket};
use gateway_tests::{read_pcap, run_offline as run, scratch, tshark, write_pcap};

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
addresses = ["172.18.0.1/16"]
[[neighbor]]
address = "192.0.2.10"
mac = "02:00:00:00:0b:01"
port = "ext"
[[neighbor]]
address = "fd00:a::10"
mac = "02:00:00:00:0b:01"
port = "ext"
[[neighbor]]
address = "172.18.0.2"
mac = "02:00:00:00:02:01"
port = "pods"
[[route]]
prefix = "10.244.0.0/16"
via = "172.18.0.2"
[[tunnel]]
name = "ran"
kind = "gtpu"
local = "192.0.2.1"
peer = "192.0.2.10"
[[tunnel.session]]
ue = "10.46.0.0/16"
teid_in = 0x1001
teid_out = 0x2001
qfi = 9
[[tunnel.session]]
ue = "10.47.0.0/16"
teid_in = 0x1002
teid_out = 0x2002
[[tunnel]]
name = "ran6"
kind = "gtpu"
local = "fd00:a::1"
peer = "fd00:a::10"
[[tunnel.session]]
ue = "10.48.0.0/16"
teid_in = 0x1003
teid_out = 0x2003
[[tunnel]]
name = "kr"
kind = "ipip"
local = "192.0.2.1"
peers = ["192.0.2.10"]
[[route]]
prefix = "10.44.0.0/14"
tunnel = "ran"
[[route]]
prefix = "10.48.0.0/16"
tunnel = "ran6"
[[route]]
prefix = "10.50.0.0/16"
tunnel = "kr"
[[tunnel]]
name = "calico"
kind = "vxlan"
local = "192.0.2.1"
vni = 4096
peers = ["192.0.2.10"]
peer_mac = "02:00:00:00:0b:09"
[[route]]
prefix = "10.51.0.0/16"
tunnel = "calico"
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
addresses = ["172.30.0.1/16"]
[[neighbor]]
address = "172.30.0.2"
mac = "02:00:00:00:0b:03"
port = "inside"
[[route]]
prefix = "10.0.0.0/8"
via = "172.30.0.2"
[[tunnel]]
name = "core"
kind = "gtpu"
local = "192.0.2.10"
peer = "192.0.2.1"
[[tunnel.session]]
ue = "10.244.46.0/24"
teid_in = 0x2001
teid_out = 1
[[tunnel.session]]
ue = "10.244.47.0/24"
teid_in = 0x2002
teid_out = 2
[[tunnel]]
name = "core6"
kind = "gtpu"
local = "fd00:a::10"
peer = "fd00:a::1"
[[tunnel.session]]
ue = "10.244.48.0/24"
teid_in = 0x2003
teid_out = 3
[[tunnel]]
name = "kr"
kind = "ipip"
local = "192.0.2.10"
peers = ["192.0.2.1"]
[[tunnel]]
name = "calico"
kind = "vxlan"
local = "192.0.2.10"
vni = 4096
peers = ["192.0.2.1"]
"#;

fn pod_packet(dst: [u8; 4], ttl: u8, payload_len: usize, id: u16) -> Vec<u8> {
    // The pod's address follows the UE range it talks to, so that gateway B, which takes
    // A's downlink as its uplink, finds each inner source in the range of the session it
    // arrives on.
    let b = PacketBuilder::ethernet2(POD_MAC, PODS_MAC)
        .ipv4([10, 244, dst[1], 5], dst, ttl)
        .udp(50000, 50001);
    let payload: Vec<u8> = (0..payload_len).map(|i| (i as u8) ^ (id as u8)).collect();
    let mut out = Vec::new();
    b.write(&mut out, &payload).unwrap();
    // Give each packet its own IPv4 identification, for matching after the round trip.
    out[18..20].copy_from_slice(&id.to_be_bytes());
    let c = datapath::wire::checksum::checksum(&{
        let mut h = out[14..34].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    });
    out[24..26].copy_from_slice(&c.to_be_bytes());
    out
}

#[test]
fn gtpu_and_ipip_encapsulation_dissects_cleanly_and_round_trips_through_a_peer() {
    let dir = scratch("encap");
    let input = vec![
        pod_packet([10, 46, 0, 7], 64, 40, 1),   // GTP-U, QFI 9
        pod_packet([10, 47, 0, 7], 64, 40, 2),   // GTP-U, no PDU Session Container
        pod_packet([10, 48, 0, 9], 64, 40, 3),   // GTP-U over IPv6
        pod_packet([10, 50, 0, 1], 64, 40, 4),   // IPIP
        pod_packet([10, 51, 0, 1], 64, 40, 8),   // VXLAN
        pod_packet([10, 45, 0, 1], 64, 40, 5),   // in the tunnel's route, no session
        pod_packet([10, 46, 0, 8], 1, 40, 6),    // TTL 1
        pod_packet([10, 46, 0, 9], 64, 1460, 7), // fits the pods MTU, not once encapsulated
    ];
    write_pcap(&dir.join("a-in.pcap"), &input);
    let a = run(A, &dir, "a.toml");
    let pods = &a["ports"]["pods"];
    assert_eq!(a["ports"]["ext"]["tx_packets"], 5, "{a}");
    // Counted by kind, on the input port.
    assert_eq!(
        pods["tunnels"],
        serde_json::json!({
            "gtpu": {"decap": 0, "encap": 3},
            "vxlan": {"decap": 0, "encap": 1},
            "ipip": {"decap": 0, "encap": 1},
        }),
        "{a}"
    );
    assert_eq!(
        pods["drops"],
        serde_json::json!({"gtpu_no_session": 1, "ttl_expired": 1, "mtu_exceeded": 1}),
        "{a}"
    );

    // The packet too big once encapsulated got "fragmentation needed" back toward the pod,
    // with the MTU that leaves room for the GTP-U headers: 1500 - (20 + 8 + 8 + 8) = 1456;
    // the one with TTL 1 got "time exceeded", quoting its header (identification 6).
    let back_to_pod = read_pcap(&dir.join("a-pods-out.pcap"));
    assert_eq!(back_to_pod.len(), 2, "{a}");
    let mut kinds = Vec::new();
    for frame in &back_to_pod {
        let icmp = SlicedPacket::from_ethernet(frame).unwrap();
        let Some(NetSlice::Ipv4(ip)) = icmp.net else {
            panic!("not IPv4")
        };
        assert_eq!(ip.header().destination(), [10, 244, 46, 5]);
        assert_eq!(ip.header().source(), [172, 18, 0, 1]);
        let p = ip.payload().payload;
        assert_eq!(datapath::wire::checksum::checksum(p), 0, "ICMP checksum");
        let quoted_id = u16::from_be_bytes([p[8 + 4], p[8 + 5]]);
        kinds.push((p[0], p[1], u16::from_be_bytes([p[6], p[7]]), quoted_id));
    }
    kinds.sort();
    assert_eq!(kinds, [(3, 4, 1456, 7), (11, 0, 0, 6)]);

    let out = dir.join("a-ext-out.pcap");
    if let Some(fields) = tshark(
        &out,
        &[
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-E",
            "occurrence=f",
            "-e",
            "ip.proto",
            "-e",
            "ipv6.nxt",
            "-e",
            "gtp.teid",
            "-e",
            "gtp.ext_hdr.pdu_ses_con.qos_flow_id",
            "-e",
            "ip.dst",
        ],
    ) {
        let lines: Vec<&str> = fields.lines().collect();
        assert_eq!(lines.len(), 5, "{fields}");
        assert!(
            lines[0].starts_with("17|") && lines[0].contains("|0x00002001|9|"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with("17|") && lines[1].contains("|0x00002002||"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].contains("17|0x00002003||"),
            "GTP-U over IPv6: {}",
            lines[2]
        );
        assert!(
            lines[3].starts_with("4|") && lines[3].ends_with("|192.0.2.10"),
            "{}",
            lines[3]
        );
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
    assert_eq!(b["ports"]["ext"]["decap"], 5, "{b}");
    assert_eq!(
        b["ports"]["ext"]["tunnels"],
        serde_json::json!({
            "gtpu": {"decap": 3, "encap": 0},
            "vxlan": {"decap": 1, "encap": 0},
            "ipip": {"decap": 1, "encap": 0},
        }),
        "{b}"
    );
    assert_eq!(b["ports"]["ext"]["drops"], serde_json::json!({}), "{b}");
    let back = read_pcap(&dir.join("b-inside-out.pcap"));
    assert_eq!(back.len(), 5);
    for (sent, got) in input[..5].iter().zip(&back) {
        let (s, g) = (
            SlicedPacket::from_ethernet(sent).unwrap(),
            SlicedPacket::from_ethernet(got).unwrap(),
        );
        let (Some(NetSlice::Ipv4(s4)), Some(NetSlice::Ipv4(g4))) = (s.net, g.net) else {
            panic!("not IPv4")
        };
        let (sh, gh) = (s4.header(), g4.header());
        assert_eq!(
            gh.ttl() + 2,
            sh.ttl(),
            "each gateway decrements the TTL once"
        );
        assert_eq!(
            (gh.source(), gh.destination(), gh.identification()),
            (sh.source(), sh.destination(), sh.identification())
        );
        assert_eq!(
            g4.payload().payload,
            s4.payload().payload,
            "the payload crosses both gateways intact"
        );
    }
}

const SPREAD: &str = r#"
[gateway]
workers = [0]
[[port]]
name = "ext"
driver = "pcap"
tx = "{d}/ext-out.pcap"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1/24"]
[[port]]
name = "pods"
driver = "pcap"
rx = "{d}/in.pcap"
tx = "{d}/pods-out.pcap"
mac = "02:00:00:00:01:01"
addresses = ["172.18.0.1/16"]
[[neighbor]]
address = "192.0.2.30"
mac = "02:00:00:00:0c:1e"
port = "ext"
[[neighbor]]
address = "192.0.2.31"
mac = "02:00:00:00:0c:1f"
port = "ext"
[[tunnel]]
name = "kr"
kind = "ipip"
local = "192.0.2.1"
peers = ["192.0.2.30", "192.0.2.31"]
[[tunnel]]
name = "calico"
kind = "vxlan"
local = "192.0.2.1"
vni = 4096
peers = ["192.0.2.30", "192.0.2.31"]
peer_mac = ["02:00:00:00:0b:1e", "02:00:00:00:0b:1f"]
[[route]]
prefix = "10.50.0.0/16"
tunnel = "kr"
[[route]]
prefix = "10.51.0.0/16"
tunnel = "calico"
via = ["192.0.2.31", "192.0.2.30"]
[[route]]
prefix = "10.52.0.0/16"
tunnel = "kr"
via = "192.0.2.31"
"#;

/// A UDP packet from a pod to `dst` from source port `sport`.
fn flow_packet(dst: [u8; 4], sport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(POD_MAC, PODS_MAC)
        .ipv4([10, 244, 1, 5], dst, 64)
        .udp(sport, 50001)
        .write(&mut out, b"flow")
        .unwrap();
    out
}

#[test]
fn tunnel_routes_spread_flows_over_the_peers_and_via_picks_them() {
    let dir = scratch("encap-spread");
    // 32 flows to each route, every flow sent twice.
    let mut input = Vec::new();
    for dst in [[10, 50, 0, 1], [10, 51, 0, 1], [10, 52, 0, 1]] {
        for _round in 0..2 {
            for sport in 40000..40032u16 {
                input.push((dst, sport, flow_packet(dst, sport)));
            }
        }
    }
    let frames: Vec<Vec<u8>> = input.iter().map(|(.., f)| f.clone()).collect();
    write_pcap(&dir.join("in.pcap"), &frames);
    let s = run(SPREAD, &dir, "spread.toml");
    assert_eq!(s["ports"]["pods"]["drops"], serde_json::json!({}), "{s}");
    let out = read_pcap(&dir.join("ext-out.pcap"));
    assert_eq!(out.len(), input.len(), "{s}");

    // Which peer each (route, flow) went to; the outer MAC must be that peer's.
    let mut peer_of = std::collections::HashMap::new();
    let mut per_route: std::collections::HashMap<[u8; 4], std::collections::BTreeSet<u8>> =
        Default::default();
    for ((dst, sport, _), frame) in input.iter().zip(&out) {
        let p = SlicedPacket::from_ethernet(frame).unwrap();
        let Some(NetSlice::Ipv4(outer)) = p.net else {
            panic!("not IPv4")
        };
        let peer = outer.header().destination();
        assert_eq!(&peer[..3], &[192, 0, 2], "{peer:?}");
        assert_eq!(
            &frame[..6],
            &[2, 0, 0, 0, 0x0c, peer[3]],
            "outer MAC of {peer:?}"
        );
        let proto = outer.header().protocol().0;
        assert_eq!(proto, if dst[1] == 51 { 17 } else { 4 }, "{dst:?}");
        if proto == 17 {
            // VXLAN: the inner frame goes to that peer's VXLAN device MAC.
            assert_eq!(&frame[50..56], &[2, 0, 0, 0, 0x0b, peer[3]], "inner MAC");
        }
        let first = *peer_of.entry((*dst, *sport)).or_insert(peer[3]);
        assert_eq!(first, peer[3], "flow {dst:?}:{sport} changed peer");
        per_route.entry(*dst).or_default().insert(peer[3]);
    }
    assert_eq!(
        per_route[&[10, 50, 0, 1]],
        [30, 31].into(),
        "no via: flows over all peers"
    );
    assert_eq!(per_route[&[10, 51, 0, 1]], [30, 31].into(), "via both");
    assert_eq!(per_route[&[10, 52, 0, 1]], [31].into(), "via one peer");
    if let Some(warnings) = tshark(
        &dir.join("ext-out.pcap"),
        &[
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-Y",
            "_ws.expert.severity >= warning",
        ],
    ) {
        assert!(warnings.trim().is_empty(), "tshark warns:\n{warnings}");
    }
}
