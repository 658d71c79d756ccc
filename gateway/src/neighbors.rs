//! Next-hop resolution on the control thread: ARP for IPv4, NDP for IPv6, written into the
//! FIB's lock-free neighbour table ([`datapath::neigh::NeighTable`]) that workers read.
//!
//! - Configured next hops and tunnel peers without a static `[[neighbor]]` are asked for at
//!   start and kept ("pinned"); any other address is asked for when a worker drops a packet
//!   toward it (`neighbor_unresolved`) and asks. At most one request per address per second,
//!   and a request that could not be queued is not a try.
//! - Only what the gateway asked for or already holds is learned: an ARP message or an NDP
//!   advertisement or solicitation about an address without an entry teaches nothing
//!   (counted as unsolicited). A current MAC is replaced only by an ARP reply while a request
//!   is outstanding, or by a Neighbor Advertisement with the Override flag (RFC 4861 section
//!   7.2.5); a solicitation or an unasked-for ARP message cannot move it (counted as refused).
//!   So an on-link host cannot take over a next hop by announcing itself.
//! - The tracker is bounded in total and per port. When it is full, a new address takes the
//!   place of the oldest entry that never resolved; pinned entries and entries that resolved
//!   are never evicted for it (a full tracker of current entries refuses, counted). With
//!   workers' requests rate-limited ([`datapath::local`]), an unresolved address lives in the
//!   tracker for capacity / rate seconds, however large the flood of absent addresses.
//! - An address unanswered after three requests is invalidated and backs off (2, 4, 8, 16 s)
//!   before it is asked for again; requests for it meanwhile are counted and ignored.
//! - Entries are refreshed every 30 s, but only while a worker has used them since the last
//!   refresh (the table's used mark) or they are pinned: the rest age out and their slots are
//!   reused, so the table reclaims itself.
//! - Static `[[neighbor]]` entries win: they are never asked for nor overwritten.
//!
//! smoltcp answers for the gateway's own addresses ([`crate::local_stack`]); this module only
//! asks and listens.

use config::{Config, RouteTarget};
use datapath::fib::ip_key;
use datapath::local::LocalPath;
use datapath::neigh::NeighTable;
use datapath::wire::{checksum, udp};
use ipnet::IpNet;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const REFRESH: Duration = Duration::from_secs(30);
const RETRY: Duration = Duration::from_secs(1);
const MAX_TRIES: u32 = 3;
/// The longest wait before an unanswered address is asked for again.
const MAX_BACKOFF: Duration = Duration::from_secs(16);
/// The same for a configured next hop or tunnel peer: it is expected to come back.
const MAX_BACKOFF_PINNED: Duration = Duration::from_secs(4);

/// What the resolver did and refused, for the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NeighborCounters {
    /// Requests (ARP, NS) queued to be sent.
    pub requests_sent: u64,
    /// Requests that could not be queued (no buffer): not counted as tries.
    pub requests_unsent: u64,
    /// MACs learned or changed.
    pub learned: u64,
    /// Answers that confirmed the MAC already held.
    pub confirmed: u64,
    /// ARP/NDP messages about an address the gateway neither asked for nor holds.
    pub unsolicited: u64,
    /// Messages refused: a different MAC without override or outstanding request, another
    /// port, an address outside the port's subnets, a multicast or zero MAC.
    pub refused: u64,
    /// Addresses that stayed unanswered and were invalidated.
    pub failed: u64,
    /// Entries no worker used for a refresh period, reclaimed.
    pub aged_out: u64,
    /// Unresolved entries evicted to make room for a new address.
    pub evicted: u64,
    /// New addresses refused because the tracker was full of entries that may not be evicted.
    pub tracker_full: u64,
    /// Worker requests ignored because the address is backing off.
    pub backoff: u64,
    /// MACs the table could not store (every slot of the probe chain current).
    pub table_full: u64,
}

struct Entry {
    port: u8,
    /// The MAC in force (also in the table), once resolved.
    mac: Option<[u8; 6]>,
    /// When an answer last confirmed it.
    confirmed: Option<Instant>,
    asked: Option<Instant>,
    tries: u32,
    /// A configured next hop or tunnel peer: never evicted, never aged out.
    pinned: bool,
    /// Consecutive resolutions that failed, and until when the address backs off.
    failures: u32,
    backoff_until: Option<Instant>,
    created: Instant,
}

struct PortNet {
    mac: [u8; 6],
    nets: Vec<IpNet>,
}

/// The resolver.
pub struct Neighbors {
    table: Arc<NeighTable>,
    ports: Vec<PortNet>,
    statics: HashSet<u128>,
    entries: HashMap<u128, Entry>,
    per_port: Vec<usize>,
    max_total: usize,
    max_per_port: usize,
    counters: NeighborCounters,
}

fn key_addr(key: u128) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(key);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

impl Neighbors {
    /// A resolver for `c`'s ports, writing into `table`, tracking as many addresses as the
    /// table is sized for (each port at most three quarters of them); the configured next
    /// hops and tunnel peers are queued to be asked for.
    pub fn new(c: &Config, table: Arc<NeighTable>) -> Self {
        let max_total = table.capacity();
        Self::with_limits(c, table, max_total, max_total - max_total / 4)
    }

    /// [`Neighbors::new`] with explicit bounds (at most the table's capacity in total).
    pub fn with_limits(
        c: &Config,
        table: Arc<NeighTable>,
        max_total: usize,
        max_per_port: usize,
    ) -> Self {
        let ports: Vec<PortNet> = c
            .ports
            .iter()
            .map(|p| PortNet {
                mac: p.mac.0,
                nets: p.addresses.clone(),
            })
            .collect();
        let mut me = Neighbors {
            max_total: max_total.min(table.capacity()).max(1),
            max_per_port: max_per_port.max(1),
            table,
            per_port: vec![0; ports.len()],
            ports,
            statics: HashSet::new(),
            entries: HashMap::new(),
            counters: NeighborCounters::default(),
        };
        me.reconfigure(c);
        me
    }

    /// What the resolver did so far.
    pub fn counters(&self) -> NeighborCounters {
        self.counters
    }

    /// Entries in the workers' neighbour table, and its fixed size.
    pub fn table_occupancy(&self) -> (usize, usize) {
        (self.table.len(), self.table.capacity())
    }

    /// Addresses tracked (resolved, resolving or backing off).
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// Addresses with a current MAC.
    pub fn resolved(&self) -> usize {
        self.entries.values().filter(|e| e.mac.is_some()).count()
    }

    /// Takes a reloaded configuration (same ports): its static neighbours are no longer asked
    /// for, and its next hops and tunnel peers are queued and pinned. What was learned stays.
    pub fn reconfigure(&mut self, c: &Config) {
        let statics: HashSet<u128> = c.neighbors.iter().map(|n| ip_key(n.address)).collect();
        let gone: Vec<u128> = self
            .entries
            .keys()
            .copied()
            .filter(|k| statics.contains(k))
            .collect();
        for k in gone {
            self.remove(k);
        }
        self.statics = statics;
        let mut wanted: Vec<IpAddr> = Vec::new();
        for r in &c.routes {
            if let RouteTarget::Via(hops) = &r.target {
                wanted.extend(hops.iter().map(|h| h.address));
            }
        }
        for t in &c.tunnels {
            wanted.extend(t.peers());
        }
        let pinned: HashSet<u128> = wanted.iter().map(|&a| ip_key(a)).collect();
        for e in self.entries.iter_mut() {
            e.1.pinned = pinned.contains(e.0);
        }
        let now = Instant::now();
        for a in wanted {
            if let Some(port) = self.port_for(a) {
                self.track(ip_key(a), port, true, now);
            }
        }
    }

    /// The port with a subnet holding `a`.
    fn port_for(&self, a: IpAddr) -> Option<u8> {
        self.ports
            .iter()
            .position(|p| p.nets.iter().any(|n| n.contains(&a)))
            .map(|i| i as u8)
    }

    fn remove(&mut self, key: u128) {
        if let Some(e) = self.entries.remove(&key) {
            if let Some(n) = self.per_port.get_mut(usize::from(e.port)) {
                *n = n.saturating_sub(1);
            }
            if e.mac.is_some() {
                self.table.invalidate(key);
            }
        }
    }

    /// The entry to evict for a new address on `port`: the oldest unresolved entry that is
    /// not pinned (on `port` when that port is at its limit). None when there is none.
    fn victim(&self, port: u8) -> Option<u128> {
        let port_full =
            self.per_port.get(usize::from(port)).copied().unwrap_or(0) >= self.max_per_port;
        self.entries
            .iter()
            .filter(|(_, e)| !e.pinned && e.mac.is_none() && (!port_full || e.port == port))
            .min_by_key(|(_, e)| e.created)
            .map(|(&k, _)| k)
    }

    /// Tracks `key` on `port`, evicting an unresolved entry when the tracker is full. False
    /// when it is not tracked (static, or the tracker full of entries that may not go).
    fn track(&mut self, key: u128, port: u8, pinned: bool, now: Instant) -> bool {
        if self.statics.contains(&key) || usize::from(port) >= self.ports.len() {
            return false;
        }
        if let Some(e) = self.entries.get_mut(&key) {
            e.pinned |= pinned;
            return true;
        }
        let full = |me: &Self| {
            me.entries.len() >= me.max_total
                || me.per_port.get(usize::from(port)).copied().unwrap_or(0) >= me.max_per_port
        };
        if full(self) {
            match self.victim(port) {
                Some(v) => {
                    self.remove(v);
                    self.counters.evicted += 1;
                }
                None => {
                    self.counters.tracker_full += 1;
                    return false;
                }
            }
            if full(self) {
                self.counters.tracker_full += 1;
                return false;
            }
        }
        self.entries.insert(
            key,
            Entry {
                port,
                mac: None,
                confirmed: None,
                asked: None,
                tries: 0,
                pinned,
                failures: 0,
                backoff_until: None,
                created: now,
            },
        );
        if let Some(n) = self.per_port.get_mut(usize::from(port)) {
            *n += 1;
        }
        true
    }

    /// A worker dropped a packet toward `key` on `port`: ask for it (rate-limited).
    pub fn wanted(&mut self, key: u128, port: u8, path: &LocalPath) {
        self.wanted_at(key, port, path, Instant::now());
    }

    fn wanted_at(&mut self, key: u128, port: u8, path: &LocalPath, now: Instant) {
        if let Some(e) = self.entries.get(&key) {
            if e.backoff_until.is_some_and(|t| now < t) {
                self.counters.backoff += 1;
                return;
            }
        } else if !self.track(key, port, false, now) {
            return;
        }
        self.tick_one(key, now, path);
    }

    /// Learns from a frame handed up on `port` (ARP, or NDP inside IPv6), as the module
    /// documentation says.
    pub fn learn(&mut self, frame: &[u8], port: u8) {
        self.learn_at(frame, port, Instant::now());
    }

    fn learn_at(&mut self, frame: &[u8], port: u8, now: Instant) {
        let Some(m) = parse_neighbor_message(frame) else {
            return;
        };
        let key = ip_key(m.addr);
        if self.statics.contains(&key) {
            return;
        }
        let Some(e) = self.entries.get_mut(&key) else {
            self.counters.unsolicited += 1;
            return;
        };
        let on_link = self
            .ports
            .get(usize::from(port))
            .is_some_and(|p| p.nets.iter().any(|n| n.contains(&m.addr)));
        if !on_link || e.port != port || m.mac[0] & 1 != 0 || m.mac == [0; 6] {
            self.counters.refused += 1;
            return;
        }
        if e.mac == Some(m.mac) {
            e.confirmed = Some(now);
            e.tries = 0;
            e.asked = None;
            self.counters.confirmed += 1;
            return;
        }
        let asking = e.asked.is_some_and(|t| now.duration_since(t) < RETRY * 2);
        let may_change = match (e.mac, m.kind) {
            // Incomplete: the first answer, or the host itself asking us, fills it.
            (None, _) => true,
            (Some(_), MsgKind::ArpReply) => asking,
            (Some(_), MsgKind::Na { override_flag, .. }) => override_flag,
            (Some(_), MsgKind::ArpRequest | MsgKind::Ns) => false,
        };
        if !may_change {
            self.counters.refused += 1;
            return;
        }
        if !self.table.set(key, m.mac) {
            self.counters.table_full += 1;
            return;
        }
        let change = if e.mac.is_some() {
            "changed"
        } else {
            "learned"
        };
        e.mac = Some(m.mac);
        e.confirmed = Some(now);
        e.tries = 0;
        e.asked = None;
        e.failures = 0;
        e.backoff_until = None;
        self.counters.learned += 1;
        // Only addresses the gateway asked for get here: no flood reaches this line.
        datapath::log::event(
            "neighbor",
            &[
                ("address", &m.addr),
                ("mac", &config::MacAddr(m.mac)),
                ("port_id", &port),
                ("change", &change),
            ],
        );
    }

    /// Refreshes, ages out and expires entries; sends the requests due.
    pub fn tick(&mut self, path: &LocalPath) {
        self.tick_at(Instant::now(), path);
    }

    fn tick_at(&mut self, now: Instant, path: &LocalPath) {
        let keys: Vec<u128> = self.entries.keys().copied().collect();
        for k in keys {
            self.tick_one(k, now, path);
        }
    }

    fn tick_one(&mut self, key: u128, now: Instant, path: &LocalPath) {
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        if e.backoff_until.is_some_and(|t| now < t) {
            return;
        }
        let fresh = e.confirmed.is_some_and(|t| now.duration_since(t) < REFRESH);
        let ask_due = e.asked.is_none_or(|t| now.duration_since(t) >= RETRY);
        if fresh || !ask_due {
            return;
        }
        if e.mac.is_some() && e.tries == 0 && !e.pinned && !self.table.take_used(key) {
            // Nobody forwarded to it for a whole refresh period: reclaim it.
            self.remove(key);
            self.counters.aged_out += 1;
            return;
        }
        if e.tries >= MAX_TRIES {
            // Unanswered: forget the MAC and back off before asking again.
            if e.mac.take().is_some() {
                self.table.invalidate(key);
            }
            e.confirmed = None;
            e.tries = 0;
            e.asked = None;
            e.failures = e.failures.saturating_add(1);
            let cap = if e.pinned {
                MAX_BACKOFF_PINNED
            } else {
                MAX_BACKOFF
            };
            let wait = RETRY.saturating_mul(1 << e.failures.min(8)).min(cap);
            e.backoff_until = Some(now + wait);
            self.counters.failed += 1;
            return;
        }
        let port = e.port;
        if self.send_request(key, port, path) {
            if let Some(e) = self.entries.get_mut(&key) {
                e.tries += 1;
                e.asked = Some(now);
            }
            self.counters.requests_sent += 1;
        } else {
            // Not a try: the request never left, so the neighbour had no chance to answer.
            self.counters.requests_unsent += 1;
        }
    }

    fn send_request(&self, key: u128, port: u8, path: &LocalPath) -> bool {
        let Some(p) = self.ports.get(usize::from(port)) else {
            return false;
        };
        let target = key_addr(key);
        // The source: our address on the subnet holding the target.
        let Some(src) = p.nets.iter().find(|n| n.contains(&target)).map(IpNet::addr) else {
            return false;
        };
        let frame = match (src, target) {
            (IpAddr::V4(s), IpAddr::V4(t)) => arp_request(p.mac, s.octets(), t.octets()),
            (IpAddr::V6(s), IpAddr::V6(t)) => neighbor_solicit(p.mac, s.octets(), t.octets()),
            _ => return false,
        };
        path.send_down(port, frame.len(), |b| b.copy_from_slice(&frame))
    }
}

/// What an ARP or NDP message says about a neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MsgKind {
    ArpRequest,
    ArpReply,
    /// Neighbor Solicitation: the source with its Source Link-Layer Address.
    Ns,
    /// Neighbor Advertisement: the target with its Target Link-Layer Address, and the
    /// Solicited and Override flags (RFC 4861 section 4.4).
    Na {
        solicited: bool,
        override_flag: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NeighborMessage {
    addr: IpAddr,
    mac: [u8; 6],
    kind: MsgKind,
}

/// The neighbour an ARP packet or an NDP advertisement/solicitation speaks for, with its MAC.
fn parse_neighbor_message(f: &[u8]) -> Option<NeighborMessage> {
    let ethertype = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    match ethertype {
        0x0806 => {
            let a = f.get(14..42)?;
            // Ethernet/IPv4, request (1) or reply (2).
            if a[0..6] != [0, 1, 8, 0, 6, 4] {
                return None;
            }
            let kind = match a[7] {
                1 => MsgKind::ArpRequest,
                2 => MsgKind::ArpReply,
                _ => return None,
            };
            let mac: [u8; 6] = a[8..14].try_into().ok()?;
            let ip: [u8; 4] = a[14..18].try_into().ok()?;
            Some(NeighborMessage {
                addr: IpAddr::from(ip),
                mac,
                kind,
            })
        }
        0x86dd => {
            let ip = f.get(14..54)?;
            if ip[6] != 58 || ip[7] != 255 {
                return None; // NDP is ICMPv6 with hop limit 255, no extension headers here.
            }
            let src: [u8; 16] = ip[8..24].try_into().ok()?;
            let icmp = f.get(54..)?;
            let (who, opt_type, kind) = match *icmp.first()? {
                135 => (src, 1, MsgKind::Ns),
                136 => {
                    let flags = *icmp.get(4)?;
                    (
                        icmp.get(8..24)?.try_into().ok()?,
                        2,
                        MsgKind::Na {
                            solicited: flags & 0x40 != 0,
                            override_flag: flags & 0x20 != 0,
                        },
                    )
                }
                _ => return None,
            };
            let mut opts = icmp.get(24..)?;
            while opts.len() >= 8 {
                let len = usize::from(opts[1]) * 8;
                if len == 0 || len > opts.len() {
                    return None;
                }
                if opts[0] == opt_type && len >= 8 {
                    let mac: [u8; 6] = opts[2..8].try_into().ok()?;
                    let a = std::net::Ipv6Addr::from(who);
                    return (!a.is_unspecified()).then_some(NeighborMessage {
                        addr: IpAddr::V6(a),
                        mac,
                        kind,
                    });
                }
                opts = &opts[len..];
            }
            None
        }
        _ => None,
    }
}

fn arp_request(mac: [u8; 6], src: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend([0xff; 6]);
    f.extend(mac);
    f.extend([0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend(mac);
    f.extend(src);
    f.extend([0; 6]);
    f.extend(target);
    f.resize(60, 0);
    f
}

fn neighbor_solicit(mac: [u8; 6], src: [u8; 16], target: [u8; 16]) -> Vec<u8> {
    // To the target's solicited-node group ff02::1:ffXX:XXXX, at 33:33:ff:XX:XX:XX.
    let mut group = [0u8; 16];
    group[0] = 0xff;
    group[1] = 0x02;
    group[11] = 1;
    group[12] = 0xff;
    group[13..].copy_from_slice(&target[13..]);
    let mut f = Vec::with_capacity(86);
    f.extend([0x33, 0x33, 0xff, target[13], target[14], target[15]]);
    f.extend(mac);
    f.extend([0x86, 0xdd]);
    f.extend([0x60, 0, 0, 0, 0, 32, 58, 255]);
    f.extend(src);
    f.extend(group);
    let icmp_at = f.len();
    f.extend([135, 0, 0, 0, 0, 0, 0, 0]);
    f.extend(target);
    f.extend([1, 1]);
    f.extend(mac);
    let pseudo =
        udp::pseudo_header_v6(u128::from_be_bytes(src), u128::from_be_bytes(group), 58, 32);
    let c = !(checksum::sum(&f[icmp_at..], pseudo) as u16);
    f[icmp_at + 2..icmp_at + 4].copy_from_slice(&c.to_be_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_back_as_their_own_senders() {
        let mac = [2, 0, 0, 0, 0, 1];
        let arp = arp_request(mac, [192, 0, 2, 1], [192, 0, 2, 10]);
        assert_eq!(arp.len(), 60);
        assert_eq!(
            parse_neighbor_message(&arp),
            Some(NeighborMessage {
                addr: IpAddr::from([192, 0, 2, 1]),
                mac,
                kind: MsgKind::ArpRequest
            })
        );
        let src: std::net::Ipv6Addr = "fd00:a::1".parse().unwrap();
        let dst: std::net::Ipv6Addr = "fd00:a::10".parse().unwrap();
        let ns = neighbor_solicit(mac, src.octets(), dst.octets());
        assert_eq!(
            parse_neighbor_message(&ns),
            Some(NeighborMessage {
                addr: IpAddr::V6(src),
                mac,
                kind: MsgKind::Ns
            })
        );
        // The ICMPv6 checksum verifies: the sum over pseudo-header and message is all ones.
        let pseudo = udp::pseudo_header_v6(
            u128::from(src),
            u128::from_be_bytes(ns[38..54].try_into().unwrap()),
            58,
            32,
        );
        assert_eq!(checksum::sum(&ns[54..], pseudo), 0xffff);
        assert_eq!(
            &ns[38..54],
            &"ff02::1:ff00:10"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
    }

    #[test]
    fn truncated_or_foreign_frames_teach_nothing() {
        let arp = arp_request([2, 0, 0, 0, 0, 1], [192, 0, 2, 1], [192, 0, 2, 10]);
        for n in 0..42 {
            assert_eq!(parse_neighbor_message(&arp[..n]), None, "{n}");
        }
        let mut bad = arp.clone();
        bad[21] = 3; // RARP request
        assert_eq!(parse_neighbor_message(&bad), None);
    }

    const HOST: [u8; 6] = [2, 0, 0, 0, 2, 3];
    const OTHER: [u8; 6] = [2, 0, 0, 0, 6, 6];

    fn resolver(max_total: usize, max_per_port: usize) -> (Neighbors, Arc<NeighTable>) {
        // Its static neighbour (172.18.0.2) is not used here; 172.18.0.3 is the route's next hop.
        let c = crate::testing::parse(crate::testing::TWO_PORTS);
        let table = Arc::new(NeighTable::new(4096));
        (
            Neighbors::with_limits(&c, Arc::clone(&table), max_total, max_per_port),
            table,
        )
    }

    fn key(s: &str) -> u128 {
        ip_key(s.parse().unwrap())
    }

    fn v4(s: &str) -> [u8; 4] {
        match s.parse::<IpAddr>().unwrap() {
            IpAddr::V4(a) => a.octets(),
            IpAddr::V6(_) => unreachable!(),
        }
    }

    /// An ARP request or reply from `ip` at `mac`.
    fn arp(mac: [u8; 6], ip: &str, reply: bool) -> Vec<u8> {
        let mut f = arp_request(mac, v4(ip), [172, 18, 0, 1]);
        f[21] = if reply { 2 } else { 1 };
        f
    }

    /// A Neighbor Advertisement for `target` at `mac` with the S and O flags.
    fn na(mac: [u8; 6], target: &str, solicited: bool, override_flag: bool) -> Vec<u8> {
        let t: std::net::Ipv6Addr = target.parse().unwrap();
        let mut f = vec![2, 0, 0, 0, 0, 1];
        f.extend(mac);
        f.extend([0x86, 0xdd, 0x60, 0, 0, 0, 0, 32, 58, 255]);
        f.extend(t.octets());
        f.extend("fd00:a::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        let flags = u8::from(solicited) << 6 | u8::from(override_flag) << 5;
        f.extend([136, 0, 0, 0, flags, 0, 0, 0]);
        f.extend(t.octets());
        f.extend([2, 1]);
        f.extend(mac);
        f
    }

    #[test]
    fn unsolicited_arp_and_ndp_teach_nothing() {
        let (mut n, table) = resolver(64, 48);
        // Neither asked for nor held: a stranger announcing itself is not learned.
        n.learn(&arp(HOST, "172.18.0.9", true), 1);
        n.learn(&arp(HOST, "172.18.0.10", false), 1);
        n.learn(&na(HOST, "fd00:a::9", true, true), 0);
        for a in ["172.18.0.9", "172.18.0.10", "fd00:a::9"] {
            assert_eq!(table.lookup(key(a)), None, "{a}");
        }
        assert_eq!(n.counters().unsolicited, 3);
        assert_eq!(n.tracked(), 1); // only the configured next hop
    }

    #[test]
    fn a_confirmed_mac_moves_only_on_an_asked_reply_or_an_override_advertisement() {
        let (mut n, table) = resolver(64, 48);
        let path = LocalPath::new(16);
        let t0 = Instant::now();
        // The configured next hop is asked for and answers: learned.
        n.tick_at(t0, &path);
        n.learn_at(&arp(HOST, "172.18.0.3", true), 1, t0);
        assert_eq!(table.lookup(key("172.18.0.3")), Some(HOST));
        // Another host claims it with a gratuitous request or an unasked-for reply: refused.
        let later = t0 + Duration::from_secs(5);
        n.learn_at(&arp(OTHER, "172.18.0.3", false), 1, later);
        n.learn_at(&arp(OTHER, "172.18.0.3", true), 1, later);
        assert_eq!(table.lookup(key("172.18.0.3")), Some(HOST));
        assert_eq!(n.counters().refused, 2);
        // IPv6: a host the gateway asked for; an advertisement without Override cannot move
        // it, one with Override can (RFC 4861 7.2.5).
        n.wanted_at(key("fd00:a::9"), 0, &path, t0);
        n.learn_at(&na(HOST, "fd00:a::9", true, false), 0, t0);
        assert_eq!(table.lookup(key("fd00:a::9")), Some(HOST));
        n.learn_at(&na(OTHER, "fd00:a::9", false, false), 0, later);
        assert_eq!(table.lookup(key("fd00:a::9")), Some(HOST));
        n.learn_at(&na(OTHER, "fd00:a::9", false, true), 0, later);
        assert_eq!(table.lookup(key("fd00:a::9")), Some(OTHER));
    }

    #[test]
    fn a_flood_of_absent_addresses_never_locks_out_a_new_one() {
        let (mut n, table) = resolver(256, 192);
        let path = LocalPath::new(4096);
        let t0 = Instant::now();
        // The configured next hop resolves first.
        n.tick_at(t0, &path);
        n.learn_at(&arp(HOST, "172.18.0.3", true), 1, t0);
        // 50,000 absent hosts in the connected subnet are asked for.
        for i in 0..50_000u32 {
            let a = std::net::Ipv4Addr::from(0xac12_0000 | (i + 16));
            n.wanted_at(ip_key(IpAddr::V4(a)), 1, &path, t0);
            while let Some(f) = path.take_down() {
                path.recycle(f);
            }
        }
        assert!(n.tracked() <= 192, "tracked {}", n.tracked());
        // The resolved next hop survived; a new host asked for now is tracked and learned.
        assert_eq!(table.lookup(key("172.18.0.3")), Some(HOST));
        n.wanted_at(key("172.18.255.1"), 1, &path, t0);
        n.learn_at(&arp(OTHER, "172.18.255.1", true), 1, t0);
        assert_eq!(table.lookup(key("172.18.255.1")), Some(OTHER));
        assert!(n.counters().evicted > 49_000);
        // Per port: the other port still has room.
        n.wanted_at(key("192.0.2.77"), 0, &path, t0);
        n.learn_at(&arp(OTHER, "192.0.2.77", true), 0, t0);
        assert_eq!(table.lookup(key("192.0.2.77")), Some(OTHER));
    }

    #[test]
    fn a_request_that_could_not_be_queued_is_not_a_try() {
        let (mut n, table) = resolver(64, 48);
        // A path whose only buffer is taken: nothing can go down.
        let path = LocalPath::new(1);
        let t0 = Instant::now();
        n.tick_at(t0, &path);
        let held = path.take_down().unwrap();
        for s in 1..=10 {
            n.tick_at(t0 + Duration::from_secs(s), &path);
        }
        assert_eq!(n.counters().failed, 0);
        assert_eq!(n.counters().requests_unsent, 10);
        path.recycle(held);
        // Once requests leave again, the answer is taken.
        n.tick_at(t0 + Duration::from_secs(11), &path);
        n.learn_at(
            &arp(HOST, "172.18.0.3", true),
            1,
            t0 + Duration::from_secs(11),
        );
        assert_eq!(table.lookup(key("172.18.0.3")), Some(HOST));
    }

    #[test]
    fn unanswered_addresses_back_off_and_unused_entries_age_out() {
        let (mut n, table) = resolver(64, 48);
        let path = LocalPath::new(64);
        let drain = |p: &LocalPath| {
            while let Some(f) = p.take_down() {
                p.recycle(f);
            }
        };
        let t0 = Instant::now();
        let absent = key("172.18.0.50");
        for s in 0..4 {
            n.wanted_at(absent, 1, &path, t0 + Duration::from_secs(s));
            drain(&path);
        }
        assert_eq!(n.counters().failed, 1);
        // Backing off: asked again only after the wait.
        let sent = n.counters().requests_sent;
        n.wanted_at(absent, 1, &path, t0 + Duration::from_millis(4500));
        assert_eq!(n.counters().requests_sent, sent);
        assert_eq!(n.counters().backoff, 1);
        n.wanted_at(absent, 1, &path, t0 + Duration::from_secs(6));
        assert_eq!(n.counters().requests_sent, sent + 1);
        drain(&path);
        // A host learned on request and then never used ages out; its slot is reclaimed.
        let h = key("172.18.0.60");
        n.wanted_at(h, 1, &path, t0);
        n.learn_at(&arp(HOST, "172.18.0.60", true), 1, t0);
        assert_eq!(table.lookup(h), Some(HOST)); // used once, now
        n.tick_at(t0 + Duration::from_secs(31), &path); // used: refreshed
        drain(&path);
        n.learn_at(
            &arp(HOST, "172.18.0.60", true),
            1,
            t0 + Duration::from_secs(31),
        );
        n.tick_at(t0 + Duration::from_secs(62), &path); // unused since: reclaimed
        assert_eq!(n.counters().aged_out, 1);
        assert_eq!(table.lookup(h), None);
        // The configured next hop is never aged out, used or not.
        n.learn_at(
            &arp(HOST, "172.18.0.3", true),
            1,
            t0 + Duration::from_secs(62),
        );
        n.tick_at(t0 + Duration::from_secs(100), &path);
        assert!(n.entries.contains_key(&key("172.18.0.3")));
    }
}
