//! The child processes of stdio upstreams, against the real binary: per-client isolation (one
//! child per session, the same child for the same session, the child ended with its session),
//! the process cap (refused while every child is busy, the least recently used idle child
//! evicted otherwise), idle reaping (ended, then started again on the next call), and no child
//! outliving `serve`.
//!
//! Each child is `switchboard server fs` rooted in a directory named after its own pid, so a
//! call to `list_allowed_directories` says which child served it.

mod common;

use std::{path::Path, time::Duration};

use common::{BIN, alive, args, spawn_listening};
use rmcp::{ServiceError, model::CallToolRequestParams};
use serde_json::{Value, json};

type Client = rmcp::service::RunningService<rmcp::RoleClient, rmcp::model::ClientConfig>;

/// A stdio upstream whose every child appends its pid to `NAME.pids` and serves `NAME/<pid>`.
fn upstream(name: &str, extra: &str) -> String {
    format!(
        r#"
[[upstream]]
name = "{name}"
connect = {{ transport = "stdio", command = "sh", args = ["-c", "mkdir -p {name}/$$ && echo $$ >> {name}.pids && exec \"$0\" --log warn server fs --root {name}/$$", "{BIN}"] }}
{extra}
"#
    )
}

async fn serve(dir: &Path, upstreams: &str) -> common::Listening {
    std::fs::write(
        dir.join("gateway.toml"),
        format!("[audit]\nenabled = false\n{upstreams}"),
    )
    .expect("config");
    spawn_listening(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "gateway.toml",
            "--data-dir",
            "data",
        ],
        dir,
    )
    .await
}

/// Every child `name` has started, in order (the first is the shared one, started by the
/// startup listing).
fn pids(dir: &Path, name: &str) -> Vec<i32> {
    std::fs::read_to_string(dir.join(format!("{name}.pids")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The pid in a `list_allowed_directories` answer (its root is `NAME/<pid>`).
fn pid_of_root(result: &Value) -> i32 {
    result["directories"][0]
        .as_str()
        .and_then(|dir| dir.trim_end_matches('/').rsplit('/').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {result}"))
}

/// The pid of the child that serves `client`'s calls to `name`.
async fn child_pid(client: &Client, name: &str) -> Result<i32, ServiceError> {
    let result = client
        .call_tool(CallToolRequestParams::new(format!(
            "{name}__list_allowed_directories"
        )))
        .await?;
    assert_ne!(result.is_error, Some(true), "{result:?}");
    Ok(pid_of_root(
        result.structured_content.as_ref().expect("structured"),
    ))
}

/// Polls `condition` until it holds; a generous deadline, not a timing assertion.
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not within 30 s: {what}"));
}

/// The `switchboard_child_processes` gauge of `/metrics`.
async fn child_processes(base: &str) -> u64 {
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchboard_child_processes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no child gauge in {metrics}"))
}

/// SIGTERMs the gateway, waits for it to exit cleanly, and checks that none of `children`
/// outlived it.
async fn stop_and_check_no_orphans(mut gateway: common::Listening, children: &[i32]) {
    let pid = gateway.child.id().expect("gateway pid") as i32;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("SIGTERM");
    let status = gateway.child.wait().await.expect("gateway exit");
    assert!(status.success(), "gateway exited with {status}");
    for &child in children {
        assert!(!alive(child), "child {child} outlived the gateway");
    }
}

/// A stateless (2026-07-28) `tools/call` over plain HTTP; the JSON-RPC result.
async fn stateless_call(mcp: &str, tool: &str) -> Value {
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": tool, "arguments": {}, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}
        }}
    });
    let response = reqwest::Client::new()
        .post(mcp)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .body(body.to_string())
        .send()
        .await
        .expect("POST /mcp");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    // JSON, or an SSE stream whose last data line is the response.
    let json = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .rfind(|d| !d.is_empty())
        .unwrap_or(text.as_str());
    let message: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {text}"));
    message["result"].clone()
}

#[tokio::test]
async fn each_client_gets_its_own_child_which_ends_with_its_session() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let gateway = serve(
        dir,
        &(upstream("iso", "isolation = \"per_client\"") + &upstream("plain", "")),
    )
    .await;
    let a = common::client(&gateway.mcp).await;
    let b = common::client(&gateway.mcp).await;
    let shared = pids(dir, "iso")[0];

    // Two sessions, two children; neither is the shared one.
    let a_child = child_pid(&a, "iso").await.expect("a");
    let b_child = child_pid(&b, "iso").await.expect("b");
    assert_ne!(a_child, b_child);
    assert!(![a_child, b_child].contains(&shared));
    // The same session again: the same child, and no new one started.
    assert_eq!(child_pid(&a, "iso").await.expect("a again"), a_child);
    assert_eq!(child_pid(&b, "iso").await.expect("b again"), b_child);
    assert_eq!(pids(dir, "iso"), [shared, a_child, b_child]);
    assert_eq!(
        common::upstream_status(&gateway.base, "iso").await["per_client_children"],
        2
    );
    // A shared upstream serves every client from its one child, and reports no per-client ones.
    let plain = pids(dir, "plain");
    assert_eq!(child_pid(&a, "plain").await.expect("plain a"), plain[0]);
    assert_eq!(child_pid(&b, "plain").await.expect("plain b"), plain[0]);
    assert!(
        common::upstream_status(&gateway.base, "plain")
            .await
            .get("per_client_children")
            .is_none()
    );

    // Stateless requests have no session: they are keyed by subject (here anonymous), so two
    // of them share one child, which is neither session's.
    let first = stateless_call(&gateway.mcp, "iso__list_allowed_directories").await;
    let second = stateless_call(&gateway.mcp, "iso__list_allowed_directories").await;
    let stateless = pid_of_root(&first["structuredContent"]);
    assert_eq!(pid_of_root(&second["structuredContent"]), stateless);
    assert!(![shared, a_child, b_child].contains(&stateless));

    // The live-children gauge counts per-client children too: two shared, two sessions', one
    // stateless.
    assert_eq!(child_processes(&gateway.base).await, 5);

    // Closing a session (DELETE) ends its child; the other session keeps its own.
    b.cancel().await.expect("close b");
    until("the closed session's child exits", || !alive(b_child)).await;
    assert!(alive(a_child));
    // (The gauge drops when the child's handle does, just after the process is reaped.)
    tokio::time::timeout(Duration::from_secs(30), async {
        while child_processes(&gateway.base).await != 4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the gauge counts the ended child out");
    assert_eq!(child_pid(&a, "iso").await.expect("a after b"), a_child);

    for running in [shared, a_child, stateless, plain[0]] {
        assert!(alive(running), "{running} should still run");
    }
    let all: Vec<i32> = pids(dir, "iso")
        .into_iter()
        .chain(pids(dir, "plain"))
        .collect();
    a.cancel().await.expect("close a");
    stop_and_check_no_orphans(gateway, &all).await;
}

#[tokio::test]
async fn the_process_cap_refuses_while_busy_and_evicts_the_idle_child() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    // The shared child and one per-client child.
    let gateway = serve(
        dir,
        &upstream("iso", "isolation = \"per_client\"\nmax_processes = 2"),
    )
    .await;
    let a = common::client(&gateway.mcp).await;
    let b = common::client(&gateway.mcp).await;
    let a_child = child_pid(&a, "iso").await.expect("a");

    // A's child busy: a read of a FIFO blocks in it until the test writes.
    let fifo = dir.join(format!("iso/{a_child}/pipe"));
    common::make_fifo(&fifo);
    let parked = {
        let peer = a.peer().clone();
        tokio::spawn(async move {
            peer.call_tool(
                CallToolRequestParams::new("iso__read_text_file")
                    .with_arguments(args(json!({"path": "pipe"}))),
            )
            .await
        })
    };
    // Opening the writer returns once the child opened the FIFO: the call is in flight.
    let mut writer = tokio::task::spawn_blocking(move || std::fs::File::create(&fifo))
        .await
        .expect("join")
        .expect("open the FIFO for writing");

    // B needs a child of its own; the cap is reached and the only client child is busy.
    let refused = child_pid(&b, "iso").await.expect_err("over the cap");
    let ServiceError::McpError(error) = &refused else {
        panic!("not a JSON-RPC error: {refused}");
    };
    assert_eq!(error.code.0, -32003, "{error:?}");
    let data = error.data.clone().expect("error data");
    assert_eq!(data["kind"], "process_cap_reached", "{data}");
    assert_eq!(data["upstream"], "iso", "{data}");
    assert_eq!(data["max_processes"], 2, "{data}");
    assert!(alive(a_child));

    // Once A's call is done, its child is idle, and B's next call evicts it.
    use std::io::Write;
    writer.write_all(b"done").expect("write the FIFO");
    drop(writer);
    let answer = parked.await.expect("join").expect("A's call completes");
    assert_eq!(
        answer.content[0].as_text().map(|t| t.text.as_str()),
        Some("done")
    );
    let b_child = child_pid(&b, "iso").await.expect("b evicts a");
    assert_ne!(b_child, a_child);
    // The evicted child was ended and reaped before B's started.
    assert!(!alive(a_child), "the evicted child still runs");
    assert_eq!(
        common::upstream_status(&gateway.base, "iso").await["per_client_children"],
        1
    );
    // A, now without a child, gets one again by evicting B's (idle) one.
    let a_again = child_pid(&a, "iso").await.expect("a evicts b");
    assert!(![a_child, b_child].contains(&a_again));
    assert!(!alive(b_child));

    a.cancel().await.expect("close a");
    b.cancel().await.expect("close b");
    stop_and_check_no_orphans(gateway, &pids(dir, "iso")).await;
}

#[tokio::test]
async fn idle_children_are_ended_and_started_again_on_the_next_call() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let gateway = serve(
        dir,
        &(upstream("iso", "isolation = \"per_client\"\nidle_timeout_secs = 1")
            + &upstream("plain", "idle_timeout_secs = 1")),
    )
    .await;
    let client = common::client(&gateway.mcp).await;
    let iso_shared = pids(dir, "iso")[0];
    let iso_first = child_pid(&client, "iso").await.expect("iso");
    let plain_first = child_pid(&client, "plain").await.expect("plain");

    // Idle for a second: per-client and shared children alike are ended.
    until("the idle per-client child exits", || !alive(iso_first)).await;
    until("the idle shared children exit", || {
        !alive(iso_shared) && !alive(plain_first)
    })
    .await;
    assert_eq!(
        common::upstream_status(&gateway.base, "iso").await["per_client_children"],
        0
    );

    // The next call starts a new child and succeeds.
    let iso_second = child_pid(&client, "iso").await.expect("iso again");
    assert_ne!(iso_second, iso_first);
    let plain_second = child_pid(&client, "plain").await.expect("plain again");
    assert_ne!(plain_second, plain_first);
    // Started again after idleness, not restarted after a failure.
    assert_eq!(
        common::upstream_status(&gateway.base, "plain").await["restarts"],
        0
    );
    // tools/list still answers (from the cached list, without starting the shared child).
    let tools = client.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|t| t.name == "iso__read_text_file"));

    client.cancel().await.expect("close");
    let all: Vec<i32> = pids(dir, "iso")
        .into_iter()
        .chain(pids(dir, "plain"))
        .collect();
    stop_and_check_no_orphans(gateway, &all).await;
}
