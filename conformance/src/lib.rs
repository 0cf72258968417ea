//! The namespace lab used by the interop tests: network namespaces joined
//! by veth pairs, real FRR, BIRD and GoBGP daemons, and `novanet-agent`
//! processes, all named uniquely per test and removed when the [`Lab`] is
//! dropped, even when the test fails.
//!
//! Needs root, iproute2, and the Debian packages frr, bird2, gobgpd and
//! containernetworking-plugins. [`cni_runtime`] drives CNI plugins as a
//! container runtime does.

pub mod agent;
pub mod checks;
pub mod cni_runtime;
pub mod daemons;
pub mod kernel;
pub mod kube_server;
pub mod lab;
pub mod policy_node;
pub mod raw;
pub mod route_control;

pub use agent::Agent;
pub use daemons::{Bird, Frr, GoBgp};
pub use lab::{in_namespace, wait_until, Lab};
