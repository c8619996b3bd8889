//! OpenTelemetry traces from the real gateway: `switchboard serve` with `[observability.otlp]`
//! pointed at a loopback OTLP/HTTP collector (axum, protobuf decoded with
//! `opentelemetry-proto`), and a loopback Streamable HTTP upstream that reports the
//! `_meta.traceparent` it received.
//!
//! A client's `tools/call` carries a `traceparent` HTTP header of a known trace id; the
//! collector must receive a `tools/call` span in that trace, with the stack's layer spans as
//! its descendants, and the upstream must receive a `traceparent` in the same trace whose
//! parent is the gateway's `forward` span. A second call carries the context in `_meta`.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use common::spawn_listening;
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, trace::v1::Span,
};
use prost::Message;
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::{
    RoleServer, ServerHandler, ServiceExt,
    handler::server::router::tool::ToolRouter,
    model::{CallToolRequestParams, ClientConfig, ServerCapabilities, ServerConfig},
    service::RequestContext,
    tool, tool_handler, tool_router,
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const META_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

/// The upstream: one tool answering with the `_meta.traceparent` of its request.
#[derive(Clone)]
struct Witness {
    router: Arc<ToolRouter<Witness>>,
}

#[tool_router]
impl Witness {
    #[tool(description = "The traceparent this request carried in _meta, or `none`.")]
    async fn traceparent(&self, context: RequestContext<RoleServer>) -> String {
        context.meta.get_traceparent().unwrap_or("none").to_string()
    }
}

#[tool_handler(router = self.router)]
impl ServerHandler for Witness {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// Every span the collector received.
type Received = Arc<Mutex<Vec<Span>>>;

async fn collect(State(received): State<Received>, body: Bytes) -> &'static str {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
    let spans = request
        .resource_spans
        .into_iter()
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans);
    received.lock().expect("lock").extend(spans);
    ""
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Polls until `done` holds for the received spans (a wait for a condition, with a generous
/// overall deadline; the exporter sends every `batch_delay_ms`).
async fn wait_for(received: &Received, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let spans = received.lock().expect("lock").clone();
        if done(&spans) {
            return spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "spans never arrived; got {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn text(result: &rmcp::model::CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect()
}

#[tokio::test]
async fn tools_call_spans_reach_the_collector_and_the_trace_reaches_the_upstream() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let received = Received::default();
    let collector = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let collector_addr = collector.local_addr().expect("addr");
    let app = Router::new()
        .route("/v1/traces", post(collect))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(collector, app).await });

    let witness = Witness {
        router: Arc::new(Witness::tool_router()),
    };
    let upstream = switchboard_transport::serve_http(
        move || Ok(witness.clone()),
        "127.0.0.1:0".parse().expect("addr"),
        switchboard_transport::HttpRoutes::Streamable,
        &Default::default(),
    )
    .await
    .expect("upstream");

    let config = format!(
        r#"
        [[upstream]]
        name = "w"
        connect = {{ transport = "http", url = "http://{}/mcp" }}

        [audit]
        enabled = false

        [observability.otlp]
        endpoint = "http://{collector_addr}/v1/traces"
        service_name = "switchboard-test"
        batch_delay_ms = 100
        "#,
        upstream.local_addr
    );
    std::fs::write(tmp.path().join("gateway.toml"), config).expect("config");
    let gateway = spawn_listening(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "gateway.toml",
        ],
        tmp.path(),
    )
    .await;

    // A client whose HTTP requests carry a traceparent header.
    let client_span = "00f067aa0ba902b7";
    let mut headers = HashMap::new();
    headers.insert(
        HeaderName::from_static("traceparent"),
        HeaderValue::from_str(&format!("00-{TRACE_ID}-{client_span}-01")).expect("header"),
    );
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(gateway.mcp.clone()).custom_headers(headers),
    );
    let client = ClientConfig::default()
        .serve(transport)
        .await
        .expect("connect");
    let result = client
        .call_tool(CallToolRequestParams::new("w__traceparent"))
        .await
        .expect("tools/call");
    let seen = text(&result);

    // The upstream got the trace, with a parent span that is the gateway's, not the client's.
    let parts: Vec<&str> = seen.split('-').collect();
    assert_eq!(parts.len(), 4, "upstream saw {seen:?}");
    assert_eq!(parts[1], TRACE_ID, "upstream saw {seen:?}");
    assert_ne!(parts[2], client_span);

    let spans = wait_for(&received, |spans| {
        spans
            .iter()
            .any(|s| s.name == "forward" && hex(&s.span_id) == parts[2])
            && spans.iter().any(|s| s.name == "tools/call")
    })
    .await;
    let in_trace: Vec<&Span> = spans
        .iter()
        .filter(|s| hex(&s.trace_id) == TRACE_ID)
        .collect();
    let root = in_trace
        .iter()
        .find(|s| s.name == "tools/call")
        .expect("a tools/call span in the client's trace");
    assert_eq!(hex(&root.parent_span_id), client_span);
    let attribute = |span: &Span, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
            .map(|v| format!("{v:?}"))
    };
    for (key, value) in [
        ("tool", "w__traceparent"),
        ("upstream", "w"),
        ("mcp.method", "tools/call"),
        ("outcome", "ok"),
    ] {
        let found = attribute(root, key).unwrap_or_default();
        assert!(found.contains(value), "{key}: {found:?}");
    }
    // The stack's layers, each a descendant of the tools/call span, in this trace.
    let parent_of: HashMap<String, String> = in_trace
        .iter()
        .map(|s| (hex(&s.span_id), hex(&s.parent_span_id)))
        .collect();
    let root_id = hex(&root.span_id);
    let descends = |span: &Span| {
        let mut id = hex(&span.span_id);
        for _ in 0..32 {
            match parent_of.get(&id) {
                Some(parent) if *parent == root_id => return true,
                Some(parent) => id = parent.clone(),
                None => return false,
            }
        }
        false
    };
    for layer in [
        "authorize",
        "validate",
        "rate_limit",
        "cache",
        "retry",
        "circuit",
        "timeout",
        "forward",
    ] {
        let span = in_trace
            .iter()
            .find(|s| s.name == layer)
            .unwrap_or_else(|| panic!("no {layer} span"));
        assert!(descends(span), "{layer} is not under tools/call");
    }

    // The MCP convention: trace context in `_meta` (what a stdio client would send).
    let mut params = CallToolRequestParams::new("w__traceparent");
    let mut meta = rmcp::model::RequestMetaObject::default();
    meta.set_traceparent(format!("00-{META_TRACE_ID}-b7ad6b7169203331-01"));
    params.meta = Some(meta);
    let result = client.call_tool(params).await.expect("tools/call");
    let seen = text(&result);
    assert_eq!(seen.split('-').nth(1), Some(META_TRACE_ID), "{seen:?}");
    wait_for(&received, |spans| {
        spans
            .iter()
            .any(|s| s.name == "tools/call" && hex(&s.trace_id) == META_TRACE_ID)
    })
    .await;

    client.cancel().await.expect("close");
    upstream.shutdown().await.expect("upstream shutdown");
}
