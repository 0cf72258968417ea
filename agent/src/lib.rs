//! The NovaNet node agent as a library: configuration ([`config`]), the
//! kernel FIB writer ([`fib`]), BFD for BGP peers ([`liveness`]), the
//! routing manager that drives the BGP speaker ([`routing`]), desired-state
//! peers from every source ([`peers`]), the HTTP status endpoint
//! ([`status`]), and the backend of `novanet-cni` ([`cni`]). The
//! `novanet-agent` binary wires them up.

pub mod cni;
pub mod config;
pub mod control;
pub mod fib;
pub mod kubernetes;
pub mod liveness;
pub mod metrics;
pub mod ospf;
pub mod peers;
pub mod policy;
pub mod routing;
pub mod status;
pub mod unnumbered;
pub mod vip;
