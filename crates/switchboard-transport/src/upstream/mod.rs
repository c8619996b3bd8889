//! Reaching an MCP server ("upstream") over any transport, from one serde-configured enum.
//!
//! The gateway embeds [`Upstream`] in its config and the CLI builds one from a target; both
//! call [`connect`] with their own rmcp `ClientHandler` and get rmcp's `RunningService` back,
//! so everything after connecting is plain rmcp. Per transport:
//! - `stdio`: a child in its own process group, with an explicit environment (nothing from
//!   the parent except an allow-list) and the group shutdown of [`stdio`] on `cancel()`;
//! - `sse`: our legacy HTTP+SSE client ([`sse_client`]), `initialize` handshake (2024-11-05
//!   servers know nothing newer);
//! - `http`: rmcp's Streamable HTTP client on a pooled `reqwest::Client` (rmcp's default
//!   client disables pooling), era auto-detected with `server/discover` falling back to
//!   `initialize`. rmcp already honours the SSE `retry` field when it reconnects a stream.

pub mod sse_client;
pub mod stdio;

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use rmcp::{
    ClientHandler, RoleClient,
    model::ProtocolVersion,
    service::{ClientLifecycleMode, RunningService, serve_client_with_lifecycle},
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde::{Deserialize, Serialize};

pub use sse_client::{SseClientError, SseClientTransport};
pub use stdio::{
    ProcessGroupChild, ShutdownOutcome, ShutdownTimeouts, StdioCommand, live_children,
    process_group_alive,
};

/// Where an upstream MCP server is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "transport", rename_all = "lowercase")]
pub enum Upstream {
    /// A local server launched as a child process, speaking newline-delimited JSON-RPC.
    Stdio {
        command: String,
        #[serde(default)]
        args: Vec<String>,
        /// Variables set for the child.
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// Parent variables passed through by name; all others are withheld from the child.
        #[serde(default = "default_env_allowlist")]
        env_allowlist: Vec<String>,
        /// Working directory; the parent's when absent.
        #[serde(default)]
        cwd: Option<PathBuf>,
    },
    /// A legacy HTTP+SSE (2024-11-05) server; `url` is its SSE endpoint.
    Sse {
        url: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
    /// A Streamable HTTP server (any era); `url` is its MCP endpoint.
    Http {
        url: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
}

/// Parent variables a stdio upstream inherits unless configured otherwise: enough to find
/// programs and pick a locale, nothing that carries credentials.
pub fn default_env_allowlist() -> Vec<String> {
    ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER"]
        .into_iter()
        .map(String::from)
        .collect()
}

impl Upstream {
    /// A stdio upstream with the default environment allow-list.
    pub fn stdio(command: impl Into<String>, args: Vec<String>) -> Self {
        Self::Stdio {
            command: command.into(),
            args,
            env: BTreeMap::new(),
            env_allowlist: default_env_allowlist(),
            cwd: None,
        }
    }

    /// The transport for a URL: a path ending in `/sse` means legacy HTTP+SSE, anything else
    /// Streamable HTTP.
    pub fn from_url(url: &str) -> Self {
        let path = url.split(['?', '#']).next().unwrap_or(url);
        if path.trim_end_matches('/').ends_with("/sse") {
            Self::Sse {
                url: url.to_owned(),
                headers: BTreeMap::new(),
            }
        } else {
            Self::Http {
                url: url.to_owned(),
                headers: BTreeMap::new(),
            }
        }
    }
}

/// Which handshake to use; [`Era::Auto`] is right unless a server misbehaves on probing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Era {
    /// Probe with `server/discover` (2026-07-28), fall back to `initialize` on a legacy answer.
    /// Legacy SSE upstreams always use `initialize`.
    #[default]
    Auto,
    /// Always `initialize` (2025-11-25 and older).
    Initialize,
    /// Always `server/discover` (2026-07-28 only).
    Discover,
}

/// Knobs of [`connect`]; every limit has a documented default.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Name used in logs (the stderr of stdio upstreams is logged under it).
    pub name: String,
    /// Whole connect, including process start or HTTP round trips and the handshake.
    /// Default 30 s.
    pub connect_timeout: Duration,
    /// The handshake. Default [`Era::Auto`].
    pub era: Era,
    /// The stdio shutdown steps. Defaults: 2 s after closing stdin, 2 s after SIGTERM.
    pub shutdown: ShutdownTimeouts,
    /// Longest JSON-RPC line accepted from a stdio upstream (longer ones are dropped).
    /// Default 16 MiB.
    pub max_line_bytes: usize,
    /// Longest stderr line logged from a stdio upstream (the rest is cut). Default 8 KiB.
    pub max_stderr_line_bytes: usize,
    /// Largest SSE event accepted from an HTTP or legacy SSE upstream. Default 16 MiB.
    pub max_sse_event_bytes: usize,
    /// Server messages buffered by the legacy SSE client. Default 64.
    pub sse_queue_len: usize,
    /// Requests one Streamable HTTP session has in flight at once (one POST each); more wait
    /// in order. Default 16 (rmcp's).
    pub http_max_concurrent_requests: usize,
    /// The HTTP client; share one between upstreams to share its connection pool. Default:
    /// a new pooled client with redirects disabled (a redirect could replay headers such as
    /// credentials to another origin).
    pub http_client: Option<reqwest::Client>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            name: "upstream".into(),
            connect_timeout: Duration::from_secs(30),
            era: Era::Auto,
            shutdown: ShutdownTimeouts::default(),
            max_line_bytes: 16 * 1024 * 1024,
            max_stderr_line_bytes: 8 * 1024,
            max_sse_event_bytes: 16 * 1024 * 1024,
            sse_queue_len: 64,
            http_max_concurrent_requests: 16,
            http_client: None,
        }
    }
}

/// Why connecting failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not start {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Sse(#[from] SseClientError),
    #[error("invalid HTTP upstream configuration: {0}")]
    Config(String),
    #[error("the MCP handshake failed: {0}")]
    Handshake(String),
    #[error("connecting took longer than {0:?}")]
    Timeout(Duration),
    #[error("closing the upstream failed: {0}")]
    Close(String),
}

/// A connected upstream: rmcp's running client service.
pub type UpstreamClient<H> = RunningService<RoleClient, H>;

/// Builds the pooled client used when [`ConnectOptions::http_client`] is unset.
pub fn default_http_client() -> Result<reqwest::Client, UpstreamError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| UpstreamError::Config(e.to_string()))
}

fn lifecycle(era: Era) -> ClientLifecycleMode {
    match era {
        Era::Auto => ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::LATEST],
            legacy_version: None,
        },
        Era::Initialize => ClientLifecycleMode::Initialize,
        Era::Discover => ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::LATEST],
        },
    }
}

/// Connects `handler` to `upstream`, bounded by `options.connect_timeout`.
///
/// End the session with [`shutdown`] (or `RunningService::cancel`): for stdio that runs the
/// process-group shutdown before returning.
pub async fn connect<H>(
    upstream: &Upstream,
    handler: H,
    options: &ConnectOptions,
) -> Result<UpstreamClient<H>, UpstreamError>
where
    H: ClientHandler,
{
    let timeout = options.connect_timeout;
    tokio::time::timeout(timeout, connect_inner(upstream, handler, options))
        .await
        .map_err(|_| UpstreamError::Timeout(timeout))?
}

async fn connect_inner<H>(
    upstream: &Upstream,
    handler: H,
    options: &ConnectOptions,
) -> Result<UpstreamClient<H>, UpstreamError>
where
    H: ClientHandler,
{
    let handshake =
        |e: rmcp::service::ClientInitializeError| UpstreamError::Handshake(e.to_string());
    match upstream {
        Upstream::Stdio {
            command,
            args,
            env,
            env_allowlist,
            cwd,
        } => {
            let spec = StdioCommand {
                command: command.clone(),
                args: args.clone(),
                env: env.clone(),
                env_allowlist: env_allowlist.clone(),
                cwd: cwd.clone(),
            };
            let spawn_error = |source| UpstreamError::Spawn {
                command: command.clone(),
                source,
            };
            let child =
                ProcessGroupChild::spawn(&spec, &options.name, options.max_stderr_line_bytes)
                    .map_err(spawn_error)?;
            let transport =
                stdio::StdioUpstreamTransport::new(child, options.max_line_bytes, options.shutdown)
                    .map_err(spawn_error)?;
            serve_client_with_lifecycle(handler, transport, lifecycle(options.era))
                .await
                .map_err(handshake)
        }
        Upstream::Sse { url, headers } => {
            let client = match &options.http_client {
                Some(client) => client.clone(),
                None => default_http_client()?,
            };
            let transport = SseClientTransport::connect(
                client,
                url,
                headers,
                options.max_sse_event_bytes,
                options.sse_queue_len,
            )
            .await?;
            let era = match options.era {
                Era::Auto => Era::Initialize,
                other => other,
            };
            serve_client_with_lifecycle(handler, transport, lifecycle(era))
                .await
                .map_err(handshake)
        }
        Upstream::Http { url, headers } => {
            let client = match &options.http_client {
                Some(client) => client.clone(),
                None => default_http_client()?,
            };
            let mut config =
                StreamableHttpClientTransportConfig::with_uri(Arc::<str>::from(url.as_str()));
            config.max_sse_event_size = options.max_sse_event_bytes;
            config.max_concurrent_requests = options.http_max_concurrent_requests.max(1);
            for (name, value) in
                sse_client::header_map(headers).map_err(|e| UpstreamError::Config(e.to_string()))?
            {
                if let Some(name) = name {
                    config.custom_headers.insert(name, value);
                }
            }
            let transport = StreamableHttpClientTransport::with_client(client, config);
            serve_client_with_lifecycle(handler, transport, lifecycle(options.era))
                .await
                .map_err(handshake)
        }
    }
}

/// Ends a session: closes the transport and, for stdio, runs the process-group shutdown.
pub async fn shutdown<H>(client: UpstreamClient<H>) -> Result<(), UpstreamError>
where
    H: ClientHandler,
{
    client
        .cancel()
        .await
        .map(|_| ())
        .map_err(|e| UpstreamError::Close(e.to_string()))
}
