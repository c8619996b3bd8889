//! `switchboard bench`: drive one MCP server with the same client, whoever wrote the server.
//!
//! The server is either launched as a child process over stdio (the transport every MCP
//! server speaks), or reached at a URL: `--url` for Streamable HTTP, `--sse` for the legacy
//! HTTP+SSE transport. So Switchboard's servers and gateway and other people's (the official
//! Node servers, Python servers, peer gateways) are measured with exactly the same client,
//! framing and call pattern. Results are calls per second and latency percentiles; `--json`
//! prints one machine-readable line.
//!
//! `--concurrency C` is C calls in flight at once, each from its own worker that waits for
//! its answer before sending the next call. `--sessions N` spreads those workers over N
//! MCP sessions (N connections: for stdio, N server processes). For URL targets the default is
//! one session per worker, which is how a gateway is used: many clients, each with its own
//! session and one call at a time. `--sessions 1` multiplexes every call over one session
//! (one HTTP request per call, up to C in flight).
//!
//! `--wire` (stdio, or `--url`) swaps the rmcp client for one that checks each answer's id,
//! error and `isError` while skipping its content (`bench_wire`): for large answers, where the
//! rmcp client's decoding would cost more than the server's work, and for gateways, where
//! the rmcp HTTP client's own CPU per call is as large as the gateway's on a small machine.
//!
//! With a command, the launched server's CPU time per call is reported; with a URL, that of
//! the processes given with `--server-pid`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use rmcp::{
    RoleClient, ServiceExt,
    model::{CallToolRequestParams, ClientConfig},
    service::RunningService,
    transport::{ConfigureCommandExt, TokioChildProcess},
};
use switchboard_transport::{ConnectOptions, Era, Upstream};

use super::{
    bench_wire::{HttpEra, WireClient, WireHttpClient},
    tools::EraArg,
};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Tool to call.
    #[arg(long)]
    pub tool: String,
    /// Arguments of each call, as a JSON object.
    #[arg(long, default_value = "{}")]
    pub args: String,
    /// Number of measured calls (ignored with --duration).
    #[arg(long, default_value_t = 2000)]
    pub calls: usize,
    /// Measure for this many seconds instead of a fixed number of calls.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Calls before measuring (JIT warm-up, caches), spread over the workers like the
    /// measured calls.
    #[arg(long, default_value_t = 200)]
    pub warmup: usize,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// MCP sessions the concurrent calls are spread over (for stdio, server processes).
    /// Default: one per in-flight call for --url/--sse, 1 for a command.
    #[arg(long)]
    pub sessions: Option<usize>,
    /// Benchmark the Streamable HTTP MCP endpoint at this URL (e.g. http://127.0.0.1:8080/mcp)
    /// instead of launching a command.
    #[arg(long, conflicts_with = "sse")]
    pub url: Option<String>,
    /// Benchmark the legacy HTTP+SSE server whose SSE endpoint is this URL.
    #[arg(long)]
    pub sse: Option<String>,
    /// Extra HTTP header for --url/--sse, as `Name: value` (e.g. `Authorization: Bearer …`);
    /// repeat for several.
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// Handshake for --url: `initialize` (session era, the default: what every peer speaks),
    /// `discover` (stateless 2026-07-28) or `auto`.
    #[arg(long, value_enum, default_value_t = EraArg::Initialize)]
    pub era: EraArg,
    /// A label for the output (e.g. the server's name).
    #[arg(long, default_value = "server")]
    pub label: String,
    /// Print one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Use the wire-level client (a command over stdio, or --url over plain HTTP/1.1): every
    /// answer is parsed as JSON and its id, error and `isError` checked, but its content is
    /// skipped rather than decoded into values, and no MCP library runs in the client.
    /// With --url, `--era` must be `initialize` or `discover`.
    #[arg(long, conflicts_with = "sse")]
    pub wire: bool,
    /// A server process whose CPU time to report per call, for --url/--sse (with a command,
    /// the launched server is counted). Repeat for several (a gateway and its children).
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,
    /// Count failed calls (protocol errors or `isError`) instead of stopping at the first.
    #[arg(long)]
    pub allow_errors: bool,
    /// The server command and its arguments, after `--` (when no --url or --sse is given).
    #[arg(last = true, required_unless_present_any = ["url", "sse"], conflicts_with_all = ["url", "sse"])]
    pub command: Vec<String>,
}

/// One open session, through the rmcp client or the wire-level one.
enum Client {
    /// `pid`: the server process, when this session launched one.
    Rmcp {
        service: RunningService<RoleClient, ClientConfig>,
        pid: Option<u32>,
    },
    Wire(std::sync::Arc<WireClient>),
    WireHttp(std::sync::Arc<WireHttpClient>),
}

/// A handle a worker calls through.
#[derive(Clone)]
enum Caller {
    Rmcp(rmcp::Peer<RoleClient>),
    Wire(std::sync::Arc<WireClient>),
    WireHttp(std::sync::Arc<WireHttpClient>),
}

impl Client {
    fn caller(&self) -> Caller {
        match self {
            Client::Rmcp { service, .. } => Caller::Rmcp(service.peer().clone()),
            Client::Wire(client) => Caller::Wire(client.clone()),
            Client::WireHttp(client) => Caller::WireHttp(client.clone()),
        }
    }

    fn server_pid(&self) -> Option<u32> {
        match self {
            Client::Rmcp { pid, .. } => *pid,
            Client::Wire(client) => client.pid(),
            Client::WireHttp(_) => None,
        }
    }

    async fn close(self) {
        match self {
            Client::Rmcp { service, .. } => {
                let _ = service.cancel().await;
            }
            Client::Wire(client) => drop(client),
            Client::WireHttp(client) => client.close().await,
        }
    }
}

/// How the sessions are opened; every session gets the same call pattern afterwards.
enum Target {
    Command(Vec<String>),
    Wire(Vec<String>),
    WireHttp {
        url: String,
        headers: Vec<(String, String)>,
        era: HttpEra,
        tool: String,
    },
    Remote {
        upstream: Upstream,
        options: Box<ConnectOptions>,
    },
}

impl Target {
    fn from_args(args: &BenchArgs, in_flight_per_session: usize) -> anyhow::Result<Target> {
        let (url, sse) = match (&args.url, &args.sse) {
            (None, None) if args.wire => return Ok(Target::Wire(args.command.clone())),
            (None, None) => return Ok(Target::Command(args.command.clone())),
            (Some(url), _) => (url, false),
            (None, Some(url)) => (url, true),
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("{url} is not an http(s) URL");
        }
        let mut headers = std::collections::BTreeMap::new();
        for raw in &args.headers {
            let (name, value) = raw
                .split_once(':')
                .with_context(|| format!("header {raw:?} is not `Name: value`"))?;
            headers.insert(name.trim().to_owned(), value.trim().to_owned());
        }
        if args.wire {
            let era = match args.era {
                EraArg::Initialize => HttpEra::Session,
                EraArg::Discover => HttpEra::Stateless,
                EraArg::Auto => bail!("with --wire, give --era initialize or --era discover"),
            };
            return Ok(Target::WireHttp {
                url: url.clone(),
                headers: headers.into_iter().collect(),
                era,
                tool: args.tool.clone(),
            });
        }
        let upstream = if sse {
            Upstream::Sse {
                url: url.clone(),
                headers,
            }
        } else {
            Upstream::Http {
                url: url.clone(),
                headers,
            }
        };
        let options = Box::new(ConnectOptions {
            name: "bench".into(),
            era: match args.era {
                EraArg::Auto => Era::Auto,
                EraArg::Initialize => Era::Initialize,
                EraArg::Discover => Era::Discover,
            },
            // Every call of a shared session is its own POST; let all of them be in flight.
            http_max_concurrent_requests: in_flight_per_session.max(1),
            // One connection pool for every session, as one client process would have.
            http_client: Some(switchboard_transport::upstream::default_http_client()?),
            ..ConnectOptions::default()
        });
        Ok(Target::Remote { upstream, options })
    }

    fn transport(&self) -> &'static str {
        match self {
            Target::Command(_) | Target::Wire(_) => "stdio",
            Target::WireHttp { .. } => "http",
            Target::Remote {
                upstream: Upstream::Sse { .. },
                ..
            } => "sse",
            Target::Remote { .. } => "http",
        }
    }

    async fn connect(&self) -> anyhow::Result<Client> {
        match self {
            Target::Command(command) => {
                let (program, rest) = command
                    .split_first()
                    .context("give the server command after --")?;
                let command = tokio::process::Command::new(program).configure(|cmd| {
                    cmd.args(rest);
                });
                let (transport, _) = TokioChildProcess::builder(command)
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .context("could not start the server")?;
                let pid = transport.id();
                ClientConfig::default()
                    .serve(transport)
                    .await
                    .map(|service| Client::Rmcp { service, pid })
                    .context("the server did not complete initialize")
            }
            Target::Wire(command) => Ok(Client::Wire(std::sync::Arc::new(
                WireClient::connect(command).await?,
            ))),
            Target::WireHttp {
                url,
                headers,
                era,
                tool,
            } => Ok(Client::WireHttp(std::sync::Arc::new(
                WireHttpClient::connect(url, headers, *era, tool).await?,
            ))),
            Target::Remote { upstream, options } => {
                switchboard_transport::connect(upstream, ClientConfig::default(), options)
                    .await
                    .map(|service| Client::Rmcp { service, pid: None })
                    .context("could not connect to the server")
            }
        }
    }
}

/// How long a phase of calls runs: a number of calls (split over the workers) or until a
/// deadline.
#[derive(Clone, Copy)]
enum Budget {
    Calls(usize),
    Until(Instant),
}

type CallOutcome = Result<Duration, String>;

/// A call as each client needs it: rmcp's typed request, or the wire client's serialized
/// params.
struct Call {
    request: CallToolRequestParams,
    wire_params: String,
}

async fn call(caller: &Caller, call: &Call) -> CallOutcome {
    let started = Instant::now();
    match caller {
        Caller::Rmcp(peer) => {
            let outcome = peer.call_tool(call.request.clone()).await;
            let elapsed = started.elapsed();
            match outcome {
                Ok(result) if result.is_error != Some(true) => Ok(elapsed),
                Ok(result) => Err(format!("tool error: {:?}", result.content)),
                Err(err) => Err(format!("protocol error: {err}")),
            }
        }
        Caller::Wire(client) => client
            .call(&call.wire_params)
            .await
            .map(|()| started.elapsed()),
        Caller::WireHttp(client) => client
            .call(&call.wire_params)
            .await
            .map(|()| started.elapsed()),
    }
}

/// Runs `concurrency` workers, worker `i` on session `i % sessions`, each sending one call at
/// a time until `budget` is spent. Returns every latency, every error, and the wall time.
async fn phase(
    clients: &[Client],
    concurrency: usize,
    request: &std::sync::Arc<Call>,
    budget: Budget,
    stop_on_error: bool,
) -> anyhow::Result<(Vec<Duration>, Vec<String>, Duration)> {
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let caller = clients[worker % clients.len()].caller();
        let request = request.clone();
        let quota = match budget {
            // Spread the calls so the total is exact.
            Budget::Calls(total) => total / concurrency + usize::from(worker < total % concurrency),
            Budget::Until(_) => usize::MAX,
        };
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = Vec::new();
            let mut sent = 0usize;
            while sent < quota {
                if let Budget::Until(deadline) = budget
                    && Instant::now() >= deadline
                {
                    break;
                }
                sent += 1;
                match call(&caller, &request).await {
                    Ok(latency) => latencies.push(latency),
                    Err(err) => {
                        errors.push(err);
                        if stop_on_error {
                            break;
                        }
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for worker in workers {
        let (l, e) = worker.await.context("a benchmark worker panicked")?;
        latencies.extend(l);
        errors.extend(e);
    }
    Ok((latencies, errors, started.elapsed()))
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let arguments: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&args.args).context("--args must be a JSON object")?;
    let concurrency = args.concurrency.max(1);
    let remote = args.url.is_some() || args.sse.is_some();
    let sessions = args
        .sessions
        .unwrap_or(if remote { concurrency } else { 1 })
        .clamp(1, concurrency);
    let target = Target::from_args(&args, concurrency.div_ceil(sessions))?;
    if let Some(secs) = args.duration
        && !(secs.is_finite() && secs > 0.0)
    {
        bail!("--duration must be a positive number of seconds");
    }

    // Open the sessions a few at a time: a peer may handle handshakes slowly.
    let mut clients = Vec::with_capacity(sessions);
    let mut pending = tokio::task::JoinSet::new();
    let target = std::sync::Arc::new(target);
    let mut opened = 0;
    while clients.len() < sessions {
        while opened < sessions && pending.len() < 16 {
            let target = target.clone();
            pending.spawn(async move { target.connect().await });
            opened += 1;
        }
        match pending.join_next().await {
            Some(joined) => clients.push(joined.context("connecting panicked")??),
            None => break,
        }
    }

    let wire_params = serde_json::to_string(&serde_json::json!({
        "name": args.tool,
        "arguments": arguments,
    }))?;
    let request = std::sync::Arc::new(Call {
        request: CallToolRequestParams::new(args.tool.clone()).with_arguments(arguments),
        wire_params,
    });
    let mut pids: Vec<u32> = clients.iter().filter_map(Client::server_pid).collect();
    pids.extend(&args.server_pids);
    let result = measure(&args, &clients, concurrency, &request, &pids).await;
    for client in clients {
        client.close().await;
    }
    let (latencies, errors, wall, server_cpu) = result?;
    if !args.allow_errors && !errors.is_empty() {
        bail!("{} of the calls failed; first: {}", errors.len(), errors[0]);
    }
    let mut latencies = latencies;
    latencies.sort();
    let mut report = Report::new(
        &args.label,
        &args.tool,
        target.transport(),
        concurrency,
        sessions,
        &latencies,
        errors.len(),
        wall,
    );
    if args.wire {
        report.client = "wire";
    }
    report.server_cpu_us_per_call = server_cpu
        .map(|cpu| (cpu.as_secs_f64() * 1e6 / report.calls.max(1) as f64 * 10.0).round() / 10.0);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}

async fn measure(
    args: &BenchArgs,
    clients: &[Client],
    concurrency: usize,
    request: &std::sync::Arc<Call>,
    server_pids: &[u32],
) -> anyhow::Result<(Vec<Duration>, Vec<String>, Duration, Option<Duration>)> {
    if args.warmup > 0 {
        let (_, errors, _) = phase(
            clients,
            concurrency.min(args.warmup),
            request,
            Budget::Calls(args.warmup),
            !args.allow_errors,
        )
        .await?;
        if !args.allow_errors
            && let Some(err) = errors.first()
        {
            bail!("warm-up call failed: {err}");
        }
    }
    let budget = match args.duration {
        Some(secs) => Budget::Until(Instant::now() + Duration::from_secs_f64(secs)),
        None => Budget::Calls(args.calls),
    };
    let cpu_before = servers_cpu(server_pids);
    let (latencies, errors, wall) = phase(clients, concurrency, request, budget, false).await?;
    let server_cpu = match (cpu_before, servers_cpu(server_pids)) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    Ok((latencies, errors, wall, server_cpu))
}

/// CPU time the server processes have used so far (every live thread's
/// `/proc/<pid>/task/<tid>/schedstat`, in nanoseconds): the server's own cost per call,
/// whatever the client and the rest of the machine do. `None` off Linux or without pids.
fn servers_cpu(pids: &[u32]) -> Option<Duration> {
    if pids.is_empty() {
        return None;
    }
    let mut total = 0u64;
    for pid in pids {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
                continue;
            };
            let ns = stat
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            total = total.saturating_add(ns);
        }
    }
    Some(Duration::from_nanos(total))
}

#[derive(Debug, serde::Serialize)]
struct Report {
    label: String,
    tool: String,
    transport: &'static str,
    /// `rmcp` (decodes every answer) or `wire` (checks it, see `--wire`).
    client: &'static str,
    concurrency: usize,
    sessions: usize,
    calls: usize,
    errors: usize,
    calls_per_sec: f64,
    p50_us: u128,
    p90_us: u128,
    p99_us: u128,
    max_us: u128,
    /// CPU time of the server process(es) per measured call (on Linux: the launched server,
    /// or the `--server-pid` processes).
    #[serde(skip_serializing_if = "Option::is_none")]
    server_cpu_us_per_call: Option<f64>,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    fn new(
        label: &str,
        tool: &str,
        transport: &'static str,
        concurrency: usize,
        sessions: usize,
        sorted: &[Duration],
        errors: usize,
        wall: Duration,
    ) -> Report {
        let pct = |p: f64| -> u128 {
            if sorted.is_empty() {
                return 0;
            }
            let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
            sorted[index.min(sorted.len() - 1)].as_micros()
        };
        Report {
            label: label.to_string(),
            tool: tool.to_string(),
            transport,
            client: "rmcp",
            concurrency,
            sessions,
            calls: sorted.len(),
            errors,
            calls_per_sec: sorted.len() as f64 / wall.as_secs_f64().max(f64::EPSILON),
            p50_us: pct(0.50),
            p90_us: pct(0.90),
            p99_us: pct(0.99),
            max_us: sorted.last().map(|d| d.as_micros()).unwrap_or(0),
            server_cpu_us_per_call: None,
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ({}, {} client) c={} sessions={}: {} calls, {:.0} calls/s, p50 {} µs, p90 {} µs, p99 {} µs, max {} µs, {} errors",
            self.label,
            self.tool,
            self.transport,
            self.client,
            self.concurrency,
            self.sessions,
            self.calls,
            self.calls_per_sec,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.max_us,
            self.errors
        )?;
        if let Some(cpu) = self.server_cpu_us_per_call {
            write!(f, ", server CPU {cpu} µs/call")?;
        }
        Ok(())
    }
}
