//! One upstream at run time: its connection (with supervised reconnects), its cached tool list,
//! and its circuit state.
//!
//! The connection is made lazily and re-made after it dies, with exponential backoff and
//! jitter, so a dead upstream costs one quick error per call while it is down and comes back on
//! its own. The tool list is cached until the upstream says `notifications/tools/list_changed`
//! or the TTL passes.

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
use switchboard_transport::{ConnectOptions, UpstreamClient};

use crate::{
    builtin,
    config::{CompiledFilter, UpstreamConfig},
    error::GatewayError,
    hub::Hub,
    passthrough::Relay,
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
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        tracing::info!(upstream = %self.name, "upstream resource list changed");
        self.lists.resources_changed();
        self.hub.resources_changed();
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
    }
}

struct CachedTools {
    tools: Arc<Vec<Tool>>,
    fetched: Instant,
}

struct Connection {
    client: Option<UpstreamClient<UpstreamEvents>>,
    failures: u32,
    next_attempt: Option<Instant>,
    last_error: String,
}

/// An upstream's run-time state. Shared by every session of the gateway.
pub struct UpstreamRuntime {
    pub config: UpstreamConfig,
    pub filter: CompiledFilter,
    pub circuit: Circuit,
    connect_options: ConnectOptions,
    connection: tokio::sync::Mutex<Connection>,
    /// A cheap clone of the live peer, read on every call without taking the async lock.
    peer: Mutex<Option<Peer<RoleClient>>>,
    /// A built-in server's in-process `tools/call` ([`builtin::DirectTools`]), set with `peer`.
    direct: Mutex<Option<builtin::DirectTools>>,
    tools: Mutex<Option<CachedTools>>,
    tools_stale: Arc<AtomicBool>,
    hub: Arc<Hub>,
    /// Requests in flight here for the gateway's clients (progress, logs, sampling…).
    pub relay: Arc<Relay>,
    /// Cached prompt, resource and template lists.
    pub lists: Arc<UpstreamLists>,
    /// Successful connections after the first: restarts.
    pub restarts: AtomicU64,
    connected_once: AtomicBool,
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
        Ok(UpstreamRuntime {
            circuit: Circuit::new(&config.circuit),
            filter,
            connect_options,
            connection: tokio::sync::Mutex::new(Connection {
                client: None,
                failures: 0,
                next_attempt: None,
                last_error: String::new(),
            }),
            peer: Mutex::new(None),
            direct: Mutex::new(None),
            tools: Mutex::new(None),
            tools_stale: Arc::new(AtomicBool::new(false)),
            hub,
            relay: Arc::default(),
            lists: Arc::default(),
            restarts: AtomicU64::new(0),
            connected_once: AtomicBool::new(false),
            config,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    fn live_peer(&self) -> Option<Peer<RoleClient>> {
        let guard = self.peer.lock().ok()?;
        guard.as_ref().filter(|p| !p.is_transport_closed()).cloned()
    }

    /// The live connection, connecting (or reconnecting, within the backoff) when needed.
    pub async fn peer(&self) -> Result<Peer<RoleClient>, GatewayError> {
        // A disabled upstream is never connected, whoever asks (calls, lists, health checks).
        if !self.config.enabled {
            return Err(GatewayError::Disabled {
                upstream: self.name().to_string(),
            });
        }
        if let Some(peer) = self.live_peer() {
            return Ok(peer);
        }
        let mut connection = self.connection.lock().await;
        // Another caller may have reconnected while we waited for the lock.
        if let Some(peer) = self.live_peer() {
            return Ok(peer);
        }
        if let Some(client) = connection.client.take() {
            tracing::warn!(upstream = %self.name(), "upstream connection lost; reconnecting");
            // Reap what is left of it (for stdio: the process group).
            let _ = switchboard_transport::shutdown(client).await;
        }
        if let Some(next) = connection.next_attempt
            && Instant::now() < next
        {
            return Err(GatewayError::Unavailable {
                upstream: self.name().to_string(),
                retry_in: next.saturating_duration_since(Instant::now()),
                message: connection.last_error.clone(),
            });
        }
        match self.connect().await {
            Ok((client, direct)) => {
                let peer = client.peer().clone();
                if let Ok(mut slot) = self.direct.lock() {
                    *slot = direct;
                }
                // Remember its capabilities, for the gateway's own (`get_info`).
                self.relay.capabilities(Some(&peer));
                connection.client = Some(client);
                connection.failures = 0;
                connection.next_attempt = None;
                if let Ok(mut slot) = self.peer.lock() {
                    *slot = Some(peer.clone());
                }
                if self.connected_once.swap(true, Ordering::AcqRel) {
                    self.restarts.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(upstream = %self.name(), "upstream reconnected");
                }
                // A new connection may serve a different tool list.
                self.tools_stale.store(true, Ordering::Release);
                self.lists.all_changed();
                Ok(peer)
            }
            Err(err) => {
                connection.failures = connection.failures.saturating_add(1);
                let wait = backoff(connection.failures, self.name());
                connection.next_attempt = Some(Instant::now() + wait);
                connection.last_error = err.to_string();
                tracing::warn!(upstream = %self.name(), %err, retry_in = ?wait, "upstream connect failed");
                Err(err)
            }
        }
    }

    /// The in-process call path of a built-in upstream that is enabled and connected.
    pub fn direct_tools(&self) -> Option<builtin::DirectTools> {
        if !self.config.enabled || self.live_peer().is_none() {
            return None;
        }
        self.direct.lock().ok()?.clone()
    }

    async fn connect(
        &self,
    ) -> Result<(UpstreamClient<UpstreamEvents>, Option<builtin::DirectTools>), GatewayError> {
        let events = UpstreamEvents {
            name: Arc::from(self.name()),
            tools_stale: self.tools_stale.clone(),
            hub: self.hub.clone(),
            relay: self.relay.clone(),
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
        let peer = self.peer().await?;
        // Clear the flag before listing, so a change announced during the listing is not lost.
        self.tools_stale.store(false, Ordering::Release);
        let listed = tokio::time::timeout(self.config.list_timeout(), peer.list_all_tools())
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

    /// Closes the connection; a stdio child's whole process group is ended and reaped.
    pub async fn shutdown(&self) {
        if let Ok(mut slot) = self.peer.lock() {
            *slot = None;
        }
        if let Ok(mut slot) = self.direct.lock() {
            *slot = None;
        }
        let client = self.connection.lock().await.client.take();
        if let Some(client) = client
            && let Err(err) = switchboard_transport::shutdown(client).await
        {
            tracing::warn!(upstream = %self.name(), %err, "upstream shutdown failed");
        }
    }
}

/// Exponential backoff with ±25% jitter, so restarting upstreams do not reconnect in lockstep.
fn backoff(failures: u32, name: &str) -> Duration {
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
