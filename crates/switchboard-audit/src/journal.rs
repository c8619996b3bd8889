//! The local audit journal: an append-only file log in front of the store, so a call is
//! answered once its record is on local disk (one `write`, plus `fdatasync` with
//! `durability = "fsync"`, per batch) instead of after a database commit, and calls keep
//! being answered while the store is down (issue 11: "stop PostgreSQL during load").
//!
//! Layout: the journal directory holds slots `slot-N/`, one per running gateway, each locked
//! with `flock` on `slot-N/lock` while a gateway owns it (a second gateway on the same data
//! directory takes the next slot; a crashed one's lock goes with its process). A slot holds
//! segment files named by the global byte offset of their first frame
//! (`00000000000000000000.seg`, …, each up to [`segment_bytes`]) and `checkpoint`, the offset
//! below which every record is in the store.
//!
//! Framing: `[payload length: u32 LE][CRC-32C of the payload: u32 LE][payload]`, the payload
//! a format byte and the record as JSON. A frame cut short by a crash or power loss, or one
//! whose checksum does not match, ends the readable part of its segment: recovery truncates
//! it away (it belongs to a batch whose callers were never answered), never misparses it.
//! A frame header of zeros is where the written data ends: segments are zero-filled ahead of
//! the writer, a megabyte at a time, so that most batches overwrite allocated blocks and their
//! `fdatasync` need not commit the file system's journal for a new file size (what SQLite's
//! reused WAL and PostgreSQL's zero-filled WAL segments get too).

use std::{
    collections::BTreeSet,
    fs::{File, OpenOptions},
    io::{self, BufRead, BufReader, Read, Seek, SeekFrom},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use crc::{CRC_32_ISCSI, Crc, Table};

use crate::{error::AuditError, query::Filter, record::AuditRecord, store::NewRow};

/// Bytes before a frame's payload: its length and checksum.
const HEADER: usize = 8;
/// The payload's first byte: how the rest is encoded.
const FORMAT_JSON: u8 = 1;
/// The longest payload read back; anything claiming more is damage.
pub(crate) const MAX_FRAME_BYTES: usize = 64 << 20;
/// Segments are at most this large (smaller for a small `journal_max_bytes`).
pub(crate) const MAX_SEGMENT_BYTES: u64 = 64 << 20;
const MIN_SEGMENT_BYTES: u64 = 1 << 20;
/// How many gateways can share one journal directory.
pub(crate) const MAX_SLOTS: u32 = 64;
/// How far ahead of the writer a segment is zero-filled.
const PREALLOCATE: u64 = 1 << 20;
const SEGMENT_SUFFIX: &str = ".seg";
const CHECKPOINT: &str = "checkpoint";
const LOCK: &str = "lock";

static CRC32C: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISCSI);

/// Segment size for a journal bounded at `max_bytes`: an eighth of it (so fully shipped
/// segments are deleted well before the bound), between 1 and 64 MiB.
pub(crate) fn segment_bytes(max_bytes: u64) -> u64 {
    (max_bytes / 8).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES)
}

fn io_error(path: &Path, source: io::Error) -> AuditError {
    AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Appends `row` as one frame to `out`.
pub(crate) fn encode(row: &NewRow, out: &mut Vec<u8>) -> Result<(), AuditError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.push(FORMAT_JSON);
    if let Err(err) = serde_json::to_writer(&mut *out, row) {
        out.truncate(start);
        return Err(AuditError::Journal(format!("encoding a record: {err}")));
    }
    let payload = &out[start + HEADER..];
    let length = match u32::try_from(payload.len()) {
        Ok(length) if payload.len() <= MAX_FRAME_BYTES => length,
        _ => {
            let size = payload.len();
            out.truncate(start);
            return Err(AuditError::Journal(format!(
                "a record of {size} bytes is larger than the journal's {MAX_FRAME_BYTES}"
            )));
        }
    };
    let checksum = CRC32C.checksum(payload);
    out[start..start + 4].copy_from_slice(&length.to_le_bytes());
    out[start + 4..start + HEADER].copy_from_slice(&checksum.to_le_bytes());
    Ok(())
}

/// What reading at a frame boundary found.
enum Frame {
    /// A whole, intact record and its frame's size.
    Record(Box<NewRow>, u64),
    /// Nothing: the readable data ends here.
    End,
    /// A header of zeros: the zero-filled space after the written data.
    Zeros,
    /// Bytes that are not a whole, intact frame (a torn write or damage), and why.
    Torn(&'static str),
}

fn read_frame(reader: &mut impl BufRead) -> io::Result<Frame> {
    if reader.fill_buf()?.is_empty() {
        return Ok(Frame::End);
    }
    let mut header = [0u8; HEADER];
    match reader.read_exact(&mut header) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
            return Ok(Frame::Torn("a partial frame header"));
        }
        Err(err) => return Err(err),
    }
    if header == [0; HEADER] {
        return Ok(Frame::Zeros);
    }
    let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let checksum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let length = usize::try_from(length).unwrap_or(usize::MAX);
    if length == 0 || length > MAX_FRAME_BYTES {
        return Ok(Frame::Torn("an impossible frame length"));
    }
    let mut payload = vec![0u8; length];
    match reader.read_exact(&mut payload) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
            return Ok(Frame::Torn("a partial frame"));
        }
        Err(err) => return Err(err),
    }
    if CRC32C.checksum(&payload) != checksum {
        return Ok(Frame::Torn("a checksum mismatch"));
    }
    if payload[0] != FORMAT_JSON {
        return Ok(Frame::Torn("an unknown record format"));
    }
    match serde_json::from_slice::<NewRow>(&payload[1..]) {
        Ok(row) => Ok(Frame::Record(Box::new(row), (HEADER + length) as u64)),
        Err(_) => Ok(Frame::Torn("an unreadable record")),
    }
}

fn segment_path(dir: &Path, start: u64) -> PathBuf {
    dir.join(format!("{start:020}{SEGMENT_SUFFIX}"))
}

/// The segments in `dir`, by start offset.
fn list_segments(dir: &Path) -> Result<BTreeSet<u64>, AuditError> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
    let mut segments = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name();
        if let Some(start) = name
            .to_str()
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        {
            segments.insert(start);
        }
    }
    Ok(segments)
}

/// The offset below which every record is in the store; 0 when there is none yet. A
/// damaged checkpoint reads as 0: everything is shipped again, and the store's unique
/// record ids drop the copies.
fn read_checkpoint(dir: &Path) -> u64 {
    let path = dir.join(CHECKPOINT);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            tracing::warn!(path = %path.display(), "unreadable audit journal checkpoint; shipping the journal again");
            0
        }),
        Err(_) => 0,
    }
}

/// The slot directories under a journal directory.
pub(crate) fn slots(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut slots: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("slot-"))
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .map(|e| e.path())
        .collect();
    slots.sort();
    slots
}

/// A slot's lock: held for as long as a gateway (or a one-off shipping run) owns it.
pub(crate) struct SlotLock {
    dir: PathBuf,
    _file: File,
}

impl SlotLock {
    /// Takes the first slot under `root` that no running process holds, creating it.
    pub(crate) fn acquire(root: &Path) -> Result<SlotLock, AuditError> {
        for n in 0..MAX_SLOTS {
            if let Some(lock) = SlotLock::try_lock(&root.join(format!("slot-{n}")))? {
                return Ok(lock);
            }
        }
        Err(AuditError::Journal(format!(
            "all {MAX_SLOTS} slots of the audit journal {} are held by running gateways",
            root.display()
        )))
    }

    /// Locks `dir` (creating it), or `None` when another process holds it.
    pub(crate) fn try_lock(dir: &Path) -> Result<Option<SlotLock>, AuditError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let path = dir.join(LOCK);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(SlotLock {
                dir: dir.to_path_buf(),
                _file: file,
            })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(err) => Err(io_error(&path, err.into())),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes the slot consistent after whatever ended its last owner: deletes shipped
    /// segments, truncates a torn or damaged tail, and counts what is left to ship.
    pub(crate) fn recover(self) -> Result<Recovered, AuditError> {
        let dir = self.dir.clone();
        let checkpoint = read_checkpoint(&dir);
        let found: Vec<u64> = list_segments(&dir)?.into_iter().collect();
        let mut kept = BTreeSet::new();
        let mut records = 0u64;
        let mut last: Option<(u64, u64)> = None;
        for (i, &start) in found.iter().enumerate() {
            let path = segment_path(&dir, start);
            let next = found.get(i + 1).copied();
            // Everything in it lies below the next segment's start, all shipped.
            if next.is_some_and(|next| next <= checkpoint) {
                remove_segment(&path);
                continue;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io_error(&path, e))?;
            let length = file.metadata().map_err(|e| io_error(&path, e))?.len();
            let from = checkpoint.saturating_sub(start);
            if from >= length {
                remove_segment(&path);
                continue;
            }
            let mut reader = BufReader::with_capacity(1 << 20, &file);
            reader
                .seek(SeekFrom::Start(from))
                .map_err(|e| io_error(&path, e))?;
            let mut valid = from;
            let damage = loop {
                match read_frame(&mut reader).map_err(|e| io_error(&path, e))? {
                    Frame::Record(_, size) => {
                        valid += size;
                        records += 1;
                    }
                    Frame::End | Frame::Zeros => break None,
                    Frame::Torn(why) => break Some(why),
                }
            };
            drop(reader);
            // After the last frame only zero-fill may follow; anything else is a write that
            // never completed (or damage).
            let damage = match damage {
                Some(why) => Some(why),
                None if !zeros_from(&file, valid, length).map_err(|e| io_error(&path, e))? => {
                    Some("bytes after the last frame")
                }
                None => None,
            };
            if let Some(why) = damage {
                let dropped = length - valid;
                if next.is_none() {
                    // The last write before a crash or power loss: its callers never got
                    // an answer.
                    tracing::warn!(segment = %path.display(), dropped, why, "dropping a torn tail of the audit journal");
                } else {
                    tracing::error!(segment = %path.display(), dropped, why, "the audit journal is damaged; dropping the rest of the segment");
                }
                file.set_len(valid).map_err(|e| io_error(&path, e))?;
                file.sync_all().map_err(|e| io_error(&path, e))?;
            }
            if start + valid <= checkpoint {
                remove_segment(&path);
                continue;
            }
            kept.insert(start);
            last = Some((start, valid));
        }
        let end = last.map_or(checkpoint, |(start, len)| (start + len).max(checkpoint));
        // Reading starts at the checkpoint, or at the first segment left if that is later
        // (the checkpoint's segment was deleted after its records were shipped).
        let first = kept.first().copied().unwrap_or(end);
        let shipped = checkpoint.max(first.min(end));
        let shared = Arc::new(Shared {
            lock: self,
            segments: Mutex::new(kept),
            end: AtomicU64::new(end),
            records: AtomicU64::new(records),
            shipped: AtomicU64::new(shipped),
            shipped_records: AtomicU64::new(0),
            appended: tokio::sync::Notify::new(),
        });
        Ok(Recovered { shared, last })
    }
}

/// A slot made consistent by [`SlotLock::recover`].
pub(crate) struct Recovered {
    pub(crate) shared: Arc<Shared>,
    /// The last segment (start, length), for the writer to continue in.
    pub(crate) last: Option<(u64, u64)>,
}

/// Whether `file` holds only zeros from `from` to `to`.
fn zeros_from(file: &File, from: u64, to: u64) -> io::Result<bool> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    reader.seek(SeekFrom::Start(from))?;
    let mut left = to.saturating_sub(from);
    let mut chunk = vec![0u8; 64 << 10];
    while left > 0 {
        let want = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        let read = reader.read(&mut chunk[..want])?;
        if read == 0 {
            break;
        }
        if chunk[..read].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        left -= read as u64;
    }
    Ok(true)
}

fn remove_segment(path: &Path) {
    if let Err(err) = std::fs::remove_file(path)
        && err.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(segment = %path.display(), %err, "could not delete a shipped audit journal segment");
    }
}

/// What the journal's writer and shipper share about one slot.
pub(crate) struct Shared {
    /// Held as long as anything uses the slot.
    lock: SlotLock,
    /// Start offsets of the segment files that exist.
    segments: Mutex<BTreeSet<u64>>,
    /// Everything below this offset is written (and synced, with `fsync`).
    pub(crate) end: AtomicU64,
    /// Records below `end` since the slot was opened (those found at open included).
    pub(crate) records: AtomicU64,
    /// Everything below this offset is in the store.
    pub(crate) shipped: AtomicU64,
    /// Records shipped since the slot was opened.
    pub(crate) shipped_records: AtomicU64,
    /// Woken after each append, for the shipper.
    pub(crate) appended: tokio::sync::Notify,
}

impl Shared {
    pub(crate) fn dir(&self) -> &Path {
        self.lock.dir()
    }

    /// Records and bytes written but not yet shipped.
    pub(crate) fn backlog(&self) -> (u64, u64) {
        let records = self
            .records
            .load(Ordering::Acquire)
            .saturating_sub(self.shipped_records.load(Ordering::Acquire));
        let bytes = self
            .end
            .load(Ordering::Acquire)
            .saturating_sub(self.shipped.load(Ordering::Acquire));
        (records, bytes)
    }

    fn segments(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        // A panic while holding it cannot leave the set half-changed.
        self.segments
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// After a batch up to `offset` committed: records the offset, then deletes the segments
    /// wholly below it (those whose successor starts at or before it). A stale checkpoint (this write lost to a crash or a power loss)
    /// only means some records are shipped again and dropped by the store as duplicates,
    /// so it is renamed into place without an fsync (which would compete with the writer's).
    pub(crate) fn checkpoint(&self, offset: u64) -> Result<(), AuditError> {
        let dir = self.dir();
        let temporary = dir.join("checkpoint.tmp");
        std::fs::write(&temporary, format!("{offset}\n")).map_err(|e| io_error(&temporary, e))?;
        let path = dir.join(CHECKPOINT);
        std::fs::rename(&temporary, &path).map_err(|e| io_error(&path, e))?;
        let shipped: Vec<u64> = {
            let segments = self.segments();
            segments
                .iter()
                .zip(segments.iter().skip(1))
                .filter(|(_, next)| **next <= offset)
                .map(|(start, _)| *start)
                .collect()
        };
        for start in shipped {
            remove_segment(&segment_path(dir, start));
            self.segments().remove(&start);
        }
        Ok(())
    }
}

/// The write side: appends batches of frames to the slot's current segment.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    file: Option<File>,
    segment_len: u64,
    /// The file's length: written frames, then zero-fill.
    allocated: u64,
    /// The next frame's offset (this side alone moves it).
    end: u64,
    segment_bytes: u64,
    max_bytes: u64,
    sync: bool,
}

impl Writer {
    /// Continues in `last` (the slot's last segment, start and length) when it has room.
    pub(crate) fn new(
        shared: Arc<Shared>,
        last: Option<(u64, u64)>,
        max_bytes: u64,
        sync: bool,
    ) -> Result<Writer, AuditError> {
        let segment_bytes = segment_bytes(max_bytes);
        let end = shared.end.load(Ordering::Acquire);
        let mut writer = Writer {
            shared,
            file: None,
            segment_len: 0,
            allocated: 0,
            end,
            segment_bytes,
            max_bytes,
            sync,
        };
        if let Some((start, len)) = last
            && start + len == end
            && len < segment_bytes
        {
            let path = segment_path(writer.shared.dir(), start);
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| io_error(&path, e))?;
            writer.allocated = file.metadata().map_err(|e| io_error(&path, e))?.len();
            writer.file = Some(file);
            writer.segment_len = len;
        }
        Ok(writer)
    }

    /// Appends whole frames (`records` of them) in one write, synced when configured; once
    /// this returns `Ok` they survive what the durability setting promises.
    pub(crate) fn append(&mut self, frames: &[u8], records: u64) -> Result<(), AuditError> {
        let size = frames.len() as u64;
        let unshipped = self
            .end
            .saturating_sub(self.shared.shipped.load(Ordering::Acquire));
        if unshipped + size > self.max_bytes {
            return Err(AuditError::Journal(format!(
                "the audit journal is full: {unshipped} bytes are not yet shipped to the store \
                 (journal_max_bytes = {})",
                self.max_bytes
            )));
        }
        if self.file.is_none()
            || (self.segment_len > 0 && self.segment_len + size > self.segment_bytes)
        {
            self.rotate()?;
        }
        let written = self.write(frames);
        if let Err(err) = written {
            // The segment's tail is unknown now: cut the batch off if possible, and go on in
            // a new segment past it, so no offset is ever written twice.
            if let Some(file) = self.file.take() {
                let _ = file.set_len(self.segment_len);
            }
            self.allocated = 0;
            self.end += size;
            return Err(io_error(
                &segment_path(self.shared.dir(), self.end - size),
                err,
            ));
        }
        self.segment_len += size;
        self.end += size;
        self.shared.records.fetch_add(records, Ordering::AcqRel);
        self.shared.end.store(self.end, Ordering::Release);
        self.shared.appended.notify_one();
        Ok(())
    }

    /// Writes `frames` after the segment's data, zero-filling ahead first when they reach
    /// past it, then syncs (with `fsync`): one sync for both.
    fn write(&mut self, frames: &[u8]) -> io::Result<()> {
        let file = self
            .file
            .as_ref()
            .ok_or_else(|| io::Error::other("no open segment"))?;
        let needed = self.segment_len + frames.len() as u64;
        if needed > self.allocated {
            let target = needed.max((self.allocated + PREALLOCATE).min(self.segment_bytes));
            let zeros = vec![0u8; 64 << 10];
            let mut at = self.allocated;
            while at < target {
                let chunk =
                    usize::try_from((target - at).min(zeros.len() as u64)).unwrap_or(zeros.len());
                file.write_all_at(&zeros[..chunk], at)?;
                at += chunk as u64;
            }
            self.allocated = target;
        }
        file.write_all_at(frames, self.segment_len)?;
        if self.sync {
            file.sync_data()?;
        }
        Ok(())
    }

    /// Starts a new segment at the current end.
    fn rotate(&mut self) -> Result<(), AuditError> {
        let dir = self.shared.dir().to_path_buf();
        let path = segment_path(&dir, self.end);
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        if self.sync {
            // The new file's name must survive a power loss as well as its data.
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error(&dir, e))?;
        }
        // Registered before it holds data: a reader that sees it knows the previous segment
        // will not grow any more.
        self.shared.segments().insert(self.end);
        self.file = Some(file);
        self.segment_len = 0;
        self.allocated = 0;
        Ok(())
    }
}

/// Records read from the journal, to ship.
pub(crate) struct Batch {
    pub(crate) rows: Vec<NewRow>,
    /// The offset after the last frame read.
    pub(crate) end: u64,
}

/// The read side, for the shipper: frames in order from the checkpoint on.
pub(crate) struct Reader {
    shared: Arc<Shared>,
    position: u64,
    cursor: Option<(u64, BufReader<File>)>,
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>) -> Reader {
        let position = shared.shipped.load(Ordering::Acquire);
        Reader {
            shared,
            position,
            cursor: None,
        }
    }

    /// Up to `max` records below `limit` (the writer's end when the batch is read).
    pub(crate) fn read(&mut self, limit: u64, max: usize) -> Result<Batch, AuditError> {
        let mut rows = Vec::new();
        // Whether the cursor was opened after the last look at the segments and the limit.
        let mut fresh = false;
        while rows.len() < max && self.position < limit {
            let (start, reader) = match &mut self.cursor {
                Some(cursor) => cursor,
                None => {
                    let start = {
                        let segments = self.shared.segments();
                        match segments.range(..=self.position).next_back() {
                            Some(start) => *start,
                            None => match segments.first() {
                                Some(first) => {
                                    self.position = *first;
                                    continue;
                                }
                                None => break,
                            },
                        }
                    };
                    let path = segment_path(self.shared.dir(), start);
                    let mut file = File::open(&path).map_err(|e| io_error(&path, e))?;
                    file.seek(SeekFrom::Start(self.position - start))
                        .map_err(|e| io_error(&path, e))?;
                    fresh = true;
                    self.cursor
                        .insert((start, BufReader::with_capacity(256 << 10, file)))
                }
            };
            let start = *start;
            let frame = read_frame(reader)
                .map_err(|e| io_error(&segment_path(self.shared.dir(), start), e))?;
            match frame {
                Frame::Record(row, size) => {
                    rows.push(*row);
                    self.position += size;
                    fresh = false;
                }
                Frame::End | Frame::Zeros | Frame::Torn(_) => {
                    let next = self.shared.segments().range(start + 1..).next().copied();
                    if !fresh {
                        // The buffer may hold zero-fill (or a write in progress) read before
                        // the writer wrote there: read again, now that the segment is known
                        // finished or the limit covers this offset.
                        self.cursor = None;
                        continue;
                    }
                    match next {
                        Some(next) => {
                            if let Frame::Torn(why) = frame {
                                tracing::error!(
                                    segment = start,
                                    offset = self.position,
                                    why,
                                    "the audit journal is damaged; skipping to the next segment"
                                );
                            }
                            self.position = self.position.max(next);
                            self.cursor = None;
                        }
                        None => {
                            let why = match frame {
                                Frame::Torn(why) => why,
                                _ => "data missing",
                            };
                            // Written and synced, yet unreadable: the disk changed it.
                            self.cursor = None;
                            return Err(AuditError::Journal(format!(
                                "segment {start} of {} is damaged at offset {}: {why}",
                                self.shared.dir().display(),
                                self.position
                            )));
                        }
                    }
                }
            }
        }
        Ok(Batch {
            rows,
            end: self.position,
        })
    }
}

/// The records not yet shipped from every slot under `root` that match `filter`, newest
/// first, at most `filter.limit()`, each with its record id. Reads without a lock: segments
/// only grow, a frame being written reads as a torn end, and a segment deleted meanwhile was
/// shipped (the caller queries the store after this).
pub(crate) fn unshipped(
    root: &Path,
    filter: &Filter,
) -> Result<Vec<(AuditRecord, String)>, AuditError> {
    let limit = usize::try_from(filter.limit()).unwrap_or(usize::MAX);
    // Each record with its place in the journal: among records of the same millisecond the
    // later one is the newer (as the store's id says once shipped).
    let mut found: Vec<(AuditRecord, String, u64)> = Vec::new();
    let mut sequence = 0u64;
    let keep_newest = |found: &mut Vec<(AuditRecord, String, u64)>| {
        found.sort_by_key(|(record, _, sequence)| std::cmp::Reverse((record.time, *sequence)));
        found.truncate(limit);
    };
    for dir in slots(root) {
        let checkpoint = read_checkpoint(&dir);
        let segments: Vec<u64> = list_segments(&dir)?.into_iter().collect();
        for (i, &start) in segments.iter().enumerate() {
            if segments.get(i + 1).is_some_and(|next| *next <= checkpoint) {
                continue;
            }
            let path = segment_path(&dir, start);
            let mut file = match File::open(&path) {
                Ok(file) => file,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(io_error(&path, err)),
            };
            let from = checkpoint.saturating_sub(start);
            file.seek(SeekFrom::Start(from))
                .map_err(|e| io_error(&path, e))?;
            let mut reader = BufReader::with_capacity(256 << 10, file);
            while let Frame::Record(row, _) =
                read_frame(&mut reader).map_err(|e| io_error(&path, e))?
            {
                let record = row.to_record()?;
                sequence += 1;
                if filter.matches(&record) {
                    found.push((record, row.record_id, sequence));
                    if found.len() >= limit.saturating_mul(2).max(1024) {
                        keep_newest(&mut found);
                    }
                }
            }
        }
    }
    keep_newest(&mut found);
    Ok(found
        .into_iter()
        .map(|(record, id, _)| (record, id))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Decision, Outcome};

    pub(crate) fn row(n: u64) -> NewRow {
        NewRow {
            record_id: crate::store::new_record_id(),
            ts_ms: 1_700_000_000_000 + i64::try_from(n).unwrap_or(0),
            identity: "alice".into(),
            client: None,
            tool: "echo__echo".into(),
            upstream: Some("echo".into()),
            upstream_tool: Some("echo".into()),
            arguments_sha256: "0".repeat(64),
            arguments: format!(r#"{{"n":{n}}}"#),
            decision: Decision::Allowed,
            outcome: Outcome::Ok,
            latency_ms: 1,
            error: None,
        }
    }

    fn frames(rows: &[NewRow]) -> Vec<u8> {
        let mut out = Vec::new();
        for row in rows {
            encode(row, &mut out).expect("encode");
        }
        out
    }

    #[test]
    fn frames_round_trip_and_damage_is_detected() {
        let rows = [row(1), row(2)];
        let bytes = frames(&rows);
        let mut reader = io::Cursor::new(&bytes);
        for expected in &rows {
            match read_frame(&mut reader).expect("read") {
                Frame::Record(row, _) => assert_eq!(&*row, expected),
                _ => panic!("expected a record"),
            }
        }
        assert!(matches!(read_frame(&mut reader), Ok(Frame::End)));
        // Every cut inside the second frame reads as torn, never as a record.
        let first = bytes.len() / 2;
        for cut in first + 1..bytes.len() {
            let mut reader = io::Cursor::new(&bytes[first..cut]);
            assert!(
                matches!(read_frame(&mut reader), Ok(Frame::Torn(_))),
                "cut at {cut}"
            );
        }
        // A flipped bit anywhere in a frame is caught.
        for at in 0..first {
            let mut damaged = bytes[..first].to_vec();
            damaged[at] ^= 0x10;
            let mut reader = io::Cursor::new(&damaged);
            assert!(
                matches!(read_frame(&mut reader), Ok(Frame::Torn(_))),
                "flip at {at}"
            );
        }
        // A zero-filled tail is where the data ends, not an empty record.
        let mut reader = io::Cursor::new([0u8; 64]);
        assert!(matches!(read_frame(&mut reader), Ok(Frame::Zeros)));
    }
}
