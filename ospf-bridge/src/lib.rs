//! The OSPF bridge: NovaNet leaves OSPF to an FRR `ospfd` (and `ospf6d`
//! for IPv6) with its `zebra`, run as a sidecar, and drives it through
//! `vtysh --vty_socket DIR`, executed without a shell.
//!
//! - [`validate`]: every value that may reach vtysh, checked (interface
//!   names by the kernel's rules, areas, numbers in range, no whitespace,
//!   newline or control character).
//! - [`command`]: typed configuration (an interface in an area, the router
//!   id) rendered into vtysh lines; callers never assemble strings.
//! - [`vtysh`]: running a batch (a `%` line is an error even with exit
//!   code 0), reading the running configuration and `show ... json`.
//! - [`readback`]: FRR 8.4's neighbor JSON as typed neighbors.
//! - [`bridge`]: the desired state kept in the sidecar across daemon
//!   restarts.

pub mod bridge;
pub mod command;
pub mod readback;
pub mod validate;
pub mod vtysh;
