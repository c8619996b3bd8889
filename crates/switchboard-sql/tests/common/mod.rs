//! Test harness: a throwaway database per test on each real engine, and an MCP client talking
//! to the server over an in-process duplex pipe (the real protocol, no mocks).
//!
//! PostgreSQL tests get their own schema and MySQL/MariaDB tests their own database, both
//! named `sb_test_<random>` and dropped at the end, so tests run in parallel and leave nothing
//! behind. A missing service fails the test with instructions, never skips it.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::{future::Future, panic::AssertUnwindSafe, path::PathBuf};

use futures::FutureExt;
use rmcp::{
    RoleClient, ServiceExt,
    model::{CallToolRequestParams, CallToolResult},
    service::RunningService,
};
use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection, Executor};
use switchboard_sql::{DatabaseUrl, Limits, SqlConfig, SqlServer};

pub const PG_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const MYSQL_DEFAULT: &str = "mysql://root@127.0.0.1:3306/test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
    MySql,
}

/// One isolated test database.
pub struct Fixture {
    pub engine: Engine,
    /// URL the server connects with (points at the isolated schema/database).
    pub url: String,
    /// Admin URL for setup, snapshots and cleanup.
    admin_url: String,
    name: String,
    _dir: Option<tempfile::TempDir>,
    pub sqlite_path: Option<PathBuf>,
}

fn pg_base() -> String {
    std::env::var("SWITCHBOARD_TEST_POSTGRES_URL").unwrap_or_else(|_| PG_DEFAULT.into())
}

fn mysql_base() -> String {
    std::env::var("SWITCHBOARD_TEST_MYSQL_URL").unwrap_or_else(|_| MYSQL_DEFAULT.into())
}

fn unique_name() -> String {
    format!("sb_test_{}", uuid::Uuid::new_v4().simple())
}

/// Replaces the database (last path segment) of a URL, keeping its query string.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| i + scheme_end);
    let mut out = format!("{}/{db}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn with_param(url: &str, param: &str) -> String {
    if url.contains('?') {
        format!("{url}&{param}")
    } else {
        format!("{url}?{param}")
    }
}

/// DDL and sample data per engine: the tutorial's customers and orders, plus a table with
/// one column of each interesting type.
fn setup_sql(engine: Engine) -> Vec<&'static str> {
    match engine {
        Engine::Sqlite => vec![
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT UNIQUE)",
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), product_name TEXT, amount DECIMAL(12,2), order_date TIMESTAMP DEFAULT CURRENT_TIMESTAMP)",
            "CREATE INDEX orders_customer ON orders (customer_id)",
            "CREATE TABLE kinds (id INTEGER PRIMARY KEY, flag BOOLEAN, qty BIGINT, ratio DOUBLE, price DECIMAL(15,2), born DATE, seen_at TIMESTAMP, doc TEXT, raw BLOB, note TEXT)",
            "CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 1000000",
        ],
        Engine::Postgres => vec![
            "CREATE TABLE customers (id SERIAL PRIMARY KEY, name TEXT NOT NULL, email TEXT UNIQUE)",
            "CREATE TABLE orders (id SERIAL PRIMARY KEY, customer_id INT REFERENCES customers(id), product_name TEXT, amount NUMERIC(12,2), order_date TIMESTAMP DEFAULT now())",
            "CREATE INDEX orders_customer ON orders (customer_id)",
            "CREATE TABLE kinds (id INT PRIMARY KEY, flag BOOLEAN, qty BIGINT, ratio DOUBLE PRECISION, price NUMERIC(15,2), born DATE, seen_at TIMESTAMP, doc JSONB, raw BYTEA, note TEXT)",
            "CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 1000000",
        ],
        Engine::MySql => vec![
            "CREATE TABLE customers (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL, email VARCHAR(100) UNIQUE)",
            "CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, customer_id INT, product_name VARCHAR(100), amount DECIMAL(12,2), order_date DATETIME DEFAULT CURRENT_TIMESTAMP, FOREIGN KEY (customer_id) REFERENCES customers(id))",
            "CREATE INDEX orders_customer ON orders (customer_id)",
            "CREATE TABLE kinds (id INT PRIMARY KEY, flag BOOLEAN, qty BIGINT, ratio DOUBLE, price DECIMAL(15,2), born DATE, seen_at DATETIME, doc JSON, raw BLOB, note TEXT)",
            "CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 1000000",
        ],
    }
}

const SEED: &[&str] = &[
    "INSERT INTO customers (name, email) VALUES ('Nguyễn Văn An', 'an@example.com'), ('Trần Thị Bình', 'binh@example.com'), ('Lê Văn Cường', 'cuong@example.com')",
    "INSERT INTO orders (customer_id, product_name, amount) VALUES (1, 'Laptop Dell XPS', 25000000), (1, 'Mouse Logitech', 500000), (2, 'iPhone 15', 30000000), (3, 'Headphones Sony', 2000000)",
];

fn kinds_row(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => {
            "INSERT INTO kinds VALUES (1, 1, 9007199254740993, 1.5, '12345678901.25', '2024-02-29', '2024-02-29 13:45:10', '{\"a\":[1,2]}', X'00FF10', NULL)"
        }
        Engine::Postgres => {
            "INSERT INTO kinds VALUES (1, true, 9007199254740993, 1.5, 12345678901.25, '2024-02-29', '2024-02-29 13:45:10', '{\"a\":[1,2]}', '\\x00ff10', NULL)"
        }
        Engine::MySql => {
            "INSERT INTO kinds VALUES (1, true, 9007199254740993, 1.5, 12345678901.25, '2024-02-29', '2024-02-29 13:45:10', '{\"a\":[1,2]}', X'00FF10', NULL)"
        }
    }
}

impl Fixture {
    pub async fn new(engine: Engine) -> Fixture {
        let name = unique_name();
        let fixture = match engine {
            Engine::Sqlite => {
                let dir = match tempfile::tempdir() {
                    Ok(d) => d,
                    Err(e) => panic!("cannot create a temporary folder: {e}"),
                };
                let path = dir.path().join("test.db");
                let url = format!("sqlite://{}", path.display());
                Fixture {
                    engine,
                    admin_url: format!("{url}?mode=rwc"),
                    url,
                    name,
                    _dir: Some(dir),
                    sqlite_path: Some(path),
                }
            }
            Engine::Postgres => {
                let base = pg_base();
                let mut conn = match sqlx::PgConnection::connect(&base).await {
                    Ok(c) => c,
                    Err(e) => panic!(
                        "PostgreSQL not reachable at {} ({e}): start it with `pg_ctlcluster \
                         --skip-systemctl-redirect $(ls /etc/postgresql) main start` or set \
                         SWITCHBOARD_TEST_POSTGRES_URL",
                        DatabaseUrl::new(base.clone())
                    ),
                };
                exec(&mut conn, &format!("CREATE SCHEMA {name}")).await;
                let url = with_param(&base, &format!("options=-c%20search_path%3D{name}"));
                Fixture {
                    engine,
                    admin_url: url.clone(),
                    url,
                    name,
                    _dir: None,
                    sqlite_path: None,
                }
            }
            Engine::MySql => {
                let base = mysql_base();
                let mut conn = match sqlx::MySqlConnection::connect(&base).await {
                    Ok(c) => c,
                    Err(e) => panic!(
                        "MariaDB/MySQL not reachable at {} ({e}): start it with `service \
                         mariadb start` (or `mysqld_safe &`) or set SWITCHBOARD_TEST_MYSQL_URL",
                        DatabaseUrl::new(base.clone())
                    ),
                };
                exec(
                    &mut conn,
                    &format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"),
                )
                .await;
                let url = with_database(&base, &name);
                Fixture {
                    engine,
                    admin_url: url.clone(),
                    url,
                    name,
                    _dir: None,
                    sqlite_path: None,
                }
            }
        };
        let mut statements: Vec<&str> = setup_sql(engine);
        statements.extend(SEED);
        statements.push(kinds_row(engine));
        // A failed setup must not leave its schema or database behind.
        if let Err(panic) = AssertUnwindSafe(fixture.admin_batch(&statements))
            .catch_unwind()
            .await
        {
            fixture.cleanup().await;
            std::panic::resume_unwind(panic);
        }
        fixture
    }

    /// Runs statements with full privileges (setup and checks, not the server under test).
    pub async fn admin_batch(&self, statements: &[&str]) {
        match self.engine {
            Engine::Sqlite => {
                let mut conn = must(sqlx::SqliteConnection::connect(&self.admin_url).await);
                for s in statements {
                    exec(&mut conn, s).await;
                }
                must(conn.close().await);
            }
            Engine::Postgres => {
                let mut conn = must(sqlx::PgConnection::connect(&self.admin_url).await);
                for s in statements {
                    exec(&mut conn, s).await;
                }
                must(conn.close().await);
            }
            Engine::MySql => {
                let mut conn = must(sqlx::MySqlConnection::connect(&self.admin_url).await);
                for s in statements {
                    exec(&mut conn, s).await;
                }
                must(conn.close().await);
            }
        }
    }

    /// A fingerprint of the data and schema; equal fingerprints mean nothing changed.
    pub async fn snapshot(&self) -> String {
        let data = "SELECT (SELECT count(*) FROM customers) || '/' || (SELECT count(*) FROM orders) || '/' || (SELECT group_concat(name) FROM customers) || '/' || (SELECT sum(amount) FROM orders)";
        match self.engine {
            Engine::Sqlite => {
                let mut conn = must(sqlx::SqliteConnection::connect(&self.admin_url).await);
                let d: String = must(sqlx::query_scalar(data).fetch_one(&mut conn).await);
                let s: String = must(
                    sqlx::query_scalar("SELECT group_concat(type || ':' || name || ':' || coalesce(sql, '')) FROM sqlite_schema")
                        .fetch_one(&mut conn)
                        .await,
                );
                let fk: i64 = must(
                    sqlx::query_scalar("PRAGMA foreign_keys")
                        .fetch_one(&mut conn)
                        .await,
                );
                format!("{d}|{s}|{fk}")
            }
            Engine::Postgres => {
                let mut conn = must(sqlx::PgConnection::connect(&self.admin_url).await);
                let d: String = must(
                    sqlx::query_scalar(
                        "SELECT (SELECT count(*) FROM customers) || '/' || (SELECT count(*) FROM orders) || '/' || (SELECT string_agg(name, ',' ORDER BY id) FROM customers) || '/' || (SELECT sum(amount) FROM orders)",
                    )
                    .fetch_one(&mut conn)
                    .await,
                );
                let s: String = must(
                    sqlx::query_scalar(AssertSqlSafe(format!(
                        "SELECT coalesce(string_agg(relname::text || ':' || relkind::text, ',' ORDER BY relname), '') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = '{}'",
                        self.name
                    )))
                    .fetch_one(&mut conn)
                    .await,
                );
                format!("{d}|{s}")
            }
            Engine::MySql => {
                let mut conn = must(sqlx::MySqlConnection::connect(&self.admin_url).await);
                let d: String = must(
                    sqlx::query_scalar(
                        "SELECT CAST(CONCAT((SELECT count(*) FROM customers), '/', (SELECT count(*) FROM orders), '/', (SELECT group_concat(name ORDER BY id) FROM customers), '/', (SELECT sum(amount) FROM orders)) AS CHAR)",
                    )
                    .fetch_one(&mut conn)
                    .await,
                );
                let s: String = must(
                    sqlx::query_scalar(AssertSqlSafe(format!(
                        "SELECT CAST(coalesce(group_concat(TABLE_NAME ORDER BY TABLE_NAME), '') AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{}'",
                        self.name
                    )))
                    .fetch_one(&mut conn)
                    .await,
                );
                format!("{d}|{s}")
            }
        }
    }

    /// Drops the schema/database.
    pub async fn cleanup(&self) {
        match self.engine {
            Engine::Sqlite => {}
            Engine::Postgres => {
                let mut conn = must(sqlx::PgConnection::connect(&pg_base()).await);
                exec(
                    &mut conn,
                    &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
                )
                .await;
            }
            Engine::MySql => {
                let mut conn = must(sqlx::MySqlConnection::connect(&mysql_base()).await);
                exec(&mut conn, &format!("DROP DATABASE IF EXISTS {}", self.name)).await;
            }
        }
    }

    pub fn config(&self, allow_writes: bool) -> SqlConfig {
        SqlConfig {
            url: Some(DatabaseUrl::new(self.url.clone())),
            allow_writes,
            limits: Limits::default(),
            ..SqlConfig::default()
        }
    }
}

/// Runs `body` against a fresh fixture and always cleans up, re-raising a panic afterwards.
pub async fn with_fixture<F, Fut>(engine: Engine, body: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = Fixture>,
{
    let fixture = Fixture::new(engine).await;
    let name = fixture.name.clone();
    let url = fixture.url.clone();
    let result = AssertUnwindSafe(body(fixture)).catch_unwind().await;
    match result {
        Ok(fixture) => fixture.cleanup().await,
        Err(panic) => {
            let leftover = Fixture {
                engine,
                url: url.clone(),
                admin_url: url,
                name,
                _dir: None,
                sqlite_path: None,
            };
            leftover.cleanup().await;
            std::panic::resume_unwind(panic);
        }
    }
}

pub fn must<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

async fn exec<C>(conn: &mut C, sql: &str)
where
    for<'c> &'c mut C: Executor<'c>,
{
    if let Err(e) = conn.execute(AssertSqlSafe(sql.to_string())).await {
        panic!("setup statement failed: {sql}: {e}");
    }
}

/// An MCP client connected to `server` through an in-process pipe.
pub struct Client {
    pub service: RunningService<RoleClient, ()>,
}

impl Client {
    pub async fn start(server: SqlServer) -> Client {
        let (server_io, client_io) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            if let Ok(running) = server.serve(server_io).await {
                let _ = running.waiting().await;
            }
        });
        let service = must(().serve(client_io).await);
        Client { service }
    }

    pub async fn tool_names(&self) -> Vec<String> {
        let tools = must(self.service.list_all_tools().await);
        tools.into_iter().map(|t| t.name.to_string()).collect()
    }

    pub async fn call(&self, name: &str, args: Value) -> CallToolResult {
        let Value::Object(args) = args else {
            panic!("arguments must be an object")
        };
        must(
            self.service
                .call_tool(CallToolRequestParams::new(name.to_string()).with_arguments(args))
                .await,
        )
    }

    /// Calls a tool that must succeed; returns its structured content.
    pub async fn ok(&self, name: &str, args: Value) -> Value {
        let result = self.call(name, args.clone()).await;
        assert_ne!(
            result.is_error,
            Some(true),
            "{name} {args} failed: {result:?}"
        );
        let text = result
            .content
            .first()
            .and_then(|c| c.as_text())
            .map(|t| t.text.clone());
        assert!(
            text.is_some_and(|t| !t.is_empty()),
            "{name} has no text rendering"
        );
        match result.structured_content {
            Some(v) => v,
            None => panic!("{name} returned no structured content"),
        }
    }

    /// Calls a tool that must fail as a tool error; returns the error's `kind` and message.
    pub async fn err(&self, name: &str, args: Value) -> (String, String) {
        let result = self.call(name, args.clone()).await;
        assert_eq!(
            result.is_error,
            Some(true),
            "{name} {args} should have failed: {result:?}"
        );
        let error = result.structured_content.unwrap_or_default()["error"].clone();
        (
            error["kind"].as_str().unwrap_or_default().to_string(),
            error["message"].as_str().unwrap_or_default().to_string(),
        )
    }
}

pub async fn connect(config: &SqlConfig) -> SqlServer {
    match SqlServer::connect(config).await {
        Ok(s) => s,
        Err(e) => panic!("connect failed: {e}"),
    }
}
