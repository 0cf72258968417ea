//! BGP unnumbered (RFC 8950 peering over IPv6 link-local addresses): a
//! `routing.peers[]` entry with `interface` instead of `neighbor_address`
//! peers with whichever router advertises itself on that link.
//!
//! One task per such interface ([`link`]) solicits and listens for Router
//! Advertisements to learn the neighbor's link-local address, and
//! advertises ours (router lifetime 0: not a default router) so the
//! neighbor learns it too: FRR's `neighbor IFACE interface` finds its peer
//! the same way and refuses connections from an address it has not heard.
//! The manager turns what the links found into peers for the peer applier
//! (its own source, beside the configuration's addressed peers), and tells
//! the FIB each neighbor's interface first (a link-local next hop means
//! nothing without its link). Other sources (the routing resources' peers
//! by interface) ask for links too ([`Links`]) and build their own peers
//! from the neighbors found.

pub mod ra;
pub mod socket;

use crate::config::{Config, ConfigRx};
use crate::peers::PeerSpec;
use novanet_fib::LinkLocalScopes;
use ra::{Heard, LinkNeighbor, Received};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How often we advertise ourselves on an unnumbered link (as FRR does).
pub const ADVERTISE_EVERY: Duration = Duration::from_secs(10);

/// How long a link whose socket failed (no such interface yet, interface
/// gone) waits before it is opened again.
const REOPEN_AFTER: Duration = Duration::from_secs(2);

/// The neighbor found on one link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub address: Ipv6Addr,
    pub ifindex: u32,
}

/// The links other sources ask for, and the neighbors found on every link.
#[derive(Clone)]
pub struct Links {
    pub wanted: watch::Sender<std::collections::BTreeSet<String>>,
    pub found: watch::Receiver<HashMap<String, Found>>,
}

/// The interfaces of the configuration's peers by interface.
fn interfaces(cfg: &Config) -> Vec<String> {
    cfg.routing.peers.iter().filter_map(|p| p.interface.clone()).collect()
}

/// The peers of the links whose neighbor is known, in configuration order.
pub fn peers(cfg: &Config, found: &HashMap<String, Found>) -> Vec<PeerSpec> {
    cfg.routing
        .peers
        .iter()
        .filter_map(|p| {
            let f = found.get(p.interface.as_ref()?)?;
            Some(crate::peers::spec::tor(cfg, p, IpAddr::V6(f.address)))
        })
        .collect()
}

/// Starts the manager, which follows the running configuration (links of
/// new peers by interface start, links no longer configured stop and their
/// peers go); peers go to `out`, neighbors' interfaces to `scopes` (when
/// the FIB runs).
pub fn spawn(config_rx: ConfigRx, scopes: Option<LinkLocalScopes>, out: watch::Sender<Vec<PeerSpec>>) -> Links {
    let (wanted_tx, wanted_rx) = watch::channel(Default::default());
    let (found_tx, found_rx) = watch::channel(HashMap::new());
    manage(config_rx, scopes, out, wanted_rx, found_tx);
    Links {
        wanted: wanted_tx,
        found: found_rx,
    }
}

fn manage(
    mut config_rx: ConfigRx,
    scopes: Option<LinkLocalScopes>,
    out: watch::Sender<Vec<PeerSpec>>,
    mut others: watch::Receiver<std::collections::BTreeSet<String>>,
    found_out: watch::Sender<HashMap<String, Found>>,
) {
    tokio::spawn(async move {
        let (found_tx, mut found_rx) = mpsc::channel::<(String, Found)>(16);
        let mut links: BTreeMap<String, JoinHandle<()>> = BTreeMap::new();
        let mut found: HashMap<String, Found> = HashMap::new();
        let mut others_open = true;
        loop {
            let cfg = config_rx.borrow_and_update().clone();
            let mut wanted = interfaces(&cfg);
            for name in others.borrow_and_update().iter() {
                if !wanted.contains(name) {
                    wanted.push(name.clone());
                }
            }
            links.retain(|name, task| {
                let keep = wanted.contains(name);
                if !keep {
                    task.abort();
                    found.remove(name);
                    tracing::info!(interface = %name, "unnumbered link no longer wanted");
                }
                keep
            });
            for name in wanted {
                links
                    .entry(name.clone())
                    .or_insert_with(|| tokio::spawn(link(name, found_tx.clone())));
            }
            if let Some(scopes) = &scopes {
                // Before the peers: their routes must find the link.
                for f in found.values() {
                    scopes.set(f.address, f.ifindex);
                }
            }
            out.send_replace(peers(&cfg, &found));
            crate::published::publish(&found_out, found.clone());
            tokio::select! {
                r = others.changed(), if others_open => {
                    // Gone: the links other sources asked for stay.
                    others_open = r.is_ok();
                },
                r = config_rx.changed() => if r.is_err() {
                    for task in links.values() {
                        task.abort();
                    }
                    return;
                },
                Some((name, f)) = found_rx.recv() => {
                    if !links.contains_key(&name) {
                        continue;
                    }
                    if let (Some(old), Some(scopes)) = (found.insert(name, f), &scopes) {
                        if old.address != f.address {
                            scopes.remove(&old.address);
                        }
                    }
                }
            }
        }
    });
}

/// One unnumbered link, for as long as it is configured: opens its socket
/// (again after a failure), solicits, advertises every
/// [`ADVERTISE_EVERY`] and at once to a new neighbor or a solicitation,
/// and reports the neighbor.
async fn link(interface: String, found: mpsc::Sender<(String, Found)>) {
    let mut neighbor = LinkNeighbor::default();
    let mut warned_open = false;
    loop {
        let sock = match socket::LinkSocket::open(&interface) {
            Ok(s) => s,
            Err(e) => {
                if !warned_open {
                    tracing::warn!(%interface, error = %e, "unnumbered link cannot be opened yet; trying again");
                    warned_open = true;
                }
                tokio::time::sleep(REOPEN_AFTER).await;
                continue;
            }
        };
        warned_open = false;
        tracing::info!(%interface, ifindex = sock.ifindex(), "unnumbered link: looking for the neighbor's router advertisements");
        if let Some(address) = neighbor.address() {
            // The interface came back (perhaps with a new index).
            let f = Found {
                address,
                ifindex: sock.ifindex(),
            };
            let _ = found.send((interface.clone(), f)).await;
        }
        let e = serve(&interface, &sock, &mut neighbor, &found).await;
        tracing::warn!(%interface, error = %e, "unnumbered link socket failed; opening it again");
        tokio::time::sleep(REOPEN_AFTER).await;
    }
}

/// Serves an open link socket until it fails.
async fn serve(
    interface: &str,
    sock: &socket::LinkSocket,
    neighbor: &mut LinkNeighbor,
    found: &mpsc::Sender<(String, Found)>,
) -> std::io::Error {
    let advertisement = ra::advertisement();
    if let Err(e) = sock.solicit(&ra::solicitation()) {
        return e;
    }
    let mut tick = tokio::time::interval(ADVERTISE_EVERY);
    let mut buf = [0u8; 1500];
    let mut ignored: Option<Ipv6Addr> = None;
    loop {
        let message = tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = sock.advertise(&advertisement) {
                    return e;
                }
                continue;
            }
            m = sock.recv(&mut buf) => match m {
                Ok(m) => m,
                Err(e) => return e,
            },
        };
        if !message.from.is_unicast_link_local() {
            continue;
        }
        match ra::parse(&buf[..message.len], message.hop_limit) {
            Err(why) => {
                tracing::debug!(%interface, from = %message.from, why, "router discovery message dropped");
            }
            Ok(Received::Solicitation) => {
                if let Err(e) = sock.advertise(&advertisement) {
                    return e;
                }
            }
            Ok(Received::Advertisement { .. }) => match neighbor.heard(message.from, Instant::now()) {
                Heard::Same => {}
                Heard::New(address) => {
                    tracing::info!(%interface, neighbor = %address, "unnumbered neighbor found");
                    // Answer at once: it learns our address from this.
                    if let Err(e) = sock.advertise(&advertisement) {
                        return e;
                    }
                    let f = Found {
                        address,
                        ifindex: sock.ifindex(),
                    };
                    if found.send((interface.to_string(), f)).await.is_err() {
                        return std::io::Error::other("the unnumbered manager stopped");
                    }
                }
                Heard::Other { current } => {
                    if ignored != Some(message.from) {
                        tracing::warn!(%interface, neighbor = %current, other = %message.from,
                            "a second router advertises on an unnumbered link; it is ignored while the first one advertises");
                        ignored = Some(message.from);
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_by_interface_becomes_a_peer_once_its_neighbor_is_found() {
        let cfg = Config::parse(
            r#"{"node_ip": "10.0.0.10", "routing": {"peers": [
                {"neighbor_address": "10.0.0.1", "remote_as": 65000},
                {"interface": "eth1", "remote_as": 65001, "hold_time": 9}]}}"#,
        )
        .unwrap();
        assert_eq!(interfaces(&cfg), ["eth1"]);
        let mut found = HashMap::new();
        assert!(peers(&cfg, &found).is_empty());
        let address: Ipv6Addr = "fe80::3095:61ff:fee7:df4".parse().unwrap();
        found.insert("eth1".to_string(), Found { address, ifindex: 7 });
        let p = peers(&cfg, &found);
        assert_eq!(p.len(), 1);
        let bgp = &p[0].bgp;
        assert_eq!(bgp.address, IpAddr::V6(address));
        assert_eq!(bgp.interface.as_deref(), Some("eth1"));
        assert_eq!((bgp.remote_as, bgp.hold_time), (65001, 9));
        assert_eq!(
            bgp.families,
            [
                novanet_bgp::wire::Family::IPV4_UNICAST,
                novanet_bgp::wire::Family::IPV6_UNICAST
            ]
        );
        assert_eq!(bgp.description, "unnumbered on eth1");
        assert!(p[0].bfd.is_none());
        // The addressed peer is the configuration source's, not ours.
        assert_eq!(crate::peers::spec::from_config(&cfg).len(), 1);
    }
}
