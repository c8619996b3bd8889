//! Issue 11's fault "stop PostgreSQL during load", against the real binary: audit records are
//! buffered durably on local disk (the journal), shipped after recovery, and none is lost or
//! duplicated.
//!
//! The gateway reaches PostgreSQL (`SWITCHBOARD_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`, in a throwaway schema) through a loopback TCP
//! forwarder in this test. "Stopping" PostgreSQL closes every forwarded connection and
//! refuses new ones; "starting" it forwards again. Eight clients call `echo__echo` (each
//! message unique) before, during and after the outage, and every call must succeed. Then,
//! once the store has caught up (polled), the set of acknowledged messages must equal the set
//! of stored records, one row each.

mod common;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    path::Path,
    time::Duration,
};

use common::{Listening, spawn_listening};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, Executor};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
};

const PG_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";
const CLIENTS: usize = 8;
/// Acknowledged calls before the outage, during it, and after it.
const BEFORE: usize = 100;
const DURING: usize = 300;
const AFTER: usize = 100;
/// For conditions that normally hold within a second or two (the shipper's backoff is at
/// most 5 s).
const DEADLINE: Duration = Duration::from_secs(60);

fn pg_base() -> String {
    std::env::var("SWITCHBOARD_TEST_POSTGRES_URL").unwrap_or_else(|_| PG_DEFAULT.into())
}

/// Forwards loopback connections to `target` while open; closed, it drops every forwarded
/// connection and closes new ones at once.
async fn forwarder(target: SocketAddr) -> (SocketAddr, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (open, is_open) = watch::channel(true);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            if !*is_open.borrow() {
                continue;
            }
            let mut is_open = is_open.clone();
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    // Checks the current value first: a connection made just before the cut
                    // is cut too.
                    _ = is_open.wait_for(|open| !*open) => {}
                }
            });
        }
    });
    (addr, open)
}

fn config(dir: &Path, url: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[[upstream]]
name = "echo"
builtin = {{ server = "echo" }}

[audit]
store = "postgres"
url = "{url}"
"#
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// One client calling until `stop`; every call must be answered without error. Stops only
/// between calls, so every call it made is acknowledged.
async fn caller(
    mcp: String,
    id: usize,
    marker: String,
    acked: mpsc::UnboundedSender<String>,
    stop: watch::Receiver<bool>,
) {
    let client = common::client(&mcp).await;
    for i in 0.. {
        if *stop.borrow() {
            break;
        }
        let message = format!("{marker}-{id}-{i}");
        let request = CallToolRequestParams::new("echo__echo")
            .with_arguments(common::args(json!({ "message": message })));
        match client.call_tool(request).await {
            Ok(result) if result.is_error != Some(true) => {
                if acked.send(message).is_err() {
                    break;
                }
            }
            other => panic!("call {message} failed: {other:?}"),
        }
    }
    let _ = client.cancel().await;
}

/// Waits for `count` more acknowledgements.
async fn acknowledged(
    rx: &mut mpsc::UnboundedReceiver<String>,
    acked: &mut Vec<String>,
    count: usize,
) {
    let target = acked.len() + count;
    while acked.len() < target {
        let message = tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .expect("calls stopped being answered")
            .expect("callers ended early");
        acked.push(message);
    }
}

async fn backlog(gateway: &Listening) -> u64 {
    let text = reqwest::get(format!("{}/metrics", gateway.base))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix("switchboard_audit_backlog_records "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no audit backlog gauge in /metrics:\n{text}"))
}

/// Every stored `echo__echo` message carrying `marker`, with its number of rows.
async fn stored(
    admin: &mut sqlx::PgConnection,
    schema: &str,
    marker: &str,
) -> HashMap<String, usize> {
    let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT arguments FROM {schema}.audit_log WHERE tool = 'echo__echo'"
    )))
    .fetch_all(&mut *admin)
    .await
    .expect("read the store");
    let mut found = HashMap::new();
    for arguments in rows {
        let value: Value = serde_json::from_str(&arguments).expect("stored arguments");
        if let Some(message) = value["message"].as_str().filter(|m| m.starts_with(marker)) {
            *found.entry(message.to_string()).or_insert(0) += 1;
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_outage_under_load_loses_and_duplicates_nothing() {
    let base = pg_base();
    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {base} ({e}); start it (e.g. `.ci/services`) or set \
             SWITCHBOARD_TEST_POSTGRES_URL"
        )
    });
    let schema = format!("sb_outage_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .await
        .expect("create schema");

    // The gateway's URL points at the forwarder instead of PostgreSQL.
    let mut url = reqwest::Url::parse(&base).expect("PostgreSQL URL");
    let host = url.host_str().unwrap_or("127.0.0.1").to_string();
    let port = url.port().unwrap_or(5432);
    let target = tokio::net::lookup_host((host.as_str(), port))
        .await
        .expect("resolve PostgreSQL")
        .next()
        .expect("a PostgreSQL address");
    let (proxy, open) = forwarder(target).await;
    url.set_ip_host(proxy.ip()).expect("set host");
    url.set_port(Some(proxy.port())).expect("set port");
    let mut url = url.to_string();
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str(&format!("options=-c%20search_path%3D{schema}"));

    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &url);
    let config = config.display().to_string();
    let data = dir.path().join("data").display().to_string();
    let gateway = spawn_listening(
        &[
            "serve",
            "--config",
            &config,
            "--data-dir",
            &data,
            "--listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    )
    .await;

    let marker = format!("o{}", uuid::Uuid::new_v4().simple());
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop) = watch::channel(false);
    let callers: Vec<_> = (0..CLIENTS)
        .map(|id| {
            tokio::spawn(caller(
                gateway.mcp.clone(),
                id,
                marker.clone(),
                ack_tx.clone(),
                stop.clone(),
            ))
        })
        .collect();
    drop(ack_tx);
    let mut acked = Vec::new();
    acknowledged(&mut ack_rx, &mut acked, BEFORE).await;

    // PostgreSQL goes away; calls keep being answered, from the journal.
    open.send_replace(false);
    acknowledged(&mut ack_rx, &mut acked, DURING).await;
    // Records journaled after the cut cannot have reached the store.
    assert!(backlog(&gateway).await > 0, "the journal holds the backlog");

    // PostgreSQL is back; calls go on.
    open.send_replace(true);
    acknowledged(&mut ack_rx, &mut acked, AFTER).await;
    stop_tx.send_replace(true);
    for caller in callers {
        caller.await.expect("caller");
    }
    while let Some(message) = ack_rx.recv().await {
        acked.push(message);
    }

    // The shipper catches up (its backoff is bounded): poll the store itself.
    let expected: HashSet<String> = acked.iter().cloned().collect();
    assert_eq!(expected.len(), acked.len(), "messages are unique");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let found = loop {
        let found = stored(&mut admin, &schema, &marker).await;
        if found.len() >= expected.len() && backlog(&gateway).await == 0 {
            break found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the store has {} of {} records after the outage",
            found.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let recorded: HashSet<String> = found.keys().cloned().collect();
    let missing: Vec<&String> = expected.difference(&recorded).collect();
    let unexpected: Vec<&String> = recorded.difference(&expected).collect();
    let duplicated: Vec<(&String, &usize)> = found.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        missing.is_empty(),
        "acknowledged calls without a record: {missing:?}"
    );
    assert!(
        unexpected.is_empty(),
        "records of calls never made: {unexpected:?}"
    );
    assert!(
        duplicated.is_empty(),
        "records stored twice: {duplicated:?}"
    );
    eprintln!(
        "{} acknowledged calls ({DURING}+ during the outage), {} records, none missing or twice",
        acked.len(),
        found.len()
    );

    drop(gateway);
    admin
        .execute(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .await
        .expect("drop schema");
}
