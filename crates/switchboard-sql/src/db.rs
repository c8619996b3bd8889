//! The database layer: pools per engine, and each tool's operation with its read-only layers.
//!
//! Concrete pools (not sqlx's `Any` driver) are used so that every engine's types convert
//! faithfully and every engine's own read-only mechanism can be used.

use std::{str::FromStr, time::Instant};

use futures::{StreamExt, stream::BoxStream};
use serde_json::{Map, Value};
use sqlx::{
    AssertSqlSafe, Column, Executor, MySqlPool, PgPool, Row, SqlSafeStr, Sqlite, SqlitePool,
    Statement, TypeInfo,
    mysql::{MySqlConnectOptions, MySqlPoolOptions},
    pool::PoolConnection,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqlitePoolOptions},
};

use crate::{
    config::{Limits, SqlConfig},
    error::SqlError,
    guard,
    held::HeldPool,
    output::{
        ColumnInfo, ExecuteOutput, ExplainOutput, ForeignKey, IndexInfo, InsertOutput,
        MeasuredCells, QueryOutput, TableColumn, TableDescription, TableEntry, TablesOutput,
    },
    sqlite::{self, RowSink as _},
    values::{self, bind_json},
};

/// The connected database.
pub(crate) struct Database {
    pools: Pools,
    limits: Limits,
}

enum Pools {
    /// SQLite: read-only connections held locked for `query` (see `held`), a read-only sqlx
    /// pool for the catalog tools, and a one-connection writer when writes are allowed.
    Sqlite {
        /// Boxed: its connect options are large, and the other engines' pools are not.
        held: Box<HeldPool>,
        read: SqlitePool,
        write: Option<SqlitePool>,
    },
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// Functions that PostgreSQL lets PUBLIC call but that change state outside the query.
/// Everything PUBLIC may *not* call (the catalog's own class of privileged functions) is
/// refused too; see [`Database::pg_denied_in_plan`].
const PG_PUBLIC_BUT_DENIED: &[&str] = &[
    "set_config",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_notify",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_xact_lock",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "lo_from_bytea",
    "lo_put",
    "lo_create",
    "lo_unlink",
];

/// Reads cell `i` of a row as JSON (`values::pg_value`, `values::mysql_value`).
type CellReader<R> = dyn Fn(&R, usize) -> Result<Value, sqlx::Error> + Sync;

/// The most rows a query makes room for before it has them: a page is usually full, but a
/// large `max_rows` must not reserve memory for rows that may never come.
const EXPECTED_ROWS_CAP: usize = 1024;

/// Row collection state shared by the three engines.
struct Collector<'a> {
    limits: &'a Limits,
    offset: u64,
    max_rows: usize,
    seen: u64,
    rows: Vec<Vec<Value>>,
    /// The rows' cells measured for the text table; gives each row's JSON length.
    measured: MeasuredCells,
    bytes: usize,
    truncated: bool,
    truncated_cells: usize,
    more: bool,
}

impl<'a> Collector<'a> {
    fn new(limits: &'a Limits, offset: u64, max_rows: Option<usize>) -> Self {
        let max_rows = max_rows.unwrap_or(limits.max_rows).min(limits.max_rows);
        Self {
            limits,
            offset,
            max_rows,
            seen: 0,
            rows: Vec::new(),
            measured: MeasuredCells::for_rows(max_rows.min(EXPECTED_ROWS_CAP)),
            bytes: 0,
            truncated: false,
            truncated_cells: 0,
            more: false,
        }
    }

    /// Drains `stream` into rows; stops early at the row or byte limit (dropping the stream
    /// stops the fetch).
    async fn collect<R: Row>(
        &mut self,
        mut stream: BoxStream<'_, Result<R, sqlx::Error>>,
        convert: &CellReader<R>,
        columns: &mut Vec<ColumnInfo>,
    ) -> Result<(), sqlx::Error> {
        while let Some(row) = stream.next().await {
            let row = row?;
            if columns.is_empty() {
                *columns = row.columns().iter().map(column_info).collect();
            }
            match self.next_row() {
                sqlite::RowStep::Skip => continue,
                sqlite::RowStep::Stop => break,
                sqlite::RowStep::Take => {}
            }
            let cells = (0..row.len())
                .map(|i| convert(&row, i))
                .collect::<Result<Vec<_>, _>>()?;
            if !self.push(cells) {
                break;
            }
        }
        Ok(())
    }

    fn finish(self, columns: Vec<ColumnInfo>, started: Instant) -> QueryOutput {
        let next = self.offset + self.rows.len() as u64;
        QueryOutput {
            columns,
            row_count: self.rows.len(),
            rows: self.rows,
            truncated: self.truncated,
            truncated_cells: self.truncated_cells,
            next_cursor: self.more.then(|| next.to_string()),
            offset: self.offset,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            measured: Some(self.measured),
        }
    }
}

impl sqlite::RowSink for Collector<'_> {
    fn next_row(&mut self) -> sqlite::RowStep {
        self.seen += 1;
        if self.seen <= self.offset {
            return sqlite::RowStep::Skip;
        }
        if self.rows.len() >= self.max_rows {
            self.more = true;
            self.truncated = true;
            return sqlite::RowStep::Stop;
        }
        sqlite::RowStep::Take
    }

    fn push(&mut self, mut cells: Vec<Value>) -> bool {
        for cell in &mut cells {
            if values::clip(cell, self.limits.max_cell_bytes) {
                self.truncated_cells += 1;
                self.truncated = true;
            }
        }
        if self.rows.is_empty() {
            // Room for the rows expected, so the row list is not copied as it grows.
            self.rows.reserve(self.max_rows.min(EXPECTED_ROWS_CAP));
        }
        // The first row is always taken, so a page is never empty.
        let (bytes, limit, first) = (
            self.bytes,
            self.limits.max_result_bytes,
            self.rows.is_empty(),
        );
        let mut row_bytes = 0;
        let admitted = self.measured.push_row(&cells, |len| {
            row_bytes = len;
            first || bytes + len <= limit
        });
        if !admitted {
            self.more = true;
            self.truncated = true;
            return false;
        }
        self.bytes += row_bytes;
        self.rows.push(cells);
        true
    }

    fn restart(&mut self) {
        // Keeps the rows' allocation; everything else starts over.
        let mut rows = std::mem::take(&mut self.rows);
        rows.clear();
        *self = Self {
            rows,
            ..Self::new(self.limits, self.offset, Some(self.max_rows))
        };
    }
}

/// Quotes an identifier for the engine (`"x"` or `` `x` ``), doubling the quote character.
/// Only ever applied to names read back from the live catalog.
fn quote_ident(name: &str, mysql: bool) -> String {
    if mysql {
        format!("`{}`", name.replace('`', "``"))
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn first_word(sql: &str) -> String {
    guard::tokenize(sql)
        .into_iter()
        .find_map(|t| match t {
            guard::Token::Word(w) => Some(w),
            _ => None,
        })
        .unwrap_or_default()
}

impl Database {
    /// Connects (seeding the demo database when no URL is given).
    pub(crate) async fn connect(config: &SqlConfig) -> Result<Self, SqlError> {
        let limits = config.limits.clone();
        let url = match &config.url {
            Some(url) => url.expose().to_string(),
            None => {
                sqlite::seed_demo(&config.demo_path).await?;
                format!("sqlite://{}", config.demo_path.display())
            }
        };
        let connect_err = |engine: &'static str| {
            move |e: sqlx::Error| SqlError::Connect {
                engine,
                message: match e {
                    sqlx::Error::Database(db) => db.message().to_string(),
                    other => other.to_string(),
                },
            }
        };
        let pools = if url.starts_with("sqlite:") {
            let base = SqliteConnectOptions::from_str(&url)
                .map_err(|e| SqlError::Url(format!("invalid SQLite URL: {e}")))?;
            let read_opts = base
                .clone()
                .read_only(true)
                .create_if_missing(false)
                .pragma("query_only", "ON");
            let held = Box::new(HeldPool::new(
                read_opts.clone(),
                limits.pool_size,
                limits.acquire_timeout,
            ));
            let read = SqlitePoolOptions::new()
                .max_connections(limits.pool_size)
                .acquire_timeout(limits.acquire_timeout)
                // A local file: no ping before each acquire (a broken connection still fails the
                // call, and the pool replaces it).
                .test_before_acquire(false)
                .after_connect(|conn, _| Box::pin(sqlite::prepare_connection(conn)))
                .connect_with(read_opts)
                .await
                .map_err(connect_err("SQLite"))?;
            let write = if config.allow_writes {
                // SQLite has one writer at a time; more connections would only wait on locks.
                Some(
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .acquire_timeout(limits.acquire_timeout)
                        // A local file: no ping before each acquire (a broken connection still fails the
                        // call, and the pool replaces it).
                        .test_before_acquire(false)
                        .after_connect(|conn, _| Box::pin(sqlite::prepare_connection(conn)))
                        .connect_with(base.foreign_keys(true))
                        .await
                        .map_err(connect_err("SQLite"))?,
                )
            } else {
                None
            };
            Pools::Sqlite { held, read, write }
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let opts = PgConnectOptions::from_str(&url)
                .map_err(|e| SqlError::Url(format!("invalid PostgreSQL URL: {e}")))?;
            let pool = PgPoolOptions::new()
                .max_connections(limits.pool_size)
                .acquire_timeout(limits.acquire_timeout)
                .connect_with(opts)
                .await
                .map_err(connect_err("PostgreSQL"))?;
            Pools::Postgres(pool)
        } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            let url = url.replacen("mariadb:", "mysql:", 1);
            let opts = MySqlConnectOptions::from_str(&url)
                .map_err(|e| SqlError::Url(format!("invalid MySQL URL: {e}")))?;
            let secs = limits.statement_timeout.as_secs().max(1);
            let pool = MySqlPoolOptions::new()
                .max_connections(limits.pool_size)
                .acquire_timeout(limits.acquire_timeout)
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        // MariaDB: max_statement_time (seconds, all statements);
                        // MySQL: max_execution_time (milliseconds, SELECT only).
                        let version: String = sqlx::query_scalar("SELECT VERSION()")
                            .fetch_one(&mut *conn)
                            .await?;
                        let set = if version.contains("MariaDB") {
                            format!("SET SESSION max_statement_time = {secs}")
                        } else {
                            format!("SET SESSION max_execution_time = {}", secs * 1000)
                        };
                        conn.execute(AssertSqlSafe(set)).await?;
                        Ok(())
                    })
                })
                .connect_with(opts)
                .await
                .map_err(connect_err("MySQL"))?;
            Pools::MySql(pool)
        } else {
            return Err(SqlError::Url(
                "unsupported database URL: use sqlite://, postgres:// or mysql://".into(),
            ));
        };
        Ok(Self { pools, limits })
    }

    pub(crate) fn engine(&self) -> &'static str {
        match self.pools {
            Pools::Sqlite { .. } => "sqlite",
            Pools::Postgres(_) => "postgres",
            Pools::MySql(_) => "mysql",
        }
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    fn err(&self, e: sqlx::Error) -> SqlError {
        SqlError::from_sqlx(
            e,
            self.limits.statement_timeout.as_secs(),
            self.limits.pool_size,
        )
    }

    fn read_err(&self, e: sqlite::ReadError) -> SqlError {
        match e {
            sqlite::ReadError::Engine(message, code) => {
                SqlError::Database(format!("{message} (code {code})"))
            }
            sqlite::ReadError::Interrupted => {
                SqlError::Timeout(self.limits.statement_timeout.as_secs())
            }
            sqlite::ReadError::Rejected(m) => SqlError::Rejected(m),
            sqlite::ReadError::InvalidInput(m) => SqlError::InvalidInput(m),
        }
    }

    /// Closes the pools.
    pub(crate) async fn close(&self) {
        match &self.pools {
            Pools::Sqlite { held, read, write } => {
                held.close();
                read.close().await;
                if let Some(w) = write {
                    w.close().await;
                }
            }
            Pools::Postgres(p) => p.close().await,
            Pools::MySql(p) => p.close().await,
        }
    }

    /// Begins PostgreSQL's read-only transaction with the statement timeout and a search_path
    /// of `pg_catalog` first (so user objects cannot shadow built-ins), then the session's
    /// schemas, then `pg_temp` last.
    async fn pg_read_tx(
        &self,
        pool: &PgPool,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, SqlError> {
        let mut tx = pool
            .begin_with("BEGIN TRANSACTION READ ONLY")
            .await
            .map_err(|e| self.err(e))?;
        self.pg_settings(&mut tx, true).await?;
        Ok(tx)
    }

    /// Sets the transaction's statement timeout and, for reads, the restricted search_path.
    /// (Writes keep the session's path: objects are created in its first schema.)
    async fn pg_settings(&self, conn: &mut sqlx::PgConnection, read: bool) -> Result<(), SqlError> {
        let ms = self.limits.statement_timeout.as_millis().to_string();
        let sql = if read {
            "SELECT set_config('statement_timeout', $1, true),
                    set_config('search_path', array_to_string(
                        array['pg_catalog']
                        || array(SELECT quote_ident(s) FROM unnest(current_schemas(false)) s
                                 WHERE s <> 'pg_catalog')
                        || array['pg_temp'], ', '), true)"
        } else {
            "SELECT set_config('statement_timeout', $1, true)"
        };
        sqlx::query(sql)
            .bind(ms)
            .execute(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Refuses a PostgreSQL statement whose plan calls a denied function.
    ///
    /// The plan (`EXPLAIN (VERBOSE, FORMAT JSON)`) shows every expression after view
    /// expansion, with names resolved by the server, so a call hidden in a view or behind a
    /// quoted or qualified name is found. A function is denied when the catalog says PUBLIC
    /// may not execute it (the server's own class of privileged functions: file access,
    /// large-object import/export, WAL and config control) or it is in
    /// [`PG_PUBLIC_BUT_DENIED`]. Superusers bypass privilege checks, so this is what keeps a
    /// superuser connection from reading server files.
    async fn pg_denied_in_plan(
        &self,
        conn: &mut sqlx::PgConnection,
        sql: &str,
        params: &[Value],
    ) -> Result<(), SqlError> {
        let explain = format!("EXPLAIN (VERBOSE, FORMAT JSON) {sql}");
        let query = bind_json!(sqlx::query(AssertSqlSafe(explain)), params, true);
        let row = query.fetch_one(&mut *conn).await.map_err(|e| self.err(e))?;
        let plan = values::pg_value(&row, 0).map_err(|e| self.err(e))?;
        let mut texts = Vec::new();
        collect_strings(&plan, &mut texts);
        let mut called: Vec<String> = texts
            .iter()
            .flat_map(|t| guard::called_functions(t))
            .collect();
        called.sort();
        called.dedup();
        if called.is_empty() {
            return Ok(());
        }
        let privileged: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT proname::text FROM pg_catalog.pg_proc
             WHERE proname = ANY($1) AND NOT has_function_privilege('public', oid, 'EXECUTE')",
        )
        .bind(&called)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        if let Some(name) = called
            .iter()
            .find(|n| privileged.contains(n) || PG_PUBLIC_BUT_DENIED.contains(&n.as_str()))
        {
            return Err(SqlError::Rejected(format!(
                "the function {name}() is privileged (file access or server control) and is \
                 not allowed"
            )));
        }
        Ok(())
    }

    /// `query`: one read-only statement, paged.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[Value],
        offset: u64,
        max_rows: Option<usize>,
    ) -> Result<QueryOutput, SqlError> {
        guard::check_read_only(sql)?;
        let started = Instant::now();
        let mut columns = Vec::new();
        let mut collector = Collector::new(&self.limits, offset, max_rows);
        match &self.pools {
            Pools::Sqlite { held, .. } => {
                let mut conn = held.acquire().await.map_err(|e| self.err(e))?;
                columns = sqlite::read_rows(
                    &mut conn,
                    self.limits.statement_timeout,
                    sqlite::Placement::DEFAULT,
                    sql,
                    params,
                    &mut collector,
                )
                .map_err(|e| self.read_err(e))?;
            }
            // The PostgreSQL and MySQL arms are boxed: their sqlx futures are large, an async
            // fn's future is as large as its largest state, and rmcp boxes (copies) each tool
            // call's future, so every SQLite call paid ~18 KB of copying for them.
            Pools::Postgres(pool) => {
                Box::pin(async {
                    let mut tx = self.pg_read_tx(pool).await?;
                    if !matches!(first_word(sql).as_str(), "SHOW") {
                        self.pg_denied_in_plan(&mut tx, sql, params).await?;
                    }
                    let query = bind_json!(sqlx::query(AssertSqlSafe(sql)), params, true);
                    self.collect_and_roll_back(
                        tx,
                        query,
                        sql,
                        &values::pg_value,
                        &mut collector,
                        &mut columns,
                    )
                    .await
                })
                .await?;
            }
            Pools::MySql(pool) => {
                Box::pin(async {
                    let tx = pool
                        .begin_with("START TRANSACTION READ ONLY")
                        .await
                        .map_err(|e| self.err(e))?;
                    let query = bind_json!(sqlx::query(AssertSqlSafe(sql)), params, false);
                    self.collect_and_roll_back(
                        tx,
                        query,
                        sql,
                        &values::mysql_value,
                        &mut collector,
                        &mut columns,
                    )
                    .await
                })
                .await?;
            }
        }
        Ok(collector.finish(columns, started))
    }

    /// Runs `query` inside `tx` into `collector`, then rolls `tx` back: the PostgreSQL and
    /// MySQL arms of [`Self::query`]. When no row came back, the columns are read from the
    /// statement's description, so an empty result still names them.
    async fn collect_and_roll_back<DB>(
        &self,
        mut tx: sqlx::Transaction<'static, DB>,
        query: sqlx::query::Query<'_, DB, DB::Arguments>,
        sql: &str,
        convert: &CellReader<DB::Row>,
        collector: &mut Collector<'_>,
        columns: &mut Vec<ColumnInfo>,
    ) -> Result<(), SqlError>
    where
        DB: sqlx::Database,
        DB::Arguments: sqlx::IntoArguments<DB>,
        for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    {
        collector
            .collect(query.fetch(&mut *tx), convert, columns)
            .await
            .map_err(|e| self.err(e))?;
        if columns.is_empty()
            && let Ok(stmt) = (&mut *tx).prepare(AssertSqlSafe(sql).into_sql_str()).await
        {
            *columns = stmt.columns().iter().map(column_info).collect();
        }
        tx.rollback().await.map_err(|e| self.err(e))
    }

    /// Acquires a SQLite connection with its statement deadline armed (SQLite has no
    /// server-side statement timeout; the connection's progress handler enforces it).
    async fn sqlite_conn(
        &self,
        pool: &SqlitePool,
    ) -> Result<(PoolConnection<Sqlite>, sqlite::Deadline), SqlError> {
        let mut conn = pool.acquire().await.map_err(|e| self.err(e))?;
        let deadline = sqlite::arm(&mut conn, self.limits.statement_timeout)
            .await
            .map_err(|e| self.err(e))?;
        Ok((conn, deadline))
    }

    /// `explain_query`: the engine's plan for a read-only statement (never executed).
    pub(crate) async fn explain(
        &self,
        sql: &str,
        params: &[Value],
    ) -> Result<ExplainOutput, SqlError> {
        guard::check_read_only(sql)?;
        let plan = match &self.pools {
            Pools::Sqlite { read, .. } => {
                let explain = format!("EXPLAIN QUERY PLAN {sql}");
                let query = bind_json!(sqlx::query(AssertSqlSafe(explain)), params, false);
                let (mut conn, deadline) = self.sqlite_conn(read).await?;
                let rows = query.fetch_all(&mut *conn).await.map_err(|e| self.err(e))?;
                deadline.clear();
                let mut steps = Vec::new();
                for row in rows {
                    let id: i64 = row.try_get(0).map_err(|e| self.err(e))?;
                    let parent: i64 = row.try_get(1).map_err(|e| self.err(e))?;
                    let detail: String = row.try_get(3).map_err(|e| self.err(e))?;
                    steps.push(serde_json::json!({"id": id, "parent": parent, "detail": detail}));
                }
                Value::Array(steps)
            }
            Pools::Postgres(pool) => {
                let mut tx = self.pg_read_tx(pool).await?;
                let explain = format!("EXPLAIN (FORMAT JSON) {sql}");
                let query = bind_json!(sqlx::query(AssertSqlSafe(explain)), params, true);
                let row = query.fetch_one(&mut *tx).await.map_err(|e| self.err(e))?;
                let plan = values::pg_value(&row, 0).map_err(|e| self.err(e))?;
                tx.rollback().await.map_err(|e| self.err(e))?;
                plan
            }
            Pools::MySql(pool) => {
                let mut tx = pool
                    .begin_with("START TRANSACTION READ ONLY")
                    .await
                    .map_err(|e| self.err(e))?;
                let explain = format!("EXPLAIN FORMAT=JSON {sql}");
                let query = bind_json!(sqlx::query(AssertSqlSafe(explain)), params, false);
                let row = query.fetch_one(&mut *tx).await.map_err(|e| self.err(e))?;
                let text = values::mysql_value(&row, 0).map_err(|e| self.err(e))?;
                tx.rollback().await.map_err(|e| self.err(e))?;
                match text {
                    Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
                    other => other,
                }
            }
        };
        Ok(ExplainOutput {
            engine: self.engine().into(),
            plan,
        })
    }

    /// `list_tables`.
    pub(crate) async fn list_tables(&self) -> Result<TablesOutput, SqlError> {
        let mut tables = Vec::new();
        match &self.pools {
            Pools::Sqlite { read, .. } => {
                let (mut conn, deadline) = self.sqlite_conn(read).await?;
                let rows: Vec<(String, String)> = sqlx::query_as(
                    "SELECT name, type FROM sqlite_schema
                     WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
                     ORDER BY name",
                )
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| self.err(e))?;
                for (name, kind) in rows {
                    // SQLite keeps no row statistics by default; counting a table is cheap
                    // enough for the files it is used with. Views are not counted.
                    let count = if kind == "table" {
                        let sql = format!("SELECT count(*) FROM {}", quote_ident(&name, false));
                        sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql))
                            .fetch_one(&mut *conn)
                            .await
                            .ok()
                    } else {
                        None
                    };
                    tables.push(TableEntry {
                        schema: "main".into(),
                        name,
                        kind,
                        row_estimate: count,
                    });
                }
                deadline.clear();
            }
            Pools::Postgres(pool) => {
                let mut tx = self.pg_read_tx(pool).await?;
                let rows: Vec<(String, String, String, Option<i64>)> = sqlx::query_as(
                    "SELECT n.nspname::text, c.relname::text,
                            CASE WHEN c.relkind IN ('v', 'm') THEN 'view' ELSE 'table' END,
                            CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::int8 END
                     FROM pg_catalog.pg_class c
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
                       AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                       AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
                       AND has_schema_privilege(n.oid, 'USAGE')
                     ORDER BY 1, 2",
                )
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
                tx.rollback().await.map_err(|e| self.err(e))?;
                for (schema, name, kind, est) in rows {
                    tables.push(TableEntry {
                        schema,
                        name,
                        kind,
                        row_estimate: est,
                    });
                }
            }
            Pools::MySql(pool) => {
                let rows: Vec<(String, String, String, Option<i64>)> = sqlx::query_as(
                    "SELECT CAST(TABLE_SCHEMA AS CHAR), CAST(TABLE_NAME AS CHAR),
                            CASE WHEN TABLE_TYPE = 'VIEW' THEN 'view' ELSE 'table' END,
                            CAST(TABLE_ROWS AS SIGNED)
                     FROM information_schema.TABLES
                     WHERE (DATABASE() IS NULL AND TABLE_SCHEMA NOT IN
                              ('mysql', 'information_schema', 'performance_schema', 'sys'))
                        OR TABLE_SCHEMA = DATABASE()
                     ORDER BY 1, 2",
                )
                .fetch_all(pool)
                .await
                .map_err(|e| self.err(e))?;
                for (schema, name, kind, est) in rows {
                    tables.push(TableEntry {
                        schema,
                        name,
                        kind,
                        row_estimate: est,
                    });
                }
            }
        }
        Ok(TablesOutput {
            engine: self.engine().into(),
            tables,
        })
    }

    /// `describe_table`. The name is looked up in the catalog with bound parameters; only
    /// names read back from the catalog are ever put into SQL text.
    pub(crate) async fn describe(
        &self,
        schema: Option<&str>,
        table: &str,
    ) -> Result<TableDescription, SqlError> {
        let not_found = || {
            SqlError::NotFound(format!(
                "no table or view named {table:?}{}; call list_tables to see what exists",
                schema
                    .map(|s| format!(" in schema {s:?}"))
                    .unwrap_or_default()
            ))
        };
        match &self.pools {
            Pools::Sqlite { read, .. } => {
                if schema.is_some_and(|s| s != "main") {
                    return Err(not_found());
                }
                let (mut conn, deadline) = self.sqlite_conn(read).await?;
                let found: Option<(String, String)> = sqlx::query_as(
                    "SELECT name, type FROM sqlite_schema WHERE type IN ('table', 'view') AND name = ?1",
                )
                .bind(table)
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| self.err(e))?;
                let (name, kind) = found.ok_or_else(not_found)?;
                let cols: Vec<(String, String, bool, Option<String>, i64)> = sqlx::query_as(
                    "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1) ORDER BY cid",
                )
                .bind(&name)
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| self.err(e))?;
                let mut pk: Vec<(i64, String)> = cols
                    .iter()
                    .filter(|c| c.4 > 0)
                    .map(|c| (c.4, c.0.clone()))
                    .collect();
                pk.sort();
                let fk_rows: Vec<(i64, String, String, Option<String>)> = sqlx::query_as(
                    "SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1) ORDER BY id, seq",
                )
                .bind(&name)
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| self.err(e))?;
                let mut foreign_keys: Vec<(i64, ForeignKey)> = Vec::new();
                for (id, ref_table, from, to) in fk_rows {
                    match foreign_keys.iter_mut().find(|(i, _)| *i == id) {
                        Some((_, fk)) => {
                            fk.columns.push(from);
                            fk.referenced_columns.extend(to);
                        }
                        None => foreign_keys.push((
                            id,
                            ForeignKey {
                                name: None,
                                columns: vec![from],
                                referenced_schema: Some("main".into()),
                                referenced_table: ref_table,
                                referenced_columns: to.into_iter().collect(),
                            },
                        )),
                    }
                }
                let index_rows: Vec<(String, bool, String)> = sqlx::query_as(
                    "SELECT name, \"unique\", origin FROM pragma_index_list(?1) ORDER BY name",
                )
                .bind(&name)
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| self.err(e))?;
                let mut indexes = Vec::new();
                for (index, unique, origin) in index_rows {
                    let columns: Vec<String> = sqlx::query_scalar(
                        "SELECT coalesce(name, '<expression>') FROM pragma_index_info(?1) ORDER BY seqno",
                    )
                    .bind(&index)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| self.err(e))?;
                    indexes.push(IndexInfo {
                        name: index,
                        columns,
                        unique,
                        primary: origin == "pk",
                    });
                }
                deadline.clear();
                Ok(TableDescription {
                    schema: "main".into(),
                    table: name,
                    kind,
                    columns: cols
                        .into_iter()
                        .map(|(name, ty, notnull, default, pk)| TableColumn {
                            name,
                            type_name: ty,
                            nullable: !notnull && pk == 0,
                            default,
                            primary_key: pk > 0,
                        })
                        .collect(),
                    primary_key: pk.into_iter().map(|(_, n)| n).collect(),
                    foreign_keys: foreign_keys.into_iter().map(|(_, fk)| fk).collect(),
                    indexes,
                })
            }
            Pools::Postgres(pool) => {
                let mut tx = self.pg_read_tx(pool).await?;
                let desc = self.pg_describe(&mut tx, schema, table).await;
                tx.rollback().await.map_err(|e| self.err(e))?;
                desc?.ok_or_else(not_found)
            }
            Pools::MySql(pool) => {
                let mut tx = pool
                    .begin_with("START TRANSACTION READ ONLY")
                    .await
                    .map_err(|e| self.err(e))?;
                let desc = self.mysql_describe(&mut tx, schema, table).await;
                tx.rollback().await.map_err(|e| self.err(e))?;
                desc?.ok_or_else(not_found)
            }
        }
    }

    async fn pg_describe(
        &self,
        conn: &mut sqlx::PgConnection,
        schema: Option<&str>,
        table: &str,
    ) -> Result<Option<TableDescription>, SqlError> {
        let found: Option<(i64, String, String, String)> = sqlx::query_as(
            "SELECT c.oid::int8, n.nspname::text, c.relname::text,
                    CASE WHEN c.relkind IN ('v', 'm') THEN 'view' ELSE 'table' END
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.relname = $1
               AND (n.nspname = $2 OR ($2 IS NULL AND pg_catalog.pg_table_is_visible(c.oid)))
             LIMIT 1",
        )
        .bind(table)
        .bind(schema)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        let Some((oid, schema, name, kind)) = found else {
            return Ok(None);
        };
        let pk: Vec<String> = sqlx::query_scalar(
            "SELECT a.attname::text FROM pg_catalog.pg_index i
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE i.indrelid = $1::int8::oid AND i.indisprimary ORDER BY k.ord",
        )
        .bind(oid)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        let cols: Vec<(String, String, bool, Option<String>)> = sqlx::query_as(
            "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod),
                    NOT a.attnotnull, pg_catalog.pg_get_expr(d.adbin, d.adrelid)
             FROM pg_catalog.pg_attribute a
             LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
        )
        .bind(oid)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        let fks: Vec<PgForeignKeyRow> = sqlx::query_as(
            "SELECT con.conname::text,
                    array(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o)
                          JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n
                          ORDER BY k.o),
                    fn.nspname::text, fc.relname::text,
                    array(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o)
                          JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n
                          ORDER BY k.o)
             FROM pg_catalog.pg_constraint con
             JOIN pg_catalog.pg_class fc ON fc.oid = con.confrelid
             JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace
             WHERE con.conrelid = $1::int8::oid AND con.contype = 'f' ORDER BY 1",
        )
        .bind(oid)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        let idx: Vec<(String, bool, bool, Vec<String>)> = sqlx::query_as(
            "SELECT ic.relname::text, i.indisunique, i.indisprimary,
                    array(SELECT coalesce(a.attname::text, '<expression>')
                          FROM unnest(i.indkey) WITH ORDINALITY k(n, o)
                          LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
                          ORDER BY k.o)
             FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
             WHERE i.indrelid = $1::int8::oid ORDER BY 1",
        )
        .bind(oid)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        Ok(Some(TableDescription {
            schema,
            table: name,
            kind,
            columns: cols
                .into_iter()
                .map(|(name, ty, nullable, default)| TableColumn {
                    primary_key: pk.contains(&name),
                    name,
                    type_name: ty,
                    nullable,
                    default,
                })
                .collect(),
            primary_key: pk,
            foreign_keys: fks
                .into_iter()
                .map(|(name, columns, rs, rt, rc)| ForeignKey {
                    name: Some(name),
                    columns,
                    referenced_schema: Some(rs),
                    referenced_table: rt,
                    referenced_columns: rc,
                })
                .collect(),
            indexes: idx
                .into_iter()
                .map(|(name, unique, primary, columns)| IndexInfo {
                    name,
                    columns,
                    unique,
                    primary,
                })
                .collect(),
        }))
    }

    async fn mysql_describe(
        &self,
        conn: &mut sqlx::MySqlConnection,
        schema: Option<&str>,
        table: &str,
    ) -> Result<Option<TableDescription>, SqlError> {
        let found: Option<(String, String, String)> = sqlx::query_as(
            "SELECT CAST(TABLE_SCHEMA AS CHAR), CAST(TABLE_NAME AS CHAR),
                    CASE WHEN TABLE_TYPE = 'VIEW' THEN 'view' ELSE 'table' END
             FROM information_schema.TABLES
             WHERE TABLE_NAME = ? AND TABLE_SCHEMA = COALESCE(?, DATABASE()) LIMIT 1",
        )
        .bind(table)
        .bind(schema)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        let Some((schema, name, kind)) = found else {
            return Ok(None);
        };
        let cols: Vec<(String, String, String, Option<String>, String)> = sqlx::query_as(
            "SELECT CAST(COLUMN_NAME AS CHAR), CAST(COLUMN_TYPE AS CHAR), CAST(IS_NULLABLE AS CHAR),
                    CAST(COLUMN_DEFAULT AS CHAR), CAST(COLUMN_KEY AS CHAR)
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?
             ORDER BY ORDINAL_POSITION",
        )
        .bind(&schema)
        .bind(&name)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        let stats: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT CAST(INDEX_NAME AS CHAR), CAST(NON_UNIQUE AS SIGNED),
                    CAST(COALESCE(COLUMN_NAME, '<expression>') AS CHAR)
             FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?
             ORDER BY INDEX_NAME, SEQ_IN_INDEX",
        )
        .bind(&schema)
        .bind(&name)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        let mut indexes: Vec<IndexInfo> = Vec::new();
        for (index, non_unique, column) in stats {
            match indexes.iter_mut().find(|i| i.name == index) {
                Some(i) => i.columns.push(column),
                None => indexes.push(IndexInfo {
                    primary: index == "PRIMARY",
                    name: index,
                    columns: vec![column],
                    unique: non_unique == 0,
                }),
            }
        }
        let pk = indexes
            .iter()
            .find(|i| i.primary)
            .map(|i| i.columns.clone())
            .unwrap_or_default();
        let fk_rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
            "SELECT CAST(CONSTRAINT_NAME AS CHAR), CAST(COLUMN_NAME AS CHAR),
                    CAST(REFERENCED_TABLE_SCHEMA AS CHAR), CAST(REFERENCED_TABLE_NAME AS CHAR),
                    CAST(REFERENCED_COLUMN_NAME AS CHAR)
             FROM information_schema.KEY_COLUMN_USAGE
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND REFERENCED_TABLE_NAME IS NOT NULL
             ORDER BY CONSTRAINT_NAME, ORDINAL_POSITION",
        )
        .bind(&schema)
        .bind(&name)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        let mut foreign_keys: Vec<ForeignKey> = Vec::new();
        for (cname, col, rs, rt, rc) in fk_rows {
            match foreign_keys
                .iter_mut()
                .find(|f| f.name.as_deref() == Some(cname.as_str()))
            {
                Some(fk) => {
                    fk.columns.push(col);
                    fk.referenced_columns.push(rc);
                }
                None => foreign_keys.push(ForeignKey {
                    name: Some(cname),
                    columns: vec![col],
                    referenced_schema: Some(rs),
                    referenced_table: rt,
                    referenced_columns: vec![rc],
                }),
            }
        }
        Ok(Some(TableDescription {
            schema,
            table: name,
            kind,
            columns: cols
                .into_iter()
                .map(|(name, ty, nullable, default, _key)| TableColumn {
                    primary_key: pk.contains(&name),
                    name,
                    type_name: ty,
                    nullable: nullable == "YES",
                    default,
                })
                .collect(),
            primary_key: pk,
            foreign_keys,
            indexes,
        }))
    }

    /// `insert_record`: identifiers come from the live catalog and are quoted; values are
    /// bound. Returns the inserted row's key.
    pub(crate) async fn insert(
        &self,
        schema: Option<&str>,
        table: &str,
        data: &Map<String, Value>,
    ) -> Result<InsertOutput, SqlError> {
        let desc = self.describe(schema, table).await?;
        if desc.kind != "table" {
            return Err(SqlError::InvalidInput(format!(
                "{} is a view; insert into a table",
                desc.table
            )));
        }
        // Match each key to a catalog column: exactly, else case-insensitively if unique.
        let mut columns: Vec<(&TableColumn, &Value)> = Vec::new();
        for (key, value) in data {
            let exact = desc.columns.iter().find(|c| &c.name == key);
            let column = match exact {
                Some(c) => c,
                None => {
                    let mut ci = desc
                        .columns
                        .iter()
                        .filter(|c| c.name.eq_ignore_ascii_case(key));
                    match (ci.next(), ci.next()) {
                        (Some(c), None) => c,
                        _ => {
                            return Err(SqlError::NotFound(format!(
                                "table {} has no column {key:?}; its columns are: {}",
                                desc.table,
                                desc.columns
                                    .iter()
                                    .map(|c| c.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )));
                        }
                    }
                }
            };
            columns.push((column, value));
        }
        let mysql = matches!(self.pools, Pools::MySql(_));
        let target = format!(
            "{}.{}",
            quote_ident(&desc.schema, mysql),
            quote_ident(&desc.table, mysql)
        );
        let names: Vec<String> = columns
            .iter()
            .map(|(c, _)| quote_ident(&c.name, mysql))
            .collect();
        let returning: Vec<String> = desc
            .primary_key
            .iter()
            .map(|c| quote_ident(c, mysql))
            .collect();
        let values_of = |placeholders: Vec<String>| {
            if columns.is_empty() {
                if mysql {
                    "() VALUES ()".to_string()
                } else {
                    "DEFAULT VALUES".to_string()
                }
            } else {
                format!(
                    "({}) VALUES ({})",
                    names.join(", "),
                    placeholders.join(", ")
                )
            }
        };
        let mut key = Map::new();
        let rows_affected;
        match &self.pools {
            Pools::Sqlite { write, .. } => {
                let pool = write.as_ref().ok_or_else(writes_disabled)?;
                let placeholders = (1..=columns.len()).map(|i| format!("?{i}")).collect();
                let ret = if returning.is_empty() {
                    "rowid".to_string()
                } else {
                    returning.join(", ")
                };
                let sql = format!(
                    "INSERT INTO {target} {} RETURNING {ret}",
                    values_of(placeholders)
                );
                let params: Vec<Value> = columns.iter().map(|(_, v)| (*v).clone()).collect();
                let query = bind_json!(sqlx::query(AssertSqlSafe(sql)), &params, false);
                let (mut conn, deadline) = self.sqlite_conn(pool).await?;
                let row = query.fetch_one(&mut *conn).await.map_err(|e| self.err(e))?;
                deadline.clear();
                for (i, col) in row.columns().iter().enumerate() {
                    key.insert(
                        col.name().to_string(),
                        values::sqlite_value(&row, i, None).map_err(|e| self.err(e))?,
                    );
                }
                rows_affected = 1;
            }
            Pools::Postgres(pool) => {
                // Values travel as text and are cast to the column's catalog type, so a JSON
                // string fills an integer, date, uuid or jsonb column the way a literal would.
                let placeholders = columns
                    .iter()
                    .enumerate()
                    .map(|(i, (c, _))| format!("CAST(${} AS {})", i + 1, c.type_name))
                    .collect();
                let ret = if returning.is_empty() {
                    String::new()
                } else {
                    format!(" RETURNING {}", returning.join(", "))
                };
                let sql = format!("INSERT INTO {target} {}{ret}", values_of(placeholders));
                let mut tx = pool.begin().await.map_err(|e| self.err(e))?;
                self.pg_settings(&mut tx, false).await?;
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for (_, value) in &columns {
                    query = query.bind(values::json_as_text(value));
                }
                let result = query.fetch_all(&mut *tx).await.map_err(|e| self.err(e))?;
                tx.commit().await.map_err(|e| self.err(e))?;
                if let Some(row) = result.first() {
                    for (i, col) in row.columns().iter().enumerate() {
                        key.insert(
                            col.name().to_string(),
                            values::pg_value(row, i).map_err(|e| self.err(e))?,
                        );
                    }
                }
                rows_affected = result.len().max(1) as u64;
            }
            Pools::MySql(pool) => {
                let placeholders = columns.iter().map(|_| "?".to_string()).collect();
                let sql = format!("INSERT INTO {target} {}", values_of(placeholders));
                let params: Vec<Value> = columns.iter().map(|(_, v)| (*v).clone()).collect();
                let query = bind_json!(sqlx::query(AssertSqlSafe(sql)), &params, false);
                let result = query.execute(pool).await.map_err(|e| self.err(e))?;
                rows_affected = result.rows_affected();
                for pk in &desc.primary_key {
                    let given = columns
                        .iter()
                        .find(|(c, _)| &c.name == pk)
                        .map(|(_, v)| (*v).clone());
                    match given {
                        Some(v) => key.insert(pk.clone(), v),
                        None if desc.primary_key.len() == 1 => {
                            key.insert(pk.clone(), Value::from(result.last_insert_id()))
                        }
                        None => None,
                    };
                }
            }
        }
        Ok(InsertOutput {
            table: desc.table,
            rows_affected,
            inserted_key: key,
        })
    }

    /// `execute`: one statement of any kind, committed. Only registered with writes allowed.
    pub(crate) async fn execute(
        &self,
        sql: &str,
        params: &[Value],
    ) -> Result<ExecuteOutput, SqlError> {
        let tokens = guard::tokenize(sql);
        guard::single_statement(&tokens)?;
        guard::check_functions(&tokens)?;
        let started = Instant::now();
        let (rows_affected, last_insert_id) = match &self.pools {
            Pools::Sqlite { write, .. } => {
                let pool = write.as_ref().ok_or_else(writes_disabled)?;
                let (mut conn, deadline) = self.sqlite_conn(pool).await?;
                let query = bind_json!(sqlx::query(AssertSqlSafe(sql)), params, false);
                let result = query.execute(&mut *conn).await.map_err(|e| self.err(e))?;
                deadline.clear();
                // sqlite3_changes() only counts INSERT/UPDATE/DELETE and keeps the previous
                // statement's count after anything else (DDL), so report 0 for those.
                let dml = matches!(
                    first_word(sql).as_str(),
                    "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "WITH"
                );
                let rows = if dml { result.rows_affected() } else { 0 };
                (rows, dml.then(|| result.last_insert_rowid()))
            }
            Pools::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(|e| self.err(e))?;
                self.pg_settings(&mut tx, false).await?;
                let query = bind_json!(sqlx::query(AssertSqlSafe(sql)), params, true);
                let result = query.execute(&mut *tx).await.map_err(|e| self.err(e))?;
                tx.commit().await.map_err(|e| self.err(e))?;
                (result.rows_affected(), None)
            }
            Pools::MySql(pool) => {
                let query = bind_json!(sqlx::query(AssertSqlSafe(sql)), params, false);
                let result = query.execute(pool).await.map_err(|e| self.err(e))?;
                let id = i64::try_from(result.last_insert_id())
                    .ok()
                    .filter(|id| *id > 0);
                (result.rows_affected(), id)
            }
        };
        Ok(ExecuteOutput {
            rows_affected,
            last_insert_id,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// A foreign key as the PostgreSQL catalog query returns it: name, columns, referenced
/// schema, table and columns.
type PgForeignKeyRow = (String, Vec<String>, String, String, Vec<String>);

fn writes_disabled() -> SqlError {
    SqlError::Rejected("writes are not allowed; start the server with --allow-writes".into())
}

fn column_info<C: Column>(c: &C) -> ColumnInfo {
    ColumnInfo {
        name: c.name().to_string(),
        type_name: c.type_info().name().to_string(),
    }
}

fn collect_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    /// A [`Database`] on the SQLite file at `path`, with the default limits.
    async fn sqlite_database(path: &std::path::Path) -> Database {
        let config = SqlConfig {
            url: Some(DatabaseUrl::new(format!("sqlite://{}", path.display()))),
            ..SqlConfig::default()
        };
        Database::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `query`'s future stays small. rmcp boxes (copies) every tool call's future, and while
    /// the PostgreSQL and MySQL arms were inline, each SQLite call copied ~18 KB for them.
    #[tokio::test]
    async fn the_query_future_stays_small() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("small.db");
        sqlite::seed_demo(&path)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let db = sqlite_database(&path).await;
        let query = db.query("SELECT 1", &[], 0, None);
        let size = std::mem::size_of_val(&query);
        eprintln!("query future: {size} bytes");
        assert!(size <= 2048, "the query future is {size} bytes");
        query.await.unwrap_or_else(|e| panic!("{e}"));
    }

    /// The direct SQLite reader (`sqlite::read_rows`): every storage class and declared
    /// type, invalid UTF-8, expression columns, bound parameters and their count, paging.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_rows_are_read_directly_with_faithful_types() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("types.db");
        sqlite::seed_demo(&path)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        {
            let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
                "sqlite://{}",
                path.display()
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            sqlx::raw_sql(
                "CREATE TABLE t (i INTEGER, r REAL, d DECIMAL(10,2), b BOOLEAN, ts TIMESTAMP,
                                 bl BLOB, tx TEXT);
                 INSERT INTO t VALUES (1, 1.5, 12.5, 1, '2024-05-06 07:08:09', x'00ff', 'ả');
                 INSERT INTO t VALUES (NULL, NULL, NULL, 0, 'not a time', x'', CAST(x'61ff' AS TEXT));",
            )
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
        let db = sqlite_database(&path).await;
        let out = db
            .query(
                "SELECT *, i + 1 AS next FROM t ORDER BY rowid",
                &[],
                0,
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let types: Vec<&str> = out.columns.iter().map(|c| c.type_name.as_str()).collect();
        assert_eq!(
            types,
            [
                "INTEGER",
                "REAL",
                "DECIMAL(10,2)",
                "BOOLEAN",
                "TIMESTAMP",
                "BLOB",
                "TEXT",
                "INTEGER"
            ]
        );
        assert_eq!(
            Value::Array(out.rows[0].clone()),
            serde_json::json!([1, 1.5, "12.5", true, "2024-05-06T07:08:09", "AP8=", "ả", 2])
        );
        assert_eq!(
            Value::Array(out.rows[1].clone()),
            serde_json::json!([null, null, null, false, "not a time", "", "a\u{fffd}", null])
        );
        assert!(!out.truncated);

        let out = db
            .query(
                "SELECT name FROM customers WHERE id > ? AND name <> ? ORDER BY id",
                &[serde_json::json!(1), serde_json::json!("x")],
                1,
                Some(1),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.rows, vec![vec![serde_json::json!("Lê Văn Cường")]]);
        assert_eq!((out.offset, out.next_cursor), (1, None));

        for params in [vec![], vec![serde_json::json!(1), serde_json::json!(2)]] {
            let err = db
                .query("SELECT * FROM customers WHERE id = ?", &params, 0, None)
                .await
                .err()
                .unwrap_or_else(|| panic!("{} params were accepted for one", params.len()));
            assert_eq!(err.kind(), "invalid_input", "{err}");
        }
        let err = db
            .query("SELECT * FROM no_such_table", &[], 0, None)
            .await
            .err()
            .unwrap_or_else(|| panic!("a missing table was accepted"));
        assert_eq!(err.kind(), "database");
        assert!(err.to_string().contains("no such table"), "{err}");
        db.close().await;
    }

    use super::*;
    use crate::config::{DatabaseUrl, Limits};

    /// The engine layers alone (the tokenizer bypassed) refuse writes on SQLite's read pool.
    #[tokio::test]
    async fn sqlite_read_pool_refuses_writes_without_the_tokenizer() {
        let dir = tempfile::tempdir().map_err(|e| e.to_string());
        let dir = dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default();
        let path = dir.join("engine.db");
        sqlite::seed_demo(&path)
            .await
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        let db = sqlite_database(&path).await;
        let Pools::Sqlite { read, write, .. } = &db.pools else {
            panic!("not sqlite")
        };
        assert!(write.is_none());
        for sql in [
            "DELETE FROM customers",
            "CREATE TABLE evil (x)",
            "ATTACH DATABASE ':memory:' AS other",
            "PRAGMA query_only = OFF",
            "PRAGMA writable_schema = ON",
            "SELECT load_extension('/nonexistent')",
        ] {
            let result = sqlx::query(AssertSqlSafe(sql)).execute(read).await;
            assert!(result.is_err(), "{sql} was accepted by the read pool");
        }
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
            .fetch_one(read)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(count, 3);
        db.close().await;
    }

    /// The deadline is armed per call on a connection prepared once: a runaway is
    /// interrupted on every call, including after a call that stopped early at a limit (which
    /// leaves the deadline armed), and other calls on the same connection are not.
    #[tokio::test]
    async fn sqlite_deadline_is_rearmed_on_each_call() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("deadline.db");
        sqlite::seed_demo(&path)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let config = SqlConfig {
            url: Some(DatabaseUrl::new(format!("sqlite://{}", path.display()))),
            limits: Limits {
                statement_timeout: std::time::Duration::from_millis(300),
                pool_size: 1,
                ..Limits::default()
            },
            ..SqlConfig::default()
        };
        let db = Database::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
        let endless =
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c";
        for _ in 0..2 {
            let started = Instant::now();
            let err = db.query(runaway, &[], 0, None).await.err();
            assert!(matches!(err, Some(SqlError::Timeout(_))), "{err:?}");
            assert!(started.elapsed() < std::time::Duration::from_secs(5));
            // Stops at the row limit while the worker may still be stepping.
            let page = db
                .query(endless, &[], 0, Some(3))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(page.row_count, 3);
            assert!(page.truncated);
            // Past the old deadline, other tools on the same connection still work.
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
            let tables = db.list_tables().await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(tables.tables.len(), 2);
            db.describe(None, "orders")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let ok = db
                .query("SELECT count(*) FROM customers", &[], 0, None)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(ok.rows, vec![vec![Value::from(3)]]);
        }
        db.close().await;
    }
}
