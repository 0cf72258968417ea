//! The watches identity policy needs: every Pod (address, namespace,
//! labels, container ports), every Namespace (labels, for
//! namespaceSelector) and every NetworkPolicy, each a kube-runtime watcher
//! behind a reflector store that keeps only those fields.
//! Nothing is handed to the enforcer until all three have listed: the
//! pinned maps keep what the previous agent wrote (across a restart, and
//! while the API server is away) rather than a partial cluster, where a
//! policy without its pods or namespaces would open what it denies. From
//! then on, whenever one of them changes, the cluster is taken from the
//! three stores as a whole and handed to the enforcer (at most every
//! 100 ms). A relist replaces a store only when it is complete.

use crate::policy::compile::PodInfo;
use crate::policy::enforcer::Enforcer;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{self, reflector, Store};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Changes closer together than this are applied together.
const SETTLE: Duration = Duration::from_millis(100);

fn watch<K>(api: Api<K>, what: &'static str, changed: Arc<tokio::sync::Notify>, strip: fn(&mut K)) -> Store<K>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().timeout(super::watch::WATCH_TIMEOUT_SECS);
    let stream = reflector(writer, watcher::watcher(api, config).modify(strip)).default_backoff();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Init) | Ok(watcher::Event::InitApply(_)) => {}
                Ok(_) => changed.notify_one(),
                Err(e) => tracing::warn!(error = %e, what, "watch failed: relisting with backoff; the maps stay"),
            }
        }
    });
    reader
}

/// What every cached object keeps of its metadata: name, namespace,
/// labels, uid and resourceVersion (the store's keys and what selectors
/// read); annotations, managed fields and owners go.
fn strip_metadata(m: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    m.annotations = None;
    m.managed_fields = None;
    m.owner_references = None;
    m.finalizers = None;
}

/// A Pod as the store keeps it: its metadata as above, whether it is on
/// the host network, its containers' ports (for named ports) and its
/// addresses. Environment, volumes, images and everything else of a
/// tenant's pod are never held.
fn strip_pod(p: &mut Pod) {
    strip_metadata(&mut p.metadata);
    if let Some(spec) = p.spec.take() {
        let keep = |c: &k8s_openapi::api::core::v1::Container| k8s_openapi::api::core::v1::Container {
            name: c.name.clone(),
            ports: c.ports.clone(),
            ..Default::default()
        };
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            host_network: spec.host_network,
            node_name: spec.node_name,
            containers: spec.containers.iter().map(keep).collect(),
            init_containers: spec.init_containers.map(|cs| cs.iter().map(keep).collect()),
            ..Default::default()
        });
    }
    if let Some(status) = p.status.take() {
        p.status = Some(k8s_openapi::api::core::v1::PodStatus {
            pod_ip: status.pod_ip,
            pod_ips: status.pod_ips,
            ..Default::default()
        });
    }
}

fn strip_namespace(n: &mut Namespace) {
    strip_metadata(&mut n.metadata);
    n.spec = None;
    n.status = None;
}

fn strip_policy(p: &mut NetworkPolicy) {
    strip_metadata(&mut p.metadata);
}

/// What policy knows of a pod: none for host-network pods; a pod without
/// an address yet keeps its labels (this node's pods take their addresses
/// from CNI ADD).
fn pod_info(p: &Pod) -> Option<PodInfo> {
    let spec = p.spec.as_ref()?;
    if spec.host_network == Some(true) {
        return None;
    }
    let ips: Vec<IpAddr> = p
        .status
        .iter()
        .flat_map(|s| s.pod_ips.iter().flatten())
        .filter_map(|ip| ip.ip.parse().ok())
        .collect();
    let named_ports = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let name = p.name.clone()?;
            let proto = match p.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => 6,
                "UDP" => 17,
                "SCTP" => 132,
                _ => return None,
            };
            Some((name, proto, u16::try_from(p.container_port).ok()?))
        })
        .collect();
    Some(PodInfo {
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        name: p.metadata.name.clone().unwrap_or_default(),
        labels: p.metadata.labels.clone().unwrap_or_default(),
        ips,
        named_ports,
    })
}

/// Starts the watches and keeps the enforcer's cluster current.
pub fn spawn(client: Client, enforcer: Arc<Enforcer>) {
    let changed = Arc::new(tokio::sync::Notify::new());
    let pods = watch(Api::<Pod>::all(client.clone()), "Pod", changed.clone(), strip_pod);
    let namespaces = watch(
        Api::<Namespace>::all(client.clone()),
        "Namespace",
        changed.clone(),
        strip_namespace,
    );
    let policies = watch(
        Api::<NetworkPolicy>::all(client),
        "NetworkPolicy",
        changed.clone(),
        strip_policy,
    );
    enforcer.await_watches();
    tokio::spawn(async move {
        let listed = async {
            pods.wait_until_ready().await?;
            namespaces.wait_until_ready().await?;
            policies.wait_until_ready().await
        };
        if listed.await.is_err() {
            return;
        }
        tracing::info!("Pods, Namespaces and NetworkPolicies listed: writing the policy maps");
        let mut first = true;
        loop {
            if !first {
                changed.notified().await;
            }
            first = false;
            tokio::time::sleep(SETTLE).await;
            let pods: Vec<PodInfo> = pods.state().iter().filter_map(|p| pod_info(p)).collect();
            let ns: BTreeMap<String, BTreeMap<String, String>> = namespaces
                .state()
                .iter()
                .map(|n| {
                    (
                        n.metadata.name.clone().unwrap_or_default(),
                        n.metadata.labels.clone().unwrap_or_default(),
                    )
                })
                .collect();
            let pols: Vec<NetworkPolicy> = policies.state().iter().map(|p| (**p).clone()).collect();
            enforcer.update(|c| {
                c.pods = pods;
                c.namespaces = ns;
                c.policies = pols;
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_pod_keeps_what_policy_reads_and_nothing_of_its_secrets() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"},
                         "annotations": {"secret-ish": "x"}, "managedFields": [{"manager": "kubectl"}]},
            "spec": {"nodeName": "n1", "containers": [{
                "name": "c", "image": "registry/app:1",
                "env": [{"name": "DB_PASSWORD", "value": "hunter2"}],
                "ports": [{"name": "http", "containerPort": 8080}]}],
                "volumes": [{"name": "v", "emptyDir": {}}]},
            "status": {"phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        strip_pod(&mut pod);
        let text = serde_json::to_string(&pod).unwrap();
        for gone in [
            "hunter2",
            "DB_PASSWORD",
            "registry/app",
            "secret-ish",
            "kubectl",
            "emptyDir",
            "Ready",
        ] {
            assert!(!text.contains(gone), "{gone} kept: {text}");
        }
        let info = pod_info(&pod).expect("an addressed pod");
        assert_eq!(info.labels["app"], "web");
        assert_eq!(info.ips, vec!["10.244.1.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(info.named_ports, vec![("http".to_string(), 6, 8080)]);
    }
}
