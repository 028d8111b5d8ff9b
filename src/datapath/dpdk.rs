//! The one safe layer over DPDK. Every `unsafe` block of seqd outside
//! `dpdk-sys` lives in this file.
//!
//! Ownership model:
//! - [`Eal`] is created once; dropping it runs `rte_eal_cleanup`.
//! - [`Mbuf`] owns one packet buffer: dropping it frees the mbuf, handing it
//!   to a [`TxBuffer`] gives it back to DPDK.
//! - [`RxQueue`] / [`TxQueue`] are move-only handles: exactly one worker owns
//!   each queue, which is what makes the lock-free burst calls sound.
//! - [`Burst`] is a fixed array of up to [`MAX_BURST`] owned mbufs.

use std::ffi::{c_void, CStr, CString};
use std::fmt;
use std::ptr::NonNull;

use dpdk_sys as sys;

/// Largest burst seqd ever asks for (the DPDK l3fwd value).
pub const MAX_BURST: usize = 32;

/// Port MAC addresses as DPDK sees them.
pub type EtherAddr = [u8; 6];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkError {
    pub op: String,
    pub errno: i32,
}

impl DpdkError {
    fn new(op: impl Into<String>, errno: i32) -> Self {
        DpdkError {
            op: op.into(),
            errno: errno.abs(),
        }
    }

    /// For calls that signal failure with NULL and set `rte_errno`.
    fn from_rte_errno(op: impl Into<String>) -> Self {
        // SAFETY: reads the calling thread's rte_errno through the C shim.
        let e = unsafe { sys::seqd_rte_errno() };
        Self::new(op, e)
    }
}

impl fmt::Display for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: rte_strerror returns a pointer to a static or thread-local string.
        let msg = unsafe { CStr::from_ptr(sys::rte_strerror(self.errno)) };
        write!(
            f,
            "{}: {} (errno {})",
            self.op,
            msg.to_string_lossy(),
            self.errno
        )
    }
}

impl std::error::Error for DpdkError {}

pub type Result<T> = std::result::Result<T, DpdkError>;

fn check(op: impl Into<String>, rc: i32) -> Result<i32> {
    if rc < 0 {
        Err(DpdkError::new(op, rc))
    } else {
        Ok(rc)
    }
}

/// The DPDK runtime version string, e.g. "DPDK 22.11.11".
pub fn version() -> String {
    // SAFETY: rte_version returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(sys::rte_version()) }
        .to_string_lossy()
        .into_owned()
}

/// The initialised Environment Abstraction Layer. Dropping it cleans up EAL;
/// every port and mempool must be gone by then.
pub struct Eal {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Eal {
    /// Runs `rte_eal_init` with `args` (args[0] is the program name).
    pub fn init(args: &[String]) -> Result<Eal> {
        let cargs: Vec<CString> = args
            .iter()
            .map(|a| {
                CString::new(a.as_str()).map_err(|_| DpdkError::new("EAL argument with NUL", 22))
            })
            .collect::<Result<_>>()?;
        let mut argv: Vec<*mut std::os::raw::c_char> =
            cargs.iter().map(|a| a.as_ptr() as *mut _).collect();
        // SAFETY: argv points to NUL-terminated strings that outlive the call;
        // EAL may permute argv but does not free it.
        let rc = unsafe { sys::rte_eal_init(argv.len() as i32, argv.as_mut_ptr()) };
        if rc < 0 {
            return Err(DpdkError::from_rte_errno("rte_eal_init"));
        }
        Ok(Eal {
            _not_send: std::marker::PhantomData,
        })
    }

    pub fn main_lcore(&self) -> u32 {
        // SAFETY: valid after rte_eal_init.
        unsafe { sys::rte_get_main_lcore() }
    }

    pub fn lcore_enabled(&self, lcore: u32) -> bool {
        // SAFETY: valid after rte_eal_init; any lcore id is accepted.
        unsafe { sys::rte_lcore_is_enabled(lcore) != 0 }
    }

    pub fn socket_of_lcore(&self, lcore: u32) -> i32 {
        // SAFETY: valid after rte_eal_init.
        unsafe { sys::rte_lcore_to_socket_id(lcore) as i32 }
    }

    /// Runs `f` on worker lcore `lcore`; collect its result with [`Eal::wait`].
    pub fn launch<F>(&self, lcore: u32, f: F) -> Result<()>
    where
        F: FnOnce() -> i32 + Send + 'static,
    {
        type Job = Box<dyn FnOnce() -> i32 + Send>;
        unsafe extern "C" fn trampoline(arg: *mut c_void) -> i32 {
            // SAFETY: arg is the Box<Job> leaked below, consumed exactly once.
            let job: Box<Job> = unsafe { Box::from_raw(arg as *mut Job) };
            job()
        }
        let job: Box<Job> = Box::new(Box::new(f));
        let arg = Box::into_raw(job) as *mut c_void;
        // SAFETY: trampoline matches lcore_function_t; arg is a valid Box.
        let rc = unsafe { sys::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
        if rc < 0 {
            // SAFETY: launch failed, so the worker never took ownership of arg.
            drop(unsafe { Box::from_raw(arg as *mut Job) });
            return Err(DpdkError::new(format!("launch on lcore {lcore}"), rc));
        }
        Ok(())
    }

    /// Waits for the function launched on `lcore` and returns its result.
    pub fn wait(&self, lcore: u32) -> i32 {
        // SAFETY: valid after rte_eal_init.
        unsafe { sys::rte_eal_wait_lcore(lcore) }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: called once, after every port and pool was released.
        unsafe {
            sys::rte_eal_cleanup();
        }
    }
}

/// TSC cycle counter of this core.
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: reads the time-stamp counter; no memory access.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_rdtsc()
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as above, through DPDK's rte_rdtsc.
    unsafe {
        sys::seqd_rte_rdtsc()
    }
}

/// Hints the CPU to load the cache line holding `r` (table buckets looked
/// up a pass later; see the design note in `tables.rs`). Pure Rust, usable
/// without EAL.
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch hint has no memory effects and never faults; the
    // address comes from a reference.
    unsafe {
        std::arch::x86_64::_mm_prefetch(r as *const T as *const i8, std::arch::x86_64::_MM_HINT_T0)
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as above, through DPDK's own rte_prefetch0.
    unsafe {
        sys::seqd_rte_prefetch0(r as *const T as *const c_void)
    }
}

/// Hands the heap's free pages back to the kernel (glibc `malloc_trim`).
/// Parsing a large TOML file or compiling a whole table frees far more
/// than it keeps (1.8 GB for 100,000 services), and glibc holds on to it;
/// the control thread calls this after such work. Not for workers.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages to the kernel; it takes
    // the allocator's own locks and touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// TSC frequency in Hz (valid after EAL init).
pub fn tsc_hz() -> u64 {
    // SAFETY: valid after rte_eal_init.
    unsafe { sys::seqd_rte_get_tsc_hz() }
}

/// A pool of packet buffers.
pub struct Mempool {
    ptr: NonNull<sys::rte_mempool>,
}

// SAFETY: DPDK mempools are multi-producer/multi-consumer safe.
unsafe impl Send for Mempool {}
unsafe impl Sync for Mempool {}

impl Mempool {
    /// `n` mbufs of `data_room` bytes each (headroom included), with a
    /// per-lcore cache of `cache` mbufs.
    pub fn new(name: &str, n: u32, cache: u32, data_room: u16, socket: i32) -> Result<Mempool> {
        let cname = CString::new(name).map_err(|_| DpdkError::new("mempool name", 22))?;
        // SAFETY: cname is a valid C string; EAL is initialised by the caller
        // holding an Eal (all constructors here are only reachable after init).
        let p =
            unsafe { sys::rte_pktmbuf_pool_create(cname.as_ptr(), n, cache, 0, data_room, socket) };
        NonNull::new(p).map(|ptr| Mempool { ptr }).ok_or_else(|| {
            DpdkError::from_rte_errno(format!("rte_pktmbuf_pool_create({name}, {n} mbufs)"))
        })
    }

    pub fn available(&self) -> u32 {
        // SAFETY: the pool is valid for the lifetime of self.
        unsafe { sys::seqd_rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    /// Allocates one mbuf, or None when the pool is empty.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is valid; a non-null result is a fresh mbuf we own.
        NonNull::new(unsafe { sys::seqd_rte_pktmbuf_alloc(self.ptr.as_ptr()) }).map(Mbuf)
    }

    fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.ptr.as_ptr()
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: every port using the pool is closed before the pool drops
        // (the runtime owns both and drops ports first).
        unsafe { sys::rte_mempool_free(self.ptr.as_ptr()) }
    }
}

/// One owned packet buffer.
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: an mbuf is owned by exactly one Mbuf; moving it between threads is
// how DPDK pipelines work.
unsafe impl Send for Mbuf {}

impl Mbuf {
    #[inline(always)]
    fn raw(&self) -> &sys::rte_mbuf {
        // SAFETY: self owns a valid mbuf.
        unsafe { self.0.as_ref() }
    }

    /// The first segment's bytes (seqd's pools hold a whole frame in one segment).
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: buf_addr + data_off .. + data_len lies inside the mbuf's buffer.
        unsafe {
            std::slice::from_raw_parts(
                (m.buf_addr as *const u8).add(m.data_off as usize),
                m.data_len as usize,
            )
        }
    }

    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let m = self.raw();
        // SAFETY: as in data(); &mut self guarantees exclusive access.
        unsafe {
            std::slice::from_raw_parts_mut(
                (m.buf_addr as *mut u8).add(m.data_off as usize),
                m.data_len as usize,
            )
        }
    }

    /// Total packet length over all segments.
    #[inline(always)]
    pub fn pkt_len(&self) -> u32 {
        self.raw().pkt_len
    }

    #[inline(always)]
    pub fn nb_segs(&self) -> u16 {
        self.raw().nb_segs
    }

    /// Appends `len` bytes at the end; returns the new tail, or None if the
    /// buffer has no room.
    pub fn append(&mut self, len: u16) -> Option<&mut [u8]> {
        // SAFETY: rte_pktmbuf_append returns a pointer to `len` writable bytes or NULL.
        let p = unsafe { sys::seqd_rte_pktmbuf_append(self.0.as_ptr(), len) };
        if p.is_null() {
            None
        } else {
            // SAFETY: see above.
            Some(unsafe { std::slice::from_raw_parts_mut(p as *mut u8, len as usize) })
        }
    }

    /// Grows the packet at the front by `len` bytes (e.g. to push a VLAN tag).
    pub fn prepend(&mut self, len: u16) -> bool {
        // SAFETY: returns NULL if there is not enough headroom; else adjusts in place.
        !unsafe { sys::seqd_rte_pktmbuf_prepend(self.0.as_ptr(), len) }.is_null()
    }

    /// Removes `len` bytes from the front (e.g. to pop a VLAN tag).
    pub fn adj(&mut self, len: u16) -> bool {
        // SAFETY: returns NULL if len exceeds the first segment; else adjusts in place.
        !unsafe { sys::seqd_rte_pktmbuf_adj(self.0.as_ptr(), len) }.is_null()
    }

    /// Removes `len` bytes from the end.
    pub fn trim(&mut self, len: u16) -> bool {
        // SAFETY: returns -1 if len exceeds the last segment; else adjusts in place.
        unsafe { sys::seqd_rte_pktmbuf_trim(self.0.as_ptr(), len) == 0 }
    }

    /// A zero-copy clone sharing the data (reference counted), for copies to
    /// passive devices. The clone's headers come from `pool`.
    pub fn clone_into(&self, pool: &Mempool) -> Option<Mbuf> {
        // SAFETY: both pointers are valid; a non-null result is a new mbuf we own.
        NonNull::new(unsafe { sys::seqd_rte_pktmbuf_clone(self.0.as_ptr(), pool.as_ptr()) })
            .map(Mbuf)
    }

    /// Hints the CPU to load the packet's first cache line.
    #[inline(always)]
    pub fn prefetch(&self) {
        let m = self.raw();
        // SAFETY: the address is inside the mbuf's buffer; prefetch never faults.
        let p = unsafe { (m.buf_addr as *const u8).add(m.data_off as usize) };
        // Inline on x86_64 (an FFI call per packet otherwise).
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch hint has no memory effects.
        unsafe {
            std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0)
        }
        #[cfg(not(target_arch = "x86_64"))]
        // SAFETY: as above, through DPDK's own rte_prefetch0.
        unsafe {
            sys::seqd_rte_prefetch0(p as *const c_void)
        }
    }

    fn into_raw(self) -> *mut sys::rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and free it exactly once.
        unsafe { sys::seqd_rte_pktmbuf_free(self.0.as_ptr()) }
    }
}

/// Up to [`MAX_BURST`] owned mbufs in a fixed array: no allocation per burst.
pub struct Burst {
    mbufs: [*mut sys::rte_mbuf; MAX_BURST],
    len: usize,
}

// SAFETY: the burst owns its mbufs (see Mbuf).
unsafe impl Send for Burst {}

impl Default for Burst {
    fn default() -> Self {
        Self::new()
    }
}

impl Burst {
    pub const fn new() -> Burst {
        Burst {
            mbufs: [std::ptr::null_mut(); MAX_BURST],
            len: 0,
        }
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline(always)]
    pub fn is_full(&self) -> bool {
        self.len == MAX_BURST
    }

    /// Adds an mbuf; gives it back if the burst is full.
    #[inline(always)]
    pub fn push(&mut self, m: Mbuf) -> std::result::Result<(), Mbuf> {
        if self.len == MAX_BURST {
            return Err(m);
        }
        self.mbufs[self.len] = m.into_raw();
        self.len += 1;
        Ok(())
    }

    /// Borrow of mbuf `i` (< len).
    #[inline(always)]
    pub fn get(&self, i: usize) -> &Mbuf {
        assert!(i < self.len);
        // SAFETY: slots below len hold owned, non-null mbufs; Mbuf is a
        // transparent-sized NonNull, so a pointer slot can be viewed as one.
        unsafe { &*(&self.mbufs[i] as *const *mut sys::rte_mbuf as *const Mbuf) }
    }

    #[inline(always)]
    pub fn get_mut(&mut self, i: usize) -> &mut Mbuf {
        assert!(i < self.len);
        // SAFETY: as in get(); &mut self gives exclusive access.
        unsafe { &mut *(&mut self.mbufs[i] as *mut *mut sys::rte_mbuf as *mut Mbuf) }
    }

    /// Frees every mbuf in one bulk call.
    #[inline]
    pub fn clear(&mut self) {
        if self.len > 0 {
            // SAFETY: slots below len are owned mbufs, freed once here.
            unsafe { sys::seqd_rte_pktmbuf_free_bulk(self.mbufs.as_mut_ptr(), self.len as u32) }
            self.len = 0;
        }
    }

    /// Moves every mbuf out, in order, leaving the burst empty.
    #[inline]
    pub fn drain(&mut self) -> Drain<'_> {
        let n = self.len;
        self.len = 0;
        Drain {
            burst: self,
            next: 0,
            end: n,
        }
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        self.clear();
    }
}

pub struct Drain<'a> {
    burst: &'a mut Burst,
    next: usize,
    end: usize,
}

impl Iterator for Drain<'_> {
    type Item = Mbuf;

    #[inline(always)]
    fn next(&mut self) -> Option<Mbuf> {
        if self.next == self.end {
            return None;
        }
        let p = self.burst.mbufs[self.next];
        self.next += 1;
        // SAFETY: the slot held an owned non-null mbuf; ownership moves out once
        // (burst.len was zeroed, so Burst::drop will not free it again).
        Some(Mbuf(unsafe { NonNull::new_unchecked(p) }))
    }
}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        // Free whatever the caller did not take.
        for _ in self.by_ref() {}
    }
}

// Mbuf must be exactly one pointer for Burst::get's view to be valid.
const _: () = assert!(std::mem::size_of::<Mbuf>() == std::mem::size_of::<*mut sys::rte_mbuf>());

/// Link state of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LinkStatus {
    pub up: bool,
    pub speed_mbps: u32,
    pub full_duplex: bool,
}

/// Hardware/driver counters of a port (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Dropped by the NIC because no rx descriptor was free (seqd too slow).
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    /// Rx failures because the mempool ran dry.
    pub rx_nombuf: u64,
}

/// Reads one port's statistics and link state from any thread
/// (`rte_eth_stats_get` and `rte_eth_link_get_nowait` are thread-safe).
/// Reads after the port is closed fail.
#[derive(Debug, Clone)]
pub struct PortStatsHandle {
    id: u16,
    name: String,
}

impl PortStatsHandle {
    pub fn stats(&self) -> Result<PortStats> {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: s is a valid out-struct; stats reads are thread-safe.
        check(format!("rte_eth_stats_get({})", self.name), unsafe {
            sys::rte_eth_stats_get(self.id, &mut s)
        })?;
        Ok(PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    pub fn link(&self) -> Result<LinkStatus> {
        let mut l = sys::rte_eth_link::default();
        // SAFETY: l is a valid out-struct.
        check(format!("rte_eth_link_get_nowait({})", self.name), unsafe {
            sys::rte_eth_link_get_nowait(self.id, &mut l)
        })?;
        Ok(LinkStatus {
            up: l.link_status() != 0,
            speed_mbps: l.link_speed,
            full_duplex: l.link_duplex() != 0,
        })
    }
}

/// How to set up one port.
pub struct PortSetup<'a> {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    pub pool: &'a Mempool,
}

/// A configured and started Ethernet port. Stats and link state may be read
/// from any thread; packet I/O happens only through its queue handles.
pub struct Port {
    id: u16,
    name: String,
    rx_queues: u16,
    tx_queues: u16,
    started: bool,
}

impl Port {
    /// The port id of a probed device (PCI address or vdev name).
    pub fn id_by_name(name: &str) -> Result<u16> {
        let c = CString::new(name).map_err(|_| DpdkError::new("device name", 22))?;
        let mut id = 0u16;
        // SAFETY: c is valid; id is a valid out-pointer.
        let rc = unsafe { sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
        check(format!("no DPDK port for device {name}"), rc)?;
        Ok(id)
    }

    fn info(id: u16) -> Result<sys::rte_eth_dev_info> {
        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: info is a valid out-struct.
        check(format!("rte_eth_dev_info_get(port {id})"), unsafe {
            sys::rte_eth_dev_info_get(id, &mut info)
        })?;
        Ok(info)
    }

    /// Configures queues (RSS over IP/TCP/UDP when more than one rx queue),
    /// sets the MAC if asked, starts the port and enables promiscuous mode.
    pub fn open(name: &str, setup: &PortSetup<'_>) -> Result<Port> {
        let id = Self::id_by_name(name)?;
        let info = Self::info(id)?;
        if setup.rx_queues > info.max_rx_queues || setup.tx_queues > info.max_tx_queues {
            return Err(DpdkError::new(
                format!(
                    "port {name}: needs {} rx / {} tx queues (one per worker), device supports {} / {}",
                    setup.rx_queues, setup.tx_queues, info.max_rx_queues, info.max_tx_queues
                ),
                22,
            ));
        }
        let mut conf = sys::rte_eth_conf::default();
        if setup.rx_queues > 1 {
            // RTE_ETH_RSS_IPV4 | FRAG_IPV4 | NONFRAG_IPV4_TCP | NONFRAG_IPV4_UDP | NONFRAG_IPV4_OTHER,
            // and the IPv6 equivalents (bits 8..=12): function-like macros bindgen cannot see.
            const RSS_IP_TCP_UDP: u64 = 0b1_1111_1011_1100;
            conf.rxmode.mq_mode = sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = RSS_IP_TCP_UDP & info.flow_type_rss_offloads;
        }
        // SAFETY: conf is a valid struct; the port exists.
        check(format!("rte_eth_dev_configure({name})"), unsafe {
            sys::rte_eth_dev_configure(id, setup.rx_queues, setup.tx_queues, &conf)
        })?;
        // SAFETY: the port exists.
        let socket = unsafe { sys::rte_eth_dev_socket_id(id) };
        let socket = if socket < 0 {
            sys::SOCKET_ID_ANY
        } else {
            socket
        };
        for q in 0..setup.rx_queues {
            // SAFETY: configured port; pool outlives the port (see Mempool::drop).
            check(format!("rx queue {q} setup on {name}"), unsafe {
                sys::rte_eth_rx_queue_setup(
                    id,
                    q,
                    setup.rx_desc,
                    socket as u32,
                    std::ptr::null(),
                    setup.pool.as_ptr(),
                )
            })?;
        }
        for q in 0..setup.tx_queues {
            // SAFETY: configured port.
            check(format!("tx queue {q} setup on {name}"), unsafe {
                sys::rte_eth_tx_queue_setup(id, q, setup.tx_desc, socket as u32, std::ptr::null())
            })?;
        }
        // SAFETY: queues are set up.
        check(format!("rte_eth_dev_start({name})"), unsafe {
            sys::rte_eth_dev_start(id)
        })?;
        // Devices behind seqd answer to service IPs seqd does not own a MAC for
        // only in later setups; promiscuous keeps frames to other MACs countable.
        // Not every PMD supports it (errors are not fatal).
        // SAFETY: started port.
        unsafe { sys::rte_eth_promiscuous_enable(id) };
        Ok(Port {
            id,
            name: name.to_string(),
            rx_queues: setup.rx_queues,
            tx_queues: setup.tx_queues,
            started: true,
        })
    }

    pub fn id(&self) -> u16 {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn mac(&self) -> Result<EtherAddr> {
        let mut a = sys::rte_ether_addr::default();
        // SAFETY: a is a valid out-struct.
        check(format!("rte_eth_macaddr_get({})", self.name), unsafe {
            sys::rte_eth_macaddr_get(self.id, &mut a)
        })?;
        Ok(a.addr_bytes)
    }

    /// Programs `mac` as the port's address. Fails with ENOTSUP on drivers
    /// that cannot (net_pcap, for one).
    pub fn set_mac(&self, mac: EtherAddr) -> Result<()> {
        let mut addr = sys::rte_ether_addr { addr_bytes: mac };
        // SAFETY: addr is valid for the call.
        check(format!("set MAC on {}", self.name), unsafe {
            sys::rte_eth_dev_default_mac_addr_set(self.id, &mut addr)
        })?;
        Ok(())
    }

    pub fn stats(&self) -> Result<PortStats> {
        self.stats_handle().stats()
    }

    pub fn link(&self) -> Result<LinkStatus> {
        self.stats_handle().link()
    }

    /// A handle other threads (the control thread) read statistics through.
    pub fn stats_handle(&self) -> PortStatsHandle {
        PortStatsHandle {
            id: self.id,
            name: self.name.clone(),
        }
    }

    /// The move-only handle of rx queue `q`; each may be taken once.
    pub fn rx_queue(&self, q: u16) -> Option<RxQueue> {
        (q < self.rx_queues).then_some(RxQueue {
            port: self.id,
            queue: q,
        })
    }

    /// The move-only handle of tx queue `q`.
    pub fn tx_queue(&self, q: u16) -> Option<TxQueue> {
        (q < self.tx_queues).then_some(TxQueue {
            port: self.id,
            queue: q,
        })
    }

    /// Stops and closes the port. Workers must have stopped using its queues.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if !self.started {
            return Ok(());
        }
        self.started = false;
        // SAFETY: no worker uses the queues any more (caller's contract).
        let stop = unsafe { sys::rte_eth_dev_stop(self.id) };
        // SAFETY: stopped port; closing releases the driver (pcap files flushed).
        let close = unsafe { sys::rte_eth_dev_close(self.id) };
        check(format!("rte_eth_dev_stop({})", self.name), stop)?;
        check(format!("rte_eth_dev_close({})", self.name), close)?;
        Ok(())
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Exclusive handle to one rx queue.
pub struct RxQueue {
    port: u16,
    queue: u16,
}

impl RxQueue {
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Receives up to `max` packets into the free slots of `burst`; returns
    /// how many arrived.
    #[inline(always)]
    pub fn rx_burst(&mut self, burst: &mut Burst, max: usize) -> usize {
        let free = (MAX_BURST - burst.len).min(max);
        // SAFETY: this handle is the only user of the queue; the slots past len
        // are free and there are `free` of them.
        let n = unsafe {
            sys::seqd_rte_eth_rx_burst(
                self.port,
                self.queue,
                burst.mbufs.as_mut_ptr().add(burst.len),
                free as u16,
            )
        } as usize;
        burst.len += n;
        n
    }
}

/// Exclusive handle to one tx queue.
pub struct TxQueue {
    port: u16,
    queue: u16,
}

impl TxQueue {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Transmits the whole burst; what the driver refuses is freed. Returns
    /// the number freed unsent. The burst is empty afterwards.
    #[inline(always)]
    pub fn tx_burst(&mut self, burst: &mut Burst) -> usize {
        if burst.len == 0 {
            return 0;
        }
        // SAFETY: this handle is the only user of the queue; slots below len
        // are owned mbufs whose ownership passes to the driver for the first `sent`.
        let sent = unsafe {
            sys::seqd_rte_eth_tx_burst(
                self.port,
                self.queue,
                burst.mbufs.as_mut_ptr(),
                burst.len as u16,
            )
        } as usize;
        let unsent = burst.len - sent;
        if unsent > 0 {
            // SAFETY: the unsent tail is still ours; free it once.
            unsafe {
                sys::seqd_rte_pktmbuf_free_bulk(burst.mbufs.as_mut_ptr().add(sent), unsent as u32)
            }
        }
        burst.len = 0;
        unsent
    }
}
