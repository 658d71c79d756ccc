//! pktgen's transmit backend: a generated XDP program run by the kernel in live-frames mode
//! (`BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES`), which writes each frame's
//! per-flow fields, sequence number, timestamp and checksums and transmits it with `XDP_TX`.
//! The fastest sender the kernel offers on veth. The forwarding code never imports this file;
//! it lives among the ports because it is built on [`super::bpf`]'s system calls, and `unsafe`
//! is allowed only in port backends.

#![allow(unsafe_code)]

use super::bpf::{
    fd_result, sys_bpf, Attr, Insn, BPF_MAP_CREATE, BPF_MAP_LOOKUP_ELEM, BPF_PROG_TEST_RUN,
};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// `BPF_F_TEST_XDP_LIVE_FRAMES`: run the program on real frames that really leave.
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 2;
/// `bpf_ktime_get_tai_ns()`: CLOCK_TAI, which the receiver can relate to the kernel's
/// CLOCK_REALTIME receive timestamps.
const BPF_FUNC_KTIME_GET_TAI_NS: i32 = 208;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
/// `enum xdp_action`: XDP_DROP and XDP_TX.
const XDP_DROP: i32 = 1;
const XDP_TX: i32 = 3;

/// A field the sender sets in each frame from the frame's flow number `f`: the big-endian
/// `width`-byte value `base + (f << shift)`. The caller keeps it within the field's width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveField {
    /// Byte offset in the frame (even: see [`LiveChecksum`]).
    pub at: usize,
    /// 2 or 4 bytes.
    pub width: u8,
    /// The value for flow 0.
    pub base: u32,
    /// How far the flow number is shifted (8 for a VNI in the top 24 bits of its word).
    pub shift: u8,
}

/// A 16-bit ones'-complement checksum (IPv4 header, UDP, TCP) the sender completes per frame.
/// Every covered range starts at an even offset, so a 16-bit word at an even frame offset
/// adds its big-endian value to the sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveChecksum {
    /// Offset of the checksum field.
    pub at: usize,
    /// The folded ones'-complement sum of everything covered with the per-frame fields and
    /// the checksum itself zeroed (pseudo-header included).
    pub base: u16,
    /// Indices into [`LiveSender::fields`] of the fields it covers.
    pub fields: Vec<usize>,
    /// It covers the sequence number and the timestamp.
    pub stamp: bool,
    /// A result of zero is sent as `0xffff` (UDP, where zero means "no checksum").
    pub zero_is_ffff: bool,
}

/// What [`sender_program`] sends: a template frame and what changes from frame to frame.
///
/// Frame `n` of a run (counted by a one-slot array map, so it carries on across calls and
/// across programs sharing the map) belongs to flow `n % flows`. Its sequence number `n` is
/// written as a big-endian u32 at `seq_at`, `bpf_ktime_get_tai_ns()` (CLOCK_TAI) as a
/// big-endian u64 at `ts_at`. [`LiveSender::render`] builds the same frame in Rust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSender {
    /// The frame for sequence 0 (every byte the program does not set comes from here).
    pub frame: Vec<u8>,
    /// Number of flows (at least 1).
    pub flows: u16,
    /// Fields set from the flow number.
    pub fields: Vec<LiveField>,
    /// Where the sequence number goes.
    pub seq_at: Option<usize>,
    /// Where the timestamp goes.
    pub ts_at: Option<usize>,
    /// Checksums completed per frame, in order (one may cover an earlier one's field).
    pub checksums: Vec<LiveChecksum>,
}

impl LiveSender {
    fn field_value(f: &LiveField, flow: u32) -> u32 {
        f.base.wrapping_add(flow << f.shift)
    }

    /// Frame `seq` as the program writes it with timestamp `ts_ns`: the reference the
    /// program is tested against, and the generator's pcap output.
    pub fn render(&self, seq: u32, ts_ns: u64) -> Vec<u8> {
        let mut out = vec![0u8; self.frame.len()];
        self.render_into(&mut out, seq, ts_ns);
        out
    }

    /// [`LiveSender::render`] into `out` (the frame's length; a shorter buffer gets what
    /// fits), without allocating: for senders that write frames themselves.
    pub fn render_into(&self, out: &mut [u8], seq: u32, ts_ns: u64) {
        let n = out.len().min(self.frame.len());
        out[..n].copy_from_slice(&self.frame[..n]);
        let flow = seq % u32::from(self.flows.max(1));
        let mut put = |at: usize, b: &[u8]| {
            if let Some(d) = out.get_mut(at..at + b.len()) {
                d.copy_from_slice(b);
            }
        };
        for f in &self.fields {
            let v = Self::field_value(f, flow);
            match f.width {
                2 => put(f.at, &(v as u16).to_be_bytes()),
                _ => put(f.at, &v.to_be_bytes()),
            }
        }
        if let Some(at) = self.seq_at {
            put(at, &seq.to_be_bytes());
        }
        if let Some(at) = self.ts_at {
            put(at, &ts_ns.to_be_bytes());
        }
        for c in &self.checksums {
            let mut sum = u64::from(c.base);
            for &i in &c.fields {
                if let Some(f) = self.fields.get(i) {
                    let v = Self::field_value(f, flow);
                    sum += u64::from(v >> 16) * u64::from(f.width == 4) + u64::from(v & 0xffff);
                }
            }
            if c.stamp {
                sum += u64::from(seq >> 16) + u64::from(seq & 0xffff);
                for k in 0..4 {
                    sum += (ts_ns >> (16 * k)) & 0xffff;
                }
            }
            for _ in 0..3 {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            let mut v = !(sum as u16);
            if v == 0 && c.zero_is_ffff {
                v = 0xffff;
            }
            put(c.at, &v.to_be_bytes());
        }
    }
}

/// Now on CLOCK_TAI in nanoseconds: the clock [`sender_program`] stamps frames with.
pub fn tai_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to write.
    unsafe { libc::clock_gettime(libc::CLOCK_TAI, &mut t) };
    (t.tv_sec as u64).saturating_mul(1_000_000_000) + t.tv_nsec as u64
}

/// Creates the one-slot array map (a u64 frame counter) a [`sender_program`] counts in.
///
/// # Errors
/// The kernel's error (EPERM without CAP_BPF).
pub fn create_counter_map() -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, BPF_MAP_TYPE_ARRAY)
        .u32(4, 4)
        .u32(8, 8)
        .u32(12, 1)
        .bytes(28, b"gw_pktgen_seq");
    fd_result(sys_bpf(BPF_MAP_CREATE, &mut a)?)
}

/// The frames the programs counting in `counter` ([`create_counter_map`]) have taken so far.
///
/// # Errors
/// The kernel's error.
pub fn read_counter(counter: &OwnedFd) -> io::Result<u64> {
    let k = 0u32.to_ne_bytes();
    let mut v = [0u8; 8];
    let mut a = Attr::new();
    a.u32(0, counter.as_raw_fd() as u32)
        .u64(8, k.as_ptr() as u64)
        .u64(16, v.as_mut_ptr() as u64);
    sys_bpf(BPF_MAP_LOOKUP_ELEM, &mut a)?;
    Ok(u64::from_ne_bytes(v))
}

/// A traffic-generator program for [`run_live_frames`]: it takes the next sequence number
/// from `counter` (read and written through its value's address) (see [`create_counter_map`]), writes the template over the frame (live
/// frames come back with whatever the receiver left in them, so every run rewrites it all),
/// sets the per-frame fields, sequence number and timestamp, completes the checksums and
/// transmits the frame (`XDP_TX`). A frame shorter than the template is dropped.
///
/// Returns `None` when the template is longer than 4096 bytes or a field lies outside it.
pub fn sender_program(s: &LiveSender, counter: RawFd) -> Option<Vec<Insn>> {
    let len = i32::try_from(s.frame.len()).ok().filter(|&l| l <= 4096)?;
    let inside = |at: usize, n: usize| at + n <= s.frame.len();
    let off = |at: usize| at as i16;
    // The counter's value by direct address (no lookup helper call per frame).
    let [m0, m1] = Insn::ld_map_value(0, counter, 0);
    // r6 = ctx, r7 = sequence number, r8 = flow, r9 = timestamp.
    let mut head = vec![Insn::mov_reg(6, 1), m0, m1];
    let mut body = vec![
        Insn::ldx_w(7, 0, 0),
        Insn::mov_reg(1, 7),
        Insn::add_imm(1, 1),
        Insn::stx_w(0, 1, 0),
        Insn::mov_reg(8, 7),
        Insn::mod_imm(8, i32::from(s.flows.max(1))),
        Insn::mov_imm(9, 0),
    ];
    if s.ts_at.is_some() {
        body.extend([Insn::call(BPF_FUNC_KTIME_GET_TAI_NS), Insn::mov_reg(9, 0)]);
    }
    body.extend([
        Insn::ldx_w(2, 6, 0),
        Insn::ldx_w(3, 6, 4),
        Insn::mov_reg(4, 2),
        Insn::add_imm(4, len),
    ]);
    let mut write = Vec::new();
    let words = s.frame.chunks_exact(4);
    let tail = words.remainder();
    for (k, w) in words.enumerate() {
        let v = i32::from_ne_bytes([w[0], w[1], w[2], w[3]]);
        write.push(Insn::st_w(2, (k * 4) as i16, v));
    }
    let base = s.frame.len() - tail.len();
    for (k, &b) in tail.iter().enumerate() {
        write.push(Insn::st_b(2, (base + k) as i16, i32::from(b)));
    }
    // r1 = the field's value for flow r8.
    let value = |f: &LiveField| {
        [
            Insn::mov32_reg(1, 8),
            Insn::lsh32_imm(1, i32::from(f.shift)),
            Insn::add32_imm(1, f.base as i32),
        ]
    };
    for f in &s.fields {
        if !inside(f.at, usize::from(f.width)) || !matches!(f.width, 2 | 4) {
            return None;
        }
        write.extend(value(f));
        if f.width == 2 {
            write.extend([Insn::to_be16(1), Insn::stx_h(2, 1, off(f.at))]);
        } else {
            write.extend([Insn::to_be32(1), Insn::stx_w(2, 1, off(f.at))]);
        }
    }
    if let Some(at) = s.seq_at {
        inside(at, 4).then_some(())?;
        write.extend([
            Insn::mov32_reg(1, 7),
            Insn::to_be32(1),
            Insn::stx_w(2, 1, off(at)),
        ]);
    }
    if let Some(at) = s.ts_at {
        inside(at, 8).then_some(())?;
        write.extend([
            Insn::mov_reg(1, 9),
            Insn::to_be64(1),
            Insn::stx_dw(2, 1, off(at)),
        ]);
    }
    // Adds the 16-bit halves of r1 (a u32) to the sum in r0.
    let add_halves = [
        Insn::mov_reg(4, 1),
        Insn::rsh_imm(4, 16),
        Insn::add_reg(0, 4),
        Insn::and_imm(1, 0xffff),
        Insn::add_reg(0, 1),
    ];
    for c in &s.checksums {
        inside(c.at, 2).then_some(())?;
        write.push(Insn::mov_imm(0, i32::from(c.base)));
        for &i in &c.fields {
            let f = s.fields.get(i)?;
            write.extend(value(f));
            write.extend(add_halves);
        }
        if c.stamp {
            write.push(Insn::mov32_reg(1, 7));
            write.extend(add_halves);
            for k in 0..4 {
                write.extend([
                    Insn::mov_reg(1, 9),
                    Insn::rsh_imm(1, 16 * k),
                    Insn::and_imm(1, 0xffff),
                    Insn::add_reg(0, 1),
                ]);
            }
        }
        for _ in 0..3 {
            write.extend([
                Insn::mov_reg(1, 0),
                Insn::rsh_imm(1, 16),
                Insn::and_imm(0, 0xffff),
                Insn::add_reg(0, 1),
            ]);
        }
        write.push(Insn::xor_imm(0, 0xffff));
        if c.zero_is_ffff {
            write.extend([Insn::jne_imm(0, 0, 1), Insn::mov_imm(0, 0xffff)]);
        }
        write.extend([Insn::to_be16(0), Insn::stx_h(2, 0, off(c.at))]);
    }
    // Too short a frame: drop rather than write past its end.
    body.push(Insn::jgt_reg(4, 3, (write.len() + 2) as i16));
    body.extend(write);
    body.extend([Insn::mov_imm(0, XDP_TX), Insn::exit()]);
    head.extend(body);
    head.extend([Insn::mov_imm(0, XDP_DROP), Insn::exit()]);
    Some(head)
}

/// Runs `prog` `repeat` times in live-frames mode on frames initialised from `frame`, as if
/// received on `ifindex` (of this process's network namespace): each `XDP_TX` really leaves
/// through that interface. The fastest sender the kernel offers on veth: no socket and no copy
/// from userspace per frame.
///
/// # Errors
/// The kernel's error (EINVAL on kernels without live frames; EINTR when a signal arrived
/// during the run, after some of the frames: [`read_counter`] says how many).
pub fn run_live_frames(prog: &OwnedFd, frame: &[u8], repeat: u32, ifindex: u32) -> io::Result<()> {
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
    // The kernel wants data_end equal to the frame's length.
    let mut ctx = [0u32; 6];
    ctx[1] = frame.len() as u32;
    ctx[3] = ifindex;
    let mut a = Attr::new();
    a.u32(0, prog.as_raw_fd() as u32)
        .u32(8, frame.len() as u32)
        .u64(16, frame.as_ptr() as u64)
        .u32(32, repeat)
        .u32(40, std::mem::size_of_val(&ctx) as u32)
        .u64(48, ctx.as_ptr() as u64)
        .u32(64, BPF_F_TEST_XDP_LIVE_FRAMES)
        .u32(72, 64);
    sys_bpf(BPF_PROG_TEST_RUN, &mut a).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::super::bpf::BPF_PSEUDO_MAP_VALUE;
    use super::*;

    fn sender(len: usize) -> LiveSender {
        LiveSender {
            frame: (0..len as u8).collect(),
            flows: 16,
            fields: vec![LiveField {
                at: 34,
                width: 2,
                base: 10000,
                shift: 0,
            }],
            seq_at: Some(44),
            ts_at: Some(48),
            checksums: vec![LiveChecksum {
                at: 40,
                base: 0x1234,
                fields: vec![0],
                stamp: true,
                zero_is_ffff: true,
            }],
        }
    }

    #[test]
    fn the_sender_program_writes_the_whole_template_and_guards_its_length() {
        let p = sender_program(&sender(63), 3).unwrap();
        // 15 word stores and 3 byte stores cover the 63 bytes (and nothing else stores an
        // immediate: the counter is not looked up by a key on the stack).
        assert_eq!(p.iter().filter(|i| i.code == 0x62).count(), 15);
        assert_eq!(p.iter().filter(|i| i.code == 0x72).count(), 3);
        // The length check jumps exactly over the writes to the XDP_DROP exit.
        let j = p.iter().position(|i| i.code == 0x2d).unwrap();
        let target = j + 1 + p[j].off as usize;
        assert_eq!(p[target - 2], Insn::mov_imm(0, XDP_TX));
        assert_eq!(p[target], Insn::mov_imm(0, XDP_DROP));
        // The counter is read by direct value address, not through a helper call.
        assert_eq!(p[1].regs >> 4, BPF_PSEUDO_MAP_VALUE);
        // A field past the end makes no program.
        assert!(sender_program(&sender(50), 3).is_none());
    }

    #[test]
    fn render_sets_flow_fields_stamp_and_a_checksum_that_verifies() {
        let s = sender(64);
        let f = s.render(17, 0x0102_0304_0506_0708);
        assert_eq!(&f[34..36], &10001u16.to_be_bytes());
        assert_eq!(&f[44..48], &17u32.to_be_bytes());
        assert_eq!(&f[48..56], &0x0102_0304_0506_0708u64.to_be_bytes());
        // base + covered words + the checksum itself sums to 0xffff.
        let mut sum = 0x1234u32;
        for at in [34, 40, 44, 46, 48, 50, 52, 54] {
            sum += u32::from(u16::from_be_bytes([f[at], f[at + 1]]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff);
    }
}
