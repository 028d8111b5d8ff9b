//! The datapath: a pure per-packet core ([`packet`], [`pipeline`],
//! [`tables`], [`neighbor`], [`counters`]) that works on byte slices, the
//! worker poll loop ([`worker`]), and the one safe layer over DPDK ([`dpdk`]).

pub mod counters;
pub mod dpdk;
pub mod neighbor;
pub mod packet;
pub mod pipeline;
pub mod tables;
pub mod worker;
