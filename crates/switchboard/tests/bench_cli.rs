//! `switchboard bench` through the real binary: `--url` (Streamable HTTP, session era) against
//! a `switchboard serve` on an ephemeral port, with one session per worker and with one shared
//! session, `--header` for an authenticated gateway, `--sse`, `--duration`, the wire-level HTTP
//! client in both eras, and the stdio path.

mod common;

use std::path::Path;

use common::{BIN, spawn_listening};
use serde_json::Value;

const ECHO: &str = r#"
[audit]
enabled = false
[[upstream]]
name = "echo"
builtin = { server = "echo" }
prefix = "never"
"#;

/// Runs `switchboard bench --tool echo ARGS --json` and returns its report, or its stderr on
/// failure.
async fn bench(args: &[&str], cwd: &Path) -> Result<Value, String> {
    bench_tool("echo", args, cwd).await
}

async fn bench_tool(tool: &str, args: &[&str], cwd: &Path) -> Result<Value, String> {
    let output = tokio::process::Command::new(BIN)
        .arg("bench")
        .args(["--json", "--tool", tool, "--args", r#"{"message":"hi"}"#])
        .args(args)
        .current_dir(cwd)
        .output()
        .await
        .expect("run switchboard bench");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Err(stderr);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}")))
}

fn check(report: &Value, transport: &str, concurrency: u64, sessions: u64) {
    assert_eq!(report["tool"], "echo", "{report}");
    assert_eq!(report["transport"], transport, "{report}");
    assert_eq!(
        report["concurrency"].as_u64(),
        Some(concurrency),
        "{report}"
    );
    assert_eq!(report["sessions"].as_u64(), Some(sessions), "{report}");
    assert_eq!(report["errors"].as_u64(), Some(0), "{report}");
    assert!(
        report["calls_per_sec"].as_f64().unwrap_or(0.0) > 0.0,
        "{report}"
    );
    let p50 = report["p50_us"].as_u64().unwrap_or(0);
    let p99 = report["p99_us"].as_u64().unwrap_or(0);
    let max = report["max_us"].as_u64().unwrap_or(0);
    assert!(p50 > 0 && p50 <= p99 && p99 <= max, "{report}");
}

/// `switchboard serve` with `dir/gateway.toml` and its data in `dir/data`.
async fn serve(dir: &std::path::Path) -> common::Listening {
    spawn_listening(
        &[
            "serve",
            "--config",
            "gateway.toml",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "data",
        ],
        dir,
    )
    .await
}

#[tokio::test]
async fn bench_url_measures_a_gateway_over_streamable_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("gateway.toml"), ECHO).expect("config");
    let gateway = serve(dir.path()).await;

    // Default for a URL: one session per in-flight call.
    let args = ["--url", &gateway.mcp, "--calls", "60", "--warmup", "8"];
    let report = bench(&[&args[..], &["--concurrency", "4"]].concat(), dir.path())
        .await
        .expect("bench --url");
    check(&report, "http", 4, 4);
    assert_eq!(report["calls"].as_u64(), Some(60), "{report}");
    // Every call multiplexed over one session.
    let report = bench(
        &[&args[..], &["--concurrency", "4", "--sessions", "1"]].concat(),
        dir.path(),
    )
    .await
    .expect("bench --url --sessions 1");
    check(&report, "http", 4, 1);
    assert_eq!(report["calls"].as_u64(), Some(60), "{report}");

    // By time instead of by count; the stateless era.
    let report = bench(
        &[
            "--url",
            &gateway.mcp,
            "--duration",
            "0.3",
            "--warmup",
            "0",
            "--era",
            "discover",
        ],
        dir.path(),
    )
    .await
    .expect("bench --url --duration");
    check(&report, "http", 1, 1);

    // A tool the server does not have fails the run, naming the error.
    let err = bench_tool(
        "nope",
        &["--url", &gateway.mcp, "--calls", "2", "--warmup", "0"],
        dir.path(),
    )
    .await
    .expect_err("an unknown tool must fail");
    assert!(err.contains("failed"), "{err}");

    // Legacy HTTP+SSE on the same gateway.
    let sse = format!("{}/sse", gateway.base);
    let report = bench(
        &[
            "--sse",
            &sse,
            "--calls",
            "20",
            "--warmup",
            "2",
            "--concurrency",
            "2",
        ],
        dir.path(),
    )
    .await
    .expect("bench --sse");
    check(&report, "sse", 2, 2);
    drop(gateway);
}

#[tokio::test]
async fn bench_wire_url_speaks_both_eras_and_reports_the_gateway_cpu() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("gateway.toml"), ECHO).expect("config");
    let gateway = serve(dir.path()).await;
    let pid = gateway.child.id().expect("the gateway's pid").to_string();
    let args = [
        "--wire",
        "--url",
        &gateway.mcp,
        "--calls",
        "60",
        "--warmup",
        "8",
        "--concurrency",
        "4",
        "--server-pid",
        &pid,
    ];
    // Session era (initialize, then calls on the session id) and stateless 2026-07-28.
    for (era, sessions) in [("initialize", "4"), ("discover", "4"), ("initialize", "1")] {
        let report = bench(
            &[&args[..], &["--era", era, "--sessions", sessions]].concat(),
            dir.path(),
        )
        .await
        .unwrap_or_else(|e| panic!("bench --wire --url --era {era}: {e}"));
        check(&report, "http", 4, sessions.parse().expect("a number"));
        assert_eq!(report["calls"].as_u64(), Some(60), "{report}");
        assert_eq!(report["client"], "wire", "{report}");
        assert!(
            report["server_cpu_us_per_call"].as_f64().unwrap_or(0.0) > 0.0,
            "{report}"
        );
    }
    // The session-era calls (2 runs × (60 + 8 warm-up)) were answered without rmcp's session
    // worker: the wire client sends no progress token and declares no capability. A session
    // registers when its `notifications/initialized` is handled, which can come after its
    // first calls were sent: at most one call per worker per run (8) went through rmcp.
    let metrics = reqwest::get(format!("{}/metrics", gateway.base))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics");
    let direct = metrics
        .lines()
        .find_map(|line| line.strip_prefix("switchboard_direct_calls_total "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no switchboard_direct_calls_total in {metrics}"));
    assert!((128..=136).contains(&direct), "{direct} direct calls");

    // Answers are matched and judged: an unknown tool fails every call, or the run.
    let report = bench_tool(
        "nope",
        &[&args[..], &["--allow-errors"]].concat(),
        dir.path(),
    )
    .await
    .expect("bench --wire --url --allow-errors");
    assert_eq!(report["errors"].as_u64(), Some(60), "{report}");
    let err = bench_tool("nope", &args, dir.path())
        .await
        .expect_err("an unknown tool must fail");
    assert!(err.contains("unknown tool"), "{err}");

    // What it cannot do is said up front.
    let err = bench(&[&args[..], &["--era", "auto"]].concat(), dir.path())
        .await
        .expect_err("auto is refused");
    assert!(err.contains("--era initialize or --era discover"), "{err}");
    let err = bench(
        &["--wire", "--url", "https://127.0.0.1:1/mcp", "--calls", "1"],
        dir.path(),
    )
    .await
    .expect_err("https is refused");
    assert!(err.contains("plain http://"), "{err}");
    drop(gateway);
}

#[tokio::test]
async fn bench_url_sends_the_given_headers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let created = std::process::Command::new(BIN)
        .args(["key", "create", "bench", "--data-dir", "data"])
        .current_dir(dir.path())
        .output()
        .expect("key create");
    assert!(created.status.success());
    let stdout = String::from_utf8_lossy(&created.stdout);
    let key = stdout
        .split_whitespace()
        .find(|word| word.starts_with("sb_"))
        .expect("an API key")
        .to_owned();
    let config = format!("{ECHO}\n[security.auth]\napi_keys_enabled = true\n");
    std::fs::write(dir.path().join("gateway.toml"), config).expect("config");
    let gateway = serve(dir.path()).await;
    let args = ["--url", &gateway.mcp, "--calls", "20", "--warmup", "2"];
    bench(&args, dir.path())
        .await
        .expect_err("no credential: refused");
    let header = format!("Authorization: Bearer {key}");
    let report = bench(&[&args[..], &["--header", &header]].concat(), dir.path())
        .await
        .expect("bench with the API key");
    check(&report, "http", 1, 1);
    // The wire-level client sends them too.
    bench(&[&args[..], &["--wire"]].concat(), dir.path())
        .await
        .expect_err("wire, no credential: refused");
    let report = bench(
        &[&args[..], &["--wire", "--header", &header]].concat(),
        dir.path(),
    )
    .await
    .expect("bench --wire with the API key");
    check(&report, "http", 1, 1);
    drop(gateway);
}

#[tokio::test]
async fn bench_launches_a_stdio_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = [BIN, "--log", "warn", "server", "echo"];
    let calls = ["--calls", "50", "--warmup", "5", "--concurrency", "2"];
    // The rmcp client, then the wire-level one: same server, same report.
    for client in ["rmcp", "wire"] {
        let wire: &[&str] = if client == "wire" { &["--wire"] } else { &[] };
        let report = bench(
            &[wire, &calls[..], &["--"], &server[..]].concat(),
            dir.path(),
        )
        .await
        .unwrap_or_else(|e| panic!("bench over stdio, {client} client: {e}"));
        check(&report, "stdio", 2, 1);
        assert_eq!(report["calls"].as_u64(), Some(50), "{report}");
        assert_eq!(report["client"], client, "{report}");
        assert!(
            report["server_cpu_us_per_call"].as_f64().unwrap_or(0.0) > 0.0,
            "{report}"
        );
    }

    // It matches answers to calls and counts the errors: an unknown tool fails every call.
    let report = bench_tool(
        "no_such_tool",
        &[
            &["--wire"],
            &calls[..],
            &["--allow-errors", "--"],
            &server[..],
        ]
        .concat(),
        dir.path(),
    )
    .await
    .expect("bench --wire --allow-errors");
    assert_eq!(report["errors"].as_u64(), Some(50), "{report}");
    assert_eq!(report["calls"].as_u64(), Some(0), "{report}");
    let refused = bench_tool(
        "no_such_tool",
        &[&["--wire"], &calls[..], &["--"], &server[..]].concat(),
        dir.path(),
    )
    .await
    .expect_err("an unknown tool is an error");
    assert!(refused.contains("protocol error"), "{refused}");
}
