//! The routing control plane behind the RouteControl API (whose gRPC
//! services are in [`crate::api`]): owners and their policy ([`owners`]),
//! the intent store ([`intents`]), the reconciler that hands intents to
//! the peer pipeline, the speaker, BFD and the OSPF task and records how
//! each fared ([`reconciler`]), the event bus ([`events`]) and what feeds
//! it ([`sources`]).

pub mod events;
pub mod intents;
pub mod owners;
pub mod reconciler;
pub mod sources;

use events::EventBus;
use intents::Intents;
use novanet_bfd::transport::Bfd;
use novanet_bgp::speaker::Speaker;
use owners::Owners;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// A client's value as error messages and events quote it: Debug-quoted,
/// at most 64 characters, with its length when cut (an error's message
/// travels in a header, which clients cap at a few KiB).
pub fn shown(value: &str) -> String {
    const MAX: usize = 64;
    match value.char_indices().nth(MAX) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &value[..cut], value.len()),
    }
}

/// How applying one intent went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyState {
    Pending,
    Applied,
    Failed(String),
}

impl ApplyState {
    pub fn describe(&self) -> String {
        match self {
            ApplyState::Pending => "pending".into(),
            ApplyState::Applied => "applied".into(),
            ApplyState::Failed(e) => format!("failed: {e}"),
        }
    }
}

/// State shared by the API server, the reconciler and the event sources.
pub struct ControlState {
    /// The owners of the running configuration ([`ControlState::owners`]).
    owners: std::sync::RwLock<Arc<Owners>>,
    /// The running configuration.
    pub config: crate::config::ConfigRx,
    /// The peer pipeline: API peers are its [`crate::peers::Source::Api`].
    pub peers: crate::peers::Peers,
    pub intents: Mutex<Intents>,
    pub events: EventBus,
    pub speaker: Speaker,
    pub bfd: Bfd,
    /// Apply outcome per intent.
    pub applied: Mutex<HashMap<IntentKey, ApplyState>>,
    /// Registered owners and their session ids.
    pub sessions: Mutex<BTreeMap<String, String>>,
    /// The local AS and router id as last configured.
    pub bgp: Mutex<(u32, String)>,
    /// Wakes the reconciler now (coalescing).
    pub trigger: Notify,
    /// Refuses mutations once shutdown has begun.
    pub stopping: std::sync::atomic::AtomicBool,
    /// Nodes of the mesh sharing an AS number (AS, node names).
    pub asn_collisions: Mutex<Vec<(u32, Vec<String>)>>,
    /// What the control plane counts and times.
    pub metrics: ControlMetrics,
    /// The OSPF task, in the OSPF mode.
    pub ospf: Option<crate::ospf::Ospf>,
    /// The node's drain and what a SIGTERM means.
    pub lifecycle: Arc<crate::lifecycle::Lifecycle>,
}

/// The control plane's own counters and timings (`metrics.rs` renders
/// them).
pub struct ControlMetrics {
    /// `intents_total{owner, type, operation}`.
    pub intent_ops: Mutex<BTreeMap<(String, String, String), u64>>,
    /// `policy_violations_total{owner, reason}`.
    pub violations: Mutex<BTreeMap<(String, String), u64>>,
    /// `reconcile_cycle_duration_seconds`.
    pub reconcile_seconds: prometheus::Histogram,
    /// `grpc_request_duration_seconds{method}` (server streams not timed).
    pub grpc_seconds: prometheus::HistogramVec,
}

impl Default for ControlMetrics {
    fn default() -> Self {
        ControlMetrics {
            intent_ops: Mutex::new(BTreeMap::new()),
            violations: Mutex::new(BTreeMap::new()),
            reconcile_seconds: prometheus::Histogram::with_opts(prometheus::HistogramOpts::new(
                "novanet_routing_reconcile_cycle_duration_seconds",
                "Time of one reconcile cycle",
            ))
            .expect("valid histogram"),
            grpc_seconds: prometheus::HistogramVec::new(
                prometheus::HistogramOpts::new("novanet_routing_grpc_request_duration_seconds", "Time of one RPC"),
                &["method"],
            )
            .expect("valid histogram"),
        }
    }
}

/// The shared control plane.
pub type Control = Arc<ControlState>;

impl ControlState {
    /// The owners as the running configuration has them.
    pub fn owners(&self) -> Arc<Owners> {
        self.owners.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The node's BFD timers for sessions that set none, as the running
    /// configuration has them.
    pub fn bfd_defaults(&self) -> crate::peers::spec::BfdTimers {
        crate::peers::spec::BfdTimers::node_defaults(&self.config.borrow())
    }

    /// Asks for a reconcile soon.
    pub fn reconcile_soon(&self) {
        self.trigger.notify_one();
    }

    /// Counts an intent operation (`set`/`remove` from the API,
    /// `apply`/`remove` from the reconciler).
    pub fn count_intent(&self, owner: &str, kind: &str, operation: &str) {
        *self
            .metrics
            .intent_ops
            .lock()
            .expect("intent counters")
            .entry((owner.to_string(), kind.to_string(), operation.to_string()))
            .or_default() += 1;
    }

    /// Counts a refused request. Owner names nobody configured are counted
    /// together as `_unknown`: a client cannot grow the counters by making
    /// up names.
    pub fn count_violation(&self, owner: &str, reason: &str) {
        let owner = violation_owner(&self.owners(), owner);
        *self
            .metrics
            .violations
            .lock()
            .expect("violation counters")
            .entry((owner.to_string(), reason.to_string()))
            .or_default() += 1;
    }

    pub fn apply_state(&self, key: &IntentKey) -> ApplyState {
        self.applied
            .lock()
            .expect("applied")
            .get(key)
            .cloned()
            .unwrap_or(ApplyState::Pending)
    }
}

/// What an intent is about: the key of its apply state. Shown as in the
/// reference (`peer:A`, `prefix:bgp:P`, `bfd:A`, `ospf:I`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IntentKey {
    Peer(std::net::IpAddr),
    /// A prefix by protocol (`Protocol` as its number) and network.
    Prefix(novanet_proto::api::Protocol, ipnet::IpNet),
    Bfd(std::net::IpAddr),
    Ospf(String),
}

impl IntentKey {
    /// The intent type: `peer`, `prefix`, `bfd`, `ospf` (metric label).
    pub fn kind(&self) -> &'static str {
        match self {
            IntentKey::Peer(_) => "peer",
            IntentKey::Prefix(..) => "prefix",
            IntentKey::Bfd(_) => "bfd",
            IntentKey::Ospf(_) => "ospf",
        }
    }

    /// Whether one owner's intents hold this key.
    pub fn held_by(&self, i: &intents::OwnerIntents) -> bool {
        match self {
            IntentKey::Peer(a) => i.peers.contains_key(a),
            IntentKey::Prefix(p, n) => i.prefixes.contains_key(&(*p, *n)),
            IntentKey::Bfd(a) => i.bfd.contains_key(a),
            IntentKey::Ospf(n) => i.ospf.contains_key(n),
        }
    }
}

impl std::fmt::Display for IntentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntentKey::Peer(a) => write!(f, "peer:{a}"),
            IntentKey::Prefix(p, n) => {
                let proto = if *p == novanet_proto::api::Protocol::Ospf {
                    "ospf"
                } else {
                    "bgp"
                };
                write!(f, "prefix:{proto}:{n}")
            }
            IntentKey::Bfd(a) => write!(f, "bfd:{a}"),
            IntentKey::Ospf(i) => write!(f, "ospf:{i}"),
        }
    }
}

pub fn peer_key(addr: &std::net::IpAddr) -> IntentKey {
    IntentKey::Peer(*addr)
}

pub fn prefix_key(protocol: novanet_proto::api::Protocol, prefix: &ipnet::IpNet) -> IntentKey {
    IntentKey::Prefix(protocol, *prefix)
}

pub fn bfd_key(addr: &std::net::IpAddr) -> IntentKey {
    IntentKey::Bfd(*addr)
}

pub fn ospf_key(iface: &str) -> IntentKey {
    IntentKey::Ospf(iface.to_string())
}

/// The owner label of a policy violation: a configured owner, or
/// `_unknown`.
pub fn violation_owner<'a>(owners: &Owners, owner: &'a str) -> &'a str {
    if owners.names().any(|n| n == owner) {
        owner
    } else {
        "_unknown"
    }
}

/// Records the per-node AS collisions of the mesh; each group not known
/// before is reported (log and a POLICY_VIOLATION event). Returns the new
/// groups.
pub fn set_asn_collisions(control: &Control, now: Vec<(u32, Vec<String>)>) -> Vec<(u32, Vec<String>)> {
    let mut known = control.asn_collisions.lock().expect("collisions");
    let fresh: Vec<(u32, Vec<String>)> = now.iter().filter(|c| !known.contains(c)).cloned().collect();
    *known = now;
    drop(known);
    for (asn, nodes) in &fresh {
        tracing::error!(
            asn,
            nodes = ?nodes,
            "nodes share a per-node AS: eBGP loop prevention drops routes between them; set routing.asn_mode to private_4byte"
        );
        control.events.publish(
            novanet_proto::api::EventType::PolicyViolation,
            "_config",
            format!("AS {asn} collides between nodes {}", nodes.join(", ")),
            &[
                ("reason", "asn_collision".into()),
                ("asn", asn.to_string()),
                ("nodes", nodes.join(",")),
            ],
        );
    }
    fresh
}

/// Builds the control plane from the running configuration.
pub fn new(
    config: crate::config::ConfigRx,
    speaker: Speaker,
    bfd: Bfd,
    peers: crate::peers::Peers,
    ospf: Option<crate::ospf::Ospf>,
    lifecycle: Arc<crate::lifecycle::Lifecycle>,
) -> anyhow::Result<Control> {
    let owners = Owners::from_config(&config.borrow().owners).map_err(|(path, m)| anyhow::anyhow!("{path}: {m}"))?;
    warn_ungranted(&owners);
    let bgp = (speaker.config().local_as, speaker.config().router_id.to_string());
    Ok(Arc::new(ControlState {
        owners: std::sync::RwLock::new(Arc::new(owners)),
        config,
        peers,
        intents: Mutex::new(Intents::default()),
        events: EventBus::default(),
        speaker,
        bfd,
        applied: Mutex::new(HashMap::new()),
        sessions: Mutex::new(BTreeMap::new()),
        bgp: Mutex::new(bgp),
        trigger: Notify::new(),
        stopping: std::sync::atomic::AtomicBool::new(false),
        asn_collisions: Mutex::new(Vec::new()),
        metrics: ControlMetrics::default(),
        ospf,
        lifecycle,
    }))
}

/// Says which owners keep every RPC because they have no `capabilities`.
fn warn_ungranted(owners: &Owners) {
    for name in owners.without_capabilities() {
        tracing::warn!(
            owner = %name,
            "owner has no capabilities: it may configure BGP, add peers, run BFD sessions and enable OSPF; set owners.{name}.capabilities to grant only what it needs"
        );
    }
}

/// Follows the running configuration: a reload's owners take over (an
/// owner no longer configured is deregistered with its intents withdrawn,
/// as by Deregister with `withdraw_all`), and the reconciler runs at once,
/// so API peers and BFD sessions take changed node defaults.
pub async fn follow_config(control: Control) {
    let mut config = control.config.clone();
    config.mark_unchanged();
    while config.changed().await.is_ok() {
        let owners = Owners::from_config(&config.borrow_and_update().owners);
        let owners = match owners {
            Ok(o) => {
                warn_ungranted(&o);
                o
            }
            Err((path, m)) => {
                tracing::error!(key = %path, error = %m, "owners not reloaded; the running ones stay");
                continue;
            }
        };
        let gone: Vec<String> = {
            let mut intents = control.intents.lock().expect("intents");
            let mut sessions = control.sessions.lock().expect("sessions");
            let gone: Vec<String> = intents
                .owners
                .keys()
                .chain(sessions.keys())
                .filter(|o| !owners.names().any(|n| n == *o))
                .cloned()
                .collect();
            for o in &gone {
                intents.owners.remove(o);
                sessions.remove(o);
            }
            gone
        };
        *control.owners.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(owners);
        for o in gone.iter().collect::<std::collections::BTreeSet<_>>() {
            tracing::warn!(owner = %o, "owner no longer configured: deregistered, its intents withdrawn");
            control.events.publish(
                novanet_proto::api::EventType::OwnerDeregistered,
                o,
                format!("owner {o} deregistered: no longer in the configuration (its intents withdrawn)"),
                &[
                    ("withdraw_all", "true".into()),
                    ("reason", "configuration_reloaded".into()),
                ],
            );
        }
        control.reconcile_soon();
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn intent_keys_show_as_the_reference_writes_them() {
        let a: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let p: ipnet::IpNet = "10.244.1.0/24".parse().unwrap();
        let ospf = novanet_proto::api::Protocol::Ospf;
        let bgp = novanet_proto::api::Protocol::Bgp;
        assert_eq!(peer_key(&a).to_string(), "peer:10.0.0.1");
        assert_eq!(prefix_key(bgp, &p).to_string(), "prefix:bgp:10.244.1.0/24");
        assert_eq!(prefix_key(ospf, &p).to_string(), "prefix:ospf:10.244.1.0/24");
        assert_eq!(bfd_key(&a).to_string(), "bfd:10.0.0.1");
        assert_eq!(ospf_key("eth0").to_string(), "ospf:eth0");
        assert_ne!(prefix_key(bgp, &p), prefix_key(ospf, &p), "protocols are told apart");
        let mut o = intents::OwnerIntents::default();
        let bfd = intents::BfdIntent {
            peer: a,
            min_rx_ms: 300,
            min_tx_ms: 300,
            detect_multiplier: 3,
            interface: String::new(),
        };
        o.bfd.insert(a, bfd);
        assert!(bfd_key(&a).held_by(&o) && !peer_key(&a).held_by(&o));
        assert_eq!((peer_key(&a).kind(), ospf_key("eth0").kind()), ("peer", "ospf"));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_values_are_cut_with_their_length() {
        assert_eq!(super::shown("10.0.0.1/32"), "\"10.0.0.1/32\"");
        let long = format!("10.0.0.1/32{}", " ".repeat(100_000));
        let s = super::shown(&long);
        assert!(s.len() < 100 && s.ends_with("(100011 bytes)"), "{s}");
        assert_eq!(super::shown("a\nb"), "\"a\\nb\"");
    }
}
