//! `Host`/`Origin` validation (DNS-rebinding and cross-origin protection) as axum middleware.
//!
//! rmcp runs the same checks inside `StreamableHttpService`, but they are private to it, so
//! the hand-written legacy SSE routes need their own. The rules mirror rmcp's so that both
//! routes of one listener accept and refuse exactly the same requests:
//! - `Host` must match an allowed entry (`name` matches any port, `name:port` only that port);
//!   an empty allow-list accepts any host. Missing or malformed `Host` gets 400.
//! - a present `Origin` must match an allowed origin (`scheme://host[:port]`, `:*` for any
//!   port, or `null`); anything else, including every origin when the list is empty, gets 403.
//!   Requests without `Origin` (non-browser clients) pass.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, StatusCode, Uri, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

/// The accepted `Host` and `Origin` values; see the module docs for the matching rules.
#[derive(Debug, Clone, Default)]
pub struct HostOriginPolicy {
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
}

impl HostOriginPolicy {
    /// Checks one request's headers; `Err` carries the response to send instead.
    pub fn check(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), (StatusCode, &'static str)> {
        let host = match headers.get(header::HOST) {
            Some(value) => {
                let text = value
                    .to_str()
                    .map_err(|_| (StatusCode::BAD_REQUEST, "Bad Request: invalid Host header"))?;
                let authority = axum::http::uri::Authority::try_from(text)
                    .map_err(|_| (StatusCode::BAD_REQUEST, "Bad Request: invalid Host header"))?;
                (normalize_host(authority.host()), authority.port_u16())
            }
            None => match uri.authority() {
                Some(authority) => (normalize_host(authority.host()), authority.port_u16()),
                None => return Err((StatusCode::BAD_REQUEST, "Bad Request: missing Host header")),
            },
        };
        if !self.host_allowed(&host.0, host.1) {
            tracing::warn!(host = ?host, "rejected request with disallowed Host header");
            return Err((
                StatusCode::FORBIDDEN,
                "Forbidden: Host header is not allowed",
            ));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let allowed = origin
                .to_str()
                .ok()
                .and_then(parse_origin)
                .is_some_and(|origin| self.origin_allowed(&origin));
            if !allowed {
                tracing::warn!(origin = ?origin, "rejected request with disallowed Origin header");
                return Err((
                    StatusCode::FORBIDDEN,
                    "Forbidden: Origin header is not allowed",
                ));
            }
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str, port: Option<u16>) -> bool {
        if self.allowed_hosts.is_empty() {
            return true;
        }
        self.allowed_hosts.iter().any(|allowed| {
            let allowed = allowed.trim();
            let (a_host, a_port) = match axum::http::uri::Authority::try_from(allowed) {
                Ok(authority) => (normalize_host(authority.host()), authority.port_u16()),
                Err(_) => (normalize_host(allowed), None),
            };
            a_host == host && a_port.is_none_or(|p| port == Some(p))
        })
    }

    fn origin_allowed(&self, origin: &Origin) -> bool {
        self.allowed_origins.iter().any(|raw| {
            let raw = raw.trim();
            let (base, any_port) = match raw.strip_suffix(":*") {
                Some(base) => (base, true),
                None => (raw, false),
            };
            match (parse_origin(base), origin) {
                (Some(Origin::Null), Origin::Null) => !any_port,
                (
                    Some(Origin::Tuple {
                        scheme,
                        host,
                        port: a_port,
                    }),
                    Origin::Tuple {
                        scheme: o_scheme,
                        host: o_host,
                        port: o_port,
                    },
                ) => {
                    scheme == *o_scheme
                        && host == *o_host
                        && (any_port
                            || a_port.is_none()
                            || o_port.or_else(|| default_port(o_scheme)) == a_port)
                }
                _ => false,
            }
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Origin {
    Null,
    Tuple {
        scheme: String,
        host: String,
        port: Option<u16>,
    },
}

fn parse_origin(value: &str) -> Option<Origin> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("null") {
        return Some(Origin::Null);
    }
    let uri = Uri::try_from(value).ok()?;
    let authority = uri.authority()?;
    Some(Origin::Tuple {
        scheme: uri.scheme_str()?.to_ascii_lowercase(),
        host: normalize_host(authority.host()),
        port: authority.port_u16(),
    })
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

fn normalize_host(host: &str) -> String {
    host.trim_matches(['[', ']']).to_ascii_lowercase()
}

/// axum middleware applying `policy` (use with `axum::middleware::from_fn_with_state`).
pub async fn host_origin_guard(
    State(policy): State<Arc<HostOriginPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    match policy.check(request.uri(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(header::HOST, host.parse().expect("host"));
        if let Some(origin) = origin {
            map.insert(header::ORIGIN, origin.parse().expect("origin"));
        }
        map
    }

    #[test]
    fn hosts_and_origins() {
        let policy = HostOriginPolicy {
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            allowed_origins: vec![
                "http://localhost:*".into(),
                "https://app.example:8443".into(),
            ],
        };
        let uri = Uri::from_static("/sse");
        assert!(policy.check(&uri, &headers("127.0.0.1:9", None)).is_ok());
        assert!(policy.check(&uri, &headers("[::1]:9", None)).is_ok());
        assert_eq!(
            policy
                .check(&uri, &headers("evil.example", None))
                .map_err(|e| e.0),
            Err(StatusCode::FORBIDDEN)
        );
        assert!(
            policy
                .check(&uri, &headers("localhost:1", Some("http://localhost:3000")))
                .is_ok()
        );
        assert!(
            policy
                .check(
                    &uri,
                    &headers("localhost", Some("https://app.example:8443"))
                )
                .is_ok()
        );
        assert!(
            policy
                .check(&uri, &headers("localhost", Some("https://app.example")))
                .is_err()
        );
        assert!(
            policy
                .check(&uri, &headers("localhost", Some("http://evil.example")))
                .is_err()
        );
        let closed = HostOriginPolicy {
            allowed_origins: Vec::new(),
            ..policy
        };
        assert!(
            closed
                .check(&uri, &headers("localhost", Some("http://localhost")))
                .is_err()
        );
    }
}
