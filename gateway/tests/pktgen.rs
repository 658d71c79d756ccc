//! `gateway pktgen`: what it generates, as tshark (an independent dissector) reads it, and as
//! the gateway itself routes it; and, as root, that it really sends on an interface.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/e2e-pktgen")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// tshark's fields for each frame of `file`, checksums verified; `None` (visibly skipped)
/// without tshark outside CI.
fn tshark(file: &Path, fields: &[&str]) -> Option<Vec<Vec<String>>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(file).args([
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-T",
        "fields",
        "-E",
        "separator=|",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    match cmd.output() {
        Ok(o) if o.status.success() => Some(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| l.split('|').map(str::to_string).collect())
                .collect(),
        ),
        _ => {
            gateway::skipped("tshark not installed (apt-get install tshark)");
            None
        }
    }
}

/// tshark's severity of a note ("suspected retransmission": the TCP kind's segments belong
/// to no connection); anything above it is a warning or an error.
const TSHARK_NOTE: u64 = 0x40_0000;

#[test]
fn generated_traffic_is_what_tshark_dissects_with_no_warning() {
    let dir = scratch("kinds");
    let v6 = ["--src", "fd00:a::10", "--dst", "fd00:244::6"];
    let inner6 = ["--inner-src", "fd00:46::7", "--inner-dst", "fd00:244::9"];
    // name, arguments, size, the protocols tshark must see.
    let cases: Vec<(&str, Vec<&str>, usize, &str)> = vec![
        (
            "plain4",
            vec!["--kind", "plain4"],
            64,
            "eth:ethertype:ip:udp",
        ),
        (
            "plain6",
            [&["--kind", "plain6"][..], &v6].concat(),
            90,
            "eth:ethertype:ipv6:udp",
        ),
        ("tcp4", vec!["--l4", "tcp"], 128, "eth:ethertype:ip:tcp"),
        (
            "tcp6",
            [&["--l4", "tcp"][..], &v6].concat(),
            128,
            "eth:ethertype:ipv6:tcp",
        ),
        (
            "vxlan",
            vec!["--kind", "vxlan"],
            128,
            "eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:udp",
        ),
        (
            "vxlan6",
            [&["--kind", "vxlan"][..], &inner6].concat(),
            160,
            "eth:ethertype:ip:udp:vxlan:eth:ethertype:ipv6:udp",
        ),
        (
            "gtpu",
            vec!["--kind", "gtpu"],
            128,
            "eth:ethertype:ip:udp:gtp:ip:udp",
        ),
        (
            "gtpu-nopsc",
            vec!["--kind", "gtpu", "--no-psc"],
            128,
            "eth:ethertype:ip:udp:gtp:ip:udp",
        ),
        (
            "gtpu6",
            [&["--kind", "gtpu"][..], &inner6].concat(),
            128,
            "eth:ethertype:ip:udp:gtp:ipv6:udp",
        ),
        (
            "4in4",
            vec!["--kind", "ipip"],
            96,
            "eth:ethertype:ip:ip:udp",
        ),
        (
            "6in4",
            [&["--kind", "ipip"][..], &inner6].concat(),
            128,
            "eth:ethertype:ip:ipv6:udp",
        ),
        (
            "4in6",
            [&["--kind", "ipip"][..], &v6].concat(),
            128,
            "eth:ethertype:ipv6:ip:udp",
        ),
        (
            "6in6",
            [&["--kind", "ipip"][..], &v6, &inner6].concat(),
            128,
            "eth:ethertype:ipv6:ipv6:udp",
        ),
    ];
    for (name, args, size, protos) in cases {
        let pcap = dir.join(format!("{name}.pcap"));
        let out = gateway()
            .arg("pktgen")
            .args(&args)
            .args([
                "--size",
                &size.to_string(),
                "--count",
                "8",
                "--flows",
                "4",
                "--pcap",
            ])
            .arg(&pcap)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let Some(rows) = tshark(
            &pcap,
            &[
                "frame.len",
                "frame.protocols",
                "udp.srcport",
                "tcp.srcport",
                "_ws.expert.severity",
            ],
        ) else {
            return;
        };
        assert_eq!(rows.len(), 8, "{name}");
        let mut ports = std::collections::BTreeSet::new();
        for r in &rows {
            // FCS not captured: a 64-byte frame is 60 bytes here.
            assert_eq!(r[0].parse::<usize>().unwrap() + 4, size, "{name} {r:?}");
            assert!(r[1].starts_with(protos), "{name}: {} is not {protos}", r[1]);
            let worst = r[4].split(',').filter_map(|v| v.parse::<u64>().ok()).max();
            assert!(
                worst.unwrap_or(0) <= TSHARK_NOTE,
                "{name}: tshark warns: {r:?}"
            );
            if !name.starts_with("tcp") {
                assert!(worst.is_none(), "{name}: tshark remarks: {r:?}");
            }
            // The innermost source port (the default flow field of all but VXLAN and GTP-U,
            // whose outer port varies: the last of the listed ports is the innermost).
            let port = if r[2].is_empty() { &r[3] } else { &r[2] };
            ports.insert(port.split(',').next_back().unwrap().to_string());
        }
        let varying = if name.starts_with("vxlan") || name.starts_with("gtpu") {
            1
        } else {
            4
        };
        assert_eq!(
            ports.len(),
            varying,
            "{name}: flows over source ports {ports:?}"
        );
    }
}

#[test]
fn imix_is_seven_four_one_of_64_570_and_1518_byte_frames() {
    let dir = scratch("imix");
    let pcap = dir.join("imix.pcap");
    let out = gateway()
        .args(["pktgen", "--imix", "--count", "24", "--pcap"])
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("IMIX 7x64 : 4x570 : 1x1518"), "{stdout}");
    let Some(rows) = tshark(&pcap, &["frame.len", "_ws.expert.severity"]) else {
        return;
    };
    let sizes: Vec<usize> = rows
        .iter()
        .map(|r| r[0].parse::<usize>().unwrap() + 4)
        .collect();
    let count = |n| sizes.iter().filter(|&&s| s == n).count();
    assert_eq!(
        (count(64), count(570), count(1518)),
        (14, 8, 2),
        "{sizes:?}"
    );
    assert!(rows.iter().all(|r| r[1].is_empty()), "{rows:?}");
}

#[test]
fn the_gateway_decapsulates_and_routes_what_pktgen_generates() {
    let dir = scratch("through");
    let cfg = r#"
[gateway]
[[port]]
name = "ext"
driver = "pcap"
rx = "in.pcap"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1/24"]
[[port]]
name = "pods"
driver = "pcap"
tx = "out.pcap"
mac = "02:00:00:00:01:01"
addresses = ["172.18.0.1/16"]
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
[[tunnel]]
name = "cilium"
kind = "geneve"
local = "192.0.2.1"
vni = 2
peers = ["192.0.2.10"]
"#;
    std::fs::write(dir.join("gw.toml"), cfg).unwrap();
    for kind in ["gtpu", "geneve"] {
        let out = gateway()
            .args([
                "pktgen", "--kind", kind, "--vni", "2", "--flows", "16", "--count", "100", "--pcap",
            ])
            .arg(dir.join("in.pcap"))
            .output()
            .unwrap();
        assert!(out.status.success());
        let run = gateway()
            .args(["run", "--config"])
            .arg(dir.join("gw.toml"))
            .arg("--stats-json")
            .arg(dir.join("stats.json"))
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("stats.json")).unwrap())
                .unwrap();
        let ext = &json["ports"]["ext"];
        assert_eq!(ext["tunnels"][kind]["decap"], 100, "{kind}: {json}");
        assert_eq!(json["ports"]["pods"]["tx_packets"], 100, "{kind}: {json}");
    }
}

fn root_or_skip() -> bool {
    if gateway::tools::lab::is_root() {
        return true;
    }
    gateway::skipped("needs root");
    false
}

/// Runs a command; panics with its stderr when it fails; returns its stdout.
fn sh(args: &[&str]) -> String {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A network namespace of the test's own (`PREFIX-PID`), deleted when dropped.
struct Netns(String);

impl Netns {
    fn new(prefix: &str) -> Netns {
        let name = format!("{prefix}-{}", std::process::id());
        sh(&["ip", "netns", "add", &name]);
        Netns(name)
    }

    /// [`sh`] inside the namespace.
    fn run(&self, args: &[&str]) -> String {
        sh(&[&["ip", "netns", "exec", self.0.as_str()][..], args].concat())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// As root: the kernel runs each sender program (not live: the frame comes back) and what
/// it writes is, byte for byte, what `LiveSender::render` says for the same sequence number
/// and timestamp. That is what makes the pcap output and the receiver's reading of the
/// stamp trustworthy for live traffic.
#[test]
fn the_bpf_sender_writes_exactly_the_frames_render_describes() {
    if !root_or_skip() {
        return;
    }
    use clap::Parser;
    use datapath::port::{bpf, live_frames};
    use std::os::fd::AsRawFd;
    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        spec: gateway::tools::pktgen::Spec,
    }
    let cases: [&[&str]; 5] = [
        &["--flows", "300", "--vary", "sport,dport,src,dst"],
        &[
            "--kind",
            "gtpu",
            "--flows",
            "7",
            "--vary",
            "teid,sport,outer-sport",
        ],
        &[
            "--kind",
            "vxlan",
            "--flows",
            "5",
            "--vary",
            "vni,src",
            "--inner-src",
            "fd01::1",
            "--inner-dst",
            "fd01::2",
        ],
        &[
            "--kind", "ipip", "--l4", "tcp", "--flows", "3", "--vary", "dst", "--src", "fd00::1",
            "--dst", "fd00::2",
        ],
        &["--kind", "gtpu", "--no-psc", "--imix"],
    ];
    for args in cases {
        let spec = T::parse_from([&["t"], args].concat()).spec;
        for (snd, _) in gateway::tools::pktgen::senders(&spec).unwrap() {
            let map = live_frames::create_counter_map().unwrap();
            let insns = live_frames::sender_program(&snd, map.as_raw_fd()).unwrap();
            let prog = bpf::load_xdp(&insns, "gw_pktgen_test").unwrap();
            for seq in 0..20u32 {
                // What a previous frame left in the buffer must not matter.
                let garbage = vec![0xa5u8; snd.frame.len()];
                let (verdict, out) = bpf::run_once(&prog, &garbage).unwrap();
                assert_eq!(verdict, 3, "{args:?}: XDP_TX");
                let ts_at = snd.ts_at.unwrap();
                let ts = u64::from_be_bytes(out[ts_at..ts_at + 8].try_into().unwrap());
                assert!(ts > 0, "{args:?}: no send time");
                assert_eq!(out, snd.render(seq, ts), "{args:?} seq {seq}");
            }
            // A frame shorter than the template is dropped, not written past.
            let (verdict, _) = bpf::run_once(&prog, &snd.frame[..snd.frame.len() - 1]).unwrap();
            assert_eq!(verdict, 1, "{args:?}: XDP_DROP");
        }
    }
}

/// `pktgen receive --json` on `interface` in namespace `ns`, stopping 1 s after the last
/// stamped frame or after `seconds`.
fn start_receiver(ns: &str, interface: &str, seconds: &str) -> std::process::Child {
    Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_gateway")])
        .args(["pktgen", "receive", "--interface", interface, "--idle", "1"])
        .args(["--seconds", seconds, "--quiet", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The receiver's JSON summary.
fn receiver_summary(out: std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "receiver: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
}

/// As root: pktgen sends on one end of a veth pair in a namespace of its own (through each
/// output: live frames, AF_XDP, AF_PACKET); the other end
/// counts what the interface received and `pktgen receive` accounts for every frame: each
/// of the 8 flows complete, nothing lost or reordered, a latency for each frame, and the
/// interface's own count equal to it.
#[test]
fn live_frames_arrive_on_the_peer_in_the_count_reported() {
    if !gateway::tools::lab::is_root() {
        gateway::skipped("needs root");
        return;
    }
    // Not beside the gateway tests below: their busy-polling worker takes a whole core of
    // two, and running beside one this test lost the last frames of its burst in CI.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let netns = Netns::new("gwpg");
    let ns = netns.0.clone();
    let x = |args: &[&str]| netns.run(args);
    x(&[
        "ip", "link", "add", "pg-a", "type", "veth", "peer", "name", "pg-b",
    ]);
    // No IPv6 on the pair: its link-up housekeeping (router solicitations, MLD reports) was
    // the unexplained extra frames an earlier version of this test saw.
    for dev in ["pg-a", "pg-b"] {
        x(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{dev}.disable_ipv6=1"),
        ]);
    }
    x(&["ip", "link", "set", "pg-a", "up"]);
    x(&["ip", "link", "set", "pg-b", "up"]);
    // A veth drops frames XDP_TX'd into it unless its peer has GRO (or an XDP program) on.
    let gro =
        datapath::port::ethtool::in_netns(&ns, || datapath::port::ethtool::set_gro("pg-b", true));
    assert!(matches!(gro, Ok(true)), "GRO on pg-b: {gro:?}");
    for output in ["live", "af-xdp", "af-packet"] {
        let before: u64 = x(&["cat", "/sys/class/net/pg-b/statistics/rx_packets"])
            .trim()
            .parse()
            .unwrap();
        let receiver = start_receiver(&ns, "pg-b", "20");
        std::thread::sleep(std::time::Duration::from_millis(500));
        let out = x(&[
            env!("CARGO_BIN_EXE_gateway"),
            "pktgen",
            "--interface",
            "pg-a",
            "--output",
            output,
            "--kind",
            "vxlan",
            "--flows",
            "8",
            "--count",
            "5000",
            "--rate",
            "50000",
            "--json",
        ]);
        let sent: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(sent["frames"], 5000, "{output}");
        let got = receiver_summary(receiver.wait_with_output().unwrap());
        let after: u64 = x(&["cat", "/sys/class/net/pg-b/statistics/rx_packets"])
            .trim()
            .parse()
            .unwrap();
        assert_eq!(got["stamped"], 5000, "{output}: {got}");
        assert_eq!(got["lost"], 0, "{output}: {got}");
        assert_eq!(got["reordered"], 0, "{output}: {got}");
        assert_eq!(got["kernel_drops"], 0, "{output}: {got}");
        assert_eq!(got["latency_ns"]["samples"], 5000, "{output}: {got}");
        let flows = got["flows"].as_array().unwrap();
        assert_eq!(flows.len(), 8, "{output}: {got}");
        assert!(
            flows.iter().all(|f| f["received"] == 625),
            "{output}: {got}"
        );
        assert_eq!(got["other"], 0, "{output}: {got}");
        assert_eq!(after - before, 5000, "{output}: {got}");
    }
}

/// As root: generator → gateway (AF_XDP) → receiver in the lab's namespaces. Uplink: for
/// GTP-U, VXLAN and IPIP, the receiver on the pod host gets every decapsulated frame of
/// every flow, stamped by the generator on the external host. Downlink: frames from the pod
/// host to a UE and to the VXLAN side arrive at the external host encapsulated, all of them.
#[test]
fn the_receiver_behind_an_af_xdp_gateway_gets_every_flow_both_ways() {
    through_gateway("af_xdp");
}

/// The same through the AF_PACKET fallback (the generator sends through AF_PACKET too: frames
/// XDP_TX'd into a veth whose peer runs no XDP program are dropped unless GRO is on there).
#[test]
fn the_receiver_behind_an_af_packet_gateway_gets_every_flow_both_ways() {
    through_gateway("af_packet");
}

/// One gateway at a time: two busy-polling gateways on a 2-core machine starve each other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn through_gateway(driver: &str) {
    if !root_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use gateway::tools::lab::{config_for, Lab};
    let id = format!("pg{}{}", std::process::id(), &driver[3..]);
    let lab = Lab::build(&id).unwrap();
    let dir = scratch(&format!("through-gateway-{driver}"));
    let cfg = dir.join("gw.toml");
    std::fs::write(&cfg, config_for(driver)).unwrap();
    let output = if driver == "af_xdp" {
        "live"
    } else {
        "af-packet"
    };
    let gw = Command::new("ip")
        .args(["netns", "exec", &lab.gw, env!("CARGO_BIN_EXE_gateway")])
        .args(["run", "--duration", "22", "--config"])
        .arg(&cfg)
        .arg("--stats-json")
        .arg(dir.join("stats.json"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for kind in ["gtpu", "vxlan", "ipip"] {
        let receiver = start_receiver(&lab.pods, "pod-b", "5");
        std::thread::sleep(std::time::Duration::from_millis(300));
        let send = lab
            .exec(
                &lab.ext,
                &[
                    env!("CARGO_BIN_EXE_gateway"),
                    "pktgen",
                    "--interface",
                    "ext-a",
                    "--output",
                    output,
                    "--kind",
                    kind,
                    "--src",
                    "192.0.2.10",
                    "--dst",
                    "192.0.2.1",
                    "--inner-dst",
                    "10.244.1.5",
                    "--flows",
                    "4",
                    "--vary",
                    "sport",
                    "--count",
                    "2000",
                    "--rate",
                    "20000",
                ],
            )
            .unwrap();
        assert!(send.status.success());
        let got = receiver_summary(receiver.wait_with_output().unwrap());
        assert_eq!(got["stamped"], 2000, "{driver} {kind}: {got}");
        assert_eq!(got["lost"], 0, "{driver} {kind}: {got}");
        let flows = got["flows"].as_array().unwrap();
        assert!(
            flows.len() == 4 && flows.iter().all(|f| f["received"] == 500),
            "{kind}: {got}"
        );
    }
    // Downlink: the pod host sends to a UE and to the external host's VXLAN side; the
    // gateway encapsulates (GTP-U with the session's outgoing TEID, VXLAN with the VNI) toward
    // the external host, where the receiver finds every stamp inside the tunnel and tshark
    // reads the tunnel headers from a capture.
    for (kind, dst, filter, field, want) in [
        (
            "gtpu",
            "10.46.0.7",
            "udp dst port 2152 and dst host 192.0.2.10",
            "gtp.teid",
            "0x00002001",
        ),
        (
            "vxlan",
            "10.99.0.1",
            "udp dst port 4789 and dst host 192.0.2.10",
            "vxlan.vni",
            "4096",
        ),
    ] {
        let pcap = dir.join(format!("down-{kind}.pcap"));
        let capture = Command::new("ip")
            .args([
                "netns", "exec", &lab.ext, "timeout", "5", "tcpdump", "-U", "-q",
            ])
            .args(["-i", "ext-a", "-c", "100", "-w"])
            .arg(&pcap)
            .arg(filter)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let receiver = start_receiver(&lab.ext, "ext-a", "5");
        std::thread::sleep(std::time::Duration::from_millis(500));
        let send = lab
            .exec(
                &lab.pods,
                &[
                    env!("CARGO_BIN_EXE_gateway"),
                    "pktgen",
                    "--interface",
                    "pod-b",
                    "--output",
                    output,
                    "--src-mac",
                    "02:00:00:00:02:01",
                    "--dst-mac",
                    gateway::tools::lab::GW_PODS_MAC,
                    "--src",
                    "10.244.1.5",
                    "--dst",
                    dst,
                    "--flows",
                    "4",
                    "--count",
                    "2000",
                    "--rate",
                    "20000",
                ],
            )
            .unwrap();
        assert!(send.status.success());
        let got = receiver_summary(receiver.wait_with_output().unwrap());
        assert_eq!(got["stamped"], 2000, "{driver} downlink {kind}: {got}");
        assert_eq!(got["lost"], 0, "{driver} downlink {kind}: {got}");
        let _ = capture.wait_with_output();
        if let Some(rows) = tshark(&pcap, &[field, "ip.dst"]) {
            assert_eq!(rows.len(), 100, "downlink {kind}: {rows:?}");
            for r in &rows {
                assert_eq!(r[0], want, "downlink {kind}: {r:?}");
                assert_eq!(r[1], format!("192.0.2.10,{dst}"), "downlink {kind}: {r:?}");
            }
        }
    }
    assert!(gw.wait_with_output().unwrap().status.success());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("stats.json")).unwrap()).unwrap();
    // 6000 frames up; the external host's VXLAN device may send a few ICMP errors back up
    // its tunnel for the downlink frames (no listener on their port), rate-limited.
    let decap = json["ports"]["ext"]["decap"].as_u64().unwrap();
    assert!((6000..6100).contains(&decap), "{json}");
    assert!(
        json["ports"]["ext"]["tx_packets"].as_u64().unwrap() >= 4000,
        "{json}"
    );
}

/// The gateway with two workers on two-queue veths, AF_XDP, and GTP-U from one gNB address
/// with 64 TEIDs (each session its own UE address): one outer flow, which the veth's hash puts
/// on one queue. Returns each worker's frames sent to the pods, what the ext port handed off,
/// and the receiver's summary.
/// Per-worker frames forwarded to the pods, frames handed off, frames the pods port copied
/// into its UMEM to send, and the receiver's summary.
fn two_workers_with_steering(steering: &str) -> (Vec<u64>, u64, u64, serde_json::Value) {
    use gateway::tools::lab::{config_for, Lab};
    let id = format!("st{}{}", std::process::id(), &steering[..2]);
    let lab = Lab::build_with_queues(&id, 2).unwrap();
    let dir = scratch(&format!("steering-{steering}"));
    let mut sessions = String::new();
    for k in 0..64u32 {
        sessions.push_str(&format!(
            "[[tunnel.session]]\nue = \"10.46.0.{}/32\"\nteid_in = {}\nteid_out = {}\nqfi = 9\n\n",
            1 + k,
            0x1001 + k,
            0x2001 + k
        ));
    }
    let cfg = config_for("af_xdp")
        .replace("workers = [0]", "workers = [0, 1]")
        .replace(
            "name = \"ext\"\n",
            &format!("name = \"ext\"\nsteering = \"{steering}\"\n"),
        )
        .replace(
            "[[tunnel.session]]\nue = \"10.46.0.0/16\"\nteid_in = 0x1001\nteid_out = 0x2001\nqfi = 9\n",
            &sessions,
        );
    assert!(
        cfg.contains("teid_in = 4160"),
        "the sessions were not replaced"
    );
    let path = dir.join("gw.toml");
    std::fs::write(&path, &cfg).unwrap();
    let sock = dir.join("gw.sock");
    let mut gw = Command::new("ip")
        .args(["netns", "exec", &lab.gw, env!("CARGO_BIN_EXE_gateway")])
        .args(["run", "--duration", "15", "--config"])
        .arg(&path)
        .arg("--control-socket")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let receiver = start_receiver(&lab.pods, "pod-b", "8");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let send = lab
        .exec(
            &lab.ext,
            &[
                env!("CARGO_BIN_EXE_gateway"),
                "pktgen",
                "--interface",
                "ext-a",
                "--output",
                "live",
                "--kind",
                "gtpu",
                "--src",
                "192.0.2.10",
                "--dst",
                "192.0.2.1",
                "--inner-src",
                "10.46.0.1",
                "--inner-dst",
                "10.244.1.5",
                "--flows",
                "64",
                "--vary",
                "teid,src",
                "--count",
                "6400",
                "--rate",
                "20000",
            ],
        )
        .unwrap();
    assert!(
        send.status.success(),
        "{}",
        String::from_utf8_lossy(&send.stderr)
    );
    let got = receiver_summary(receiver.wait_with_output().unwrap());
    let stats = gateway()
        .args(["stats", "--socket"])
        .arg(&sock)
        .output()
        .unwrap();
    let _ = gw.kill();
    let _ = gw.wait();
    let j: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap_or_default();
    let per_worker: Vec<u64> = j["workers"]
        .as_array()
        .unwrap_or_else(|| panic!("no per-worker counters: {j}"))
        .iter()
        .map(|w| w["pods"]["tx_packets"].as_u64().unwrap())
        .collect();
    let handed = j["ports"]["ext"]["handed_off"].as_u64().unwrap_or(0);
    let copied = j["ports"]["pods"]["tx_copied"]
        .as_u64()
        .unwrap_or_else(|| panic!("no tx_copied: {j}"));
    drop(lab);
    (per_worker, handed, copied, got)
}

/// Steering by TEID across two workers: with `steering = "inner"` both workers forward a
/// share of one gNB's GTP-U, nothing is lost and no flow is reordered; with the default
/// (`rss`) one worker forwards it all.
#[test]
fn one_gnb_with_64_teids_uses_both_workers_only_when_steered() {
    if !root_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (steered, handed, copied, got) = two_workers_with_steering("inner");
    assert_eq!(got["stamped"], 6400, "steered: {got}");
    assert_eq!(got["lost"], 0, "steered: {got}");
    assert_eq!(got["reordered"], 0, "steered: {got}");
    let total: u64 = steered.iter().sum();
    assert!(total >= 6400, "steered: {steered:?}");
    for (w, &n) in steered.iter().enumerate() {
        assert!(
            n * 3 > total,
            "steered: worker {w} forwarded {n} of {total} ({steered:?})"
        );
    }
    assert!(handed > 0, "steered: nothing handed off");
    // Handed off by descriptor, in the receiving worker's UMEM: the owner's port copies each
    // into its own UMEM to send it, and that is the one copy (a few handed-off frames are for
    // the gateway itself, not the pods).
    assert!(
        copied + 16 >= handed,
        "steered: {handed} handed off but only {copied} copied by the sending port"
    );
    eprintln!("with steering the workers forwarded {steered:?} of {total}, {handed} handed off, {copied} copied to send");
    let (rss, handed, copied, got) = two_workers_with_steering("rss");
    assert!(copied < 64, "rss: {copied} frames copied to send");
    assert_eq!(got["lost"], 0, "rss: {got}");
    assert_eq!(handed, 0);
    let total: u64 = rss.iter().sum();
    assert!(total >= 6400, "rss: {rss:?}");
    // Without steering the split is the veth's: the receive queue follows the queue the
    // sender's CPU transmitted on, so one worker takes all while pktgen stays on one CPU, and
    // the split moves when it migrates (4123 and 2278 in one fresh-machine run). Reported,
    // not asserted: it is the host's choice.
    eprintln!("without steering the workers forwarded {rss:?} of {total}, with {steered:?}");
}

/// SIGTERM (what a harness or `timeout` sends) ends a sender early, and it still exits
/// cleanly and reports what it sent, as it does at the end of its run.
#[test]
fn a_sender_stopped_by_sigterm_reports_what_it_sent() {
    if !root_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let netns = Netns::new("gwpt");
    let ns = netns.0.clone();
    netns.run(&[
        "ip", "link", "add", "pt-a", "type", "veth", "peer", "name", "pt-b",
    ]);
    for dev in ["pt-a", "pt-b"] {
        netns.run(&["ip", "link", "set", dev, "up"]);
    }
    // Live frames free-running: each kernel run sends 200,000 frames, so the signal lands
    // inside one (the kernel stops it with EINTR) rather than between two.
    for (output, rate) in [("af-packet", &["--rate", "2000"][..]), ("live", &[][..])] {
        let start = std::time::Instant::now();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                env!("CARGO_BIN_EXE_gateway"),
                "pktgen",
            ])
            .args(["--interface", "pt-a", "--output", output, "--kind", "vxlan"])
            .args(rate)
            .args(["--seconds", "60", "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        // `ip netns exec` runs the gateway in its own process: signal the gateway itself.
        let pid = child.id().to_string();
        let out = Command::new("pgrep").args(["-P", &pid]).output().unwrap();
        let target = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let target = if target.is_empty() { pid } else { target };
        sh(&["kill", "-TERM", &target]);
        let out = child.wait_with_output().unwrap();
        let took = start.elapsed();
        assert!(
            out.status.success(),
            "{output}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(took.as_secs() < 20, "{output}: stopped after {took:?}");
        let j: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{output}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
        let frames = j["frames"].as_u64().unwrap();
        let secs = j["seconds"].as_f64().unwrap();
        assert!(frames > 1000, "{output}: {j}");
        assert!(secs < 10.0, "{output}: {j}");
    }
}
