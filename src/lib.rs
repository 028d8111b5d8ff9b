//! seqd: a DPDK packet sequencing engine.
//!
//! - [`datapath`]: the per-packet path. A pure core (parse, classify, verdict,
//!   counters) over byte slices, and a thin safe layer over DPDK at the edge.
//! - [`control`]: configuration, compiled tables, the REST API and metrics.
//! - [`acl`]: interface-scoped access control lists.

pub mod acl;
pub mod control;
pub mod datapath;
pub mod runtime;
