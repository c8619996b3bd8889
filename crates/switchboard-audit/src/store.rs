//! The audit table on SQLite or PostgreSQL: schema, batch insert, queries, pruning.
//!
//! Durability: a batch is one multi-row `INSERT`, atomic on both engines, and it returns only
//! once committed. SQLite runs in WAL mode with `synchronous = FULL`, so each commit fsyncs the
//! WAL and survives a power loss, not only a process crash (the fsync is paid once per batch,
//! not per record). PostgreSQL commits are durable under its default `synchronous_commit = on`.
//!
//! Times are stored as UTC milliseconds since the epoch (`ts_ms`), the same on both engines
//! and ordered as numbers. Arguments are stored as canonical JSON text.
//!
//! Every record carries a random `record_id` under a unique index, and inserts skip a record
//! whose id is already stored (`ON CONFLICT (record_id) DO NOTHING`): the journal's shipper
//! may send a batch twice (a crash between the commit and its checkpoint, a commit whose
//! answer was lost with the connection), and the second copy must not become a second row.
//! Tables made before the column existed get it at open (`ALTER TABLE … ADD COLUMN`); their
//! old rows keep a NULL id, which the unique index allows any number of.

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
        error TEXT,
        record_id TEXT
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
        error TEXT,
        record_id TEXT
    )",
    "CREATE INDEX IF NOT EXISTS audit_log_ts ON audit_log (ts_ms)",
];

/// After the column exists, on both engines.
const RECORD_ID_INDEX: &str =
    "CREATE UNIQUE INDEX IF NOT EXISTS audit_log_record_id ON audit_log (record_id)";

const COLUMNS: &str = "ts_ms, identity, client, tool, upstream, upstream_tool, \
    arguments_sha256, arguments, decision, outcome, latency_ms, error";
/// What an insert writes: [`COLUMNS`] and the record's id.
const INSERT_COLUMNS: &str = "ts_ms, identity, client, tool, upstream, upstream_tool, \
    arguments_sha256, arguments, decision, outcome, latency_ms, error, record_id";

/// A record as it is inserted (and as the journal holds it): the stored text of each column,
/// and the record's unique id.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct NewRow {
    pub record_id: String,
    pub ts_ms: i64,
    pub identity: String,
    pub client: Option<String>,
    pub tool: String,
    pub upstream: Option<String>,
    pub upstream_tool: Option<String>,
    pub arguments_sha256: String,
    /// Canonical JSON text.
    pub arguments: String,
    pub decision: Decision,
    pub outcome: Outcome,
    pub latency_ms: u64,
    pub error: Option<String>,
}

impl NewRow {
    /// `record` with a fresh id.
    pub(crate) fn from_record(record: &AuditRecord) -> NewRow {
        NewRow {
            record_id: new_record_id(),
            ts_ms: record.time.timestamp_millis(),
            identity: record.identity.clone(),
            client: record.client.clone(),
            tool: record.tool.clone(),
            upstream: record.upstream.clone(),
            upstream_tool: record.upstream_tool.clone(),
            arguments_sha256: record.arguments_sha256.clone(),
            arguments: canonical_json(&record.arguments),
            decision: record.decision,
            outcome: record.outcome,
            latency_ms: record.latency_ms,
            error: record.error.clone(),
        }
    }

    /// The record as a query returns it (no store id yet).
    pub(crate) fn to_record(&self) -> Result<AuditRecord, AuditError> {
        Ok(AuditRecord {
            id: None,
            time: DateTime::from_timestamp_millis(self.ts_ms).ok_or_else(|| {
                AuditError::Invalid(format!("journal record: bad ts_ms {}", self.ts_ms))
            })?,
            identity: self.identity.clone(),
            client: self.client.clone(),
            tool: self.tool.clone(),
            upstream: self.upstream.clone(),
            upstream_tool: self.upstream_tool.clone(),
            arguments_sha256: self.arguments_sha256.clone(),
            arguments: serde_json::from_str(&self.arguments)
                .unwrap_or_else(|_| serde_json::Value::String(self.arguments.clone())),
            decision: self.decision,
            outcome: self.outcome,
            latency_ms: self.latency_ms,
            error: self.error.clone(),
        })
    }
}

/// A random 128-bit id as 32 hex digits: unique without coordination between gateways.
pub(crate) fn new_record_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

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
    record_id: Option<String>,
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
                let has_record_id: Option<i64> = sqlx::query_scalar(
                    "SELECT 1 FROM pragma_table_info('audit_log') WHERE name = 'record_id'",
                )
                .fetch_optional(write)
                .await?;
                if has_record_id.is_none() {
                    write
                        .execute("ALTER TABLE audit_log ADD COLUMN record_id TEXT")
                        .await?;
                }
                write.execute(RECORD_ID_INDEX).await?;
            }
            Store::Postgres(pool) => {
                for statement in POSTGRES_SCHEMA {
                    pool.execute(*statement).await?;
                }
                // Checked first: ALTER TABLE locks the table exclusively even when the
                // column exists. `to_regclass` resolves the name as the statements do.
                let has_record_id: Option<i32> = sqlx::query_scalar(
                    "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('audit_log') \
                     AND attname = 'record_id' AND NOT attisdropped",
                )
                .fetch_optional(pool)
                .await?;
                if has_record_id.is_none() {
                    pool.execute("ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS record_id TEXT")
                        .await?;
                }
                pool.execute(RECORD_ID_INDEX).await?;
            }
        }
        Ok(())
    }

    /// Writes `records` in one statement, each under a fresh record id; returns once they are
    /// committed.
    pub async fn insert(&self, records: &[AuditRecord]) -> Result<(), AuditError> {
        let rows: Vec<NewRow> = records.iter().map(NewRow::from_record).collect();
        if rows.is_empty() {
            return Ok(());
        }
        match self {
            Store::Sqlite { write, .. } => {
                insert_query::<sqlx::Sqlite>(&rows)
                    .build()
                    .execute(write)
                    .await?;
            }
            Store::Postgres(pool) => {
                insert_query::<sqlx::Postgres>(&rows)
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
        Ok(self
            .query_with_ids(filter)
            .await?
            .into_iter()
            .map(|(record, _)| record)
            .collect())
    }

    /// [`Store::query`], each record with its `record_id` (NULL for rows from before the
    /// column), so records read from the journal can be told apart from shipped ones.
    pub(crate) async fn query_with_ids(
        &self,
        filter: &Filter,
    ) -> Result<Vec<(AuditRecord, Option<String>)>, AuditError> {
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
        rows.into_iter()
            .map(|mut row| {
                let id = row.record_id.take();
                AuditRecord::try_from(row).map(|record| (record, id))
            })
            .collect()
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
    /// Writes `rows` in one statement, skipping any whose record id is already stored;
    /// returns once they are committed.
    pub(crate) async fn insert_rows(&mut self, rows: &[NewRow]) -> Result<(), AuditError> {
        if rows.is_empty() {
            return Ok(());
        }
        match self {
            WriterConnection::Sqlite(conn) => {
                insert_query::<sqlx::Sqlite>(rows)
                    .build()
                    .execute(&mut *conn)
                    .await?;
            }
            WriterConnection::Postgres(conn) => {
                insert_query::<sqlx::Postgres>(rows)
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

fn insert_query<DB>(rows: &[NewRow]) -> QueryBuilder<DB>
where
    DB: Database,
    DB::Arguments: Default,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(format!("INSERT INTO audit_log ({INSERT_COLUMNS}) "));
    query.push_values(rows, |mut row, record| {
        row.push_bind(record.ts_ms)
            .push_bind(record.identity.clone())
            .push_bind(record.client.clone())
            .push_bind(record.tool.clone())
            .push_bind(record.upstream.clone())
            .push_bind(record.upstream_tool.clone())
            .push_bind(record.arguments_sha256.clone())
            .push_bind(record.arguments.clone())
            .push_bind(record.decision.as_str().to_string())
            .push_bind(record.outcome.as_str().to_string())
            .push_bind(i64::try_from(record.latency_ms).unwrap_or(i64::MAX))
            .push_bind(record.error.clone())
            .push_bind(record.record_id.clone());
    });
    // Both engines: the unique index on record_id is the conflict target.
    query.push(" ON CONFLICT (record_id) DO NOTHING");
    query
}

fn select_query<DB>(dialect: Dialect, filter: &Filter) -> QueryBuilder<DB>
where
    DB: Database,
    DB::Arguments: Default,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    String: for<'t> Encode<'t, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(format!(
        "SELECT id, {COLUMNS}, record_id FROM audit_log WHERE 1 = 1"
    ));
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
    use crate::record::arguments_sha256;

    /// The table as it was before `record_id` (both engines took this shape).
    const OLD_TABLE: &str = "CREATE TABLE audit_log (
        id {ID} PRIMARY KEY, ts_ms BIGINT NOT NULL, identity TEXT NOT NULL, client TEXT,
        tool TEXT NOT NULL, upstream TEXT, upstream_tool TEXT, arguments_sha256 TEXT NOT NULL,
        arguments TEXT NOT NULL, decision TEXT NOT NULL, outcome TEXT NOT NULL,
        latency_ms BIGINT NOT NULL, error TEXT)";
    const OLD_ROW: &str = "INSERT INTO audit_log (ts_ms, identity, tool, arguments_sha256, \
        arguments, decision, outcome, latency_ms) VALUES (1, 'old', 't', 'h', '{}', 'allowed', 'ok', 0)";

    fn record(tool: &str) -> AuditRecord {
        AuditRecord {
            id: None,
            time: Utc::now(),
            identity: "alice".into(),
            client: None,
            tool: tool.into(),
            upstream: None,
            upstream_tool: None,
            arguments_sha256: arguments_sha256(None),
            arguments: serde_json::json!({}),
            decision: Decision::Allowed,
            outcome: Outcome::Ok,
            latency_ms: 0,
            error: None,
        }
    }

    /// On a table migrated at open: the old row reads, a record inserted twice (a replayed
    /// batch) is stored once, new records go in.
    async fn check_migrated(store: &Store) {
        let all = Filter {
            limit: Some(100),
            ..Filter::default()
        };
        let before = store.query_with_ids(&all).await.expect("query");
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].0.identity, "old");
        assert_eq!(before[0].1, None);
        let row = NewRow::from_record(&record("new"));
        let mut connection = store.writer_connection().await.expect("connection");
        connection
            .insert_rows(std::slice::from_ref(&row))
            .await
            .expect("insert");
        connection
            .insert_rows(&[row.clone(), NewRow::from_record(&record("other"))])
            .await
            .expect("replay");
        connection.close().await;
        let after = store.query_with_ids(&all).await.expect("query");
        let mut tools: Vec<&str> = after.iter().map(|(r, _)| r.tool.as_str()).collect();
        tools.sort_unstable();
        assert_eq!(tools, vec!["new", "other", "t"]);
        assert!(
            after
                .iter()
                .any(|(_, id)| id.as_deref() == Some(&row.record_id))
        );
    }

    #[tokio::test]
    async fn an_sqlite_table_from_before_record_ids_is_migrated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.db");
        let mut old = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .connect()
            .await
            .expect("old db");
        old.execute(sqlx::AssertSqlSafe(OLD_TABLE.replace("{ID}", "INTEGER")))
            .await
            .expect("old table");
        old.execute(OLD_ROW).await.expect("old row");
        old.close().await.expect("close");
        let store = Store::open(&Location::Sqlite(path)).await.expect("open");
        check_migrated(&store).await;
        // Opening again finds the column and the index in place.
        store.close().await;
        let store = Store::open(&Location::Sqlite(dir.path().join("audit.db")))
            .await
            .expect("reopen");
        store.close().await;
    }

    #[tokio::test]
    async fn a_postgres_table_from_before_record_ids_is_migrated() {
        let base = std::env::var("SWITCHBOARD_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let mut admin = sqlx::PgConnection::connect(&base).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {base} ({e}); start it (e.g. `.ci/services`) or \
                 set SWITCHBOARD_TEST_POSTGRES_URL"
            )
        });
        let schema = format!("sb_migrate_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .await
            .expect("schema");
        admin
            .execute(sqlx::AssertSqlSafe(format!("SET search_path = {schema}")))
            .await
            .expect("search_path");
        admin
            .execute(sqlx::AssertSqlSafe(OLD_TABLE.replace("{ID}", "BIGSERIAL")))
            .await
            .expect("old table");
        admin.execute(OLD_ROW).await.expect("old row");
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
        let store = Store::open(&Location::Postgres(url.clone()))
            .await
            .expect("open");
        check_migrated(&store).await;
        store.close().await;
        let store = Store::open(&Location::Postgres(url)).await.expect("reopen");
        store.close().await;
        admin
            .execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .await
            .expect("drop schema");
    }

    #[test]
    fn globs_become_engine_patterns() {
        assert_eq!(like_pattern("crm__*"), "crm\\_\\_%");
        assert_eq!(like_pattern("a?%\\"), "a_\\%\\\\");
        assert_eq!(sqlite_glob("crm__*"), "crm__*");
        assert_eq!(sqlite_glob("a[1]"), "a[[]1]");
    }
}
