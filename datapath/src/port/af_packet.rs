//! AF_PACKET port: a TPACKET_V3 receive ring and a transmit ring, both mapped into the
//! process. Received frames are processed where they are in the receive ring (the ring
//! reserves [`HEADROOM`] bytes in front of each for encapsulation), and a ring block goes back
//! to the kernel once the batch holding its frames is done ([`Port::release`]). A transmit
//! copies each frame into a free slot of the TX ring, marks it for sending and makes one
//! `send` call per batch to have the kernel send what is marked (no syscall per packet): one
//! copy from ring to ring. Works on any Linux interface, veth included; it is the fallback to
//! AF_XDP.
//!
//! AF_PACKET taps the interface, it does not take frames away from the kernel: the host
//! running the gateway must not also route them (leave `ip_forward` off and configure no
//! addresses on the gateway's interfaces). Frames the socket itself sends are not received
//! again (`PACKET_IGNORE_OUTGOING`). Everything is released when the port is dropped.
//!
//! This is a port backend: `unsafe` is allowed here, each block names what justifies it.

#![allow(unsafe_code)]

use super::Port;
use crate::framemem::Region;
use crate::pipeline::batch::{Batch, HEADROOM, MAX_FRAME};
use crate::pipeline::drop::DropReason;
use crate::stats::PortStats;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BLOCK_SIZE: u32 = 1 << 20;
const BLOCK_NR: u32 = 16;
const FRAME_SIZE: u32 = 2048;
/// The TX ring: frames of `TX_FRAME_SIZE` (a header, then up to a 9 KiB frame), in blocks.
const TX_FRAME_SIZE: u32 = 16 * 1024;
const TX_BLOCK_SIZE: u32 = 1 << 20;
const TX_BLOCK_NR: u32 = 4;
const TX_FRAMES: u32 = TX_BLOCK_SIZE / TX_FRAME_SIZE * TX_BLOCK_NR;
/// Where a TX slot's frame starts: `TPACKET_ALIGN(sizeof(struct tpacket3_hdr))` (the
/// kernel's `tp_hdrlen - sizeof(struct sockaddr_ll)` for TPACKET_V3).
const TX_DATA_OFF: usize = 48;
/// TX slot status (`tp_status`): free, marked for sending, being sent, refused.
const TP_STATUS_AVAILABLE: u32 = 0;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_WRONG_FORMAT: u32 = 4;
/// `tp_len` in `struct tpacket3_hdr`.
const PKT_LEN: usize = 16;
/// Linux `TP_STATUS_USER` in a block descriptor: the block belongs to user space.
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_KERNEL: u32 = 0;
/// `struct tpacket_block_desc`: version, offset_to_priv, then `tpacket_hdr_v1` whose first
/// fields are block_status, num_pkts, offset_to_first_pkt.
const BLOCK_STATUS: usize = 8;
const BLOCK_NUM_PKTS: usize = 12;
const BLOCK_FIRST_PKT: usize = 16;
/// `struct tpacket3_hdr`: tp_next_offset (0), tp_sec, tp_nsec, tp_snaplen (12), tp_len,
/// tp_status, tp_mac (24, u16).
const PKT_NEXT: usize = 0;
/// tp_sec and tp_nsec: when the kernel put the frame in the ring (CLOCK_REALTIME).
const PKT_SEC: usize = 4;
const PKT_NSEC: usize = 8;
const PKT_SNAPLEN: usize = 12;
const PKT_STATUS: usize = 20;
/// `TP_STATUS_CSUMNOTREADY`: checksum left to offload (locally generated, e.g. on veth).
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
/// `TP_STATUS_CSUM_VALID`: checksum already verified.
const TP_STATUS_CSUM_VALID: u32 = 1 << 7;
const PKT_MAC: usize = 24;

/// An AF_PACKET socket bound to one interface, with its receive ring.
pub struct AfPacketPort {
    fd: OwnedFd,
    ring: *mut u8,
    ring_len: usize,
    block: u32,
    /// Packets of the current block not yet read, and the offset of the next one.
    pending: u32,
    next_off: usize,
    /// The TX ring (mapped right after the RX ring) and the next slot to fill.
    tx_ring: *mut u8,
    tx_next: u32,
    /// Running total of PACKET_STATISTICS drops (the kernel resets them on each read).
    kernel_dropped: u64,
    /// The interface, its index, and its link as last seen.
    interface: String,
    ifindex: u32,
    link: super::Link,
    /// Blocks read to the end whose frames may still be in the batch: they go back to the
    /// kernel on [`Port::release`] (or the next receive).
    retired: [u32; BLOCK_NR as usize],
    retired_len: usize,
    /// The interface's MTU plus link headers: the buffers' own memory need hold no more.
    max_frame: usize,
}

// SAFETY: the rings' mapping is owned by this port alone (no other handle to it exists) and
// the socket is an owned descriptor; moving the port to the worker thread moves both.
unsafe impl Send for AfPacketPort {}

fn last_error<T>() -> io::Result<T> {
    Err(io::Error::last_os_error())
}

/// setsockopt(2) of `level`/`opt` on `fd` with the bytes of `val`.
fn set_opt(fd: &OwnedFd, level: i32, opt: i32, val: &[u8]) -> io::Result<()> {
    // SAFETY: `val` is a live buffer of the given length for the duration of the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            val.as_ptr().cast(),
            val.len() as u32,
        )
    };
    if r < 0 {
        last_error()
    } else {
        Ok(())
    }
}

impl AfPacketPort {
    /// Opens an AF_PACKET socket on `interface` with a TPACKET_V3 receive ring.
    ///
    /// # Errors
    /// The OS error of any step (no such interface, not permitted, ...).
    pub fn open(interface: &str) -> io::Result<Self> {
        Self::open_fanout(interface, None)
    }

    /// Like [`AfPacketPort::open`], and joins fanout group `group` (PACKET_FANOUT_HASH): the
    /// sockets of the group share the interface's traffic by flow, one per worker.
    ///
    /// # Errors
    /// The OS error of any step.
    pub fn open_fanout(interface: &str, group: Option<u16>) -> io::Result<Self> {
        let name = CString::new(interface).map_err(|_| io::Error::other("interface name"))?;
        // SAFETY: `name` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
        if ifindex == 0 {
            return last_error();
        }
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // Protocol 0: the socket hears nothing until `bind` names the protocol and the
        // interface. Opened with ETH_P_ALL it would queue frames from every interface of the
        // namespace until then, and the worker would take another port's frames for this one's.
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if raw < 0 {
            return last_error();
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let set = |opt: i32, val: &[u8]| set_opt(&fd, libc::SOL_PACKET, opt, val);
        set(
            libc::PACKET_VERSION,
            &(libc::tpacket_versions::TPACKET_V3 as i32).to_ne_bytes(),
        )?;
        set(libc::PACKET_IGNORE_OUTGOING, &1i32.to_ne_bytes())?;
        // Room in front of every received frame, so encapsulation prepends in place.
        set(libc::PACKET_RESERVE, &(HEADROOM as u32).to_ne_bytes())?;
        // The RX ring retires a block after 1 ms at most; the TX ring is frame by frame.
        let ring = |opt: i32, (block, nr, frame, frames, tov): (u32, u32, u32, u32, u32)| {
            let req = libc::tpacket_req3 {
                tp_block_size: block,
                tp_block_nr: nr,
                tp_frame_size: frame,
                tp_frame_nr: frames,
                tp_retire_blk_tov: tov,
                tp_sizeof_priv: 0,
                tp_feature_req_word: 0,
            };
            // SAFETY: `tpacket_req3` is plain old data; viewing it as bytes for setsockopt is
            // sound.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    (&req as *const libc::tpacket_req3).cast::<u8>(),
                    std::mem::size_of::<libc::tpacket_req3>(),
                )
            };
            set(opt, bytes)
        };
        ring(
            libc::PACKET_RX_RING,
            (
                BLOCK_SIZE,
                BLOCK_NR,
                FRAME_SIZE,
                BLOCK_SIZE / FRAME_SIZE * BLOCK_NR,
                1,
            ),
        )?;
        ring(
            libc::PACKET_TX_RING,
            (TX_BLOCK_SIZE, TX_BLOCK_NR, TX_FRAME_SIZE, TX_FRAMES, 0),
        )?;
        // One mapping holds both rings, RX first (packet_mmap(7)).
        let rx_len = (BLOCK_SIZE * BLOCK_NR) as usize;
        let ring_len = rx_len + (TX_BLOCK_SIZE * TX_BLOCK_NR) as usize;
        // SAFETY: maps the ring the kernel just set up on this socket; checked for failure.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return last_error();
        }
        let ring: *mut u8 = ring.cast();
        let port = AfPacketPort {
            fd,
            ring,
            ring_len,
            block: 0,
            pending: 0,
            next_off: 0,
            // SAFETY: `rx_len` is inside the mapping of `ring_len` bytes.
            tx_ring: unsafe { ring.add(rx_len) },
            tx_next: 0,
            kernel_dropped: 0,
            interface: interface.to_string(),
            ifindex: ifindex as u32,
            link: super::Link::Up,
            retired: [0; BLOCK_NR as usize],
            retired_len: 0,
            // The MTU, an Ethernet header and two VLAN tags.
            max_frame: std::fs::read_to_string(format!("/sys/class/net/{interface}/mtu"))
                .ok()
                .and_then(|m| m.trim().parse::<usize>().ok())
                .map_or(MAX_FRAME, |m| (m + 22).min(MAX_FRAME)),
        };
        // Joining a fanout group needs a bound socket, and a bound socket outside the group
        // hears every frame of the interface, which the sockets already in the group hear too.
        // A filter that accepts nothing keeps it deaf until it has joined.
        if group.is_some() {
            let mut reject = [libc::sock_filter {
                code: (libc::BPF_RET | libc::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k: 0,
            }];
            let prog = libc::sock_fprog {
                len: 1,
                filter: reject.as_mut_ptr(),
            };
            // SAFETY: `prog` points at `reject`, both live for the duration of the call.
            let r = unsafe {
                libc::setsockopt(
                    port.fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_ATTACH_FILTER,
                    (&prog as *const libc::sock_fprog).cast(),
                    std::mem::size_of::<libc::sock_fprog>() as u32,
                )
            };
            if r < 0 {
                return last_error();
            }
        }
        // SAFETY: zeroed `sockaddr_ll` is a valid value; the fields set are the ones bind needs.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex;
        // SAFETY: `sll` is a valid sockaddr_ll for the duration of the call.
        let r = unsafe {
            libc::bind(
                port.fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            return last_error();
        }
        if let Some(g) = group {
            // PACKET_FANOUT_HASH (0) in the high half, the group id in the low half.
            let arg = u32::from(g) | (libc::PACKET_FANOUT_HASH << 16);
            set_opt(
                &port.fd,
                libc::SOL_PACKET,
                libc::PACKET_FANOUT,
                &arg.to_ne_bytes(),
            )?;
            // SO_DETACH_FILTER ignores its value, but socket options take an int at least.
            set_opt(
                &port.fd,
                libc::SOL_SOCKET,
                libc::SO_DETACH_FILTER,
                &0i32.to_ne_bytes(),
            )?;
        }
        Ok(port)
    }

    fn block_ptr(&self, block: u32) -> *mut u8 {
        // SAFETY: `block < BLOCK_NR`, so the offset lies inside the ring mapping.
        unsafe {
            self.ring
                .add((block % BLOCK_NR) as usize * BLOCK_SIZE as usize)
        }
    }

    fn tx_slot(&self, k: u32) -> *mut u8 {
        // SAFETY: `k % TX_FRAMES` frames of `TX_FRAME_SIZE` lie inside the TX ring mapping.
        unsafe {
            self.tx_ring
                .add((k % TX_FRAMES) as usize * TX_FRAME_SIZE as usize)
        }
    }

    fn write_u32(p: *mut u8, off: usize, v: u32) {
        // SAFETY: callers pass offsets inside a TX slot header they own (status AVAILABLE);
        // volatile because the kernel reads it.
        unsafe { std::ptr::write_volatile(p.add(off).cast::<[u8; 4]>(), v.to_ne_bytes()) }
    }

    fn read_u32(p: *const u8, off: usize) -> u32 {
        // SAFETY: callers pass offsets inside a block descriptor or packet header that the
        // kernel wrote inside the ring; unaligned and volatile because the kernel shares it.
        u32::from_ne_bytes(unsafe { std::ptr::read_volatile(p.add(off).cast::<[u8; 4]>()) })
    }
}

impl Port for AfPacketPort {
    fn rx(&mut self, batch: &mut Batch, max: usize, stats: &PortStats) -> usize {
        // Frames of the last receive are done with by now, whoever forgot to say so.
        batch.release();
        self.release();
        let max = max.min(batch.bufs.len());
        let mut n = 0;
        while n < max {
            let block = self.block_ptr(self.block);
            if self.pending == 0 {
                std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
                if Self::read_u32(block, BLOCK_STATUS) & TP_STATUS_USER == 0 {
                    break;
                }
                self.pending = Self::read_u32(block, BLOCK_NUM_PKTS);
                self.next_off = Self::read_u32(block, BLOCK_FIRST_PKT) as usize;
                if self.pending == 0 {
                    self.retire_block();
                    continue;
                }
            }
            let off = self.next_off;
            if off + 32 > BLOCK_SIZE as usize {
                self.retire_block();
                continue;
            }
            // SAFETY: `off` is inside the block (checked above) and points at a tpacket3_hdr.
            let hdr = unsafe { block.add(off) };
            let snaplen = Self::read_u32(hdr, PKT_SNAPLEN) as usize;
            // SAFETY: tp_mac is a u16 at offset 24 of the header, inside the block.
            let mac = usize::from(u16::from_ne_bytes(unsafe {
                std::ptr::read_volatile(hdr.add(PKT_MAC).cast::<[u8; 2]>())
            }));
            let next = Self::read_u32(hdr, PKT_NEXT) as usize;
            // The frame's span: the reserved headroom in front of it, and up to the next
            // frame (or the block's end) after it.
            let end = if next == 0 {
                BLOCK_SIZE as usize - off
            } else {
                next
            };
            if mac >= HEADROOM && mac + snaplen <= end && off + end <= BLOCK_SIZE as usize {
                let ts_ns = u64::from(Self::read_u32(hdr, PKT_SEC)) * 1_000_000_000
                    + u64::from(Self::read_u32(hdr, PKT_NSEC));
                let status = Self::read_u32(hdr, PKT_STATUS);
                // SAFETY: `hdr + mac - HEADROOM .. hdr + end` lies inside the block (checked
                // above) and past the frame's header (the kernel reserved HEADROOM bytes in
                // front of `mac`). The block is user space's until it is released, which
                // happens only once the batch holding this frame is released.
                let region = unsafe {
                    Region::new(
                        std::ptr::NonNull::new_unchecked(hdr.add(mac - HEADROOM)),
                        end - (mac - HEADROOM),
                    )
                };
                if batch.place(n, region, HEADROOM, snaplen, None) {
                    batch.bufs[n].ts_ns = ts_ns;
                    batch.bufs[n].csum_trusted =
                        status & (TP_STATUS_CSUMNOTREADY | TP_STATUS_CSUM_VALID) != 0;
                    n += 1;
                }
            } else {
                stats.drop(DropReason::RxOversize);
            }
            self.pending -= 1;
            self.next_off = off + next;
            if self.pending == 0 || next == 0 {
                self.pending = 0;
                self.retire_block();
            }
        }
        batch.len = n;
        n
    }

    fn release(&mut self) {
        for k in 0..self.retired_len {
            let block = self.block_ptr(self.retired[k]);
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            // SAFETY: the block status word is inside the block descriptor we own until we
            // hand it back by writing TP_STATUS_KERNEL.
            unsafe {
                std::ptr::write_volatile(block.add(BLOCK_STATUS).cast::<u32>(), TP_STATUS_KERNEL)
            };
        }
        self.retired_len = 0;
    }

    fn max_frame(&self) -> usize {
        self.max_frame
    }

    fn tx(&mut self, batch: &mut Batch, idx: &[u8]) -> usize {
        if self.link != super::Link::Up {
            // Nothing is queued behind a dead link: the worker counts these as link_down.
            return 0;
        }
        let room = TX_FRAME_SIZE as usize - TX_DATA_OFF;
        let mut queued = 0;
        for &i in idx {
            let slot = self.tx_slot(self.tx_next);
            let status = Self::read_u32(slot, PKT_STATUS);
            if status == TP_STATUS_WRONG_FORMAT {
                // The kernel refused what was there (cannot happen for frames that fit); the
                // slot is free again.
                Self::write_u32(slot, PKT_STATUS, TP_STATUS_AVAILABLE);
            } else if status != TP_STATUS_AVAILABLE {
                // Ring full: the kernel has not sent this slot yet.
                break;
            }
            // An index outside the batch, or a frame too large for a slot, is consumed and
            // not sent rather than sending a stale buffer.
            if let Some(f) = batch
                .bufs
                .get(usize::from(i))
                .map(|b| b.frame())
                .filter(|f| f.len() <= room)
            {
                // SAFETY: the slot is ours (status AVAILABLE) and `TX_DATA_OFF + f.len()` is
                // within its `TX_FRAME_SIZE` bytes (checked by the filter above).
                unsafe {
                    std::ptr::copy_nonoverlapping(f.as_ptr(), slot.add(TX_DATA_OFF), f.len());
                }
                Self::write_u32(slot, PKT_LEN, f.len() as u32);
                std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
                Self::write_u32(slot, PKT_STATUS, TP_STATUS_SEND_REQUEST);
                self.tx_next = (self.tx_next + 1) % TX_FRAMES;
            }
            queued += 1;
        }
        if queued > 0 {
            // SAFETY: a zero-length send on our own socket: "send what the TX ring holds".
            unsafe { libc::send(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) };
        }
        queued
    }

    fn kernel_drops(&mut self) -> u64 {
        // struct tpacket_stats_v3: tp_packets, tp_drops, tp_freeze_q_cnt. Reading resets
        // them, so the total is kept here.
        let mut st = [0u32; 3];
        let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
        // SAFETY: `st` is a live buffer of `len` bytes; the kernel writes at most that much.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                st.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if r == 0 {
            self.kernel_dropped += u64::from(st[1]);
        }
        self.kernel_dropped
    }

    fn link(&self) -> super::Link {
        self.link
    }

    fn check_link(&mut self) -> super::Link {
        let now = super::read_link(&self.interface, self.ifindex);
        if super::note_link(&self.interface, 0, self.link, now, "interface state") {
            self.link = now;
        }
        self.link
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl AfPacketPort {
    /// The current block is read to the end: it goes back to the kernel at the next release
    /// (its frames may be in the batch), and reading moves on to the next.
    fn retire_block(&mut self) {
        if let Some(slot) = self.retired.get_mut(self.retired_len) {
            *slot = self.block;
            self.retired_len += 1;
        }
        self.block = (self.block + 1) % BLOCK_NR;
    }
}

impl Drop for AfPacketPort {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the ring mapped in `open`; the socket closes with `fd`.
        unsafe {
            libc::munmap(self.ring.cast(), self.ring_len);
        }
    }
}
