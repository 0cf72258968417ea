//! The reconciler: desired (intents) against applied, with full equality,
//! on every trigger and every 30 s. Peers and prefixes go to the speaker,
//! BFD intents to the BFD engine; what fails stays un-applied, is retried,
//! and is visible in GetStatus and as an apply error.

use super::{bfd_key, ospf_key, peer_key, prefix_key, ApplyState, Control, IntentKey};
use crate::config::parse_family;
use ipnet::IpNet;
use novanet_bfd::session::SessionConfig;
use novanet_bfd::transport::{SessionKey, SessionSpec};
use novanet_bgp::policy::parse_community;
use novanet_bgp::speaker::{PeerConfig, PeerRole};
use novanet_bgp::wire::{Family, Origin, PathAttributes};
use novanet_proto::api::{AddressFamily, BgpPeer, EventType, Protocol};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// How often the reconciler runs without a trigger.
pub const PERIOD: Duration = Duration::from_secs(30);

/// The speaker's view of an API peer; `enforce_max_prefix`: its limit
/// closes the session (the owner's `enforce_peer_max_prefix`).
pub fn peer_config(p: &BgpPeer, enforce_max_prefix: bool) -> Result<PeerConfig, String> {
    let addr: IpAddr = p
        .neighbor_address
        .parse()
        .map_err(|_| "neighbor_address is not an IP address".to_string())?;
    let mut pc = PeerConfig::new(addr, p.remote_as);
    pc.role = PeerRole::Api;
    pc.description = p.description.clone();
    if p.hold_time != 0 {
        pc.hold_time = p.hold_time.min(u16::MAX as u32) as u16;
    }
    if p.keepalive != 0 {
        pc.keepalive = Some(p.keepalive.min(u16::MAX as u32) as u16);
    }
    pc.source_address = (!p.source_address.is_empty())
        .then(|| p.source_address.parse())
        .transpose()
        .map_err(|_| "source_address is not an IP address".to_string())?;
    pc.ebgp_multihop = p.ebgp_multihop.min(255) as u8;
    pc.password = (!p.password.is_empty()).then(|| p.password.clone());
    let families: Vec<Family> = p
        .address_families
        .iter()
        .filter_map(|f| match AddressFamily::try_from(*f) {
            Ok(AddressFamily::Ipv4Unicast) => parse_family("ipv4-unicast"),
            Ok(AddressFamily::Ipv6Unicast) => parse_family("ipv6-unicast"),
            _ => None,
        })
        .collect();
    if !families.is_empty() {
        pc.families = families;
    }
    pc.max_prefix = p.max_prefix;
    pc.max_prefix_warning_only = !enforce_max_prefix;
    Ok(pc)
}

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
    /// API peers, BGP and BFD, through the same applier as every other
    /// source of peers.
    peers: crate::peers::PeerApplier,
    prefixes: HashMap<(i32, IpNet), super::intents::PrefixIntent>,
    /// Standalone BFD sessions (EnableBFD).
    standalone: HashMap<IpAddr, (u32, u32, u32)>,
}

/// The BFD session an API peer asks for: its timers, 0 meaning the
/// node's configured BFD defaults.
fn peer_bfd(control: &Control, p: &BgpPeer, pc: &PeerConfig) -> Option<SessionSpec> {
    p.bfd_enabled.then(|| {
        crate::liveness::session_spec(
            pc,
            control.bfd_defaults,
            (p.bfd_min_rx_ms, p.bfd_min_tx_ms, p.bfd_detect_multiplier),
        )
    })
}

/// Runs the reconciler until the control plane stops.
pub async fn run(control: Control) {
    let mut applied = Applied::default();
    loop {
        let timer = control.reconcile_seconds.start_timer();
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
    let mut desired = std::collections::BTreeMap::new();
    for (addr, (owner, p)) in &desired_peers {
        match peer_config(p, control.owners.enforces_peer_max_prefix(owner)) {
            Ok(pc) => {
                let bfd = peer_bfd(control, p, &pc);
                desired.insert(*addr, crate::peers::PeerSpec { bgp: pc, bfd });
            }
            Err(e) => record(control, peer_key(addr), ApplyState::Failed(e)),
        }
    }
    let before: Vec<IpAddr> = applied.peers.applied().copied().collect();
    let failed = applied.peers.apply(&control.speaker, &control.bfd, &desired).await;
    for addr in before.iter().filter(|a| !desired_peers.contains_key(a)) {
        control.applied.lock().expect("applied").remove(&peer_key(addr));
    }
    for addr in desired.keys() {
        match failed.get(addr) {
            Some(e) => record(control, peer_key(addr), ApplyState::Failed(e.clone())),
            None => record(control, peer_key(addr), ApplyState::Applied),
        }
    }

    // Prefixes.
    let desired = intents.effective_prefixes();
    let gone: Vec<(i32, IpNet)> = applied
        .prefixes
        .keys()
        .filter(|k| !desired.contains_key(k))
        .copied()
        .collect();
    for k in gone {
        applied.prefixes.remove(&k);
        if k.0 == Protocol::Bgp as i32 {
            let _ = control.speaker.withdraw(k.1).await;
        }
        control.applied.lock().expect("applied").remove(&prefix_key(k.0, &k.1));
    }
    for (k, (_, p)) in &desired {
        if applied.prefixes.get(k) == Some(p) {
            continue;
        }
        let key = prefix_key(k.0, &k.1);
        if k.0 == Protocol::Ospf as i32 {
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
        applied.standalone.remove(&addr);
        if !applied.peers.has_bfd(&addr) {
            control.bfd.remove(SessionKey {
                peer: addr,
                multihop: false,
            });
        }
        control.applied.lock().expect("applied").remove(&bfd_key(&addr));
    }
    for (addr, b) in &desired_bfd {
        let want = (b.min_rx_ms, b.min_tx_ms, b.detect_multiplier);
        if applied.standalone.get(addr) == Some(&want) {
            continue;
        }
        let r = control
            .bfd
            .add(SessionSpec {
                key: SessionKey {
                    peer: *addr,
                    multihop: false,
                },
                local: None,
                config: SessionConfig {
                    desired_min_tx: Duration::from_millis(b.min_tx_ms as u64),
                    required_min_rx: Duration::from_millis(b.min_rx_ms as u64),
                    detect_mult: b.detect_multiplier.clamp(1, 255) as u8,
                    passive: false,
                    auth: None,
                },
            })
            .await;
        match r {
            Ok(()) => {
                applied.standalone.insert(*addr, want);
                record(control, bfd_key(addr), ApplyState::Applied);
            }
            Err(e) => record(control, bfd_key(addr), ApplyState::Failed(e.to_string())),
        }
    }

    // OSPF interfaces and prefixes: the OSPF task applies them.
    match control.ospf.get() {
        Some(ospf) => ospf.apply_soon(),
        None => {
            let why = "OSPF is off: it needs routing.protocol \"ospf\" and the ospfd sidecar";
            for i in intents.owners.values() {
                for iface in i.ospf.keys() {
                    record(control, ospf_key(iface), ApplyState::Failed(why.into()));
                }
            }
            for k in desired.keys().filter(|k| k.0 == Protocol::Ospf as i32) {
                record(control, prefix_key(k.0, &k.1), ApplyState::Failed(why.into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_peer_s_limit_closes_the_session_only_when_its_owner_enforces_it() {
        let p = BgpPeer {
            neighbor_address: "10.0.0.1".into(),
            remote_as: 65000,
            max_prefix: 50,
            ..Default::default()
        };
        let warned = peer_config(&p, false).unwrap();
        assert_eq!((warned.max_prefix, warned.max_prefix_warning_only), (50, true));
        let enforced = peer_config(&p, true).unwrap();
        assert_eq!((enforced.max_prefix, enforced.max_prefix_warning_only), (50, false));
    }
}
