//! `GET /api/audit`: the audit log's records as JSON, on the same listener as `/mcp`.
//!
//! Query parameters (all optional): `since` and `until` (`1h`, `7d`, an RFC 3339 time or a
//! date), `tool` and `identity` (globs), `decision` (`allowed`, `denied`, `rate_limited`,
//! `invalid`), `limit` (default 100, at most 10000). Newest first:
//! `{"records": [...], "count": N}`.
//!
//! Records hold who called what (with arguments redacted), so the route sits behind the same
//! `Host`/`Origin` checks as the MCP routes and, when `[security.auth]` is on, behind
//! authentication (it is never public) and needs the `audit:read` scope: an ordinary client's
//! token cannot read everyone's calls.

use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;
use switchboard_audit::{Auditor, Decision, Filter, query::parse_time};
use switchboard_transport::guard::{HostOriginPolicy, host_origin_guard};

use crate::auth::Identity;

/// The path of the audit query.
pub const AUDIT_PATH: &str = "/api/audit";
/// The scope an authenticated caller needs to read the audit log.
pub const AUDIT_READ_SCOPE: &str = "audit:read";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    since: Option<String>,
    until: Option<String>,
    tool: Option<String>,
    identity: Option<String>,
    decision: Option<String>,
    limit: Option<u32>,
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "error": "invalid_request", "error_description": message })),
    )
        .into_response()
}

impl Params {
    fn filter(self) -> Result<Filter, switchboard_audit::AuditError> {
        let now = chrono::Utc::now();
        Ok(Filter {
            since: self.since.map(|s| parse_time(&s, now)).transpose()?,
            until: self.until.map(|s| parse_time(&s, now)).transpose()?,
            tool: self.tool,
            identity: self.identity,
            decision: self.decision.map(|d| Decision::parse(&d)).transpose()?,
            limit: self.limit,
        })
    }
}

async fn audit(
    State(auditor): State<Arc<Auditor>>,
    identity: Option<Extension<Arc<Identity>>>,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Some(Extension(identity)) = identity
        && !identity.scopes.iter().any(|s| s == AUDIT_READ_SCOPE)
    {
        return (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({
                "error": "insufficient_scope",
                "error_description": format!("reading the audit log needs the {AUDIT_READ_SCOPE} scope"),
            })),
        )
            .into_response();
    }
    let filter = match params.map(|Query(p)| p.filter()) {
        Ok(Ok(filter)) => filter,
        Ok(Err(err)) => return bad_request(err.to_string()),
        Err(rejection) => return bad_request(rejection.body_text()),
    };
    // The store's records and those still in the journal, so a call's record is readable
    // as soon as the call is answered.
    match auditor.query(&filter).await {
        Ok(records) => Json(serde_json::json!({
            "count": records.len(),
            "records": records,
        }))
        .into_response(),
        Err(err) => {
            tracing::error!(%err, "audit query failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "error": "audit_unavailable", "error_description": err.to_string() })),
            )
                .into_response()
        }
    }
}

/// The `/api/audit` route, guarded by `policy` (use the MCP routes' `Host`/`Origin` lists).
pub fn router(auditor: Arc<Auditor>, policy: HostOriginPolicy) -> Router {
    Router::new()
        .route(AUDIT_PATH, get(audit))
        .with_state(auditor)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(policy),
            host_origin_guard,
        ))
}
