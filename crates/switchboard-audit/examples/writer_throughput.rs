//! How many records per second the group-committing writer takes, apart from the gateway:
//! `--tasks` callers each record one call and wait for its commit, in a loop, for
//! `--secs` seconds, against a fresh SQLite file (or `--postgres URL`).
//!
//! `cargo run --release -p switchboard-audit --example writer_throughput -- --tasks 16
//! --secs 5 [--durability process|fsync]`

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::json;
use switchboard_audit::{AuditConfig, Auditor, CallRecord, Decision, Durability, Outcome};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut tasks = 16usize;
    let mut secs = 5u64;
    let mut config = AuditConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--tasks" => tasks = value.parse()?,
            "--secs" => secs = value.parse()?,
            "--durability" => {
                config.durability = match value.as_str() {
                    "process" => Durability::Process,
                    _ => Durability::Fsync,
                }
            }
            "--postgres" => {
                config.store = switchboard_audit::StoreKind::Postgres;
                config.url = Some(value);
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let dir = tempfile::tempdir()?;
    let auditor = Auditor::open(&config, dir.path())
        .await?
        .ok_or("the audit log is off")?;
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut workers = Vec::new();
    for task in 0..tasks {
        let auditor = auditor.clone();
        let done = done.clone();
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let call = CallRecord {
                    time: chrono::Utc::now(),
                    identity: format!("bench-{task}"),
                    client: Some("bench/1".into()),
                    tool: "echo".into(),
                    upstream: Some("echo".into()),
                    upstream_tool: Some("echo".into()),
                    arguments: json!({"message": "hello"}).as_object().cloned(),
                    decision: Decision::Allowed,
                    outcome: Outcome::Ok,
                    latency_ms: 0,
                    error: None,
                };
                if auditor.record(call).await.is_err() {
                    return;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for worker in workers {
        worker.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let records = done.load(Ordering::Relaxed);
    println!(
        "{records} records in {elapsed:.2} s: {:.0} records/s ({tasks} callers, {:?})",
        records as f64 / elapsed,
        config.durability
    );
    auditor.shutdown().await;
    Ok(())
}
