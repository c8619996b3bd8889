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
pub mod direct;
pub mod guard;
mod http;
pub mod legacy_sse;
pub mod sealed;
pub mod session;
pub mod sse;
pub mod stdio_serving;
pub mod upstream;

pub use direct::DirectSessions;
pub use http::{
    DEFAULT_SESSION_MAX_AGE, HttpLimits, HttpRoutes, HttpServer, HttpStats, MCP_PATH,
    OpenConnections, router, serve_http, serve_http_with, serve_http_wrapped,
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

/// The capacity asked for on a pipe that carries answers (our stdout, an upstream child's
/// stdout). With Linux's default 64 KiB, a 270 KB answer (a 1,000-row query) crosses in five
/// pieces, each waking the writer and the reader once; with 1 MiB it is one write. 1 MiB is
/// the kernel's default ceiling for unprivileged processes (`/proc/sys/fs/pipe-max-size`).
pub const ANSWER_PIPE_BYTES: usize = 1 << 20;

/// Asks for [`ANSWER_PIPE_BYTES`] of capacity on `pipe`. A descriptor that is not a pipe, or
/// a lower system ceiling, leaves it as it was: the capacity changes speed, never meaning.
pub fn widen_pipe(pipe: &impl std::os::fd::AsFd) {
    #[cfg(target_os = "linux")]
    if let Err(err) = rustix::pipe::fcntl_setpipe_size(pipe, ANSWER_PIPE_BYTES) {
        tracing::debug!("pipe capacity left at its default: {err}");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = pipe;
}

/// Serves `server` over this process's stdin and stdout until the client closes stdin.
///
/// Uses rmcp's non-blocking pipe handles, which keep message hand-off on the IO reactor
/// when the client launched us with pipes (the usual case), with rmcp reading the lines and
/// [`stdio_serving`] writing the answers.
pub async fn serve_stdio<S: ServerHandler>(server: S) -> Result<(), TransportError> {
    widen_pipe(&std::io::stdout());
    let (stdin, stdout) = rmcp::transport::stdio_pipes();
    let running = server
        .serve(stdio_serving::ServerStreamTransport::new(stdin, stdout))
        .await
        .map_err(|e| TransportError::StdioInit(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| TransportError::StdioRun(e.to_string()))?;
    Ok(())
}
