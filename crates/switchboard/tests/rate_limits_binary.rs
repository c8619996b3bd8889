//! A Redis-backed rate limit shared by two real `switchboard serve` processes: 200 calls sent
//! at once over Streamable HTTP, half to each, against `limit = 50` → exactly 50 pass in total
//! and every other call gets the JSON-RPC rate-limit error with `retry_after_ms`.
//!
//! Needs Redis: `REDIS_URL` (default `redis://127.0.0.1:6379`); start it with `.ci/services`.

mod common;

use std::sync::Arc;

use common::{args, client, spawn_listening};
use rmcp::{ServiceError, model::CallToolRequestParams};
use serde_json::json;

const CALLS: usize = 200;
const LIMIT: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateway_processes_share_one_exact_redis_budget() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut redis = match redis::Client::open(url.as_str()) {
        Ok(client) => match client.get_multiplexed_async_connection().await {
            Ok(connection) => connection,
            Err(err) => panic!(
                "Redis is not reachable at {url} ({err}); start it with `.ci/services` \
                 (or `redis-server --daemonize yes`), or point REDIS_URL at one"
            ),
        },
        Err(err) => panic!("REDIS_URL {url:?} is not a Redis URL: {err}"),
    };
    // Unique per run, so reruns and parallel runs never share a bucket.
    let prefix = format!(
        "switchboard-test:{}:{}:",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = format!(
        r#"
[[upstream]]
name = "a"
builtin = {{ server = "echo" }}

[[security.rate_limit]]
name = "shared"
per = "global"
limit = {LIMIT}
window_secs = 3600
backend = "redis"
redis_url = "{url}"
key_prefix = "{prefix}"
on_redis_error = "closed"
redis_timeout_ms = 5000
"#
    );
    std::fs::write(tmp.path().join("gateway.toml"), config).expect("config");
    let argv = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--config",
        "gateway.toml",
    ];
    let first = spawn_listening(&argv, tmp.path()).await;
    let second = spawn_listening(&argv, tmp.path()).await;
    let clients = [
        Arc::new(client(&first.mcp).await),
        Arc::new(client(&second.mcp).await),
    ];

    let barrier = Arc::new(tokio::sync::Barrier::new(CALLS));
    let tasks: Vec<_> = (0..CALLS)
        .map(|i| {
            let client = clients[i % 2].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                client
                    .call_tool(
                        CallToolRequestParams::new("a__echo")
                            .with_arguments(args(json!({"message": "hi"}))),
                    )
                    .await
            })
        })
        .collect();
    let mut passed = 0;
    for task in tasks {
        match task.await.expect("the task ran") {
            Ok(result) => {
                assert_ne!(result.is_error, Some(true), "{result:?}");
                passed += 1;
            }
            Err(ServiceError::McpError(error)) => {
                assert_eq!(error.code.0, -32000, "{error:?}");
                let data = error.data.unwrap_or_default();
                assert_eq!(data["kind"], "rate_limited", "{data}");
                assert!(
                    data["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0),
                    "{data}"
                );
            }
            Err(other) => panic!("unexpected failure: {other}"),
        }
    }
    assert_eq!(passed, LIMIT);

    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}shared:global"))
        .query_async(&mut redis)
        .await
        .expect("clean up");
    for client in clients {
        if let Ok(client) = Arc::try_unwrap(client) {
            let _ = client.cancel().await;
        }
    }
    drop((first, second));
}
