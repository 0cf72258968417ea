//! The kernel's `net.ipv4.nexthop_compat_mode` (IPv4 and IPv6 alike). In
//! compat mode (the kernel's default) every change of a nexthop object is
//! also announced as a route notification for each route using it: with a
//! full table through a nexthop group, the group replace of a failover
//! makes the kernel build about a million notifications under the routing
//! lock (measured: ~260 ms, long enough for the node's other BFD sessions
//! to time out while the kernel did it). With compat mode off, the replace
//! is one notification and route dumps name routes' nexthop ids instead of
//! repeating their gateways (`ip route` shows `nhid N`; `ip nexthop` the
//! gateways).

use std::io;

/// Where the host's `/proc/sys/net` is: `NOVANET_PROC_SYS_NET` (a
/// container's own `/proc/sys` is read-only; the chart mounts the host's
/// `/proc/sys/net` writable there, so no privileged container is needed),
/// else `/proc/sys/net`.
fn path() -> std::path::PathBuf {
    let net = std::env::var_os("NOVANET_PROC_SYS_NET").unwrap_or_else(|| "/proc/sys/net".into());
    std::path::Path::new(&net).join("ipv4/nexthop_compat_mode")
}

/// The setting now; `None` when the kernel has none (before Linux 5.9).
pub fn current() -> Option<bool> {
    let text = std::fs::read_to_string(path()).ok()?;
    Some(text.trim() != "0")
}

/// Turns compat mode off; whether it was on.
pub fn turn_off() -> io::Result<bool> {
    match current() {
        None => Ok(false),
        Some(false) => Ok(false),
        Some(true) => std::fs::write(path(), "0").map(|()| true),
    }
}
