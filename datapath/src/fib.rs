//! The forwarding snapshot a worker reads: route tables, next hops, neighbours and ports.
//!
//! Route entries hold next-hop indices. A next hop says what to do: deliver locally, drop
//! (blackhole), send to a resolved neighbour, send to the destination itself on a connected
//! subnet (neighbour looked up per packet), or spread over an ECMP group by flow hash.
//! The interface addresses of each port become /32 (/128) `Local` routes and their subnets
//! `Connected` routes, the way a router's own FIB holds them.

use crate::lpm::{self, Lpm4, Lpm4Table, Lpm6, Lpm6Table, Qsbr};
use crate::neigh::NeighTable;
use crate::ratelimit::Limit;
use crate::stats::MAX_PORTS;
use hashbrown::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// What a next hop does with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// Addressed to the gateway itself.
    Local,
    /// Drop, counted as `blackhole`.
    Blackhole,
    /// Send to a neighbour whose MAC is known.
    Forward {
        /// Egress port.
        port: u8,
        /// Neighbour MAC.
        mac: [u8; 6],
        /// May leave through the input port.
        hairpin: bool,
    },
    /// Send to a neighbour with no static MAC: looked up in the dynamic neighbour table
    /// (ARP/NDP); while unknown, dropped as `neighbor_unresolved` and resolution requested.
    Unresolved {
        /// Egress port.
        port: u8,
        /// The neighbour's address ([`ip_key`]).
        addr: u128,
        /// May leave through the input port.
        hairpin: bool,
    },
    /// The destination is on a connected subnet of `port`: its own MAC is looked up.
    Connected {
        /// Egress port.
        port: u8,
    },
    /// Encapsulate with the spec at this index of the encap table, then send.
    Encap {
        /// Index in [`Fib::encap`].
        index: u32,
    },
    /// A route into a GTP-U tunnel for an address no session covers.
    NoSession,
    /// Spread over `len` members starting at `start` in the ECMP member list.
    Ecmp {
        /// First member.
        start: u32,
        /// Member count (at least 1).
        len: u32,
    },
}

pub use crate::tunnel::{Encap, EncapKind, ENCAP_HEADER_MAX};
use crate::tunnel::{GtpuSession, Kind, Tunnels};

/// A port as the datapath needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortInfo {
    /// The port's MAC.
    pub mac: [u8; 6],
    /// IP MTU.
    pub mtu: u16,
    /// Accept unicast frames for any MAC.
    pub promiscuous: bool,
}

/// The gateway's own first IPv4 and IPv6 address on each port (sources of ICMP errors).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortAddrs {
    /// First IPv4 address.
    pub v4: Option<u32>,
    /// First IPv6 address.
    pub v6: Option<u128>,
}

/// What a configured route does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction {
    /// Forward to these `(next hop, egress port)` pairs, by flow hash when several.
    Via(Vec<(IpAddr, u8)>),
    /// Drop as `blackhole`.
    Drop,
}

/// Why a FIB could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FibError {
    /// A route table rejected a prefix.
    Lpm(lpm::Error),
    /// A port id beyond those added.
    UnknownPort(u8),
    /// More than [`MAX_PORTS`] ports.
    TooManyPorts,
    /// A route with no next hop.
    EmptyVia,
    /// A tunnel peer in no connected subnet of any port.
    PeerNotConnected(IpAddr),
}

impl std::fmt::Display for FibError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for FibError {}

/// An address as a tunnel-table key: IPv6 as is, IPv4 as its IPv4-mapped IPv6 form.
#[inline]
pub const fn v4_key(a: u32) -> u128 {
    (0xffffu128 << 32) | a as u128
}

/// [`v4_key`] or the IPv6 address.
pub fn ip_key(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => v4_key(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address of a [`ip_key`]: IPv4 when it is IPv4-mapped.
pub fn key_ip(k: u128) -> IpAddr {
    let a = std::net::Ipv6Addr::from(k);
    match a.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(a),
    }
}

/// A port id that is no port.
pub const NO_PORT: u8 = u8::MAX;

/// How a port checks the source of plain traffic (RFC 3704 reverse-path filtering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rpf {
    /// No check.
    #[default]
    Off,
    /// The source must have a route (not a drop route).
    Loose,
    /// The route to the source must leave through the port the packet came in on.
    Strict,
}

/// Collects ports, addresses, neighbours and routes, then builds a [`Fib`].
#[derive(Default)]
pub struct FibBuilder {
    tunnels: Tunnels,
    encap: Vec<Encap>,
    ports: Vec<PortInfo>,
    addrs: Vec<PortAddrs>,
    neigh4: HashMap<u32, [u8; 6]>,
    neigh6: HashMap<u128, [u8; 6]>,
    nexthops: Vec<NextHop>,
    ecmp: Vec<u32>,
    routes4: Vec<(u32, u8, u32)>,
    routes6: Vec<(u128, u8, u32)>,
    locals: Vec<(IpAddr, u8, u8)>,
    neigh: Arc<NeighTable>,
    qsbr: Option<Arc<Qsbr>>,
    reply_limit: Option<Limit>,
    rpf: Vec<Rpf>,
    vlans: Vec<VlanSet>,
}

/// The VLAN IDs a port accepts: a bit per ID.
#[derive(Clone)]
pub struct VlanSet(Box<[u64; 64]>);

impl Default for VlanSet {
    fn default() -> Self {
        VlanSet(Box::new([0; 64]))
    }
}

impl VlanSet {
    /// The set of `ids` (IDs above 4095 are ignored).
    pub fn of(ids: &[u16]) -> Self {
        let mut s = VlanSet::default();
        for &id in ids.iter().filter(|&&i| i < 4096) {
            s.0[usize::from(id >> 6)] |= 1 << (id & 63);
        }
        s
    }

    /// True when `vid` is in the set.
    #[inline]
    pub fn contains(&self, vid: u16) -> bool {
        self.0
            .get(usize::from(vid >> 6))
            .is_some_and(|w| w & (1 << (vid & 63)) != 0)
    }
}

impl FibBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty builder for the successor of `running` (a configuration reload, published
    /// through [`crate::slot::FibSlot`]): the new snapshot shares its dynamic neighbour table,
    /// so MACs learned by ARP and NDP carry over, and its reclamation domain, so the workers'
    /// registrations stay valid.
    pub fn succeeding(running: &Fib) -> Self {
        FibBuilder {
            neigh: Arc::clone(&running.neigh),
            qsbr: Some(Arc::clone(&running.qsbr)),
            ..Self::default()
        }
    }

    /// Sets the rate limit of the replies a stranger can cause, per worker: ICMP errors,
    /// GTP-U Echo Responses, and frames for the gateway other than ARP and NDP (pings)
    /// handed to the control thread. Default [`Limit::ICMP`].
    pub fn set_reply_limit(&mut self, limit: Limit) {
        self.reply_limit = Some(limit);
    }

    /// Sets how port `port` checks the sources of plain traffic (default [`Rpf::Off`]).
    pub fn set_rpf(&mut self, port: u8, mode: Rpf) {
        let i = usize::from(port);
        if self.rpf.len() <= i {
            self.rpf.resize(i + 1, Rpf::Off);
        }
        self.rpf[i] = mode;
    }

    /// Sets the VLAN IDs port `port` accepts in a frame's outer tag (default none: tagged
    /// frames are dropped as `vlan_not_allowed`).
    pub fn set_vlans(&mut self, port: u8, ids: &[u16]) {
        let i = usize::from(port);
        if self.vlans.len() <= i {
            self.vlans.resize(i + 1, VlanSet::default());
        }
        self.vlans[i] = VlanSet::of(ids);
    }

    /// Adds a port; returns its id.
    ///
    /// # Errors
    /// [`FibError::TooManyPorts`].
    pub fn add_port(&mut self, info: PortInfo) -> Result<u8, FibError> {
        if self.ports.len() >= MAX_PORTS {
            return Err(FibError::TooManyPorts);
        }
        self.ports.push(info);
        self.addrs.push(PortAddrs::default());
        Ok((self.ports.len() - 1) as u8)
    }

    /// Adds an interface address `addr/len` on `port`: a local host route and a connected
    /// subnet route.
    pub fn add_address(&mut self, port: u8, addr: IpAddr, len: u8) {
        self.locals.push((addr, len, port));
        if let Some(a) = self.addrs.get_mut(usize::from(port)) {
            match addr {
                IpAddr::V4(x) => a.v4 = a.v4.or(Some(u32::from(x))),
                IpAddr::V6(x) => a.v6 = a.v6.or(Some(u128::from(x))),
            }
        }
    }

    /// Adds a GTP-U tunnel terminating on `local`, accepting G-PDUs from `peer` for its
    /// `sessions`: an uplink TEID each, with the UE range (address, prefix length) the inner
    /// sources of that TEID must lie in; returns its id.
    pub fn add_gtpu_tunnel(
        &mut self,
        name: &str,
        local: IpAddr,
        peer: IpAddr,
        sessions: &[(u32, IpAddr, u8)],
    ) -> u16 {
        let sessions: Vec<(u32, GtpuSession)> = sessions
            .iter()
            .map(|&(teid, ue, len)| {
                let s = match ue {
                    IpAddr::V4(a) => GtpuSession::new(u128::from(u32::from(a)), true, len),
                    IpAddr::V6(a) => GtpuSession::new(u128::from(a), false, len),
                };
                (teid, s)
            })
            .collect();
        self.tunnels
            .add_gtpu(name, ip_key(local), ip_key(peer), &sessions)
    }

    /// Adds a VXLAN tunnel; returns its id.
    pub fn add_vxlan_tunnel(
        &mut self,
        name: &str,
        local: IpAddr,
        udp_port: u16,
        vni: u32,
        peers: &[IpAddr],
    ) -> u16 {
        let peers: Vec<u128> = peers.iter().map(|&p| ip_key(p)).collect();
        self.tunnels
            .add_by_vni(Kind::Vxlan, name, ip_key(local), (udp_port, vni), &peers)
    }

    /// Adds a Geneve tunnel; returns its id.
    pub fn add_geneve_tunnel(
        &mut self,
        name: &str,
        local: IpAddr,
        udp_port: u16,
        vni: u32,
        peers: &[IpAddr],
    ) -> u16 {
        let peers: Vec<u128> = peers.iter().map(|&p| ip_key(p)).collect();
        self.tunnels
            .add_by_vni(Kind::Geneve, name, ip_key(local), (udp_port, vni), &peers)
    }

    /// Adds an IPIP tunnel (any of 4in4, 6in4, 4in6, 6in6) from each of `peers`; returns its id.
    pub fn add_ipip_tunnel(&mut self, name: &str, local: IpAddr, peers: &[IpAddr]) -> u16 {
        let peers: Vec<u128> = peers.iter().map(|&p| ip_key(p)).collect();
        self.tunnels.add_ipip(name, ip_key(local), &peers)
    }

    /// The port whose connected subnet holds `addr`, from the interface addresses added.
    fn connected_port(&self, addr: IpAddr) -> Option<u8> {
        self.locals.iter().find_map(|&(a, len, port)| {
            let inside = match (a, addr) {
                (IpAddr::V4(a), IpAddr::V4(x)) => {
                    len == 0 || (u32::from(a) ^ u32::from(x)) >> (32 - u32::from(len.min(32))) == 0
                }
                (IpAddr::V6(a), IpAddr::V6(x)) => {
                    len == 0
                        || (u128::from(a) ^ u128::from(x)) >> (128 - u32::from(len.min(128))) == 0
                }
                _ => false,
            };
            inside.then_some(port)
        })
    }

    /// Adds a route whose packets are encapsulated toward `peer` from `local`.
    ///
    /// # Errors
    /// [`FibError::PeerNotConnected`] when `peer` is in no connected subnet.
    pub fn add_encap_route(
        &mut self,
        prefix: IpAddr,
        len: u8,
        kind: EncapKind,
        local: IpAddr,
        peer: IpAddr,
    ) -> Result<(), FibError> {
        self.add_encap_ecmp_route(prefix, len, local, &[(kind, peer)])
    }

    /// Adds a route whose packets are encapsulated from `local` toward one of `members` (an
    /// encapsulation and its peer), chosen by the inner flow's hash when there are several,
    /// so that each flow keeps one peer (the same ECMP as [`RouteAction::Via`]).
    ///
    /// # Errors
    /// [`FibError::EmptyVia`] for no member; [`FibError::PeerNotConnected`] when a peer is in
    /// no connected subnet.
    pub fn add_encap_ecmp_route(
        &mut self,
        prefix: IpAddr,
        len: u8,
        local: IpAddr,
        members: &[(EncapKind, IpAddr)],
    ) -> Result<(), FibError> {
        let mut hops = Vec::with_capacity(members.len());
        for &(kind, peer) in members {
            let port = self
                .connected_port(peer)
                .ok_or(FibError::PeerNotConnected(peer))?;
            let mac = match peer {
                IpAddr::V4(a) => self.neigh4.get(&u32::from(a)).copied(),
                IpAddr::V6(a) => self.neigh6.get(&u128::from(a)).copied(),
            };
            self.encap.push(Encap::new(
                kind,
                (ip_key(local), ip_key(peer)),
                peer.is_ipv6(),
                port,
                mac,
            ));
            hops.push(NextHop::Encap {
                index: (self.encap.len() - 1) as u32,
            });
        }
        let nh = self.push_group(&hops)?;
        self.add(prefix, len, nh);
        Ok(())
    }

    /// The next-hop index of one hop, or of an ECMP group over several.
    fn push_group(&mut self, hops: &[NextHop]) -> Result<u32, FibError> {
        Ok(match hops {
            [] => return Err(FibError::EmptyVia),
            [one] => self.push_nexthop(*one),
            many => {
                let start = self.ecmp.len() as u32;
                for m in many {
                    let i = self.push_nexthop(*m);
                    self.ecmp.push(i);
                }
                self.push_nexthop(NextHop::Ecmp {
                    start,
                    len: many.len() as u32,
                })
            }
        })
    }

    /// Adds a route into a GTP-U tunnel: addresses no session covers are dropped as
    /// `gtpu_no_session`.
    pub fn add_no_session_route(&mut self, prefix: IpAddr, len: u8) {
        let nh = self.push_nexthop(NextHop::NoSession);
        self.add(prefix, len, nh);
    }

    /// Adds a static neighbour.
    pub fn add_neighbor(&mut self, addr: IpAddr, mac: [u8; 6]) {
        match addr {
            IpAddr::V4(a) => {
                self.neigh4.insert(u32::from(a), mac);
            }
            IpAddr::V6(a) => {
                self.neigh6.insert(u128::from(a), mac);
            }
        }
    }

    fn push_nexthop(&mut self, nh: NextHop) -> u32 {
        // Share identical next hops so that large route sets stay small in the table.
        if let Some(i) = self.nexthops.iter().rposition(|n| *n == nh) {
            return i as u32;
        }
        self.nexthops.push(nh);
        (self.nexthops.len() - 1) as u32
    }

    fn resolve(&self, addr: IpAddr, port: u8, hairpin: bool) -> NextHop {
        let mac = match addr {
            IpAddr::V4(a) => self.neigh4.get(&u32::from(a)),
            IpAddr::V6(a) => self.neigh6.get(&u128::from(a)),
        };
        match mac {
            Some(&mac) => NextHop::Forward { port, mac, hairpin },
            None => NextHop::Unresolved {
                port,
                addr: ip_key(addr),
                hairpin,
            },
        }
    }

    fn add(&mut self, prefix: IpAddr, len: u8, nh: u32) {
        match prefix {
            IpAddr::V4(a) => self.routes4.push((u32::from(a), len, nh)),
            IpAddr::V6(a) => self.routes6.push((u128::from(a), len, nh)),
        }
    }

    /// Adds a route. Neighbours must be added first: a via address is resolved now.
    ///
    /// # Errors
    /// [`FibError::UnknownPort`], [`FibError::EmptyVia`].
    pub fn add_route(
        &mut self,
        prefix: IpAddr,
        len: u8,
        action: &RouteAction,
        hairpin: bool,
    ) -> Result<(), FibError> {
        let nh = match action {
            RouteAction::Drop => self.push_nexthop(NextHop::Blackhole),
            RouteAction::Via(hops) => {
                let members: Vec<NextHop> = hops
                    .iter()
                    .map(|&(addr, port)| {
                        if usize::from(port) >= self.ports.len() {
                            Err(FibError::UnknownPort(port))
                        } else {
                            Ok(self.resolve(addr, port, hairpin))
                        }
                    })
                    .collect::<Result<_, _>>()?;
                self.push_group(&members)?
            }
        };
        self.add(prefix, len, nh);
        Ok(())
    }

    /// Builds the snapshot, dropping the route tables' writers (routes are then fixed).
    ///
    /// # Errors
    /// [`FibError::Lpm`], [`FibError::UnknownPort`].
    pub fn build(self) -> Result<Fib, FibError> {
        self.build_with_writers().map(|(fib, _)| fib)
    }

    /// Builds the snapshot and returns the route tables' single writers, through which routes
    /// change while workers read.
    ///
    /// # Errors
    /// [`FibError::Lpm`], [`FibError::UnknownPort`].
    pub fn build_with_writers(mut self) -> Result<(Fib, RouteWriters), FibError> {
        let local = self.push_nexthop(NextHop::Local);
        // (network, mask, port) of every interface address, as tunnel keys.
        let connected: Vec<(u128, u128, u8)> = self
            .locals
            .iter()
            .map(|&(a, len, port)| {
                let len = u32::from(len) + if a.is_ipv4() { 96 } else { 0 };
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len.min(128))
                };
                (ip_key(a) & mask, mask, port)
            })
            .collect();
        // Connected subnets first and host routes after them: at equal length the later wins,
        // so a /32 interface address stays local.
        for (addr, len, port) in std::mem::take(&mut self.locals) {
            if usize::from(port) >= self.ports.len() {
                return Err(FibError::UnknownPort(port));
            }
            let connected = self.push_nexthop(NextHop::Connected { port });
            self.add(addr, len, connected);
            let host = if addr.is_ipv4() { 32 } else { 128 };
            self.add(addr, host, local);
        }
        let qsbr = self.qsbr.take().unwrap_or_default();
        let v4 = Lpm4::build(&self.routes4, qsbr.clone()).map_err(FibError::Lpm)?;
        let v6 = Lpm6::build(&self.routes6, qsbr.clone()).map_err(FibError::Lpm)?;
        let mut rpf = std::mem::take(&mut self.rpf);
        rpf.resize(self.ports.len(), Rpf::Off);
        let mut vlans = std::mem::take(&mut self.vlans);
        vlans.resize(self.ports.len(), VlanSet::default());
        let mut fib = Fib {
            rpf,
            vlans,
            v4: v4.reader(),
            v6: v6.reader(),
            qsbr: qsbr.clone(),
            tunnels: self.tunnels,
            encap: self.encap,
            nexthops: Arc::new(NextHopTable::new(self.nexthops, RUNTIME_NEXT_HOPS)),
            ecmp: Arc::new(AppendTable::new(self.ecmp, RUNTIME_ECMP_MEMBERS)),
            neigh4: self.neigh4,
            neigh6: self.neigh6,
            ports: self.ports,
            addrs: self.addrs,
            neigh: self.neigh,
            reply_limit: self.reply_limit.unwrap_or(Limit::ICMP),
        };
        // Each tunnel peer's port: the port whose subnet holds it, else the port the route
        // table reaches it through. A tunnel packet is taken only on that port
        // (anti-spoofing).
        let ports: Vec<Vec<u8>> = fib
            .tunnels
            .peers()
            .iter()
            .map(|peers| {
                peers
                    .iter()
                    .map(|&p| {
                        connected
                            .iter()
                            .find(|&&(net, mask, _)| p & mask == net)
                            .map_or_else(|| fib.port_toward(p), |&(_, _, port)| port)
                    })
                    .collect()
            })
            .collect();
        fib.tunnels.set_peer_ports(ports);
        Ok((fib, RouteWriters { v4, v6, qsbr }))
    }

    /// Index of an existing next hop equal to `nh`, or a new one, for routes added through
    /// [`RouteWriters`] after the build. Only next hops known at build time can be used, so
    /// call this before [`FibBuilder::build_with_writers`].
    pub fn next_hop_index(&mut self, addr: IpAddr, port: u8, hairpin: bool) -> u32 {
        let nh = self.resolve(addr, port, hairpin);
        self.push_nexthop(nh)
    }

    /// Index of the blackhole next hop (dropped as `blackhole`), for routes added through
    /// [`RouteWriters`] after the build.
    pub fn blackhole_index(&mut self) -> u32 {
        self.push_nexthop(NextHop::Blackhole)
    }
}

/// The single writers of a FIB's route tables, and the reclamation domain its workers join.
pub struct RouteWriters {
    /// IPv4 writer.
    pub v4: Lpm4,
    /// IPv6 writer.
    pub v6: Lpm6,
    /// Readers register here.
    pub qsbr: Arc<Qsbr>,
}

/// Next hops a running snapshot can take on, besides those it was built with: routes added at
/// run time through a gateway the file never named, or mirrored from a kernel table.
pub const RUNTIME_NEXT_HOPS: usize = 4096;

/// ECMP members a running snapshot can take on: the groups of multipath routes added at run
/// time.
pub const RUNTIME_ECMP_MEMBERS: usize = 16384;

/// A table that the single route writer appends to while workers read it: a slot is written
/// once, before any route can name it, so readers never lock and never see it change. Its
/// capacity is fixed when the snapshot is built (what it was built with and a spare count).
pub struct AppendTable<T> {
    slots: Box<[std::sync::OnceLock<T>]>,
    len: std::sync::atomic::AtomicUsize,
}

/// The next hops routes point at ([`RUNTIME_NEXT_HOPS`] spare).
pub type NextHopTable = AppendTable<NextHop>;

impl<T: Copy + PartialEq> AppendTable<T> {
    fn new(initial: Vec<T>, spare: usize) -> Self {
        let slots: Box<[std::sync::OnceLock<T>]> = (0..initial.len() + spare)
            .map(|_| std::sync::OnceLock::new())
            .collect();
        for (slot, v) in slots.iter().zip(&initial) {
            let _ = slot.set(*v);
        }
        AppendTable {
            slots,
            len: std::sync::atomic::AtomicUsize::new(initial.len()),
        }
    }

    /// The entry at `index`, once written.
    #[inline]
    pub fn get(&self, index: u32) -> Option<&T> {
        self.slots.get(index as usize)?.get()
    }

    /// Entries written.
    pub fn len(&self) -> usize {
        self.len.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Entries the table can hold.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// True when nothing is written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index of `v`: an equal entry already written, or a new slot. `None` when the
    /// table is full. For the single route writer only.
    pub fn push(&self, v: T) -> Option<u32> {
        let len = self.len();
        if let Some(i) = (0..len).find(|&i| self.slots[i].get() == Some(&v)) {
            return Some(i as u32);
        }
        self.append(&[v])
    }

    /// Writes `run` into consecutive new slots; the index of the first. `None` (and nothing
    /// written) when they do not all fit. For the single route writer only.
    pub fn append(&self, run: &[T]) -> Option<u32> {
        use std::sync::atomic::Ordering;
        let len = self.len();
        if run.is_empty() || len + run.len() > self.slots.len() {
            return None;
        }
        for (slot, v) in self.slots[len..].iter().zip(run) {
            slot.set(*v).ok()?;
        }
        self.len.store(len + run.len(), Ordering::Release);
        Some(len as u32)
    }
}

/// The immutable forwarding snapshot.
pub struct Fib {
    /// IPv4 routes (lookup view; the writer is in [`RouteWriters`]).
    pub v4: Lpm4Table,
    /// IPv6 routes.
    pub v6: Lpm6Table,
    qsbr: Arc<Qsbr>,
    tunnels: Tunnels,
    encap: Vec<Encap>,
    nexthops: Arc<NextHopTable>,
    ecmp: Arc<AppendTable<u32>>,
    neigh4: HashMap<u32, [u8; 6]>,
    neigh6: HashMap<u128, [u8; 6]>,
    ports: Vec<PortInfo>,
    addrs: Vec<PortAddrs>,
    neigh: Arc<NeighTable>,
    reply_limit: Limit,
    rpf: Vec<Rpf>,
    vlans: Vec<VlanSet>,
}

impl Fib {
    /// The route table's next hop for `addr` (a [`v4_key`] or IPv6 address).
    #[inline]
    fn route_to(&self, addr: u128) -> Option<&NextHop> {
        let nh = match std::net::Ipv6Addr::from(addr).to_ipv4_mapped() {
            Some(v4) => self.v4.lookup(u32::from(v4)),
            None => self.v6.lookup(addr),
        };
        nh.and_then(|i| self.nexthop(i))
    }

    /// The port a next hop leaves through (ECMP: its first member's); [`NO_PORT`] for local,
    /// drop and session-less next hops.
    fn hop_port(&self, hop: &NextHop) -> u8 {
        match *hop {
            NextHop::Forward { port, .. }
            | NextHop::Unresolved { port, .. }
            | NextHop::Connected { port } => port,
            NextHop::Encap { index } => self.encap(index).map_or(NO_PORT, |e| e.port),
            NextHop::Ecmp { start, len } => self
                .ecmp_member(start, len, 0)
                .filter(|m| !matches!(m, NextHop::Ecmp { .. }))
                .map_or(NO_PORT, |m| self.hop_port(m)),
            NextHop::Local | NextHop::Blackhole | NextHop::NoSession => NO_PORT,
        }
    }

    /// The port the route table reaches `addr` through, or [`NO_PORT`].
    pub fn port_toward(&self, addr: u128) -> u8 {
        self.route_to(addr).map_or(NO_PORT, |h| self.hop_port(h))
    }

    /// Whether a packet from `src` arriving on `in_port` passes the port's reverse-path
    /// check ([`Rpf`]). An ECMP route passes strict mode when any member leaves through
    /// `in_port`.
    #[inline]
    pub fn rpf_ok(&self, in_port: u8, src: u128) -> bool {
        let mode = self
            .rpf
            .get(usize::from(in_port))
            .copied()
            .unwrap_or_default();
        if mode == Rpf::Off {
            return true;
        }
        let Some(hop) = self.route_to(src) else {
            return false;
        };
        match (mode, *hop) {
            (_, NextHop::Blackhole | NextHop::NoSession | NextHop::Local) => false,
            (Rpf::Loose, _) => true,
            (_, NextHop::Ecmp { start, len }) => (0..len).any(|i| {
                self.ecmp
                    .get(start + i)
                    .and_then(|&m| self.nexthop(m))
                    .is_some_and(|m| self.hop_port(m) == in_port)
            }),
            (_, h) => self.hop_port(&h) == in_port,
        }
    }

    /// True when port `id` accepts VLAN `vid` in a frame's outer tag.
    #[inline]
    pub fn vlan_allowed(&self, id: u8, vid: u16) -> bool {
        self.vlans
            .get(usize::from(id))
            .is_some_and(|s| s.contains(vid))
    }

    /// The reverse-path mode of port `id`.
    #[inline]
    pub fn rpf(&self, id: u8) -> Rpf {
        self.rpf.get(usize::from(id)).copied().unwrap_or_default()
    }

    /// The per-worker rate limit of replies ([`FibBuilder::set_reply_limit`]).
    #[inline]
    pub fn reply_limit(&self) -> Limit {
        self.reply_limit
    }

    /// The dynamic neighbour table (written by the control thread, read here).
    pub fn neighbors(&self) -> &Arc<NeighTable> {
        &self.neigh
    }

    /// The gateway's own addresses on port `id`.
    #[inline]
    pub fn port_addrs(&self, id: u8) -> PortAddrs {
        self.addrs.get(usize::from(id)).copied().unwrap_or_default()
    }

    /// The next hop at `index` (a value returned by a route lookup).
    #[inline]
    pub fn nexthop(&self, index: u32) -> Option<&NextHop> {
        self.nexthops.get(index)
    }

    /// The next-hop table, shared with the route writer, which appends to it.
    pub fn next_hops(&self) -> &Arc<NextHopTable> {
        &self.nexthops
    }

    /// The ECMP member list (next-hop indices), shared with the route writer, which appends
    /// the groups of multipath routes to it.
    pub fn ecmp_members(&self) -> &Arc<AppendTable<u32>> {
        &self.ecmp
    }

    /// The ECMP member chosen for `hash`, as a next hop that is not itself ECMP.
    #[inline]
    pub fn ecmp_member(&self, start: u32, len: u32, hash: u32) -> Option<&NextHop> {
        let i = start.wrapping_add(hash % len.max(1));
        self.ecmp.get(i).and_then(|&m| self.nexthop(m))
    }

    /// The MAC of an IPv4 neighbour.
    #[inline]
    pub fn neighbor4(&self, addr: u32) -> Option<[u8; 6]> {
        self.neigh4.get(&addr).copied()
    }

    /// The MAC of an IPv6 neighbour.
    #[inline]
    pub fn neighbor6(&self, addr: u128) -> Option<[u8; 6]> {
        self.neigh6.get(&addr).copied()
    }

    /// The port with this id.
    #[inline]
    pub fn port(&self, id: u8) -> Option<&PortInfo> {
        self.ports.get(usize::from(id))
    }

    /// The encapsulation at `index`.
    #[inline]
    pub fn encap(&self, index: u32) -> Option<&Encap> {
        self.encap.get(index as usize)
    }

    /// The tunnels.
    pub fn tunnels(&self) -> &Tunnels {
        &self.tunnels
    }

    /// The reclamation domain workers register with as readers.
    pub fn qsbr(&self) -> &Arc<Qsbr> {
        &self.qsbr
    }

    /// Number of ports.
    pub fn port_count(&self) -> usize {
        self.ports.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_session_holds_only_sources_of_its_own_range_and_family() {
        let mut b = FibBuilder::new();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        b.add_gtpu_tunnel(
            "ran",
            ip("192.0.2.1"),
            ip("192.0.2.10"),
            &[
                (1, ip("10.46.0.0"), 16),
                (2, ip("fd00:46::"), 64),
                (3, ip("0.0.0.0"), 0),
            ],
        );
        let fib = b.build().unwrap();
        let local = ip_key(ip("192.0.2.1"));
        let s = |teid| fib.tunnels().gtpu_session(local, teid);
        let (v4, v6, any4) = (s(1), s(2), s(3));
        assert!(v4.is_some_and(|s| s.ue_holds_v4(0x0a2e_0107)));
        assert!(v4.is_some_and(|s| !s.ue_holds_v4(0x0a2f_0107)));
        assert!(v4.is_some_and(|s| !s.ue_holds_v6(v4_key(0x0a2e_0107))));
        let in6 = u128::from(std::net::Ipv6Addr::new(0xfd00, 0x46, 0, 0, 0, 0, 0, 7));
        assert!(v6.is_some_and(|s| s.ue_holds_v6(in6)));
        assert!(v6.is_some_and(|s| !s.ue_holds_v6(in6 ^ (1 << 80))));
        assert!(v6.is_some_and(|s| !s.ue_holds_v4(0x0a2e_0107)));
        assert!(
            any4.is_some_and(|s| s.ue_holds_v4(0xc633_6401)),
            "a /0 range"
        );
    }
}
