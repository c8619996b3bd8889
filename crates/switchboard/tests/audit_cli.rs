//! `switchboard audit` (table, `--json`, filters, `prune`) and `GET /api/audit` against the
//! log a real `switchboard serve` wrote: allowed and denied calls from an MCP client.

mod common;

use std::path::Path;

use common::spawn_listening;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

const CONFIG: &str = r#"
[[upstream]]
name = "a"
builtin = { server = "echo" }
[[upstream]]
name = "b"
builtin = { server = "echo" }

[security.authorization]
default = "allow"
[[security.authorization.policy]]
anonymous = true
deny = ["b__*"]
"#;

fn audit(args: &[&str], cwd: &Path) -> (String, String) {
    let output = std::process::Command::new(common::BIN)
        .arg("audit")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run switchboard audit");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "audit {args:?} failed: {stderr}\n{stdout}"
    );
    (stdout, stderr)
}

fn json_records(args: &[&str], cwd: &Path) -> Vec<Value> {
    let mut all = args.to_vec();
    all.push("--json");
    let (stdout, _) = audit(&all, cwd);
    let document: Value = serde_json::from_str(&stdout).expect("--json output");
    assert_eq!(
        document["count"].as_u64(),
        document["records"].as_array().map(|r| r.len() as u64)
    );
    document["records"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn the_cli_and_the_http_api_read_what_the_gateway_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, CONFIG).expect("config");
    let gateway = spawn_listening(
        &[
            "serve",
            "--config",
            "gateway.toml",
            "--listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    )
    .await;
    let client = common::client(&gateway.mcp).await;
    for message in ["one", "two"] {
        common::call(
            &client,
            "a__echo",
            json!({"message": message, "api_key": "sb_secret"}),
        )
        .await;
    }
    let denied = client
        .call_tool(
            CallToolRequestParams::new("b__echo")
                .with_arguments(common::args(json!({"message": "no"}))),
        )
        .await;
    assert!(denied.is_err(), "b__* is denied: {denied:?}");

    // Zero-config location: ./switchboard-data/audit.db beside where serve ran. The gateway
    // is still running: the answers above were released only after their records committed.
    let records = json_records(&[], dir.path());
    assert_eq!(records.len(), 3, "{records:#?}");
    assert_eq!(records[0]["tool"], "b__echo", "newest first");
    assert_eq!(records[0]["decision"], "denied");
    assert_eq!(records[0]["identity"], "anonymous");
    assert_eq!(records[1]["arguments"]["message"], "two");
    assert_eq!(records[1]["arguments"]["api_key"], "[REDACTED]");
    assert_eq!(records[1]["decision"], "allowed");
    assert_eq!(records[1]["outcome"], "ok");
    assert_eq!(records[1]["upstream"], "a");
    assert!(
        records[1]["client"]
            .as_str()
            .is_some_and(|c| c.contains('/')),
        "clientInfo name/version: {:?}",
        records[1]["client"]
    );
    assert_eq!(
        records[1]["arguments_sha256"].as_str().map(str::len),
        Some(64)
    );
    assert!(
        records[1]["time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    // Filters.
    assert_eq!(json_records(&["--tool", "a__*"], dir.path()).len(), 2);
    assert_eq!(
        json_records(&["--decision", "denied", "--since", "1h"], dir.path()).len(),
        1
    );
    assert_eq!(
        json_records(&["--identity", "someone-else"], dir.path()).len(),
        0
    );
    assert_eq!(json_records(&["--limit", "1"], dir.path()).len(), 1);
    assert_eq!(
        json_records(&["--until", "2000-01-01"], dir.path()).len(),
        0
    );

    // The table: a header and one line per record.
    let (table, _) = audit(&["--tool", "a__*"], dir.path());
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("TIME (UTC)"), "{table}");
    assert!(lines[0].contains("DECISION") && lines[0].contains("IDENTITY"));
    assert!(lines[1].contains("allowed") && lines[1].contains("a__echo"));

    // The HTTP API: same records, same filters.
    let api: Value = reqwest::get(format!(
        "{}/api/audit?decision=denied&since=1h",
        gateway.base
    ))
    .await
    .expect("GET")
    .json()
    .await
    .expect("json");
    assert_eq!(api["count"], 1);
    assert_eq!(api["records"][0]["tool"], "b__echo");
    let bad = reqwest::get(format!("{}/api/audit?since=soon", gateway.base))
        .await
        .expect("GET");
    assert_eq!(bad.status().as_u16(), 400);

    // Bad input is refused with a message; a missing log is not created.
    let out = std::process::Command::new(common::BIN)
        .args(["audit", "--decision", "maybe"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown decision"));
    let out = std::process::Command::new(common::BIN)
        .args(["audit", "--data-dir", "nowhere"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no audit log"));
    assert!(!dir.path().join("nowhere").exists());

    // Prune: nothing is older than a day; everything is older than 0 seconds.
    let (_, stderr) = audit(&["prune", "--older-than", "1d"], dir.path());
    assert!(stderr.contains("deleted 0 "), "{stderr}");
    let (_, stderr) = audit(&["prune", "--older-than", "0s"], dir.path());
    assert!(stderr.contains("deleted 3 "), "{stderr}");
    assert!(json_records(&[], dir.path()).is_empty());
    drop(client);
}
