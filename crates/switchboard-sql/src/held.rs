//! The SQLite connections `query` reads through: each held locked for its whole life.
//!
//! Why not sqlx's pool for these: a sqlx SQLite connection lives on its own worker thread,
//! and the direct reader (`sqlite::read_rows`) must borrow the handle from that thread for
//! every call (`lock_handle`: a command to the thread, which wakes, lets go and waits for it
//! back), and sqlx's pool pings each connection through the same thread whenever it is
//! returned. That was three wake-ups of another thread per call, 2.7 context switches
//! measured, for a point lookup whose own work is a few microseconds. A [`HeldConnection`]
//! takes the lock once, when it is opened, and keeps it: its worker thread waits for it until
//! the connection is dropped, and every read runs on the caller's thread with no hand-off.
//!
//! The connections are opened exactly as the sqlx read pool's are (the same connect options:
//! read-only, `query_only`, then `sqlite::prepare_connection`'s authorizer and deadline), so
//! the read-only guarantees are the same. The catalog tools (`list_tables`,
//! `describe_table`, `explain_query`) still go through sqlx's pool, which runs sqlx queries;
//! each pool opens connections on demand, up to the configured pool size.

use std::{mem::ManuallyDrop, sync::Mutex, time::Duration};

use sqlx::{
    ConnectOptions, SqliteConnection,
    sqlite::{LockedSqliteHandle, SqliteConnectOptions},
};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::sqlite;

/// A read connection whose handle is locked from its opening to its drop.
pub(crate) struct HeldConnection {
    /// Statements kept for reuse; finalized first, while the connection is still open.
    pub(crate) statements: sqlite::StatementCache,
    /// The connection's statement deadline, looked up once at opening rather than per call.
    pub(crate) deadline: sqlite::Deadline,
    /// Borrows `*_conn`. Fields drop in declaration order, so the handle goes back to sqlx's
    /// worker thread before the connection itself is dropped.
    handle: LockedSqliteHandle<'static>,
    /// Owns the box the handle borrows; reached only through `handle` while it lives.
    _conn: BoxedConnection,
}

/// A connection from `Box::into_raw`, freed when this is dropped: also when the opening of a
/// [`HeldConnection`] is cancelled while it waits for the lock.
struct BoxedConnection(*mut SqliteConnection);

impl Drop for BoxedConnection {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `Box::into_raw` and is freed exactly once, here, after
        // every borrow of it has ended (the handle field, or the cancelled lock, drops first).
        drop(unsafe { Box::from_raw(self.0) });
    }
}

// SAFETY: sqlx's SQLite connection is `Send`; the pointer is only the box's owner, and the
// box is reached by one thread at a time (the pool lends a connection to one caller).
unsafe impl Send for BoxedConnection {}

impl HeldConnection {
    /// Opens a connection with `options`, prepares it as every pooled read connection is
    /// prepared, and locks its handle.
    pub(crate) async fn open(options: &SqliteConnectOptions) -> Result<Self, sqlx::Error> {
        let mut conn = options.connect().await?;
        sqlite::prepare_connection(&mut conn).await?;
        let conn = BoxedConnection(Box::into_raw(Box::new(conn)));
        // SAFETY: `conn` is a live box that nothing else references; the borrow handed to
        // `lock_handle` is kept in the returned value, which never moves the box and frees
        // it only after the handle is dropped.
        let mut handle = unsafe { &mut *conn.0 }.lock_handle().await?;
        // SAFETY: the handle is live, prepared by `prepare_connection`, and locked here.
        let deadline = unsafe { sqlite::deadline_of(handle.as_raw_handle().as_ptr()) }?;
        Ok(Self {
            statements: sqlite::StatementCache::default(),
            deadline,
            handle,
            _conn: conn,
        })
    }

    /// The connection's `sqlite3` handle, usable until this connection is dropped, by the
    /// thread that holds `&mut self`.
    pub(crate) fn raw(&mut self) -> *mut libsqlite3_sys::sqlite3 {
        self.handle.as_raw_handle().as_ptr()
    }
}

/// Up to `size` [`HeldConnection`]s, opened on demand and reused.
pub(crate) struct HeldPool {
    options: SqliteConnectOptions,
    idle: Mutex<Vec<HeldConnection>>,
    permits: Semaphore,
    acquire_timeout: Duration,
}

impl HeldPool {
    pub(crate) fn new(options: SqliteConnectOptions, size: u32, acquire_timeout: Duration) -> Self {
        Self {
            options,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(usize::try_from(size).unwrap_or(usize::MAX).max(1)),
            acquire_timeout,
        }
    }

    /// A connection for one call: an idle one, or a new one while fewer than the pool size
    /// are open. When all are busy the call waits its turn (first come, first served) for
    /// up to the acquire timeout, then fails with sqlx's `PoolTimedOut`, as sqlx's pool does.
    pub(crate) async fn acquire(&self) -> Result<HeldLease<'_>, sqlx::Error> {
        let permit = tokio::time::timeout(self.acquire_timeout, self.permits.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            // Boxed: opening is rare, and its future would otherwise enlarge every call's.
            None => Box::pin(HeldConnection::open(&self.options)).await?,
        };
        Ok(HeldLease {
            pool: self,
            conn: ManuallyDrop::new(conn),
            _permit: permit,
        })
    }

    /// Closes the pool: waiting and later calls fail, idle connections are closed now and
    /// leased ones when they come back.
    pub(crate) fn close(&self) {
        self.permits.close();
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}

/// A connection lent by a [`HeldPool`]; back to the pool when dropped.
pub(crate) struct HeldLease<'a> {
    pool: &'a HeldPool,
    /// Taken out only in `Drop`.
    conn: ManuallyDrop<HeldConnection>,
    /// Released after the connection is back among the idle ones (fields drop after `Drop`).
    _permit: SemaphorePermit<'a>,
}

impl std::ops::Deref for HeldLease<'_> {
    type Target = HeldConnection;

    fn deref(&self) -> &HeldConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for HeldLease<'_> {
    fn deref_mut(&mut self) -> &mut HeldConnection {
        &mut self.conn
    }
}

impl Drop for HeldLease<'_> {
    fn drop(&mut self) {
        // SAFETY: taken exactly once, here; the field is not used afterwards.
        let conn = unsafe { ManuallyDrop::take(&mut self.conn) };
        if !self.pool.permits.is_closed()
            && let Ok(mut idle) = self.pool.idle.lock()
        {
            idle.push(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(dir: &tempfile::TempDir, size: u32) -> HeldPool {
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("held.db"))
            .create_if_missing(true);
        HeldPool::new(options, size, Duration::from_millis(50))
    }

    /// A busy pool makes the next caller wait, and fails it clearly (sqlx's `PoolTimedOut`)
    /// at the acquire timeout; a returned connection is lent again rather than a new one
    /// opened.
    #[tokio::test]
    async fn a_full_pool_queues_then_times_out_and_reuses_what_comes_back() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let pool = pool(&dir, 1);
        let mut first = pool.acquire().await.unwrap_or_else(|e| panic!("{e}"));
        let handle = first.raw();
        let waiting = pool.acquire().await;
        assert!(
            matches!(waiting, Err(sqlx::Error::PoolTimedOut)),
            "{:?}",
            waiting.err()
        );
        drop(first);
        let mut again = pool.acquire().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.raw(), handle, "the idle connection is reused");
    }

    /// A closed pool refuses new calls at once.
    #[tokio::test]
    async fn a_closed_pool_refuses() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let pool = pool(&dir, 2);
        drop(pool.acquire().await.unwrap_or_else(|e| panic!("{e}")));
        pool.close();
        let refused = pool.acquire().await;
        assert!(
            matches!(refused, Err(sqlx::Error::PoolClosed)),
            "{:?}",
            refused.err()
        );
    }
}
