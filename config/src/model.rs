//! The validated configuration. Every value here has passed [`crate::validate`].

use crate::MacAddr;
use ipnet::IpNet;
use std::net::IpAddr;
use std::path::PathBuf;

/// A port's backend, with what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Driver {
    /// AF_XDP on a kernel interface.
    AfXdp {
        /// Interface name.
        interface: String,
    },
    /// AF_PACKET on a kernel interface.
    AfPacket {
        /// Interface name.
        interface: String,
    },
    /// pcap files.
    Pcap {
        /// File to replay, if any.
        rx: Option<PathBuf>,
        /// File to write, if any.
        tx: Option<PathBuf>,
    },
    /// In-memory rings.
    Memory,
}

impl Driver {
    /// The driver's name as written in TOML.
    pub fn name(&self) -> &'static str {
        match self {
            Driver::AfXdp { .. } => "af_xdp",
            Driver::AfPacket { .. } => "af_packet",
            Driver::Pcap { .. } => "pcap",
            Driver::Memory => "memory",
        }
    }
}

/// A validated port. Its index in [`Config::ports`] is its port id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// Unique name.
    pub name: String,
    /// Backend.
    pub driver: Driver,
    /// The port's MAC address (unicast, non-zero).
    pub mac: MacAddr,
    /// Interface addresses; their networks are the port's connected subnets.
    pub addresses: Vec<IpNet>,
    /// IP MTU.
    pub mtu: u16,
    /// Accept unicast frames for any destination MAC.
    pub promiscuous: bool,
    /// af_xdp: frames whose destination (or ARP/NS target) is not the gateway's and matches
    /// no route go to the kernel instead of the gateway.
    pub pass_to_kernel: bool,
    /// Reverse-path filtering of plain traffic received here.
    pub rpf: crate::schema::RawRpf,
    /// How received frames are spread over the workers.
    pub steering: crate::schema::RawSteering,
    /// VLAN IDs (1..=4094) accepted in the outer tag; untagged frames are always accepted.
    pub vlans: Vec<u16>,
}

/// The largest IP MTU of an `af_xdp` port: its UMEM frames hold 2048 bytes, of which the
/// kernel keeps the first 256 as XDP headroom (the gateway prepends tunnel headers there),
/// and the rest must hold an Ethernet header and up to two VLAN tags. A longer frame is
/// dropped by the kernel before the gateway sees it (`datapath::port::af_xdp::MAX_FRAME`; a
/// gateway test keeps the two in step).
pub const AF_XDP_MAX_MTU: u32 = 2048 - 256 - 14 - 8;

/// The rate limit of replies that strangers can cause, per worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLimit {
    /// Per second.
    pub rate: u32,
    /// At once.
    pub burst: u32,
}

/// A static neighbour entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor {
    /// IP address.
    pub address: IpAddr,
    /// MAC address.
    pub mac: MacAddr,
    /// Port index.
    pub port: usize,
}

/// A next hop of a route: an address inside a connected subnet of `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    /// Gateway address.
    pub address: IpAddr,
    /// Egress port index (the port whose subnet contains `address`).
    pub port: usize,
}

/// What a route does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// Forward to one next hop, or spread over several by flow hash (ECMP).
    Via(Vec<NextHop>),
    /// Drop and count as `blackhole`.
    Drop,
    /// Encapsulate into a tunnel.
    Tunnel {
        /// Index in [`Config::tunnels`].
        tunnel: usize,
        /// IPIP, VXLAN and Geneve: the peers to encapsulate toward, by inner flow hash when several
        /// (the route's `via`, each one of the tunnel's peers); empty for all of the tunnel's
        /// peers. Always empty for GTP-U, whose sessions name the peer.
        via: Vec<IpAddr>,
    },
}

/// A validated route. The prefix has no host bits set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix.
    pub prefix: IpNet,
    /// What to do with matching packets.
    pub target: RouteTarget,
    /// May leave through the port the packet came in on.
    pub hairpin: bool,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Gateway name.
    pub name: String,
    /// Worker cores, unique.
    pub workers: Vec<usize>,
    /// RX burst size, 1..=[`MAX_BURST`].
    pub burst: usize,
    /// The group whose members may use the control socket (a name, or a numeric ID), besides
    /// root and the gateway's user.
    pub control_group: Option<String>,
    /// Ports; a port id is an index here.
    pub ports: Vec<Port>,
    /// Static neighbours.
    pub neighbors: Vec<Neighbor>,
    /// Routes (connected subnets are implied by port addresses and not listed here).
    pub routes: Vec<Route>,
    /// Tunnels.
    pub tunnels: Vec<Tunnel>,
    /// `[icmp]`.
    pub reply_limit: ReplyLimit,
    /// `[metrics] listen`: where Prometheus metrics are served, if anywhere.
    pub metrics: Option<std::net::SocketAddr>,
    /// Kernel routing tables mirrored into the route tables.
    pub route_sources: Vec<RouteSource>,
    /// The kernel table the served prefixes are written into.
    pub route_export: Option<RouteExport>,
}

/// A kernel routing table mirrored into the route tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSource {
    /// The kernel table (1..=2^32-1, not 255, the host's local table).
    pub table: u32,
    /// Mirror IPv4 routes.
    pub v4: bool,
    /// Mirror IPv6 routes.
    pub v6: bool,
    /// Mirror only routes of these protocol numbers; all when empty.
    pub protocols: Vec<u8>,
    /// The file's route wins over a mirrored one for the same prefix.
    pub prefer_file: bool,
}

/// The kernel table the gateway writes the prefixes it serves into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteExport {
    /// The kernel table.
    pub table: u32,
    /// Prefixes listed under `announce`.
    pub announce: Vec<IpNet>,
    /// Also the UE ranges of the GTP-U sessions.
    pub sessions: bool,
    /// The device the exported routes point at.
    pub device: String,
}

impl RouteExport {
    /// Every prefix to export: `announce`, then the UE ranges of `tunnels`' sessions when
    /// `sessions` is set, each once.
    pub fn prefixes(&self, tunnels: &[Tunnel]) -> Vec<IpNet> {
        let mut out = self.announce.clone();
        if self.sessions {
            for t in tunnels {
                if let TunnelKind::Gtpu { sessions, .. } = &t.kind {
                    out.extend(sessions.iter().map(|s| s.ue));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|p| seen.insert(*p));
        out
    }
}

/// The names of routing protocols in `/etc/iproute2/rt_protos`, with their numbers.
pub const ROUTE_PROTOCOLS: &[(&str, u8)] = &[
    ("redirect", 1),
    ("kernel", 2),
    ("boot", 3),
    ("static", 4),
    ("ra", 9),
    ("zebra", 11),
    ("bird", 12),
    ("dhcp", 16),
    ("keepalived", 18),
    ("babel", 42),
    ("bgp", 186),
    ("isis", 187),
    ("ospf", 188),
    ("rip", 189),
    ("eigrp", 192),
];

/// A GTP-U session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// UE range.
    pub ue: IpNet,
    /// Uplink TEID (non-zero, unique per local endpoint).
    pub teid_in: u32,
    /// Downlink TEID.
    pub teid_out: u32,
    /// QFI for a downlink PDU Session Container.
    pub qfi: Option<u8>,
}

/// What kind of tunnel, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelKind {
    /// GTP-U toward one peer.
    Gtpu {
        /// Peer endpoint.
        peer: IpAddr,
        /// Sessions.
        sessions: Vec<Session>,
    },
    /// VXLAN.
    Vxlan {
        /// UDP port.
        udp_port: u16,
        /// VNI.
        vni: u32,
        /// Peer VTEPs.
        peers: Vec<IpAddr>,
        /// MAC of each peer's VXLAN device, parallel to `peers` (the inner destination when
        /// encapsulating toward it); empty when the file gives none.
        peer_macs: Vec<MacAddr>,
    },
    /// Geneve.
    Geneve {
        /// UDP port.
        udp_port: u16,
        /// VNI.
        vni: u32,
        /// Peer endpoints.
        peers: Vec<IpAddr>,
        /// MAC of each peer's device, parallel to `peers`: with it, packets into the tunnel
        /// carry an inner Ethernet header addressed to it; empty for bare IP.
        peer_macs: Vec<MacAddr>,
    },
    /// IP in IP.
    Ipip {
        /// Peer endpoints.
        peers: Vec<IpAddr>,
    },
}

/// A validated tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    /// Unique name.
    pub name: String,
    /// The gateway's endpoint address.
    pub local: IpAddr,
    /// Kind and parameters.
    pub kind: TunnelKind,
}

impl Tunnel {
    /// The tunnel's peer endpoints.
    pub fn peers(&self) -> Vec<IpAddr> {
        match &self.kind {
            TunnelKind::Gtpu { peer, .. } => vec![*peer],
            TunnelKind::Vxlan { peers, .. }
            | TunnelKind::Geneve { peers, .. }
            | TunnelKind::Ipip { peers } => peers.clone(),
        }
    }
}

/// The largest burst a worker's fixed batch holds.
pub const MAX_BURST: usize = 64;
/// The largest number of ports.
pub const MAX_PORTS: usize = 16;
/// The largest number of `[[route_source]]` tables.
pub const MAX_ROUTE_SOURCES: usize = 8;
/// The largest number of next hops in one ECMP route.
pub const MAX_ECMP: usize = 16;

impl Config {
    /// The port with this name.
    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|p| p.name == name)
    }
}
