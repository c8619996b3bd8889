//! `switchboard-sql`: an MCP server for SQLite, PostgreSQL and MySQL/MariaDB databases.
//!
//! The archived reference servers guarded "read-only" with prefix checks on the SQL text and
//! interpolated table names into PRAGMAs; both were bypassed. Here read-only is the engine's
//! job, in layers, and names are only ever taken from the live catalog:
//!
//! | engine | read-only layers |
//! | --- | --- |
//! | SQLite | connection opened `SQLITE_OPEN_READONLY` and `PRAGMA query_only`; an authorizer (`sqlite3_set_authorizer`) refuses `ATTACH`/`DETACH`, every PRAGMA but the schema-reading ones, and `load_extension()`; a progress handler enforces the statement timeout |
//! | PostgreSQL | `BEGIN TRANSACTION READ ONLY` … `ROLLBACK`; one statement through the extended protocol (a prepared statement cannot hold two); `SET LOCAL statement_timeout`; `search_path` = `pg_catalog`, the session's schemas, `pg_temp` last; the statement's `EXPLAIN (VERBOSE, FORMAT JSON)` plan is checked for calls to functions PUBLIC may not execute (per the catalog: `pg_read_file`, `lo_import`, …) or that change server state (`set_config`, `pg_terminate_backend`, …), which a superuser could otherwise call |
//! | MySQL/MariaDB | `START TRANSACTION READ ONLY` … `ROLLBACK`; one prepared statement per call; `max_statement_time` (MariaDB) or `max_execution_time` (MySQL) per session |
//!
//! On all engines a light tokenizer (which skips literals, quoted identifiers and comments)
//! first refuses, with a clear message, more than one statement, statements that are not
//! reads, data-changing keywords anywhere (DML in a CTE), `SELECT … INTO`/`OUTFILE`, and
//! calls to file and admin functions (`pg_read_file`, `lo_import`, `LOAD_FILE`,
//! `load_extension`, `set_config`, …). It gives early errors; the layers above are the
//! guarantee.
//!
//! # Tools
//! `list_tables`, `describe_table` (alias `get_table_schema`), `query`, `explain_query`,
//! and with writes allowed `insert_record` and `execute`. Each has annotations, an output
//! schema, structured content and a text rendering; failures are tool errors (`isError`)
//! with a stable `kind`.
//!
//! # Limits ([`Limits`], all configurable)
//! - `max_rows` 1,000 rows per `query` call (`truncated: true` and a `next_cursor` beyond);
//! - `max_result_bytes` 4 MiB of cell data per result;
//! - `max_cell_bytes` 64 KiB per text or binary cell (cut cells are counted);
//! - `statement_timeout` 30 s;
//! - `pool_size` 5 connections, `acquire_timeout` 30 s waiting for one (then `busy`).
//!
//! # Values
//! Integers, floats, booleans and JSON stay native; decimals are exact strings;
//! dates and timestamps ISO 8601; binary base64; NULL `null`.
//!
//! Connection URLs are held in [`DatabaseUrl`], which masks the password in `Debug` and
//! `Display`; errors never include the URL.

mod config;
mod db;
mod error;
/// The early tokenizer check; public only so the fuzz target (`fuzz/`) can drive it.
pub mod guard;
mod held;
mod output;
mod server;
mod sqlite;
mod values;

pub use config::{DatabaseUrl, Limits, SqlConfig};
pub use error::SqlError;
pub use output::{
    ColumnInfo, ExecuteOutput, ExplainOutput, ForeignKey, IndexInfo, InsertOutput, QueryOutput,
    TableColumn, TableDescription, TableEntry, TablesOutput,
};
pub use server::{
    DescribeTableParams, ExecuteParams, ExplainParams, InsertParams, QueryParams, SqlServer,
};
