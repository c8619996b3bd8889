//! The command-line surface. Each subcommand is one module; `run` dispatches.

mod agent;
mod audit;
mod bench;
mod bench_wire;
mod call;
mod config;
mod key;
mod openapi;
mod serve;
mod server;
mod status;
mod token;
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
    /// Benchmark one tool of an MCP server (over stdio, Streamable HTTP or legacy SSE), with the
    /// same client for any server.
    Bench(bench::BenchArgs),
    /// List the tools of an MCP server given by URL or by a command after `--`.
    Tools(tools::ToolsArgs),
    /// Call one tool of an MCP server: `call [URL] TOOL [JSON-ARGS] [-- COMMAND...]`.
    Call(call::CallArgs),
    /// Convert (`import`) and validate (`check`) gateway configurations.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Print the version and the MCP protocol versions spoken.
    Version(version::VersionArgs),
    /// Show a running gateway's upstreams: health, circuit, restarts, tools, cache.
    Status(status::StatusArgs),
    /// Run an agent: an LLM (OpenAI-compatible endpoint) with MCP tools in a loop.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Issue a signed HS256 bearer token for the gateway (`token issue --subject X --ttl 1h`).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Create, list and revoke the gateway's API keys (stored as hashes only).
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Work with OpenAPI documents: `openapi inspect SPEC` shows the tools one would become.
    #[command(subcommand)]
    Openapi(openapi::OpenApiCommand),
    /// Query the gateway's audit log (`--since 1h --tool 'crm__*'`), or `prune --older-than 30d`.
    Audit(audit::AuditArgs),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Server(command) => server::run(command).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Tools(args) => tools::run(args).await,
        Command::Call(args) => call::run(args).await,
        Command::Config(command) => config::run(command),
        Command::Version(args) => version::run(args),
        Command::Status(args) => status::run(args).await,
        Command::Agent(command) => agent::run(command).await,
        Command::Token(command) => token::run(command),
        Command::Key(command) => key::run(command),
        Command::Openapi(command) => openapi::run(command).await,
        Command::Audit(args) => audit::run(args).await,
    }
}

pub fn init_logging(global: &GlobalArgs) {
    use tracing_subscriber::{Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _};
    let filter = tracing_subscriber::EnvFilter::try_new(&global.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // `--log` filters the console only; trace export (`crate::otel`) has its own filter.
    // Colours only for a terminal: piped logs (a desktop client's, CI's) stay plain text.
    let console = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let console = match global.log_format {
        LogFormat::Text => console.boxed(),
        LogFormat::Json => console.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(crate::otel::layer())
        .with(console.with_filter(filter))
        .init();
}
