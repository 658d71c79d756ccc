//! A TUN device that lives exactly as long as this process holds it. The kernel deletes a
//! TUN device that is not persistent, and every route through it, when its last descriptor
//! closes: however the process ends, SIGKILL and a crash included. Routes that announce what
//! the gateway serves point at one (`[route_export]`), so they cannot outlive it.
//!
//! This is port plumbing with `unsafe` allowed: each block names what justifies it.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A TUN device owned by this process; dropping it deletes the device and its routes.
pub struct TunDevice {
    fd: OwnedFd,
    name: String,
    ifindex: u32,
}

fn named(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?}: not an interface name"),
        ));
    }
    // SAFETY: an all-zero ifreq is valid (a name of NULs, a null union).
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(ifr)
}

fn checked(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl TunDevice {
    /// Creates TUN device `name` (in this thread's network namespace) and sets it up. Fails
    /// when a device of that name exists: another gateway's, or a persistent one.
    ///
    /// # Errors
    /// No `/dev/net/tun`, no privilege (`CAP_NET_ADMIN`), the name taken.
    pub fn create(name: &str) -> io::Result<Self> {
        let mut ifr = named(name)?;
        // SAFETY: open(2) of a NUL-terminated path; the result is checked.
        let raw = checked(unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
            )
        })?;
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes `ifr`, a live ifreq naming the device
        // (NUL-terminated: shorter than IFNAMSIZ), during the call only.
        checked(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as _, &mut ifr) })?;
        // SAFETY: plain socket(2); the result is checked.
        let sock = checked(unsafe {
            libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
        })?;
        // SAFETY: a fresh descriptor we own.
        let sock = unsafe { OwnedFd::from_raw_fd(sock) };
        let mut up = named(name)?;
        // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write `up`, a live ifreq naming the
        // device, during the call only.
        checked(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut up) })?;
        // SAFETY: the flags member is the one SIOCGIFFLAGS filled.
        unsafe { up.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
        // SAFETY: as for SIOCGIFFLAGS above.
        checked(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &mut up) })?;
        let ifindex = super::bpf::ifindex(name)?;
        Ok(TunDevice {
            fd,
            name: name.to_string(),
            ifindex,
        })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device's interface index, for routes through it.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The descriptor that keeps the device alive.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}
