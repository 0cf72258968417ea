//! The HTTP endpoint on `metrics_address`: liveness, readiness, and JSON
//! views of the sessions, the table and the kernel FIB for operators and
//! tests.
//!
//! `GET /healthz`, `GET /readyz`, `GET /status/peers`,
//! `GET /status/routes` (optionally `?prefix=P`), `GET /status/fib`,
//! `GET /status/bfd`, `GET /metrics` (Prometheus).

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

async fn metrics(State(app): State<AppState>) -> String {
    let fib = app.fib.as_ref().map(|f| f.lock().expect("fib status").clone());
    crate::metrics::render(&app.control, fib).await
}

async fn ready(State(app): State<AppState>) -> StatusCode {
    match app.speaker.routes(Some("0.0.0.0/32".parse().expect("literal"))).await {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
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
