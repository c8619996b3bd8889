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

use common::{alive, args, pid_in};

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

mod common;

async fn call_tool(client: &Client, tool: &str, arguments: Value) -> rmcp::model::CallToolResult {
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args(arguments)))
        .await
        .unwrap_or_else(|e| panic!("{tool}: protocol error {e}"))
}

/// The gateway in front of three upstreams on three transports: npm's server-everything
/// over stdio, the CRM over Streamable HTTP and the SQL server over legacy HTTP+SSE. The
/// stdio child is killed in the middle of a long call: that caller gets a clear error, the
/// other upstreams keep serving, the circuit opens, the child is restarted and the circuit
/// closes again; after the gateway stops, no child is left.
#[tokio::test]
#[ignore = "needs npm packages; run by .ci/interop"]
async fn gateway_survives_a_killed_upstream_among_three_transports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let crm = common::spawn_listening(
        &[
            "server",
            "crm",
            "--transport",
            "http",
            "--listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    )
    .await;
    let sql = common::spawn_listening(
        &[
            "server",
            "sql",
            "--transport",
            "all",
            "--listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    )
    .await;
    let pid_file = dir.path().join("everything.pid");
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[upstream]]
name = "everything"
# The shell records the child's pid, then becomes the server (exec keeps the pid).
connect = {{ transport = "stdio", command = "sh", args = ["-c", "echo $$ > '{pid}'; exec '{everything}' stdio"] }}
circuit = {{ failure_threshold = 1, open_secs = 1 }}

[[upstream]]
name = "crm"
connect = {{ transport = "http", url = "{crm}" }}

[[upstream]]
name = "sql"
connect = {{ transport = "sse", url = "{sql}/sse" }}
"#,
            pid = pid_file.display(),
            everything = bin("mcp-server-everything").display(),
            crm = crm.mcp,
            sql = sql.base,
        ),
    )
    .expect("write config");
    let config = config.to_str().expect("utf-8 path").to_string();
    let mut gateway = common::spawn_listening(
        &["serve", "--config", &config, "--listen", "127.0.0.1:0"],
        dir.path(),
    )
    .await;

    let recorder = Recorder::default();
    let client = recorder
        .clone()
        .serve(StreamableHttpClientTransport::from_uri(gateway.mcp.clone()))
        .await
        .expect("connect to the gateway");
    let tools: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    for expected in [
        "everything__echo",
        "everything__trigger-long-running-operation",
        "crm__pipeline_summary",
        "sql__query",
    ] {
        assert!(
            tools.iter().any(|t| t == expected),
            "{expected} in {tools:?}"
        );
    }
    let first_child = pid_in(&pid_file);

    // A long call is in flight (its first progress arrived) when the child dies.
    let long = client
        .peer()
        .send_cancellable_request(
            ClientRequest::CallToolRequest(CallToolRequest::new(
                CallToolRequestParams::new("everything__trigger-long-running-operation")
                    .with_arguments(args(json!({"duration": 60, "steps": 60}))),
            )),
            PeerRequestOptions::no_options(),
        )
        .await
        .expect("send the long call");
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let arrived = recorder.arrived.notified();
            if !recorder.seen().is_empty() {
                break;
            }
            arrived.await;
        }
    })
    .await
    .expect("progress from the long call");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(first_child).expect("pid"),
        rustix::process::Signal::KILL,
    )
    .expect("kill -9 server-everything");

    // The caller of the in-flight call gets a clear error naming the upstream.
    let outcome = handle_outcome(long.await_response().await);
    assert!(
        outcome.contains("everything"),
        "the in-flight call's error names the upstream: {outcome}"
    );

    // The other upstreams keep serving meanwhile.
    let summary = call_tool(&client, "crm__pipeline_summary", json!({})).await;
    assert_ne!(summary.is_error, Some(true), "{summary:?}");
    let count = call_tool(
        &client,
        "sql__query",
        json!({"sql": "SELECT count(*) AS n FROM customers"}),
    )
    .await;
    assert_ne!(count.is_error, Some(true), "{count:?}");

    // The failure opened the circuit (threshold 1).
    let status = common::upstream_status(&gateway.base, "everything").await;
    assert!(status["circuit_opened"].as_u64() >= Some(1), "{status}");

    // Wait for the restart: the circuit lets a probe through after open_secs, the gateway
    // reconnects (a new child), and the probe's success closes the circuit.
    let recovered = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let echo = call_tool(&client, "everything__echo", json!({"message": "back"})).await;
            if echo.is_error != Some(true) {
                return echo;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("server-everything is back within 60 s");
    assert_eq!(
        recovered.content[0].as_text().map(|t| t.text.as_str()),
        Some("Echo: back")
    );
    let status = common::upstream_status(&gateway.base, "everything").await;
    assert_eq!(status["circuit"], "closed", "{status}");
    assert!(status["restarts"].as_u64() >= Some(1), "{status}");
    let second_child = pid_in(&pid_file);
    assert_ne!(second_child, first_child);
    assert!(!alive(first_child), "the killed child was reaped");
    assert!(alive(second_child));

    // No orphans: stopping the gateway ends its child.
    client.cancel().await.expect("close");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(gateway.child.id().expect("gateway pid") as i32)
            .expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("SIGTERM the gateway");
    gateway.child.wait().await.expect("gateway exits");
    assert!(
        !alive(second_child),
        "server-everything outlived the gateway"
    );
}

/// The in-flight call's outcome as text: a tool error's text, or a protocol error.
fn handle_outcome(outcome: Result<rmcp::model::ServerResult, rmcp::ServiceError>) -> String {
    match outcome {
        Ok(rmcp::model::ServerResult::CallToolResult(result)) => {
            assert_eq!(result.is_error, Some(true), "{result:?}");
            result
                .content
                .iter()
                .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                .collect::<Vec<_>>()
                .join(" ")
        }
        Ok(other) => panic!("unexpected result {other:?}"),
        Err(err) => err.to_string(),
    }
}
