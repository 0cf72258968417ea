//! The HTTP endpoint on `metrics_address`: liveness, readiness, and JSON
//! views of the sessions and the table for operators and tests.
//!
//! `GET /healthz`, `GET /readyz`, `GET /status/peers`,
//! `GET /status/routes` (optionally `?prefix=P`).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use novanet_bgp::speaker::Speaker;
use serde::Deserialize;
use std::net::SocketAddr;

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

#[derive(Deserialize)]
struct RouteQuery {
    prefix: Option<ipnet::IpNet>,
}

async fn peers(State(speaker): State<Speaker>) -> Json<serde_json::Value> {
    Json(serde_json::to_value(speaker.peers()).unwrap_or_default())
}

async fn routes(
    State(speaker): State<Speaker>,
    Query(q): Query<RouteQuery>,
) -> Result<Json<serde_json::Value>, StatusCode> {
    let v = speaker
        .routes(q.prefix)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(Json(serde_json::to_value(v).unwrap_or_default()))
}

async fn ready(State(speaker): State<Speaker>) -> StatusCode {
    match speaker.routes(Some("0.0.0.0/32".parse().expect("literal"))).await {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Serves the endpoint until the task is dropped.
pub async fn serve(addr: SocketAddr, speaker: Speaker) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/status/peers", get(peers))
        .route("/status/routes", get(routes))
        .with_state(speaker);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("metrics_address {addr}: {e}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}
