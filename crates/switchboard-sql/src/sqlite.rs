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

use crate::error::SqlError;

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

/// Arms the connection's statement deadline (`timeout` from now) and, when `sql` is given,
/// reads the declared types of its result columns, in one hand-off to the worker thread.
///
/// The declared type of each column (`DECIMAL(10,2)`, `TIMESTAMP`, …) is `None` for
/// expressions. sqlx maps declared types to a handful of its own and drops the rest, yet
/// SQLite's faithful conversion depends on them. Empty when `sql` does not prepare (the real
/// run then reports the engine's error).
pub(crate) async fn arm(
    conn: &mut SqliteConnection,
    timeout: Duration,
    sql: Option<&str>,
) -> Result<(Deadline, Vec<Option<String>>), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is this connection's live handle, locked for the duration. The client
    // data was set by `prepare_connection` from `Arc::into_raw` and stays valid until the
    // connection closes, which cannot happen while we hold it; the count is incremented
    // before `from_raw` so that the connection keeps its own reference.
    let deadline = unsafe {
        let ptr = ffi::sqlite3_get_clientdata(db, DEADLINE_KEY.as_ptr())
            .cast::<AtomicU64>()
            .cast_const();
        if ptr.is_null() {
            return Err(sqlx::Error::Protocol(
                "the SQLite connection has no statement deadline".into(),
            ));
        }
        Arc::increment_strong_count(ptr);
        Deadline(Arc::from_raw(ptr))
    };
    let at = now_nanos()
        .saturating_add(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX))
        .max(1);
    deadline.0.store(at, Ordering::Release);
    let types = match sql {
        // SAFETY: `db` is locked for the duration (see above).
        Some(sql) => unsafe { declared_types(db, sql) },
        None => Vec::new(),
    };
    Ok((deadline, types))
}

/// See [`arm`].
///
/// # Safety
/// `db` must be a live connection handle that no other thread uses during the call.
unsafe fn declared_types(db: *mut ffi::sqlite3, sql: &str) -> Vec<Option<String>> {
    let Ok(len) = c_int::try_from(sql.len()) else {
        return Vec::new();
    };
    let mut stmt: *mut ffi::sqlite3_stmt = std::ptr::null_mut();
    // SAFETY: per the contract, `db` is live and ours; `sql` outlives the call and its byte
    // length is passed, so no NUL terminator is needed. The statement is only inspected
    // (never stepped) and finalized before returning.
    unsafe {
        let rc = ffi::sqlite3_prepare_v2(
            db,
            sql.as_ptr().cast(),
            len,
            &mut stmt,
            std::ptr::null_mut(),
        );
        if rc != ffi::SQLITE_OK || stmt.is_null() {
            if !stmt.is_null() {
                ffi::sqlite3_finalize(stmt);
            }
            return Vec::new();
        }
        let count = ffi::sqlite3_column_count(stmt);
        let types = (0..count)
            .map(|i| c_str(ffi::sqlite3_column_decltype(stmt, i)).map(str::to_string))
            .collect();
        ffi::sqlite3_finalize(stmt);
        types
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
