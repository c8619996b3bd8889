//! Moves journaled records into the store: in order, in batches of up to `max_batch`, each
//! batch one idempotent multi-row `INSERT` (a record whose id is stored already is skipped),
//! then the checkpoint, then the segments wholly below it are deleted. While the store
//! fails it retries with a bounded exponential backoff; the calls meanwhile are answered from
//! the journal. Retention pruning runs here too, since this task owns the store's write side.
//!
//! Also here: shipping what a gateway that is no longer running left in a journal
//! ([`ship_leftovers`], run by the gateway at start and by `switchboard audit`), and queries
//! that see records still in the journal ([`query`]).

use std::{collections::HashSet, path::Path, sync::Arc, time::Duration};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::{
    error::AuditError,
    journal::{Batch, Reader, Shared, SlotLock, slots, unshipped},
    query::Filter,
    record::AuditRecord,
    store::{PRUNE_CHUNK, Store, WriterConnection},
    writer::PRUNE_INTERVAL,
};

/// The first wait after a failed batch; doubled after each further failure.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between attempts while the store is down.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a batch smaller than `max_batch` waits for more records: one store commit (an
/// fsync) and one checkpoint per record under light load would compete with the journal's own
/// fsyncs for the disk. Queries read the journal, so nobody waits for this.
const LINGER: Duration = Duration::from_millis(25);

pub(crate) struct Shipper {
    store: Store,
    /// Its own connection, kept across batches; dropped after an error and made again.
    connection: Option<WriterConnection>,
    shared: Arc<Shared>,
    /// `None` only while a read runs on the blocking pool.
    reader: Option<Reader>,
    /// A batch read but not yet committed: retried as it is after a failure.
    pending: Option<Batch>,
    max_batch: usize,
}

impl Shipper {
    pub(crate) fn new(store: Store, shared: Arc<Shared>, max_batch: usize) -> Shipper {
        Shipper {
            store,
            connection: None,
            reader: Some(Reader::new(shared.clone())),
            shared,
            pending: None,
            max_batch,
        }
    }

    async fn connection(&mut self) -> Result<&mut WriterConnection, AuditError> {
        if self.connection.is_none() {
            self.connection = Some(self.store.writer_connection().await?);
        }
        self.connection.as_mut().ok_or(AuditError::Closed)
    }

    fn shipped(&self) -> u64 {
        self.shared
            .shipped
            .load(std::sync::atomic::Ordering::Acquire)
    }

    fn end(&self) -> u64 {
        self.shared.end.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Ships one batch from below `limit`; returns how many records it held.
    async fn ship_batch(&mut self, limit: u64) -> Result<usize, AuditError> {
        if self.pending.is_none() {
            let mut reader = self.reader.take().ok_or(AuditError::Closed)?;
            let max = self.max_batch;
            // File reads (usually from the page cache) stay off the runtime's workers.
            let (reader, batch) = tokio::task::spawn_blocking(move || {
                let batch = reader.read(limit, max);
                (reader, batch)
            })
            .await
            .map_err(|e| AuditError::Journal(format!("reading the audit journal: {e}")))?;
            self.reader = Some(reader);
            let batch = batch?;
            if batch.rows.is_empty() && batch.end == self.shipped() {
                return Err(AuditError::Journal(format!(
                    "the audit journal in {} has no readable record at offset {}",
                    self.shared.dir().display(),
                    batch.end
                )));
            }
            self.pending = Some(batch);
        }
        let rows = self.pending.as_ref().map_or(0, |b| b.rows.len());
        if rows > 0 {
            let batch = self.pending.take().ok_or(AuditError::Closed)?;
            let inserted = match self.connection().await {
                Ok(connection) => connection.insert_rows(&batch.rows).await,
                Err(err) => Err(err),
            };
            self.pending = Some(batch);
            if let Err(err) = inserted {
                self.connection = None;
                return Err(err);
            }
        }
        let Some(batch) = self.pending.take() else {
            return Ok(0);
        };
        self.shared
            .shipped
            .store(batch.end, std::sync::atomic::Ordering::Release);
        self.shared
            .shipped_records
            .fetch_add(rows as u64, std::sync::atomic::Ordering::AcqRel);
        let shared = self.shared.clone();
        let checkpointed = tokio::task::spawn_blocking(move || shared.checkpoint(batch.end))
            .await
            .map_err(|e| AuditError::Journal(format!("writing the checkpoint: {e}")))
            .and_then(|r| r);
        if let Err(err) = checkpointed {
            // Not fatal: the next checkpoint covers this one, and until then a restart ships
            // these records again, which the store drops as duplicates.
            tracing::warn!(%err, "could not write the audit journal's checkpoint");
        }
        Ok(rows)
    }

    /// Ships everything written so far; stops at the first error.
    pub(crate) async fn ship_all(&mut self) -> Result<u64, AuditError> {
        let mut shipped = 0;
        loop {
            let limit = self.end();
            if self.shipped() >= limit {
                return Ok(shipped);
            }
            shipped += self.ship_batch(limit).await? as u64;
        }
    }

    pub(crate) async fn close(mut self) {
        if let Some(connection) = self.connection.take() {
            connection.close().await;
        }
    }

    /// The gateway's shipper: ships as records are journaled, retrying while the store
    /// fails, and prunes. After `stop` (the writer has stopped), ships what is left and ends;
    /// if the store fails then, the rest stays in the journal for the next start.
    pub(crate) async fn run(
        mut self,
        stop: CancellationToken,
        retention: Option<chrono::Duration>,
    ) {
        let mut prune_tick = tokio::time::interval(PRUNE_INTERVAL);
        prune_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The cutoff of a pruning run in progress.
        let mut pruning = None;
        let mut backoff = MIN_BACKOFF;
        let mut failing = false;
        loop {
            let mut limit = self.end();
            if self.shipped() < limit {
                if !failing
                    && !stop.is_cancelled()
                    && self.pending.is_none()
                    && self.shared.backlog().0 < self.max_batch as u64
                {
                    tokio::select! {
                        _ = tokio::time::sleep(LINGER) => {}
                        _ = stop.cancelled() => {}
                    }
                    limit = self.end();
                }
                match self.ship_batch(limit).await {
                    Ok(_) => {
                        if failing {
                            let (records, _) = self.shared.backlog();
                            tracing::info!(
                                backlog = records,
                                "the audit store is back; shipping the journal"
                            );
                            failing = false;
                        }
                        backoff = MIN_BACKOFF;
                    }
                    Err(err) => {
                        let (records, bytes) = self.shared.backlog();
                        if stop.is_cancelled() {
                            tracing::warn!(%err, records, bytes, "audit records stay in the journal; they are shipped at the next start");
                            break;
                        }
                        if failing {
                            tracing::debug!(%err, records, "the audit store still fails");
                        } else {
                            tracing::warn!(%err, records, "the audit store fails; calls are answered from the journal, shipping is retried");
                            failing = true;
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = stop.cancelled() => {}
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
                if pruning.is_none() {
                    continue;
                }
            } else if stop.is_cancelled() {
                break;
            }
            if let Some(cutoff) = pruning {
                // One chunk between batches, so pruning never holds shipping up for long.
                let pruned = match self.connection().await {
                    Ok(connection) => connection.prune_chunk(cutoff, PRUNE_CHUNK).await,
                    Err(err) => Err(err),
                };
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
                        self.connection = None;
                        tracing::warn!(%err, "pruning the audit log failed; retrying next hour");
                        pruning = None;
                    }
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = self.shared.appended.notified() => {}
                _ = stop.cancelled() => {}
                _ = prune_tick.tick(), if retention.is_some() && !stop.is_cancelled() => {
                    pruning = retention.and_then(|r| Utc::now().checked_sub_signed(r));
                }
            }
        }
        self.close().await;
    }
}

/// Ships what gateways that are no longer running left in the journal under `root` (every
/// slot no process holds) into `store`; returns how many records were shipped. Slots held by
/// running gateways are theirs to ship.
pub async fn ship_leftovers(
    root: &Path,
    store: &Store,
    max_batch: usize,
) -> Result<u64, AuditError> {
    let mut total = 0;
    for dir in slots(root) {
        let Some(lock) = SlotLock::try_lock(&dir)? else {
            continue;
        };
        let shared = tokio::task::spawn_blocking(move || lock.recover().map(|r| r.shared))
            .await
            .map_err(|e| AuditError::Journal(format!("recovering the audit journal: {e}")))??;
        if shared.backlog().0 == 0 {
            continue;
        }
        let mut shipper = Shipper::new(store.clone(), shared, max_batch);
        let shipped = shipper.ship_all().await;
        shipper.close().await;
        total += shipped?;
    }
    if total > 0 {
        tracing::info!(
            records = total,
            journal = %root.display(),
            "shipped audit records left in the journal"
        );
    }
    Ok(total)
}

/// Whether any slot of the journal under `root` holds records not yet in the store.
pub async fn journal_pending(root: &Path) -> Result<bool, AuditError> {
    let root = root.to_path_buf();
    let any = Filter {
        limit: Some(1),
        ..Filter::default()
    };
    tokio::task::spawn_blocking(move || unshipped(&root, &any))
        .await
        .map_err(|e| AuditError::Journal(format!("reading the audit journal: {e}")))?
        .map(|found| !found.is_empty())
}

/// The records matching `filter` in the store and, when `journal` is given, those still in
/// that journal (not yet shipped by a running gateway), newest first.
pub async fn query(
    store: &Store,
    journal: Option<&Path>,
    filter: &Filter,
) -> Result<Vec<AuditRecord>, AuditError> {
    // The journal first: a record shipped between the two reads is then found in the store
    // (a segment is deleted only after its records are stored), never in neither.
    let pending = match journal {
        Some(root) => {
            let root = root.to_path_buf();
            let filter = filter.clone();
            tokio::task::spawn_blocking(move || unshipped(&root, &filter))
                .await
                .map_err(|e| AuditError::Journal(format!("reading the audit journal: {e}")))??
        }
        None => Vec::new(),
    };
    let stored = store.query_with_ids(filter).await?;
    if pending.is_empty() {
        return Ok(stored.into_iter().map(|(record, _)| record).collect());
    }
    let ids: HashSet<&str> = stored.iter().filter_map(|(_, id)| id.as_deref()).collect();
    let mut records: Vec<AuditRecord> = pending
        .into_iter()
        .filter(|(_, id)| !ids.contains(id.as_str()))
        .map(|(record, _)| record)
        .collect();
    records.extend(stored.into_iter().map(|(record, _)| record));
    // Stable, so within a millisecond the unshipped records (the newer ones) come first, and
    // each part keeps its own newest-first order.
    records.sort_by_key(|record| std::cmp::Reverse(record.time));
    records.truncate(usize::try_from(filter.limit()).unwrap_or(usize::MAX));
    Ok(records)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::{
        config::Location,
        journal::{self, Writer},
        record::{Decision, Outcome},
        store::NewRow,
    };

    fn row(n: u64) -> NewRow {
        padded(n, 0)
    }

    /// A record whose arguments carry `pad` more bytes.
    fn padded(n: u64, pad: usize) -> NewRow {
        NewRow {
            record_id: crate::store::new_record_id(),
            ts_ms: 1_700_000_000_000 + i64::try_from(n).unwrap_or(0),
            identity: "alice".into(),
            client: None,
            tool: "echo__echo".into(),
            upstream: Some("echo".into()),
            upstream_tool: Some("echo".into()),
            arguments_sha256: "0".repeat(64),
            arguments: format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(pad)),
            decision: Decision::Allowed,
            outcome: Outcome::Ok,
            latency_ms: 1,
            error: None,
        }
    }

    /// Opens (recovers) slot 0 of the journal under `root`.
    fn open(root: &Path, max_bytes: u64) -> (Arc<Shared>, Writer) {
        let lock = SlotLock::try_lock(&root.join("slot-0"))
            .expect("lock")
            .expect("slot free");
        let recovered = lock.recover().expect("recover");
        let shared = recovered.shared;
        let writer = Writer::new(shared.clone(), recovered.last, max_bytes, true).expect("writer");
        (shared, writer)
    }

    fn append(writer: &mut Writer, numbers: std::ops::Range<u64>) -> Result<(), AuditError> {
        append_padded(writer, numbers, 0)
    }

    fn append_padded(
        writer: &mut Writer,
        numbers: std::ops::Range<u64>,
        pad: usize,
    ) -> Result<(), AuditError> {
        let mut frames = Vec::new();
        let count = numbers.end - numbers.start;
        for n in numbers {
            journal::encode(&padded(n, pad), &mut frames)?;
        }
        writer.append(&frames, count)
    }

    async fn store(dir: &Path) -> Store {
        Store::open(&Location::Sqlite(dir.join("audit.db")))
            .await
            .expect("store")
    }

    /// The `n` of every stored record, sorted (duplicates kept).
    async fn stored(store: &Store) -> Vec<u64> {
        let filter = Filter {
            limit: Some(10_000),
            ..Filter::default()
        };
        let mut numbers: Vec<u64> = store
            .query(&filter)
            .await
            .expect("query")
            .iter()
            .filter_map(|r| r.arguments.get("n").and_then(serde_json::Value::as_u64))
            .collect();
        numbers.sort_unstable();
        numbers
    }

    fn segments(slot: &Path) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(slot)
            .expect("slot")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        found.sort();
        found
    }

    use std::path::PathBuf;

    #[tokio::test]
    async fn a_torn_tail_is_dropped_and_writing_resumes_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("journal");
        let (shared, mut writer) = open(&root, 1 << 30);
        append(&mut writer, 0..3).expect("append");
        append(&mut writer, 3..5).expect("append");
        let end = shared.end.load(Ordering::Acquire);
        drop((shared, writer));

        // A crash in the middle of the next batch's write: half a frame, then nothing.
        let segment = segments(&root.join("slot-0")).pop().expect("a segment");
        let mut torn = Vec::new();
        journal::encode(&row(99), &mut torn).expect("encode");
        torn.truncate(torn.len() / 2);
        {
            use std::os::unix::fs::FileExt;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&segment)
                .expect("open");
            file.write_all_at(&torn, end).expect("write");
        }

        let (shared, mut writer) = open(&root, 1 << 30);
        assert_eq!(shared.backlog(), (5, end));
        assert_eq!(std::fs::metadata(&segment).expect("meta").len(), end);
        append(&mut writer, 5..6).expect("append after the cut");

        let store = store(dir.path()).await;
        let mut shipper = Shipper::new(store.clone(), shared.clone(), 256);
        assert_eq!(shipper.ship_all().await.expect("ship"), 6);
        shipper.close().await;
        assert_eq!(stored(&store).await, (0..6).collect::<Vec<_>>());
        assert_eq!(shared.backlog(), (0, 0));
    }

    #[tokio::test]
    async fn shipping_resumes_from_the_checkpoint_and_a_replay_stores_nothing_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("journal");
        let store = store(dir.path()).await;
        let (shared, mut writer) = open(&root, 1 << 30);
        append(&mut writer, 0..10).expect("append");

        // One batch of 4 shipped, then the gateway "crashes".
        let mut shipper = Shipper::new(store.clone(), shared.clone(), 4);
        let limit = shared.end.load(Ordering::Acquire);
        assert_eq!(shipper.ship_batch(limit).await.expect("batch"), 4);
        shipper.close().await;
        let checkpoint: u64 = std::fs::read_to_string(root.join("slot-0/checkpoint"))
            .expect("checkpoint")
            .trim()
            .parse()
            .expect("offset");
        assert!(checkpoint > 0 && checkpoint < limit);
        drop((shared, writer));

        // The restart ships only the rest.
        let (shared, writer) = open(&root, 1 << 30);
        assert_eq!(shared.backlog().0, 6);
        let mut shipper = Shipper::new(store.clone(), shared.clone(), 4);
        assert_eq!(shipper.ship_all().await.expect("ship"), 6);
        shipper.close().await;
        assert_eq!(stored(&store).await, (0..10).collect::<Vec<_>>());
        drop((shared, writer));

        // A crash between a commit and its checkpoint: the whole journal is shipped again,
        // and the store keeps one row per record.
        std::fs::write(root.join("slot-0/checkpoint"), "0\n").expect("rewind");
        let (shared, writer) = open(&root, 1 << 30);
        assert_eq!(shared.backlog().0, 10);
        let mut shipper = Shipper::new(store.clone(), shared.clone(), 3);
        assert_eq!(shipper.ship_all().await.expect("replay"), 10);
        shipper.close().await;
        assert_eq!(stored(&store).await, (0..10).collect::<Vec<_>>());
        drop((shared, writer));
        store.close().await;
    }

    #[tokio::test]
    async fn segments_rotate_are_deleted_once_shipped_and_the_bound_fails_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("journal");
        let slot = root.join("slot-0");
        let store = store(dir.path()).await;
        // 4 MiB bound: 1 MiB segments.
        let (shared, mut writer) = open(&root, 4 << 20);
        let mut n = 0;
        // ~1 KiB records, 100 per batch.
        let full = loop {
            match append_padded(&mut writer, n..n + 100, 1000) {
                Ok(()) => n += 100,
                Err(err) => break err,
            }
        };
        assert!((2500..4200).contains(&n), "{n} records");
        assert!(full.to_string().contains("journal is full"), "{full}");
        assert!(segments(&slot).len() >= 3, "{:?}", segments(&slot));
        // What is journaled reads back before it is shipped.
        let filter = Filter {
            limit: Some(5),
            ..Filter::default()
        };
        let newest = query(&store, Some(&root), &filter).await.expect("query");
        assert_eq!(newest.len(), 5);
        assert_eq!(newest[0].arguments["n"], n - 1);

        let mut shipper = Shipper::new(store.clone(), shared.clone(), 1000);
        assert_eq!(shipper.ship_all().await.expect("ship"), n);
        shipper.close().await;
        assert_eq!(segments(&slot).len(), 1, "shipped segments are deleted");
        let all = stored(&store).await;
        assert!(
            all == (0..n).collect::<Vec<_>>(),
            "{} stored, {n} written",
            all.len()
        );
        // Shipped, the journal takes records again; queries see each record once.
        append(&mut writer, n..n + 1).expect("room again");
        let newest = query(&store, Some(&root), &filter).await.expect("query");
        let numbers: Vec<u64> = newest
            .iter()
            .filter_map(|r| r.arguments["n"].as_u64())
            .collect();
        assert_eq!(numbers, vec![n, n - 1, n - 2, n - 3, n - 4]);
        drop((shared, writer));
        store.close().await;
    }

    #[tokio::test]
    async fn a_held_slot_is_left_alone_and_leftovers_are_shipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("journal");
        let store = store(dir.path()).await;
        let (shared, mut writer) = open(&root, 1 << 30);
        append(&mut writer, 0..3).expect("append");
        // Slot 0 is held (a running gateway): a second owner takes slot 1.
        let other = SlotLock::acquire(&root).expect("another slot");
        assert!(other.dir().ends_with("slot-1"));
        drop(other);
        assert_eq!(ship_leftovers(&root, &store, 256).await.expect("ship"), 0);
        drop((shared, writer));
        // Released (the gateway ended without shipping): leftovers are shipped.
        assert_eq!(ship_leftovers(&root, &store, 256).await.expect("ship"), 3);
        assert_eq!(stored(&store).await, vec![0, 1, 2]);
        assert_eq!(ship_leftovers(&root, &store, 256).await.expect("ship"), 0);
        store.close().await;
    }
}
