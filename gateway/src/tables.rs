//! From the validated configuration to the datapath: the forwarding snapshot and the ports.

use anyhow::{bail, Context, Result};
use config::{Config, Driver, RouteTarget, TunnelKind};
use datapath::fib::{EncapKind, Fib, FibBuilder, PortInfo, RouteAction, Rpf};
use datapath::port::mem::MemPort;
use datapath::port::pcap::PcapPort;
use datapath::port::Port;
use datapath::ratelimit::Limit;
use datapath::stats::{snapshot, PortSnapshot, Stats};
use datapath::worker::Worker;
use std::sync::Arc;

use crate::routes::RouteControl;

/// Builds the forwarding snapshot of a configuration.
pub fn build_fib(c: &Config) -> Result<Fib> {
    build_fib_with_routes(c, None).map(|(fib, _)| fib)
}

/// Builds the forwarding snapshot and keeps its route tables' writers, for routes changed at
/// run time ([`RouteControl`]): the next hops they may use are the configured neighbours and
/// route vias, and `drop`. With `after`, the snapshot is the running one's successor (a
/// reload): it keeps the learned neighbours and the workers' reclamation domain
/// ([`FibBuilder::succeeding`]).
pub fn build_fib_with_routes(c: &Config, after: Option<&Fib>) -> Result<(Fib, RouteControl)> {
    let mut b = after.map_or_else(FibBuilder::new, FibBuilder::succeeding);
    for p in &c.ports {
        b.add_port(PortInfo {
            mac: p.mac.0,
            mtu: p.mtu,
            promiscuous: p.promiscuous,
        })
        .map_err(|e| anyhow::anyhow!("port {}: {e}", p.name))?;
    }
    for (i, p) in c.ports.iter().enumerate() {
        for a in &p.addresses {
            b.add_address(i as u8, a.addr(), a.prefix_len());
        }
        b.set_vlans(i as u8, &p.vlans);
        b.set_rpf(
            i as u8,
            match p.rpf {
                config::schema::RawRpf::Off => Rpf::Off,
                config::schema::RawRpf::Loose => Rpf::Loose,
                config::schema::RawRpf::Strict => Rpf::Strict,
            },
        );
    }
    b.set_reply_limit(Limit {
        rate: c.reply_limit.rate,
        burst: c.reply_limit.burst,
    });
    for n in &c.neighbors {
        b.add_neighbor(n.address, n.mac.0);
    }
    for t in &c.tunnels {
        match &t.kind {
            TunnelKind::Gtpu { peer, sessions } => {
                let sessions: Vec<(u32, std::net::IpAddr, u8)> = sessions
                    .iter()
                    .map(|s| (s.teid_in, s.ue.network(), s.ue.prefix_len()))
                    .collect();
                b.add_gtpu_tunnel(&t.name, t.local, *peer, &sessions);
            }
            TunnelKind::Vxlan {
                udp_port,
                vni,
                peers,
                ..
            } => {
                b.add_vxlan_tunnel(&t.name, t.local, *udp_port, *vni, peers);
            }
            TunnelKind::Geneve {
                udp_port,
                vni,
                peers,
                ..
            } => {
                b.add_geneve_tunnel(&t.name, t.local, *udp_port, *vni, peers);
            }
            TunnelKind::Ipip { peers } => {
                b.add_ipip_tunnel(&t.name, t.local, peers);
            }
        }
    }
    for r in &c.routes {
        let action = match &r.target {
            RouteTarget::Drop => RouteAction::Drop,
            RouteTarget::Tunnel { tunnel, via } => {
                add_tunnel_route(&mut b, c, r.prefix, *tunnel, via)?;
                continue;
            }
            RouteTarget::Via(hops) => {
                RouteAction::Via(hops.iter().map(|h| (h.address, h.port as u8)).collect())
            }
        };
        b.add_route(
            r.prefix.network(),
            r.prefix.prefix_len(),
            &action,
            r.hairpin,
        )
        .map_err(|e| anyhow::anyhow!("route {}: {e}", r.prefix))?;
    }
    let mut vias: Vec<(std::net::IpAddr, u32)> = Vec::new();
    let hops = c
        .neighbors
        .iter()
        .map(|n| (n.address, n.port))
        .chain(c.routes.iter().flat_map(|r| match &r.target {
            RouteTarget::Via(hops) => hops.iter().map(|h| (h.address, h.port)).collect(),
            _ => Vec::new(),
        }));
    for (addr, port) in hops {
        if !vias.iter().any(|(a, _)| *a == addr) {
            vias.push((addr, b.next_hop_index(addr, port as u8, false)));
        }
    }
    let blackhole = b.blackhole_index();
    let fixed = c
        .ports
        .iter()
        .flat_map(|p| &p.addresses)
        .flat_map(|a| {
            let host = ipnet::IpNet::new(a.addr(), a.max_prefix_len()).unwrap_or(*a);
            [a.trunc(), host]
        })
        .collect();
    let reachable = crate::routes::Reachable {
        connected: c
            .ports
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.addresses.iter().map(move |a| (a.trunc(), i as u8)))
            .collect(),
        macs: c.neighbors.iter().map(|n| (n.address, n.mac.0)).collect(),
    };
    let (fib, writers) = b
        .build_with_writers()
        .map_err(|e| anyhow::anyhow!("building the route tables: {e}"))?;
    let routes = RouteControl::new(writers, (vias, blackhole), fixed, &fib, reachable);
    Ok((fib, routes))
}

/// A `[[route]]` into a tunnel. GTP-U: each session whose UE range lies inside the prefix is
/// encapsulated toward the peer with its downlink TEID (and QFI); the prefix's other addresses
/// are dropped as `gtpu_no_session`. IPIP and VXLAN: encapsulated toward the route's `via`
/// peers, or all of the tunnel's peers without one, by inner flow hash when there are several
/// (VXLAN: to each peer's `peer_mac`, from the MAC of the port toward it). Geneve: the same,
/// with an inner Ethernet header only when the tunnel names the peers' MACs.
fn add_tunnel_route(
    b: &mut FibBuilder,
    c: &Config,
    prefix: ipnet::IpNet,
    t: usize,
    via: &[std::net::IpAddr],
) -> Result<()> {
    let Some(tunnel) = c.tunnels.get(t) else {
        bail!("route {prefix}: unknown tunnel")
    };
    let chosen = |peers: &[std::net::IpAddr]| -> Vec<std::net::IpAddr> {
        if via.is_empty() {
            peers.to_vec()
        } else {
            via.to_vec()
        }
    };
    let members: Vec<(EncapKind, std::net::IpAddr)> = match &tunnel.kind {
        TunnelKind::Gtpu { peer, sessions } => {
            b.add_no_session_route(prefix.network(), prefix.prefix_len());
            for s in sessions.iter().filter(|s| prefix.contains(&s.ue)) {
                let kind = EncapKind::Gtpu {
                    teid: s.teid_out,
                    qfi: s.qfi,
                };
                b.add_encap_route(s.ue.network(), s.ue.prefix_len(), kind, tunnel.local, *peer)
                    .map_err(|e| anyhow::anyhow!("tunnel {} session {}: {e}", tunnel.name, s.ue))?;
            }
            return Ok(());
        }
        TunnelKind::Ipip { peers } => chosen(peers)
            .into_iter()
            .map(|p| (EncapKind::Ipip, p))
            .collect(),
        TunnelKind::Geneve {
            udp_port,
            vni,
            peers,
            peer_macs,
        } => chosen(peers)
            .into_iter()
            .map(|peer| {
                let inner_macs =
                    peer_mac_of(peers, peer_macs, peer).map(|m| [m.0, port_mac_toward(c, peer)]);
                let kind = EncapKind::Geneve {
                    vni: *vni,
                    udp_port: *udp_port,
                    inner_macs,
                };
                (kind, peer)
            })
            .collect(),
        TunnelKind::Vxlan {
            udp_port,
            vni,
            peers,
            peer_macs,
        } => {
            let mut members = Vec::new();
            for peer in chosen(peers) {
                let Some(peer_mac) = peer_mac_of(peers, peer_macs, peer) else {
                    bail!(
                        "route {prefix}: vxlan tunnel `{}` has no peer_mac for {peer}",
                        tunnel.name
                    )
                };
                let inner_src = port_mac_toward(c, peer);
                let kind = EncapKind::Vxlan {
                    vni: *vni,
                    udp_port: *udp_port,
                    inner_dst: peer_mac.0,
                    inner_src,
                };
                members.push((kind, peer));
            }
            members
        }
    };
    if members.is_empty() {
        bail!("tunnel {}: no peer", tunnel.name)
    }
    b.add_encap_ecmp_route(
        prefix.network(),
        prefix.prefix_len(),
        tunnel.local,
        &members,
    )
    .map_err(|e| anyhow::anyhow!("route {prefix} into tunnel {}: {e}", tunnel.name))
}

/// The configured MAC of `peer`'s device (`peer_macs` is parallel to `peers`).
fn peer_mac_of<'a>(
    peers: &[std::net::IpAddr],
    peer_macs: &'a [config::MacAddr],
    peer: std::net::IpAddr,
) -> Option<&'a config::MacAddr> {
    peers
        .iter()
        .position(|p| *p == peer)
        .and_then(|i| peer_macs.get(i))
}

/// The inner source MAC of an Ethernet-carrying tunnel: the gateway's port toward the peer.
fn port_mac_toward(c: &Config, peer: std::net::IpAddr) -> [u8; 6] {
    c.ports
        .iter()
        .find(|p| p.addresses.iter().any(|a| a.contains(&peer)))
        .map_or([0x02, 0, 0, 0, 0, 0], |p| p.mac.0)
}

/// Opens the ports of a configuration for one worker: for an offline run, or worker `w` of
/// `n` on live interfaces (AF_XDP queue `w` of each interface; one AF_PACKET socket per
/// worker in a fanout group). `xdp` holds each AF_XDP port's attachment, made on first use.
fn open_ports(
    c: &Config,
    w: usize,
    n: usize,
    xdp: &mut [Option<Arc<datapath::port::af_xdp::XdpAttachment>>],
    modes: &mut [String],
    memory: Option<&Arc<datapath::framemem::FrameMemory>>,
) -> Result<Vec<Box<dyn Port>>> {
    let mut ports: Vec<Box<dyn Port>> = Vec::new();
    for (i, p) in c.ports.iter().enumerate() {
        match &p.driver {
            Driver::Pcap { rx, tx } => {
                let port = PcapPort::open(rx.as_deref(), tx.as_deref(), p.mac.0)
                    .with_context(|| format!("port {}", p.name))?;
                ports.push(Box::new(port));
            }
            Driver::Memory => ports.push(Box::new(MemPort::new([]))),
            Driver::AfPacket { interface } => {
                // One fanout group per port of this process.
                let group = (n > 1).then(|| ((std::process::id() as u16) << 4) | i as u16);
                let port = datapath::port::af_packet::AfPacketPort::open_fanout(interface, group)
                    .with_context(|| format!("port {}: AF_PACKET on {interface}", p.name))?;
                ports.push(Box::new(port));
            }
            Driver::AfXdp { interface } => {
                use datapath::port::af_xdp::{AfXdpPort, XdpAttachment};
                let ctx = || format!("port {}: AF_XDP on {interface}", p.name);
                let slot = xdp.get_mut(i).context("port index")?;
                let att = match slot {
                    Some(a) => Arc::clone(a),
                    None => {
                        queues_for_workers(&p.name, interface, n)?;
                        let owned = p.pass_to_kernel.then(|| owned_prefixes(c));
                        let a = XdpAttachment::attach_owning(
                            interface,
                            n as u32,
                            false,
                            owned.as_deref(),
                        )
                        .with_context(ctx)?;
                        *slot = Some(Arc::clone(&a));
                        a
                    }
                };
                let memory = memory.context("no frame memory for an AF_XDP port")?;
                let port = AfXdpPort::open(&att, w as u32, memory).with_context(ctx)?;
                let mode = format!(
                    "{} XDP, {}",
                    att.mode().name(),
                    if port.zero_copy() {
                        "zero-copy"
                    } else {
                        "copy"
                    }
                );
                datapath::log::event(
                    "port_open",
                    &[
                        ("port", &p.name),
                        ("driver", &"af_xdp"),
                        ("interface", interface),
                        ("queue", &w),
                        ("mode", &mode),
                    ],
                );
                if let Some(m) = modes.get_mut(i) {
                    *m = mode;
                }
                ports.push(Box::new(port));
            }
        }
    }
    Ok(ports)
}

/// Gives an AF_XDP port's interface one receive queue per worker (`ethtool -L`, through the
/// ioctl): worker `w` binds queue `w`, and frames on a queue no worker binds would go to the
/// kernel. Fails, saying what to do, when the interface cannot have as many queues as there
/// are workers; more queues than workers that cannot be reduced are logged.
fn queues_for_workers(port: &str, interface: &str, n: usize) -> Result<()> {
    use datapath::port::ethtool;
    let n = n as u32;
    let before = match ethtool::channels(interface) {
        Ok(c) => c,
        Err(e) => {
            // A driver that does not report its queues: binding queue w says whether it has it.
            datapath::log::event(
                "port_queues",
                &[
                    ("port", &port),
                    ("interface", &interface),
                    ("workers", &n),
                    (
                        "note",
                        &format!("the driver does not report its queues ({e})"),
                    ),
                ],
            );
            return Ok(());
        }
    };
    let (after, why) = match ethtool::set_rx_queues(interface, n) {
        Ok(c) => (c, String::new()),
        Err(e) => (before, e.to_string()),
    };
    let have = after.rx_queues();
    if have < n {
        bail!(
            "port {port}: {interface} has {have} receive queue(s) (at most {}) for {n} workers, and each worker binds a queue of its own: give it {n} (`ethtool -L {interface} combined {n}`) or run {have} worker(s){}",
            after.max_rx_queues(),
            if why.is_empty() {
                String::new()
            } else {
                format!(" (setting {n} failed: {why})")
            }
        );
    }
    datapath::log::event(
        "port_queues",
        &[
            ("port", &port),
            ("interface", &interface),
            ("workers", &n),
            ("queues_before", &before.rx_queues()),
            ("queues", &have),
            (
                "note",
                &if have > n {
                    format!(
                        "frames on queues {n}..{have} go to the kernel, not to a worker (reducing them failed: {why})"
                    )
                } else {
                    "one queue per worker".to_string()
                },
            ),
        ],
    );
    Ok(())
}

/// The ports whose frames are steered by inner flow, when there is more than one worker to
/// steer them to.
fn steering_ports(c: &Config, workers: usize) -> Option<[bool; datapath::stats::MAX_PORTS]> {
    let mut inner = [false; datapath::stats::MAX_PORTS];
    for (i, p) in c.ports.iter().enumerate().take(inner.len()) {
        inner[i] = p.steering == config::schema::RawSteering::Inner;
    }
    (workers > 1 && inner.iter().any(|&s| s)).then_some(inner)
}

/// A worker's frame memory: the UMEM its AF_XDP sockets share, the chunks it posts for other
/// workers to copy the frames they hand it into, and those it lends them. `None` when it
/// needs none of these.
fn worker_memory(
    c: &Config,
    workers: usize,
    steering: bool,
) -> Result<Option<Arc<datapath::framemem::FrameMemory>>> {
    let sockets = c
        .ports
        .iter()
        .filter(|p| matches!(p.driver, Driver::AfXdp { .. }))
        .count();
    if sockets == 0 && !steering {
        return Ok(None);
    }
    let handoff = if steering {
        datapath::port::handoff::frames_for(workers)
    } else {
        0
    };
    let frames = if sockets > 0 {
        datapath::port::af_xdp::frames_for(sockets)
    } else {
        2 * datapath::pipeline::batch::BATCH
    };
    let chunk = datapath::port::af_xdp::FRAME as usize;
    datapath::framemem::FrameMemory::new(frames + handoff, chunk)
        .map(Some)
        .context("mapping the worker's frame memory")
}

/// What the gateway owns, for a port that passes the rest to the kernel: every route's
/// prefix, every port's connected subnet and address, and every tunnel endpoint.
pub fn owned_prefixes(c: &config::Config) -> Vec<(std::net::IpAddr, u8)> {
    let mut v: Vec<(std::net::IpAddr, u8)> = Vec::new();
    for r in &c.routes {
        v.push((r.prefix.network(), r.prefix.prefix_len()));
    }
    for p in &c.ports {
        for a in &p.addresses {
            v.push((a.network(), a.prefix_len()));
            v.push((a.addr(), a.max_prefix_len()));
        }
    }
    for t in &c.tunnels {
        v.push((t.local, if t.local.is_ipv4() { 32 } else { 128 }));
    }
    v.sort();
    v.dedup();
    v
}

/// What an offline run produced.
pub struct Outcome {
    /// Counters per port.
    pub stats: Vec<PortSnapshot>,
    /// Problems that did not stop the run (a capture that ended early).
    pub warnings: Vec<String>,
}

/// Runs one worker over the configured ports until every input is consumed. Offline runs are
/// single-threaded whatever `[gateway] workers` says: a pcap file is one ordered stream.
pub fn run_offline(c: &Config) -> Result<Outcome> {
    run(c, &crate::control::LiveOptions::default())
}

/// True when a port receives from a live interface rather than a file or memory.
pub fn has_live_ports(c: &Config) -> bool {
    c.ports
        .iter()
        .any(|p| matches!(p.driver, Driver::AfPacket { .. } | Driver::AfXdp { .. }))
}

/// Runs the configured ports: to the end of input on one worker when every port is a file
/// or memory; when a port is live, one worker per core of `[gateway] workers` (each owning a
/// queue of every port) with the control thread ([`crate::control`]) until a signal or
/// `live.duration`.
pub fn run(c: &Config, live: &crate::control::LiveOptions) -> Result<Outcome> {
    let (fib, routes) = build_fib_with_routes(c, None)?;
    let mut xdp = vec![None; c.ports.len()];
    if has_live_ports(c) {
        let n = c.workers.len().max(1);
        if n > 1
            && !c
                .ports
                .iter()
                .all(|p| matches!(p.driver, Driver::AfPacket { .. } | Driver::AfXdp { .. }))
        {
            bail!("several workers need every port live (af_xdp or af_packet): a pcap or memory port is one stream");
        }
        let mut workers = Vec::new();
        let mut modes = vec![String::new(); c.ports.len()];
        let steering = steering_ports(c, n);
        for p in &c.ports {
            if n == 1 && p.steering == config::schema::RawSteering::Inner {
                datapath::log::event(
                    "steering",
                    &[
                        ("port", &p.name),
                        (
                            "note",
                            &"steering = \"inner\" has no effect with one worker",
                        ),
                    ],
                );
            }
        }
        let mut memories = Vec::new();
        for w in 0..n {
            let memory = worker_memory(c, n, steering.is_some())?;
            let ports = open_ports(c, w, n, &mut xdp, &mut modes, memory.as_ref())?;
            workers.push(Worker::new(ports, c.burst, Arc::new(Stats::default())));
            memories.extend(memory);
        }
        if let Some(inner) = steering {
            let handoff = datapath::port::handoff::Handoff::new(memories);
            workers = workers
                .into_iter()
                .enumerate()
                .map(|(w, worker)| {
                    let end = handoff
                        .end(w)
                        .context("a worker's handoff end, taken twice")?;
                    Ok(worker.with_steering(end, inner))
                })
                .collect::<Result<_>>()?;
        }
        let slot = datapath::slot::FibSlot::new(Arc::new(fib));
        let reload = live
            .config_file
            .clone()
            .map(|path| crate::reload::Reloader::new(path, c.clone()));
        let mut changes = crate::control::Changes::new(slot, Some(routes), reload);
        if !c.route_sources.is_empty() {
            changes.mirror = Some(
                crate::kernel_routes::Mirror::new(c.route_sources.clone())
                    .context("opening rtnetlink to mirror [[route_source]] tables")?
                    .with_owners(xdp.iter().flatten().cloned().collect(), owned_prefixes(c)),
            );
        }
        if let Some(e) = &c.route_export {
            changes.export = Some(
                crate::kernel_routes::Export::start(e, &e.prefixes(&c.tunnels))
                    .with_context(|| format!("[route_export]: creating TUN device {}", e.device))?,
            );
        }
        let live = crate::control::LiveOptions {
            port_modes: modes,
            ..live.clone()
        };
        let snap = crate::control::run_live(c, workers, &live, changes)?;
        return Ok(Outcome {
            stats: snap,
            warnings: Vec::new(),
        });
    }
    let stats = Arc::new(Stats::default());
    let mut modes = vec![String::new(); c.ports.len()];
    let memory = worker_memory(c, 1, false)?;
    let mut worker = Worker::new(
        open_ports(c, 0, 1, &mut xdp, &mut modes, memory.as_ref())?,
        c.burst,
        stats.clone(),
    );
    worker.run_to_end(&fib).context("writing output")?;
    let mut warnings = Vec::new();
    for (i, p) in c.ports.iter().enumerate() {
        let Some(port) = worker.port_mut(i) else {
            continue;
        };
        if let Some(pcap) = port.as_any_mut().downcast_mut::<PcapPort>() {
            if let Some(e) = &pcap.rx_error {
                warnings.push(format!("port {}: replay stopped early: {e}", p.name));
            }
            if let Some(e) = &pcap.tx_error {
                warnings.push(format!("port {}: writing capture failed: {e}", p.name));
            }
        }
    }
    Ok(Outcome {
        stats: snapshot([&*stats], c.ports.len()),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    /// The configuration refuses an `af_xdp` MTU whose frames the AF_XDP port cannot receive:
    /// the largest MTU with an Ethernet header and two VLAN tags is the port's largest frame.
    #[test]
    fn the_af_xdp_mtu_limit_is_the_ports_largest_frame() {
        assert_eq!(
            config::model::AF_XDP_MAX_MTU as usize + 14 + 8,
            datapath::port::af_xdp::MAX_FRAME
        );
    }
}
