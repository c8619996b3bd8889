//! SQLite specifics: the authorizer that backs read-only mode, and the seeded demo database.
//!
//! A read-only connection (`SQLITE_OPEN_READONLY`) plus `PRAGMA query_only` already stop
//! writes to the main file. The authorizer closes what those leave open: `ATTACH` (which
//! could create or write another file), PRAGMAs that change settings (`writable_schema`,
//! `journal_mode`, …) and `load_extension()` (native code). It is installed on every pooled
//! connection right after sqlx has applied its own connection PRAGMAs.

use std::{
    ffi::{CStr, c_char, c_int, c_void},
    path::Path,
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

/// Installs the authorizer on `conn`. Called from the pool's `after_connect`.
pub(crate) async fn install_authorizer(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is the live handle of this connection, held locked for the call; the
    // callback is a plain function that touches no Rust state and never unwinds.
    let rc = unsafe { ffi::sqlite3_set_authorizer(db, Some(authorize), std::ptr::null_mut()) };
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(sqlx::Error::Protocol(format!(
            "could not install the SQLite authorizer (code {rc})"
        )))
    }
}

/// The declared type of each result column of `sql` (`DECIMAL(10,2)`, `TIMESTAMP`, …), or
/// `None` for expressions. sqlx maps declared types to a handful of its own and drops the
/// rest, yet SQLite's faithful conversion depends on them. Empty when `sql` does not prepare
/// (the real run then reports the engine's error).
pub(crate) async fn declared_types(conn: &mut SqliteConnection, sql: &str) -> Vec<Option<String>> {
    let Ok(mut handle) = conn.lock_handle().await else {
        return Vec::new();
    };
    let db = handle.as_raw_handle().as_ptr();
    let Ok(len) = c_int::try_from(sql.len()) else {
        return Vec::new();
    };
    let mut stmt: *mut ffi::sqlite3_stmt = std::ptr::null_mut();
    // SAFETY: `db` is this connection's live handle, locked for the duration; `sql` outlives
    // the call and its byte length is passed, so no NUL terminator is needed. The statement
    // is only inspected (never stepped) and finalized before returning.
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
