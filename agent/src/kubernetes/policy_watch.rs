//! The watches identity policy needs: every Pod (address, namespace,
//! labels, container ports), every Namespace (labels, for
//! namespaceSelector), every NetworkPolicy, and every Service and
//! EndpointSlice (cluster addresses, ports and backends: a connection to a
//! Service is judged by its backends), each a kube-runtime watcher behind
//! a reflector store that keeps only those fields.
//! Nothing is handed to the enforcer until all of them have listed: the
//! pinned maps keep what the previous agent wrote (across a restart, and
//! while the API server is away) rather than a partial cluster, where a
//! policy without its pods or namespaces would open what it denies. From
//! then on, whenever one of them changes, the cluster is taken from the
//! three stores as a whole and handed to the enforcer (at most every
//! 100 ms). A relist replaces a store only when it is complete.

use crate::policy::compile::{protocol_number, PodInfo, ServiceInfo};
use crate::policy::enforcer::Enforcer;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
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
        let mut failures = super::watch_failures::WatchFailures::default();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Init) | Ok(watcher::Event::InitApply(_)) => {}
                Ok(_) => {
                    failures.recovered(what);
                    changed.notify_one();
                }
                Err(e) => failures.report(&e, what, "relisting; the maps stay"),
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

/// A Service keeps its cluster addresses, type and ports.
fn strip_service(s: &mut Service) {
    strip_metadata(&mut s.metadata);
    s.status = None;
    if let Some(spec) = s.spec.take() {
        s.spec = Some(k8s_openapi::api::core::v1::ServiceSpec {
            cluster_ip: spec.cluster_ip,
            cluster_ips: spec.cluster_ips,
            ports: spec.ports,
            type_: spec.type_,
            ..Default::default()
        });
    }
}

/// An EndpointSlice keeps its Service's label, its ports and its
/// endpoints' addresses.
fn strip_endpoint_slice(e: &mut EndpointSlice) {
    strip_metadata(&mut e.metadata);
    for ep in e.endpoints.iter_mut().flatten() {
        *ep = k8s_openapi::api::discovery::v1::Endpoint {
            addresses: std::mem::take(&mut ep.addresses),
            ..Default::default()
        };
    }
}

/// The Services with cluster addresses, each port with the backends its
/// EndpointSlices give (the slice port of the same name and protocol).
fn service_infos(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Vec<ServiceInfo> {
    let mut out: Vec<ServiceInfo> = services
        .iter()
        .filter_map(|s| {
            let spec = s.spec.as_ref()?;
            if spec.type_.as_deref() == Some("ExternalName") {
                return None;
            }
            let cluster_ips: Vec<IpAddr> = spec
                .cluster_ips
                .iter()
                .flatten()
                .chain(spec.cluster_ip.iter())
                .filter_map(|ip| ip.parse().ok())
                .collect::<std::collections::BTreeSet<IpAddr>>()
                .into_iter()
                .collect();
            if cluster_ips.is_empty() {
                return None;
            }
            let namespace = s.metadata.namespace.clone().unwrap_or_default();
            let name = s.metadata.name.clone().unwrap_or_default();
            let own: Vec<&EndpointSlice> = slices
                .iter()
                .filter(|e| {
                    e.metadata.namespace.as_deref() == Some(namespace.as_str())
                        && e.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("kubernetes.io/service-name"))
                            == Some(&name)
                })
                .map(|e| &**e)
                .collect();
            let ports = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    let proto = protocol_number(p.protocol.as_deref())?;
                    let port = u16::try_from(p.port).ok()?;
                    let name = p.name.clone().unwrap_or_default();
                    let mut backends = Vec::new();
                    for slice in &own {
                        let target = slice.ports.iter().flatten().find(|sp| {
                            sp.name.clone().unwrap_or_default() == name
                                && protocol_number(sp.protocol.as_deref()) == Some(proto)
                        });
                        let Some(target) = target.and_then(|t| t.port).and_then(|t| u16::try_from(t).ok()) else {
                            continue;
                        };
                        for ep in slice.endpoints.iter().flatten() {
                            backends.extend(ep.addresses.iter().filter_map(|a| a.parse().ok()).map(|a| (a, target)));
                        }
                    }
                    backends.sort();
                    backends.dedup();
                    Some((proto, port, backends))
                })
                .collect();
            Some(ServiceInfo {
                namespace,
                name,
                cluster_ips,
                ports,
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
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
            let proto = protocol_number(p.protocol.as_deref())?;
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
        Api::<NetworkPolicy>::all(client.clone()),
        "NetworkPolicy",
        changed.clone(),
        strip_policy,
    );
    let services = watch(
        Api::<Service>::all(client.clone()),
        "Service",
        changed.clone(),
        strip_service,
    );
    let slices = watch(
        Api::<EndpointSlice>::all(client),
        "EndpointSlice",
        changed.clone(),
        strip_endpoint_slice,
    );
    enforcer.await_watches();
    tokio::spawn(async move {
        let listed = async {
            pods.wait_until_ready().await?;
            namespaces.wait_until_ready().await?;
            policies.wait_until_ready().await?;
            services.wait_until_ready().await?;
            slices.wait_until_ready().await
        };
        if listed.await.is_err() {
            return;
        }
        tracing::info!(
            "Pods, Namespaces, NetworkPolicies, Services and EndpointSlices listed: writing the policy maps"
        );
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
            let svcs = service_infos(&services.state(), &slices.state());
            enforcer.update(|c| {
                c.pods = pods;
                c.namespaces = ns;
                c.policies = pols;
                c.services = svcs;
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

    #[test]
    fn a_service_port_takes_its_backends_from_the_slice_port_of_its_name() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "prod", "annotations": {"a": "b"}},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00::10"],
                     "selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "web"},
                               {"name": "dns", "port": 53, "protocol": "UDP"}]}
        }))
        .unwrap();
        let slice = |name: &str, ns: &str, service: &str, addrs: &[&str]| -> EndpointSlice {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": service}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}],
                "endpoints": addrs.iter().map(|a| serde_json::json!({"addresses": [a], "nodeName": "n1",
                    "conditions": {"ready": true}})).collect::<Vec<_>>()
            }))
            .unwrap()
        };
        let mut slices = vec![
            slice("web-1", "prod", "web", &["10.244.1.5"]),
            slice("web-2", "prod", "web", &["10.244.2.7", "10.244.1.5"]),
            slice("web-1", "dev", "web", &["10.244.3.3"]),
            slice("api-1", "prod", "api", &["10.244.3.4"]),
        ];
        let mut svc = svc;
        strip_service(&mut svc);
        for s in &mut slices {
            strip_endpoint_slice(s);
        }
        assert!(svc.metadata.annotations.is_none());
        assert!(
            svc.spec.as_ref().unwrap().selector.is_none(),
            "only what policy reads is kept"
        );
        let infos = service_infos(&[Arc::new(svc)], &slices.into_iter().map(Arc::new).collect::<Vec<_>>());
        assert_eq!(infos.len(), 1);
        let web = &infos[0];
        assert_eq!(web.cluster_ips.len(), 2);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            web.ports,
            vec![
                (6, 80, vec![(ip("10.244.1.5"), 8080), (ip("10.244.2.7"), 8080)]),
                (17, 53, vec![(ip("10.244.1.5"), 5353), (ip("10.244.2.7"), 5353)]),
            ]
        );
    }
}
