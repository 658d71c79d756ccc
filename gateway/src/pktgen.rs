//! `gateway pktgen`: plain and tunnelled test traffic, sent through the kernel's fastest path
//! on veth (BPF live frames: an XDP program that writes the frame and transmits it, run by
//! `BPF_PROG_RUN`; see [`datapath::port::bpf::run_live_frames`]) or written to a pcap file.
//!
//! Flows vary over the UDP source port (outer for tunnels, whose checksum is then zero, as
//! VXLAN and GTP-U senders commonly send it over IPv4). Sizes are Ethernet frame sizes with
//! the 4-byte FCS counted, as Pktgen-DPDK and RFC 2544 count them: `--size 64` sends 60 bytes.

use anyhow::{bail, Context, Result};
use datapath::craft::{
    gtpu_payload, ipv4_frame, ipv4_udp_frame, udp_frame, vxlan_payload, UdpSpec,
};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// What to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// UDP over IPv4.
    Plain4,
    /// UDP over IPv6 (one flow: the UDP checksum is mandatory there).
    Plain6,
    /// UDP over IPv4 inside VXLAN.
    Vxlan,
    /// UDP over IPv4 inside a GTP-U G-PDU with a PDU Session Container.
    Gtpu,
    /// UDP over IPv4 inside IPv4 (IPIP).
    Ipip,
}

/// The traffic's shape and addresses.
#[derive(Debug, Clone, clap::Args)]
pub struct Spec {
    /// Traffic kind.
    #[arg(long, value_enum, default_value = "plain4")]
    pub kind: Kind,
    /// Ethernet frame size with FCS (64..=1518); raised to the smallest the kind allows.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Flows: consecutive UDP source ports from 10000 (the outer ones for tunnels).
    #[arg(long, default_value_t = 1)]
    pub flows: u16,
    /// Source MAC.
    #[arg(long, default_value = "02:00:00:00:00:99")]
    pub src_mac: String,
    /// Destination MAC (the gateway's port).
    #[arg(long, default_value = "02:00:00:00:00:01")]
    pub dst_mac: String,
    /// Outer source address (the only one for plain kinds).
    #[arg(long, default_value = "192.0.2.10")]
    pub src: IpAddr,
    /// Outer destination: the tunnel endpoint, or the destination for plain kinds.
    #[arg(long, default_value = "192.0.2.1")]
    pub dst: IpAddr,
    /// Inner source for tunnel kinds.
    #[arg(long, default_value = "10.46.0.7")]
    pub inner_src: Ipv4Addr,
    /// Inner destination for tunnel kinds.
    #[arg(long, default_value = "10.244.9.9")]
    pub inner_dst: Ipv4Addr,
    /// Inner destination MAC for VXLAN (the decapsulating VTEP's).
    #[arg(long, default_value = "02:00:00:00:00:01")]
    pub inner_mac: String,
    /// VXLAN VNI.
    #[arg(long, default_value_t = 4096)]
    pub vni: u32,
    /// VXLAN UDP port.
    #[arg(long, default_value_t = 4789)]
    pub vxlan_port: u16,
    /// GTP-U TEID.
    #[arg(long, default_value_t = 0x1001)]
    pub teid: u32,
    /// GTP-U QFI (in the PDU Session Container).
    #[arg(long, default_value_t = 9)]
    pub qfi: u8,
}

const FIRST_PORT: u16 = 10000;

/// A MAC address from its colon-separated text.
///
/// # Errors
/// Not a MAC address.
pub fn mac(s: &str) -> Result<[u8; 6]> {
    s.parse::<config::MacAddr>()
        .map(|m| m.0)
        .map_err(|e| anyhow::anyhow!("{s}: {e}"))
}

fn v4(a: IpAddr) -> Result<u32> {
    match a {
        IpAddr::V4(a) => Ok(u32::from(a)),
        IpAddr::V6(_) => bail!("{a}: this kind needs IPv4 outer addresses"),
    }
}

/// The template frame (without FCS) and the offset of the UDP source port that varies.
///
/// # Errors
/// Malformed MACs, address families that do not fit the kind, IPv6 with several flows.
pub fn template(s: &Spec) -> Result<(Vec<u8>, usize)> {
    let (src_mac, dst_mac) = (mac(&s.src_mac)?, mac(&s.dst_mac)?);
    let wire = s.size.clamp(64, 1518) - 4;
    let inner = |before: usize| {
        // An IPv4/UDP packet filling what the `before` bytes of outer headers leave.
        let pay = wire.saturating_sub(before + 20 + 8);
        let f = udp_frame(&UdpSpec {
            src_mac: [0; 6],
            dst_mac: [0; 6],
            src: IpAddr::V4(s.inner_src),
            dst: IpAddr::V4(s.inner_dst),
            src_port: 40000,
            dst_port: 9,
            ttl: 64,
            payload_len: pay,
        });
        f[14..].to_vec()
    };
    let (mut f, sport_at) = match s.kind {
        Kind::Plain4 | Kind::Plain6 => {
            if s.kind == Kind::Plain6 && s.flows > 1 {
                bail!("plain6 sends one flow (varying a port would need the UDP checksum redone)");
            }
            if s.src.is_ipv4() != s.dst.is_ipv4() || s.src.is_ipv4() == (s.kind == Kind::Plain6) {
                bail!(
                    "--src and --dst must both be IPv{}",
                    if s.kind == Kind::Plain6 { 6 } else { 4 }
                );
            }
            let ip = if s.src.is_ipv4() { 20 } else { 40 };
            let f = udp_frame(&UdpSpec {
                src_mac,
                dst_mac,
                src: s.src,
                dst: s.dst,
                src_port: FIRST_PORT,
                dst_port: 9,
                ttl: 64,
                payload_len: wire.saturating_sub(14 + ip + 8),
            });
            (f, 14 + ip)
        }
        Kind::Vxlan => {
            let mut eth = vec![0u8; 14];
            eth[..6].copy_from_slice(&mac(&s.inner_mac)?);
            eth[6..12].copy_from_slice(&src_mac);
            eth[12..14].copy_from_slice(&[0x08, 0x00]);
            eth.extend(inner(14 + 20 + 8 + 8 + 14));
            let f = ipv4_udp_frame(
                src_mac,
                dst_mac,
                (v4(s.src)?, FIRST_PORT),
                (v4(s.dst)?, s.vxlan_port),
                &vxlan_payload(s.vni, &eth),
            );
            (f, 34)
        }
        Kind::Gtpu => {
            let g = gtpu_payload(s.teid, Some(s.qfi), &inner(14 + 20 + 8 + 16));
            let f = ipv4_udp_frame(
                src_mac,
                dst_mac,
                (v4(s.src)?, FIRST_PORT),
                (v4(s.dst)?, 2152),
                &g,
            );
            (f, 34)
        }
        Kind::Ipip => {
            let f = ipv4_frame(src_mac, dst_mac, v4(s.src)?, v4(s.dst)?, 4, &inner(14 + 20));
            // IPIP has no port of its own: the inner source port varies.
            (f, 14 + 20 + 20)
        }
    };
    if let Some(p) = f.get_mut(sport_at..sport_at + 2) {
        p.copy_from_slice(&FIRST_PORT.to_be_bytes());
    }
    if s.kind != Kind::Plain6 && f.len() >= sport_at + 8 {
        // Zero UDP checksum (allowed over IPv4), so any source port is valid.
        f[sport_at + 6] = 0;
        f[sport_at + 7] = 0;
    }
    Ok((f, sport_at))
}

/// Writes `count` frames of the flows to a pcap file (for tcpreplay, Pktgen-DPDK's pcap mode,
/// or tshark); returns the frame length.
///
/// # Errors
/// Building the template or writing the file.
pub fn to_pcap(s: &Spec, count: u64, path: &std::path::Path) -> Result<usize> {
    let (mut f, at) = template(s)?;
    let mut w = datapath::port::pcap::PcapWriter::create(path)
        .with_context(|| format!("creating {}", path.display()))?;
    for i in 0..count {
        let port = FIRST_PORT + (i % u64::from(s.flows.max(1))) as u16;
        f[at..at + 2].copy_from_slice(&port.to_be_bytes());
        w.write(&f, i * 1000)?;
    }
    w.flush()?;
    Ok(f.len())
}

/// What a send did.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// Frames transmitted.
    pub frames: u64,
    /// Time taken.
    pub elapsed: Duration,
    /// Frame length without FCS.
    pub frame_len: usize,
}

/// Sends on `interface` (in this process's namespace) for `seconds` or `count` frames,
/// whichever ends first, at most `rate` frames per second when given.
///
/// # Errors
/// No such interface, no privilege, a kernel without live frames.
pub fn send(
    s: &Spec,
    interface: &str,
    seconds: f64,
    count: Option<u64>,
    rate: Option<u64>,
) -> Result<Sent> {
    use datapath::port::bpf;
    let (f, at) = template(s)?;
    let vary = (s.flows > 1).then_some((at, s.flows));
    let insns = bpf::sender_program(&f, vary).context("frame too large for the sender")?;
    let prog = bpf::load_xdp(&insns, "gw_pktgen")?;
    let ifindex = bpf::ifindex(interface)?;
    let limit = count.unwrap_or(u64::MAX);
    let deadline = Duration::from_secs_f64(seconds.max(0.0));
    // Chunks of about 10 ms: at a set rate, one chunk per tick; otherwise as fast as it goes.
    let chunk = rate.map_or(200_000, |r| (r / 100).max(1));
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < limit && start.elapsed() < deadline {
        let n = chunk.min(limit - sent).min(u64::from(u32::MAX)) as u32;
        bpf::run_live_frames(&prog, &f, n, ifindex).context("BPF live-frames run")?;
        sent += u64::from(n);
        if let Some(r) = rate {
            let due = Duration::from_secs_f64(sent as f64 / r as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    Ok(Sent {
        frames: sent,
        elapsed: start.elapsed(),
        frame_len: f.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        spec: Spec,
    }

    fn spec(args: &[&str]) -> Spec {
        T::parse_from([&["t"], args].concat()).spec
    }

    #[test]
    fn templates_have_the_requested_size_and_parse_back() {
        for kind in ["plain4", "vxlan", "gtpu", "ipip"] {
            let (f, at) = template(&spec(&["--kind", kind, "--size", "128"])).unwrap();
            assert_eq!(f.len(), 124, "{kind}");
            assert_eq!(u16::from_be_bytes([f[at], f[at + 1]]), FIRST_PORT, "{kind}");
        }
        // 64-byte tunnel frames cannot hold their headers: the smallest that can is sent.
        let (f, _) = template(&spec(&["--kind", "gtpu"])).unwrap();
        assert!(f.len() > 60);
        assert!(template(&spec(&["--kind", "plain6", "--flows", "2"])).is_err());
    }
}
