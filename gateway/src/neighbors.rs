//! Next-hop resolution on the control thread: ARP for IPv4, NDP for IPv6, written into the
//! FIB's lock-free neighbour table ([`datapath::neigh::NeighTable`]) that workers read.
//!
//! - Configured next hops and tunnel peers without a static `[[neighbor]]` are asked for at
//!   start; any other address is asked for when a worker drops a packet toward it
//!   (`neighbor_unresolved`) and asks. At most one request per address per second.
//! - Answers are learned from ARP replies and requests, and from NDP advertisements and
//!   solicitations, whose sender is on a subnet of the port they came in on.
//! - Entries are refreshed every 30 s; an entry unanswered for three requests is invalidated
//!   (packets toward it are then dropped and counted again until it answers).
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
/// Addresses tracked at most (requests beyond it are ignored until entries expire).
const MAX_TRACKED: usize = 4096;

struct Entry {
    port: u8,
    resolved: Option<Instant>,
    asked: Option<Instant>,
    tries: u32,
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
}

fn key_addr(key: u128) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(key);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

impl Neighbors {
    /// A resolver for `c`'s ports, writing into `table`; the configured next hops and tunnel
    /// peers are queued to be asked for.
    pub fn new(c: &Config, table: Arc<NeighTable>) -> Self {
        let ports = c
            .ports
            .iter()
            .map(|p| PortNet {
                mac: p.mac.0,
                nets: p.addresses.clone(),
            })
            .collect();
        let mut me = Neighbors {
            table,
            ports,
            statics: HashSet::new(),
            entries: HashMap::new(),
        };
        me.reconfigure(c);
        me
    }

    /// Takes a reloaded configuration (same ports): its static neighbours are no longer asked
    /// for, and its next hops and tunnel peers are queued. What was learned stays.
    pub fn reconfigure(&mut self, c: &Config) {
        let statics: HashSet<u128> = c.neighbors.iter().map(|n| ip_key(n.address)).collect();
        self.entries.retain(|k, _| !statics.contains(k));
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
        for a in wanted {
            if let Some(port) = self.port_for(a) {
                self.track(ip_key(a), port);
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

    fn track(&mut self, key: u128, port: u8) {
        if self.statics.contains(&key) || self.entries.len() >= MAX_TRACKED {
            return;
        }
        self.entries.entry(key).or_insert(Entry {
            port,
            resolved: None,
            asked: None,
            tries: 0,
        });
    }

    /// A worker dropped a packet toward `key` on `port`: ask for it (rate-limited).
    pub fn wanted(&mut self, key: u128, port: u8, path: &LocalPath) {
        self.track(key, port);
        self.tick_one(key, Instant::now(), path);
    }

    /// Learns from a frame handed up on `port` (ARP, or NDP inside IPv6).
    pub fn learn(&mut self, frame: &[u8], port: u8) {
        let Some((addr, mac)) = sender_of(frame) else {
            return;
        };
        let key = ip_key(addr);
        if self.statics.contains(&key) || self.port_for(addr) != Some(port) {
            return;
        }
        if mac[0] & 1 != 0 || mac == [0; 6] {
            return;
        }
        self.track(key, port);
        if let Some(e) = self.entries.get_mut(&key) {
            e.port = port;
            e.resolved = Some(Instant::now());
            e.tries = 0;
            e.asked = None;
            self.table.set(key, mac);
        }
    }

    /// Refreshes and expires entries; sends the requests due.
    pub fn tick(&mut self, path: &LocalPath) {
        let now = Instant::now();
        let keys: Vec<u128> = self.entries.keys().copied().collect();
        for k in keys {
            self.tick_one(k, now, path);
        }
    }

    fn tick_one(&mut self, key: u128, now: Instant, path: &LocalPath) {
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        let fresh = e.resolved.is_some_and(|t| now.duration_since(t) < REFRESH);
        let ask_due = e.asked.is_none_or(|t| now.duration_since(t) >= RETRY);
        if fresh || !ask_due {
            return;
        }
        if e.tries >= MAX_TRIES {
            // Unanswered: forget the MAC and start again from the next worker request.
            self.table.invalidate(key);
            self.entries.remove(&key);
            return;
        }
        e.tries += 1;
        e.asked = Some(now);
        let port = e.port;
        self.send_request(key, port, path);
    }

    fn send_request(&self, key: u128, port: u8, path: &LocalPath) {
        let Some(p) = self.ports.get(usize::from(port)) else {
            return;
        };
        let target = key_addr(key);
        // The source: our address on the subnet holding the target.
        let Some(src) = p.nets.iter().find(|n| n.contains(&target)).map(IpNet::addr) else {
            return;
        };
        let frame = match (src, target) {
            (IpAddr::V4(s), IpAddr::V4(t)) => arp_request(p.mac, s.octets(), t.octets()),
            (IpAddr::V6(s), IpAddr::V6(t)) => neighbor_solicit(p.mac, s.octets(), t.octets()),
            _ => return,
        };
        path.send_down(port, frame.len(), |b| b.copy_from_slice(&frame));
    }
}

/// The sender of an ARP packet or of an NDP advertisement/solicitation, with its MAC.
fn sender_of(f: &[u8]) -> Option<(IpAddr, [u8; 6])> {
    let ethertype = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    match ethertype {
        0x0806 => {
            let a = f.get(14..42)?;
            // Ethernet/IPv4, request (1) or reply (2).
            if a[0..6] != [0, 1, 8, 0, 6, 4] || !matches!(a[7], 1 | 2) {
                return None;
            }
            let mac: [u8; 6] = a[8..14].try_into().ok()?;
            let ip: [u8; 4] = a[14..18].try_into().ok()?;
            Some((IpAddr::from(ip), mac))
        }
        0x86dd => {
            let ip = f.get(14..54)?;
            if ip[6] != 58 || ip[7] != 255 {
                return None; // NDP is ICMPv6 with hop limit 255, no extension headers here.
            }
            let src: [u8; 16] = ip[8..24].try_into().ok()?;
            let icmp = f.get(54..)?;
            let (who, opt_type) = match *icmp.first()? {
                135 => (src, 1), // NS: the source, with its Source Link-Layer Address.
                136 => (icmp.get(8..24)?.try_into().ok()?, 2), // NA: the target, TLLA.
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
                    return (!a.is_unspecified()).then_some((IpAddr::V6(a), mac));
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
        assert_eq!(sender_of(&arp), Some((IpAddr::from([192, 0, 2, 1]), mac)));
        let src: std::net::Ipv6Addr = "fd00:a::1".parse().unwrap();
        let dst: std::net::Ipv6Addr = "fd00:a::10".parse().unwrap();
        let ns = neighbor_solicit(mac, src.octets(), dst.octets());
        assert_eq!(sender_of(&ns), Some((IpAddr::V6(src), mac)));
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
            assert_eq!(sender_of(&arp[..n]), None, "{n}");
        }
        let mut bad = arp.clone();
        bad[21] = 3; // RARP request
        assert_eq!(sender_of(&bad), None);
    }
}
