//! HTTP serving on one axum router: Streamable HTTP (rmcp) at `/mcp`, the legacy HTTP+SSE
//! transport (ours, see [`crate::legacy_sse`]) at `/sse` + `/messages`, or both, with one set
//! of limits so every route of a listener refuses the same things.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use rmcp::{
    ServerHandler,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    TransportError,
    direct::{self, DirectRoute, DirectSessions},
    guard::{HostOriginPolicy, host_origin_guard},
    legacy_sse::{self, LegacySseStats, SseSettings},
    sealed::{self, SealedSessionStore, SessionKeys, SessionSealer},
    session::{BoundedEventStore, CappedSessionManager},
};

/// How long a sealed session id is accepted by default: a day.
pub const DEFAULT_SESSION_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// The limits and checks of an HTTP listener. Every field is a documented CLI/config option.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest accepted request body, on `/mcp` and `/messages`; larger bodies get 413.
    /// Default 4 MiB.
    pub max_body_bytes: usize,
    /// `Host` header values accepted (DNS-rebinding protection), on every route. Empty
    /// accepts any host. Default: `localhost`, `127.0.0.1`, `::1` (any port).
    pub allowed_hosts: Vec<String>,
    /// `Origin` values accepted (`scheme://host[:port]`, `:*` for any port); a request with
    /// any other `Origin` gets 403. Empty (the default) means no browser origin is allowed;
    /// requests without `Origin` still pass.
    pub allowed_origins: Vec<String>,
    /// A session-era Streamable HTTP session is closed and freed after this long without a
    /// request, even if the client never sends DELETE. Default 300 s.
    pub session_idle_timeout: Duration,
    /// Most Streamable HTTP sessions (session-era clients) held in memory at once (~50 KiB
    /// each). At the cap, the least recently used session with no call under way and no open
    /// `GET` stream leaves memory; its sealed id still works, and its next request rebuilds it
    /// (as after `session_idle_timeout`). Only when every session in memory is busy does
    /// `initialize` fail, with HTTP 500 and the message "session limit reached". Stateless
    /// 2026-07-28 requests open no session and are not counted. Default 1024.
    pub max_sessions: usize,
    /// Events kept for `Last-Event-ID` replay on Streamable HTTP, across all streams (oldest
    /// dropped first). 0 (the default) uses rmcp's built-in per-stream cache instead (the
    /// last 16 events of each live stream, with live continuation after the replay); a
    /// non-zero value installs [`crate::BoundedEventStore`], whose replay is finite (the
    /// client reconnects again for later events) and which also records stateless streams.
    pub event_store_capacity: usize,
    /// SSE keep-alive comment interval, on Streamable HTTP streams and legacy `/sse`
    /// streams. Default 15 s.
    pub sse_keep_alive: Duration,
    /// Most legacy `/sse` connections open at once; more get 503. Default 256.
    pub sse_max_connections: usize,
    /// Messages queued per legacy SSE connection in each direction. A client that lets the
    /// server-to-client queue fill is disconnected; a full client-to-server queue answers
    /// the POST with 503. Default 64.
    pub sse_queue_len: usize,
    /// After a stop is asked for, how long open connections (a client's long-lived SSE
    /// stream, say) may keep the server up before they are dropped. Default 10 s.
    pub shutdown_grace: Duration,
    /// Seals and opens session-era `Mcp-Session-Id`s ([`crate::sealed`]). `None` (the
    /// default) makes a key at start: sessions then resume on this process only.
    pub session_sealer: Option<Arc<SessionSealer>>,
    /// Sessions whose plain `tools/call` requests are answered without rmcp's session worker
    /// ([`crate::direct`]); the server registers them. `None` (the default): every request
    /// goes through rmcp.
    pub direct_sessions: Option<Arc<DirectSessions>>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            allowed_origins: Vec::new(),
            session_idle_timeout: Duration::from_secs(300),
            max_sessions: 1024,
            event_store_capacity: 0,
            sse_keep_alive: Duration::from_secs(15),
            sse_max_connections: 256,
            sse_queue_len: 64,
            shutdown_grace: Duration::from_secs(10),
            session_sealer: None,
            direct_sessions: None,
        }
    }
}

/// Which MCP endpoints one listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpRoutes {
    /// Streamable HTTP at `/mcp` (both protocol eras).
    #[default]
    Streamable,
    /// The legacy 2024-11-05 HTTP+SSE transport at `/sse` and `/messages`.
    LegacySse,
    /// All three routes.
    All,
}

impl HttpRoutes {
    fn streamable(self) -> bool {
        matches!(self, Self::Streamable | Self::All)
    }

    fn legacy_sse(self) -> bool {
        matches!(self, Self::LegacySse | Self::All)
    }
}

/// Path of the Streamable HTTP endpoint.
pub const MCP_PATH: &str = "/mcp";

impl HttpLimits {
    fn rmcp_config(
        &self,
        cancel: CancellationToken,
        sealer: &Arc<SessionSealer>,
    ) -> StreamableHttpServerConfig {
        let mut config = StreamableHttpServerConfig::default()
            .with_max_request_body_bytes(self.max_body_bytes)
            .with_sse_keep_alive(Some(self.sse_keep_alive))
            .with_json_response(true)
            .with_cancellation_token(cancel)
            .with_allowed_origins(self.allowed_origins.clone())
            // 2025-11-25 requires 403 for a present, invalid Origin; an empty allow-list
            // therefore rejects every browser origin instead of disabling the check.
            .enforce_origin_validation();
        config.session_store = Some(Arc::new(SealedSessionStore(sealer.clone())));
        config = if self.allowed_hosts.is_empty() {
            config.disable_allowed_hosts()
        } else {
            config.with_allowed_hosts(self.allowed_hosts.clone())
        };
        config
    }
}

/// Live counters of a router's sessions, for operators and tests.
#[derive(Debug, Clone, Default)]
pub struct HttpStats {
    /// Streamable HTTP sessions (absent when `/mcp` is not served).
    pub sessions: Option<Arc<CappedSessionManager>>,
    /// Legacy SSE connections (absent when `/sse` is not served).
    pub legacy_sse: Option<LegacySseStats>,
    /// The `Last-Event-ID` event store, when `event_store_capacity` is non-zero.
    pub event_store: Option<Arc<BoundedEventStore>>,
    /// The session-id sealer of `/mcp` (absent when `/mcp` is not served).
    pub sealer: Option<Arc<SessionSealer>>,
    /// TCP connections open on the listener (zero for a router served by its embedder).
    pub connections: OpenConnections,
    /// The sessions served without rmcp's session worker, when that is on.
    pub direct: Option<Arc<DirectSessions>>,
}

/// How many accepted connections are open. Each is a task of the server's that its client
/// holds open (idle keep-alive included), so this is read beside the runtime's task count:
/// tasks beyond the connections are the server's own.
#[derive(Debug, Clone, Default)]
pub struct OpenConnections(Arc<AtomicUsize>);

impl OpenConnections {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn opened(&self) -> ConnectionGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.clone())
    }
}

/// One open connection, counted until dropped with the connection.
#[derive(Debug)]
struct ConnectionGuard(OpenConnections);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The TCP listener, counting the connections it accepted that are still open, each with
/// TCP_NODELAY set.
struct CountingListener {
    inner: TcpListener,
    open: OpenConnections,
}

impl axum::serve::Listener for CountingListener {
    type Io = CountedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (mut tcp, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        tune_accepted(&mut tcp);
        let stream = CountedStream {
            tcp,
            _open: self.open.opened(),
        };
        (stream, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An accepted connection, counted in [`OpenConnections`] while it lives; reads and writes
/// pass straight through (vectored writes included: hyper writes head and body together).
struct CountedStream {
    tcp: tokio::net::TcpStream,
    _open: ConnectionGuard,
}

impl tokio::io::AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Builds the axum router for `routes` without binding, so an embedding server (the gateway)
/// can mount it next to its own routes. Cancelling `cancel` ends every session and stream.
pub fn router<S, F>(
    factory: F,
    routes: HttpRoutes,
    limits: &HttpLimits,
    cancel: CancellationToken,
) -> (axum::Router, HttpStats)
where
    S: ServerHandler + Send + 'static,
    F: Fn() -> Result<S, std::io::Error> + Send + Sync + 'static,
{
    let factory: Arc<dyn Fn() -> Result<S, std::io::Error> + Send + Sync> = Arc::new(factory);
    let mut router = axum::Router::new();
    let mut stats = HttpStats::default();
    if routes.streamable() {
        let mut local = LocalSessionManager::default();
        local.session_config.keep_alive = Some(limits.session_idle_timeout);
        if limits.event_store_capacity > 0 {
            let store = Arc::new(BoundedEventStore::new(limits.event_store_capacity));
            local = local.with_event_store(store.clone());
            stats.event_store = Some(store);
        }
        let mut capped = CappedSessionManager::new(local, limits.max_sessions);
        if let Some(direct) = &limits.direct_sessions {
            capped = capped.with_direct_sessions(direct.clone());
            stats.direct = Some(direct.clone());
        }
        let sessions = Arc::new(capped);
        stats.sessions = Some(sessions.clone());
        let sealer = limits.session_sealer.clone().unwrap_or_else(|| {
            Arc::new(SessionSealer::new(
                SessionKeys::ephemeral(),
                DEFAULT_SESSION_MAX_AGE,
            ))
        });
        stats.sealer = Some(sealer.clone());
        let make = factory.clone();
        let service = StreamableHttpService::new(
            move || make(),
            sessions.clone(),
            limits.rmcp_config(cancel.child_token(), &sealer),
        );
        let mut mcp = axum::Router::new().nest_service(MCP_PATH, service);
        if let Some(direct) = &limits.direct_sessions {
            // Inside the sealing layer: it sees rmcp's session ids.
            let route = DirectRoute {
                direct: direct.clone(),
                sessions,
                max_body_bytes: limits.max_body_bytes,
                idle_timeout: limits.session_idle_timeout,
            };
            mcp = mcp.layer(axum::middleware::from_fn_with_state(
                route,
                direct::direct_tool_calls,
            ));
        }
        router = router.merge(mcp.layer(axum::middleware::from_fn_with_state(
            sealer,
            sealed::seal_session_ids,
        )));
    }
    if routes.legacy_sse() {
        let settings = SseSettings {
            max_connections: limits.sse_max_connections,
            queue_len: limits.sse_queue_len,
            keep_alive: limits.sse_keep_alive,
            max_body_bytes: limits.max_body_bytes,
        };
        let (sse, sse_stats) = legacy_sse::router(factory, settings, cancel.child_token());
        let policy = Arc::new(HostOriginPolicy {
            allowed_hosts: limits.allowed_hosts.clone(),
            allowed_origins: limits.allowed_origins.clone(),
        });
        router = router.merge(sse.layer(axum::middleware::from_fn_with_state(
            policy,
            host_origin_guard,
        )));
        stats.legacy_sse = Some(sse_stats);
    }
    (router, stats)
}

/// A running HTTP server: its bound address, its counters and the means to stop it.
pub struct HttpServer {
    pub local_addr: SocketAddr,
    pub stats: HttpStats,
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

/// Binds `addr` and serves the MCP server made by `factory` on `routes`
/// ([`MCP_PATH`], and/or [`crate::SSE_PATH`] + [`crate::MESSAGES_PATH`]).
///
/// `factory` runs per session (session-era clients), per request (stateless clients) or per
/// legacy SSE connection, so the server it returns should be a cheap clone of shared state.
pub async fn serve_http<S, F>(
    factory: F,
    addr: SocketAddr,
    routes: HttpRoutes,
    limits: &HttpLimits,
) -> Result<HttpServer, TransportError>
where
    S: ServerHandler + Send + 'static,
    F: Fn() -> Result<S, std::io::Error> + Send + Sync + 'static,
{
    serve_http_with(factory, addr, routes, limits, axum::Router::new()).await
}

/// [`serve_http`], with `extra` routes (the embedder's own, e.g. the gateway's
/// `/api/status`) served on the same listener. `extra` brings its own guards.
pub async fn serve_http_with<S, F>(
    factory: F,
    addr: SocketAddr,
    routes: HttpRoutes,
    limits: &HttpLimits,
    extra: axum::Router,
) -> Result<HttpServer, TransportError>
where
    S: ServerHandler + Send + 'static,
    F: Fn() -> Result<S, std::io::Error> + Send + Sync + 'static,
{
    serve_http_wrapped(factory, addr, routes, limits, extra, |router| router).await
}

/// [`serve_http_with`], with `wrap` applied to the whole router (every route, `extra`
/// included): the gateway's authentication middleware goes here.
pub async fn serve_http_wrapped<S, F>(
    factory: F,
    addr: SocketAddr,
    routes: HttpRoutes,
    limits: &HttpLimits,
    extra: axum::Router,
    wrap: impl FnOnce(axum::Router) -> axum::Router,
) -> Result<HttpServer, TransportError>
where
    S: ServerHandler + Send + 'static,
    F: Fn() -> Result<S, std::io::Error> + Send + Sync + 'static,
{
    let cancel = CancellationToken::new();
    let (router, stats) = router(factory, routes, limits, cancel.clone());
    let router = wrap(router.merge(extra));
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| TransportError::Bind { addr, source })?;
    let local_addr = listener.local_addr().map_err(TransportError::Http)?;
    let shutdown = cancel.clone();
    let grace_over = {
        let cancel = cancel.clone();
        let grace = limits.shutdown_grace;
        async move {
            cancel.cancelled().await;
            tokio::time::sleep(grace).await;
        }
    };
    let listener = CountingListener {
        inner: listener,
        open: stats.connections.clone(),
    };
    let task = tokio::spawn(async move {
        let serving =
            axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned());
        tokio::select! {
            result = serving => result,
            () = grace_over => {
                tracing::warn!("connections still open after the shutdown grace period; dropping them");
                Ok(())
            }
        }
    });
    Ok(HttpServer {
        local_addr,
        stats,
        cancel,
        task,
    })
}

/// TCP_NODELAY on every accepted connection: a session-era answer is an SSE stream sent in
/// more than one write; with Nagle on, the last one waits for the client's delayed ACK, ~40 ms
/// per call on Linux (found by `bench/peers.sh`, see BENCHMARKS.md).
fn tune_accepted(tcp: &mut tokio::net::TcpStream) {
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::debug!(%err, "could not set TCP_NODELAY");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_send_without_nagle_delay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let _client = client.expect("connect");
        let (mut accepted, _) = accepted.expect("accept");
        assert!(!accepted.nodelay().expect("nodelay"), "Linux's default");
        tune_accepted(&mut accepted);
        assert!(accepted.nodelay().expect("nodelay"));
    }
}
