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

pub(super) const BPF_MAP_CREATE: i64 = 0;
pub(super) const BPF_MAP_LOOKUP_ELEM: i64 = 1;
const BPF_MAP_UPDATE_ELEM: i64 = 2;
const BPF_MAP_DELETE_ELEM: i64 = 3;
const BPF_PROG_LOAD: i64 = 5;
pub(super) const BPF_PROG_TEST_RUN: i64 = 10;
const BPF_MAP_TYPE_LPM_TRIE: u32 = 11;
/// `BPF_F_NO_PREALLOC`: required for LPM tries.
const BPF_F_NO_PREALLOC: u32 = 1;
const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
const BPF_LINK_CREATE: i64 = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type`: BPF_XDP.
const BPF_XDP: u32 = 37;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const BPF_PSEUDO_MAP_FD: u8 = 1;
pub(super) const BPF_PSEUDO_MAP_VALUE: u8 = 2;
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

    /// `dst = *(u16 *)(src + off)`.
    pub const fn ldx_h(dst: u8, src: u8, off: i16) -> Self {
        Insn::new(0x69, dst, src, off, 0)
    }

    /// `dst = *(u8 *)(src + off)`.
    pub const fn ldx_b(dst: u8, src: u8, off: i16) -> Self {
        Insn::new(0x71, dst, src, off, 0)
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

    /// `dst = &map's value + off` (an array map's first element) as the two instructions of
    /// a pseudo map-value load.
    pub const fn ld_map_value(dst: u8, fd: RawFd, off: i32) -> [Self; 2] {
        [
            Insn::new(0x18, dst, BPF_PSEUDO_MAP_VALUE, 0, fd),
            Insn::new(0, 0, 0, 0, off),
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

    /// `*(u32 *)(dst + off) = src`.
    pub const fn stx_w(dst: u8, src: u8, off: i16) -> Self {
        Insn::new(0x63, dst, src, off, 0)
    }

    /// `*(u64 *)(dst + off) = src`.
    pub const fn stx_dw(dst: u8, src: u8, off: i16) -> Self {
        Insn::new(0x7b, dst, src, off, 0)
    }

    /// `dst += src` (64-bit).
    pub const fn add_reg(dst: u8, src: u8) -> Self {
        Insn::new(0x0f, dst, src, 0, 0)
    }

    /// `dst = (u32)src` (32-bit move: the upper half is zeroed).
    pub const fn mov32_reg(dst: u8, src: u8) -> Self {
        Insn::new(0xbc, dst, src, 0, 0)
    }

    /// `dst = (u32)(dst + imm)`.
    pub const fn add32_imm(dst: u8, imm: i32) -> Self {
        Insn::new(0x04, dst, 0, 0, imm)
    }

    /// `dst = (u32)(dst << imm)`.
    pub const fn lsh32_imm(dst: u8, imm: i32) -> Self {
        Insn::new(0x64, dst, 0, 0, imm)
    }

    /// `dst >>= imm` (64-bit, logical).
    pub const fn rsh_imm(dst: u8, imm: i32) -> Self {
        Insn::new(0x77, dst, 0, 0, imm)
    }

    /// `dst &= imm`.
    pub const fn and_imm(dst: u8, imm: i32) -> Self {
        Insn::new(0x57, dst, 0, 0, imm)
    }

    /// `dst ^= imm`.
    pub const fn xor_imm(dst: u8, imm: i32) -> Self {
        Insn::new(0xa7, dst, 0, 0, imm)
    }

    /// `dst = htobe32(dst)` (the upper half is zeroed).
    pub const fn to_be32(dst: u8) -> Self {
        Insn::new(0xdc, dst, 0, 0, 32)
    }

    /// `dst = htobe64(dst)`.
    pub const fn to_be64(dst: u8) -> Self {
        Insn::new(0xdc, dst, 0, 0, 64)
    }

    /// `if dst == imm goto +off`.
    pub const fn jeq_imm(dst: u8, imm: i32, off: i16) -> Self {
        Insn::new(0x15, dst, 0, off, imm)
    }

    /// `if dst != imm goto +off`.
    pub const fn jne_imm(dst: u8, imm: i32, off: i16) -> Self {
        Insn::new(0x55, dst, 0, off, imm)
    }

    /// `goto +off`.
    pub const fn ja(off: i16) -> Self {
        Insn::new(0x05, 0, 0, off, 0)
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

/// A straight-line program with forward jumps to named labels, resolved by [`Asm::finish`].
#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    labels: Vec<(&'static str, usize)>,
    /// (instruction index, label) of each jump to patch.
    jumps: Vec<(usize, &'static str)>,
}

impl Asm {
    fn op(&mut self, i: Insn) -> &mut Self {
        self.insns.push(i);
        self
    }
    fn ops(&mut self, is: &[Insn]) -> &mut Self {
        self.insns.extend_from_slice(is);
        self
    }
    /// A jump (its offset patched later) to `label`.
    fn jump(&mut self, i: Insn, label: &'static str) -> &mut Self {
        self.jumps.push((self.insns.len(), label));
        self.insns.push(i);
        self
    }
    fn label(&mut self, name: &'static str) -> &mut Self {
        self.labels.push((name, self.insns.len()));
        self
    }
    /// The program, or `None` for a jump to a missing or earlier label.
    fn finish(mut self) -> Option<Vec<Insn>> {
        for &(at, name) in &self.jumps {
            let (_, to) = self.labels.iter().find(|(n, _)| *n == name)?;
            let off = i16::try_from(to.checked_sub(at + 1)?).ok()?;
            self.insns.get_mut(at)?.off = off;
        }
        Some(self.insns)
    }
}

/// The gateway's XDP program when unowned traffic goes to the kernel: frames the gateway owns
/// are redirected into the queue's socket, the rest are passed (`XDP_PASS`) to the kernel.
/// Ownership is looked up in two LPM tries (see [`create_lpm_trie`]; value non-zero: owned)
/// by the IPv4 destination, the target of an ARP packet, the IPv6 destination, or the target
/// of an IPv6 Neighbour Solicitation (whose destination is a solicited-node group). VLAN-tagged
/// frames and frames too short to read go to the gateway (it counts what it cannot use); other
/// EtherTypes (LLDP, ...) to the kernel.
pub fn owner_program(xsk_map: RawFd, lpm4: RawFd, lpm6: RawFd) -> Option<Vec<Insn>> {
    let mut a = Asm::default();
    // r6 = ctx, r7 = data, r8 = data_end.
    a.ops(&[
        Insn::mov_reg(6, 1),
        Insn::ldx_w(7, 6, 0),
        Insn::ldx_w(8, 6, 4),
        Insn::mov_reg(1, 7),
        Insn::add_imm(1, 14),
    ])
    .jump(Insn::jgt_reg(1, 8, 0), "redirect")
    // The EtherType as loaded little-endian: 08 00 reads 0x0008.
    .op(Insn::ldx_h(1, 7, 12))
    .jump(Insn::jeq_imm(1, 0x0008, 0), "ipv4")
    .jump(Insn::jeq_imm(1, 0x0608, 0), "arp")
    .jump(Insn::jeq_imm(1, 0xdd86, 0), "ipv6")
    .jump(Insn::jeq_imm(1, 0x0081, 0), "redirect")
    .jump(Insn::jeq_imm(1, 0xa888, 0), "redirect")
    .jump(Insn::ja(0), "pass");
    // IPv4 destination (14 + 16) or ARP target protocol address (14 + 24): r1.
    for (label, end, at) in [("ipv4", 34, 30), ("arp", 42, 38)] {
        a.label(label)
            .ops(&[Insn::mov_reg(1, 7), Insn::add_imm(1, end)])
            .jump(Insn::jgt_reg(1, 8, 0), "redirect")
            .op(Insn::ldx_w(1, 7, at))
            .jump(Insn::ja(0), "lookup4");
    }
    let [m0, m1] = Insn::ld_map_fd(1, lpm4);
    a.label("lookup4")
        .ops(&[
            Insn::st_w(10, -8, 32),
            Insn::stx_w(10, 1, -4),
            Insn::mov_reg(2, 10),
            Insn::add_imm(2, -8),
            m0,
            m1,
        ])
        .jump(Insn::ja(0), "lookup");
    // IPv6: the destination (14 + 24), or an NS's target (14 + 40 + 8).
    a.label("ipv6")
        .ops(&[Insn::mov_reg(1, 7), Insn::add_imm(1, 54)])
        .jump(Insn::jgt_reg(1, 8, 0), "redirect")
        .op(Insn::ldx_b(1, 7, 20))
        .jump(Insn::jne_imm(1, 58, 0), "dst6")
        .ops(&[Insn::mov_reg(1, 7), Insn::add_imm(1, 78)])
        .jump(Insn::jgt_reg(1, 8, 0), "dst6")
        .op(Insn::ldx_b(1, 7, 54))
        .jump(Insn::jne_imm(1, 135, 0), "dst6");
    for (label, at) in [("target6", 62i16), ("dst6", 38)] {
        a.label(label).op(Insn::st_w(10, -20, 128));
        for k in 0..4 {
            a.ops(&[
                Insn::ldx_w(1, 7, at + 4 * k),
                Insn::stx_w(10, 1, -16 + 4 * k),
            ]);
        }
        let [m0, m1] = Insn::ld_map_fd(1, lpm6);
        a.ops(&[Insn::mov_reg(2, 10), Insn::add_imm(2, -20), m0, m1])
            .jump(Insn::ja(0), "lookup");
    }
    let [x0, x1] = Insn::ld_map_fd(1, xsk_map);
    a.label("lookup")
        .op(Insn::call(BPF_FUNC_MAP_LOOKUP_ELEM))
        .jump(Insn::jeq_imm(0, 0, 0), "pass")
        .op(Insn::ldx_w(1, 0, 0))
        .jump(Insn::jeq_imm(1, 0, 0), "pass")
        .label("redirect")
        .ops(&[
            Insn::ldx_w(2, 6, 16),
            x0,
            x1,
            Insn::mov_imm(3, XDP_PASS),
            Insn::call(BPF_FUNC_REDIRECT_MAP),
            Insn::exit(),
        ])
        .label("pass")
        .ops(&[Insn::mov_imm(0, XDP_PASS), Insn::exit()]);
    a.finish()
}

/// Creates an LPM trie for IPv4 (`addr_len` 4) or IPv6 (16) prefixes with u32 values.
///
/// # Errors
/// The kernel's error.
pub fn create_lpm_trie(addr_len: u32, entries: u32) -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, BPF_MAP_TYPE_LPM_TRIE)
        .u32(4, 4 + addr_len)
        .u32(8, 4)
        .u32(12, entries.max(1))
        .u32(16, BPF_F_NO_PREALLOC)
        .bytes(28, b"gw_owned");
    fd_result(sys_bpf(BPF_MAP_CREATE, &mut a)?)
}

/// Sets `prefix` (network-order bytes of `len` bits) to `value` in an LPM trie.
///
/// # Errors
/// The kernel's error (E2BIG when the trie is full).
pub fn lpm_set(map: &OwnedFd, prefix: &[u8], len: u8, value: u32) -> io::Result<()> {
    let mut k = u32::from(len).to_ne_bytes().to_vec();
    k.extend_from_slice(prefix);
    let v = value.to_ne_bytes();
    let mut a = Attr::new();
    a.u32(0, map.as_raw_fd() as u32)
        .u64(8, k.as_ptr() as u64)
        .u64(16, v.as_ptr() as u64);
    sys_bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(|_| ())
}

/// The kernel's own IPv4 and IPv6 addresses on the interface `ifindex`.
///
/// # Errors
/// `getifaddrs` failed.
pub fn interface_addresses(ifindex: u32) -> io::Result<Vec<std::net::IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut p = head;
    while !p.is_null() {
        // SAFETY: `p` is a live node of the list getifaddrs returned.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: `ifa_name` is a NUL-terminated interface name.
        let idx = unsafe { libc::if_nametoindex(ifa.ifa_name) };
        if idx != ifindex {
            continue;
        }
        // SAFETY: `ifa_addr` is non-null and its family says which sockaddr it is.
        match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
            libc::AF_INET => {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
                out.push(std::net::IpAddr::from(
                    u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                ));
            }
            libc::AF_INET6 => {
                // SAFETY: an AF_INET6 address is a sockaddr_in6.
                let sin6 = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in6>() };
                out.push(std::net::IpAddr::from(sin6.sin6_addr.s6_addr));
            }
            _ => {}
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// Runs `prog` once on a copy of `frame` (not live: nothing is sent) and returns its verdict
/// and the frame as the program left it. For testing generator programs.
///
/// # Errors
/// The kernel's error.
pub fn run_once(prog: &OwnedFd, frame: &[u8]) -> io::Result<(u32, Vec<u8>)> {
    let mut out = vec![0u8; frame.len() + 256];
    let mut a = Attr::new();
    a.u32(0, prog.as_raw_fd() as u32)
        .u32(8, frame.len() as u32)
        .u32(12, out.len() as u32)
        .u64(16, frame.as_ptr() as u64)
        .u64(24, out.as_mut_ptr() as u64)
        .u32(32, 1);
    sys_bpf(BPF_PROG_TEST_RUN, &mut a)?;
    let retval = u32::from_ne_bytes([a.0[4], a.0[5], a.0[6], a.0[7]]);
    let size = u32::from_ne_bytes([a.0[12], a.0[13], a.0[14], a.0[15]]) as usize;
    out.truncate(size.min(out.len()));
    Ok((retval, out))
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

pub(super) struct Attr([u8; ATTR_LEN]);

impl Attr {
    pub(super) fn new() -> Self {
        Attr([0; ATTR_LEN])
    }
    pub(super) fn u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    pub(super) fn u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    pub(super) fn bytes(&mut self, off: usize, v: &[u8]) -> &mut Self {
        self.0[off..off + v.len()].copy_from_slice(v);
        self
    }
}

pub(super) fn sys_bpf(cmd: i64, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: `attr` is a live, zero-padded `union bpf_attr` of the size passed; any pointers
    // inside it point at buffers the caller keeps alive for the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), ATTR_LEN as u32) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub(super) fn fd_result(r: i64) -> io::Result<OwnedFd> {
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

/// Removes `prefix`/`len` from an LPM trie made by [`create_lpm_trie`].
///
/// # Errors
/// The kernel's error (ENOENT when the prefix is not there).
pub fn lpm_delete(map: &OwnedFd, prefix: &[u8], len: u8) -> io::Result<()> {
    let mut k = u32::from(len).to_ne_bytes().to_vec();
    k.extend_from_slice(prefix);
    let mut a = Attr::new();
    a.u32(0, map.as_raw_fd() as u32).u64(8, k.as_ptr() as u64);
    sys_bpf(BPF_MAP_DELETE_ELEM, &mut a).map(|_| ())
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
    fn the_owner_program_resolves_every_jump_forward_to_an_instruction() {
        let p = owner_program(3, 4, 5).unwrap();
        for (k, i) in p.iter().enumerate() {
            // Conditional and unconditional jumps (class 0x05, not call 0x85 or exit 0x95).
            if i.code & 0x07 == 0x05 && i.code != 0x85 && i.code != 0x95 {
                let to = k + 1 + i.off as usize;
                assert!(i.off >= 0 && to < p.len(), "jump at {k} to {to}");
            }
        }
        // Three map loads: the XSK map and both tries.
        let fds: Vec<i32> = p
            .iter()
            .filter(|i| i.code == 0x18 && i.regs >> 4 == BPF_PSEUDO_MAP_FD)
            .map(|i| i.imm)
            .collect();
        assert_eq!(fds.len(), 4, "two IPv6 lookups, one IPv4, one redirect");
        assert!(fds.contains(&3) && fds.contains(&4) && fds.contains(&5));
        assert_eq!(p.last(), Some(&Insn::exit()));
        let mut a = Asm::default();
        a.jump(Insn::ja(0), "nowhere");
        assert!(a.finish().is_none());
    }
}
