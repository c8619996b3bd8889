//! The legacy HTTP+SSE transport in-process: the filesystem server behind `serve_http`,
//! reached through our SSE client and through raw HTTP. Every wait is on a signal (an SSE
//! event, the connection-count watch), never on a sleep.

use std::time::Duration;

use futures::StreamExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use serde_json::{Value, json};
use switchboard_fs::{FsConfig, FsServer, Limits};
use switchboard_transport::{
    ConnectOptions, HttpLimits, HttpRoutes, HttpServer, Upstream, serve_http,
    sse::{SseEvent, SseParser},
};

async fn start(root: &std::path::Path, limits: HttpLimits, routes: HttpRoutes) -> HttpServer {
    let server = FsServer::new(FsConfig {
        roots: vec![root.to_path_buf()],
        read_only: false,
        limits: Limits::default(),
    })
    .expect("fs server");
    serve_http(
        move || Ok(server.clone()),
        "127.0.0.1:0".parse().expect("addr"),
        routes,
        &limits,
    )
    .await
    .expect("serve")
}

/// Waits (without a deadline of its own; the test harness bounds it) for the legacy SSE
/// connection count to reach `n`.
async fn wait_connections(server: &HttpServer, n: usize) {
    let mut watch = server
        .stats
        .legacy_sse
        .as_ref()
        .expect("sse served")
        .watch_connections();
    tokio::time::timeout(Duration::from_secs(30), watch.wait_for(|c| *c == n))
        .await
        .expect("connection count never reached the expected value")
        .expect("server gone");
}

/// A raw SSE reader over a reqwest response.
struct RawSse {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    parser: SseParser,
    events: std::collections::VecDeque<SseEvent>,
}

impl RawSse {
    fn new(response: reqwest::Response) -> Self {
        Self {
            body: response.bytes_stream().boxed(),
            parser: SseParser::new(1 << 20),
            events: Default::default(),
        }
    }

    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(event) = self.events.pop_front() {
                return event;
            }
            let chunk = self.body.next().await.expect("stream open").expect("chunk");
            let mut out = Vec::new();
            self.parser.feed(&chunk, &mut out).expect("parse");
            self.events.extend(out);
        }
    }
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2024-11-05", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}})
}

#[tokio::test]
async fn fs_server_through_our_sse_client() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = start(tmp.path(), HttpLimits::default(), HttpRoutes::LegacySse).await;
    let upstream = Upstream::from_url(&format!("http://{}/sse", server.local_addr));
    assert!(matches!(upstream, Upstream::Sse { .. }));
    let client = switchboard_transport::connect(
        &upstream,
        ClientConfig::default(),
        &ConnectOptions::default(),
    )
    .await
    .expect("connect over legacy SSE");
    let tools = client.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|t| t.name == "read_text_file"));
    let args = |v: Value| v.as_object().cloned().unwrap_or_default();
    let written = client
        .call_tool(
            CallToolRequestParams::new("write_file")
                .with_arguments(args(json!({"path": "a.txt", "content": "over sse"}))),
        )
        .await
        .expect("write_file");
    assert_eq!(written.is_error, Some(false));
    let read = client
        .call_tool(
            CallToolRequestParams::new("read_text_file")
                .with_arguments(args(json!({"path": "a.txt"}))),
        )
        .await
        .expect("read_text_file");
    assert_eq!(
        read.structured_content,
        Some(json!({"content": "over sse"}))
    );
    wait_connections(&server, 1).await;
    switchboard_transport::shutdown(client)
        .await
        .expect("close");
    // Closing the client ends the stream; the server forgets the session.
    wait_connections(&server, 0).await;
    server.shutdown().await.expect("server stops");
}

#[tokio::test]
async fn raw_http_protocol_and_checks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let limits = HttpLimits {
        max_body_bytes: 1024,
        ..HttpLimits::default()
    };
    let server = start(tmp.path(), limits, HttpRoutes::LegacySse).await;
    let base = format!("http://{}", server.local_addr);
    let http = reqwest::Client::new();

    let response = http
        .get(format!("{base}/sse"))
        .send()
        .await
        .expect("GET /sse");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/event-stream"[..])
    );
    let mut sse = RawSse::new(response);
    let endpoint = sse.next().await;
    assert_eq!(endpoint.event_type(), "endpoint");
    let token = endpoint
        .data
        .strip_prefix("/messages?sessionId=")
        .expect("endpoint path")
        .to_owned();
    assert_eq!(token.len(), 32, "128-bit hex token");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));

    let post = |url: String, body: String| {
        http.post(url)
            .header("content-type", "application/json")
            .body(body)
    };
    let messages = format!("{base}{}", endpoint.data);
    let accepted = post(messages.clone(), initialize().to_string())
        .send()
        .await
        .expect("POST");
    assert_eq!(accepted.status(), 202);
    let reply = sse.next().await;
    assert_eq!(reply.event_type(), "message");
    let reply: Value = serde_json::from_str(&reply.data).expect("json");
    assert_eq!(reply["id"], 1);
    assert_eq!(reply["result"]["serverInfo"]["name"], "switchboard-fs");

    // Unknown session.
    let unknown = post(
        format!("{base}/messages?sessionId=00000000000000000000000000000000"),
        initialize().to_string(),
    )
    .send()
    .await
    .expect("POST");
    assert_eq!(unknown.status(), 404);
    // Missing session id.
    let missing = post(format!("{base}/messages"), "{}".into())
        .send()
        .await
        .expect("POST");
    assert_eq!(missing.status(), 400);
    // Not JSON-RPC.
    let garbage = post(messages.clone(), "not json".into())
        .send()
        .await
        .expect("POST");
    assert_eq!(garbage.status(), 400);
    // Body over the cap.
    let big = post(messages.clone(), format!("\"{}\"", "x".repeat(4096)))
        .send()
        .await
        .expect("POST");
    assert_eq!(big.status(), 413);
    // Bad Origin on both routes.
    let origin = post(messages.clone(), initialize().to_string())
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("POST");
    assert_eq!(origin.status(), 403);
    let origin = http
        .get(format!("{base}/sse"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("GET");
    assert_eq!(origin.status(), 403);
    // Bad Host (DNS rebinding).
    let host = http
        .get(format!("{base}/sse"))
        .header("host", "evil.example")
        .send()
        .await
        .expect("GET");
    assert_eq!(host.status(), 403);
    // /mcp is not served on an SSE-only listener.
    let mcp = http.get(format!("{base}/mcp")).send().await.expect("GET");
    assert_eq!(mcp.status(), 404);

    drop(sse);
    server.shutdown().await.expect("server stops");
}

#[tokio::test]
async fn disconnect_cleans_up_and_cap_is_enforced() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let limits = HttpLimits {
        sse_max_connections: 1,
        // Frequent keep-alives make the server notice the closed socket on its next write.
        sse_keep_alive: Duration::from_millis(20),
        ..HttpLimits::default()
    };
    let server = start(tmp.path(), limits, HttpRoutes::LegacySse).await;
    let base = format!("http://{}", server.local_addr);
    let http = reqwest::Client::new();

    let first = http.get(format!("{base}/sse")).send().await.expect("GET");
    assert_eq!(first.status(), 200);
    let mut sse = RawSse::new(first);
    let endpoint = sse.next().await;
    wait_connections(&server, 1).await;

    let second = http.get(format!("{base}/sse")).send().await.expect("GET");
    assert_eq!(second.status(), 503);

    // Keep-alive comments arrive on the interval (the parser skips them; the stream stays up).
    drop(sse);
    wait_connections(&server, 0).await;
    let gone = http
        .post(format!("{base}{}", endpoint.data))
        .header("content-type", "application/json")
        .body(initialize().to_string())
        .send()
        .await
        .expect("POST");
    assert_eq!(
        gone.status(),
        404,
        "the session is forgotten after disconnect"
    );

    let third = http.get(format!("{base}/sse")).send().await.expect("GET");
    assert_eq!(third.status(), 200, "the slot is free again");
    drop(third);
    server.shutdown().await.expect("server stops");
}

#[tokio::test]
async fn slow_reader_is_disconnected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("big.txt"), "x".repeat(1 << 20)).expect("big file");
    let limits = HttpLimits {
        sse_queue_len: 2,
        ..HttpLimits::default()
    };
    let server = start(tmp.path(), limits, HttpRoutes::LegacySse).await;
    let base = format!("http://{}", server.local_addr);
    let http = reqwest::Client::new();
    let response = http.get(format!("{base}/sse")).send().await.expect("GET");
    let mut sse = RawSse::new(response);
    let endpoint = sse.next().await;
    let messages = format!("{base}{}", endpoint.data);
    let send = |body: Value| {
        http.post(messages.clone())
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    assert_eq!(send(initialize()).await.expect("POST").status(), 202);
    assert_eq!(sse.next().await.event_type(), "message");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(send(initialized).await.expect("POST").status(), 202);
    // Ask for megabytes of output and never read the stream: socket buffers fill, then the
    // queue, and the server must drop the connection instead of buffering further.
    let mut disconnected = false;
    for id in 2..2000 {
        let read = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "read_text_file", "arguments": {"path": "big.txt"}}});
        match send(read).await.expect("POST").status().as_u16() {
            202 | 503 => {}
            404 => {
                disconnected = true;
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(disconnected, "the slow reader was never disconnected");
    wait_connections(&server, 0).await;
    drop(sse);
    server.shutdown().await.expect("server stops");
}
