//! The `switchboard` binary: one executable for the built-in MCP servers, the gateway and the
//! agent runner. This file only parses the command line, sets up logging and dispatches;
//! every subcommand lives in its own module under `commands/`.

mod commands;
mod otel;

use clap::Parser;

use crate::commands::Cli;

/// mimalloc instead of glibc's allocator. A gateway call allocates and frees many small,
/// short-lived objects across threads (tokio tasks, which need 128-byte alignment, JSON-RPC
/// messages, header maps); under `perf`, glibc's `malloc`/`free`/`memalign` and its chunk
/// consolidation were ~30% of the gateway's CPU on the session-era relay path. mimalloc's
/// per-thread free lists cut that (+11-17% calls/s, -20% CPU per call, BENCHMARKS.md), and it
/// returns freed memory to the system on its own. `no_thp`: with transparent huge pages its
/// resident memory nearly doubled (10,000 sessions held: 1,057 MiB against 711 MiB without).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
