//! Serving and reaching MCP servers over stdio, Streamable HTTP and legacy HTTP+SSE, with
//! every limit explicit.
//!
//! rmcp provides the protocol engine, stdio and Streamable HTTP; this crate decides how
//! Switchboard exposes them (which addresses are bound, which `Host`/`Origin` values are
//! accepted, how big a request may be, how many sessions may exist and how long an idle one
//! lives) and adds what rmcp lacks: the legacy 2024-11-05 HTTP+SSE transport on both sides,
//! and process-group management for stdio upstreams. Every built-in server, the gateway and
//! the CLI client commands go through here, so those rules live in one place.
//!
//! Both protocol eras are served on `/mcp`: rmcp answers `server/discover` and stateless
//! 2026-07-28 requests without a session, and `initialize` from 2025-11-25-and-older clients
//! starts a session.

mod coalesce;
pub mod guard;
mod http;
pub mod legacy_sse;
pub mod sealed;
pub mod session;
pub mod sse;
pub mod upstream;

pub use http::{
    DEFAULT_SESSION_MAX_AGE, HttpLimits, HttpRoutes, HttpServer, HttpStats, MCP_PATH, router,
    serve_http, serve_http_with, serve_http_wrapped,
};
pub use legacy_sse::{LegacySseStats, MESSAGES_PATH, SSE_PATH};
pub use sealed::{SealError, SessionKeys, SessionSealer};
pub use session::{BoundedEventStore, CappedSessionManager, SessionManagerError};
pub use upstream::{
    ConnectOptions, Era, Upstream, UpstreamClient, UpstreamError, connect, shutdown,
};

use rmcp::{ServerHandler, ServiceExt};

/// Errors from serving a transport.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("could not bind {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the MCP session over stdio failed to start: {0}")]
    StdioInit(String),
    #[error("the MCP session over stdio ended with an error: {0}")]
    StdioRun(String),
    #[error("the HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
}

/// 128 random bits from the OS, hex-encoded: session tokens that cannot be guessed.
pub(crate) fn random_token() -> Result<String, std::io::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Serves `server` over this process's stdin and stdout until the client closes stdin.
///
/// Uses rmcp's non-blocking pipe transport, which keeps message hand-off on the IO reactor
/// when the client launched us with pipes (the usual case).
pub async fn serve_stdio<S: ServerHandler>(server: S) -> Result<(), TransportError> {
    let running = server
        .serve(rmcp::transport::stdio_pipes())
        .await
        .map_err(|e| TransportError::StdioInit(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| TransportError::StdioRun(e.to_string()))?;
    Ok(())
}
