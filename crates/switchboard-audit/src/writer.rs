//! The group-committing writer: one task owns the store's write side, takes records from a
//! bounded queue, commits them in batches, and tells each caller when *its* batch committed.
//!
//! The invariant it serves: **no acknowledged call lacks a record**. [`Auditor::record`]
//! resolves only after the batch holding the record has committed, and the gateway releases a
//! call's response only after that; a failed commit fails the call instead. Batching keeps
//! this cheap: calls that arrive while one commit (one fsync) runs share the next one.
//!
//! Pruning (`retention_days`) runs in the same task, at start and hourly, a chunk at a time
//! with queued records committed between chunks, so it never holds callers up for long.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{AuditConfig, Location},
    error::AuditError,
    record::{
        AuditRecord, CallRecord, Redactor, arguments_sha256, canonical_json, canonical_object,
        truncate,
    },
    store::{PRUNE_CHUNK, Store, WriterConnection},
};

/// How often records older than `retention_days` are deleted (also once at start).
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

struct Pending {
    record: AuditRecord,
    /// `record.arguments` as canonical JSON, the stored text.
    arguments_json: String,
    committed: oneshot::Sender<Result<(), Arc<str>>>,
}

/// The handle the gateway records calls through. Cheap to share (`Arc`).
pub struct Auditor {
    queue: mpsc::Sender<Pending>,
    redactor: Redactor,
    max_arguments_bytes: usize,
    max_error_bytes: usize,
    store: Store,
    location: Location,
    stop: CancellationToken,
    writer: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Auditor {
    /// Opens the configured store (SQLite default: `<data_dir>/audit.db`) and starts the
    /// writer; `None` when `enabled = false`.
    pub async fn open(
        config: &AuditConfig,
        data_dir: &std::path::Path,
    ) -> Result<Option<Arc<Auditor>>, AuditError> {
        if !config.enabled {
            return Ok(None);
        }
        config.validate()?;
        let location = config.location(data_dir)?;
        let store = Store::open_with(&location, config.durability).await?;
        Auditor::start(config, store, location).map(|a| Some(Arc::new(a)))
    }

    /// Starts the writer over an open store.
    pub fn start(
        config: &AuditConfig,
        store: Store,
        location: Location,
    ) -> Result<Auditor, AuditError> {
        config.validate()?;
        let (queue, receiver) = mpsc::channel(config.max_queue);
        let stop = CancellationToken::new();
        let writer = tokio::spawn(
            Writer {
                store: store.clone(),
                connection: None,
                receiver,
                stop: stop.clone(),
                max_batch: config.max_batch,
                max_delay: Duration::from_millis(config.max_batch_delay_ms),
                retention: (config.retention_days > 0)
                    .then(|| chrono::Duration::days(i64::from(config.retention_days))),
            }
            .run(),
        );
        Ok(Auditor {
            queue,
            redactor: Redactor::new(&config.redact_keys, &config.redact_tools)?,
            max_arguments_bytes: config.max_arguments_bytes,
            max_error_bytes: config.max_error_bytes,
            store,
            location,
            stop,
            writer: tokio::sync::Mutex::new(Some(writer)),
        })
    }

    /// Where the log is (the password of a PostgreSQL URL masked in `Display`).
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The store, for queries (`GET /api/audit`).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The stored form of `call`: hashed, redacted, bounded.
    pub fn prepare(&self, call: CallRecord) -> AuditRecord {
        self.prepare_with_text(call).0
    }

    /// [`Auditor::prepare`], and the record's arguments as canonical JSON text.
    fn prepare_with_text(&self, call: CallRecord) -> (AuditRecord, String) {
        let arguments_sha256 = arguments_sha256(call.arguments.as_ref());
        let redacted = match &call.arguments {
            Some(arguments) => self.redactor.redact(&call.tool, arguments),
            None => serde_json::Map::new(),
        };
        let text = canonical_object(&redacted);
        let (arguments, text) = if text.len() > self.max_arguments_bytes {
            let marker = Value::String(format!("[TRUNCATED: {} bytes]", text.len()));
            let text = canonical_json(&marker);
            (marker, text)
        } else {
            (Value::Object(redacted), text)
        };
        let record = AuditRecord {
            id: None,
            time: call.time,
            identity: call.identity,
            client: call.client,
            tool: call.tool,
            upstream: call.upstream,
            upstream_tool: call.upstream_tool,
            arguments_sha256,
            arguments,
            decision: call.decision,
            outcome: call.outcome,
            latency_ms: call.latency_ms,
            error: call.error.map(|e| truncate(&e, self.max_error_bytes)),
        };
        (record, text)
    }

    /// Records `call`; resolves once the record is committed, or fails (the caller must then
    /// not acknowledge the call). Waits while the queue is full.
    pub async fn record(&self, call: CallRecord) -> Result<(), AuditError> {
        let (record, arguments_json) = self.prepare_with_text(call);
        let (committed, done) = oneshot::channel();
        self.queue
            .send(Pending {
                record,
                arguments_json,
                committed,
            })
            .await
            .map_err(|_| AuditError::Closed)?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(AuditError::NotCommitted(message.to_string())),
            Err(_) => Err(AuditError::Closed),
        }
    }

    /// Stops accepting records (later calls fail with [`AuditError::Closed`]), commits what
    /// is queued, and closes the store.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let writer = self.writer.lock().await.take();
        if let Some(writer) = writer
            && let Err(err) = writer.await
        {
            tracing::error!(%err, "the audit writer failed");
        }
        self.store.close().await;
    }
}

struct Writer {
    store: Store,
    /// Its own connection, kept across batches; dropped after an error and made again for
    /// the next batch (a restarted PostgreSQL, say).
    connection: Option<WriterConnection>,
    receiver: mpsc::Receiver<Pending>,
    stop: CancellationToken,
    max_batch: usize,
    max_delay: Duration,
    retention: Option<chrono::Duration>,
}

impl Writer {
    async fn run(mut self) {
        let mut prune_tick = tokio::time::interval(PRUNE_INTERVAL);
        prune_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The cutoff of a pruning run in progress.
        let mut pruning = None;
        loop {
            let first = if pruning.is_some() {
                match self.receiver.try_recv() {
                    Ok(pending) => Some(pending),
                    Err(mpsc::error::TryRecvError::Empty) => None,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            } else {
                tokio::select! {
                    biased;
                    pending = self.receiver.recv() => match pending {
                        Some(pending) => Some(pending),
                        None => break,
                    },
                    // Queued records are still committed; the queue then reports its end.
                    _ = self.stop.cancelled(), if !self.receiver.is_closed() => {
                        self.receiver.close();
                        None
                    }
                    _ = prune_tick.tick(), if self.retention.is_some() && !self.stop.is_cancelled() => {
                        pruning = self.retention.and_then(|r| Utc::now().checked_sub_signed(r));
                        None
                    }
                }
            };
            if let Some(first) = first {
                let batch = self.gather(first).await;
                self.commit(batch).await;
                continue;
            }
            if let Some(cutoff) = pruning {
                let pruned = match self.connection().await {
                    Ok(connection) => connection.prune_chunk(cutoff, PRUNE_CHUNK).await,
                    Err(err) => Err(err),
                };
                if pruned.is_err() {
                    self.connection = None;
                }
                match pruned {
                    Ok(deleted) => {
                        if deleted > 0 {
                            tracing::info!(deleted, %cutoff, "pruned old audit records");
                        }
                        if deleted < u64::from(PRUNE_CHUNK) {
                            pruning = None;
                        }
                    }
                    Err(err) => {
                        tracing::warn!(%err, "pruning the audit log failed; retrying next hour");
                        pruning = None;
                    }
                }
            }
        }
        if let Some(connection) = self.connection.take() {
            connection.close().await;
        }
    }

    /// The writer's connection, made if there is none.
    async fn connection(&mut self) -> Result<&mut WriterConnection, AuditError> {
        if self.connection.is_none() {
            self.connection = Some(self.store.writer_connection().await?);
        }
        self.connection.as_mut().ok_or(AuditError::Closed)
    }

    /// `first` and whatever else is queued, up to `max_batch`, waiting at most `max_delay`
    /// for more.
    async fn gather(&mut self, first: Pending) -> Vec<Pending> {
        let mut batch = Vec::with_capacity(self.max_batch.min(64));
        batch.push(first);
        while batch.len() < self.max_batch {
            match self.receiver.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        if batch.len() < self.max_batch && !self.max_delay.is_zero() {
            let deadline = tokio::time::Instant::now() + self.max_delay;
            while batch.len() < self.max_batch {
                match tokio::time::timeout_at(deadline, self.receiver.recv()).await {
                    Ok(Some(pending)) => batch.push(pending),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        batch
    }

    async fn commit(&mut self, batch: Vec<Pending>) {
        let (rows, waiters): (Vec<(AuditRecord, String)>, Vec<_>) = batch
            .into_iter()
            .map(|p| ((p.record, p.arguments_json), p.committed))
            .unzip();
        let result = match self.connection().await {
            Ok(connection) => connection.insert_rows(&rows).await,
            Err(err) => Err(err),
        };
        if result.is_err() {
            self.connection = None;
        }
        let result = result.map_err(|err| -> Arc<str> {
            tracing::error!(%err, records = rows.len(), "audit batch not committed");
            err.to_string().into()
        });
        for waiter in waiters {
            // A caller that went away (cancelled) no longer needs the answer.
            let _ = waiter.send(result.clone());
        }
    }
}
