//! Turns the configuration into a running speaker: local AS and router id,
//! ToR peers, static node-mesh peers, and the node's PodCIDR advertised.

use crate::config::{node_asn, parse_family, Config, PeerEntry, DEFAULT_MAX_PREFIX};
use novanet_bgp::policy::{LocalPrefixes, PeerPolicy};
use novanet_bgp::speaker::{PeerConfig, PeerRole, Speaker, SpeakerConfig};
use novanet_bgp::wire::{Origin, PathAttributes};
use std::sync::Arc;
use std::time::Duration;

/// Multihop TTL used for node-mesh peers, which are often routed through
/// the ToRs rather than on one segment.
pub const MESH_MULTIHOP: u8 = 255;

/// Speaker settings from the configuration.
pub fn speaker_config(cfg: &Config) -> anyhow::Result<SpeakerConfig> {
    Ok(SpeakerConfig {
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

/// Starts the speaker, configures every peer and advertises the PodCIDRs.
pub async fn start(cfg: &Config) -> anyhow::Result<Speaker> {
    let sc = speaker_config(cfg)?;
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
    for p in &cfg.routing.peers {
        if p.bfd_enabled {
            tracing::warn!(peer = %p.neighbor_address, "bfd_enabled is set but this build has no BFD: the session runs on hold timers alone");
        }
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
    Ok(speaker)
}

/// Applies a changed configuration to the running speaker (SIGHUP):
/// PodCIDRs advertised or withdrawn, peers added or removed, a peer whose
/// only change is its policies kept up (route refresh in, export
/// difference out), any other peer change resets that peer alone.
pub async fn reload(speaker: &Speaker, old: &Config, new: &Config) -> anyhow::Result<()> {
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
                        let strip = |e: &PeerEntry| PeerEntry {
                            import: String::new(),
                            export: String::new(),
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
