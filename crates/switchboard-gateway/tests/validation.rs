//! Input validation (`[security.validation]`) end to end: a real upstream on 127.0.0.1 with a
//! nested `inputSchema`, the gateway in front of it, and a real rmcp client over Streamable
//! HTTP for the JSON-RPC error a client sees. Refused calls must never reach the upstream.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use rmcp::{
    ErrorData, RoleServer, ServerHandler, ServiceError, ServiceExt,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ClientConfig, ContentBlock,
        ErrorCode, JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
        ServerConfig, Tool,
    },
    service::RequestContext,
    transport::StreamableHttpClientTransport,
};
use serde_json::{Value, json};
use switchboard_gateway::{
    Gateway, GatewayConfig, GatewayError, GatewayServer, UpstreamConfig, auth::Identity,
    stack::validate::ValidationConfig,
};
use switchboard_transport::{HttpLimits, HttpRoutes, Upstream};

/// Counts the calls that reach it and answers with the arguments it got. Its schema's `note`
/// takes anything, or only strings once `strict` is set.
#[derive(Clone, Default)]
struct OrderUpstream {
    calls: Arc<AtomicUsize>,
    strict: Arc<AtomicBool>,
}

fn order_schema(strict: bool) -> JsonObject {
    let note = if strict {
        json!({"type": "string"})
    } else {
        json!({})
    };
    json!({
        "type": "object",
        "properties": {
            "customer": {"type": "string", "minLength": 1},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "sku": {"type": "string"},
                        "qty": {"type": "integer", "minimum": 1}
                    },
                    "required": ["sku", "qty"]
                }
            },
            "note": note
        },
        "required": ["customer", "items"],
        "additionalProperties": false
    })
    .as_object()
    .cloned()
    .unwrap_or_default()
}

impl ServerHandler for OrderUpstream {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(vec![Tool::new(
            "order",
            "place an order",
            Arc::new(order_schema(self.strict.load(Ordering::SeqCst))),
        )]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        Ok(CallToolResult::success(vec![ContentBlock::text(arguments.to_string())]).into())
    }
}

struct Running {
    calls: Arc<AtomicUsize>,
    strict: Arc<AtomicBool>,
    gateway: Arc<Gateway>,
    upstream: switchboard_transport::HttpServer,
}

impl Running {
    async fn stop(self) {
        self.gateway.shutdown().await;
        let _ = self.upstream.shutdown().await;
    }

    fn upstream_calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn call(&self, arguments: Value) -> Result<CallToolResult, GatewayError> {
        let request = CallToolRequestParams::new("shop__order")
            .with_arguments(arguments.as_object().cloned().unwrap_or_default());
        let principal = Some(Arc::new(Identity::anonymous()));
        match self.gateway.call_as(request, None, principal).await? {
            CallToolResponse::Complete(result) => Ok(result),
            _ => panic!("the test upstream only completes"),
        }
    }
}

async fn start(validation: Option<ValidationConfig>) -> Running {
    start_with(validation, |_| {}).await
}

async fn start_with(
    validation: Option<ValidationConfig>,
    adjust: impl FnOnce(&mut UpstreamConfig),
) -> Running {
    let server = OrderUpstream::default();
    let (calls, strict) = (server.calls.clone(), server.strict.clone());
    let upstream = switchboard_transport::serve_http(
        move || Ok(server.clone()),
        "127.0.0.1:0".parse().expect("addr"),
        HttpRoutes::Streamable,
        &HttpLimits::default(),
    )
    .await
    .expect("serve the test upstream");
    let mut config = GatewayConfig::default();
    let mut shop = UpstreamConfig::remote(
        "shop",
        Some(Upstream::Http {
            url: format!("http://{}/mcp", upstream.local_addr),
            headers: BTreeMap::new(),
        }),
    );
    adjust(&mut shop);
    config.upstreams.push(shop);
    config.security.validation = validation;
    let gateway = Arc::new(Gateway::new(config).expect("gateway"));
    gateway.start().await.expect("start");
    Running {
        calls,
        strict,
        gateway,
        upstream,
    }
}

fn limits() -> ValidationConfig {
    ValidationConfig {
        max_depth: 4,
        max_string_bytes: 64,
        max_argument_bytes: 2048,
        ..ValidationConfig::default()
    }
}

fn violations(err: GatewayError) -> Vec<(String, String)> {
    match err {
        GatewayError::InvalidArguments { violations, .. } => violations
            .into_iter()
            .map(|v| (v.pointer, v.message))
            .collect(),
        other => panic!("expected invalid arguments, got {other:?}"),
    }
}

fn valid_order() -> Value {
    json!({"customer": "ada", "items": [{"sku": "a-1", "qty": 2}]})
}

#[tokio::test]
async fn a_client_gets_invalid_params_naming_the_field_and_the_upstream_is_not_called() {
    let running = start(Some(limits())).await;
    let http = switchboard_transport::serve_http(
        {
            let server = GatewayServer::new(running.gateway.clone());
            move || Ok(server.clone())
        },
        "127.0.0.1:0".parse().expect("addr"),
        HttpRoutes::Streamable,
        &HttpLimits::default(),
    )
    .await
    .expect("serve the gateway");
    let client = ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_uri(format!(
            "http://{}/mcp",
            http.local_addr
        )))
        .await
        .expect("connect");

    let bad =
        json!({"customer": "ada", "items": [{"sku": "a-1", "qty": 2}, {"sku": "b-2", "qty": 0}]});
    let request = CallToolRequestParams::new("shop__order")
        .with_arguments(bad.as_object().cloned().unwrap_or_default());
    let error = match client.call_tool(request).await {
        Err(ServiceError::McpError(error)) => error,
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    };
    assert_eq!(error.code, ErrorCode::INVALID_PARAMS);
    assert!(error.message.contains("/items/1/qty"), "{}", error.message);
    let data = error.data.expect("error data");
    assert_eq!(data["kind"], "invalid_arguments");
    assert_eq!(data["tool"], "shop__order");
    assert_eq!(data["errors"][0]["pointer"], "/items/1/qty");
    let message = data["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("minimum"), "{message}");
    assert_eq!(running.upstream_calls(), 0);

    // A valid call reaches the upstream with its arguments unchanged.
    let request = CallToolRequestParams::new("shop__order")
        .with_arguments(valid_order().as_object().cloned().unwrap_or_default());
    let result = client.call_tool(request).await.expect("a valid call");
    let echoed: Value = serde_json::from_str(
        &result.content[0]
            .as_text()
            .map(|t| t.text.clone())
            .unwrap_or_default(),
    )
    .expect("the upstream echoes JSON");
    assert_eq!(echoed, valid_order());
    assert_eq!(running.upstream_calls(), 1);

    let _ = client.cancel().await;
    let _ = http.shutdown().await;
    running.stop().await;
}

#[tokio::test]
async fn every_schema_violation_is_reported_with_its_pointer() {
    let running = start(Some(limits())).await;
    let found = violations(
        running
            .call(json!({"items": [{"qty": "two"}], "coupon": "x"}))
            .await
            .expect_err("refused"),
    );
    let at = |pointer: &str, needle: &str| {
        found
            .iter()
            .any(|(p, m)| p == pointer && m.contains(needle))
    };
    assert!(at("", "customer"), "missing required field: {found:?}");
    assert!(at("", "coupon"), "unexpected property: {found:?}");
    assert!(at("/items/0", "sku"), "missing nested field: {found:?}");
    assert!(at("/items/0/qty", "integer"), "wrong type: {found:?}");
    // No arguments at all: the required fields are still missing.
    let request = CallToolRequestParams::new("shop__order");
    let err = running
        .gateway
        .call_as(request, None, Some(Arc::new(Identity::anonymous())))
        .await
        .expect_err("refused");
    assert!(violations(err).iter().any(|(_, m)| m.contains("customer")));
    assert_eq!(running.upstream_calls(), 0);
    running.stop().await;
}

#[tokio::test]
async fn depth_string_and_size_limits_come_before_the_schema() {
    let running = start(Some(limits())).await;
    // arguments (1) > items (2) > item (3) > sku (4) > a (5): one level too deep.
    let deep = json!({"customer": "ada", "items": [{"sku": {"a": {"b": 1}}, "qty": 1}]});
    let found = violations(running.call(deep).await.expect_err("too deep"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "/items/0/sku/a");
    assert!(found[0].1.contains("max_depth"), "{}", found[0].1);

    let long = json!({"customer": "ada", "items": [], "note": "x".repeat(65)});
    let found = violations(running.call(long).await.expect_err("too long"));
    assert_eq!(found[0].0, "/note");
    assert!(found[0].1.contains("65 bytes"), "{}", found[0].1);

    let items: Vec<Value> = (0..100)
        .map(|i| json!({"sku": format!("s{i}"), "qty": 1}))
        .collect();
    let big = json!({"customer": "ada", "items": items});
    let found = violations(running.call(big).await.expect_err("too big"));
    assert_eq!(found[0].0, "");
    assert!(found[0].1.contains("max_argument_bytes"), "{}", found[0].1);

    // Exactly at the limits passes.
    let at_limits =
        json!({"customer": "ada", "items": [{"sku": "x".repeat(64), "qty": 1}], "note": [[]]});
    running.call(at_limits).await.expect("within every limit");
    assert_eq!(running.upstream_calls(), 1);
    running.stop().await;
}

#[tokio::test]
async fn without_the_section_or_when_disabled_arguments_pass_through() {
    for validation in [
        None,
        Some(ValidationConfig {
            enabled: false,
            ..limits()
        }),
    ] {
        let running = start(validation).await;
        running
            .call(json!({"items": "not an array", "note": "x".repeat(100)}))
            .await
            .expect("not validated");
        assert_eq!(running.upstream_calls(), 1);
        running.stop().await;
    }
}

#[tokio::test]
async fn the_section_parses_with_documented_defaults() {
    let config = GatewayConfig::parse("[security.validation]\n").expect("parses");
    let validation = config.security.validation.expect("present");
    assert!(validation.enabled && validation.schema);
    assert_eq!(validation.max_depth, 32);
    assert_eq!(validation.max_string_bytes, 1024 * 1024);
    assert_eq!(validation.max_argument_bytes, 4 * 1024 * 1024);
    let refused = GatewayConfig::parse("[security.validation]\nmax_depth = 0\n")
        .expect_err("refused")
        .to_string();
    assert!(refused.contains("max_depth"), "{refused}");
    assert!(GatewayConfig::parse("[security.validation]\nmax_deep = 3\n").is_err());
}

#[tokio::test]
async fn a_changed_schema_is_enforced_once_the_catalog_is_rebuilt() {
    // A zero TTL: every catalog build lists the upstream again (as `list_changed` would).
    let running = start_with(Some(limits()), |shop| shop.tools_ttl_secs = 0).await;
    let with_numeric_note = json!({"customer": "ada", "items": [], "note": 5});
    running
        .call(with_numeric_note.clone())
        .await
        .expect("any note is valid");
    running.strict.store(true, Ordering::SeqCst);
    // What a client's `tools/list` does; the new schema comes with fresh, uncompiled hints.
    running.gateway.catalog().await.expect("rebuild");
    let found = violations(
        running
            .call(with_numeric_note)
            .await
            .expect_err("the note must now be a string"),
    );
    assert_eq!(found[0].0, "/note", "{found:?}");
    assert_eq!(running.upstream_calls(), 1);
    running.stop().await;
}
