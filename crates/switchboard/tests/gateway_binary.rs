//! The real `switchboard serve`: zero-configuration, and a configured gateway with upstreams on
//! three transports (in-process built-in, stdio child, Streamable HTTP), one of which is killed
//! mid-run. Ends by checking the process table: no child outlives the gateway.

mod common;

use std::path::Path;

use common::{BIN, call, client, spawn_listening};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use serde_json::json;

fn error_kind(result: &CallToolResult) -> Option<String> {
    result.structured_content.as_ref()?["error"]["kind"]
        .as_str()
        .map(String::from)
}

#[tokio::test]
async fn zero_config_serves_the_builtin_servers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut gateway = spawn_listening(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", "data"],
        tmp.path(),
    )
    .await;
    let c = client(&gateway.mcp).await;
    let tools = c.list_all_tools().await.expect("tools/list");
    for name in ["fs__read_text_file", "sql__query", "crm__search_contacts"] {
        assert!(tools.iter().any(|t| t.name == name), "{name} missing");
    }
    for tool in &tools {
        let name = tool.name.as_ref();
        assert!(
            !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "{name} breaks ^[a-zA-Z0-9_-]{{1,64}}$"
        );
    }
    let readme = call(&c, "fs__read_text_file", json!({"path": "README.txt"})).await;
    assert_eq!(readme.is_error, Some(false), "{readme:?}");
    assert!(tmp.path().join("data/files/README.txt").exists());
    let rows = call(
        &c,
        "sql__query",
        json!({"sql": "SELECT COUNT(*) AS n FROM customers"}),
    )
    .await;
    assert_eq!(rows.structured_content.expect("rows")["rows"], json!([[3]]));
    let contacts = call(
        &c,
        "crm__search_contacts",
        json!({"query": "Tech Solutions"}),
    )
    .await;
    assert_eq!(contacts.is_error, Some(false), "{contacts:?}");
    let unknown = c
        .call_tool(CallToolRequestParams::new("nope__nothing"))
        .await
        .expect_err("unknown tool is a protocol error");
    assert!(unknown.to_string().contains("unknown tool"), "{unknown}");
    c.cancel().await.expect("close");
    gateway.child.start_kill().expect("kill");
    let _ = gateway.child.wait().await;
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn one_dead_upstream_does_not_break_the_others_and_comes_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(tmp.path().join("a")).expect("a");
    std::fs::create_dir_all(tmp.path().join("b")).expect("b");
    // An HTTP upstream: a separate `switchboard server sql`.
    let mut sql = spawn_listening(
        &[
            "server",
            "sql",
            "--transport",
            "http",
            "--listen",
            "127.0.0.1:0",
            "--demo-db",
            "sql.db",
        ],
        tmp.path(),
    )
    .await;
    // Two stdio upstreams through `sh`, which records the child's pid before exec'ing it.
    let stdio = |name: &str, dir: &str, circuit: &str| {
        format!(
            r#"
            [[upstream]]
            name = "{name}"
            connect = {{ transport = "stdio", command = "sh", args = ["-c", "echo $$ >> {name}.pids; exec \"$0\" server fs --root {dir}", "{BIN}"] }}
            circuit = {circuit}
            # This test is about the circuit; retries have their own (gateway_ops.rs).
            retry = {{ max_attempts = 0 }}
            "#
        )
    };
    let config = format!(
        r#"
        [[upstream]]
        name = "mem"
        builtin = {{ server = "fs", roots = ["b"] }}

        [[upstream]]
        name = "db"
        connect = {{ transport = "http", url = "{}" }}
        {}
        {}
        "#,
        sql.mcp,
        stdio("flaky", "a", "{ failure_threshold = 1, open_secs = 0 }"),
        stdio("frail", "a", "{ failure_threshold = 1, open_secs = 3600 }"),
    );
    std::fs::write(tmp.path().join("gateway.toml"), config).expect("config");
    let mut gateway = spawn_listening(
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
    let c = client(&gateway.mcp).await;
    let tools = c.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|t| t.name == "flaky__read_text_file"));
    assert!(tools.iter().any(|t| t.name == "db__query"));
    assert!(tools.iter().any(|t| t.name == "mem__write_file"));

    let pid = |name: &str| -> i32 {
        std::fs::read_to_string(tmp.path().join(format!("{name}.pids")))
            .expect("pid file")
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .expect("a pid")
    };
    // Kill each stdio child in the middle of a call. The call reads a FIFO, so it blocks in
    // the upstream until a writer opens it; opening it for writing returns only once the
    // upstream has opened it for reading, so the kill lands while the call is in flight.
    let fifo = tmp.path().join("a/pipe");
    common::make_fifo(&fifo);
    let kill_mid_call = |name: &'static str| {
        let fifo = fifo.clone();
        let pid = pid(name);
        let call = {
            let peer = c.peer().clone();
            tokio::spawn(async move {
                peer.call_tool(
                    CallToolRequestParams::new(format!("{name}__read_text_file")).with_arguments(
                        json!({"path": "pipe"})
                            .as_object()
                            .cloned()
                            .unwrap_or_default(),
                    ),
                )
                .await
            })
        };
        async move {
            let writer = tokio::task::spawn_blocking(move || std::fs::File::create(&fifo))
                .await
                .expect("join")
                .expect("open the FIFO for writing");
            rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).expect("pid"),
                rustix::process::Signal::KILL,
            )
            .expect("kill");
            let result = call
                .await
                .expect("join")
                .expect("a tool result, not a protocol error");
            drop(writer);
            (pid, result)
        }
    };

    // The caller gets a clear error from the dead upstream…
    let (_, dead) = kill_mid_call("frail").await;
    assert_eq!(dead.is_error, Some(true), "{dead:?}");
    assert_eq!(
        error_kind(&dead).as_deref(),
        Some("upstream_error"),
        "{dead:?}"
    );
    // …its circuit is now open and refuses at once…
    let refused = call(&c, "frail__list_allowed_directories", json!({})).await;
    assert_eq!(
        error_kind(&refused).as_deref(),
        Some("circuit_open"),
        "{refused:?}"
    );
    // …and the other upstreams keep serving.
    let db = call(&c, "db__query", json!({"sql": "SELECT 1 AS one"})).await;
    assert_eq!(db.is_error, Some(false), "{db:?}");
    let mem = call(
        &c,
        "mem__write_file",
        json!({"path": "x.txt", "content": "ok"}),
    )
    .await;
    assert_eq!(mem.is_error, Some(false), "{mem:?}");

    // `flaky` (open_secs = 0): the failure opens its circuit, the next call is the half-open
    // probe, which restarts the child and closes the circuit again.
    let (first_flaky, failed) = kill_mid_call("flaky").await;
    assert_eq!(
        error_kind(&failed).as_deref(),
        Some("upstream_error"),
        "{failed:?}"
    );
    let recovered = call(&c, "flaky__list_allowed_directories", json!({})).await;
    assert_eq!(recovered.is_error, Some(false), "{recovered:?}");
    let second_flaky = pid("flaky");
    assert_ne!(first_flaky, second_flaky, "the upstream was restarted");
    assert!(alive(second_flaky));

    // Shutting the gateway down ends every child it started: none outlives it.
    c.cancel().await.expect("close");
    let gateway_pid = gateway.child.id().expect("gateway pid") as i32;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(gateway_pid).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("SIGTERM");
    let status = gateway.child.wait().await.expect("gateway exit");
    assert!(status.success(), "gateway exited with {status}");
    assert!(!alive(second_flaky), "a stdio child outlived the gateway");
    sql.child.start_kill().expect("kill sql");
    let _ = sql.child.wait().await;
}
