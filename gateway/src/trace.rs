//! `gateway trace` and `gateway explain`: what happened to a packet, stage by stage.
//!
//! Both print the [`Record`]s of [`datapath::pipeline::trace`], which the pipeline itself
//! writes as it forwards (a worker's, for `trace`; a private pipeline over one frame, for
//! `explain`), so neither can tell a story the workers did not live. This module only names what
//! the records hold: the port names, the headers at the offsets the stages found, the prefix the
//! route came from, the description of each drop.
//!
//! Requests on the control socket (one line each):
//!
//! ```text
//! trace start COUNT [port NAME] [src PREFIX] [dst PREFIX] [proto udp|tcp|icmp|N] [tunnel gtpu|vxlan|geneve|ipip|none]
//! trace read          -> {"records": [...], "remaining": N, "lost": N}
//! trace stop
//! explain PORT HEX [to-port]  -> one record, on the running gateway's current snapshot
//!                                (PORT `-` is the first; `to-port` addresses the frame to it)
//! ```

use crate::routes::{describe, describe_hop, mac_text, port_name, RouteControl};
use datapath::fib::{key_ip, Fib};
use datapath::lpm::NO_ROUTE;
use datapath::pipeline::batch::Batch;
use datapath::pipeline::trace::{addresses, Filter, Record, Tap};
use datapath::pipeline::{Next, Pipeline, NO_ENCAP};
use datapath::stats::TUNNEL_KINDS;
use datapath::wire::{
    ip_proto, EtherType, EthernetFrame, GenevePacket, GtpuPacket, UdpPacket, VlanPacket,
    VxlanPacket,
};
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

/// Records a trace keeps unread before it counts them lost.
pub const TAP_CAPACITY: usize = 1024;
/// The most packets one trace may ask for.
pub const MAX_COUNT: u32 = 100_000;
/// An armed trace nobody reads for this long is disarmed (its client went away).
pub const IDLE: Duration = Duration::from_secs(10);
/// Records one `trace read` returns at most.
const READ_BATCH: usize = 64;

/// Parses a filter: `port NAME`, `src PREFIX`, `dst PREFIX`, `proto udp|tcp|icmp|icmpv6|N`,
/// `tunnel gtpu|vxlan|geneve|ipip|none`, in any order, optionally joined by `and`.
///
/// # Errors
/// What is wrong with the first word that does not parse.
pub fn parse_filter(words: &[&str], ports: &[String]) -> Result<Filter, String> {
    let mut f = Filter::default();
    let mut it = words.iter().copied().filter(|w| *w != "and");
    while let Some(key) = it.next() {
        let Some(value) = it.next() else {
            return Err(format!("`{key}` needs a value"));
        };
        match key {
            "port" => {
                let p = ports
                    .iter()
                    .position(|p| p == value)
                    .ok_or_else(|| format!("no port named {value:?}"))?;
                f.port = Some(p as u8);
            }
            "src" | "dst" => {
                let net = value
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("{key} {value:?} is not a prefix or an address"))?;
                let len = match net {
                    ipnet::IpNet::V4(n) => 96 + n.prefix_len(),
                    ipnet::IpNet::V6(n) => n.prefix_len(),
                };
                let p = Some((datapath::fib::ip_key(net.network()), len));
                if key == "src" {
                    f.src = p;
                } else {
                    f.dst = p;
                }
            }
            "proto" => {
                f.proto = Some(match value {
                    "udp" => ip_proto::UDP,
                    "tcp" => ip_proto::TCP,
                    "icmp" => ip_proto::ICMP,
                    "icmpv6" => ip_proto::ICMPV6,
                    n => n.parse().map_err(|_| {
                        format!("proto {n:?} is not udp, tcp, icmp, icmpv6 or 0..255")
                    })?,
                });
            }
            "tunnel" => {
                f.tunnel = Some(match value {
                    "none" => None,
                    k => Some(TUNNEL_KINDS.iter().position(|t| *t == k).ok_or_else(|| {
                        format!("tunnel {k:?} is not gtpu, vxlan, geneve, ipip or none")
                    })? as u8),
                });
            }
            other => {
                return Err(format!(
                    "unknown filter word {other:?}: expected port, src, dst, proto or tunnel"
                ))
            }
        }
    }
    Ok(f)
}

/// A verdict in words: `route` (go on), `local`, `tx PORT`, `drop REASON`.
fn verdict(v: Next, ports: &[String]) -> String {
    match v {
        Next::Route => "route".to_string(),
        Next::Local => "local".to_string(),
        Next::Tx(p) => format!("tx {}", port_name(ports, p)),
        Next::Drop(r) => format!("drop {}", r.name()),
    }
}

/// The IP header at `off` of `head`: family, addresses, TTL or hop limit, and the upper-layer
/// protocol and ports at `l4` (0: none).
fn ip_header(head: &[u8], off: u16, l4: u16, ipv6: bool, proto: Option<u8>) -> Value {
    let Some((src, dst, next)) = addresses(head, off, ipv6) else {
        return json!({ "truncated": true });
    };
    let o = usize::from(off);
    let ttl = if ipv6 {
        head.get(o..o + 40)
            .map(|h| datapath::wire::Ipv6Packet::new_unchecked(h).hop_limit())
    } else {
        head.get(o..o + 20)
            .map(|h| datapath::wire::Ipv4Packet::new_unchecked(h).ttl())
    };
    let proto = proto.unwrap_or(next);
    let mut v = json!({
        "family": if ipv6 { "ipv6" } else { "ipv4" },
        "src": key_ip(src).to_string(),
        "dst": key_ip(dst).to_string(),
        "ttl": ttl,
        "protocol": proto,
    });
    let l4 = usize::from(l4);
    if l4 != 0 && (proto == ip_proto::UDP || proto == ip_proto::TCP) {
        // TCP's ports sit where UDP's do.
        if let Some(h) = head.get(l4..l4 + datapath::wire::udp::HEADER_LEN) {
            let u = UdpPacket::new_unchecked(h);
            v["sport"] = json!(u.src_port());
            v["dport"] = json!(u.dst_port());
        }
    }
    v
}

/// The VLAN IDs of a frame's tags, outermost first.
fn vlans(head: &[u8]) -> Vec<u16> {
    let mut ids = Vec::new();
    let Ok(eth) = EthernetFrame::new_checked(head) else {
        return ids;
    };
    let mut ethertype = eth.ethertype();
    let mut off = datapath::wire::ethernet::HEADER_LEN;
    while (ethertype == EtherType::VLAN || ethertype == EtherType::QINQ) && ids.len() < 2 {
        let Ok(tag) = VlanPacket::new_checked(head.get(off..).unwrap_or_default()) else {
            break;
        };
        ids.push(tag.vid());
        ethertype = tag.ethertype();
        off += datapath::wire::vlan::HEADER_LEN;
    }
    ids
}

/// The tunnel header after the outer UDP header at `l4`, for the kinds that have one.
fn tunnel_header(head: &[u8], kind: &str, l4: u16) -> Map<String, Value> {
    let mut m = Map::new();
    let at = usize::from(l4) + datapath::wire::udp::HEADER_LEN;
    match kind {
        "gtpu" => {
            if let Some(h) = head.get(at..at + datapath::wire::gtpu::HEADER_LEN) {
                let g = GtpuPacket::new_unchecked(h);
                m.insert("teid".into(), json!(format!("{:#x}", g.teid())));
                m.insert("message_type".into(), json!(g.msg_type()));
            }
        }
        "vxlan" => {
            if let Some(h) = head.get(at..at + datapath::wire::vxlan::HEADER_LEN) {
                m.insert("vni".into(), json!(VxlanPacket::new_unchecked(h).vni()));
            }
        }
        "geneve" => {
            if let Some(h) = head.get(at..at + datapath::wire::geneve::HEADER_LEN) {
                let g = GenevePacket::new_unchecked(h);
                m.insert("vni".into(), json!(g.vni()));
                m.insert("protocol".into(), json!(format!("{:#06x}", g.protocol())));
                m.insert("options_len".into(), json!(g.options_len()));
            }
        }
        _ => {}
    }
    m
}

/// One record as JSON: the stages it went through, in order, each with its verdict.
pub fn render(r: &Record, fib: &Fib, routes: Option<&RouteControl>, ports: &[String]) -> Value {
    let mut v = json!({
        "worker": r.worker,
        "port": port_name(ports, r.in_port),
        "len": r.len,
    });
    let head = &r.head[..usize::from(r.len).min(r.head.len())];
    let mut classify = json!({ "vlans": vlans(head), "verdict": verdict(r.classified, ports) });
    if let Some((off, ipv6)) = r.outer_ip() {
        let routed = r.classified == Next::Route;
        let known = (routed && r.l3 == r.outer_l3).then_some(r.proto);
        let l4 = if routed { r.outer_l4 } else { 0 };
        if let Value::Object(o) = ip_header(head, off, l4, ipv6, known) {
            if let Some(c) = classify.as_object_mut() {
                c.extend(o);
            }
        }
        if routed {
            classify["tunnel_endpoint"] = json!(r.tunnel_endpoint);
        }
    }
    v["classify"] = classify;
    if r.classified == Next::Route && r.tunnel_endpoint {
        // Decap ran; it names a kind once it has found a tunnel.
        let mut d = Map::new();
        if let Some(k) = r.tunnel_kind() {
            let kind = TUNNEL_KINDS.get(usize::from(k)).copied().unwrap_or("?");
            d = tunnel_header(head, kind, r.outer_l4);
            d.insert("kind".into(), json!(kind));
        }
        if let Some((src, _, _)) = addresses(head, r.outer_l3, r.outer_ipv6) {
            d.insert("peer".into(), json!(key_ip(src).to_string()));
        }
        d.insert("verdict".into(), json!(verdict(r.decapped, ports)));
        v["decap"] = Value::Object(d);
        if let Some((off, ipv6)) = r.inner_ip() {
            // Past the inner header's extension headers only if decap accepted it.
            let known = r.decapped == Next::Route;
            let (l4, proto) = if known {
                (r.l4, Some(r.proto))
            } else {
                (0, None)
            };
            v["inner"] = ip_header(head, off, l4, ipv6, proto);
        }
    }
    if r.classified == Next::Route && r.decapped == Next::Route {
        let mut route = json!({ "verdict": verdict(r.routed, ports) });
        if r.nh == NO_ROUTE {
            route["prefix"] = Value::Null;
        } else {
            let dst = addresses(head, r.l3, r.ipv6).map(|(_, d, _)| key_ip(d));
            let prefix = dst.and_then(|d| routes.and_then(|t| t.longest_match(d)));
            route["prefix"] = json!(prefix.map(|(p, _)| p.to_string()));
            if let Some((p, _)) = prefix {
                route["origin"] = json!(routes.map(|t| t.origin(&p)));
            }
            route["next_hop"] = json!(describe(fib, r.nh, ports));
            if let Some(m) = &r.member {
                route["ecmp_member"] = json!(describe_hop(fib, m, ports));
            }
        }
        v["route"] = route;
    }
    if matches!(r.verdict, Next::Tx(_)) {
        let out = &r.out_head[..usize::from(r.out_len).min(r.out_head.len())];
        let mut rw = json!({ "len": r.out_len });
        if let Ok(eth) = EthernetFrame::new_checked(out) {
            rw["src_mac"] = json!(mac_text(eth.src()));
            rw["dst_mac"] = json!(mac_text(eth.dst()));
            if let Ok((et, off)) = datapath::wire::vlan::skip_tags(
                out,
                eth.ethertype(),
                datapath::wire::ethernet::HEADER_LEN,
            ) {
                if et == EtherType::IPV4 || et == EtherType::IPV6 {
                    rw["ip"] = ip_header(out, off as u16, 0, et == EtherType::IPV6, None);
                }
            }
        }
        if r.encap != NO_ENCAP {
            if let Some(e) = fib.encap(r.encap) {
                rw["encap"] = json!(crate::routes::encap_text(e, ports));
            }
        }
        v["rewrite"] = rw;
    }
    let result = match r.verdict {
        Next::Tx(p) => match (r.routed, r.decapped) {
            (Next::Drop(reason), _) => json!({
                "action": "icmp_error",
                "port": port_name(ports, p),
                "drop": reason.name(),
                "description": format!("{}; an ICMP error went back toward the source", reason.description()),
            }),
            (_, Next::Local) => json!({ "action": "reply", "port": port_name(ports, p),
                "description": "GTP-U Echo Response sent back to the peer" }),
            _ => json!({ "action": "tx", "port": port_name(ports, p) }),
        },
        Next::Local => json!({ "action": "local",
            "description": "handed to the gateway's own stack (ARP, NDP, ICMP)" }),
        Next::Drop(reason) => json!({
            "action": "drop",
            "drop": reason.name(),
            "description": reason.description(),
        }),
        Next::Route => json!({ "action": "none" }),
    };
    v["result"] = result;
    v
}

/// Keys in the order a stage's line shows them; the verdict last.
const KEY_ORDER: &[&str] = &[
    "vlans",
    "family",
    "src",
    "sport",
    "dst",
    "dport",
    "protocol",
    "ttl",
    "tunnel_endpoint",
    "kind",
    "peer",
    "teid",
    "vni",
    "message_type",
    "prefix",
    "origin",
    "next_hop",
    "ecmp_member",
    "encap",
    "src_mac",
    "dst_mac",
    "ip",
    "len",
    "action",
    "port",
    "drop",
    "description",
    "verdict",
];

/// A rendered record as text, one stage a line, in the order the stages ran.
pub fn text(v: &Value) -> String {
    use std::fmt::Write;
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .iter()
            .filter(|(_, x)| !x.is_null())
            .map(|(k, x)| format!("{k}:{}", x.as_str().map_or(x.to_string(), str::to_string)))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    let fields = |v: &Value| -> String {
        let Some(o) = v.as_object() else {
            return String::new();
        };
        let rank = |k: &str| KEY_ORDER.iter().position(|x| *x == k).unwrap_or(usize::MAX);
        let mut keys: Vec<&String> = o.keys().collect();
        keys.sort_by_key(|k| rank(k));
        keys.into_iter()
            .filter(|k| !o[*k].is_null() && o[*k] != json!([]))
            .map(|k| format!("{k}={}", s(&o[k])))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut out = format!(
        "packet: port={} worker={} len={}\n",
        s(&v["port"]),
        s(&v["worker"]),
        s(&v["len"])
    );
    for stage in ["classify", "decap", "inner", "route", "rewrite", "result"] {
        if !v[stage].is_null() {
            let _ = writeln!(out, "  {stage:<9} {}", fields(&v[stage]));
        }
    }
    out
}

/// Runs the pipeline over one frame received on `in_port` with the snapshot `fib`, and returns
/// its record rendered ([`render`]). Nothing is sent and nothing is counted.
pub fn explain(
    frame: &[u8],
    in_port: u8,
    fib: &Fib,
    routes: Option<&RouteControl>,
    ports: &[String],
) -> Value {
    // One buffer, not a worker's burst of them: a socket request costs 16 KiB, not 1 MiB.
    let mut batch = Batch::of(1);
    let mut records = [Record::default()];
    if !batch.bufs[0].load(frame, 0) {
        let mut r = Record {
            in_port,
            verdict: Next::Drop(datapath::pipeline::drop::DropReason::RxOversize),
            classified: Next::Drop(datapath::pipeline::drop::DropReason::RxOversize),
            len: frame.len().min(usize::from(u16::MAX)) as u16,
            ..Record::default()
        };
        let n = frame.len().min(r.head.len());
        r.head[..n].copy_from_slice(&frame[..n]);
        return render(&r, fib, routes, ports);
    }
    batch.len = 1;
    batch.in_port = in_port;
    Pipeline::new().process_traced(&mut batch, fib, &mut records);
    render(&records[0], fib, routes, ports)
}

/// Parses a frame written in hex (spaces, colons and a `0x` prefix allowed).
///
/// # Errors
/// A character that is not a hex digit, or an odd count of digits.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim().trim_start_matches("0x");
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| !matches!(b, b' ' | b':' | b'\n' | b'\t'))
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err("an odd number of hex digits".to_string());
    }
    digits
        .chunks(2)
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|t| u8::from_str_radix(t, 16).ok())
                .ok_or_else(|| format!("{:?} is not a hex byte", String::from_utf8_lossy(p)))
        })
        .collect()
}

/// The control thread's side of `trace`: the tap the workers offer records to, and when its
/// reader was last heard from.
pub struct TraceControl {
    tap: std::sync::Arc<Tap>,
    last_read: Option<Instant>,
}

impl TraceControl {
    /// Control over `tap`.
    pub fn new(tap: std::sync::Arc<Tap>) -> Self {
        TraceControl {
            tap,
            last_read: None,
        }
    }

    /// Disarms a trace whose reader has gone.
    pub fn tick(&mut self) {
        if self.last_read.is_some_and(|t| t.elapsed() >= IDLE) {
            self.tap.disarm();
            self.last_read = None;
        }
    }

    /// Answers `trace start|read|stop` and `explain PORT HEX`.
    pub fn answer(
        &mut self,
        request: &str,
        fib: &Fib,
        routes: Option<&RouteControl>,
        ports: &[String],
    ) -> String {
        let words: Vec<&str> = request.split_whitespace().collect();
        match words.as_slice() {
            ["trace", "start", count, filter @ ..] => {
                let count = match count.parse::<u32>() {
                    Ok(n) if (1..=MAX_COUNT).contains(&n) => n,
                    _ => return format!("error: the count must be 1 to {MAX_COUNT}, not {count:?}\n"),
                };
                match parse_filter(filter, ports) {
                    Ok(f) => {
                        self.tap.arm(count, f);
                        self.last_read = Some(Instant::now());
                        format!("ok: tracing the next {count} packets\n")
                    }
                    Err(e) => format!("error: {e}\n"),
                }
            }
            ["trace", "read"] => {
                self.last_read = Some(Instant::now());
                let records: Vec<Value> = std::iter::from_fn(|| self.tap.take())
                    .take(READ_BATCH)
                    .map(|r| render(&r, fib, routes, ports))
                    .collect();
                json!({
                    "records": records,
                    "remaining": self.tap.remaining(),
                    "lost": self.tap.lost(),
                })
                .to_string()
                    + "\n"
            }
            ["trace", "stop"] => {
                self.tap.disarm();
                self.last_read = None;
                "ok: trace stopped\n".to_string()
            }
            ["explain", port, hex, rest @ ..] if rest.is_empty() || rest == ["to-port"] => {
                let p = if *port == "-" {
                    Some(0)
                } else {
                    ports.iter().position(|n| n == port)
                };
                let Some(p) = p.filter(|&p| p < ports.len()) else {
                    return format!("error: no port named {port:?}\n");
                };
                match parse_hex(hex) {
                    Ok(mut frame) => {
                        // A frame built by the client is addressed to the port it arrives on.
                        if !rest.is_empty() && frame.len() >= 6 {
                            let mac = fib.port(p as u8).map(|i| i.mac).unwrap_or_default();
                            frame[..6].copy_from_slice(&mac);
                        }
                        explain(&frame, p as u8, fib, routes, ports).to_string() + "\n"
                    }
                    Err(e) => format!("error: {e}\n"),
                }
            }
            _ => "error: expected `trace start COUNT [FILTER]`, `trace read`, `trace stop` or `explain PORT HEX`\n".to_string(),
        }
    }
}

/// `gateway trace`: arms a trace on a running gateway, prints each record as it arrives (as
/// text, or one JSON object a line), and stops after `count` packets or `timeout`. Returns the
/// records printed.
///
/// # Errors
/// The socket, or the gateway refusing the request (a bad filter).
pub fn follow(
    socket: &std::path::Path,
    count: u32,
    filter: &str,
    timeout: Duration,
    as_json: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<u32> {
    let ask = |line: &str| crate::control::request(socket, line);
    let started = ask(&format!("trace start {count} {filter}"))?;
    if !started.starts_with("ok") {
        anyhow::bail!("{}", started.trim().trim_start_matches("error: "));
    }
    let until = Instant::now() + timeout;
    let mut got = 0;
    let mut lost = 0;
    let result = 'reading: loop {
        let answer: Value = match ask("trace read").map(|a| serde_json::from_str(&a)) {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => break Err(anyhow::anyhow!("the gateway's answer: {e}")),
            Err(e) => break Err(e),
        };
        for r in answer["records"].as_array().into_iter().flatten() {
            let shown = if as_json {
                r.to_string() + "\n"
            } else {
                text(r)
            };
            // A closed output (`| head`) ends the trace.
            if out.write_all(shown.as_bytes()).is_err() {
                break 'reading Ok(());
            }
            got += 1;
        }
        lost = answer["lost"].as_u64().unwrap_or(0);
        let remaining = answer["remaining"].as_u64().unwrap_or(0);
        let empty = answer["records"].as_array().is_none_or(Vec::is_empty);
        if (remaining == 0 && empty) || got >= count {
            break Ok(());
        }
        if Instant::now() >= until {
            break Ok(());
        }
        if empty {
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let _ = ask("trace stop");
    result?;
    if got < count {
        eprintln!(
            "{got} of {count} packets traced in {:.0} s{}",
            timeout.as_secs_f64(),
            if lost > 0 {
                format!(" ({lost} seen but not kept: the reader fell behind)")
            } else {
                String::new()
            }
        );
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_bad_ones_say_why() {
        let ports = vec!["ext".to_string(), "pods".to_string()];
        let f = parse_filter(
            &[
                "port",
                "pods",
                "and",
                "dst",
                "10.244.0.0/16",
                "proto",
                "udp",
                "tunnel",
                "gtpu",
            ],
            &ports,
        )
        .unwrap();
        assert_eq!(f.port, Some(1));
        assert_eq!(f.dst, Some((datapath::fib::v4_key(0x0af4_0000), 112)));
        assert_eq!((f.proto, f.tunnel), (Some(17), Some(Some(0))));
        assert_eq!(
            parse_filter(&["tunnel", "none"], &ports).unwrap().tunnel,
            Some(None)
        );
        assert_eq!(
            parse_filter(&["src", "2001:db8::1"], &ports).unwrap().src,
            Some((0x2001_0db8 << 96 | 1, 128))
        );
        for (bad, why) in [
            (&["port", "wan"][..], "no port named"),
            (&["src"][..], "needs a value"),
            (&["dst", "10.0.0.0/33"][..], "not a prefix"),
            (&["proto", "sctpx"][..], "proto"),
            (&["tunnel", "gre"][..], "tunnel"),
            (&["vlan", "5"][..], "unknown filter word"),
        ] {
            let e = parse_filter(bad, &ports).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn hex_frames_parse_with_separators_and_bad_ones_say_why() {
        assert_eq!(parse_hex("0x0a:0B 0c").unwrap(), vec![10, 11, 12]);
        assert!(parse_hex("abc").unwrap_err().contains("odd"));
        assert!(parse_hex("zz").unwrap_err().contains("not a hex byte"));
    }
}
