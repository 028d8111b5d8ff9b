//! Interface-scoped access control lists, indexed by service IP.
//!
//! The rule model, its compiled lookup and its counters arrive with the ACL
//! issue; the datapath applies the verdict before a packet is steered.
