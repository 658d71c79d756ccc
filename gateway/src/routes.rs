//! Routes changed while the gateway runs. `gateway route add|del` sends one line on the
//! control socket; the control thread applies it through the route tables' single writer
//! ([`datapath::fib::RouteWriters`]), and each worker's next lookup sees the table before or
//! after the change, never between. Nothing is rebuilt and no worker waits.
//!
//! A route added at run time goes through a gateway in a connected subnet of one of the ports
//! (the next-hop table of the snapshot grows for one it was not built with: see
//! [`datapath::fib::NextHopTable`]), or `drop`. The connected subnets and the interface
//! addresses are not routes to change: adding or removing exactly those prefixes is refused.
//!
//! Requests (one line each):
//!
//! ```text
//! route add 10.9.0.0/16 via 172.18.0.2
//! route add 10.9.0.0/16 drop
//! route del 10.9.0.0/16
//! ```
//!
//! The answer is one line: `ok: ...` or `error: ...`.

use datapath::fib::{AppendTable, Fib, NextHop, NextHopTable, RouteWriters};
use datapath::lpm;
use ipnet::IpNet;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

/// A parsed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Add or replace the route of a prefix.
    Add(IpNet, Target),
    /// Remove the route of a prefix.
    Del(IpNet),
}

/// Where an added route sends its packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A gateway in a connected subnet.
    Via(IpAddr),
    /// Dropped and counted as `blackhole`.
    Drop,
}

const USAGE: &str =
    "expected `route add PREFIX via ADDRESS`, `route add PREFIX drop` or `route del PREFIX`";

/// Parses one request line.
///
/// # Errors
/// A message naming what is wrong.
pub fn parse(line: &str) -> Result<Request, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["route", "add", p, "via", a] => {
            let a = a.parse().map_err(|_| format!("{a}: not an IP address"))?;
            Ok(Request::Add(prefix(p)?, Target::Via(a)))
        }
        ["route", "add", p, "drop"] => Ok(Request::Add(prefix(p)?, Target::Drop)),
        ["route", "del", p] => Ok(Request::Del(prefix(p)?)),
        _ => Err(format!("unknown request {:?}: {USAGE}", line.trim())),
    }
}

fn prefix(s: &str) -> Result<IpNet, String> {
    let n: IpNet = s
        .parse()
        .map_err(|_| format!("{s}: not a prefix (for example 10.9.0.0/16)"))?;
    if n.trunc() != n {
        return Err(format!(
            "{n} has host bits set; did you mean {}?",
            n.trunc()
        ));
    }
    Ok(n)
}

/// Where a next hop the snapshot was not built with may be: the connected subnets (with their
/// port) and the static neighbours' MACs, from the configuration.
#[derive(Debug, Clone, Default)]
pub struct Reachable {
    /// Each port's interface subnets.
    pub connected: Vec<(IpNet, u8)>,
    /// Static neighbours.
    pub macs: Vec<(IpAddr, [u8; 6])>,
}

/// The control thread's side: the single writers and the next hops routes may use.
pub struct RouteControl {
    writers: RouteWriters,
    vias: Vec<(IpAddr, u32)>,
    blackhole: u32,
    fixed: Vec<IpNet>,
    /// The snapshot's next-hop table, which a route through a new gateway appends to, and its
    /// ECMP member list, which a new multipath group appends to.
    next_hops: Arc<NextHopTable>,
    ecmp: Arc<AppendTable<u32>>,
    /// The next-hop index of each ECMP group written at run time, by its members.
    groups: HashMap<Vec<u32>, u32>,
    reachable: Reachable,
    /// Prefixes added or replaced by `gateway route` since the snapshot was built.
    changed: HashSet<IpNet>,
    /// Prefixes mirrored from a kernel table, with the table.
    mirrored: HashMap<IpNet, u32>,
    /// The routes that mirrored ones replaced (`prefer = "source"`), put back when those go.
    displaced: HashMap<IpNet, u32>,
}

/// What a mirrored route does ([`RouteControl::mirror`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mirrored<'a> {
    /// Forward through these gateways (ECMP over several).
    Via(&'a [IpAddr]),
    /// Drop as `blackhole`.
    Drop,
}

/// Why a mirrored route was not put into the route tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// The prefix is a connected subnet or one of the gateway's own addresses.
    Interface,
    /// The file (or `gateway route`) has a route for the prefix, and wins.
    Shadowed,
    /// A next hop lies in no connected subnet of the gateway's ports.
    NextHopUnreachable,
    /// A next hop of the other address family (IPv4 over IPv6 gateways), or none at all.
    NoUsableNextHop,
    /// The route tables, the next-hop table or the ECMP member list are full.
    Full,
    /// A kind of route the gateway cannot take: local, broadcast, multicast, NAT, throw, or an
    /// encapsulation or MPLS route.
    Unsupported,
}

impl Refusal {
    /// Every reason, in the order counters list them.
    pub const ALL: [Refusal; 6] = [
        Refusal::Interface,
        Refusal::Shadowed,
        Refusal::NextHopUnreachable,
        Refusal::NoUsableNextHop,
        Refusal::Full,
        Refusal::Unsupported,
    ];

    /// Its name in counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Interface => "interface_prefix",
            Refusal::Shadowed => "shadowed_by_file",
            Refusal::NextHopUnreachable => "next_hop_unreachable",
            Refusal::NoUsableNextHop => "no_usable_next_hop",
            Refusal::Full => "table_full",
            Refusal::Unsupported => "unsupported",
        }
    }
}

impl RouteControl {
    /// Wraps the writers of a FIB. `vias` maps next-hop addresses to their next-hop indices,
    /// `blackhole` is the drop next hop, `fixed` the prefixes no request may touch;
    /// `fib` is the snapshot whose next-hop table and ECMP member list a gateway in
    /// `reachable` that no index names yet, or a new ECMP group, is appended to.
    pub fn new(
        writers: RouteWriters,
        (vias, blackhole): (Vec<(IpAddr, u32)>, u32),
        fixed: Vec<IpNet>,
        fib: &Fib,
        reachable: Reachable,
    ) -> Self {
        RouteControl {
            writers,
            vias,
            blackhole,
            fixed,
            next_hops: Arc::clone(fib.next_hops()),
            ecmp: Arc::clone(fib.ecmp_members()),
            groups: HashMap::new(),
            reachable,
            changed: HashSet::new(),
            mirrored: HashMap::new(),
            displaced: HashMap::new(),
        }
    }

    /// The IPv4 and IPv6 prefixes in the route tables.
    pub fn sizes(&self) -> (usize, usize) {
        (self.writers.v4.len(), self.writers.v6.len())
    }

    /// The longest route covering `addr`: its prefix and next-hop index.
    pub fn longest_match(&self, addr: IpAddr) -> Option<(IpNet, u32)> {
        match addr {
            IpAddr::V4(a) => self
                .writers
                .v4
                .longest_match(u32::from(a))
                .and_then(|(p, l, nh)| {
                    ipnet::Ipv4Net::new(p.into(), l)
                        .ok()
                        .map(|n| (IpNet::V4(n), nh))
                }),
            IpAddr::V6(a) => self
                .writers
                .v6
                .longest_match(u128::from(a))
                .and_then(|(p, l, nh)| {
                    ipnet::Ipv6Net::new(p.into(), l)
                        .ok()
                        .map(|n| (IpNet::V6(n), nh))
                }),
        }
    }

    /// The routes inside `within` (all when `None`), IPv4 first, by prefix.
    pub fn routes(&self, within: Option<IpNet>) -> Vec<(IpNet, u32)> {
        let v4 = self
            .writers
            .v4
            .routes()
            .into_iter()
            .filter_map(|(p, l, nh)| {
                ipnet::Ipv4Net::new(p.into(), l)
                    .ok()
                    .map(|n| (IpNet::V4(n), nh))
            });
        let v6 = self
            .writers
            .v6
            .routes()
            .into_iter()
            .filter_map(|(p, l, nh)| {
                ipnet::Ipv6Net::new(p.into(), l)
                    .ok()
                    .map(|n| (IpNet::V6(n), nh))
            });
        v4.chain(v6)
            .filter(|(n, _)| within.is_none_or(|w| w.contains(n)))
            .collect()
    }

    /// Where the route of `p` came from.
    pub fn origin(&self, p: &IpNet) -> String {
        if self.fixed.contains(p) {
            "interface".to_string()
        } else if let Some(t) = self.mirrored.get(p) {
            format!("kernel table {t}")
        } else if self.changed.contains(p) {
            "gateway route".to_string()
        } else {
            "file".to_string()
        }
    }

    /// Routes mirrored from kernel tables now in the route tables.
    pub fn mirrored(&self) -> usize {
        self.mirrored.len()
    }

    /// The next-hop index of the route of exactly `p`, if there is one.
    fn exact(&self, p: IpNet) -> Option<u32> {
        self.longest_match(p.network())
            .filter(|(q, _)| *q == p)
            .map(|(_, nh)| nh)
    }

    fn write(&mut self, p: IpNet, nh: u32) -> Result<Option<u32>, lpm::Error> {
        match p {
            IpNet::V4(n) => self
                .writers
                .v4
                .insert(u32::from(n.network()), n.prefix_len(), nh),
            IpNet::V6(n) => self
                .writers
                .v6
                .insert(u128::from(n.network()), n.prefix_len(), nh),
        }
    }

    fn erase(&mut self, p: IpNet) -> Option<u32> {
        match p {
            IpNet::V4(n) => self
                .writers
                .v4
                .remove(u32::from(n.network()), n.prefix_len()),
            IpNet::V6(n) => self
                .writers
                .v6
                .remove(u128::from(n.network()), n.prefix_len()),
        }
    }

    /// The next-hop index of an ECMP group over `members` (next-hop indices, in order): the
    /// one written before for the same members, or a new one.
    fn group_index(&mut self, members: Vec<u32>) -> Result<u32, Refusal> {
        if let [one] = members.as_slice() {
            return Ok(*one);
        }
        if let Some(&i) = self.groups.get(&members) {
            return Ok(i);
        }
        let start = self.ecmp.append(&members).ok_or(Refusal::Full)?;
        let i = self
            .next_hops
            .push(NextHop::Ecmp {
                start,
                len: members.len() as u32,
            })
            .ok_or(Refusal::Full)?;
        self.groups.insert(members, i);
        Ok(i)
    }

    /// Puts a route mirrored from kernel table `table` into the route tables, or says why
    /// not. With `prefer_file`, a route the file or `gateway route` gave the same prefix
    /// stays; otherwise the mirrored one replaces it until [`RouteControl::unmirror`].
    ///
    /// # Errors
    /// Why the route tables are unchanged.
    pub fn mirror(
        &mut self,
        p: IpNet,
        to: Mirrored<'_>,
        table: u32,
        prefer_file: bool,
    ) -> Result<(), Refusal> {
        if self.fixed.contains(&p) {
            return Err(Refusal::Interface);
        }
        let nh = match to {
            Mirrored::Drop => self.blackhole,
            Mirrored::Via(gateways) => {
                let v4 = matches!(p, IpNet::V4(_));
                let mut members = Vec::with_capacity(gateways.len());
                for &g in gateways.iter().filter(|g| g.is_ipv4() == v4) {
                    let i = self.via_index(g).map_err(|_| Refusal::NextHopUnreachable)?;
                    if !members.contains(&i) {
                        members.push(i);
                    }
                }
                if members.is_empty() {
                    return Err(Refusal::NoUsableNextHop);
                }
                members.truncate(config::MAX_ECMP);
                self.group_index(members)?
            }
        };
        if !self.mirrored.contains_key(&p) {
            if let Some(old) = self.exact(p) {
                if prefer_file {
                    return Err(Refusal::Shadowed);
                }
                self.displaced.insert(p, old);
            }
        }
        self.write(p, nh).map_err(|_| Refusal::Full)?;
        self.mirrored.insert(p, table);
        Ok(())
    }

    /// Takes a mirrored route out of the route tables, putting back the route it displaced.
    /// Nothing happens for a prefix that is not mirrored.
    pub fn unmirror(&mut self, p: IpNet) {
        if self.mirrored.remove(&p).is_none() {
            return;
        }
        match self.displaced.remove(&p) {
            // It was in the table a moment ago: putting it back needs no new group.
            Some(old) => {
                let _ = self.write(p, old);
            }
            None => {
                self.erase(p);
            }
        }
    }

    /// Answers `routes get ADDR` and `routes show [PREFIX|-] [LIMIT]` from the tables in
    /// force, naming ports by `ports` and reading MACs from `fib`.
    pub fn lookup(&self, line: &str, fib: &Fib, ports: &[String]) -> String {
        let line_of = |p: &IpNet, nh: u32| {
            format!(
                "{p} {} origin={}\n",
                describe(fib, nh, ports),
                self.origin(p)
            )
        };
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["routes", "get", a] => match a.parse::<IpAddr>() {
                Ok(addr) => match self.longest_match(addr) {
                    Some((p, nh)) => line_of(&p, nh),
                    None => format!("{addr}: no route (dropped as no_route)\n"),
                },
                Err(_) => format!("error: {a}: not an IP address\n"),
            },
            ["routes", "show", rest @ ..] if rest.len() <= 2 => {
                let within = match rest.first() {
                    None | Some(&"-") => None,
                    Some(p) => match prefix(p) {
                        Ok(n) => Some(n),
                        Err(e) => return format!("error: {e}\n"),
                    },
                };
                let limit = match rest.get(1).map(|l| l.parse::<usize>()) {
                    None => 100,
                    Some(Ok(l)) => l,
                    Some(Err(_)) => return "error: the limit is a number of routes\n".into(),
                };
                let all = self.routes(within);
                let mut out: String = all
                    .iter()
                    .take(limit)
                    .map(|(p, nh)| line_of(p, *nh))
                    .collect();
                if all.len() > limit {
                    out.push_str(&format!("... {} more (--limit)\n", all.len() - limit));
                }
                if all.is_empty() {
                    out.push_str("no routes\n");
                }
                out
            }
            _ => "error: expected `routes get ADDRESS` or `routes show [PREFIX] [LIMIT]`\n".into(),
        }
    }

    /// Handles one request line; the answer line ends with a newline.
    pub fn handle(&mut self, line: &str) -> String {
        match parse(line).and_then(|r| self.apply(r)) {
            Ok(m) => format!("ok: {m}\n"),
            Err(e) => format!("error: {e}\n"),
        }
    }

    /// The next-hop index of gateway `a`: the one it already has, or a new one when it lies
    /// in a connected subnet (through its static MAC, or resolved by ARP/NDP).
    fn via_index(&mut self, a: IpAddr) -> Result<u32, String> {
        if let Some(&(_, i)) = self.vias.iter().find(|(v, _)| *v == a) {
            return Ok(i);
        }
        let Some(&(_, port)) = self
            .reachable
            .connected
            .iter()
            .find(|(n, _)| n.contains(&a))
        else {
            return Err(format!(
                "{a} is in no connected subnet of the gateway's ports"
            ));
        };
        let nh = match self.reachable.macs.iter().find(|(m, _)| *m == a) {
            Some(&(_, mac)) => NextHop::Forward {
                port,
                mac,
                hairpin: false,
            },
            None => NextHop::Unresolved {
                port,
                addr: datapath::fib::ip_key(a),
                hairpin: false,
            },
        };
        let i = self.next_hops.push(nh).ok_or_else(|| {
            format!(
                "the next-hop table is full ({} next hops; a reload makes room)",
                self.next_hops.len()
            )
        })?;
        self.vias.push((a, i));
        Ok(i)
    }

    /// Applies a request.
    ///
    /// # Errors
    /// A message naming why nothing changed.
    pub fn apply(&mut self, r: Request) -> Result<String, String> {
        let p = match r {
            Request::Add(p, _) | Request::Del(p) => p,
        };
        if self.fixed.contains(&p) {
            return Err(format!(
                "{p} belongs to an interface (a connected subnet or a local address)"
            ));
        }
        match r {
            Request::Add(p, t) => {
                let nh = match t {
                    Target::Drop => self.blackhole,
                    Target::Via(a) => {
                        if a.is_ipv4() != matches!(p, IpNet::V4(_)) {
                            return Err(format!(
                                "{p} and its next hop {a} are of different families"
                            ));
                        }
                        self.via_index(a)?
                    }
                };
                let old = self.write(p, nh).map_err(|e| table_error(p, e))?;
                self.changed.insert(p);
                self.mirrored.remove(&p);
                self.displaced.remove(&p);
                Ok(if old.is_some() {
                    format!("replaced {p}")
                } else {
                    format!("added {p}")
                })
            }
            Request::Del(p) => {
                let old = self.erase(p);
                self.mirrored.remove(&p);
                self.displaced.remove(&p);
                match old {
                    Some(_) => Ok(format!("removed {p}")),
                    None => Err(format!("no route {p}")),
                }
            }
        }
    }
}

fn table_error(p: IpNet, e: lpm::Error) -> String {
    match e {
        lpm::Error::OutOfGroups => format!("{p}: the route table is full"),
        lpm::Error::OutOfMemory => format!("{p}: out of memory"),
        other => format!("{p}: {other:?}"),
    }
}

/// What a next hop does, for `gateway routes`: the port, the neighbour and its MAC (static,
/// learned, or not resolved), each ECMP member, a tunnel, a drop.
pub fn describe(fib: &Fib, nh: u32, ports: &[String]) -> String {
    match fib.nexthop(nh) {
        Some(&NextHop::Ecmp { start, len }) => {
            let members: Vec<String> = (0..len)
                .filter_map(|i| fib.ecmp_member(start, len, i))
                .map(|h| describe_hop(fib, h, ports))
                .collect();
            format!("ecmp [{}]", members.join("; "))
        }
        Some(h) => describe_hop(fib, h, ports),
        None => format!("next hop {nh} (unknown)"),
    }
}

/// The name of port `p`.
pub fn port_name(ports: &[String], p: u8) -> String {
    ports
        .get(usize::from(p))
        .cloned()
        .unwrap_or_else(|| format!("port{p}"))
}

/// A MAC address as `02:00:00:00:00:01`.
pub fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An encapsulation: `tunnel gtpu teid 0x2001 qfi 9 to 172.16.135.60 dev n3`.
pub fn encap_text(e: &datapath::fib::Encap, ports: &[String]) -> String {
    use datapath::fib::EncapKind;
    let kind = match e.kind {
        EncapKind::Gtpu { teid, qfi } => match qfi {
            Some(q) => format!("gtpu teid {teid:#x} qfi {q}"),
            None => format!("gtpu teid {teid:#x}"),
        },
        EncapKind::Vxlan { vni, udp_port, .. } => format!("vxlan vni {vni} port {udp_port}"),
        EncapKind::Ipip => "ipip".to_string(),
        EncapKind::Geneve {
            vni,
            udp_port,
            inner_macs,
        } => match inner_macs {
            Some([dst, _]) => format!(
                "geneve vni {vni} port {udp_port} ethernet to {}",
                mac_text(dst)
            ),
            None => format!("geneve vni {vni} port {udp_port}"),
        },
    };
    format!(
        "tunnel {kind} to {} dev {}",
        datapath::fib::key_ip(e.peer),
        port_name(ports, e.port)
    )
}

/// What one next hop (not an ECMP group) does, as [`describe`] says it.
pub fn describe_hop(fib: &Fib, h: &NextHop, ports: &[String]) -> String {
    let port = |p: u8| port_name(ports, p);
    let mac = mac_text;
    match *h {
        NextHop::Local => "local (the gateway's own address)".to_string(),
        NextHop::Blackhole => "drop (blackhole)".to_string(),
        NextHop::Forward {
            port: p, mac: m, ..
        } => {
            format!("dev {} mac {} (static)", port(p), mac(m))
        }
        NextHop::Unresolved { port: p, addr, .. } => {
            let a = datapath::fib::key_ip(addr);
            match fib.neighbors().lookup(addr) {
                Some(m) => format!("via {a} dev {} mac {} (learned)", port(p), mac(m)),
                None => format!("via {a} dev {} mac unresolved", port(p)),
            }
        }
        NextHop::Connected { port: p } => format!("connected dev {}", port(p)),
        NextHop::Encap { index } => match fib.encap(index) {
            Some(e) => encap_text(e, ports),
            None => "tunnel".to_string(),
        },
        NextHop::NoSession => "GTP-U tunnel, no session covers it (gtpu_no_session)".to_string(),
        NextHop::Ecmp { .. } => "ECMP".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datapath::fib::NextHop;

    #[test]
    fn a_route_through_a_gateway_the_file_never_named_grows_the_next_hop_table() {
        let c = crate::testing::parse(crate::testing::TWO_PORTS);
        let (fib, mut routes) = crate::tables::build_fib_with_routes(&c, None).unwrap();
        let before = fib.next_hops().len();
        let a = u32::from(std::net::Ipv4Addr::new(10, 9, 1, 1));
        // 172.18.0.9 is in the pods port's subnet, and neither a neighbour nor a via.
        assert_eq!(
            routes.handle("route add 10.9.0.0/16 via 172.18.0.9"),
            "ok: added 10.9.0.0/16\n"
        );
        let nh = fib.v4.lookup(a).and_then(|i| fib.nexthop(i)).copied();
        let key = datapath::fib::ip_key("172.18.0.9".parse().unwrap());
        assert_eq!(
            nh,
            Some(NextHop::Unresolved {
                port: 1,
                addr: key,
                hairpin: false
            })
        );
        assert_eq!(fib.next_hops().len(), before + 1);
        // The same gateway again, for another prefix: the same next hop, no new slot.
        assert_eq!(
            routes.handle("route add 10.8.0.0/16 via 172.18.0.9"),
            "ok: added 10.8.0.0/16\n"
        );
        assert_eq!(fib.next_hops().len(), before + 1);
        // A full table refuses, and changes nothing.
        let mut n = 0u32;
        let full = loop {
            let a = std::net::Ipv4Addr::from(0xac12_1000 + n);
            let got = routes.handle(&format!(
                "route add 10.{}.{}.0/24 via {a}",
                100 + n / 256,
                n % 256
            ));
            if got.starts_with("error") {
                break got;
            }
            n += 1;
            assert!(n as usize <= datapath::fib::RUNTIME_NEXT_HOPS, "never full");
        };
        assert!(full.contains("next-hop table is full"), "{full}");
        assert_eq!(n as usize, datapath::fib::RUNTIME_NEXT_HOPS - 1);
    }

    #[test]
    fn route_changes_reach_the_workers_view_and_bad_ones_change_nothing() {
        let c = crate::testing::parse(crate::testing::TWO_PORTS);
        let (fib, mut routes) = crate::tables::build_fib_with_routes(&c, None).unwrap();
        let a = u32::from(std::net::Ipv4Addr::new(10, 9, 1, 1));
        assert_eq!(fib.v4.lookup(a), None);
        assert_eq!(
            routes.handle("route add 10.9.0.0/16 via 172.18.0.2"),
            "ok: added 10.9.0.0/16\n"
        );
        let nh = fib.v4.lookup(a).and_then(|i| fib.nexthop(i)).copied();
        assert!(
            matches!(
                nh,
                Some(NextHop::Forward {
                    port: 1,
                    mac: [2, 0, 0, 0, 2, 1],
                    ..
                })
            ),
            "{nh:?}"
        );
        // A configured route's via is a next hop too (unresolved until ARP answers).
        assert_eq!(
            routes.handle("route add 10.9.0.0/16 via 172.18.0.3"),
            "ok: replaced 10.9.0.0/16\n"
        );
        let nh = fib.v4.lookup(a).and_then(|i| fib.nexthop(i)).copied();
        assert!(
            matches!(nh, Some(NextHop::Unresolved { port: 1, .. })),
            "{nh:?}"
        );
        assert_eq!(
            routes.handle("route add 10.9.1.0/24 drop"),
            "ok: added 10.9.1.0/24\n"
        );
        let nh = fib.v4.lookup(a).and_then(|i| fib.nexthop(i)).copied();
        assert_eq!(nh, Some(NextHop::Blackhole));
        assert_eq!(
            routes.handle("route del 10.9.1.0/24"),
            "ok: removed 10.9.1.0/24\n"
        );
        assert_eq!(
            routes.handle("route del 10.9.0.0/16"),
            "ok: removed 10.9.0.0/16\n"
        );
        assert_eq!(fib.v4.lookup(a), None);
        assert_eq!(
            routes.handle("route add fd00:9::/64 drop"),
            "ok: added fd00:9::/64\n"
        );
        let a6 = u128::from("fd00:9::5".parse::<std::net::Ipv6Addr>().unwrap());
        assert_eq!(
            fib.v6.lookup(a6).and_then(|i| fib.nexthop(i)).copied(),
            Some(NextHop::Blackhole)
        );

        let local = fib
            .v4
            .lookup(u32::from(std::net::Ipv4Addr::new(192, 0, 2, 1)));
        for (req, why) in [
            ("route del 10.9.0.0/16", "no route 10.9.0.0/16"),
            (
                "route add 10.9.0.0/16 via 198.51.100.9",
                "198.51.100.9 is in no connected subnet",
            ),
            (
                "route add fd00:9::/64 via 172.18.0.2",
                "of different families",
            ),
            ("route del 192.0.2.0/24", "belongs to an interface"),
            ("route add 192.0.2.1/32 drop", "belongs to an interface"),
            ("route add 172.18.0.0/16 drop", "belongs to an interface"),
        ] {
            let got = routes.handle(req);
            assert!(
                got.starts_with("error: ") && got.contains(why),
                "{req}: {got}"
            );
        }
        assert_eq!(fib.v4.lookup(a), None, "refused requests changed nothing");
        assert_eq!(
            fib.v4
                .lookup(u32::from(std::net::Ipv4Addr::new(192, 0, 2, 1))),
            local
        );
    }

    #[test]
    fn routes_get_and_show_give_the_longest_match_its_next_hops_and_origin() {
        let src = format!(
            "{}\n[[route]]\nprefix = \"10.96.0.0/12\"\nvia = [\"172.18.0.2\", \"172.18.0.3\"]\n\n[[route]]\nprefix = \"10.244.7.0/24\"\naction = \"drop\"\n",
            crate::testing::TWO_PORTS
        );
        let c = crate::testing::parse(&src);
        let (fib, mut routes) = crate::tables::build_fib_with_routes(&c, None).unwrap();
        let ports = ["ext".to_string(), "pods".to_string()];
        let ask = |r: &RouteControl, q: &str| r.lookup(q, &fib, &ports);
        assert_eq!(
            ask(&routes, "routes get 10.244.1.5"),
            "10.244.0.0/16 via 172.18.0.3 dev pods mac unresolved origin=file\n"
        );
        // The longer drop route wins inside its /24.
        assert_eq!(
            ask(&routes, "routes get 10.244.7.9"),
            "10.244.7.0/24 drop (blackhole) origin=file\n"
        );
        assert_eq!(
            ask(&routes, "routes get 10.96.0.10"),
            "10.96.0.0/12 ecmp [dev pods mac 02:00:00:00:02:01 (static); via 172.18.0.3 dev pods mac unresolved] origin=file\n"
        );
        assert_eq!(
            ask(&routes, "routes get 172.18.9.9"),
            "172.18.0.0/16 connected dev pods origin=interface\n"
        );
        assert_eq!(
            ask(&routes, "routes get 198.51.100.1"),
            "198.51.100.1: no route (dropped as no_route)\n"
        );
        // A learned MAC shows as learned.
        fib.neighbors().set(
            datapath::fib::ip_key("172.18.0.3".parse().unwrap()),
            [2, 0, 0, 0, 2, 3],
        );
        assert!(ask(&routes, "routes get 10.244.1.5").contains("mac 02:00:00:00:02:03 (learned)"));
        // A route added at run time says so.
        assert!(routes
            .handle("route add 10.9.0.0/16 drop")
            .starts_with("ok"));
        assert_eq!(
            ask(&routes, "routes get 10.9.1.1"),
            "10.9.0.0/16 drop (blackhole) origin=gateway route\n"
        );
        let shown = ask(&routes, "routes show 10.0.0.0/8 2");
        assert_eq!(
            shown.lines().collect::<Vec<_>>(),
            [
                "10.9.0.0/16 drop (blackhole) origin=gateway route",
                "10.96.0.0/12 ecmp [dev pods mac 02:00:00:00:02:01 (static); via 172.18.0.3 dev pods mac 02:00:00:00:02:03 (learned)] origin=file",
                "... 2 more (--limit)",
            ]
        );
        assert!(ask(&routes, "routes get nowhere").starts_with("error"));
        assert!(ask(&routes, "routes show 10.0.0.1/8").starts_with("error"));
    }

    #[test]
    fn requests_parse_and_bad_ones_say_why() {
        let p: IpNet = "10.9.0.0/16".parse().unwrap();
        assert_eq!(
            parse("route add 10.9.0.0/16 via 172.18.0.2\n"),
            Ok(Request::Add(p, Target::Via("172.18.0.2".parse().unwrap())))
        );
        assert_eq!(
            parse("route add 10.9.0.0/16 drop"),
            Ok(Request::Add(p, Target::Drop))
        );
        assert_eq!(parse("  route  del 10.9.0.0/16 "), Ok(Request::Del(p)));
        let err = |l: &str| parse(l).unwrap_err();
        assert!(
            err("route add 10.9.0.1/16 drop").contains("host bits set; did you mean 10.9.0.0/16?")
        );
        assert!(err("route add 10.9.0.0/33 drop").contains("not a prefix"));
        assert!(err("route add 10.9.0.0/16 via pods").contains("pods: not an IP address"));
        assert!(err("route flush").contains("expected `route add"));
        assert!(err("").contains("unknown request"));
    }
}
