//! The gateway's retry, cache, health and enable switch against a real upstream: a small
//! rmcp server in this file, served over Streamable HTTP on 127.0.0.1, that counts its calls,
//! records their arguments and can be made to hold a call until the test releases it (or
//! forever, to force a timeout).

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, JsonObject,
        ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
        ToolAnnotations,
    },
    service::RequestContext,
};
use serde_json::{Value, json};
use switchboard_gateway::{
    Gateway, GatewayConfig, GatewayError, UpstreamConfig,
    health::{self, HealthState},
    stack::cache::CacheConfig,
};
use switchboard_transport::{HttpLimits, HttpRoutes, Upstream};

#[derive(Default)]
struct Recorder {
    lookups: AtomicUsize,
    writes: AtomicUsize,
    creates: Mutex<Vec<JsonObject>>,
    /// Notified when a `lookup` call arrives.
    entered: tokio::sync::Notify,
    /// `lookup` answers once this is true.
    gate: Mutex<Option<tokio::sync::watch::Receiver<bool>>>,
}

#[derive(Clone)]
struct TestUpstream(Arc<Recorder>);

fn tool(name: &str, properties: Value, annotations: Option<ToolAnnotations>) -> Tool {
    let schema = json!({"type": "object", "properties": properties});
    let mut tool = Tool::new(
        name.to_string(),
        format!("test tool {name}"),
        Arc::new(schema.as_object().cloned().unwrap_or_default()),
    );
    if let Some(annotations) = annotations {
        tool = tool.with_annotations(annotations);
    }
    tool
}

impl ServerHandler for TestUpstream {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(vec![
            tool(
                "lookup",
                json!({"q": {"type": "string"}}),
                Some(ToolAnnotations::new().read_only(true)),
            ),
            tool(
                "create",
                json!({"name": {"type": "string"}, "idempotency_key": {"type": "string"}}),
                None,
            ),
            tool("write", json!({}), None),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let recorder = &self.0;
        let text = match request.name.as_ref() {
            "lookup" => {
                let n = recorder.lookups.fetch_add(1, Ordering::SeqCst) + 1;
                recorder.entered.notify_one();
                let gate = recorder.gate.lock().ok().and_then(|g| g.clone());
                if let Some(mut gate) = gate {
                    let _ = gate.wait_for(|open| *open).await;
                }
                format!("lookup #{n}")
            }
            "create" => {
                let n = {
                    let mut creates = recorder
                        .creates
                        .lock()
                        .map_err(|_| ErrorData::internal_error("poisoned", None))?;
                    creates.push(request.arguments.clone().unwrap_or_default());
                    creates.len()
                };
                if n == 1 {
                    // The first attempt never answers: the gateway's deadline ends it.
                    std::future::pending::<()>().await;
                }
                format!("created on attempt {n}")
            }
            "write" => {
                recorder.writes.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
                "unreachable".to_string()
            }
            other => return Err(ErrorData::invalid_params(format!("no tool {other}"), None)),
        };
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }
}

async fn serve(recorder: Arc<Recorder>) -> (switchboard_transport::HttpServer, String) {
    let server = TestUpstream(recorder);
    let running = switchboard_transport::serve_http(
        move || Ok(server.clone()),
        "127.0.0.1:0".parse().expect("addr"),
        HttpRoutes::Streamable,
        &HttpLimits::default(),
    )
    .await
    .expect("serve the test upstream");
    let url = format!("http://{}/mcp", running.local_addr);
    (running, url)
}

fn upstream(name: &str, url: &str) -> UpstreamConfig {
    let mut config = UpstreamConfig::remote(
        name,
        Some(Upstream::Http {
            url: url.to_string(),
            headers: BTreeMap::new(),
        }),
    );
    config.timeout_secs = 1;
    config.cache = Some(CacheConfig {
        tools: vec!["lookup".into()],
        ttl_secs: 600,
        max_entries: 100,
        shared: false,
    });
    config
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

fn args(value: Value) -> Option<JsonObject> {
    value.as_object().cloned()
}

#[tokio::test]
async fn sixteen_identical_concurrent_calls_reach_the_upstream_once() {
    let recorder = Arc::new(Recorder::default());
    let (open, gate) = tokio::sync::watch::channel(false);
    *recorder.gate.lock().expect("gate") = Some(gate);
    let (server, url) = serve(recorder.clone()).await;
    let gateway = Arc::new(
        Gateway::new(GatewayConfig {
            upstreams: vec![upstream("up", &url)],
            ..GatewayConfig::default()
        })
        .expect("gateway"),
    );
    gateway.start().await.expect("start");

    let entered = recorder.entered.notified();
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let gateway = gateway.clone();
            tokio::spawn(async move {
                gateway
                    .call("up__lookup", args(json!({"q": "x", "page": 1})))
                    .await
            })
        })
        .collect();
    // The first call is held in the upstream; wait until all 16 are inside the cache layer
    // (one calling the upstream, fifteen waiting on it), then let the upstream answer.
    entered.await;
    let cache_stats = || {
        gateway.status()[0]
            .cache
            .expect("the upstream caches lookups")
    };
    while cache_stats().in_flight < 16 {
        tokio::task::yield_now().await;
    }
    open.send(true).expect("open the gate");
    for call in calls {
        let result = call.await.expect("join").expect("lookup");
        assert_eq!(text(&result), "lookup #1");
    }
    assert_eq!(recorder.lookups.load(Ordering::SeqCst), 1);
    let stats = cache_stats();
    assert_eq!((stats.misses, stats.hits, stats.in_flight), (1, 15, 0));

    // Same arguments in another key order: the same entry.
    let again = gateway
        .call("up__lookup", args(json!({"page": 1, "q": "x"})))
        .await
        .expect("lookup");
    assert_eq!(text(&again), "lookup #1");
    // Other arguments: another entry.
    let other = gateway
        .call("up__lookup", args(json!({"q": "y"})))
        .await
        .expect("lookup");
    assert_eq!(text(&other), "lookup #2");
    // Invalidation: the next call asks the upstream again.
    assert_eq!(
        gateway.invalidate_cache("up", "look*").await.expect("glob"),
        2
    );
    let fresh = gateway
        .call("up__lookup", args(json!({"q": "x", "page": 1})))
        .await
        .expect("lookup");
    assert_eq!(text(&fresh), "lookup #3");
    assert!(gateway.invalidate_cache("up", "[").await.is_err());

    gateway.shutdown().await;
    server.shutdown().await.expect("stop the upstream");
}

#[tokio::test]
async fn a_timed_out_create_is_retried_with_the_same_idempotency_key() {
    let recorder = Arc::new(Recorder::default());
    let (server, url) = serve(recorder.clone()).await;
    let gateway = Gateway::new(GatewayConfig {
        upstreams: vec![upstream("up", &url)],
        ..GatewayConfig::default()
    })
    .expect("gateway");
    gateway.start().await.expect("start");

    // `create` takes an idempotency_key: the gateway adds one, and the retry after the
    // first attempt's timeout carries the same key.
    let created = gateway
        .call("up__create", args(json!({"name": "Ada"})))
        .await
        .expect("the retry succeeds");
    assert_eq!(text(&created), "created on attempt 2");
    let creates = recorder.creates.lock().expect("creates").clone();
    assert_eq!(creates.len(), 2);
    let key = creates[0]["idempotency_key"]
        .as_str()
        .expect("a key was added");
    assert_eq!(key.len(), 36, "a UUID: {key}");
    assert_eq!(creates[1]["idempotency_key"], creates[0]["idempotency_key"]);
    assert_eq!(creates[1]["name"], "Ada");

    // `write` has no hint and no key: its timeout is returned, never retried.
    let err = gateway
        .call("up__write", args(json!({})))
        .await
        .expect_err("times out");
    assert!(matches!(err, GatewayError::Timeout { .. }), "{err}");
    assert_eq!(recorder.writes.load(Ordering::SeqCst), 1);

    let status = &gateway.status()[0];
    assert_eq!(status.retry.expect("retry stats").retries, 1);
    gateway.shutdown().await;
    server.shutdown().await.expect("stop the upstream");
}

#[tokio::test]
async fn a_disabled_upstream_is_not_connected_listed_or_called() {
    let recorder = Arc::new(Recorder::default());
    let (server, url) = serve(recorder.clone()).await;
    let mut off = upstream("off", &url);
    off.enabled = false;
    let gateway = Gateway::new(GatewayConfig {
        upstreams: vec![upstream("up", &url), off],
        ..GatewayConfig::default()
    })
    .expect("gateway");
    let unreachable = gateway.start().await.expect("start");
    assert!(unreachable.is_empty(), "disabled is not unreachable");
    let catalog = gateway.catalog().await.expect("catalog");
    assert!(catalog.route("up__lookup").is_some());
    assert!(!catalog.tools.iter().any(|t| t.name.starts_with("off__")));
    let err = gateway
        .call("off__lookup", None)
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), "upstream_disabled", "{err}");
    let off = &gateway.upstreams()[1];
    assert!(matches!(
        off.peer().await,
        Err(GatewayError::Disabled { .. })
    ));
    let status = gateway.status();
    assert_eq!(
        status[0].health.state,
        HealthState::Healthy,
        "startup listing"
    );
    assert!(!status[1].enabled);
    assert_eq!(status[1].health.state, HealthState::Disabled);
    assert_eq!(status[1].tools, Some(0));
    gateway.shutdown().await;
    server.shutdown().await.expect("stop the upstream");
}

#[tokio::test]
async fn health_checks_see_a_dead_upstream_and_stop_on_shutdown() {
    let recorder = Arc::new(Recorder::default());
    let (server, url) = serve(recorder.clone()).await;
    let mut config = upstream("up", &url);
    config.health.unhealthy_after = 2;
    config.health.interval_secs = 3600;
    let gateway = Gateway::new(GatewayConfig {
        upstreams: vec![config],
        ..GatewayConfig::default()
    })
    .expect("gateway");
    gateway.start().await.expect("start");
    let up = gateway.upstreams()[0].clone();
    let health = health::Health::new(&up.config.health, true);
    health::check_and_record(&up, &health).await;
    assert_eq!(health.state(), HealthState::Healthy);

    server.shutdown().await.expect("stop the upstream");
    health::check_and_record(&up, &health).await;
    assert_eq!(health.state(), HealthState::Degraded, "one failure");
    health::check_and_record(&up, &health).await;
    let report = health.report();
    assert_eq!(report.state, HealthState::Unhealthy);
    assert!(report.last_error.is_some());

    // The background check task holds the upstream; shutdown ends it.
    let held = Arc::strong_count(&up);
    gateway.shutdown().await;
    assert_eq!(Arc::strong_count(&up), held - 1, "the check task is gone");
}
