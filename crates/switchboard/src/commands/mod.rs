//! The command-line surface. Each subcommand is one module; `run` dispatches.

mod bench;
mod server;
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
    #[arg(long, global = true, env = "SWITCHBOARD_LOG", default_value = "info")]
    pub log: String,
    /// Log format. Logs always go to stderr, never stdout (stdout carries MCP over stdio).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one built-in MCP server on its own.
    #[command(subcommand)]
    Server(server::ServerCommand),
    /// Benchmark one tool of an MCP server launched over stdio, with the same client for any server.
    Bench(bench::BenchArgs),
    /// Print the version and the MCP protocol versions spoken.
    Version(version::VersionArgs),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server(command) => server::run(command).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Version(args) => version::run(args),
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
