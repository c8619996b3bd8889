//! Rate limits (`[[security.rate_limit]]`) end to end, against the in-process echo upstream:
//! exactness under concurrency (200 simultaneous calls, limit 50, exactly 50 pass) locally and
//! across two gateways sharing Redis, per-identity budgets, the JSON-RPC error a client sees,
//! and Redis failing open and closed.
//!
//! The Redis tests need a Redis server: `REDIS_URL` (default `redis://127.0.0.1:6379`); start
//! one with `.ci/services` (or `redis-server --daemonize yes`). Each run uses its own key
//! prefix and deletes its keys, so reruns and parallel runs do not interfere.

use std::sync::Arc;

use rmcp::{
    ServiceError, ServiceExt,
    model::{CallToolRequestParams, CallToolResponse, ClientConfig},
    transport::StreamableHttpClientTransport,
};
use serde_json::json;
use switchboard_gateway::{
    Gateway, GatewayConfig, GatewayError, GatewayServer, auth::Identity, server::RATE_LIMITED,
};
use switchboard_transport::{HttpLimits, HttpRoutes};

const CALLS: usize = 200;
const LIMIT: usize = 50;

async fn gateway(rules: &str) -> Arc<Gateway> {
    let text = format!(
        "[[upstream]]\nname = \"a\"\nbuiltin = {{ server = \"echo\" }}\n\
         [[upstream]]\nname = \"b\"\nbuiltin = {{ server = \"echo\" }}\n{rules}"
    );
    let gateway =
        Arc::new(Gateway::new(GatewayConfig::parse(&text).expect("config")).expect("gateway"));
    gateway.start().await.expect("start");
    gateway
}

fn who(subject: &str) -> Arc<Identity> {
    Arc::new(Identity {
        subject: subject.to_string(),
        ..Identity::anonymous()
    })
}

async fn echo(
    gateway: &Gateway,
    tool: &str,
    principal: &Arc<Identity>,
) -> Result<(), GatewayError> {
    let request = CallToolRequestParams::new(tool.to_string()).with_arguments(
        json!({"message": "hi"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    match gateway
        .call_as(request, None, Some(principal.clone()))
        .await?
    {
        CallToolResponse::Complete(result) if result.is_error != Some(true) => Ok(()),
        other => panic!("the echo call failed: {other:?}"),
    }
}

/// `CALLS` calls released together by a barrier, spread over `gateways` in turn; returns how
/// many passed, after checking every refusal is a rate limit with a retry hint.
async fn burst(gateways: &[Arc<Gateway>], principal: &Arc<Identity>) -> usize {
    let barrier = Arc::new(tokio::sync::Barrier::new(CALLS));
    let tasks: Vec<_> = (0..CALLS)
        .map(|i| {
            let gateway = gateways[i % gateways.len()].clone();
            let principal = principal.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                echo(&gateway, "a__echo", &principal).await
            })
        })
        .collect();
    let mut passed = 0;
    for task in tasks {
        match task.await.expect("the task ran") {
            Ok(()) => passed += 1,
            Err(GatewayError::RateLimited { retry_after, .. }) => {
                assert!(!retry_after.is_zero(), "a refusal says when to retry")
            }
            Err(other) => panic!("expected only rate limits, got {other}"),
        }
    }
    passed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_limit_lets_exactly_the_limit_through_of_simultaneous_calls() {
    let gateway = gateway(&format!(
        "[[security.rate_limit]]\nname = \"per-user\"\ntools = [\"a__*\"]\nlimit = {LIMIT}\nwindow_secs = 3600\n"
    ))
    .await;
    let alice = who("alice");
    assert_eq!(burst(std::slice::from_ref(&gateway), &alice).await, LIMIT);
    // Another identity has its own budget; another upstream's tools match no rule.
    echo(&gateway, "a__echo", &who("bob"))
        .await
        .expect("bob's first call");
    echo(&gateway, "b__echo", &alice)
        .await
        .expect("b__* is not limited");
    // The gateway's own calls are not limited.
    gateway
        .call("a__echo", json!({"message": "own"}).as_object().cloned())
        .await
        .expect("the gateway's own call");
    let stats = &gateway.rate_limit_stats()[0];
    assert_eq!(
        (stats.allowed, stats.limited),
        (LIMIT as u64 + 1, (CALLS - LIMIT) as u64)
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn per_upstream_and_global_scopes_share_budgets() {
    let gateway = gateway(
        "[[security.rate_limit]]\nname = \"per-upstream\"\nper = \"upstream\"\nlimit = 2\nwindow_secs = 3600\n\
         [[security.rate_limit]]\nname = \"everything\"\nper = \"global\"\nlimit = 3\nwindow_secs = 3600\n",
    )
    .await;
    echo(&gateway, "a__echo", &who("alice")).await.expect("1st");
    echo(&gateway, "a__echo", &who("bob"))
        .await
        .expect("2nd: same upstream, other user");
    match echo(&gateway, "a__echo", &who("carol")).await {
        Err(GatewayError::RateLimited { rule, .. }) => assert_eq!(rule, "per-upstream"),
        other => panic!("expected upstream a's budget to be spent: {other:?}"),
    }
    echo(&gateway, "b__echo", &who("carol"))
        .await
        .expect("upstream b has its own budget");
    match echo(&gateway, "b__echo", &who("dave")).await {
        Err(GatewayError::RateLimited { rule, .. }) => assert_eq!(rule, "everything"),
        other => panic!("expected the global budget to be spent: {other:?}"),
    }
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_client_gets_a_json_rpc_error_with_retry_after() {
    let gateway = gateway(
        "[[security.rate_limit]]\nname = \"one\"\nper = \"global\"\nlimit = 1\nwindow_secs = 60\n",
    )
    .await;
    let server = GatewayServer::new(gateway.clone());
    let http = switchboard_transport::serve_http(
        move || Ok(server.clone()),
        "127.0.0.1:0".parse().expect("addr"),
        HttpRoutes::Streamable,
        &HttpLimits::default(),
    )
    .await
    .expect("serve");
    let client = ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_uri(format!(
            "http://{}/mcp",
            http.local_addr
        )))
        .await
        .expect("connect");
    let request = || {
        CallToolRequestParams::new("a__echo").with_arguments(
            json!({"message": "hi"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        )
    };
    client
        .call_tool(request())
        .await
        .expect("the first call passes");
    let error = match client.call_tool(request()).await {
        Err(ServiceError::McpError(error)) => error,
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    };
    assert_eq!(error.code, RATE_LIMITED);
    let data = error.data.expect("data");
    assert_eq!(data["kind"], "rate_limited");
    assert_eq!(data["rule"], "one");
    let retry_after_ms = data["retry_after_ms"].as_u64().expect("retry_after_ms");
    // One call per 60 s: the next is allowed within the minute, and not immediately.
    assert!(
        retry_after_ms > 0 && retry_after_ms <= 60_000,
        "{retry_after_ms}"
    );
    let _ = client.cancel().await;
    let _ = http.shutdown().await;
    gateway.shutdown().await;
}

// --- Redis -------------------------------------------------------------------------------

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// A connection to the test Redis, or a failure that says how to start one.
async fn redis() -> redis::aio::MultiplexedConnection {
    let url = redis_url();
    let connect = async {
        redis::Client::open(url.as_str())?
            .get_multiplexed_async_connection()
            .await
    };
    match connect.await {
        Ok(connection) => connection,
        Err(err) => panic!(
            "Redis is not reachable at {url} ({err}); start it with `.ci/services` \
             (or `redis-server --daemonize yes`), or point REDIS_URL at one"
        ),
    }
}

/// A key prefix no other run shares.
fn unique_prefix() -> String {
    format!(
        "switchboard-test:{}:{}:",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_sharing_redis_let_exactly_the_limit_through() {
    let mut connection = redis().await;
    let prefix = unique_prefix();
    let rules = format!(
        "[[security.rate_limit]]\nname = \"shared\"\nlimit = {LIMIT}\nwindow_secs = 3600\n\
         backend = \"redis\"\nredis_url = \"{url}\"\nkey_prefix = \"{prefix}\"\n\
         on_redis_error = \"closed\"\nredis_timeout_ms = 5000\n",
        url = redis_url(),
    );
    let first = gateway(&rules).await;
    let second = gateway(&rules).await;
    let alice = who("alice");
    assert_eq!(burst(&[first.clone(), second.clone()], &alice).await, LIMIT);
    let allowed: u64 = [&first, &second]
        .iter()
        .map(|g| g.rate_limit_stats()[0].allowed)
        .sum();
    assert_eq!(allowed, LIMIT as u64);
    // Another identity, through either gateway, has its own budget.
    echo(&second, "a__echo", &who("bob"))
        .await
        .expect("bob's budget");
    let key = format!("{prefix}shared:identity:alice");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .expect("PTTL");
    assert!(ttl > 0, "the bucket expires by itself (PTTL {ttl})");
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .arg(format!("{prefix}shared:identity:bob"))
        .query_async(&mut connection)
        .await
        .expect("clean up");
    first.shutdown().await;
    second.shutdown().await;
}

/// A loopback port nothing listens on: bound, then released.
fn dead_redis_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("redis://127.0.0.1:{port}")
}

#[tokio::test]
async fn unreachable_redis_fails_open_with_a_counter() {
    let gateway = gateway(&format!(
        "[[security.rate_limit]]\nname = \"open\"\nlimit = 1\nwindow_secs = 60\n\
         backend = \"redis\"\nredis_url = \"{}\"\non_redis_error = \"open\"\n",
        dead_redis_url()
    ))
    .await;
    for _ in 0..3 {
        echo(&gateway, "a__echo", &who("alice"))
            .await
            .expect("let through");
    }
    let stats = &gateway.rate_limit_stats()[0];
    assert_eq!(
        (stats.backend_errors, stats.failed_open, stats.failed_closed),
        (3, 3, 0)
    );
    assert_eq!((stats.allowed, stats.limited), (0, 0));
    gateway.shutdown().await;
}

#[tokio::test]
async fn unreachable_redis_fails_closed_when_configured() {
    let gateway = gateway(&format!(
        "[[security.rate_limit]]\nname = \"closed\"\nlimit = 100\nwindow_secs = 60\n\
         backend = \"redis\"\nredis_url = \"{}\"\non_redis_error = \"closed\"\n",
        dead_redis_url()
    ))
    .await;
    match echo(&gateway, "a__echo", &who("alice")).await {
        Err(err @ GatewayError::RateLimitUnavailable { .. }) => {
            assert_eq!(err.kind(), "rate_limit_unavailable");
            assert!(err.to_string().contains("\"closed\""), "{err}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let stats = &gateway.rate_limit_stats()[0];
    assert_eq!(
        (stats.backend_errors, stats.failed_open, stats.failed_closed),
        (1, 0, 1)
    );
    gateway.shutdown().await;
}
