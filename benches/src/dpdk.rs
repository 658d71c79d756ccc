//! DPDK's route tables as the same-run baseline of the route-lookup figures: `rte_fib`
//! (DIR-24-8) and `rte_fib6` (trie), both with 4-byte entries, `rte_lpm` through
//! `rte_lpm_lookupx4` (l3fwd's path) and `rte_lpm6`. The calls go through `dpdk/shim.c`
//! because DPDK's lookups are static inline; each call takes a whole batch.
//!
//! Every answer is a `u32`, [`datapath::lpm::NO_ROUTE`] when nothing matches, as our tables answer.

// The one place the benches call C: each block below states what it relies on.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CString};

/// The largest batch one lookup call takes (the shim's stack arrays).
pub const MAX_BATCH: usize = 64;

extern "C" {
    fn shim_eal_init(huge: c_int, mem_mib: u32, avx512: c_int) -> c_int;
    fn shim_errno() -> c_int;
    fn shim_fib4_new(name: *const c_char, max_routes: u32, tbl8: u32) -> *mut c_void;
    fn shim_fib4_add(fib: *mut c_void, ip: u32, depth: u8, nh: u32) -> c_int;
    fn shim_fib4_select(fib: *mut c_void, kind: c_int) -> c_int;
    fn shim_fib4_lookup(fib: *mut c_void, ips: *const u32, out: *mut u32, n: c_int);
    fn shim_fib4_free(fib: *mut c_void);
    fn shim_fib6_new(name: *const c_char, max_routes: u32, tbl8: u32) -> *mut c_void;
    fn shim_fib6_add(fib: *mut c_void, ip: *const u8, depth: u8, nh: u32) -> c_int;
    fn shim_fib6_select(fib: *mut c_void, kind: c_int) -> c_int;
    fn shim_fib6_lookup(fib: *mut c_void, ips: *const u8, out: *mut u32, n: c_int);
    fn shim_fib6_free(fib: *mut c_void);
    fn shim_lpm4_new(name: *const c_char, max_rules: u32, tbl8: u32) -> *mut c_void;
    fn shim_lpm4_add(lpm: *mut c_void, ip: u32, depth: u8, nh: u32) -> c_int;
    fn shim_lpm4_lookupx4(lpm: *mut c_void, ips: *const u32, out: *mut u32, n: c_int);
    fn shim_lpm4_delete(lpm: *mut c_void, ip: u32, depth: u8) -> c_int;
    fn shim_lpm4_free(lpm: *mut c_void);
    fn shim_lpm4_rcu(lpm: *mut c_void, readers: u32) -> *mut c_void;
    fn shim_qsbr_online(v: *mut c_void, id: u32) -> c_int;
    fn shim_qsbr_quiescent(v: *mut c_void, id: u32);
    fn shim_qsbr_offline(v: *mut c_void, id: u32);
    fn shim_lpm6_new(name: *const c_char, max_rules: u32, tbl8: u32) -> *mut c_void;
    fn shim_lpm6_add(lpm: *mut c_void, ip: *const u8, depth: u8, nh: u32) -> c_int;
    fn shim_lpm6_lookup(lpm: *mut c_void, ips: *const u8, out: *mut u32, n: c_int);
    fn shim_lpm6_free(lpm: *mut c_void);
}

/// Where DPDK's memory comes from, printed with every figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Memory {
    /// 2 MiB hugepages reserved beforehand (`/proc/sys/vm/nr_hugepages`).
    Huge,
    /// Ordinary pages (`--no-huge`).
    Ordinary,
}

/// A DPDK call failed; the number is `rte_errno`.
#[derive(Debug)]
pub struct Error {
    /// What was being done.
    pub what: &'static str,
    /// `rte_errno` after the call.
    pub errno: i32,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            self.what,
            std::io::Error::from_raw_os_error(self.errno)
        )
    }
}

impl std::error::Error for Error {}

fn errno(what: &'static str) -> Error {
    // SAFETY: reads DPDK's per-thread error number; no arguments.
    let errno = unsafe { shim_errno() };
    Error { what, errno }
}

/// Starts DPDK's EAL for this process (once: a second call fails with `EALREADY`), on one
/// lcore, without PCI, telemetry or files in /var/run. `avx512` raises the SIMD width DPDK
/// allows so that its AVX-512 lookups may be chosen.
pub fn init(memory: Memory, mem_mib: u32, avx512: bool) -> Result<(), Error> {
    // SAFETY: the shim builds its own argv from constants; the EAL keeps no pointer to ours.
    let rc = unsafe {
        shim_eal_init(
            c_int::from(memory == Memory::Huge),
            mem_mib,
            c_int::from(avx512),
        )
    };
    if rc < 0 {
        return Err(Error {
            what: "rte_eal_init",
            errno: -rc,
        });
    }
    Ok(())
}

fn name(n: &str) -> CString {
    CString::new(n).unwrap_or_default()
}

/// Which of a table's lookup functions runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The scalar path.
    Scalar,
    /// The AVX-512 vector path (fails where the CPU or the EAL's SIMD width lacks it).
    Avx512,
}

macro_rules! table {
    ($(#[$doc:meta])* $ty:ident, $new:ident, $create:literal, $free:ident) => {
        $(#[$doc])*
        pub struct $ty(*mut c_void);

        impl $ty {
            #[doc = concat!("An empty table (`", $create, "`) for up to `max` routes and `tbl8` groups.")]
            pub fn new(n: &str, max: u32, tbl8: u32) -> Result<Self, Error> {
                let n = name(n);
                // SAFETY: `n` is a NUL-terminated string that outlives the call (DPDK copies
                // it).
                let p = unsafe { $new(n.as_ptr(), max, tbl8) };
                if p.is_null() {
                    return Err(errno($create));
                }
                Ok($ty(p))
            }
        }

        impl Drop for $ty {
            fn drop(&mut self) {
                // SAFETY: the handle came from the matching create call and is freed once.
                unsafe { $free(self.0) }
            }
        }
    };
}

table!(
    /// `rte_fib` with a DIR-24-8 of 4-byte entries.
    Fib4,
    shim_fib4_new,
    "rte_fib_create",
    shim_fib4_free
);
table!(
    /// `rte_fib6` with a trie of 4-byte entries.
    Fib6,
    shim_fib6_new,
    "rte_fib6_create",
    shim_fib6_free
);
table!(
    /// `rte_lpm`, looked up four addresses at a time as l3fwd does.
    Lpm4,
    shim_lpm4_new,
    "rte_lpm_create",
    shim_lpm4_free
);
table!(
    /// `rte_lpm6`.
    Lpm6,
    shim_lpm6_new,
    "rte_lpm6_create",
    shim_lpm6_free
);

fn batch_ok(n_in: usize, n_out: usize) -> c_int {
    assert!(
        n_in <= MAX_BATCH && n_out >= n_in,
        "batch of {n_in} into {n_out}"
    );
    n_in as c_int
}

impl Fib4 {
    /// Adds or replaces a route.
    pub fn add(&mut self, prefix: u32, len: u8, next_hop: u32) -> Result<(), Error> {
        // SAFETY: a live handle, exclusively borrowed.
        match unsafe { shim_fib4_add(self.0, prefix, len, next_hop) } {
            0 => Ok(()),
            _ => Err(errno("rte_fib_add")),
        }
    }

    /// Chooses the lookup function. It takes `&self`: the handle is neither `Send` nor `Sync`,
    /// so no lookup can be running while this thread is here.
    pub fn select(&self, lookup: Lookup) -> Result<(), Error> {
        // SAFETY: a live handle; see above for why no lookup runs meanwhile.
        match unsafe { shim_fib4_select(self.0, c_int::from(lookup == Lookup::Avx512)) } {
            0 => Ok(()),
            _ => Err(errno("rte_fib_select_lookup")),
        }
    }

    /// `rte_fib_lookup_bulk` over up to [`MAX_BATCH`] addresses (host order).
    pub fn lookup_bulk(&self, addrs: &[u32], out: &mut [u32]) {
        let n = batch_ok(addrs.len(), out.len());
        // SAFETY: both slices hold `n` elements; DPDK only reads `addrs` (the shim casts away
        // const for its signature) and the table is not written during the call.
        unsafe { shim_fib4_lookup(self.0, addrs.as_ptr(), out.as_mut_ptr(), n) }
    }
}

impl Fib6 {
    /// Adds or replaces a route.
    pub fn add(&mut self, prefix: u128, len: u8, next_hop: u32) -> Result<(), Error> {
        let ip = prefix.to_be_bytes();
        // SAFETY: a live handle, exclusively borrowed; `ip` holds the 16 bytes DPDK reads.
        match unsafe { shim_fib6_add(self.0, ip.as_ptr(), len, next_hop) } {
            0 => Ok(()),
            _ => Err(errno("rte_fib6_add")),
        }
    }

    /// Chooses the lookup function (`&self`: see [`Fib4::select`]).
    pub fn select(&self, lookup: Lookup) -> Result<(), Error> {
        // SAFETY: a live handle; no lookup runs meanwhile (see `Fib4::select`).
        match unsafe { shim_fib6_select(self.0, c_int::from(lookup == Lookup::Avx512)) } {
            0 => Ok(()),
            _ => Err(errno("rte_fib6_select_lookup")),
        }
    }

    /// `rte_fib6_lookup_bulk` over up to [`MAX_BATCH`] addresses, each 16 bytes in network
    /// order (as a packet carries them: see [`to_wire`]).
    pub fn lookup_bulk(&self, addrs: &[[u8; 16]], out: &mut [u32]) {
        let n = batch_ok(addrs.len(), out.len());
        // SAFETY: `addrs` is `n` contiguous 16-byte arrays and `out` holds `n` answers; DPDK
        // only reads the addresses.
        unsafe { shim_fib6_lookup(self.0, addrs.as_ptr().cast(), out.as_mut_ptr(), n) }
    }
}

impl Lpm4 {
    /// Adds or replaces a route.
    pub fn add(&mut self, prefix: u32, len: u8, next_hop: u32) -> Result<(), Error> {
        // SAFETY: a live handle, exclusively borrowed.
        match unsafe { shim_lpm4_add(self.0, prefix, len, next_hop) } {
            0 => Ok(()),
            _ => Err(errno("rte_lpm_add")),
        }
    }

    /// `rte_lpm_lookupx4` over a batch whose length is a multiple of 4.
    pub fn lookup_x4(&self, addrs: &[u32], out: &mut [u32]) {
        lookup_x4(self.0, addrs, out);
    }

    /// Removes a route.
    pub fn delete(&mut self, prefix: u32, len: u8) -> Result<(), Error> {
        // SAFETY: a live handle, exclusively borrowed.
        match unsafe { shim_lpm4_delete(self.0, prefix, len) } {
            0 => Ok(()),
            _ => Err(errno("rte_lpm_delete")),
        }
    }

    /// Attaches RCU to the table (`rte_lpm_rcu_qsbr_add`, defer-queue mode: a tbl8 group a
    /// delete frees is reused once every reader has reported a quiescent state, and the
    /// writer never waits), for one reader thread, and returns that reader's handle. DPDK has
    /// no detach: the variable stays with the table.
    pub fn rcu_reader(&mut self) -> Result<RcuReader, Error> {
        // SAFETY: a live handle, exclusively borrowed: no lookup runs during the attach.
        let v = unsafe { shim_lpm4_rcu(self.0, 1) };
        if v.is_null() {
            return Err(errno("rte_lpm_rcu_qsbr_add"));
        }
        Ok(RcuReader {
            lpm: self.0,
            qsbr: v,
        })
    }
}

/// `rte_lpm_lookupx4` over a batch whose length is a multiple of 4, on a table handle.
fn lookup_x4(lpm: *mut c_void, addrs: &[u32], out: &mut [u32]) {
    let n = batch_ok(addrs.len(), out.len());
    assert!(n % 4 == 0, "rte_lpm_lookupx4 takes fours: {n}");
    // SAFETY: both slices hold `n` elements; the shim reads and writes in fours below `n`;
    // the handle is live (its owner outlives every caller).
    unsafe { shim_lpm4_lookupx4(lpm, addrs.as_ptr(), out.as_mut_ptr(), n) }
}

/// The one reader of an `rte_lpm` with RCU attached ([`Lpm4::rcu_reader`]), for another
/// thread while this one writes the table.
pub struct RcuReader {
    lpm: *mut c_void,
    qsbr: *mut c_void,
}

// SAFETY: with RCU attached, DPDK supports lookups from a reader thread while one writer
// updates the table: a freed tbl8 group is reused only after every registered reader has
// reported a quiescent state. The handle only looks up (through DPDK's lookups) and reports;
// it must not outlive the table, which `look_until`'s callers keep alive (a scoped thread).
// It is not `Sync`: one thread at a time uses it (its method takes `&mut self`).
unsafe impl Send for RcuReader {}

impl RcuReader {
    /// Registers as reader 0, looks up `addrs` in batches of 32 (`rte_lpm_lookupx4`),
    /// reporting a quiescent state after each, until `stop`; then goes offline. Returns the
    /// lookups made.
    pub fn look_until(&mut self, addrs: &[u32], stop: &std::sync::atomic::AtomicBool) -> u64 {
        // SAFETY: the QSBR variable was made for one reader, id 0, and this is it.
        if unsafe { shim_qsbr_online(self.qsbr, 0) } != 0 {
            return 0;
        }
        let n = crate::look_until(addrs, stop, |batch, out| {
            lookup_x4(self.lpm, batch, out);
            // SAFETY: reader 0, online above.
            unsafe { shim_qsbr_quiescent(self.qsbr, 0) };
        });
        // SAFETY: reader 0, going offline once.
        unsafe { shim_qsbr_offline(self.qsbr, 0) };
        n
    }
}

impl Lpm6 {
    /// Adds or replaces a route.
    pub fn add(&mut self, prefix: u128, len: u8, next_hop: u32) -> Result<(), Error> {
        let ip = prefix.to_be_bytes();
        // SAFETY: a live handle, exclusively borrowed; `ip` holds the 16 bytes DPDK reads.
        match unsafe { shim_lpm6_add(self.0, ip.as_ptr(), len, next_hop) } {
            0 => Ok(()),
            _ => Err(errno("rte_lpm6_add")),
        }
    }

    /// `rte_lpm6_lookup_bulk_func` over up to [`MAX_BATCH`] addresses in network order.
    pub fn lookup_bulk(&self, addrs: &[[u8; 16]], out: &mut [u32]) {
        let n = batch_ok(addrs.len(), out.len());
        // SAFETY: `addrs` is `n` contiguous 16-byte arrays and `out` holds `n` answers.
        unsafe { shim_lpm6_lookup(self.0, addrs.as_ptr().cast(), out.as_mut_ptr(), n) }
    }
}

/// IPv6 addresses as a packet carries them, the form DPDK's IPv6 tables read.
pub fn to_wire(addrs: &[u128]) -> Vec<[u8; 16]> {
    addrs.iter().map(|a| a.to_be_bytes()).collect()
}
