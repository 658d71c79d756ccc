//! `gateway pktgen receive`: counts and times stamped traffic where it ends up.
//!
//! Each frame is walked down to its innermost payload (through VLAN tags, IPv4/IPv6, IPIP,
//! VXLAN on port 4789, Geneve on port 6081 and GTP-U on port 2152, so it works on the gateway's output and on the
//! generator's own tunnelled frames) and the stamp read there (see [`super::frame`]). Frames
//! without a stamp are counted as `other`.
//!
//! - Per flow (`seq % flows`): frames received, losses (sequence numbers of the flow below
//!   the highest seen that never came; the receiver assumes it saw the run from sequence 0,
//!   so start it before the sender) and reordering (a frame arriving after a later one of
//!   its flow). Losses after a flow's last received frame cannot be seen here: compare the
//!   sender's count.
//! - Latency: the sender stamps CLOCK_TAI; the receive time is the kernel's AF_PACKET
//!   timestamp (CLOCK_REALTIME, moved to TAI by the offset between the two clocks read once)
//!   or, on AF_XDP, the time the batch is read. Percentiles come from a log-linear histogram
//!   (16 buckets per power of two: within 6 %), so memory stays fixed however long it runs.

use super::frame::read_stamp;
use anyhow::{bail, Result};
use datapath::pipeline::batch::{Batch, BATCH};
use datapath::port::live_frames::tai_ns;
use datapath::stats::PortStats;
use datapath::wire::{geneve, GenevePacket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the receiver reads the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Driver {
    /// AF_PACKET with a TPACKET_V3 ring (kernel receive timestamps).
    AfPacket,
    /// AF_XDP (faster; latency measured when the batch is read).
    AfXdp,
}

/// `gateway pktgen receive`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Receive on this interface.
    #[arg(long)]
    pub interface: String,
    /// How to read it.
    #[arg(long, value_enum, default_value = "af-packet")]
    pub driver: Driver,
    /// Stop after this many seconds (otherwise on --count, --idle, Ctrl-C or SIGTERM).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Stop after this many stamped frames.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop once stamped frames have come and none has for this many seconds.
    #[arg(long)]
    pub idle: Option<f64>,
    /// No line per second.
    #[arg(long)]
    pub quiet: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Buckets of the latency histogram.
const BUCKETS: usize = 32 + 59 * 16;

/// Latencies in nanoseconds, in fixed memory: exact below 32 ns, then 16 buckets per
/// power of two.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    n: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            n: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

impl Histogram {
    fn bucket(v: u64) -> usize {
        if v < 32 {
            return v as usize;
        }
        let e = 63 - v.leading_zeros() as usize;
        let sub = ((v >> (e - 4)) & 0xf) as usize;
        (32 + (e - 5) * 16 + sub).min(BUCKETS - 1)
    }

    fn low(b: usize) -> u64 {
        if b < 32 {
            return b as u64;
        }
        let e = (b - 32) / 16 + 5;
        let sub = ((b - 32) % 16) as u64;
        (16 + sub) << (e - 4)
    }

    /// Adds one latency.
    pub fn record(&mut self, ns: u64) {
        self.counts[Self::bucket(ns)] += 1;
        self.n += 1;
        self.sum += u128::from(ns);
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
    }

    /// Latencies recorded.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// True when none was recorded.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The `q` quantile (0..=1): the lower bound of its bucket, within the exact min and max.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Self::low(b).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// Mean latency.
    pub fn mean(&self) -> Option<u64> {
        (self.n > 0).then(|| (self.sum / u128::from(self.n)) as u64)
    }
}

/// One flow's tally.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flow {
    /// Frames received.
    pub received: u64,
    /// The highest sequence number seen, extended past u32 wraps (`-1`: none yet).
    pub max_seq: i64,
    /// Frames that arrived after a later frame of the flow.
    pub reordered: u64,
}

/// What the receiver has seen.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Frames read from the interface.
    pub frames: u64,
    /// Frames without a stamp.
    pub other: u64,
    /// Stamped frames.
    pub stamped: u64,
    /// Frames the kernel dropped before the receiver read them.
    pub kernel_drops: u64,
    /// Per flow, as many as the stamps say.
    pub flows: Vec<Flow>,
    /// Latency of every stamped frame with a send time.
    pub latency: Histogram,
}

impl Tally {
    /// Counts one stamped frame received at `now_tai` (ns).
    pub fn stamped(&mut self, flows: u16, seq: u32, sent_tai: u64, now_tai: u64) {
        self.stamped += 1;
        let n = usize::from(flows);
        if self.flows.len() < n {
            self.flows.resize(
                n,
                Flow {
                    max_seq: -1,
                    ..Flow::default()
                },
            );
        }
        let f = usize::try_from(seq % u32::from(flows)).unwrap_or(0);
        if let Some(fl) = self.flows.get_mut(f) {
            fl.received += 1;
            let ext = if fl.max_seq < 0 {
                i64::from(seq)
            } else {
                // Nearest to the highest so far, across a u32 wrap.
                fl.max_seq + i64::from(seq.wrapping_sub(fl.max_seq as u32) as i32)
            };
            if ext < fl.max_seq {
                fl.reordered += 1;
            } else {
                fl.max_seq = ext;
            }
        }
        if sent_tai != 0 && now_tai >= sent_tai {
            self.latency.record(now_tai - sent_tai);
        }
    }

    /// Frames of flow `i` missing below its highest sequence number.
    pub fn lost(&self, i: usize) -> u64 {
        let n = self.flows.len() as i64;
        let Some(f) = self.flows.get(i) else {
            return 0;
        };
        if f.max_seq < 0 {
            return 0;
        }
        let expected = (f.max_seq - i as i64) / n + 1;
        (expected as u64).saturating_sub(f.received)
    }

    /// Losses over all flows.
    pub fn lost_total(&self) -> u64 {
        (0..self.flows.len()).map(|i| self.lost(i)).sum()
    }

    /// Reordered frames over all flows.
    pub fn reordered_total(&self) -> u64 {
        self.flows.iter().map(|f| f.reordered).sum()
    }

    /// The summary as JSON.
    pub fn json(&self, seconds: f64) -> serde_json::Value {
        let q = |x: f64| self.latency.quantile(x);
        serde_json::json!({
            "seconds": seconds,
            "frames": self.frames,
            "stamped": self.stamped,
            "other": self.other,
            "kernel_drops": self.kernel_drops,
            "lost": self.lost_total(),
            "reordered": self.reordered_total(),
            "pps": self.stamped as f64 / seconds.max(1e-9),
            "latency_ns": {
                "samples": self.latency.len(),
                "min": q(0.0), "mean": self.latency.mean(), "p50": q(0.5), "p90": q(0.9),
                "p99": q(0.99), "p999": q(0.999), "max": (!self.latency.is_empty()).then_some(self.latency.max),
            },
            "flows": self.flows.iter().enumerate().map(|(i, f)| serde_json::json!({
                "flow": i, "received": f.received, "lost": self.lost(i), "reordered": f.reordered,
            })).collect::<Vec<_>>(),
        })
    }

    /// The summary as text.
    pub fn text(&self, seconds: f64) -> String {
        let us = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{:.1}", v as f64 / 1e3));
        let q = |x: f64| us(self.latency.quantile(x));
        let mut s = format!(
            "received {} stamped frames in {seconds:.2} s ({:.3} Mpps), {} other, {} dropped by the kernel\n\
             lost {} (gaps in sequence), reordered {}\n\
             latency us: min {} p50 {} p90 {} p99 {} p99.9 {} max {} ({} samples)\n",
            self.stamped,
            self.stamped as f64 / seconds.max(1e-9) / 1e6,
            self.other,
            self.kernel_drops,
            self.lost_total(),
            self.reordered_total(),
            q(0.0),
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            us((!self.latency.is_empty()).then_some(self.latency.max)),
            self.latency.len(),
        );
        let shown = self.flows.len().min(16);
        if shown > 0 {
            s.push_str("flow  received  lost  reordered\n");
        }
        for (i, f) in self.flows.iter().take(shown).enumerate() {
            s.push_str(&format!(
                "{i:>4}  {:>8}  {:>4}  {:>9}\n",
                f.received,
                self.lost(i),
                f.reordered
            ));
        }
        if self.flows.len() > shown {
            s.push_str(&format!(
                "({} more flows in --json)\n",
                self.flows.len() - shown
            ));
        }
        s
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The innermost payload of a frame that starts with a stamp, if any.
pub fn find_stamp(frame: &[u8]) -> Option<&[u8]> {
    let mut ethertype = be16(frame, 12)?;
    let mut p = frame.get(14..)?;
    for _ in 0..6 {
        // VLAN tags (802.1Q, 802.1ad).
        while ethertype == 0x8100 || ethertype == 0x88a8 {
            ethertype = be16(p, 2)?;
            p = p.get(4..)?;
        }
        let (proto, payload) = match ethertype {
            0x0800 => {
                let ihl = usize::from(*p.first()? & 0x0f) * 4;
                let total = usize::from(be16(p, 2)?);
                (*p.get(9)?, p.get(ihl.max(20)..total)?)
            }
            0x86dd => {
                let len = usize::from(be16(p, 4)?);
                (*p.get(6)?, p.get(40..40 + len)?)
            }
            _ => return None,
        };
        match proto {
            4 => (ethertype, p) = (0x0800, payload),
            41 => (ethertype, p) = (0x86dd, payload),
            6 => {
                let off = usize::from(*payload.get(12)? >> 4) * 4;
                let data = payload.get(off..)?;
                return read_stamp(data).map(|_| data);
            }
            17 => {
                let len = usize::from(be16(payload, 4)?);
                let data = payload.get(8..len.max(8))?;
                if read_stamp(data).is_some() {
                    return Some(data);
                }
                match be16(payload, 2)? {
                    4789 => {
                        let inner = data.get(8..)?;
                        ethertype = be16(inner, 12)?;
                        p = inner.get(14..)?;
                    }
                    // Geneve: past its options, Ethernet or IP by the Protocol Type.
                    geneve::UDP_PORT => {
                        let g = GenevePacket::new_checked(data).ok()?;
                        let inner = data.get(g.header_len()..)?;
                        match g.protocol() {
                            geneve::PROTOCOL_ETHERNET => {
                                ethertype = be16(inner, 12)?;
                                p = inner.get(14..)?;
                            }
                            t => (ethertype, p) = (t, inner),
                        }
                    }
                    2152 => {
                        let flags = *data.first()?;
                        let mut off = 8;
                        if flags & 0x07 != 0 {
                            off += 4;
                            let mut next = *data.get(11)?;
                            while next != 0 {
                                let n = usize::from(*data.get(off)?) * 4;
                                if n == 0 {
                                    return None;
                                }
                                next = *data.get(off + n - 1)?;
                                off += n;
                            }
                        }
                        let inner = data.get(off..)?;
                        ethertype = if *inner.first()? >> 4 == 6 {
                            0x86dd
                        } else {
                            0x0800
                        };
                        p = inner;
                    }
                    _ => return None,
                }
            }
            _ => return None,
        }
    }
    None
}

/// Runs the receiver until its end condition; returns the tally and the seconds it ran.
///
/// # Errors
/// The interface cannot be opened.
pub fn receive(a: &Args, mut line: impl FnMut(&str)) -> Result<(Tally, f64)> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let mut port = super::open_port(&a.interface, a.driver == Driver::AfXdp)?;
    // TAI minus REALTIME, to put the kernel's receive timestamps on the sender's clock.
    let realtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let tai_offset = tai_ns().wrapping_sub(realtime);
    let mut batch = Batch::new();
    if let Some(m) = port.frame_memory() {
        batch.use_memory(&m);
    }
    let stats = PortStats::default();
    let mut t = Tally::default();
    let start = Instant::now();
    let end = a.seconds.map(Duration::from_secs_f64);
    let idle = a.idle.map(Duration::from_secs_f64);
    let mut last_stamped = start;
    let mut next_line = Duration::from_secs(1);
    let mut at_line = Tally::default();
    let mut interval = Histogram::default();
    loop {
        let n = port.rx(&mut batch, BATCH, &stats);
        let now_tai = tai_ns();
        let before = t.stamped;
        for b in &batch.bufs[..n] {
            t.frames += 1;
            match find_stamp(b.frame()).and_then(read_stamp) {
                Some((flows, seq, sent)) => {
                    let at = if b.ts_ns != 0 {
                        b.ts_ns.wrapping_add(tai_offset)
                    } else {
                        now_tai
                    };
                    t.stamped(flows, seq, sent, at);
                    if sent != 0 && at >= sent {
                        interval.record(at - sent);
                    }
                }
                None => t.other += 1,
            }
        }
        let elapsed = start.elapsed();
        if t.stamped > before {
            last_stamped = Instant::now();
        }
        if n == 0 {
            // Share the core: the receiver runs beside the gateway on small machines.
            std::thread::sleep(Duration::from_micros(200));
        }
        if elapsed >= next_line {
            t.kernel_drops = port.kernel_drops();
            if !a.quiet {
                let us =
                    |v: Option<u64>| v.map_or("-".into(), |v| format!("{:.1}", v as f64 / 1e3));
                line(&format!(
                    "{:>4.0}s  {:>9} pps  lost {:>6}  reordered {:>5}  other {:>5}  latency us p50 {} p99 {}",
                    elapsed.as_secs_f64(),
                    t.stamped - at_line.stamped,
                    t.lost_total() - at_line.lost_total().min(t.lost_total()),
                    t.reordered_total() - at_line.reordered_total(),
                    t.other - at_line.other,
                    us(interval.quantile(0.5)),
                    us(interval.quantile(0.99)),
                ));
            }
            at_line = Tally {
                flows: t.flows.clone(),
                latency: Histogram::default(),
                ..t.clone()
            };
            interval = Histogram::default();
            next_line += Duration::from_secs(1);
        }
        let done = stop.load(Ordering::Relaxed)
            || end.is_some_and(|e| elapsed >= e)
            || a.count.is_some_and(|c| t.stamped >= c)
            || idle.is_some_and(|i| t.stamped > 0 && last_stamped.elapsed() >= i);
        if done {
            break;
        }
    }
    t.kernel_drops = port.kernel_drops();
    Ok((t, start.elapsed().as_secs_f64()))
}

/// Runs `gateway pktgen receive`.
///
/// # Errors
/// Bad arguments, the interface cannot be opened.
pub fn main(a: &Args) -> Result<()> {
    if a.seconds.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
        bail!("--seconds must be a positive number");
    }
    if a.idle.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
        bail!("--idle must be a positive number");
    }
    let (t, secs) = receive(a, |l| {
        if !a.json {
            println!("{l}");
        } else {
            eprintln!("{l}");
        }
    })?;
    if a.json {
        println!("{}", t.json(secs));
    } else {
        print!("{}", t.text(secs));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<Vec<u8>> {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            spec: crate::tools::pktgen::Spec,
        }
        let cases: [&[&str]; 6] = [
            &[],
            &["--l4", "tcp", "--dst", "fd00::2", "--src", "fd00::1"],
            &["--kind", "vxlan"],
            &["--kind", "geneve"],
            &[
                "--kind",
                "gtpu",
                "--inner-src",
                "fd00::1",
                "--inner-dst",
                "fd00::2",
            ],
            &["--kind", "ipip", "--src", "fd00::1", "--dst", "fd00::2"],
        ];
        cases
            .iter()
            .map(|a| {
                let spec = T::parse_from([&["t"], *a].concat()).spec;
                crate::tools::pktgen::sender(&spec, 128)
                    .unwrap()
                    .render(7, 9)
            })
            .collect()
    }

    #[test]
    fn the_stamp_is_found_under_every_kind_of_header() {
        for f in frames() {
            let stamp = find_stamp(&f).unwrap();
            assert_eq!(read_stamp(stamp), Some((1, 7, 9)));
        }
    }

    #[test]
    fn truncated_or_mangled_frames_never_panic_the_walker() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for f in frames() {
            for n in 0..f.len() {
                let _ = find_stamp(&f[..n]);
            }
            for _ in 0..2000 {
                let mut g = f.clone();
                for _ in 0..4 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let at = (x as usize) % g.len();
                    g[at] = (x >> 32) as u8;
                }
                let _ = find_stamp(&g);
            }
        }
    }

    #[test]
    fn histogram_quantiles_are_within_a_sixteenth() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 10);
        }
        for (q, exact) in [(0.5, 500_000.0), (0.99, 990_000.0), (0.999, 999_000.0)] {
            let got = h.quantile(q).unwrap() as f64;
            assert!(
                (got - exact).abs() / exact <= 1.0 / 16.0,
                "q{q}: {got} vs {exact}"
            );
        }
        assert_eq!(h.quantile(0.0), Some(10));
        let top = h.quantile(1.0).unwrap() as f64;
        assert!(top <= 1e6 && (1e6 - top) / 1e6 <= 1.0 / 16.0, "{top}");
        assert_eq!(Histogram::bucket(u64::MAX), BUCKETS - 1);
        assert!(Histogram::default().quantile(0.5).is_none());
    }

    #[test]
    fn losses_and_reordering_are_counted_per_flow() {
        let mut t = Tally::default();
        // Two flows: even and odd sequence numbers. Seq 3 is lost, 4 comes after 6.
        for seq in [0u32, 1, 2, 5, 6, 4, 7] {
            t.stamped(2, seq, 100, 150);
        }
        assert_eq!(t.flows[0].received, 4);
        assert_eq!(t.flows[1].received, 3);
        assert_eq!((t.lost(0), t.lost(1)), (0, 1));
        assert_eq!((t.flows[0].reordered, t.flows[1].reordered), (1, 0));
        assert_eq!(t.latency.quantile(0.5), Some(50));
    }

    #[test]
    fn sequence_numbers_carry_on_across_the_u32_wrap() {
        let mut t = Tally::default();
        for seq in [u32::MAX - 1, u32::MAX, 0, 1] {
            t.stamped(1, seq, 0, 0);
        }
        assert_eq!(t.flows[0].reordered, 0);
        assert_eq!(t.flows[0].max_seq, i64::from(u32::MAX) + 2);
        assert!(t.latency.is_empty());
    }
}
