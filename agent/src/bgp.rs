//! The BGP bootstrap: the kernel FIB writer started, the speaker started
//! with the node's local AS and router id and the FIB as its route sink,
//! the PodCIDRs advertised, the BFD engine and the peer pipeline
//! ([`crate::peers`]) started with the configuration's peers, and a
//! restart with forwarding state kept finished once the peers have
//! re-sent their tables. [`reload`] applies a changed configuration.

use crate::config::Config;
use crate::peers::Peers;
use novanet_bgp::policy::LocalPrefixes;
use novanet_bgp::speaker::{Speaker, SpeakerConfig, SpeakerEvent};
use novanet_bgp::wire::{Origin, PathAttributes};
use novanet_fib::{Fib, FibInput};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

/// The running routing manager: the speaker and, when enabled, the FIB
/// and BFD.
pub struct Routing {
    pub speaker: Speaker,
    pub fib: Option<Fib>,
    pub bfd: novanet_bfd::transport::Bfd,
    /// The peer pipeline, where every source publishes its peers.
    pub peers: Peers,
    /// Speaker events from before the first peer was added (for the event
    /// sources, which start later).
    pub events: tokio::sync::broadcast::Receiver<SpeakerEvent>,
    /// Unnumbered links other sources ask for, and the neighbors found.
    pub links: crate::unnumbered::Links,
}

/// How often the FIB compares itself with the kernel.
pub const FIB_RECONCILE_EVERY: Duration = Duration::from_secs(30);

/// Starts the FIB writer (when enabled) and the speaker, configures every
/// peer and advertises the PodCIDRs.
pub async fn start(config: &crate::config::ConfigRx) -> anyhow::Result<Routing> {
    let running = config.borrow().clone();
    let cfg: &Config = &running;
    let mut sc = speaker_config(cfg)?;
    let scopes = novanet_fib::LinkLocalScopes::default();
    let fib = if cfg.routing.fib.enabled {
        let fib = Fib::start(
            FIB_RECONCILE_EVERY,
            cfg.routing.fib.nexthop_objects,
            cfg.turns_nexthop_compat_off(),
            scopes.clone(),
        )
        .map_err(|e| anyhow::anyhow!("kernel FIB (routing.fib): {e}"))?;
        sc.route_sink = Some(fib.route_sink());
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
    let bfd = crate::bfd::start(&speaker).await?;
    // In the OSPF mode the PodCIDR goes into OSPF instead (crate::ospf).
    for pod_cidr in cfg.pod_cidrs().into_iter().filter(|_| !cfg.ospf_mode()) {
        let attrs = PathAttributes {
            origin: Origin::Igp,
            ..Default::default()
        };
        speaker.originate(pod_cidr, attrs).await?;
        tracing::info!(prefix = %pod_cidr, "PodCIDR advertised");
    }
    let peers = crate::peers::spawn(speaker.clone(), bfd.clone(), crate::peers::spec::from_config(cfg));
    let links = crate::unnumbered::spawn(
        config.clone(),
        fib.is_some().then_some(scopes),
        peers.sources.unnumbered.clone(),
    );
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
        events,
        links,
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

/// Follows the running configuration: each new one is applied to the
/// speaker ([`reload`]).
pub fn follow_config(routing: &Routing, mut config: crate::config::ConfigRx) {
    let speaker = routing.speaker.clone();
    let peers = routing.peers.sources.config.clone();
    let mut old = config.borrow_and_update().clone();
    tokio::spawn(async move {
        while config.changed().await.is_ok() {
            let new = config.borrow_and_update().clone();
            match reload(&speaker, &peers, &old, &new).await {
                Ok(()) => tracing::info!("BGP: configuration applied"),
                Err(e) => tracing::error!(error = %e, "BGP: configuration reload incomplete"),
            }
            old = new;
        }
    });
}

/// Applies a changed configuration to the running speaker: local AS and
/// router id, PodCIDRs advertised or withdrawn, and the new set of
/// configuration peers handed to the peer pipeline (a peer whose only
/// change is its policies stays up, a BFD change leaves BGP alone, any
/// other change resets that peer alone).
pub async fn reload(
    speaker: &Speaker,
    peers: &tokio::sync::watch::Sender<Vec<crate::peers::PeerSpec>>,
    old: &Config,
    new: &Config,
) -> anyhow::Result<()> {
    let (local_as, router_id) = (new.local_as()?, new.router_id()?);
    if old.local_as()? != local_as || old.router_id()? != router_id {
        // Applied first, so the sessions of the peers below start with
        // the new settings.
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
    peers.send_replace(crate::peers::spec::from_config(new));
    Ok(())
}
