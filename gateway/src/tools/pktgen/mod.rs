//! `gateway pktgen`: plain and tunnelled test traffic, and a receiver that measures it.
//!
//! Sending goes through the kernel's fastest path on veth (BPF live frames: an XDP program
//! that writes each frame and transmits it, run by `BPF_PROG_RUN`; see
//! [`datapath::port::live_frames::run_live_frames`]), or into a pcap file. Every frame carries a
//! stamp (see [`frame`]) with its sequence number and send time, which `gateway pktgen
//! receive` (see [`recv`]) turns into per-flow counts, loss, reordering and latency.
//!
//! Flows: frame `n` belongs to flow `n % flows`, and the fields named by `--vary` are set to
//! their first value plus the flow number (Pktgen-DPDK's range mode, with every range
//! stepping together). Sizes are Ethernet frame sizes with the 4-byte FCS counted, as
//! Pktgen-DPDK and RFC 2544 count them: `--size 64` sends 60 bytes.

pub mod frame;
pub mod recv;

use anyhow::{bail, Context, Result};
use datapath::port::live_frames::LiveSender;
use frame::L4;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// UDP or TCP over IPv4 or IPv6 (the family of --src and --dst).
    #[value(alias = "plain4", alias = "plain6")]
    Plain,
    /// An Ethernet frame inside VXLAN over UDP/IPv4.
    Vxlan,
    /// An IP packet inside a GTP-U G-PDU over UDP/IPv4, with a PDU Session Container unless
    /// --no-psc.
    Gtpu,
    /// IP in IP: 4in4, 6in4, 4in6 or 6in6 from the families of the outer and inner addresses.
    Ipip,
    /// An Ethernet frame inside Geneve (Protocol Type 0x6558, no options) over UDP/IPv4, as
    /// Cilium sends it.
    Geneve,
}

/// The traffic: its kind, shape and addresses. Also the `[traffic]` table of a profile
/// (keys are the flag names without `--`).
#[derive(Debug, Clone, clap::Args, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Spec {
    /// Traffic kind.
    #[arg(long, value_enum, default_value = "plain")]
    pub kind: Kind,
    /// The innermost transport.
    #[arg(long, value_enum, default_value = "udp")]
    pub l4: L4,
    /// Ethernet frame size with FCS (64..=1518); raised to the smallest the kind allows.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// IMIX instead of one size: 7:4:1 of 64, 570 and 1518 bytes on the wire (64 raised to
    /// the smallest the kind allows).
    #[arg(long)]
    pub imix: bool,
    /// Number of flows; frame n belongs to flow n % flows.
    #[arg(long, default_value_t = 1)]
    pub flows: u16,
    /// Fields that step with the flow number, comma-separated: sport, dport, src, dst
    /// (innermost; the last 32 bits of an IPv6 address), outer-sport, teid, vni. Default:
    /// outer-sport for VXLAN, Geneve and GTP-U, sport otherwise.
    #[arg(long, value_delimiter = ',')]
    pub vary: Vec<String>,
    /// Source MAC.
    #[arg(long, default_value = "02:00:00:00:00:99")]
    pub src_mac: String,
    /// Destination MAC (the gateway's port).
    #[arg(long, default_value = "02:00:00:00:00:01")]
    pub dst_mac: String,
    /// Outer source address (the only one for plain traffic).
    #[arg(long, default_value = "192.0.2.10")]
    pub src: IpAddr,
    /// Outer destination: the tunnel endpoint, or the destination of plain traffic.
    #[arg(long, default_value = "192.0.2.1")]
    pub dst: IpAddr,
    /// Inner source of tunnelled traffic.
    #[arg(long, default_value = "10.46.0.7")]
    pub inner_src: IpAddr,
    /// Inner destination of tunnelled traffic.
    #[arg(long, default_value = "10.244.9.9")]
    pub inner_dst: IpAddr,
    /// Innermost source port (the first, when it varies).
    #[arg(long, default_value_t = 10000)]
    pub sport: u16,
    /// Innermost destination port.
    #[arg(long, default_value_t = 9)]
    pub dport: u16,
    /// Outer UDP source port of VXLAN, Geneve and GTP-U.
    #[arg(long, default_value_t = 10000)]
    pub outer_sport: u16,
    /// Inner destination MAC for VXLAN and Geneve (the decapsulating endpoint's).
    #[arg(long, default_value = "02:00:00:00:00:01")]
    pub inner_mac: String,
    /// VXLAN or Geneve VNI.
    #[arg(long, default_value_t = 4096)]
    pub vni: u32,
    /// VXLAN UDP port.
    #[arg(long, default_value_t = 4789)]
    pub vxlan_port: u16,
    /// Geneve UDP port.
    #[arg(long, default_value_t = 6081)]
    pub geneve_port: u16,
    /// GTP-U TEID (decimal or 0x hex).
    #[arg(long, default_value_t = 0x1001, value_parser = number_u32)]
    pub teid: u32,
    /// GTP-U QFI (in the PDU Session Container).
    #[arg(long, default_value_t = 9)]
    pub qfi: u8,
    /// GTP-U without the PDU Session Container (and so without a QFI).
    #[arg(long)]
    pub no_psc: bool,
}

impl Default for Spec {
    fn default() -> Self {
        use clap::{Args, FromArgMatches};
        // The flags' defaults, so a profile and the command line agree.
        let cmd = Spec::augment_args(clap::Command::new("pktgen"));
        match Spec::from_arg_matches(&cmd.get_matches_from(["pktgen"])) {
            Ok(s) => s,
            Err(e) => e.exit(),
        }
    }
}

/// How long and how fast: also the `[run]` table of a profile.
#[derive(Debug, Clone, clap::Args, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Run {
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Stop after this many frames.
    #[arg(long)]
    pub count: Option<u64>,
    /// Frames per second, or a percentage of the line rate ("25%"; see --link-gbps).
    #[arg(long)]
    pub rate: Option<String>,
    /// The link speed a percentage rate is of (default: the interface's, when it has one).
    #[arg(long)]
    pub link_gbps: Option<f64>,
}

impl Default for Run {
    fn default() -> Self {
        Run {
            seconds: 5.0,
            count: None,
            rate: None,
            link_gbps: None,
        }
    }
}

/// A profile file: `[traffic]` and `[run]`, each key a flag's name.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Profile {
    /// The traffic.
    pub traffic: Spec,
    /// Duration and rate.
    pub run: Run,
}

impl Profile {
    /// Reads a profile; errors name the key and line.
    ///
    /// # Errors
    /// Unreadable file, TOML syntax, unknown keys or bad values.
    pub fn load(path: &Path) -> Result<Profile> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

/// A MAC address from its colon-separated text.
///
/// # Errors
/// Not a MAC address.
pub fn mac(s: &str) -> Result<[u8; 6]> {
    s.parse::<config::MacAddr>()
        .map(|m| m.0)
        .map_err(|e| anyhow::anyhow!("{s}: {e}"))
}

/// IMIX sizes on the wire (with FCS) and their weights.
pub const IMIX: [(usize, u64); 3] = [(64, 7), (570, 4), (1518, 1)];

fn same_family(a: IpAddr, b: IpAddr, what: &str) -> Result<()> {
    if a.is_ipv4() != b.is_ipv4() {
        bail!("{what}: {a} and {b} are of different families");
    }
    Ok(())
}

/// A number in decimal or with a `0x` prefix in hex, as TEIDs are written.
fn number_u32(s: &str) -> Result<u32, String> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("{s:?}: {e}"))
}

/// The frame of `s` at `size` bytes on the wire (FCS included), raised to the smallest the
/// traffic allows.
///
/// # Errors
/// Malformed MACs, mixed families, a tunnel over IPv6 that needs a UDP checksum, a field
/// that cannot vary in this traffic.
pub fn sender(s: &Spec, size: usize) -> Result<LiveSender> {
    let wire = size.clamp(64, 1518) - 4;
    let build = |pad: usize| -> Result<frame::Part> {
        let (src_mac, dst_mac) = (mac(&s.src_mac)?, mac(&s.dst_mac)?);
        let (isrc, idst) = match s.kind {
            Kind::Plain => (s.src, s.dst),
            _ => (s.inner_src, s.inner_dst),
        };
        same_family(isrc, idst, "the innermost addresses")?;
        same_family(s.src, s.dst, "the outer addresses")?;
        let proto = match s.l4 {
            L4::Udp => 17,
            L4::Tcp => 6,
        };
        let seg = frame::transport(s.l4, s.sport, s.dport, s.flows.max(1), pad);
        let inner = frame::ip(isrc, idst, proto, seg, true);
        let outer = match s.kind {
            Kind::Plain => inner,
            Kind::Ipip => frame::ip(s.src, s.dst, frame::ip_in_ip(isrc), inner, false),
            Kind::Vxlan | Kind::Geneve | Kind::Gtpu => {
                if !s.src.is_ipv4() {
                    bail!("VXLAN, Geneve and GTP-U are sent over IPv4 only");
                }
                let payload = if s.kind != Kind::Gtpu {
                    if s.vni > 0xff_ffff {
                        bail!("--vni {} does not fit 24 bits", s.vni);
                    }
                    let eth =
                        frame::ethernet(mac(&s.inner_mac)?, src_mac, frame::ethertype(isrc), inner);
                    if s.kind == Kind::Vxlan {
                        frame::udp(s.outer_sport, s.vxlan_port, frame::vxlan(s.vni, eth))
                    } else {
                        frame::udp(s.outer_sport, s.geneve_port, frame::geneve(s.vni, eth))
                    }
                } else {
                    let qfi = (!s.no_psc).then_some(s.qfi & 0x3f);
                    frame::udp(s.outer_sport, 2152, frame::gtpu(s.teid, qfi, inner))
                };
                frame::ip(s.src, s.dst, 17, payload, false)
            }
        };
        Ok(frame::ethernet(
            dst_mac,
            src_mac,
            frame::ethertype(s.src),
            outer,
        ))
    };
    let smallest = build(0)?.len();
    let part = build(wire.saturating_sub(smallest))?;
    let vary = if s.vary.is_empty() {
        vec![match s.kind {
            Kind::Vxlan | Kind::Geneve | Kind::Gtpu => "outer-sport".to_string(),
            _ => "sport".to_string(),
        }]
    } else {
        s.vary.clone()
    };
    let vary = if s.flows > 1 { vary } else { Vec::new() };
    frame::finish(part, s.flows, &vary).map_err(anyhow::Error::msg)
}

/// The senders to cycle through, each with its weight: one, or the three IMIX sizes.
///
/// # Errors
/// As [`sender`].
pub fn senders(s: &Spec) -> Result<Vec<(LiveSender, u64)>> {
    if s.imix {
        IMIX.iter()
            .map(|&(size, w)| Ok((sender(s, size)?, w)))
            .collect()
    } else {
        Ok(vec![(sender(s, s.size)?, 1)])
    }
}

/// A one-line description of the sizes sent.
pub fn describe_sizes(senders: &[(LiveSender, u64)]) -> String {
    if senders.len() == 1 {
        format!("{} bytes (+4 FCS)", senders[0].0.frame.len())
    } else {
        let parts: Vec<String> = senders
            .iter()
            .map(|(s, w)| format!("{w}x{}", s.frame.len() + 4))
            .collect();
        format!("IMIX {} bytes on the wire", parts.join(" : "))
    }
}

/// Writes `count` frames to a pcap file (for tcpreplay, Pktgen-DPDK's pcap mode, or tshark),
/// stamped with their sequence numbers and no send time; IMIX frames interleave 7:4:1 frame
/// by frame. Returns the sizes' description.
///
/// # Errors
/// Building the frames or writing the file.
pub fn to_pcap(s: &Spec, count: u64, path: &Path) -> Result<String> {
    let senders = senders(s)?;
    let cycle: Vec<usize> = senders
        .iter()
        .enumerate()
        .flat_map(|(i, (_, w))| std::iter::repeat_n(i, *w as usize))
        .collect();
    let mut w = datapath::port::pcap::PcapWriter::create(path)
        .with_context(|| format!("creating {}", path.display()))?;
    for n in 0..count {
        let (snd, _) = &senders[cycle[(n % cycle.len() as u64) as usize]];
        w.write(&snd.render(n as u32, 0), n * 1000)?;
    }
    w.flush()?;
    Ok(describe_sizes(&senders))
}

/// What a send did.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// Frames transmitted.
    pub frames: u64,
    /// Bytes on the wire, FCS included.
    pub wire_bytes: u64,
    /// Time taken.
    pub elapsed: Duration,
}

/// The rate in frames per second from `--rate`: a number, or a percentage of the line rate
/// (`link_bps`) for frames averaging `avg_wire` bytes (each with 20 more of preamble and gap).
///
/// # Errors
/// Not a number or percentage, or a percentage with no link speed.
pub fn parse_rate(rate: &str, link_bps: Option<f64>, avg_wire: f64) -> Result<u64> {
    if let Some(pct) = rate.strip_suffix('%') {
        let pct: f64 = pct.trim().parse().context("--rate percentage")?;
        let Some(bps) = link_bps else {
            bail!(
                "--rate {rate} needs a link speed: this interface reports none; give --link-gbps"
            );
        };
        if !(pct > 0.0 && pct <= 100.0) {
            bail!("--rate {rate}: a percentage is in (0, 100]");
        }
        Ok((bps * pct / 100.0 / ((avg_wire + 20.0) * 8.0)).max(1.0) as u64)
    } else {
        let r: u64 = rate.trim().parse().context("--rate in frames per second")?;
        if r == 0 {
            bail!("--rate must be at least 1");
        }
        Ok(r)
    }
}

fn link_bps(interface: &str, gbps: Option<f64>) -> Option<f64> {
    gbps.map(|g| g * 1e9).or_else(|| {
        let s = std::fs::read_to_string(format!("/sys/class/net/{interface}/speed")).ok()?;
        let mbps: f64 = s.trim().parse().ok()?;
        (mbps > 0.0).then_some(mbps * 1e6)
    })
}

/// A socket on `interface` for the generator's outputs and the receiver: AF_XDP (with the
/// gateway's XDP program attached for one queue) or AF_PACKET.
///
/// # Errors
/// No such interface, no privilege, another XDP program attached.
pub fn open_port(interface: &str, xdp: bool) -> Result<Box<dyn datapath::port::Port>> {
    use datapath::port::af_xdp::{AfXdpPort, XdpAttachment};
    if xdp {
        let att = XdpAttachment::attach(interface, 1, false)
            .with_context(|| format!("XDP on {interface}"))?;
        Ok(Box::new(
            AfXdpPort::open(&att, 0, &datapath::port::af_xdp::frame_memory(1)?)
                .with_context(|| format!("AF_XDP on {interface}"))?,
        ))
    } else {
        Ok(Box::new(
            datapath::port::af_packet::AfPacketPort::open(interface)
                .with_context(|| format!("AF_PACKET on {interface}"))?,
        ))
    }
}

/// How frames leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// BPF live frames: an XDP program writes and transmits each frame in the kernel (the
    /// fastest sender on veth: no socket, no copy from userspace).
    Live,
    /// An AF_XDP socket (the program builds each frame in user space).
    AfXdp,
    /// An AF_PACKET socket (`sendmmsg`).
    AfPacket,
}

/// Keeps `run`'s rate, count and duration: `burst(n)` sends about `n` frames and returns
/// how many frames and wire bytes it sent. A set rate is kept in bursts of what is due
/// `tick` ahead: 20 ms for live frames (a live-frames call has a fixed cost of
/// milliseconds here: it sets up and tears down a page pool), 1 ms through a socket, so
/// latency measured at a set rate is not a burst's queueing; free-running bursts are
/// `free_burst` frames.
fn pace(
    run: &Run,
    rate: Option<u64>,
    (free_burst, tick): (u64, Duration),
    burst: impl FnMut(u64) -> Result<(u64, u64)>,
) -> Result<Sent> {
    let limit = run.count.unwrap_or(u64::MAX);
    let deadline = Duration::from_secs_f64(run.seconds.max(0.0));
    // SIGINT or SIGTERM ends the run early, with what was sent reported as usual.
    let stop = Arc::new(AtomicBool::new(false));
    let mut handlers = Vec::new();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        handlers.push(signal_hook::flag::register(sig, Arc::clone(&stop))?);
    }
    let result = pace_until(limit, deadline, &stop, rate, (free_burst, tick), burst);
    for h in handlers {
        signal_hook::low_level::unregister(h);
    }
    result
}

fn pace_until(
    limit: u64,
    deadline: Duration,
    stop: &AtomicBool,
    rate: Option<u64>,
    (free_burst, tick): (u64, Duration),
    mut burst: impl FnMut(u64) -> Result<(u64, u64)>,
) -> Result<Sent> {
    let start = Instant::now();
    let (mut sent, mut bytes) = (0u64, 0u64);
    while sent < limit && start.elapsed() < deadline && !stop.load(Ordering::Relaxed) {
        let want = match rate {
            Some(r) => {
                let horizon = (start.elapsed() + tick).min(deadline);
                ((horizon.as_secs_f64() * r as f64) as u64).saturating_sub(sent)
            }
            None => free_burst,
        };
        let want = want.min(limit - sent);
        if want == 0 {
            std::thread::sleep(tick / 4);
            continue;
        }
        let (n, b) = burst(want)?;
        sent += n;
        bytes += b;
        if let Some(r) = rate {
            // Ahead of the rate: wait until the next burst is due.
            let due = Duration::from_secs_f64(sent as f64 / r as f64);
            if let Some(wait) = due.checked_sub(start.elapsed() + tick) {
                std::thread::sleep(wait);
            }
        }
    }
    Ok(Sent {
        frames: sent,
        wire_bytes: bytes,
        elapsed: start.elapsed(),
    })
}

/// Sends on `interface` (in this process's namespace) through `output` for `run.seconds`
/// or `run.count` frames, whichever ends first (or until SIGINT or SIGTERM), at most at `run.rate` (in bursts of what is
/// due 20 ms ahead through live frames, 1 ms through a socket). IMIX sizes go in runs of
/// each size in the 7:4:1 proportion with live frames (a live-frames call sends one size),
/// frame by frame otherwise.
///
/// # Errors
/// No such interface, no privilege, a kernel without live frames.
pub fn send(s: &Spec, interface: &str, run: &Run, output: Output) -> Result<(Sent, String)> {
    let senders = senders(s)?;
    let weight: u64 = senders.iter().map(|(_, w)| w).sum();
    let avg_wire = senders
        .iter()
        .map(|(x, w)| (x.frame.len() + 4) as f64 * *w as f64)
        .sum::<f64>()
        / weight as f64;
    let rate = run
        .rate
        .as_deref()
        .map(|r| parse_rate(r, link_bps(interface, run.link_gbps), avg_wire))
        .transpose()?;
    let sent = match output {
        Output::Live => send_live(&senders, weight, interface, run, rate)?,
        Output::AfXdp | Output::AfPacket => send_port(&senders, interface, run, rate, output)?,
    };
    Ok((sent, describe_sizes(&senders)))
}

fn send_live(
    senders: &[(LiveSender, u64)],
    weight: u64,
    interface: &str,
    run: &Run,
    rate: Option<u64>,
) -> Result<Sent> {
    use datapath::port::{bpf, live_frames};
    use std::os::fd::AsRawFd;
    let counter = live_frames::create_counter_map().context("BPF counter map (needs root)")?;
    let mut progs = Vec::new();
    for (snd, w) in senders {
        let insns = live_frames::sender_program(snd, counter.as_raw_fd())
            .context("frame too large for the sender")?;
        progs.push((bpf::load_xdp(&insns, "gw_pktgen")?, &snd.frame, *w));
    }
    let ifindex = bpf::ifindex(interface)?;
    let mut taken = live_frames::read_counter(&counter).context("BPF counter map")?;
    pace(run, rate, (200_000, Duration::from_millis(20)), |want| {
        // Split between the sizes by weight (IMIX), at least one frame of each.
        let unit = want.div_ceil(weight).max(1);
        let (mut n, mut bytes) = (0u64, 0u64);
        for (prog, f, w) in &progs {
            let k = (unit * w).min(u64::from(u32::MAX)) as u32;
            let run = live_frames::run_live_frames(prog, f, k, ifindex);
            // A signal (SIGTERM ending the run) stops the kernel's run part way: the programs'
            // counter says how many frames it sent.
            let interrupted = match run {
                Ok(()) => false,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => true,
                Err(e) => return Err(e).context("BPF live-frames run"),
            };
            let now = live_frames::read_counter(&counter).context("BPF counter map")?;
            let done = now.wrapping_sub(taken).min(u64::from(k));
            taken = now;
            n += done;
            bytes += done * (f.len() as u64 + 4);
            if interrupted {
                break;
            }
        }
        Ok((n, bytes))
    })
}

fn send_port(
    senders: &[(LiveSender, u64)],
    interface: &str,
    run: &Run,
    rate: Option<u64>,
    output: Output,
) -> Result<Sent> {
    use datapath::pipeline::batch::{Batch, BATCH};
    let mut port = open_port(interface, output == Output::AfXdp)?;
    let cycle: Vec<&LiveSender> = senders
        .iter()
        .flat_map(|(snd, w)| std::iter::repeat_n(snd, *w as usize))
        .collect();
    let mut batch = Batch::new();
    if let Some(m) = port.frame_memory() {
        batch.use_memory(&m);
    }
    let idx: Vec<u8> = (0..BATCH as u8).collect();
    let mut seq = 0u32;
    let sent = pace(run, rate, (4096, Duration::from_millis(1)), |want| {
        let (mut n, mut bytes) = (0u64, 0u64);
        while n < want {
            let k = (want - n).min(BATCH as u64) as usize;
            let now = datapath::port::live_frames::tai_ns();
            for (j, b) in batch.bufs[..k].iter_mut().enumerate() {
                let s = seq.wrapping_add(j as u32);
                let snd = cycle[s as usize % cycle.len()];
                let len = snd.frame.len();
                snd.render_into(&mut b.rx_area()[..len], s, now);
                b.set_received(len, 0);
                bytes += snd.frame.len() as u64 + 4;
            }
            batch.len = k;
            let mut taken = 0;
            let stuck = Instant::now();
            while taken < k {
                taken += port.tx(&mut batch, &idx[taken..k]);
                port.flush().context("transmit")?;
                if taken < k && stuck.elapsed() > Duration::from_secs(1) {
                    bail!("{interface}: the transmit ring has not drained for 1 s");
                }
            }
            seq = seq.wrapping_add(k as u32);
            n += k as u64;
        }
        Ok((n, bytes))
    })?;
    // A flush kicks the kernel a bounded number of times (the forwarding path must not spin on
    // a stuck ring), so the last frames may still sit in the TX ring: keep flushing a moment
    // before the socket closes with them.
    let end = Instant::now() + Duration::from_millis(200);
    while Instant::now() < end {
        port.flush().context("transmit")?;
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(sent)
}

/// `gateway pktgen`'s arguments.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    /// `receive`: count and time what arrives (run it where the traffic ends up).
    #[command(subcommand)]
    pub receive: Option<Receive>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub spec: Spec,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub run: Run,
    /// Take the traffic and run settings from this TOML profile (`[traffic]` and `[run]` tables,
    /// keys named as the flags) instead of the flags.
    #[arg(long, conflicts_with_all = ["Spec", "Run"])]
    pub profile: Option<PathBuf>,
    /// Send on this interface.
    #[arg(long, conflicts_with = "pcap")]
    pub interface: Option<String>,
    /// How frames leave the interface.
    #[arg(long, value_enum, default_value = "live")]
    pub output: Output,
    /// Write the frames to this pcap file instead (needs --count).
    #[arg(long)]
    pub pcap: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The receive sub-command.
#[derive(Debug, clap::Subcommand)]
pub enum Receive {
    /// Receive stamped traffic on an interface: per-flow counts, loss, reordering and
    /// latency, a line per second and a summary at the end.
    Receive(recv::Args),
}

/// Runs `gateway pktgen`.
///
/// # Errors
/// Bad arguments or profile, I/O.
pub fn main(a: Args) -> Result<()> {
    if let Some(Receive::Receive(r)) = a.receive {
        return recv::main(&r);
    }
    let (spec, run) = match &a.profile {
        Some(p) => {
            let p = Profile::load(p)?;
            (p.traffic, p.run)
        }
        None => (a.spec, a.run),
    };
    if let Some(path) = a.pcap {
        let Some(count) = run.count else {
            bail!("--pcap needs --count");
        };
        let sizes = to_pcap(&spec, count, &path)?;
        println!("wrote {count} frames of {sizes} to {}", path.display());
        return Ok(());
    }
    let Some(interface) = a.interface else {
        bail!("give --interface or --pcap");
    };
    let (s, sizes) = send(&spec, &interface, &run, a.output)?;
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let pps = s.frames as f64 / secs;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"frames": s.frames, "seconds": secs, "pps": pps,
                "wire_bytes": s.wire_bytes, "gbps": s.wire_bytes as f64 * 8.0 / secs / 1e9,
                "sizes": sizes})
        );
    } else {
        println!(
            "sent {} frames of {sizes} on {interface} in {secs:.2} s: {:.3} Mpps, {:.3} Gbit/s",
            s.frames,
            pps / 1e6,
            s.wire_bytes as f64 * 8.0 / secs / 1e9
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use datapath::wire::{EthernetFrame, Ipv4Packet, UdpPacket};

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        spec: Spec,
    }

    fn spec(args: &[&str]) -> Spec {
        T::parse_from([&["t"], args].concat()).spec
    }

    #[test]
    fn frames_have_the_requested_size_and_parse_back() {
        for kind in ["plain", "vxlan", "geneve", "gtpu", "ipip"] {
            let s = sender(&spec(&["--kind", kind, "--size", "128"]), 128).unwrap();
            assert_eq!(s.frame.len(), 124, "{kind}");
        }
        // 64-byte tunnel frames cannot hold their headers: the smallest that can is sent.
        let s = sender(&spec(&["--kind", "gtpu"]), 64).unwrap();
        assert!(s.frame.len() > 60);
        // Plain UDP/IPv4 fits a 64-byte frame with its stamp.
        assert_eq!(sender(&spec(&[]), 64).unwrap().frame.len(), 60);
    }

    #[test]
    fn every_frame_of_a_flow_range_has_valid_checksums_and_its_stamp() {
        let s = spec(&[
            "--flows",
            "300",
            "--vary",
            "sport,src,dst",
            "--dst",
            "10.0.0.250",
        ]);
        let snd = sender(&s, 64).unwrap();
        for seq in [0u32, 1, 299, 300, 70_000, u32::MAX] {
            let f = snd.render(seq, 0xdead_beef_0000_0001 ^ u64::from(seq));
            let eth = EthernetFrame::new_checked(&f[..]).unwrap();
            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
            assert!(ip.verify_checksum(), "seq {seq}");
            let flow = seq % 300;
            assert_eq!(ip.src(), 0xc000_020a + flow);
            assert_eq!(ip.dst(), 0x0a00_00fa + flow);
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            assert_eq!(u32::from(udp.src_port()), 10000 + flow);
            let pseudo =
                datapath::wire::udp::pseudo_header_v4(ip.src(), ip.dst(), 17, udp.len() as u16);
            assert!(udp.verify_checksum(pseudo), "seq {seq}");
            let (flows, got, ts) = frame::read_stamp(udp.payload()).unwrap();
            assert_eq!((flows, got), (300, seq));
            assert_eq!(ts, 0xdead_beef_0000_0001 ^ u64::from(seq));
        }
    }

    /// The innermost IPv4/UDP of `ip`: header checksum, UDP checksum, and the stamp.
    fn check_inner_v4(ip: &[u8], seq: u32, flows: u16) {
        let ip = Ipv4Packet::new_checked(ip).unwrap();
        assert!(ip.verify_checksum());
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        let pseudo = datapath::wire::udp::pseudo_header_v4(ip.src(), ip.dst(), 17, udp.len());
        assert!(udp.verify_checksum(pseudo), "seq {seq}");
        assert_eq!(frame::read_stamp(udp.payload()).unwrap().0, flows);
    }

    #[test]
    fn tunnelled_frames_parse_back_through_the_projects_wire_types() {
        use datapath::wire::{GtpuPacket, GtpuRepr, VxlanPacket};
        let gtpu = sender(
            &spec(&["--kind", "gtpu", "--flows", "5", "--vary", "teid,src"]),
            128,
        )
        .unwrap();
        let vxlan = sender(
            &spec(&["--kind", "vxlan", "--flows", "5", "--vary", "vni"]),
            128,
        )
        .unwrap();
        let ipip = sender(
            &spec(&["--kind", "ipip", "--flows", "5", "--vary", "dst"]),
            128,
        )
        .unwrap();
        for seq in 0..12u32 {
            let flow = seq % 5;
            let f = gtpu.render(seq, 1);
            let eth = EthernetFrame::new_checked(&f[..]).unwrap();
            let outer = Ipv4Packet::new_checked(eth.payload()).unwrap();
            assert!(outer.verify_checksum());
            let udp = UdpPacket::new_checked(outer.payload()).unwrap();
            assert_eq!((udp.dst_port(), udp.checksum()), (2152, 0));
            let g = GtpuPacket::new_checked(udp.payload()).unwrap();
            let repr = GtpuRepr::parse(&g).unwrap();
            assert_eq!(repr.teid, 0x1001 + flow);
            assert_eq!(repr.psc, Some((1, 9)));
            check_inner_v4(&udp.payload()[repr.buffer_len()..], seq, 5);

            let f = vxlan.render(seq, 1);
            let eth = EthernetFrame::new_checked(&f[..]).unwrap();
            let outer = Ipv4Packet::new_checked(eth.payload()).unwrap();
            let udp = UdpPacket::new_checked(outer.payload()).unwrap();
            let v = VxlanPacket::new_checked(udp.payload()).unwrap();
            assert_eq!(v.vni(), 4096 + flow);
            let inner = EthernetFrame::new_checked(v.payload()).unwrap();
            check_inner_v4(inner.payload(), seq, 5);

            let f = ipip.render(seq, 1);
            let eth = EthernetFrame::new_checked(&f[..]).unwrap();
            let outer = Ipv4Packet::new_checked(eth.payload()).unwrap();
            assert!(outer.verify_checksum());
            assert_eq!(outer.protocol(), 4);
            let inner = Ipv4Packet::new_checked(outer.payload()).unwrap();
            assert_eq!(inner.dst(), 0x0af4_0909 + flow);
            check_inner_v4(outer.payload(), seq, 5);
        }
    }

    #[test]
    fn ranges_that_overflow_their_field_or_do_not_exist_are_refused() {
        let s = spec(&["--flows", "2", "--sport", "65535"]);
        assert!(sender(&s, 64).unwrap_err().to_string().contains("overflow"));
        let s = spec(&["--flows", "2", "--vary", "teid"]);
        assert!(sender(&s, 64)
            .unwrap_err()
            .to_string()
            .contains("cannot vary teid"));
        let s = spec(&["--kind", "vxlan", "--src", "fd00::1", "--dst", "fd00::2"]);
        assert!(sender(&s, 128).is_err());
        let s = spec(&["--dst", "fd00::2"]);
        assert!(sender(&s, 128)
            .unwrap_err()
            .to_string()
            .contains("families"));
    }

    #[test]
    fn rates_are_frames_per_second_or_a_share_of_the_line() {
        assert_eq!(parse_rate("1000", None, 64.0).unwrap(), 1000);
        // 10 Gbit/s of 64-byte frames is 14.88 Mpps; 10 % of it 1.488 Mpps.
        assert_eq!(parse_rate("10%", Some(10e9), 64.0).unwrap(), 1_488_095);
        assert!(parse_rate("10%", None, 64.0).is_err());
        assert!(parse_rate("0", None, 64.0).is_err());
        assert!(parse_rate("150%", Some(1e9), 64.0).is_err());
    }

    #[test]
    fn a_profile_takes_flag_names_and_the_flags_defaults() {
        let p: Profile = toml::from_str(
            "[traffic]\nkind = \"gtpu\"\nflows = 8\nvary = [\"teid\"]\n[run]\nrate = \"1000\"\n",
        )
        .unwrap();
        assert_eq!(p.traffic.kind, Kind::Gtpu);
        assert_eq!(p.traffic.flows, 8);
        assert_eq!(p.traffic.teid, 0x1001);
        assert_eq!(p.run.seconds, 5.0);
        let example =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/profiles/gtpu-imix.toml");
        let p = Profile::load(&example).unwrap();
        assert!(p.traffic.imix && p.traffic.flows == 64);
        assert_eq!(senders(&p.traffic).unwrap().len(), 3);
        let e = toml::from_str::<Profile>("[traffic]\nflow = 8\n").unwrap_err();
        assert!(e.to_string().contains("flow"), "{e}");
    }
}
