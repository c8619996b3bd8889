//! The gateway's configuration file (TOML), and the zero-configuration default.
//!
//! Unknown keys and bad values are refused at load time; the TOML parser's error names the
//! line and column, and semantic checks (duplicate names, bad globs) name the upstream.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use switchboard_transport::Upstream;

use crate::naming::is_valid_name;

/// The whole gateway configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The upstream MCP servers, in order. Order decides nothing but the listing order.
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<UpstreamConfig>,
    /// Authentication, authorization and the other security layers ([`crate::auth`]); absent:
    /// all off.
    #[serde(default)]
    pub security: crate::auth::SecurityConfig,
    /// `[observability]`: the live call stream's bounds ([`crate::telemetry`]).
    #[serde(default)]
    pub observability: crate::telemetry::ObservabilityConfig,
    /// `[audit]`: the durable audit log of every `tools/call` ([`crate::stack::audit`]);
    /// absent: on, SQLite at `<data dir>/audit.db`.
    #[serde(default)]
    pub audit: switchboard_audit::AuditConfig,
    /// `[sessions]`: the keys that seal session-era `Mcp-Session-Id`s ([`crate::cluster`]).
    #[serde(default)]
    pub sessions: crate::cluster::SessionsConfig,
    /// `[cluster]`: the Redis replicas share (result cache, events); absent: none.
    #[serde(default)]
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

/// One upstream MCP server and the gateway's policy for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Unique name; the prefix of its tools (`name__tool`). `^[a-zA-Z0-9_-]{1,32}$`.
    pub name: String,
    /// A server reached over a transport: `{ transport = "stdio" | "sse" | "http", … }`.
    #[serde(default)]
    pub connect: Option<Upstream>,
    /// A built-in server mounted in-process (no child process).
    #[serde(default)]
    pub builtin: Option<BuiltinServer>,
    /// A REST service whose OpenAPI document becomes its tools, mounted in-process
    /// (`[upstream.openapi]`, see [`switchboard_openapi::OpenApiConfig`]).
    #[serde(default)]
    pub openapi: Option<Box<switchboard_openapi::OpenApiConfig>>,
    /// Which of its tools are exposed.
    #[serde(default)]
    pub tools: ToolFilter,
    /// Upstream tool name → exposed name (before prefixing).
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Upstream tool name → description shown instead of the upstream's.
    #[serde(default)]
    pub descriptions: BTreeMap<String, String>,
    /// How exposed names are prefixed.
    #[serde(default)]
    pub prefix: PrefixMode,
    /// Deadline of one `tools/call`, in seconds. Default 60.
    #[serde(default = "default_call_timeout_secs")]
    pub timeout_secs: u64,
    /// Deadline of this upstream's part of a `tools/list` fan-out, in seconds. Default 10.
    #[serde(default = "default_list_timeout_secs")]
    pub list_timeout_secs: u64,
    /// How long a cached tool list is trusted without a `list_changed`, in seconds. Default 300.
    #[serde(default = "default_tools_ttl_secs")]
    pub tools_ttl_secs: u64,
    /// Fail the whole `tools/list` when this upstream cannot list (default: skip it).
    #[serde(default)]
    pub fail_closed: bool,
    /// The circuit breaker.
    #[serde(default)]
    pub circuit: CircuitConfig,
    /// The handshake with the upstream ([`UpstreamEra`]). Default `auto`.
    #[serde(default)]
    pub era: UpstreamEra,
    /// `false` keeps the upstream in the file but off: not connected, not listed, its calls
    /// refused with an `upstream_disabled` error. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Retries of failed calls to idempotent tools ([`crate::stack::retry`]).
    #[serde(default)]
    pub retry: crate::stack::retry::RetryConfig,
    /// The opt-in result cache ([`crate::stack::cache`]); absent: nothing is cached.
    #[serde(default)]
    pub cache: Option<crate::stack::cache::CacheConfig>,
    /// Active health checks ([`crate::health`]).
    #[serde(default)]
    pub health: crate::health::HealthConfig,
    /// stdio only: which child serves whose requests ([`Isolation`]). Default `shared`.
    #[serde(default)]
    pub isolation: Isolation,
    /// stdio only: the most child processes of this upstream alive at once, the shared one
    /// included ([`crate::children`]). At least 1, and at least 2 with
    /// `isolation = "per_client"`. Default 8.
    #[serde(default)]
    pub max_processes: Option<u32>,
    /// stdio only: a child (shared or per-client) with no request in flight and none for this
    /// many seconds is ended and started again on its next use; 0 = never. Default 300.
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
}

/// Which child process serves a stdio upstream's requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// One child for every client.
    #[default]
    Shared,
    /// Each downstream client gets its own child for `tools/call`, `resources/read` and
    /// `prompts/get`; the shared child stays for listing, health checks, subscriptions and
    /// completion. A client is its MCP session or connection (stdio, legacy SSE, a Streamable
    /// HTTP session); a stateless 2026-07-28 request has none, so it is keyed by its
    /// authenticated subject (all anonymous stateless callers share one child). A child is
    /// ended when its session ends (seen within a second) or when idle (`idle_timeout_secs`).
    PerClient,
}

/// The default of [`UpstreamConfig::max_processes`].
pub const DEFAULT_MAX_PROCESSES: u32 = 8;
/// The default of [`UpstreamConfig::idle_timeout_secs`].
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 300;

fn default_call_timeout_secs() -> u64 {
    60
}
fn default_list_timeout_secs() -> u64 {
    10
}
fn default_tools_ttl_secs() -> u64 {
    300
}

impl UpstreamConfig {
    pub fn call_timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
    pub fn list_timeout(&self) -> Duration {
        Duration::from_secs(self.list_timeout_secs)
    }
    pub fn tools_ttl(&self) -> Duration {
        Duration::from_secs(self.tools_ttl_secs)
    }
    /// Whether the upstream is a child process (`connect = { transport = "stdio", … }`).
    pub fn is_stdio(&self) -> bool {
        matches!(self.connect, Some(Upstream::Stdio { .. }))
    }
    /// The cap on live children, the shared one included.
    pub fn max_processes(&self) -> u32 {
        self.max_processes.unwrap_or(DEFAULT_MAX_PROCESSES)
    }
    /// How long a child may sit idle; `None`: forever (0, or not a stdio upstream).
    pub fn idle_timeout(&self) -> Option<Duration> {
        let secs = self.idle_timeout_secs.unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS);
        (self.is_stdio() && secs > 0).then(|| Duration::from_secs(secs))
    }
    /// The checks of the child-process settings.
    fn validate_processes(&self) -> Result<(), String> {
        if !self.is_stdio() {
            if self.isolation != Isolation::Shared {
                return Err(
                    "isolation = \"per_client\" needs a stdio upstream (connect = { transport = \"stdio\", … })"
                        .into(),
                );
            }
            for (key, given) in [
                ("max_processes", self.max_processes.is_some()),
                ("idle_timeout_secs", self.idle_timeout_secs.is_some()),
            ] {
                if given {
                    return Err(format!(
                        "{key} applies to stdio upstreams only (it bounds their child processes)"
                    ));
                }
            }
            return Ok(());
        }
        if self.max_processes() == 0 {
            return Err("max_processes must be at least 1".into());
        }
        if self.isolation == Isolation::PerClient && self.max_processes() < 2 {
            return Err(
                "isolation = \"per_client\" needs max_processes of at least 2 (the shared child and one per client)"
                    .into(),
            );
        }
        Ok(())
    }

    /// A built-in upstream with default policy.
    pub fn builtin(name: &str, server: BuiltinServer) -> UpstreamConfig {
        UpstreamConfig {
            builtin: Some(server),
            ..UpstreamConfig::remote(name, None)
        }
    }

    /// An upstream reached over a transport, with default policy.
    pub fn remote(name: &str, connect: Option<Upstream>) -> UpstreamConfig {
        UpstreamConfig {
            name: name.to_string(),
            connect,
            builtin: None,
            openapi: None,
            tools: ToolFilter::default(),
            rename: BTreeMap::new(),
            descriptions: BTreeMap::new(),
            prefix: PrefixMode::default(),
            timeout_secs: default_call_timeout_secs(),
            list_timeout_secs: default_list_timeout_secs(),
            tools_ttl_secs: default_tools_ttl_secs(),
            fail_closed: false,
            circuit: CircuitConfig::default(),
            era: UpstreamEra::default(),
            enabled: true,
            retry: crate::stack::retry::RetryConfig::default(),
            cache: None,
            health: crate::health::HealthConfig::default(),
            isolation: Isolation::default(),
            max_processes: None,
            idle_timeout_secs: None,
        }
    }
}

/// A built-in server and its options.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "server", rename_all = "lowercase", deny_unknown_fields)]
pub enum BuiltinServer {
    Fs {
        roots: Vec<PathBuf>,
        #[serde(default)]
        read_only: bool,
    },
    Sql {
        /// Database URL; a seeded SQLite demo database when absent.
        #[serde(default)]
        url: Option<String>,
        /// Where the demo database lives when `url` is absent.
        #[serde(default)]
        demo_db: Option<PathBuf>,
        #[serde(default)]
        allow_writes: bool,
    },
    /// One `echo` tool; for measuring and checking the gateway itself.
    Echo,
    Crm {
        /// `sqlite://…` or `postgres://…`; `sqlite://./switchboard-data/crm.db` when absent.
        #[serde(default)]
        db: Option<String>,
        /// Seed the demo contacts into an empty database. Default true.
        #[serde(default = "default_true")]
        demo: bool,
    },
}

fn default_true() -> bool {
    true
}

/// Allow and deny globs over upstream tool names. Deny wins; an empty allow list allows all.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolFilter {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

/// The compiled form of a [`ToolFilter`].
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    allow: Option<GlobSet>,
    deny: GlobSet,
}

impl CompiledFilter {
    pub fn allows(&self, tool: &str) -> bool {
        !self.deny.is_match(tool) && self.allow.as_ref().is_none_or(|a| a.is_match(tool))
    }
}

impl ToolFilter {
    pub fn compile(&self, upstream: &str) -> Result<CompiledFilter, ConfigError> {
        let build = |patterns: &[String]| -> Result<GlobSet, ConfigError> {
            let mut builder = GlobSetBuilder::new();
            for pattern in patterns {
                builder.add(Glob::new(pattern).map_err(|e| ConfigError::Invalid {
                    upstream: upstream.to_string(),
                    message: format!("bad tool glob {pattern:?}: {e}"),
                })?);
            }
            builder.build().map_err(|e| ConfigError::Invalid {
                upstream: upstream.to_string(),
                message: e.to_string(),
            })
        };
        Ok(CompiledFilter {
            allow: if self.allow.is_empty() {
                None
            } else {
                Some(build(&self.allow)?)
            },
            deny: build(&self.deny)?,
        })
    }
}

/// Which protocol era the gateway speaks to an upstream.
///
/// The connection is shared by every client, so its era is fixed. A session-era connection
/// (`initialize`) lets the upstream send `sampling/createMessage`, `elicitation/create` and
/// `roots/list` and accept `resources/subscribe`, all bridged to session-era clients; a
/// 2026-07-28 upstream on a modern connection asks with `input_required` results instead,
/// which reach 2026-07-28 clients unchanged and are answered for session-era clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamEra {
    /// `server/discover` (2026-07-28), falling back to `initialize`.
    #[default]
    Auto,
    /// Always `initialize` (2025-11-25 and older).
    Initialize,
    /// Always `server/discover` (2026-07-28 only).
    Discover,
}

impl From<UpstreamEra> for switchboard_transport::Era {
    fn from(era: UpstreamEra) -> Self {
        match era {
            UpstreamEra::Auto => switchboard_transport::Era::Auto,
            UpstreamEra::Initialize => switchboard_transport::Era::Initialize,
            UpstreamEra::Discover => switchboard_transport::Era::Discover,
        }
    }
}

/// How an upstream's tool names are exposed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrefixMode {
    /// `upstream__tool`, always: names never change when upstreams come and go.
    #[default]
    Always,
    /// The bare name, prefixed only when another upstream exposes the same name.
    Conditional,
    /// The bare name; a collision is a load error.
    Never,
}

/// Circuit breaker settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitConfig {
    /// Consecutive failed calls (transport errors, timeouts) that open the circuit. Default 5.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// Seconds the circuit stays open before one probe call is let through. Default 30.
    #[serde(default = "default_open_secs")]
    pub open_secs: u64,
}

fn default_failure_threshold() -> u32 {
    5
}
fn default_open_secs() -> u64 {
    30
}

impl Default for CircuitConfig {
    fn default() -> Self {
        CircuitConfig {
            failure_threshold: default_failure_threshold(),
            open_secs: default_open_secs(),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("upstream {upstream:?}: {message}")]
    Invalid { upstream: String, message: String },
}

impl GatewayConfig {
    /// Reads and validates a TOML file.
    pub fn load(path: &std::path::Path) -> Result<GatewayConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        GatewayConfig::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text. Parse errors carry the line and column.
    pub fn parse(text: &str) -> Result<GatewayConfig, ConfigError> {
        let config: GatewayConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Semantic checks the parser cannot make.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for upstream in &self.upstreams {
            let invalid = |message: String| ConfigError::Invalid {
                upstream: upstream.name.clone(),
                message,
            };
            if !is_valid_name(&upstream.name) || upstream.name.len() > 32 {
                return Err(invalid(
                    "the name must match ^[a-zA-Z0-9_-]{1,32}$ (it prefixes tool names)".into(),
                ));
            }
            if upstream.name.contains("__") {
                return Err(invalid(
                    "the name must not contain `__`, the prefix separator".into(),
                ));
            }
            if !seen.insert(upstream.name.as_str()) {
                return Err(invalid("the name is used by another upstream".into()));
            }
            let kinds = [
                upstream.connect.is_some(),
                upstream.builtin.is_some(),
                upstream.openapi.is_some(),
            ];
            if kinds.iter().filter(|given| **given).count() != 1 {
                return Err(invalid(
                    "give exactly one of `connect = { transport = … }`, `builtin = { server = … }` or `[upstream.openapi]`"
                        .into(),
                ));
            }
            if let Some(openapi) = &upstream.openapi {
                openapi.validate().map_err(|e| invalid(e.to_string()))?;
            }
            if upstream.timeout_secs == 0 || upstream.list_timeout_secs == 0 {
                return Err(invalid("timeouts must be at least 1 second".into()));
            }
            if upstream.circuit.failure_threshold == 0 {
                return Err(invalid(
                    "circuit.failure_threshold must be at least 1".into(),
                ));
            }
            for exposed in upstream.rename.values() {
                if !is_valid_name(exposed) {
                    return Err(invalid(format!(
                        "rename target {exposed:?} must match ^[a-zA-Z0-9_-]{{1,64}}$"
                    )));
                }
            }
            upstream.tools.compile(&upstream.name)?;
            upstream.retry.validate().map_err(invalid)?;
            if let Some(cache) = &upstream.cache {
                cache.validate().map_err(invalid)?;
            }
            upstream.health.validate().map_err(invalid)?;
            upstream.validate_processes().map_err(invalid)?;
        }
        if let Some(validation) = &self.security.validation {
            validation
                .validate()
                .map_err(|message| ConfigError::Invalid {
                    upstream: "security.validation".into(),
                    message,
                })?;
        }
        crate::ratelimit::validate(&self.security.rate_limit)?;
        if let Some(otlp) = &self.observability.otlp {
            otlp.validate().map_err(|message| ConfigError::Invalid {
                upstream: "observability.otlp".into(),
                message,
            })?;
        }
        self.sessions
            .validate()
            .map_err(|message| ConfigError::Invalid {
                upstream: "sessions".into(),
                message,
            })?;
        if let Some(cluster) = &self.cluster {
            cluster.validate().map_err(|message| ConfigError::Invalid {
                upstream: "cluster".into(),
                message,
            })?;
        }
        self.audit.validate().map_err(|e| ConfigError::Invalid {
            upstream: "audit".into(),
            message: e.to_string(),
        })?;
        Ok(())
    }

    /// `switchboard config import`: the TOML equivalent of a desktop client's `mcpServers`
    /// JSON, with default policies left implicit so the file stays short. The output parses
    /// back to the same upstreams.
    pub fn import_mcp_servers_json(text: &str) -> Result<String, ConfigError> {
        #[derive(serde::Serialize)]
        struct Imported<'a> {
            upstream: Vec<ImportedUpstream<'a>>,
        }
        #[derive(serde::Serialize)]
        struct ImportedUpstream<'a> {
            name: &'a str,
            connect: &'a Upstream,
        }
        let config = GatewayConfig::from_mcp_servers_json(text)?;
        let imported = Imported {
            upstream: config
                .upstreams
                .iter()
                .filter_map(|u| {
                    u.connect.as_ref().map(|connect| ImportedUpstream {
                        name: &u.name,
                        connect,
                    })
                })
                .collect(),
        };
        let toml = toml::to_string(&imported).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<mcpServers>"),
            message: format!("could not write TOML: {e}"),
        })?;
        Ok(format!(
            "# Imported from a desktop client's mcpServers JSON by `switchboard config import`.\n\n{toml}"
        ))
    }

    /// Converts the `{"mcpServers": {…}}` JSON of desktop clients (Claude Desktop, Cursor):
    /// entries with `command` become stdio upstreams, entries with `url` HTTP or legacy SSE
    /// upstreams (`type: "sse"` or a URL ending in `/sse`). Names are kept where valid and
    /// otherwise sanitised.
    pub fn from_mcp_servers_json(text: &str) -> Result<GatewayConfig, ConfigError> {
        #[derive(Deserialize)]
        struct Desktop {
            #[serde(rename = "mcpServers")]
            mcp_servers: BTreeMap<String, DesktopServer>,
        }
        #[derive(Deserialize)]
        struct DesktopServer {
            command: Option<String>,
            #[serde(default)]
            args: Vec<String>,
            #[serde(default)]
            env: BTreeMap<String, String>,
            cwd: Option<PathBuf>,
            url: Option<String>,
            #[serde(default)]
            headers: BTreeMap<String, String>,
            #[serde(rename = "type")]
            kind: Option<String>,
        }
        let desktop: Desktop = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<mcpServers>"),
            message: e.to_string(),
        })?;
        let mut upstreams = Vec::new();
        for (name, server) in desktop.mcp_servers {
            let sanitized: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '-'
                    }
                })
                .take(32)
                .collect();
            let connect = match (server.command, server.url) {
                (Some(command), None) => Upstream::Stdio {
                    command,
                    args: server.args,
                    env: server.env,
                    env_allowlist: switchboard_transport::upstream::default_env_allowlist(),
                    cwd: server.cwd,
                },
                (None, Some(url)) => match server.kind.as_deref() {
                    Some("sse") => Upstream::Sse {
                        url,
                        headers: server.headers,
                    },
                    Some("http") | Some("streamable-http") | Some("streamableHttp") => {
                        Upstream::Http {
                            url,
                            headers: server.headers,
                        }
                    }
                    _ => match Upstream::from_url(&url) {
                        Upstream::Sse { url, .. } => Upstream::Sse {
                            url,
                            headers: server.headers,
                        },
                        _ => Upstream::Http {
                            url,
                            headers: server.headers,
                        },
                    },
                },
                _ => {
                    return Err(ConfigError::Invalid {
                        upstream: name,
                        message: "an mcpServers entry needs exactly one of `command` or `url`"
                            .into(),
                    });
                }
            };
            upstreams.push(UpstreamConfig::remote(&sanitized, Some(connect)));
        }
        let config = GatewayConfig {
            upstreams,
            ..GatewayConfig::default()
        };
        config.validate()?;
        Ok(config)
    }

    /// The zero-configuration gateway: the three built-in servers, on SQLite, under `data_dir`.
    pub fn builtin_defaults(data_dir: &std::path::Path) -> GatewayConfig {
        GatewayConfig {
            upstreams: vec![
                UpstreamConfig::builtin(
                    "fs",
                    BuiltinServer::Fs {
                        roots: vec![data_dir.join("files")],
                        read_only: false,
                    },
                ),
                UpstreamConfig::builtin(
                    "sql",
                    BuiltinServer::Sql {
                        url: None,
                        demo_db: Some(data_dir.join("demo.db")),
                        allow_writes: false,
                    },
                ),
                UpstreamConfig::builtin(
                    "crm",
                    BuiltinServer::Crm {
                        db: Some(format!("sqlite://{}", data_dir.join("crm.db").display())),
                        demo: true,
                    },
                ),
            ],
            ..GatewayConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_config_parses() {
        let config = GatewayConfig::parse(
            r#"
            [[upstream]]
            name = "files"
            builtin = { server = "fs", roots = ["/tmp"], read_only = true }
            tools = { deny = ["delete_*"] }
            timeout_secs = 5

            [[upstream]]
            name = "everything"
            connect = { transport = "stdio", command = "npx", args = ["-y", "server-everything"] }
            prefix = "conditional"
            rename = { echo = "say" }
            circuit = { failure_threshold = 3, open_secs = 10 }

            [[upstream]]
            name = "remote"
            connect = { transport = "http", url = "http://127.0.0.1:9000/mcp" }
            "#,
        )
        .expect("valid config");
        assert_eq!(config.upstreams.len(), 3);
        let filter = config.upstreams[0].tools.compile("files").expect("globs");
        assert!(filter.allows("read_text_file"));
        assert!(!filter.allows("delete_file"));
        assert_eq!(config.upstreams[1].prefix, PrefixMode::Conditional);
        assert_eq!(config.upstreams[2].timeout_secs, 60);
    }

    #[test]
    fn unknown_keys_are_refused_with_the_line() {
        let err = GatewayConfig::parse("[[upstream]]\nname = \"a\"\ntimeout = 5\n")
            .expect_err("unknown key");
        let text = err.to_string();
        assert!(text.contains("line 3"), "{text}");
        assert!(text.contains("timeout"), "{text}");
    }

    #[test]
    fn desktop_mcp_servers_json_converts() {
        let config = GatewayConfig::from_mcp_servers_json(
            r#"{"mcpServers": {
                "files": {"command": "npx", "args": ["-y", "server-filesystem", "/tmp"]},
                "remote api": {"url": "http://127.0.0.1:9000/mcp"},
                "old": {"url": "http://127.0.0.1:9001/sse"}
            }}"#,
        )
        .expect("converts");
        let names: Vec<&str> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["files", "old", "remote-api"]);
        assert!(matches!(
            config.upstreams[0].connect,
            Some(Upstream::Stdio { .. })
        ));
        assert!(matches!(
            config.upstreams[1].connect,
            Some(Upstream::Sse { .. })
        ));
        assert!(matches!(
            config.upstreams[2].connect,
            Some(Upstream::Http { .. })
        ));
    }

    #[test]
    fn imported_toml_parses_back_to_the_same_upstreams() {
        let json = r#"{"mcpServers": {
            "files": {"command": "npx", "args": ["-y", "server-filesystem", "/tmp"], "env": {"A": "1"}},
            "old": {"url": "http://127.0.0.1:9001/sse"}
        }}"#;
        let toml = GatewayConfig::import_mcp_servers_json(json).expect("import");
        let back = GatewayConfig::parse(&toml).expect("parses back");
        let direct = GatewayConfig::from_mcp_servers_json(json).expect("direct");
        assert_eq!(back.upstreams.len(), 2);
        for (a, b) in back.upstreams.iter().zip(&direct.upstreams) {
            assert_eq!(a.name, b.name);
            assert_eq!(a.connect, b.connect);
        }
    }

    #[test]
    fn semantic_errors_name_the_upstream() {
        let both = GatewayConfig::parse(
            "[[upstream]]\nname = \"a\"\nbuiltin = { server = \"fs\", roots = [] }\nconnect = { transport = \"http\", url = \"http://x\" }\n",
        )
        .expect_err("both sources");
        assert!(both.to_string().contains("exactly one"), "{both}");
        let dup = GatewayConfig::parse(
            "[[upstream]]\nname = \"a\"\nbuiltin = { server = \"sql\" }\n[[upstream]]\nname = \"a\"\nbuiltin = { server = \"sql\" }\n",
        )
        .expect_err("duplicate");
        assert!(dup.to_string().contains("another upstream"), "{dup}");
        let bad =
            GatewayConfig::parse("[[upstream]]\nname = \"a__b\"\nbuiltin = { server = \"sql\" }\n")
                .expect_err("separator");
        assert!(bad.to_string().contains("__"), "{bad}");
    }

    const STDIO: &str = "connect = { transport = \"stdio\", command = \"server\" }";
    const HTTP: &str = "connect = { transport = \"http\", url = \"http://127.0.0.1:9/mcp\" }";

    fn upstream(connect: &str, extra: &str) -> Result<GatewayConfig, ConfigError> {
        GatewayConfig::parse(&format!("[[upstream]]\nname = \"a\"\n{connect}\n{extra}\n"))
    }

    #[test]
    fn child_process_settings_default_and_parse() {
        let config = upstream(STDIO, "").expect("defaults");
        let a = &config.upstreams[0];
        assert_eq!(a.isolation, Isolation::Shared);
        assert_eq!(a.max_processes(), 8);
        assert_eq!(a.idle_timeout(), Some(Duration::from_secs(300)));
        let config = upstream(
            STDIO,
            "isolation = \"per_client\"\nmax_processes = 2\nidle_timeout_secs = 0",
        )
        .expect("per client");
        let a = &config.upstreams[0];
        assert_eq!(a.isolation, Isolation::PerClient);
        assert_eq!(a.max_processes(), 2);
        assert_eq!(a.idle_timeout(), None, "0 = never");
        // Not a child process: nothing to reap.
        assert_eq!(
            upstream(HTTP, "").expect("http").upstreams[0].idle_timeout(),
            None
        );
    }

    #[test]
    fn bad_child_process_settings_are_refused() {
        for (connect, extra, expected) in [
            (HTTP, "isolation = \"per_client\"", "needs a stdio upstream"),
            (HTTP, "max_processes = 4", "stdio upstreams only"),
            (HTTP, "idle_timeout_secs = 60", "stdio upstreams only"),
            (STDIO, "max_processes = 0", "at least 1"),
            (
                STDIO,
                "isolation = \"per_client\"\nmax_processes = 1",
                "at least 2",
            ),
        ] {
            let err = upstream(connect, extra).expect_err(extra);
            let text = err.to_string();
            assert!(text.contains(expected), "{extra}: {text}");
            assert!(text.contains("\"a\""), "names the upstream: {text}");
        }
        let err = upstream(STDIO, "isolation = \"per_process\"").expect_err("unknown mode");
        assert!(err.to_string().contains("per_client"), "{err}");
        let err = upstream(
            "builtin = { server = \"echo\" }",
            "isolation = \"per_client\"",
        )
        .expect_err("built-in");
        assert!(err.to_string().contains("stdio"), "{err}");
    }
}
