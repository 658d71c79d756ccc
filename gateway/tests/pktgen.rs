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
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!("tshark is required under CI"),
        _ => {
            eprintln!("skipped: tshark not installed");
            None
        }
    }
}

#[test]
fn generated_traffic_is_what_tshark_dissects_with_no_warning() {
    let dir = scratch("kinds");
    // kind, size, the protocols tshark must see, the inner destination field.
    let cases = [
        ("plain4", "64", "eth:ethertype:ip:udp"),
        ("plain6", "90", "eth:ethertype:ipv6:udp"),
        (
            "vxlan",
            "128",
            "eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:udp",
        ),
        ("gtpu", "128", "eth:ethertype:ip:udp:gtp:ip:udp"),
        ("ipip", "96", "eth:ethertype:ip:ip:udp"),
    ];
    for (kind, size, protos) in cases {
        let pcap = dir.join(format!("{kind}.pcap"));
        let mut cmd = gateway();
        cmd.args(["pktgen", "--kind", kind, "--size", size, "--count", "8"]);
        if kind == "plain6" {
            cmd.args(["--src", "fd00:a::10", "--dst", "fd00:244::6"]);
        } else {
            cmd.args(["--flows", "4"]);
        }
        let out = cmd.arg("--pcap").arg(&pcap).output().unwrap();
        assert!(
            out.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let Some(rows) = tshark(
            &pcap,
            &[
                "frame.len",
                "frame.protocols",
                "udp.srcport",
                "_ws.expert.severity",
            ],
        ) else {
            return;
        };
        assert_eq!(rows.len(), 8, "{kind}");
        let mut ports = std::collections::BTreeSet::new();
        for r in &rows {
            // FCS not captured: a 64-byte frame is 60 bytes here.
            assert_eq!(
                r[0].parse::<usize>().unwrap() + 4,
                size.parse::<usize>().unwrap(),
                "{kind} {r:?}"
            );
            assert!(r[1].starts_with(protos), "{kind}: {} is not {protos}", r[1]);
            assert!(r[3].is_empty(), "{kind}: tshark warns: {r:?}");
            ports.insert(r[2].split(',').next().unwrap().to_string());
        }
        let flows = if kind == "plain6" { 1 } else { 4 };
        assert_eq!(
            ports.len(),
            flows,
            "{kind}: flows over source ports {ports:?}"
        );
    }
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
"#;
    std::fs::write(dir.join("gw.toml"), cfg).unwrap();
    let out = gateway()
        .args([
            "pktgen", "--kind", "gtpu", "--flows", "16", "--count", "100", "--pcap",
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
        serde_json::from_str(&std::fs::read_to_string(dir.join("stats.json")).unwrap()).unwrap();
    assert_eq!(json["ports"]["ext"]["decap"], 100, "{json}");
    assert_eq!(json["ports"]["pods"]["tx_packets"], 100, "{json}");
}

/// As root: pktgen sends on one end of a veth pair in a namespace of its own, and the other
/// end receives exactly what it reports.
#[test]
fn live_frames_arrive_on_the_peer_in_the_count_reported() {
    if !gateway::lab::is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "this test needs root, and CI runs as root"
        );
        eprintln!("skipped: needs root");
        return;
    }
    let ns = format!("gwpg-{}", std::process::id());
    let sh = |args: &[&str]| {
        let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    struct Ns(String);
    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
        }
    }
    sh(&["ip", "netns", "add", &ns]);
    let _guard = Ns(ns.clone());
    let x = |args: &[&str]| {
        let mut v = vec!["ip", "netns", "exec", &ns];
        v.extend_from_slice(args);
        sh(&v)
    };
    x(&[
        "ip", "link", "add", "pg-a", "type", "veth", "peer", "name", "pg-b",
    ]);
    x(&["ip", "link", "set", "pg-a", "up"]);
    x(&["ip", "link", "set", "pg-b", "up"]);
    // Frames XDP_TX'd into a veth need the peer ready for them (IO-NOTES): GRO on.
    x(&["ethtool", "-K", "pg-b", "gro", "on"]);
    let before: u64 = x(&["cat", "/sys/class/net/pg-b/statistics/rx_packets"])
        .trim()
        .parse()
        .unwrap();
    let out = x(&[
        env!("CARGO_BIN_EXE_gateway"),
        "pktgen",
        "--interface",
        "pg-a",
        "--kind",
        "vxlan",
        "--count",
        "5000",
        "--rate",
        "50000",
        "--json",
    ]);
    let sent: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let after: u64 = x(&["cat", "/sys/class/net/pg-b/statistics/rx_packets"])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(sent["frames"], 5000);
    // At a modest rate nothing is lost. The receiving end has counted up to 3 frames more
    // than were asked for in some runs here (not explained yet; never fewer): the bound says
    // so rather than hides it.
    let got = after - before;
    assert!((5000..=5003).contains(&got), "received {got}: {sent}");
}
