//! A three-namespace lab on this machine: an external host, the gateway, and a pod host,
//! joined by veth pairs, for the namespace demo and the namespace tests. Everything it creates
//! is removed when the [`Lab`] is dropped. Needs root and `ip` (iproute2).
//!
//! ```text
//!  [ext: 192.0.2.10, fd00:a::10, vx0 10.99.0.1] ext-a ==== ext-g [gw: the gateway] pod-g ==== pod-b [pods: 172.18.0.2, 10.244.1.5, 10.244.2.6, fd00:b::2, fd00:244::6]
//! ```

use anyhow::{bail, Context, Result};
use std::process::{Command, Output};

/// MAC of the gateway's external port.
pub const GW_EXT_MAC: &str = "02:00:00:00:00:01";
/// MAC of the gateway's pod-side port.
pub const GW_PODS_MAC: &str = "02:00:00:00:01:01";

/// The gateway configuration for the lab: AF_PACKET ports and one tunnel of each kind from the
/// external host.
pub const CONFIG: &str = r#"
[gateway]
name = "lab"
workers = [0]

[[port]]
name = "ext"
driver = "af_packet"
interface = "ext-g"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1/24", "fd00:a::1/64"]

[[port]]
name = "pods"
driver = "af_packet"
interface = "pod-g"
mac = "02:00:00:00:01:01"
addresses = ["172.18.0.1/16", "fd00:b::1/64"]

[[neighbor]]
address = "192.0.2.10"
mac = "02:00:00:00:00:99"
port = "ext"

[[neighbor]]
address = "172.18.0.2"
mac = "02:00:00:00:02:01"
port = "pods"

[[route]]
prefix = "10.244.0.0/16"          # the pods
via = "172.18.0.2"

[[route]]
prefix = "fd00:244::/64"          # the pods over IPv6 (neighbours found by NDP)
via = "fd00:b::2"

[[tunnel]]
name = "calico"
kind = "vxlan"
local = "192.0.2.1"
vni = 4096
peers = ["192.0.2.10"]
peer_mac = "02:00:00:00:09:09"    # the external host's vx0

[[route]]
prefix = "10.99.0.0/24"           # the external host's VXLAN side: replies re-encapsulated
tunnel = "calico"

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

[[tunnel]]
name = "kr"
kind = "ipip"
local = "192.0.2.1"
peers = ["192.0.2.10"]

[[route]]
prefix = "10.46.0.0/16"           # replies to the UEs: GTP-U toward the external host
tunnel = "ran"
"#;

/// [`CONFIG`] with both ports on `driver` ("af_packet" or "af_xdp").
pub fn config_for(driver: &str) -> String {
    CONFIG.replace("driver = \"af_packet\"", &format!("driver = \"{driver}\""))
}

/// Turns transmit checksum offload off on `interface` in namespace `ns` (`ethtool -K IF tx
/// off`, without the `ethtool` program), and checks that it is off.
pub fn tx_checksum_off(ns: &str, interface: &str) -> Result<()> {
    use datapath::port::ethtool;
    let iface = interface.to_string();
    let on = ethtool::in_netns(ns, move || {
        ethtool::set_tx_checksum(&iface, false)?;
        ethtool::tx_checksum(&iface)
    })
    .with_context(|| format!("{ns}: turning off transmit checksum offload on {interface}"))?;
    if on {
        bail!("{ns}: {interface} kept transmit checksum offload on");
    }
    Ok(())
}

/// True when this process runs as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

fn run(args: &[&str]) -> Result<Output> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// The lab's namespaces; dropping it deletes them (and with them every link inside).
pub struct Lab {
    /// The external host.
    pub ext: String,
    /// The gateway.
    pub gw: String,
    /// The pod host.
    pub pods: String,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for n in [&self.ext, &self.gw, &self.pods] {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

impl Lab {
    /// Runs a command inside namespace `ns`.
    ///
    /// # Errors
    /// The command's failure, with its stderr.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Result<Output> {
        let mut v = vec!["ip", "netns", "exec", ns];
        v.extend_from_slice(args);
        run(&v)
    }

    /// The programs the lab runs, each with the Debian package that brings it: checked before
    /// anything is built, so a fresh machine is told what to install instead of failing half
    /// way.
    ///
    /// # Errors
    /// Names every missing program and its package.
    pub fn check_tools() -> Result<()> {
        let missing: Vec<String> = [
            ("ip", "iproute2"),
            ("ping", "iputils-ping"),
            ("sysctl", "procps"),
        ]
        .into_iter()
        .filter(|(tool, _)| {
            !std::env::var_os("PATH")
                .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
        })
        .map(|(tool, package)| format!("`{tool}` (apt-get install {package})"))
        .collect();
        if !missing.is_empty() {
            bail!("the namespace lab needs {}", missing.join(", "));
        }
        Ok(())
    }

    /// Builds the topology; `tag` makes the namespace names unique.
    ///
    /// # Errors
    /// Any failing `ip`/`sysctl` step; what was created so far is removed.
    pub fn build(tag: &str) -> Result<Lab> {
        Self::build_with_queues(tag, 1)
    }

    /// [`Lab::build`] with `queues` receive and transmit queues on every veth, for as many
    /// workers (each owns one queue of each port).
    ///
    /// # Errors
    /// As [`Lab::build`].
    pub fn build_with_queues(tag: &str, queues: u32) -> Result<Lab> {
        let q = queues.max(1).to_string();
        let lab = Lab {
            ext: format!("gwlab-ext-{tag}"),
            gw: format!("gwlab-gw-{tag}"),
            pods: format!("gwlab-pods-{tag}"),
        };
        for n in [&lab.ext, &lab.gw, &lab.pods] {
            run(&["ip", "netns", "add", n])?;
        }
        let (ext, gw, pods) = (lab.ext.as_str(), lab.gw.as_str(), lab.pods.as_str());
        run(&[
            "ip",
            "link",
            "add",
            "ext-a",
            "netns",
            ext,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            "ext-g",
            "netns",
            gw,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
        ])?;
        run(&[
            "ip",
            "link",
            "add",
            "pod-g",
            "netns",
            gw,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            "pod-b",
            "netns",
            pods,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
        ])?;
        // The gateway's namespace: no addresses, no IPv6, no forwarding: the kernel stays out.
        lab.exec(gw, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
        lab.exec(
            gw,
            &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
        )?;
        lab.exec(
            gw,
            &["ip", "link", "set", "ext-g", "address", GW_EXT_MAC, "up"],
        )?;
        lab.exec(
            gw,
            &["ip", "link", "set", "pod-g", "address", GW_PODS_MAC, "up"],
        )?;
        lab.exec(gw, &["ip", "link", "set", "lo", "up"])?;
        // The external host: plain route to the pods via the gateway, and a kernel VXLAN device
        // (VNI 4096, as Calico uses) whose frames the gateway decapsulates. No ARP from the
        // gateway yet: static neighbour entries.
        lab.exec(
            ext,
            &[
                "ip",
                "link",
                "set",
                "ext-a",
                "address",
                "02:00:00:00:00:99",
                "up",
            ],
        )?;
        lab.exec(ext, &["ip", "addr", "add", "192.0.2.10/24", "dev", "ext-a"])?;
        // A peer across a wire sends complete checksums; a veth left to offload sends partial
        // ones, which XDP (and so AF_XDP) cannot tell from bad ones. The lab's hosts behave
        // like hosts on a wire.
        tx_checksum_off(ext, "ext-a")?;
        // IPv6 with no static neighbours: the gateway is found by NDP.
        lab.exec(
            ext,
            &[
                "ip",
                "-6",
                "addr",
                "add",
                "fd00:a::10/64",
                "dev",
                "ext-a",
                "nodad",
            ],
        )?;
        lab.exec(
            ext,
            &[
                "ip",
                "-6",
                "route",
                "add",
                "fd00:244::/64",
                "via",
                "fd00:a::1",
            ],
        )?;
        lab.exec(
            ext,
            &[
                "ip",
                "neigh",
                "add",
                "192.0.2.1",
                "lladdr",
                GW_EXT_MAC,
                "dev",
                "ext-a",
                "nud",
                "permanent",
            ],
        )?;
        lab.exec(
            ext,
            &["ip", "route", "add", "10.244.0.0/16", "via", "192.0.2.1"],
        )?;
        lab.exec(
            ext,
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
        )?;
        lab.exec(
            ext,
            &["ip", "link", "set", "vx0", "address", "02:00:00:00:09:09"],
        )?;
        lab.exec(ext, &["ip", "addr", "add", "10.99.0.1/24", "dev", "vx0"])?;
        lab.exec(ext, &["ip", "link", "set", "vx0", "up"])?;
        lab.exec(ext, &["ip", "route", "add", "10.244.1.5/32", "dev", "vx0"])?;
        lab.exec(
            ext,
            &[
                "ip",
                "neigh",
                "add",
                "10.244.1.5",
                "lladdr",
                GW_EXT_MAC,
                "dev",
                "vx0",
                "nud",
                "permanent",
            ],
        )?;
        // Replies to the VXLAN side come back VXLAN encapsulated; any plain ones would arrive
        // on ext-a, so reverse-path filtering stays off.
        lab.exec(ext, &["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"])?;
        lab.exec(ext, &["sysctl", "-qw", "net.ipv4.conf.ext-a.rp_filter=0"])?;
        // The pod host: two pod addresses, everything else via the gateway.
        lab.exec(
            pods,
            &[
                "ip",
                "link",
                "set",
                "pod-b",
                "address",
                "02:00:00:00:02:01",
                "up",
            ],
        )?;
        lab.exec(
            pods,
            &["ip", "addr", "add", "172.18.0.2/16", "dev", "pod-b"],
        )?;
        tx_checksum_off(pods, "pod-b")?;
        for a in ["fd00:b::2/64", "fd00:244::6/128"] {
            lab.exec(
                pods,
                &["ip", "-6", "addr", "add", a, "dev", "pod-b", "nodad"],
            )?;
        }
        lab.exec(
            pods,
            &["ip", "addr", "add", "10.244.1.5/32", "dev", "pod-b"],
        )?;
        lab.exec(
            pods,
            &["ip", "addr", "add", "10.244.2.6/32", "dev", "pod-b"],
        )?;
        lab.exec(
            pods,
            &[
                "ip",
                "neigh",
                "add",
                "172.18.0.1",
                "lladdr",
                GW_PODS_MAC,
                "dev",
                "pod-b",
                "nud",
                "permanent",
            ],
        )?;
        for net in ["192.0.2.0/24", "10.99.0.0/24", "10.46.0.0/16"] {
            lab.exec(pods, &["ip", "route", "add", net, "via", "172.18.0.1"])?;
        }
        lab.exec(
            pods,
            &[
                "ip",
                "-6",
                "route",
                "add",
                "fd00:a::/64",
                "via",
                "fd00:b::1",
            ],
        )?;
        Ok(lab)
    }
}
