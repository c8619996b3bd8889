//! [`Auditor`], and the group-committing writers behind it: one owner of the durable write
//! side takes records from a bounded queue, makes them durable in batches, and tells each
//! caller when *its* batch is durable.
//!
//! The invariant it serves: **no acknowledged call lacks a record**. [`Auditor::record`]
//! resolves only after the batch holding the record is durable, and the gateway releases a
//! call's response only after that; a failure fails the call instead. Batching keeps this
//! cheap: calls that arrive while one batch is written (one fsync) share the next one.
//!
//! With the journal (the default), durable means appended to the local journal by its
//! writer thread ([`crate::journal`]); the [`crate::shipper`] copies it into the store
//! afterwards. Without it, the [`Writer`] task commits each batch to the store. Pruning
//! (`retention_days`) runs in whichever task owns the store's write side, at start and hourly,
//! a chunk at a time between batches, so it never holds records up for long.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use chrono::Utc;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{AuditConfig, Durability, Location},
    error::AuditError,
    journal::{self, Shared, SlotLock},
    query::Filter,
    record::{
        AuditRecord, CallRecord, Redactor, arguments_sha256, canonical_json, canonical_object,
        truncate,
    },
    shipper::{Shipper, ship_leftovers},
    store::{NewRow, PRUNE_CHUNK, Store, WriterConnection, new_record_id},
};

/// How often records older than `retention_days` are deleted (also once at start).
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// What a caller is told when its record's batch is durable (or why it is not).
type Committed = oneshot::Sender<Result<(), Arc<str>>>;

struct Pending {
    row: NewRow,
    committed: Committed,
}

/// A message to the journal's writer thread.
enum JournalMessage {
    /// One record, already framed by the caller (so encoding runs on the callers' threads).
    Record {
        frame: Vec<u8>,
        committed: Committed,
    },
    /// Take no more records; write what is queued and end.
    Stop,
}

/// How records reach durable storage.
enum Queue {
    /// `journal = false`: committed to the store by [`Writer`].
    Direct(mpsc::Sender<Pending>),
    /// Appended to the local journal by its writer thread, shipped by [`Shipper`].
    Journal(mpsc::Sender<JournalMessage>),
}

/// What [`Auditor::shutdown`] stops.
enum Tasks {
    Direct(tokio::task::JoinHandle<()>),
    Journal {
        /// Resolves when the writer thread has written its last batch.
        writer_done: oneshot::Receiver<()>,
        shipper: tokio::task::JoinHandle<()>,
        /// Tells the shipper to ship what is left and end.
        stop_shipper: CancellationToken,
    },
}

/// Records journaled but not yet in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    pub records: u64,
    pub bytes: u64,
}

/// The handle the gateway records calls through. Cheap to share (`Arc`).
pub struct Auditor {
    queue: Queue,
    redactor: Redactor,
    max_arguments_bytes: usize,
    max_error_bytes: usize,
    store: Store,
    location: Location,
    /// The journal's directory (every slot) and this gateway's slot, with the journal on.
    journal: Option<(PathBuf, Arc<Shared>)>,
    stop: CancellationToken,
    tasks: tokio::sync::Mutex<Option<Tasks>>,
}

impl Auditor {
    /// Opens the configured store (SQLite default: `<data_dir>/audit.db`) and, with
    /// `journal = true` (the default), the journal (`<data_dir>/audit-journal`), and starts
    /// the writer; `None` when `enabled = false`. What a gateway that is no longer running
    /// left in the journal is shipped first.
    pub async fn open(
        config: &AuditConfig,
        data_dir: &Path,
    ) -> Result<Option<Arc<Auditor>>, AuditError> {
        if !config.enabled {
            return Ok(None);
        }
        config.validate()?;
        let location = config.location(data_dir)?;
        let store = Store::open_with(&location, config.durability).await?;
        let journal = config.journal_dir(data_dir);
        Auditor::start(config, store, location, journal.as_deref())
            .await
            .map(|a| Some(Arc::new(a)))
    }

    /// Starts the writer over an open store: with `journal` (a journal directory), the
    /// journal's writer thread and shipper; without, the group-committing store writer.
    pub async fn start(
        config: &AuditConfig,
        store: Store,
        location: Location,
        journal: Option<&Path>,
    ) -> Result<Auditor, AuditError> {
        config.validate()?;
        let stop = CancellationToken::new();
        let retention = (config.retention_days > 0)
            .then(|| chrono::Duration::days(i64::from(config.retention_days)));
        let (queue, tasks, journal) = match journal {
            None => {
                let (queue, receiver) = mpsc::channel(config.max_queue);
                let writer = tokio::spawn(
                    Writer {
                        store: store.clone(),
                        connection: None,
                        receiver,
                        stop: stop.clone(),
                        max_batch: config.max_batch,
                        max_delay: Duration::from_millis(config.max_batch_delay_ms),
                        retention,
                    }
                    .run(),
                );
                (Queue::Direct(queue), Tasks::Direct(writer), None)
            }
            Some(root) => {
                let (queue, tasks, shared) = start_journal(config, &store, root, retention).await?;
                (
                    Queue::Journal(queue),
                    tasks,
                    Some((root.to_path_buf(), shared)),
                )
            }
        };
        Ok(Auditor {
            queue,
            redactor: Redactor::new(&config.redact_keys, &config.redact_tools)?,
            max_arguments_bytes: config.max_arguments_bytes,
            max_error_bytes: config.max_error_bytes,
            store,
            location,
            journal,
            stop,
            tasks: tokio::sync::Mutex::new(Some(tasks)),
        })
    }

    /// Where the log is (the password of a PostgreSQL URL masked in `Display`).
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The store. Records still in the journal are not in it yet: read through
    /// [`Auditor::query`] to see those too.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The journal's directory, when the journal is on.
    pub fn journal_dir(&self) -> Option<&Path> {
        self.journal.as_ref().map(|(root, _)| root.as_path())
    }

    /// The records matching `filter`, newest first: the store's and those still in the
    /// journal (`GET /api/audit`).
    pub async fn query(&self, filter: &Filter) -> Result<Vec<AuditRecord>, AuditError> {
        crate::shipper::query(&self.store, self.journal_dir(), filter).await
    }

    /// Records this gateway journaled that are not yet in the store; zero without a journal.
    pub fn backlog(&self) -> Backlog {
        self.journal
            .as_ref()
            .map_or_else(Backlog::default, |(_, shared)| {
                let (records, bytes) = shared.backlog();
                Backlog { records, bytes }
            })
    }

    /// The stored form of `call`: hashed, redacted, bounded.
    pub fn prepare(&self, call: CallRecord) -> AuditRecord {
        let (row, arguments) = self.prepare_row(call);
        AuditRecord {
            id: None,
            time: chrono::DateTime::from_timestamp_millis(row.ts_ms).unwrap_or_default(),
            identity: row.identity,
            client: row.client,
            tool: row.tool,
            upstream: row.upstream,
            upstream_tool: row.upstream_tool,
            arguments_sha256: row.arguments_sha256,
            arguments,
            decision: row.decision,
            outcome: row.outcome,
            latency_ms: row.latency_ms,
            error: row.error,
        }
    }

    /// The row to store for `call` (with a fresh record id), and its arguments as a value.
    fn prepare_row(&self, call: CallRecord) -> (NewRow, Value) {
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
        let row = NewRow {
            record_id: new_record_id(),
            ts_ms: call.time.timestamp_millis(),
            identity: call.identity,
            client: call.client,
            tool: call.tool,
            upstream: call.upstream,
            upstream_tool: call.upstream_tool,
            arguments_sha256,
            arguments: text,
            decision: call.decision,
            outcome: call.outcome,
            latency_ms: call.latency_ms,
            error: call.error.map(|e| truncate(&e, self.max_error_bytes)),
        };
        (row, arguments)
    }

    /// Records `call`; resolves once the record is durable (in the journal, or committed to
    /// the store without one), or fails (the caller must then not acknowledge the call).
    /// Waits while the queue is full.
    pub async fn record(&self, call: CallRecord) -> Result<(), AuditError> {
        let (row, _) = self.prepare_row(call);
        let (committed, done) = oneshot::channel();
        match &self.queue {
            Queue::Direct(queue) => queue
                .send(Pending { row, committed })
                .await
                .map_err(|_| AuditError::Closed)?,
            Queue::Journal(queue) => {
                let mut frame = Vec::with_capacity(512);
                journal::encode(&row, &mut frame)?;
                queue
                    .send(JournalMessage::Record { frame, committed })
                    .await
                    .map_err(|_| AuditError::Closed)?;
            }
        }
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(AuditError::NotCommitted(message.to_string())),
            Err(_) => Err(AuditError::Closed),
        }
    }

    /// Stops accepting records (later calls fail with [`AuditError::Closed`]), makes what is
    /// queued durable, ships the journal to the store (what cannot be shipped now, the store
    /// being down, is shipped at the next start), and closes the store.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let tasks = self.tasks.lock().await.take();
        match tasks {
            Some(Tasks::Direct(writer)) => {
                if let Err(err) = writer.await {
                    tracing::error!(%err, "the audit writer failed");
                }
            }
            Some(Tasks::Journal {
                writer_done,
                shipper,
                stop_shipper,
            }) => {
                if let Queue::Journal(queue) = &self.queue {
                    // Fails only if the writer thread has already ended.
                    let _ = queue.send(JournalMessage::Stop).await;
                }
                let _ = writer_done.await;
                stop_shipper.cancel();
                if let Err(err) = shipper.await {
                    tracing::error!(%err, "the audit journal's shipper failed");
                }
            }
            None => {}
        }
        self.store.close().await;
    }
}

impl Drop for Auditor {
    /// Without a [`shutdown`](Auditor::shutdown) (a test, a library user), the journal's
    /// shipper still ships what is written and then ends.
    fn drop(&mut self) {
        if let Ok(mut tasks) = self.tasks.try_lock()
            && let Some(Tasks::Journal { stop_shipper, .. }) = tasks.as_mut()
        {
            stop_shipper.cancel();
        }
    }
}

/// Ships leftovers, takes a slot, and starts its writer thread and shipper.
async fn start_journal(
    config: &AuditConfig,
    store: &Store,
    root: &Path,
    retention: Option<chrono::Duration>,
) -> Result<(mpsc::Sender<JournalMessage>, Tasks, Arc<Shared>), AuditError> {
    std::fs::create_dir_all(root).map_err(|source| AuditError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    // A crashed gateway's records reach the store before this one serves (a failure here
    // is not fatal: this gateway's shipper, or the next start, ships them).
    if let Err(err) = ship_leftovers(root, store, config.max_batch).await {
        tracing::warn!(%err, "could not ship the audit records left in the journal; retrying later");
    }
    let root_owned = root.to_path_buf();
    let journal::Recovered { shared, last } = tokio::task::spawn_blocking(move || {
        SlotLock::acquire(&root_owned).and_then(SlotLock::recover)
    })
    .await
    .map_err(|e| AuditError::Journal(format!("opening the audit journal: {e}")))??;
    let writer = journal::Writer::new(
        shared.clone(),
        last,
        config.journal_max_bytes,
        config.durability == Durability::Fsync,
    )?;
    let (queue, receiver) = mpsc::channel(config.max_queue);
    let (done_tx, writer_done) = oneshot::channel();
    let thread = JournalThread {
        writer,
        receiver,
        runtime: tokio::runtime::Handle::current(),
        max_batch: config.max_batch,
        max_delay: Duration::from_millis(config.max_batch_delay_ms),
    };
    std::thread::Builder::new()
        .name("audit-journal".into())
        .spawn(move || {
            thread.run();
            let _ = done_tx.send(());
        })
        .map_err(|source| AuditError::Io {
            path: root.to_path_buf(),
            source,
        })?;
    let stop_shipper = CancellationToken::new();
    let shipper = tokio::spawn(
        Shipper::new(store.clone(), shared.clone(), config.max_batch)
            .run(stop_shipper.clone(), retention),
    );
    Ok((
        queue,
        Tasks::Journal {
            writer_done,
            shipper,
            stop_shipper,
        },
        shared,
    ))
}

/// The journal's writer: a thread of its own, because each batch is a blocking `write` and,
/// with `fsync`, an `fdatasync` that must not hold a runtime worker. Group commit as in the
/// store writer: it takes what queued while the previous batch was written, writes it with
/// one `write`, syncs, and answers every caller in the batch.
struct JournalThread {
    writer: journal::Writer,
    receiver: mpsc::Receiver<JournalMessage>,
    runtime: tokio::runtime::Handle,
    max_batch: usize,
    max_delay: Duration,
}

impl JournalThread {
    fn run(mut self) {
        let mut frames = Vec::with_capacity(64 << 10);
        let mut waiters: Vec<Committed> = Vec::with_capacity(self.max_batch.min(256));
        while let Some(first) = self.receiver.blocking_recv() {
            self.take(first, &mut frames, &mut waiters);
            while waiters.len() < self.max_batch {
                match self.receiver.try_recv() {
                    Ok(message) => self.take(message, &mut frames, &mut waiters),
                    Err(_) => break,
                }
            }
            if !waiters.is_empty() && waiters.len() < self.max_batch && !self.max_delay.is_zero() {
                let deadline = tokio::time::Instant::now() + self.max_delay;
                let runtime = self.runtime.clone();
                runtime.block_on(async {
                    while waiters.len() < self.max_batch {
                        match tokio::time::timeout_at(deadline, self.receiver.recv()).await {
                            Ok(Some(message)) => self.take(message, &mut frames, &mut waiters),
                            Ok(None) | Err(_) => break,
                        }
                    }
                });
            }
            if waiters.is_empty() {
                continue;
            }
            let result =
                self.writer
                    .append(&frames, waiters.len() as u64)
                    .map_err(|err| -> Arc<str> {
                        tracing::error!(%err, records = waiters.len(), "audit batch not journaled");
                        err.to_string().into()
                    });
            for waiter in waiters.drain(..) {
                // A caller that went away (cancelled) no longer needs the answer.
                let _ = waiter.send(result.clone());
            }
            frames.clear();
        }
    }

    fn take(
        &mut self,
        message: JournalMessage,
        frames: &mut Vec<u8>,
        waiters: &mut Vec<Committed>,
    ) {
        match message {
            JournalMessage::Record { frame, committed } => {
                frames.extend_from_slice(&frame);
                waiters.push(committed);
            }
            // Queued records are still written; the queue then reports its end.
            JournalMessage::Stop => self.receiver.close(),
        }
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
        let (rows, waiters): (Vec<NewRow>, Vec<_>) =
            batch.into_iter().map(|p| (p.row, p.committed)).unzip();
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::record::{Decision, Outcome};

    fn call(n: u64) -> CallRecord {
        CallRecord {
            time: Utc::now(),
            identity: "alice".into(),
            client: None,
            tool: "echo__echo".into(),
            upstream: Some("echo".into()),
            upstream_tool: Some("echo".into()),
            arguments: json!({ "n": n, "token": "secret" }).as_object().cloned(),
            decision: Decision::Allowed,
            outcome: Outcome::Ok,
            latency_ms: 1,
            error: None,
        }
    }

    fn numbers(records: &[AuditRecord]) -> Vec<u64> {
        let mut numbers: Vec<u64> = records
            .iter()
            .filter_map(|r| r.arguments["n"].as_u64())
            .collect();
        numbers.sort_unstable();
        numbers
    }

    #[tokio::test]
    async fn journaled_records_are_read_at_once_and_shipped_by_shutdown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = AuditConfig {
            max_batch_delay_ms: 1,
            ..AuditConfig::default()
        };
        let auditor = Auditor::open(&config, dir.path())
            .await
            .expect("open")
            .expect("enabled");
        assert_eq!(
            auditor.journal_dir(),
            Some(dir.path().join("audit-journal").as_path())
        );
        let calls = (0..20).map(|n| auditor.record(call(n)));
        // Concurrently, so they share batches.
        for recorded in futures::future::join_all(calls).await {
            recorded.expect("journaled");
        }
        // Answered once journaled: a query sees every record, shipped or not, once.
        let records = auditor.query(&Filter::default()).await.expect("query");
        assert_eq!(numbers(&records), (0..20).collect::<Vec<_>>());
        assert_eq!(records[0].arguments["token"], crate::record::REDACTED);

        auditor.shutdown().await;
        assert_eq!(auditor.backlog(), Backlog::default());
        assert!(matches!(
            auditor.record(call(99)).await,
            Err(AuditError::Closed)
        ));
        let store = Store::open_existing(auditor.location())
            .await
            .expect("store");
        let stored = store.query(&Filter::default()).await.expect("query");
        assert_eq!(numbers(&stored), (0..20).collect::<Vec<_>>());
        store.close().await;
    }

    #[tokio::test]
    async fn without_the_journal_records_are_in_the_store_when_answered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = AuditConfig {
            journal: false,
            ..AuditConfig::default()
        };
        let auditor = Auditor::open(&config, dir.path())
            .await
            .expect("open")
            .expect("enabled");
        auditor.record(call(1)).await.expect("committed");
        let stored = auditor
            .store()
            .query(&Filter::default())
            .await
            .expect("query");
        assert_eq!(numbers(&stored), vec![1]);
        assert!(!dir.path().join("audit-journal").exists());
        auditor.shutdown().await;
    }
}
