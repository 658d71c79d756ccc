//! The few BPF operations the AF_XDP port needs, on the raw `bpf(2)` system call: an XSK map,
//! a hand-assembled XDP program that redirects each receive queue into its socket, and a BPF
//! link that attaches it to an interface. No clang, libbpf or BTF is needed at build or run
//! time (the development kernels have no `/sys/kernel/btf/vmlinux`).
//!
//! The program is attached through a BPF link, not netlink: the kernel detaches it when the
//! link's descriptor closes, so the interface is left clean however the gateway exits, even
//! when it is killed.
//!
//! This is a port backend: `unsafe` is allowed here, each block names what justifies it.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `union bpf_attr` is 144 bytes on the kernels we target; unused fields must be zero.
const ATTR_LEN: usize = 144;

const BPF_MAP_CREATE: i64 = 0;
const BPF_MAP_UPDATE_ELEM: i64 = 2;
const BPF_MAP_DELETE_ELEM: i64 = 3;
const BPF_PROG_LOAD: i64 = 5;
const BPF_PROG_TEST_RUN: i64 = 10;
/// `BPF_F_TEST_XDP_LIVE_FRAMES`: run the program on real frames that really leave.
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 2;
const BPF_FUNC_GET_PRANDOM_U32: i32 = 7;
/// `enum xdp_action`: XDP_DROP and XDP_TX.
const XDP_DROP: i32 = 1;
const XDP_TX: i32 = 3;
const BPF_LINK_CREATE: i64 = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type`: BPF_XDP.
const BPF_XDP: u32 = 37;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `enum xdp_action`: XDP_PASS.
pub const XDP_PASS: i32 = 2;
/// `XDP_FLAGS_SKB_MODE` and `XDP_FLAGS_DRV_MODE` from `if_link.h`.
const XDP_FLAGS_SKB_MODE: u32 = 2;
const XDP_FLAGS_DRV_MODE: u32 = 4;

/// One eBPF instruction, encoded as the kernel reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register (low nibble) and source register (high nibble).
    pub regs: u8,
    /// Signed offset.
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Insn {
            code,
            regs: (src << 4) | (dst & 0x0f),
            off,
            imm,
        }
    }

    /// `dst = *(u32 *)(src + off)`.
    pub const fn ldx_w(dst: u8, src: u8, off: i16) -> Self {
        Insn::new(0x61, dst, src, off, 0)
    }

    /// `dst = imm` (64-bit move of a sign-extended immediate).
    pub const fn mov_imm(dst: u8, imm: i32) -> Self {
        Insn::new(0xb7, dst, 0, 0, imm)
    }

    /// `dst = map` as the two instructions of a pseudo map-fd load.
    pub const fn ld_map_fd(dst: u8, fd: RawFd) -> [Self; 2] {
        [
            Insn::new(0x18, dst, BPF_PSEUDO_MAP_FD, 0, fd),
            Insn::new(0, 0, 0, 0, 0),
        ]
    }

    /// `dst = src` (64-bit register move).
    pub const fn mov_reg(dst: u8, src: u8) -> Self {
        Insn::new(0xbf, dst, src, 0, 0)
    }

    /// `dst += imm`.
    pub const fn add_imm(dst: u8, imm: i32) -> Self {
        Insn::new(0x07, dst, 0, 0, imm)
    }

    /// `dst %= imm` (unsigned).
    pub const fn mod_imm(dst: u8, imm: i32) -> Self {
        Insn::new(0x97, dst, 0, 0, imm)
    }

    /// `dst = htobe16(dst)`.
    pub const fn to_be16(dst: u8) -> Self {
        Insn::new(0xdc, dst, 0, 0, 16)
    }

    /// `if dst > src goto +off` (unsigned).
    pub const fn jgt_reg(dst: u8, src: u8, off: i16) -> Self {
        Insn::new(0x2d, dst, src, off, 0)
    }

    /// `*(u32 *)(dst + off) = imm`.
    pub const fn st_w(dst: u8, off: i16, imm: i32) -> Self {
        Insn::new(0x62, dst, 0, off, imm)
    }

    /// `*(u8 *)(dst + off) = imm`.
    pub const fn st_b(dst: u8, off: i16, imm: i32) -> Self {
        Insn::new(0x72, dst, 0, off, imm)
    }

    /// `*(u16 *)(dst + off) = src`.
    pub const fn stx_h(dst: u8, src: u8, off: i16) -> Self {
        Insn::new(0x6b, dst, src, off, 0)
    }

    /// Call a helper by number.
    pub const fn call(helper: i32) -> Self {
        Insn::new(0x85, 0, 0, 0, helper)
    }

    /// Return `r0`.
    pub const fn exit() -> Self {
        Insn::new(0x95, 0, 0, 0, 0)
    }

    fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

/// The gateway's XDP program: `return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);`
/// A queue with no socket in the map passes its frames to the kernel.
pub fn redirect_program(xsk_map: RawFd) -> Vec<Insn> {
    let [ld0, ld1] = Insn::ld_map_fd(1, xsk_map);
    vec![
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index (16).
        Insn::ldx_w(2, 1, 16),
        ld0,
        ld1,
        Insn::mov_imm(3, XDP_PASS),
        Insn::call(BPF_FUNC_REDIRECT_MAP),
        Insn::exit(),
    ]
}

/// A traffic-generator program for [`run_live_frames`]: it writes `template` over the frame
/// (live frames come back with whatever the receiver left in them, so every run rewrites the
/// headers), optionally puts a random one of `flows` consecutive ports starting at the
/// template's value into the big-endian 16-bit field at `vary_at` (a UDP source port, whose
/// checksum must then be zero), and transmits it (`XDP_TX`).
///
/// Returns `None` when the template is longer than the 16-bit offsets of the instruction set
/// or the field lies outside it.
pub fn sender_program(template: &[u8], vary_at: Option<(usize, u16)>) -> Option<Vec<Insn>> {
    let len = i32::try_from(template.len()).ok().filter(|&l| l <= 4096)?;
    let mut p = vec![
        Insn::mov_reg(6, 1),
        Insn::ldx_w(2, 6, 0),
        Insn::ldx_w(3, 6, 4),
        Insn::mov_reg(4, 2),
        Insn::add_imm(4, len),
    ];
    let mut body = Vec::new();
    let words = template.chunks_exact(4);
    let tail = words.remainder();
    for (k, w) in words.enumerate() {
        let v = i32::from_ne_bytes([w[0], w[1], w[2], w[3]]);
        body.push(Insn::st_w(2, (k * 4) as i16, v));
    }
    let base = template.len() - tail.len();
    for (k, &b) in tail.iter().enumerate() {
        body.push(Insn::st_b(2, (base + k) as i16, i32::from(b)));
    }
    if let Some((at, flows)) = vary_at {
        let field = template.get(at..at + 2)?;
        let first = u16::from_be_bytes([field[0], field[1]]);
        body.extend([
            Insn::mov_reg(7, 2),
            Insn::call(BPF_FUNC_GET_PRANDOM_U32),
            Insn::mod_imm(0, i32::from(flows.max(1))),
            Insn::add_imm(0, i32::from(first)),
            Insn::to_be16(0),
            Insn::stx_h(7, 0, at as i16),
        ]);
    }
    // Too short a frame: drop rather than write past its end.
    p.push(Insn::jgt_reg(4, 3, (body.len() + 2) as i16));
    p.extend(body);
    p.extend([
        Insn::mov_imm(0, XDP_TX),
        Insn::exit(),
        Insn::mov_imm(0, XDP_DROP),
        Insn::exit(),
    ]);
    Some(p)
}

/// Runs `prog` `repeat` times in live-frames mode on frames initialised from `frame`, as if
/// received on `ifindex` (of this process's network namespace): each `XDP_TX` really leaves
/// through that interface. The fastest sender the kernel offers on veth (see IO-NOTES).
///
/// # Errors
/// The kernel's error (EINVAL on kernels without live frames).
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

/// The index of `interface` in this process's network namespace.
///
/// # Errors
/// `NotFound` when there is no such interface.
pub fn ifindex(interface: &str) -> io::Result<u32> {
    let name = std::ffi::CString::new(interface).map_err(|_| io::Error::other("interface name"))?;
    // SAFETY: `name` is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if i == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {interface}"),
        ));
    }
    Ok(i)
}

/// How the XDP program ended up attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (native XDP).
    Native,
    /// Generic XDP on the skb path.
    Skb,
}

impl XdpMode {
    /// The mode's usual name.
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Skb => "skb",
        }
    }
}

struct Attr([u8; ATTR_LEN]);

impl Attr {
    fn new() -> Self {
        Attr([0; ATTR_LEN])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn bytes(&mut self, off: usize, v: &[u8]) -> &mut Self {
        self.0[off..off + v.len()].copy_from_slice(v);
        self
    }
}

fn sys_bpf(cmd: i64, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: `attr` is a live, zero-padded `union bpf_attr` of the size passed; any pointers
    // inside it point at buffers the caller keeps alive for the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), ATTR_LEN as u32) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd_result(r: i64) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(r).map_err(|_| io::Error::other("bpf returned a bad descriptor"))?;
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates an XSK map with `entries` slots (one per receive queue).
///
/// # Errors
/// The kernel's error (EPERM without CAP_BPF/CAP_NET_ADMIN).
pub fn create_xsk_map(entries: u32) -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, BPF_MAP_TYPE_XSKMAP)
        .u32(4, 4)
        .u32(8, 4)
        .u32(12, entries.max(1))
        .bytes(28, b"gw_xsks");
    fd_result(sys_bpf(BPF_MAP_CREATE, &mut a)?)
}

/// Puts the XSK `sock` into slot `key` of `map`.
///
/// # Errors
/// The kernel's error.
pub fn map_set(map: &OwnedFd, key: u32, sock: RawFd) -> io::Result<()> {
    let k = key.to_ne_bytes();
    let v = sock.to_ne_bytes();
    let mut a = Attr::new();
    a.u32(0, map.as_raw_fd() as u32)
        .u64(8, k.as_ptr() as u64)
        .u64(16, v.as_ptr() as u64);
    sys_bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(|_| ())
}

/// Empties slot `key` of `map`.
///
/// # Errors
/// The kernel's error (ENOENT when the slot is already empty).
pub fn map_clear(map: &OwnedFd, key: u32) -> io::Result<()> {
    let k = key.to_ne_bytes();
    let mut a = Attr::new();
    a.u32(0, map.as_raw_fd() as u32).u64(8, k.as_ptr() as u64);
    sys_bpf(BPF_MAP_DELETE_ELEM, &mut a).map(|_| ())
}

/// Loads an XDP program; on rejection the verifier's log is in the error.
///
/// # Errors
/// The kernel's error, with the verifier log when there is one.
pub fn load_xdp(insns: &[Insn], name: &str) -> io::Result<OwnedFd> {
    let code: Vec<u8> = insns.iter().flat_map(|i| i.to_bytes()).collect();
    let license = b"GPL\0";
    let mut log = vec![0u8; 64 * 1024];
    let mut pname = [0u8; 16];
    for (d, s) in pname.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    let mut a = Attr::new();
    a.u32(0, BPF_PROG_TYPE_XDP)
        .u32(4, insns.len() as u32)
        .u64(8, code.as_ptr() as u64)
        .u64(16, license.as_ptr() as u64)
        .bytes(48, &pname)
        .u32(68, BPF_XDP);
    match sys_bpf(BPF_PROG_LOAD, &mut a) {
        Ok(fd) => fd_result(fd),
        Err(first) => {
            // Load again with the verifier log on, to say why.
            a.u32(24, 1)
                .u32(28, log.len() as u32)
                .u64(32, log.as_mut_ptr() as u64);
            let _ = sys_bpf(BPF_PROG_LOAD, &mut a);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            Err(io::Error::new(
                first.kind(),
                format!("XDP program rejected: {first}: {}", text.trim()),
            ))
        }
    }
}

/// Attaches `prog` to the interface through a BPF link: natively when the driver supports it,
/// else generic (skb) mode. The program stays attached exactly as long as the returned link
/// descriptor is open.
///
/// # Errors
/// The kernel's error for the skb-mode attempt (EBUSY: another program is attached).
pub fn attach_xdp(prog: &OwnedFd, ifindex: u32, force_skb: bool) -> io::Result<(OwnedFd, XdpMode)> {
    let attach = |flags: u32| {
        let mut a = Attr::new();
        a.u32(0, prog.as_raw_fd() as u32)
            .u32(4, ifindex)
            .u32(8, BPF_XDP)
            .u32(12, flags);
        sys_bpf(BPF_LINK_CREATE, &mut a).and_then(fd_result)
    };
    if !force_skb {
        if let Ok(link) = attach(XDP_FLAGS_DRV_MODE) {
            return Ok((link, XdpMode::Native));
        }
    }
    attach(XDP_FLAGS_SKB_MODE).map(|l| (l, XdpMode::Skb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_encode_as_the_kernel_reads_them() {
        // `r2 = *(u32 *)(r1 + 16)`: opcode 0x61, dst 2, src 1, off 16.
        assert_eq!(
            Insn::ldx_w(2, 1, 16).to_bytes(),
            [0x61, 0x12, 16, 0, 0, 0, 0, 0]
        );
        // The map load carries the pseudo-fd marker in the source register.
        let [a, b] = Insn::ld_map_fd(1, 7);
        assert_eq!(a.to_bytes(), [0x18, 0x11, 0, 0, 7, 0, 0, 0]);
        assert_eq!(b.to_bytes(), [0; 8]);
        assert_eq!(Insn::call(51).to_bytes(), [0x85, 0, 0, 0, 51, 0, 0, 0]);
        assert_eq!(redirect_program(3).len(), 6);
    }

    #[test]
    fn the_sender_program_writes_the_whole_template_and_guards_its_length() {
        let t: Vec<u8> = (0..63).collect();
        let p = sender_program(&t, Some((34, 16))).unwrap();
        // 15 word stores and 3 byte stores cover the 63 bytes.
        assert_eq!(p.iter().filter(|i| i.code == 0x62).count(), 15);
        assert_eq!(p.iter().filter(|i| i.code == 0x72).count(), 3);
        // The length check jumps exactly over the body to the XDP_DROP exit.
        let j = p.iter().position(|i| i.code == 0x2d).unwrap();
        let target = j + 1 + p[j].off as usize;
        assert_eq!(p[target], Insn::mov_imm(0, XDP_DROP));
        assert!(sender_program(&t, Some((62, 4))).is_none());
    }
}
