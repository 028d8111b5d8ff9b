//! Drop reasons and per-worker counters.
//!
//! Each worker owns one [`WorkerCounters`] and is its only writer, so an
//! increment is a plain load and store (no locked instruction); readers on
//! the control thread load each counter and sum across workers. Every counter
//! sits in its worker's own cache-line-padded block, so workers never share a
//! line.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam::utils::CachePadded;

/// A counter with a single writer and any number of readers.
#[derive(Default)]
#[repr(transparent)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker may call this (single writer).
    #[inline(always)]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Overwrites the value (gauges such as a timestamp). Owner only.
    #[inline(always)]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    #[inline(always)]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

macro_rules! drop_reasons {
    ($( $(#[doc = $doc:literal])* $variant:ident => $name:literal ),+ $(,)?) => {
        /// Why a packet was dropped. Declared once: each reason has one counter
        /// per worker and one stable name used in logs, stats and metrics.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $( $(#[doc = $doc])* $variant ),+
        }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant),+];
            pub const COUNT: usize = Self::ALL.len();

            /// Stable snake_case name (metric label, stats key).
            pub const fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name),+ }
            }
        }
    };
}

drop_reasons! {
    /// The frame is shorter than its headers say.
    Truncated => "truncated",
    /// A header field is invalid (IP version, header length, ARP sizes, ...).
    Malformed => "malformed",
    /// Addressed to another unicast MAC, or to a multicast group.
    NotOurMac => "not_our_mac",
    /// Neither IPv4 nor ARP (IPv6 included, until it is supported).
    UnsupportedEthertype => "unsupported_ethertype",
    /// Tagged with a VLAN no interface or device is configured on.
    UnknownVlan => "unknown_vlan",
    /// An ARP request for an address seqd does not answer for.
    ArpNotOurs => "arp_not_ours",
    /// An ARP reply or other operation seqd has no use for.
    ArpIgnored => "arp_ignored",
    /// An IPv4 packet that matches no service.
    NoService => "no_service",
    /// The tx queue was full; the packet was freed unsent.
    TxFull => "tx_full",
}

/// Everything one worker counts.
#[derive(Default)]
pub struct WorkerCounters {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
    pub arp_replies: Counter,
    /// TSC cycles spent in bursts that carried packets, and in total polling;
    /// their ratio is how busy the worker is.
    pub busy_cycles: Counter,
    pub total_cycles: Counter,
    /// TSC of the last burst that carried packets (used to detect idleness).
    pub last_rx_tsc: Counter,
    drops: [Counter; DropReason::COUNT],
}

impl WorkerCounters {
    #[inline(always)]
    pub fn drop(&self, reason: DropReason, n: u64) {
        self.drops[reason as usize].add(n);
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].get()
    }
}

/// The counters of every worker, indexed by worker number.
pub struct Counters {
    workers: Box<[CachePadded<WorkerCounters>]>,
}

impl Counters {
    pub fn new(workers: usize) -> Self {
        Counters {
            workers: (0..workers)
                .map(|_| CachePadded::new(WorkerCounters::default()))
                .collect(),
        }
    }

    pub fn worker(&self, i: usize) -> &WorkerCounters {
        &self.workers[i]
    }

    pub fn workers(&self) -> impl Iterator<Item = &WorkerCounters> {
        self.workers.iter().map(|w| &**w)
    }

    /// Sum of one counter over all workers.
    pub fn sum(&self, f: impl Fn(&WorkerCounters) -> u64) -> u64 {
        self.workers().map(f).sum()
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.sum(|w| w.drops(reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snake_case() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert!(names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn sums_across_workers() {
        let c = Counters::new(3);
        c.worker(0).drop(DropReason::NoService, 2);
        c.worker(2).drop(DropReason::NoService, 5);
        c.worker(1).drop(DropReason::Truncated, 1);
        c.worker(1).rx_packets.add(7);
        assert_eq!(c.drops(DropReason::NoService), 7);
        assert_eq!(c.drops(DropReason::Truncated), 1);
        assert_eq!(c.drops(DropReason::Malformed), 0);
        assert_eq!(c.sum(|w| w.rx_packets.get()), 7);
    }
}
