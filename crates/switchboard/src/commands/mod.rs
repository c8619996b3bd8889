//! The command-line surface. Each subcommand is one module; `run` dispatches.

mod bench;
mod call;
mod serve;
mod server;
mod status;
mod tools;
mod version;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Switchboard: MCP servers, an MCP gateway and an agent runner in one binary.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Log filter in `tracing` syntax, e.g. `info` or `switchboard_fs=debug`.
    #[arg(
        long,
        global = true,
        env = "SWITCHBOARD_LOG",
        default_value = "info,rmcp=warn"
    )]
    pub log: String,
    /// Log format. Logs always go to stderr, never stdout (stdout carries MCP over stdio).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Async worker threads; 0 means one per CPU core.
    #[arg(
        long,
        global = true,
        env = "SWITCHBOARD_WORKER_THREADS",
        default_value_t = 0
    )]
    pub worker_threads: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The gateway: every configured MCP server behind one endpoint. With no configuration,
    /// the built-in fs, sql and crm servers on 127.0.0.1:8080 (`/mcp` and `/sse`).
    Serve(serve::ServeArgs),
    /// Run one built-in MCP server on its own.
    #[command(subcommand)]
    Server(server::ServerCommand),
    /// Benchmark one tool of an MCP server launched over stdio, with the same client for any server.
    Bench(bench::BenchArgs),
    /// List the tools of an MCP server given by URL or by a command after `--`.
    Tools(tools::ToolsArgs),
    /// Call one tool of an MCP server: `call [URL] TOOL [JSON-ARGS] [-- COMMAND...]`.
    Call(call::CallArgs),
    /// Print the version and the MCP protocol versions spoken.
    Version(version::VersionArgs),
    /// Show a running gateway's upstreams: health, circuit, restarts, tools, cache.
    Status(status::StatusArgs),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Server(command) => server::run(command).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Tools(args) => tools::run(args).await,
        Command::Call(args) => call::run(args).await,
        Command::Version(args) => version::run(args),
        Command::Status(args) => status::run(args).await,
    }
}

pub fn init_logging(global: &GlobalArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&global.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match global.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
