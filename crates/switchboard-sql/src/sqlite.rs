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
unsafe fn deadline_of(db: *mut ffi::sqlite3) -> Result<Deadline, sqlx::Error> {
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
}

/// Runs one read-only statement on the connection's own handle and feeds its rows to
/// `sink`, converting each cell straight from SQLite's storage with its declared type.
///
/// Why not sqlx's row stream: sqlx-sqlite runs statements on a worker thread and sends every
/// row back through a channel with a copy of each value (`sqlite3_value_dup`), which for a
/// 1,000-row answer costs more than SQLite's own work. Here the connection is locked once
/// (one hand-off to the worker) and the statement is prepared, stepped and finalized
/// directly. The statement deadline is armed as for every call, so the progress handler
/// still interrupts a statement that runs too long. The work runs under `block_in_place`,
/// so a long statement never holds up the runtime's other tasks.
pub(crate) async fn read_rows(
    conn: &mut SqliteConnection,
    timeout: Duration,
    sql: &str,
    params: &[Value],
    sink: &mut (dyn RowSink + Send),
) -> Result<Vec<ColumnInfo>, ReadError> {
    let mut handle = conn.lock_handle().await.map_err(ReadError::Sqlx)?;
    let mut run = || run_locked(&mut handle, timeout, sql, params, sink);
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(run)
    } else {
        run()
    }
}

/// How [`read_rows`] fails; the caller maps it to a [`SqlError`] with its limits.
#[derive(Debug)]
pub(crate) enum ReadError {
    Sqlx(sqlx::Error),
    /// The engine's message and extended result code.
    Engine(String, c_int),
    /// The progress handler stopped the statement at its deadline.
    Interrupted,
    Rejected(String),
    InvalidInput(String),
}

fn run_locked(
    handle: &mut sqlx::sqlite::LockedSqliteHandle<'_>,
    timeout: Duration,
    sql: &str,
    params: &[Value],
    sink: &mut (dyn RowSink + Send),
) -> Result<Vec<ColumnInfo>, ReadError> {
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is this connection's live handle and the lock is held for the whole call,
    // so no other thread uses it.
    let deadline = unsafe { deadline_of(db) }.map_err(ReadError::Sqlx)?;
    deadline.arm(timeout);
    // SAFETY: as above.
    let result = unsafe { step_all(db, sql, params, sink) };
    // The statement is finalized by now: nothing is left running on this connection.
    deadline.clear();
    result
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

/// Prepares `sql`, binds `params`, and steps every row into `sink`.
///
/// # Safety
/// `db` must be a live handle used by no other thread during the call.
unsafe fn step_all(
    db: *mut ffi::sqlite3,
    sql: &str,
    params: &[Value],
    sink: &mut (dyn RowSink + Send),
) -> Result<Vec<ColumnInfo>, ReadError> {
    let len = c_int::try_from(sql.len())
        .map_err(|_| ReadError::InvalidInput("the statement is too long".into()))?;
    let mut raw: *mut ffi::sqlite3_stmt = std::ptr::null_mut();
    let mut tail: *const c_char = std::ptr::null();
    // SAFETY: `sql` outlives the call and its byte length is passed (no NUL needed).
    let rc = unsafe { ffi::sqlite3_prepare_v2(db, sql.as_ptr().cast(), len, &mut raw, &mut tail) };
    if rc != ffi::SQLITE_OK {
        if !raw.is_null() {
            drop(Finalize(raw));
        }
        // SAFETY: per the contract.
        return Err(unsafe { engine_error(db) });
    }
    if raw.is_null() {
        // Only whitespace or comments: no statement, no rows.
        return Ok(Vec::new());
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

    let count = unsafe { ffi::sqlite3_column_count(stmt.0) };
    let ncols = usize::try_from(count).unwrap_or(0);
    let mut columns = Vec::with_capacity(ncols);
    let mut classes = Vec::with_capacity(ncols);
    for i in 0..count {
        let name = unsafe { c_str(ffi::sqlite3_column_name(stmt.0, i)) }.unwrap_or("?");
        let declared = unsafe { c_str(ffi::sqlite3_column_decltype(stmt.0, i)) };
        classes.push(declared.map(SqliteClass::of));
        columns.push(ColumnInfo {
            name: name.to_string(),
            // Filled from the first row's storage class when the column has no declared
            // type (an expression).
            type_name: declared.unwrap_or_default().to_string(),
        });
    }
    let mut first_row = true;
    loop {
        match unsafe { ffi::sqlite3_step(stmt.0) } {
            ffi::SQLITE_ROW => {}
            ffi::SQLITE_DONE => break,
            _ => return Err(unsafe { engine_error(db) }),
        }
        if first_row {
            first_row = false;
            for (i, column) in columns.iter_mut().enumerate() {
                if column.type_name.is_empty() {
                    let storage = unsafe { ffi::sqlite3_column_type(stmt.0, i as c_int) };
                    column.type_name = storage_name(storage).to_string();
                }
            }
        }
        match sink.next_row() {
            RowStep::Skip => continue,
            RowStep::Stop => break,
            RowStep::Take => {}
        }
        let mut cells = Vec::with_capacity(ncols);
        for (i, class) in classes.iter().enumerate() {
            let i = i as c_int;
            let storage = unsafe { ffi::sqlite3_column_type(stmt.0, i) };
            let cell = unsafe { stored_cell(stmt.0, i, storage) };
            let class = class.unwrap_or_else(|| SqliteClass::of(storage_name(storage)));
            cells.push(values::sqlite_cell(cell, class));
        }
        if !sink.push(cells) {
            break;
        }
    }
    for column in &mut columns {
        if column.type_name.is_empty() {
            column.type_name = "NULL".into();
        }
    }
    Ok(columns)
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
                    // The strict check is the fast path; invalid UTF-8 (SQLite stores any
                    // bytes as TEXT) is shown with replacement characters.
                    match std::str::from_utf8(bytes) {
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
