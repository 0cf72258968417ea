//! A Kubernetes API server for Nodes, Pods, Namespaces and NetworkPolicies,
//! speaking the real list/watch HTTP protocol, for testing the agent's
//! watchers (no API server binary exists for these machines).
//!
//! What it serves, as kube-apiserver does:
//! - `GET /api/v1/nodes` (and `/api/v1/pods`, `/api/v1/namespaces`,
//!   `/apis/networking.k8s.io/v1/networkpolicies`): a list with
//!   `metadata.resourceVersion`;
//! - the same with `?watch=true&resourceVersion=V[&timeoutSeconds=T]
//!   [&allowWatchBookmarks=true]`: a chunked stream of JSON watch events
//!   (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`) after version V, ended
//!   after T seconds; a V older than the compaction floor gets one `ERROR`
//!   event with a 410 `Expired` Status, as etcd compaction causes;
//! - `GET /apis/apps/v1/namespaces/NS/daemonsets`: the DaemonSets, with
//!   watches as above;
//! - `GET /api/v1/nodes/NAME`: one Node, or a 404 Status;
//! - `POST /apis/events.k8s.io/v1/namespaces/NS/events` (and PATCH of one):
//!   stored, readable with [`KubeApi::events`];
//! - `GET /api/v1/namespaces/NS/pods[?labelSelector=k=v,...]` and the pods
//!   proxy `GET /api/v1/namespaces/NS/pods/POD:PORT/proxy/PATH`, which
//!   forwards to the pod's `status.podIP`.
//!
//! Test controls change Nodes (every change gets a new resourceVersion and
//! a watch event), or lose history: [`KubeApi::expire`] compacts and ends
//! every watch, so clients must relist.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Store {
    version: u64,
    nodes: BTreeMap<String, Value>,
    /// (version, object kind, event type, object) after the compaction
    /// floor.
    history: Vec<(u64, &'static str, &'static str, Value)>,
    /// Versions below this are expired (410).
    floor: u64,
    /// Bumped to end every open watch.
    epoch: u64,
    lists: u64,
    watches: u64,
    events: Vec<Value>,
    pods: BTreeMap<(String, String), Value>,
    namespaces: BTreeMap<String, Value>,
    policies: BTreeMap<(String, String), Value>,
    daemonsets: BTreeMap<(String, String), Value>,
    /// Services and EndpointSlices: (kind, namespace, name) -> object.
    services: BTreeMap<(&'static str, String, String), Value>,
}

impl Store {
    /// Every object of a kind.
    fn items(&self, kind: &str) -> Vec<Value> {
        match kind {
            "Node" => self.nodes.values().cloned().collect(),
            "Pod" => self.pods.values().cloned().collect(),
            "Namespace" => self.namespaces.values().cloned().collect(),
            "NetworkPolicy" => self.policies.values().cloned().collect(),
            "DaemonSet" => self.daemonsets.values().cloned().collect(),
            "Service" | "EndpointSlice" => self
                .services
                .iter()
                .filter(|((k, _, _), _)| *k == kind)
                .map(|(_, v)| v.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Records a change of an object: a new version and a watch event.
    fn record(&mut self, kind: &'static str, existed: bool, obj: &mut Value) {
        self.version += 1;
        obj["metadata"]["resourceVersion"] = json!(self.version.to_string());
        let event = if existed { "MODIFIED" } else { "ADDED" };
        self.history.push((self.version, kind, event, obj.clone()));
    }
}

struct Shared {
    store: Mutex<Store>,
    changed: tokio::sync::watch::Sender<()>,
}

/// A running server; stops when dropped.
pub struct KubeApi {
    shared: Arc<Shared>,
    pub address: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KubeApi {
    /// Serves on `address` from a thread of its own, inside network
    /// namespace `ns` (a full name) when given, so it also reaches the
    /// pods it proxies to there.
    pub fn start_in(ns: Option<&str>, address: &str) -> KubeApi {
        let shared = Arc::new(Shared {
            store: Mutex::new(Store {
                version: 1,
                ..Store::default()
            }),
            changed: tokio::sync::watch::channel(()).0,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route("/api/v1/nodes", get(|st, q| list_or_watch(st, q, "Node")))
            .route("/api/v1/pods", get(|st, q| list_or_watch(st, q, "Pod")))
            .route("/api/v1/namespaces", get(|st, q| list_or_watch(st, q, "Namespace")))
            .route(
                "/apis/networking.k8s.io/v1/networkpolicies",
                get(|st, q| list_or_watch(st, q, "NetworkPolicy")),
            )
            .route("/api/v1/services", get(|st, q| list_or_watch(st, q, "Service")))
            .route(
                "/apis/discovery.k8s.io/v1/endpointslices",
                get(|st, q| list_or_watch(st, q, "EndpointSlice")),
            )
            .route(
                "/apis/apps/v1/namespaces/:ns/daemonsets",
                get(|st, q| list_or_watch(st, q, "DaemonSet")),
            )
            .route("/api/v1/nodes/:name", get(get_node))
            .route(
                "/apis/events.k8s.io/v1/namespaces/:ns/events",
                axum::routing::post(post_event),
            )
            .route(
                "/apis/events.k8s.io/v1/namespaces/:ns/events/:name",
                axum::routing::patch(patch_event),
            )
            .route("/api/v1/namespaces/:ns/pods", get(list_pods))
            .route("/api/v1/namespaces/:ns/pods/:pod/proxy/*path", get(proxy_to_pod))
            .with_state(shared.clone());
        let (ns, address) = (ns.map(String::from), address.to_string());
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            if let Some(ns) = &ns {
                crate::lab::enter_namespace(ns);
            }
            let listener =
                std::net::TcpListener::bind(&address).unwrap_or_else(|e| panic!("API server {address}: {e}"));
            listener.set_nonblocking(true).expect("nonblocking listener");
            bound_tx
                .send(listener.local_addr().expect("bound"))
                .expect("bound address");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let address = bound_rx.recv().expect("the API server thread bound its port");
        KubeApi {
            shared,
            address,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// A kubeconfig file for this server (plain http, no credentials).
    pub fn write_kubeconfig(&self, path: &std::path::Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: http://{}\ncontexts:\n- name: lab\n  context:\n    cluster: lab\n    user: lab\ncurrent-context: lab\nusers:\n- name: lab\n  user: {{}}\n",
            self.address
        );
        std::fs::write(path, text).expect("kubeconfig");
    }

    fn change(&self, f: impl FnOnce(&mut Store)) {
        f(&mut self.shared.store.lock().expect("store"));
        self.shared.changed.send_replace(());
    }

    /// Adds or replaces a Node (ADDED or MODIFIED).
    pub fn apply_node(&self, mut node: Value) {
        self.change(|s| {
            s.version += 1;
            let name = node["metadata"]["name"].as_str().expect("Node name").to_string();
            node["metadata"]["resourceVersion"] = json!(s.version.to_string());
            node["metadata"]["uid"] = json!(format!("uid-{name}"));
            let kind = if s.nodes.contains_key(&name) {
                "MODIFIED"
            } else {
                "ADDED"
            };
            s.nodes.insert(name, node.clone());
            s.history.push((s.version, "Node", kind, node));
        });
    }

    /// Adds a DaemonSet (ADDED), e.g. the chart's.
    pub fn apply_daemonset(&self, namespace: &str, name: &str) {
        self.change(|s| {
            let mut ds = json!({
                "apiVersion": "apps/v1", "kind": "DaemonSet",
                "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-ds-{name}")},
                "spec": {"selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": []}}}
            });
            let existed = s.daemonsets.contains_key(&(namespace.to_string(), name.to_string()));
            s.record("DaemonSet", existed, &mut ds);
            s.daemonsets.insert((namespace.to_string(), name.to_string()), ds);
        });
    }

    /// Deletes a DaemonSet (DELETED), as `helm uninstall` does.
    pub fn delete_daemonset(&self, namespace: &str, name: &str) {
        self.change(|s| {
            if let Some(mut ds) = s.daemonsets.remove(&(namespace.to_string(), name.to_string())) {
                s.version += 1;
                ds["metadata"]["resourceVersion"] = json!(s.version.to_string());
                s.history.push((s.version, "DaemonSet", "DELETED", ds));
            }
        });
    }

    /// Deletes a Node (DELETED).
    pub fn delete_node(&self, name: &str) {
        self.change(|s| {
            if let Some(mut node) = s.nodes.remove(name) {
                s.version += 1;
                node["metadata"]["resourceVersion"] = json!(s.version.to_string());
                s.history.push((s.version, "Node", "DELETED", node));
            }
        });
    }

    /// Loses history: `f` changes the Nodes without any watch event (as if
    /// the events fell in a compacted range), every version seen so far
    /// expires, and every open watch ends. Clients get 410 Gone and must
    /// relist to see the change.
    pub fn expire(&self, f: impl FnOnce(&mut BTreeMap<String, Value>)) {
        self.change(|s| {
            f(&mut s.nodes);
            s.version += 1;
            s.floor = s.version;
            s.history.clear();
            s.epoch += 1;
        });
    }

    /// List requests served so far (each relist is one).
    pub fn lists(&self) -> u64 {
        self.shared.store.lock().expect("store").lists
    }

    /// Watch requests served so far.
    pub fn watches(&self) -> u64 {
        self.shared.store.lock().expect("store").watches
    }

    /// Adds or replaces a Pod in `namespace` (listed and proxied to; its
    /// `status.podIP` is where the proxy connects).
    pub fn apply_pod(&self, namespace: &str, mut pod: Value) {
        self.change(|s| {
            pod["metadata"]["namespace"] = json!(namespace);
            let name = pod["metadata"]["name"].as_str().expect("Pod name").to_string();
            pod["metadata"]["uid"] = json!(format!("uid-{namespace}-{name}"));
            let key = (namespace.to_string(), name);
            let existed = s.pods.contains_key(&key);
            s.record("Pod", existed, &mut pod);
            s.pods.insert(key, pod);
        });
    }

    /// Adds or replaces a Namespace.
    pub fn apply_namespace(&self, name: &str, labels: Value) {
        self.change(|s| {
            let mut ns = json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "uid": format!("uid-ns-{name}"), "labels": labels}});
            let existed = s.namespaces.contains_key(name);
            s.record("Namespace", existed, &mut ns);
            s.namespaces.insert(name.to_string(), ns);
        });
    }

    /// Adds or replaces a NetworkPolicy (its namespace from its metadata).
    pub fn apply_network_policy(&self, mut policy: Value) {
        self.change(|s| {
            let ns = policy["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string();
            let name = policy["metadata"]["name"]
                .as_str()
                .expect("NetworkPolicy name")
                .to_string();
            policy["apiVersion"] = json!("networking.k8s.io/v1");
            policy["kind"] = json!("NetworkPolicy");
            policy["metadata"]["namespace"] = json!(ns);
            policy["metadata"]["uid"] = json!(format!("uid-np-{ns}-{name}"));
            let key = (ns, name);
            let existed = s.policies.contains_key(&key);
            s.record("NetworkPolicy", existed, &mut policy);
            s.policies.insert(key, policy);
        });
    }

    /// Deletes a NetworkPolicy.
    pub fn delete_network_policy(&self, namespace: &str, name: &str) {
        self.change(|s| {
            if let Some(mut p) = s.policies.remove(&(namespace.to_string(), name.to_string())) {
                s.version += 1;
                p["metadata"]["resourceVersion"] = json!(s.version.to_string());
                s.history.push((s.version, "NetworkPolicy", "DELETED", p));
            }
        });
    }

    /// Adds or replaces a Service (`kind` "Service", core/v1) or an
    /// EndpointSlice (`kind` "EndpointSlice", discovery.k8s.io/v1) in
    /// `namespace`.
    pub fn apply_service_object(&self, kind: &'static str, namespace: &str, mut obj: Value) {
        assert!(kind == "Service" || kind == "EndpointSlice", "{kind}");
        self.change(|s| {
            let name = obj["metadata"]["name"].as_str().expect("a name").to_string();
            obj["apiVersion"] = json!(if kind == "Service" { "v1" } else { "discovery.k8s.io/v1" });
            obj["kind"] = json!(kind);
            obj["metadata"]["namespace"] = json!(namespace);
            obj["metadata"]["uid"] = json!(format!("uid-{kind}-{namespace}-{name}"));
            let key = (kind, namespace.to_string(), name);
            let existed = s.services.contains_key(&key);
            s.record(kind, existed, &mut obj);
            s.services.insert(key, obj);
        });
    }

    /// Events created or patched through the events.k8s.io API.
    pub fn events(&self) -> Vec<Value> {
        self.shared.store.lock().expect("store").events.clone()
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        // Open watches end with their epoch.
        self.change(|s| s.epoch += 1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A Node object as the kubelet and the node IPAM controller leave it.
/// Nodes `names` on one switch (namespace `sw`, bridge `br0` at
/// 10.0.0.100, the i-th node at 10.0.0.(11+i)/24 on its `eth0`) and this
/// API server on the switch at 10.0.0.100:6443; returns it with the path
/// of a kubeconfig for it.
pub fn on_switch(lab: &mut crate::Lab, names: &[&str]) -> (KubeApi, std::path::PathBuf) {
    lab.add_ns("sw");
    lab.add_bridge("sw", "br0", &["10.0.0.100/24"]);
    for (i, n) in names.iter().enumerate() {
        lab.add_ns(n);
        let addr = format!("10.0.0.{}/24", 11 + i);
        lab.link_to_bridge(n, "eth0", &[&addr], "sw", "br0", &format!("p{i}"));
    }
    let api = KubeApi::start_in(Some(&lab.ns_name("sw")), "10.0.0.100:6443");
    let kubeconfig = lab.dir().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    (api, kubeconfig)
}

impl KubeApi {
    /// Waits for an events.k8s.io/v1 Event about Node `node`, from its
    /// agent, with this reason and a note mentioning `about`; returns it.
    pub fn wait_for_event(&self, node: &str, reason: &str, about: &str) -> Value {
        let mut found = Value::Null;
        crate::wait_until(
            &format!("a {reason} Event on Node {node} about {about}"),
            crate::checks::SETTLE,
            || {
                let events = self.events();
                let hit = events.iter().find(|e| {
                    e["regarding"]["kind"] == "Node"
                        && e["regarding"]["name"] == node
                        && e["reportingController"] == "novanet-agent"
                        && e["reason"] == reason
                        && e["note"].as_str().is_some_and(|n| n.contains(about))
                });
                match hit {
                    Some(e) => {
                        found = e.clone();
                        Ok(())
                    }
                    None => Err(format!(
                        "{:?}",
                        events
                            .iter()
                            .map(|e| (e["regarding"]["name"].clone(), e["reason"].clone(), e["note"].clone()))
                            .collect::<Vec<_>>()
                    )),
                }
            },
        );
        found
    }
}

pub fn node(name: &str, internal_ip: &str, pod_cidr: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}, "annotations": {}},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {"addresses": [
            {"type": "InternalIP", "address": internal_ip},
            {"type": "Hostname", "address": name}
        ]}
    })
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()
    });
    (code, Json(body)).into_response()
}

async fn get_node(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let s = shared.store.lock().expect("store");
    match s.nodes.get(&name) {
        Some(n) => Json(n.clone()).into_response(),
        None => status(StatusCode::NOT_FOUND, "NotFound", format!("nodes \"{name}\" not found")),
    }
}

async fn list_or_watch(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    object_kind: &'static str,
) -> Response {
    let watch = q.get("watch").is_some_and(|v| v == "true" || v == "1");
    let api_version = match object_kind {
        "NetworkPolicy" => "networking.k8s.io/v1",
        "DaemonSet" => "apps/v1",
        _ => "v1",
    };
    if !watch {
        let mut s = shared.store.lock().expect("store");
        s.lists += 1;
        let body = json!({
            "kind": format!("{object_kind}List"), "apiVersion": api_version,
            "metadata": {"resourceVersion": s.version.to_string()},
            "items": s.items(object_kind)
        });
        return Json(body).into_response();
    }
    let from: u64 = q.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
    let timeout = Duration::from_secs(q.get("timeoutSeconds").and_then(|v| v.parse().ok()).unwrap_or(1800));
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(64);
    let line = |v: Value| {
        let mut b = serde_json::to_vec(&v).expect("json");
        b.push(b'\n');
        Ok(b)
    };
    let (epoch, expired, mut cursor, initial) = {
        let mut s = shared.store.lock().expect("store");
        s.watches += 1;
        let initial: Vec<Value> = if from == 0 {
            // "Any version": the current state as ADDED, then changes.
            s.items(object_kind)
        } else {
            Vec::new()
        };
        let cursor = if from == 0 { s.version } else { from };
        (s.epoch, from != 0 && from < s.floor, cursor, initial)
    };
    let mut changed = shared.changed.subscribe();
    tokio::spawn(async move {
        if expired {
            let gone = json!({"type": "ERROR", "object": {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {from}"), "reason": "Expired", "code": 410
            }});
            let _ = tx.send(line(gone)).await;
            return;
        }
        for n in initial {
            if tx.send(line(json!({"type": "ADDED", "object": n}))).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (pending, ended, version) = {
                let s = shared.store.lock().expect("store");
                let pending: Vec<(u64, &'static str, Value)> = s
                    .history
                    .iter()
                    .filter(|(v, k, _, _)| *v > cursor && *k == object_kind)
                    .map(|(v, _, e, o)| (*v, *e, o.clone()))
                    .collect();
                (pending, s.epoch != epoch, s.version)
            };
            if ended {
                return;
            }
            for (v, kind, obj) in pending {
                cursor = v;
                if tx.send(line(json!({"type": kind, "object": obj}))).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                _ = tokio::time::sleep_until(deadline) => {
                    if bookmarks {
                        let mark = json!({"type": "BOOKMARK", "object": {
                            "kind": object_kind, "apiVersion": api_version,
                            "metadata": {"resourceVersion": version.max(cursor).to_string()}
                        }});
                        let _ = tx.send(line(mark)).await;
                    }
                    return;
                }
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .expect("response")
}

async fn post_event(State(shared): State<Arc<Shared>>, Json(mut event): Json<Value>) -> Response {
    let mut s = shared.store.lock().expect("store");
    s.version += 1;
    if event["metadata"]["name"].is_null() {
        let prefix = event["metadata"]["generateName"]
            .as_str()
            .unwrap_or("event.")
            .to_string();
        event["metadata"]["name"] = json!(format!("{prefix}{}", s.version));
    }
    event["metadata"]["resourceVersion"] = json!(s.version.to_string());
    s.events.push(event.clone());
    (StatusCode::CREATED, Json(event)).into_response()
}

async fn patch_event(
    State(shared): State<Arc<Shared>>,
    Path((_, name)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    // Merge patches come as application/merge-patch+json.
    let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "patch body is not JSON".into());
    };
    let mut s = shared.store.lock().expect("store");
    let Some(e) = s.events.iter_mut().find(|e| e["metadata"]["name"] == name.as_str()) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("events \"{name}\" not found"),
        );
    };
    merge(e, &patch);
    Json(e.clone()).into_response()
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// A Pod as the DaemonSet leaves it on a node (hostNetwork: its IP is the
/// node's).
pub fn pod(name: &str, node: &str, ip: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": node, "hostNetwork": true, "containers": [{"name": "agent", "image": "novanet-agent"}]},
        "status": {"phase": "Running", "podIP": ip, "hostIP": ip}
    })
}

fn matches_selector(labels: &Value, selector: &str) -> bool {
    selector
        .split(',')
        .filter(|t| !t.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => labels[k.trim()] == v.trim().trim_start_matches('='),
            None => !labels[term.trim()].is_null(),
        })
}

async fn list_pods(
    State(shared): State<Arc<Shared>>,
    Path(ns): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let s = shared.store.lock().expect("store");
    let selector = q.get("labelSelector").cloned().unwrap_or_default();
    let items: Vec<Value> = s
        .pods
        .iter()
        .filter(|((n, _), p)| *n == ns && matches_selector(&p["metadata"]["labels"], &selector))
        .map(|(_, p)| p.clone())
        .collect();
    Json(json!({
        "kind": "PodList", "apiVersion": "v1",
        "metadata": {"resourceVersion": s.version.to_string()},
        "items": items
    }))
    .into_response()
}

async fn proxy_to_pod(
    State(shared): State<Arc<Shared>>,
    Path((ns, pod, path)): Path<(String, String, String)>,
) -> Response {
    let (name, port) = match pod.rsplit_once(':') {
        Some((n, p)) => (n.to_string(), p.parse::<u16>().unwrap_or(80)),
        None => (pod.clone(), 80),
    };
    let ip = {
        let s = shared.store.lock().expect("store");
        match s.pods.get(&(ns.clone(), name.clone())) {
            Some(p) => p["status"]["podIP"].as_str().unwrap_or_default().to_string(),
            None => return status(StatusCode::NOT_FOUND, "NotFound", format!("pods \"{name}\" not found")),
        }
    };
    let fetch = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect((ip.as_str(), port)).await?;
        conn.write_all(format!("GET /{path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
            .await?;
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).await?;
        Ok::<Vec<u8>, std::io::Error>(raw)
    };
    match tokio::time::timeout(Duration::from_secs(10), fetch).await {
        Ok(Ok(raw)) => {
            let text = String::from_utf8_lossy(&raw).to_string();
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            let code = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(502);
            (
                StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY),
                body.to_string(),
            )
                .into_response()
        }
        Ok(Err(e)) => status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            format!("error trying to reach service: {e}"),
        ),
        Err(_) => status(StatusCode::GATEWAY_TIMEOUT, "Timeout", "proxy timed out".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn get(api: &KubeApi, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(api.address).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn lists_nodes_and_pods_and_expires_old_versions() {
        let api = KubeApi::start_in(None, "127.0.0.1:0");
        api.apply_node(node("a", "10.0.0.1", "10.244.1.0/24"));
        api.apply_pod(
            "nova-system",
            pod("agent-a", "a", "127.0.0.1", json!({"app": "novanet"})),
        );
        let list = get(&api, "/api/v1/nodes");
        assert!(
            list.contains("\"NodeList\"") && list.contains("\"resourceVersion\":\"2\""),
            "{list}"
        );
        let pods = get(&api, "/api/v1/namespaces/nova-system/pods?labelSelector=app%3Dnovanet");
        assert!(pods.contains("agent-a"), "{pods}");
        let none = get(&api, "/api/v1/namespaces/nova-system/pods?labelSelector=app%3Dother");
        assert!(!none.contains("agent-a"), "{none}");
        api.expire(|_| {});
        let gone = get(&api, "/api/v1/nodes?watch=true&resourceVersion=2");
        assert!(gone.contains("\"code\":410") && gone.contains("Expired"), "{gone}");
    }
}
