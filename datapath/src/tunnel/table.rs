//! The tunnels the gateway terminates, keyed as decapsulation looks them up, and the
//! per-batch memo of the last tunnel a packet was accepted from. Addresses are table keys: IPv6
//! as is, IPv4 in its IPv4-mapped form (`crate::fib::v4_key`). The forwarding snapshot holds
//! one [`Tunnels`]; the kinds' `decap` functions read it.

use super::Kind;
use crate::pipeline::drop::DropReason;
use hashbrown::HashMap;

/// A GTP-U session as decapsulation checks it: its tunnel, and the UE range its uplink inner
/// sources must lie in (IPv4 ranges kept as 32-bit network and mask, so the per-packet check
/// of an IPv4 source is one AND and one compare).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GtpuSession {
    /// Tunnel id.
    pub tunnel: u16,
    /// An IPv4 UE range (else IPv6).
    pub ue_v4: bool,
    /// IPv4 UE network and mask.
    pub ue_net4: u32,
    /// See `ue_net4`.
    pub ue_mask4: u32,
    /// IPv6 UE network and mask.
    pub ue_net6: u128,
    /// See `ue_net6`.
    pub ue_mask6: u128,
}

impl GtpuSession {
    /// The session of UE range `ue/len` (`ue` an IPv4 address when `v4`).
    pub fn new(ue: u128, v4: bool, len: u8) -> GtpuSession {
        if v4 {
            let mask4 = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            GtpuSession {
                tunnel: 0,
                ue_v4: true,
                ue_net4: ue as u32 & mask4,
                ue_mask4: mask4,
                ue_net6: 0,
                ue_mask6: 0,
            }
        } else {
            let mask6 = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            GtpuSession {
                tunnel: 0,
                ue_v4: false,
                ue_net4: 0,
                ue_mask4: 0,
                ue_net6: ue & mask6,
                ue_mask6: mask6,
            }
        }
    }

    /// True when IPv4 source `src` is in the session's UE range.
    #[inline]
    pub fn ue_holds_v4(&self, src: u32) -> bool {
        self.ue_v4 && src & self.ue_mask4 == self.ue_net4
    }

    /// True when IPv6 source `src` is in the session's UE range.
    #[inline]
    pub fn ue_holds_v6(&self, src: u128) -> bool {
        !self.ue_v4 && src & self.ue_mask6 == self.ue_net6
    }
}

/// The tunnels the gateway terminates.
#[derive(Default, Clone)]
pub struct Tunnels {
    /// Local endpoint addresses of every tunnel (a handful: scanned linearly).
    locals: Vec<u128>,
    /// (local, uplink TEID) → the tunnel id and the session's UE range.
    gtpu: HashMap<(u128, u32), GtpuSession>,
    /// (local, UDP port, VNI) → VXLAN or Geneve tunnel id (a port carries one kind: the
    /// configuration refuses both on one port).
    by_vni: HashMap<(u128, u16, u32), u16>,
    /// UDP ports VXLAN or Geneve is received on, and the kind.
    udp_ports: Vec<(u16, Kind)>,
    /// (local, peer) → IPIP tunnel id.
    ipip: HashMap<(u128, u128), u16>,
    /// Locals with a GTP-U tunnel.
    gtpu_locals: Vec<u128>,
    /// (local, tunnel id) of each GTP-U tunnel.
    gtpu_ids: Vec<(u128, u16)>,
    /// Locals with an IPIP tunnel.
    ipip_locals: Vec<u128>,
    /// Peers of each tunnel, by id.
    peers: Vec<Vec<u128>>,
    /// The port each peer is reachable through, parallel to `peers`; set with the snapshot
    /// ([`Tunnels::set_peer_ports`]).
    peer_ports: Vec<Vec<u8>>,
    /// Names, by id.
    names: Vec<String>,
}

impl Tunnels {
    fn add(&mut self, name: &str, local: u128, peers: &[u128]) -> u16 {
        let id = self.names.len() as u16;
        self.names.push(name.to_string());
        self.peers.push(peers.to_vec());
        self.peer_ports.push(Vec::new());
        if !self.locals.contains(&local) {
            self.locals.push(local);
        }
        id
    }

    /// Adds a GTP-U tunnel terminating on `local`, accepting G-PDUs from `peer` for its
    /// sessions (an uplink TEID each, with its UE range); returns its id.
    pub fn add_gtpu(
        &mut self,
        name: &str,
        local: u128,
        peer: u128,
        sessions: &[(u32, GtpuSession)],
    ) -> u16 {
        let id = self.add(name, local, &[peer]);
        for &(teid, s) in sessions {
            self.gtpu
                .insert((local, teid), GtpuSession { tunnel: id, ..s });
        }
        self.gtpu_ids.push((local, id));
        if !self.gtpu_locals.contains(&local) {
            self.gtpu_locals.push(local);
        }
        id
    }

    /// Adds a VXLAN or Geneve tunnel (`kind`) on UDP `port` with `vni`; returns its id.
    pub fn add_by_vni(
        &mut self,
        kind: Kind,
        name: &str,
        local: u128,
        (port, vni): (u16, u32),
        peers: &[u128],
    ) -> u16 {
        let id = self.add(name, local, peers);
        self.by_vni.insert((local, port, vni), id);
        if !self.udp_ports.iter().any(|&(p, _)| p == port) {
            self.udp_ports.push((port, kind));
        }
        id
    }

    /// Adds an IPIP tunnel (any of 4in4, 6in4, 4in6, 6in6) from each of `peers`; returns its
    /// id.
    pub fn add_ipip(&mut self, name: &str, local: u128, peers: &[u128]) -> u16 {
        let id = self.add(name, local, peers);
        for &p in peers {
            self.ipip.insert((local, p), id);
        }
        if !self.ipip_locals.contains(&local) {
            self.ipip_locals.push(local);
        }
        id
    }

    /// The peers of each tunnel, by id.
    pub fn peers(&self) -> &[Vec<u128>] {
        &self.peers
    }

    /// Sets the port each peer is reached through, parallel to [`Tunnels::peers`]: a tunnel
    /// packet is taken from a peer only on that port (anti-spoofing).
    pub fn set_peer_ports(&mut self, ports: Vec<Vec<u8>>) {
        self.peer_ports = ports;
    }

    /// The tunnel names, indexed by tunnel id.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// True when `addr` is a local tunnel endpoint.
    #[inline]
    pub fn is_local(&self, addr: u128) -> bool {
        self.locals.contains(&addr)
    }

    /// The GTP-U session of an uplink TEID on a local endpoint.
    #[inline]
    pub fn gtpu_session(&self, local: u128, teid: u32) -> Option<GtpuSession> {
        self.gtpu.get(&(local, teid)).copied()
    }

    /// True when `local` terminates GTP-U.
    #[inline]
    pub fn is_gtpu_local(&self, local: u128) -> bool {
        self.gtpu_locals.contains(&local)
    }

    /// The kind received on this UDP port (VXLAN or Geneve), if any.
    #[inline]
    pub fn udp_kind(&self, port: u16) -> Option<Kind> {
        self.udp_ports
            .iter()
            .find_map(|&(p, k)| (p == port).then_some(k))
    }

    /// The VXLAN or Geneve tunnel of (local, port, VNI).
    #[inline]
    pub fn by_vni(&self, local: u128, port: u16, vni: u32) -> Option<u16> {
        self.by_vni.get(&(local, port, vni)).copied()
    }

    /// The IPIP tunnel from `peer` to `local`.
    #[inline]
    pub fn ipip(&self, local: u128, peer: u128) -> Option<u16> {
        self.ipip.get(&(local, peer)).copied()
    }

    /// True when `local` terminates IPIP.
    #[inline]
    pub fn is_ipip_local(&self, local: u128) -> bool {
        self.ipip_locals.contains(&local)
    }

    /// The port configured peer `peer` of tunnel `id` is reached through, or `None` when
    /// `peer` is not a peer of the tunnel.
    #[inline]
    pub fn peer_port(&self, id: u16, peer: u128) -> Option<u8> {
        let t = usize::from(id);
        let i = self.peers.get(t)?.iter().position(|&p| p == peer)?;
        self.peer_ports.get(t)?.get(i).copied()
    }

    /// True when `peer` is a peer of a GTP-U tunnel terminating on `local` and is reached
    /// through `in_port` (who may be sent a GTP-U Echo Response).
    pub fn is_gtpu_peer_on(&self, local: u128, peer: u128, in_port: u8) -> bool {
        self.gtpu_ids
            .iter()
            .any(|&(l, id)| l == local && self.peer_port(id, peer) == Some(in_port))
    }

    /// `tunnel_unknown_peer` unless `src` is a configured peer of `tunnel`, and
    /// `tunnel_wrong_port` unless it arrived on `in_port`, the port the route table reaches
    /// that peer through: a peer's address forged on another segment is refused.
    #[inline]
    pub fn peer_check(&self, tunnel: u16, src: u128, in_port: u8) -> Result<(), DropReason> {
        match self.peer_port(tunnel, src) {
            None => Err(DropReason::TunnelUnknownPeer),
            Some(p) if p != in_port => Err(DropReason::TunnelWrongPort),
            Some(_) => Ok(()),
        }
    }
}

/// The last tunnel a packet of the batch was accepted from: GTP-U (local endpoint, TEID),
/// VXLAN or Geneve (local endpoint, UDP port, VNI) or IPIP (local endpoint), with the outer
/// source that passed the peer check.
/// Packets of one batch mostly come from one tunnel, so the next one with the same key skips
/// the tunnel table's hash lookup and the peer check. Emptied at every batch (as VPP's
/// `last_tunnel_cache4`), so it never outlives the forwarding snapshot it was filled from.
#[derive(Debug, Clone, Copy, Default)]
pub struct LastTunnel {
    key: Option<(u128, u128, u64)>,
    /// The GTP-U session of that key (its UE range is checked per packet).
    session: Option<GtpuSession>,
}

impl LastTunnel {
    /// Forgets the last tunnel.
    #[inline]
    pub fn clear(&mut self) {
        self.key = None;
    }

    /// Whether `(local, src, kind, id)` is the last accepted tunnel; otherwise runs `check`
    /// and remembers the key (and the session `check` found) when it passes.
    #[inline]
    pub(super) fn accept(
        &mut self,
        (local, src): (u128, u128),
        kind: Kind,
        id: u64,
        check: impl FnOnce() -> Result<Option<GtpuSession>, DropReason>,
    ) -> Result<(), DropReason> {
        let key = (local, src, (kind as u64) << 60 | id);
        if self.key == Some(key) {
            return Ok(());
        }
        self.session = check()?;
        self.key = Some(key);
        Ok(())
    }

    /// After the inner header at `l3` was validated: a G-PDU's inner source must lie in its
    /// session's UE range (anything else on the session is spoofed: the downlink of another
    /// UE, or an address the core never assigned). Other kinds have no such rule.
    ///
    /// # Errors
    /// [`DropReason::GtpuInnerSourceNotUe`].
    #[inline(always)]
    pub fn check_inner_source(
        &self,
        frame: &[u8],
        l3: usize,
        ipv6: bool,
    ) -> Result<(), DropReason> {
        match &self.session {
            None => Ok(()),
            Some(s) => ue_source_check(s, frame, l3, ipv6),
        }
    }
}

/// The UE-range check of [`LastTunnel::check_inner_source`], kept out of line: only G-PDUs
/// reach it.
#[inline(never)]
fn ue_source_check(s: &GtpuSession, frame: &[u8], l3: usize, ipv6: bool) -> Result<(), DropReason> {
    let ok = if ipv6 {
        let r = crate::wire::ipv6::field::SRC;
        frame
            .get(l3 + r.start..l3 + r.end)
            .and_then(|b| b.try_into().ok())
            .is_some_and(|b| s.ue_holds_v6(u128::from_be_bytes(b)))
    } else {
        let r = crate::wire::ipv4::field::SRC;
        frame
            .get(l3 + r.start..l3 + r.end)
            .and_then(|b| b.try_into().ok())
            .is_some_and(|b| s.ue_holds_v4(u32::from_be_bytes(b)))
    };
    if ok {
        Ok(())
    } else {
        Err(DropReason::GtpuInnerSourceNotUe)
    }
}
