//! The `switchboard` binary: one executable for the built-in MCP servers, the gateway and the
//! agent runner. This file only parses the command line, sets up logging and dispatches;
//! every subcommand lives in its own module under `commands/`.

mod commands;
mod otel;

use clap::Parser;

use crate::commands::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    commands::init_logging(&cli.global);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if cli.global.worker_threads > 0 {
        builder.worker_threads(cli.global.worker_threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("switchboard: could not start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("switchboard: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
