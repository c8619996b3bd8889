//! `switchboard serve`: the gateway. With no configuration it mounts the three built-in
//! servers in-process on SQLite under `./switchboard-data` and serves them on
//! 127.0.0.1:8080 at `/mcp` (Streamable HTTP, both eras) and `/sse` (legacy HTTP+SSE).

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::Args;
use switchboard_gateway::{Gateway, GatewayConfig, GatewayServer, otlp::OtlpConfig};
use switchboard_transport::HttpRoutes;

use super::server::HttpArgs;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Gateway configuration (TOML): the upstreams and their policies. Without it (and without
    /// --mcp-servers), the built-in fs, sql and crm servers are served.
    #[arg(long, short, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// A desktop client's `{"mcpServers": {…}}` JSON file to serve instead of a TOML config.
    #[arg(long, conflicts_with = "config")]
    pub mcp_servers: Option<PathBuf>,
    /// Where the zero-configuration servers keep their data (files/, demo.db, crm.db).
    #[arg(long, default_value = "./switchboard-data")]
    pub data_dir: PathBuf,
    /// Serve the gateway over stdio instead of HTTP (for a desktop client that launches it).
    #[arg(long)]
    pub stdio: bool,
    /// With --stdio and `[security.auth]`: the bearer JWT or API key the stdio client acts as
    /// (stdio carries no headers, so it is checked once, at start).
    #[arg(
        long,
        env = "SWITCHBOARD_CREDENTIAL",
        hide_env_values = true,
        requires = "stdio"
    )]
    pub credential: Option<String>,
    /// With --config or --mcp-servers: check the file for changes every N seconds and apply
    /// them without a restart (0: only on SIGHUP). SIGHUP always reloads.
    #[arg(long, default_value_t = 2)]
    pub watch_secs: u64,
    /// Answer session-era `tools/call` requests (from a client that declared no roots,
    /// sampling, elicitation or tasks) in the HTTP connection's task, as one JSON body (an
    /// event stream when progress comes first), instead of through rmcp's session worker.
    /// `false` sends every request through rmcp.
    #[arg(long, env = "SWITCHBOARD_DIRECT_CALLS", default_value_t = true, action = clap::ArgAction::Set)]
    pub direct_calls: bool,
    #[command(flatten)]
    pub http: HttpArgs,
}

const FILES_README: &str = "This folder is the root of Switchboard's built-in filesystem server.\n\
Agents connected to the gateway can read and write files here, and nowhere else.\n";

/// The configuration file `serve` was started with, and how to read it: (path, is JSON).
fn config_file(args: &ServeArgs) -> Option<(PathBuf, bool)> {
    match (&args.config, &args.mcp_servers) {
        (Some(path), _) => Some((path.clone(), false)),
        (None, Some(path)) => Some((path.clone(), true)),
        (None, None) => None,
    }
}

/// Reads a `--config` TOML or `--mcp-servers` JSON file.
fn load_config(path: &std::path::Path, mcp_servers_json: bool) -> anyhow::Result<GatewayConfig> {
    if mcp_servers_json {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read {}", path.display()))?;
        Ok(GatewayConfig::from_mcp_servers_json(&text)?)
    } else {
        Ok(GatewayConfig::load(path)?)
    }
}

/// The reload reason when another replica reloaded (`[cluster]`); such a reload is not
/// announced again.
const CLUSTER_RELOAD: &str = "another replica reloaded";

/// Applies the configuration file's changes: on SIGHUP, and when its content changes (checked
/// every `every`; `None`: SIGHUP only). A file that does not load changes nothing; the error is
/// logged and the running configuration keeps serving.
async fn reload_on_change(
    gateway: Arc<Gateway>,
    path: PathBuf,
    mcp_servers_json: bool,
    every: Option<std::time::Duration>,
) {
    let fingerprint = |path: &std::path::Path| {
        std::fs::read(path).ok().map(|bytes| {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut hasher);
            hasher.finish()
        })
    };
    let mut seen = fingerprint(&path);
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = every.map(tokio::time::interval);
    loop {
        let hup = async {
            #[cfg(unix)]
            if let Some(signal) = hangup.as_mut() {
                signal.recv().await;
                return "SIGHUP";
            }
            std::future::pending::<&'static str>().await
        };
        let changed = async {
            match tick.as_mut() {
                Some(tick) => loop {
                    tick.tick().await;
                    let now = fingerprint(&path);
                    if now.is_some() && now != seen {
                        seen = now;
                        return "file change";
                    }
                },
                None => std::future::pending().await,
            }
        };
        let asked = gateway.reload_requests();
        let reason = tokio::select! {
            reason = hup => reason,
            reason = changed => reason,
            _ = asked.notified() => CLUSTER_RELOAD,
        };
        let result = match load_config(&path, mcp_servers_json) {
            Ok(config) => gateway.reload(config).await.map_err(anyhow::Error::from),
            Err(err) => {
                gateway.reload_failed(&format!("{err:#}"));
                Err(err)
            }
        };
        match result {
            Ok(summary) => {
                eprintln!(
                    "reloaded {} ({reason}): kept {:?}, started {:?}, stopped {:?}",
                    path.display(),
                    summary.kept,
                    summary.started,
                    summary.stopped
                );
                tracing::info!(path = %path.display(), reason, ?summary, "configuration reloaded");
                // Every replica rereads its file now, not at its next check.
                if reason != CLUSTER_RELOAD
                    && let Some(cluster) = gateway.cluster()
                {
                    cluster
                        .publish(switchboard_gateway::cluster::ClusterEvent::Reload)
                        .await;
                }
            }
            Err(err) => {
                eprintln!(
                    "reload of {} ({reason}) failed, still serving the previous configuration: {err:#}",
                    path.display()
                );
                tracing::error!(path = %path.display(), reason, error = %format!("{err:#}"), "configuration reload failed");
            }
        }
    }
}

/// Wires this replica into `[cluster]`: ended sessions are announced and honoured, and the
/// other events go to the gateway.
fn join_cluster(
    cluster: &Arc<switchboard_gateway::cluster::Cluster>,
    gateway: &Arc<Gateway>,
    sealer: &Arc<switchboard_transport::SessionSealer>,
    stats: &switchboard_transport::HttpStats,
    stop: tokio_util::sync::CancellationToken,
) {
    use switchboard_gateway::cluster::ClusterEvent;
    let announce = cluster.clone();
    sealer.on_revoke(Arc::new(move |session: &str| {
        let announce = announce.clone();
        let event = ClusterEvent::SessionEnded {
            session: session.to_owned(),
        };
        tokio::spawn(async move { announce.publish(event).await });
    }));
    let gateway = gateway.clone();
    let sealer = sealer.clone();
    let sessions = stats.sessions.clone();
    let _events = cluster.subscribe(stop, move |event| match event {
        ClusterEvent::SessionEnded { session } => {
            sealer.revoke(&session);
            if let Some(sessions) = sessions.clone() {
                tokio::spawn(async move {
                    use rmcp::transport::streamable_http_server::session::SessionManager;
                    let _ = sessions.close_session(&Arc::from(session.as_str())).await;
                });
            }
        }
        other => {
            let gateway = gateway.clone();
            tokio::spawn(async move { gateway.apply_cluster_event(other).await });
        }
    });
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let (config, source) = if let Some((path, json)) = config_file(&args) {
        let kind = if json { "mcpServers" } else { "config" };
        (
            load_config(&path, json)?,
            format!("{kind} {}", path.display()),
        )
    } else {
        let files = args.data_dir.join("files");
        std::fs::create_dir_all(&files)
            .with_context(|| format!("could not create {}", files.display()))?;
        let readme = files.join("README.txt");
        if !readme.exists() {
            std::fs::write(&readme, FILES_README)
                .with_context(|| format!("could not write {}", readme.display()))?;
        }
        (
            GatewayConfig::builtin_defaults(&args.data_dir),
            format!("built-in servers, data in {}", args.data_dir.display()),
        )
    };
    // `[security.auth]`: HTTP clients must authenticate (keys and secrets load once, here).
    let authenticator = match &config.security.auth {
        Some(auth) => Some(Arc::new(
            switchboard_gateway::auth::Authenticator::new(auth.clone(), &args.data_dir)
                .context("[security.auth]")?,
        )),
        None => None,
    };
    // `[audit]` (on by default): each tools/call is committed to the log before its answer.
    let auditor = switchboard_audit::Auditor::open(&config.audit, &args.data_dir)
        .await
        .context("[audit]")?;
    if let Some(auditor) = &auditor {
        eprintln!("audit log: {}", auditor.location());
    }
    let otlp = config.observability.otlp.clone();
    // `[sessions]`: keys read once, here; every request opens its session id with them.
    let mut sealer = config.sessions.sealer().map_err(anyhow::Error::msg)?;
    if authenticator.is_some() {
        // A session continues only for the subject that opened it.
        sealer = sealer.with_subject(Arc::new(|extensions: &axum::http::Extensions| {
            extensions
                .get::<Arc<switchboard_gateway::auth::Identity>>()
                .map(|identity| identity.subject.clone())
        }));
    }
    let sealer = Arc::new(sealer);
    let gateway = Arc::new(Gateway::with_audit(config, auditor.clone())?);
    let unreachable = gateway.start().await?;
    for (name, err) in &unreachable {
        tracing::warn!(upstream = %name, %err, "upstream unreachable at start; it will be retried");
    }
    let server = GatewayServer::new(gateway.clone());
    // Hot reload of the configuration file (SIGHUP, or a change of its content).
    let reloader = config_file(&args).map(|(path, json)| {
        let every = (args.watch_secs > 0).then(|| std::time::Duration::from_secs(args.watch_secs));
        tokio::spawn(reload_on_change(gateway.clone(), path, json, every))
    });
    // OpenTelemetry traces: `[observability.otlp]`, else the OTEL_EXPORTER_OTLP_* variables.
    let traces = match otlp.or_else(|| OtlpConfig::from_env(|name| std::env::var(name).ok())) {
        Some(otlp) => {
            let export = crate::otel::install(&otlp)?;
            let to = otlp
                .endpoint
                .as_deref()
                .unwrap_or("the OTEL_EXPORTER_OTLP_* endpoint");
            eprintln!("traces: OTLP/HTTP to {to}");
            Some(export)
        }
        None => None,
    };

    let outcome = if args.stdio {
        let server = match (&authenticator, &args.credential) {
            (Some(auth), Some(credential)) => {
                let identity = auth
                    .authenticate(Some(&format!("Bearer {credential}")), None)
                    .await
                    .context("--credential (SWITCHBOARD_CREDENTIAL) was refused")?;
                eprintln!("stdio client authenticated as {:?}", identity.subject);
                server.with_transport_identity(identity)
            }
            (Some(auth), None) if !auth.config.allow_anonymous => anyhow::bail!(
                "[security.auth] refuses anonymous callers, and stdio carries no credentials: \
                 give the stdio client's bearer JWT or API key with --credential or \
                 SWITCHBOARD_CREDENTIAL"
            ),
            (None, Some(_)) => {
                anyhow::bail!("--credential needs [security.auth] in the gateway configuration")
            }
            _ => server,
        };
        eprintln!("switchboard gateway ({source}) serving MCP over stdio");
        switchboard_transport::serve_stdio(server)
            .await
            .map_err(anyhow::Error::from)
    } else {
        // `/api/status` beside `/mcp` and `/sse`, behind the same Host/Origin checks.
        let limits = args.http.http_limits();
        let policy = switchboard_transport::guard::HostOriginPolicy {
            allowed_hosts: limits.allowed_hosts,
            allowed_origins: limits.allowed_origins,
        };
        // The dashboard, /healthz, /readyz, /metrics and the call stream, likewise guarded.
        let status =
            switchboard_gateway::status_api::router(gateway.clone(), policy.clone()).merge(
                switchboard_gateway::dashboard::router(gateway.clone(), policy.clone()),
            );
        // `/api/audit`, likewise guarded (and behind authentication when it is on).
        let status = match &auditor {
            Some(auditor) => status.merge(switchboard_gateway::audit_api::router(
                auditor.clone(),
                policy.clone(),
            )),
            None => status,
        };
        let wrap_auth = authenticator.clone();
        let mut http_limits = args.http.http_limits();
        http_limits.session_sealer = Some(sealer.clone());
        // Session-era calls answered without rmcp's session worker (see
        // `switchboard_transport::direct`).
        let server = if args.direct_calls {
            let direct = Arc::new(switchboard_transport::DirectSessions::new());
            http_limits.direct_sessions = Some(direct.clone());
            server.with_direct_sessions(direct)
        } else {
            server
        };
        let http = switchboard_transport::serve_http_wrapped(
            move || Ok(server.clone()),
            args.http.listen,
            HttpRoutes::All,
            &http_limits,
            status,
            move |router| {
                // The dashboard's own requests (same origin) pass the Origin checks.
                let router = switchboard_gateway::dashboard::allow_same_origin(router, policy);
                match wrap_auth {
                    Some(auth) => switchboard_gateway::auth::http::protect(router, auth),
                    None => router,
                }
            },
        )
        .await?;
        gateway.observer().attach_http(http.stats.clone());
        if let Some(cluster) = gateway.cluster() {
            join_cluster(
                cluster,
                &gateway,
                &sealer,
                &http.stats,
                http.cancellation_token(),
            );
            eprintln!(
                "cluster: replica {} (Redis events and shared cache)",
                cluster.node()
            );
        }
        if sealer.is_ephemeral() {
            eprintln!(
                "sessions: sealed with a key made at start; they resume on this process only \
                 (set [sessions] keys_env to share them between replicas)"
            );
        }
        eprintln!("listening on http://{}/mcp", http.local_addr);
        eprintln!("listening on http://{}/sse", http.local_addr);
        print_banner(
            &gateway,
            &source,
            http.local_addr,
            !args.http.allowed_origins.is_empty(),
            authenticator.as_deref(),
        );
        let stop = http.cancellation_token();
        let observer = gateway.observer().clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            // Open call streams would otherwise hold up the graceful shutdown.
            observer.close_streams();
            stop.cancel();
        });
        http.wait().await.map_err(anyhow::Error::from)
    };
    if let Some(reloader) = reloader {
        reloader.abort();
    }
    // Whatever ended serving, end every upstream (stdio children with their process groups).
    gateway.shutdown().await;
    // Then commit what is still queued and close the audit store.
    if let Some(auditor) = &auditor {
        auditor.shutdown().await;
    }
    // Last, so the spans of calls that finished during shutdown are exported too.
    if let Some(traces) = traces {
        traces.shutdown().await;
    }
    outcome
}

fn print_banner(
    gateway: &Gateway,
    source: &str,
    addr: std::net::SocketAddr,
    origins: bool,
    auth: Option<&switchboard_gateway::auth::Authenticator>,
) {
    let catalog = gateway.cached_catalog();
    let tools = catalog.as_ref().map(|c| c.tools.len()).unwrap_or(0);
    eprintln!("Switchboard gateway ({source})");
    eprintln!("  MCP (Streamable HTTP, 2026-07-28 and session era): http://{addr}/mcp");
    eprintln!("  MCP (legacy HTTP+SSE, 2024-11-05):                 http://{addr}/sse");
    eprintln!("  Dashboard:                                         http://{addr}/");
    eprintln!("  Metrics: http://{addr}/metrics   Health: http://{addr}/healthz, /readyz");
    eprintln!(
        "  {tools} tools from {} upstreams:",
        gateway.upstreams().len()
    );
    for status in gateway.status() {
        let count = status
            .tools
            .map(|n| n.to_string())
            .unwrap_or_else(|| "?".into());
        eprintln!("    {:<12} {count:>3} tools", status.name);
    }
    let origins = if origins {
        "; browser origins as allowed"
    } else {
        ""
    };
    match auth {
        Some(auth) => eprintln!(
            "  Access: authenticated ({}){origins}. Stop with Ctrl-C.",
            auth.describe()
        ),
        None if addr.ip().is_loopback() => {
            eprintln!("  Access: anonymous, loopback only{origins}. Stop with Ctrl-C.")
        }
        None => eprintln!(
            "  Access: anonymous, NO AUTHENTICATION on a non-loopback address{origins}; \
             configure [security.auth]. Stop with Ctrl-C."
        ),
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
