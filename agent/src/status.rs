//! The status endpoints: liveness, readiness, metrics, and JSON views of
//! the sessions, the table, the kernel FIB and the datapath for operators
//! and tests.
//!
//! `GET /healthz`, `GET /readyz`, `GET /status/peers`,
//! `GET /status/routes` (`?prefix=P`, or the first `?limit=N` prefixes,
//! 1000 by default, 100000 at most), `GET /status/fib`,
//! `GET /status/bfd`, `GET /status/node`, `GET /status/datapath`
//! (`?events=drop|flow`), `GET /status/ospf`, `GET /metrics` (Prometheus).
//!
//! Every view is served on the status socket (a Unix socket, mode 0600).
//! The TCP port (`metrics_address`), which every pod can reach, serves
//! the probes, the metrics and `/status/peers` (what `novanetctl routing
//! peers --all-nodes` reads through the API server) unless
//! `status_on_tcp`. Both take a bounded number of connections at once,
//! each with a header-read timeout, a small buffer and a lifetime.

use crate::control::Control;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use novanet_bfd::transport::Bfd;
use novanet_bgp::speaker::Speaker;
use novanet_fib::FibStatus;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

/// Parses `metrics_address` (`:9102`, `0.0.0.0:9102`, `[::1]:9102`, and
/// an IPv6 address without brackets, `fd00::10:9102`, as a node's address
/// substituted into `ADDRESS:PORT` comes: the port is always last).
pub fn parse_address(s: &str) -> anyhow::Result<SocketAddr> {
    let bad = || anyhow::anyhow!("metrics_address: {s:?} is not HOST:PORT or :PORT");
    if let Some(port) = s.strip_prefix(':') {
        return Ok(SocketAddr::new(
            std::net::Ipv4Addr::UNSPECIFIED.into(),
            port.parse().map_err(|_| bad())?,
        ));
    }
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let ip: std::net::Ipv6Addr = host.parse().map_err(|_| bad())?;
    Ok(SocketAddr::new(ip.into(), port.parse().map_err(|_| bad())?))
}

/// What the handlers read.
#[derive(Clone)]
struct AppState {
    speaker: Speaker,
    fib: Option<Arc<Mutex<FibStatus>>>,
    bfd: Bfd,
    control: Control,
    enforcer: Option<Arc<crate::policy::enforcer::Enforcer>>,
    /// One walk of the table at a time: a listing runs on the speaker's
    /// core, so callers of this port cannot stack them up.
    table_walk: Arc<tokio::sync::Semaphore>,
}

#[derive(Deserialize)]
struct RouteQuery {
    prefix: Option<ipnet::IpNet>,
    /// Without `prefix`: how many prefixes (in order) at most.
    limit: Option<usize>,
}

/// Prefixes `/status/routes` lists without `?limit=`.
pub const DEFAULT_ROUTE_LIMIT: usize = 1000;
/// The most `?limit=` may ask for.
pub const MAX_ROUTE_LIMIT: usize = 100_000;

async fn peers(State(app): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::to_value(app.speaker.peers()).unwrap_or_default())
}

async fn routes(
    State(app): State<AppState>,
    Query(q): Query<RouteQuery>,
) -> Result<Json<serde_json::Value>, (StatusCode, &'static str)> {
    let unavailable = (StatusCode::SERVICE_UNAVAILABLE, "the speaker has stopped\n");
    let v = match q.prefix {
        Some(p) => app.speaker.routes(Some(p)).await.map_err(|_| unavailable)?,
        None => {
            let _walking = app.table_walk.try_acquire().map_err(|_| {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    "a listing of the table is already running: try again when it is done\n",
                )
            })?;
            let limit = q.limit.unwrap_or(DEFAULT_ROUTE_LIMIT).min(MAX_ROUTE_LIMIT);
            app.speaker.first_routes(limit).await.map_err(|_| unavailable)?
        }
    };
    Ok(Json(serde_json::to_value(v).unwrap_or_default()))
}

async fn fib_status(State(app): State<AppState>) -> Json<serde_json::Value> {
    let status = match &app.fib {
        Some(f) => f.lock().expect("fib status").clone(),
        None => FibStatus::default(),
    };
    Json(serde_json::to_value(status).unwrap_or_default())
}

#[derive(Deserialize)]
struct DatapathQuery {
    /// `drop` or `flow`: the recent events of that kind.
    events: Option<String>,
}

/// The identity policy: identities, isolation, counters, attached
/// interfaces and the recent events.
async fn datapath_status(
    State(app): State<AppState>,
    Query(q): Query<DatapathQuery>,
) -> Result<Json<serde_json::Value>, (StatusCode, &'static str)> {
    use novanet_ebpf::maps::{Direction, EventKind};
    let Some(e) = &app.enforcer else {
        return Err((StatusCode::NOT_FOUND, "identity policy is off (datapath.enabled)\n"));
    };
    let kind = match q.events.as_deref() {
        Some("drop") => Some(EventKind::Drop),
        Some("flow") => Some(EventKind::Flow),
        _ => None,
    };
    let view = e.view();
    let name = |id: u32| e.identity_name(id);
    let events: Vec<serde_json::Value> = e
        .recent(kind)
        .iter()
        .map(|ev| {
            serde_json::json!({
                "kind": if ev.kind == EventKind::Drop { "drop" } else { "flow" },
                "direction": if ev.direction == Direction::Ingress { "ingress" } else { "egress" },
                "src": ev.src, "dst": ev.dst, "sport": ev.sport, "dport": ev.dport, "protocol": ev.protocol,
                "src_identity": ev.src_identity, "dst_identity": ev.dst_identity,
                "src_name": name(ev.src_identity), "dst_name": name(ev.dst_identity),
                "timestamp_ns": ev.timestamp_ns,
            })
        })
        .collect();
    let c = e.counters();
    Ok(Json(serde_json::json!({
        "identities": view.identities.iter().map(|(id, k)| serde_json::json!({
            "identity": id, "namespace": k.namespace, "labels": k.labels,
            "ingress_isolated": view.ingress_isolated.contains(id),
            "egress_isolated": view.egress_isolated.contains(id),
        })).collect::<Vec<_>>(),
        "policies": view.policies,
        "ingress_entries": view.ingress_entries,
        "egress_entries": view.egress_entries,
        "warnings": view.warnings,
        "attached": e.attached(),
        "counters": {
            "ingress_allow": c.ingress_allow, "ingress_deny": c.ingress_deny,
            "egress_allow": c.egress_allow, "egress_deny": c.egress_deny, "events_lost": c.events_lost,
            "spoofed": c.spoofed,
        },
        "events": events,
    })))
}

async fn bfd_sessions(State(app): State<AppState>) -> Json<serde_json::Value> {
    let sessions = app.bfd.sessions().await;
    Json(serde_json::to_value(sessions).unwrap_or_default())
}

/// Every source's peers with their outcome: applied, failed and why, or
/// held by another source.
async fn peer_sources(State(app): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::Value::Array(app.control.peers.outcomes.borrow().view()))
}

async fn node(State(app): State<AppState>) -> Json<serde_json::Value> {
    let cfg = app.speaker.config();
    Json(serde_json::json!({
        "local_as": cfg.local_as,
        "router_id": cfg.router_id,
        "asn_collisions": app.control.asn_collisions.lock().expect("collisions").iter()
            .map(|(asn, nodes)| serde_json::json!({"asn": asn, "nodes": nodes}))
            .collect::<Vec<_>>(),
    }))
}

/// The OSPF mode: sidecar, interfaces, neighbors, injected prefixes.
async fn ospf_status(State(app): State<AppState>) -> Result<Json<serde_json::Value>, (StatusCode, &'static str)> {
    match app.control.ospf.as_ref() {
        Some(o) => Ok(Json(serde_json::to_value(o.status()).unwrap_or_default())),
        None => Err((StatusCode::NOT_FOUND, "OSPF is off (routing.protocol is bgp)\n")),
    }
}

async fn metrics(State(app): State<AppState>) -> String {
    let fib = app.fib.as_ref().map(|f| f.lock().expect("fib status").clone());
    let policy = app.enforcer.as_ref().map(|e| e.counters());
    crate::metrics::render(&app.control, fib, policy).await
}

/// Ready while the speaker answers (promptly) and the FIB writer runs and
/// is not stuck in kernel work; not ready once shutdown has begun.
async fn ready(State(app): State<AppState>) -> (StatusCode, String) {
    if app.control.stopping.load(std::sync::atomic::Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: shutting down".into());
    }
    if let Some(problem) = app
        .fib
        .as_ref()
        .and_then(|f| f.lock().expect("fib status").writer_problem_now())
    {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {problem}"));
    }
    if let Some(why) = app.enforcer.as_ref().and_then(|e| e.unsynced()) {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}"));
    }
    if let Some(o) = app.control.ospf.as_ref().map(|o| o.status()).filter(|o| !o.connected) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the ospfd sidecar does not answer on {}", o.socket_dir),
        );
    }
    let probe = app.speaker.routes(Some("0.0.0.0/32".parse().expect("literal")));
    match tokio::time::timeout(std::time::Duration::from_secs(1), probe).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready".into()),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the BGP speaker is not answering".into(),
        ),
    }
}

/// Where the endpoints listen.
pub struct Listeners {
    /// `metrics_address`.
    pub tcp: SocketAddr,
    /// Every view there too (`status_on_tcp`).
    pub all_on_tcp: bool,
    /// The status socket.
    pub socket: std::path::PathBuf,
}

/// What the handlers read.
pub struct Sources {
    pub speaker: Speaker,
    pub fib: Option<Arc<Mutex<FibStatus>>>,
    pub bfd: Bfd,
    pub control: Control,
    pub enforcer: Option<Arc<crate::policy::enforcer::Enforcer>>,
}

/// Connections served at once on the TCP port, and on the socket.
pub const TCP_CONNECTIONS: usize = 64;
pub const SOCKET_CONNECTIONS: usize = 16;
/// Connections served at once from one address on the TCP port: a pod
/// holding connections open cannot starve the kubelet's probes.
pub const CONNECTIONS_PER_ADDRESS: usize = 8;
/// How long a client has to send a request's headers.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a connection may last.
pub const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);
/// The most a connection's read buffer holds (headers included).
const READ_BUFFER: usize = 16 * 1024;

/// Serves the endpoints until the task is dropped.
pub async fn serve(at: Listeners, from: Sources) -> anyhow::Result<()> {
    let state = AppState {
        speaker: from.speaker,
        fib: from.fib,
        bfd: from.bfd,
        control: from.control,
        enforcer: from.enforcer,
        table_walk: Arc::new(tokio::sync::Semaphore::new(1)),
    };
    let public = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/status/peers", get(peers));
    let all = public
        .clone()
        .route("/status/routes", get(routes))
        .route("/status/fib", get(fib_status))
        .route("/status/datapath", get(datapath_status))
        .route("/status/bfd", get(bfd_sessions))
        .route("/status/peer-sources", get(peer_sources))
        .route("/status/ospf", get(ospf_status))
        .route("/status/node", get(node))
        .with_state(state.clone());
    let public = public.with_state(state);
    let tcp = tokio::net::TcpListener::bind(at.tcp)
        .await
        .map_err(|e| anyhow::anyhow!("metrics_address {}: {e}", at.tcp))?;
    let path = &at.socket;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("status socket directory {}: {e}", dir.display()))?;
    }
    if path.exists() {
        std::fs::remove_file(path).map_err(|e| anyhow::anyhow!("stale status socket {}: {e}", path.display()))?;
    }
    let socket =
        crate::api::host::bind_private(path).map_err(|e| anyhow::anyhow!("status socket {}: {e}", path.display()))?;
    let on_tcp = if at.all_on_tcp { all.clone() } else { public };
    tokio::select! {
        r = accept_loop(tcp, on_tcp, TCP_CONNECTIONS) => r,
        r = accept_loop(socket, all, SOCKET_CONNECTIONS) => r,
    }
}

/// A listener of either kind; a TCP connection says where it comes from.
trait Accept {
    type Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl std::future::Future<Output = std::io::Result<(Self::Stream, Option<IpAddr>)>> + Send;
}

impl Accept for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept(&self) -> std::io::Result<(Self::Stream, Option<IpAddr>)> {
        tokio::net::TcpListener::accept(self)
            .await
            .map(|(s, from)| (s, Some(from.ip().to_canonical())))
    }
}

impl Accept for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn accept(&self) -> std::io::Result<(Self::Stream, Option<IpAddr>)> {
        tokio::net::UnixListener::accept(self).await.map(|(s, _)| (s, None))
    }
}

/// Open connections by source address.
#[derive(Default)]
struct PerAddress(Mutex<std::collections::HashMap<IpAddr, usize>>);

impl PerAddress {
    fn take(&self, from: IpAddr) -> bool {
        let mut open = self.0.lock().expect("connections");
        let n = open.entry(from).or_default();
        if *n >= CONNECTIONS_PER_ADDRESS {
            return false;
        }
        *n += 1;
        true
    }

    fn give_back(&self, from: IpAddr) {
        let mut open = self.0.lock().expect("connections");
        if let Some(n) = open.get_mut(&from) {
            *n -= 1;
            if *n == 0 {
                open.remove(&from);
            }
        }
    }
}

/// Serves HTTP/1 connections with at most `limit` open at once, and
/// [`CONNECTIONS_PER_ADDRESS`] from one address (one more is closed at
/// once), each with [`HEADER_TIMEOUT`], [`READ_BUFFER`] and
/// [`CONNECTION_LIFETIME`].
async fn accept_loop<L: Accept>(listener: L, app: Router, limit: usize) -> anyhow::Result<()> {
    let open = Arc::new(tokio::sync::Semaphore::new(limit));
    let per_address = Arc::new(PerAddress::default());
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors and the like: the next accept may do.
                tracing::debug!(error = %e, "status connection not accepted");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::debug!(limit, "status connection refused: too many open");
            continue;
        };
        if from.is_some_and(|a| !per_address.take(a)) {
            tracing::debug!(?from, "status connection refused: too many open from one address");
            continue;
        }
        let per_address = per_address.clone();
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(READ_BUFFER)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
            if let Some(a) = from {
                per_address.give_back(a);
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::parse_address;

    #[test]
    fn status_addresses_in_every_form_the_chart_and_users_give() {
        for (text, want) in [
            (":9102", "0.0.0.0:9102"),
            ("10.0.0.10:9103", "10.0.0.10:9103"),
            ("[fd00::10]:9103", "[fd00::10]:9103"),
            ("fd00::10:9103", "[fd00::10]:9103"),
        ] {
            assert_eq!(parse_address(text).unwrap().to_string(), want, "{text}");
        }
        for bad in ["9102", "10.0.0.10", "node:9102", ":http", "$(HOST_IP):9103"] {
            let e = parse_address(bad).unwrap_err().to_string();
            assert!(e.contains("metrics_address"), "{bad}: {e}");
        }
    }
}
