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
    /// An IPv4 packet that matches no service (or carries no port: ICMP).
    NoService => "no_service",
    /// A service matched, but the sender is not the hop the sequence expects.
    SourceNotVerified => "source_not_verified",
    /// A non-first IPv4 fragment: it carries no port to steer by.
    FragmentNoPort => "fragment_no_port",
    /// The next hop's MAC was not resolved in time.
    NoArpEntry => "no_arp_entry",
    /// No mbuf for a copy to a passive device or an ARP request.
    NoMbuf => "no_mbuf",
    /// Denied by the interface's ACL.
    AclDeny => "acl_deny",
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
    pub arp_learned: Counter,
    pub arp_requests: Counter,
    /// TSC cycles spent in bursts that carried packets, and in total polling;
    /// their ratio is how busy the worker is.
    pub busy_cycles: Counter,
    pub total_cycles: Counter,
    /// TSC cycles of seqd's own work on bursts: parse, lookups, ACL,
    /// rewrite, counters and tx buffering, without the PMD's rx and tx
    /// bursts or freeing drops.
    pub work_cycles: Counter,
    /// TSC of the last burst that carried packets (used to detect idleness).
    pub last_rx_tsc: Counter,
    /// The table version this worker runs (a gauge).
    pub table_version: Counter,
    drops: [Counter; DropReason::COUNT],
    /// Per service port (index of the compiled port).
    pub services: Box<[ServiceCounters]>,
    /// Per device (device id).
    pub devices: Box<[DeviceCounters]>,
    /// Per ACL rule (rule id): packets and bytes it decided.
    pub acl_rules: Box<[HitCounters]>,
    /// Per ACL default action (default slot).
    pub acl_defaults: Box<[HitCounters]>,
}

/// Packets and bytes an ACL entry decided.
#[derive(Default)]
pub struct HitCounters {
    pub packets: Counter,
    pub bytes: Counter,
}

/// How many of each counted thing a worker needs room for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sizes {
    pub service_ports: usize,
    pub devices: usize,
    pub acl_rules: usize,
    pub acl_defaults: usize,
}

/// What a service port is billed on: frames and bytes from and to the client side.
#[derive(Default)]
pub struct ServiceCounters {
    pub packets_in: Counter,
    pub bytes_in: Counter,
    pub packets_out: Counter,
    pub bytes_out: Counter,
}

/// Frames seqd sent to a device (copies included) and steered from it.
#[derive(Default)]
pub struct DeviceCounters {
    pub packets_to: Counter,
    pub bytes_to: Counter,
    pub packets_from: Counter,
    pub bytes_from: Counter,
}

impl WorkerCounters {
    pub fn new(sizes: Sizes) -> Self {
        WorkerCounters {
            services: (0..sizes.service_ports)
                .map(|_| ServiceCounters::default())
                .collect(),
            devices: (0..sizes.devices)
                .map(|_| DeviceCounters::default())
                .collect(),
            acl_rules: (0..sizes.acl_rules)
                .map(|_| HitCounters::default())
                .collect(),
            acl_defaults: (0..sizes.acl_defaults)
                .map(|_| HitCounters::default())
                .collect(),
            ..Default::default()
        }
    }

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
    /// Counters for `workers` workers, each with room for `sizes`.
    pub fn new(workers: usize, sizes: Sizes) -> Self {
        Counters {
            workers: (0..workers)
                .map(|_| CachePadded::new(WorkerCounters::new(sizes)))
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
        let c = Counters::new(
            3,
            Sizes {
                service_ports: 2,
                devices: 1,
                ..Sizes::default()
            },
        );
        c.worker(0).drop(DropReason::NoService, 2);
        c.worker(2).drop(DropReason::NoService, 5);
        c.worker(1).drop(DropReason::Truncated, 1);
        c.worker(1).rx_packets.add(7);
        assert_eq!(c.drops(DropReason::NoService), 7);
        assert_eq!(c.drops(DropReason::Truncated), 1);
        assert_eq!(c.drops(DropReason::Malformed), 0);
        assert_eq!(c.sum(|w| w.rx_packets.get()), 7);
        c.worker(0).services[1].bytes_in.add(100);
        c.worker(2).services[1].bytes_in.add(20);
        assert_eq!(c.sum(|w| w.services[1].bytes_in.get()), 120);
    }
}
