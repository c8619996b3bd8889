//! Streamable HTTP serving on an axum router.

use std::{net::SocketAddr, time::Duration};

use rmcp::{
    ServerHandler,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::TransportError;

/// The limits and checks of an HTTP listener. Every field is a documented CLI/config option.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest accepted request body; larger bodies get 413.
    pub max_body_bytes: usize,
    /// `Host` header values accepted (DNS-rebinding protection). Empty accepts any host.
    pub allowed_hosts: Vec<String>,
    /// `Origin` values accepted; a request with any other `Origin` gets 403.
    /// Empty means: no browser origin is allowed (requests without `Origin` still pass).
    pub allowed_origins: Vec<String>,
    /// A session-era client's session ends after this long without a request.
    pub session_idle_timeout: Duration,
    /// SSE keep-alive comment interval.
    pub sse_keep_alive: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            allowed_origins: Vec::new(),
            session_idle_timeout: Duration::from_secs(300),
            sse_keep_alive: Duration::from_secs(15),
        }
    }
}

impl HttpLimits {
    fn rmcp_config(&self, cancel: CancellationToken) -> StreamableHttpServerConfig {
        let mut config = StreamableHttpServerConfig::default()
            .with_max_request_body_bytes(self.max_body_bytes)
            .with_sse_keep_alive(Some(self.sse_keep_alive))
            .with_json_response(true)
            .with_cancellation_token(cancel)
            .with_allowed_origins(self.allowed_origins.clone())
            // 2025-11-25 requires 403 for a present, invalid Origin; an empty allow-list
            // therefore rejects every browser origin instead of disabling the check.
            .enforce_origin_validation();
        config = if self.allowed_hosts.is_empty() {
            config.disable_allowed_hosts()
        } else {
            config.with_allowed_hosts(self.allowed_hosts.clone())
        };
        config
    }
}

/// A running HTTP server: its bound address and the means to stop it.
pub struct HttpServer {
    pub local_addr: SocketAddr,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), std::io::Error>>,
}

impl HttpServer {
    /// Stops accepting, ends every session, and waits for the server task.
    pub async fn shutdown(self) -> Result<(), TransportError> {
        self.cancel.cancel();
        self.wait().await
    }

    /// Waits until the server stops (on its own cancellation or an I/O error).
    pub async fn wait(self) -> Result<(), TransportError> {
        match self.task.await {
            Ok(result) => result.map_err(TransportError::Http),
            Err(join) => Err(TransportError::Http(std::io::Error::other(join))),
        }
    }

    /// A token that, when cancelled, stops the server.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// Binds `addr` and serves the MCP server made by `factory` at `path` (e.g. `/mcp`).
///
/// `factory` runs per session (session-era clients) or per request (stateless clients), so the
/// server it returns should be a cheap clone of shared state.
pub async fn serve_http<S, F>(
    factory: F,
    addr: SocketAddr,
    path: &str,
    limits: &HttpLimits,
) -> Result<HttpServer, TransportError>
where
    S: ServerHandler + Send + 'static,
    F: Fn() -> Result<S, std::io::Error> + Send + Sync + 'static,
{
    let cancel = CancellationToken::new();
    let mut session_manager = LocalSessionManager::default();
    session_manager.session_config.keep_alive = Some(limits.session_idle_timeout);
    let service = StreamableHttpService::new(
        factory,
        session_manager.into(),
        limits.rmcp_config(cancel.child_token()),
    );
    let router = axum::Router::new().nest_service(path, service);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| TransportError::Bind { addr, source })?;
    let local_addr = listener.local_addr().map_err(TransportError::Http)?;
    let shutdown = cancel.clone();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    });
    Ok(HttpServer {
        local_addr,
        cancel,
        task,
    })
}
