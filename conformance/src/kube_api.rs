//! A Kubernetes API server for Nodes, speaking the real list/watch HTTP
//! protocol, for testing the agent's Node watcher (no API server binary
//! exists for these machines).
//!
//! What it serves, as kube-apiserver does:
//! - `GET /api/v1/nodes`: a NodeList with `metadata.resourceVersion`;
//! - `GET /api/v1/nodes?watch=true&resourceVersion=V[&timeoutSeconds=T]
//!   [&allowWatchBookmarks=true]`: a chunked stream of JSON watch events
//!   (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`) after version V, ended
//!   after T seconds; a V older than the compaction floor gets one `ERROR`
//!   event with a 410 `Expired` Status, as etcd compaction causes;
//! - `GET /api/v1/nodes/NAME`: one Node, or a 404 Status;
//! - `POST /apis/events.k8s.io/v1/namespaces/NS/events` (and PATCH of one):
//!   stored, readable with [`KubeApi::events`].
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
    /// (version, event type, object) after the compaction floor.
    history: Vec<(u64, &'static str, Value)>,
    /// Versions below this are expired (410).
    floor: u64,
    /// Bumped to end every open watch.
    epoch: u64,
    lists: u64,
    watches: u64,
    events: Vec<Value>,
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
    /// Serves on `listener` (for example one bound inside a lab namespace
    /// with [`crate::in_namespace`]) from a thread of its own.
    pub fn serve(listener: std::net::TcpListener) -> KubeApi {
        let address = listener.local_addr().expect("bound listener");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let shared = Arc::new(Shared {
            store: Mutex::new(Store {
                version: 1,
                ..Store::default()
            }),
            changed: tokio::sync::watch::channel(()).0,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route("/api/v1/nodes", get(list_or_watch_nodes))
            .route("/api/v1/nodes/:name", get(get_node))
            .route(
                "/apis/events.k8s.io/v1/namespaces/:ns/events",
                axum::routing::post(post_event),
            )
            .route(
                "/apis/events.k8s.io/v1/namespaces/:ns/events/:name",
                axum::routing::patch(patch_event),
            )
            .with_state(shared.clone());
        let thread = std::thread::spawn(move || {
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
            s.history.push((s.version, kind, node));
        });
    }

    /// Deletes a Node (DELETED).
    pub fn delete_node(&self, name: &str) {
        self.change(|s| {
            if let Some(mut node) = s.nodes.remove(name) {
                s.version += 1;
                node["metadata"]["resourceVersion"] = json!(s.version.to_string());
                s.history.push((s.version, "DELETED", node));
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

async fn list_or_watch_nodes(State(shared): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let watch = q.get("watch").is_some_and(|v| v == "true" || v == "1");
    if !watch {
        let mut s = shared.store.lock().expect("store");
        s.lists += 1;
        let body = json!({
            "kind": "NodeList", "apiVersion": "v1",
            "metadata": {"resourceVersion": s.version.to_string()},
            "items": s.nodes.values().cloned().collect::<Vec<_>>()
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
            s.nodes.values().cloned().collect()
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
                let pending: Vec<(u64, &'static str, Value)> =
                    s.history.iter().filter(|(v, _, _)| *v > cursor).cloned().collect();
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
                            "kind": "Node", "apiVersion": "v1",
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
