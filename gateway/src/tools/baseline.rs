//! The benchmark's ceiling: a minimal AF_XDP forwarder on the gateway's own ports (receive a
//! burst, rewrite the MAC addresses, transmit), with no pipeline at all. Run in the same
//! topology as the gateway, it measures what the ports and the kernel allow, so that the
//! gateway's figure can be read as a fraction of it (`benches/netns_forwarding.sh`).

use anyhow::{Context, Result};
use datapath::pipeline::batch::Batch;
use datapath::port::af_xdp::{AfXdpPort, XdpAttachment};
use datapath::port::Port;
use datapath::stats::PortStats;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Forwards every frame from `from` to `to`, addressed from `src_mac` to `dst_mac`, on
/// `core`, until SIGINT or SIGTERM; returns the frames forwarded.
///
/// # Errors
/// Opening either port, or signal registration.
pub fn forward(
    from: &str,
    to: &str,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    core: usize,
) -> Result<u64> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let a = XdpAttachment::attach(from, 1, false).with_context(|| format!("XDP on {from}"))?;
    let b = XdpAttachment::attach(to, 1, false).with_context(|| format!("XDP on {to}"))?;
    // Both sockets on one UMEM, as the gateway's workers have them: frames move by
    // descriptor.
    let memory = datapath::port::af_xdp::frame_memory(2)?;
    let mut rx = AfXdpPort::open(&a, 0, &memory).with_context(|| format!("AF_XDP on {from}"))?;
    let mut tx = AfXdpPort::open(&b, 0, &memory).with_context(|| format!("AF_XDP on {to}"))?;
    core_affinity::set_for_current(core_affinity::CoreId { id: core });
    let mut batch = Batch::new();
    batch.use_memory(&memory);
    let stats = PortStats::default();
    let idx: Vec<u8> = (0..=u8::MAX).collect();
    let mut forwarded = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let n = rx.rx(&mut batch, 32, &stats);
        if n == 0 {
            std::hint::spin_loop();
            continue;
        }
        for b in &mut batch.bufs[..n] {
            let f = b.frame_mut();
            if f.len() >= 12 {
                f[..6].copy_from_slice(&dst_mac);
                f[6..12].copy_from_slice(&src_mac);
            }
        }
        forwarded += tx.tx(&mut batch, &idx[..n]) as u64;
    }
    Ok(forwarded)
}
