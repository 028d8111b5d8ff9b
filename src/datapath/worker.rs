//! The poll loop of one worker lcore, in the shape of DPDK's l3fwd: poll each
//! owned rx queue for a burst, decide every packet, buffer what is sent per
//! output interface, and drain the tx buffers when they fill or when
//! [`DRAIN_US`] have passed. What tx refuses is freed and counted.
//!
//! Between bursts a worker checks the published table version and takes
//! its socket's copy of a new one; packets of one burst all see the same
//! version.
//! Packets whose next hop MAC is still being resolved wait in a fixed-size
//! queue ([`PENDING`]) for up to [`PENDING_MS`]. Worker 0 also sends the ARP
//! requests the neighbor table asks for.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::counters::{Counters, DropReason, WorkerCounters};
use super::dpdk::{self, Burst, Mbuf, Mempool, RxQueue, TxQueue, MAX_BURST};
use super::neighbor::{Due, Neighbors};
use super::packet::{EtherType, MacAddr};
use super::pipeline::{self, AclHit, Count, Datapath, Prepared, Steer, Touch, Verdict};
use super::tables::{DeviceId, Leg, NextMac, Published, Tables};

/// Longest a packet waits in a tx buffer that is not full.
pub const DRAIN_US: u64 = 100;
/// Packets one worker holds while their next hop is resolved.
pub const PENDING: usize = 64;
/// How long a held packet waits for ARP before it is dropped.
pub const PENDING_MS: u64 = 1000;
/// How often worker 0 looks for ARP requests to send.
pub const ARP_SCAN_MS: u64 = 10;

/// One rx queue a worker polls, and the interface it belongs to.
pub struct RxPort {
    pub iface: u16,
    pub queue: RxQueue,
}

/// A tx queue with its pending burst.
struct TxBuffer {
    queue: TxQueue,
    pending: Burst,
    /// TSC cycles spent in tx bursts made while a burst was being
    /// processed (the PMD's work, taken out of `work_cycles`).
    inline_tx_cycles: u64,
}

impl TxBuffer {
    #[inline(always)]
    fn flush(&mut self, c: &WorkerCounters) {
        let n = self.pending.len() as u64;
        if n == 0 {
            return;
        }
        let unsent = self.queue.tx_burst(&mut self.pending) as u64;
        c.tx_packets.add(n - unsent);
        if unsent > 0 {
            c.drop(DropReason::TxFull, unsent);
        }
    }

    #[inline(always)]
    fn push(&mut self, m: Mbuf, c: &WorkerCounters) {
        if self.pending.is_full() {
            let t0 = dpdk::rdtsc();
            self.flush(c);
            self.inline_tx_cycles += dpdk::rdtsc().wrapping_sub(t0);
        }
        if let Err(m) = self.pending.push(m) {
            drop(m);
            c.drop(DropReason::TxFull, 1);
        }
    }
}

/// A packet waiting for its next hop's MAC; its L3 rewrite is done.
struct Held {
    m: Mbuf,
    to: Leg,
    /// The neighbor table of the version that decided it (slots are per version).
    neighbors: Arc<Neighbors>,
    slot: u32,
    l3_offset: u8,
    to_device: Option<DeviceId>,
    count: Count,
    since: u64,
}

/// Counts what an ACL rule or default decided.
#[inline(always)]
pub fn count_acl(c: &WorkerCounters, hit: AclHit, len: u64) {
    let h = match hit {
        AclHit::None => return,
        AclHit::Rule(id) => c.acl_rules.get(id as usize),
        AclHit::Default(slot) => c.acl_defaults.get(slot as usize),
    };
    if let Some(h) = h {
        h.packets.add(1);
        h.bytes.add(len);
    }
}

/// Starts loading a counter a packet of the burst will add to.
#[inline(always)]
pub fn prefetch_counters(c: &WorkerCounters, t: Touch) {
    match t {
        Touch::Service(s) => {
            if let Some(sc) = c.services.get(s as usize) {
                dpdk::prefetch(sc);
            }
        }
        Touch::AclRule(r) => {
            if let Some(h) = c.acl_rules.get(r as usize) {
                dpdk::prefetch(h);
            }
        }
    }
}

/// Counts a packet seqd steers, as it arrived: its ACL decision, the device
/// it came from, and the service port it entered from a client.
#[inline(always)]
pub fn count_arrival(t: &Tables, c: &WorkerCounters, s: &Steer, len: u64) {
    count_acl(c, s.acl, len);
    if let Some(dc) = s
        .from_device
        .and_then(|d| t.device_slot(d))
        .and_then(|slot| c.devices.get(slot))
    {
        dc.packets_from.add(1);
        dc.bytes_from.add(len);
    }
    if let Count::In(p) = s.count {
        if let Some(sc) = c.services.get(p as usize) {
            sc.packets_in.add(1);
            sc.bytes_in.add(len);
        }
    }
}

/// Counts a packet as it leaves (`len` as sent): to a device, or to a
/// client for its service port.
#[inline(always)]
pub fn count_departure(
    t: &Tables,
    c: &WorkerCounters,
    to_device: Option<DeviceId>,
    count: Count,
    len: u64,
) {
    if let Some(dc) = to_device
        .and_then(|d| t.device_slot(d))
        .and_then(|slot| c.devices.get(slot))
    {
        dc.packets_to.add(1);
        dc.bytes_to.add(len);
    }
    if let Count::Out(p) = count {
        if let Some(sc) = c.services.get(p as usize) {
            sc.packets_out.add(1);
            sc.bytes_out.add(len);
        }
    }
}

/// Everything one worker owns. Built on the main lcore, moved to the worker.
pub struct Worker {
    index: usize,
    rx: Vec<RxPort>,
    /// Indexed by output interface.
    tx: Vec<TxBuffer>,
    burst_size: usize,
    datapath: Arc<Datapath>,
    published: Arc<Published>,
    tables: Arc<Tables>,
    pool: Arc<Mempool>,
    counters: Arc<Counters>,
    quit: Arc<AtomicBool>,
    held: [Option<Held>; PENDING],
    held_count: usize,
    /// The burst between its passes (see `process_burst`).
    prepared: [Prepared; MAX_BURST],
}

/// What a worker needs besides its queues.
pub struct WorkerContext {
    pub burst_size: usize,
    pub datapath: Arc<Datapath>,
    pub published: Arc<Published>,
    pub pool: Arc<Mempool>,
    pub counters: Arc<Counters>,
    pub quit: Arc<AtomicBool>,
}

impl Worker {
    /// `tx` holds one queue per interface, in interface order.
    pub fn new(index: usize, rx: Vec<RxPort>, tx: Vec<TxQueue>, ctx: WorkerContext) -> Worker {
        let tables = ctx.published.load(index);
        Worker {
            index,
            rx,
            tx: tx
                .into_iter()
                .map(|queue| TxBuffer {
                    queue,
                    pending: Burst::new(),
                    inline_tx_cycles: 0,
                })
                .collect(),
            burst_size: ctx.burst_size.clamp(1, MAX_BURST),
            datapath: ctx.datapath,
            published: ctx.published,
            tables,
            pool: ctx.pool,
            counters: ctx.counters,
            quit: ctx.quit,
            held: std::array::from_fn(|_| None),
            held_count: 0,
            prepared: [Prepared::default(); MAX_BURST],
        }
    }

    /// Polls until `quit` is set, then flushes every tx buffer. Returns 0.
    pub fn run(mut self) -> i32 {
        let counters = Arc::clone(&self.counters);
        let c = counters.worker(self.index);
        let hz = dpdk::tsc_hz();
        let drain_tsc = hz * DRAIN_US / 1_000_000;
        let arp_scan_tsc = hz * ARP_SCAN_MS / 1000;
        let mut rx_burst = Burst::new();
        let mut dropped = Burst::new();
        let mut last_drain = dpdk::rdtsc();
        let mut last_arp_scan = last_drain;
        if self.index == 0 {
            // Ask for every unresolved neighbor before the first packet needs it.
            self.send_arp_requests(last_drain, hz, c);
        }
        let mut loop_start = last_drain;
        c.table_version.set(self.tables.version);
        while !self.quit.load(Ordering::Relaxed) {
            if self.published.version() != self.tables.version {
                self.tables = self.published.load(self.index);
                c.table_version.set(self.tables.version);
            }
            let mut busy = false;
            for r in 0..self.rx.len() {
                let n = self.rx[r].queue.rx_burst(&mut rx_burst, self.burst_size);
                if n == 0 {
                    continue;
                }
                busy = true;
                let iface = self.rx[r].iface;
                self.process_burst(iface, &mut rx_burst, &mut dropped, c);
            }
            let now = dpdk::rdtsc();
            if self.held_count > 0 {
                self.release_held(now, hz, c);
            }
            if now.wrapping_sub(last_drain) > drain_tsc {
                if self.index == 0 && now.wrapping_sub(last_arp_scan) > arp_scan_tsc {
                    self.send_arp_requests(now, hz, c);
                    last_arp_scan = now;
                }
                for t in self.tx.iter_mut() {
                    t.flush(c);
                }
                last_drain = now;
            }
            let spent = now.wrapping_sub(loop_start);
            c.total_cycles.add(spent);
            if busy {
                c.busy_cycles.add(spent);
                c.last_rx_tsc.set(now);
            }
            loop_start = now;
        }
        for t in self.tx.iter_mut() {
            t.flush(c);
        }
        0
    }

    /// Decides and sends one burst in three passes over it, so that the
    /// table misses of its packets overlap (VPP's and `rte_hash`'s bulk
    /// lookups): (1) parse every packet, hash its keys and prefetch their
    /// buckets; (2) look every packet up (sender, service port, ACL in one
    /// burst) and prefetch the counters it will touch; (3) rewrite, count
    /// and buffer for tx. The TSC around the three passes, less the tx
    /// bursts made during them, is `work_cycles`: seqd's own work.
    #[inline(always)]
    fn process_burst(
        &mut self,
        iface: u16,
        burst: &mut Burst,
        dropped: &mut Burst,
        c: &WorkerCounters,
    ) {
        let start = dpdk::rdtsc();
        let n = burst.len();
        let mut bytes = 0u64;
        let tables = Arc::clone(&self.tables);
        let prepared = &mut self.prepared[..n];
        for (i, p) in prepared.iter_mut().enumerate() {
            *p = self.datapath.prepare(&tables, iface, burst.get(i).data());
        }
        self.datapath
            .lookup_burst_with(&tables, iface, prepared, |t| prefetch_counters(c, t));
        let now = start;
        for (i, mut m) in burst.drain().enumerate() {
            let len = m.pkt_len() as u64;
            bytes += len;
            let p = self.prepared[i];
            match self.datapath.finish(&tables, iface, m.data_mut(), &p, now) {
                Verdict::Steer(s) => self.steer(&tables, m, s, len, now, c),
                Verdict::Bounce { iface: out } => {
                    c.arp_replies.add(1);
                    match self.tx.get_mut(out as usize) {
                        Some(t) => t.push(m, c),
                        None => c.drop(DropReason::Malformed, 1),
                    }
                }
                Verdict::Denied(hit) => {
                    c.drop(DropReason::AclDeny, 1);
                    count_acl(c, hit, len);
                    let _ = dropped.push(m);
                }
                Verdict::Consumed => {
                    c.arp_learned.add(1);
                    let _ = dropped.push(m);
                }
                Verdict::Drop(reason) => {
                    c.drop(reason, 1);
                    // A full drop burst cannot happen (n <= MAX_BURST); free singly if it did.
                    let _ = dropped.push(m);
                }
            }
        }
        c.rx_packets.add(n as u64);
        c.rx_bytes.add(bytes);
        let mut tx_cycles = 0;
        for t in self.tx.iter_mut() {
            tx_cycles += std::mem::take(&mut t.inline_tx_cycles);
        }
        c.work_cycles
            .add(dpdk::rdtsc().wrapping_sub(start).saturating_sub(tx_cycles));
        // Free the burst's drops in one bulk call.
        dropped.clear();
    }

    #[inline(always)]
    fn steer(&mut self, t: &Tables, mut m: Mbuf, s: Steer, len: u64, now: u64, c: &WorkerCounters) {
        count_arrival(t, c, &s, len);
        if !s.copies.is_empty() && s.copies_before_rewrite {
            self.copy_to_passive(t, &m, &s, c);
        }
        let l3 = s.l3_offset as usize;
        if let Some(frame) = m.data_mut().get_mut(l3..) {
            pipeline::apply_rewrite(frame, &s.rewrite);
        }
        if !s.copies.is_empty() && !s.copies_before_rewrite {
            self.copy_to_passive(t, &m, &s, c);
        }
        match t.resolve(s.to.mac) {
            Some(dst) => self.emit(m, dst, s.to, s.l3_offset, s.to_device, s.count, c),
            None => {
                let NextMac::Neighbor(slot) = s.to.mac else {
                    // resolve() only fails for ARP-learnt MACs; never panic a worker.
                    c.drop(DropReason::NoArpEntry, 1);
                    return;
                };
                self.hold(
                    Held {
                        m,
                        to: s.to,
                        neighbors: Arc::clone(&t.neighbors),
                        slot,
                        l3_offset: s.l3_offset,
                        to_device: s.to_device,
                        count: s.count,
                        since: now,
                    },
                    c,
                )
            }
        }
    }

    /// Writes the Ethernet header for `to` (growing or shrinking the frame
    /// by a VLAN tag as needed) and queues the frame for tx.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn emit(
        &mut self,
        mut m: Mbuf,
        dst: MacAddr,
        to: Leg,
        l3_offset: u8,
        to_device: Option<DeviceId>,
        count: Count,
        c: &WorkerCounters,
    ) {
        let Some(src) = self.datapath.interface(to.iface).map(|i| i.mac) else {
            c.drop(DropReason::Malformed, 1);
            return;
        };
        let new_l2 = pipeline::l2_len(to.vlan);
        let old_l2 = l3_offset as usize;
        let ok = match new_l2.cmp(&old_l2) {
            std::cmp::Ordering::Greater => m.prepend((new_l2 - old_l2) as u16),
            std::cmp::Ordering::Less => m.adj((old_l2 - new_l2) as u16),
            std::cmp::Ordering::Equal => true,
        };
        if !ok || m.data().len() < new_l2 {
            c.drop(DropReason::NoMbuf, 1);
            return;
        }
        pipeline::write_l2(
            &mut m.data_mut()[..new_l2],
            dst,
            src,
            to.vlan,
            EtherType::Ipv4,
        );
        count_departure(&self.tables, c, to_device, count, m.pkt_len() as u64);
        match self.tx.get_mut(to.iface as usize) {
            Some(t) => t.push(m, c),
            None => c.drop(DropReason::Malformed, 1),
        }
    }

    /// One copy of the frame's IPv4 packet to each passive device of the hop.
    fn copy_to_passive(&mut self, t: &Tables, m: &Mbuf, s: &Steer, c: &WorkerCounters) {
        let Some(l3) = m.data().get(s.l3_offset as usize..) else {
            return;
        };
        for &d in s.copies.as_slice() {
            let leg = t.devices[d as usize].client_leg;
            let (Some(dst), Some(iface)) = (t.resolve(leg.mac), self.datapath.interface(leg.iface))
            else {
                c.drop(DropReason::NoArpEntry, 1);
                continue;
            };
            let l2 = pipeline::l2_len(leg.vlan);
            let Some(mut copy) = self.pool.alloc() else {
                c.drop(DropReason::NoMbuf, 1);
                continue;
            };
            let Some(buf) = copy.append((l2 + l3.len()) as u16) else {
                c.drop(DropReason::NoMbuf, 1);
                continue;
            };
            pipeline::write_l2(&mut buf[..l2], dst, iface.mac, leg.vlan, EtherType::Ipv4);
            buf[l2..].copy_from_slice(l3);
            let len = (l2 + l3.len()) as u64;
            if let Some(dc) = t.device_slot(d).and_then(|slot| c.devices.get(slot)) {
                dc.packets_to.add(1);
                dc.bytes_to.add(len);
            }
            if let Some(tx) = self.tx.get_mut(leg.iface as usize) {
                tx.push(copy, c);
            }
        }
    }

    fn hold(&mut self, h: Held, c: &WorkerCounters) {
        match self.held.iter_mut().find(|s| s.is_none()) {
            Some(slot) => {
                *slot = Some(h);
                self.held_count += 1;
            }
            None => c.drop(DropReason::NoArpEntry, 1),
        }
    }

    /// Sends held packets whose next hop got resolved; drops those that waited too long.
    fn release_held(&mut self, now: u64, hz: u64, c: &WorkerCounters) {
        let timeout = hz / 1000 * PENDING_MS;
        for i in 0..PENDING {
            let Some(h) = &self.held[i] else { continue };
            let mac = h.neighbors.mac(h.slot);
            if mac.is_none() && now.wrapping_sub(h.since) < timeout {
                continue;
            }
            let h = self.held[i].take().expect("checked above");
            self.held_count -= 1;
            match mac {
                Some(dst) => self.emit(h.m, dst, h.to, h.l3_offset, h.to_device, h.count, c),
                None => c.drop(DropReason::NoArpEntry, 1),
            }
        }
    }

    /// Worker 0 sends the ARP requests the neighbor table has due.
    fn send_arp_requests(&mut self, now: u64, hz: u64, c: &WorkerCounters) {
        let neighbors = Arc::clone(&self.tables.neighbors);
        for slot in 0..neighbors.len() as u32 {
            if neighbors.poll(slot, now, hz) != Due::Request {
                continue;
            }
            let key = neighbors.key(slot);
            let Some(iface) = self.datapath.interface(key.iface).copied() else {
                continue;
            };
            let Some(mut m) = self.pool.alloc() else {
                c.drop(DropReason::NoMbuf, 1);
                continue;
            };
            let len = pipeline::arp_request_len(key.vlan);
            let Some(buf) = m.append(len as u16) else {
                c.drop(DropReason::NoMbuf, 1);
                continue;
            };
            pipeline::write_arp_request(buf, &iface, key.vlan, key.ip);
            c.arp_requests.add(1);
            if let Some(tx) = self.tx.get_mut(key.iface as usize) {
                tx.push(m, c);
            }
        }
    }
}
