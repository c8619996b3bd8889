//! The real `switchboard serve` under failure, and `switchboard status` against it: a stdio
//! upstream killed in the middle of a read-only call is restarted and the call retried
//! transparently; `/api/status` and the `status` subcommand report health, circuit, restarts,
//! tools and cache counters; a disabled upstream is refused with a clear error.

mod common;

use std::path::Path;

use common::{BIN, call, spawn_listening};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use serde_json::{Value, json};

/// A child `switchboard serve` with `config`; returns it and its base URL (`http://ADDR`).
async fn spawn_gateway(config: &str, cwd: &Path) -> (tokio::process::Child, String) {
    std::fs::write(cwd.join("gateway.toml"), config).expect("config");
    let listening = spawn_listening(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "gateway.toml",
        ],
        cwd,
    )
    .await;
    (listening.child, listening.base)
}

async fn client(
    base: &str,
) -> rmcp::service::RunningService<rmcp::RoleClient, rmcp::model::ClientConfig> {
    common::client(&format!("{base}/mcp")).await
}

fn first_text(result: &CallToolResult) -> String {
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

fn last_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .expect("pid file")
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("a pid")
}

async fn status_cli(base: &str, json: bool) -> String {
    let mut args = vec!["status", "--url", base];
    if json {
        args.push("--json");
    }
    let output = tokio::process::Command::new(BIN)
        .args(&args)
        .output()
        .await
        .expect("run switchboard status");
    assert!(
        output.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

#[tokio::test]
async fn a_read_interrupted_by_a_crash_is_retried_and_status_reports_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(tmp.path().join("a")).expect("a");
    std::fs::create_dir_all(tmp.path().join("b")).expect("b");
    let config = format!(
        r#"
        [[upstream]]
        name = "flaky"
        connect = {{ transport = "stdio", command = "sh", args = ["-c", "echo $$ >> flaky.pids; exec \"$0\" server fs --root a", "{BIN}"] }}

        [[upstream]]
        name = "mem"
        builtin = {{ server = "fs", roots = ["b"] }}
        cache = {{ tools = ["list_allowed_directories"], ttl_secs = 600 }}

        [[upstream]]
        name = "off"
        enabled = false
        connect = {{ transport = "http", url = "http://127.0.0.1:1/mcp" }}
        "#
    );
    let (mut gateway, base) = spawn_gateway(&config, tmp.path()).await;
    let c = client(&base).await;

    // A read blocks on a FIFO in the upstream; the upstream is killed mid-call. The gateway
    // restarts it and retries (read_text_file is readOnlyHint); the retry's read gets data.
    let fifo = tmp.path().join("a/pipe");
    common::make_fifo(&fifo);
    let pids = tmp.path().join("flaky.pids");
    let first_pid = last_pid(&pids);
    let read = {
        let peer = c.peer().clone();
        tokio::spawn(async move {
            peer.call_tool(
                CallToolRequestParams::new("flaky__read_text_file").with_arguments(
                    json!({"path": "pipe"})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                ),
            )
            .await
        })
    };
    // Opening for writing returns once the upstream has opened the FIFO for reading.
    let first_writer = {
        let fifo = fifo.clone();
        tokio::task::spawn_blocking(move || std::fs::File::create(fifo))
            .await
            .expect("join")
            .expect("open the FIFO for writing")
    };
    // The upstream now holds the FIFO open and waits in read(). Put a regular file in its
    // place before the kill: whenever the retry opens the path, it reads this file, so the
    // outcome does not depend on how fast the gateway restarts the upstream.
    let replacement = tmp.path().join("a/pipe.next");
    std::fs::write(&replacement, "read on the retry").expect("replacement");
    std::fs::rename(&replacement, &fifo).expect("replace the FIFO");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(first_pid).expect("pid"),
        rustix::process::Signal::KILL,
    )
    .expect("kill");
    let result = read
        .await
        .expect("join")
        .expect("a tool result, not a protocol error");
    drop(first_writer);
    assert_eq!(result.is_error, Some(false), "{result:?}");
    assert!(
        first_text(&result).contains("read on the retry"),
        "{result:?}"
    );
    assert_ne!(last_pid(&pids), first_pid, "the upstream was restarted");

    // The cache: the second identical call is a hit.
    for _ in 0..2 {
        let dirs = call(&c, "mem__list_allowed_directories", json!({})).await;
        assert_eq!(dirs.is_error, Some(false), "{dirs:?}");
    }
    // The disabled upstream: a clear error, not "unknown tool".
    let off = call(&c, "off__anything", json!({})).await;
    assert_eq!(off.is_error, Some(true));
    assert_eq!(
        off.structured_content.as_ref().expect("error")["error"]["kind"],
        "upstream_disabled",
        "{off:?}"
    );

    let status: Value = serde_json::from_str(&status_cli(&base, true).await).expect("json");
    let upstreams = status["upstreams"].as_array().expect("upstreams");
    let by_name = |name: &str| {
        upstreams
            .iter()
            .find(|u| u["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {status}"))
    };
    let flaky = by_name("flaky");
    assert_eq!(flaky["restarts"], 1, "{flaky}");
    assert_eq!(flaky["retry"]["retries"], 1, "{flaky}");
    assert_eq!(flaky["circuit"], "closed", "{flaky}");
    assert_eq!(flaky["health"]["state"], "healthy", "{flaky}");
    assert!(flaky["tools"].as_u64().is_some_and(|n| n > 0), "{flaky}");
    let mem = by_name("mem");
    assert_eq!(mem["cache"]["hits"], 1, "{mem}");
    assert_eq!(mem["cache"]["misses"], 1, "{mem}");
    // Call counts and recent latency percentiles per upstream (the cached call counts too).
    assert_eq!(mem["calls"]["calls"], 2, "{mem}");
    assert_eq!(mem["calls"]["errors"], 0, "{mem}");
    assert!(
        mem["calls"]["p95_ms"].as_f64() >= mem["calls"]["p50_ms"].as_f64(),
        "{mem}"
    );
    // Nothing needs attention: the disabled upstream is not a problem, it was switched off.
    assert_eq!(status["problems"], json!([]), "{status}");
    assert_eq!(flaky["cache"], Value::Null, "{flaky}");
    let off = by_name("off");
    assert_eq!(off["enabled"], false, "{off}");
    assert_eq!(off["health"]["state"], "disabled", "{off}");
    assert_eq!(off["tools"], 0, "{off}");

    let table = status_cli(&base, false).await;
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row in\n{table}"))
            .to_string()
    };
    assert!(table.starts_with("UPSTREAM"), "{table}");
    assert!(row("flaky").contains("healthy"), "{table}");
    assert!(row("mem").contains("1 hits, 1 misses"), "{table}");
    assert!(row("off").contains("disabled"), "{table}");

    // `/api/status` is behind the same Host check as `/mcp`.
    let refused = reqwest::Client::new()
        .get(format!("{base}/api/status"))
        .header("host", "evil.example")
        .send()
        .await
        .expect("request");
    assert!(refused.status().is_client_error(), "{}", refused.status());

    c.cancel().await.expect("close");
    gateway.start_kill().expect("kill");
    let _ = gateway.wait().await;
}

#[tokio::test]
async fn status_reports_an_unreachable_gateway_clearly() {
    // Port 1 on loopback: nothing listens there.
    let output = tokio::process::Command::new(BIN)
        .args(["status", "--url", "http://127.0.0.1:1"])
        .output()
        .await
        .expect("run switchboard status");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("could not reach the gateway"), "{stderr}");
}
