//! `switchboard server <kind>`: one built-in MCP server on its own, over stdio or HTTP.
//!
//! Each server kind is one module here that turns its flags into the server crate's config;
//! the transport flags and the serving loop are shared by all of them.

mod crm;
mod echo;
mod fs;
mod openapi;
mod sql;

use std::net::SocketAddr;

use clap::{Args, Subcommand, ValueEnum};
use rmcp::ServerHandler;
use switchboard_transport::{HttpLimits, HttpRoutes};

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// The filesystem server, confined to its roots.
    Fs(fs::FsArgs),
    /// The CRM server (contacts, opportunities, notes) on SQLite or PostgreSQL, with an optional REST API.
    Crm(crm::CrmArgs),
    /// The SQL database server (SQLite, PostgreSQL, MySQL/MariaDB), read-only by default.
    Sql(sql::SqlArgs),
    /// A minimal server with one `echo` tool, for benchmarks and checks.
    Echo(echo::EchoArgs),
    /// A REST service's OpenAPI document as MCP tools, one per operation.
    Openapi(openapi::OpenApiArgs),
}

pub async fn run(command: ServerCommand) -> anyhow::Result<()> {
    match command {
        ServerCommand::Fs(args) => fs::run(args).await,
        ServerCommand::Crm(args) => crm::run(args).await,
        ServerCommand::Sql(args) => sql::run(args).await,
        ServerCommand::Echo(args) => echo::run(args).await,
        ServerCommand::Openapi(args) => openapi::run(args).await,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportKind {
    /// MCP over this process's stdin and stdout.
    Stdio,
    /// Streamable HTTP at `/mcp` (both protocol eras).
    Http,
    /// The legacy 2024-11-05 HTTP+SSE transport at `/sse` and `/messages`.
    Sse,
    /// Streamable HTTP and legacy HTTP+SSE on one listener (`/mcp`, `/sse`, `/messages`).
    All,
}

/// How a server is exposed. Shared by every `server` subcommand.
#[derive(Debug, Clone, Args)]
pub struct TransportArgs {
    /// Transport to serve on.
    #[arg(long, value_enum, default_value_t = TransportKind::Stdio)]
    pub transport: TransportKind,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// The HTTP listener and its limits. Shared by `server` subcommands and `serve`.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Address to listen on for HTTP. Binds loopback unless told otherwise.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Largest accepted HTTP request body, in bytes (larger gets 413).
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Accepted `Host` header values (DNS-rebinding protection); repeat the flag for several.
    /// Defaults to the loopback names.
    #[arg(long = "allowed-host")]
    pub allowed_hosts: Vec<String>,
    /// Accepted browser `Origin` values, e.g. `http://localhost:*`; other origins get 403.
    #[arg(long = "allowed-origin")]
    pub allowed_origins: Vec<String>,
    /// Seconds after which an idle session of a session-era client is closed.
    #[arg(long, default_value_t = 300)]
    pub session_idle_secs: u64,
    /// Most Streamable HTTP sessions held in memory at once (session-era clients). At the cap
    /// the least recently used idle one leaves memory and resumes from its id on its next
    /// request; `initialize` is refused only when every session in memory is busy.
    #[arg(long, default_value_t = 1024)]
    pub max_sessions: usize,
    /// Events kept for `Last-Event-ID` replay across all Streamable HTTP streams; 0 uses
    /// rmcp's per-stream cache instead.
    #[arg(long, default_value_t = 0)]
    pub event_store_capacity: usize,
    /// Most legacy `/sse` connections open at once; more get 503.
    #[arg(long, default_value_t = 256)]
    pub sse_max_connections: usize,
    /// Messages queued per legacy SSE connection and direction; a client that lets its queue
    /// fill is disconnected.
    #[arg(long, default_value_t = 64)]
    pub sse_queue_len: usize,
    /// Seconds between SSE keep-alive comments (Streamable HTTP and legacy SSE streams).
    #[arg(long, default_value_t = 15)]
    pub sse_keep_alive_secs: u64,
    /// Seconds open connections (long-lived SSE streams) may hold up a stop before they are
    /// dropped.
    #[arg(long, default_value_t = 10)]
    pub shutdown_grace_secs: u64,
}

impl HttpArgs {
    pub fn http_limits(&self) -> HttpLimits {
        let defaults = HttpLimits::default();
        HttpLimits {
            max_body_bytes: self.max_body_bytes,
            allowed_hosts: if self.allowed_hosts.is_empty() {
                defaults.allowed_hosts
            } else {
                self.allowed_hosts.clone()
            },
            allowed_origins: self.allowed_origins.clone(),
            session_idle_timeout: std::time::Duration::from_secs(self.session_idle_secs),
            max_sessions: self.max_sessions,
            event_store_capacity: self.event_store_capacity,
            sse_keep_alive: std::time::Duration::from_secs(self.sse_keep_alive_secs.max(1)),
            sse_max_connections: self.sse_max_connections,
            sse_queue_len: self.sse_queue_len,
            shutdown_grace: std::time::Duration::from_secs(self.shutdown_grace_secs),
            session_sealer: None,
            direct_sessions: None,
        }
    }
}

/// Serves `server` on the chosen transport until the client leaves (stdio) or the process is
/// interrupted (HTTP). For HTTP, the bound address is printed to stderr as
/// `listening on http://ADDR/mcp` (or `/sse` for `--transport sse`; both lines for `all`) so
/// scripts and tests can find a port-0 listener.
pub async fn serve<S>(server: S, transport: &TransportArgs) -> anyhow::Result<()>
where
    S: ServerHandler + Clone + Send + Sync + 'static,
{
    match transport.transport {
        TransportKind::Stdio => {
            switchboard_transport::serve_stdio(server).await?;
        }
        TransportKind::Http | TransportKind::Sse | TransportKind::All => {
            let routes = match transport.transport {
                TransportKind::Sse => HttpRoutes::LegacySse,
                TransportKind::All => HttpRoutes::All,
                _ => HttpRoutes::Streamable,
            };
            let http = serve_http_announced(server, &transport.http, routes).await?;
            let stop = http.cancellation_token();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    stop.cancel();
                }
            });
            http.wait().await?;
        }
    }
    Ok(())
}

/// Binds the HTTP listener for `server` and prints where it serves on stderr
/// (`listening on http://ADDR/mcp`, and `…/sse` when legacy SSE is served).
pub async fn serve_http_announced<S>(
    server: S,
    http: &HttpArgs,
    routes: HttpRoutes,
) -> anyhow::Result<switchboard_transport::HttpServer>
where
    S: ServerHandler + Clone + Send + Sync + 'static,
{
    serve_http_announced_with(server, http, routes, axum::Router::new()).await
}

/// [`serve_http_announced`] with `extra` routes on the same listener.
pub async fn serve_http_announced_with<S>(
    server: S,
    http: &HttpArgs,
    routes: HttpRoutes,
    extra: axum::Router,
) -> anyhow::Result<switchboard_transport::HttpServer>
where
    S: ServerHandler + Clone + Send + Sync + 'static,
{
    let running = switchboard_transport::serve_http_with(
        move || Ok(server.clone()),
        http.listen,
        routes,
        &http.http_limits(),
        extra,
    )
    .await?;
    if routes != HttpRoutes::LegacySse {
        eprintln!("listening on http://{}/mcp", running.local_addr);
    }
    if routes != HttpRoutes::Streamable {
        eprintln!("listening on http://{}/sse", running.local_addr);
    }
    Ok(running)
}
