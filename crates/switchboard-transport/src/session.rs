//! Streamable HTTP session hardening: a cap on live sessions, observable session counts, and a
//! bounded in-memory event store for `Last-Event-ID` resumption.
//!
//! rmcp's `LocalSessionManager` creates sessions without limit, so one client looping on
//! `initialize` could exhaust memory. [`CappedSessionManager`] wraps it and refuses
//! `create_session` beyond the cap. Idle sessions are reaped by rmcp itself: each session's
//! worker quits after `SessionConfig::keep_alive` without activity, and (since the fix for
//! rmcp issue #1244) the service then calls `close_session`, which lands here and is counted,
//! so tests can wait for the count instead of sleeping.
//!
//! [`BoundedEventStore`] keeps the last N server-sent events of all streams in one ring. Event
//! IDs carry an unguessable per-stream token: rmcp replays from the store by event ID alone,
//! without checking which session asks, so a guessable ID would let one client read another
//! session's events.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use futures::Stream;
use rmcp::{
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
    transport::{
        WorkerTransport,
        streamable_http_server::session::{
            EventId, EventStore, EventStoreError, EventStream, RestoreOutcome, ServerSseMessage,
            SessionId, SessionManager,
            local::{LocalSessionManager, LocalSessionManagerError, LocalSessionWorker},
        },
    },
};
use tokio::sync::watch;

/// Why the capped session manager refused or failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum SessionManagerError {
    #[error(
        "session limit reached: {limit} sessions are open; close one (HTTP DELETE) or wait for idle sessions to expire"
    )]
    LimitReached { limit: usize },
    #[error(transparent)]
    Local(#[from] LocalSessionManagerError),
}

/// rmcp's `LocalSessionManager` with a cap on concurrent sessions and a live session count.
#[derive(Debug)]
pub struct CappedSessionManager {
    inner: LocalSessionManager,
    max_sessions: usize,
    /// Serialises the check-then-create in `create_session`, so the cap is exact.
    create: tokio::sync::Mutex<()>,
    count: watch::Sender<usize>,
    /// Most sessions open since memory was last handed back to the operating system.
    peak_since_trim: std::sync::atomic::AtomicUsize,
    trim: Arc<TrimState>,
}

/// When to hand freed memory back (see [`CappedSessionManager::publish_count`]).
#[derive(Debug, Default)]
struct TrimState {
    /// A trim task is waiting for quiet.
    scheduled: std::sync::atomic::AtomicBool,
    /// Sessions closed since the waiting task last looked.
    closed_since: std::sync::atomic::AtomicBool,
}

/// How long after a burst of closed sessions the allocator is trimmed.
const TRIM_DELAY: std::time::Duration = std::time::Duration::from_secs(2);

/// Sessions closed since the peak after which freed memory is handed back to the operating
/// system: at ~50 KiB of rmcp state per session, 256 sessions are ~13 MiB.
const TRIM_AFTER_CLOSED: usize = 256;

impl CappedSessionManager {
    /// Wraps `inner`, allowing at most `max_sessions` sessions at once.
    pub fn new(inner: LocalSessionManager, max_sessions: usize) -> Self {
        Self {
            inner,
            max_sessions,
            create: tokio::sync::Mutex::new(()),
            count: watch::Sender::new(0),
            peak_since_trim: std::sync::atomic::AtomicUsize::new(0),
            trim: Arc::default(),
        }
    }

    /// Sessions currently open.
    pub fn session_count(&self) -> usize {
        *self.count.borrow()
    }

    /// A receiver of the open-session count, updated on every create and close (including
    /// idle expiry), for callers that must wait for a session to go away.
    pub fn watch_count(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }

    async fn publish_count(&self) {
        use std::sync::atomic::Ordering;
        let n = self.inner.sessions.read().await.len();
        self.count.send_replace(n);
        let peak = self.peak_since_trim.fetch_max(n, Ordering::Relaxed).max(n);
        if peak - n >= TRIM_AFTER_CLOSED
            && self
                .peak_since_trim
                .compare_exchange(peak, n, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // glibc keeps freed memory in its heaps, so after a burst of sessions ends (idle
            // expiry of thousands at once) the process would stay at its peak RSS forever.
            // A session's tasks wind down after it is closed, so trim once things are quiet.
            self.trim.closed_since.store(true, Ordering::Release);
            if !self.trim.scheduled.swap(true, Ordering::AcqRel) {
                let trim = self.trim.clone();
                tokio::spawn(async move {
                    // Wait until no burst has ended for TRIM_DELAY.
                    while trim.closed_since.swap(false, Ordering::AcqRel) {
                        tokio::time::sleep(TRIM_DELAY).await;
                    }
                    trim.scheduled.store(false, Ordering::Release);
                    let _ = tokio::task::spawn_blocking(release_free_memory).await;
                });
            }
        }
    }
}

/// Hands memory the allocator holds but does not use back to the operating system.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl SessionManager for CappedSessionManager {
    type Error = SessionManagerError;
    type Transport = WorkerTransport<LocalSessionWorker>;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let _serial = self.create.lock().await;
        if self.inner.sessions.read().await.len() >= self.max_sessions {
            tracing::warn!(
                limit = self.max_sessions,
                "refused a new session: limit reached"
            );
            return Err(SessionManagerError::LimitReached {
                limit: self.max_sessions,
            });
        }
        let created = SessionManager::create_session(&self.inner).await?;
        self.publish_count().await;
        Ok(created)
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        Ok(SessionManager::initialize_session(&self.inner, id, message).await?)
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        Ok(SessionManager::has_session(&self.inner, id).await?)
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        let closed = SessionManager::close_session(&self.inner, id).await;
        self.publish_count().await;
        Ok(closed?)
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(SessionManager::create_stream(&self.inner, id, message).await?)
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        Ok(SessionManager::accept_message(&self.inner, id, message).await?)
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(SessionManager::create_standalone_stream(&self.inner, id).await?)
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(SessionManager::resume(&self.inner, id, last_event_id).await?)
    }

    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        // Restores come from sealed session ids (`crate::sealed`): another replica's session,
        // or one of ours that idled out. They count against the cap like a new session.
        let _serial = self.create.lock().await;
        if self.inner.sessions.read().await.len() >= self.max_sessions {
            tracing::warn!(
                limit = self.max_sessions,
                "refused to restore a session: limit reached"
            );
            return Err(SessionManagerError::LimitReached {
                limit: self.max_sessions,
            });
        }
        let restored = SessionManager::restore_session(&self.inner, id).await?;
        self.publish_count().await;
        Ok(restored)
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        SessionManager::event_store(&self.inner)
    }
}

/// An in-memory [`EventStore`] holding at most `capacity` events across all streams; the
/// oldest event is dropped first. A client that reconnects after its events were dropped gets
/// only what is still held.
#[derive(Debug)]
pub struct BoundedEventStore {
    capacity: usize,
    state: Mutex<StoreState>,
}

#[derive(Debug, Default)]
struct StoreState {
    next_seq: u64,
    /// (rmcp stream id, stream token, sequence number, event), oldest first.
    ring: VecDeque<(String, Arc<str>, u64, ServerSseMessage)>,
    /// rmcp stream id -> (token, number of its events in the ring).
    streams: HashMap<String, (Arc<str>, usize)>,
}

impl BoundedEventStore {
    /// A store keeping the newest `capacity` events.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            state: Mutex::new(StoreState::default()),
        }
    }

    /// Events currently held.
    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.ring.len()).unwrap_or(0)
    }

    /// Whether the store holds no events.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait::async_trait]
impl EventStore for BoundedEventStore {
    async fn store_event(
        &self,
        stream_id: &str,
        event: &ServerSseMessage,
    ) -> Result<EventId, EventStoreError> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| EventStoreError::from("event store lock poisoned"))?;
        let token = match state.streams.get_mut(stream_id) {
            Some((token, count)) => {
                *count += 1;
                token.clone()
            }
            None => {
                let token: Arc<str> = crate::random_token()?.into();
                state
                    .streams
                    .insert(stream_id.to_owned(), (token.clone(), 1));
                token
            }
        };
        let seq = state.next_seq;
        state.next_seq += 1;
        let mut stored = event.clone();
        let id = format!("{token}-{seq}");
        stored.event_id = Some(id.clone());
        state
            .ring
            .push_back((stream_id.to_owned(), token, seq, stored));
        while state.ring.len() > self.capacity {
            let Some((old, _, _, _)) = state.ring.pop_front() else {
                break;
            };
            // Forget a stream's token once none of its events remain, so the map is bounded
            // by the ring too.
            let now_empty = state.streams.get_mut(&old).is_some_and(|(_, count)| {
                *count -= 1;
                *count == 0
            });
            if now_empty {
                state.streams.remove(&old);
            }
        }
        Ok(id)
    }

    async fn replay_events_after(
        &self,
        last_event_id: &str,
    ) -> Result<EventStream, EventStoreError> {
        let (token, seq) = last_event_id
            .rsplit_once('-')
            .and_then(|(token, seq)| Some((token, seq.parse::<u64>().ok()?)))
            .ok_or_else(|| EventStoreError::from("malformed Last-Event-ID"))?;
        let state = self
            .state
            .lock()
            .map_err(|_| EventStoreError::from("event store lock poisoned"))?;
        let events: Vec<ServerSseMessage> = state
            .ring
            .iter()
            .filter(|(_, t, s, _)| &**t == token && *s > seq)
            .map(|(_, _, _, event)| event.clone())
            .collect();
        Ok(Box::pin(futures::stream::iter(events)))
    }
}
