//! SQLite specifics: the authorizer that backs read-only mode, and the seeded demo database.
//!
//! A read-only connection (`SQLITE_OPEN_READONLY`) plus `PRAGMA query_only` already stop
//! writes to the main file. The authorizer closes what those leave open: `ATTACH` (which
//! could create or write another file), PRAGMAs that change settings (`writable_schema`,
//! `journal_mode`, …) and `load_extension()` (native code). It is installed on every pooled
//! connection right after sqlx has applied its own connection PRAGMAs, together with the
//! progress handler that enforces the statement timeout.

use std::{
    ffi::{CStr, c_char, c_int, c_void},
    path::Path,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use libsqlite3_sys as ffi;
use sqlx::{
    Connection, SqliteConnection,
    sqlite::{SqliteConnectOptions, SqliteJournalMode},
};

use serde_json::Value;

use crate::{
    error::SqlError,
    held::HeldConnection,
    output::ColumnInfo,
    values::{self, SqliteClass, StoredCell},
};

/// PRAGMAs that only read the schema; the describe tool reads through their table-valued
/// forms (`pragma_table_info(?)`). Every other PRAGMA is refused.
const READABLE_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
];

/// SQL functions that touch the filesystem or load code (`readfile`/`writefile`/`edit` come
/// from the CLI's fileio extension, refused in case an embedding registers them).
const DENIED_FUNCTIONS: &[&str] = &[
    "load_extension",
    "readfile",
    "writefile",
    "edit",
    "fts3_tokenizer",
];

fn c_str<'a>(ptr: *const c_char) -> Option<&'a str> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: SQLite passes NUL-terminated strings valid for the duration of the callback.
    unsafe { CStr::from_ptr(ptr) }.to_str().ok()
}

/// The authorizer callback (see <https://sqlite.org/c3ref/set_authorizer.html>).
extern "C" fn authorize(
    _user: *mut c_void,
    action: c_int,
    arg1: *const c_char,
    arg2: *const c_char,
    _db_name: *const c_char,
    _trigger: *const c_char,
) -> c_int {
    match action {
        ffi::SQLITE_ATTACH | ffi::SQLITE_DETACH => ffi::SQLITE_DENY,
        ffi::SQLITE_PRAGMA => {
            let name = c_str(arg1).unwrap_or_default().to_ascii_lowercase();
            if READABLE_PRAGMAS.contains(&name.as_str()) {
                ffi::SQLITE_OK
            } else {
                ffi::SQLITE_DENY
            }
        }
        ffi::SQLITE_FUNCTION => {
            let name = c_str(arg2).unwrap_or_default().to_ascii_lowercase();
            if DENIED_FUNCTIONS.contains(&name.as_str()) {
                ffi::SQLITE_DENY
            } else {
                ffi::SQLITE_OK
            }
        }
        _ => ffi::SQLITE_OK,
    }
}

/// The name under which each connection's [`Deadline`] is attached to its `sqlite3` handle
/// (`sqlite3_set_clientdata`).
const DEADLINE_KEY: &CStr = c"switchboard.deadline";

/// How many virtual-machine instructions run between two deadline checks.
const PROGRESS_OPS: c_int = 10_000;

/// Nanoseconds since a fixed instant of this process (never 0 once armed).
fn now_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A connection's statement deadline, shared between the progress handler (installed once
/// per connection) and the queries run on the connection: nanoseconds on [`now_nanos`]'s
/// clock, 0 = none.
#[derive(Clone)]
pub(crate) struct Deadline(Arc<AtomicU64>);

impl Deadline {
    /// Arms the deadline `timeout` from now.
    fn arm(&self, timeout: Duration) {
        let at = now_nanos()
            .saturating_add(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX))
            .max(1);
        self.0.store(at, Ordering::Release);
    }

    /// Clears the deadline. Only call once the statement is known to have finished: while
    /// one may still be running on the worker, the deadline must stay armed.
    pub(crate) fn clear(&self) {
        self.0.store(0, Ordering::Release);
    }
}

/// The progress handler: interrupts the running statement once its deadline has passed.
fn within_deadline(deadline: &AtomicU64) -> bool {
    let at = deadline.load(Ordering::Acquire);
    at == 0 || now_nanos() < at
}

/// Drops the [`Deadline`] reference held by the connection's client data (SQLite calls this
/// when the connection closes).
unsafe extern "C" fn drop_deadline(ptr: *mut c_void) {
    if !ptr.is_null() {
        // SAFETY: `ptr` came from `Arc::into_raw` in `prepare_connection`, and SQLite calls
        // the destructor once.
        drop(unsafe { Arc::from_raw(ptr.cast::<AtomicU64>().cast_const()) });
    }
}

/// Prepares a new pooled connection (called from the pool's `after_connect`, once per
/// connection): installs the authorizer that backs read-only mode, and the progress handler
/// that enforces the statement timeout through the connection's [`Deadline`], which is
/// attached to the handle so that [`arm`] finds it without another round trip.
pub(crate) async fn prepare_connection(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is the live handle of this connection, held locked for the call; the
    // callback is a plain function that touches no Rust state and never unwinds.
    let rc = unsafe { ffi::sqlite3_set_authorizer(db, Some(authorize), std::ptr::null_mut()) };
    if rc != ffi::SQLITE_OK {
        return Err(sqlx::Error::Protocol(format!(
            "could not install the SQLite authorizer (code {rc})"
        )));
    }
    let deadline = Arc::new(AtomicU64::new(0));
    let raw = Arc::into_raw(Arc::clone(&deadline));
    // SAFETY: as above; SQLite owns the reference passed here and releases it through
    // `drop_deadline` when the connection closes (or immediately if the call fails).
    let rc = unsafe {
        ffi::sqlite3_set_clientdata(
            db,
            DEADLINE_KEY.as_ptr(),
            raw.cast_mut().cast(),
            Some(drop_deadline),
        )
    };
    if rc != ffi::SQLITE_OK {
        return Err(sqlx::Error::Protocol(format!(
            "could not attach the statement deadline (code {rc})"
        )));
    }
    handle.set_progress_handler(PROGRESS_OPS, move || within_deadline(&deadline));
    Ok(())
}

/// Arms the connection's statement deadline, `timeout` from now, in one hand-off to the
/// worker thread.
pub(crate) async fn arm(
    conn: &mut SqliteConnection,
    timeout: Duration,
) -> Result<Deadline, sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is this connection's live handle, locked for the duration.
    let deadline = unsafe { deadline_of(db) }?;
    deadline.arm(timeout);
    Ok(deadline)
}

/// The connection's [`Deadline`], as attached by [`prepare_connection`].
///
/// # Safety
/// `db` must be a live handle prepared by [`prepare_connection`], used by no other thread
/// during the call.
pub(crate) unsafe fn deadline_of(db: *mut ffi::sqlite3) -> Result<Deadline, sqlx::Error> {
    // SAFETY: the client data was set by `prepare_connection` from `Arc::into_raw` and stays
    // valid until the connection closes, which cannot happen while the caller holds it; the
    // count is incremented before `from_raw` so that the connection keeps its own reference.
    unsafe {
        let ptr = ffi::sqlite3_get_clientdata(db, DEADLINE_KEY.as_ptr())
            .cast::<AtomicU64>()
            .cast_const();
        if ptr.is_null() {
            return Err(sqlx::Error::Protocol(
                "the SQLite connection has no statement deadline".into(),
            ));
        }
        Arc::increment_strong_count(ptr);
        Ok(Deadline(Arc::from_raw(ptr)))
    }
}

/// What a row reader is told to do with the next row (see [`RowSink`]).
pub(crate) enum RowStep {
    /// Before the requested offset: step past it without reading its cells.
    Skip,
    /// Read its cells and [`RowSink::push`] them.
    Take,
    /// A limit is reached: stop reading.
    Stop,
}

/// Where a query's rows go, row by row (the paging and size limits live there).
pub(crate) trait RowSink {
    fn next_row(&mut self) -> RowStep;
    /// Adds one row's cells; false when the row did not fit and reading should stop.
    fn push(&mut self, cells: Vec<Value>) -> bool;
    /// Forgets every row taken so far: the statement is about to run again from the start.
    fn restart(&mut self);
}

/// How long a statement runs on the calling task's thread before the rest of it moves off.
///
/// Handing a runtime worker's other tasks to another thread (`block_in_place`) costs thread
/// wake-ups worth as much CPU as a point lookup itself: done on every call, it made point
/// lookups 12–17% slower at c=1 and 30% slower at c=8. Most statements finish well within this
/// budget, in place. One still reading rows when it runs out goes on under `block_in_place`
/// from the next row, so a worker is blocked for about this long at most, which is about what
/// serialising a 1,000-row answer takes anyway.
pub(crate) const INLINE_BUDGET: Duration = Duration::from_millis(1);

/// How long one step of a statement (SQLite's work towards its next row: a sort, a scan, an
/// aggregate) may run in place before it is interrupted and the statement runs again from the
/// start under `block_in_place`, with what is left of its timeout. The rows of the
/// interrupted run are discarded: none has reached the caller, and the statement only reads,
/// so running it again changes nothing but the time. This is longer than [`INLINE_BUDGET`] so
/// that a thread descheduled in the middle of a short step is not mistaken for a long one.
pub(crate) const INLINE_STEP_LIMIT: Duration = Duration::from_millis(5);

/// Where a statement may run: in place within budgets, or off the runtime's worker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement {
    /// See [`INLINE_BUDGET`].
    pub budget: Duration,
    /// See [`INLINE_STEP_LIMIT`].
    pub step_limit: Duration,
}

impl Placement {
    /// What [`read_rows`] is given outside tests.
    pub(crate) const DEFAULT: Placement = Placement {
        budget: INLINE_BUDGET,
        step_limit: INLINE_STEP_LIMIT,
    };
}

/// Runs one read-only statement on the connection's own handle and feeds its rows to
/// `sink`, converting each cell straight from SQLite's storage with its declared type.
///
/// Why not sqlx's row stream: sqlx-sqlite runs statements on a worker thread and sends every
/// row back through a channel with a copy of each value (`sqlite3_value_dup`), which for a
/// 1,000-row answer costs more than SQLite's own work. Here the connection's handle is held
/// locked for good (see `held`), and the statement is prepared, stepped and finalized
/// directly on the caller's thread. The statement deadline is armed as for every call, so
/// the progress handler still interrupts a statement that runs too long. On a multi-threaded runtime a statement
/// that outlasts its [`Placement`] moves under `block_in_place`, so a long statement never
/// holds up the runtime's other tasks for long.
pub(crate) fn read_rows(
    conn: &mut HeldConnection,
    timeout: Duration,
    placement: Placement,
    sql: &str,
    params: &[Value],
    sink: &mut (dyn RowSink + Send),
) -> Result<Vec<ColumnInfo>, ReadError> {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    // SAFETY: the connection's handle is held locked for the connection's life, and `&mut` on
    // the connection keeps every other thread off it for the call.
    let result = unsafe {
        run_placed(
            conn,
            timeout,
            multi_thread.then_some(placement),
            sql,
            params,
            sink,
        )
    };
    // Every statement is finalized or reset by now: nothing is left running on this connection.
    conn.deadline.clear();
    result
}

/// [`read_rows`] on the locked handle: in place within `placement` (none: in place to the
/// deadline, as on a current-thread runtime, which has no other thread to move to), and
/// otherwise under `block_in_place`.
///
/// # Safety
/// No other thread may use `conn`'s handle during the call.
unsafe fn run_placed(
    conn: &mut HeldConnection,
    timeout: Duration,
    placement: Option<Placement>,
    sql: &str,
    params: &[Value],
    sink: &mut (dyn RowSink + Send),
) -> Result<Vec<ColumnInfo>, ReadError> {
    let started = Instant::now();
    let db = conn.raw();
    let (cache, deadline) = (&mut conn.statements, &conn.deadline);
    // A timeout within the step limit interrupts before the limit would: in place it is.
    let Some(placement) = placement.filter(|p| timeout > p.step_limit) else {
        deadline.arm(timeout);
        // SAFETY: per the contract.
        return unsafe { run_whole(db, cache, sql, params, sink) };
    };
    deadline.arm(placement.step_limit);
    // SAFETY: per the contract.
    let in_place =
        unsafe { run_in_place(db, cache, sql, params, sink, started + placement.budget) };
    let left = || timeout.saturating_sub(started.elapsed());
    match in_place {
        Ok(InPlace::Finished(columns)) => Ok(columns),
        // Past the budget between two rows: the rest, from the next row, off the worker.
        Ok(InPlace::Paused(mut statement)) => {
            deadline.arm(left());
            tokio::task::block_in_place(|| {
                // SAFETY: per the contract.
                unsafe { statement.step_rows(db, sink, None) }?;
                Ok(statement.finish(cache, sql))
            })
        }
        // One step past the step limit: the whole statement again, off the worker.
        Err(ReadError::Interrupted) => {
            sink.restart();
            deadline.arm(left());
            // SAFETY: per the contract.
            tokio::task::block_in_place(|| unsafe { run_whole(db, cache, sql, params, sink) })
        }
        Err(err) => Err(err),
    }
}

/// How a statement's run in place ended.
enum InPlace {
    Finished(Vec<ColumnInfo>),
    /// Out of time between two rows; the statement goes on from the next.
    Paused(Statement),
}

/// Prepares `sql`, binds `params`, and steps rows into `sink` until the last or until
/// `until` has passed.
///
/// # Safety
/// `db` must be a live handle used by no other thread during the call.
unsafe fn run_in_place(
    db: *mut ffi::sqlite3,
    cache: &mut StatementCache,
    sql: &str,
    params: &[Value],
    sink: &mut (dyn RowSink + Send),
    until: Instant,
) -> Result<InPlace, ReadError> {
    // SAFETY: per the contract.
    let Some(mut statement) = (unsafe { Statement::prepare(db, cache, sql, params) })? else {
        return Ok(InPlace::Finished(Vec::new()));
    };
    // SAFETY: per the contract.
    Ok(
        match unsafe { statement.step_rows(db, sink, Some(until)) }? {
            Stepped::Done => InPlace::Finished(statement.finish(cache, sql)),
            Stepped::Paused => InPlace::Paused(statement),
        },
    )
}

/// Prepares `sql`, binds `params`, and steps every row into `sink`, in place.
///
/// # Safety
/// `db` must be a live handle used by no other thread during the call.
unsafe fn run_whole(
    db: *mut ffi::sqlite3,
    cache: &mut StatementCache,
    sql: &str,
    params: &[Value],
    sink: &mut (dyn RowSink + Send),
) -> Result<Vec<ColumnInfo>, ReadError> {
    // SAFETY: per the contract.
    let Some(mut statement) = (unsafe { Statement::prepare(db, cache, sql, params) })? else {
        return Ok(Vec::new());
    };
    // SAFETY: per the contract.
    unsafe { statement.step_rows(db, sink, None) }?;
    Ok(statement.finish(cache, sql))
}

/// How [`read_rows`] fails; the caller maps it to a [`SqlError`] with its limits.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The engine's message and extended result code.
    Engine(String, c_int),
    /// The progress handler stopped the statement at its deadline.
    Interrupted,
    Rejected(String),
    InvalidInput(String),
}

/// The engine's current error on `db`.
///
/// # Safety
/// `db` must be a live handle used by no other thread.
unsafe fn engine_error(db: *mut ffi::sqlite3) -> ReadError {
    // SAFETY: per the contract; the message is copied before any other call on `db`.
    let (message, code) = unsafe {
        (
            c_str(ffi::sqlite3_errmsg(db))
                .unwrap_or("unknown SQLite error")
                .to_string(),
            ffi::sqlite3_extended_errcode(db),
        )
    };
    if code & 0xff == ffi::SQLITE_INTERRUPT {
        ReadError::Interrupted
    } else {
        ReadError::Engine(message, code)
    }
}

/// Finalizes a prepared statement when dropped, whichever way the reader returns.
struct Finalize(*mut ffi::sqlite3_stmt);

impl Drop for Finalize {
    fn drop(&mut self) {
        // SAFETY: the pointer came from a successful prepare and is finalized exactly once.
        unsafe { ffi::sqlite3_finalize(self.0) };
    }
}

/// How many prepared statements a connection keeps for reuse.
pub(crate) const CACHED_STATEMENTS: usize = 32;

/// A connection's prepared statements, kept by their SQL text for the next call with the
/// same text (most recently used last). Preparing was 14.5% of a point lookup's instructions.
/// A kept statement has been reset and its bindings cleared. SQLite re-prepares it by itself
/// if the schema changes (which runs the authorizer again), so reuse changes nothing but the
/// time. Dropped (finalized) before its connection closes: see `held::HeldConnection`.
#[derive(Default)]
pub(crate) struct StatementCache {
    kept: Vec<(Box<str>, Finalize)>,
}

// SAFETY: the statements belong to one connection, which one thread at a time uses (the pool
// lends it to one caller), and SQLite allows a statement to move between threads so.
unsafe impl Send for StatementCache {}

impl StatementCache {
    fn take(&mut self, sql: &str) -> Option<Finalize> {
        let at = self.kept.iter().rposition(|(text, _)| &**text == sql)?;
        Some(self.kept.remove(at).1)
    }

    /// Keeps `stmt`, reset, for `sql`; the least recently used goes when full.
    fn keep(&mut self, sql: &str, stmt: Finalize) {
        // SAFETY: `stmt` is a live statement of the caller's connection, used by no other
        // thread; resetting ends its run and clearing drops the bound values.
        unsafe {
            ffi::sqlite3_reset(stmt.0);
            ffi::sqlite3_clear_bindings(stmt.0);
        }
        if self.kept.len() >= CACHED_STATEMENTS {
            self.kept.remove(0);
        }
        self.kept.push((sql.into(), stmt));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.kept.len()
    }
}

/// Prepares `sql`, which must hold one statement (kept for reuse: `SQLITE_PREPARE_PERSISTENT`);
/// `None` when it holds only whitespace or comments.
///
/// # Safety
/// `db` must be a live handle used by no other thread during the call.
unsafe fn compile(db: *mut ffi::sqlite3, sql: &str) -> Result<Option<Finalize>, ReadError> {
    let len = c_int::try_from(sql.len())
        .map_err(|_| ReadError::InvalidInput("the statement is too long".into()))?;
    let mut raw: *mut ffi::sqlite3_stmt = std::ptr::null_mut();
    let mut tail: *const c_char = std::ptr::null();
    // SAFETY: `sql` outlives the call and its byte length is passed (no NUL needed).
    let rc = unsafe {
        ffi::sqlite3_prepare_v3(
            db,
            sql.as_ptr().cast(),
            len,
            ffi::SQLITE_PREPARE_PERSISTENT as _,
            &mut raw,
            &mut tail,
        )
    };
    if rc != ffi::SQLITE_OK {
        if !raw.is_null() {
            drop(Finalize(raw));
        }
        // SAFETY: per the contract.
        return Err(unsafe { engine_error(db) });
    }
    if raw.is_null() {
        // Only whitespace or comments: no statement, no rows.
        return Ok(None);
    }
    let stmt = Finalize(raw);
    // What follows the first statement must hold no other one (the classifier already
    // refused such input; this holds even if it had not).
    let consumed = (tail as usize).saturating_sub(sql.as_ptr() as usize);
    if let Some(rest) = sql.get(consumed..)
        && !rest.trim().is_empty()
        && !rest
            .trim_start_matches([';', ' ', '\t', '\r', '\n'])
            .is_empty()
    {
        let rest_len = c_int::try_from(rest.len()).unwrap_or(c_int::MAX);
        let mut next: *mut ffi::sqlite3_stmt = std::ptr::null_mut();
        // SAFETY: as above; the second statement is only checked for existence.
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(
                db,
                rest.as_ptr().cast(),
                rest_len,
                &mut next,
                std::ptr::null_mut(),
            )
        };
        let another = rc != ffi::SQLITE_OK || !next.is_null();
        if !next.is_null() {
            drop(Finalize(next));
        }
        if another {
            return Err(ReadError::Rejected(
                "only one statement per call is allowed; send the statements one at a time".into(),
            ));
        }
    }
    Ok(Some(stmt))
}

/// A prepared, bound statement and what is known of its columns.
struct Statement {
    stmt: Finalize,
    columns: Vec<ColumnInfo>,
    /// Each column's declared type, read once; `None` for an expression.
    classes: Vec<Option<SqliteClass>>,
    /// `columns` and `classes` are read (after the first step).
    described: bool,
}

/// Where [`Statement::step_rows`] stopped.
enum Stepped {
    /// No more rows, or the sink wanted no more.
    Done,
    /// The time given ran out between two rows; stepping again goes on from the next row.
    Paused,
}

impl Statement {
    /// Prepares `sql` (which must hold one statement) and binds `params`; `None` when `sql`
    /// holds only whitespace or comments.
    ///
    /// # Safety
    /// `db` must be a live handle used by no other thread during the call.
    unsafe fn prepare(
        db: *mut ffi::sqlite3,
        cache: &mut StatementCache,
        sql: &str,
        params: &[Value],
    ) -> Result<Option<Statement>, ReadError> {
        let stmt = match cache.take(sql) {
            Some(stmt) => stmt,
            // SAFETY: per the contract.
            None => match unsafe { compile(db, sql) }? {
                Some(stmt) => stmt,
                None => return Ok(None),
            },
        };
        // SAFETY (this block and the loop below): `stmt.0` is a live statement of `db`.
        let wanted = unsafe { ffi::sqlite3_bind_parameter_count(stmt.0) };
        if usize::try_from(wanted).ok() != Some(params.len()) {
            return Err(ReadError::InvalidInput(format!(
                "the statement has {wanted} parameter{} but {} were given",
                if wanted == 1 { "" } else { "s" },
                params.len()
            )));
        }
        for (i, value) in params.iter().enumerate() {
            let index = c_int::try_from(i + 1).unwrap_or(c_int::MAX);
            let text;
            let rc = unsafe {
                match value {
                    Value::Null => ffi::sqlite3_bind_null(stmt.0, index),
                    Value::Bool(b) => ffi::sqlite3_bind_int64(stmt.0, index, i64::from(*b)),
                    Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                        (Some(i), _) => ffi::sqlite3_bind_int64(stmt.0, index, i),
                        (None, Some(f)) => ffi::sqlite3_bind_double(stmt.0, index, f),
                        (None, None) => {
                            text = n.to_string();
                            bind_text(stmt.0, index, &text)
                        }
                    },
                    Value::String(s) => bind_text(stmt.0, index, s),
                    // Arrays and objects are bound as their JSON text (SQLite's JSON functions
                    // read it).
                    other => {
                        text = other.to_string();
                        bind_text(stmt.0, index, &text)
                    }
                }
            };
            if rc != ffi::SQLITE_OK {
                return Err(unsafe { engine_error(db) });
            }
        }

        Ok(Some(Statement {
            stmt,
            columns: Vec::new(),
            classes: Vec::new(),
            described: false,
        }))
    }

    /// Reads the columns' names and declared types. Called after the first step, not at
    /// preparation: a kept statement that SQLite re-prepared for a changed schema (at that
    /// step) may have other columns than it had.
    ///
    /// # Safety
    /// The statement must be used by no other thread during the call.
    unsafe fn describe(&mut self) {
        let stmt = self.stmt.0;
        // SAFETY (this block): `stmt` is a live statement.
        let count = unsafe { ffi::sqlite3_column_count(stmt) };
        let ncols = usize::try_from(count).unwrap_or(0);
        self.columns = Vec::with_capacity(ncols);
        self.classes = Vec::with_capacity(ncols);
        for i in 0..count {
            let name = unsafe { c_str(ffi::sqlite3_column_name(stmt, i)) }.unwrap_or("?");
            let declared = unsafe { c_str(ffi::sqlite3_column_decltype(stmt, i)) };
            self.classes.push(declared.map(SqliteClass::of));
            self.columns.push(ColumnInfo {
                name: name.to_string(),
                // Filled from the first row's storage class when the column has no declared
                // type (an expression).
                type_name: declared.unwrap_or_default().to_string(),
            });
        }
        self.described = true;
    }

    /// Steps rows into `sink` until the last, or until the sink wants no more, or (checked
    /// between rows) until `until` has passed.
    ///
    /// # Safety
    /// `db` must be the live handle the statement was prepared on, used by no other thread
    /// during the call.
    unsafe fn step_rows(
        &mut self,
        db: *mut ffi::sqlite3,
        sink: &mut (dyn RowSink + Send),
        until: Option<Instant>,
    ) -> Result<Stepped, ReadError> {
        let stmt = self.stmt.0;
        for stepped in 0u32.. {
            // The clock is read every 16 rows: a row takes about a microsecond.
            if stepped % 16 == 0 && until.is_some_and(|until| Instant::now() >= until) {
                return Ok(Stepped::Paused);
            }
            // SAFETY (this block and the loop below): `stmt` is a live statement of `db`.
            let rc = unsafe { ffi::sqlite3_step(stmt) };
            let first = !self.described;
            if first && (rc == ffi::SQLITE_ROW || rc == ffi::SQLITE_DONE) {
                unsafe { self.describe() };
            }
            match rc {
                ffi::SQLITE_ROW => {}
                ffi::SQLITE_DONE => return Ok(Stepped::Done),
                _ => return Err(unsafe { engine_error(db) }),
            }
            if first {
                for (i, column) in self.columns.iter_mut().enumerate() {
                    if column.type_name.is_empty() {
                        let storage = unsafe { ffi::sqlite3_column_type(stmt, i as c_int) };
                        column.type_name = storage_name(storage).to_string();
                    }
                }
            }
            match sink.next_row() {
                RowStep::Skip => continue,
                RowStep::Stop => return Ok(Stepped::Done),
                RowStep::Take => {}
            }
            let mut cells = Vec::with_capacity(self.classes.len());
            for (i, class) in self.classes.iter().enumerate() {
                let i = i as c_int;
                let storage = unsafe { ffi::sqlite3_column_type(stmt, i) };
                let cell = unsafe { stored_cell(stmt, i, storage) };
                let class = class.unwrap_or_else(|| SqliteClass::of(storage_name(storage)));
                cells.push(values::sqlite_cell(cell, class));
            }
            if !sink.push(cells) {
                return Ok(Stepped::Done);
            }
        }
        // 2^32 rows without a row limit stopping them first.
        Err(ReadError::InvalidInput(
            "the statement returned too many rows".into(),
        ))
    }

    /// Keeps the statement in `cache` for `sql`, and gives the columns, with a type for each
    /// (`NULL` for an expression no row gave a value for).
    fn finish(mut self, cache: &mut StatementCache, sql: &str) -> Vec<ColumnInfo> {
        for column in &mut self.columns {
            if column.type_name.is_empty() {
                column.type_name = "NULL".into();
            }
        }
        cache.keep(sql, self.stmt);
        self.columns
    }
}

/// SQLite's name for a storage class (what sqlx reports for an expression's value).
fn storage_name(storage: c_int) -> &'static str {
    match storage {
        ffi::SQLITE_INTEGER => "INTEGER",
        ffi::SQLITE_FLOAT => "REAL",
        ffi::SQLITE_BLOB => "BLOB",
        ffi::SQLITE_TEXT => "TEXT",
        _ => "NULL",
    }
}

/// Binds `text` (copied by SQLite).
///
/// # Safety
/// `stmt` must be a live statement used by no other thread.
unsafe fn bind_text(stmt: *mut ffi::sqlite3_stmt, index: c_int, text: &str) -> c_int {
    let Ok(len) = c_int::try_from(text.len()) else {
        return ffi::SQLITE_TOOBIG;
    };
    // SAFETY: per the contract; SQLITE_TRANSIENT makes SQLite copy the bytes.
    unsafe {
        ffi::sqlite3_bind_text(
            stmt,
            index,
            text.as_ptr().cast(),
            len,
            ffi::SQLITE_TRANSIENT(),
        )
    }
}

/// Column `i` of the current row in its storage class, borrowed from the statement (valid
/// until the next step).
///
/// # Safety
/// `stmt` must be a live statement positioned on a row, used by no other thread.
unsafe fn stored_cell<'a>(
    stmt: *mut ffi::sqlite3_stmt,
    i: c_int,
    storage: c_int,
) -> StoredCell<'a> {
    // SAFETY: per the contract. The pointer is read before `column_bytes` (SQLite's
    // documented order), and a NULL pointer (empty value) is read as empty.
    unsafe {
        match storage {
            ffi::SQLITE_INTEGER => StoredCell::Integer(ffi::sqlite3_column_int64(stmt, i)),
            ffi::SQLITE_FLOAT => StoredCell::Real(ffi::sqlite3_column_double(stmt, i)),
            ffi::SQLITE_BLOB => {
                let ptr = ffi::sqlite3_column_blob(stmt, i).cast::<u8>();
                let len = usize::try_from(ffi::sqlite3_column_bytes(stmt, i)).unwrap_or(0);
                if ptr.is_null() || len == 0 {
                    StoredCell::Blob(&[])
                } else {
                    StoredCell::Blob(std::slice::from_raw_parts(ptr, len))
                }
            }
            ffi::SQLITE_TEXT => {
                let ptr = ffi::sqlite3_column_text(stmt, i);
                let len = usize::try_from(ffi::sqlite3_column_bytes(stmt, i)).unwrap_or(0);
                if ptr.is_null() || len == 0 {
                    StoredCell::Text("".into())
                } else {
                    let bytes = std::slice::from_raw_parts(ptr, len);
                    // Most cells are short and ASCII, which one vectorised pass establishes
                    // (simdutf8 hands inputs this short to std's byte-wise check).
                    if !crate::output::any_byte(bytes, |b| b >= 0x80) {
                        // SAFETY: every byte is ASCII, and ASCII is UTF-8.
                        return StoredCell::Text(std::str::from_utf8_unchecked(bytes).into());
                    }
                    // The strict check is the fast path for the rest (SIMD on long cells);
                    // invalid UTF-8 (SQLite stores any bytes as TEXT) is shown with
                    // replacement characters.
                    match simdutf8::basic::from_utf8(bytes) {
                        Ok(text) => StoredCell::Text(text.into()),
                        Err(_) => StoredCell::Text(String::from_utf8_lossy(bytes)),
                    }
                }
            }
            _ => StoredCell::Null,
        }
    }
}

/// Creates (if needed) and seeds the demo database at `path` with the tutorial's
/// `customers` and `orders`. Idempotent: rows are only inserted into an empty table.
pub(crate) async fn seed_demo(path: &Path) -> Result<(), SqlError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            SqlError::Io(format!(
                "could not create the folder for the demo database: {e}"
            ))
        })?;
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true);
    let connect_err = |e: sqlx::Error| SqlError::Connect {
        engine: "SQLite",
        message: e.to_string(),
    };
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(connect_err)?;
    let mut tx = conn.begin().await.map_err(connect_err)?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS customers (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            email TEXT UNIQUE,
            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
        );
        CREATE TABLE IF NOT EXISTS orders (
            id INTEGER PRIMARY KEY,
            customer_id INTEGER,
            product_name TEXT,
            amount DECIMAL(10,2),
            order_date TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            FOREIGN KEY (customer_id) REFERENCES customers (id)
        );",
    )
    .execute(&mut *tx)
    .await
    .map_err(connect_err)?;
    let customers: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&mut *tx)
        .await
        .map_err(connect_err)?;
    if customers == 0 {
        for (name, email) in [
            ("Nguyễn Văn An", "an@example.com"),
            ("Trần Thị Bình", "binh@example.com"),
            ("Lê Văn Cường", "cuong@example.com"),
        ] {
            sqlx::query("INSERT INTO customers (name, email) VALUES (?, ?)")
                .bind(name)
                .bind(email)
                .execute(&mut *tx)
                .await
                .map_err(connect_err)?;
        }
    }
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&mut *tx)
        .await
        .map_err(connect_err)?;
    if orders == 0 {
        for (customer, product, amount) in [
            (1_i64, "Laptop Dell XPS", 25_000_000_i64),
            (1, "Mouse Logitech", 500_000),
            (2, "iPhone 15", 30_000_000),
            (3, "Headphones Sony", 2_000_000),
        ] {
            sqlx::query("INSERT INTO orders (customer_id, product_name, amount) VALUES (?, ?, ?)")
                .bind(customer)
                .bind(product)
                .bind(amount)
                .execute(&mut *tx)
                .await
                .map_err(connect_err)?;
        }
    }
    tx.commit().await.map_err(connect_err)?;
    conn.close().await.map_err(connect_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what the reader hands it.
    #[derive(Default)]
    struct Recorded {
        rows: Vec<Vec<Value>>,
        restarts: usize,
    }

    impl RowSink for Recorded {
        fn next_row(&mut self) -> RowStep {
            RowStep::Take
        }

        fn push(&mut self, cells: Vec<Value>) -> bool {
            self.rows.push(cells);
            true
        }

        fn restart(&mut self) {
            self.rows.clear();
            self.restarts += 1;
        }
    }

    async fn prepared_connection(dir: &tempfile::TempDir) -> HeldConnection {
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("budget.db"))
            .create_if_missing(true);
        HeldConnection::open(&options)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// 20 rows, the first at once and the rest far apart: each takes thousands of
    /// virtual-machine steps, so the progress handler runs between them (after the first row
    /// has been taken).
    const SPARSE_ROWS: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
        WHERE x < 200000) SELECT x FROM c WHERE x % 10000 = 1";

    fn sparse_rows() -> Vec<Vec<Value>> {
        (0..20).map(|i| vec![Value::from(i * 10_000 + 1)]).collect()
    }

    /// Reads `sql` on a fresh prepared connection with `placement` and `timeout`: what the
    /// reader returned, and what it handed the sink.
    async fn read_with(
        placement: Placement,
        timeout: Duration,
        sql: &str,
    ) -> (Result<Vec<ColumnInfo>, ReadError>, Recorded) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut conn = prepared_connection(&dir).await;
        let mut sink = Recorded::default();
        let result = read_rows(&mut conn, timeout, placement, sql, &[], &mut sink);
        (result, sink)
    }

    const LONG: Duration = Duration::from_secs(30);

    /// No time in place at all: every row is read off the runtime's worker, each once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_past_the_budget_are_read_off_the_worker() {
        let placement = Placement {
            budget: Duration::ZERO,
            step_limit: LONG,
        };
        let (result, sink) = read_with(placement, 2 * LONG, SPARSE_ROWS).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(sink.restarts, 0);
        assert_eq!(sink.rows, sparse_rows());
    }

    /// A step that outlasts the step limit (zero here, so the first the progress handler
    /// sees, after the first row was taken) is interrupted, and the statement runs again from
    /// the start off the runtime's worker: every row once, in order, nothing kept from the
    /// interrupted run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_step_past_the_limit_runs_the_statement_again_whole() {
        let placement = Placement {
            budget: LONG,
            step_limit: Duration::ZERO,
        };
        let (result, sink) = read_with(placement, 2 * LONG, SPARSE_ROWS).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(sink.restarts, 1);
        assert_eq!(sink.rows, sparse_rows());
    }

    /// On a current-thread runtime there is no other thread to move to: the statement runs
    /// in place to its own deadline, once.
    #[tokio::test(flavor = "current_thread")]
    async fn a_current_thread_runtime_runs_the_statement_in_place() {
        let placement = Placement {
            budget: Duration::ZERO,
            step_limit: Duration::ZERO,
        };
        let (result, sink) = read_with(placement, LONG, SPARSE_ROWS).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(sink.restarts, 0);
        assert_eq!(sink.rows, sparse_rows());
    }

    /// The statement timeout still holds after the move: what is left of it, not a new one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_timeout_holds_across_the_move() {
        let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
            SELECT count(*) FROM c";
        let placement = Placement {
            budget: LONG,
            step_limit: Duration::ZERO,
        };
        let (result, sink) = read_with(placement, Duration::from_millis(50), endless).await;
        assert!(matches!(result, Err(ReadError::Interrupted)), "{result:?}");
        assert_eq!(sink.restarts, 1);
    }

    /// A statement is prepared once per connection and text, and reused with new bindings;
    /// a failed call keeps nothing; a kept statement follows a changed schema (SQLite
    /// re-prepares it, and the columns are read after that).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn statements_are_kept_per_text_and_follow_the_schema() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut writer = SqliteConnection::connect_with(
            &SqliteConnectOptions::new()
                .filename(dir.path().join("budget.db"))
                .create_if_missing(true),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        sqlx::raw_sql("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1), (2);")
            .execute(&mut writer)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut conn = prepared_connection(&dir).await;
        let mut read = |sql: &str, params: &[Value]| {
            let mut sink = Recorded::default();
            read_rows(&mut conn, LONG, Placement::DEFAULT, sql, params, &mut sink)
                .map(|columns| (columns, sink.rows))
        };
        let by_value = "SELECT * FROM t WHERE a = ?";
        for n in [1, 2] {
            let (_, rows) = read(by_value, &[Value::from(n)]).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(rows, vec![vec![Value::from(n)]]);
        }
        let wrong = read(by_value, &[]);
        assert!(
            matches!(wrong, Err(ReadError::InvalidInput(_))),
            "{wrong:?}"
        );
        let (columns, rows) =
            read("SELECT * FROM t ORDER BY a", &[]).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((columns.len(), rows.len()), (1, 2));
        assert_eq!(
            conn.statements.len(),
            1,
            "the failed call kept nothing; one text kept"
        );

        sqlx::raw_sql("ALTER TABLE t ADD COLUMN b TEXT DEFAULT 'x'")
            .execute(&mut writer)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut sink = Recorded::default();
        let columns = read_rows(
            &mut conn,
            LONG,
            Placement::DEFAULT,
            "SELECT * FROM t ORDER BY a",
            &[],
            &mut sink,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(sink.rows[0], vec![Value::from(1), Value::from("x")]);
    }
}
