//! The audit table on SQLite or PostgreSQL: schema, batch insert, queries, pruning.
//!
//! Durability: a batch is one multi-row `INSERT`, atomic on both engines, and it returns only
//! once committed. SQLite runs in WAL mode with `synchronous = FULL`, so each commit fsyncs the
//! WAL and survives a power loss, not only a process crash (the fsync is paid once per batch,
//! not per record). PostgreSQL commits are durable under its default `synchronous_commit = on`.
//!
//! Times are stored as UTC milliseconds since the epoch (`ts_ms`), the same on both engines
//! and ordered as numbers. Arguments are stored as canonical JSON text.

use std::{str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use sqlx::{
    ConnectOptions, Connection, Database, Encode, Executor, QueryBuilder, Type,
    postgres::{PgConnectOptions, PgPool, PgPoolOptions},
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
    },
};

use crate::{
    config::{Durability, Location},
    error::AuditError,
    query::Filter,
    record::{AuditRecord, Decision, Outcome, canonical_json},
};

/// How long a SQLite write waits for another process's lock (e.g. `switchboard audit prune`).
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections for queries, besides the writer's.
const READ_CONNECTIONS: u32 = 2;
/// Records deleted per pruning statement, so pruning never holds the write lock for long.
pub const PRUNE_CHUNK: u32 = 5000;

// `id` is the rowid without AUTOINCREMENT: AUTOINCREMENT writes a `sqlite_sequence` page in
// every commit, about a fifth of a small batch's cost. Pruning deletes the oldest records, so
// ids are not reused unless every record is pruned, and nothing pages by id (queries order by
// time, then id).
const SQLITE_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS audit_log (
        id INTEGER PRIMARY KEY,
        ts_ms INTEGER NOT NULL,
        identity TEXT NOT NULL,
        client TEXT,
        tool TEXT NOT NULL,
        upstream TEXT,
        upstream_tool TEXT,
        arguments_sha256 TEXT NOT NULL,
        arguments TEXT NOT NULL,
        decision TEXT NOT NULL,
        outcome TEXT NOT NULL,
        latency_ms INTEGER NOT NULL,
        error TEXT
    )",
    "CREATE INDEX IF NOT EXISTS audit_log_ts ON audit_log (ts_ms)",
];

const POSTGRES_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS audit_log (
        id BIGSERIAL PRIMARY KEY,
        ts_ms BIGINT NOT NULL,
        identity TEXT NOT NULL,
        client TEXT,
        tool TEXT NOT NULL,
        upstream TEXT,
        upstream_tool TEXT,
        arguments_sha256 TEXT NOT NULL,
        arguments TEXT NOT NULL,
        decision TEXT NOT NULL,
        outcome TEXT NOT NULL,
        latency_ms BIGINT NOT NULL,
        error TEXT
    )",
    "CREATE INDEX IF NOT EXISTS audit_log_ts ON audit_log (ts_ms)",
];

const COLUMNS: &str = "ts_ms, identity, client, tool, upstream, upstream_tool, \
    arguments_sha256, arguments, decision, outcome, latency_ms, error";

/// An open audit log. Pools are reference-counted, so cloning is cheap.
#[derive(Clone, Debug)]
pub enum Store {
    /// One write connection (SQLite has one writer at a time) and a few readers; WAL lets
    /// queries run while a batch commits.
    Sqlite {
        write: SqlitePool,
        read: SqlitePool,
    },
    Postgres(PgPool),
}

/// One row as stored.
#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    ts_ms: i64,
    identity: String,
    client: Option<String>,
    tool: String,
    upstream: Option<String>,
    upstream_tool: Option<String>,
    arguments_sha256: String,
    arguments: String,
    decision: String,
    outcome: String,
    latency_ms: i64,
    error: Option<String>,
}

impl TryFrom<Row> for AuditRecord {
    type Error = AuditError;
    fn try_from(row: Row) -> Result<AuditRecord, AuditError> {
        Ok(AuditRecord {
            id: Some(row.id),
            time: DateTime::from_timestamp_millis(row.ts_ms).ok_or_else(|| {
                AuditError::Invalid(format!("record {}: bad ts_ms {}", row.id, row.ts_ms))
            })?,
            identity: row.identity,
            client: row.client,
            tool: row.tool,
            upstream: row.upstream,
            upstream_tool: row.upstream_tool,
            arguments_sha256: row.arguments_sha256,
            arguments: serde_json::from_str(&row.arguments)
                .unwrap_or(serde_json::Value::String(row.arguments)),
            decision: Decision::parse(&row.decision)?,
            outcome: Outcome::parse(&row.outcome)?,
            latency_ms: u64::try_from(row.latency_ms).unwrap_or(0),
            error: row.error,
        })
    }
}

impl Store {
    /// Opens the log at `location`, creating the database file (SQLite) and the table.
    pub async fn open(location: &Location) -> Result<Store, AuditError> {
        Store::connect(location, true, Durability::Fsync).await
    }

    /// [`Store::open`] with the chosen commit durability (SQLite; see
    /// [`AuditConfig::durability`](crate::AuditConfig::durability)).
    pub async fn open_with(
        location: &Location,
        durability: Durability,
    ) -> Result<Store, AuditError> {
        Store::connect(location, true, durability).await
    }

    /// Opens an existing log; a missing SQLite file is [`AuditError::Missing`] (the CLI reads
    /// logs, it never creates one by mistyping a path).
    pub async fn open_existing(location: &Location) -> Result<Store, AuditError> {
        Store::connect(location, false, Durability::Fsync).await
    }

    async fn connect(
        location: &Location,
        create: bool,
        durability: Durability,
    ) -> Result<Store, AuditError> {
        let store = match location {
            Location::Postgres(url) => {
                let options = PgConnectOptions::from_str(url)?;
                let pool = PgPoolOptions::new()
                    .max_connections(1 + READ_CONNECTIONS)
                    .test_before_acquire(false)
                    .connect_with(options)
                    .await?;
                Store::Postgres(pool)
            }
            Location::Sqlite(path) => {
                if !create && !path.exists() {
                    return Err(AuditError::Missing(path.clone()));
                }
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|source| AuditError::Io {
                        path: parent.to_path_buf(),
                        source,
                    })?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(create)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(match durability {
                        Durability::Fsync => SqliteSynchronous::Full,
                        // WAL + NORMAL: a commit is in the WAL file (the OS page cache) before
                        // it returns; the fsync waits for the next checkpoint.
                        Durability::Process => SqliteSynchronous::Normal,
                    })
                    .busy_timeout(SQLITE_BUSY_TIMEOUT);
                // No ping before each use: it is one more round trip to sqlx's worker thread
                // per batch, and a broken connection fails the batch's own statement anyway.
                let write = SqlitePoolOptions::new()
                    .max_connections(1)
                    .test_before_acquire(false)
                    .connect_with(options.clone())
                    .await?;
                let read = SqlitePoolOptions::new()
                    .max_connections(READ_CONNECTIONS)
                    .connect_with(options)
                    .await?;
                Store::Sqlite { write, read }
            }
        };
        store.create_schema().await?;
        Ok(store)
    }

    async fn create_schema(&self) -> Result<(), AuditError> {
        match self {
            Store::Sqlite { write, .. } => {
                for statement in SQLITE_SCHEMA {
                    write.execute(*statement).await?;
                }
            }
            Store::Postgres(pool) => {
                for statement in POSTGRES_SCHEMA {
                    pool.execute(*statement).await?;
                }
            }
        }
        Ok(())
    }

    /// Writes `records` in one statement; returns once they are committed.
    pub async fn insert(&self, records: &[AuditRecord]) -> Result<(), AuditError> {
        let rows: Vec<(&AuditRecord, String)> = records
            .iter()
            .map(|r| (r, canonical_json(&r.arguments)))
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        match self {
            Store::Sqlite { write, .. } => {
                insert_query::<sqlx::Sqlite, _>(&rows)
                    .build()
                    .execute(write)
                    .await?;
            }
            Store::Postgres(pool) => {
                insert_query::<sqlx::Postgres, _>(&rows)
                    .build()
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// A connection of its own for the group-committing writer: it keeps it across batches,
    /// so a batch pays neither a pool checkout nor a return (sqlx returns a connection to its
    /// pool through a spawned task). The pools stay free for [`Store::insert`], queries and
    /// pruning from elsewhere.
    pub(crate) async fn writer_connection(&self) -> Result<WriterConnection, AuditError> {
        Ok(match self {
            Store::Sqlite { write, .. } => {
                WriterConnection::Sqlite(write.connect_options().connect().await?)
            }
            Store::Postgres(pool) => {
                WriterConnection::Postgres(pool.connect_options().connect().await?)
            }
        })
    }

    /// The records matching `filter`, newest first.
    pub async fn query(&self, filter: &Filter) -> Result<Vec<AuditRecord>, AuditError> {
        let rows: Vec<Row> = match self {
            Store::Sqlite { read, .. } => {
                let mut query = select_query::<sqlx::Sqlite>(Dialect::Sqlite, filter);
                query.build_query_as().fetch_all(read).await?
            }
            Store::Postgres(pool) => {
                let mut query = select_query::<sqlx::Postgres>(Dialect::Postgres, filter);
                query.build_query_as().fetch_all(pool).await?
            }
        };
        rows.into_iter().map(AuditRecord::try_from).collect()
    }

    /// Deletes up to `chunk` records older than `before`; returns how many.
    pub async fn prune_chunk(&self, before: DateTime<Utc>, chunk: u32) -> Result<u64, AuditError> {
        let cutoff = before.timestamp_millis();
        let deleted = match self {
            Store::Sqlite { write, .. } => prune_query::<sqlx::Sqlite>(cutoff, chunk)
                .build()
                .execute(write)
                .await?
                .rows_affected(),
            Store::Postgres(pool) => prune_query::<sqlx::Postgres>(cutoff, chunk)
                .build()
                .execute(pool)
                .await?
                .rows_affected(),
        };
        Ok(deleted)
    }

    /// Deletes every record older than `before`, in chunks of [`PRUNE_CHUNK`]; returns how
    /// many.
    pub async fn prune(&self, before: DateTime<Utc>) -> Result<u64, AuditError> {
        let mut total = 0;
        loop {
            let deleted = self.prune_chunk(before, PRUNE_CHUNK).await?;
            total += deleted;
            if deleted < u64::from(PRUNE_CHUNK) {
                return Ok(total);
            }
        }
    }

    /// Closes the pools (waits for running statements).
    pub async fn close(&self) {
        match self {
            Store::Sqlite { write, read } => {
                read.close().await;
                write.close().await;
            }
            Store::Postgres(pool) => pool.close().await,
        }
    }
}

/// The writer's own connection ([`Store::writer_connection`]).
pub(crate) enum WriterConnection {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl WriterConnection {
    /// Writes `rows` (each record with its arguments as canonical JSON text) in one
    /// statement; returns once they are committed.
    pub(crate) async fn insert_rows(
        &mut self,
        rows: &[(AuditRecord, String)],
    ) -> Result<(), AuditError> {
        if rows.is_empty() {
            return Ok(());
        }
        match self {
            WriterConnection::Sqlite(conn) => {
                insert_query::<sqlx::Sqlite, _>(rows)
                    .build()
                    .execute(&mut *conn)
                    .await?;
            }
            WriterConnection::Postgres(conn) => {
                insert_query::<sqlx::Postgres, _>(rows)
                    .build()
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }

    /// [`Store::prune_chunk`] on this connection.
    pub(crate) async fn prune_chunk(
        &mut self,
        before: DateTime<Utc>,
        chunk: u32,
    ) -> Result<u64, AuditError> {
        let cutoff = before.timestamp_millis();
        Ok(match self {
            WriterConnection::Sqlite(conn) => prune_query::<sqlx::Sqlite>(cutoff, chunk)
                .build()
                .execute(&mut *conn)
                .await?
                .rows_affected(),
            WriterConnection::Postgres(conn) => prune_query::<sqlx::Postgres>(cutoff, chunk)
                .build()
                .execute(&mut *conn)
                .await?
                .rows_affected(),
        })
    }

    pub(crate) async fn close(self) {
        let closed = match self {
            WriterConnection::Sqlite(conn) => conn.close().await,
            WriterConnection::Postgres(conn) => conn.close().await,
        };
        if let Err(err) = closed {
            tracing::debug!(%err, "closing the audit writer's connection");
        }
    }
}

#[derive(Clone, Copy)]
enum Dialect {
    Sqlite,
    Postgres,
}

fn insert_query<DB, R: std::borrow::Borrow<AuditRecord>>(rows: &[(R, String)]) -> QueryBuilder<DB>
where
    DB: Database,
    DB::Arguments: Default,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(format!("INSERT INTO audit_log ({COLUMNS}) "));
    query.push_values(rows, |mut row, (record, arguments_json)| {
        let record: &AuditRecord = record.borrow();
        row.push_bind(record.time.timestamp_millis())
            .push_bind(record.identity.clone())
            .push_bind(record.client.clone())
            .push_bind(record.tool.clone())
            .push_bind(record.upstream.clone())
            .push_bind(record.upstream_tool.clone())
            .push_bind(record.arguments_sha256.clone())
            .push_bind(arguments_json.clone())
            .push_bind(record.decision.as_str().to_string())
            .push_bind(record.outcome.as_str().to_string())
            .push_bind(i64::try_from(record.latency_ms).unwrap_or(i64::MAX))
            .push_bind(record.error.clone());
    });
    query
}

fn select_query<DB>(dialect: Dialect, filter: &Filter) -> QueryBuilder<DB>
where
    DB: Database,
    DB::Arguments: Default,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    String: for<'t> Encode<'t, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(format!("SELECT id, {COLUMNS} FROM audit_log WHERE 1 = 1"));
    if let Some(since) = filter.since {
        query
            .push(" AND ts_ms >= ")
            .push_bind(since.timestamp_millis());
    }
    if let Some(until) = filter.until {
        query
            .push(" AND ts_ms < ")
            .push_bind(until.timestamp_millis());
    }
    for (column, glob) in [("tool", &filter.tool), ("identity", &filter.identity)] {
        if let Some(glob) = glob {
            match dialect {
                Dialect::Sqlite => {
                    query
                        .push(format!(" AND {column} GLOB "))
                        .push_bind(sqlite_glob(glob));
                }
                Dialect::Postgres => {
                    query
                        .push(format!(" AND {column} LIKE "))
                        .push_bind(like_pattern(glob))
                        .push(" ESCAPE '\\'");
                }
            }
        }
    }
    if let Some(decision) = filter.decision {
        query
            .push(" AND decision = ")
            .push_bind(decision.as_str().to_string());
    }
    query
        .push(" ORDER BY ts_ms DESC, id DESC LIMIT ")
        .push_bind(i64::from(filter.limit()));
    query
}

fn prune_query<DB>(cutoff_ms: i64, chunk: u32) -> QueryBuilder<DB>
where
    DB: Database,
    DB::Arguments: Default,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(
        "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE ts_ms < ",
    );
    query
        .push_bind(cutoff_ms)
        .push(" ORDER BY ts_ms LIMIT ")
        .push_bind(i64::from(chunk))
        .push(")");
    query
}

/// Our glob (`*`, `?`, everything else literal) as a SQLite `GLOB` pattern, where `[` opens a
/// character class and so must itself be written `[[]`.
fn sqlite_glob(glob: &str) -> String {
    glob.replace('[', "[[]")
}

/// Our glob as a `LIKE … ESCAPE '\'` pattern: `*` → `%`, `?` → `_`, literal `%`, `_`, `\`
/// escaped.
fn like_pattern(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len());
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_engine_patterns() {
        assert_eq!(like_pattern("crm__*"), "crm\\_\\_%");
        assert_eq!(like_pattern("a?%\\"), "a_\\%\\\\");
        assert_eq!(sqlite_glob("crm__*"), "crm__*");
        assert_eq!(sqlite_glob("a[1]"), "a[[]1]");
    }
}
