//! Raw serde types, one per TOML table. Unknown keys are collected by
//! [`crate::validate`] and reported with every other problem; typed values
//! (addresses, prefixes, MACs) stay strings here and are parsed through `FromStr` by
//! [`crate::validate`], so that every bad value is reported, not only the first.

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize)]
pub struct RawConfig {
    /// `[gateway]`
    pub gateway: RawGateway,
    /// `[[port]]`
    #[serde(default, rename = "port")]
    pub ports: Vec<RawPort>,
    /// `[[neighbor]]`
    #[serde(default, rename = "neighbor")]
    pub neighbors: Vec<RawNeighbor>,
    /// `[[route]]`
    #[serde(default, rename = "route")]
    pub routes: Vec<RawRoute>,
    /// `[[tunnel]]`
    #[serde(default, rename = "tunnel")]
    pub tunnels: Vec<RawTunnel>,
    /// `[icmp]`: the rate limit of replies strangers can cause.
    #[serde(default)]
    pub icmp: RawIcmp,
    /// `[metrics]`: the Prometheus endpoint.
    #[serde(default)]
    pub metrics: RawMetrics,
    /// `[[route_source]]`: kernel routing tables mirrored into the route tables.
    #[serde(default, rename = "route_source")]
    pub route_sources: Vec<RawRouteSource>,
    /// `[route_export]`: the kernel table the gateway writes the prefixes it serves into.
    #[serde(default)]
    pub route_export: Option<RawRouteExport>,
}

/// Where mirrored routes come from.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawRouteSourceKind {
    /// A Linux routing table, read and followed over rtnetlink.
    Kernel,
}

/// Which address families a route source mirrors.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RawFamily {
    /// IPv4 only.
    Ipv4,
    /// IPv6 only.
    Ipv6,
    /// Both (the default).
    #[default]
    Both,
}

/// Which route wins when the file and a route source have the same prefix.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RawPrefer {
    /// The file's route (the default): the mirrored one is refused and counted.
    #[default]
    File,
    /// The mirrored route, while it exists; the file's comes back when it goes.
    Source,
}

/// A routing protocol, by its name in `/etc/iproute2/rt_protos` or its number.
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(untagged)]
pub enum RawProtocol {
    /// `"bird"`
    Name(String),
    /// `12`
    Number(i64),
}

/// `[[route_source]]`: a kernel routing table (filled by BIRD, for example) whose routes the
/// gateway mirrors into its own, live.
#[derive(Debug, Deserialize)]
pub struct RawRouteSource {
    /// `kernel`.
    pub kind: RawRouteSourceKind,
    /// The kernel table's number (`ip route show table N`).
    pub table: i64,
    /// `ipv4`, `ipv6` or `both` (the default).
    #[serde(default)]
    pub family: RawFamily,
    /// Only routes installed by these protocols (`bird`, `static`, `12`, ...); all when empty.
    #[serde(default)]
    pub protocols: Vec<RawProtocol>,
    /// `file` (the default) or `source`: which wins for a prefix both have.
    #[serde(default)]
    pub prefer: RawPrefer,
}

/// `[route_export]`: the prefixes this gateway serves, written into a kernel table for BIRD to
/// announce, through a device that the kernel deletes (with the routes) when the gateway's
/// process ends, however it ends.
#[derive(Debug, Deserialize)]
pub struct RawRouteExport {
    /// The kernel table's number.
    pub table: i64,
    /// Prefixes to announce.
    #[serde(default)]
    pub announce: Vec<String>,
    /// Announce the UE ranges of the GTP-U sessions too (the default).
    #[serde(default = "default_true")]
    pub sessions: bool,
    /// The device the exported routes point at (default `gw-announce`).
    #[serde(default = "default_export_device")]
    pub device: String,
}

/// `true`.
pub fn default_true() -> bool {
    true
}

/// The default device of exported routes.
pub fn default_export_device() -> String {
    "gw-announce".to_string()
}

/// `[metrics]`: where `GET /metrics` is served (off unless `listen` is set).
#[derive(Debug, Deserialize, Default)]
pub struct RawMetrics {
    /// `ADDRESS:PORT`, for example `127.0.0.1:9108` or `[::]:9108`.
    #[serde(default)]
    pub listen: Option<String>,
}

/// `[icmp]`: per worker, a token bucket for ICMP errors (fragmentation needed, packet too big,
/// time exceeded), GTP-U Echo Responses, and pings and other frames for the gateway itself
/// (ARP and NDP have their own, larger allowance).
#[derive(Debug, Deserialize)]
pub struct RawIcmp {
    /// Replies per second.
    #[serde(default = "default_icmp_rate")]
    pub rate: u32,
    /// Replies that may be sent at once after a quiet period.
    #[serde(default = "default_icmp_burst")]
    pub burst: u32,
}

impl Default for RawIcmp {
    fn default() -> Self {
        RawIcmp {
            rate: default_icmp_rate(),
            burst: default_icmp_burst(),
        }
    }
}

/// Linux's `net.ipv4.icmp_msgs_per_sec` default.
pub fn default_icmp_rate() -> u32 {
    1000
}
/// Linux's `net.ipv4.icmp_msgs_burst` default.
pub fn default_icmp_burst() -> u32 {
    50
}

/// Reverse-path filtering of a port's plain traffic (RFC 3704).
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RawRpf {
    /// No check (the default).
    #[default]
    Off,
    /// The source must have a route.
    Loose,
    /// The source's route must leave through this port.
    Strict,
}

/// How a port's received frames are spread over the workers.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RawSteering {
    /// Each worker processes what its queue receives (the NIC's hash of the outer header).
    #[default]
    Rss,
    /// The receiving worker hashes the inner flow (or the GTP-U TEID) and hands each frame
    /// another worker owns to it: tunnels whose outer header never varies still use every
    /// worker.
    Inner,
}

/// `[gateway]`
#[derive(Debug, Deserialize)]
pub struct RawGateway {
    /// A name for logs and metrics.
    #[serde(default = "default_name")]
    pub name: String,
    /// Cores that run poll-mode workers, one worker each.
    #[serde(default = "default_workers")]
    pub workers: Vec<usize>,
    /// Packets per RX burst.
    #[serde(default = "default_burst")]
    pub burst: usize,
    /// A group (name or numeric ID) whose members may use the control socket besides root.
    #[serde(default)]
    pub control_group: Option<String>,
}

/// The default gateway name.
pub fn default_name() -> String {
    "gateway".to_string()
}
/// By default one worker on core 0.
pub fn default_workers() -> Vec<usize> {
    vec![0]
}
/// The default RX burst, as in DPDK's l3fwd.
pub fn default_burst() -> usize {
    32
}
/// The default MTU of a port.
pub fn default_mtu() -> u32 {
    1500
}

/// A port's backend.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawDriver {
    /// AF_XDP sockets (kernel bypass).
    AfXdp,
    /// AF_PACKET with TPACKET_V3 rings.
    AfPacket,
    /// A pcap file to replay and one to write.
    Pcap,
    /// In-memory rings, for tests and benches.
    Memory,
}

/// `[[port]]`
#[derive(Debug, Deserialize)]
pub struct RawPort {
    /// Unique port name.
    pub name: String,
    /// Backend.
    pub driver: RawDriver,
    /// Kernel interface (af_xdp, af_packet).
    pub interface: Option<String>,
    /// pcap: the file to read.
    pub rx: Option<String>,
    /// pcap: the file to write.
    pub tx: Option<String>,
    /// The port's own MAC address.
    pub mac: String,
    /// Interface addresses with their prefix length (`192.0.2.1/24`).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// IP MTU of the port.
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    /// Accept unicast frames whatever their destination MAC, and broadcast or multicast frames
    /// with a unicast IP destination (replaying foreign captures).
    #[serde(default)]
    pub promiscuous: bool,
    /// af_xdp: pass the traffic the gateway does not own to the kernel.
    #[serde(default)]
    pub pass_to_kernel: bool,
    /// Reverse-path filtering of plain traffic received here.
    #[serde(default)]
    pub rpf: RawRpf,
    /// How received frames are spread over the workers.
    #[serde(default)]
    pub steering: RawSteering,
    /// VLAN IDs accepted on this port (the outer tag); tagged frames with any other ID are
    /// dropped. None by default: tagged frames are dropped.
    #[serde(default)]
    pub vlans: Vec<u32>,
}

/// `[[neighbor]]`: a static neighbour entry.
#[derive(Debug, Deserialize)]
pub struct RawNeighbor {
    /// The neighbour's IP address.
    pub address: String,
    /// Its MAC address.
    pub mac: String,
    /// The port it is reached through.
    pub port: String,
}

/// One next hop or a list of them (ECMP).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// `via = "172.18.0.2"`
    One(String),
    /// `via = ["172.18.0.2", "172.18.0.3"]`
    Many(Vec<String>),
}

impl OneOrMany {
    /// The next hops as a slice.
    pub fn as_slice(&self) -> &[String] {
        match self {
            OneOrMany::One(s) => std::slice::from_ref(s),
            OneOrMany::Many(v) => v,
        }
    }
}

/// What a route does with matching packets.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawAction {
    /// Forward through `via` (the default).
    Forward,
    /// Blackhole: drop and count under `blackhole`.
    Drop,
}

/// `[[route]]`
#[derive(Debug, Deserialize)]
pub struct RawRoute {
    /// Destination prefix (`10.96.0.0/12`).
    pub prefix: String,
    /// Next hop(s).
    pub via: Option<OneOrMany>,
    /// Forward (default) or drop.
    pub action: Option<RawAction>,
    /// Allow packets of this route to leave through the port they arrived on.
    #[serde(default)]
    pub hairpin: bool,
    /// Reserved: the tunnel a route encapsulates into.
    pub tunnel: Option<String>,
}

/// A tunnel's kind.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawTunnelKind {
    /// GTP-U (3GPP TS 29.281), UDP 2152.
    Gtpu,
    /// VXLAN (RFC 7348).
    Vxlan,
    /// Geneve (RFC 8926).
    Geneve,
    /// IP in IP: 4in4, 6in4 (protocol 41), 4in6, 6in6.
    Ipip,
}

/// `[[tunnel]]`
#[derive(Debug, Deserialize)]
pub struct RawTunnel {
    /// Unique tunnel name.
    pub name: String,
    /// Kind.
    pub kind: RawTunnelKind,
    /// The gateway's own endpoint address (one of its interface addresses).
    pub local: String,
    /// GTP-U: the peer endpoint.
    pub peer: Option<String>,
    /// VXLAN, Geneve and IPIP: the peer endpoints.
    pub peers: Option<Vec<String>>,
    /// VXLAN: UDP port (default 4789; 8472 for Flannel and Cilium). Geneve: UDP port (default
    /// 6081).
    pub udp_port: Option<u16>,
    /// VXLAN and Geneve: the VNI (24 bits).
    pub vni: Option<u32>,
    /// VXLAN: MAC of the peers' VXLAN device (the inner Ethernet destination when
    /// encapsulating): one for every peer, or a list parallel to `peers`; required by routes
    /// into the tunnel. Geneve: the same, optional: with it, packets into the tunnel are sent
    /// as Ethernet frames (Protocol Type 0x6558, as Cilium and OVS expect); without it, as bare
    /// IP packets.
    pub peer_mac: Option<OneOrMany>,
    /// GTP-U: sessions.
    #[serde(default, rename = "session")]
    pub sessions: Vec<RawSession>,
}

/// `[[tunnel.session]]`: one GTP-U session.
#[derive(Debug, Deserialize)]
pub struct RawSession {
    /// The UE address range of the session.
    pub ue: String,
    /// TEID the peer sends to us (uplink).
    pub teid_in: u32,
    /// TEID we send to the peer (downlink).
    pub teid_out: u32,
    /// Add a PDU Session Container with this QFI on downlink.
    pub qfi: Option<u8>,
}

/// The default VXLAN UDP port (IANA).
pub fn default_vxlan_port() -> u16 {
    4789
}

/// The default Geneve UDP port (IANA).
pub fn default_geneve_port() -> u16 {
    6081
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_defaults_are_linuxs() {
        assert_eq!(default_icmp_rate(), 1000);
        assert_eq!(default_icmp_burst(), 50);
        let d = RawIcmp::default();
        assert_eq!((d.rate, d.burst), (1000, 50));
        assert_eq!(RawRpf::default(), RawRpf::Off);
    }
}
