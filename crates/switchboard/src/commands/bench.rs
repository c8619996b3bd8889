//! `switchboard bench`: drive one MCP server with the same client, whoever wrote the server.
//!
//! The server is launched as a child process over stdio (the transport every MCP server
//! speaks), so Switchboard's servers and other people's (the official Node servers, Python
//! servers) are measured with exactly the same client, framing and call pattern. Results are
//! calls per second and latency percentiles; `--json` prints one machine-readable line.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use rmcp::{
    ServiceExt,
    model::{CallToolRequestParams, ClientConfig},
    transport::{ConfigureCommandExt, TokioChildProcess},
};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Tool to call.
    #[arg(long)]
    pub tool: String,
    /// Arguments of each call, as a JSON object.
    #[arg(long, default_value = "{}")]
    pub args: String,
    /// Number of measured calls.
    #[arg(long, default_value_t = 2000)]
    pub calls: usize,
    /// Calls before measuring (JIT warm-up, caches).
    #[arg(long, default_value_t = 200)]
    pub warmup: usize,
    /// Calls in flight at once over the one connection.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// A label for the output (e.g. the server's name).
    #[arg(long, default_value = "server")]
    pub label: String,
    /// Print one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Count failed calls (protocol errors or `isError`) instead of stopping at the first.
    #[arg(long)]
    pub allow_errors: bool,
    /// The server command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let arguments: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&args.args).context("--args must be a JSON object")?;
    let (program, rest) = args
        .command
        .split_first()
        .context("give the server command after --")?;
    let command = tokio::process::Command::new(program).configure(|cmd| {
        cmd.args(rest);
    });
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("could not start the server")?;
    let client = ClientConfig::default()
        .serve(transport)
        .await
        .context("the server did not complete initialize")?;
    let request = CallToolRequestParams::new(args.tool.clone()).with_arguments(arguments);

    let call = |client: rmcp::Peer<rmcp::RoleClient>, request: CallToolRequestParams| async move {
        let started = Instant::now();
        let outcome = client.call_tool(request).await;
        let elapsed = started.elapsed();
        match outcome {
            Ok(result) if result.is_error != Some(true) => Ok(elapsed),
            Ok(result) => Err(format!("tool error: {:?}", result.content)),
            Err(err) => Err(format!("protocol error: {err}")),
        }
    };

    for _ in 0..args.warmup {
        if let Err(err) = call(client.peer().clone(), request.clone()).await
            && !args.allow_errors
        {
            bail!("warm-up call failed: {err}");
        }
    }

    let concurrency = args.concurrency.max(1);
    let per_worker = args.calls.div_ceil(concurrency);
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let peer = client.peer().clone();
        let request = request.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_worker);
            let mut errors = Vec::new();
            for _ in 0..per_worker {
                match call(peer.clone(), request.clone()).await {
                    Ok(latency) => latencies.push(latency),
                    Err(err) => errors.push(err),
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::with_capacity(args.calls);
    let mut errors = Vec::new();
    for worker in workers {
        let (l, e) = worker.await.context("a benchmark worker panicked")?;
        latencies.extend(l);
        errors.extend(e);
    }
    let wall = started.elapsed();
    let _ = client.cancel().await;
    if !args.allow_errors && !errors.is_empty() {
        bail!("{} of the calls failed; first: {}", errors.len(), errors[0]);
    }
    latencies.sort();
    let report = Report::new(
        &args.label,
        &args.tool,
        concurrency,
        &latencies,
        errors.len(),
        wall,
    );
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}

#[derive(Debug, serde::Serialize)]
struct Report {
    label: String,
    tool: String,
    concurrency: usize,
    calls: usize,
    errors: usize,
    calls_per_sec: f64,
    p50_us: u128,
    p90_us: u128,
    p99_us: u128,
    max_us: u128,
}

impl Report {
    fn new(
        label: &str,
        tool: &str,
        concurrency: usize,
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
            concurrency,
            calls: sorted.len(),
            errors,
            calls_per_sec: sorted.len() as f64 / wall.as_secs_f64().max(f64::EPSILON),
            p50_us: pct(0.50),
            p90_us: pct(0.90),
            p99_us: pct(0.99),
            max_us: sorted.last().map(|d| d.as_micros()).unwrap_or(0),
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} c={}: {} calls, {:.0} calls/s, p50 {} µs, p90 {} µs, p99 {} µs, max {} µs, {} errors",
            self.label,
            self.tool,
            self.concurrency,
            self.calls,
            self.calls_per_sec,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.max_us,
            self.errors
        )
    }
}
