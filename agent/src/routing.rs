//! Turns the configuration into a running speaker: local AS and router id,
//! the node's PodCIDR advertised, and the configuration's peers (ToRs,
//! static node mesh) handed to the peer applier (`peers.rs`).

use crate::config::{node_asn, parse_family, Config, MeshSource, NodeMesh, PeerEntry, DEFAULT_MAX_PREFIX};
use crate::fib::{Fib, FibInput};
use crate::peers::{PeerSources, PeerSpec};
use novanet_bgp::policy::{LocalPrefixes, PeerPolicy};
use novanet_bgp::speaker::{PeerConfig, PeerRole, RouteSink, SinkEvent, Speaker, SpeakerConfig, SpeakerEvent};
use novanet_bgp::wire::{Family, Origin, PathAttributes};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// Multihop TTL used for node-mesh peers, which are often routed through
/// the ToRs rather than on one segment.
pub const MESH_MULTIHOP: u8 = 255;

/// Speaker settings from the configuration (no route sink, not
/// restarting).
pub fn speaker_config(cfg: &Config) -> anyhow::Result<SpeakerConfig> {
    Ok(SpeakerConfig {
        restarting: Arc::new(AtomicBool::new(false)),
        route_sink: None,
        local_as: cfg.local_as()?,
        router_id: cfg.router_id()?,
        listen_port: Some(cfg.routing.listen_port),
        peer_port: 179,
        local_prefixes: LocalPrefixes {
            pod_cidrs: cfg.pod_cidrs(),
            accept_default_route: cfg.routing.accept_default_route,
        },
        graceful_restart_time: cfg.routing.graceful_restart_time,
    })
}

fn policy(cfg: &Config, name: &str) -> PeerPolicy {
    match name {
        "default" => PeerPolicy::Default,
        "all" => PeerPolicy::All,
        "none" => PeerPolicy::None,
        other => PeerPolicy::Named(
            other.into(),
            Arc::new(cfg.routing.policies.get(other).cloned().expect("validated")),
        ),
    }
}

/// A ToR peer from `routing.peers[]` at `address`: its `neighbor_address`,
/// or for a peer by interface the link-local address found on that link.
/// A peer by interface carries IPv4 and IPv6 unicast unless told otherwise.
pub fn tor_peer(cfg: &Config, p: &PeerEntry, address: std::net::IpAddr) -> PeerConfig {
    let mut pc = PeerConfig::new(address, p.remote_as);
    pc.description = p.description.clone();
    if let Some(name) = &p.interface {
        pc.interface = Some(name.clone());
        pc.families = vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST];
        if pc.description.is_empty() {
            pc.description = format!("unnumbered on {name}");
        }
    }
    pc.role = PeerRole::Tor;
    if p.hold_time != 0 {
        pc.hold_time = p.hold_time;
    }
    if p.keepalive != 0 {
        pc.keepalive = Some(p.keepalive);
    }
    pc.passive = p.passive;
    pc.source_address = p.source_address;
    pc.ebgp_multihop = p.ebgp_multihop;
    pc.ttl_security_hops = p.ttl_security_hops;
    pc.password = p.password.clone().filter(|s| !s.is_empty());
    if !p.address_families.is_empty() {
        pc.families = p.address_families.iter().filter_map(|f| parse_family(f)).collect();
        pc.families.dedup();
    }
    set_prefix_limit(&mut pc, p.max_prefix, p.max_prefix_warning_only);
    pc.import = policy(cfg, &p.import);
    pc.export = policy(cfg, &p.export);
    pc
}

/// A prefix limit as configured: an explicit limit tears the session down
/// unless `warning_only`; 0 takes the documented default, which only warns,
/// so a peer sending more than expected is never cut off silently.
fn set_prefix_limit(pc: &mut PeerConfig, limit: u32, warning_only: Option<bool>) {
    pc.max_prefix = if limit == 0 { DEFAULT_MAX_PREFIX } else { limit };
    pc.max_prefix_warning_only = warning_only.unwrap_or(limit == 0);
}

/// A node-mesh peer: the other node's address and per-node AS, multihop
/// (mesh traffic often crosses the ToRs), a short connect retry, the
/// mesh's prefix limit.
pub fn mesh_peer(mesh: &NodeMesh, name: &str, ip: std::net::IpAddr, asn: u32) -> PeerConfig {
    let mut pc = PeerConfig::new(ip, asn);
    pc.description = format!("node {name}");
    pc.role = PeerRole::Mesh;
    pc.ebgp_multihop = MESH_MULTIHOP;
    pc.connect_retry = Duration::from_secs(2);
    set_prefix_limit(&mut pc, mesh.max_prefix, mesh.max_prefix_warning_only);
    pc
}

/// Node-mesh peers of a static node list: every node but this one, with
/// its per-node AS.
pub fn mesh_peers(cfg: &Config) -> Vec<PeerConfig> {
    let mesh = &cfg.routing.node_mesh;
    if !mesh.enabled || mesh.source != MeshSource::Static {
        return Vec::new();
    }
    mesh.nodes
        .iter()
        .filter(|n| Some(n.ip) != cfg.node_ip && n.name != cfg.node_name)
        .filter_map(|n| Some(mesh_peer(mesh, &n.name, n.ip, node_asn(n.ip, cfg.routing.asn_mode)?)))
        .collect()
}

/// A peer with the BFD session the configuration gives it.
pub fn peer_spec(cfg: &Config, bgp: PeerConfig) -> PeerSpec {
    let bfd = crate::liveness::session_for(cfg, &bgp);
    PeerSpec { bgp, bfd }
}

/// Every peer the configuration file gives an address: ToRs, then the
/// static mesh (peers by interface come from [`crate::unnumbered`] once
/// their address is found).
pub fn config_peers(cfg: &Config) -> Vec<PeerSpec> {
    cfg.routing
        .peers
        .iter()
        .filter_map(|p| Some(tor_peer(cfg, p, p.neighbor_address?)))
        .chain(mesh_peers(cfg))
        .map(|pc| peer_spec(cfg, pc))
        .collect()
}

/// The running routing manager: the speaker and, when enabled, the FIB
/// and BFD.
pub struct Routing {
    pub speaker: Speaker,
    pub fib: Option<Fib>,
    pub bfd: novanet_bfd::transport::Bfd,
    /// Where the configuration and the node watcher publish their peers.
    pub peers: PeerSources,
    /// The links of peers by interface.
    pub unnumbered: crate::unnumbered::Unnumbered,
    /// Speaker events from before the first peer was added (for the event
    /// sources, which start later).
    pub events: tokio::sync::broadcast::Receiver<SpeakerEvent>,
}

/// How often the FIB compares itself with the kernel.
pub const FIB_RECONCILE_EVERY: Duration = Duration::from_secs(30);

/// Starts the FIB writer (when enabled) and the speaker, configures every
/// peer and advertises the PodCIDRs.
pub async fn start(cfg: &Config) -> anyhow::Result<Routing> {
    let mut sc = speaker_config(cfg)?;
    let scopes = crate::fib::LinkLocalScopes::default();
    let fib = if cfg.routing.fib.enabled {
        let fib = Fib::start(
            FIB_RECONCILE_EVERY,
            cfg.routing.fib.nexthop_objects,
            cfg.turns_nexthop_compat_off(),
            scopes.clone(),
        )
        .map_err(|e| anyhow::anyhow!("kernel FIB (routing.fib): {e}"))?;
        let input = Mutex::new(fib.input());
        let lost = fib.lost_next_hops();
        sc.route_sink = Some(RouteSink(Arc::new(move |event| match event {
            SinkEvent::Changes(changes) => {
                let _ = input.lock().expect("fib input").send(FibInput::Changes(changes));
            }
            SinkEvent::NextHopsLost(next_hops) => lost.send(next_hops),
        })));
        if fib.adopted > 0 {
            sc.restarting.store(true, Ordering::Relaxed);
        }
        Some(fib)
    } else {
        tracing::info!("routing.fib.enabled is false: learned routes stay out of the kernel");
        None
    };
    let restarting = sc.restarting.clone();
    tracing::info!(
        node = %cfg.node_name,
        node_ip = ?cfg.node_ip,
        local_as = sc.local_as,
        router_id = %sc.router_id,
        "routing manager starting"
    );
    let speaker = Speaker::start(sc)
        .await
        .map_err(|e| anyhow::anyhow!("routing.listen_port {}: {e}", cfg.routing.listen_port))?;
    let events = speaker.subscribe();
    let bfd = crate::liveness::start(&speaker).await?;
    // In the OSPF mode the PodCIDR goes into OSPF instead (crate::ospf).
    for pod_cidr in cfg.pod_cidrs().into_iter().filter(|_| !cfg.ospf_mode()) {
        let attrs = PathAttributes {
            origin: Origin::Igp,
            ..Default::default()
        };
        speaker.originate(pod_cidr, attrs).await?;
        tracing::info!(prefix = %pod_cidr, "PodCIDR advertised");
    }
    let peers = crate::peers::spawn(speaker.clone(), bfd.clone(), config_peers(cfg));
    let unnumbered = crate::unnumbered::spawn(cfg, fib.is_some().then_some(scopes), peers.unnumbered.clone());
    if let Some(f) = &fib {
        if restarting.load(Ordering::Relaxed) {
            let stale_for = Duration::from_secs(cfg.routing.graceful_restart_time.max(1) as u64);
            tokio::spawn(finish_restart(speaker.clone(), f.input(), restarting, stale_for));
        }
    }
    Ok(Routing {
        speaker,
        fib,
        bfd,
        peers,
        unnumbered,
        events,
    })
}

/// Ends a restart with forwarding state kept: once every configured peer
/// has sent End-of-RIB for each of its families (or `stale_for` has
/// passed), the kernel routes that were not re-learned are removed and
/// OPENs stop announcing a restart.
async fn finish_restart(
    speaker: Speaker,
    fib: std::sync::mpsc::Sender<FibInput>,
    restarting: Arc<AtomicBool>,
    stale_for: Duration,
) {
    let mut events = speaker.subscribe();
    let deadline = tokio::time::sleep(stale_for);
    tokio::pin!(deadline);
    let mut done: HashSet<(std::net::IpAddr, String)> = HashSet::new();
    let synced = |done: &HashSet<(std::net::IpAddr, String)>| {
        let peers = speaker.peers();
        !peers.is_empty()
            && peers.iter().all(|p| {
                p.fsm_state == novanet_bgp::fsm::State::Established
                    && p.families
                        .iter()
                        .all(|f| done.contains(&(p.neighbor_address, f.clone())))
            })
    };
    let reason = loop {
        tokio::select! {
            _ = &mut deadline => break "restart time over",
            ev = events.recv() => match ev {
                Ok(SpeakerEvent::EndOfRib { address, family }) => {
                    done.insert((address, family.to_string()));
                    if synced(&done) {
                        break "End-of-RIB from every peer";
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            },
        }
    };
    tracing::info!(reason, "graceful restart finished");
    restarting.store(false, Ordering::Relaxed);
    let _ = fib.send(FibInput::Sweep);
}

/// Applies a changed configuration to the running speaker (SIGHUP):
/// PodCIDRs advertised or withdrawn, and the new set of configuration
/// peers handed to the peer applier (a peer whose only change is its
/// policies stays up, a BFD change leaves BGP alone, any other change
/// resets that peer alone). Nothing is changed when the new configuration
/// cannot be applied as a whole.
pub async fn reload(
    speaker: &Speaker,
    (peers, unnumbered): (&PeerSources, &crate::unnumbered::Unnumbered),
    old: &Config,
    new: &Config,
) -> anyhow::Result<()> {
    if old.routing.protocol != new.routing.protocol {
        anyhow::bail!(
            "routing.protocol changed from {:?} to {:?}: that takes a restart of the agent",
            old.routing.protocol,
            new.routing.protocol
        );
    }
    let (local_as, router_id) = (new.local_as()?, new.router_id()?);
    if old.local_as()? != local_as || old.router_id()? != router_id {
        // Checked above like everything else; applied first, so the
        // sessions of the peers below start with the new settings.
        speaker.reconfigure(local_as, router_id).await?;
        tracing::info!(local_as, %router_id, "local AS / router id applied: sessions restarted");
    }
    // The OSPF mode's PodCIDRs are the OSPF task's (crate::ospf).
    let bgp_cidrs = |c: &Config| if c.ospf_mode() { Vec::new() } else { c.pod_cidrs() };
    let (old_cidrs, new_cidrs) = (bgp_cidrs(old), bgp_cidrs(new));
    for p in old_cidrs.iter().filter(|p| !new_cidrs.contains(p)) {
        speaker.withdraw(*p).await?;
        tracing::info!(prefix = %p, "PodCIDR withdrawn");
    }
    for p in new_cidrs.iter().filter(|p| !old_cidrs.contains(p)) {
        speaker.originate(*p, PathAttributes::default()).await?;
        tracing::info!(prefix = %p, "PodCIDR advertised");
    }
    peers.config.send_replace(config_peers(new));
    unnumbered.reconfigure(new);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_sessions_take_the_mesh_s_prefix_limit() {
        let text = r#"{"node_name": "a", "node_ip": "10.0.1.10", "routing": {"node_mesh": {"enabled": true, "source": "static",
            "max_prefix": 20, "nodes": [{"name": "a", "ip": "10.0.1.10"}, {"name": "b", "ip": "10.0.1.11"}]}}}"#;
        let cfg = Config::parse(text).unwrap();
        let peers = mesh_peers(&cfg);
        assert_eq!(peers.len(), 1);
        assert_eq!((peers[0].max_prefix, peers[0].max_prefix_warning_only), (20, false));
        let unset = Config::parse(&text.replace(r#""max_prefix": 20, "#, "")).unwrap();
        let p = &mesh_peers(&unset)[0];
        assert_eq!((p.max_prefix, p.max_prefix_warning_only), (DEFAULT_MAX_PREFIX, true));
    }
}
