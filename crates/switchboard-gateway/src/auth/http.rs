//! The HTTP side of authentication: an axum middleware over the whole listener, and the
//! RFC 9728 Protected Resource Metadata document.
//!
//! Every path needs credentials except the metadata document (clients read it to find the
//! authorization server), the dashboard's static shell and `/healthz`/`/readyz` (see
//! [`crate::dashboard`]), and `/api/status` and `/metrics` unless `protect_status`. A refused request gets
//! 401 with `WWW-Authenticate: Bearer resource_metadata="…"`, as the MCP authorization spec
//! requires, so standard clients can discover the issuer. An accepted request carries its
//! [`Identity`] in the request extensions (as `Arc<Identity>`); rmcp passes the request's
//! `http::request::Parts` to the handler, where [`identity_of`] finds it.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use rmcp::{RoleServer, service::RequestContext};

use super::{AuthError, Authenticator, Identity};

/// The RFC 9728 metadata path.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";
/// The same document at the path-suffixed location for the `/mcp` resource.
pub const METADATA_MCP_PATH: &str = "/.well-known/oauth-protected-resource/mcp";

/// Adds the metadata routes to `router` and puts every route behind the authentication check.
pub fn protect(router: Router, auth: Arc<Authenticator>) -> Router {
    router
        .merge(
            Router::new()
                .route(METADATA_PATH, get(metadata))
                .route(METADATA_MCP_PATH, get(metadata))
                .with_state(auth.clone()),
        )
        .layer(axum::middleware::from_fn_with_state(auth, guard))
}

/// The identity an HTTP request carried into an rmcp handler, if any.
pub fn identity_of(context: &RequestContext<RoleServer>) -> Option<Arc<Identity>> {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Arc<Identity>>())
        .cloned()
}

fn is_public(auth: &Authenticator, path: &str) -> bool {
    path == METADATA_PATH
        || path == METADATA_MCP_PATH
        || crate::dashboard::is_public_path(path)
        || (!auth.config.protect_status
            && (path == crate::status_api::STATUS_PATH || path == crate::dashboard::METRICS_PATH))
}

/// `scheme://authority` of the resource: from `resource` when configured, else the request's
/// `Host`.
fn base_url(auth: &Authenticator, headers: &HeaderMap) -> String {
    if let Some(resource) = &auth.config.resource
        && let Ok(uri) = resource.parse::<axum::http::Uri>()
        && let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority())
    {
        return format!("{scheme}://{authority}");
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

async fn guard(
    State(auth): State<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Response {
    if is_public(&auth, request.uri().path()) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{0}invalid"));
    let api_key = headers.get("x-api-key").map(|v| v.to_str().unwrap_or(""));
    match auth.authenticate(authorization, api_key).await {
        Ok(identity) => {
            request.extensions_mut().insert(Arc::new(identity));
            next.run(request).await
        }
        Err(err) => {
            tracing::info!(path = %request.uri().path(), %err, "refused an unauthenticated request");
            unauthorized(&auth, request.headers(), &err)
        }
    }
}

fn unauthorized(auth: &Authenticator, headers: &HeaderMap, err: &AuthError) -> Response {
    let mut challenge = format!(
        "Bearer resource_metadata=\"{}{METADATA_PATH}\"",
        base_url(auth, headers)
    );
    let (code, description) = match err {
        AuthError::Missing => ("invalid_request", "credentials are required".to_string()),
        other => ("invalid_token", other.to_string()),
    };
    if !matches!(err, AuthError::Missing) {
        challenge.push_str(", error=\"invalid_token\"");
    }
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(serde_json::json!({ "error": code, "error_description": description })),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

async fn metadata(State(auth): State<Arc<Authenticator>>, headers: HeaderMap) -> Response {
    let config = &auth.config;
    let resource = config
        .resource
        .clone()
        .unwrap_or_else(|| format!("{}/mcp", base_url(&auth, &headers)));
    let servers = if config.authorization_servers.is_empty() {
        if config.issuer.starts_with("https://") || config.issuer.starts_with("http://") {
            vec![config.issuer.clone()]
        } else {
            Vec::new()
        }
    } else {
        config.authorization_servers.clone()
    };
    let mut document = serde_json::json!({
        "resource": resource,
        "authorization_servers": servers,
        "bearer_methods_supported": ["header"],
        "resource_name": "Switchboard MCP gateway",
    });
    if !config.scopes_supported.is_empty() {
        document["scopes_supported"] = config.scopes_supported.clone().into();
    }
    Json(document).into_response()
}
