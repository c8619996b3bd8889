//! The operator's HTTP surface beside `/mcp`: the web dashboard at `/`, health probes,
//! Prometheus metrics and the live call stream.
//!
//! | route | what | auth (with `[security.auth]`) |
//! |---|---|---|
//! | `GET /` and `/dashboard/*` | the dashboard: static HTML, CSS and JS embedded in the binary | public (holds no data; it asks for a token) |
//! | `GET /healthz` | 200 while the process serves | public |
//! | `GET /readyz` | 200 when at least one upstream answers, else 503 with a JSON reason | public |
//! | `GET /metrics` | Prometheus/OpenMetrics text ([`crate::telemetry`]) | like `/api/status` (`protect_status`) |
//! | `GET /api/calls/stream` | server-sent events, one per finished `tools/call` | required |
//! | `POST /api/cache/invalidate` | drop cached results (`{"upstream"?, "tool"?}`) | required, not anonymous |
//!
//! The page is plain HTML+CSS+JS with no external resources, so it works offline and under a
//! strict network policy. Its API calls and its "try it" `tools/call` (a POST to `/mcp`) come
//! from the gateway's own origin, which [`allow_same_origin`] lets through the `Origin` checks
//! while every other browser origin stays refused. Every route sits behind the same
//! `Host`/`Origin` guard as `/mcp`.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Extension, Json, Router,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{get, post},
};
use serde::Deserialize;
use switchboard_transport::guard::{HostOriginPolicy, host_origin_guard};
use tokio::sync::broadcast::error::RecvError;

use crate::{auth::Identity, gateway::Gateway, telemetry::is_serving};

pub const HEALTHZ_PATH: &str = "/healthz";
pub const READYZ_PATH: &str = "/readyz";
pub const METRICS_PATH: &str = "/metrics";
pub const CALLS_STREAM_PATH: &str = "/api/calls/stream";
pub const CACHE_INVALIDATE_PATH: &str = "/api/cache/invalidate";
/// The dashboard's static assets live under this prefix.
pub const ASSETS_PREFIX: &str = "/dashboard/";

/// SSE keep-alive comment interval of `/api/calls/stream`, so idle proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");

/// Paths anyone may fetch even when authentication is on (see the module docs).
pub fn is_public_path(path: &str) -> bool {
    path == "/" || path == HEALTHZ_PATH || path == READYZ_PATH || path.starts_with(ASSETS_PREFIX)
}

/// The dashboard's routes, guarded by `policy` (use the MCP routes' `Host`/`Origin` lists).
pub fn router(gateway: Arc<Gateway>, policy: HostOriginPolicy) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/dashboard/app.js", get(app_js))
        .route("/dashboard/app.css", get(app_css))
        .route(HEALTHZ_PATH, get(healthz))
        .route(READYZ_PATH, get(readyz))
        .route(METRICS_PATH, get(metrics))
        .route(CALLS_STREAM_PATH, get(calls_stream))
        .route(CACHE_INVALIDATE_PATH, post(invalidate_cache))
        .with_state(gateway)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(policy),
            host_origin_guard,
        ))
}

/// Lets requests from the gateway's own origin through the `Origin` checks of every route
/// (rmcp's on `/mcp` included): an `Origin` of `http://<Host>` or `https://<Host>` is removed
/// before the checks run, when `Host` itself passes the `Host` allow-list. A page can only
/// send such an origin if the browser loaded it from this gateway under an allowed host name,
/// so DNS rebinding (which needs a foreign host name) stays refused. With an empty host
/// allow-list (any host accepted) nothing is relaxed.
pub fn allow_same_origin(router: Router, policy: HostOriginPolicy) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        Arc::new(policy),
        same_origin,
    ))
}

async fn same_origin(
    State(policy): State<Arc<HostOriginPolicy>>,
    mut request: Request,
    next: Next,
) -> Response {
    if is_same_origin(&policy, request.uri(), request.headers()) {
        request.headers_mut().remove(header::ORIGIN);
    }
    next.run(request).await
}

fn is_same_origin(policy: &HostOriginPolicy, uri: &axum::http::Uri, headers: &HeaderMap) -> bool {
    if policy.allowed_hosts.is_empty() {
        return false;
    }
    let (Some(origin), Some(host)) = (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    let matches = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|rest| rest.eq_ignore_ascii_case(host));
    if !matches {
        return false;
    }
    // The Host must pass on its own (checked without the Origin).
    let mut host_only = HeaderMap::new();
    if let Some(value) = headers.get(header::HOST) {
        host_only.insert(header::HOST, value.clone());
    }
    policy.check(uri, &host_only).is_ok()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; connect-src 'self'; frame-ancestors 'none'",
                ),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(gateway): State<Arc<Gateway>>) -> Response {
    let statuses = gateway.status();
    let upstreams: serde_json::Map<String, serde_json::Value> = statuses
        .iter()
        .map(|s| (s.name.clone(), s.health.state.as_str().into()))
        .collect();
    let serving = statuses
        .iter()
        .filter(|s| is_serving(s.health.state))
        .count();
    if serving > 0 {
        return Json(serde_json::json!({ "ready": true, "upstreams": upstreams })).into_response();
    }
    let reason = if statuses.is_empty() {
        "no upstreams are configured"
    } else {
        "no upstream is healthy"
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({ "ready": false, "reason": reason, "upstreams": upstreams })),
    )
        .into_response()
}

async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    match gateway.observer().render(&gateway) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(err) => {
            tracing::error!(%err, "could not encode the metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn calls_stream(State(gateway): State<Arc<Gateway>>) -> Response {
    let observer = gateway.observer();
    let Some((receiver, slot)) = observer.subscribe_calls() else {
        tracing::warn!(
            limit = observer.config().max_call_streams,
            "refused a call stream: limit reached"
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable: too many call streams",
        )
            .into_response();
    };
    let state = (receiver, observer.closing(), slot);
    let events = futures::stream::unfold(state, |(mut receiver, mut closing, slot)| async move {
        let event = loop {
            if *closing.borrow() {
                return None;
            }
            tokio::select! {
                _ = closing.changed() => return None,
                received = receiver.recv() => match received {
                    Ok(call) => match Event::default().event("call").json_data(&call) {
                        Ok(event) => break event,
                        Err(err) => {
                            tracing::warn!(%err, "could not encode a call event");
                            continue;
                        }
                    },
                    Err(RecvError::Lagged(missed)) => {
                        break Event::default().event("lagged").data(missed.to_string());
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        };
        Some((Ok::<_, Infallible>(event), (receiver, closing, slot)))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidateRequest {
    /// One upstream; absent: every upstream.
    #[serde(default)]
    upstream: Option<String>,
    /// Upstream tool names to drop (glob); default every tool.
    #[serde(default)]
    tool: Option<String>,
}

async fn invalidate_cache(
    State(gateway): State<Arc<Gateway>>,
    identity: Option<Extension<Arc<Identity>>>,
    Json(request): Json<InvalidateRequest>,
) -> Response {
    if identity.is_some_and(|Extension(who)| who.anonymous) {
        return (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({ "error": "anonymous callers may not invalidate the cache" })),
        )
            .into_response();
    }
    let glob = request.tool.as_deref().unwrap_or("*");
    let names: Vec<String> = match &request.upstream {
        Some(name) => {
            if !gateway.upstreams().iter().any(|u| u.name() == name) {
                return (
                    StatusCode::NOT_FOUND,
                    Json(serde_json::json!({ "error": format!("no upstream named {name:?}") })),
                )
                    .into_response();
            }
            vec![name.clone()]
        }
        None => gateway
            .upstreams()
            .iter()
            .map(|u| u.name().to_string())
            .collect(),
    };
    let mut dropped = 0;
    for name in &names {
        match gateway.invalidate_cache(name, glob).await {
            Ok(n) => dropped += n,
            Err(err) => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(serde_json::json!({ "error": err.to_string() })),
                )
                    .into_response();
            }
        }
    }
    tracing::info!(upstreams = ?names, tool = glob, dropped, "cache invalidated from the dashboard API");
    Json(serde_json::json!({ "dropped": dropped })).into_response()
}
