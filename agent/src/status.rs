//! The HTTP endpoint on `metrics_address`: liveness, readiness, and JSON
//! views of the sessions, the table and the kernel FIB for operators and
//! tests.
//!
//! `GET /healthz`, `GET /readyz`, `GET /status/peers`,
//! `GET /status/routes` (optionally `?prefix=P`), `GET /status/fib`,
//! `GET /status/bfd`, `GET /status/node`, `GET /metrics` (Prometheus).

use crate::control::Control;
use crate::fib::FibStatus;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use novanet_bfd::transport::Bfd;
use novanet_bgp::speaker::Speaker;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Parses `metrics_address` (`:9102`, `0.0.0.0:9102`, `[::1]:9102`).
pub fn parse_address(s: &str) -> anyhow::Result<SocketAddr> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .map_err(|_| anyhow::anyhow!("metrics_address: {s:?} is not HOST:PORT or :PORT"))
}

/// What the handlers read.
#[derive(Clone)]
struct AppState {
    speaker: Speaker,
    fib: Option<Arc<Mutex<FibStatus>>>,
    bfd: Bfd,
    control: Control,
}

#[derive(Deserialize)]
struct RouteQuery {
    prefix: Option<ipnet::IpNet>,
}

async fn peers(State(app): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::to_value(app.speaker.peers()).unwrap_or_default())
}

async fn routes(
    State(app): State<AppState>,
    Query(q): Query<RouteQuery>,
) -> Result<Json<serde_json::Value>, StatusCode> {
    let v = app
        .speaker
        .routes(q.prefix)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(Json(serde_json::to_value(v).unwrap_or_default()))
}

async fn fib_status(State(app): State<AppState>) -> Json<serde_json::Value> {
    let status = match &app.fib {
        Some(f) => f.lock().expect("fib status").clone(),
        None => FibStatus::default(),
    };
    Json(serde_json::to_value(status).unwrap_or_default())
}

async fn bfd_sessions(State(app): State<AppState>) -> Json<serde_json::Value> {
    let sessions = app.bfd.sessions().await;
    Json(serde_json::to_value(sessions).unwrap_or_default())
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

async fn metrics(State(app): State<AppState>) -> String {
    let fib = app.fib.as_ref().map(|f| f.lock().expect("fib status").clone());
    crate::metrics::render(&app.control, fib).await
}

/// Ready while the speaker answers (promptly) and the FIB writer has no
/// unresolved error; not ready once shutdown has begun.
async fn ready(State(app): State<AppState>) -> (StatusCode, &'static str) {
    if app.control.stopping.load(std::sync::atomic::Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: shutting down");
    }
    let probe = app.speaker.routes(Some("0.0.0.0/32".parse().expect("literal")));
    match tokio::time::timeout(std::time::Duration::from_secs(1), probe).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready"),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the BGP speaker is not answering",
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
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/status/peers", get(peers))
        .route("/status/routes", get(routes))
        .route("/status/fib", get(fib_status))
        .route("/status/bfd", get(bfd_sessions))
        .route("/metrics", get(metrics))
        .route("/status/node", get(node))
        .with_state(AppState {
            speaker,
            fib,
            bfd,
            control,
        });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("metrics_address {addr}: {e}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}
