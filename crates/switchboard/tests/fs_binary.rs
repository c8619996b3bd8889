//! The real `switchboard` binary serving the filesystem server, driven over stdio by rmcp's
//! child-process client and over Streamable HTTP in both protocol eras.

mod common;

use std::process::Stdio;

use common::{BIN, Listening, args, spawn_listening};
use rmcp::{
    RoleClient, ServiceExt,
    model::{CallToolRequestParams, ClientConfig, ProtocolVersion},
    service::{ClientLifecycleMode, RunningService, serve_client_with_lifecycle},
    transport::{ConfigureCommandExt, StreamableHttpClientTransport, TokioChildProcess},
};
use serde_json::{Value, json};

async fn exercise(client: &RunningService<RoleClient, ClientConfig>, root: &std::path::Path) {
    let tools = client.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|t| t.name == "search_file_contents"));
    let written = client
        .call_tool(
            CallToolRequestParams::new("write_file")
                .with_arguments(args(json!({"path": "hello.txt", "content": "hi there"}))),
        )
        .await
        .expect("write_file");
    assert_eq!(written.is_error, Some(false), "{written:?}");
    let read = client
        .call_tool(
            CallToolRequestParams::new("read_text_file")
                .with_arguments(args(json!({"path": "hello.txt"}))),
        )
        .await
        .expect("read_text_file");
    assert_eq!(
        read.structured_content,
        Some(json!({"content": "hi there"}))
    );
    let escape = client
        .call_tool(
            CallToolRequestParams::new("read_text_file")
                .with_arguments(args(json!({"path": "../../etc/passwd"}))),
        )
        .await
        .expect("read_text_file");
    assert_eq!(escape.is_error, Some(true));
    assert_eq!(
        std::fs::read_to_string(root.join("hello.txt")).expect("file on disk"),
        "hi there"
    );
}

fn stdio_command(root: &std::path::Path) -> tokio::process::Command {
    tokio::process::Command::new(BIN).configure(|cmd| {
        cmd.args(["server", "fs", "--root"])
            .arg(root)
            .stderr(Stdio::null());
    })
}

#[tokio::test]
async fn stdio_session_era_client() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let transport = TokioChildProcess::new(stdio_command(tmp.path())).expect("spawn");
    let client = ClientConfig::default()
        .serve(transport)
        .await
        .expect("initialize");
    assert_eq!(
        client
            .peer_info()
            .and_then(|i| i.server_info.as_ref().map(|s| s.name.clone())),
        Some("switchboard-fs".to_string())
    );
    exercise(&client, tmp.path()).await;
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn stdio_stateless_client() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let transport = TokioChildProcess::new(stdio_command(tmp.path())).expect("spawn");
    let client = serve_client_with_lifecycle(
        ClientConfig::default(),
        transport,
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    )
    .await
    .expect("server/discover");
    assert_eq!(
        client.peer_info().map(|i| i.protocol_version.clone()),
        Some(ProtocolVersion::V_2026_07_28)
    );
    exercise(&client, tmp.path()).await;
    client.cancel().await.expect("close");
}

/// `switchboard server fs --transport http` on an ephemeral port, rooted at `root`.
async fn spawn_http(root: &std::path::Path, extra: &[&str]) -> Listening {
    let root = root.to_string_lossy().into_owned();
    let mut argv = vec![
        "server",
        "fs",
        "--transport",
        "http",
        "--listen",
        "127.0.0.1:0",
        "--root",
        &root,
    ];
    argv.extend_from_slice(extra);
    spawn_listening(&argv, std::path::Path::new(".")).await
}

#[tokio::test]
async fn http_both_eras_on_one_endpoint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = spawn_http(tmp.path(), &[]).await;

    let legacy = ClientConfig::default()
        .with_protocol_version(ProtocolVersion::V_2025_11_25)
        .serve(StreamableHttpClientTransport::from_uri(server.mcp.clone()))
        .await
        .expect("initialize over HTTP");
    assert_eq!(
        legacy.peer_info().map(|i| i.protocol_version.clone()),
        Some(ProtocolVersion::V_2025_11_25)
    );
    exercise(&legacy, tmp.path()).await;
    legacy.cancel().await.expect("close");

    let modern = serve_client_with_lifecycle(
        ClientConfig::default(),
        StreamableHttpClientTransport::from_uri(server.mcp.clone()),
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    )
    .await
    .expect("server/discover over HTTP");
    assert_eq!(
        modern.peer_info().map(|i| i.protocol_version.clone()),
        Some(ProtocolVersion::V_2026_07_28)
    );
    exercise(&modern, tmp.path()).await;
    modern.cancel().await.expect("close");
    drop(server.child);
}

#[tokio::test]
async fn http_safety_checks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = spawn_http(tmp.path(), &["--max-body-bytes", "1024"]).await;
    let http = reqwest::Client::new();
    let discover = json!({
        "jsonrpc": "2.0", "id": 1, "method": "server/discover",
        "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}
        }}
    });
    let post = |body: String| {
        http.post(&server.mcp)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "server/discover")
            .body(body)
    };
    let ok = post(discover.to_string()).send().await.expect("discover");
    assert_eq!(ok.status(), 200);
    assert!(
        ok.headers().get("mcp-session-id").is_none(),
        "stateless: no session"
    );
    let body: Value = ok.json().await.expect("json");
    assert!(
        body["result"]["supportedVersions"]
            .as_array()
            .is_some_and(|v| v.contains(&json!("2026-07-28")) && v.contains(&json!("2025-11-25"))),
        "{body}"
    );

    let evil = post(discover.to_string())
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("evil origin");
    assert_eq!(evil.status(), 403);

    let rebinding = post(discover.to_string())
        .header("host", "attacker.example")
        .send()
        .await
        .expect("bad host");
    assert_eq!(rebinding.status(), 403);

    let mut big = discover.clone();
    big["params"]["padding"] = json!("x".repeat(4096));
    let too_big = post(big.to_string()).send().await.expect("big body");
    assert_eq!(too_big.status(), 413);
    drop(server.child);
}
