//! `switchboard audit`: read the gateway's audit log (a table, or `--json`), and
//! `switchboard audit prune --older-than 30d`. It opens the store directly (the SQLite file
//! under the data directory, or the configured PostgreSQL database), so it works whether or
//! not the gateway is running; SQLite's WAL lets it read while the gateway writes.
//!
//! With the gateway's journal (found through `--config` or under `--data-dir`), records a
//! gateway that is no longer running left there are shipped to the store first, and records
//! a running gateway has not shipped yet are read from its journal, so every answered call
//! shows. With `--url` only the store is read.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use switchboard_audit::{
    AuditRecord, Decision, Filter, Location, Store,
    query::{parse_duration, parse_time},
    ship_leftovers,
};
use switchboard_gateway::GatewayConfig;

/// Widest ERROR column in the table; the full message is in `--json`.
const TABLE_ERROR_CHARS: usize = 60;
/// How long `prune` waits for a running gateway to ship its journal.
const PRUNE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
    #[command(flatten)]
    pub query: QueryArgs,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Delete the records older than a duration (`30d`, `12h`, `2w`).
    Prune(PruneArgs),
}

/// Which audit log: `--url`, else the config's `[audit]`, else `<data dir>/audit.db`.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The gateway's data directory; the log is `DIR/audit.db`, its journal
    /// `DIR/audit-journal`.
    #[arg(long, default_value = "./switchboard-data")]
    pub data_dir: PathBuf,
    /// The log's location: `postgres://…` or a SQLite path.
    #[arg(long, env = "SWITCHBOARD_AUDIT_URL")]
    pub url: Option<String>,
    /// A gateway configuration whose `[audit]` section says where the log is.
    #[arg(long, short, conflicts_with = "url")]
    pub config: Option<PathBuf>,
}

/// An opened audit log: the store, and the gateway's journal directory when there is one.
struct Opened {
    store: Store,
    location: Location,
    journal: Option<PathBuf>,
}

impl StoreArgs {
    /// The store's location, the journal's directory (if any) and the shipping batch size.
    fn location(&self) -> anyhow::Result<(Location, Option<PathBuf>, usize)> {
        let defaults = switchboard_audit::AuditConfig::default();
        if let Some(url) = &self.url {
            return Ok((Location::from_url(url), None, defaults.max_batch));
        }
        if let Some(path) = &self.config {
            let config = GatewayConfig::load(path)?;
            let location = config
                .audit
                .location(&self.data_dir)
                .with_context(|| format!("{}: [audit]", path.display()))?;
            return Ok((
                location,
                config.audit.journal_dir(&self.data_dir),
                config.audit.max_batch,
            ));
        }
        Ok((
            Location::default_in(&self.data_dir),
            defaults.journal_dir(&self.data_dir),
            defaults.max_batch,
        ))
    }

    async fn open(&self) -> anyhow::Result<Opened> {
        let (location, journal, max_batch) = self.location()?;
        let store = Store::open_existing(&location)
            .await
            .with_context(|| format!("opening the audit log {location}"))?;
        let journal = journal.filter(|dir| dir.is_dir());
        if let Some(dir) = &journal {
            ship_journal(dir, &store, max_batch).await;
        }
        Ok(Opened {
            store,
            location,
            journal,
        })
    }
}

/// Ships what gateways that are no longer running left in the journal. Not fatal: the
/// records stay there for the next gateway start (and queries still read them).
async fn ship_journal(dir: &Path, store: &Store, max_batch: usize) {
    match ship_leftovers(dir, store, max_batch).await {
        Ok(0) => {}
        Ok(shipped) => eprintln!(
            "shipped {shipped} audit records left in the journal {} to the store",
            dir.display()
        ),
        Err(err) => eprintln!(
            "warning: could not ship the audit records left in the journal {}: {err}",
            dir.display()
        ),
    }
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Records since a time: a duration ago (`1h`, `7d`), an RFC 3339 time or a date.
    #[arg(long)]
    pub since: Option<String>,
    /// Records before a time (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// The exposed tool name, glob syntax (`crm__*`).
    #[arg(long)]
    pub tool: Option<String>,
    /// The caller's identity (subject), glob syntax.
    #[arg(long)]
    pub identity: Option<String>,
    /// allowed, denied, rate_limited or invalid.
    #[arg(long)]
    pub decision: Option<String>,
    /// At most this many records, newest first (at most 10000).
    #[arg(long, default_value_t = switchboard_audit::query::DEFAULT_LIMIT)]
    pub limit: u32,
    /// Print `{"count": N, "records": [...]}` instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Delete records older than this (`30d`, `12h`, `2w`).
    #[arg(long)]
    pub older_than: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    match args.command {
        Some(AuditCommand::Prune(prune)) => run_prune(prune).await,
        None => run_query(args.query).await,
    }
}

async fn run_query(args: QueryArgs) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    let filter = Filter {
        since: args.since.map(|s| parse_time(&s, now)).transpose()?,
        until: args.until.map(|s| parse_time(&s, now)).transpose()?,
        tool: args.tool,
        identity: args.identity,
        decision: args.decision.map(|d| Decision::parse(&d)).transpose()?,
        limit: Some(args.limit),
    };
    let opened = args.store.open().await?;
    let records =
        switchboard_audit::shipper::query(&opened.store, opened.journal.as_deref(), &filter).await;
    opened.store.close().await;
    let records = records?;
    if args.json {
        let document = serde_json::json!({ "count": records.len(), "records": records });
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        print!("{}", table(&records));
    }
    Ok(())
}

async fn run_prune(args: PruneArgs) -> anyhow::Result<()> {
    let age = chrono::Duration::from_std(parse_duration(&args.older_than)?)
        .context("--older-than is too large")?;
    let cutoff = chrono::Utc::now()
        .checked_sub_signed(age)
        .context("--older-than is too large")?;
    let Opened {
        store,
        location,
        journal,
    } = args.store.open().await?;
    // Records a running gateway has answered but not yet shipped are not in the store yet:
    // give it a moment, so "older than 0s" really empties the log.
    if let Some(dir) = &journal {
        let deadline = tokio::time::Instant::now() + PRUNE_WAIT;
        while switchboard_audit::shipper::journal_pending(dir).await? {
            if tokio::time::Instant::now() >= deadline {
                eprintln!(
                    "warning: records in the journal {} are not shipped yet; they are not pruned",
                    dir.display()
                );
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let deleted = store.prune(cutoff).await;
    store.close().await;
    let deleted = deleted?;
    eprintln!(
        "deleted {deleted} audit records older than {} from {location}",
        cutoff.format("%Y-%m-%d %H:%M:%S UTC")
    );
    Ok(())
}

/// The records as an aligned text table, one line each, with a header.
fn table(records: &[AuditRecord]) -> String {
    let header = [
        "TIME (UTC)",
        "DECISION",
        "OUTCOME",
        "MS",
        "IDENTITY",
        "CLIENT",
        "TOOL",
        "ERROR",
    ];
    let rows: Vec<[String; 8]> = records
        .iter()
        .map(|r| {
            [
                r.time.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                r.decision.as_str().to_string(),
                r.outcome.as_str().to_string(),
                r.latency_ms.to_string(),
                r.identity.clone(),
                r.client.clone().unwrap_or_else(|| "-".into()),
                r.tool.clone(),
                r.error
                    .as_deref()
                    .map(|e| one_line(e, TABLE_ERROR_CHARS))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

/// `text` on one line, cut to `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
