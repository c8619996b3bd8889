//! rmcp's client (the one Switchboard's gateway and agent use) against the official reference
//! servers, installed from npm into `interop/node_modules` by `.ci/interop`:
//! `@modelcontextprotocol/server-everything` (stdio and Streamable HTTP) and
//! `@modelcontextprotocol/server-filesystem` (stdio).
//!
//! These need the npm packages, so they are `#[ignore]`d for `cargo test --workspace`;
//! `.ci/interop` runs them with `-- --ignored` and `SWITCHBOARD_INTEROP_NODE_MODULES` set.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use rmcp::{
    ClientHandler, RoleClient, ServiceExt,
    model::{
        CallToolRequest, CallToolRequestParams, CancelledNotificationParam, ClientConfig,
        ClientRequest, GetPromptRequestParams, ProgressNotificationParam,
        ReadResourceRequestParams, ResourceContents,
    },
    service::{NotificationContext, PeerRequestOptions, RunningService},
    transport::{ConfigureCommandExt, StreamableHttpClientTransport, TokioChildProcess},
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    sync::Notify,
};

const IGNORE_REASON: &str = "needs npm packages; run by .ci/interop";

/// `interop/node_modules`, from `SWITCHBOARD_INTEROP_NODE_MODULES`; fails with instructions.
fn node_modules() -> PathBuf {
    let Some(dir) = std::env::var_os("SWITCHBOARD_INTEROP_NODE_MODULES") else {
        panic!(
            "SWITCHBOARD_INTEROP_NODE_MODULES is not set. These tests drive the npm reference \
             servers: run .ci/interop, or `npm ci --prefix interop` and then \
             SWITCHBOARD_INTEROP_NODE_MODULES=$PWD/interop/node_modules \
             cargo test -p switchboard --test interop_reference -- --ignored ({IGNORE_REASON})"
        );
    };
    let dir = PathBuf::from(dir);
    assert!(
        dir.join(".bin").is_dir(),
        "{} has no .bin: run `npm ci --prefix interop` first",
        dir.display()
    );
    dir
}

fn bin(name: &str) -> PathBuf {
    let path = node_modules().join(".bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `npm ci --prefix interop`",
        path.display()
    );
    path
}

fn args(value: Value) -> serde_json::Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// A client handler that records `notifications/progress`.
#[derive(Clone, Default)]
struct Recorder {
    progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
    arrived: Arc<Notify>,
}

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.lock().unwrap().push(params);
        self.arrived.notify_waiters();
    }
}

impl Recorder {
    fn seen(&self) -> Vec<ProgressNotificationParam> {
        self.progress.lock().unwrap().clone()
    }
}

type Client = RunningService<RoleClient, Recorder>;

async fn everything_stdio(recorder: Recorder) -> Client {
    let cmd = tokio::process::Command::new(bin("mcp-server-everything")).configure(|cmd| {
        cmd.arg("stdio").stderr(Stdio::null());
    });
    recorder
        .serve(TokioChildProcess::new(cmd).expect("spawn mcp-server-everything"))
        .await
        .expect("initialize with server-everything over stdio")
}

/// `mcp-server-everything streamableHttp` on a free loopback port, killed on drop.
struct EverythingHttp {
    _child: tokio::process::Child,
    url: String,
}

async fn everything_http() -> EverythingHttp {
    // The server takes a fixed PORT; ask the OS for a free one, then hand it over.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let shim = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/loopback-only.cjs");
    let mut child = tokio::process::Command::new(bin("mcp-server-everything"))
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        // It listens on every interface by default; the shim makes it bind 127.0.0.1.
        .env("NODE_OPTIONS", format!("--require={}", shim.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn mcp-server-everything streamableHttp");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("listening on port") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "server-everything did not start listening");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    EverythingHttp {
        _child: child,
        url: format!("http://127.0.0.1:{port}/mcp"),
    }
}

/// Tools, resources, prompts and progress against a server-everything session.
async fn exercise_everything(client: &Client, recorder: &Recorder) {
    let name = client
        .peer_info()
        .and_then(|info| info.server_info.as_ref().map(|s| s.name.clone()))
        .unwrap_or_default();
    assert!(name.contains("everything"), "unexpected server {name:?}");

    let tools = client.list_all_tools().await.expect("tools/list");
    for name in ["echo", "get-sum", "trigger-long-running-operation"] {
        assert!(tools.iter().any(|t| t.name == name), "no tool {name}");
    }
    let echo = client
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(args(json!({"message": "hi"}))),
        )
        .await
        .expect("echo");
    assert_eq!(
        echo.content[0].as_text().map(|t| t.text.as_str()),
        Some("Echo: hi")
    );
    let sum = client
        .call_tool(
            CallToolRequestParams::new("get-sum").with_arguments(args(json!({"a": 2, "b": 40}))),
        )
        .await
        .expect("get-sum");
    let sum_text = sum.content[0]
        .as_text()
        .map(|t| t.text.clone())
        .unwrap_or_default();
    assert!(sum_text.contains("42"), "{sum_text}");

    let resources = client.list_all_resources().await.expect("resources/list");
    let first = resources
        .first()
        .expect("server-everything lists resources");
    let read = client
        .read_resource(ReadResourceRequestParams::new(first.uri.clone()))
        .await
        .expect("resources/read");
    assert!(!read.contents.is_empty());
    let uri = match &read.contents[0] {
        ResourceContents::TextResourceContents { uri, .. }
        | ResourceContents::BlobResourceContents { uri, .. } => uri.clone(),
        other => panic!("unexpected contents {other:?}"),
    };
    assert_eq!(uri, first.uri);
    let templates = client
        .list_all_resource_templates()
        .await
        .expect("resources/templates/list");
    assert!(
        !templates.is_empty(),
        "server-everything lists resource templates"
    );

    let prompts = client.list_all_prompts().await.expect("prompts/list");
    assert!(prompts.iter().any(|p| p.name == "simple-prompt"));
    let prompt = client
        .get_prompt(
            GetPromptRequestParams::new("args-prompt")
                .with_arguments(args(json!({"city": "Lyon"}))),
        )
        .await
        .expect("prompts/get");
    let text = serde_json::to_string(&prompt.messages).unwrap();
    assert!(text.contains("Lyon"), "{text}");

    // Progress: the long-running tool reports each step to a caller with a progressToken,
    // which rmcp's client attaches to every request.
    let before = recorder.seen().len();
    let done = client
        .call_tool(
            CallToolRequestParams::new("trigger-long-running-operation")
                .with_arguments(args(json!({"duration": 1, "steps": 4}))),
        )
        .await
        .expect("long-running operation");
    assert_ne!(done.is_error, Some(true), "{done:?}");
    // Notifications may be handled just after the response; give them a moment.
    for _ in 0..50 {
        if recorder.seen().len() >= before + 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let progress: Vec<_> = recorder.seen().into_iter().skip(before).collect();
    assert_eq!(progress.len(), 4, "{progress:?}");
    assert!(
        progress.windows(2).all(|w| w[0].progress < w[1].progress),
        "{progress:?}"
    );
    assert_eq!(progress[3].total, Some(4.0));
    assert!(
        progress
            .iter()
            .all(|p| p.progress_token == progress[0].progress_token)
    );
}

/// Cancellation: start a slow call, cancel it after its first progress notification, check that
/// it settles as cancelled, and that the session keeps working afterwards.
async fn cancel_long_running(client: &Client, recorder: &Recorder) {
    let before = recorder.seen().len();
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(
        CallToolRequestParams::new("trigger-long-running-operation")
            .with_arguments(args(json!({"duration": 2, "steps": 4}))),
    ));
    let handle = client
        .peer()
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await
        .expect("send long-running call");
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let arrived = recorder.arrived.notified();
            if recorder.seen().len() > before {
                break;
            }
            arrived.await;
        }
    })
    .await;
    assert!(first.is_ok(), "no progress before cancelling");
    client
        .peer()
        .notify_cancelled(CancelledNotificationParam::new(
            Some(handle.id.clone()),
            Some("interop test cancels".into()),
        ))
        .await
        .expect("notifications/cancelled");
    // rmcp settles a request it cancelled at once, with `Cancelled`, instead of waiting.
    let outcome = tokio::time::timeout(Duration::from_secs(1), handle.await_response())
        .await
        .expect("the cancelled request settles at once");
    assert!(
        matches!(outcome, Err(rmcp::ServiceError::Cancelled { .. })),
        "{outcome:?}"
    );
    // Outlive the operation (2 s): whatever the server still sends for the cancelled request
    // must not disturb the session.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let echo = client
        .call_tool(
            CallToolRequestParams::new("echo")
                .with_arguments(args(json!({"message": "still here"}))),
        )
        .await
        .expect("session usable after cancellation");
    assert_eq!(
        echo.content[0].as_text().map(|t| t.text.as_str()),
        Some("Echo: still here")
    );
}

#[tokio::test]
#[ignore = "needs npm packages; run by .ci/interop"]
async fn everything_over_stdio() {
    let recorder = Recorder::default();
    let client = everything_stdio(recorder.clone()).await;
    exercise_everything(&client, &recorder).await;
    cancel_long_running(&client, &recorder).await;
    client.cancel().await.expect("close");
}

#[tokio::test]
#[ignore = "needs npm packages; run by .ci/interop"]
async fn everything_over_streamable_http() {
    let server = everything_http().await;
    let recorder = Recorder::default();
    let client = recorder
        .clone()
        .serve(StreamableHttpClientTransport::from_uri(server.url.clone()))
        .await
        .expect("initialize with server-everything over Streamable HTTP");
    exercise_everything(&client, &recorder).await;
    cancel_long_running(&client, &recorder).await;
    client.cancel().await.expect("close");
}

#[tokio::test]
#[ignore = "needs npm packages; run by .ci/interop"]
async fn filesystem_over_stdio() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().canonicalize().expect("canonical root");
    let cmd = tokio::process::Command::new(bin("mcp-server-filesystem")).configure(|cmd| {
        cmd.arg(&root).stderr(Stdio::null());
    });
    let client = ClientConfig::default()
        .serve(TokioChildProcess::new(cmd).expect("spawn mcp-server-filesystem"))
        .await
        .expect("initialize with server-filesystem");

    let tools = client.list_all_tools().await.expect("tools/list");
    for name in [
        "read_text_file",
        "write_file",
        "list_allowed_directories",
        "edit_file",
    ] {
        assert!(tools.iter().any(|t| t.name == name), "no tool {name}");
    }
    let allowed = client
        .call_tool(CallToolRequestParams::new("list_allowed_directories"))
        .await
        .expect("list_allowed_directories");
    let listing = allowed.content[0]
        .as_text()
        .map(|t| t.text.clone())
        .unwrap_or_default();
    assert!(listing.contains(&*root.to_string_lossy()), "{listing}");

    let file = root.join("note.txt");
    let written = client
        .call_tool(
            CallToolRequestParams::new("write_file")
                .with_arguments(args(json!({"path": file, "content": "from rmcp"}))),
        )
        .await
        .expect("write_file");
    assert_ne!(written.is_error, Some(true), "{written:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "from rmcp");
    let read = client
        .call_tool(
            CallToolRequestParams::new("read_text_file")
                .with_arguments(args(json!({"path": file}))),
        )
        .await
        .expect("read_text_file");
    assert_eq!(
        read.structured_content,
        Some(json!({"content": "from rmcp"}))
    );

    let outside = client
        .call_tool(
            CallToolRequestParams::new("read_text_file")
                .with_arguments(args(json!({"path": "/etc/hostname"}))),
        )
        .await
        .expect("read_text_file outside the root");
    assert_eq!(outside.is_error, Some(true), "{outside:?}");
    client.cancel().await.expect("close");
}

#[test]
#[ignore = "needs npm packages; run by .ci/interop"]
fn node_modules_are_installed() {
    node_modules();
    bin("mcp-server-everything");
    bin("mcp-server-filesystem");
}
