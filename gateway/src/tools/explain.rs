//! `gateway explain` from the command line: the frame from `--hex`, a capture or pktgen's
//! flags, explained on a snapshot built from `--config` or by a running gateway through
//! `--socket` (whose control thread answers with [`crate::trace::explain`]).

use crate::trace::{explain, parse_hex};
use serde_json::Value;

/// Frames `explain` reads from one pcap file without `--index`, at most.
pub const PCAP_FRAMES_MAX: usize = 1000;

/// What `gateway explain` is asked: where the snapshot comes from, the input port, and the
/// frame.
#[derive(Debug, Clone, clap::Args)]
pub struct ExplainArgs {
    /// A configuration file to build the snapshot from.
    #[arg(long, required_unless_present = "socket", conflicts_with = "socket")]
    pub config: Option<std::path::PathBuf>,
    /// A running gateway's --control-socket.
    #[arg(long)]
    pub socket: Option<std::path::PathBuf>,
    /// The input port (default: the first).
    #[arg(long = "port")]
    pub in_port: Option<String>,
    /// The frame in hex, from its Ethernet header.
    #[arg(long, conflicts_with = "pcap")]
    pub hex: Option<String>,
    /// A pcap or pcapng file.
    #[arg(long)]
    pub pcap: Option<std::path::PathBuf>,
    /// Only this frame of --pcap, counted from 1 as tshark does.
    #[arg(long, requires = "pcap")]
    pub index: Option<usize>,
    /// One JSON object a frame instead of text.
    #[arg(long)]
    pub json: bool,
    /// Frame built from pktgen's flags when neither --hex nor --pcap is given.
    #[command(flatten)]
    pub spec: crate::tools::pktgen::Spec,
}

/// The frames `explain` looks at, and whether they were built here (and so get addressed to
/// the input port's MAC). `mac` addresses frames a pcap reader synthesises from Linux cooked
/// captures, as a pcap port's own MAC does.
fn explain_frames(a: &ExplainArgs, mac: [u8; 6]) -> anyhow::Result<(Vec<Vec<u8>>, bool)> {
    use anyhow::Context;
    if let Some(h) = &a.hex {
        return Ok((vec![parse_hex(h).map_err(anyhow::Error::msg)?], false));
    }
    let Some(path) = &a.pcap else {
        let f = crate::tools::pktgen::sender(&a.spec, a.spec.size)?.render(0, 0);
        return Ok((vec![f], true));
    };
    let mut r = datapath::port::pcap::PcapReader::open(path, mac)
        .map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))?;
    let mut buf = datapath::pipeline::batch::Buf::new();
    let mut frames = Vec::new();
    let mut n = 0;
    loop {
        use datapath::port::pcap::Record as R;
        let got = r
            .next_into(&mut buf)
            .map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))
            .context("reading the capture")?;
        match got {
            R::End => break,
            R::Frame | R::Oversize => n += 1,
        }
        let frame = if got == R::Frame {
            buf.frame().to_vec()
        } else {
            vec![0; 16 * 1024]
        };
        match a.index {
            Some(k) if k == n => return Ok((vec![frame], false)),
            Some(_) => {}
            None => {
                frames.push(frame);
                if frames.len() == PCAP_FRAMES_MAX {
                    eprintln!("explaining the first {PCAP_FRAMES_MAX} frames only (use --index)");
                    break;
                }
            }
        }
    }
    if let Some(k) = a.index {
        anyhow::bail!("{} holds {n} frames, not {k}", path.display());
    }
    Ok((frames, false))
}

/// `gateway explain`: each frame's record, rendered ([`crate::trace::render`]).
///
/// # Errors
/// The configuration, the frames, or the socket.
pub fn explain_cli(a: &ExplainArgs) -> anyhow::Result<Vec<Value>> {
    if let Some(path) = &a.config {
        // Any core count: a configuration written for a larger machine explains here too.
        let cfg = config::load_file(path, config::Machine { cores: 4096 })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let ports: Vec<String> = cfg.ports.iter().map(|p| p.name.clone()).collect();
        let p = match &a.in_port {
            Some(name) => ports
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| anyhow::anyhow!("no port named {name:?} in {}", path.display()))?,
            None => 0,
        };
        let (fib, routes) = crate::tables::build_fib_with_routes(&cfg, None)?;
        let mac = fib.port(p as u8).map(|i| i.mac).unwrap_or_default();
        let (frames, built) = explain_frames(a, mac)?;
        Ok(frames
            .into_iter()
            .map(|mut f| {
                if built {
                    f[..6].copy_from_slice(&mac);
                }
                explain(&f, p as u8, &fib, Some(&routes), &ports)
            })
            .collect())
    } else if let Some(socket) = &a.socket {
        let port = a.in_port.as_deref().unwrap_or("-");
        // The port's MAC is the gateway's to know: `to-port` has it fill it in.
        let (frames, built) = explain_frames(a, [0; 6])?;
        let mut out = Vec::new();
        for f in frames {
            let hex: String = f.iter().map(|b| format!("{b:02x}")).collect();
            let mut line = format!("explain {port} {hex}");
            if built {
                line += " to-port";
            }
            let answer = crate::control::request(socket, &line)?;
            if answer.starts_with("error") {
                anyhow::bail!("{}", answer.trim().trim_start_matches("error: "));
            }
            out.push(serde_json::from_str(&answer)?);
        }
        Ok(out)
    } else {
        anyhow::bail!("explain needs --config or --socket")
    }
}
