//! Turns the configuration into a running speaker: local AS and router id,
//! ToR peers, static node-mesh peers, and the node's PodCIDR advertised.

use crate::config::{node_asn, parse_family, Config, PeerEntry, DEFAULT_MAX_PREFIX};
use crate::fib::{Fib, FibInput};
use novanet_bgp::policy::{LocalPrefixes, PeerPolicy};
use novanet_bgp::speaker::{PeerConfig, PeerRole, RouteSink, Speaker, SpeakerConfig, SpeakerEvent};
use novanet_bgp::wire::{Origin, PathAttributes};
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
            other.to_string(),
            Arc::new(cfg.routing.policies.get(other).cloned().expect("validated")),
        ),
    }
}

/// A ToR peer from `routing.peers[]`.
pub fn tor_peer(cfg: &Config, p: &PeerEntry) -> PeerConfig {
    let mut pc = PeerConfig::new(p.neighbor_address, p.remote_as);
    pc.description = p.description.clone();
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
    // An explicit limit tears the session down; the documented default only
    // warns, so a ToR sending more than expected is never cut off silently.
    pc.max_prefix = if p.max_prefix == 0 {
        DEFAULT_MAX_PREFIX
    } else {
        p.max_prefix
    };
    pc.max_prefix_warning_only = p.max_prefix_warning_only.unwrap_or(p.max_prefix == 0);
    pc.import = policy(cfg, &p.import);
    pc.export = policy(cfg, &p.export);
    pc
}

/// Node-mesh peers of a static node list: every node but this one, with
/// its per-node AS.
pub fn mesh_peers(cfg: &Config) -> Vec<PeerConfig> {
    let mesh = &cfg.routing.node_mesh;
    if !mesh.enabled {
        return Vec::new();
    }
    mesh.nodes
        .iter()
        .filter(|n| Some(n.ip) != cfg.node_ip && n.name != cfg.node_name)
        .filter_map(|n| {
            let asn = node_asn(n.ip, cfg.routing.asn_mode)?;
            let mut pc = PeerConfig::new(n.ip, asn);
            pc.description = format!("node {}", n.name);
            pc.role = PeerRole::Mesh;
            pc.ebgp_multihop = MESH_MULTIHOP;
            pc.connect_retry = Duration::from_secs(2);
            Some(pc)
        })
        .collect()
}

/// The running routing manager: the speaker and, when enabled, the FIB
/// and BFD.
pub struct Routing {
    pub speaker: Speaker,
    pub fib: Option<Fib>,
    pub bfd: novanet_bfd::transport::Bfd,
}

/// How often the FIB compares itself with the kernel.
pub const FIB_RECONCILE_EVERY: Duration = Duration::from_secs(30);

/// Starts the FIB writer (when enabled) and the speaker, configures every
/// peer and advertises the PodCIDRs.
pub async fn start(cfg: &Config) -> anyhow::Result<Routing> {
    let mut sc = speaker_config(cfg)?;
    let fib = if cfg.routing.fib.enabled {
        let fib = Fib::start(FIB_RECONCILE_EVERY).map_err(|e| anyhow::anyhow!("kernel FIB (routing.fib): {e}"))?;
        let input = Mutex::new(fib.input());
        sc.route_sink = Some(RouteSink(Arc::new(move |changes| {
            let _ = input.lock().expect("fib input").send(FibInput::Changes(changes));
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
    let peers: Vec<PeerConfig> = cfg
        .routing
        .peers
        .iter()
        .map(|p| tor_peer(cfg, p))
        .chain(mesh_peers(cfg))
        .collect();
    let bfd = crate::liveness::start(cfg, &speaker, &peers).await?;
    for p in &cfg.routing.peers {
        speaker.add_peer(tor_peer(cfg, p)).await?;
    }
    for pod_cidr in cfg.pod_cidrs() {
        let attrs = PathAttributes {
            origin: Origin::Igp,
            ..Default::default()
        };
        speaker.originate(pod_cidr, attrs).await?;
        tracing::info!(prefix = %pod_cidr, "PodCIDR advertised");
    }
    for pc in mesh_peers(cfg) {
        speaker.add_peer(pc).await?;
    }
    if let Some(f) = &fib {
        if restarting.load(Ordering::Relaxed) {
            let stale_for = Duration::from_secs(cfg.routing.graceful_restart_time.max(1) as u64);
            tokio::spawn(finish_restart(speaker.clone(), f.input(), restarting, stale_for));
        }
    }
    Ok(Routing { speaker, fib, bfd })
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
/// PodCIDRs advertised or withdrawn, peers added or removed, a peer whose
/// only change is its policies kept up (route refresh in, export
/// difference out), any other peer change resets that peer alone.
pub async fn reload(
    speaker: &Speaker,
    bfd: &novanet_bfd::transport::Bfd,
    old: &Config,
    new: &Config,
) -> anyhow::Result<()> {
    if old.local_as()? != new.local_as()? || old.router_id()? != new.router_id()? {
        anyhow::bail!("routing.local_as / routing.router_id changed: restart the agent to apply");
    }
    let (old_cidrs, new_cidrs) = (old.pod_cidrs(), new.pod_cidrs());
    for p in old_cidrs.iter().filter(|p| !new_cidrs.contains(p)) {
        speaker.withdraw(*p).await?;
        tracing::info!(prefix = %p, "PodCIDR withdrawn");
    }
    for p in new_cidrs.iter().filter(|p| !old_cidrs.contains(p)) {
        speaker.originate(*p, PathAttributes::default()).await?;
        tracing::info!(prefix = %p, "PodCIDR advertised");
    }
    let peers_of = |cfg: &Config| -> Vec<(PeerConfig, Option<PeerEntry>)> {
        cfg.routing
            .peers
            .iter()
            .map(|p| (tor_peer(cfg, p), Some(p.clone())))
            .chain(mesh_peers(cfg).into_iter().map(|p| (p, None)))
            .collect()
    };
    let (before, after) = (peers_of(old), peers_of(new));
    for (pc, _) in before
        .iter()
        .filter(|(b, _)| !after.iter().any(|(a, _)| a.address == b.address))
    {
        speaker.remove_peer(pc.address).await?;
    }
    // BFD sessions follow the peers: gone, new or with other timers.
    for (pc, _) in &before {
        let was = crate::liveness::session_for(old, pc);
        let now = after
            .iter()
            .find(|(a, _)| a.address == pc.address)
            .and_then(|(a, _)| crate::liveness::session_for(new, a));
        if let Some(w) = &was {
            if now.as_ref().is_none_or(|n| n.key != w.key) {
                bfd.remove(w.key);
            }
        }
    }
    for (pc, _) in &after {
        let was = before
            .iter()
            .find(|(b, _)| b.address == pc.address)
            .and_then(|(b, _)| crate::liveness::session_for(old, b));
        if let Some(n) = crate::liveness::session_for(new, pc) {
            if was.as_ref().is_none_or(|w| w.key != n.key || w.config != n.config) {
                bfd.add(n)
                    .await
                    .map_err(|e| anyhow::anyhow!("BFD session with {}: {e}", pc.address))?;
            }
        }
    }
    for (pc, entry) in &after {
        match before.iter().find(|(b, _)| b.address == pc.address) {
            None => speaker.add_peer(pc.clone()).await?,
            Some((_, old_entry)) => {
                let policy_text = |cfg: &Config, e: &Option<PeerEntry>| {
                    e.as_ref().map(|e| {
                        (
                            format!("{:?}", cfg.routing.policies.get(&e.import)),
                            format!("{:?}", cfg.routing.policies.get(&e.export)),
                        )
                    })
                };
                let same_session = match (old_entry, entry) {
                    (Some(o), Some(n)) => {
                        // Policies and BFD change without a session reset.
                        let strip = |e: &PeerEntry| PeerEntry {
                            import: String::new(),
                            export: String::new(),
                            bfd_enabled: false,
                            bfd_min_rx_ms: 0,
                            bfd_min_tx_ms: 0,
                            bfd_detect_multiplier: 0,
                            ..e.clone()
                        };
                        strip(o) == strip(n)
                    }
                    (None, None) => true,
                    _ => false,
                };
                if !same_session {
                    speaker.remove_peer(pc.address).await?;
                    speaker.add_peer(pc.clone()).await?;
                } else if old_entry.as_ref().map(|e| (&e.import, &e.export))
                    != entry.as_ref().map(|e| (&e.import, &e.export))
                    || policy_text(old, old_entry) != policy_text(new, entry)
                {
                    speaker
                        .set_policies(pc.address, pc.import.clone(), pc.export.clone())
                        .await?;
                }
            }
        }
    }
    Ok(())
}
