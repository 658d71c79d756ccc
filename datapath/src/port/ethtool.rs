//! Interface settings the ports' hosts need, through the `SIOCETHTOOL` ioctl rather than the
//! `ethtool` program (which a fresh machine may lack). Transmit checksum offload, which veth
//! enables by default: a host that leaves its checksums to offload sends partial checksums
//! that XDP, and so AF_XDP, cannot tell from bad ones. GRO, which a veth needs on to take
//! frames XDP_TX'd or redirected into its peer.
//!
//! This is port plumbing with `unsafe` allowed: each block names what justifies it.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;
const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETHTOOL_SCHANNELS: u32 = 0x3d;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ethtool_channels`: an interface's queues, as the driver counts them (combined
/// queues, or receive and transmit queues apart, as veth does).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Channels {
    cmd: u32,
    /// The most receive-only queues the driver allows.
    pub max_rx: u32,
    /// The most transmit-only queues.
    pub max_tx: u32,
    /// The most other queues.
    pub max_other: u32,
    /// The most combined queues.
    pub max_combined: u32,
    /// Receive-only queues.
    pub rx: u32,
    /// Transmit-only queues.
    pub tx: u32,
    /// Other queues.
    pub other: u32,
    /// Combined queues.
    pub combined: u32,
}

impl Channels {
    /// The queues frames arrive on.
    pub fn rx_queues(&self) -> u32 {
        self.combined + self.rx
    }

    /// The most queues frames could arrive on.
    pub fn max_rx_queues(&self) -> u32 {
        self.max_combined.max(self.max_rx)
    }
}

/// The queues of `interface` (`ethtool -l`).
///
/// # Errors
/// No such interface, or a driver that does not say.
pub fn channels(interface: &str) -> io::Result<Channels> {
    let mut c = Channels {
        cmd: ETHTOOL_GCHANNELS,
        ..Channels::default()
    };
    ethtool(interface, &mut c)?;
    Ok(c)
}

/// Gives `interface` `n` receive queues (`ethtool -L IF combined N`, or `rx N tx N` for a
/// driver that counts them apart), and returns its queues afterwards.
///
/// # Errors
/// No privilege, more queues than the driver allows, or a driver that cannot change them.
pub fn set_rx_queues(interface: &str, n: u32) -> io::Result<Channels> {
    let now = channels(interface)?;
    if now.rx_queues() == n {
        return Ok(now);
    }
    let mut want = Channels {
        cmd: ETHTOOL_SCHANNELS,
        ..now
    };
    if now.max_combined >= n && (now.combined > 0 || now.max_rx < n) {
        want.combined = n;
        want.rx = 0;
    } else {
        want.rx = n;
        want.tx = want.tx.max(n.min(now.max_tx));
    }
    ethtool(interface, &mut want)?;
    channels(interface)
}

fn ethtool<T>(interface: &str, v: &mut T) -> io::Result<()> {
    if interface.is_empty() || interface.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{interface:?}: not an interface name"),
        ));
    }
    // SAFETY: plain socket(2); the result is checked.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: an all-zero ifreq is valid (a name of NULs, a null union).
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(interface.bytes()) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (v as *mut T).cast();
    // SAFETY: `ifr` names the interface (NUL-terminated: shorter than IFNAMSIZ) and points at
    // `v`, a live ethtool command struct (`EthtoolValue` or `Channels`, `#[repr(C)]` with the
    // command first) the kernel reads and writes during the call only.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCETHTOOL as _, &mut ifr) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Turns transmit checksum offload of `interface` (in this thread's network namespace) on or
/// off; the kernel turns off what depends on it (segmentation offloads) with it.
///
/// # Errors
/// No such interface, no privilege, or a driver that cannot change it.
pub fn set_tx_checksum(interface: &str, on: bool) -> io::Result<()> {
    ethtool(
        interface,
        &mut EthtoolValue {
            cmd: ETHTOOL_STXCSUM,
            data: u32::from(on),
        },
    )
}

/// Whether transmit checksum offload of `interface` is on.
///
/// # Errors
/// As [`set_tx_checksum`].
pub fn tx_checksum(interface: &str) -> io::Result<bool> {
    let mut v = EthtoolValue {
        cmd: ETHTOOL_GTXCSUM,
        data: 0,
    };
    ethtool(interface, &mut v)?;
    Ok(v.data != 0)
}

/// Turns generic receive offload of `interface` (in this thread's network namespace) on or
/// off, and returns whether it is on afterwards.
///
/// # Errors
/// As [`set_tx_checksum`].
pub fn set_gro(interface: &str, on: bool) -> io::Result<bool> {
    ethtool(
        interface,
        &mut EthtoolValue {
            cmd: ETHTOOL_SGRO,
            data: u32::from(on),
        },
    )?;
    let mut v = EthtoolValue {
        cmd: ETHTOOL_GGRO,
        data: 0,
    };
    ethtool(interface, &mut v)?;
    Ok(v.data != 0)
}

/// Runs `f` in the network namespace `/run/netns/NAME` (as `ip netns add` makes them), on a
/// thread of its own so that the caller's namespace never changes.
///
/// # Errors
/// The namespace cannot be entered, or `f`'s error.
pub fn in_netns<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let ns = std::fs::File::open(format!("/run/netns/{name}"))?;
    std::thread::spawn(move || {
        // SAFETY: setns(2) with a namespace file we hold open; it moves only this thread,
        // which ends after `f`.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        f()
    })
    .join()
    .map_err(|_| io::Error::other("the namespace thread panicked"))?
}
