//! Where events come from: the speaker (sessions up and down, prefixes
//! actually written to peers) and BFD (sessions up and down), turned into
//! RouteControl events with their owner.

use super::Control;
use ipnet::IpNet;
use novanet_bfd::packet::State as BfdState;
use novanet_bgp::fsm::State;
use novanet_bgp::speaker::SpeakerEvent;
use novanet_proto::api::{EventType, Protocol};
use std::collections::HashMap;
use std::net::IpAddr;
use tokio::sync::broadcast::error::RecvError;

/// The owner of a peer: the API owner holding it, else the configuration.
fn peer_owner(control: &Control, addr: &IpAddr) -> String {
    let intents = control.intents.lock().expect("intents");
    intents
        .owners
        .iter()
        .find(|(_, i)| i.peers.contains_key(addr) || i.bfd.contains_key(addr))
        .map(|(o, _)| o.clone())
        .unwrap_or_else(|| "_config".into())
}

fn prefix_owner(control: &Control, prefix: &IpNet) -> String {
    let intents = control.intents.lock().expect("intents");
    intents
        .effective_prefixes()
        .get(&(Protocol::Bgp, *prefix))
        .map(|(o, _)| o.clone())
        .unwrap_or_else(|| "_config".into())
}

/// Starts the event sources. `speaker` is a subscription taken before the
/// first peer was added, so no session change is missed.
pub fn spawn(control: Control, mut speaker: tokio::sync::broadcast::Receiver<SpeakerEvent>) {
    let c = control.clone();
    tokio::spawn(async move {
        // Last state published per local prefix (true: withdrawn), and its
        // owner (kept for the withdrawal, when the intent is gone).
        let mut published: HashMap<IpNet, (bool, String)> = HashMap::new();
        loop {
            match speaker.recv().await {
                Ok(SpeakerEvent::PeerState {
                    address,
                    from,
                    to,
                    reason,
                }) => {
                    let kind = if to == State::Established {
                        EventType::PeerUp
                    } else if from == State::Established {
                        EventType::PeerDown
                    } else {
                        continue;
                    };
                    c.events.publish(
                        kind,
                        &peer_owner(&c, &address),
                        format!("BGP session with {address}: {from} -> {to}"),
                        &[
                            ("peer", address.to_string()),
                            ("state", to.name().into()),
                            ("previous_state", from.name().into()),
                            ("reason", reason.map(|r| r.to_string()).unwrap_or_default()),
                        ],
                    );
                }
                Ok(SpeakerEvent::LocalPrefixSent {
                    prefix,
                    peer,
                    withdrawn,
                }) => {
                    if published.get(&prefix).is_some_and(|(w, _)| *w == withdrawn) {
                        continue;
                    }
                    let owner = match (withdrawn, published.get(&prefix)) {
                        (true, Some((_, o))) => o.clone(),
                        _ => prefix_owner(&c, &prefix),
                    };
                    let (kind, verb) = if withdrawn {
                        (EventType::PrefixWithdrawn, "withdrawn")
                    } else {
                        (EventType::PrefixAdvertised, "advertised")
                    };
                    c.events.publish(
                        kind,
                        &owner,
                        format!("prefix {prefix} {verb} (UPDATE sent to {peer})"),
                        &[
                            ("prefix", prefix.to_string()),
                            ("protocol", "bgp".into()),
                            ("peer", peer.to_string()),
                        ],
                    );
                    published.insert(prefix, (withdrawn, owner));
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    });
    let c = control.clone();
    let mut bfd = control.bfd.subscribe();
    tokio::spawn(async move {
        loop {
            match bfd.recv().await {
                Ok(ev) => {
                    let kind = if ev.to == BfdState::Up {
                        EventType::BfdUp
                    } else if ev.from == BfdState::Up {
                        EventType::BfdDown
                    } else {
                        continue;
                    };
                    let peer = ev.key.peer;
                    c.events.publish(
                        kind,
                        &peer_owner(&c, &peer),
                        format!("BFD session with {peer}: {} -> {}", ev.from.name(), ev.to.name()),
                        &[
                            ("peer", peer.to_string()),
                            ("status", ev.to.name().to_ascii_lowercase()),
                            ("previous_status", ev.from.name().to_ascii_lowercase()),
                        ],
                    );
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    });
}

/// Takes the OSPF task's reports: outcomes become apply states of their
/// intents (recorded once per change), events go on the bus.
pub fn follow_ospf(control: Control, mut reports: tokio::sync::mpsc::UnboundedReceiver<crate::ospf::requests::Report>) {
    use crate::ospf::requests::{Outcome, Report};
    tokio::spawn(async move {
        while let Some(r) = reports.recv().await {
            match r {
                Report::Outcome(item, outcome) => {
                    let key = super::reconciler::ospf_intent_key(&item);
                    // Only intents still held: a withdrawn one has left the log.
                    let held = control
                        .intents
                        .lock()
                        .expect("intents")
                        .owners
                        .values()
                        .any(|i| key.held_by(i));
                    if !held {
                        continue;
                    }
                    let state = match outcome {
                        Outcome::Applied => super::ApplyState::Applied,
                        Outcome::Pending => super::ApplyState::Pending,
                        Outcome::Failed(e) => super::ApplyState::Failed(e),
                    };
                    super::reconciler::record(&control, key, state);
                }
                Report::Event {
                    kind,
                    owner,
                    detail,
                    metadata,
                } => control.events.publish(kind, &owner, detail, &metadata),
            }
        }
    });
}
