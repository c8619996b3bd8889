//! Serving MCP servers over stdio and Streamable HTTP, with every limit explicit.
//!
//! rmcp provides the protocol engine and both transports; this crate decides how Switchboard
//! exposes them: which addresses are bound, which `Host`/`Origin` values are accepted, how big
//! a request may be and how long an idle session lives. Every built-in server and (later) the
//! gateway serve through here, so those rules live in one place.
//!
//! Both protocol eras are served on one endpoint: rmcp answers `server/discover` and stateless
//! 2026-07-28 requests without a session, and `initialize` from 2025-11-25-and-older clients
//! starts a session.

mod http;

pub use http::{HttpLimits, HttpServer, serve_http};

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
