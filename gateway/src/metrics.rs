//! Prometheus metrics: `GET /metrics` in the text exposition format (version 0.0.4), served by
//! `tiny_http` on a thread of its own (`gateway run --metrics ADDR:PORT`, or `[metrics]
//! listen`).
//!
//! - The workers' counters are read at scrape time from their per-worker [`Stats`] (relaxed
//!   atomic loads, no lock and no work on the packet path), per port and worker.
//! - What the control thread owns (neighbours, route table sizes, reloads, control-socket
//!   clients) it copies into a [`ControlFacts`] under a mutex a few times a second; the scrape
//!   reads that copy. Neither the workers nor the control thread ever wait for a scrape.
//! - Names follow Prometheus's conventions: a `gateway_` prefix, `_total` on counters, units
//!   in names (`_bytes`), HELP and TYPE lines; drop reasons are the stable names of the drop
//!   table (`gateway stats`, `gateway run`).

use config::{Config, Driver};
use datapath::pipeline::drop::DropReason;
use datapath::stats::Stats;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

/// What the control thread knows, copied for the scrape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlFacts {
    /// IPv4 and IPv6 prefixes in the route tables.
    pub routes: (usize, usize),
    /// `gateway route` changes applied and refused.
    pub route_updates: (u64, u64),
    /// Reloads that took effect, and that were refused.
    pub reloads: (u64, u64),
    /// The configuration in force: 1 at start, one more per reload that took effect.
    pub generation: u64,
    /// Entries in the workers' neighbour table, and its size.
    pub neighbor_table: (usize, usize),
    /// Addresses the resolver tracks.
    pub neighbors_tracked: usize,
    /// The resolver's counters.
    pub neighbors: crate::neighbors::NeighborCounters,
    /// Resolve requests the workers shed.
    pub resolve_shed: u64,
    /// Control-socket clients by outcome.
    pub control: crate::control_socket::Counters,
    /// The kernel-table mirror's counters, when `[[route_source]]` is set.
    pub mirror: Option<crate::kernel_routes::MirrorCounters>,
}

/// A port as the metrics describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// The port's name.
    pub name: String,
    /// `af_xdp`, `af_packet`, `pcap`, `memory`.
    pub driver: String,
    /// The interface, for live ports.
    pub interface: String,
    /// How it runs (AF_XDP: `native zero-copy`, `skb copy`, ...), when the driver says.
    pub mode: String,
}

impl PortInfo {
    /// The ports of `c`; `modes` is what opening them said, by port index.
    pub fn of(c: &Config, modes: &[String]) -> Vec<PortInfo> {
        c.ports
            .iter()
            .enumerate()
            .map(|(i, p)| PortInfo {
                name: p.name.clone(),
                driver: p.driver.name().to_string(),
                interface: match &p.driver {
                    Driver::AfXdp { interface } | Driver::AfPacket { interface } => {
                        interface.clone()
                    }
                    _ => String::new(),
                },
                mode: modes.get(i).cloned().unwrap_or_default(),
            })
            .collect()
    }
}

/// Everything a scrape reads.
pub struct Source {
    /// The gateway's name.
    pub name: String,
    /// Its ports.
    pub ports: Vec<PortInfo>,
    /// Each worker's counters.
    pub workers: Vec<Arc<Stats>>,
    /// The control thread's copy.
    pub facts: Arc<Mutex<ControlFacts>>,
}

/// The text exposition format, one metric family at a time.
struct Writer {
    out: String,
}

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// A label value as the format writes it: backslash, double quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every metric of `src`.
pub fn render(src: &Source) -> String {
    let facts = src
        .facts
        .lock()
        .map(|f| f.clone())
        .unwrap_or_else(|e| e.into_inner().clone());
    let mut w = Writer { out: String::new() };
    w.family(
        "gateway_build_info",
        "gauge",
        "The gateway's version and name (always 1).",
    );
    w.sample(
        "gateway_build_info",
        &[("version", env!("CARGO_PKG_VERSION")), ("name", &src.name)],
        1,
    );
    w.family(
        "gateway_port_info",
        "gauge",
        "Each port's driver, interface and mode (always 1).",
    );
    for p in &src.ports {
        w.sample(
            "gateway_port_info",
            &[
                ("port", &p.name),
                ("driver", &p.driver),
                ("interface", &p.interface),
                ("mode", &p.mode),
            ],
            1,
        );
    }

    type Field = fn(&datapath::stats::PortStats) -> u64;
    let per_worker: [(&str, &str, Field); 9] = [
        ("gateway_rx_packets_total", "Frames received.", |p| p.rx_packets.get()),
        ("gateway_rx_bytes_total", "Bytes received.", |p| p.rx_bytes.get()),
        ("gateway_tx_packets_total", "Frames transmitted.", |p| p.tx_packets.get()),
        ("gateway_tx_bytes_total", "Bytes transmitted.", |p| p.tx_bytes.get()),
        (
            "gateway_tx_in_place_total",
            "Frames an AF_XDP port sent from where they were received, without a copy.",
            |p| p.tx_in_place.get(),
        ),
        (
            "gateway_tx_copied_total",
            "Frames an AF_XDP port copied into its frame memory to send (from another kind of port or the control thread).",
            |p| p.tx_copied.get(),
        ),
        (
            "gateway_handed_off_total",
            "Frames received on a port with steering = \"inner\" and handed to the worker that owns their flow, by input port and receiving worker.",
            |p| p.handed_off.get(),
        ),
        (
            "gateway_local_packets_total",
            "Packets for the gateway itself, by input port.",
            |p| p.local.get(),
        ),
        (
            "gateway_replies_limited_total",
            "ICMP errors and GTP-U Echo Responses not sent because of the reply rate limit, by input port.",
            |p| p.replies_limited.get(),
        ),
    ];
    for (name, help, field) in per_worker {
        w.family(name, "counter", help);
        for (wi, stats) in src.workers.iter().enumerate() {
            let worker = wi.to_string();
            for (p, ps) in src.ports.iter().zip(&stats.ports) {
                w.sample(name, &[("port", &p.name), ("worker", &worker)], field(ps));
            }
        }
    }
    for (name, help, encap) in [
        (
            "gateway_decap_packets_total",
            "Tunnel packets decapsulated, by input port and tunnel kind.",
            false,
        ),
        (
            "gateway_encap_packets_total",
            "Packets sent encapsulated, by input port and tunnel kind.",
            true,
        ),
    ] {
        w.family(name, "counter", help);
        for (wi, stats) in src.workers.iter().enumerate() {
            let worker = wi.to_string();
            for (p, ps) in src.ports.iter().zip(&stats.ports) {
                for (k, kind) in datapath::stats::TUNNEL_KINDS.iter().enumerate() {
                    let c = if encap {
                        &ps.encap_kind[k]
                    } else {
                        &ps.decap_kind[k]
                    };
                    w.sample(
                        name,
                        &[("port", &p.name), ("worker", &worker), ("kind", kind)],
                        c.get(),
                    );
                }
            }
        }
    }
    w.family(
        "gateway_drops_total",
        "counter",
        "Packets dropped, by input port and reason (the names of the drop table).",
    );
    for (pi, p) in src.ports.iter().enumerate() {
        for r in DropReason::ALL {
            let n: u64 = src
                .workers
                .iter()
                .filter_map(|s| s.ports.get(pi))
                .map(|ps| ps.drops[*r as usize].get())
                .sum();
            w.sample(
                "gateway_drops_total",
                &[("port", &p.name), ("reason", r.name())],
                n,
            );
        }
    }

    w.family("gateway_routes", "gauge", "Prefixes in the route tables.");
    w.sample(
        "gateway_routes",
        &[("family", "ipv4")],
        facts.routes.0 as u64,
    );
    w.sample(
        "gateway_routes",
        &[("family", "ipv6")],
        facts.routes.1 as u64,
    );
    w.family(
        "gateway_route_updates_total",
        "counter",
        "Route changes on the control socket, applied or refused.",
    );
    w.sample(
        "gateway_route_updates_total",
        &[("result", "applied")],
        facts.route_updates.0,
    );
    w.sample(
        "gateway_route_updates_total",
        &[("result", "refused")],
        facts.route_updates.1,
    );
    if let Some(m) = &facts.mirror {
        mirror_metrics(&mut w, m);
    }
    w.family(
        "gateway_reloads_total",
        "counter",
        "Configuration reloads, by outcome.",
    );
    w.sample(
        "gateway_reloads_total",
        &[("result", "ok")],
        facts.reloads.0,
    );
    w.sample(
        "gateway_reloads_total",
        &[("result", "error")],
        facts.reloads.1,
    );
    w.single(
        "gateway_config_generation",
        "gauge",
        "The configuration in force: 1 at start, one more per reload that took effect.",
        facts.generation,
    );

    w.single(
        "gateway_neighbor_table_entries",
        "gauge",
        "Entries in the workers' neighbour table.",
        facts.neighbor_table.0 as u64,
    );
    w.single(
        "gateway_neighbor_table_capacity",
        "gauge",
        "Size of the workers' neighbour table.",
        facts.neighbor_table.1 as u64,
    );
    w.single(
        "gateway_neighbors_tracked",
        "gauge",
        "Addresses the resolver tracks (resolved, resolving or backing off).",
        facts.neighbors_tracked as u64,
    );
    let n = &facts.neighbors;
    w.single(
        "gateway_neighbor_resolutions_total",
        "counter",
        "MACs learned or changed by ARP and NDP.",
        n.learned,
    );
    w.family(
        "gateway_neighbor_requests_total",
        "counter",
        "ARP requests and Neighbor Solicitations, sent or not sent (no buffer).",
    );
    w.sample(
        "gateway_neighbor_requests_total",
        &[("result", "sent")],
        n.requests_sent,
    );
    w.sample(
        "gateway_neighbor_requests_total",
        &[("result", "unsent")],
        n.requests_unsent,
    );
    w.family(
        "gateway_neighbor_events_total",
        "counter",
        "What the resolver did with ARP and NDP messages and tracked addresses, by event.",
    );
    for (event, v) in [
        ("confirmed", n.confirmed),
        ("unsolicited", n.unsolicited),
        ("refused", n.refused),
        ("failed", n.failed),
        ("aged_out", n.aged_out),
        ("evicted", n.evicted),
        ("tracker_full", n.tracker_full),
        ("backoff", n.backoff),
        ("table_full", n.table_full),
    ] {
        w.sample("gateway_neighbor_events_total", &[("event", event)], v);
    }
    w.single(
        "gateway_resolve_shed_total",
        "counter",
        "Requests from the workers to resolve a next hop, shed by their rate limit.",
        facts.resolve_shed,
    );
    w.family(
        "gateway_control_clients_total",
        "counter",
        "Control-socket clients, by outcome.",
    );
    let c = facts.control;
    for (result, v) in [
        ("served", c.served),
        ("refused", c.refused),
        ("busy", c.busy),
        ("dropped", c.dropped),
    ] {
        w.sample("gateway_control_clients_total", &[("result", result)], v);
    }
    w.out
}

/// The metrics server's thread; dropping the handle stops it.
pub struct Server {
    http: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Listens on `addr` and serves `GET /metrics` from `src` on a thread of its own.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn start(addr: std::net::SocketAddr, src: Source) -> anyhow::Result<Server> {
        let http = Arc::new(
            tiny_http::Server::http(addr).map_err(|e| anyhow::anyhow!("metrics on {addr}: {e}"))?,
        );
        let h = Arc::clone(&http);
        let thread = std::thread::Builder::new()
            .name("metrics".to_string())
            .spawn(move || {
                for rq in h.incoming_requests() {
                    let response = if rq.method() != &tiny_http::Method::Get {
                        tiny_http::Response::from_string("only GET\n").with_status_code(405)
                    } else if rq.url() == "/metrics" {
                        let header = tiny_http::Header::from_bytes(
                            &b"Content-Type"[..],
                            &b"text/plain; version=0.0.4; charset=utf-8"[..],
                        );
                        let r = tiny_http::Response::from_string(render(&src));
                        match header {
                            Ok(h) => r.with_header(h),
                            Err(()) => r,
                        }
                    } else {
                        tiny_http::Response::from_string("metrics are at /metrics\n")
                            .with_status_code(404)
                    };
                    let _ = rq.respond(response);
                }
            })?;
        Ok(Server {
            http,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> Option<std::net::SocketAddr> {
        self.http.server_addr().to_ip()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.http.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The `[[route_source]]` mirror: routes in force per table, refusals by reason, and the
/// netlink stream's health.
fn mirror_metrics(w: &mut Writer, m: &crate::kernel_routes::MirrorCounters) {
    use crate::routes::Refusal;
    w.family(
        "gateway_route_source_routes",
        "gauge",
        "Routes mirrored from a kernel table now in the route tables.",
    );
    for (table, n) in &m.in_force {
        w.sample(
            "gateway_route_source_routes",
            &[("table", &table.to_string())],
            *n as u64,
        );
    }
    w.family(
        "gateway_route_source_refused",
        "gauge",
        "Kernel routes refused now, by reason.",
    );
    for r in Refusal::ALL {
        w.sample(
            "gateway_route_source_refused",
            &[("reason", r.name())],
            m.refused_now[r as usize] as u64,
        );
    }
    w.family(
        "gateway_route_source_refusals_total",
        "counter",
        "Kernel routes refused, by reason.",
    );
    for r in Refusal::ALL {
        w.sample(
            "gateway_route_source_refusals_total",
            &[("reason", r.name())],
            m.refusals[r as usize],
        );
    }
    w.single(
        "gateway_route_source_updates_total",
        "counter",
        "Kernel route changes applied to the route tables.",
        m.updates,
    );
    w.single(
        "gateway_route_source_malformed_total",
        "counter",
        "Netlink messages that did not parse.",
        m.malformed,
    );
    w.single(
        "gateway_route_source_dumps_total",
        "counter",
        "Full dumps of the kernel tables, the first included.",
        m.dumps,
    );
    w.single(
        "gateway_route_source_overruns_total",
        "counter",
        "Times the kernel dropped route notifications (ENOBUFS), each answered by a dump.",
        m.overruns,
    );
    w.single(
        "gateway_route_source_synced",
        "gauge",
        "1 once the first dump of the kernel tables is mirrored.",
        u64::from(m.synced),
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn source() -> Source {
        let w0 = Arc::new(Stats::default());
        let w1 = Arc::new(Stats::default());
        w0.ports[0].rx_packets.add(5);
        w0.ports[0].decap_kind[0].add(4);
        w1.ports[1].encap_kind[2].add(2);
        w1.ports[0].rx_packets.add(7);
        w1.ports[1].drop(DropReason::NoRoute);
        w0.ports[1].drop(DropReason::NoRoute);
        let facts = ControlFacts {
            routes: (3, 1),
            generation: 2,
            ..ControlFacts::default()
        };
        Source {
            name: "edge \"1\"".to_string(),
            ports: vec![
                PortInfo {
                    name: "ext".into(),
                    driver: "af_xdp".into(),
                    interface: "eth0".into(),
                    mode: "native zero-copy".into(),
                },
                PortInfo {
                    name: "pods".into(),
                    driver: "memory".into(),
                    interface: String::new(),
                    mode: String::new(),
                },
            ],
            workers: vec![w0, w1],
            facts: Arc::new(Mutex::new(facts)),
        }
    }

    /// Every query of the Grafana dashboard (`docker/grafana/`) names metrics a scrape has,
    /// and groups them only by labels those metrics carry.
    #[test]
    fn the_dashboard_queries_name_existing_metrics_and_labels() {
        let dash: serde_json::Value =
            serde_json::from_str(include_str!("../../docker/grafana/gateway-dashboard.json"))
                .unwrap();
        let text = render(&source());
        let mut exprs = 0;
        for panel in dash["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                exprs += 1;
                let metrics: Vec<&str> = expr
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| w.starts_with("gateway_"))
                    .collect();
                assert!(!metrics.is_empty(), "{expr}");
                let by: Vec<&str> = expr
                    .split("by (")
                    .skip(1)
                    .flat_map(|rest| rest.split(')').next().unwrap_or("").split(','))
                    .map(str::trim)
                    .collect();
                for m in &metrics {
                    assert!(
                        text.contains(&format!("# TYPE {m} ")),
                        "{m} (in {expr:?}) is not a metric"
                    );
                    for label in &by {
                        assert!(
                            text.lines().any(|l| l.starts_with(&format!("{m}{{"))
                                && l.contains(&format!("{label}=\""))),
                            "{m} has no label {label} (in {expr:?})"
                        );
                    }
                }
            }
        }
        assert!(exprs >= 10, "{exprs} queries");
    }

    #[test]
    fn counters_are_per_port_and_worker_and_drops_summed_by_reason() {
        let text = render(&source());
        assert!(text.contains("gateway_rx_packets_total{port=\"ext\",worker=\"0\"} 5\n"));
        assert!(text.contains("gateway_rx_packets_total{port=\"ext\",worker=\"1\"} 7\n"));
        assert!(text.contains("gateway_drops_total{port=\"pods\",reason=\"no_route\"} 2\n"));
        assert!(text.contains("gateway_drops_total{port=\"ext\",reason=\"no_route\"} 0\n"));
        assert!(text.contains("gateway_routes{family=\"ipv4\"} 3\n"));
        assert!(text
            .contains("gateway_decap_packets_total{port=\"ext\",worker=\"0\",kind=\"gtpu\"} 4\n"));
        assert!(text
            .contains("gateway_encap_packets_total{port=\"pods\",worker=\"1\",kind=\"ipip\"} 2\n"));
        assert!(text.contains("gateway_config_generation 2\n"));
        assert!(text.contains(
            "gateway_port_info{port=\"ext\",driver=\"af_xdp\",interface=\"eth0\",mode=\"native zero-copy\"} 1\n"
        ));
        // Label values are escaped.
        assert!(text.contains("name=\"edge \\\"1\\\"\""), "{text}");
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples_and_counters_end_in_total() {
        let text = render(&source());
        let mut declared = std::collections::HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split(' ');
                let (name, kind) = (it.next().unwrap(), it.next().unwrap());
                assert!(
                    declared
                        .insert(name.to_string(), kind.to_string())
                        .is_none(),
                    "{name} declared twice"
                );
                assert!(name.starts_with("gateway_"));
                assert_eq!(kind == "counter", name.ends_with("_total"), "{name}");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(
                    declared.contains_key(name),
                    "{name} sampled before its TYPE"
                );
            }
        }
        assert!(declared.len() >= 20);
    }

    #[test]
    fn the_server_answers_get_metrics_over_http() {
        use std::io::{Read, Write};
        let server = Server::start("127.0.0.1:0".parse().unwrap(), source()).unwrap();
        let addr = server.addr().unwrap();
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.0 200"), "{out}");
        assert!(out.contains("text/plain; version=0.0.4"), "{out}");
        assert!(out.contains("gateway_rx_packets_total{port=\"ext\",worker=\"1\"} 7"));
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.0 404"), "{out}");
        drop(server);
    }
}
