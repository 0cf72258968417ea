//! The watches behind the routing resources: every NovaBGPClusterConfig,
//! NovaBGPPeerProfile, NovaBGPAdvertisement and NovaBGPNodeOverride, the
//! password Secrets the profiles name (each by name, in the agent's
//! namespace) and this node's own Node (its labels pick the config). Any
//! change recomputes the plan; its peers go to the peer pipeline, which
//! touches only the sessions whose settings changed; this node's override
//! goes to the running configuration, every node's local AS to the node
//! mesh. Until every watch has listed, the peers as last seen are
//! published (kept beside the socket, [`LastKnown`]): a restart while the
//! API server is away still brings the rack's ToR sessions back.

use super::objects::{api_resource, AdvertisementSpec, ClusterConfigSpec, NodeOverrideSpec, PeerProfileSpec};
use super::plan::{plan, Condition, Inputs, Plan, ResourcePeer};
use crate::config::ConfigRx;
use crate::kubernetes::last_known::LastKnown;
use crate::kubernetes::watch::WATCH_TIMEOUT_SECS;
use crate::kubernetes::watch_failures::WatchFailures;
use crate::peers::PeerSources;
use crate::peers::PeerSpec;
use crate::unnumbered::{Found, Links};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::api::DynamicObject;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use std::collections::BTreeMap;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the default route is looked at (peers by gateway).
const GATEWAY_POLL: Duration = Duration::from_secs(2);

/// Changes closer together than this are planned together.
const SETTLE: Duration = Duration::from_millis(100);

/// Watches one kind into a store; notifies `changed` after each complete
/// list and each change, and counts the watches that have listed once.
fn watch<K>(api: Api<K>, config: watcher::Config, what: &'static str, changed: Arc<Changed>) -> Store<K>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    watch_with(api, config, what, changed, Default::default())
}

fn watch_with<K>(
    api: Api<K>,
    config: watcher::Config,
    what: &'static str,
    changed: Arc<Changed>,
    dynamic: K::DynamicType,
) -> Store<K>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    watch_counted(api, config, what, changed, dynamic, None).0
}

/// A watch as [`watch_with`]; with `listed`, its first complete list sets
/// that flag instead of counting among the fixed watches.
fn watch_counted<K>(
    api: Api<K>,
    config: watcher::Config,
    what: &'static str,
    changed: Arc<Changed>,
    dynamic: K::DynamicType,
    own_flag: Option<Arc<AtomicBool>>,
) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let writer = reflector::store::Writer::new(dynamic);
    let reader = writer.as_reader();
    let stream =
        reflector::reflector(writer, watcher::watcher(api, config.timeout(WATCH_TIMEOUT_SECS))).default_backoff();
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        let mut failures = WatchFailures::default();
        let mut listed = false;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Init) | Ok(watcher::Event::InitApply(_)) => {}
                Ok(ev) => {
                    failures.recovered(what);
                    if !listed && matches!(ev, watcher::Event::InitDone) {
                        listed = true;
                        match &own_flag {
                            Some(flag) => flag.store(true, Ordering::SeqCst),
                            None => {
                                changed.listed.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                    changed.notify.notify_one();
                }
                Err(e) => failures.report(&e, what, "the peers from the resources stay as they are"),
            }
        }
    });
    (reader, task)
}

/// The watch of one password Secret (by name, in the agent's namespace):
/// the agent holds only the Secrets the profiles name.
struct SecretWatch {
    store: Store<Secret>,
    listed: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SecretWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn watch_secret(client: &Client, namespace: &str, name: &str, changed: Arc<Changed>) -> SecretWatch {
    let listed = Arc::new(AtomicBool::new(false));
    let (store, task) = watch_counted(
        Api::<Secret>::namespaced(client.clone(), namespace),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
        "the profiles' password Secrets",
        changed,
        (),
        Some(listed.clone()),
    );
    SecretWatch { store, listed, task }
}

/// Shared by the watches: a change, and how many have listed.
#[derive(Default)]
struct Changed {
    notify: tokio::sync::Notify,
    listed: AtomicUsize,
}

/// What the resources publish besides the peers.
pub struct Published {
    /// The plan's conditions as they change.
    pub conditions: tokio::sync::watch::Receiver<Vec<Condition>>,
    /// This node's NovaBGPNodeOverride as it changes (from the first
    /// complete list on).
    pub identity: tokio::sync::watch::Receiver<Option<NodeOverrideSpec>>,
    /// The local AS every NovaBGPNodeOverride gives its node, by node name.
    pub node_as: tokio::sync::watch::Receiver<BTreeMap<String, u32>>,
}

/// The number of watches that must have listed before anything is planned.
const WATCHES: usize = 5;

/// Starts the watches and the planning task; the agent's namespace holds
/// the password Secrets. `identity` is the override read at start.
pub fn spawn(
    client: Client,
    config: ConfigRx,
    peers: PeerSources,
    namespace: String,
    kept: LastKnown,
    identity: Option<NodeOverrideSpec>,
    links: Links,
) -> Published {
    let (conditions_tx, conditions) = tokio::sync::watch::channel(Vec::new());
    let (identity_tx, identity_rx) = tokio::sync::watch::channel(identity);
    let (node_as_tx, node_as) = tokio::sync::watch::channel(BTreeMap::new());
    let changed = Arc::new(Changed::default());
    let node_name = config.borrow().node_name.clone();
    let configs_ar = api_resource("NovaBGPClusterConfig", "novabgpclusterconfigs");
    let profiles_ar = api_resource("NovaBGPPeerProfile", "novabgppeerprofiles");
    let configs = watch_with(
        Api::<DynamicObject>::all_with(client.clone(), &configs_ar),
        watcher::Config::default(),
        "NovaBGPClusterConfigs",
        changed.clone(),
        configs_ar.clone(),
    );
    let profiles = watch_with(
        Api::<DynamicObject>::all_with(client.clone(), &profiles_ar),
        watcher::Config::default(),
        "NovaBGPPeerProfiles",
        changed.clone(),
        profiles_ar,
    );
    let advertisements_ar = api_resource("NovaBGPAdvertisement", "novabgpadvertisements");
    let advertisements = watch_with(
        Api::<DynamicObject>::all_with(client.clone(), &advertisements_ar),
        watcher::Config::default(),
        "NovaBGPAdvertisements",
        changed.clone(),
        advertisements_ar,
    );
    let overrides_ar = api_resource("NovaBGPNodeOverride", "novabgpnodeoverrides");
    let overrides = watch_with(
        Api::<DynamicObject>::all_with(client.clone(), &overrides_ar),
        watcher::Config::default(),
        "NovaBGPNodeOverrides",
        changed.clone(),
        overrides_ar,
    );
    let mut secrets: BTreeMap<String, SecretWatch> = BTreeMap::new();
    let node = watch(
        Api::<Node>::all(client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={node_name}")),
        "this node's Node",
        changed.clone(),
    );
    // A link's neighbor found or lost, or the default route changed: the
    // peers by interface and by gateway are planned again.
    let mut found = links.found.clone();
    let on_found = changed.clone();
    tokio::spawn(async move {
        while found.changed().await.is_ok() {
            on_found.notify.notify_one();
        }
    });
    let on_gateway = changed.clone();
    tokio::spawn(async move {
        let mut seen = crate::gateways::read();
        loop {
            tokio::time::sleep(GATEWAY_POLL).await;
            let now = crate::gateways::read();
            if now != seen {
                seen = now;
                on_gateway.notify.notify_one();
            }
        }
    });
    tokio::spawn(async move {
        let mut last = Plan::default();
        let cached = kept.load().resource_peers;
        if !cached.is_empty() {
            let cfg = config.borrow().clone();
            tracing::info!(
                peers = cached.len(),
                "ToRs from the routing resources as last seen, until the watches list"
            );
            peers
                .resources
                .send_replace(peer_specs(&cfg, &cached, &Default::default()));
        }
        loop {
            changed.notify.notified().await;
            tokio::time::sleep(SETTLE).await;
            if changed.listed.load(Ordering::SeqCst) < WATCHES {
                continue;
            }
            let overrides = specs::<NodeOverrideSpec>(&overrides, "NovaBGPNodeOverride");
            let own_override = overrides.get(&node_name).copied();
            identity_tx.send_if_modified(|held| {
                if *held == own_override {
                    return false;
                }
                kept.keep_own_override(own_override);
                *held = own_override;
                true
            });
            let by_node: BTreeMap<String, u32> = overrides
                .iter()
                .filter_map(|(name, o)| Some((name.clone(), o.local_as?)))
                .collect();
            crate::published::publish(&node_as_tx, by_node);
            let labels: BTreeMap<String, String> = node
                .state()
                .first()
                .and_then(|n| n.metadata.labels.clone())
                .unwrap_or_default()
                .into_iter()
                .collect();
            let configs = specs::<ClusterConfigSpec>(&configs, "NovaBGPClusterConfig");
            let profiles = specs::<PeerProfileSpec>(&profiles, "NovaBGPPeerProfile");
            let advertisements = labelled_specs::<AdvertisementSpec>(&advertisements, "NovaBGPAdvertisement");
            // Only the Secrets the profiles name are watched (each by
            // name); nothing is planned before each has listed.
            let named: BTreeSet<String> = profiles
                .values()
                .filter_map(|p| p.password_secret_ref.as_ref().map(|r| r.name.clone()))
                .collect();
            secrets.retain(|name, _| named.contains(name));
            for name in &named {
                secrets
                    .entry(name.clone())
                    .or_insert_with(|| watch_secret(&client, &namespace, name, changed.clone()));
            }
            if secrets.values().any(|w| !w.listed.load(Ordering::SeqCst)) {
                continue;
            }
            let secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>> = secrets
                .values()
                .flat_map(|w| w.store.state())
                .filter_map(|s| {
                    let data = s.data.as_ref()?.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect();
                    Some((s.metadata.name.clone()?, data))
                })
                .collect();
            let gateways = crate::gateways::read();
            let now = plan(&Inputs {
                node_labels: &labels,
                configs: &configs,
                profiles: &profiles,
                secrets: &secrets,
                namespace: &namespace,
                own_override: own_override.as_ref(),
                advertisements: &advertisements,
                default_gateways: &gateways,
            });
            if now != last {
                report(&last, &now);
                crate::published::publish(&conditions_tx, now.conditions.clone());
                let wanted: BTreeSet<String> = now.peers.iter().filter_map(|p| p.interface.clone()).collect();
                crate::published::publish(&links.wanted, wanted);
                if last.peers != now.peers {
                    kept.keep_resource_peers(&now.peers);
                }
            }
            // Again when a link's neighbor is found, though the plan is
            // the same.
            let cfg = config.borrow().clone();
            let specs = peer_specs(&cfg, &now.peers, &links.found.borrow());
            crate::published::publish(&peers.resources, specs);
            last = now;
        }
    });
    Published {
        conditions,
        identity: identity_rx,
        node_as,
    }
}

/// The peers of the plan the pipeline can dial: every peer with an
/// address, and the peers by interface whose link's neighbor is found.
fn peer_specs(cfg: &crate::config::Config, planned: &[ResourcePeer], found: &HashMap<String, Found>) -> Vec<PeerSpec> {
    planned
        .iter()
        .filter_map(|p| {
            let address = match (&p.address, &p.interface) {
                (Some(a), _) => *a,
                (None, Some(link)) => IpAddr::V6(found.get(link)?.address),
                (None, None) => return None,
            };
            Some(crate::peers::spec::resource_tor(cfg, p, address))
        })
        .collect()
}

/// Every object's spec by name; one that does not read (a schema the
/// agent does not know) is left out and said.
fn specs<T: serde::de::DeserializeOwned>(store: &Store<DynamicObject>, kind: &str) -> BTreeMap<String, T> {
    labelled_specs(store, kind)
        .into_iter()
        .map(|(name, (_, spec))| (name, spec))
        .collect()
}

/// Every object's labels and spec by name, as [`specs`].
fn labelled_specs<T: serde::de::DeserializeOwned>(
    store: &Store<DynamicObject>,
    kind: &str,
) -> BTreeMap<String, (BTreeMap<String, String>, T)> {
    store
        .state()
        .iter()
        .filter_map(|o| {
            let name = o.metadata.name.clone()?;
            let spec = o.data.get("spec").cloned().unwrap_or(serde_json::Value::Null);
            match serde_json::from_value::<T>(spec) {
                Ok(s) => Some((name, (o.metadata.labels.clone().unwrap_or_default(), s))),
                Err(e) => {
                    tracing::warn!(kind, name, error = %e, "resource left out: its spec does not read");
                    None
                }
            }
        })
        .collect()
}

/// Says what changed: the config in use, and each new condition.
fn report(last: &Plan, now: &Plan) {
    if last.config != now.config {
        tracing::info!(config = ?now.config, peers = now.peers.len(), "NovaBGPClusterConfig for this node");
    }
    let new: Vec<&Condition> = now.conditions.iter().filter(|c| !last.conditions.contains(c)).collect();
    for c in new {
        tracing::warn!(reason = c.reason, "{}", c.message);
    }
}
