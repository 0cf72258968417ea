//! The NovaNet node agent as a library: configuration ([`config`]), the
//! kernel FIB writer ([`fib`]), BFD for BGP peers ([`liveness`]), the
//! routing manager that drives the BGP speaker ([`routing`]), desired-state
//! peers from every source ([`peers`]), the HTTP status endpoint
//! ([`status`]), and the backend of `novanet-cni` ([`cni`]). The
//! `novanet-agent` binary wires them up.

pub mod addresses;
pub mod api;
pub mod bfd;
pub mod bgp;
pub mod cni;
pub mod config;
pub mod control;
pub mod kubernetes;
pub mod metrics;
pub mod ospf;
pub mod peers;
pub mod policy;
pub mod status;
pub mod unnumbered;
pub mod vip;
