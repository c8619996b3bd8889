//! Hot reload of `switchboard serve --config` on SIGHUP, against the real binary: a call in
//! flight on an upstream the new configuration drops still completes; the unchanged upstream
//! keeps its child process; the dropped upstream's child is ended once its call finished; a
//! configuration that does not load changes nothing.

mod common;

use std::{path::Path, time::Duration};

use common::{BIN, alive, args, call, client, pid_in, spawn_listening};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

/// A stdio upstream that records its pid in `pid_file`, then becomes `switchboard ARGS`.
fn stdio_upstream(name: &str, pid_file: &Path, args: &str) -> String {
    format!(
        "[[upstream]]\nname = \"{name}\"\nconnect = {{ transport = \"stdio\", command = \"sh\", \
         args = [\"-c\", \"echo $$ > '{pid}'; exec '{BIN}' --log warn {args}\"] }}\n",
        pid = pid_file.display(),
    )
}

/// `switchboard serve --config CONFIG --watch-secs WATCH` with its data under `dir`.
async fn serve(dir: &Path, config: &Path, watch_secs: &str) -> common::Listening {
    let config = config.display().to_string();
    let data = dir.join("data").display().to_string();
    spawn_listening(
        &[
            "serve",
            "--config",
            &config,
            "--data-dir",
            &data,
            "--watch-secs",
            watch_secs,
            "--listen",
            "127.0.0.1:0",
        ],
        dir,
    )
    .await
}

async fn reloads(base: &str) -> Value {
    let status: Value = reqwest::get(format!("{base}/api/status"))
        .await
        .expect("GET /api/status")
        .json()
        .await
        .expect("status JSON");
    status["reloads"].clone()
}

/// Polls `/api/status` until `field` of its reload counters reaches `count` (the reload runs
/// in the gateway after the signal; this is the wait for it to finish).
async fn wait_for_reloads(base: &str, field: &str, count: u64) -> Value {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let stats = reloads(base).await;
            if stats[field].as_u64() >= Some(count) {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {field} reload within 60 s"))
}

fn hangup(gateway: &common::Listening) {
    let pid = gateway.child.id().expect("gateway pid") as i32;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).expect("pid"),
        rustix::process::Signal::HUP,
    )
    .expect("SIGHUP");
}

type Client = rmcp::service::RunningService<rmcp::RoleClient, rmcp::model::ClientConfig>;

async fn tool_names(client: &Client) -> Vec<String> {
    client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect()
}

#[tokio::test]
async fn sighup_applies_a_new_configuration_without_dropping_a_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).expect("files dir");
    let kept_pid = dir.path().join("kept.pid");
    let files_pid = dir.path().join("files.pid");
    let config = dir.path().join("switchboard.toml");
    let kept = stdio_upstream("kept", &kept_pid, "server echo");
    std::fs::write(
        &config,
        format!(
            "[audit]\nenabled = false\n{kept}{}",
            stdio_upstream(
                "files",
                &files_pid,
                &format!("server fs --root '{}'", files.display())
            )
        ),
    )
    .expect("write config");
    let gateway = serve(dir.path(), &config, "0").await;
    let session = client(&gateway.mcp).await;
    let before = tool_names(&session).await;
    assert!(before.iter().any(|t| t == "kept__echo"), "{before:?}");
    assert!(
        before.iter().any(|t| t == "files__read_text_file"),
        "{before:?}"
    );
    let kept_child = pid_in(&kept_pid);
    let files_child = pid_in(&files_pid);

    // A call in flight on `files`: its child blocks reading a FIFO until the test writes.
    let fifo = files.join("pipe");
    common::make_fifo(&fifo);
    let parked = {
        let session = client(&gateway.mcp).await;
        tokio::spawn(async move {
            let answer = session
                .call_tool(
                    CallToolRequestParams::new("files__read_text_file")
                        .with_arguments(args(json!({"path": "pipe"}))),
                )
                .await;
            drop(session);
            answer
        })
    };
    // Opening the writer returns once the upstream opened the FIFO: the call is in flight.
    let mut writer = tokio::task::spawn_blocking(move || std::fs::File::create(&fifo))
        .await
        .expect("join")
        .expect("open the FIFO for writing");

    // The new configuration drops `files` and adds `added`; `kept` is unchanged.
    std::fs::write(
        &config,
        format!(
            "[audit]\nenabled = false\n{kept}[[upstream]]\nname = \"added\"\nbuiltin = {{ server = \"echo\" }}\n"
        ),
    )
    .expect("rewrite config");
    hangup(&gateway);
    wait_for_reloads(&gateway.base, "applied", 1).await;

    let after = tool_names(&session).await;
    assert!(after.iter().any(|t| t == "added__echo"), "{after:?}");
    assert!(after.iter().any(|t| t == "kept__echo"), "{after:?}");
    assert!(!after.iter().any(|t| t.starts_with("files__")), "{after:?}");
    // The dropped upstream's child still serves the call it had when the reload happened.
    assert!(
        alive(files_child),
        "the in-flight call's upstream was ended"
    );

    use std::io::Write;
    writer.write_all(b"still here").expect("write the FIFO");
    drop(writer);
    let answer = parked
        .await
        .expect("join")
        .expect("the in-flight call completes after the reload");
    assert_ne!(answer.is_error, Some(true), "{answer:?}");
    assert_eq!(
        answer.content[0].as_text().map(|t| t.text.as_str()),
        Some("still here")
    );

    // Once its call finished, the dropped upstream's child is ended.
    tokio::time::timeout(Duration::from_secs(30), async {
        while alive(files_child) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the dropped upstream's child exits after its call");
    // The unchanged upstream kept its child.
    assert_eq!(pid_in(&kept_pid), kept_child);
    assert!(alive(kept_child));
    let echo = call(&session, "kept__echo", json!({"message": "same child"})).await;
    assert_ne!(echo.is_error, Some(true), "{echo:?}");

    // A configuration that does not load changes nothing.
    std::fs::write(&config, "[[upstream]]\nname = \"broken\"\nbogus = 1\n")
        .expect("rewrite config");
    hangup(&gateway);
    let stats = wait_for_reloads(&gateway.base, "failed", 1).await;
    assert_eq!(stats["applied"], 1);
    assert!(
        stats["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("bogus")),
        "{stats}"
    );
    assert_eq!(tool_names(&session).await, after);
    let added = call(&session, "added__echo", json!({"message": "still served"})).await;
    assert_ne!(added.is_error, Some(true), "{added:?}");
}

#[tokio::test]
async fn a_changed_config_file_is_applied_without_a_signal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("switchboard.toml");
    let upstream = |name: &str| {
        format!(
            "[audit]\nenabled = false\n[[upstream]]\nname = \"{name}\"\nbuiltin = {{ server = \"echo\" }}\n"
        )
    };
    std::fs::write(&config, upstream("first")).expect("write config");
    let gateway = serve(dir.path(), &config, "1").await;
    let session = client(&gateway.mcp).await;
    assert_eq!(tool_names(&session).await, ["first__echo"]);
    std::fs::write(&config, upstream("second")).expect("rewrite config");
    wait_for_reloads(&gateway.base, "applied", 1).await;
    assert_eq!(tool_names(&session).await, ["second__echo"]);
}
