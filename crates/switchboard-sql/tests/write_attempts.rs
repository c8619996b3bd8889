//! Write attempts through the read-only tools, by class, on every engine. Each case must be a
//! tool error, and the data and schema must be unchanged afterwards.

mod common;

use common::{Client, Engine, Fixture, connect, with_fixture};
use serde_json::json;

/// Classes every engine must refuse.
const COMMON: &[&str] = &[
    // plain writes and DDL
    "DELETE FROM customers",
    "UPDATE customers SET name = 'x'",
    "INSERT INTO customers (name) VALUES ('x')",
    "DROP TABLE orders",
    "CREATE TABLE evil (id INT)",
    "ALTER TABLE customers ADD COLUMN evil INT",
    "TRUNCATE TABLE orders",
    // multiple statements, also hidden behind literals and comments
    "SELECT 1; DROP TABLE customers",
    "SELECT 1; COMMIT; DROP TABLE customers",
    "SELECT 1 /* ; */; DELETE FROM customers",
    "SELECT 'a'; DELETE FROM customers -- '",
    // DML inside a CTE
    "WITH d AS (DELETE FROM orders RETURNING id) SELECT * FROM d",
    "WITH x AS (SELECT 1) DELETE FROM orders",
    // SELECT … INTO
    "SELECT * INTO evil FROM customers",
    // transaction control
    "COMMIT",
    "SET TRANSACTION READ WRITE",
];

fn engine_cases(engine: Engine) -> Vec<&'static str> {
    match engine {
        Engine::Sqlite => vec![
            "ATTACH DATABASE ':memory:' AS other",
            "DETACH DATABASE main",
            "PRAGMA writable_schema = ON",
            "PRAGMA foreign_keys = OFF",
            "PRAGMA journal_mode = DELETE",
            "SELECT load_extension('/tmp/nonexistent')",
            "SELECT \"load_extension\"('/tmp/nonexistent')",
            "SELECT writefile('/tmp/sb_pwned', 'x')",
            "VACUUM INTO '/tmp/sb_vacuum.db'",
            "REPLACE INTO customers (id, name) VALUES (1, 'x')",
            "SELECT * FROM customers; PRAGMA query_only = OFF",
        ],
        Engine::Postgres => vec![
            "COPY customers TO PROGRAM 'touch /tmp/sb_pwned'",
            "COPY customers FROM PROGRAM 'echo 9,x,y'",
            "COPY (SELECT 1) TO '/tmp/sb_copy'",
            "SELECT pg_read_file('/etc/hostname')",
            "SELECT pg_catalog.\"pg_read_file\"('/etc/hostname')",
            "SELECT * FROM pg_ls_dir('.')",
            "SELECT pg_stat_file('/etc/hostname')",
            "SELECT lo_import('/etc/hostname')",
            "SELECT lo_export(1, '/tmp/sb_lo')",
            "SELECT set_config('default_transaction_read_only', 'off', false)",
            "SELECT pg_terminate_backend(pg_backend_pid())",
            "SELECT pg_reload_conf()",
            "SELECT nextval('customers_id_seq')",
            // hidden in a view and in a function defined by the fixture
            "SELECT * FROM leak_file",
            "SELECT evil_delete()",
            "SELECT * FROM customers FOR UPDATE",
            "SET search_path = pg_temp",
            "DO $$ BEGIN DELETE FROM customers; END $$",
        ],
        Engine::MySql => vec![
            "SELECT * FROM customers INTO OUTFILE '/tmp/sb_outfile'",
            "SELECT name FROM customers LIMIT 1 INTO DUMPFILE '/tmp/sb_dumpfile'",
            "SELECT LOAD_FILE('/etc/hostname')",
            "SELECT `load_file`('/etc/hostname')",
            "SELECT name INTO @v FROM customers LIMIT 1",
            "SET GLOBAL max_connections = 1",
            "LOAD DATA INFILE '/etc/hostname' INTO TABLE customers",
            "REPLACE INTO customers (id, name) VALUES (1, 'x')",
            "CALL evil_proc()",
            // hidden in a stored function defined by the fixture
            "SELECT evil_insert()",
            "HANDLER customers OPEN",
        ],
    }
}

/// Objects that hide a write or a file read behind an innocent-looking SELECT.
fn traps(engine: Engine) -> Vec<&'static str> {
    match engine {
        Engine::Sqlite => vec![],
        Engine::Postgres => vec![
            "CREATE VIEW leak_file AS SELECT pg_read_file('/etc/hostname') AS body",
            "CREATE FUNCTION evil_delete() RETURNS int LANGUAGE plpgsql AS $$ BEGIN DELETE FROM orders; RETURN 1; END $$",
        ],
        Engine::MySql => vec![
            "CREATE FUNCTION evil_insert() RETURNS INT MODIFIES SQL DATA BEGIN INSERT INTO customers (name) VALUES ('pwned'); RETURN 1; END",
            "CREATE PROCEDURE evil_proc() MODIFIES SQL DATA DELETE FROM orders",
        ],
    }
}

async fn attempts(f: Fixture) -> Fixture {
    f.admin_batch(&traps(f.engine)).await;
    let before = f.snapshot().await;
    let client = Client::start(connect(&f.config(false)).await).await;
    let mut cases: Vec<&str> = COMMON.to_vec();
    cases.extend(engine_cases(f.engine));
    for sql in cases {
        for tool in ["query", "explain_query"] {
            let result = client.call(tool, json!({"sql": sql})).await;
            // `explain_query` never executes the statement, so planning a harmless-to-plan
            // call such as nextval() may succeed; `query` must refuse every case.
            if tool == "query" {
                assert_eq!(
                    result.is_error,
                    Some(true),
                    "{tool} accepted {sql:?}: {result:?}"
                );
            }
            let after = f.snapshot().await;
            assert_eq!(before, after, "{tool} {sql:?} changed the data");
        }
    }
    // The layers behind the tokenizer did the refusing where the tokenizer cannot see.
    let layered: &[(&str, &str)] = match f.engine {
        Engine::Sqlite => &[],
        // the plan check (function hidden in a view) and the READ ONLY transaction
        Engine::Postgres => &[
            ("SELECT * FROM leak_file", "privileged"),
            ("SELECT evil_delete()", "read-only transaction"),
            (
                "SELECT nextval('customers_id_seq')",
                "read-only transaction",
            ),
        ],
        Engine::MySql => &[("SELECT evil_insert()", "READ ONLY")],
    };
    for (sql, expected) in layered {
        let (_, message) = client.err("query", json!({"sql": sql})).await;
        assert!(message.contains(expected), "{sql}: {message}");
    }
    // A read still works afterwards, and the server never wrote files.
    client
        .ok("query", json!({"sql": "SELECT count(*) FROM customers"}))
        .await;
    assert!(!std::path::Path::new("/tmp/sb_pwned").exists());
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refuses_every_write_class() {
    with_fixture(Engine::Sqlite, attempts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_every_write_class() {
    with_fixture(Engine::Postgres, attempts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_refuses_every_write_class() {
    with_fixture(Engine::MySql, attempts).await;
}
