//! `GET /api/status`: the gateway's state as JSON, on the same listener as `/mcp`, for
//! operators and `switchboard status`.
//!
//! It is read-only and carries no secrets (upstream names, states, counters, and the last
//! error message of a failing health check, in which database URLs are already masked), but it
//! sits behind the same `Host`/`Origin` checks as the MCP routes, so a web page cannot read it
//! through DNS rebinding.

use std::sync::Arc;

use axum::{Json, Router, extract::State, routing::get};
use serde::Serialize;
use switchboard_transport::guard::{HostOriginPolicy, host_origin_guard};

use crate::gateway::{Gateway, UpstreamStatus};

/// The path of the status document.
pub const STATUS_PATH: &str = "/api/status";

/// The whole status document.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayStatus {
    pub version: &'static str,
    /// Tools in the last built catalog.
    pub tools: usize,
    pub upstreams: Vec<UpstreamStatus>,
    /// Configuration reloads since start.
    pub reloads: crate::gateway::ReloadStats,
    /// The upstreams that need attention, and why (empty when all is well).
    pub problems: Vec<Problem>,
    /// Tasks alive on the gateway's tokio runtime (also `switchboard_runtime_alive_tasks`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_alive_tasks: Option<usize>,
}

/// An upstream that needs attention.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub upstream: String,
    pub reason: String,
}

/// Enabled upstreams that are degraded or unhealthy, or whose circuit is not closed.
fn problems(upstreams: &[UpstreamStatus]) -> Vec<Problem> {
    let mut out = Vec::new();
    for u in upstreams.iter().filter(|u| u.enabled) {
        let health = u.health.state.as_str();
        if matches!(health, "degraded" | "unhealthy") {
            out.push(Problem {
                upstream: u.name.clone(),
                reason: match &u.health.last_error {
                    Some(error) => format!("{health}: {error}"),
                    None => health.to_string(),
                },
            });
        }
        if u.circuit != "closed" {
            out.push(Problem {
                upstream: u.name.clone(),
                reason: format!("circuit {}", u.circuit),
            });
        }
    }
    out
}

impl GatewayStatus {
    pub fn of(gateway: &Gateway) -> GatewayStatus {
        let upstreams = gateway.status();
        GatewayStatus {
            version: env!("CARGO_PKG_VERSION"),
            tools: gateway.cached_catalog().map(|c| c.tools.len()).unwrap_or(0),
            problems: problems(&upstreams),
            upstreams,
            reloads: gateway.reload_stats(),
            runtime_alive_tasks: crate::telemetry::runtime_alive_tasks(),
        }
    }
}

async fn status(State(gateway): State<Arc<Gateway>>) -> Json<GatewayStatus> {
    Json(GatewayStatus::of(&gateway))
}

/// The `/api/status` route, guarded by `policy` (use the MCP routes' `Host`/`Origin` lists).
pub fn router(gateway: Arc<Gateway>, policy: HostOriginPolicy) -> Router {
    Router::new()
        .route(STATUS_PATH, get(status))
        .with_state(gateway)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(policy),
            host_origin_guard,
        ))
}
