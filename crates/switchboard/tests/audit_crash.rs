//! The audit log's durability promise, against the real binary: **no acknowledged call lacks
//! a record**, even when the gateway is killed with SIGKILL mid-traffic.
//!
//! Concurrent clients call `echo__echo`, each with a unique message, and note every call whose
//! answer they received. Once enough answers are in, one more call is parked in an upstream (a
//! read of a FIFO nobody writes: it is in flight for certain once the FIFO's writer opens),
//! and the gateway is killed with SIGKILL. Answers go out once a record is in the local
//! journal, so the last records may be there only: the gateway is restarted on the same data
//! directory (it ships what the killed one left before it listens), and then the store itself
//! must hold every acknowledged message, as must `GET /api/audit`. On SQLite (the default
//! store under the data directory, fsynced and with `durability = "process"`) and on
//! PostgreSQL (`SWITCHBOARD_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`, in a throwaway schema).

mod common;

use std::{collections::HashSet, path::Path};

use common::{Listening, spawn_listening};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, Executor};

const PG_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Concurrent clients.
const CLIENTS: usize = 8;
/// Acknowledged calls before the kill.
const ACKED_BEFORE_KILL: usize = 120;

fn pg_base() -> String {
    std::env::var("SWITCHBOARD_TEST_POSTGRES_URL").unwrap_or_else(|_| PG_DEFAULT.into())
}

fn with_param(url: &str, param: &str) -> String {
    if url.contains('?') {
        format!("{url}&{param}")
    } else {
        format!("{url}?{param}")
    }
}

fn config(dir: &Path, audit: &str) -> std::path::PathBuf {
    let files = dir.join("files");
    std::fs::create_dir_all(&files).expect("files");
    let text = format!(
        r#"
[[upstream]]
name = "echo"
builtin = {{ server = "echo" }}
[[upstream]]
name = "fs"
builtin = {{ server = "fs", roots = ["{files}"] }}

[audit]
{audit}
"#,
        files = files.display()
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

async fn serve(dir: &Path, config: &Path) -> Listening {
    let config = config.display().to_string();
    let data = dir.join("data").display().to_string();
    spawn_listening(
        &[
            "serve",
            "--config",
            &config,
            "--data-dir",
            &data,
            "--listen",
            "127.0.0.1:0",
        ],
        dir,
    )
    .await
}

/// One client calling until the gateway goes away; sends each acknowledged message. After
/// the kill (`killed`), a call still waiting is abandoned: rmcp's client may keep trying to
/// resume a cut response stream.
async fn caller(
    mcp: String,
    id: usize,
    marker: String,
    acked: tokio::sync::mpsc::UnboundedSender<String>,
    mut killed: tokio::sync::watch::Receiver<bool>,
) {
    let client = common::client(&mcp).await;
    for i in 0.. {
        let message = format!("{marker}-{id}-{i}");
        let request = CallToolRequestParams::new("echo__echo")
            .with_arguments(common::args(json!({ "message": message })));
        tokio::select! {
            answer = client.call_tool(request) => match answer {
                Ok(result) if result.is_error != Some(true) => {
                    if acked.send(message).is_err() {
                        return;
                    }
                }
                // The gateway is gone (or refused): this call was not acknowledged.
                _ => return,
            },
            _ = killed.wait_for(|k| *k) => return,
        }
    }
}

/// Kills the gateway under load, restarts it, checks `GET /api/audit`; returns the
/// acknowledged messages, for the caller to find in its store.
async fn crash_and_check(dir: &Path, config: &Path) -> HashSet<String> {
    let marker = format!("m{}", uuid::Uuid::new_v4().simple());
    let mut gateway = serve(dir, config).await;

    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel();
    let (kill_tx, killed) = tokio::sync::watch::channel(false);
    let callers: Vec<_> = (0..CLIENTS)
        .map(|id| {
            tokio::spawn(caller(
                gateway.mcp.clone(),
                id,
                marker.clone(),
                ack_tx.clone(),
                killed.clone(),
            ))
        })
        .collect();
    drop(ack_tx);
    let mut acked = HashSet::new();
    while acked.len() < ACKED_BEFORE_KILL {
        let message = ack_rx
            .recv()
            .await
            .expect("callers stopped before enough calls");
        acked.insert(message);
    }

    // A call certainly in flight: the upstream blocks opening the FIFO until a writer does.
    let fifo = dir.join("files/pipe");
    common::make_fifo(&fifo);
    let parked = {
        let client = common::client(&gateway.mcp).await;
        tokio::spawn(async move {
            let request = CallToolRequestParams::new("fs__read_text_file")
                .with_arguments(common::args(json!({ "path": "pipe" })));
            let answer = client.call_tool(request).await;
            drop(client);
            answer
        })
    };
    let writer = tokio::task::spawn_blocking(move || std::fs::File::create(&fifo))
        .await
        .expect("join")
        .expect("open the FIFO for writing");

    gateway.child.start_kill().expect("SIGKILL");
    gateway.child.wait().await.expect("reap");
    drop(writer);
    assert!(
        dir.join("data/audit-journal/slot-0").is_dir(),
        "the records went through the journal"
    );
    kill_tx.send_replace(true);

    for caller in callers {
        caller.await.expect("caller");
    }
    while let Some(message) = ack_rx.recv().await {
        acked.insert(message);
    }
    // The parked call was never answered (its upstream still waited on the FIFO when the
    // gateway died); its client may keep trying to resume the stream, so stop it.
    if parked.is_finished() {
        assert!(
            parked.await.expect("join").is_err(),
            "a killed gateway cannot have answered the parked call"
        );
    } else {
        parked.abort();
    }

    // Restart on the same data directory: what the killed gateway journaled is shipped
    // before the new one listens.
    let restarted = serve(dir, config).await;
    let url = format!("{}/api/audit?tool=echo__echo&limit=10000", restarted.base);
    let document: Value = reqwest::get(&url)
        .await
        .expect("GET /api/audit")
        .error_for_status()
        .expect("status")
        .json()
        .await
        .expect("json");
    let recorded: HashSet<String> = document["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["arguments"]["message"].as_str())
        .filter(|m| m.starts_with(&marker))
        .map(str::to_string)
        .collect();
    let missing: Vec<&String> = acked.difference(&recorded).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged calls have no audit record: {missing:?}",
        missing.len(),
        acked.len()
    );
    eprintln!(
        "{} acknowledged calls, {} records (unacknowledged calls may also be recorded)",
        acked.len(),
        recorded.len()
    );
    drop(restarted);
    acked
}

/// Fails unless every acknowledged message is among the stored `arguments`.
fn assert_stored(acked: &HashSet<String>, stored: Vec<String>) {
    let stored: HashSet<String> = stored
        .iter()
        .filter_map(|arguments| serde_json::from_str::<Value>(arguments).ok())
        .filter_map(|value| value["message"].as_str().map(str::to_string))
        .collect();
    let missing: Vec<&String> = acked.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged calls are not in the store: {missing:?}",
        missing.len(),
        acked.len()
    );
}

/// The `arguments` of every `echo__echo` record in the SQLite store, read directly.
async fn sqlite_stored(db: &Path) -> Vec<String> {
    let mut connection = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the SQLite store");
    let stored = sqlx::query_scalar("SELECT arguments FROM audit_log WHERE tool = 'echo__echo'")
        .fetch_all(&mut connection)
        .await
        .expect("read the SQLite store");
    let _ = connection.close().await;
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_keeps_every_acknowledged_call_through_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), "");
    let acked = crash_and_check(dir.path(), &config).await;
    assert_stored(
        &acked,
        sqlite_stored(&dir.path().join("data/audit.db")).await,
    );
}

/// `durability = "process"` skips the fsync per batch; a gateway crash must still lose nothing
/// (the records are in the journal file, in the kernel's hands, before the answers go out).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_without_fsync_keeps_every_acknowledged_call_through_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), "durability = \"process\"");
    let acked = crash_and_check(dir.path(), &config).await;
    assert_stored(
        &acked,
        sqlite_stored(&dir.path().join("data/audit.db")).await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_keeps_every_acknowledged_call_through_sigkill() {
    let base = pg_base();
    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {base} ({e}); start it (e.g. `.ci/services`) or set \
             SWITCHBOARD_TEST_POSTGRES_URL"
        )
    });
    let schema = format!("sb_audit_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .await
        .expect("create schema");
    let url = with_param(&base, &format!("options=-c%20search_path%3D{schema}"));

    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(
        dir.path(),
        &format!("store = \"postgres\"\nurl = \"{url}\""),
    );
    let acked = crash_and_check(dir.path(), &config).await;

    let stored: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT arguments FROM {schema}.audit_log WHERE tool = 'echo__echo'"
    )))
    .fetch_all(&mut admin)
    .await
    .expect("read the store");
    assert!(stored.len() >= ACKED_BEFORE_KILL);
    assert_stored(&acked, stored);
    admin
        .execute(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .await
        .expect("drop schema");
}
