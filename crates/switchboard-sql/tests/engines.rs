//! Every tool on every engine (SQLite file, PostgreSQL, MariaDB), through the MCP protocol.

mod common;

use common::{Client, Engine, Fixture, connect, with_fixture};
use serde_json::{Value, json};
use switchboard_sql::{Limits, SqlConfig};

fn placeholder(engine: Engine, n: usize) -> String {
    match engine {
        Engine::Postgres => format!("${n}"),
        _ => "?".into(),
    }
}

/// Read tools: list, describe (and alias), query with params, types, paging, explain.
async fn read_tools(f: Fixture) -> Fixture {
    let engine = f.engine;
    let client = Client::start(connect(&f.config(false)).await).await;

    let names = client.tool_names().await;
    for tool in [
        "list_tables",
        "describe_table",
        "get_table_schema",
        "query",
        "explain_query",
    ] {
        assert!(
            names.contains(&tool.to_string()),
            "{tool} missing from {names:?}"
        );
    }
    assert!(
        !names.contains(&"execute".to_string()),
        "execute listed without --allow-writes"
    );
    assert!(!names.contains(&"insert_record".to_string()));
    let tools = common::must(client.service.list_all_tools().await);
    for tool in &tools {
        assert!(
            tool.output_schema.is_some(),
            "{} has no output schema",
            tool.name
        );
        let annotations = tool.annotations.as_ref();
        assert_eq!(
            annotations.and_then(|a| a.read_only_hint),
            Some(true),
            "{}",
            tool.name
        );
    }

    // list_tables
    let tables = client.ok("list_tables", json!({})).await;
    let list = tables["tables"].as_array().cloned().unwrap_or_default();
    let find = |name: &str| list.iter().find(|t| t["name"] == name).cloned();
    assert_eq!(
        find("customers").map(|t| t["kind"].clone()),
        Some(json!("table"))
    );
    assert_eq!(
        find("big_orders").map(|t| t["kind"].clone()),
        Some(json!("view"))
    );
    if engine == Engine::Sqlite {
        assert_eq!(
            find("orders").map(|t| t["row_estimate"].clone()),
            Some(json!(4))
        );
    }

    // describe_table and its alias
    let orders = client
        .ok("describe_table", json!({"table": "orders"}))
        .await;
    assert_eq!(orders["primary_key"], json!(["id"]));
    let fk = &orders["foreign_keys"][0];
    assert_eq!(fk["columns"], json!(["customer_id"]));
    assert_eq!(fk["referenced_table"], json!("customers"));
    assert_eq!(fk["referenced_columns"], json!(["id"]));
    let indexes = orders["indexes"].as_array().cloned().unwrap_or_default();
    assert!(
        indexes
            .iter()
            .any(|i| i["columns"] == json!(["customer_id"])),
        "no customer_id index in {indexes:?}"
    );
    let columns = orders["columns"].as_array().cloned().unwrap_or_default();
    let amount = columns
        .iter()
        .find(|c| c["name"] == "amount")
        .cloned()
        .unwrap_or_default();
    assert!(
        amount["type"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase()
            .contains("decimal")
            || amount["type"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
                .contains("numeric")
    );
    assert_eq!(amount["nullable"], json!(true));
    let order_date = columns
        .iter()
        .find(|c| c["name"] == "order_date")
        .cloned()
        .unwrap_or_default();
    assert!(
        order_date["default"].is_string(),
        "order_date default: {order_date}"
    );
    let alias = client
        .ok("get_table_schema", json!({"table_name": "customers"}))
        .await;
    assert_eq!(alias["table"], json!("customers"));
    let name_col = alias["columns"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "name").cloned());
    assert_eq!(name_col.map(|c| c["nullable"].clone()), Some(json!(false)));

    // The table name is looked up, never interpolated.
    let (kind, _) = client
        .err(
            "describe_table",
            json!({"table": "customers); DROP TABLE customers; --"}),
        )
        .await;
    assert_eq!(kind, "not_found");
    let (kind, _) = client.err("describe_table", json!({"table": "nope"})).await;
    assert_eq!(kind, "not_found");

    // query with bound params
    let sql = format!(
        "SELECT c.name, o.product_name, o.amount FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.amount >= {} ORDER BY o.amount DESC",
        placeholder(engine, 1)
    );
    let result = client
        .ok("query", json!({"sql": sql, "params": [2000000]}))
        .await;
    assert_eq!(result["row_count"], json!(3));
    assert_eq!(result["truncated"], json!(false));
    assert_eq!(result["columns"][0]["name"], json!("name"));
    assert_eq!(result["rows"][0][0], json!("Trần Thị Bình"));
    assert_eq!(result["rows"][1][1], json!("Laptop Dell XPS"));
    let amount = result["rows"][1][2]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        amount == "25000000" || amount == "25000000.00",
        "amount {amount}"
    );
    let text_param = client
        .ok(
            "query",
            json!({"sql": format!("SELECT id FROM customers WHERE name = {}", placeholder(engine, 1)), "params": ["Lê Văn Cường"]}),
        )
        .await;
    assert_eq!(text_param["rows"], json!([[3]]));

    // Types map faithfully.
    let kinds = client
        .ok("query", json!({"sql": "SELECT flag, qty, ratio, price, born, seen_at, doc, raw, note FROM kinds"}))
        .await;
    let row = &kinds["rows"][0];
    assert_eq!(row[0], json!(true), "bool: {row}");
    assert_eq!(row[1], json!(9007199254740993_i64), "bigint: {row}");
    assert_eq!(row[2], json!(1.5), "double: {row}");
    assert_eq!(row[3], json!("12345678901.25"), "decimal: {row}");
    assert_eq!(row[4], json!("2024-02-29"), "date: {row}");
    assert_eq!(row[5], json!("2024-02-29T13:45:10"), "timestamp: {row}");
    match engine {
        // SQLite and MariaDB keep JSON as text; PostgreSQL's jsonb is real JSON.
        Engine::Postgres => assert_eq!(row[6], json!({"a": [1, 2]})),
        _ => {
            let doc = row[6].as_str().map(serde_json::from_str::<Value>);
            assert!(
                matches!(doc, Some(Ok(ref v)) if *v == json!({"a": [1, 2]})),
                "json: {row}"
            );
        }
    }
    assert_eq!(row[7], json!("AP8Q"), "blob: {row}");
    assert_eq!(row[8], Value::Null, "null: {row}");

    // Paging: max_rows then cursor.
    let page1 = client
        .ok(
            "query",
            json!({"sql": "SELECT id FROM orders ORDER BY id", "max_rows": 3}),
        )
        .await;
    assert_eq!(page1["rows"], json!([[1], [2], [3]]));
    assert_eq!(page1["truncated"], json!(true));
    let cursor = page1["next_cursor"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let page2 = client
        .ok(
            "query",
            json!({"sql": "SELECT id FROM orders ORDER BY id", "max_rows": 3, "cursor": cursor}),
        )
        .await;
    assert_eq!(page2["rows"], json!([[4]]));
    assert_eq!(page2["truncated"], json!(false));
    assert!(page2.get("next_cursor").is_none());

    // An empty result still names its columns.
    let empty = client
        .ok(
            "query",
            json!({"sql": "SELECT id, name FROM customers WHERE id < 0"}),
        )
        .await;
    assert_eq!(empty["row_count"], json!(0));
    assert_eq!(empty["columns"][1]["name"], json!("name"));

    // Engine errors come back as tool errors, with the engine's message.
    let (kind, message) = client
        .err(
            "query",
            json!({"sql": "SELECT no_such_column FROM customers"}),
        )
        .await;
    assert_eq!(kind, "database");
    assert!(
        message.to_lowercase().contains("no_such_column"),
        "{message}"
    );

    // explain_query
    let plan = client
        .ok(
            "explain_query",
            json!({"sql": "SELECT * FROM orders WHERE customer_id = 1"}),
        )
        .await;
    assert!(!plan["plan"].is_null());
    let (kind, _) = client
        .err("explain_query", json!({"sql": "DELETE FROM orders"}))
        .await;
    assert_eq!(kind, "rejected");
    f
}

/// Write tools, only with writes allowed.
async fn write_tools(f: Fixture) -> Fixture {
    let client = Client::start(connect(&f.config(true)).await).await;
    let names = client.tool_names().await;
    assert!(names.contains(&"execute".to_string()) && names.contains(&"insert_record".to_string()));
    let tools = common::must(client.service.list_all_tools().await);
    let execute = tools
        .iter()
        .find(|t| t.name == "execute")
        .and_then(|t| t.annotations.clone());
    assert_eq!(
        execute.as_ref().and_then(|a| a.destructive_hint),
        Some(true)
    );
    assert_eq!(execute.as_ref().and_then(|a| a.read_only_hint), Some(false));

    let inserted = client
        .ok(
            "insert_record",
            json!({"table_name": "customers", "data": {"name": "Phạm Thị Dung", "email": "dung@example.com"}}),
        )
        .await;
    assert_eq!(inserted["inserted_key"], json!({"id": 4}));
    let order = client
        .ok(
            "insert_record",
            json!({"table": "orders", "data": {"customer_id": 4, "product_name": "Bàn phím", "amount": "1250000.50"}}),
        )
        .await;
    assert_eq!(order["inserted_key"], json!({"id": 5}));
    let check = client
        .ok(
            "query",
            json!({"sql": "SELECT amount FROM orders WHERE id = 5"}),
        )
        .await;
    let amount = check["rows"][0][0].clone();
    assert!(
        amount == json!("1250000.50") || amount == json!("1250000.5"),
        "{amount}"
    );

    // Column names are checked against the live schema.
    let (kind, message) = client
        .err(
            "insert_record",
            json!({"table": "customers", "data": {"name": "x", "\"evil\"": 1}}),
        )
        .await;
    assert_eq!(kind, "not_found");
    assert!(message.contains("email"), "{message}");
    let (kind, _) = client
        .err(
            "insert_record",
            json!({"table": "customers; DROP TABLE orders", "data": {"name": "x"}}),
        )
        .await;
    assert_eq!(kind, "not_found");

    let sql = format!(
        "UPDATE orders SET amount = amount + 1 WHERE customer_id = {}",
        placeholder(f.engine, 1)
    );
    let updated = client
        .ok("execute", json!({"sql": sql, "params": [1]}))
        .await;
    assert_eq!(updated["rows_affected"], json!(2));
    let (kind, _) = client
        .err(
            "execute",
            json!({"sql": "DELETE FROM orders WHERE id = 5; DROP TABLE customers"}),
        )
        .await;
    assert_eq!(kind, "rejected");
    let ddl = client
        .ok(
            "execute",
            json!({"sql": "CREATE TABLE notes (id INT PRIMARY KEY, body TEXT)"}),
        )
        .await;
    assert_eq!(ddl["rows_affected"], json!(0));
    let described = client.ok("describe_table", json!({"table": "notes"})).await;
    assert_eq!(described["primary_key"], json!(["id"]));
    f
}

/// Statement timeout is enforced by the engine (or SQLite's progress handler).
async fn timeout(f: Fixture) -> Fixture {
    let config = SqlConfig {
        limits: Limits {
            statement_timeout: std::time::Duration::from_secs(1),
            ..Limits::default()
        },
        ..f.config(false)
    };
    let client = Client::start(connect(&config).await).await;
    let sql = match f.engine {
        Engine::Sqlite => {
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
        }
        Engine::Postgres => "SELECT pg_sleep(30)",
        Engine::MySql => {
            "SELECT count(*) FROM information_schema.COLUMNS a, information_schema.COLUMNS b, information_schema.COLUMNS c"
        }
    };
    let (kind, message) = client.err("query", json!({"sql": sql})).await;
    assert_eq!(kind, "timeout", "{message}");
    // The pool is still usable afterwards.
    client
        .ok("query", json!({"sql": "SELECT count(*) FROM customers"}))
        .await;
    f
}

/// 64 parallel queries through a 2-connection pool: they queue, none deadlocks or fails.
async fn concurrency(f: Fixture) -> Fixture {
    let config = SqlConfig {
        limits: Limits {
            pool_size: 2,
            ..Limits::default()
        },
        ..f.config(false)
    };
    let client = Client::start(connect(&config).await).await;
    let calls = (0..64).map(|i| {
        let client = &client;
        async move {
            let sql = format!("SELECT count(*) + {i} FROM orders");
            client.ok("query", json!({"sql": sql})).await
        }
    });
    let results = futures::future::join_all(calls).await;
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["rows"][0][0], json!(4 + i as i64), "call {i}: {r}");
    }
    f
}

macro_rules! engine_tests {
    ($module:ident, $engine:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn read_tools_work() {
                with_fixture($engine, read_tools).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn write_tools_work_with_allow_writes() {
                with_fixture($engine, write_tools).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn statement_timeout_cancels() {
                with_fixture($engine, timeout).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn parallel_queries_queue_on_a_small_pool() {
                with_fixture($engine, concurrency).await;
            }
        }
    };
}

engine_tests!(sqlite, Engine::Sqlite);
engine_tests!(postgres, Engine::Postgres);
engine_tests!(mysql, Engine::MySql);

#[tokio::test]
async fn demo_database_is_seeded_once() {
    let dir = common::must(tempfile::tempdir());
    let config = SqlConfig {
        demo_path: dir.path().join("data").join("demo.db"),
        ..SqlConfig::default()
    };
    for _ in 0..2 {
        let server = connect(&config).await;
        let client = Client::start(server.clone()).await;
        let result = client
            .ok("query", json!({"sql": "SELECT c.name, o.product_name, o.amount FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY o.id"}))
            .await;
        assert_eq!(result["row_count"], json!(4));
        assert_eq!(
            result["rows"][0],
            json!(["Nguyễn Văn An", "Laptop Dell XPS", "25000000"])
        );
        let orders = client
            .ok("describe_table", json!({"table": "orders"}))
            .await;
        assert_eq!(
            orders["foreign_keys"][0]["referenced_table"],
            json!("customers")
        );
        drop(client);
        server.close().await;
    }
}

#[tokio::test]
async fn missing_database_fails_without_leaking_the_url() {
    let dir = common::must(tempfile::tempdir());
    let config = SqlConfig {
        url: Some(switchboard_sql::DatabaseUrl::new(format!(
            "sqlite://{}",
            dir.path().join("missing.db").display()
        ))),
        ..SqlConfig::default()
    };
    let err = switchboard_sql::SqlServer::connect(&config).await.err();
    let err = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains("could not connect to the SQLite database"),
        "{err}"
    );
    assert!(!err.contains("sqlite://"), "the URL leaked: {err}");
}

/// Pool exhaustion fails clearly: the only connection is held by a query waiting on a lock
/// that a second session holds; another call gets `busy` after the acquire timeout instead of
/// waiting forever, and the first call completes once the lock is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pool_exhaustion_is_a_clear_busy_error() {
    with_fixture(Engine::Postgres, |f| async move {
        use sqlx::{Connection, Executor};
        let config = SqlConfig {
            limits: Limits {
                pool_size: 1,
                acquire_timeout: std::time::Duration::from_secs(1),
                ..Limits::default()
            },
            ..f.config(false)
        };
        let client = std::sync::Arc::new(Client::start(connect(&config).await).await);
        let mut locker = common::must(sqlx::PgConnection::connect(&f.url).await);
        common::must(locker.execute("BEGIN").await);
        common::must(
            locker
                .execute("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
                .await,
        );
        let blocked = {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .ok("query", json!({"sql": "SELECT count(*) FROM customers"}))
                    .await
            })
        };
        // Wait (without sleeping) until the server's query is queued behind the lock.
        loop {
            let waiting: i64 = common::must(
                sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE NOT granted")
                    .fetch_one(&mut locker)
                    .await,
            );
            if waiting > 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        let (kind, message) = client.err("list_tables", json!({})).await;
        assert_eq!(kind, "busy", "{message}");
        common::must(locker.execute("ROLLBACK").await);
        let result = common::must(blocked.await);
        assert_eq!(result["rows"], json!([[3]]));
        f
    })
    .await;
}

#[tokio::test]
async fn connect_errors_never_show_the_password() {
    let config = SqlConfig {
        url: Some(switchboard_sql::DatabaseUrl::new(
            "postgres://alice:s3cretpw@127.0.0.1:1/nowhere",
        )),
        // sqlx retries a refused connection until the acquire timeout; keep the test short.
        limits: Limits {
            acquire_timeout: std::time::Duration::from_secs(1),
            ..Limits::default()
        },
        ..SqlConfig::default()
    };
    let err = switchboard_sql::SqlServer::connect(&config).await.err();
    let err = err.map(|e| format!("{e} {e:?}")).unwrap_or_default();
    assert!(err.contains("PostgreSQL"), "{err}");
    assert!(!err.contains("s3cretpw"), "the password leaked: {err}");
    assert!(!format!("{config:?}").contains("s3cretpw"));
}

#[tokio::test]
async fn cell_and_result_byte_limits_truncate() {
    with_fixture(Engine::Sqlite, |f| async move {
        let config = SqlConfig {
            limits: Limits {
                max_cell_bytes: 8,
                max_result_bytes: 30,
                ..Limits::default()
            },
            ..f.config(false)
        };
        let client = Client::start(connect(&config).await).await;
        let result = client
            .ok(
                "query",
                json!({"sql": "SELECT product_name FROM orders ORDER BY id"}),
            )
            .await;
        assert_eq!(result["truncated"], json!(true));
        assert_eq!(result["rows"][0][0], json!("Laptop D…"));
        assert!(result["truncated_cells"].as_u64().unwrap_or_default() >= 1);
        let returned = result["row_count"].as_u64().unwrap_or_default();
        assert!(
            (1..4).contains(&returned),
            "byte limit not applied: {result}"
        );
        assert_eq!(result["next_cursor"], json!(returned.to_string()));
        f
    })
    .await;
}
