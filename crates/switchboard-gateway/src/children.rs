//! The connections of one upstream and their lifecycle, owned by its
//! [`UpstreamRuntime`](crate::upstream::UpstreamRuntime):
//!
//! - [`Supervised`]: one connection (for stdio, one child process), made lazily, re-made after
//!   it dies with exponential backoff and jitter, its uses counted so an idle one can be ended
//!   ([`Supervised::reap_if_idle`]) and made again on the next use. Every upstream has one, the
//!   *shared* connection: `tools/list`, health checks, subscriptions, completion, and every call
//!   unless the upstream isolates clients.
//! - [`ClientPool`]: with `isolation = "per_client"` (stdio only), one more `Supervised` per
//!   downstream client ([`ClientKey`]) for `tools/call`, `resources/read` and `prompts/get`,
//!   each with its own [`Relay`], so progress, logs and server-to-client requests of a child go
//!   to its own client, exactly. At most `max_processes - 1` of them (one process is the shared
//!   connection's): a new client evicts the least recently used idle child
//!   ([`choose_eviction`]), and when every child is busy the call is refused with
//!   `process_cap_reached` at once, never queued.
//! - [`spawn_reaper`]: one background task per upstream (started on first use, stopped by
//!   `UpstreamRuntime::shutdown`, which a reload runs on every upstream it drops) ends children
//!   idle for `idle_timeout_secs` and the children of sessions that ended.
//!
//! Invariants: a connection with a use in flight is never reaped or evicted (a use is counted
//! before its peer is read, under the same lock the reaper checks); every child leaves through
//! `switchboard_transport::shutdown` (its process group ended and reaped), and an evicted child
//! is gone before its replacement starts.

use std::{
    future::Future,
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rmcp::{Peer, RoleClient};
use switchboard_transport::UpstreamClient;
use tokio::time::Instant;

use crate::{
    builtin::DirectTools, error::GatewayError, passthrough::Relay, upstream::UpstreamEvents,
};

/// A new connection and, for a built-in server, its in-process call path.
pub type Connected = (UpstreamClient<UpstreamEvents>, Option<DirectTools>);

/// What a connect hook learns about the connection just made.
pub struct Fresh {
    pub direct: Option<DirectTools>,
    /// It replaces one that was lost (not one ended for idleness): a restart.
    pub restart: bool,
}

struct Connection {
    client: Option<UpstreamClient<UpstreamEvents>>,
    failures: u32,
    next_attempt: Option<std::time::Instant>,
    last_error: String,
}

struct Slot {
    /// A cheap clone of the live peer, read on every use without taking the async lock.
    peer: Option<Peer<RoleClient>>,
    /// Uses in flight (calls, listings, checks); the reaper leaves the connection alone while
    /// there are any.
    in_flight: usize,
    /// When the last use that counts as activity began or ended.
    last_used: Instant,
    connected_once: bool,
    /// Ended by the reaper while healthy: the next connection is not a restart.
    reaped: bool,
}

/// One supervised connection; see the module docs.
pub struct Supervised {
    name: Arc<str>,
    relay: Arc<Relay>,
    connection: tokio::sync::Mutex<Connection>,
    slot: Mutex<Slot>,
}

/// A use of a [`Supervised`] connection, counted in flight until dropped.
pub struct Use {
    link: Arc<Supervised>,
    /// Whether the use counts as activity for idle reaping (health checks do not).
    touch: bool,
}

/// A live peer, held for one use (see [`Use`]).
pub struct Lease {
    peer: Peer<RoleClient>,
    using: Use,
}

impl Lease {
    pub fn peer(&self) -> &Peer<RoleClient> {
        &self.peer
    }

    /// The registry of requests in flight on this connection ([`crate::passthrough`]).
    pub fn relay(&self) -> &Arc<Relay> {
        &self.using.link.relay
    }
}

impl Drop for Use {
    fn drop(&mut self) {
        let mut slot = self.link.slot();
        slot.in_flight = slot.in_flight.saturating_sub(1);
        if self.touch {
            slot.last_used = Instant::now();
        }
    }
}

/// How a connection is used, for choosing which client child to evict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// A use is in flight.
    pub busy: bool,
    /// It has a live peer (a running child).
    pub live: bool,
    pub last_used: Instant,
}

/// Which client child to evict for a new one: an idle one, preferring one without a running
/// child, then the least recently used; `None` when all are busy.
pub fn choose_eviction(usages: &[Usage]) -> Option<usize> {
    usages
        .iter()
        .enumerate()
        .filter(|(_, u)| !u.busy)
        .min_by_key(|(_, u)| (u.live, u.last_used))
        .map(|(i, _)| i)
}

impl Supervised {
    pub fn new(name: &str, relay: Arc<Relay>) -> Arc<Supervised> {
        Arc::new(Supervised {
            name: Arc::from(name),
            relay,
            connection: tokio::sync::Mutex::new(Connection {
                client: None,
                failures: 0,
                next_attempt: None,
                last_error: String::new(),
            }),
            slot: Mutex::new(Slot {
                peer: None,
                in_flight: 0,
                last_used: Instant::now(),
                connected_once: false,
                reaped: false,
            }),
        })
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        // The slot holds no invariant a panic could break half-way.
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn relay(&self) -> &Arc<Relay> {
        &self.relay
    }

    /// The live peer, without counting a use.
    pub fn live_peer(&self) -> Option<Peer<RoleClient>> {
        self.slot()
            .peer
            .as_ref()
            .filter(|p| !p.is_transport_closed())
            .cloned()
    }

    /// Whether the reaper ended the connection for idleness and nothing has used it since.
    pub fn idle_reaped(&self) -> bool {
        self.slot().reaped
    }

    pub fn usage(&self) -> Usage {
        let slot = self.slot();
        Usage {
            busy: slot.in_flight > 0,
            live: slot.peer.as_ref().is_some_and(|p| !p.is_transport_closed()),
            last_used: slot.last_used,
        }
    }

    /// Starts a use: counted in flight (so the reaper leaves the connection alone) before the
    /// peer is read, until the [`Use`] or the [`Lease`] made from it is dropped.
    pub fn begin(self: &Arc<Self>, touch: bool) -> Use {
        let mut slot = self.slot();
        slot.in_flight += 1;
        if touch {
            slot.last_used = Instant::now();
        }
        Use {
            link: self.clone(),
            touch,
        }
    }

    /// Ends the connection if it has one, nothing is in flight and nothing used it for `idle`;
    /// returns whether it did. A connection being made is left alone.
    pub async fn reap_if_idle(&self, idle: Duration) -> bool {
        let Ok(mut connection) = self.connection.try_lock() else {
            return false;
        };
        if connection.client.is_none() {
            return false;
        }
        {
            let mut slot = self.slot();
            if slot.in_flight > 0 || slot.last_used.elapsed() < idle {
                return false;
            }
            slot.reaped = slot.peer.as_ref().is_some_and(|p| !p.is_transport_closed());
            slot.peer = None;
        }
        // The async lock is held through the shutdown, so a use that arrives now waits and
        // then starts a new child: never two at once.
        if let Some(client) = connection.client.take()
            && let Err(err) = switchboard_transport::shutdown(client).await
        {
            tracing::warn!(upstream = %self.name, %err, "ending an idle upstream connection failed");
        }
        true
    }

    /// Ends the connection now (shutdown, reload, eviction); a stdio child's whole process
    /// group is ended and reaped before this returns.
    pub async fn close(&self) {
        self.slot().peer = None;
        let client = self.connection.lock().await.client.take();
        if let Some(client) = client
            && let Err(err) = switchboard_transport::shutdown(client).await
        {
            tracing::warn!(upstream = %self.name, %err, "upstream shutdown failed");
        }
    }

    /// Nothing in flight and no connection: the entry can go.
    fn vacant(&self) -> bool {
        self.slot().in_flight == 0
            && self
                .connection
                .try_lock()
                .is_ok_and(|connection| connection.client.is_none())
    }
}

impl Use {
    pub fn relay(&self) -> &Arc<Relay> {
        &self.link.relay
    }

    /// The live connection for this use, connecting (or reconnecting, within the backoff)
    /// when there is none. `on_connect` runs once per new connection, under the connect lock.
    pub async fn ready<C, F, H>(self, connect: C, on_connect: H) -> Result<Lease, GatewayError>
    where
        C: FnOnce() -> F,
        F: Future<Output = Result<Connected, GatewayError>>,
        H: FnOnce(&Peer<RoleClient>, Fresh),
    {
        if let Some(peer) = self.link.live_peer() {
            return Ok(Lease { peer, using: self });
        }
        // The connect path holds a whole connect future (spawn, handshake, shutdown of the old
        // connection); boxed, it stays out of every call's future, which is moved into a box
        // on each call (before: ~24 KB copied per `tools/call`).
        Box::pin(self.connect_and_ready(connect, on_connect)).await
    }

    /// [`Use::ready`] when there is no live connection.
    async fn connect_and_ready<C, F, H>(
        self,
        connect: C,
        on_connect: H,
    ) -> Result<Lease, GatewayError>
    where
        C: FnOnce() -> F,
        F: Future<Output = Result<Connected, GatewayError>>,
        H: FnOnce(&Peer<RoleClient>, Fresh),
    {
        let link = self.link.clone();
        let mut connection = link.connection.lock().await;
        // Another use may have connected while this one waited for the lock.
        if let Some(peer) = link.live_peer() {
            return Ok(Lease { peer, using: self });
        }
        if let Some(client) = connection.client.take() {
            tracing::warn!(upstream = %link.name, "upstream connection lost; reconnecting");
            // Reap what is left of it (for stdio: the process group).
            let _ = switchboard_transport::shutdown(client).await;
        }
        if let Some(next) = connection.next_attempt
            && std::time::Instant::now() < next
        {
            return Err(GatewayError::Unavailable {
                upstream: link.name.to_string(),
                retry_in: next.saturating_duration_since(std::time::Instant::now()),
                message: connection.last_error.clone(),
            });
        }
        match connect().await {
            Ok((client, direct)) => {
                let peer = client.peer().clone();
                connection.client = Some(client);
                connection.failures = 0;
                connection.next_attempt = None;
                let restart = {
                    let mut slot = link.slot();
                    slot.peer = Some(peer.clone());
                    let after_idle = std::mem::take(&mut slot.reaped);
                    let restart = slot.connected_once && !after_idle;
                    slot.connected_once = true;
                    restart
                };
                on_connect(&peer, Fresh { direct, restart });
                Ok(Lease { peer, using: self })
            }
            Err(err) => {
                connection.failures = connection.failures.saturating_add(1);
                let wait = crate::upstream::backoff(connection.failures, &link.name);
                connection.next_attempt = Some(std::time::Instant::now() + wait);
                connection.last_error = err.to_string();
                tracing::warn!(upstream = %link.name, %err, retry_in = ?wait, "upstream connect failed");
                Err(err)
            }
        }
    }
}

/// One downstream session or connection, for keying per-client children. The gateway's MCP
/// server holds one per instance, and rmcp makes an instance per stdio or legacy SSE
/// connection and per Streamable HTTP session (and per stateless request, which is why those
/// are keyed by subject instead). Dropped when the session ends, which the reaper notices.
#[derive(Debug)]
pub struct ClientSession {
    id: u64,
}

impl ClientSession {
    pub fn new() -> Arc<ClientSession> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Arc::new(ClientSession {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }
}

/// Who a per-client child belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// A downstream session or connection ([`ClientSession::id`]).
    Session(u64),
    /// A stateless (2026-07-28) request: its authenticated subject; `None`: anonymous (all
    /// anonymous stateless callers share one child).
    Subject(Option<String>),
}

struct ClientChild {
    key: ClientKey,
    /// The session, to end the child when it ends; `None` for subject keys.
    session: Option<Weak<ClientSession>>,
    link: Arc<Supervised>,
}

impl ClientChild {
    fn session_ended(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.strong_count() == 0)
    }
}

#[derive(Default)]
struct PoolState {
    children: Vec<ClientChild>,
    closed: bool,
}

/// Why [`ClientPool::claim`] gave no child.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// As many children as allowed, all busy.
    Full,
    /// The upstream is shut down.
    Closed,
}

/// The per-client children of one upstream (module docs).
#[derive(Default)]
pub struct ClientPool {
    state: Mutex<PoolState>,
}

impl ClientPool {
    fn state(&self) -> MutexGuard<'_, PoolState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Claims `key`'s child for one use: its existing one, or a new entry when there are fewer
    /// than `cap`, or a new entry in place of the least recently used idle one, returned to be
    /// closed before the new child starts. The use is counted before the pool lock is released,
    /// so nothing can evict or reap the entry in between.
    pub fn claim(
        &self,
        name: &str,
        key: ClientKey,
        session: Option<&Arc<ClientSession>>,
        cap: usize,
    ) -> Result<(Use, Option<Arc<Supervised>>), Refusal> {
        let mut state = self.state();
        if state.closed {
            return Err(Refusal::Closed);
        }
        if let Some(child) = state.children.iter().find(|c| c.key == key) {
            return Ok((child.link.begin(true), None));
        }
        let mut evicted = None;
        if state.children.len() >= cap {
            let usages: Vec<Usage> = state.children.iter().map(|c| c.link.usage()).collect();
            let Some(index) = choose_eviction(&usages) else {
                return Err(Refusal::Full);
            };
            evicted = Some(state.children.swap_remove(index).link);
        }
        let link = Supervised::new(name, Arc::new(Relay::default()));
        let using = link.begin(true);
        state.children.push(ClientChild {
            key,
            session: session.map(Arc::downgrade),
            link,
        });
        Ok((using, evicted))
    }

    /// Per-client children with a running process.
    pub fn live(&self) -> usize {
        self.state()
            .children
            .iter()
            .filter(|c| c.link.usage().live)
            .count()
    }

    /// Closes the pool for good and hands back every child, to be closed.
    pub fn close_all(&self) -> Vec<Arc<Supervised>> {
        let mut state = self.state();
        state.closed = true;
        state.children.drain(..).map(|c| c.link).collect()
    }

    /// Every child, and whether its session has ended.
    fn snapshot(&self) -> Vec<(Arc<Supervised>, bool)> {
        self.state()
            .children
            .iter()
            .map(|c| (c.link.clone(), c.session_ended()))
            .collect()
    }

    /// Drops entries with neither a child nor a use in flight (reaped, or never connected).
    fn remove_vacant(&self) {
        self.state().children.retain(|c| !c.link.vacant());
    }
}

/// One pass of the reaper: the shared connection and every client child idle for `idle`
/// (`None`: never), and the children of ended sessions, are ended.
pub async fn reap(shared: &Supervised, clients: &ClientPool, idle: Option<Duration>) {
    if let Some(idle) = idle
        && shared.reap_if_idle(idle).await
    {
        tracing::info!(upstream = %shared.name, "ended the idle shared child; it starts again on next use");
    }
    for (link, ended) in clients.snapshot() {
        let limit = if ended { Some(Duration::ZERO) } else { idle };
        if let Some(limit) = limit
            && link.reap_if_idle(limit).await
        {
            let why = if ended { "its session ended" } else { "idle" };
            tracing::info!(upstream = %link.name, why, "ended a per-client child");
        }
    }
    clients.remove_vacant();
}

/// How often the reaper looks: half the idle timeout, within 100 ms to 1 s (a second when only
/// ended sessions are watched).
pub fn reap_interval(idle: Option<Duration>) -> Duration {
    idle.map_or(Duration::from_secs(1), |idle| {
        (idle / 2).clamp(Duration::from_millis(100), Duration::from_secs(1))
    })
}

/// The reaper task of one upstream; it stops when `stop` says so or its sender is dropped,
/// after finishing the pass under way (so no child is left half shut down).
pub fn spawn_reaper(
    shared: Arc<Supervised>,
    clients: Arc<ClientPool>,
    idle: Option<Duration>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(reap_interval(idle));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
                _ = ticker.tick() => reap(&shared, &clients, idle).await,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(busy: bool, live: bool, secs_ago: u64, now: Instant) -> Usage {
        Usage {
            busy,
            live,
            last_used: now - Duration::from_secs(secs_ago),
        }
    }

    #[test]
    fn eviction_takes_the_least_recently_used_idle_child() {
        let now = Instant::now();
        let usages = [
            usage(false, true, 10, now),
            usage(true, true, 99, now),
            usage(false, true, 30, now),
            usage(false, true, 20, now),
        ];
        // The busy one is older, but busy children are never evicted.
        assert_eq!(choose_eviction(&usages), Some(2));
    }

    #[test]
    fn eviction_prefers_an_entry_without_a_running_child() {
        let now = Instant::now();
        let usages = [usage(false, true, 50, now), usage(false, false, 1, now)];
        assert_eq!(choose_eviction(&usages), Some(1));
    }

    #[test]
    fn no_eviction_when_every_child_is_busy() {
        let now = Instant::now();
        assert_eq!(choose_eviction(&[usage(true, true, 5, now)]), None);
        assert_eq!(choose_eviction(&[]), None);
    }

    #[tokio::test]
    async fn the_pool_keys_clients_caps_and_evicts_only_idle_entries() {
        let pool = ClientPool::default();
        let (a_session, b_session) = (ClientSession::new(), ClientSession::new());
        let a = ClientKey::Session(a_session.id());
        let b = ClientKey::Session(b_session.id());
        let (a_use, evicted) = pool
            .claim("u", a.clone(), Some(&a_session), 1)
            .expect("first client");
        assert!(evicted.is_none());
        // The same client again: its entry, no new one.
        let (again, evicted) = pool
            .claim("u", a.clone(), Some(&a_session), 1)
            .expect("same client");
        assert!(evicted.is_none());
        assert!(Arc::ptr_eq(&a_use.link, &again.link));
        drop(again);
        // A second client while the first is busy: refused, not queued.
        assert_eq!(
            pool.claim("u", b.clone(), Some(&b_session), 1).err(),
            Some(Refusal::Full)
        );
        // Once the first is idle, the second evicts it.
        drop(a_use);
        let (b_use, evicted) = pool
            .claim("u", b.clone(), Some(&b_session), 1)
            .expect("evicts the idle one");
        assert!(evicted.is_some());
        drop(b_use);
        // Nothing connected: the entry is vacant and the reaper's pass removes it.
        reap(&Supervised::new("u", Arc::default()), &pool, None).await;
        assert!(pool.snapshot().is_empty());
        // Subject keys for stateless requests: one entry per subject.
        let alice = ClientKey::Subject(Some("alice".into()));
        let (one, _) = pool.claim("u", alice.clone(), None, 2).expect("alice");
        let (two, _) = pool.claim("u", alice, None, 2).expect("alice again");
        assert!(Arc::ptr_eq(&one.link, &two.link));
        drop((one, two));
        assert_eq!(pool.close_all().len(), 1);
        assert_eq!(
            pool.claim("u", ClientKey::Subject(None), None, 2).err(),
            Some(Refusal::Closed)
        );
    }

    #[test]
    fn the_reaper_looks_often_enough_for_the_timeout() {
        assert_eq!(reap_interval(None), Duration::from_secs(1));
        assert_eq!(
            reap_interval(Some(Duration::from_secs(1))),
            Duration::from_millis(500)
        );
        assert_eq!(
            reap_interval(Some(Duration::from_secs(300))),
            Duration::from_secs(1)
        );
    }

    #[tokio::test]
    async fn an_ended_session_is_seen() {
        let pool = ClientPool::default();
        let session = ClientSession::new();
        let (using, _) = pool
            .claim("u", ClientKey::Session(session.id()), Some(&session), 4)
            .expect("claim");
        drop(using);
        assert!(!pool.snapshot()[0].1);
        drop(session);
        assert!(pool.snapshot()[0].1);
    }
}
