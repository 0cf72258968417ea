//! The event bus of the RouteControl API: every subscriber has a bounded
//! buffer; a full buffer drops the event for that subscriber (counted),
//! never blocking the agent.

use novanet_proto::api::{EventType, RouteEvent};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Events buffered per subscriber.
pub const SUBSCRIBER_BUFFER: usize = 256;

/// Event streams open at once (each holds up to [`SUBSCRIBER_BUFFER`]
/// events); one more is refused until one closes.
pub const MAX_SUBSCRIBERS: usize = 256;

/// Why a subscription is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("{MAX_SUBSCRIBERS} event streams are open: close one first")]
    TooMany,
}

struct Subscriber {
    owner: Option<String>,
    types: Option<Vec<EventType>>,
    tx: mpsc::Sender<RouteEvent>,
}

/// Publish/subscribe for [`RouteEvent`]s.
#[derive(Clone, Default)]
pub struct EventBus {
    subscribers: Arc<Mutex<Vec<Subscriber>>>,
    dropped: Arc<AtomicU64>,
    published: Arc<Mutex<HashMap<i32, u64>>>,
}

/// Normalises an event type filter entry: trimmed, upper-cased,
/// `EVENT_TYPE_` prefixed when missing (`peer_up`, `PEER_UP` and
/// `EVENT_TYPE_PEER_UP` are the same).
pub fn parse_event_type(s: &str) -> Option<EventType> {
    let up = s.trim().to_ascii_uppercase();
    let name = if up.starts_with("EVENT_TYPE_") {
        up
    } else {
        format!("EVENT_TYPE_{up}")
    };
    EventType::from_str_name(&name)
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl EventBus {
    /// Subscribes with an owner filter (empty: all) and type filters
    /// (empty: all). Unknown type names are an error naming them.
    pub fn subscribe(&self, owner: &str, types: &[String]) -> Result<mpsc::Receiver<RouteEvent>, SubscribeError> {
        let parsed: Result<Vec<EventType>, SubscribeError> = types
            .iter()
            .map(|t| parse_event_type(t).ok_or_else(|| SubscribeError::UnknownType(t.clone())))
            .collect();
        let parsed = parsed?;
        let mut subs = self.subscribers.lock().expect("subscribers");
        subs.retain(|s| !s.tx.is_closed());
        if subs.len() >= MAX_SUBSCRIBERS {
            return Err(SubscribeError::TooMany);
        }
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        subs.push(Subscriber {
            owner: (!owner.is_empty()).then(|| owner.to_string()),
            types: (!parsed.is_empty()).then_some(parsed),
            tx,
        });
        Ok(rx)
    }

    /// Publishes an event to every matching subscriber.
    pub fn publish(&self, kind: EventType, owner: &str, detail: impl Into<String>, metadata: &[(&str, String)]) {
        let event = RouteEvent {
            r#type: kind as i32,
            detail: detail.into(),
            timestamp_unix: now_unix(),
            owner: owner.to_string(),
            metadata: metadata.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        };
        *self.published.lock().expect("counts").entry(kind as i32).or_default() += 1;
        let mut subs = self.subscribers.lock().expect("subscribers");
        subs.retain(|s| !s.tx.is_closed());
        for s in subs.iter() {
            if s.owner.as_deref().is_some_and(|o| o != owner) {
                continue;
            }
            if s.types.as_ref().is_some_and(|t| !t.contains(&kind)) {
                continue;
            }
            if s.tx.try_send(event.clone()).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Events dropped for slow subscribers.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events published, by type.
    pub fn published(&self) -> HashMap<i32, u64> {
        self.published.lock().expect("counts").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_normalised() {
        for s in ["peer_up", "PEER_UP", " EVENT_TYPE_PEER_UP ", "Peer_Up"] {
            assert_eq!(parse_event_type(s), Some(EventType::PeerUp), "{s}");
        }
        assert_eq!(parse_event_type("nonsense"), None);
    }

    #[tokio::test]
    async fn filters_and_slow_subscribers() {
        let bus = EventBus::default();
        let mut all = bus.subscribe("", &[]).unwrap();
        let mut mine = bus.subscribe("novanet", &["prefix_advertised".into()]).unwrap();
        assert!(bus.subscribe("", &["bogus".into()]).is_err());
        bus.publish(
            EventType::PrefixAdvertised,
            "novanet",
            "p",
            &[("prefix", "10.0.0.1/32".into())],
        );
        bus.publish(EventType::PrefixAdvertised, "other", "p", &[]);
        bus.publish(EventType::PeerUp, "novanet", "p", &[]);
        assert_eq!(all.recv().await.unwrap().r#type, EventType::PrefixAdvertised as i32);
        let e = mine.recv().await.unwrap();
        assert_eq!(
            (e.owner.as_str(), e.metadata["prefix"].as_str()),
            ("novanet", "10.0.0.1/32")
        );
        assert!(mine.try_recv().is_err(), "other owners and types filtered out");
        // A subscriber that never reads loses events beyond its buffer.
        let _slow = bus.subscribe("", &[]).unwrap();
        for _ in 0..(SUBSCRIBER_BUFFER + 10) {
            bus.publish(EventType::PeerDown, "x", "d", &[]);
        }
        assert!(bus.dropped() >= 10);
    }

    #[test]
    fn streams_are_capped_and_a_closed_one_frees_its_place() {
        let bus = EventBus::default();
        let mut open: Vec<_> = (0..MAX_SUBSCRIBERS).map(|_| bus.subscribe("", &[]).unwrap()).collect();
        assert_eq!(bus.subscribe("", &[]).unwrap_err(), SubscribeError::TooMany);
        drop(open.pop());
        assert!(bus.subscribe("", &[]).is_ok(), "a closed stream's place is free again");
    }
}
