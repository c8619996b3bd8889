//! `switchboard server fs`: the filesystem server on its own.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use switchboard_fs::{FsConfig, FsServer, Limits};

use super::TransportArgs;

#[derive(Debug, Args)]
pub struct FsArgs {
    /// An allowed directory; repeat for several. Nothing outside them can be read or written,
    /// whatever the path, `..` or symlink. A client that offers MCP roots replaces these.
    #[arg(long = "root", required = true, value_name = "DIR")]
    pub roots: Vec<PathBuf>,
    /// Serve only the reading tools: every writing tool is removed from `tools/list`.
    #[arg(long)]
    pub read_only: bool,
    #[command(flatten)]
    pub limits: FsLimitArgs,
    #[command(flatten)]
    pub transport: TransportArgs,
}

/// The filesystem server's limits (see `switchboard_fs::Limits`).
#[derive(Debug, Args)]
pub struct FsLimitArgs {
    /// Most bytes one call may read.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub max_read_bytes: u64,
    /// Most bytes one write or edit may produce.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub max_write_bytes: u64,
    /// Most entries one listing or tree may return.
    #[arg(long, default_value_t = 10_000)]
    pub max_entries: usize,
    /// Deepest level `directory_tree` expands.
    #[arg(long, default_value_t = 32)]
    pub max_tree_depth: usize,
    /// Most results one search returns (then `truncated: true`).
    #[arg(long, default_value_t = 1_000)]
    pub max_search_results: usize,
    /// Seconds one search may run (then `truncated: true`).
    #[arg(long, default_value_t = 30)]
    pub search_timeout_secs: u64,
    /// Most paths one `read_multiple_files` call may name.
    #[arg(long, default_value_t = 100)]
    pub max_files_per_call: usize,
}

impl FsLimitArgs {
    pub fn to_limits(&self) -> Limits {
        Limits {
            max_read_bytes: self.max_read_bytes,
            max_write_bytes: self.max_write_bytes,
            max_entries: self.max_entries,
            max_tree_depth: self.max_tree_depth,
            max_search_results: self.max_search_results,
            search_time_budget: std::time::Duration::from_secs(self.search_timeout_secs),
            max_files_per_call: self.max_files_per_call,
        }
    }
}

pub async fn run(args: FsArgs) -> anyhow::Result<()> {
    let server = FsServer::new(FsConfig {
        roots: args.roots.clone(),
        read_only: args.read_only,
        limits: args.limits.to_limits(),
    })
    .context("could not start the filesystem server")?;
    super::serve(server, &args.transport).await
}
