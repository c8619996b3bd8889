//! One upstream at run time: its connection (with supervised reconnects), its cached tool list,
//! and its circuit state.
//!
//! The connection is made lazily and re-made after it dies, with exponential backoff and
//! jitter, so a dead upstream costs one quick error per call while it is down and comes back on
//! its own. The tool list is cached until the upstream says `notifications/tools/list_changed`
//! or the TTL passes. The connections themselves, the per-client children of an isolated stdio
//! upstream and the idle reaper are in [`crate::children`].

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

#[allow(deprecated)] // sampling, roots and logging: deprecated by SEP-2577, still bridged
use rmcp::{
    ClientHandler, ErrorData, Peer, RoleClient,
    model::{
        ClientCapabilities, ClientConfig, CreateMessageRequestParams, CreateMessageResult,
        ElicitRequestParams, ElicitResult, Implementation, ListRootsResult,
        LoggingMessageNotificationParam, ProgressNotificationParam,
        ResourceUpdatedNotificationParam, Tool,
    },
    service::{NotificationContext, RequestContext},
};
use switchboard_transport::ConnectOptions;

use crate::{
    builtin,
    children::{ClientPool, Connected, Lease, Refusal, Supervised},
    config::{CompiledFilter, Isolation, UpstreamConfig},
    error::GatewayError,
    hub::Hub,
    passthrough::{Downstream, Relay},
    resources::UpstreamLists,
    stack::circuit::Circuit,
};

/// Smallest and largest wait between reconnect attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The gateway's client handler for one upstream: it hears `list_changed` notifications and
/// relays progress, logs and server-to-client requests to the gateway's clients
/// ([`crate::passthrough`]).
#[derive(Clone)]
pub struct UpstreamEvents {
    name: Arc<str>,
    tools_stale: Arc<AtomicBool>,
    hub: Arc<Hub>,
    relay: Arc<Relay>,
    lists: Arc<UpstreamLists>,
}

#[allow(deprecated)] // sampling, roots and logging: deprecated by SEP-2577, still bridged
impl ClientHandler for UpstreamEvents {
    fn get_info(&self) -> ClientConfig {
        // Sampling, elicitation and roots are bridged to the gateway's clients that have them.
        ClientConfig::new(
            ClientCapabilities::builder()
                .enable_roots()
                .enable_sampling()
                .enable_elicitation()
                .build(),
            Implementation::new("switchboard-gateway", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        tracing::info!(upstream = %self.name, "upstream prompt list changed");
        self.lists.prompts_changed();
        self.hub.prompts_changed();
        self.hub
            .upstream_list_changed(&self.name, crate::cluster::ListKind::Prompts);
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        tracing::info!(upstream = %self.name, "upstream resource list changed");
        self.lists.resources_changed();
        self.hub.resources_changed();
        self.hub
            .upstream_list_changed(&self.name, crate::cluster::ListKind::Resources);
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.hub.resource_updated(&self.name, &params.uri);
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.relay.progress(params);
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.relay.log(&self.name, params);
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.relay.create_message(&self.name, params).await
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        self.relay.create_elicitation(&self.name, request).await
    }

    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        self.relay.list_roots(&self.name).await
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        tracing::info!(upstream = %self.name, "upstream tool list changed");
        self.tools_stale.store(true, Ordering::Release);
        self.hub.tools_changed();
        self.hub
            .upstream_list_changed(&self.name, crate::cluster::ListKind::Tools);
    }
}

struct CachedTools {
    tools: Arc<Vec<Tool>>,
    fetched: Instant,
}

/// An upstream's run-time state. Shared by every session of the gateway.
pub struct UpstreamRuntime {
    pub config: UpstreamConfig,
    pub filter: CompiledFilter,
    pub circuit: Circuit,
    connect_options: ConnectOptions,
    /// The shared connection ([`crate::children`]).
    shared: Arc<Supervised>,
    /// `isolation = "per_client"`: one child per downstream client.
    clients: Arc<ClientPool>,
    /// The idle reaper, once started, and its stop signal.
    reaper: Mutex<Option<Reaper>>,
    /// Set by [`UpstreamRuntime::shutdown`]: no reaper starts after it.
    closed: AtomicBool,
    /// A built-in server's in-process `tools/call` ([`builtin::DirectTools`]), set with `peer`.
    direct: Mutex<Option<builtin::DirectTools>>,
    tools: Mutex<Option<CachedTools>>,
    tools_stale: Arc<AtomicBool>,
    hub: Arc<Hub>,
    /// Requests in flight on the shared connection for the gateway's clients (progress,
    /// logs, sampling…); each per-client child has its own.
    pub relay: Arc<Relay>,
    /// Cached prompt, resource and template lists.
    pub lists: Arc<UpstreamLists>,
    /// Successful connections after the first: restarts (not counting a child started
    /// again after the idle reaper ended it).
    pub restarts: AtomicU64,
}

struct Reaper {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl UpstreamRuntime {
    pub fn new(
        config: UpstreamConfig,
        hub: Arc<Hub>,
        http_client: Option<reqwest::Client>,
    ) -> Result<UpstreamRuntime, crate::config::ConfigError> {
        let filter = config.tools.compile(&config.name)?;
        let connect_options = ConnectOptions {
            name: config.name.clone(),
            http_client,
            era: config.era.into(),
            ..ConnectOptions::default()
        };
        let relay: Arc<Relay> = Arc::default();
        Ok(UpstreamRuntime {
            circuit: Circuit::new(&config.circuit),
            filter,
            connect_options,
            shared: Supervised::new(&config.name, relay.clone()),
            clients: Arc::default(),
            reaper: Mutex::new(None),
            closed: AtomicBool::new(false),
            direct: Mutex::new(None),
            tools: Mutex::new(None),
            tools_stale: Arc::new(AtomicBool::new(false)),
            hub,
            relay,
            lists: Arc::default(),
            restarts: AtomicU64::new(0),
            config,
        })
    }

    /// Another replica heard this upstream's `list_changed`: refresh that list here too, and
    /// tell this replica's clients.
    pub fn list_changed_elsewhere(&self, list: crate::cluster::ListKind) {
        match list {
            crate::cluster::ListKind::Tools => {
                self.tools_stale.store(true, Ordering::Release);
                self.hub.tools_changed();
            }
            crate::cluster::ListKind::Prompts => {
                self.lists.prompts_changed();
                self.hub.prompts_changed();
            }
            crate::cluster::ListKind::Resources => {
                self.lists.resources_changed();
                self.hub.resources_changed();
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    fn live_peer(&self) -> Option<Peer<RoleClient>> {
        self.shared.live_peer()
    }

    /// The live shared connection, connecting (or reconnecting, within the backoff) when
    /// needed. The use ends at once; hold a [`Lease`] ([`UpstreamRuntime::lease`]) instead
    /// for anything that takes a while, so the idle reaper leaves the connection alone.
    pub async fn peer(&self) -> Result<Peer<RoleClient>, GatewayError> {
        Ok(self.lease_shared(true).await?.peer().clone())
    }

    /// The connection for one request on behalf of `down`: its own child when the upstream
    /// isolates clients (`isolation = "per_client"`) and the request comes from a client,
    /// else the shared connection. Counted in flight until the lease is dropped.
    pub async fn lease(&self, down: Option<&Downstream>) -> Result<Lease, GatewayError> {
        match down {
            Some(down) if self.config.isolation == Isolation::PerClient => {
                self.lease_client(down).await
            }
            _ => self.lease_shared(true).await,
        }
    }

    /// The shared connection for a health check: not counted as activity, so checks alone do
    /// not keep an idle child running. `None` while the reaper has it ended for idleness (a
    /// check would only start it again).
    pub async fn lease_for_check(&self) -> Result<Option<Lease>, GatewayError> {
        if self.shared.idle_reaped() {
            return Ok(None);
        }
        self.lease_shared(false).await.map(Some)
    }

    async fn lease_shared(&self, touch: bool) -> Result<Lease, GatewayError> {
        // A disabled upstream is never connected, whoever asks (calls, lists, health checks).
        if !self.config.enabled {
            return Err(GatewayError::Disabled {
                upstream: self.name().to_string(),
            });
        }
        self.start_reaper();
        let relay = self.relay.clone();
        self.shared
            .begin(touch)
            .ready(
                || self.connect(relay),
                |peer, fresh| {
                    if let Ok(mut slot) = self.direct.lock() {
                        *slot = fresh.direct;
                    }
                    // Remember its capabilities, for the gateway's own (`get_info`).
                    self.relay.capabilities(Some(peer));
                    if fresh.restart {
                        self.restarts.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(upstream = %self.name(), "upstream reconnected");
                    }
                    // A new connection may serve a different tool list.
                    self.tools_stale.store(true, Ordering::Release);
                    self.lists.all_changed();
                },
            )
            .await
    }

    async fn lease_client(&self, down: &Downstream) -> Result<Lease, GatewayError> {
        if !self.config.enabled {
            return Err(GatewayError::Disabled {
                upstream: self.name().to_string(),
            });
        }
        self.start_reaper();
        let max_processes = self.config.max_processes();
        // One of the processes is the shared connection's.
        let cap = (max_processes as usize).saturating_sub(1);
        let (using, evicted) = self
            .clients
            .claim(self.name(), down.client_key(), down.session(), cap)
            .map_err(|refusal| match refusal {
                Refusal::Full => GatewayError::ProcessCapReached {
                    upstream: self.name().to_string(),
                    max_processes,
                },
                Refusal::Closed => GatewayError::Connect {
                    upstream: self.name().to_string(),
                    message: "the upstream is shut down".into(),
                },
            })?;
        if let Some(evicted) = evicted {
            tracing::info!(upstream = %self.name(), max_processes, "evicting the least recently used idle per-client child");
            // In its own task, so a caller giving up cannot leave it half shut down; awaited,
            // so the new child never runs beside it over the cap.
            let _ = tokio::spawn(async move { evicted.close().await }).await;
        }
        let relay = using.relay().clone();
        using
            .ready(
                || self.connect(relay),
                |_, fresh| {
                    if fresh.restart {
                        self.restarts.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(upstream = %self.name(), "per-client child restarted");
                    }
                },
            )
            .await
    }

    /// Starts the idle reaper on first use, when the upstream has anything to reap: a stdio
    /// upstream with an idle timeout, or with per-client children (whose sessions can end).
    fn start_reaper(&self) {
        if !self.config.is_stdio() {
            return;
        }
        let idle = self.config.idle_timeout();
        if idle.is_none() && self.config.isolation == Isolation::Shared {
            return;
        }
        let Ok(mut reaper) = self.reaper.lock() else {
            return;
        };
        if reaper.is_some() || self.closed.load(Ordering::Acquire) {
            return;
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task =
            crate::children::spawn_reaper(self.shared.clone(), self.clients.clone(), idle, stopped);
        *reaper = Some(Reaper { stop, task });
    }

    /// Whether the idle reaper has ended the shared child and nothing has used it since.
    pub fn idle_reaped(&self) -> bool {
        self.shared.idle_reaped()
    }

    /// Per-client children running now (`isolation = "per_client"`).
    pub fn client_children(&self) -> usize {
        self.clients.live()
    }

    /// The in-process call path of a built-in upstream that is enabled and connected.
    pub fn direct_tools(&self) -> Option<builtin::DirectTools> {
        if !self.config.enabled || self.live_peer().is_none() {
            return None;
        }
        self.direct.lock().ok()?.clone()
    }

    /// Makes a new connection whose server-to-client traffic goes to `relay`.
    async fn connect(&self, relay: Arc<Relay>) -> Result<Connected, GatewayError> {
        let events = UpstreamEvents {
            name: Arc::from(self.name()),
            tools_stale: self.tools_stale.clone(),
            hub: self.hub.clone(),
            relay,
            lists: self.lists.clone(),
        };
        if let Some(server) = &self.config.builtin {
            return builtin::connect(self.name(), server, events).await;
        }
        if let Some(openapi) = &self.config.openapi {
            return builtin::connect_openapi(self.name(), openapi, events).await;
        }
        let Some(upstream) = &self.config.connect else {
            return Err(GatewayError::Connect {
                upstream: self.name().to_string(),
                message: "no connection configured".into(),
            });
        };
        switchboard_transport::connect(upstream, events, &self.connect_options)
            .await
            .map(|client| (client, None))
            .map_err(|e| GatewayError::Connect {
                upstream: self.name().to_string(),
                message: e.to_string(),
            })
    }

    /// The upstream's tools: cached, refreshed after `list_changed`, a reconnect or the TTL.
    pub async fn tools(&self) -> Result<Arc<Vec<Tool>>, GatewayError> {
        if !self.config.enabled {
            // Listed as having no tools: not an error, and one shared list, so the catalog
            // sees no change.
            static NONE: std::sync::LazyLock<Arc<Vec<Tool>>> =
                std::sync::LazyLock::new(|| Arc::new(Vec::new()));
            return Ok(NONE.clone());
        }
        let stale = self.tools_stale.load(Ordering::Acquire);
        if !stale
            && let Ok(guard) = self.tools.lock()
            && let Some(cached) = guard.as_ref()
            && cached.fetched.elapsed() < self.config.tools_ttl()
        {
            return Ok(cached.tools.clone());
        }
        // Held through the listing, so the idle reaper cannot end the child under it.
        let lease = self.lease_shared(true).await?;
        // Clear the flag before listing, so a change announced during the listing is not lost.
        self.tools_stale.store(false, Ordering::Release);
        let listed =
            tokio::time::timeout(self.config.list_timeout(), lease.peer().list_all_tools())
                .await
                .map_err(|_| GatewayError::Timeout {
                    upstream: self.name().to_string(),
                    timeout: self.config.list_timeout(),
                })?
                .map_err(|e| {
                    self.tools_stale.store(true, Ordering::Release);
                    GatewayError::List {
                        upstream: self.name().to_string(),
                        message: e.to_string(),
                    }
                })?;
        let tools = Arc::new(listed);
        if let Ok(mut guard) = self.tools.lock() {
            *guard = Some(CachedTools {
                tools: tools.clone(),
                fetched: Instant::now(),
            });
        }
        Ok(tools)
    }

    /// Closes every connection: the reaper stops, and the shared connection and every
    /// per-client child are ended; a stdio child's whole process group is ended and reaped.
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        let reaper = self.reaper.lock().ok().and_then(|mut r| r.take());
        if let Some(reaper) = reaper {
            let _ = reaper.stop.send(true);
            // It finishes the pass under way, so no child is left half shut down.
            let _ = reaper.task.await;
        }
        if let Ok(mut slot) = self.direct.lock() {
            *slot = None;
        }
        let children = self.clients.close_all();
        futures::future::join_all(
            std::iter::once(self.shared.clone())
                .chain(children)
                .map(|link| async move { link.close().await }),
        )
        .await;
    }
}

impl Drop for UpstreamRuntime {
    fn drop(&mut self) {
        // Not shut down (a state that was never started): stop the reaper; the children are
        // killed when their handles drop.
        if let Ok(reaper) = self.reaper.get_mut()
            && let Some(reaper) = reaper.take()
        {
            reaper.task.abort();
        }
    }
}

/// Exponential backoff with ±25% jitter, so restarting upstreams do not reconnect in lockstep.
pub(crate) fn backoff(failures: u32, name: &str) -> Duration {
    let exp = BACKOFF_MIN.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let base = exp.min(BACKOFF_MAX);
    // Jitter from the clock and the name: no RNG dependency, and varied across upstreams.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ name
            .bytes()
            .fold(0u32, |h, b| h.rotate_left(5) ^ u32::from(b));
    let spread = base.as_millis() as u64 / 4;
    let jitter = if spread == 0 {
        0
    } else {
        u64::from(seed) % (2 * spread)
    };
    Duration::from_millis((base.as_millis() as u64).saturating_sub(spread) + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let first = backoff(1, "a");
        assert!(first >= Duration::from_millis(187) && first <= Duration::from_millis(313));
        let later = backoff(6, "a");
        assert!(later >= Duration::from_secs(6), "{later:?}");
        let capped = backoff(40, "a");
        assert!(capped <= Duration::from_millis(37_500), "{capped:?}");
    }
}
