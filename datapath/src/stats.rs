//! Per-worker counters: per port, rx/tx packets and bytes, packets for the gateway itself, and
//! drops by reason. Each worker writes only its own [`Stats`] (plain relaxed load + store, no
//! read-modify-write); readers on other threads sum them.

use crate::pipeline::drop::DropReason;
use std::sync::atomic::{AtomicU64, Ordering};

/// The largest number of ports.
pub const MAX_PORTS: usize = 16;

/// Tunnel kinds as the per-kind counters index them.
pub use crate::tunnel::KINDS as TUNNEL_KINDS;

/// A single-writer counter, readable from any thread.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker calls this.
    #[inline]
    pub fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }
    /// The current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters of one port on one worker.
#[derive(Debug)]
pub struct PortStats {
    /// Frames received.
    pub rx_packets: Counter,
    /// Bytes received.
    pub rx_bytes: Counter,
    /// Frames transmitted.
    pub tx_packets: Counter,
    /// Bytes transmitted.
    pub tx_bytes: Counter,
    /// Frames an AF_XDP port sent from where they were received (by descriptor, no copy).
    pub tx_in_place: Counter,
    /// Frames an AF_XDP port copied into its frame memory to send them (they came from
    /// another kind of port or from the control thread, or an edit moved them).
    pub tx_copied: Counter,
    /// Packets addressed to the gateway itself (received on this port).
    pub local: Counter,
    /// Frames received on this port and handed to the worker that owns their flow
    /// (`steering = "inner"`); that worker counts what becomes of them.
    pub handed_off: Counter,
    /// Tunnel packets received on this port and decapsulated.
    pub decap: Counter,
    /// The same, by tunnel kind ([`TUNNEL_KINDS`]).
    pub decap_kind: [Counter; TUNNEL_KINDS.len()],
    /// Packets received on this port and sent encapsulated, by tunnel kind ([`TUNNEL_KINDS`]).
    pub encap_kind: [Counter; TUNNEL_KINDS.len()],
    /// Replies (ICMP errors, GTP-U Echo Responses) that packets received on this port would
    /// have caused, not sent because of the reply rate limit (the packets themselves are
    /// counted under their own reason).
    pub replies_limited: Counter,
    /// Drops of packets received on this port, by reason.
    pub drops: [Counter; DropReason::COUNT],
}

impl Default for PortStats {
    fn default() -> Self {
        PortStats {
            rx_packets: Counter::default(),
            rx_bytes: Counter::default(),
            tx_packets: Counter::default(),
            tx_bytes: Counter::default(),
            tx_in_place: Counter::default(),
            tx_copied: Counter::default(),
            local: Counter::default(),
            handed_off: Counter::default(),
            decap: Counter::default(),
            decap_kind: Default::default(),
            encap_kind: Default::default(),
            replies_limited: Counter::default(),
            drops: std::array::from_fn(|_| Counter::default()),
        }
    }
}

impl PortStats {
    /// Counts one drop.
    #[inline]
    pub fn drop(&self, reason: DropReason) {
        self.drops[reason as usize].add(1);
    }
}

/// Counters of one worker.
#[derive(Debug, Default)]
pub struct Stats {
    /// Per port, by port id.
    pub ports: [PortStats; MAX_PORTS],
}

/// A plain snapshot of counters, summed over workers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortSnapshot {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Frames sent without a copy, and frames copied to be sent (AF_XDP ports).
    pub tx_in_place: u64,
    /// See `tx_in_place`.
    pub tx_copied: u64,
    /// Packets for the gateway.
    pub local: u64,
    /// Frames handed to another worker.
    pub handed_off: u64,
    /// Tunnel packets decapsulated.
    pub decap: u64,
    /// Decapsulated and encapsulated, by tunnel kind ([`TUNNEL_KINDS`]).
    pub decap_kind: [u64; TUNNEL_KINDS.len()],
    /// See `decap_kind`.
    pub encap_kind: [u64; TUNNEL_KINDS.len()],
    /// Replies not sent because of the rate limit.
    pub replies_limited: u64,
    /// Drops by reason, indexed like [`DropReason::ALL`].
    pub drops: Vec<u64>,
}

impl PortSnapshot {
    /// The count of one reason.
    pub fn drops_of(&self, reason: DropReason) -> u64 {
        self.drops.get(reason as usize).copied().unwrap_or(0)
    }
    /// All drops.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// Sums the counters of `workers` for the first `ports` ports.
pub fn snapshot<'a>(
    workers: impl IntoIterator<Item = &'a Stats>,
    ports: usize,
) -> Vec<PortSnapshot> {
    let mut out = vec![
        PortSnapshot {
            drops: vec![0; DropReason::COUNT],
            ..Default::default()
        };
        ports.min(MAX_PORTS)
    ];
    for w in workers {
        for (o, p) in out.iter_mut().zip(&w.ports) {
            o.rx_packets += p.rx_packets.get();
            o.rx_bytes += p.rx_bytes.get();
            o.tx_packets += p.tx_packets.get();
            o.tx_bytes += p.tx_bytes.get();
            o.tx_in_place += p.tx_in_place.get();
            o.tx_copied += p.tx_copied.get();
            o.local += p.local.get();
            o.handed_off += p.handed_off.get();
            o.decap += p.decap.get();
            for k in 0..TUNNEL_KINDS.len() {
                o.decap_kind[k] += p.decap_kind[k].get();
                o.encap_kind[k] += p.encap_kind[k].get();
            }
            o.replies_limited += p.replies_limited.get();
            for (d, c) in o.drops.iter_mut().zip(&p.drops) {
                *d += c.get();
            }
        }
    }
    out
}
