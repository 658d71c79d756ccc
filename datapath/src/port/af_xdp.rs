//! AF_XDP port: one XDP socket per receive queue, its UMEM with fill, completion, RX and TX
//! rings mapped into the process, and the gateway's own XDP program (see [`super::bpf`])
//! redirecting the queue into the socket. This is the primary kernel-bypass path.
//!
//! - Binding tries zero-copy first and falls back to copy mode (veth supports only copy).
//! - The need-wakeup flag is honoured: the kernel is kicked only when it asks, and copy-mode
//!   transmit, which sends at most 32 frames per kick, is kicked a bounded number of times per
//!   call while it makes progress; what is left is kicked at the next poll.
//! - Link faults: an interface that goes down (or loses its carrier) stops transmission, and
//!   what could not be sent is counted as `link_down`; the port says so on stderr once, looks
//!   again every half second (the worker's housekeeping) and resumes when the link is back.
//!   A removed interface (`ENXIO`, or its index gone) is reported once as removed; the port
//!   then never sends again and the gateway goes on with its other ports.
//! - Frames stay where the kernel put them. The sockets of one worker share its frame memory
//!   as their UMEM ([`crate::framemem::FrameMemory`], `XDP_SHARED_UMEM`), and the worker's
//!   batch holds the free chunks: a frame received on one socket is processed in its chunk
//!   (with 256 bytes of headroom for encapsulation) and sent from another by descriptor.
//!   Only a frame from another kind of port is copied, once, into a free chunk.
//! - The fill ring is topped up in bulk from the free list; completed transmits go back to it
//!   in one pass. Nothing is tracked per frame beyond the free list itself.
//! - Dropping the last socket of an interface closes the BPF link, which detaches the program:
//!   nothing is left on the interface, whatever way the process ends.
//!
//! This is a port backend: `unsafe` is allowed here, each block names what justifies it.

#![allow(unsafe_code)]

use super::bpf::{self, XdpMode};
use super::Port;
use crate::framemem::FrameMemory;
use crate::pipeline::batch::Batch;
use crate::pipeline::drop::DropReason;
use crate::stats::PortStats;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// UMEM chunk size: one frame per chunk.
pub const FRAME: u64 = 2048;
/// Entries of each ring.
const RING: u32 = 2048;
/// Where the kernel puts a received frame in its chunk (`XDP_PACKET_HEADROOM`): room to
/// prepend tunnel headers in place.
pub const XDP_PACKET_HEADROOM: usize = 256;
/// The largest frame a socket receives: the kernel puts a frame after the headroom of its
/// chunk and drops one that does not fit (counted in the socket's `rx_dropped`).
pub const MAX_FRAME: usize = FRAME as usize - XDP_PACKET_HEADROOM;
/// The fill ring is topped up once this many slots are empty.
const FILL_BULK: u32 = 64;

/// Chunks a worker's frame memory needs for `sockets` AF_XDP sockets: each one's fill ring
/// full, as many again in flight on transmit, and two batches.
pub fn frames_for(sockets: usize) -> usize {
    sockets.max(1) * 2 * RING as usize + 2 * crate::pipeline::batch::BATCH
}

/// A worker's frame memory for `sockets` AF_XDP sockets ([`frames_for`] chunks).
///
/// # Errors
/// The mapping failed.
pub fn frame_memory(sockets: usize) -> io::Result<Arc<FrameMemory>> {
    FrameMemory::new(frames_for(sockets), FRAME as usize)
}
/// Kicks one transmit call makes at most: a batch is at most 64 frames, 32 a kick in copy
/// mode; the rest waits for the next poll rather than stall the worker's other ports.
const MAX_KICKS: usize = 4;

fn last_error<T>() -> io::Result<T> {
    Err(io::Error::last_os_error())
}

/// Prefixes an owning program's tries take on at run time besides those it was attached with.
pub const RUNTIME_OWNED: usize = 1 << 21;

/// The XDP program, its XSK map and the link attaching it to one interface; shared by the
/// sockets of that interface's queues.
pub struct XdpAttachment {
    map: OwnedFd,
    /// The owned-prefix tries, when unowned traffic goes to the kernel.
    owned: Option<(OwnedFd, OwnedFd)>,
    _prog: OwnedFd,
    _link: OwnedFd,
    ifindex: u32,
    interface: String,
    mode: XdpMode,
}

impl XdpAttachment {
    /// Loads the redirect program and attaches it to `interface` (native XDP, else skb mode,
    /// or skb mode only when `force_skb`), with room for `queues` sockets.
    ///
    /// # Errors
    /// No such interface, no privilege, another XDP program already attached, ...
    pub fn attach(interface: &str, queues: u32, force_skb: bool) -> io::Result<Arc<Self>> {
        Self::attach_owning(interface, queues, force_skb, None)
    }

    /// [`XdpAttachment::attach`], and when `owned` is given, only the traffic the gateway owns
    /// goes to its sockets; the rest is passed to the kernel (see [`bpf::owner_program`]).
    /// `owned` lists the prefixes (address, length) the gateway answers for or routes; the
    /// kernel's own
    /// addresses on the interface (read now) are carved out of them, so the host keeps its
    /// address inside a subnet the gateway shares.
    ///
    /// # Errors
    /// As [`XdpAttachment::attach`], and a trie the kernel refuses.
    pub fn attach_owning(
        interface: &str,
        queues: u32,
        force_skb: bool,
        owned: Option<&[(std::net::IpAddr, u8)]>,
    ) -> io::Result<Arc<Self>> {
        let ifindex = bpf::ifindex(interface)?;
        let map = bpf::create_xsk_map(queues)?;
        let (prog, tries) = match owned {
            None => (
                bpf::load_xdp(&bpf::redirect_program(map.as_raw_fd()), "gw_xsk_redir")?,
                None,
            ),
            Some(prefixes) => {
                let kernel = bpf::interface_addresses(ifindex)?;
                // Room for the routes mirrored at run time ([`XdpAttachment::own`]); an LPM
                // trie allocates per entry, so the spare room costs nothing until used.
                let n = (prefixes.len() + kernel.len() + RUNTIME_OWNED) as u32;
                let lpm4 = bpf::create_lpm_trie(4, n)?;
                let lpm6 = bpf::create_lpm_trie(16, n)?;
                for &(addr, len) in prefixes {
                    match addr {
                        std::net::IpAddr::V4(a) => bpf::lpm_set(&lpm4, &a.octets(), len, 1)?,
                        std::net::IpAddr::V6(a) => bpf::lpm_set(&lpm6, &a.octets(), len, 1)?,
                    }
                }
                for a in kernel {
                    match a {
                        std::net::IpAddr::V4(a) => bpf::lpm_set(&lpm4, &a.octets(), 32, 0)?,
                        std::net::IpAddr::V6(a) => bpf::lpm_set(&lpm6, &a.octets(), 128, 0)?,
                    }
                }
                let insns = bpf::owner_program(map.as_raw_fd(), lpm4.as_raw_fd(), lpm6.as_raw_fd())
                    .ok_or_else(|| io::Error::other("owner program"))?;
                (bpf::load_xdp(&insns, "gw_xsk_owned")?, Some((lpm4, lpm6)))
            }
        };
        let (link, mode) = bpf::attach_xdp(&prog, ifindex, force_skb)
            .map_err(|e| io::Error::new(e.kind(), format!("attaching XDP to {interface}: {e}")))?;
        Ok(Arc::new(XdpAttachment {
            map,
            owned: tries,
            _prog: prog,
            _link: link,
            ifindex,
            interface: interface.to_string(),
            mode,
        }))
    }

    /// How the program is attached.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// True when only owned traffic goes to the gateway ([`XdpAttachment::attach_owning`]).
    pub fn owns_prefixes(&self) -> bool {
        self.owned.is_some()
    }

    /// Makes the gateway own `addr`/`len` (traffic to it goes to the gateway's sockets) or,
    /// with `owned` false, gives it back to the kernel: for routes that come and go at run
    /// time. Nothing happens on an attachment that takes all traffic.
    ///
    /// # Errors
    /// The kernel's error; giving back a prefix that is not owned is not one.
    pub fn own(&self, addr: std::net::IpAddr, len: u8, owned: bool) -> io::Result<()> {
        let Some((lpm4, lpm6)) = &self.owned else {
            return Ok(());
        };
        let (trie, bytes) = match addr {
            std::net::IpAddr::V4(a) => (lpm4, a.octets().to_vec()),
            std::net::IpAddr::V6(a) => (lpm6, a.octets().to_vec()),
        };
        if owned {
            bpf::lpm_set(trie, &bytes, len, 1)
        } else {
            match bpf::lpm_delete(trie, &bytes, len) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
                r => r,
            }
        }
    }
}

/// One mapped ring: producer and consumer indices, flags and the descriptor array.
struct Ring {
    map: *mut u8,
    map_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    desc: *mut u8,
    mask: u32,
    /// Our side's index, published with a release store.
    local: u32,
}

impl Ring {
    fn map(
        fd: &OwnedFd,
        off: &libc::xdp_ring_offset,
        entry: usize,
        pgoff: u64,
    ) -> io::Result<Ring> {
        let map_len = off.desc as usize + RING as usize * entry;
        // SAFETY: maps the ring the kernel set up on this socket at its page offset; checked.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                pgoff as libc::off_t,
            )
        };
        if map == libc::MAP_FAILED {
            return last_error();
        }
        let map = map.cast::<u8>();
        // SAFETY: the kernel-given offsets lie inside the mapping, 4-byte aligned.
        let (producer, consumer, flags, desc) = unsafe {
            (
                map.add(off.producer as usize).cast::<AtomicU32>(),
                map.add(off.consumer as usize).cast::<AtomicU32>(),
                map.add(off.flags as usize).cast::<AtomicU32>(),
                map.add(off.desc as usize),
            )
        };
        Ok(Ring {
            map,
            map_len,
            producer,
            consumer,
            flags,
            desc,
            mask: RING - 1,
            local: 0,
        })
    }

    fn load(p: *const AtomicU32, order: Ordering) -> u32 {
        // SAFETY: `p` points at an index word inside the live mapping.
        unsafe { (*p).load(order) }
    }

    fn store(p: *const AtomicU32, v: u32) {
        // SAFETY: as in `load`; the kernel reads this word with acquire semantics.
        unsafe { (*p).store(v, Ordering::Release) }
    }

    fn needs_wakeup(&self) -> bool {
        Self::load(self.flags, Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    /// Producer side: free slots.
    fn free(&self) -> u32 {
        RING - self
            .local
            .wrapping_sub(Self::load(self.consumer, Ordering::Acquire))
    }

    /// Consumer side: entries ready.
    fn ready(&self) -> u32 {
        Self::load(self.producer, Ordering::Acquire).wrapping_sub(self.local)
    }

    /// Producer side: everything produced has been consumed by the kernel.
    fn drained(&self) -> bool {
        Self::load(self.consumer, Ordering::Acquire) == self.local
    }

    fn slot(&self, i: u32, entry: usize) -> *mut u8 {
        // SAFETY: `i & mask < RING`, so the entry lies inside the descriptor array.
        unsafe { self.desc.add((i & self.mask) as usize * entry) }
    }

    fn write_addr(&mut self, addr: u64) {
        // SAFETY: a fill-ring slot we own until the producer index is published.
        unsafe { std::ptr::write_volatile(self.slot(self.local, 8).cast::<u64>(), addr) };
        self.local = self.local.wrapping_add(1);
    }

    fn read_addr(&mut self) -> u64 {
        // SAFETY: a completion-ring slot the kernel published (checked by `ready`).
        let a = unsafe { std::ptr::read_volatile(self.slot(self.local, 8).cast::<u64>()) };
        self.local = self.local.wrapping_add(1);
        a
    }

    fn read_desc(&mut self) -> (u64, u32) {
        let p = self.slot(self.local, 16);
        // SAFETY: an RX slot the kernel published: `struct xdp_desc { u64 addr; u32 len; u32 options; }`.
        let (addr, len) = unsafe {
            (
                std::ptr::read_volatile(p.cast::<u64>()),
                std::ptr::read_volatile(p.add(8).cast::<u32>()),
            )
        };
        self.local = self.local.wrapping_add(1);
        (addr, len)
    }

    fn write_desc(&mut self, addr: u64, len: u32) {
        let p = self.slot(self.local, 16);
        // SAFETY: a TX slot we own until the producer index is published.
        unsafe {
            std::ptr::write_volatile(p.cast::<u64>(), addr);
            std::ptr::write_volatile(p.add(8).cast::<u32>(), len);
            std::ptr::write_volatile(p.add(12).cast::<u32>(), 0);
        }
        self.local = self.local.wrapping_add(1);
    }

    fn publish_producer(&self) {
        Self::store(self.producer, self.local);
    }

    fn publish_consumer(&self) {
        Self::store(self.consumer, self.local);
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `Ring::map` mapped.
        unsafe { libc::munmap(self.map.cast(), self.map_len) };
    }
}

/// An XDP socket on one queue of an interface. The sockets of one worker share its frame
/// memory as their UMEM (`XDP_SHARED_UMEM`), each with its own fill and completion rings, so
/// a frame received on one is sent from another as it is.
pub struct AfXdpPort {
    // Field order is drop order: the rings go before the socket, the socket before the
    // memory it registered or shares, and the attachment (the program) last.
    rx: Ring,
    tx: Ring,
    fill: Ring,
    comp: Ring,
    fd: Arc<OwnedFd>,
    memory: Arc<FrameMemory>,
    queue: u32,
    zero_copy: bool,
    link: super::Link,
    /// Frames sent from where they were received, and frames copied into a chunk first.
    sent_in_place: u64,
    sent_copied: u64,
    /// Transmit chunks for a batch that does not use the port's memory (a tool's own
    /// batch), claimed on first use.
    own_free: Vec<u64>,
    attachment: Arc<XdpAttachment>,
}

// SAFETY: the ring mappings are owned by this port alone (no other handle reaches them), the
// socket is an owned descriptor and the frame memory is shared by `Arc`; moving the port
// moves all of them.
unsafe impl Send for AfXdpPort {}

impl AfXdpPort {
    /// Opens an XDP socket on `queue` of the attachment's interface over `memory`, registers
    /// it in the XSK map, and fills its fill ring from the memory's unclaimed chunks. The
    /// first socket over a memory registers it as a UMEM, zero-copy when the driver allows
    /// and copy mode otherwise; the others share it, in the same mode. Retries a busy queue
    /// (a socket closed on it just before) for up to a second.
    ///
    /// # Errors
    /// The OS error of any step; too few chunks left in `memory` ([`frames_for`]).
    pub fn open(
        attachment: &Arc<XdpAttachment>,
        queue: u32,
        memory: &Arc<FrameMemory>,
    ) -> io::Result<Self> {
        if memory.chunk_size() != FRAME as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "frame memory chunks must be AF_XDP frames",
            ));
        }
        // SAFETY: plain socket(2); the result is checked.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return last_error();
        }
        // SAFETY: a fresh descriptor we own.
        let fd = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
        let shared = memory.registered();
        if shared.is_none() {
            let (addr, len) = memory.span();
            let reg = libc::xdp_umem_reg {
                addr,
                len: len as u64,
                chunk_size: FRAME as u32,
                headroom: 0,
                flags: 0,
                tx_metadata_len: 0,
            };
            sockopt(&fd, libc::XDP_UMEM_REG, &reg)?;
        }
        let n = RING as i32;
        sockopt(&fd, libc::XDP_UMEM_FILL_RING, &n)?;
        sockopt(&fd, libc::XDP_UMEM_COMPLETION_RING, &n)?;
        sockopt(&fd, libc::XDP_RX_RING, &n)?;
        sockopt(&fd, libc::XDP_TX_RING, &n)?;
        let off = Self::offsets(&fd)?;
        let rx = Ring::map(&fd, &off.rx, 16, libc::XDP_PGOFF_RX_RING as u64)?;
        let tx = Ring::map(&fd, &off.tx, 16, libc::XDP_PGOFF_TX_RING as u64)?;
        let mut fill = Ring::map(&fd, &off.fr, 8, libc::XDP_UMEM_PGOFF_FILL_RING)?;
        let comp = Ring::map(&fd, &off.cr, 8, libc::XDP_UMEM_PGOFF_COMPLETION_RING)?;
        let chunks = memory.claim(RING as usize);
        if chunks.len() < RING as usize {
            return Err(io::Error::other(format!(
                "the worker's frame memory has {} chunks left for a fill ring of {RING}",
                chunks.len()
            )));
        }
        for c in chunks {
            fill.write_addr(c);
        }
        fill.publish_producer();
        let mut port = AfXdpPort {
            rx,
            tx,
            fill,
            comp,
            fd,
            memory: Arc::clone(memory),
            queue,
            zero_copy: false,
            link: super::Link::Up,
            sent_in_place: 0,
            sent_copied: 0,
            own_free: Vec::new(),
            attachment: Arc::clone(attachment),
        };
        match &shared {
            Some(first) => port.bind_shared(first)?,
            None => port.bind()?,
        }
        port.zero_copy = port.options()? & libc::XDP_OPTIONS_ZEROCOPY != 0;
        if shared.is_none() {
            memory.set_registered(&port.fd);
        }
        bpf::map_set(&port.attachment.map, queue, port.fd.as_raw_fd())?;
        Ok(port)
    }

    fn offsets(fd: &OwnedFd) -> io::Result<libc::xdp_mmap_offsets> {
        // SAFETY: all-zero is a valid `xdp_mmap_offsets`; the kernel fills it.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: `off` and `len` are live for the call and `len` is the buffer's size.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut off as *mut libc::xdp_mmap_offsets).cast(),
                &mut len,
            )
        };
        if r < 0 {
            return last_error();
        }
        Ok(off)
    }

    /// `XDP_OPTIONS`: whether the bound socket is zero-copy.
    fn options(&self) -> io::Result<u32> {
        let mut v = 0u32;
        let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
        // SAFETY: `v` and `len` are live for the call and `len` is the buffer's size.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_OPTIONS,
                (&mut v as *mut u32).cast(),
                &mut len,
            )
        };
        if r < 0 {
            return last_error();
        }
        Ok(v)
    }

    fn bind_with(&self, flags: u16, shared_fd: u32) -> io::Result<()> {
        let sxdp = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: self.attachment.ifindex,
            sxdp_queue_id: self.queue,
            sxdp_shared_umem_fd: shared_fd,
        };
        // SAFETY: `sxdp` is a valid `sockaddr_xdp` for the duration of the call.
        let r = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&sxdp as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as u32,
            )
        };
        if r < 0 {
            last_error()
        } else {
            Ok(())
        }
    }

    /// Binds to the queue: zero-copy when the driver allows it, else copy.
    fn bind(&self) -> io::Result<()> {
        let mut busy_retries = 10;
        loop {
            match self.bind_with(libc::XDP_ZEROCOPY | libc::XDP_USE_NEED_WAKEUP, 0) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && busy_retries > 0 => {}
                Err(_) => match self.bind_with(libc::XDP_COPY | libc::XDP_USE_NEED_WAKEUP, 0) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && busy_retries > 0 => {}
                    Err(e) => return Err(e),
                },
            }
            // A socket just closed on this queue may still hold it (the kernel releases the
            // queue after the close returns, EBUSY meanwhile): wait and retry.
            busy_retries -= 1;
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Binds to the queue sharing the UMEM that `first` registered; the kernel takes the
    /// mode (zero-copy or copy, need-wakeup) from it, and no flag may be given.
    fn bind_shared(&self, first: &OwnedFd) -> io::Result<()> {
        let mut busy_retries = 10;
        loop {
            match self.bind_with(libc::XDP_SHARED_UMEM, first.as_raw_fd() as u32) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && busy_retries > 0 => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "sharing the worker's UMEM with its first AF_XDP socket: {e} \
                             (the interfaces of one gateway must all bind zero-copy, or all \
                             copy mode)"
                        ),
                    ))
                }
            }
            busy_retries -= 1;
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// True when bound in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// How the interface's XDP program is attached.
    pub fn xdp_mode(&self) -> XdpMode {
        self.attachment.mode
    }

    fn xdp_statistics(&self) -> [u64; 6] {
        let mut st = [0u64; 6];
        let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
        // SAFETY: `st` is a live buffer of `len` bytes; the kernel writes at most that much.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                st.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if r < 0 {
            [0; 6]
        } else {
            st
        }
    }

    /// Asks the kernel to transmit. `Ok(true)` when it may have taken frames, `Ok(false)` when
    /// it is busy (try later); `ENETDOWN` and `ENXIO` mark the link down or gone.
    fn kick(&mut self) -> io::Result<bool> {
        // SAFETY: a zero-length send on our own socket: the kernel's "transmit now" kick.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if r >= 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS) => Ok(false),
            Some(libc::ENETDOWN) => {
                self.set_link(super::Link::Down, "ENETDOWN on transmit");
                Ok(false)
            }
            Some(libc::ENXIO) => {
                self.set_link(super::Link::Gone, "ENXIO on transmit");
                Ok(false)
            }
            _ => Err(e),
        }
    }

    /// Records a change of the link and says so once.
    fn set_link(&mut self, link: super::Link, why: &str) {
        if super::note_link(&self.attachment.interface, self.queue, self.link, link, why) {
            self.link = link;
        }
    }

    /// The interface's state from sysfs ([`super::read_link`]).
    fn read_link(&self) -> super::Link {
        super::read_link(&self.attachment.interface, self.attachment.ifindex)
    }

    /// Kicks the kernel until the TX ring drains, at most [`MAX_KICKS`] times and only while
    /// it takes frames (copy mode sends at most 32 a kick).
    fn push_out(&mut self) {
        let mut kicks = 0;
        while !self.tx.drained() && kicks < MAX_KICKS {
            if self.zero_copy && !self.tx.needs_wakeup() {
                break;
            }
            if !matches!(self.kick(), Ok(true)) {
                break;
            }
            kicks += 1;
        }
    }

    /// True when `batch` uses this port's frame memory, so frames move by descriptor.
    fn shares(&self, batch: &Batch) -> bool {
        batch.memory().is_some_and(|m| Arc::ptr_eq(m, &self.memory))
    }

    /// Moves every completed transmit chunk to the batch's free list (or the port's own,
    /// when the batch does not share the memory), in one pass.
    fn reclaim(&mut self, batch: &mut Batch, shares: bool) {
        let n = self.comp.ready();
        for _ in 0..n {
            let c = self.comp.read_addr() & !(FRAME - 1);
            if shares {
                batch.put_free(c);
            } else {
                self.own_free.push(c);
            }
        }
        if n > 0 {
            self.comp.publish_consumer();
        }
    }

    /// A free chunk to copy a frame into for sending.
    fn take_chunk(&mut self, batch: &mut Batch, shares: bool) -> Option<u64> {
        if shares {
            return batch.take_free();
        }
        if self.own_free.is_empty() && self.sent_copied == 0 && self.sent_in_place == 0 {
            self.own_free = self.memory.claim(RING as usize);
        }
        self.own_free.pop()
    }

    /// Tops the fill ring up from the batch's free list, in bulk: once a burst's worth of
    /// slots is empty, or whenever the ring runs low.
    fn refill(&mut self, batch: &mut Batch) {
        let room = self.fill.free();
        if room < FILL_BULK && RING - room > RING / 4 {
            return;
        }
        let mut n = 0;
        while n < room {
            let Some(c) = batch.take_free() else {
                break;
            };
            self.fill.write_addr(c);
            n += 1;
        }
        if n > 0 {
            self.fill.publish_producer();
        }
    }

    /// Receives into a batch that does not use this port's memory (a tool's own batch): each
    /// frame is copied into a buffer's own memory and its chunk goes straight back to the
    /// fill ring, which has room because every RX chunk is either there or just read.
    fn rx_copying(&mut self, batch: &mut Batch, ready: u32, stats: &PortStats) -> usize {
        let mut n = 0;
        for _ in 0..ready {
            let (addr, len) = self.rx.read_desc();
            let Some(chunk) = self.memory.chunk_of(addr) else {
                stats.drop(DropReason::RxOversize);
                continue;
            };
            // SAFETY: the kernel handed this chunk over through the RX ring; it is ours until
            // it goes back to the fill ring below.
            let region = unsafe { self.memory.region(chunk) };
            let loaded = region.is_some_and(|r| {
                let f = r.bytes((addr - chunk) as usize, len as usize);
                !f.is_empty() && batch.bufs.get_mut(n).is_some_and(|b| b.load(f, 0))
            });
            if loaded {
                n += 1;
            } else {
                stats.drop(DropReason::RxOversize);
            }
            self.fill.write_addr(chunk);
        }
        self.rx.publish_consumer();
        self.fill.publish_producer();
        n
    }
}

fn sockopt<T>(fd: &OwnedFd, opt: i32, val: &T) -> io::Result<()> {
    // SAFETY: `val` is a live value of the size passed, read by the kernel during the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        last_error()
    } else {
        Ok(())
    }
}

impl Port for AfXdpPort {
    fn rx(&mut self, batch: &mut Batch, max: usize, stats: &PortStats) -> usize {
        batch.release();
        let max = max.min(batch.bufs.len());
        let ready = self.rx.ready().min(max as u32);
        let shares = self.shares(batch);
        if ready == 0 {
            // Idle: frames a bounded transmit left in the TX ring go out now.
            if !self.tx.drained() && self.link == super::Link::Up {
                self.push_out();
            }
            self.reclaim(batch, shares);
            if shares {
                self.refill(batch);
            }
            // Copy mode receives in the kernel's own receive path: a wakeup there is a
            // syscall that does nothing, and an idle port would make one every poll.
            if self.zero_copy && self.fill.needs_wakeup() {
                // SAFETY: a zero-length non-blocking receive on our own socket: the kernel's
                // "refill now" wakeup. Only when the RX ring is empty, never per packet.
                unsafe {
                    libc::recvfrom(
                        self.fd.as_raw_fd(),
                        std::ptr::null_mut(),
                        0,
                        libc::MSG_DONTWAIT,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                    )
                };
            }
            batch.len = 0;
            return 0;
        }
        if !shares {
            let n = self.rx_copying(batch, ready, stats);
            batch.len = n;
            return n;
        }
        let mut n = 0;
        for _ in 0..ready {
            let (addr, len) = self.rx.read_desc();
            let Some(chunk) = self.memory.chunk_of(addr) else {
                // Not an address of ours: nothing to give back.
                stats.drop(DropReason::RxOversize);
                continue;
            };
            // SAFETY: the kernel handed this chunk over through the RX ring; the batch holds
            // it until it is sent (a TX ring takes it) or released (the free list takes it).
            let region = unsafe { self.memory.region(chunk) };
            let placed = region.is_some_and(|r| {
                batch.place(n, r, (addr - chunk) as usize, len as usize, Some(chunk))
            });
            if placed {
                n += 1;
            } else {
                stats.drop(DropReason::RxOversize);
                batch.put_free(chunk);
            }
        }
        self.rx.publish_consumer();
        self.refill(batch);
        batch.len = n;
        n
    }

    fn tx(&mut self, batch: &mut Batch, idx: &[u8]) -> usize {
        if self.link != super::Link::Up {
            // Nothing is queued behind a dead link: the worker counts these as link_down.
            return 0;
        }
        let shares = self.shares(batch);
        self.reclaim(batch, shares);
        let room = self.tx.free() as usize;
        let mut sent = 0;
        for &i in idx.iter().take(room) {
            let Some(b) = batch.bufs.get(usize::from(i)) else {
                break;
            };
            if let Some(addr) = b.address_in(&self.memory).filter(|_| shares) {
                let len = b.len() as u32;
                self.tx.write_desc(addr, len);
                if let Some(buf) = batch.bufs.get_mut(usize::from(i)) {
                    buf.give_chunk();
                }
                self.sent_in_place += 1;
            } else {
                // A frame from another kind of port, or moved to a buffer's own memory: one
                // copy into a free chunk.
                let Some(c) = self.take_chunk(batch, shares) else {
                    break;
                };
                let Some(b) = batch.bufs.get(usize::from(i)) else {
                    break;
                };
                let f = b.frame();
                let len = f.len().min(FRAME as usize);
                // SAFETY: `c` came off the free list (or this port's own completions): no
                // ring and no buffer holds it until the TX ring takes it below.
                if let Some(mut r) = unsafe { self.memory.region(c) } {
                    r.bytes_mut(0, len).copy_from_slice(&f[..len]);
                }
                self.tx.write_desc(c, len as u32);
                self.sent_copied += 1;
            }
            sent += 1;
        }
        self.tx.publish_producer();
        self.push_out();
        self.reclaim(batch, shares);
        sent
    }

    fn frame_memory(&self) -> Option<Arc<FrameMemory>> {
        Some(Arc::clone(&self.memory))
    }

    fn max_frame(&self) -> usize {
        MAX_FRAME
    }

    fn tx_placement(&self) -> (u64, u64) {
        (self.sent_in_place, self.sent_copied)
    }

    fn link(&self) -> super::Link {
        self.link
    }

    fn check_link(&mut self) -> super::Link {
        let now = self.read_link();
        if now != self.link {
            self.set_link(now, "interface state");
        }
        // Frames left in the TX ring by a bounded transmit go out now.
        if now == super::Link::Up {
            self.push_out();
        }
        self.link
    }

    fn kernel_drops(&mut self) -> u64 {
        // rx_dropped, rx_invalid_descs, tx_invalid_descs, rx_ring_full,
        // rx_fill_ring_empty_descs, tx_ring_empty_descs: the first is the total of frames
        // dropped on receive; ring-full and fill-empty events are its usual causes.
        self.xdp_statistics()[0]
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl Drop for AfXdpPort {
    fn drop(&mut self) {
        let _ = bpf::map_clear(&self.attachment.map, self.queue);
        // The fields then drop in order: rings, socket, UMEM, and the attachment last.
    }
}
