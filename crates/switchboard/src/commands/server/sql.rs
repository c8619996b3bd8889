//! `switchboard server sql`: the SQL database server.
//!
//! Read-only unless `--allow-writes`; every limit is a flag so operators see and set them.

use std::{path::PathBuf, time::Duration};

use clap::Args;
use switchboard_sql::{DatabaseUrl, Limits, SqlConfig, SqlServer};

use super::TransportArgs;

#[derive(Debug, Args)]
pub struct SqlArgs {
    #[command(flatten)]
    pub transport: TransportArgs,
    /// Database URL: sqlite://path.db, postgres://user@host/db or mysql://user@host/db.
    /// Without it, a seeded SQLite demo database is created at --demo-db.
    #[arg(long, env = "SWITCHBOARD_SQL_URL", hide_env_values = true)]
    pub url: Option<String>,
    /// Where the demo database is created when no --url is given.
    #[arg(long, default_value = "./switchboard-data/demo.db")]
    pub demo_db: PathBuf,
    /// Offer the `execute` and `insert_record` tools (writes are committed).
    #[arg(long)]
    pub allow_writes: bool,
    /// Most rows one query returns (more: `truncated` and a cursor for the next page).
    #[arg(long, default_value_t = Limits::default().max_rows)]
    pub max_rows: usize,
    /// Most bytes of cell data in one result.
    #[arg(long, default_value_t = Limits::default().max_result_bytes)]
    pub max_result_bytes: usize,
    /// Most bytes of one text or binary cell; longer cells are cut.
    #[arg(long, default_value_t = Limits::default().max_cell_bytes)]
    pub max_cell_bytes: usize,
    /// Seconds a statement may run before the database cancels it.
    #[arg(long, default_value_t = Limits::default().statement_timeout.as_secs())]
    pub statement_timeout_secs: u64,
    /// Connections in the pool.
    #[arg(long, default_value_t = Limits::default().pool_size)]
    pub pool_size: u32,
    /// Seconds a call waits for a free connection before failing as busy.
    #[arg(long, default_value_t = Limits::default().acquire_timeout.as_secs())]
    pub acquire_timeout_secs: u64,
}

pub async fn run(args: SqlArgs) -> anyhow::Result<()> {
    let config = SqlConfig {
        url: args.url.map(DatabaseUrl::new),
        demo_path: args.demo_db,
        allow_writes: args.allow_writes,
        limits: Limits {
            max_rows: args.max_rows.max(1),
            max_result_bytes: args.max_result_bytes,
            max_cell_bytes: args.max_cell_bytes,
            statement_timeout: Duration::from_secs(args.statement_timeout_secs.max(1)),
            pool_size: args.pool_size.max(1),
            acquire_timeout: Duration::from_secs(args.acquire_timeout_secs.max(1)),
        },
    };
    let target = config.url.as_ref().map_or_else(
        || format!("demo database {}", config.demo_path.display()),
        ToString::to_string,
    );
    let server = SqlServer::connect(&config).await?;
    tracing::info!(
        engine = server.engine(),
        allow_writes = config.allow_writes,
        "sql server on {target}"
    );
    super::serve(server, &args.transport).await
}
