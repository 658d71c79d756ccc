//! The gateway on real interfaces, with real peers, in network namespaces the test creates and
//! removes whatever happens ([`gateway::tools::lab`]): an external host, the gateway, and a pod host,
//! joined by veth pairs; the gateway runs on AF_PACKET ports. Needs root: without it the tests
//! are skipped ([`gateway::skipped`]), and under CI=true that is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gateway::tools::lab::{config_for, is_root, Lab};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// One lab at a time: two busy-polling gateways on a 2-core machine would starve each other.
static SERIAL: Mutex<()> = Mutex::new(());

fn root_or_skip() -> bool {
    if is_root() {
        return true;
    }
    gateway::skipped("needs root");
    false
}

/// Root, the one-lab-at-a-time lock, a fresh lab and a scratch directory for the test named
/// by `tag`; `None` (the test is skipped) without root.
fn lab_for(tag: &str) -> Option<(std::sync::MutexGuard<'static, ()>, Lab, std::path::PathBuf)> {
    if !root_or_skip() {
        return None;
    }
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let id = format!("t{}{tag}", std::process::id());
    let lab = Lab::build(&id).unwrap();
    let dir = scratch(&id);
    Some((serial, lab, dir))
}

/// `gateway stats --socket SOCK` as JSON (`Null` when it does not answer).
fn stats_of(sock: &std::path::Path) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["stats", "--socket"])
        .arg(sock)
        .output()
        .unwrap();
    serde_json::from_slice(&o.stdout).unwrap_or_default()
}

/// A fresh directory for one test's files, under `target/`.
fn scratch(id: &str) -> std::path::PathBuf {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/e2e-netns-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts `gateway run --config CFG ARGS...` in the lab's gateway namespace; with `piped`, its
/// stdout and stderr are kept for the test to read.
fn start_gateway(
    lab: &Lab,
    cfg: &std::path::Path,
    args: &[&std::ffi::OsStr],
    piped: bool,
) -> std::process::Child {
    let mut c = Command::new("ip");
    c.args([
        "netns",
        "exec",
        &lab.gw,
        env!("CARGO_BIN_EXE_gateway"),
        "run",
        "--config",
    ])
    .arg(cfg)
    .args(args);
    if piped {
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
    }
    c.spawn().unwrap()
}

/// A pod address, 10.77.0.5, outside every route of the lab's configuration, and the external
/// host's route to it through the gateway.
fn add_unrouted_pod(lab: &Lab) {
    lab.exec(
        &lab.pods,
        &["ip", "addr", "add", "10.77.0.5/32", "dev", "lo"],
    )
    .unwrap();
    lab.exec(
        &lab.ext,
        &["ip", "route", "add", "10.77.0.0/16", "via", "192.0.2.1"],
    )
    .unwrap();
}

/// `ping -c COUNT -i INTERVAL DST` from the external host; its output.
fn ping_from_ext(lab: &Lab, count: &str, interval: &str, dst: &str) -> String {
    let o = Command::new("ip")
        .args([
            "netns", "exec", &lab.ext, "ping", "-q", "-c", count, "-i", interval,
        ])
        .args(["-W", "1", dst])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn lab_namespaces_left(tag: &str) -> usize {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("gwlab-") && l.contains(tag))
        .count()
}

/// Plain IPv4 both ways, and a kernel VXLAN device's packets decapsulated (their partial
/// checksums, which veth leaves to offload, accepted as the kernel accepts them): ping, and
/// UDP between a socket behind the VXLAN device and one on the pod host, both ways.
#[test]
fn af_packet_gateway_forwards_plain_ipv4_and_decapsulates_kernel_vxlan() {
    plain_and_vxlan_through("af_packet");
}

/// The same through AF_XDP, the primary path: the gateway attaches its own XDP program, and
/// when it exits no program is left on either interface.
#[test]
fn af_xdp_gateway_forwards_plain_ipv4_and_decapsulates_kernel_vxlan() {
    plain_and_vxlan_through("af_xdp");
}

fn xdp_attached(lab: &Lab, dev: &str) -> bool {
    let o = lab
        .exec(&lab.gw, &["ip", "-d", "link", "show", dev])
        .unwrap();
    String::from_utf8_lossy(&o.stdout).contains("prog/xdp")
}

/// Two workers, one per core, each owning a queue of each two-queue veth.
#[test]
fn two_af_xdp_workers_forward_plain_ipv4_and_decapsulate_kernel_vxlan() {
    plain_and_vxlan_through_workers("af_xdp", 2);
}

/// Two workers sharing each interface through a PACKET_FANOUT group.
#[test]
fn two_af_packet_workers_forward_plain_ipv4_and_decapsulate_kernel_vxlan() {
    plain_and_vxlan_through_workers("af_packet", 2);
}

fn plain_and_vxlan_through(driver: &str) {
    plain_and_vxlan_through_workers(driver, 1);
}

fn plain_and_vxlan_through_workers(driver: &str, workers: u32) {
    if !root_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let id = format!("t{}{}{workers}", std::process::id(), &driver[3..]);
    let lab = Lab::build_with_queues(&id, workers).unwrap();
    let dir = scratch(&id);
    let cfg = dir.join("gw.toml");
    let cores: Vec<String> = (0..workers).map(|w| w.to_string()).collect();
    let text = config_for(driver).replace(
        "workers = [0]",
        &format!("workers = [{}]", cores.join(", ")),
    );
    std::fs::write(&cfg, text).unwrap();
    let stats = dir.join("stats.json");
    let gateway = start_gateway(
        &lab,
        &cfg,
        &[
            "--duration".as_ref(),
            "6".as_ref(),
            "--stats-json".as_ref(),
            stats.as_os_str(),
        ],
        false,
    );
    std::thread::sleep(Duration::from_millis(1500));
    if driver == "af_xdp" {
        assert!(xdp_attached(&lab, "ext-g"), "no XDP program on ext-g");
    }
    // `ping` comes from Debian's iputils-ping, which .ci/run installs.
    let ping = |args: &[&str]| {
        let mut v = vec![
            "netns", "exec", &lab.ext, "ping", "-c", "3", "-i", "0.2", "-W", "1",
        ];
        v.extend_from_slice(args);
        let o = Command::new("ip").args(&v).output().unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let plain = ping(&["10.244.2.6"]);
    let vxlan = ping(&["-I", "10.99.0.1", "10.244.1.5"]);
    // UDP between sockets: the external host's through its kernel VXLAN device, decapsulated
    // by the gateway to a socket on the pod host, whose answer (the datagram reversed) the
    // gateway encapsulates back to the VXLAN device.
    let server = Command::new("ip")
        .args(["netns", "exec", &lab.pods, "python3", "-c"])
        .arg(
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
             s.bind(('10.244.1.5', 7777)); s.settimeout(5); d, a = s.recvfrom(100); \
             s.sendto(d[::-1], a)",
        )
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let client = Command::new("ip")
        .args(["netns", "exec", &lab.ext, "python3", "-c"])
        .arg(
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
             s.bind(('10.99.0.1', 0)); s.settimeout(3); \
             s.sendto(b'udp-through-vxlan', ('10.244.1.5', 7777)); print(s.recv(100).decode())",
        )
        .output()
        .unwrap();
    let _ = server.wait_with_output();
    let udp = String::from_utf8_lossy(&client.stdout).to_string();
    assert!(
        gateway.wait_with_output().unwrap().status.success(),
        "gateway failed"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert!(
        plain.contains("3 received"),
        "plain ping through the gateway:\n{plain}\n{json}"
    );
    assert!(
        vxlan.contains("3 received"),
        "ping through kernel VXLAN and the gateway:\n{vxlan}\n{json}"
    );
    assert_eq!(
        udp.trim(),
        "nalxv-hguorht-pdu",
        "UDP through kernel VXLAN and the gateway, both ways: {}\n{json}",
        String::from_utf8_lossy(&client.stderr)
    );
    assert_eq!(json["ports"]["ext"]["decap"], 4, "{json}");
    // Seven forwarded, plus the gateway's one neighbour solicitation for its IPv6 next hop.
    let pods_tx = json["ports"]["pods"]["tx_packets"].as_u64().unwrap();
    assert!((7..=8).contains(&pods_tx), "{json}");
    assert_eq!(json["ports"]["ext"]["tx_packets"], 7, "{json}");
    if driver == "af_xdp" {
        // Frames in place: what came in on one AF_XDP port and went out of the other was sent
        // by descriptor from the worker's shared UMEM; only frames the control thread made
        // (the neighbour solicitation, ARP and ICMP answers) were copied in.
        for port in ["ext", "pods"] {
            let p = &json["ports"][port];
            let (tx, in_place, copied) = (
                p["tx_packets"].as_u64().unwrap(),
                p["tx_in_place"].as_u64().unwrap(),
                p["tx_copied"].as_u64().unwrap(),
            );
            assert_eq!(in_place + copied, tx, "{port}: {json}");
            assert!(
                in_place >= 7,
                "{port}: forwarded frames were copied: {json}"
            );
        }
    } else {
        // AF_PACKET always copies once, into its TX ring: no placement is reported.
        assert!(json["ports"]["pods"]["tx_in_place"].is_null(), "{json}");
    }
    // The only drops: the kernel VXLAN device's own IPv6 housekeeping (MLD reports, router
    // solicitations to ff02::) inside the tunnel, which no stack on the gateway answers.
    let drops = json["drops"].as_object().unwrap();
    assert!(
        drops.keys().all(|k| k == "tunnel_inner_local"),
        "unexpected drops: {json}"
    );
    for dev in ["ext-g", "pod-g"] {
        assert!(!xdp_attached(&lab, dev), "XDP program left on {dev}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    drop(lab);
    assert_eq!(lab_namespaces_left(&id), 0, "namespaces left behind");
}

/// The README's first command: `gateway demo` as root builds the lab, sends plain, VXLAN,
/// GTP-U, IPIP and Geneve traffic, reports, and leaves nothing behind.
#[test]
fn namespace_demo_shows_every_tunnel_kind_and_cleans_up() {
    if !root_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["demo", "--seconds", "5"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.matches("5 received").count()
            - usize::from(stdout.contains("(NDP):       5 packets transmitted, 5 received")),
        2,
        "plain and VXLAN pings:\n{stdout}"
    );
    // IPv6: the first reply may wait for the gateway to solicit the external host.
    assert!(
        stdout.contains("(NDP):       5 packets transmitted, 5 received")
            || stdout.contains("(NDP):       5 packets transmitted, 4 received"),
        "IPv6 ping:\n{stdout}"
    );
    assert!(stdout.contains("sent 30 frames on ext-a"), "{stdout}");
    let ext: Vec<u64> = stdout
        .lines()
        .find(|l| l.starts_with("ext "))
        .unwrap_or_else(|| panic!("{stdout}"))
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect();
    // decap: 5 VXLAN pings + 10 GTP-U + 10 IPIP + 10 Geneve frames.
    assert_eq!(ext[4], 35, "decap column:\n{stdout}");
    assert!(stdout.contains("namespaces removed"), "{stdout}");
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains("gwlab-"),
        "namespaces left behind"
    );
}

/// The local stack on AF_XDP: the external host resolves the gateway by ARP (its static entry
/// removed) and pings it; the pod host does the same on the other port. The gateway runs with
/// no duration, serves its counters on the control socket, and stops on SIGTERM, leaving no
/// XDP program behind.
#[test]
fn af_xdp_gateway_answers_arp_and_ping_serves_counters_and_stops_on_sigterm() {
    let Some((_serial, lab, dir)) = lab_for("arp") else {
        return;
    };
    let cfg = dir.join("gw.toml");
    std::fs::write(&cfg, config_for("af_xdp")).unwrap();
    let sock = dir.join("control.sock");
    let gateway = start_gateway(
        &lab,
        &cfg,
        &["--control-socket".as_ref(), sock.as_os_str()],
        true,
    );
    std::thread::sleep(Duration::from_millis(1500));
    lab.exec(
        &lab.ext,
        &["ip", "neigh", "del", "192.0.2.1", "dev", "ext-a"],
    )
    .unwrap();
    lab.exec(
        &lab.pods,
        &["ip", "neigh", "del", "172.18.0.1", "dev", "pod-b"],
    )
    .unwrap();
    let ping = |ns: &str, dst: &str| {
        let o = Command::new("ip")
            .args([
                "netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", "1", dst,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let ext_ping = ping(&lab.ext, "192.0.2.1");
    let pod_ping = ping(&lab.pods, "172.18.0.1");
    // IPv6: NDP for the gateway's address answered by its local stack, the pod resolved by
    // the gateway's own solicitation, echo to the gateway and forwarding both ways.
    let ext_ping6 = ping(&lab.ext, "fd00:a::1");
    let fwd_ping6 = ping(&lab.ext, "fd00:244::6");
    let neigh = lab
        .exec(
            &lab.ext,
            &["ip", "neigh", "show", "192.0.2.1", "dev", "ext-a"],
        )
        .unwrap();
    let neigh = String::from_utf8_lossy(&neigh.stdout).to_string();
    let live = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["stats", "--socket"])
        .arg(&sock)
        .output()
        .unwrap();
    let live: serde_json::Value = serde_json::from_slice(&live.stdout).unwrap_or_default();
    Command::new("ip")
        .args(["netns", "pids", &lab.gw])
        .output()
        .map(|o| {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                Command::new("kill").args(["-TERM", pid]).status().unwrap();
            }
        })
        .unwrap();
    let out = gateway.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "gateway after SIGTERM: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        ext_ping.contains("3 received"),
        "ping 192.0.2.1:\n{ext_ping}\n{stdout}"
    );
    assert!(
        pod_ping.contains("3 received"),
        "ping 172.18.0.1:\n{pod_ping}\n{stdout}"
    );
    assert!(
        ext_ping6.contains("3 received"),
        "ping fd00:a::1:\n{ext_ping6}\n{stdout}"
    );
    // The first reply may wait for the gateway to solicit the external host.
    assert!(
        fwd_ping6.contains("3 received") || fwd_ping6.contains("2 received"),
        "ping fd00:244::6 through the gateway:\n{fwd_ping6}\n{stdout}"
    );
    assert!(
        neigh.contains(gateway::tools::lab::GW_EXT_MAC),
        "the external host learned the gateway's MAC by ARP: {neigh}"
    );
    assert!(
        live["ports"]["ext"]["local"].as_u64().unwrap_or(0) >= 4,
        "control socket counters: {live}"
    );
    assert!(stdout.contains("port"), "final counters printed: {stdout}");
    for dev in ["ext-g", "pod-g"] {
        assert!(!xdp_attached(&lab, dev), "XDP program left on {dev}");
    }
    assert!(!sock.exists(), "control socket left behind");
    let _ = std::fs::remove_dir_all(&dir);
}

/// No static neighbours: the gateway resolves the pod host and the external host by ARP (they
/// are ordinary kernels answering), forwards both ways, and counts a next hop nobody answers
/// for as `neighbor_unresolved`.
#[test]
fn af_xdp_gateway_resolves_next_hops_by_arp_and_counts_the_unresolved() {
    let Some((_serial, lab, dir)) = lab_for("nd") else {
        return;
    };
    let mut cfg_text = String::new();
    for block in config_for("af_xdp").split("\n\n") {
        if !block.trim_start().starts_with("[[neighbor]]") {
            cfg_text += block;
            cfg_text += "\n\n";
        }
    }
    cfg_text += "[[route]]\nprefix = \"10.250.0.0/16\"\nvia = \"172.18.0.99\"   # nobody\n";
    assert!(!cfg_text.contains("[[neighbor]]"), "{cfg_text}");
    let cfg = dir.join("gw.toml");
    std::fs::write(&cfg, &cfg_text).unwrap();
    let stats = dir.join("stats.json");
    let gateway = start_gateway(
        &lab,
        &cfg,
        &[
            "--duration".as_ref(),
            "7".as_ref(),
            "--stats-json".as_ref(),
            stats.as_os_str(),
        ],
        false,
    );
    std::thread::sleep(Duration::from_millis(1500));
    let ping = |args: &[&str]| {
        let mut v = vec![
            "netns", "exec", &lab.ext, "ping", "-c", "5", "-i", "0.3", "-W", "1",
        ];
        v.extend_from_slice(args);
        let o = Command::new("ip").args(&v).output().unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    lab.exec(
        &lab.ext,
        &["ip", "route", "add", "10.250.0.0/16", "via", "192.0.2.1"],
    )
    .unwrap();
    let to_pod = ping(&["10.244.2.6"]);
    let to_nobody = ping(&["10.250.0.1"]);
    // Through the external host's kernel VXLAN device: the replies are encapsulated toward
    // it, a tunnel peer whose MAC the gateway only knows from ARP.
    let via_vxlan = ping(&["-I", "10.99.0.1", "10.244.1.5"]);
    let pods_neigh = lab
        .exec(&lab.pods, &["ip", "neigh", "show", "dev", "pod-b"])
        .unwrap();
    let pods_neigh = String::from_utf8_lossy(&pods_neigh.stdout).to_string();
    assert!(gateway.wait_with_output().unwrap().status.success());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    // The pod host was asked ahead of time (a configured next hop); the external host is
    // asked when its first reply is dropped, so at most that one is lost.
    let received: u32 = to_pod
        .split(", ")
        .find_map(|s| s.strip_suffix(" received").and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    assert!(received >= 4, "ping 10.244.2.6:\n{to_pod}\n{json}");
    let received: u32 = via_vxlan
        .split(", ")
        .find_map(|s| s.strip_suffix(" received").and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    assert!(
        received >= 4,
        "ping over VXLAN, replies encapsulated toward a peer resolved by ARP:\n{via_vxlan}\n{json}"
    );
    assert!(to_nobody.contains(" 0 received"), "{to_nobody}");
    let unresolved = json["ports"]["ext"]["drops"]["neighbor_unresolved"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        unresolved >= 5,
        "five pings toward an unanswered next hop: {json}"
    );
    // The pod host learned the gateway from its ARP request, as a kernel does.
    assert!(
        pods_neigh.contains("172.18.0.1") && pods_neigh.contains(gateway::tools::lab::GW_PODS_MAC),
        "{pods_neigh}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `pass_to_kernel` on the external AF_XDP port: the gateway's host keeps an address of its
/// own (192.0.2.5 and fd00:a::5, inside the subnet the gateway shares) that its kernel
/// answers, ARP and NDP included, while the gateway still answers for its own addresses and
/// forwards to the pods on the same interface. Either way of getting the XDP program wrong
/// (everything to the gateway, or everything to the kernel) fails one of the pings.
#[test]
fn af_xdp_port_passes_traffic_it_does_not_own_to_the_kernel() {
    if !root_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let id = format!("t{}pass", std::process::id());
    let lab = Lab::build(&id).unwrap();
    // The lab keeps the gateway host's kernel off IPv6; this host wants it on ext-g.
    for a in [
        &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0"][..],
        &["sysctl", "-qw", "net.ipv6.conf.ext-g.disable_ipv6=0"],
        &["ip", "addr", "add", "192.0.2.5/24", "dev", "ext-g"],
        &[
            "ip",
            "-6",
            "addr",
            "add",
            "fd00:a::5/64",
            "dev",
            "ext-g",
            "nodad",
        ],
    ] {
        lab.exec(&lab.gw, a).unwrap();
    }
    let dir = scratch(&id);
    let cfg = dir.join("gw.toml");
    let text = config_for("af_xdp").replacen(
        "interface = \"ext-g\"",
        "interface = \"ext-g\"\npass_to_kernel = true",
        1,
    );
    assert!(text.contains("pass_to_kernel = true"));
    std::fs::write(&cfg, text).unwrap();
    let gateway = start_gateway(&lab, &cfg, &["--duration".as_ref(), "9".as_ref()], true);
    std::thread::sleep(Duration::from_millis(1500));
    // The external host finds the gateway by ARP too (the lab gives it a static entry): the
    // request's target decides where it goes.
    lab.exec(
        &lab.ext,
        &["ip", "neigh", "del", "192.0.2.1", "dev", "ext-a"],
    )
    .unwrap();
    let ping = |dst: &str| {
        let o = Command::new("ip")
            .args([
                "netns", "exec", &lab.ext, "ping", "-c", "3", "-i", "0.2", "-W", "1", dst,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let results: Vec<(&str, String)> = [
        "192.0.2.5",
        "192.0.2.1",
        "10.244.2.6",
        "fd00:a::5",
        "fd00:a::1",
        "fd00:244::6",
    ]
    .into_iter()
    .map(|d| (d, ping(d)))
    .collect();
    let out = gateway.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for (dst, r) in &results {
        // The first IPv6 forwarded echo may wait for the gateway's own solicitation.
        let ok = r.contains("3 received") || (*dst == "fd00:244::6" && r.contains("2 received"));
        assert!(ok, "ping {dst}:\n{r}\n{stdout}");
    }
}

/// Routes changed at run time: `gateway route add` on the control socket makes a prefix the
/// gateway had no route for reachable (ping through it succeeds, where before it was dropped
/// as `no_route`), `gateway route del` takes it away again, and a route through an address in
/// no connected subnet is refused with the reason and exit status 1. A route through a gateway
/// the file never named (a second address of the pod host) gets a new next hop, resolved by
/// ARP, and carries the pings. All while the AF_XDP worker forwards; nothing restarts.
#[test]
fn af_xdp_gateway_adds_and_removes_routes_at_run_time_through_the_control_socket() {
    let Some((_serial, lab, dir)) = lab_for("rt") else {
        return;
    };
    let cfg = dir.join("gw.toml");
    std::fs::write(&cfg, config_for("af_xdp")).unwrap();
    let sock = dir.join("control.sock");
    let stats = dir.join("stats.json");
    let gateway = start_gateway(
        &lab,
        &cfg,
        &[
            "--duration".as_ref(),
            "12".as_ref(),
            "--control-socket".as_ref(),
            sock.as_os_str(),
            "--stats-json".as_ref(),
            stats.as_os_str(),
        ],
        false,
    );
    add_unrouted_pod(&lab);
    std::thread::sleep(Duration::from_millis(1500));
    let ping = || ping_from_ext(&lab, "3", "0.2", "10.77.0.5");
    let route = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .arg("route")
            .arg("--socket")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).to_string(),
        )
    };
    let before = ping();
    let added = route(&["add", "10.77.0.0/16", "via", "172.18.0.2"]);
    let with_route = ping();
    let looked_up = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["routes", "--socket"])
        .arg(&sock)
        .args(["get", "10.77.0.5"])
        .output()
        .unwrap();
    let looked_up = String::from_utf8_lossy(&looked_up.stdout).to_string();
    let refused = route(&["add", "10.78.0.0/16", "via", "198.51.100.9"]);
    let removed = route(&["del", "10.77.0.0/16"]);
    let after = ping();
    lab.exec(
        &lab.pods,
        &["ip", "addr", "add", "172.18.0.3/16", "dev", "pod-b"],
    )
    .unwrap();
    let added_new_hop = route(&["add", "10.77.0.0/16", "via", "172.18.0.3"]);
    // The first ping may go while ARP resolves the new next hop.
    let through_new_hop = ping_from_ext(&lab, "5", "0.2", "10.77.0.5");
    assert!(gateway.wait_with_output().unwrap().status.success());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert!(before.contains(" 0 received"), "no route yet:\n{before}");
    assert_eq!(added, (true, "ok: added 10.77.0.0/16\n".to_string()));
    assert_eq!(
        looked_up,
        "10.77.0.0/16 dev pods mac 02:00:00:00:02:01 (static) origin=gateway route\n"
    );
    assert!(
        with_route.contains("3 received"),
        "after route add:\n{with_route}\n{json}"
    );
    assert!(
        !refused.0 && refused.1.contains("198.51.100.9 is in no connected subnet"),
        "{refused:?}"
    );
    assert_eq!(removed, (true, "ok: removed 10.77.0.0/16\n".to_string()));
    assert!(after.contains(" 0 received"), "after route del:\n{after}");
    assert_eq!(
        added_new_hop,
        (true, "ok: added 10.77.0.0/16\n".to_string())
    );
    assert!(
        through_new_hop.contains(" 4 received") || through_new_hop.contains(" 5 received"),
        "through a next hop the file never named:\n{through_new_hop}\n{json}"
    );
    let no_route = json["ports"]["ext"]["drops"]["no_route"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        no_route >= 6,
        "three pings before the route and three after it, dropped as no_route: {json}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `gateway reload` while an AF_XDP worker forwards a steady ping stream: a file with a
/// problem is refused with its line and changes nothing, a good one adds a route that
/// forwards at once, a port change is refused as needing a restart, SIGHUP reloads too, and
/// the stream loses no packet across all of it.
#[test]
fn af_xdp_gateway_reloads_its_configuration_without_losing_packets() {
    let Some((_serial, lab, dir)) = lab_for("rl") else {
        return;
    };
    let cfg = dir.join("gw.toml");
    let base = config_for("af_xdp");
    let added = format!("{base}\n[[route]]\nprefix = \"10.77.0.0/16\"\nvia = \"172.18.0.2\"\n");
    let bad = format!("{base}\n[[route]]\nprefix = \"10.77.0.0/33\"\nvia = \"172.18.0.2\"\n");
    let bad_line = bad.lines().position(|l| l.contains("/33")).unwrap() + 1;
    std::fs::write(&cfg, &base).unwrap();
    let sock = dir.join("control.sock");
    let stats = dir.join("stats.json");
    let gateway = start_gateway(
        &lab,
        &cfg,
        &[
            "--duration".as_ref(),
            "12".as_ref(),
            "--control-socket".as_ref(),
            sock.as_os_str(),
            "--stats-json".as_ref(),
            stats.as_os_str(),
        ],
        true,
    );
    add_unrouted_pod(&lab);
    std::thread::sleep(Duration::from_millis(1500));
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).to_string();
    let reload = || {
        let o = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["reload", "--socket"])
            .arg(&sock)
            .output()
            .unwrap();
        (o.status.success(), text(&o))
    };
    let before = ping_from_ext(&lab, "3", "0.2", "10.77.0.5");
    // A steady stream to the pods for the whole sequence of reloads (about 3 s).
    let stream = Command::new("ip")
        .args([
            "netns", "exec", &lab.ext, "ping", "-q", "-c", "300", "-i", "0.01",
        ])
        .args(["-W", "1", "10.244.1.5"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&cfg, &bad).unwrap();
    let refused = reload();
    std::fs::write(&cfg, &added).unwrap();
    let reloaded = reload();
    let again = reload();
    let ext_addresses = "addresses = [\"192.0.2.1/24\", \"fd00:a::1/64\"]";
    assert!(added.contains(ext_addresses));
    let mtu = format!("{ext_addresses}\nmtu = 1400");
    std::fs::write(&cfg, added.replace(ext_addresses, &mtu)).unwrap();
    let port_change = reload();
    std::fs::write(&cfg, &added).unwrap();
    let with_route = ping_from_ext(&lab, "3", "0.2", "10.77.0.5");
    let stream = stream.wait_with_output().unwrap();
    // SIGHUP: back to the file without the route.
    std::fs::write(&cfg, &base).unwrap();
    let pid = gateway.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(300));
    let after_hup = ping_from_ext(&lab, "3", "0.2", "10.77.0.5");
    let out = gateway.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();

    assert!(before.contains(" 0 received"), "no route yet:\n{before}");
    assert!(!refused.0, "{refused:?}");
    assert!(
        refused.1.contains(&format!("gw.toml:{bad_line}:"))
            && refused
                .1
                .contains("still running the last good configuration"),
        "the bad file's line and the last good configuration kept: {refused:?}"
    );
    assert!(
        reloaded.0 && reloaded.1.starts_with("ok: reloaded"),
        "{reloaded:?}"
    );
    assert!(again.0, "{again:?}");
    assert!(
        !port_change.0 && port_change.1.contains("port[0] (ext) changed: restart"),
        "{port_change:?}"
    );
    assert!(
        with_route.contains("3 received"),
        "after the reload:\n{with_route}\n{json}"
    );
    let stream = text(&stream);
    assert!(
        stream.contains("300 received"),
        "the stream across four reloads lost packets:\n{stream}\n{json}"
    );
    assert!(
        stderr.contains("event=reload trigger=sighup result=ok"),
        "{stderr}"
    );
    assert!(
        after_hup.contains(" 0 received"),
        "route gone after SIGHUP:\n{after_hup}"
    );
    let no_route = json["ports"]["ext"]["drops"]["no_route"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        no_route >= 6,
        "pings without the route dropped as no_route: {json}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The control socket checks who connects and serves clients side by side: created 0660 with
/// `control_group`'s group; with the file opened to everyone, `SO_PEERCRED` still refuses a
/// user outside the group (counted, logged) and lets in a member by primary or supplementary
/// group. A reload of a file of 200,000 routes is built off the control thread: `gateway
/// stats` is answered while it builds, and the reload's answer comes when it is in force.
#[test]
fn af_packet_control_socket_checks_its_peers_and_answers_during_a_long_reload() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some((_serial, lab, dir)) = lab_for("ctl") else {
        return;
    };
    let cfg = dir.join("gw.toml");
    let base =
        config_for("af_packet").replace("[gateway]\n", "[gateway]\ncontrol_group = \"4242\"\n");
    std::fs::write(&cfg, &base).unwrap();
    let sock = dir.join("control.sock");
    let gateway = start_gateway(
        &lab,
        &cfg,
        &[
            "--duration".as_ref(),
            "60".as_ref(),
            "--control-socket".as_ref(),
            sock.as_os_str(),
            "--log-format".as_ref(),
            "json".as_ref(),
        ],
        true,
    );
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(std::time::Instant::now() < end, "no control socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    let meta = std::fs::metadata(&sock).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), 4242);
    // As another user, through setpriv (util-linux).
    let stats_as = |ids: &[&str]| {
        let o = Command::new("setpriv")
            .args(ids)
            .arg(env!("CARGO_BIN_EXE_gateway"))
            .args(["stats", "--socket"])
            .arg(&sock)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
    };
    let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    let by_mode = stats_as(&nobody);
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let by_cred = stats_as(&nobody);
    let primary = stats_as(&["--reuid=65534", "--regid=4242", "--clear-groups"]);
    let supplementary = stats_as(&["--reuid=65534", "--regid=65534", "--groups=4242"]);

    // A long reload, and the counters asked for while it builds.
    let mut big = base.clone();
    for i in 0..200_000u32 {
        big.push_str(&format!(
            "\n[[route]]\nprefix = \"11.{}.{}.{}/32\"\nvia = \"172.18.0.2\"\n",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        ));
    }
    std::fs::write(&cfg, &big).unwrap();
    let reload = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["reload", "--socket"])
        .arg(&sock)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let reload_pid = reload.id();
    // Counters answered while the gateway says the reload is building.
    let mut during = 0;
    let mut last = serde_json::Value::Null;
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["stats", "--socket"])
            .arg(&sock)
            .output()
            .unwrap();
        if let Ok(j) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
            during += u32::from(j["control"]["reload_building"] == true);
            last = j;
        }
        let exited = std::fs::read_to_string(format!("/proc/{reload_pid}/stat"))
            .map_or(true, |s| s.contains(") Z "));
        if exited {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let reloaded = reload.wait_with_output().unwrap();
    let reloaded = String::from_utf8_lossy(&reloaded.stdout).to_string();
    let _ = Command::new("kill")
        .args(["-TERM", &gateway.id().to_string()])
        .status();
    let out = gateway.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);

    assert!(by_mode.contains("Permission denied"), "{by_mode}");
    assert!(by_cred.contains("error: permission denied"), "{by_cred}");
    assert!(primary.contains("\"ports\""), "{primary}");
    assert!(supplementary.contains("\"ports\""), "{supplementary}");
    // Events as JSON, one object a line, every line of stderr.
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let has = |event: &str, key: &str, value: &str| {
        events
            .iter()
            .any(|e| e["event"] == event && e[key] == value && e["ts"].is_string())
    };
    assert!(has("start", "name", "lab"), "{stderr}");
    assert!(
        has("port_open", "port", "ext") || has("start", "ports", "2"),
        "{stderr}"
    );
    assert!(has("control_refused", "uid", "65534"), "{stderr}");
    assert!(has("reload", "result", "ok"), "{stderr}");
    assert!(has("stop", "reason", "signal"), "{stderr}");
    assert_eq!(last["control"]["refused"], 1, "{last}");
    assert!(
        reloaded.starts_with("ok: reloaded")
            && reloaded.contains(&format!(
                "{} routes",
                base.matches("[[route]]").count() + 200_000
            )),
        "{reloaded}\n{stderr}"
    );
    assert!(
        during >= 1,
        "no stats answer came while the reload was building"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Link faults on AF_XDP: the pods interface goes down while pings cross the gateway. The
/// frames it cannot send are counted as `link_down` and the port says so once; when the link
/// comes back, forwarding resumes. Then the interface is removed: the gateway says it is gone
/// and goes on with its other port (it still answers pings to its external address and its
/// control socket), and stops cleanly on SIGTERM.
#[test]
fn af_xdp_port_counts_a_link_down_resumes_and_survives_a_removed_interface() {
    link_faults("af_xdp", "lnk");
}

/// The same link faults on the AF_PACKET fallback.
#[test]
fn af_packet_port_counts_a_link_down_resumes_and_survives_a_removed_interface() {
    link_faults("af_packet", "lnp");
}

fn link_faults(driver: &str, tag: &str) {
    let Some((_serial, lab, dir)) = lab_for(tag) else {
        return;
    };
    let cfg = dir.join("gw.toml");
    std::fs::write(&cfg, config_for(driver)).unwrap();
    let sock = dir.join("control.sock");
    let gateway = start_gateway(
        &lab,
        &cfg,
        &["--control-socket".as_ref(), sock.as_os_str()],
        true,
    );
    std::thread::sleep(Duration::from_millis(1500));
    let stats = || stats_of(&sock);
    let link = |state: &str| {
        lab.exec(&lab.gw, &["ip", "link", "set", "pod-g", state])
            .unwrap();
    };
    let before = ping_from_ext(&lab, "3", "0.2", "10.244.1.5");
    link("down");
    // Past the port's next look at its interface (every half second).
    std::thread::sleep(Duration::from_millis(1200));
    let down = ping_from_ext(&lab, "5", "0.2", "10.244.1.5");
    let while_down = stats();
    link("up");
    std::thread::sleep(Duration::from_millis(1200));
    // The pod host's side waits for the carrier too.
    let mut after = String::new();
    for _ in 0..10 {
        after = ping_from_ext(&lab, "3", "0.2", "10.244.1.5");
        if after.contains("3 received") {
            break;
        }
    }
    lab.exec(&lab.gw, &["ip", "link", "del", "pod-g"]).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    // The local stack may first resolve the external host (smoltcp drops the packet that
    // made it ask): a warm-up ping.
    let _ = ping_from_ext(&lab, "1", "0.2", "192.0.2.1");
    let to_gateway = ping_from_ext(&lab, "3", "0.2", "192.0.2.1");
    let gone = stats();
    let _ = Command::new("kill")
        .args(["-TERM", &gateway.id().to_string()])
        .status();
    let out = gateway.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);

    assert!(before.contains("3 received"), "before:\n{before}");
    assert!(down.contains(" 0 received"), "while down:\n{down}");
    let link_down = while_down["ports"]["ext"]["drops"]["link_down"]
        .as_u64()
        .unwrap_or(0);
    assert!(link_down >= 5, "pings to the down port: {while_down}");
    assert_eq!(
        while_down["ports"]["ext"]["drops"]["tx_full"],
        serde_json::Value::Null,
        "{while_down}"
    );
    assert!(
        stderr.contains("event=link_down port=pod-g queue=0"),
        "{stderr}"
    );
    assert!(
        stderr.contains("event=link_up port=pod-g queue=0"),
        "{stderr}"
    );
    assert!(
        after.contains("3 received"),
        "after the link came back:\n{after}"
    );
    assert!(
        stderr.contains("event=link_removed port=pod-g queue=0"),
        "{stderr}"
    );
    assert!(
        to_gateway.contains("3 received"),
        "the external port goes on:\n{to_gateway}"
    );
    assert!(gone["ports"].is_object(), "the control socket goes on");
    assert!(out.status.success(), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `promtool query instant` of `expr` against the Prometheus at 127.0.0.1:PORT in namespace
/// `ns`: the value of the first sample, if any.
fn prometheus_value(ns: &str, port: u16, expr: &str) -> Option<u64> {
    let o = Command::new("ip")
        .args(["netns", "exec", ns, "promtool", "query", "instant"])
        .arg(format!("http://127.0.0.1:{port}"))
        .arg(expr)
        .output()
        .ok()?;
    // `{labels} => VALUE @[TIMESTAMP]`
    let text = String::from_utf8_lossy(&o.stdout);
    let v = text.split("=> ").nth(1)?.split_whitespace().next()?;
    v.parse::<f64>().ok().map(|f| f as u64)
}

/// Prometheus metrics, scraped by a real Prometheus server (Debian's `prometheus`) every
/// second from a gateway on AF_XDP: once pings have crossed it and some were dropped as
/// `no_route`, Prometheus's HTTP API gives the same received-frame and drop counts as
/// `gateway stats`, and `promtool check metrics` accepts a scrape.
#[test]
fn af_xdp_gateway_metrics_are_scraped_by_prometheus() {
    if !root_or_skip() {
        return;
    }
    let missing: Vec<&str> = ["prometheus", "promtool", "curl"]
        .into_iter()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if !missing.is_empty() {
        gateway::skipped(&format!(
            "{missing:?} not installed (apt-get install prometheus curl)"
        ));
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let id = format!("t{}prom", std::process::id());
    let lab = Lab::build(&id).unwrap();
    let dir = scratch(&id);
    let _ = std::fs::remove_dir_all(dir.join("tsdb"));
    let cfg = dir.join("gw.toml");
    std::fs::write(
        &cfg,
        config_for("af_xdp") + "\n[metrics]\nlisten = \"127.0.0.1:9108\"\n",
    )
    .unwrap();
    let sock = dir.join("control.sock");
    let gateway = start_gateway(
        &lab,
        &cfg,
        &[
            "--duration".as_ref(),
            "40".as_ref(),
            "--control-socket".as_ref(),
            sock.as_os_str(),
        ],
        true,
    );
    let prom_cfg = dir.join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: gateway\n    static_configs:\n      - targets: ['127.0.0.1:9108']\n",
    )
    .unwrap();
    let mut prometheus = Command::new("ip")
        .args(["netns", "exec", &lab.gw, "prometheus"])
        .arg(format!("--config.file={}", prom_cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .args(["--web.listen-address=127.0.0.1:9090", "--log.level=warn"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    add_unrouted_pod(&lab);
    let forwarded = ping_from_ext(&lab, "5", "0.2", "10.244.1.5");
    let dropped = ping_from_ext(&lab, "3", "0.2", "10.77.0.5");
    let scrape = Command::new("ip")
        .args(["netns", "exec", &lab.gw, "sh", "-c"])
        .arg("curl -sf http://127.0.0.1:9108/metrics | tee /dev/stderr | promtool check metrics")
        .output()
        .unwrap();
    // Prometheus's view and the control socket's agree once a scrape follows the traffic
    // (the hosts' own ARP and NDP may still move the counters: asked again until they agree).
    let stats = || stats_of(&sock);
    let mut seen = Vec::new();
    let mut agreed = false;
    for _ in 0..30 {
        let before = stats();
        let rx = prometheus_value(&lab.gw, 9090, "sum(gateway_rx_packets_total{port=\"ext\"})");
        let no_route = prometheus_value(
            &lab.gw,
            9090,
            "gateway_drops_total{port=\"ext\",reason=\"no_route\"}",
        );
        let after = stats();
        let want_rx = before["ports"]["ext"]["rx_packets"].as_u64();
        let want_drops = before["ports"]["ext"]["drops"]["no_route"].as_u64();
        seen.push((rx, want_rx, no_route, want_drops));
        if before["ports"] == after["ports"]
            && rx.is_some()
            && rx == want_rx
            && no_route == want_drops
        {
            agreed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    let generation = prometheus_value(&lab.gw, 9090, "gateway_config_generation");
    // Every query of the Grafana dashboard gives series from the real Prometheus (a rate needs
    // two scrapes in its window: asked again for a while).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../docker/grafana/gateway-dashboard.json")).unwrap();
    let mut empty_panels = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m");
            let query = || {
                Command::new("ip")
                    .args(["netns", "exec", &lab.gw, "promtool", "query", "instant"])
                    .arg("http://127.0.0.1:9090")
                    .arg(&expr)
                    .output()
                    .unwrap()
            };
            let answered = |o: &std::process::Output| {
                o.status.success() && !String::from_utf8_lossy(&o.stdout).trim().is_empty()
            };
            let mut o = query();
            while !answered(&o) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(500));
                o = query();
            }
            if !answered(&o) {
                empty_panels.push(format!(
                    "{expr}: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
        }
    }
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let _ = Command::new("kill")
        .args(["-TERM", &gateway.id().to_string()])
        .status();
    let out = gateway.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);

    assert!(forwarded.contains("5 received"), "{forwarded}");
    assert!(dropped.contains(" 0 received"), "{dropped}");
    assert!(
        scrape.status.success(),
        "promtool check metrics: {}\n{}",
        String::from_utf8_lossy(&scrape.stdout),
        String::from_utf8_lossy(&scrape.stderr)
    );
    assert!(
        agreed,
        "Prometheus (rx, no_route) never agreed with gateway stats: {seen:?}\n{stderr}"
    );
    assert!(seen.last().unwrap().3 >= Some(3), "{seen:?}");
    assert_eq!(generation, Some(1));
    assert!(
        empty_panels.is_empty(),
        "dashboard queries with no series: {empty_panels:#?}"
    );
    assert!(
        stderr.contains("event=metrics_listen url=http://127.0.0.1:9108/metrics"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An AF_PACKET port hears its own interface only, and a socket joining a fanout group takes
/// no frame the group's other sockets take too: both while another interface of the namespace
/// and its own interface are flooded with numbered frames, opened again and again (the ring's
/// set-up before `bind` is a window of milliseconds).
#[test]
fn af_packet_ports_hear_their_interface_only_and_join_a_fanout_group_without_duplicates() {
    use datapath::pipeline::batch::Batch;
    use datapath::port::af_packet::AfPacketPort;
    use datapath::port::ethtool::in_netns;
    use datapath::port::Port;
    use datapath::stats::PortStats;
    let Some((_serial, lab, dir)) = lab_for("fan") else {
        return;
    };
    // Numbered frames from the external host to the gateway's MAC, 8 bytes of sequence
    // number after a private EtherType, as fast as a raw socket sends them.
    let flood = Command::new("ip")
        .args(["netns", "exec", &lab.ext, "python3", "-c"])
        .arg(
            "import socket, struct, time\n\
             s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
             s.bind(('ext-a', 0))\n\
             h = bytes.fromhex('020000000001' '020000000099' '88b5')\n\
             n, end = 0, time.monotonic() + 30\n\
             while time.monotonic() < end:\n    n += 1\n    \
             try: s.send(h + struct.pack('>Q', n) + bytes(50))\n    \
             except OSError as e:\n        \
             if e.errno not in (11, 105): raise\n",
        )
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let seq = |b: &[u8]| -> Option<u64> {
        (b.len() >= 22 && b[12..14] == [0x88, 0xb5])
            .then(|| u64::from_be_bytes(b[14..22].try_into().unwrap()))
    };
    let result = in_netns(&lab.gw, move || {
        let stats = PortStats::default();
        let mut batch = Batch::new();
        let mut first = AfPacketPort::open_fanout("ext-g", Some(4242))?;
        let (mut strays, mut dups, mut heard) = (0u64, 0u64, 0u64);
        for _ in 0..100 {
            let mut other = AfPacketPort::open_fanout("pod-g", None)?;
            let mut second = AfPacketPort::open_fanout("ext-g", Some(4242))?;
            let mut seen = std::collections::HashSet::new();
            let until = std::time::Instant::now() + Duration::from_millis(3);
            while std::time::Instant::now() < until {
                for port in [&mut first, &mut second] {
                    let n = port.rx(&mut batch, 32, &stats);
                    for b in &batch.packets()[..n] {
                        if let Some(s) = seq(b.frame()) {
                            heard += 1;
                            if !seen.insert(s) {
                                dups += 1;
                            }
                        }
                    }
                }
                let n = other.rx(&mut batch, 32, &stats);
                strays += batch.packets()[..n]
                    .iter()
                    .filter(|b| seq(b.frame()).is_some())
                    .count() as u64;
            }
        }
        Ok((strays, dups, heard))
    });
    let mut flood = flood;
    let _ = flood.kill();
    let _ = flood.wait();
    let (strays, dups, heard) = result.unwrap();
    eprintln!("heard {heard}, strays {strays}, duplicates {dups}");
    assert!(heard > 1000, "the flood did not arrive: {heard} frames");
    assert_eq!(strays, 0, "frames of ext-g received on pod-g's port");
    assert_eq!(
        dups, 0,
        "frames received twice by one fanout group ({heard} in all)"
    );
    let _ = std::fs::remove_dir_all(&dir);
    drop(lab);
}

/// `--reload-on-change` with the configuration laid out as a Kubernetes ConfigMap volume lays it
/// out (`gw.toml` -> `..data/gw.toml`, `..data` a symlink swapped atomically to a new directory
/// on update): the swap reloads, a route added in the new file forwards, and the event log
/// names the trigger.
#[test]
fn af_xdp_gateway_reloads_when_its_configmap_file_is_swapped() {
    let Some((_serial, lab, dir)) = lab_for("cm") else {
        return;
    };
    let publish = |name: &str, text: &str| {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("gw.toml"), text).unwrap();
        let tmp = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(name, &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
    };
    publish("..v1", &config_for("af_xdp"));
    let cfg = dir.join("gw.toml");
    std::os::unix::fs::symlink("..data/gw.toml", &cfg).unwrap();
    let gateway = start_gateway(
        &lab,
        &cfg,
        &[
            "--duration".as_ref(),
            "7".as_ref(),
            "--reload-on-change".as_ref(),
        ],
        true,
    );
    add_unrouted_pod(&lab);
    std::thread::sleep(Duration::from_millis(1500));
    let before = ping_from_ext(&lab, "2", "0.2", "10.77.0.5");
    publish(
        "..v2",
        &format!(
            "{}\n[[route]]\nprefix = \"10.77.0.0/16\"\nvia = \"172.18.0.2\"\n",
            config_for("af_xdp")
        ),
    );
    std::thread::sleep(Duration::from_millis(2500));
    let after = ping_from_ext(&lab, "3", "0.2", "10.77.0.5");
    let out = gateway.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(before.contains(" 0 received"), "no route yet:\n{before}");
    assert!(
        after.contains("3 received"),
        "after the swap:\n{after}\n{log}"
    );
    let reloads: Vec<_> = log.lines().filter(|l| l.contains("event=reload")).collect();
    assert_eq!(reloads.len(), 1, "one reload, for the one swap:\n{log}");
    assert!(
        reloads[0].contains("trigger=file_changed") && reloads[0].contains("result=ok"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The frames of the trace test, as the external host (`from_ext`) or the pod host sends them:
/// a GTP-U, a VXLAN, an IPIP and a plain packet to a pod, one to an unrouted address, a G-PDU
/// for an unknown TEID, a packet out of TTL (answered with an ICMP error), one with a broken
/// IPv4 checksum; and a reply from a pod to a UE, encapsulated in GTP-U.
fn trace_frames(from_ext: bool) -> Vec<Vec<u8>> {
    use datapath::craft::{
        gtpu_payload, ipv4_frame, ipv4_udp_frame, udp_frame, vxlan_payload, UdpSpec,
    };
    let (ext, gw_ext, pod, gw_pods) = (
        [2, 0, 0, 0, 0, 0x99],
        [2, 0, 0, 0, 0, 1],
        [2, 0, 0, 0, 2, 1],
        [2, 0, 0, 0, 1, 1],
    );
    let ip = |a: [u8; 4]| u32::from_be_bytes(a);
    let udp = |src: &str, dst: &str, ttl| {
        udp_frame(&UdpSpec {
            src_mac: ext,
            dst_mac: gw_ext,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            src_port: 1000,
            dst_port: 53,
            ttl,
            payload_len: 18,
        })
    };
    if !from_ext {
        let mut f = udp("10.244.1.5", "10.46.0.7", 64);
        f[..6].copy_from_slice(&gw_pods);
        f[6..12].copy_from_slice(&pod);
        return vec![f];
    }
    let inner = |src: &str| udp(src, "10.244.1.5", 64)[14..].to_vec();
    let gw = (ip([192, 0, 2, 1]), 2152);
    let peer = (ip([192, 0, 2, 10]), 2152);
    let mut inner_eth = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 9, 9, 8, 0];
    inner_eth.extend_from_slice(&inner("10.99.0.1"));
    let mut bad_sum = udp("192.0.2.10", "10.244.1.5", 64);
    bad_sum[24] ^= 0xff;
    vec![
        ipv4_udp_frame(
            ext,
            gw_ext,
            peer,
            gw,
            &gtpu_payload(0x1001, Some(9), &inner("10.46.0.7")),
        ),
        ipv4_udp_frame(
            ext,
            gw_ext,
            (peer.0, 40000),
            (gw.0, 4789),
            &vxlan_payload(4096, &inner_eth),
        ),
        ipv4_frame(ext, gw_ext, peer.0, gw.0, 4, &inner("10.99.0.1")),
        udp("192.0.2.10", "10.244.1.5", 64),
        udp("192.0.2.10", "10.77.0.5", 64),
        ipv4_udp_frame(
            ext,
            gw_ext,
            peer,
            gw,
            &gtpu_payload(0x1003, None, &inner("10.46.0.7")),
        ),
        udp("192.0.2.10", "10.244.1.5", 1),
        bad_sum,
    ]
}

/// `gateway trace` on an AF_XDP gateway while the external host and a pod replay crafted
/// frames: each record shows the stages the packet went through and its outcome, and
/// `gateway explain` on the same frames (offline from the configuration, and through the
/// running gateway's socket) gives the same records, field by field.
#[test]
fn af_xdp_gateway_traces_packets_and_explain_gives_the_same_records() {
    let Some((_serial, lab, dir)) = lab_for("tr") else {
        return;
    };
    let cfg = dir.join("gw.toml");
    std::fs::write(&cfg, config_for("af_xdp")).unwrap();
    let sock = dir.join("control.sock");
    let mut gateway = start_gateway(
        &lab,
        &cfg,
        &[
            "--duration".as_ref(),
            "20".as_ref(),
            "--control-socket".as_ref(),
            sock.as_os_str(),
        ],
        false,
    );
    let pcaps: Vec<std::path::PathBuf> = [true, false]
        .iter()
        .map(|&from_ext| {
            let path = dir.join(if from_ext { "ext.pcap" } else { "pods.pcap" });
            let mut w = datapath::port::pcap::PcapWriter::create(&path).unwrap();
            for (i, f) in trace_frames(from_ext).iter().enumerate() {
                w.write(f, i as u64 * 1000).unwrap();
            }
            w.flush().unwrap();
            path
        })
        .collect();
    let wanted = trace_frames(true).len() + trace_frames(false).len();
    // The external host's own VXLAN device would add ARP and neighbour discovery of its own.
    lab.exec(&lab.ext, &["ip", "link", "set", "vx0", "down"])
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let trace = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "trace",
            "--json",
            "--timeout",
            "10",
            "--filter",
            "proto udp and src 0.0.0.0/0",
        ])
        .args(["--count", &(wanted + 1).to_string(), "--socket"])
        .arg(&sock)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for (ns, dev, pcap) in [
        (&lab.ext, "ext-a", &pcaps[0]),
        (&lab.pods, "pod-b", &pcaps[1]),
    ] {
        let o = Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_gateway"), "replay"])
            .args(["--interface", dev, "--pcap"])
            .arg(pcap)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::thread::sleep(Duration::from_millis(300));
    }
    let traced = trace.wait_with_output().unwrap();
    let explain = |source: &[&std::ffi::OsStr], port: &str, pcap: &std::path::Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .arg("explain")
            .args(source)
            .args(["--json", "--port", port, "--pcap"])
            .arg(pcap)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let mut live = explain(&["--socket".as_ref(), sock.as_os_str()], "ext", &pcaps[0]);
    live += &explain(&["--socket".as_ref(), sock.as_os_str()], "pods", &pcaps[1]);
    let mut offline = explain(&["--config".as_ref(), cfg.as_os_str()], "ext", &pcaps[0]);
    offline += &explain(&["--config".as_ref(), cfg.as_os_str()], "pods", &pcaps[1]);
    // A route added at run time is in the running gateway's snapshot, and so in its explain.
    let added = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["route", "--socket"])
        .arg(&sock)
        .args(["add", "10.77.0.0/16", "via", "172.18.0.2"])
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stdout)
    );
    let unrouted_hex: String = trace_frames(true)[4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let explain_hex = |source: &[&std::ffi::OsStr]| -> serde_json::Value {
        let o = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .arg("explain")
            .args(source)
            .args(["--json", "--port", "ext", "--hex", &unrouted_hex])
            .output()
            .unwrap();
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let now_routed = explain_hex(&["--socket".as_ref(), sock.as_os_str()]);
    let from_file = explain_hex(&["--config".as_ref(), cfg.as_os_str()]);
    let _ = Command::new("kill").arg(gateway.id().to_string()).status();
    let _ = gateway.wait();

    let records = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["worker"] = serde_json::Value::Null;
                v
            })
            .collect()
    };
    let traced_text = String::from_utf8_lossy(&traced.stdout).to_string();
    let (traced, live, offline) = (records(&traced_text), records(&live), records(&offline));
    assert_eq!(
        traced.len(),
        wanted,
        "the trace kept every frame and nothing else:\n{traced_text}"
    );
    for (i, ((t, l), o)) in traced.iter().zip(&live).zip(&offline).enumerate() {
        assert_eq!(t, l, "frame {i}: trace and explain --socket differ");
        assert_eq!(t, o, "frame {i}: trace and explain --config differ");
    }
    // What each record says.
    let result = |r: &serde_json::Value| {
        format!(
            "{} {} {}",
            r["result"]["action"].as_str().unwrap_or("-"),
            r["result"]["port"].as_str().unwrap_or("-"),
            r["result"]["drop"].as_str().unwrap_or("-")
        )
    };
    let got: Vec<String> = traced.iter().map(result).collect();
    assert_eq!(
        got,
        [
            "tx pods -",
            "tx pods -",
            "tx pods -",
            "tx pods -",
            "drop - no_route",
            "drop - gtpu_unknown_teid",
            "icmp_error ext ttl_expired",
            "drop - ipv4_bad_checksum",
            "tx ext -",
        ]
    );
    for (i, kind) in ["gtpu", "vxlan", "ipip"].iter().enumerate() {
        let r = &traced[i];
        assert_eq!(r["decap"]["kind"], *kind, "{r}");
        assert_eq!(r["decap"]["peer"], "192.0.2.10", "{r}");
        assert_eq!(r["inner"]["dst"], "10.244.1.5", "{r}");
        assert_eq!(r["route"]["prefix"], "10.244.0.0/16", "{r}");
        assert_eq!(r["rewrite"]["dst_mac"], "02:00:00:00:02:01", "{r}");
        assert_eq!(r["rewrite"]["ip"]["ttl"], 63, "{r}");
    }
    assert_eq!(traced[0]["decap"]["teid"], "0x1001");
    assert_eq!(traced[1]["decap"]["vni"], 4096);
    assert!(traced[3]["decap"].is_null() && traced[3]["classify"]["tunnel_endpoint"] == false);
    assert!(traced[4]["route"]["prefix"].is_null());
    assert_eq!(traced[5]["decap"]["verdict"], "drop gtpu_unknown_teid");
    assert!(
        traced[5]["route"].is_null(),
        "no route stage after a decap drop"
    );
    assert_eq!(traced[7]["classify"]["verdict"], "drop ipv4_bad_checksum");
    assert_eq!(
        now_routed["route"]["prefix"], "10.77.0.0/16",
        "{now_routed}"
    );
    assert_eq!(
        now_routed["route"]["origin"], "gateway route",
        "{now_routed}"
    );
    assert_eq!(now_routed["result"]["action"], "tx", "{now_routed}");
    assert_eq!(from_file["result"]["drop"], "no_route", "{from_file}");
    assert!(traced[7]["decap"].is_null() && traced[7]["route"].is_null());
    let encap = &traced[8];
    assert_eq!(encap["route"]["prefix"], "10.46.0.0/16", "{encap}");
    assert!(
        encap["rewrite"]["encap"]
            .as_str()
            .unwrap()
            .starts_with("tunnel gtpu teid 0x2001 qfi 9 to 192.0.2.10"),
        "{encap}"
    );
    assert_eq!(encap["rewrite"]["ip"]["dst"], "192.0.2.10");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `[[route_source]]`: routes written into kernel table 100 of the gateway's namespace (as
/// BIRD would) are mirrored while the gateway forwards. A route with a next hop, a multipath
/// route, a blackhole; a route whose next hop is outside every connected subnet and one to the
/// gateway's own address are refused and counted while the rest go on; a route of another
/// table is left alone; flushing the table takes its routes away, and the file's stay.
#[test]
fn af_xdp_gateway_mirrors_a_kernel_route_table_live() {
    let Some((_serial, lab, dir)) = lab_for("krt") else {
        return;
    };
    let cfg = dir.join("gw.toml");
    let text = format!(
        "{}\n[[route_source]]\nkind = \"kernel\"\ntable = 100\n",
        config_for("af_xdp")
    );
    std::fs::write(&cfg, text).unwrap();
    let sock = dir.join("control.sock");
    add_unrouted_pod(&lab);
    lab.exec(
        &lab.pods,
        &["ip", "addr", "add", "172.18.0.3/16", "dev", "pod-b"],
    )
    .unwrap();
    let ip = |args: &str| {
        let mut v = vec!["ip"];
        v.extend(args.split_whitespace());
        lab.exec(&lab.gw, &v).unwrap();
    };
    // One route before the gateway starts: the first dump must find it.
    ip("route add 10.77.1.0/24 via 172.18.0.2 dev pod-g onlink table 100");
    let gateway = start_gateway(
        &lab,
        &cfg,
        &[
            "--duration".as_ref(),
            "14".as_ref(),
            "--control-socket".as_ref(),
            sock.as_os_str(),
        ],
        true,
    );
    std::thread::sleep(Duration::from_millis(1500));
    let get = |addr: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["routes", "--socket"])
            .arg(&sock)
            .args(["get", addr])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let dumped = get("10.77.1.9");
    let before = ping_from_ext(&lab, "2", "0.2", "10.77.0.5");
    ip("route add 10.77.0.0/16 via 172.18.0.2 dev pod-g onlink table 100");
    ip("route add 10.88.0.0/16 table 100 nexthop via 172.18.0.2 dev pod-g onlink nexthop via 172.18.0.3 dev pod-g onlink");
    ip("route add blackhole 10.99.0.0/16 table 100");
    ip("route add 10.66.0.0/16 via 198.51.100.9 dev pod-g onlink table 100");
    ip("route add 192.0.2.1/32 via 172.18.0.2 dev pod-g onlink table 100");
    ip("route add 10.55.0.0/16 via 172.18.0.2 dev pod-g onlink table 200");
    std::thread::sleep(Duration::from_millis(300));
    let mirrored = ping_from_ext(&lab, "3", "0.2", "10.77.0.5");
    let (multipath, blackhole, refused, other_table) = (
        get("10.88.1.1"),
        get("10.99.1.1"),
        get("10.66.1.1"),
        get("10.55.1.1"),
    );
    let during = stats_of(&sock);
    ip("route flush table 100");
    std::thread::sleep(Duration::from_millis(300));
    let flushed = ping_from_ext(&lab, "2", "0.2", "10.77.0.5");
    let file_route = ping_from_ext(&lab, "2", "0.2", "10.244.1.5");
    let after = stats_of(&sock);
    let out = gateway.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{log}");
    assert!(
        dumped.contains("10.77.1.0/24 dev pods") && dumped.ends_with("origin=kernel table 100"),
        "{dumped}"
    );
    assert!(before.contains(" 0 received"), "no route yet:\n{before}");
    assert!(
        mirrored.contains("3 received"),
        "mirrored:\n{mirrored}\n{during}"
    );
    assert!(
        multipath.starts_with("10.88.0.0/16 ecmp [") && multipath.contains("172.18.0.3"),
        "{multipath}"
    );
    assert!(blackhole.contains("drop"), "{blackhole}");
    assert!(refused.contains("no route"), "{refused}");
    assert!(other_table.contains("no route"), "{other_table}");
    let rs = &during["route_sources"];
    assert_eq!(rs["synced"], true, "{during}");
    assert_eq!(rs["tables"]["100"], 4, "{during}");
    assert_eq!(rs["refused"]["next_hop_unreachable"], 1, "{during}");
    assert_eq!(rs["refused"]["interface_prefix"], 1, "{during}");
    assert!(
        log.contains("route_refused") && log.contains("198.51.100.9"),
        "the refusal is logged:\n{log}"
    );
    assert!(
        flushed.contains(" 0 received"),
        "after the flush:\n{flushed}"
    );
    assert!(
        file_route.contains("2 received"),
        "the file's route stays:\n{file_route}"
    );
    assert_eq!(after["route_sources"]["tables"]["100"], 0, "{after}");
    assert_eq!(
        after["route_sources"]["refused"]["next_hop_unreachable"], 0,
        "{after}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Lost notifications: the gateway is stopped (SIGSTOP) while 150,000 routes of the real DFZ
/// table go into kernel table 100, so the kernel drops what its socket cannot hold; resumed,
/// it hears ENOBUFS and dumps the table, while 150,000 more arrive during the dump (whose
/// drops raise no second ENOBUFS: the socket's drop count says so). Then 100,000 are deleted
/// while it is stopped again. Each time the mirror ends equal to the kernel's table.
#[test]
fn a_mirror_that_lost_notifications_dumps_again_and_ends_equal_to_the_kernel() {
    let Some((_serial, lab, dir)) = lab_for("kov") else {
        return;
    };
    let cfg = dir.join("gw.toml");
    let text = format!(
        "{}\n[[route_source]]\nkind = \"kernel\"\ntable = 100\n",
        config_for("af_packet")
    );
    std::fs::write(&cfg, text).unwrap();
    let sock = dir.join("control.sock");
    let o = Command::new("zcat")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/testdata/rib/dfz-ipv4.csv.gz"
        ))
        .output()
        .unwrap();
    assert!(o.status.success());
    let mut prefixes: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split(',');
            let p = format!("{}/{}", f.next()?, f.next()?);
            p.parse::<ipnet::Ipv4Net>()
                .ok()
                .filter(|n| n.trunc() == *n)
                .map(|_| p)
        })
        .collect();
    prefixes.sort();
    prefixes.dedup();
    prefixes.truncate(300_000);
    let batch = |name: &str, verb: &str, ps: &[String]| {
        let f = dir.join(name);
        let text: String = ps
            .iter()
            .map(|p| {
                format!("route {verb} {p} via 172.18.0.2 dev pod-g onlink table 100 proto bird\n")
            })
            .collect();
        std::fs::write(&f, text).unwrap();
        f
    };
    let (first, second) = prefixes.split_at(150_000);
    let files = [
        batch("add1", "replace", first),
        batch("add2", "replace", second),
        batch("del", "del", &prefixes[..100_000]),
    ];
    let ip_batch = |f: &std::path::Path| {
        lab.exec(&lab.gw, &["ip", "-batch", f.to_str().unwrap()])
            .unwrap();
    };
    let gateway = start_gateway(
        &lab,
        &cfg,
        &[
            "--duration".as_ref(),
            "60".as_ref(),
            "--control-socket".as_ref(),
            sock.as_os_str(),
        ],
        true,
    );
    std::thread::sleep(Duration::from_millis(1500));
    let pid = gateway.id().to_string();
    let kernel = || {
        let o = lab
            .exec(&lab.gw, &["ip", "route", "show", "table", "100"])
            .unwrap();
        String::from_utf8_lossy(&o.stdout).lines().count() as u64
    };
    let mirrored = || {
        stats_of(&sock)["route_sources"]["tables"]["100"]
            .as_u64()
            .unwrap_or(0)
    };
    let settle = |want: u64| {
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if mirrored() == want {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    };
    let stop = |sig: &str| {
        Command::new("kill").args([sig, &pid]).status().unwrap();
    };
    stop("-STOP");
    ip_batch(&files[0]);
    stop("-CONT");
    std::thread::sleep(Duration::from_millis(20));
    ip_batch(&files[1]);
    let added = kernel();
    let after_adds = settle(added);
    let stats_adds = stats_of(&sock);
    stop("-STOP");
    ip_batch(&files[2]);
    stop("-CONT");
    let left = kernel();
    let after_deletes = settle(left);
    let stats_deletes = stats_of(&sock);
    stop("-TERM");
    let out = gateway.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(added, 300_000);
    assert!(
        after_adds,
        "mirrored {} of the kernel's {added}: {stats_adds}",
        stats_adds["route_sources"]["tables"]["100"]
    );
    assert!(
        stats_adds["route_sources"]["overruns"]
            .as_u64()
            .unwrap_or(0)
            >= 1
            && stats_adds["route_sources"]["dumps"].as_u64().unwrap_or(0) >= 2,
        "the loss was noticed and answered by a dump: {stats_adds}"
    );
    assert_eq!(left, 200_000);
    assert!(
        after_deletes,
        "mirrored {} of the kernel's {left}: {stats_deletes}",
        stats_deletes["route_sources"]["tables"]["100"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Moves the calling thread (only) into network namespace `ns`.
fn enter_netns(ns: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&f),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .unwrap();
}

/// Frames in place, by address: two AF_XDP ports over one worker's frame memory. Every frame
/// received on ext-g sits in a chunk of that memory (its address is known), and goes out of
/// pod-g by that descriptor: the port counts it as sent in place, none as copied, and the pod
/// host receives exactly the bytes sent. A frame from a buffer's own memory is the control:
/// it is copied, and counted so.
#[test]
fn af_xdp_frames_cross_ports_by_descriptor_from_where_they_were_received() {
    use datapath::framemem::FrameMemory;
    use datapath::pipeline::batch::Batch;
    use datapath::port::af_packet::AfPacketPort;
    use datapath::port::af_xdp::{frame_memory, AfXdpPort, XdpAttachment};
    use datapath::port::Port;
    use datapath::stats::PortStats;
    use std::collections::HashSet;
    use std::sync::mpsc;
    use std::time::Instant;
    let Some((_serial, lab, _dir)) = lab_for("fip") else {
        return;
    };
    const N: usize = 200;
    let frames: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            datapath::craft::ipv4_udp_frame(
                [2, 0, 0, 0, 0, 0x99],
                [2, 0, 0, 0, 0, 1],
                (0xc000_020a, 4000),
                (0x0af4_0105, 5000 + i as u16),
                format!("in-place-{i:04}").as_bytes(),
            )
        })
        .collect();
    // The pod host's receiver: what pod-b hears that carries the marker.
    let (ready_tx, ready_rx) = mpsc::channel();
    let pods = lab.pods.clone();
    let receiver = std::thread::spawn(move || {
        enter_netns(&pods);
        let mut port = AfPacketPort::open("pod-b").unwrap();
        let mut batch = Batch::new();
        let stats = PortStats::default();
        let mut got = Vec::new();
        ready_tx.send(()).unwrap();
        let end = Instant::now() + Duration::from_secs(5);
        while got.len() < N && Instant::now() < end {
            let n = port.rx(&mut batch, 64, &stats);
            for b in &batch.bufs[..n] {
                if b.frame().windows(9).any(|w| w == b"in-place-") {
                    got.push(b.frame().to_vec());
                }
            }
            if n == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        got
    });
    ready_rx.recv().unwrap();
    // The gateway side: both sockets over one frame memory, one batch using it.
    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let gw = lab.gw.clone();
    let forwarder = std::thread::spawn(move || {
        enter_netns(&gw);
        let memory: std::sync::Arc<FrameMemory> = frame_memory(2).unwrap();
        let a = XdpAttachment::attach("ext-g", 1, false).unwrap();
        let b = XdpAttachment::attach("pod-g", 1, false).unwrap();
        let mut ext = AfXdpPort::open(&a, 0, &memory).unwrap();
        let mut pod = AfXdpPort::open(&b, 0, &memory).unwrap();
        let mut batch = Batch::new();
        batch.use_memory(&memory);
        let stats = PortStats::default();
        let idx: Vec<u8> = (0..64).collect();
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        let (mut received, mut marked, mut sent) = (0usize, 0usize, 0usize);
        let mut chunks_seen = HashSet::new();
        let end = Instant::now() + Duration::from_secs(5);
        while marked < N && Instant::now() < end {
            let n = ext.rx(&mut batch, 64, &stats);
            let mut in_batch = HashSet::new();
            for buf in &mut batch.bufs[..n] {
                let addr = buf
                    .address_in(&memory)
                    .expect("a received frame sits in the shared frame memory");
                // Each frame of a batch has a chunk of its own.
                assert!(in_batch.insert(addr / 2048), "two frames in one chunk");
                chunks_seen.insert(addr / 2048);
                if buf.frame().windows(9).any(|w| w == b"in-place-") {
                    marked += 1;
                }
                // The pod host's MAC, as a forwarder would write it; in place.
                buf.frame_mut()[..6].copy_from_slice(&[2, 0, 0, 0, 2, 1]);
            }
            received += n;
            let mut taken = 0;
            while taken < n {
                taken += pod.tx(&mut batch, &idx[taken..n]);
            }
            sent += n;
            if n == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let placement = pod.tx_placement();
        // The control: a frame in a buffer's own memory is copied into a chunk to be sent.
        batch.release();
        assert!(batch.bufs[0].load(&[0xffu8; 60], 0));
        batch.len = 1;
        assert_eq!(pod.tx(&mut batch, &[0]), 1);
        let control = pod.tx_placement();
        // Let the kernel finish the last transmits before the sockets close.
        std::thread::sleep(Duration::from_millis(200));
        (
            received,
            marked,
            sent,
            chunks_seen.len(),
            placement,
            control,
        )
    });
    ready_rx.recv().unwrap();
    // The external host sends the frames to ext-g.
    let ext_ns = lab.ext.clone();
    let to_send = frames.clone();
    std::thread::spawn(move || {
        enter_netns(&ext_ns);
        let mut port = AfPacketPort::open("ext-a").unwrap();
        let mut batch = Batch::new();
        go_tx.send(()).unwrap();
        for chunk in to_send.chunks(32) {
            for (b, f) in batch.bufs.iter_mut().zip(chunk) {
                assert!(b.load(f, 0));
            }
            batch.len = chunk.len();
            let idx: Vec<u8> = (0..chunk.len() as u8).collect();
            assert_eq!(port.tx(&mut batch, &idx), chunk.len());
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
    })
    .join()
    .unwrap();
    let (received, marked, sent, chunks, placement, control) = forwarder.join().unwrap();
    let got = receiver.join().unwrap();
    assert_eq!(marked, N, "frames received on ext-g ({received} in all)");
    assert_eq!(
        placement,
        (sent as u64, 0),
        "every frame sent by descriptor, none copied ({chunks} chunks used)"
    );
    assert_eq!(control, (sent as u64, 1), "the control frame is copied");
    let mut want: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut f = f.clone();
            f[..6].copy_from_slice(&[2, 0, 0, 0, 2, 1]);
            f
        })
        .collect();
    let mut got = got;
    want.sort();
    got.sort();
    assert_eq!(got.len(), N, "frames the pod host received");
    assert!(
        got == want,
        "the pod host received other bytes than were sent"
    );
    drop(lab);
}

/// One receive queue per worker: on veths with four queues, a gateway with two AF_XDP workers
/// sets two (`ethtool -L` through the ioctl); on veths that can have only one, it refuses to
/// start and says what to do.
#[test]
fn af_xdp_gateway_gives_each_interface_one_queue_per_worker_or_says_why_not() {
    if !root_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = config_for("af_xdp").replace("workers = [0]", "workers = [0, 1]");
    let queues_of = |lab: &Lab, dev: &'static str| {
        datapath::port::ethtool::in_netns(&lab.gw, move || datapath::port::ethtool::channels(dev))
            .unwrap()
            .rx_queues()
    };
    let id = format!("t{}q4", std::process::id());
    let lab = Lab::build_with_queues(&id, 4).unwrap();
    let dir = scratch(&id);
    assert_eq!(queues_of(&lab, "ext-g"), 4);
    let path = dir.join("gw.toml");
    std::fs::write(&path, &cfg).unwrap();
    let gw = start_gateway(&lab, &path, &["--duration".as_ref(), "3".as_ref()], true);
    std::thread::sleep(Duration::from_millis(1500));
    let (ext, pods) = (queues_of(&lab, "ext-g"), queues_of(&lab, "pod-g"));
    let out = gw.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!((ext, pods), (2, 2), "queues while two workers run");
    drop(lab);

    let id = format!("t{}q1", std::process::id());
    let lab = Lab::build(&id).unwrap();
    let gw = start_gateway(&lab, &path, &["--duration".as_ref(), "3".as_ref()], true);
    let out = gw.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started with one queue for two workers"
    );
    assert!(
        err.contains("receive queue(s)") && err.contains("ethtool -L ext-g combined 2"),
        "{err}"
    );
    for dev in ["ext-g", "pod-g"] {
        assert!(!xdp_attached(&lab, dev), "XDP program left on {dev}");
    }
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
}
