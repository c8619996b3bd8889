//! Streamable HTTP session hardening: a cap on the sessions held in memory, observable session
//! counts, and a bounded in-memory event store for `Last-Event-ID` resumption.
//!
//! rmcp's `LocalSessionManager` creates sessions without limit, and each costs ~50 KiB of
//! channels and tasks, so one client looping on `initialize` could exhaust memory.
//! [`CappedSessionManager`] wraps it and keeps at most `max_sessions` in memory. Session ids are
//! sealed tokens ([`crate::sealed`]) that carry what rmcp needs to rebuild a session, so a
//! session does not have to stay in memory to stay alive: at the cap, the least recently used
//! session with no open stream (no call under way, no `GET` stream) leaves memory, and its next
//! request rebuilds it, as a session that idled out is rebuilt. Only when every session in memory
//! is busy is a new one refused. Idle sessions are reaped by rmcp itself: each session's
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
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
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
        "session limit reached: {limit} sessions are in memory and all of them are busy (a call under way or a GET stream open); retry when one finishes"
    )]
    LimitReached { limit: usize },
    #[error(transparent)]
    Local(#[from] LocalSessionManagerError),
}

/// rmcp's `LocalSessionManager` with a cap on the sessions held in memory, least-recently-used
/// eviction of idle ones, and a live session count.
#[derive(Debug)]
pub struct CappedSessionManager {
    inner: LocalSessionManager,
    max_sessions: usize,
    /// Serialises the check-then-create in `create_session`, so the cap is exact.
    create: tokio::sync::Mutex<()>,
    /// Which sessions are busy and which was used least recently.
    residency: Arc<Mutex<Residency>>,
    /// Sessions moved out of memory to make room, since start.
    evicted: AtomicU64,
    count: watch::Sender<usize>,
    /// Most sessions open since memory was last handed back to the operating system.
    peak_since_trim: std::sync::atomic::AtomicUsize,
    trim: Arc<TrimState>,
    /// Sessions whose calls are answered without rmcp's worker ([`crate::direct`]), which
    /// forget a session when it closes.
    direct: Option<Arc<crate::direct::DirectSessions>>,
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
            residency: Arc::default(),
            evicted: AtomicU64::new(0),
            count: watch::Sender::new(0),
            peak_since_trim: std::sync::atomic::AtomicUsize::new(0),
            trim: Arc::default(),
            direct: None,
        }
    }

    /// Tells `direct` when a session closes, so it stops serving it.
    pub fn with_direct_sessions(mut self, direct: Arc<crate::direct::DirectSessions>) -> Self {
        self.direct = Some(direct);
        self
    }

    /// Marks `id` used, and busy (not to be moved out of memory) until the guard is dropped:
    /// a call answered without rmcp's worker ([`crate::direct`]).
    pub(crate) fn mark_busy(&self, id: &SessionId) -> impl Drop + use<> {
        self.busy(id)
    }

    /// Resets the idle clock of `id`'s rmcp worker, in the background. The worker counts only
    /// the events that pass through it, so a session served directly would otherwise be
    /// reaped as idle while in use. The event is the close of a request stream that never
    /// exists (rmcp numbers them from 0), which changes nothing else.
    pub(crate) fn keep_alive(self: &Arc<Self>, id: SessionId) {
        let sessions = self.clone();
        tokio::spawn(async move {
            let handle = sessions.inner.sessions.read().await.get(&id).cloned();
            if let Some(handle) = handle
                && let Err(why) = handle.close_request_wise_channel(u64::MAX).await
            {
                tracing::debug!(%why, "keeping a directly served session alive");
            }
        });
    }

    /// Sessions currently open.
    pub fn session_count(&self) -> usize {
        *self.count.borrow()
    }

    /// Sessions moved out of memory at the cap since start (they resume from their ids).
    pub fn evicted_count(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// A receiver of the open-session count, updated on every create and close (including
    /// idle expiry), for callers that must wait for a session to go away.
    pub fn watch_count(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }

    /// With `create` held: brings the sessions in memory below the cap, moving the least
    /// recently used idle session out, or refuses when every session is busy.
    async fn make_room(&self, action: &str) -> Result<(), SessionManagerError> {
        while self.inner.sessions.read().await.len() >= self.max_sessions {
            let victim = self
                .with_residency(Residency::take_least_recent_idle)
                .flatten();
            let Some(victim) = victim else {
                tracing::warn!(
                    limit = self.max_sessions,
                    "refused to {action} a session: limit reached and every session is busy"
                );
                return Err(SessionManagerError::LimitReached {
                    limit: self.max_sessions,
                });
            };
            self.forget_direct(&victim);
            if let Err(why) = SessionManager::close_session(&self.inner, &victim).await {
                tracing::debug!(%why, "closing an evicted session");
            }
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Runs `f` on the residency table; `None` if its lock was poisoned (a panic while held),
    /// in which case eviction simply stops choosing victims.
    fn with_residency<T>(&self, f: impl FnOnce(&mut Residency) -> T) -> Option<T> {
        with_residency(&self.residency, f)
    }

    fn touch(&self, id: &SessionId) {
        self.with_residency(|residency| residency.touch(id));
    }

    fn forget_direct(&self, id: &SessionId) {
        if let Some(direct) = &self.direct {
            direct.forget(id);
        }
    }

    /// Marks `id` busy until the returned stream is dropped.
    fn track<S>(&self, id: &SessionId, stream: S) -> TrackedStream<S> {
        TrackedStream {
            inner: stream,
            _busy: self.busy(id),
        }
    }

    /// Marks `id` used and busy until the guard is dropped.
    fn busy(&self, id: &SessionId) -> BusyGuard {
        self.with_residency(|residency| residency.open_stream(id));
        BusyGuard {
            residency: self.residency.clone(),
            id: id.clone(),
        }
    }

    async fn publish_count(&self) {
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

/// Hands memory glibc's allocator holds but does not use back to the operating system. A
/// program on another global allocator (the `switchboard` binary uses mimalloc, which returns
/// freed pages itself) loses nothing: glibc then holds little.
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
        self.make_room("create").await?;
        let created = SessionManager::create_session(&self.inner).await?;
        self.with_residency(|residency| residency.admit(&created.0));
        self.publish_count().await;
        Ok(created)
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.touch(id);
        Ok(SessionManager::initialize_session(&self.inner, id, message).await?)
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        // Every request on a session asks this first: counting it as use keeps a session
        // that is about to be served from being the one moved out to make room.
        self.touch(id);
        Ok(SessionManager::has_session(&self.inner, id).await?)
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        let stale = self
            .with_residency(|residency| residency.close(id))
            .unwrap_or(false);
        if stale {
            // The late report of a session already moved out of memory: the id may name a
            // rebuilt session now, which stays.
            self.publish_count().await;
            return Ok(());
        }
        self.forget_direct(id);
        let closed = SessionManager::close_session(&self.inner, id).await;
        self.publish_count().await;
        Ok(closed?)
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let stream = SessionManager::create_stream(&self.inner, id, message).await?;
        Ok(self.track(id, stream))
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.touch(id);
        Ok(SessionManager::accept_message(&self.inner, id, message).await?)
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let stream = SessionManager::create_standalone_stream(&self.inner, id).await?;
        Ok(self.track(id, stream))
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let stream = SessionManager::resume(&self.inner, id, last_event_id).await?;
        Ok(self.track(id, stream))
    }

    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        // Restores come from sealed session ids (`crate::sealed`): another replica's session,
        // or one of ours that idled out. They count against the cap like a new session.
        let _serial = self.create.lock().await;
        self.make_room("restore").await?;
        let restored = SessionManager::restore_session(&self.inner, id.clone()).await?;
        if matches!(restored, RestoreOutcome::Restored(_)) {
            self.with_residency(|residency| residency.admit(&id));
        }
        self.publish_count().await;
        Ok(restored)
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        SessionManager::event_store(&self.inner)
    }
}

/// Per session in memory: when it was last used and how many of its streams are open.
#[derive(Debug, Default)]
struct Residency {
    /// Advances on every use; a logical clock, so ordering never depends on timing.
    clock: u64,
    sessions: HashMap<SessionId, Resident>,
    /// Sessions moved out of memory whose worker has not yet reported its close.
    stale_closes: HashMap<SessionId, usize>,
}

#[derive(Debug, Default)]
struct Resident {
    last_used: u64,
    open_streams: usize,
}

impl Residency {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn admit(&mut self, id: &SessionId) {
        let now = self.tick();
        self.sessions.insert(
            id.clone(),
            Resident {
                last_used: now,
                open_streams: 0,
            },
        );
    }

    fn touch(&mut self, id: &SessionId) {
        let now = self.tick();
        if let Some(resident) = self.sessions.get_mut(id) {
            resident.last_used = now;
        }
    }

    fn open_stream(&mut self, id: &SessionId) {
        let now = self.tick();
        if let Some(resident) = self.sessions.get_mut(id) {
            resident.last_used = now;
            resident.open_streams += 1;
        }
    }

    fn close_stream(&mut self, id: &SessionId) {
        let now = self.tick();
        if let Some(resident) = self.sessions.get_mut(id) {
            resident.last_used = now;
            resident.open_streams = resident.open_streams.saturating_sub(1);
        }
    }

    /// Forgets the least recently used session with no open stream and returns its id.
    /// A linear scan: it runs only at the cap, over at most `max_sessions` entries.
    ///
    /// The session's worker reports its own close later; by then the same id may have been
    /// rebuilt, so that report is recorded as expected here, under the same lock as the
    /// choice, and ignored when it comes (see [`Residency::close`]).
    fn take_least_recent_idle(&mut self) -> Option<SessionId> {
        let victim = self
            .sessions
            .iter()
            .filter(|(_, resident)| resident.open_streams == 0)
            .min_by_key(|(_, resident)| resident.last_used)
            .map(|(id, _)| id.clone())?;
        self.sessions.remove(&victim);
        *self.stale_closes.entry(victim.clone()).or_default() += 1;
        Some(victim)
    }

    /// Records that `id` closed. Returns whether this was the late close of a session already
    /// moved out of memory, which must not touch the session now under that id.
    fn close(&mut self, id: &SessionId) -> bool {
        if let Some(pending) = self.stale_closes.get_mut(id) {
            *pending -= 1;
            if *pending == 0 {
                self.stale_closes.remove(id);
            }
            return true;
        }
        self.sessions.remove(id);
        false
    }
}

fn with_residency<T>(
    residency: &Mutex<Residency>,
    f: impl FnOnce(&mut Residency) -> T,
) -> Option<T> {
    residency.lock().ok().map(|mut residency| f(&mut residency))
}

/// Keeps its session marked busy while it lives.
#[derive(Debug)]
struct BusyGuard {
    residency: Arc<Mutex<Residency>>,
    id: SessionId,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        with_residency(&self.residency, |residency| {
            residency.close_stream(&self.id)
        });
    }
}

/// A session's answer stream, which keeps the session in memory until it ends.
struct TrackedStream<S> {
    inner: S,
    _busy: BusyGuard,
}

impl<S: Stream + Unpin> Stream for TrackedStream<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
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
