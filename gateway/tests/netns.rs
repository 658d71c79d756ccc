//! The gateway on real interfaces, with real peers, in network namespaces this test creates
//! (and removes, whatever happens): an external host, the gateway, and a pod host, joined by
//! veth pairs. The gateway runs on AF_PACKET ports. Needs root: without it the test prints
//! `skipped: needs root`, and under CI=true that is a failure.
//!
//! - Plain IPv4: the external host pings a pod through the gateway; replies come back.
//! - VXLAN: a kernel VXLAN device on the external host (VNI 4096, the Calico setting) sends to
//!   another pod; the gateway decapsulates, the pod's reply is routed back plain.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};
use std::time::Duration;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ns(name: &str, args: &[&str]) -> Output {
    let mut v = vec!["ip", "netns", "exec", name];
    v.extend_from_slice(args);
    sh(&v)
}

/// Namespaces created by this test, deleted on drop (also when an assertion fails).
struct Topology {
    names: Vec<String>,
}

impl Drop for Topology {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

#[test]
fn af_packet_gateway_forwards_plain_ipv4_and_decapsulates_kernel_vxlan() {
    if !is_root() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("this test needs root, and CI runs as root");
        }
        eprintln!("skipped: needs root");
        return;
    }
    let id = std::process::id();
    let (ext, gw, pods) = (
        format!("gwt-ext-{id}"),
        format!("gwt-gw-{id}"),
        format!("gwt-pods-{id}"),
    );
    let _topo = Topology {
        names: vec![ext.clone(), gw.clone(), pods.clone()],
    };
    for n in [&ext, &gw, &pods] {
        sh(&["ip", "netns", "add", n]);
    }
    // ext-a (external host) <-> ext-g (gateway); pod-g (gateway) <-> pod-b (pod host).
    sh(&[
        "ip", "link", "add", "ext-a", "netns", &ext, "type", "veth", "peer", "name", "ext-g",
        "netns", &gw,
    ]);
    sh(&[
        "ip", "link", "add", "pod-g", "netns", &gw, "type", "veth", "peer", "name", "pod-b",
        "netns", &pods,
    ]);

    // The gateway's namespace: no addresses, no IPv6, no forwarding: the kernel stays out.
    ns(&gw, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    ns(
        &gw,
        &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
    );
    ns(
        &gw,
        &[
            "ip",
            "link",
            "set",
            "ext-g",
            "address",
            "02:00:00:00:00:01",
            "up",
        ],
    );
    ns(
        &gw,
        &[
            "ip",
            "link",
            "set",
            "pod-g",
            "address",
            "02:00:00:00:01:01",
            "up",
        ],
    );
    ns(&gw, &["ip", "link", "set", "lo", "up"]);

    // External host: plain route to the pods via the gateway, and a kernel VXLAN device.
    ns(
        &ext,
        &[
            "ip",
            "link",
            "set",
            "ext-a",
            "address",
            "02:00:00:00:00:99",
            "up",
        ],
    );
    ns(
        &ext,
        &["ip", "addr", "add", "192.0.2.10/24", "dev", "ext-a"],
    );
    ns(
        &ext,
        &[
            "ip",
            "neigh",
            "add",
            "192.0.2.1",
            "lladdr",
            "02:00:00:00:00:01",
            "dev",
            "ext-a",
            "nud",
            "permanent",
        ],
    );
    ns(
        &ext,
        &["ip", "route", "add", "10.244.0.0/16", "via", "192.0.2.1"],
    );
    ns(
        &ext,
        &[
            "ip",
            "link",
            "add",
            "vx0",
            "type",
            "vxlan",
            "id",
            "4096",
            "dstport",
            "4789",
            "local",
            "192.0.2.10",
            "remote",
            "192.0.2.1",
            "dev",
            "ext-a",
        ],
    );
    ns(&ext, &["ip", "addr", "add", "10.99.0.1/24", "dev", "vx0"]);
    ns(&ext, &["ip", "link", "set", "vx0", "up"]);
    ns(&ext, &["ip", "route", "add", "10.244.1.5/32", "dev", "vx0"]);
    ns(
        &ext,
        &[
            "ip",
            "neigh",
            "add",
            "10.244.1.5",
            "lladdr",
            "02:00:00:00:00:01",
            "dev",
            "vx0",
            "nud",
            "permanent",
        ],
    );
    // veth leaves the kernel VXLAN device's UDP checksums to "offload": the frames arrive
    // with a partial checksum, flagged by AF_PACKET as not ready, and must still be accepted.
    // Replies to the VXLAN source come back plain on ext-a.
    ns(&ext, &["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"]);
    ns(&ext, &["sysctl", "-qw", "net.ipv4.conf.ext-a.rp_filter=0"]);

    // Pod host: two pod addresses, everything else via the gateway.
    ns(
        &pods,
        &[
            "ip",
            "link",
            "set",
            "pod-b",
            "address",
            "02:00:00:00:02:01",
            "up",
        ],
    );
    ns(
        &pods,
        &["ip", "addr", "add", "172.18.0.2/16", "dev", "pod-b"],
    );
    ns(
        &pods,
        &["ip", "addr", "add", "10.244.1.5/32", "dev", "pod-b"],
    );
    ns(
        &pods,
        &["ip", "addr", "add", "10.244.2.6/32", "dev", "pod-b"],
    );
    ns(
        &pods,
        &[
            "ip",
            "neigh",
            "add",
            "172.18.0.1",
            "lladdr",
            "02:00:00:00:01:01",
            "dev",
            "pod-b",
            "nud",
            "permanent",
        ],
    );
    ns(
        &pods,
        &["ip", "route", "add", "192.0.2.0/24", "via", "172.18.0.1"],
    );
    ns(
        &pods,
        &["ip", "route", "add", "10.99.0.0/24", "via", "172.18.0.1"],
    );

    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/e2e-netns-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("gw.toml");
    std::fs::write(
        &cfg,
        r#"
[gateway]
name = "netns"
workers = [0]

[[port]]
name = "ext"
driver = "af_packet"
interface = "ext-g"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1/24"]

[[port]]
name = "pods"
driver = "af_packet"
interface = "pod-g"
mac = "02:00:00:00:01:01"
addresses = ["172.18.0.1/16"]

[[neighbor]]
address = "192.0.2.10"
mac = "02:00:00:00:00:99"
port = "ext"

[[neighbor]]
address = "172.18.0.2"
mac = "02:00:00:00:02:01"
port = "pods"

[[route]]
prefix = "10.244.0.0/16"
via = "172.18.0.2"

[[route]]
prefix = "10.99.0.0/24"
via = "192.0.2.10"

[[tunnel]]
name = "calico"
kind = "vxlan"
local = "192.0.2.1"
vni = 4096
peers = ["192.0.2.10"]
"#,
    )
    .unwrap();
    let stats = dir.join("stats.json");
    let gateway = Command::new("ip")
        .args([
            "netns",
            "exec",
            &gw,
            env!("CARGO_BIN_EXE_gateway"),
            "run",
            "--duration",
            "6",
            "--config",
        ])
        .arg(&cfg)
        .arg("--stats-json")
        .arg(&stats)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));

    // `ping` comes from Debian's iputils-ping, which .ci/run installs.
    let plain = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ext,
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "1",
            "10.244.2.6",
        ])
        .output()
        .unwrap();
    let vxlan = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ext,
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "1",
            "-I",
            "10.99.0.1",
            "10.244.1.5",
        ])
        .output()
        .unwrap();
    let out = gateway.wait_with_output().unwrap();
    assert!(out.status.success(), "gateway failed");
    let plain_out = String::from_utf8_lossy(&plain.stdout);
    let vxlan_out = String::from_utf8_lossy(&vxlan.stdout);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert!(
        plain_out.contains("3 received"),
        "plain ping through the gateway:\n{plain_out}\n{json}"
    );
    assert!(
        vxlan_out.contains("3 received"),
        "ping through kernel VXLAN and the gateway:\n{vxlan_out}\n{json}"
    );
    let ext_port = &json["ports"]["ext"];
    let pods_port = &json["ports"]["pods"];
    assert!(ext_port["decap"].as_u64().unwrap() >= 3, "{json}");
    assert!(pods_port["tx_packets"].as_u64().unwrap() >= 6, "{json}");
    assert!(ext_port["tx_packets"].as_u64().unwrap() >= 6, "{json}");
    let _ = std::fs::remove_dir_all(&dir);
}
