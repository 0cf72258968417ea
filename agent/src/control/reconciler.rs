//! The reconciler: desired (intents) against applied, with full equality,
//! on every trigger and every 30 s. Peers go to the peer pipeline as its
//! API source (its outcomes come back through [`follow_peer_outcomes`]),
//! prefixes to the speaker, BFD intents to the BFD engine; what fails stays
//! un-applied, is retried, and is visible in GetStatus and as an apply
//! error.

use super::{bfd_key, ospf_key, peer_key, prefix_key, ApplyState, Control, IntentKey};
use crate::ospf::requests::{InterfaceWanted, Item, PrefixWanted, Requests};
use crate::peers::spec::{self, BfdTimers};
use crate::peers::{Outcome, Source};
use ipnet::IpNet;
use novanet_bfd::transport::SessionSpec;
use novanet_bgp::policy::parse_community;
use novanet_bgp::wire::{Origin, PathAttributes};
use novanet_proto::api::{BgpPeer, EventType, Protocol};
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Duration;

/// How often the reconciler runs without a trigger.
pub const PERIOD: Duration = Duration::from_secs(30);

/// The attributes a prefix intent asks for.
pub fn prefix_attributes(i: &super::intents::PrefixIntent) -> PathAttributes {
    let mut a = PathAttributes {
        origin: Origin::Igp,
        ..Default::default()
    };
    if let Some(attrs) = &i.attributes {
        if attrs.local_preference != 0 {
            a.local_pref = Some(attrs.local_preference);
        }
        if attrs.med != 0 {
            a.med = Some(attrs.med);
        }
        a.communities = attrs.communities.iter().filter_map(|c| parse_community(c)).collect();
        a.next_hop = attrs.next_hop.parse().ok();
    }
    a
}

/// What has been applied, to diff against.
#[derive(Default)]
pub struct Applied {
    /// Addresses of the API peers handed to the peer pipeline (whose
    /// outcomes [`follow_peer_outcomes`] records).
    peers: BTreeSet<IpAddr>,
    prefixes: HashMap<(Protocol, IpNet), super::intents::PrefixIntent>,
    /// Standalone BFD sessions (EnableBFD).
    standalone: HashMap<IpAddr, SessionSpec>,
    /// The generation of the last ConfigureBGP applied.
    bgp: u64,
}

/// Runs the reconciler until the control plane stops.
pub async fn run(control: Control) {
    let mut applied = Applied::default();
    loop {
        let timer = control.metrics.reconcile_seconds.start_timer();
        reconcile(&control, &mut applied).await;
        timer.observe_duration();
        tokio::select! {
            _ = control.trigger.notified() => {}
            _ = tokio::time::sleep(PERIOD) => {}
        }
        if control.stopping.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
    }
}

/// Records an apply outcome. A new failure is logged and published as an
/// event of the intent's kind (PEER_DOWN, PREFIX_WITHDRAWN, BFD_DOWN,
/// OSPF_NEIGHBOR_DOWN) with `state=failed` and the error, once per change.
pub fn record(control: &Control, key: IntentKey, state: ApplyState) {
    let previous = control
        .applied
        .lock()
        .expect("applied")
        .insert(key.clone(), state.clone());
    if previous.as_ref() == Some(&state) {
        // Recorded once per change: no event, no count for a repeat.
        return;
    }
    if let ApplyState::Failed(e) = &state {
        tracing::warn!(intent = %key, error = %e, "intent not applied");
        let kind = match key {
            IntentKey::Peer(_) => EventType::PeerDown,
            IntentKey::Prefix(..) => EventType::PrefixWithdrawn,
            IntentKey::Bfd(_) => EventType::BfdDown,
            IntentKey::Ospf(_) => EventType::OspfNeighborDown,
        };
        let owner = owner_of(control, &key);
        control.events.publish(
            kind,
            &owner,
            format!("{key} not applied: {e}"),
            &[
                ("intent", key.to_string()),
                ("state", "failed".into()),
                ("error", e.clone()),
            ],
        );
    } else if state == ApplyState::Applied {
        let owner = owner_of(control, &key);
        control.count_intent(&owner, key.kind(), "apply");
    }
}

/// The owner of an intent key.
fn owner_of(control: &Control, key: &IntentKey) -> String {
    let intents = control.intents.lock().expect("intents");
    intents
        .owners
        .iter()
        .find(|(_, i)| key.held_by(i))
        .map(|(owner, _)| owner.clone())
        .unwrap_or_default()
}

/// One cycle.
pub async fn reconcile(control: &Control, applied: &mut Applied) {
    let intents = control.intents.lock().expect("intents").clone();

    // ConfigureBGP: each call once, before the peers (their sessions then
    // open with the new settings).
    if let Some(b) = intents.bgp.as_ref().filter(|b| b.generation != applied.bgp) {
        let running = control.speaker.config();
        if running.local_as != b.local_as || running.router_id != b.router_id {
            match control.speaker.reconfigure(b.local_as, b.router_id).await {
                Ok(()) => {
                    tracing::info!(local_as = b.local_as, router_id = %b.router_id, owner = %b.owner, "ConfigureBGP applied: sessions restarted")
                }
                Err(e) => tracing::error!(error = %e, "ConfigureBGP not applied"),
            }
        }
        applied.bgp = b.generation;
    }

    // Peers: the first owner of an address wins; others are refused.
    let mut desired_peers: HashMap<IpAddr, (String, BgpPeer)> = HashMap::new();
    for (owner, i) in &intents.owners {
        for (addr, p) in &i.peers {
            match desired_peers.get(addr) {
                Some((first, _)) => record(
                    control,
                    peer_key(addr),
                    ApplyState::Failed(format!("peer {addr} is already held by owner {first}")),
                ),
                None => {
                    desired_peers.insert(*addr, (owner.clone(), p.clone()));
                }
            }
        }
    }
    let bfd_defaults = control.bfd_defaults();
    let mut specs = Vec::new();
    for (addr, (owner, p)) in &desired_peers {
        // Checked at the RPC, and again here: a reload may have narrowed
        // the owner's grants since.
        let terms = control
            .owners()
            .peer_terms(owner, *addr, p.remote_as, p.max_prefix)
            .map_err(|r| match r {
                super::owners::Refusal::Unauthenticated(m) | super::owners::Refusal::PermissionDenied(m) => m,
            });
        match terms.and_then(|t| spec::api(p, t, bfd_defaults)) {
            Ok(s) => specs.push(s),
            Err(e) => record(control, peer_key(addr), ApplyState::Failed(e)),
        }
    }
    for addr in applied.peers.iter().filter(|a| !desired_peers.contains_key(a)) {
        control.applied.lock().expect("applied").remove(&peer_key(addr));
    }
    applied.peers = desired_peers.keys().copied().collect();
    crate::published::publish(&control.peers.sources.api, specs);

    // Prefixes.
    let desired = intents.effective_prefixes();
    let gone: Vec<(Protocol, IpNet)> = applied
        .prefixes
        .keys()
        .filter(|k| !desired.contains_key(k))
        .copied()
        .collect();
    for k in gone {
        applied.prefixes.remove(&k);
        if k.0 == Protocol::Bgp {
            let _ = control.speaker.withdraw(k.1).await;
        }
        control.applied.lock().expect("applied").remove(&prefix_key(k.0, &k.1));
    }
    for (k, (_, p)) in &desired {
        if applied.prefixes.get(k) == Some(p) {
            continue;
        }
        let key = prefix_key(k.0, &k.1);
        if k.0 == Protocol::Ospf {
            // The OSPF task's (below).
            continue;
        }
        match control.speaker.originate(k.1, prefix_attributes(p)).await {
            Ok(()) => {
                applied.prefixes.insert(*k, p.clone());
                record(control, key, ApplyState::Applied);
            }
            Err(e) => record(control, key, ApplyState::Failed(e.to_string())),
        }
    }

    // Standalone BFD sessions.
    let mut desired_bfd: HashMap<IpAddr, super::intents::BfdIntent> = HashMap::new();
    for i in intents.owners.values() {
        for (addr, b) in &i.bfd {
            desired_bfd.entry(*addr).or_insert_with(|| b.clone());
        }
    }
    let gone: Vec<IpAddr> = applied
        .standalone
        .keys()
        .filter(|a| !desired_bfd.contains_key(a))
        .copied()
        .collect();
    for addr in gone {
        if let Some(session) = applied.standalone.remove(&addr) {
            // A peer's session at the same address is the pipeline's.
            if !control.peers.outcomes.borrow().bfd.contains(&addr) {
                control.bfd.remove(session.key);
            }
        }
        control.applied.lock().expect("applied").remove(&bfd_key(&addr));
    }
    let peer_sessions = control.peers.outcomes.borrow().bfd.clone();
    for (addr, b) in &desired_bfd {
        if peer_sessions.contains(addr) {
            // A peer came to hold the address after the intent was
            // stored: its session keeps the peer's timers.
            if applied.standalone.remove(addr).is_some() {
                tracing::info!(peer = %addr, "standalone BFD session given up to a BGP peer's");
            }
            record(
                control,
                bfd_key(addr),
                ApplyState::Failed(format!(
                    "{addr} has the BFD session of a BGP peer: its timers are the peer's"
                )),
            );
            continue;
        }
        let timers = BfdTimers {
            min_rx_ms: b.min_rx_ms,
            min_tx_ms: b.min_tx_ms,
            detect_multiplier: b.detect_multiplier,
        };
        let want = spec::standalone_bfd(*addr, timers, bfd_defaults);
        if applied.standalone.get(addr) == Some(&want) {
            continue;
        }
        match control.bfd.add(want.clone()).await {
            Ok(()) => {
                applied.standalone.insert(*addr, want);
                record(control, bfd_key(addr), ApplyState::Applied);
            }
            Err(e) => record(control, bfd_key(addr), ApplyState::Failed(e.to_string())),
        }
    }

    // OSPF interfaces and prefixes: the OSPF task applies them and reports
    // back (sources::follow_ospf).
    match &control.ospf {
        Some(ospf) => ospf.request(ospf_requests(&intents)),
        None => {
            let why = "OSPF is off: it needs routing.protocol \"ospf\" and the ospfd sidecar";
            for i in intents.owners.values() {
                for iface in i.ospf.keys() {
                    record(control, ospf_key(iface), ApplyState::Failed(why.into()));
                }
            }
            for k in desired.keys().filter(|k| k.0 == Protocol::Ospf) {
                record(control, prefix_key(k.0, &k.1), ApplyState::Failed(why.into()));
            }
        }
    }
}

/// The owners' OSPF intents as the OSPF task takes them: interfaces in
/// the order of the store (owners by name, then interfaces), prefixes as
/// the admin's override leaves them.
pub fn ospf_requests(intents: &super::intents::Intents) -> Requests {
    Requests {
        interfaces: intents
            .owners
            .iter()
            .flat_map(|(owner, i)| {
                i.ospf.values().map(move |o| InterfaceWanted {
                    owner: owner.clone(),
                    name: o.interface.clone(),
                    area: o.area.clone(),
                    passive: o.passive,
                    cost: o.cost,
                    hello: o.hello,
                    dead: o.dead,
                })
            })
            .collect(),
        prefixes: intents
            .effective_prefixes()
            .into_iter()
            .filter(|((protocol, _), _)| *protocol == Protocol::Ospf)
            .map(|((_, prefix), (owner, _))| PrefixWanted { owner, prefix })
            .collect(),
    }
}

/// The intent an OSPF request stands for.
pub fn ospf_intent_key(item: &Item) -> IntentKey {
    match item {
        Item::Interface(name) => ospf_key(name),
        Item::Prefix(p) => prefix_key(Protocol::Ospf, p),
    }
}

/// Records the peer pipeline's outcome of every API peer still wanted,
/// whenever the pipeline reports, until it stops.
pub async fn follow_peer_outcomes(control: Control) {
    let mut outcomes = control.peers.outcomes.clone();
    loop {
        let report = outcomes.borrow_and_update().clone();
        let wanted: BTreeSet<IpAddr> = {
            let intents = control.intents.lock().expect("intents");
            intents.owners.values().flat_map(|i| i.peers.keys().copied()).collect()
        };
        for ((source, addr), outcome) in &report.peers {
            if *source != Source::Api || !wanted.contains(addr) {
                continue;
            }
            let state = match outcome {
                Outcome::Applied => ApplyState::Applied,
                other => ApplyState::Failed(other.to_string()),
            };
            record(&control, peer_key(addr), state);
        }
        if outcomes.changed().await.is_err() {
            return;
        }
    }
}
