//! Human and JSON renderings: the configuration summary and the counter tables.

use config::{Config, Driver, RouteTarget};
use datapath::pipeline::drop::DropReason;
use datapath::stats::PortSnapshot;
use serde_json::{json, Map, Value};
use std::fmt::Write;

/// The one-screen summary `gateway check` prints.
pub fn summary(c: &Config) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "configuration OK: gateway `{}`", c.name);
    let _ = writeln!(s, "workers: cores {:?}, burst {}", c.workers, c.burst);
    let _ = writeln!(s, "ports ({}):", c.ports.len());
    for p in &c.ports {
        let detail = match &p.driver {
            Driver::Pcap { rx, tx } => format!(
                "rx {} tx {}",
                rx.as_ref().map_or("-".into(), |p| p.display().to_string()),
                tx.as_ref().map_or("-".into(), |p| p.display().to_string())
            ),
            Driver::AfXdp { interface } | Driver::AfPacket { interface } => interface.clone(),
            Driver::Memory => String::new(),
        };
        let addrs: Vec<String> = p.addresses.iter().map(|a| a.to_string()).collect();
        let steering = match (p.steering, c.workers.len()) {
            (config::schema::RawSteering::Rss, _) => "",
            (config::schema::RawSteering::Inner, 1) => {
                "  steering inner (no effect: one worker, nothing to steer to)"
            }
            (config::schema::RawSteering::Inner, _) => "  steering inner",
        };
        let _ = writeln!(
            s,
            "  {:<10} {:<9} {}  mtu {}  {}  {}{steering}",
            p.name,
            p.driver.name(),
            p.mac,
            p.mtu,
            addrs.join(" "),
            detail
        );
    }
    let v4 = c
        .routes
        .iter()
        .filter(|r| r.prefix.addr().is_ipv4())
        .count();
    let ecmp = c
        .routes
        .iter()
        .filter(|r| matches!(&r.target, RouteTarget::Via(h) if h.len() > 1))
        .count();
    let drop = c
        .routes
        .iter()
        .filter(|r| r.target == RouteTarget::Drop)
        .count();
    let _ = writeln!(
        s,
        "routes: {} IPv4, {} IPv6 ({} ECMP, {} drop); default route: {}",
        v4,
        c.routes.len() - v4,
        ecmp,
        drop,
        if c.routes.iter().any(|r| r.prefix.prefix_len() == 0) {
            "yes"
        } else {
            "none"
        }
    );
    let _ = writeln!(s, "neighbours: {} static", c.neighbors.len());
    let _ = writeln!(s, "tunnels ({}):", c.tunnels.len());
    for t in &c.tunnels {
        let what = match &t.kind {
            config::TunnelKind::Gtpu { peer, sessions } => {
                format!("gtpu  peer {peer}, {} session(s)", sessions.len())
            }
            config::TunnelKind::Vxlan {
                udp_port,
                vni,
                peers,
                ..
            } => {
                format!("vxlan udp {udp_port} vni {vni}, {} peer(s)", peers.len())
            }
            config::TunnelKind::Geneve {
                udp_port,
                vni,
                peers,
                peer_macs,
            } => {
                let inner = if peer_macs.is_empty() {
                    "ip"
                } else {
                    "ethernet"
                };
                format!(
                    "geneve udp {udp_port} vni {vni}, {} peer(s), {inner} inside",
                    peers.len()
                )
            }
            config::TunnelKind::Ipip { peers } => format!("ipip  {} peer(s)", peers.len()),
        };
        let _ = writeln!(s, "  {:<10} local {}  {}", t.name, t.local, what);
    }
    s
}

/// The counter table `gateway run` prints.
pub fn table(c: &Config, stats: &[PortSnapshot]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<10} {:>10} {:>12} {:>10} {:>12} {:>8} {:>8} {:>8}",
        "port", "rx_pkts", "rx_bytes", "tx_pkts", "tx_bytes", "decap", "local", "dropped"
    );
    for (p, st) in c.ports.iter().zip(stats) {
        let _ = writeln!(
            s,
            "{:<10} {:>10} {:>12} {:>10} {:>12} {:>8} {:>8} {:>8}",
            p.name,
            st.rx_packets,
            st.rx_bytes,
            st.tx_packets,
            st.tx_bytes,
            st.decap,
            st.local,
            st.dropped()
        );
    }
    let mut any = false;
    for r in DropReason::ALL {
        let per_port: Vec<String> = c
            .ports
            .iter()
            .zip(stats)
            .filter(|(_, st)| st.drops_of(*r) > 0)
            .map(|(p, st)| format!("{}={}", p.name, st.drops_of(*r)))
            .collect();
        if per_port.is_empty() {
            continue;
        }
        if !any {
            let _ = writeln!(s, "\ndrops by reason (input port):");
            any = true;
        }
        let total: u64 = stats.iter().map(|st| st.drops_of(*r)).sum();
        let _ = writeln!(
            s,
            "  {:<22} {:>8}  {:<28} {}",
            r.name(),
            total,
            per_port.join(" "),
            r.description()
        );
    }
    if !any {
        let _ = writeln!(s, "\nno drops");
    }
    s
}

/// The counters as JSON: per port rx/tx/local (and for AF_XDP ports, frames sent in place
/// or copied) and non-zero drops by reason, and the drop totals by reason.
pub fn json(c: &Config, stats: &[PortSnapshot]) -> Value {
    let mut ports = Map::new();
    let mut totals = Map::new();
    for (p, st) in c.ports.iter().zip(stats) {
        let mut drops = Map::new();
        for r in DropReason::ALL {
            let n = st.drops_of(*r);
            if n > 0 {
                drops.insert(r.name().into(), json!(n));
                let t = totals.entry(r.name()).or_insert(json!(0u64));
                *t = json!(t.as_u64().unwrap_or(0) + n);
            }
        }
        let mut tunnels = Map::new();
        for (k, kind) in datapath::stats::TUNNEL_KINDS.iter().enumerate() {
            if st.decap_kind[k] + st.encap_kind[k] > 0 {
                tunnels.insert(
                    (*kind).into(),
                    json!({ "decap": st.decap_kind[k], "encap": st.encap_kind[k] }),
                );
            }
        }
        let mut port = json!({
            "rx_packets": st.rx_packets,
            "rx_bytes": st.rx_bytes,
            "tx_packets": st.tx_packets,
            "tx_bytes": st.tx_bytes,
            "local": st.local,
            "decap": st.decap,
            "replies_limited": st.replies_limited,
            "tunnels": tunnels,
            "drops": drops,
        });
        // How an AF_XDP port's frames left: by descriptor from where they were received, or
        // copied into its frame memory first (other ports always copy, or write a file).
        if matches!(p.driver, config::Driver::AfXdp { .. }) {
            port["tx_in_place"] = json!(st.tx_in_place);
            port["tx_copied"] = json!(st.tx_copied);
        }
        if p.steering == config::schema::RawSteering::Inner {
            port["handed_off"] = json!(st.handed_off);
        }
        ports.insert(p.name.clone(), port);
    }
    json!({ "ports": ports, "drops": totals })
}

/// What each worker received, sent and handed to another worker, per port: how the traffic
/// spreads over the cores.
pub fn workers_json(c: &Config, workers: &[Vec<PortSnapshot>]) -> Value {
    let rows: Vec<Value> = workers
        .iter()
        .map(|ports| {
            let mut m = Map::new();
            for (p, st) in c.ports.iter().zip(ports) {
                m.insert(
                    p.name.clone(),
                    json!({
                        "rx_packets": st.rx_packets,
                        "tx_packets": st.tx_packets,
                        "handed_off": st.handed_off,
                    }),
                );
            }
            Value::Object(m)
        })
        .collect();
    Value::Array(rows)
}

/// The resolver's state and counters as JSON: occupancy, and what it did and refused
/// ([`crate::neighbors::NeighborCounters`]); `resolve_shed` is the workers' resolve requests
/// that were not queued.
pub fn neighbors_json(n: &crate::neighbors::Neighbors, resolve_shed: u64) -> Value {
    let k = n.counters();
    let (entries, capacity) = n.table_occupancy();
    json!({
        "table_entries": entries,
        "table_capacity": capacity,
        "tracked": n.tracked(),
        "resolved": n.resolved(),
        "requests_sent": k.requests_sent,
        "requests_unsent": k.requests_unsent,
        "learned": k.learned,
        "confirmed": k.confirmed,
        "unsolicited": k.unsolicited,
        "refused": k.refused,
        "failed": k.failed,
        "aged_out": k.aged_out,
        "evicted": k.evicted,
        "tracker_full": k.tracker_full,
        "backoff": k.backoff,
        "table_full": k.table_full,
        "resolve_shed": resolve_shed,
    })
}
