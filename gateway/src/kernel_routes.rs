//! Routes from the cluster: kernel routing tables mirrored into the route tables, live.
//!
//! BIRD (or any routing daemon) installs what it learns over BGP into a kernel table
//! (`[[route_source]] table = 100`); the gateway reads that table over rtnetlink, the way
//! VPP's linux-cp and most XDP routers follow the kernel, and keeps its own tables equal to
//! it through the single route writer ([`RouteControl::mirror`]). No worker waits.
//!
//! - **Dump, then follow.** A socket subscribed to the IPv4 and IPv6 route groups receives
//!   every change; a second socket dumps the tables at start. The dump is read a bounded
//!   share per turn of the control loop, so a table of a million routes never keeps the loop
//!   from ARP, NDP and the control socket. When the kernel says it dropped notifications
//!   (`ENOBUFS`), the tables are dumped again and the mirror reconciled with the dump: routes
//!   the dump no longer has are removed.
//! - **What a kernel route becomes.** A gateway, or several (multipath: an ECMP group);
//!   `blackhole`, `unreachable` and `prohibit` become drops (`blackhole`). Of the routes for a
//!   prefix, the first source's lowest metric is in force.
//! - **Refused, counted, logged once.** A next hop outside every connected subnet, a route for
//!   a connected subnet or an own address, a prefix the file has (unless `prefer = "source"`),
//!   a full table, a kind of route the gateway cannot take ([`Refusal`]). A message that does
//!   not parse is counted as malformed and skipped; the rest of its datagram is not trusted.

use crate::routes::{Mirrored, Refusal, RouteControl};
use config::RouteSource;
use ipnet::IpNet;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteNextHopFlags, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The legacy multicast groups of IPv4 and IPv6 route changes (`RTMGRP_IPV4_ROUTE`,
/// `RTMGRP_IPV6_ROUTE`).
const ROUTE_GROUPS: u32 = 0x40 | 0x400;
/// Receive buffer of each socket: a burst of BGP updates (a peer's full table) fits, and the
/// rest is caught by `ENOBUFS` and a new dump.
const SOCKET_BUFFER: usize = 32 << 20;
/// Netlink messages handled per turn of the control loop.
const PER_TURN: usize = 20_000;
/// Refusals logged one by one; later ones are only counted.
const LOG_LINES: usize = 1000;

/// What a kernel route does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Forward through these gateways (several: multipath).
    Via(Vec<IpAddr>),
    /// `blackhole`, `unreachable`, `prohibit`.
    Drop,
    /// A kind the gateway does not take (local, broadcast, multicast, throw, NAT, MPLS, an
    /// encapsulation), named.
    Unsupported(&'static str),
}

/// One route of a kernel table, as the mirror needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    /// Destination.
    pub prefix: IpNet,
    /// Kernel table.
    pub table: u32,
    /// The protocol that installed it (`12`: bird).
    pub protocol: u8,
    /// Metric (priority).
    pub metric: u32,
    /// What it does.
    pub action: Action,
}

/// One netlink message, as the mirror reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A route was added or changed (or reported by a dump).
    New(KernelRoute),
    /// A route was removed.
    Del(KernelRoute),
    /// The end of a dump.
    Done,
    /// An error from the kernel (`errno`).
    Error(i32),
    /// A message that does not parse, and why.
    Malformed(String),
    /// Anything else (other families, cached clones, acknowledgements).
    Ignored,
}

/// Reads every netlink message of one datagram into `out`. A message that does not parse ends
/// the datagram: its length field, and so every later message, is not to be trusted.
pub fn parse(datagram: &[u8], out: &mut Vec<Event>) {
    let mut off = 0;
    while off < datagram.len() {
        let rest = &datagram[off..];
        let len = match rest.get(..4) {
            Some(b) => u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize,
            None => {
                out.push(Event::Malformed(format!(
                    "{} bytes left, less than a netlink header",
                    rest.len()
                )));
                return;
            }
        };
        if len < 16 || len > rest.len() {
            out.push(Event::Malformed(format!(
                "message length {len} with {} bytes left",
                rest.len()
            )));
            return;
        }
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len]) {
            Ok(m) => out.push(event_of(m)),
            Err(e) => {
                out.push(Event::Malformed(e.to_string()));
                return;
            }
        }
        off += (len + 3) & !3;
    }
}

fn event_of(m: NetlinkMessage<RouteNetlinkMessage>) -> Event {
    match m.payload {
        NetlinkPayload::Done(_) => Event::Done,
        NetlinkPayload::Error(e) => match e.code {
            Some(code) => Event::Error(code.get()),
            None => Event::Ignored,
        },
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => match route_of(&r) {
            Ok(Some(r)) => Event::New(r),
            Ok(None) => Event::Ignored,
            Err(e) => Event::Malformed(e),
        },
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(r)) => match route_of(&r) {
            Ok(Some(r)) => Event::Del(r),
            Ok(None) => Event::Ignored,
            Err(e) => Event::Malformed(e),
        },
        _ => Event::Ignored,
    }
}

fn address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// A route message as a [`KernelRoute`]; `None` for what is not a route of an IP table
/// (other families, clones in the route cache).
///
/// # Errors
/// What makes it no route: a prefix longer than its family's addresses, a destination of
/// another family.
pub fn route_of(m: &RouteMessage) -> Result<Option<KernelRoute>, String> {
    let h = &m.header;
    let unspecified = match h.address_family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return Ok(None),
    };
    if h.flags.contains(RouteFlags::from_bits_retain(0x200)) {
        // RTM_F_CLONED: an entry of the route cache, not of a table.
        return Ok(None);
    }
    let mut table = u32::from(h.table);
    let mut dst = unspecified;
    let mut metric = 0;
    let mut gateways = Vec::new();
    let mut unsupported = None;
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => {
                dst = address(d).ok_or("a destination that is no IP address")?;
            }
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::Gateway(g) => gateways.extend(address(g)),
            RouteAttribute::MultiPath(hops) => {
                for hop in hops {
                    if hop
                        .flags
                        .intersects(RouteNextHopFlags::Dead | RouteNextHopFlags::Linkdown)
                    {
                        continue;
                    }
                    for a in &hop.attributes {
                        match a {
                            RouteAttribute::Gateway(g) => gateways.extend(address(g)),
                            RouteAttribute::Via(_) => {
                                unsupported = Some("a next hop of another family (via inet6)")
                            }
                            _ => {}
                        }
                    }
                }
            }
            RouteAttribute::Via(_) => {
                unsupported = Some("a next hop of another family (via inet6)")
            }
            RouteAttribute::Encap(_) | RouteAttribute::EncapType(_) => {
                unsupported = Some("an encapsulation (lwtunnel)")
            }
            RouteAttribute::NewDestination(_) => unsupported = Some("MPLS"),
            RouteAttribute::NhId(_) => unsupported = Some("a next-hop object (nhid)"),
            _ => {}
        }
    }
    if dst.is_ipv4() != unspecified.is_ipv4() {
        return Err(format!("destination {dst} in a route of the other family"));
    }
    let prefix = IpNet::new(dst, h.destination_prefix_length)
        .map_err(|_| format!("prefix length {} for {dst}", h.destination_prefix_length))?;
    let action = match (h.kind, unsupported) {
        (RouteType::BlackHole | RouteType::Unreachable | RouteType::Prohibit, _) => Action::Drop,
        (RouteType::Unicast, None) => Action::Via(gateways),
        (RouteType::Unicast, Some(why)) => Action::Unsupported(why),
        (RouteType::Local, _) => Action::Unsupported("local"),
        (RouteType::Broadcast | RouteType::Anycast, _) => Action::Unsupported("broadcast"),
        (RouteType::Multicast, _) => Action::Unsupported("multicast"),
        (RouteType::Throw, _) => Action::Unsupported("throw"),
        (RouteType::Nat, _) => Action::Unsupported("nat"),
        _ => Action::Unsupported("another route type"),
    };
    Ok(Some(KernelRoute {
        prefix: prefix.trunc(),
        table,
        protocol: u8::from(h.protocol),
        metric,
        action,
    }))
}

/// The mirror's counters, for metrics and `gateway stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorCounters {
    /// Mirrored routes in force, per source table (in `[[route_source]]` order).
    pub in_force: Vec<(u32, usize)>,
    /// Kernel routes refused now, by [`Refusal::ALL`].
    pub refused_now: [usize; 6],
    /// Refusals since start, by [`Refusal::ALL`].
    pub refusals: [u64; 6],
    /// Route changes applied to the route tables.
    pub updates: u64,
    /// Netlink messages that did not parse.
    pub malformed: u64,
    /// Full dumps, the first included.
    pub dumps: u64,
    /// Times the kernel dropped notifications (`ENOBUFS`), each answered by a dump.
    pub overruns: u64,
    /// True once the first dump is mirrored.
    pub synced: bool,
}

impl MirrorCounters {
    /// As `gateway stats` shows them.
    pub fn json(&self) -> serde_json::Value {
        let by_reason = |f: &dyn Fn(usize) -> u64| -> serde_json::Map<String, serde_json::Value> {
            Refusal::ALL
                .iter()
                .map(|r| (r.name().to_string(), f(*r as usize).into()))
                .collect()
        };
        serde_json::json!({
            "synced": self.synced,
            "tables": self
                .in_force
                .iter()
                .map(|(t, n)| (t.to_string(), serde_json::Value::from(*n)))
                .collect::<serde_json::Map<_, _>>(),
            "refused": by_reason(&|i| self.refused_now[i] as u64),
            "refusals": by_reason(&|i| self.refusals[i]),
            "updates": self.updates,
            "malformed": self.malformed,
            "dumps": self.dumps,
            "overruns": self.overruns,
        })
    }
}

/// The state of a prefix in the route tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// In force, from the source at this index.
    Mirrored(u8),
    Refused(Refusal),
}

/// What a kept kernel route does: one gateway (the common case) without an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Does {
    Via1(IpAddr),
    Via(Box<[IpAddr]>),
    Drop,
    Unsupported(&'static str),
}

impl Does {
    fn of(a: Action) -> Does {
        match a {
            Action::Via(g) if g.len() == 1 => Does::Via1(g[0]),
            Action::Via(g) => Does::Via(g.into_boxed_slice()),
            Action::Drop => Does::Drop,
            Action::Unsupported(why) => Does::Unsupported(why),
        }
    }
}

/// A kernel route as the mirror keeps it: a full table is held for every prefix, so it is
/// small (its prefix is the map's key).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Kept {
    source: u8,
    table: u32,
    metric: u32,
    does: Does,
}

/// The kernel routes of one prefix (one, nearly always), and what the prefix became.
#[derive(Debug, Default)]
struct Prefix {
    one: Option<Kept>,
    more: Vec<Kept>,
    outcome: Option<Outcome>,
}

impl Prefix {
    fn routes(&self) -> impl Iterator<Item = &Kept> {
        self.one.iter().chain(&self.more)
    }

    fn remove(&mut self, table: u32, metric: u32) {
        self.more.retain(|k| (k.table, k.metric) != (table, metric));
        if self
            .one
            .as_ref()
            .is_some_and(|k| (k.table, k.metric) == (table, metric))
        {
            self.one = self.more.pop();
        }
    }

    fn put(&mut self, k: Kept) {
        self.remove(k.table, k.metric);
        match self.one {
            None => self.one = Some(k),
            Some(_) => self.more.push(k),
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&Kept) -> bool) -> bool {
        let before = self.routes().count();
        self.more.retain(&mut keep);
        if self.one.as_ref().is_some_and(|k| !keep(k)) {
            self.one = self.more.pop();
        }
        self.routes().count() != before
    }
}

/// The mirror of `[[route_source]]` tables: its sockets, every kernel route kept, and what
/// each prefix became.
pub struct Mirror {
    sources: Vec<RouteSource>,
    events: Socket,
    dump: Option<Socket>,
    /// A dump is under way: the routes it (or a change since it began) reported.
    seen: Option<HashSet<(IpNet, u32, u32)>>,
    /// Another dump is wanted once this one ends.
    again: bool,
    /// Every prefix of the source tables: its kernel routes and what it became.
    prefixes: HashMap<IpNet, Prefix>,
    counters: MirrorCounters,
    logged: usize,
    buf: Vec<u8>,
    parsed: Vec<Event>,
    /// The XDP programs of `pass_to_kernel` ports, told of every prefix mirrored or gone so
    /// that traffic to it comes to the gateway, not the kernel; and the prefixes they own
    /// from the file, never given back.
    owners: Vec<std::sync::Arc<datapath::port::af_xdp::XdpAttachment>>,
    owned_by_file: HashSet<(IpAddr, u8)>,
    /// The change socket's netlink port id, its drop count when last read, and when.
    portid: u32,
    drops: u64,
    checked: std::time::Instant,
}

/// How often the change socket's drop count is read.
const DROP_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// The drop count of this namespace's rtnetlink socket `portid` (`/proc/net/netlink`): the
/// one sure sign of lost notifications, which ENOBUFS reports only once per congestion.
fn socket_drops(portid: u32) -> u64 {
    let text = std::fs::read_to_string("/proc/self/net/netlink").unwrap_or_default();
    text.lines()
        .skip(1)
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (proto, pid, drops) = (f.get(1)?, f.get(2)?, f.get(8)?);
            (*proto == "0" && pid.parse::<u32>().ok()? == portid).then(|| drops.parse().ok())?
        })
        .unwrap_or(0)
}

fn route_socket(groups: u32) -> std::io::Result<Socket> {
    let mut s = Socket::new(NETLINK_ROUTE)?;
    s.bind(&SocketAddr::new(0, groups))?;
    s.set_non_blocking(true)?;
    // Forced past rmem_max as root; the default is kept where that is not allowed.
    if rustix::net::sockopt::set_socket_recv_buffer_size_force(&s, SOCKET_BUFFER).is_err() {
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&s, SOCKET_BUFFER);
    }
    Ok(s)
}

impl Mirror {
    /// Subscribes to route changes and starts the first dump.
    ///
    /// # Errors
    /// The netlink sockets could not be opened.
    pub fn new(sources: Vec<RouteSource>) -> std::io::Result<Self> {
        let events = route_socket(ROUTE_GROUPS)?;
        let mut local = SocketAddr::new(0, 0);
        events.get_address(&mut local)?;
        let portid = local.port_number();
        let counters = MirrorCounters {
            in_force: sources.iter().map(|s| (s.table, 0)).collect(),
            ..MirrorCounters::default()
        };
        let mut m = Mirror {
            sources,
            events,
            dump: None,
            seen: None,
            again: false,
            prefixes: HashMap::new(),
            counters,
            logged: 0,
            buf: vec![0; 1 << 16],
            parsed: Vec::new(),
            owners: Vec::new(),
            owned_by_file: HashSet::new(),
            portid,
            drops: socket_drops(portid),
            checked: std::time::Instant::now(),
        };
        m.start_dump()?;
        Ok(m)
    }

    /// Keeps the owned-prefix tries of `owners` (the attachments of `pass_to_kernel` ports)
    /// equal to the mirrored routes; `owned_by_file` are the prefixes they were attached
    /// with ([`crate::tables::owned_prefixes`]).
    pub fn with_owners(
        mut self,
        owners: Vec<std::sync::Arc<datapath::port::af_xdp::XdpAttachment>>,
        owned_by_file: Vec<(IpAddr, u8)>,
    ) -> Self {
        self.owners = owners.into_iter().filter(|a| a.owns_prefixes()).collect();
        self.owned_by_file = owned_by_file.into_iter().collect();
        self
    }

    fn own(&mut self, p: IpNet, owned: bool) {
        let key = (p.network(), p.prefix_len());
        if !owned && self.owned_by_file.contains(&key) {
            return;
        }
        for a in &self.owners {
            if let Err(e) = a.own(key.0, key.1, owned) {
                datapath::log::event(
                    "route_source",
                    &[
                        ("prefix", &p),
                        ("xdp_owned_prefix", &"error"),
                        ("error", &e),
                    ],
                );
            }
        }
    }

    /// The counters.
    pub fn counters(&self) -> &MirrorCounters {
        &self.counters
    }

    /// The source tables, in order.
    pub fn tables(&self) -> Vec<u32> {
        self.sources.iter().map(|s| s.table).collect()
    }

    fn start_dump(&mut self) -> std::io::Result<()> {
        if self.seen.is_some() {
            self.again = true;
            return Ok(());
        }
        // A new socket: what an abandoned dump left unread goes with the old one.
        let s = route_socket(0)?;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        header.sequence_number = self.counters.dumps as u32 + 1;
        let mut req = NetlinkMessage::new(
            header,
            NetlinkPayload::from(RouteNetlinkMessage::GetRoute(RouteMessage::default())),
        );
        req.finalize();
        let mut bytes = vec![0; req.buffer_len()];
        req.serialize(&mut bytes);
        s.send_to(&bytes, &SocketAddr::new(0, 0), 0)?;
        self.dump = Some(s);
        self.seen = Some(HashSet::new());
        self.counters.dumps += 1;
        Ok(())
    }

    /// One turn: reads a bounded share of the dump and of the changes, and applies them.
    pub fn turn(&mut self, routes: &mut RouteControl) {
        // Changes first: a queue that is never emptied stays "congested" in the kernel, and
        // notifications it drops then raise no ENOBUFS (only the socket's drop count grows).
        let left = self.read(false, PER_TURN, routes);
        if self.dump.is_some() {
            self.read(true, left.max(PER_TURN / 4), routes);
        }
        if self.checked.elapsed() >= DROP_CHECK {
            self.checked = std::time::Instant::now();
            let drops = socket_drops(self.portid);
            if drops > self.drops {
                self.drops = drops;
                self.counters.overruns += 1;
                datapath::log::event(
                    "route_source",
                    &[("overrun", &"notifications dropped"), ("action", &"dump")],
                );
                if let Err(e) = self.start_dump() {
                    datapath::log::event("route_source", &[("dump", &"error"), ("error", &e)]);
                }
            }
        }
        if self.again && self.seen.is_none() {
            self.again = false;
            if let Err(e) = self.start_dump() {
                datapath::log::event("route_source", &[("dump", &"error"), ("error", &e)]);
            }
        }
    }

    /// Reads datagrams from the dump socket or the change socket until `budget` messages
    /// are handled or none is waiting; the budget left.
    fn read(&mut self, dump: bool, mut budget: usize, routes: &mut RouteControl) -> usize {
        while budget > 0 {
            let got = {
                let sock = if dump {
                    self.dump.as_ref()
                } else {
                    Some(&self.events)
                };
                let Some(sock) = sock else { return budget };
                sock.recv(&mut &mut self.buf[..], 0)
            };
            let n = match got {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return budget,
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOBUFS.raw_os_error()) => {
                    self.counters.overruns += 1;
                    // The drops behind this error are answered by the dump below.
                    self.drops = socket_drops(self.portid);
                    datapath::log::event(
                        "route_source",
                        &[("overrun", &"notifications lost"), ("action", &"dump")],
                    );
                    if dump {
                        self.seen = None;
                        self.dump = None;
                    }
                    let _ = self.start_dump();
                    continue;
                }
                Err(e) => {
                    datapath::log::event("route_source", &[("receive", &"error"), ("error", &e)]);
                    return budget;
                }
            };
            let mut events = std::mem::take(&mut self.parsed);
            events.clear();
            parse(&self.buf[..n.min(self.buf.len())], &mut events);
            budget = budget.saturating_sub(events.len().max(1));
            for e in events.drain(..) {
                self.handle(e, dump, routes);
            }
            self.parsed = events;
        }
        budget
    }

    /// Applies one event (from the dump when `dump`).
    pub fn handle(&mut self, e: Event, dump: bool, routes: &mut RouteControl) {
        match e {
            Event::New(r) => {
                if let Some(s) = self.source_of(&r) {
                    if let Some(seen) = &mut self.seen {
                        seen.insert((r.prefix, r.table, r.metric));
                    }
                    let p = r.prefix;
                    self.prefixes.entry(p).or_default().put(Kept {
                        source: s as u8,
                        table: r.table,
                        metric: r.metric,
                        does: Does::of(r.action),
                    });
                    self.reconsider(p, routes);
                }
            }
            Event::Del(r) => {
                if self.source_of(&r).is_some() {
                    if let Some(seen) = &mut self.seen {
                        seen.remove(&(r.prefix, r.table, r.metric));
                    }
                    let p = r.prefix;
                    if let Some(kept) = self.prefixes.get_mut(&p) {
                        kept.remove(r.table, r.metric);
                        self.reconsider(p, routes);
                    }
                }
            }
            Event::Done if dump => self.finish_dump(routes),
            Event::Error(code) if dump => {
                datapath::log::event("route_source", &[("dump", &"error"), ("errno", &code)]);
                self.seen = None;
                self.dump = None;
                self.again = true;
            }
            Event::Malformed(why) => {
                self.counters.malformed += 1;
                if self.counters.malformed <= LOG_LINES as u64 {
                    datapath::log::event("route_source", &[("malformed", &why)]);
                }
            }
            Event::Done | Event::Error(_) | Event::Ignored => {}
        }
    }

    /// The dump ended: kept routes it did not report are gone from the kernel.
    fn finish_dump(&mut self, routes: &mut RouteControl) {
        self.dump = None;
        let Some(seen) = self.seen.take() else { return };
        let mut gone = Vec::new();
        for (p, kept) in &mut self.prefixes {
            if kept.retain(|k| seen.contains(&(*p, k.table, k.metric))) {
                gone.push(*p);
            }
        }
        drop(seen);
        for p in gone {
            self.reconsider(p, routes);
        }
        if !self.counters.synced {
            self.counters.synced = true;
            let mirrored: usize = self.counters.in_force.iter().map(|(_, n)| n).sum();
            datapath::log::event(
                "route_source",
                &[
                    ("synced", &format!("{:?}", self.tables())),
                    ("mirrored", &mirrored),
                    ("refused", &self.counters.refused_now.iter().sum::<usize>()),
                ],
            );
        }
    }

    /// The index of the source that mirrors `r`, if any does.
    fn source_of(&self, r: &KernelRoute) -> Option<usize> {
        self.sources.iter().position(|s| {
            s.table == r.table
                && if r.prefix.addr().is_ipv4() {
                    s.v4
                } else {
                    s.v6
                }
                && (s.protocols.is_empty() || s.protocols.contains(&r.protocol))
        })
    }

    /// Puts the route in force for `p` (the first source's lowest metric) into the route
    /// tables, or takes the mirrored one out when none is left.
    fn reconsider(&mut self, p: IpNet, routes: &mut RouteControl) {
        let Some(entry) = self.prefixes.get(&p) else {
            return;
        };
        let old = entry.outcome;
        let best = entry.routes().min_by_key(|k| (k.source, k.metric)).cloned();
        let outcome = match best {
            None => {
                routes.unmirror(p);
                None
            }
            Some(k) => {
                let source = &self.sources[usize::from(k.source)];
                let done = match &k.does {
                    Does::Via1(g) => routes.mirror(
                        p,
                        Mirrored::Via(std::slice::from_ref(g)),
                        source.table,
                        source.prefer_file,
                    ),
                    Does::Via(g) => {
                        routes.mirror(p, Mirrored::Via(g), source.table, source.prefer_file)
                    }
                    Does::Drop => {
                        routes.mirror(p, Mirrored::Drop, source.table, source.prefer_file)
                    }
                    Does::Unsupported(_) => Err(Refusal::Unsupported),
                };
                match done {
                    Ok(()) => Some(Outcome::Mirrored(k.source)),
                    Err(why) => {
                        // A route replaced by one that is refused goes: never keep a stale one.
                        routes.unmirror(p);
                        if old != Some(Outcome::Refused(why)) {
                            self.log_refusal(p, source.table, why, &k.does);
                        }
                        Some(Outcome::Refused(why))
                    }
                }
            }
        };
        self.counters.updates += 1;
        match outcome {
            Some(o) => {
                if let Some(e) = self.prefixes.get_mut(&p) {
                    e.outcome = Some(o);
                }
            }
            None => {
                self.prefixes.remove(&p);
            }
        }
        self.count(old, -1);
        self.count(outcome, 1);
        let was = matches!(old, Some(Outcome::Mirrored(_)));
        let is = matches!(outcome, Some(Outcome::Mirrored(_)));
        if was != is && !self.owners.is_empty() {
            self.own(p, is);
        }
        if let Some(Outcome::Refused(why)) = outcome {
            if old != outcome {
                self.counters.refusals[why as usize] += 1;
            }
        }
    }

    fn count(&mut self, o: Option<Outcome>, by: isize) {
        match o {
            Some(Outcome::Mirrored(s)) => {
                if let Some((_, n)) = self.counters.in_force.get_mut(usize::from(s)) {
                    *n = n.saturating_add_signed(by);
                }
            }
            Some(Outcome::Refused(why)) => {
                let n = &mut self.counters.refused_now[why as usize];
                *n = n.saturating_add_signed(by);
            }
            None => {}
        }
    }

    fn log_refusal(&mut self, p: IpNet, table: u32, why: Refusal, does: &Does) {
        self.logged += 1;
        if self.logged > LOG_LINES {
            if self.logged == LOG_LINES + 1 {
                datapath::log::event(
                    "route_refused",
                    &[("more", &"further refusals are counted, not logged")],
                );
            }
            return;
        }
        let what = match does {
            Does::Via1(g) => g.to_string(),
            Does::Via(g) => g
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(","),
            Does::Drop => "drop".to_string(),
            Does::Unsupported(kind) => (*kind).to_string(),
        };
        datapath::log::event(
            "route_refused",
            &[
                ("prefix", &p),
                ("table", &table),
                ("reason", &why.name()),
                ("route", &what),
            ],
        );
    }

    /// Puts every kept kernel route into `routes` again: after a reload, whose new route
    /// tables hold only the file's routes.
    pub fn reapply(&mut self, routes: &mut RouteControl) {
        let prefixes: Vec<IpNet> = self.prefixes.keys().copied().collect();
        for p in prefixes {
            self.reconsider(p, routes);
        }
    }
}

/// The protocol number exported routes carry (`proto static` in `ip route`).
const EXPORT_PROTOCOL: u8 = 4;

/// `[route_export]`: the prefixes this gateway serves, written into a kernel table as routes
/// through a TUN device that only this process holds. BIRD's kernel protocol learns them
/// (`learn`) and announces them. On an orderly stop they are removed; when the process dies
/// any other way, the kernel deletes the device and the routes with it, and BIRD withdraws
/// them as soon as it hears (rtnetlink notifications: milliseconds).
pub struct Export {
    device: datapath::port::tun::TunDevice,
    table: u32,
    sock: Socket,
    written: Vec<IpNet>,
    seq: u32,
}

impl Export {
    /// Creates the device and writes `prefixes` into `e.table`. A prefix the kernel refuses
    /// (IPv6 where the host has IPv6 off, say) is logged, and the others are written.
    ///
    /// # Errors
    /// The device could not be created (no `/dev/net/tun`, no `CAP_NET_ADMIN`, the name
    /// taken), or no netlink socket.
    pub fn start(e: &config::RouteExport, prefixes: &[IpNet]) -> std::io::Result<Self> {
        let device = datapath::port::tun::TunDevice::create(&e.device)?;
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.set_non_blocking(false)?;
        // The kernel answers at once; a second bounds the wait should it not.
        rustix::net::sockopt::set_socket_timeout(
            &sock,
            rustix::net::sockopt::Timeout::Recv,
            Some(std::time::Duration::from_secs(1)),
        )?;
        let mut x = Export {
            device,
            table: e.table,
            sock,
            written: Vec::new(),
            seq: 0,
        };
        x.update(prefixes);
        datapath::log::event(
            "route_export",
            &[
                ("table", &x.table),
                ("device", &x.device.name()),
                ("prefixes", &x.written.len()),
            ],
        );
        Ok(x)
    }

    /// The prefixes written.
    pub fn written(&self) -> &[IpNet] {
        &self.written
    }

    /// Makes the exported prefixes `prefixes`: writes the new ones, removes the ones gone.
    pub fn update(&mut self, prefixes: &[IpNet]) {
        let gone: Vec<IpNet> = self
            .written
            .iter()
            .filter(|p| !prefixes.contains(p))
            .copied()
            .collect();
        for p in gone {
            let _ = self.request(p, false);
            self.written.retain(|w| *w != p);
        }
        for &p in prefixes {
            if self.written.contains(&p) {
                continue;
            }
            match self.request(p, true) {
                Ok(()) => self.written.push(p),
                Err(e) => datapath::log::event(
                    "route_export",
                    &[("prefix", &p), ("result", &"error"), ("error", &e)],
                ),
            }
        }
    }

    /// Adds (or replaces) or removes the route of `p` through the device, and waits for the
    /// kernel's answer.
    fn request(&mut self, p: IpNet, add: bool) -> std::io::Result<()> {
        use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE};
        use netlink_packet_route::route::{RouteProtocol, RouteScope};
        let mut m = RouteMessage::default();
        m.header.address_family = if p.addr().is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        m.header.destination_prefix_length = p.prefix_len();
        m.header.table = u8::try_from(self.table).unwrap_or(252);
        m.header.protocol = RouteProtocol::from(EXPORT_PROTOCOL);
        m.header.scope = RouteScope::Link;
        m.header.kind = RouteType::Unicast;
        let dst = match p.addr() {
            IpAddr::V4(a) => RouteAddress::Inet(a),
            IpAddr::V6(a) => RouteAddress::Inet6(a),
        };
        m.attributes = vec![
            RouteAttribute::Destination(dst),
            RouteAttribute::Oif(self.device.ifindex()),
            RouteAttribute::Table(self.table),
        ];
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK;
        if add {
            header.flags |= NLM_F_CREATE | NLM_F_REPLACE;
        }
        header.sequence_number = self.seq;
        let body = if add {
            RouteNetlinkMessage::NewRoute(m)
        } else {
            RouteNetlinkMessage::DelRoute(m)
        };
        let mut req = NetlinkMessage::new(header, NetlinkPayload::from(body));
        req.finalize();
        let mut bytes = vec![0; req.buffer_len()];
        req.serialize(&mut bytes);
        self.sock.send_to(&bytes, &SocketAddr::new(0, 0), 0)?;
        let mut buf = vec![0; 8192];
        loop {
            let n = self.sock.recv(&mut &mut buf[..], 0)?;
            let mut off = 0;
            while off + 16 <= n {
                let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]])
                    as usize;
                if len < 16 || off + len > n {
                    break;
                }
                let seq =
                    u32::from_ne_bytes([buf[off + 8], buf[off + 9], buf[off + 10], buf[off + 11]]);
                if let Ok(msg) =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..off + len])
                {
                    if seq == self.seq {
                        if let NetlinkPayload::Error(e) = msg.payload {
                            return match e.code {
                                None => Ok(()),
                                Some(c) => Err(std::io::Error::from_raw_os_error(-c.get())),
                            };
                        }
                    }
                }
                off += (len + 3) & !3;
            }
        }
    }
}

impl Drop for Export {
    /// An orderly stop withdraws the routes first; the device goes with the descriptor.
    fn drop(&mut self) {
        for p in std::mem::take(&mut self.written) {
            let _ = self.request(p, false);
        }
        datapath::log::event("route_export", &[("withdrawn", &self.table)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A route message as the kernel sends it: header, then attributes.
    fn message(
        kind: u16,
        family: u8,
        len: u8,
        table: u8,
        rtype: u8,
        attrs: &[(u16, &[u8])],
    ) -> Vec<u8> {
        let mut body = vec![family, len, 0, 0, table, 12, 0, rtype, 0, 0, 0, 0];
        for (t, v) in attrs {
            let l = 4 + v.len();
            body.extend_from_slice(&(l as u16).to_ne_bytes());
            body.extend_from_slice(&t.to_ne_bytes());
            body.extend_from_slice(v);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&body);
        m
    }

    const NEWROUTE: u16 = 24;
    const DELROUTE: u16 = 25;
    const RTA_DST: u16 = 1;
    const RTA_GATEWAY: u16 = 5;
    const RTA_PRIORITY: u16 = 6;
    const RTA_TABLE: u16 = 15;

    fn v4_route() -> Vec<u8> {
        message(
            NEWROUTE,
            2,
            24,
            100,
            1,
            &[
                (RTA_DST, &[10, 244, 1, 0]),
                (RTA_GATEWAY, &[172, 18, 0, 11]),
                (RTA_PRIORITY, &32u32.to_ne_bytes()),
            ],
        )
    }

    fn parsed(bytes: &[u8]) -> Vec<Event> {
        let mut out = Vec::new();
        parse(bytes, &mut out);
        out
    }

    #[test]
    fn a_route_with_a_gateway_is_read_whole() {
        let got = parsed(&v4_route());
        assert_eq!(
            got,
            vec![Event::New(KernelRoute {
                prefix: "10.244.1.0/24".parse().unwrap(),
                table: 100,
                protocol: 12,
                metric: 32,
                action: Action::Via(vec!["172.18.0.11".parse().unwrap()]),
            })]
        );
    }

    #[test]
    fn a_table_past_255_comes_from_its_attribute_and_blackholes_drop() {
        let m = message(
            DELROUTE,
            10,
            64,
            252,
            6,
            &[
                (
                    RTA_DST,
                    &[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                ),
                (RTA_TABLE, &1000u32.to_ne_bytes()),
            ],
        );
        let got = parsed(&m);
        let Event::Del(r) = &got[0] else {
            panic!("{got:?}")
        };
        assert_eq!((r.table, r.action.clone()), (1000, Action::Drop));
        assert_eq!(r.prefix, "fd00::/64".parse::<IpNet>().unwrap());
    }

    #[test]
    fn two_messages_in_one_datagram_are_both_read() {
        let mut d = v4_route();
        d.extend(v4_route());
        assert_eq!(parsed(&d).len(), 2);
    }

    #[test]
    fn every_truncation_of_a_message_is_malformed_and_nothing_panics() {
        let whole = v4_route();
        for cut in 1..whole.len() {
            let got = parsed(&whole[..cut]);
            assert!(
                matches!(got.as_slice(), [Event::Malformed(_)]),
                "cut at {cut}: {got:?}"
            );
        }
    }

    #[test]
    fn a_length_past_the_datagram_or_below_a_header_is_malformed() {
        let mut m = v4_route();
        m[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(matches!(parsed(&m).as_slice(), [Event::Malformed(_)]));
        m[0..4].copy_from_slice(&8u32.to_ne_bytes());
        assert!(matches!(parsed(&m).as_slice(), [Event::Malformed(_)]));
    }

    #[test]
    fn a_prefix_longer_than_its_family_is_malformed() {
        let m = message(NEWROUTE, 2, 40, 100, 1, &[(RTA_DST, &[10, 0, 0, 0])]);
        assert!(
            matches!(parsed(&m).as_slice(), [Event::Malformed(_)]),
            "{:?}",
            parsed(&m)
        );
    }

    #[test]
    fn an_attribute_overrunning_its_message_is_malformed() {
        let mut m = v4_route();
        // The first attribute claims more bytes than the message has.
        m[28..30].copy_from_slice(&200u16.to_ne_bytes());
        assert!(
            matches!(parsed(&m).as_slice(), [Event::Malformed(_)]),
            "{:?}",
            parsed(&m)
        );
    }

    #[test]
    fn local_and_multicast_routes_are_unsupported_not_forwarded() {
        for (rtype, name) in [(2u8, "local"), (5, "multicast")] {
            let m = message(NEWROUTE, 2, 32, 100, rtype, &[(RTA_DST, &[10, 0, 0, 1])]);
            let got = parsed(&m);
            let Event::New(r) = &got[0] else {
                panic!("{got:?}")
            };
            assert_eq!(r.action, Action::Unsupported(name));
        }
    }

    fn source(table: u32, prefer_file: bool) -> RouteSource {
        RouteSource {
            table,
            v4: true,
            v6: true,
            protocols: vec![12],
            prefer_file,
        }
    }

    fn route(prefix: &str, table: u32, metric: u32, action: Action) -> KernelRoute {
        KernelRoute {
            prefix: prefix.parse().unwrap(),
            table,
            protocol: 12,
            metric,
            action,
        }
    }

    fn via(gws: &[&str]) -> Action {
        Action::Via(gws.iter().map(|g| g.parse().unwrap()).collect())
    }

    /// The two-port test gateway (file route 10.244.0.0/16), its snapshot and a mirror of
    /// table 100 (`prefer_file` as given) fed by hand.
    fn mirror(prefer_file: bool) -> (datapath::fib::Fib, RouteControl, Mirror) {
        let c = crate::testing::parse(crate::testing::TWO_PORTS);
        let (fib, routes) = crate::tables::build_fib_with_routes(&c, None).unwrap();
        let m = Mirror::new(vec![source(100, prefer_file)]).unwrap();
        (fib, routes, m)
    }

    fn shown(fib: &datapath::fib::Fib, routes: &RouteControl, addr: &str) -> String {
        routes.lookup(
            &format!("routes get {addr}"),
            fib,
            &["ext".into(), "pods".into()],
        )
    }

    #[test]
    fn routes_follow_the_table_through_add_replace_multipath_drop_and_delete() {
        let (fib, mut routes, mut m) = mirror(true);
        m.handle(
            Event::New(route("10.245.1.0/24", 100, 0, via(&["172.18.0.11"]))),
            false,
            &mut routes,
        );
        let s = shown(&fib, &routes, "10.245.1.9");
        assert!(
            s.contains("via 172.18.0.11") && s.contains("origin=kernel table 100"),
            "{s}"
        );
        m.handle(
            Event::New(route(
                "10.245.1.0/24",
                100,
                0,
                via(&["172.18.0.11", "172.18.0.12"]),
            )),
            false,
            &mut routes,
        );
        let s = shown(&fib, &routes, "10.245.1.9");
        assert!(s.contains("ecmp [") && s.contains("172.18.0.12"), "{s}");
        m.handle(
            Event::New(route("10.245.1.0/24", 100, 0, Action::Drop)),
            false,
            &mut routes,
        );
        assert!(
            shown(&fib, &routes, "10.245.1.9").contains("drop"),
            "{}",
            shown(&fib, &routes, "10.245.1.9")
        );
        m.handle(
            Event::Del(route("10.245.1.0/24", 100, 0, Action::Drop)),
            false,
            &mut routes,
        );
        assert!(shown(&fib, &routes, "10.245.1.9").contains("no route"));
        assert_eq!(m.counters().in_force, vec![(100, 0)]);
    }

    #[test]
    fn the_same_ecmp_group_is_written_once() {
        let (fib, mut routes, mut m) = mirror(true);
        let before = fib.ecmp_members().len();
        for i in 0..100 {
            m.handle(
                Event::New(route(
                    &format!("10.245.{i}.0/24"),
                    100,
                    0,
                    via(&["172.18.0.11", "172.18.0.12"]),
                )),
                false,
                &mut routes,
            );
        }
        assert_eq!(fib.ecmp_members().len(), before + 2);
        assert_eq!(m.counters().in_force, vec![(100, 100)]);
    }

    #[test]
    fn the_lowest_metric_is_in_force_and_the_next_takes_over() {
        let (fib, mut routes, mut m) = mirror(true);
        m.handle(
            Event::New(route("10.245.1.0/24", 100, 20, via(&["172.18.0.12"]))),
            false,
            &mut routes,
        );
        m.handle(
            Event::New(route("10.245.1.0/24", 100, 10, via(&["172.18.0.11"]))),
            false,
            &mut routes,
        );
        assert!(shown(&fib, &routes, "10.245.1.1").contains("172.18.0.11"));
        m.handle(
            Event::Del(route("10.245.1.0/24", 100, 10, Action::Drop)),
            false,
            &mut routes,
        );
        assert!(shown(&fib, &routes, "10.245.1.1").contains("172.18.0.12"));
    }

    #[test]
    fn bad_routes_are_refused_counted_and_the_rest_mirrored() {
        let (fib, mut routes, mut m) = mirror(true);
        let cases = [
            // A next hop outside every connected subnet.
            (
                route("10.245.1.0/24", 100, 0, via(&["198.51.100.7"])),
                Refusal::NextHopUnreachable,
            ),
            // The gateway's own address, and a connected subnet.
            (
                route("192.0.2.1/32", 100, 0, via(&["172.18.0.11"])),
                Refusal::Interface,
            ),
            (
                route("172.18.0.0/16", 100, 0, via(&["172.18.0.11"])),
                Refusal::Interface,
            ),
            // The file's route wins.
            (
                route("10.244.0.0/16", 100, 0, via(&["172.18.0.11"])),
                Refusal::Shadowed,
            ),
            // A device route: no gateway to send to.
            (
                route("10.245.2.0/24", 100, 0, via(&[])),
                Refusal::NoUsableNextHop,
            ),
            (
                route("10.245.3.0/24", 100, 0, Action::Unsupported("local")),
                Refusal::Unsupported,
            ),
        ];
        for (r, _) in &cases {
            m.handle(Event::New(r.clone()), false, &mut routes);
        }
        m.handle(
            Event::New(route("10.245.9.0/24", 100, 0, via(&["172.18.0.11"]))),
            false,
            &mut routes,
        );
        for (r, why) in &cases {
            let n = cases.iter().filter(|(_, w)| w == why).count();
            assert_eq!(m.counters().refused_now[*why as usize], n, "{r:?}");
            assert_eq!(m.counters().refusals[*why as usize], n as u64, "{r:?}");
        }
        assert!(shown(&fib, &routes, "10.244.3.3").contains("origin=file"));
        assert!(shown(&fib, &routes, "192.0.2.1").contains("origin=interface"));
        assert!(shown(&fib, &routes, "10.245.1.1").contains("no route"));
        assert!(shown(&fib, &routes, "10.245.9.1").contains("kernel table 100"));
        assert_eq!(m.counters().in_force, vec![(100, 1)]);
        // A route of another table or protocol is not looked at.
        let mut other = route("10.246.0.0/16", 101, 0, via(&["172.18.0.11"]));
        m.handle(Event::New(other.clone()), false, &mut routes);
        other.table = 100;
        other.protocol = 4;
        m.handle(Event::New(other), false, &mut routes);
        assert!(shown(&fib, &routes, "10.246.0.1").contains("no route"));
        // Malformed messages are counted.
        m.handle(Event::Malformed("x".into()), false, &mut routes);
        assert_eq!(m.counters().malformed, 1);
    }

    #[test]
    fn a_preferred_source_displaces_the_files_route_until_it_goes() {
        let (fib, mut routes, mut m) = mirror(false);
        m.handle(
            Event::New(route("10.244.0.0/16", 100, 0, via(&["172.18.0.11"]))),
            false,
            &mut routes,
        );
        let s = shown(&fib, &routes, "10.244.3.3");
        assert!(
            s.contains("172.18.0.11") && s.contains("kernel table 100"),
            "{s}"
        );
        m.handle(
            Event::Del(route("10.244.0.0/16", 100, 0, Action::Drop)),
            false,
            &mut routes,
        );
        let s = shown(&fib, &routes, "10.244.3.3");
        assert!(s.contains("172.18.0.3") && s.contains("origin=file"), "{s}");
    }

    #[test]
    fn a_dump_removes_what_the_kernel_no_longer_has() {
        let (fib, mut routes, mut m) = mirror(true);
        // The mirror's own first dump is under way (a kernel without table 100 answers it
        // empty); replace it with a hand-fed one.
        m.seen = Some(HashSet::new());
        m.handle(
            Event::New(route("10.245.1.0/24", 100, 0, via(&["172.18.0.11"]))),
            true,
            &mut routes,
        );
        m.handle(Event::Done, true, &mut routes);
        m.seen = Some(HashSet::new());
        m.handle(
            Event::New(route("10.245.2.0/24", 100, 0, via(&["172.18.0.11"]))),
            true,
            &mut routes,
        );
        m.handle(Event::Done, true, &mut routes);
        assert!(shown(&fib, &routes, "10.245.1.1").contains("no route"));
        assert!(shown(&fib, &routes, "10.245.2.1").contains("kernel table 100"));
    }

    #[test]
    fn mirrored_routes_come_back_after_a_reload() {
        let c = crate::testing::parse(crate::testing::TWO_PORTS);
        let (_, mut routes, mut m) = mirror(true);
        m.handle(
            Event::New(route("10.245.1.0/24", 100, 0, via(&["172.18.0.11"]))),
            false,
            &mut routes,
        );
        let (fib, mut fresh) = crate::tables::build_fib_with_routes(&c, None).unwrap();
        assert!(shown(&fib, &fresh, "10.245.1.1").contains("no route"));
        m.reapply(&mut fresh);
        assert!(shown(&fib, &fresh, "10.245.1.1").contains("kernel table 100"));
        assert_eq!(m.counters().in_force, vec![(100, 1)]);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_without_panicking(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut out = Vec::new();
            parse(&bytes, &mut out);
        }

        #[test]
        fn any_corruption_of_a_route_parses_without_panicking(at in 0usize..48, byte in proptest::prelude::any::<u8>()) {
            let mut m = v4_route();
            let i = at % m.len();
            m[i] = byte;
            let mut out = Vec::new();
            parse(&m, &mut out);
        }
    }
}
