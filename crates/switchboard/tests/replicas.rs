//! Three `switchboard serve` replicas sharing PostgreSQL (the audit log), Redis (rate limits,
//! the result cache, events) and a session key, behind no load balancer: the test is the
//! balancer, and sends each request of one session-era session to a different replica.
//!
//! Proves, on loopback: the session continues on every replica; the global rate limit is
//! exact across them; a result computed on one replica is served from the shared cache by
//! another; every call has exactly one audit row; a session ended on one replica is refused by
//! the others. And, with `kill -9` of one replica under load: clients retry onto the others,
//! and no acknowledged call lacks its audit record once the killed replica is back (its
//! journal ships what it had acknowledged).
//!
//! Needs PostgreSQL (`SWITCHBOARD_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`) and Redis (`REDIS_URL`, default
//! `redis://127.0.0.1:6379`); `.ci/services` starts both.

mod common;

use std::time::Duration;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, Executor};

const PG_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";
/// base64 of 32 bytes; the test's own key.
const SESSION_KEY: &str = "c3dpdGNoYm9hcmQtcmVwbGljYS10ZXN0LWtleS0zMmI";
/// The global budget of the rate-limited tool.
const LIMIT: usize = 5;

fn with_param(url: &str, param: &str) -> String {
    if url.contains('?') {
        format!("{url}&{param}")
    } else {
        format!("{url}?{param}")
    }
}

async fn require_redis(url: &str) {
    let reachable = async {
        let client = redis::Client::open(url).ok()?;
        let mut c = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING").query_async::<String>(&mut c).await.ok()
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(5), reachable)
            .await
            .ok()
            .flatten()
            .is_some(),
        "Redis is not reachable at {url}; start it (`.ci/services`, or `redis-server --daemonize \
         yes`), or point REDIS_URL at one"
    );
}

/// One JSON-RPC answer from a Streamable HTTP response (JSON, or the SSE event holding it).
async fn answer(response: reqwest::Response) -> Value {
    let status = response.status();
    let text = response.text().await.expect("body");
    assert!(status.is_success(), "HTTP {status}: {text}");
    if let Ok(value) = serde_json::from_str::<Value>(&text) {
        return value;
    }
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .find(|v| v.get("id").is_some())
        .unwrap_or_else(|| panic!("no JSON-RPC answer in {text}"))
}

fn post(
    http: &reqwest::Client,
    mcp: &str,
    session: Option<&str>,
    body: Value,
) -> reqwest::RequestBuilder {
    let request = http
        .post(mcp)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_string());
    match session {
        Some(id) => request.header("mcp-session-id", id),
        None => request,
    }
}

async fn cache_stats(base: &str) -> Value {
    common::upstream_status(base, "cached").await["cache"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_sessions_limits_cache_and_audit() {
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    require_redis(&redis_url).await;
    let Pg {
        mut admin,
        schema,
        audit_url,
    } = pg_schema("sb_replicas").await;
    let run = uuid::Uuid::new_v4().simple().to_string();

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[upstream]]
name = "cached"
builtin = {{ server = "echo" }}
cache = {{ tools = ["echo"], ttl_secs = 3600, shared = true }}

[[upstream]]
name = "limited"
builtin = {{ server = "echo" }}

[[security.rate_limit]]
name = "global-limited"
tools = ["limited__*"]
per = "global"
limit = {LIMIT}
window_secs = 3600
backend = "redis"
redis_url = "{redis_url}"
key_prefix = "sbtest:{run}:ratelimit:"

[audit]
store = "postgres"
url = "{audit_url}"

[sessions]
keys_env = ["SB_REPLICA_TEST_KEY"]

# The URL from the environment, as from a Kubernetes Secret (start_replica sets it).
[cluster]
redis_url_env = "SB_REPLICA_TEST_REDIS_URL"
key_prefix = "sbtest:{run}:"
"#
        ),
    )
    .expect("config");
    let config = config.to_str().expect("utf-8 path").to_owned();
    let mut replicas = Vec::new();
    for i in 0..3 {
        replicas
            .push(start_replica(&config, &dir.path().join(format!("data{i}")), dir.path()).await);
    }
    let mcp = |i: usize| replicas[i % 3].mcp.clone();
    let http = reqwest::Client::new();

    // One session, each request on the next replica.
    let session = open_session(&http, &mcp(0), &mcp(1)).await;
    let tools = answer(
        post(
            &http,
            &mcp(2),
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .send()
        .await
        .expect("tools/list"),
    )
    .await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"cached__echo") && names.contains(&"limited__echo"),
        "{names:?}"
    );

    let mut id = 10;
    let mut call = |replica: usize, tool: &str, message: String| {
        id += 1;
        post(
            &http,
            &mcp(replica),
            Some(&session),
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                   "params": {"name": tool, "arguments": {"message": message}}}),
        )
        .send()
    };

    // The shared cache: computed on replica 0, served by replica 1 without a call upstream.
    let first = answer(
        call(0, "cached__echo", "shared".into())
            .await
            .expect("call"),
    )
    .await;
    assert_eq!(first["result"]["content"][0]["text"], "shared");
    let second = answer(
        call(1, "cached__echo", "shared".into())
            .await
            .expect("call"),
    )
    .await;
    assert_eq!(second["result"]["content"][0]["text"], "shared");
    let on_0 = cache_stats(&replicas[0].base).await;
    let on_1 = cache_stats(&replicas[1].base).await;
    assert_eq!(on_0["misses"], 1, "replica 0 computed it: {on_0}");
    assert_eq!(on_1["misses"], 0, "replica 1 did not: {on_1}");
    assert_eq!(
        on_1["shared_hits"], 1,
        "replica 1 took replica 0's result: {on_1}"
    );

    // The global rate limit is exact across replicas.
    let calls = 3 * LIMIT;
    let mut allowed = 0;
    let mut refused = 0;
    for i in 0..calls {
        let reply = answer(
            call(i, "limited__echo", format!("limited-{i}"))
                .await
                .expect("call"),
        )
        .await;
        if reply.get("result").is_some() {
            allowed += 1;
        } else {
            assert_eq!(reply["error"]["code"], -32000, "{reply}");
            refused += 1;
        }
    }
    assert_eq!(allowed, LIMIT, "exactly the global budget passes");
    assert_eq!(refused, calls - LIMIT);

    // Every call has exactly one audit row, whichever replica took it (poll: records may still
    // be on their way to PostgreSQL).
    let mut expected: Vec<String> = (0..calls).map(|i| format!("limited-{i}")).collect();
    expected.push("shared".into());
    expected.push("shared".into());
    expected.sort();
    let query = format!("SELECT arguments FROM {schema}.audit_log ORDER BY arguments");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let stored = loop {
        let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(query.clone()))
            .fetch_all(&mut admin)
            .await
            .unwrap_or_default();
        let mut messages: Vec<String> = rows
            .iter()
            .filter_map(|a| serde_json::from_str::<Value>(a).ok())
            .filter_map(|a| a["message"].as_str().map(str::to_owned))
            .collect();
        messages.sort();
        if messages.len() >= expected.len() || tokio::time::Instant::now() > deadline {
            break messages;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stored, expected, "one audit row per call");

    // A session ended on one replica is refused by the others once they hear of it.
    let deleted = http
        .delete(mcp(2))
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .expect("DELETE");
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = post(
            &http,
            &mcp(0),
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 99, "method": "tools/list"}),
        )
        .send()
        .await
        .expect("POST")
        .status();
        if status == 404 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica 0 still serves an ended session"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    drop(replicas);
    admin
        .execute(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .await
        .expect("drop schema");
}

struct Pg {
    admin: sqlx::PgConnection,
    schema: String,
    audit_url: String,
}

async fn pg_schema(prefix: &str) -> Pg {
    let pg = std::env::var("SWITCHBOARD_TEST_POSTGRES_URL").unwrap_or_else(|_| PG_DEFAULT.into());
    let mut admin = sqlx::PgConnection::connect(&pg).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {pg} ({e}); start it (e.g. `.ci/services`) or set \
             SWITCHBOARD_TEST_POSTGRES_URL"
        )
    });
    let schema = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .await
        .expect("create schema");
    let audit_url = with_param(&pg, &format!("options=-c%20search_path%3D{schema}"));
    Pg {
        admin,
        schema,
        audit_url,
    }
}

async fn start_replica(
    config: &str,
    data: &std::path::Path,
    cwd: &std::path::Path,
) -> common::Listening {
    let data = data.to_str().expect("utf-8 path").to_owned();
    common::spawn_listening_with(
        &[
            "serve",
            "--config",
            config,
            "--data-dir",
            &data,
            "--listen",
            "127.0.0.1:0",
        ],
        cwd,
        |command| {
            command.env("SB_REPLICA_TEST_KEY", SESSION_KEY).env(
                "SB_REPLICA_TEST_REDIS_URL",
                std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            );
        },
    )
    .await
}

/// Opens a session-era session: `initialize` on `mcp`, `notifications/initialized` on
/// `initialized_on` (another replica, or the same); returns its id.
async fn open_session(http: &reqwest::Client, mcp: &str, initialized_on: &str) -> String {
    let init = post(
        http,
        mcp,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "replica-test", "version": "0"}}}),
    )
    .send()
    .await
    .expect("initialize");
    let session = init
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session id")
        .to_owned();
    let _ = answer(init).await;
    let ack = post(
        http,
        initialized_on,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .send()
    .await
    .expect("initialized");
    assert_eq!(ack.status(), 202);
    session
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_a_replica_under_load_loses_no_acknowledged_record() {
    const CLIENTS: usize = 6;
    const CALLS: usize = 30;
    /// Acknowledged calls before replica 1 is killed.
    const KILL_AFTER: usize = 40;
    let mut pg = pg_schema("sb_replica_kill").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[upstream]]
name = "echo"
builtin = {{ server = "echo" }}

[audit]
store = "postgres"
url = "{}"

[sessions]
keys_env = ["SB_REPLICA_TEST_KEY"]
"#,
            pg.audit_url
        ),
    )
    .expect("config");
    let config = config.to_str().expect("utf-8 path").to_owned();
    let mut replicas = Vec::new();
    for i in 0..3 {
        replicas
            .push(start_replica(&config, &dir.path().join(format!("data{i}")), dir.path()).await);
    }
    let urls: Arc<Vec<String>> = Arc::new(replicas.iter().map(|r| r.mcp.clone()).collect());
    let acked_count = Arc::new(AtomicUsize::new(0));
    let kill_now = Arc::new(tokio::sync::Notify::new());

    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let urls = urls.clone();
        let acked_count = acked_count.clone();
        let kill_now = kill_now.clone();
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let session = open_session(&http, &urls[c % 3], &urls[c % 3]).await;
            // (message, whether it needed a retry)
            let mut acked = Vec::new();
            for k in 0..CALLS {
                let message = format!("c{c}-{k}");
                let mut retried = false;
                let mut replica = (c + k) % 3;
                let reply = loop {
                    let sent = post(
                        &http,
                        &urls[replica],
                        Some(&session),
                        json!({"jsonrpc": "2.0", "id": k + 10, "method": "tools/call",
                               "params": {"name": "echo__echo", "arguments": {"message": message}}}),
                    )
                    .send()
                    .await;
                    match sent {
                        Ok(response) if response.status().is_success() => {
                            // An error here: the replica died mid-answer, not acknowledged.
                            if let Ok(text) = response.text().await {
                                break text;
                            }
                        }
                        // Refused or reset: the client's retry policy moves to the next replica.
                        _ => {}
                    }
                    assert!(!retried || replica != (c + k) % 3, "no replica answered {message}");
                    retried = true;
                    replica = (replica + 1) % 3;
                };
                assert!(reply.contains(&message), "{reply}");
                acked.push((message, retried));
                if acked_count.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
                    kill_now.notify_one();
                }
            }
            acked
        }));
    }
    kill_now.notified().await;
    replicas[1].child.start_kill().expect("kill -9 replica 1");
    let _ = replicas[1].child.wait().await;

    let mut acked = Vec::new();
    for client in clients {
        acked.extend(client.await.expect("client"));
    }
    assert_eq!(
        acked.len(),
        CLIENTS * CALLS,
        "every call was acknowledged by some replica"
    );

    // The killed replica comes back on its data directory (as a restarted pod would) and
    // ships what its journal holds.
    replicas[1] = start_replica(&config, &dir.path().join("data1"), dir.path()).await;
    let query = format!("SELECT arguments FROM {}.audit_log", pg.schema);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let counts = loop {
        let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(query.clone()))
            .fetch_all(&mut pg.admin)
            .await
            .unwrap_or_default();
        let mut counts = std::collections::HashMap::<String, usize>::new();
        for row in rows {
            if let Some(m) = serde_json::from_str::<Value>(&row)
                .ok()
                .and_then(|a| a["message"].as_str().map(str::to_owned))
            {
                *counts.entry(m).or_default() += 1;
            }
        }
        let missing = acked
            .iter()
            .filter(|(m, _)| !counts.contains_key(m))
            .count();
        if missing == 0 || tokio::time::Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (message, retried) in &acked {
        let n = counts.get(message).copied().unwrap_or(0);
        assert!(n >= 1, "acknowledged call {message} has no audit record");
        if !retried {
            assert_eq!(n, 1, "call {message} (sent once) has {n} records");
        }
    }
    drop(replicas);
    pg.admin
        .execute(AssertSqlSafe(format!("DROP SCHEMA {} CASCADE", pg.schema)))
        .await
        .expect("drop schema");
}
