//! The NovaNet node agent as a library; the `novanet-agent` binary wires
//! its rooms up (`docs/architecture.md` draws them):
//!
//! - [`config`]: the configuration file as types, on one channel;
//! - [`bgp`]: the BGP bootstrap (speaker, FIB as its route sink,
//!   PodCIDRs, restart finish) and [`bfd`]: the BFD engine and its rule;
//! - [`peers`]: every neighbor from every source, on one road;
//!   [`unnumbered`]: peers by interface;
//! - [`kubernetes`]: the Node mesh, Events, the policy watches;
//! - [`control`]: owners, intents, the reconciler, the event bus;
//!   [`api`]: its gRPC services and their socket;
//! - [`ospf`]: the OSPF mode's sidecar driver;
//! - [`lifecycle`]: the drain and what a SIGTERM means;
//! - [`vip`]: the control-plane VIP; [`addresses`]: address writes;
//! - [`policy`], [`cni`]: identity policy and the CNI plugins' backend;
//! - [`status`], [`metrics`]: the HTTP status endpoint and Prometheus.
//!
//! The kernel FIB writer is the crate `novanet-fib`.

pub mod addresses;
pub mod api;
pub mod bfd;
pub mod bgp;
pub mod cni;
pub mod config;
pub mod control;
pub mod gateways;
pub mod kubernetes;
pub mod lifecycle;
pub mod metrics;
pub mod ospf;
pub mod peers;
pub mod policy;
pub mod published;
pub mod status;
pub mod unnumbered;
pub mod vip;
