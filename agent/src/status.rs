//! The HTTP endpoint on `metrics_address`: liveness, readiness, and JSON
//! views of the sessions, the table and the kernel FIB for operators and
//! tests.
//!
//! `GET /healthz`, `GET /readyz`, `GET /status/peers`,
//! `GET /status/routes` (`?prefix=P`, or the first `?limit=N` prefixes,
//! 1000 by default, 100000 at most), `GET /status/fib`,
//! `GET /status/bfd`, `GET /status/node`, `GET /status/datapath`
//! (`?events=drop|flow`), `GET /status/ospf`, `GET /metrics` (Prometheus).

use crate::control::Control;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use novanet_bfd::transport::Bfd;
use novanet_bgp::speaker::Speaker;
use novanet_fib::FibStatus;
use serde::Deserialize;
use std::net::SocketAddr;
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

/// Serves the endpoint until the task is dropped.
pub async fn serve(
    addr: SocketAddr,
    speaker: Speaker,
    fib: Option<Arc<Mutex<FibStatus>>>,
    bfd: Bfd,
    control: Control,
    enforcer: Option<Arc<crate::policy::enforcer::Enforcer>>,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/status/peers", get(peers))
        .route("/status/routes", get(routes))
        .route("/status/fib", get(fib_status))
        .route("/status/datapath", get(datapath_status))
        .route("/status/bfd", get(bfd_sessions))
        .route("/status/peer-sources", get(peer_sources))
        .route("/status/ospf", get(ospf_status))
        .route("/metrics", get(metrics))
        .route("/status/node", get(node))
        .with_state(AppState {
            speaker,
            fib,
            bfd,
            control,
            enforcer,
            table_walk: Arc::new(tokio::sync::Semaphore::new(1)),
        });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("metrics_address {addr}: {e}"))?;
    axum::serve(listener, app).await?;
    Ok(())
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
