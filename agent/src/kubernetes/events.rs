//! Kubernetes Events on this node's Node: BGP sessions up and down, BFD
//! sessions down, max-prefix teardowns and per-node AS collisions, taken
//! from the agent's own event bus, and the node's lifecycle (drains, what
//! a SIGTERM does), as `events.k8s.io/v1` Events.
//!
//! Repeats of one event (reason and subject) are folded by kube's
//! `Recorder` into an event series (one object, a count). On top, [`EventGate`] limits what a
//! flapping peer can send: one event per (reason, peer) every
//! [`PER_KEY_INTERVAL`], and at most [`BURST`] events at once refilled at
//! one per [`REFILL`] over all keys; what is held back is counted and
//! named in the next event of that key.

use crate::control::Control;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use novanet_proto::api::{EventType as RouteEventType, RouteEvent};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Shortest time between two events of one (reason, peer).
pub const PER_KEY_INTERVAL: Duration = Duration::from_secs(30);
/// Events that may go out at once.
pub const BURST: u32 = 20;
/// One more event may go out per this interval once the burst is spent.
pub const REFILL: Duration = Duration::from_secs(3);
/// Keys remembered (older ones are forgotten first).
const MAX_KEYS: usize = 4096;

/// A Kubernetes Event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    pub warning: bool,
    /// PascalCase reason (`BGPSessionUp`, ...).
    pub reason: &'static str,
    /// What it concerns, for rate limiting (a peer address, an AS).
    pub subject: String,
    pub note: String,
}

/// The Kubernetes Event for a RouteControl event, if it is one operators
/// should see on the Node.
pub fn node_event(e: &RouteEvent) -> Option<NodeEvent> {
    let meta = |k: &str| e.metadata.get(k).cloned().unwrap_or_default();
    let kind = RouteEventType::try_from(e.r#type).ok()?;
    let (warning, reason, subject) = match kind {
        RouteEventType::PeerUp => (false, "BGPSessionUp", meta("peer")),
        RouteEventType::PeerDown if meta("reason").contains("maximum prefixes") => {
            (true, "MaxPrefixExceeded", meta("peer"))
        }
        RouteEventType::PeerDown if meta("state") != "failed" => (true, "BGPSessionDown", meta("peer")),
        RouteEventType::BfdDown if meta("state") != "failed" => (true, "BFDSessionDown", meta("peer")),
        RouteEventType::PolicyViolation if meta("reason") == "asn_collision" => (true, "ASNCollision", meta("asn")),
        _ => return None,
    };
    let mut note = e.detail.clone();
    let why = meta("reason");
    if !why.is_empty() && reason != "ASNCollision" {
        note = format!("{note} ({why})");
    }
    Some(NodeEvent {
        warning,
        reason,
        subject,
        note,
    })
}

/// What the gate decides for one event.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Send it; this many of the key were held back before it.
    Send {
        held_back: u32,
    },
    Hold,
}

/// Rate limiting per key and overall.
pub struct EventGate {
    keys: HashMap<(&'static str, String), (Instant, u32)>,
    tokens: f64,
    refilled: Instant,
}

impl EventGate {
    pub fn new(now: Instant) -> Self {
        EventGate {
            keys: HashMap::new(),
            tokens: BURST as f64,
            refilled: now,
        }
    }

    pub fn admit(&mut self, e: &NodeEvent, now: Instant) -> Admit {
        let elapsed = now.saturating_duration_since(self.refilled);
        self.tokens = (self.tokens + elapsed.as_secs_f64() / REFILL.as_secs_f64()).min(BURST as f64);
        self.refilled = now;
        let key = (e.reason, e.subject.clone());
        let recent = self
            .keys
            .get(&key)
            .is_some_and(|(sent, _)| now.saturating_duration_since(*sent) < PER_KEY_INTERVAL);
        if recent || self.tokens < 1.0 {
            let entry = self.keys.entry(key).or_insert((now - PER_KEY_INTERVAL, 0));
            entry.1 += 1;
            return Admit::Hold;
        }
        self.tokens -= 1.0;
        if self.keys.len() >= MAX_KEYS && !self.keys.contains_key(&key) {
            if let Some(oldest) = self.keys.iter().min_by_key(|(_, (t, _))| *t).map(|(k, _)| k.clone()) {
                self.keys.remove(&oldest);
            }
        }
        let held_back = self.keys.insert(key, (now, 0)).map_or(0, |(_, n)| n);
        Admit::Send { held_back }
    }
}

/// The next lifecycle announcement; never, without any.
async fn recv_announcement(
    announcements: &mut Option<tokio::sync::mpsc::UnboundedReceiver<crate::lifecycle::Announced>>,
) -> Option<crate::lifecycle::Announced> {
    match announcements {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Publishes the agent's events and its lifecycle announcements on its
/// Node until the agent stops.
pub fn spawn(
    client: kube::Client,
    node: &super::nodes::ClusterNode,
    control: Control,
    mut announcements: Option<tokio::sync::mpsc::UnboundedReceiver<crate::lifecycle::Announced>>,
) {
    let reporter = Reporter {
        controller: "novanet-agent".into(),
        instance: Some(node.name.clone()),
    };
    let recorder = Recorder::new(client, reporter);
    let regarding = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(node.name.clone()),
        uid: node.uid.clone(),
        ..Default::default()
    };
    let Ok(mut rx) = control.events.subscribe("", &[]) else {
        return;
    };
    tokio::spawn(async move {
        let mut gate = EventGate::new(Instant::now());
        loop {
            let e = tokio::select! {
                e = rx.recv() => e,
                Some((a, done)) = recv_announcement(&mut announcements) => {
                    // Lifecycle steps are rare and asked for: never held back.
                    let event = Event {
                        type_: if a.warning { EventType::Warning } else { EventType::Normal },
                        reason: a.reason.into(),
                        note: Some(truncate(a.note, 1024)),
                        action: "Lifecycle".into(),
                        secondary: None,
                    };
                    if let Err(err) = recorder.publish(&event, &regarding).await {
                        tracing::warn!(error = %err, reason = a.reason, "Kubernetes Event not published");
                    }
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    continue;
                }
            };
            let Some(e) = e else { break };
            let Some(ev) = node_event(&e) else { continue };
            let note = match gate.admit(&ev, Instant::now()) {
                Admit::Hold => continue,
                Admit::Send { held_back: 0 } => ev.note.clone(),
                Admit::Send { held_back } => format!("{} ({held_back} more held back)", ev.note),
            };
            let event = Event {
                type_: if ev.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: ev.reason.into(),
                note: Some(truncate(note, 1024)),
                action: action(&ev),
                secondary: None,
            };
            if let Err(err) = recorder.publish(&event, &regarding).await {
                tracing::warn!(error = %err, reason = ev.reason, "Kubernetes Event not published");
            }
        }
    });
}

/// The Event's action names what it concerns (`Peer 10.0.0.1`, `AS
/// 65011`): kube's Recorder folds repeats of one (reason, action) into a
/// series, so each peer gets its own series, not one shared by all peers.
fn action(e: &NodeEvent) -> String {
    let what = if e.reason == "ASNCollision" { "AS" } else { "Peer" };
    truncate(format!("{what} {}", e.subject), 128)
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_event(kind: RouteEventType, detail: &str, meta: &[(&str, &str)]) -> RouteEvent {
        RouteEvent {
            r#type: kind as i32,
            detail: detail.into(),
            timestamp_unix: 0,
            owner: "_config".into(),
            metadata: meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn route_events_become_node_events_with_a_reason() {
        let up = route_event(
            RouteEventType::PeerUp,
            "BGP session with 10.0.0.1: OpenConfirm -> Established",
            &[("peer", "10.0.0.1")],
        );
        assert_eq!(node_event(&up).unwrap().reason, "BGPSessionUp");
        let down = route_event(
            RouteEventType::PeerDown,
            "BGP session with 10.0.0.1: Established -> Idle",
            &[
                ("peer", "10.0.0.1"),
                ("reason", "sent notification: cease: maximum prefixes reached (6/1)"),
            ],
        );
        let e = node_event(&down).unwrap();
        assert_eq!((e.reason, e.warning), ("MaxPrefixExceeded", true));
        assert!(e.note.contains("maximum prefixes"));
        let bfd = route_event(RouteEventType::BfdDown, "BFD down", &[("peer", "10.0.0.1")]);
        assert_eq!(node_event(&bfd).unwrap().reason, "BFDSessionDown");
        let asn = route_event(
            RouteEventType::PolicyViolation,
            "AS 65011 collides",
            &[("reason", "asn_collision"), ("asn", "65011")],
        );
        assert_eq!(node_event(&asn).unwrap().subject, "65011");
        assert_eq!(action(&node_event(&asn).unwrap()), "AS 65011");
        // Each peer its own series: the Recorder folds by (reason, action).
        let other = route_event(RouteEventType::PeerUp, "", &[("peer", "10.0.0.2")]);
        assert_ne!(action(&node_event(&up).unwrap()), action(&node_event(&other).unwrap()));
        // Intent apply failures and other events stay off the Node.
        let failed = route_event(
            RouteEventType::PeerDown,
            "peer:10.0.0.9 not applied",
            &[("state", "failed")],
        );
        assert!(node_event(&failed).is_none());
        assert!(node_event(&route_event(RouteEventType::PrefixAdvertised, "", &[])).is_none());
    }

    #[test]
    fn a_flapping_peer_sends_one_event_per_interval_and_says_how_many_were_held() {
        let t0 = Instant::now();
        let mut gate = EventGate::new(t0);
        let flap = NodeEvent {
            warning: true,
            reason: "BGPSessionDown",
            subject: "10.0.0.1".into(),
            note: String::new(),
        };
        assert_eq!(gate.admit(&flap, t0), Admit::Send { held_back: 0 });
        for i in 1..=9 {
            assert_eq!(gate.admit(&flap, t0 + Duration::from_secs(i)), Admit::Hold);
        }
        let other = NodeEvent {
            subject: "10.0.0.2".into(),
            ..flap.clone()
        };
        assert_eq!(
            gate.admit(&other, t0 + Duration::from_secs(10)),
            Admit::Send { held_back: 0 }
        );
        assert_eq!(gate.admit(&flap, t0 + PER_KEY_INTERVAL), Admit::Send { held_back: 9 });
    }

    #[test]
    fn many_peers_at_once_are_capped_by_the_burst() {
        let t0 = Instant::now();
        let mut gate = EventGate::new(t0);
        let sent = (0..100)
            .filter(|i| {
                let e = NodeEvent {
                    warning: true,
                    reason: "BGPSessionDown",
                    subject: format!("10.0.1.{i}"),
                    note: String::new(),
                };
                gate.admit(&e, t0) != Admit::Hold
            })
            .count();
        assert_eq!(sent, BURST as usize);
        // Refilled over time.
        let later = NodeEvent {
            warning: true,
            reason: "BGPSessionDown",
            subject: "10.0.2.1".into(),
            note: String::new(),
        };
        assert_eq!(gate.admit(&later, t0 + REFILL), Admit::Send { held_back: 0 });
    }
}
