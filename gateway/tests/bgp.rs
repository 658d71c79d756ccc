//! Routes from the cluster, with real BIRD 2 daemons in network namespaces this test creates and
//! removes: two "nodes" announce their pod blocks and a Service address over BGP, as Calico or
//! kube-router do; BIRD on the gateway's host installs them into kernel table 100 over the
//! gateway's own pod-side interface (`pass_to_kernel`: TCP 179 reaches the host's kernel while
//! the gateway's AF_XDP workers forward the rest); the gateway mirrors that table.
//!
//! ```text
//!  [ext 192.0.2.10] ext-a == ext-g [gw: gateway on ext-g, pod-g; host 172.18.0.250 + BIRD]
//!                                      pod-g == sw-g [sw: bridge] sw-1 == n1 [node1 172.18.0.11 + BIRD]
//!                                                                 sw-2 == n2 [node2 172.18.0.12 + BIRD]
//! ```
//!
//! Needs root and `bird` (Debian's bird2): without them the tests are skipped
//! ([`gateway::skipped`]), and under CI=true that is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gateway::tools::lab::{is_root, tx_checksum_off};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One test at a time: each runs busy-polling gateways pinned to the machine's cores, BIRD
/// daemons and a stamped flow that must lose nothing. Run together on 2 cores, three polling
/// workers share a core with BIRD importing 100,000 routes, and the flows lose frames to the
/// scheduler, not to the gateway (a fresh-machine CI run lost 176 frames per flow so).
static SERIAL: Mutex<()> = Mutex::new(());

/// BGP timers of every session here: short, so that a test takes seconds.
const TIMERS: &str = "hold time 3; keepalive time 1; connect retry time 1; error wait time 1, 2;";

fn sh(args: &[&str]) -> Output {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        o.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// The namespaces and the BIRD daemons of one test; dropping it stops the daemons and deletes
/// the namespaces.
struct Cluster {
    tag: String,
    dir: PathBuf,
    birds: Vec<PathBuf>,
    namespaces: Vec<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for pid in &self.birds {
            if let Ok(p) = std::fs::read_to_string(pid) {
                let _ = Command::new("kill").arg(p.trim()).output();
            }
        }
        for n in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    fn ns(&self, n: &str) -> String {
        format!("gwbgp-{n}-{}", self.tag)
    }

    fn exec(&self, n: &str, args: &str) -> Output {
        let ns = self.ns(n);
        let mut v = vec!["ip", "netns", "exec", ns.as_str()];
        v.extend(args.split_whitespace());
        sh(&v)
    }

    /// An empty cluster named by `tag`, with a fresh scratch directory.
    fn new(tag: &str) -> Cluster {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/e2e-bgp-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Cluster {
            tag: tag.to_string(),
            dir,
            birds: Vec::new(),
            namespaces: Vec::new(),
        }
    }

    /// Adds namespaces (short names), loopback up; each is deleted on drop.
    fn add_namespaces(&mut self, names: &[&str]) {
        for n in names {
            sh(&["ip", "netns", "add", &self.ns(n)]);
            self.namespaces.push(self.ns(n));
            self.exec(n, "ip link set lo up");
        }
    }

    /// A veth pair: `a` in namespace `ans`, `b` in `bns`.
    fn veth(&self, a: &str, ans: &str, b: &str, bns: &str) {
        sh(&[
            "ip",
            "link",
            "add",
            a,
            "netns",
            &self.ns(ans),
            "type",
            "veth",
            "peer",
            "name",
            b,
            "netns",
            &self.ns(bns),
        ]);
    }

    fn build(tag: &str) -> Cluster {
        let mut c = Cluster::new(tag);
        c.add_namespaces(&["ext", "gw", "sw", "n1", "n2"]);
        let veth = |a: &str, ans: &str, b: &str, bns: &str| c.veth(a, ans, b, bns);
        veth("ext-a", "ext", "ext-g", "gw");
        veth("pod-g", "gw", "sw-g", "sw");
        veth("n1", "n1", "sw-1", "sw");
        veth("n2", "n2", "sw-2", "sw");
        c.exec("sw", "ip link add br0 type bridge");
        c.exec("sw", "ip link set br0 up");
        for p in ["sw-g", "sw-1", "sw-2"] {
            c.exec("sw", &format!("ip link set {p} master br0 up"));
        }
        // The gateway's host: no forwarding, IPv6 only where BGP runs, an address of its own on
        // the pod segment for the sessions.
        c.exec("gw", "ip link set ext-g address 02:00:00:00:00:01 up");
        c.exec("gw", "sysctl -qw net.ipv6.conf.ext-g.disable_ipv6=1");
        c.exec("gw", "ip link set pod-g address 02:00:00:00:01:01 up");
        c.exec("gw", "ip addr add 172.18.0.250/16 dev pod-g");
        c.exec("gw", "ip -6 addr add fd00:b::250/64 dev pod-g nodad");
        // The external host.
        c.exec("ext", "ip link set ext-a address 02:00:00:00:00:99 up");
        c.exec("ext", "ip addr add 192.0.2.10/24 dev ext-a");
        c.exec("ext", "ip -6 addr add fd00:a::10/64 dev ext-a nodad");
        c.exec(
            "ext",
            "ip neigh add 192.0.2.1 lladdr 02:00:00:00:00:01 dev ext-a nud permanent",
        );
        c.exec(
            "ext",
            "ip -6 neigh add fd00:a::1 lladdr 02:00:00:00:00:01 dev ext-a nud permanent",
        );
        c.exec("ext", "ip route add 10.0.0.0/8 via 192.0.2.1");
        c.exec("ext", "ip -6 route add fd00::/16 via fd00:a::1");
        tx_checksum_off(&c.ns("ext"), "ext-a").unwrap();
        // The nodes: pod addresses and the Service address on lo, everything else via the
        // gateway.
        for (n, i) in [("n1", 1), ("n2", 2)] {
            c.exec(
                n,
                &format!("ip link set {n} address 02:00:00:00:02:0{i} up"),
            );
            c.exec(n, &format!("ip addr add 172.18.0.1{i}/16 dev {n}"));
            c.exec(n, &format!("ip -6 addr add fd00:b::1{i}/64 dev {n} nodad"));
            c.exec(n, &format!("ip addr add 10.244.{i}.5/32 dev lo"));
            c.exec(n, "ip addr add 10.96.0.10/32 dev lo");
            c.exec(n, &format!("ip -6 addr add fd00:244:{i}::5/128 dev lo"));
            c.exec(n, "ip -6 addr add fd00:296::10/128 dev lo");
            c.exec(n, "ip route add default via 172.18.0.1");
            c.exec(n, "ip -6 route add default via fd00:b::1");
            tx_checksum_off(&c.ns(n), n).unwrap();
        }
        c
    }

    /// Starts BIRD in namespace `n` with `conf`.
    fn bird(&mut self, n: &str, conf: &str) {
        let file = self.dir.join(format!("{n}.conf"));
        std::fs::write(&file, conf).unwrap();
        let pid = self.dir.join(format!("{n}.pid"));
        let sock = self.dir.join(format!("{n}.ctl"));
        let ns = self.ns(n);
        sh(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "bird",
            "-c",
            file.to_str().unwrap(),
            "-s",
            sock.to_str().unwrap(),
            "-P",
            pid.to_str().unwrap(),
        ]);
        self.birds.push(pid);
    }

    fn birdc(&self, n: &str, cmd: &str) -> String {
        let sock = self.dir.join(format!("{n}.ctl"));
        let o = Command::new("birdc")
            .arg("-s")
            .arg(&sock)
            .args(cmd.split_whitespace())
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// Stops node `n`'s BIRD: its sessions close and its routes are withdrawn.
    fn stop_bird(&mut self, n: &str) {
        let pid = self.dir.join(format!("{n}.pid"));
        let p = std::fs::read_to_string(&pid).unwrap();
        sh(&["kill", p.trim()]);
        self.birds.retain(|b| *b != pid);
    }
}

/// BIRD on the gateway's host: sessions to both nodes (IPv4 and IPv6), everything learned into
/// kernel table 100, equal routes merged into multipath (ECMP).
fn gateway_bird() -> String {
    format!(
        r#"
router id 172.18.0.250;
protocol device {{ }}
protocol kernel k4 {{ kernel table 100; merge paths on; ipv4 {{ export all; import none; }}; }}
protocol kernel k6 {{ kernel table 100; merge paths on; ipv6 {{ export all; import none; }}; }}
template bgp node4 {{ local 172.18.0.250 as 64513; {TIMERS} ipv4 {{ import all; export none; }}; }}
template bgp node6 {{ local fd00:b::250 as 64513; {TIMERS} ipv6 {{ import all; export none; next hop prefer global; }}; }}
protocol bgp n1 from node4 {{ neighbor 172.18.0.11 as 64512; }}
protocol bgp n2 from node4 {{ neighbor 172.18.0.12 as 64512; }}
protocol bgp n1v6 from node6 {{ neighbor fd00:b::11 as 64512; }}
protocol bgp n2v6 from node6 {{ neighbor fd00:b::12 as 64512; }}
"#
    )
}

/// BIRD on node `i`, as Calico runs it: its pod block (a blackhole route, as Calico installs
/// for its blocks) and the Service address, announced with itself as the next hop.
fn node_bird(i: u32) -> String {
    format!(
        r#"
router id 172.18.0.1{i};
protocol device {{ }}
protocol static s4 {{ ipv4; route 10.244.{i}.0/24 blackhole; route 10.96.0.10/32 blackhole; }}
protocol static s6 {{ ipv6; route fd00:244:{i}::/64 blackhole; route fd00:296::10/128 blackhole; }}
protocol bgp edge4 {{ local 172.18.0.1{i} as 64512; neighbor 172.18.0.250 as 64513; {TIMERS}
  ipv4 {{ import none; export where source = RTS_STATIC; next hop self; }}; }}
protocol bgp edge6 {{ local fd00:b::1{i} as 64512; neighbor fd00:b::250 as 64513; {TIMERS}
  ipv6 {{ import none; export where source = RTS_STATIC; next hop self; }}; }}
"#
    )
}

const CONFIG: &str = r#"
[gateway]
name = "bgp"
workers = [0]

[[port]]
name = "ext"
driver = "af_xdp"
interface = "ext-g"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1/24", "fd00:a::1/64"]

[[port]]
name = "pods"
driver = "af_xdp"
interface = "pod-g"
mac = "02:00:00:00:01:01"
addresses = ["172.18.0.1/16", "fd00:b::1/64"]
pass_to_kernel = true

[[neighbor]]
address = "192.0.2.10"
mac = "02:00:00:00:00:99"
port = "ext"

[[route_source]]
kind = "kernel"
table = 100
protocols = ["bird"]
"#;

fn ready_or_skip() -> Option<MutexGuard<'static, ()>> {
    if !is_root() {
        gateway::skipped("needs root");
        return None;
    }
    for tool in ["bird", "birdc"] {
        if Command::new(tool).arg("--version").output().is_err() {
            gateway::skipped(&format!("needs `{tool}` (apt-get install bird2)"));
            return None;
        }
    }
    Some(SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}

/// `gateway ARGS...` in the gateway's namespace.
fn gateway_cmd(c: &Cluster) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &c.ns("gw"), env!("CARGO_BIN_EXE_gateway")]);
    cmd
}

fn routes_get(c: &Cluster, sock: &Path, addr: &str) -> String {
    let o = gateway_cmd(c)
        .args(["routes", "--socket"])
        .arg(sock)
        .args(["get", addr])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Waits up to `limit` for `done`; the time it took.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn ping(c: &Cluster, args: &str) -> String {
    let ns = c.ns("ext");
    let mut v = vec!["netns", "exec", ns.as_str(), "ping", "-q", "-W", "1"];
    v.extend(args.split_whitespace());
    let o = Command::new("ip").args(&v).output().unwrap();
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

/// UDP datagrams a node's kernel received for closed ports (`Udp: NoPorts`, or `Udp6:
/// Udp6NoPorts`).
fn udp_no_ports(c: &Cluster, n: &str, v6: bool) -> u64 {
    if v6 {
        let out = c.exec(n, "cat /proc/net/snmp6");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        return text
            .lines()
            .find_map(|l| l.strip_prefix("Udp6NoPorts"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
    }
    let out = c.exec(n, "cat /proc/net/snmp");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("Udp:")).collect();
    let names: Vec<&str> = rows[0].split_whitespace().collect();
    let values: Vec<&str> = rows[1].split_whitespace().collect();
    let i = names.iter().position(|n| *n == "NoPorts").unwrap();
    values[i].parse().unwrap()
}

/// Starts `pktgen receive --json` on `interface` in namespace `n` and returns once it is
/// reading (its first once-a-second line on stderr), so that no stamped frame goes out before
/// it listens: a receiver slow to start counts the first frames of every flow as lost.
fn ready_receiver(c: &Cluster, n: &str, interface: &str, seconds: &str) -> std::process::Child {
    use std::io::BufRead;
    let mut r = Command::new("ip")
        .args(["netns", "exec", &c.ns(n), env!("CARGO_BIN_EXE_gateway")])
        .args(["pktgen", "receive", "--interface", interface, "--idle", "2"])
        .args(["--seconds", seconds, "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let err = r.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(15));
    assert!(first.is_ok(), "the receiver in {n} did not start reading");
    r
}

/// Sends `n` UDP datagrams from the external host to `dst`, each from its own source port:
/// as many flows.
fn udp_flows(c: &Cluster, dst: &str, n: u32) {
    let family = if dst.contains(':') {
        "AF_INET6"
    } else {
        "AF_INET"
    };
    let script = format!(
        "import socket\nfor i in range({n}):\n    s = socket.socket(socket.{family}, socket.SOCK_DGRAM)\n    s.sendto(b'x' * 32, ('{dst}', 9))\n    s.close()\n"
    );
    let ns = c.ns("ext");
    sh(&[
        "ip",
        "netns",
        "exec",
        &ns,
        "/usr/bin/python3",
        "-c",
        &script,
    ]);
}

/// The cluster test: each pod block reaches its node; the Service address is spread over both
/// nodes by ECMP; when node 1's BIRD stops, its block is dropped as `no_route` within the BGP
/// timers while a fast ping stream to node 2's block loses nothing. IPv4 and IPv6.
#[test]
fn gateway_follows_the_clusters_routes_through_bird() {
    let Some(_serial) = ready_or_skip() else {
        return;
    };
    let mut c = Cluster::build(&format!("{}", std::process::id()));
    let cfg = c.dir.join("gw.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let sock = c.dir.join("control.sock");
    let gateway = Command::new("ip")
        .args([
            "netns",
            "exec",
            &c.ns("gw"),
            env!("CARGO_BIN_EXE_gateway"),
            "run",
            "--config",
        ])
        .arg(&cfg)
        .args(["--duration", "40", "--control-socket"])
        .arg(&sock)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    c.bird("gw", &gateway_bird());
    c.bird("n1", &node_bird(1));
    c.bird("n2", &node_bird(2));
    // Both nodes' blocks and the Service address, IPv4 and IPv6, mirrored.
    let learned = wait_for(Duration::from_secs(20), || {
        ["10.244.1.5", "10.244.2.5", "fd00:244:1::5", "fd00:244:2::5"]
            .iter()
            .all(|a| routes_get(&c, &sock, a).contains("kernel table 100"))
            && routes_get(&c, &sock, "10.96.0.10").contains("ecmp")
            && routes_get(&c, &sock, "fd00:296::10").contains("ecmp")
    });
    let table = String::from_utf8_lossy(&c.exec("gw", "ip route show table 100").stdout)
        .to_string()
        + &String::from_utf8_lossy(&c.exec("gw", "ip -6 route show table 100").stdout);
    assert!(
        learned.is_some(),
        "routes not mirrored: table 100:\n{table}\n{}\n{}",
        routes_get(&c, &sock, "10.96.0.10"),
        c.birdc("gw", "show protocols")
    );
    // The sessions run over the gateway's own pod-side interface, where its XDP program
    // passes them to the host's kernel.
    let protocols = c.birdc("gw", "show protocols");
    assert_eq!(protocols.matches("Established").count(), 4, "{protocols}");
    let link = String::from_utf8_lossy(&c.exec("gw", "ip link show dev pod-g").stdout).to_string();
    assert!(
        link.contains("xdp"),
        "the gateway's XDP program is on pod-g: {link}"
    );
    let service = routes_get(&c, &sock, "10.96.0.10");
    assert!(
        service.contains("172.18.0.11") && service.contains("172.18.0.12"),
        "{service}"
    );
    // Each block reaches its own node, once the gateway has resolved the node's address and
    // the external host's (IPv6 has no static neighbour): a packet that asks is dropped as
    // unresolved.
    for dst in ["10.244.1.5", "10.244.2.5", "fd00:244:1::5", "fd00:244:2::5"] {
        ping(&c, &format!("-c 2 -i 0.3 {dst}"));
        let p = ping(&c, &format!("-c 3 -i 0.2 {dst}"));
        assert!(p.contains("3 received"), "{dst}:\n{p}");
    }
    // The Service address: flows are spread over both nodes.
    for v6 in [false, true] {
        let dst = if v6 { "fd00:296::10" } else { "10.96.0.10" };
        let before = (udp_no_ports(&c, "n1", v6), udp_no_ports(&c, "n2", v6));
        udp_flows(&c, dst, 200);
        std::thread::sleep(Duration::from_millis(300));
        let got = (
            udp_no_ports(&c, "n1", v6) - before.0,
            udp_no_ports(&c, "n2", v6) - before.1,
        );
        assert!(
            got.0 >= 40 && got.1 >= 40 && got.0 + got.1 >= 190,
            "{dst}: 200 flows spread over the nodes as {got:?}"
        );
    }
    // Node 1 goes away while node 2's block carries a fast ping stream.
    let ext = c.ns("ext");
    let stream = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ext,
            "ping",
            "-q",
            "-c",
            "600",
            "-i",
            "0.01",
            "10.244.2.5",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    c.stop_bird("n1");
    let withdrawn = wait_for(Duration::from_secs(8), || {
        routes_get(&c, &sock, "10.244.1.5").contains("no route")
            && routes_get(&c, &sock, "fd00:244:1::5").contains("no route")
    });
    let stream = stream.wait_with_output().unwrap();
    let stream = String::from_utf8_lossy(&stream.stdout).to_string();
    let gone = ping(&c, "-c 2 -i 0.2 10.244.1.5");
    let kept = ping(&c, "-c 2 -i 0.2 10.244.2.5");
    let service_after = routes_get(&c, &sock, "10.96.0.10");
    let stats = Command::new("ip")
        .args([
            "netns",
            "exec",
            &c.ns("gw"),
            env!("CARGO_BIN_EXE_gateway"),
            "stats",
            "--socket",
        ])
        .arg(&sock)
        .output()
        .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap_or_default();
    let _ = Command::new("kill").arg(gateway.id().to_string()).output();
    let out = gateway.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        withdrawn.is_some(),
        "node 1's routes not withdrawn within the hold time:\n{}\n{log}",
        routes_get(&c, &sock, "10.244.1.5")
    );
    assert!(
        stream.contains("600 received"),
        "node 2's block lost packets:\n{stream}"
    );
    assert!(gone.contains(" 0 received"), "{gone}");
    assert!(kept.contains("2 received"), "{kept}");
    assert!(
        service_after.contains("172.18.0.12") && !service_after.contains("ecmp"),
        "the Service address stays, on node 2 alone: {service_after}"
    );
    let no_route = stats["ports"]["ext"]["drops"]["no_route"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        no_route >= 2,
        "the withdrawn block is dropped as no_route: {stats}"
    );
    assert_eq!(
        stats["route_sources"]["refused"]["next_hop_unreachable"], 0,
        "{stats}"
    );
    eprintln!(
        "mirrored in {:?}, withdrawn in {:?}",
        learned.unwrap_or_default(),
        withdrawn.unwrap_or_default()
    );
}

/// Two gateways behind an upstream router: the namespaces and BIRD daemons (a [`Cluster`]),
/// and the gateways themselves, killed on drop.
struct Pair {
    c: Cluster,
    gateways: Vec<std::process::Child>,
}

impl Drop for Pair {
    fn drop(&mut self) {
        for g in &mut self.gateways {
            let _ = g.kill();
            let _ = g.wait();
        }
    }
}

/// BIRD on gateway `i`'s host (192.0.2.1i): learns what the gateway writes into table 101 and
/// announces it upstream with the gateway's own address (192.0.2.i) as the next hop.
fn exporting_bird(i: u32) -> String {
    format!(
        r#"
router id 192.0.2.1{i};
protocol device {{ }}
protocol kernel served {{ kernel table 101; learn; scan time 1; ipv4 {{ import all; export none; }}; }}
protocol bgp upstream {{ local 192.0.2.1{i} as 64513; neighbor 192.0.2.254 as 64500; {TIMERS}
  ipv4 {{ import none; export where proto = "served"; next hop address 192.0.2.{i}; }}; }}
"#
    )
}

/// The upstream router's BIRD: both gateways as peers, their equal routes merged into one
/// multipath route in the main table.
fn upstream_bird() -> String {
    format!(
        r#"
router id 192.0.2.254;
protocol device {{ }}
protocol kernel k4 {{ merge paths on; ipv4 {{ export all; import none; }}; }}
template bgp edge {{ local 192.0.2.254 as 64500; {TIMERS} ipv4 {{ import all; export none; }}; }}
protocol bgp ga from edge {{ neighbor 192.0.2.11 as 64513; }}
protocol bgp gb from edge {{ neighbor 192.0.2.12 as 64513; }}
"#
    )
}

fn pair_config(i: u32) -> String {
    format!(
        r#"
[gateway]
name = "g{i}"
workers = [{w}]

[[port]]
name = "ext"
driver = "af_xdp"
interface = "ext-g"
mac = "02:00:00:00:0{i}:01"
addresses = ["192.0.2.{i}/24"]
pass_to_kernel = true

[[port]]
name = "pods"
driver = "af_xdp"
interface = "pod-g"
mac = "02:00:00:00:0{i}:02"
addresses = ["172.18.0.{i}/16"]

[[neighbor]]
address = "172.18.0.100"
mac = "02:00:00:00:0d:01"
port = "pods"

[[route]]
prefix = "10.245.0.0/16"
via = "172.18.0.100"

[route_export]
table = 101
announce = ["10.245.0.0/16"]
"#,
        w = i - 1
    )
}

/// Scale-out and failover: two gateways announce the same prefix through BIRD; the upstream
/// router spreads flows over both by ECMP; after `kill -9` of one, its TUN device and the
/// routes through it vanish, BIRD withdraws them, and every flow moves to the other. The loss
/// window is measured from the receiver's sequence gaps.
#[test]
fn two_gateways_share_flows_by_ecmp_and_one_takes_all_when_the_other_is_killed() {
    let Some(_serial) = ready_or_skip() else {
        return;
    };
    let mut p = Pair {
        c: Cluster::new(&format!("{}p", std::process::id())),
        gateways: Vec::new(),
    };
    p.c.add_namespaces(&["cl", "up", "ga", "gb", "pd"]);
    let c = &p.c;
    let veth = |a: &str, ans: &str, b: &str, bns: &str| c.veth(a, ans, b, bns);
    veth("cl-a", "cl", "up-c", "up");
    // The upstream router and the pods host each hold a bridge both gateways plug into.
    c.exec("up", "ip link add br0 type bridge");
    c.exec(
        "pd",
        "ip link add br0 address 02:00:00:00:0d:01 type bridge",
    );
    for (g, i) in [("ga", 1), ("gb", 2)] {
        veth("ext-g", g, &format!("up-{g}"), "up");
        veth("pod-g", g, &format!("pd-{g}"), "pd");
        c.exec("up", &format!("ip link set up-{g} master br0 up"));
        c.exec("pd", &format!("ip link set pd-{g} master br0 up"));
        c.exec(
            g,
            &format!("ip link set ext-g address 02:00:00:00:0{i}:01 up"),
        );
        c.exec(
            g,
            &format!("ip link set pod-g address 02:00:00:00:0{i}:02 up"),
        );
        c.exec(g, &format!("ip addr add 192.0.2.1{i}/24 dev ext-g"));
        c.exec(g, "sysctl -qw net.ipv6.conf.all.disable_ipv6=1");
    }
    c.exec("up", "ip link set br0 up");
    c.exec("up", "ip addr add 192.0.2.254/24 dev br0");
    c.exec("up", "ip link set up-c address 02:00:00:00:0c:02 up");
    c.exec("up", "ip addr add 198.51.100.1/24 dev up-c");
    c.exec("up", "sysctl -qw net.ipv4.ip_forward=1");
    // Flows are hashed on ports too, as routers at the edge do.
    c.exec("up", "sysctl -qw net.ipv4.fib_multipath_hash_policy=1");
    c.exec("pd", "ip link set br0 up");
    c.exec("pd", "ip addr add 172.18.0.100/16 dev br0");
    c.exec("cl", "ip link set cl-a address 02:00:00:00:0c:01 up");
    c.exec("cl", "ip addr add 198.51.100.10/24 dev cl-a");
    // pktgen's live frames are XDP_TX'd into cl-a: its peer takes them only with GRO on.
    let gro = datapath::port::ethtool::in_netns(&c.ns("up"), || {
        datapath::port::ethtool::set_gro("up-c", true)
    });
    assert!(matches!(gro, Ok(true)), "GRO on up-c: {gro:?}");
    let mut children = Vec::new();
    for (g, i) in [("ga", 1u32), ("gb", 2)] {
        let cfg = c.dir.join(format!("{g}.toml"));
        std::fs::write(&cfg, pair_config(i)).unwrap();
        let sock = c.dir.join(format!("{g}.sock"));
        children.push(
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &c.ns(g),
                    env!("CARGO_BIN_EXE_gateway"),
                    "run",
                    "--config",
                ])
                .arg(&cfg)
                .args(["--duration", "60", "--control-socket"])
                .arg(&sock)
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    p.gateways = children;
    std::thread::sleep(Duration::from_millis(1000));
    p.c.bird("ga", &exporting_bird(1));
    p.c.bird("gb", &exporting_bird(2));
    p.c.bird("up", &upstream_bird());
    let c = &p.c;
    let route =
        || String::from_utf8_lossy(&c.exec("up", "ip route show 10.245.0.0/16").stdout).to_string();
    let both = wait_for(Duration::from_secs(20), || {
        let r = route();
        r.contains("192.0.2.1 ") && r.contains("192.0.2.2 ")
    });
    assert!(
        both.is_some(),
        "the upstream router has no route over both gateways: {}\n{}\ntable 101 of ga: {}",
        route(),
        c.birdc("up", "show route"),
        String::from_utf8_lossy(&c.exec("ga", "ip route show table 101").stdout)
    );
    // The upstream router finds both gateways by ARP before the measured traffic.
    c.exec("up", "ping -c 1 -W 1 192.0.2.1");
    c.exec("up", "ping -c 1 -W 1 192.0.2.2");
    let rate = 20_000u32;
    let receiver = ready_receiver(c, "pd", "br0", "30");
    let sender = Command::new("ip")
        .args(["netns", "exec", &c.ns("cl"), env!("CARGO_BIN_EXE_gateway")])
        .args([
            "pktgen",
            "--interface",
            "cl-a",
            "--src-mac",
            "02:00:00:00:0c:01",
        ])
        .args(["--dst-mac", "02:00:00:00:0c:02", "--src", "198.51.100.10"])
        .args(["--dst", "10.245.0.5", "--flows", "64", "--vary", "sport"])
        .args(["--rate", &rate.to_string(), "--seconds", "8"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    // A gateway busy on a loaded machine may not answer at once: asked again for up to 2 s
    // before its answer counts as missing (0).
    let stats = |g: &str| -> u64 {
        let asked = std::time::Instant::now();
        loop {
            let o = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &c.ns(g),
                    env!("CARGO_BIN_EXE_gateway"),
                    "stats",
                    "--socket",
                ])
                .arg(c.dir.join(format!("{g}.sock")))
                .output()
                .unwrap();
            let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            match j["ports"]["pods"]["tx_packets"].as_u64() {
                Some(n) => return n,
                None if asked.elapsed() < Duration::from_secs(2) => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                None => {
                    eprintln!(
                        "{g}: no counters: {}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    );
                    return 0;
                }
            }
        }
    };
    let shares = (stats("ga"), stats("gb"));
    // kill -9: no cleanup of any kind.
    let killed = std::time::Instant::now();
    sh(&["kill", "-9", &p.gateways[0].id().to_string()]);
    // Polled back to back (each look is an `ip route` in the router's namespace, a few ms).
    let mut withdrawn = None;
    while killed.elapsed() < Duration::from_secs(10) {
        if !route().contains("192.0.2.1 ") {
            withdrawn = Some(killed.elapsed());
            break;
        }
    }
    let withdrawn_after = withdrawn.unwrap_or_default();
    let sent = sender.wait_with_output().unwrap();
    let got = receiver.wait_with_output().unwrap();
    assert!(
        sent.status.success(),
        "pktgen: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&got.stdout).trim()).unwrap_or_default();
    let after = stats("gb");
    // An orderly stop of the other: its routes leave table 101 before it exits.
    sh(&["kill", "-TERM", &p.gateways[1].id().to_string()]);
    let stopped = p.gateways[1].wait().unwrap();
    let c = &p.c;
    let gb_table =
        String::from_utf8_lossy(&c.exec("gb", "ip route show table 101").stdout).to_string();
    let gone_upstream = wait_for(Duration::from_secs(5), || {
        !route().contains("10.245.0.0/16")
    });
    let ga_device = String::from_utf8_lossy(&c.exec("ga", "ip -br link").stdout).to_string();
    assert!(stopped.success(), "gb stopped: {stopped:?}");
    assert!(
        gb_table.trim().is_empty(),
        "gb's exported routes stayed: {gb_table}"
    );
    assert!(
        gone_upstream.is_some(),
        "the prefix stayed upstream: {}",
        route()
    );
    assert!(
        shares.0 > 5_000 && shares.1 > 5_000,
        "both gateways carry flows before the kill (pods tx): {shares:?}"
    );
    assert!(
        withdrawn.is_some(),
        "the killed gateway's route is still upstream: {}",
        route()
    );
    assert!(
        !ga_device.contains("gw-announce"),
        "the device went with the process: {ga_device}"
    );
    let flows = summary["flows"].as_array().cloned().unwrap_or_default();
    assert_eq!(flows.len(), 64, "{summary}");
    // Every flow is delivered to the end: the last second's frames all arrive, through gb.
    let stamped = summary["stamped"].as_u64().unwrap_or(0);
    let lost = summary["lost"].as_u64().unwrap_or(0);
    assert!(
        after > shares.1 + 3 * u64::from(rate),
        "gb took over: {} -> {after}",
        shares.1
    );
    let affected = flows
        .iter()
        .filter(|f| f["lost"].as_u64().unwrap_or(0) > 0)
        .count();
    // Only the killed gateway's flows may lose frames; when the withdrawal falls between two
    // frames of each, none does.
    assert!(
        affected < 64,
        "every flow lost frames, not only the killed gateway's: {affected} of 64\n{summary}"
    );
    let window = lost as f64 / (f64::from(rate) * affected.max(1) as f64 / 64.0);
    eprintln!(
        "failover: route withdrawn upstream {:.3} s after kill -9; {lost} of {} frames lost over {affected}/64 flows: a loss window of {window:.3} s at {rate} pps sent in 20 ms bursts (BGP hold 3 s, keepalive 1 s)",
        withdrawn_after.as_secs_f64(),
        stamped + lost
    );
    assert!(window < 3.0, "the loss window ({window:.2} s) is under the hold time: the withdrawal did not wait for it");
}

/// The first `n` prefixes of the real DFZ table (`../shared/testdata/rib/dfz-ipv4.csv.gz`) as
/// a BIRD static protocol, each a blackhole that the node announces with itself as next hop.
fn dfz_static(n: usize) -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/rib/dfz-ipv4.csv.gz");
    let o = Command::new("zcat").arg(&path).output().unwrap();
    assert!(
        o.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let mut seen = std::collections::HashSet::new();
    let mut out = String::from("protocol static dfz { ipv4;\n");
    for line in text.lines().skip(1) {
        let mut f = line.split(',');
        let (Some(net), Some(len)) = (f.next(), f.next()) else {
            continue;
        };
        let Ok(p) = format!("{net}/{len}").parse::<ipnet::Ipv4Net>() else {
            continue;
        };
        if p.trunc() != p || !seen.insert(p) {
            continue;
        }
        out.push_str(&format!("  route {p} blackhole;\n"));
        if seen.len() == n {
            break;
        }
    }
    assert_eq!(seen.len(), n, "the DFZ table has fewer prefixes");
    out.push_str("}\n");
    out
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Churn: node 1 announces `BGP_CHURN_ROUTES` (100,000 by default; 886,117 for the whole
/// DFZ) more routes while a stamped flow runs to node 2's block: the flow loses nothing,
/// and every route is mirrored. The time BIRD took to import them over BGP, the time until the
/// gateway had mirrored them from table 100, and the gateway's memory are printed
/// (BENCHMARKS.md).
#[test]
fn a_flood_of_bgp_routes_is_mirrored_while_a_flow_loses_nothing() {
    let Some(_serial) = ready_or_skip() else {
        return;
    };
    let n: usize = std::env::var("BGP_CHURN_ROUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut c = Cluster::build(&format!("{}c", std::process::id()));
    let cfg = c.dir.join("gw.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let sock = c.dir.join("control.sock");
    let mut gateway = Command::new("ip")
        .args([
            "netns",
            "exec",
            &c.ns("gw"),
            env!("CARGO_BIN_EXE_gateway"),
            "run",
            "--config",
        ])
        .arg(&cfg)
        .args(["--duration", "600", "--control-socket"])
        .arg(&sock)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    c.bird("gw", &gateway_bird());
    c.bird("n1", &node_bird(1));
    c.bird("n2", &node_bird(2));
    let mirrored = || -> u64 {
        let o = gateway_cmd(&c)
            .args(["stats", "--socket"])
            .arg(&sock)
            .output()
            .unwrap();
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        j["route_sources"]["tables"]["100"].as_u64().unwrap_or(0)
    };
    assert!(
        wait_for(Duration::from_secs(20), || mirrored() >= 6).is_some(),
        "the cluster's routes: {}",
        mirrored()
    );
    let base = mirrored();
    ping(&c, "-c 2 -i 0.3 10.244.2.5");
    let rss_before = rss_kib(gateway.id());
    let receiver = ready_receiver(&c, "n2", "n2", "600");
    // The flow runs until the routes are in: stopped by a signal below.
    let mut sender = Command::new("ip")
        .args(["netns", "exec", &c.ns("ext"), env!("CARGO_BIN_EXE_gateway")])
        .args([
            "pktgen",
            "--interface",
            "ext-a",
            "--src-mac",
            "02:00:00:00:00:99",
        ])
        .args(["--dst-mac", "02:00:00:00:00:01", "--src", "192.0.2.10"])
        .args([
            "--dst",
            "10.244.2.5",
            "--flows",
            "8",
            "--rate",
            "5000",
            "--seconds",
            "600",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let conf = node_bird(1) + &dfz_static(n);
    let file = c.dir.join("n1.conf");
    std::fs::write(&file, conf).unwrap();
    let start = Instant::now();
    let answer = c.birdc("n1", "configure");
    assert!(answer.contains("Reconfigured"), "{answer}");
    // BIRD's own part: the routes its session with node 1 has imported.
    let installed_by_bird = || -> u64 {
        let s = c.birdc("gw", "show protocols all n1");
        s.lines()
            .find_map(|l| l.trim().strip_prefix("Routes:"))
            .and_then(|e| e.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let limit = Duration::from_secs(60 + (n as u64) / 5_000);
    let (mut bird_done, mut mirror_done) = (None, None);
    let all = wait_for(limit, || {
        if bird_done.is_none() && installed_by_bird() >= (n + 2) as u64 {
            bird_done = Some(start.elapsed());
        }
        if mirror_done.is_none() && mirrored() >= base + n as u64 {
            mirror_done = Some(start.elapsed());
        }
        bird_done.is_some() && mirror_done.is_some()
    });
    let mirror_done = mirror_done.unwrap_or_default();
    let rss_after = rss_kib(gateway.id());
    let (at_end, bird_at_end) = (mirrored(), installed_by_bird());
    let stats_at_end = String::from_utf8_lossy(
        &gateway_cmd(&c)
            .args(["stats", "--socket"])
            .arg(&sock)
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    std::thread::sleep(Duration::from_millis(500));
    // SIGTERM: a job started in the background of a script (as CI may start this suite)
    // inherits SIGINT ignored, and the sender, which keeps the default action, would then run
    // on for its 600 s.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(sender.id().to_string())
        .output();
    let _ = sender.wait();
    let got = receiver.wait_with_output().unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&got.stdout).trim()).unwrap_or_default();
    let _ = gateway.kill();
    let _ = gateway.wait();
    assert!(
        all.is_some(),
        "{} of {n} routes mirrored in {limit:?}; BIRD installed {bird_at_end}\n{stats_at_end}",
        at_end.saturating_sub(base)
    );
    let stamped = summary["stamped"].as_u64().unwrap_or(0);
    assert!(stamped > 5_000, "the flow ran through the churn: {summary}");
    assert_eq!(
        summary["lost"], 0,
        "the flow lost frames during the churn: {summary}\ngateway at the end: {stats_at_end}"
    );
    eprintln!(
        "churn: {n} routes; BIRD imported them over BGP in {:.2} s (its count at the end: {bird_at_end}); the gateway mirrored them in {:.2} s ({:.0} routes/s end to end); gateway RSS {} -> {} MiB; flow: {stamped} frames, 0 lost",
        bird_done.map_or(f64::NAN, |d| d.as_secs_f64()),
        mirror_done.as_secs_f64(),
        n as f64 / mirror_done.as_secs_f64(),
        rss_before / 1024,
        rss_after / 1024,
    );
}
