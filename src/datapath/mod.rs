//! The datapath: a pure per-packet core ([`packet`], [`pipeline`],
//! [`counters`]) that works on byte slices, the worker poll loop
//! ([`worker`]), and the one safe layer over DPDK ([`dpdk`]).

pub mod counters;
pub mod dpdk;
pub mod packet;
pub mod pipeline;
pub mod worker;
