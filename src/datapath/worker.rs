//! The poll loop of one worker lcore, in the shape of DPDK's l3fwd: poll each
//! owned rx queue for a burst, decide every packet, buffer what is sent per
//! output interface, and drain the tx buffers when they fill or when
//! [`DRAIN_US`] have passed. What tx refuses is freed and counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::counters::{Counters, DropReason, WorkerCounters};
use super::dpdk::{self, Burst, RxQueue, TxQueue, MAX_BURST};
use super::pipeline::{Datapath, Verdict};

/// Longest a packet waits in a tx buffer that is not full.
pub const DRAIN_US: u64 = 100;

/// One rx queue a worker polls, and the interface it belongs to.
pub struct RxPort {
    pub iface: u16,
    pub queue: RxQueue,
}

/// A tx queue with its pending burst.
struct TxBuffer {
    queue: TxQueue,
    pending: Burst,
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
}

/// Everything one worker owns. Built on the main lcore, moved to the worker.
pub struct Worker {
    index: usize,
    rx: Vec<RxPort>,
    /// Indexed by output interface.
    tx: Vec<TxBuffer>,
    burst_size: usize,
    datapath: Arc<Datapath>,
    counters: Arc<Counters>,
    quit: Arc<AtomicBool>,
}

impl Worker {
    /// `tx` holds one queue per interface, in interface order.
    pub fn new(
        index: usize,
        rx: Vec<RxPort>,
        tx: Vec<TxQueue>,
        burst_size: usize,
        datapath: Arc<Datapath>,
        counters: Arc<Counters>,
        quit: Arc<AtomicBool>,
    ) -> Worker {
        Worker {
            index,
            rx,
            tx: tx
                .into_iter()
                .map(|queue| TxBuffer {
                    queue,
                    pending: Burst::new(),
                })
                .collect(),
            burst_size: burst_size.clamp(1, MAX_BURST),
            datapath,
            counters,
            quit,
        }
    }

    /// Polls until `quit` is set, then flushes every tx buffer. Returns 0.
    pub fn run(mut self) -> i32 {
        let counters = Arc::clone(&self.counters);
        let c = counters.worker(self.index);
        let drain_tsc = dpdk::tsc_hz() * DRAIN_US / 1_000_000;
        let mut rx_burst = Burst::new();
        let mut dropped = Burst::new();
        let mut last_drain = dpdk::rdtsc();
        let mut loop_start = last_drain;
        while !self.quit.load(Ordering::Relaxed) {
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
            if now.wrapping_sub(last_drain) > drain_tsc {
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

    #[inline(always)]
    fn process_burst(
        &mut self,
        iface: u16,
        burst: &mut Burst,
        dropped: &mut Burst,
        c: &WorkerCounters,
    ) {
        let n = burst.len();
        let mut bytes = 0u64;
        for i in 0..n {
            burst.get(i).prefetch();
        }
        for mut m in burst.drain() {
            bytes += m.pkt_len() as u64;
            match self.datapath.process(iface, m.data_mut()) {
                Verdict::Forward { iface: out } => {
                    let Some(t) = self.tx.get_mut(out as usize) else {
                        c.drop(DropReason::Malformed, 1);
                        continue;
                    };
                    if t.pending.is_full() {
                        t.flush(c);
                    }
                    if let Err(m) = t.pending.push(m) {
                        drop(m);
                        c.drop(DropReason::TxFull, 1);
                    }
                }
                Verdict::Drop(reason) => {
                    c.drop(reason, 1);
                    if let Err(m) = dropped.push(m) {
                        drop(m);
                    }
                }
            }
        }
        // Free the burst's drops in one bulk call.
        dropped.clear();
        c.rx_packets.add(n as u64);
        c.rx_bytes.add(bytes);
    }
}
