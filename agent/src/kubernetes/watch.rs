//! The Kubernetes API side: client, this node's Node, the Node watch, and
//! the watch of the agent's own DaemonSet.
//!
//! The watch is kube-runtime's `watcher` behind a `reflector` store: the
//! store is replaced as a whole at the end of every (re)list, so a Node
//! deleted while the watch was down is gone after the relist. Watch errors
//! (410 Gone, timeouts, an API server restart) relist with backoff; the
//! mesh is only recomputed from a complete store, so established sessions
//! are never dropped by a watch failure.

use super::last_known::LastKnown;
use super::nodes::{plan, ClusterNode, MeshPlan};
use crate::config::{Config, ConfigRx};
use crate::control::Control;
use crate::peers::PeerSources;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::reflector;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use std::time::Duration;

/// Server-side timeout of one watch request: below the 60 s idle timeout
/// of common load balancers in front of API servers, so the connection is
/// renewed before one cuts it.
pub const WATCH_TIMEOUT_SECS: u32 = 45;

/// A client from `KUBECONFIG` / `~/.kube/config` or the in-cluster
/// service account.
pub async fn client() -> anyhow::Result<Client> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| anyhow::anyhow!("Kubernetes API (KUBECONFIG or in-cluster service account): {e}"))?;
    tracing::info!(server = %config.cluster_url, "Kubernetes API");
    Client::try_from(config).map_err(|e| anyhow::anyhow!("Kubernetes client: {e}"))
}

/// What this node's Node lacks that the configuration needs, if anything.
fn missing(cfg: &Config, own: &ClusterNode) -> Vec<String> {
    let mut m = Vec::new();
    if cfg.node_ip.is_none() && own.internal_ip.is_none() {
        m.push("InternalIP in status.addresses (node_ip is not configured)".to_string());
    }
    if cfg.pod_cidr.is_none() && cfg.pod_cidrs.is_empty() && own.pod_cidrs.is_empty() {
        m.push("spec.podCIDR (pod_cidr is not configured)".to_string());
    }
    m
}

/// Waits until this node's Node exists and carries what the configuration
/// leaves to it; every failed try is logged with what is missing and tried
/// again with backoff (up to 30 s), never given up. When the API server
/// cannot be reached, the Node as last seen ([`LastKnown`]) does, so
/// routing starts; the watches catch up later.
pub async fn own_node(client: &Client, cfg: &Config, kept: &LastKnown) -> ClusterNode {
    let api: Api<Node> = Api::all(client.clone());
    let mut wait = Duration::from_secs(1);
    loop {
        let problem = match api.get_opt(&cfg.node_name).await {
            Ok(Some(node)) => {
                let own = ClusterNode::from_node(&node);
                let lacks = missing(cfg, &own);
                if lacks.is_empty() {
                    kept.keep_own(&own);
                    return own;
                }
                format!("Node {} has no {}", cfg.node_name, lacks.join(" and no "))
            }
            Err(e) => {
                let last = kept.load();
                if let Some(own) = last
                    .own
                    .map(|k| k.node())
                    .filter(|o| o.name == cfg.node_name && missing(cfg, o).is_empty())
                {
                    tracing::warn!(error = %e, file = %kept.path().display(), saved_at = last.saved_at,
                        "the API server cannot be reached: routing starts from this node's Node as last seen, and catches up once it can");
                    return own;
                }
                format!("reading Node {}: {e}", cfg.node_name)
            }
            Ok(None) => format!(
                "Node {} not found (node_name / NOVANET_NODE_NAME must name this node)",
                cfg.node_name
            ),
        };
        tracing::error!(problem, retry_in_s = wait.as_secs(), "waiting for this node's Node");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

/// Fills what the configuration leaves to the Node: `node_ip` (first
/// InternalIP), `pod_cidr`/`pod_cidrs` (`spec.podCIDR(s)`), and the local
/// AS from the `novanet.io/asn` annotation when `routing.local_as` is 0;
/// says in the log what was taken. Checks the result.
pub fn complete_config(cfg: &mut Config, own: &ClusterNode) -> anyhow::Result<()> {
    for p in &own.problems {
        tracing::warn!(node = %own.name, problem = %p, "Node field ignored");
    }
    if cfg.node_ip.is_none() {
        cfg.node_ip = own.internal_ip;
        tracing::info!(node_ip = ?cfg.node_ip, "node_ip taken from the Node's first InternalIP");
    }
    if cfg.pod_cidr.is_none() && cfg.pod_cidrs.is_empty() {
        let mut cidrs = own.pod_cidrs.iter().copied();
        cfg.pod_cidr = cidrs.next();
        cfg.pod_cidrs = cidrs.collect();
        tracing::info!(pod_cidrs = ?cfg.pod_cidrs(), "PodCIDRs taken from the Node's spec.podCIDRs");
    }
    if cfg.routing.local_as == 0 {
        if let Some(asn) = own.asn {
            cfg.routing.local_as = asn;
            tracing::info!(
                local_as = asn,
                "local AS taken from the Node's novanet.io/asn annotation"
            );
        }
    }
    cfg.validate_node()
        .map_err(|e| anyhow::anyhow!("with what Node {} gives: {e}", own.name))
}

/// Watches every Node and publishes this node's mesh peers whenever the
/// mesh or the running configuration changes, until the agent stops. The
/// configuration gives this node's name, the `asn_mode`, the mesh's
/// prefix limit and the BFD settings of mesh peers; `node_as` the local AS
/// of the nodes with a NovaBGPNodeOverride, which wins over their
/// annotation and the `asn_mode` rule.
pub fn spawn_mesh(
    client: Client,
    mut config: ConfigRx,
    peers: PeerSources,
    control: Control,
    kept: LastKnown,
    mut node_as: tokio::sync::watch::Receiver<std::collections::BTreeMap<String, u32>>,
) {
    tokio::spawn(async move {
        let api: Api<Node> = Api::all(client);
        let (reader, writer) = reflector::store();
        let watch_config = watcher::Config::default().timeout(WATCH_TIMEOUT_SECS);
        let stream = reflector(writer, watcher::watcher(api, watch_config)).default_backoff();
        futures::pin_mut!(stream);
        let mut last: Option<MeshPlan> = None;
        let mut synced = false;
        let mut overrides_open = true;
        let mut failures = super::watch_failures::WatchFailures::default();
        // Until the first list, the mesh as last seen: the sessions of a
        // restart come back even while the API server is away.
        let cached: Vec<ClusterNode> = kept.load().nodes.iter().map(|n| n.node()).collect();
        if !cached.is_empty() {
            let cfg = config.borrow().clone();
            let now = plan(&cfg.node_name, &cached, cfg.routing.asn_mode);
            tracing::info!(
                peers = now.members.len(),
                "node mesh as last seen, until the Node watch lists"
            );
            peers.mesh.send_replace(mesh_specs(&cfg, &now));
        }
        loop {
            tokio::select! {
                event = stream.next() => match event {
                    None => return,
                    // The store is complete again only at InitDone.
                    Some(Ok(Event::Init)) | Some(Ok(Event::InitApply(_))) => continue,
                    Some(Ok(Event::Apply(_))) | Some(Ok(Event::Delete(_))) | Some(Ok(Event::InitDone)) => {
                        failures.recovered("Nodes");
                        synced = true;
                    }
                    Some(Err(e)) => {
                        failures.report(&e, "Nodes", "relisting; sessions stay up");
                        continue;
                    }
                },
                r = config.changed() => {
                    if r.is_err() {
                        return;
                    }
                    if !synced {
                        continue;
                    }
                }
                r = node_as.changed(), if overrides_open => {
                    overrides_open = r.is_ok();
                    if !overrides_open || !synced {
                        continue;
                    }
                }
            }
            let cfg = config.borrow_and_update().clone();
            let overridden = node_as.borrow_and_update().clone();
            let nodes: Vec<ClusterNode> = reader
                .state()
                .iter()
                .map(|n| {
                    let mut node = ClusterNode::from_node(n);
                    if let Some(asn) = overridden.get(&node.name) {
                        node.asn = Some(*asn);
                    }
                    node
                })
                .collect();
            let now = plan(&cfg.node_name, &nodes, cfg.routing.asn_mode);
            if last.as_ref() != Some(&now) {
                log_changes(last.as_ref(), &now);
                crate::control::set_asn_collisions(&control, now.collisions.clone());
                kept.keep_nodes(&nodes);
            }
            let specs = mesh_specs(&cfg, &now);
            crate::published::publish(&peers.mesh, specs);
            last = Some(now);
        }
    });
}

/// The peers of a mesh plan.
fn mesh_specs(cfg: &Config, plan: &MeshPlan) -> Vec<crate::peers::PeerSpec> {
    plan.members
        .iter()
        .map(|m| crate::peers::spec::mesh(cfg, &m.name, m.ip, m.asn, &m.pod_cidrs, m.role, &plan.cluster_cidrs))
        .collect()
}

/// Follows one object by name (a watch with a field selector), calling
/// `seen` with it and whether it was deleted, until `seen` says to stop.
/// Watch errors are retried with backoff.
async fn follow_one<K>(api: Api<K>, name: &str, what: &str, mut seen: impl FnMut(&K, bool) -> bool)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let watch_config = watcher::Config::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(WATCH_TIMEOUT_SECS);
    let stream = watcher::watcher(api, watch_config).default_backoff();
    futures::pin_mut!(stream);
    let mut failures = super::watch_failures::WatchFailures::default();
    while let Some(event) = stream.next().await {
        let (object, gone) = match event {
            Ok(Event::Apply(o)) | Ok(Event::InitApply(o)) => (o, false),
            Ok(Event::Delete(o)) => (o, true),
            Ok(_) => continue,
            Err(e) => {
                failures.report(&e, what, "the last state seen stays");
                continue;
            }
        };
        failures.recovered(what);
        // (The field selector already asks for this one alone.)
        if object.meta().name.as_deref() != Some(name) {
            continue;
        }
        if !seen(&object, gone) {
            return;
        }
    }
}

/// Watches this node's Node and publishes what it says about the node's
/// role and lifecycle (control-plane label, cordon, deletion, the drain
/// annotation), starting from what `own` said, until the agent stops. A
/// Node deleted reads as being deleted.
pub fn watch_own_node(client: Client, own: &ClusterNode) -> crate::lifecycle::NodeRx {
    let (tx, rx) = tokio::sync::watch::channel(Some(own.lifecycle));
    let name = own.name.clone();
    tokio::spawn(async move {
        follow_one(Api::<Node>::all(client), &name, "this node's Node", |node, gone| {
            let mut view = ClusterNode::from_node(node).lifecycle;
            view.deleting |= gone;
            tx.send_if_modified(|held| {
                if *held == Some(view) {
                    return false;
                }
                tracing::info!(node = %name, control_plane = view.control_plane, cordoned = view.cordoned,
                    deleting = view.deleting, drain_asked = view.drain_asked, "this node's Node changed");
                *held = Some(view);
                true
            });
            !tx.is_closed()
        })
        .await
    });
    rx
}

/// The DaemonSet the agent runs from, as the chart names it
/// (`NOVANET_DAEMONSET`, `POD_NAMESPACE`); `None` when either is unset.
pub fn own_daemonset() -> Option<(String, String)> {
    let name = std::env::var("NOVANET_DAEMONSET").ok().filter(|v| !v.is_empty())?;
    let namespace = std::env::var("POD_NAMESPACE").ok().filter(|v| !v.is_empty())?;
    Some((namespace, name))
}

/// Watches the agent's own DaemonSet and says whether it is being deleted
/// (a `helm uninstall` or `kubectl delete`: a deletion timestamp, or the
/// object gone). A rolling update leaves it in place. The watch opened at
/// start sees the deletion even when the uninstall goes on to remove the
/// agent's RBAC before the pods get their SIGTERM.
pub fn watch_own_daemonset(client: Client, namespace: String, name: String) -> tokio::sync::watch::Receiver<bool> {
    use k8s_openapi::api::apps::v1::DaemonSet;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let api = Api::<DaemonSet>::namespaced(client, &namespace);
        follow_one(api, &name, "the agent's DaemonSet", |ds, gone| {
            let deleting = gone || ds.metadata.deletion_timestamp.is_some();
            tx.send_if_modified(|held| {
                if *held == deleting {
                    return false;
                }
                tracing::warn!(daemonset = %name, namespace = %namespace, deleting, "the agent's DaemonSet changed");
                *held = deleting;
                true
            });
            !tx.is_closed()
        })
        .await
    });
    rx
}

fn log_changes(before: Option<&MeshPlan>, now: &MeshPlan) {
    let empty = MeshPlan::default();
    let before = before.unwrap_or(&empty);
    for m in now.members.iter().filter(|m| !before.members.contains(m)) {
        tracing::info!(node = %m.name, address = %m.ip, asn = m.asn, role = ?m.role, "node joins the mesh");
    }
    for m in before.members.iter().filter(|m| !now.members.contains(m)) {
        tracing::info!(node = %m.name, address = %m.ip, asn = m.asn, "node leaves the mesh");
    }
    for (node, reason) in now.left_out.iter().filter(|l| !before.left_out.contains(l)) {
        tracing::info!(node = %node, reason = %reason, "node not peered");
    }
}
