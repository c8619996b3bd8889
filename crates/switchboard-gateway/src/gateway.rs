//! The gateway: upstreams, the catalog built from them, and the call stack.

use std::sync::{Arc, Mutex};

use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult, JsonObject};
use serde::Serialize;
use tower::ServiceExt;

use crate::{
    catalog::Catalog,
    config::{ConfigError, GatewayConfig},
    error::GatewayError,
    health::{HealthMonitor, HealthReport},
    hub::Hub,
    passthrough::Downstream,
    stack::{
        self, CallService, ToolCall,
        cache::{CacheStats, ResultCaches},
        retry::{Retries, RetryStats},
    },
    upstream::UpstreamRuntime,
};

/// The gateway. Its configuration-derived state ([`GatewayState`]) is swapped whole on a
/// reload ([`Gateway::reload`]); what lives as long as the process (the client hub, metrics,
/// the audit log) is shared by every state.
pub struct Gateway {
    state: std::sync::RwLock<Arc<GatewayState>>,
    shared: Shared,
    /// Serialises reloads.
    reloading: tokio::sync::Mutex<()>,
    reloads: Mutex<ReloadStats>,
}

/// Reloads since start, for `/api/status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadStats {
    pub applied: u64,
    pub failed: u64,
    /// Why the last failed reload failed.
    pub last_error: Option<String>,
}

/// What outlives a reload.
struct Shared {
    hub: Arc<Hub>,
    observer: Arc<crate::telemetry::Observer>,
    audit: Option<Arc<switchboard_audit::Auditor>>,
    /// One pooled HTTP client for every HTTP and SSE upstream.
    http_client: Option<reqwest::Client>,
    /// Upstreams a reload dropped, until the calls still running on them finish.
    retiring: Arc<Mutex<Vec<Arc<UpstreamRuntime>>>>,
    /// `[cluster]`: the Redis other replicas share (result cache, events).
    cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Asks the configuration reloader (the binary's) to reread its file now.
    reload_requests: Arc<tokio::sync::Notify>,
}

/// Everything one configuration makes: upstreams (unchanged ones are carried over from the
/// previous state by a reload), the catalog, the call stack and its per-upstream state.
/// In-flight calls hold the state they started on, so a reload never cuts one off.
pub struct GatewayState {
    upstreams: Vec<Arc<UpstreamRuntime>>,
    /// `tools/call`s running on this state; a reload waits for them before it ends upstreams
    /// the new configuration dropped.
    in_flight: InFlight,
    catalog: Mutex<Option<Arc<Catalog>>>,
    /// Serialises catalog rebuilds, so a burst of `tools/list` fans out once.
    rebuild: tokio::sync::Mutex<()>,
    stack: CallService,
    /// Per-upstream state of the stack's retry and cache layers, for status and invalidation.
    retries: Arc<Retries>,
    caches: Arc<ResultCaches>,
    health: HealthMonitor,
    /// Authorization rules (`[security]`); `None`: every tool for everyone.
    policies: Option<Arc<crate::auth::policy::Policies>>,
    /// Metrics and the live call stream, fed by the stack's observe layer.
    observer: Arc<crate::telemetry::Observer>,
    /// `[[security.rate_limit]]`, for their counters; `None`: no limits.
    rate_limits: Option<Arc<crate::ratelimit::RateLimits>>,
    /// The audit log (`[audit]`), also for refusals before the stack; `None`: not audited.
    audit: Option<Arc<switchboard_audit::Auditor>>,
}

/// One upstream's state, for `/api/status`, `switchboard status` and logs.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamStatus {
    pub name: String,
    pub circuit: &'static str,
    /// Times the circuit opened since the gateway started.
    pub circuit_opened: u64,
    pub restarts: u64,
    pub tools: Option<usize>,
    /// `enabled` from the configuration (a disabled upstream is never connected).
    pub enabled: bool,
    pub health: HealthReport,
    /// Absent when the upstream caches nothing.
    pub cache: Option<CacheStats>,
    pub retry: Option<RetryStats>,
    /// Calls, errors and recent p50/p95 latency; absent before the first call.
    pub calls: Option<crate::telemetry::CallStats>,
    /// Per-client children running now; only for `isolation = "per_client"` upstreams.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_client_children: Option<usize>,
}

impl GatewayState {
    /// The state for `config`, reusing `previous`'s runtime for each upstream whose settings
    /// did not change (its connection, child process and cached lists carry over).
    fn build(
        config: GatewayConfig,
        shared: &Shared,
        previous: Option<&GatewayState>,
    ) -> Result<GatewayState, ConfigError> {
        config.validate()?;
        let observer = shared.observer.clone();
        let audit = shared.audit.clone();
        let retries = Arc::new(Retries::new(&config.upstreams)?);
        let caches = Arc::new(ResultCaches::with_cluster(
            &config.upstreams,
            shared.cluster.as_ref(),
        )?);
        let policies = config.security.policies()?.map(Arc::new);
        let security = stack::Security {
            policies: policies.clone(),
            validation: config.security.validation.clone().map(Arc::new),
            rate_limits: if config.security.rate_limit.is_empty() {
                None
            } else {
                Some(Arc::new(crate::ratelimit::RateLimits::new(
                    &config.security.rate_limit,
                )?))
            },
            audit: audit.clone(),
        };
        let upstreams = config
            .upstreams
            .into_iter()
            .map(|u| {
                let kept = previous.and_then(|p| {
                    p.upstreams
                        .iter()
                        .find(|old| old.name() == u.name && same_settings(&old.config, &u))
                });
                match kept {
                    Some(old) => Ok(old.clone()),
                    None => UpstreamRuntime::new(u, shared.hub.clone(), shared.http_client.clone())
                        .map(Arc::new),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(GatewayState {
            in_flight: InFlight::default(),
            catalog: Mutex::new(None),
            rebuild: tokio::sync::Mutex::new(()),
            stack: stack::build_secured(
                retries.clone(),
                caches.clone(),
                &security,
                observer.clone(),
            ),
            observer,
            audit,
            rate_limits: security.rate_limits.clone(),
            policies,
            retries,
            caches,
            health: HealthMonitor::new(&upstreams),
            upstreams,
        })
    }

    pub fn upstreams(&self) -> &[Arc<UpstreamRuntime>] {
        &self.upstreams
    }

    /// Connects every upstream and lists its tools, concurrently. Returns the upstreams that
    /// could not be reached (they are retried on use); fails on a naming collision.
    pub async fn start(&self) -> Result<Vec<(String, GatewayError)>, GatewayError> {
        let started = tokio::time::Instant::now();
        let results = futures::future::join_all(self.upstreams.iter().map(|u| u.tools())).await;
        self.health
            .record_start(&self.upstreams, &results, started.elapsed());
        self.health.spawn(&self.upstreams);
        let failed = self
            .upstreams
            .iter()
            .zip(results)
            .filter_map(|(u, r)| r.err().map(|e| (u.name().to_string(), e)))
            .collect();
        self.catalog().await?;
        Ok(failed)
    }

    /// The current catalog, rebuilt when an upstream's tool list changed. Each upstream's
    /// listing has its own deadline; one that fails is skipped (logged) unless it is
    /// `fail_closed`.
    pub async fn catalog(&self) -> Result<Arc<Catalog>, GatewayError> {
        let _rebuilding = self.rebuild.lock().await;
        let listings = futures::future::join_all(self.upstreams.iter().map(|u| async move {
            match tokio::time::timeout(u.config.list_timeout(), u.tools()).await {
                Ok(result) => result,
                Err(_) => Err(GatewayError::Timeout {
                    upstream: u.name().to_string(),
                    timeout: u.config.list_timeout(),
                }),
            }
        }))
        .await;
        let mut sources = Vec::with_capacity(listings.len());
        for (upstream, listing) in self.upstreams.iter().zip(listings) {
            match listing {
                Ok(tools) => sources.push(Some(tools)),
                Err(err) if upstream.config.fail_closed => return Err(err),
                Err(err) => {
                    tracing::warn!(upstream = %upstream.name(), %err, "skipping upstream in tools/list");
                    sources.push(None);
                }
            }
        }
        if let Ok(guard) = self.catalog.lock()
            && let Some(current) = guard.as_ref()
            && current.built_from(&sources)
        {
            return Ok(current.clone());
        }
        let catalog = Arc::new(Catalog::build(&self.upstreams, sources)?);
        if let Ok(mut guard) = self.catalog.lock() {
            *guard = Some(catalog.clone());
        }
        Ok(catalog)
    }

    /// The last built catalog, without refreshing anything.
    pub fn cached_catalog(&self) -> Option<Arc<Catalog>> {
        self.catalog.lock().ok().and_then(|g| g.clone())
    }

    /// [`Gateway::call_as`] on this state.
    async fn call_as(
        &self,
        request: CallToolRequestParams,
        downstream: Option<Downstream>,
        principal: Option<Arc<crate::auth::Identity>>,
    ) -> Result<CallToolResponse, GatewayError> {
        // A denied tool is refused the same way whether or not it exists, so refusals reveal
        // nothing about tools the caller may not see.
        if let (Some(policies), Some(who)) = (&self.policies, &principal)
            && let Err(denial) = policies.check(who, &request.name)
        {
            let err = GatewayError::Forbidden {
                tool: request.name.to_string(),
                subject: who.subject.clone(),
                reason: denial.to_string(),
            };
            self.observer
                .record_refusal(&request.name, Some(&who.subject), err.kind());
            self.audit_unrouted(&request, downstream.as_ref(), principal.as_deref(), &err)
                .await?;
            return Err(err);
        }
        let exposed = request.name.as_ref();
        let cached = self.cached_catalog();
        let route = match cached.as_ref().and_then(|c| c.route(exposed)) {
            Some(route) => route.clone(),
            // Unknown to the last build: the tool may be new; rebuild once before refusing.
            None => match self.catalog().await.map(|c| c.route(exposed).cloned()) {
                Ok(Some(route)) => route,
                Ok(None) => {
                    let err = self.unknown_tool(exposed);
                    let who = principal.as_ref().map(|p| p.subject.as_str());
                    self.observer.record_refusal(exposed, who, err.kind());
                    self.audit_unrouted(&request, downstream.as_ref(), principal.as_deref(), &err)
                        .await?;
                    return Err(err);
                }
                Err(err) => {
                    self.audit_unrouted(&request, downstream.as_ref(), principal.as_deref(), &err)
                        .await?;
                    return Err(err);
                }
            },
        };
        self.stack
            .clone()
            .oneshot(ToolCall {
                upstream: route.upstream,
                tool: route.tool,
                exposed: exposed.to_string(),
                arguments: request.arguments,
                downstream,
                input_responses: request.input_responses,
                request_state: request.request_state,
                hints: route.hints,
                identity: principal
                    .as_ref()
                    .filter(|p| !p.anonymous)
                    .map(|p| p.subject.clone()),
                principal,
            })
            .await
    }

    /// Records a call refused before the stack (which audits every call it sees); `Err` when
    /// the record could not be committed.
    async fn audit_unrouted(
        &self,
        request: &CallToolRequestParams,
        downstream: Option<&Downstream>,
        principal: Option<&crate::auth::Identity>,
        err: &GatewayError,
    ) -> Result<(), GatewayError> {
        match &self.audit {
            Some(auditor) => {
                stack::audit::record_unrouted(
                    auditor,
                    &request.name,
                    request.arguments.as_ref(),
                    principal,
                    downstream,
                    err,
                )
                .await
            }
            None => Ok(()),
        }
    }

    /// May `principal` see and call the exposed tool `tool`? (Always, without authorization
    /// rules or for the gateway's own calls.)
    pub fn permits(&self, principal: Option<&crate::auth::Identity>, tool: &str) -> bool {
        match (&self.policies, principal) {
            (Some(policies), Some(who)) => policies.check(who, tool).is_ok(),
            _ => true,
        }
    }

    /// Whether authorization rules are configured.
    pub fn has_policies(&self) -> bool {
        self.policies.is_some()
    }

    fn permits_kind(
        &self,
        principal: Option<&crate::auth::Identity>,
        kind: crate::auth::policy::Subject,
        name: &str,
    ) -> bool {
        match (&self.policies, principal) {
            (Some(policies), Some(who)) => policies.check_kind(who, kind, name).is_ok(),
            _ => true,
        }
    }

    /// Each `[[security.rate_limit]]` rule's counters (allowed, limited, Redis failures).
    pub fn rate_limit_stats(&self) -> Vec<crate::ratelimit::RateLimitStats> {
        self.rate_limits
            .as_ref()
            .map(|limits| limits.stats())
            .unwrap_or_default()
    }

    /// The error for a name no route matches: a disabled upstream's prefix says so.
    fn unknown_tool(&self, exposed: &str) -> GatewayError {
        let disabled = self.upstreams.iter().find(|u| {
            !u.config.enabled
                && exposed
                    .strip_prefix(u.name())
                    .is_some_and(|rest| rest.starts_with(crate::naming::SEPARATOR))
        });
        match disabled {
            Some(u) => GatewayError::Disabled {
                upstream: u.name().to_string(),
            },
            None => GatewayError::UnknownTool(exposed.to_string()),
        }
    }

    /// Drops the cached results of `upstream`'s tools matching `tool_glob` (upstream tool
    /// names, glob syntax); returns how many were dropped (0 when it caches nothing).
    pub async fn invalidate_cache(
        &self,
        upstream: &str,
        tool_glob: &str,
    ) -> Result<u64, ConfigError> {
        let matcher = globset::Glob::new(tool_glob)
            .map_err(|e| ConfigError::Invalid {
                upstream: upstream.to_string(),
                message: format!("bad tool glob {tool_glob:?}: {e}"),
            })?
            .compile_matcher();
        Ok(match self.caches.get(upstream) {
            Some(cache) => cache.invalidate(&matcher).await,
            None => 0,
        })
    }

    /// [`GatewayState::invalidate_cache`] on this replica only (another replica already
    /// dropped the shared entries).
    async fn invalidate_local_cache(&self, upstream: &str, tool_glob: &str) {
        if let (Some(cache), Ok(glob)) = (self.caches.get(upstream), globset::Glob::new(tool_glob))
        {
            cache.invalidate_local(&glob.compile_matcher()).await;
        }
    }

    pub fn status(&self) -> Vec<UpstreamStatus> {
        let catalog = self.cached_catalog();
        self.upstreams
            .iter()
            .map(|u| UpstreamStatus {
                name: u.name().to_string(),
                circuit: u.circuit.state().as_str(),
                circuit_opened: u.circuit.times_opened(),
                restarts: u.restarts.load(std::sync::atomic::Ordering::Relaxed),
                tools: catalog.as_ref().map(|c| {
                    c.tools
                        .iter()
                        .filter(|t| {
                            t.meta
                                .as_ref()
                                .and_then(|m| m.0.get("io.switchboard/upstream"))
                                .and_then(|v| v.as_str())
                                == Some(u.name())
                        })
                        .count()
                }),
                enabled: u.config.enabled,
                health: self
                    .health
                    .get(u.name())
                    .map(|h| h.report())
                    .unwrap_or_else(|| {
                        crate::health::Health::new(&u.config.health, u.config.enabled).report()
                    }),
                cache: self.caches.get(u.name()).map(|c| c.stats()),
                retry: self.retries.get(u.name()).map(|r| r.stats()),
                calls: self.observer.call_stats(u.name()),
                per_client_children: (u.config.isolation == crate::config::Isolation::PerClient)
                    .then(|| u.client_children()),
            })
            .collect()
    }

    /// Closes every upstream; stdio children are ended with their process groups.
    pub async fn shutdown(&self) {
        self.health.stop().await;
        futures::future::join_all(self.upstreams.iter().map(|u| u.shutdown())).await;
    }
}

impl Gateway {
    pub fn new(config: GatewayConfig) -> Result<Gateway, ConfigError> {
        Gateway::with_audit(config, None)
    }

    /// [`Gateway::new`] recording every `tools/call` through `audit` (opened from the
    /// configuration's `[audit]` by the caller, as opening a store is async).
    pub fn with_audit(
        config: GatewayConfig,
        audit: Option<Arc<switchboard_audit::Auditor>>,
    ) -> Result<Gateway, ConfigError> {
        let cluster = config
            .cluster
            .as_ref()
            .map(crate::cluster::Cluster::new)
            .transpose()
            .map_err(|message| ConfigError::Invalid {
                upstream: "cluster".into(),
                message,
            })?;
        let hub = Arc::new(Hub::default());
        if let Some(cluster) = &cluster {
            hub.attach_cluster(cluster.clone());
        }
        let shared = Shared {
            hub,
            observer: Arc::new(crate::telemetry::Observer::new(
                config.observability.clone(),
            )),
            audit,
            http_client: switchboard_transport::upstream::default_http_client().ok(),
            retiring: Arc::default(),
            cluster,
            reload_requests: Arc::default(),
        };
        let state = GatewayState::build(config, &shared, None)?;
        Ok(Gateway {
            state: std::sync::RwLock::new(Arc::new(state)),
            shared,
            reloading: tokio::sync::Mutex::new(()),
            reloads: Mutex::new(ReloadStats::default()),
        })
    }

    /// The current state (configuration-derived); a call keeps the one it started on.
    fn state(&self) -> Arc<GatewayState> {
        match self.state.read() {
            Ok(state) => state.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The audit log's writer, when calls are audited.
    pub fn auditor(&self) -> Option<&Arc<switchboard_audit::Auditor>> {
        self.shared.audit.as_ref()
    }

    /// Metrics and the live call stream ([`crate::telemetry`]).
    pub fn observer(&self) -> &Arc<crate::telemetry::Observer> {
        &self.shared.observer
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.shared.hub
    }

    /// The current configuration's upstreams.
    pub fn upstreams(&self) -> Vec<Arc<UpstreamRuntime>> {
        self.state().upstreams.clone()
    }

    /// Connects every upstream and lists its tools, concurrently. Returns the upstreams that
    /// could not be reached (they are retried on use); fails on a naming collision.
    pub async fn start(&self) -> Result<Vec<(String, GatewayError)>, GatewayError> {
        self.state().start().await
    }

    /// The current catalog, rebuilt when an upstream's tool list changed.
    pub async fn catalog(&self) -> Result<Arc<Catalog>, GatewayError> {
        self.state().catalog().await
    }

    /// The last built catalog, without refreshing anything.
    pub fn cached_catalog(&self) -> Option<Arc<Catalog>> {
        self.state().cached_catalog()
    }

    /// Routes and runs one `tools/call` through the stack, on the gateway's own behalf.
    pub async fn call(
        &self,
        exposed: &str,
        arguments: Option<JsonObject>,
    ) -> Result<CallToolResult, GatewayError> {
        let mut request = CallToolRequestParams::new(exposed.to_string());
        request.arguments = arguments;
        match self.call_for(request, None).await? {
            CallToolResponse::Complete(result) => Ok(result),
            _ => Err(GatewayError::Upstream {
                upstream: exposed.to_string(),
                message: "the tool asked for input or started a task".into(),
            }),
        }
    }

    /// Routes and runs one client's `tools/call` through the stack, relaying progress, logs,
    /// cancellation and input requests ([`crate::passthrough`]).
    pub async fn call_for(
        &self,
        request: CallToolRequestParams,
        downstream: Option<Downstream>,
    ) -> Result<CallToolResponse, GatewayError> {
        self.call_as(request, downstream, None).await
    }

    /// [`Gateway::call_for`] on behalf of `principal` (authorization, rate limits, the cache's
    /// identity scope); `None`: the gateway's own call, not checked.
    pub async fn call_as(
        &self,
        request: CallToolRequestParams,
        downstream: Option<Downstream>,
        principal: Option<Arc<crate::auth::Identity>>,
    ) -> Result<CallToolResponse, GatewayError> {
        let state = self.state();
        let _running = state.in_flight.enter();
        state.call_as(request, downstream, principal).await
    }

    /// May `principal` see and call the exposed tool `tool`?
    pub fn permits(&self, principal: Option<&crate::auth::Identity>, tool: &str) -> bool {
        self.state().permits(principal, tool)
    }

    /// Whether authorization rules are configured.
    pub fn has_policies(&self) -> bool {
        self.state().has_policies()
    }

    /// May `principal` see and use the resource URI or prompt name `name`? (Always, without
    /// authorization rules or for the gateway's own requests.)
    pub fn permits_kind(
        &self,
        principal: Option<&crate::auth::Identity>,
        kind: crate::auth::policy::Subject,
        name: &str,
    ) -> bool {
        self.state().permits_kind(principal, kind, name)
    }

    /// Each `[[security.rate_limit]]` rule's counters (allowed, limited, Redis failures).
    pub fn rate_limit_stats(&self) -> Vec<crate::ratelimit::RateLimitStats> {
        self.state().rate_limit_stats()
    }

    /// Drops the cached results of `upstream`'s tools matching `tool_glob`, on every replica.
    pub async fn invalidate_cache(
        &self,
        upstream: &str,
        tool_glob: &str,
    ) -> Result<u64, ConfigError> {
        let dropped = self.state().invalidate_cache(upstream, tool_glob).await?;
        if let Some(cluster) = &self.shared.cluster {
            cluster
                .publish(crate::cluster::ClusterEvent::CacheInvalidated {
                    upstream: upstream.to_owned(),
                    tool_glob: tool_glob.to_owned(),
                })
                .await;
        }
        Ok(dropped)
    }

    /// `[cluster]`, when configured.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.shared.cluster.as_ref()
    }

    /// Notified when the configuration file should be reread now (another replica reloaded).
    pub fn reload_requests(&self) -> Arc<tokio::sync::Notify> {
        self.shared.reload_requests.clone()
    }

    /// Applies what another replica told this one ([`crate::cluster`]). Session ends are the
    /// HTTP listener's business and are handled by its owner.
    pub async fn apply_cluster_event(&self, event: crate::cluster::ClusterEvent) {
        use crate::cluster::ClusterEvent;
        match event {
            ClusterEvent::ListChanged { upstream, list } => {
                let state = self.state();
                if let Some(runtime) = state.upstreams.iter().find(|u| u.name() == upstream) {
                    tracing::info!(%upstream, ?list, "list changed on another replica");
                    runtime.list_changed_elsewhere(list);
                }
            }
            ClusterEvent::Reload => self.shared.reload_requests.notify_one(),
            ClusterEvent::CacheInvalidated {
                upstream,
                tool_glob,
            } => {
                self.state()
                    .invalidate_local_cache(&upstream, &tool_glob)
                    .await
            }
            ClusterEvent::SessionEnded { .. } => {}
        }
    }

    pub fn status(&self) -> Vec<UpstreamStatus> {
        self.state().status()
    }

    /// Applies a new configuration without dropping a call: upstreams whose settings are
    /// unchanged keep their connections (and child processes); new ones are connected and
    /// listed before the switch; clients are told the lists changed; calls already running
    /// finish on the old state, and only then are the upstreams the new configuration dropped
    /// (or changed) shut down. A configuration that does not load, or whose tools collide,
    /// changes nothing.
    ///
    /// What is set up once per process is not reloaded: the listener, `[security.auth]`,
    /// `[audit]` and `[observability]`.
    pub async fn reload(&self, config: GatewayConfig) -> Result<ReloadSummary, GatewayError> {
        let outcome = self.apply(config).await;
        match &outcome {
            Ok(_) => {
                if let Ok(mut stats) = self.reloads.lock() {
                    stats.applied += 1;
                }
            }
            Err(err) => self.reload_failed(&err.to_string()),
        }
        outcome
    }

    /// Counts a reload that failed before reaching the gateway (a file that does not load).
    pub fn reload_failed(&self, message: &str) {
        if let Ok(mut stats) = self.reloads.lock() {
            stats.failed += 1;
            stats.last_error = Some(message.to_string());
        }
    }

    /// Reloads since start.
    pub fn reload_stats(&self) -> ReloadStats {
        self.reloads.lock().map(|s| s.clone()).unwrap_or_default()
    }

    async fn apply(&self, config: GatewayConfig) -> Result<ReloadSummary, GatewayError> {
        let _one_at_a_time = self.reloading.lock().await;
        let old = self.state();
        let new = Arc::new(
            GatewayState::build(config, &self.shared, Some(&old)).map_err(|e| {
                GatewayError::Reload {
                    message: e.to_string(),
                }
            })?,
        );
        let is_kept = |u: &Arc<UpstreamRuntime>| new.upstreams.iter().any(|n| Arc::ptr_eq(n, u));
        let summary = ReloadSummary {
            kept: new
                .upstreams
                .iter()
                .filter(|u| old.upstreams.iter().any(|o| Arc::ptr_eq(o, u)))
                .map(|u| u.name().to_string())
                .collect(),
            started: new
                .upstreams
                .iter()
                .filter(|u| !old.upstreams.iter().any(|o| Arc::ptr_eq(o, u)))
                .map(|u| u.name().to_string())
                .collect(),
            stopped: old
                .upstreams
                .iter()
                .filter(|u| !is_kept(u))
                .map(|u| u.name().to_string())
                .collect(),
        };
        if let Err(err) = new.start().await {
            // Undo: end what this attempt started; the old state keeps serving.
            new.health.stop().await;
            let started = new
                .upstreams
                .iter()
                .filter(|u| !old.upstreams.iter().any(|o| Arc::ptr_eq(o, u)));
            futures::future::join_all(started.map(|u| u.shutdown())).await;
            return Err(err);
        }
        match self.state.write() {
            Ok(mut slot) => *slot = new.clone(),
            Err(poisoned) => *poisoned.into_inner() = new.clone(),
        }
        self.shared.hub.tools_changed();
        self.shared.hub.resources_changed();
        self.shared.hub.prompts_changed();
        // Retire the old state in the background: calls running on it finish first, then the
        // upstreams the new configuration dropped are ended. `shutdown` ends them at once.
        let dropped: Vec<Arc<UpstreamRuntime>> = old
            .upstreams
            .iter()
            .filter(|u| !is_kept(u))
            .cloned()
            .collect();
        if let Ok(mut retiring) = self.shared.retiring.lock() {
            retiring.extend(dropped.iter().cloned());
        }
        let retiring = self.shared.retiring.clone();
        tokio::spawn(async move {
            old.health.stop().await;
            old.in_flight.drained().await;
            futures::future::join_all(dropped.iter().map(|u| u.shutdown())).await;
            if let Ok(mut retiring) = retiring.lock() {
                retiring.retain(|u| !dropped.iter().any(|d| Arc::ptr_eq(d, u)));
            }
        });
        Ok(summary)
    }

    /// Closes every upstream, including those a reload is still retiring; stdio children are
    /// ended with their process groups.
    pub async fn shutdown(&self) {
        self.state().shutdown().await;
        let retiring: Vec<Arc<UpstreamRuntime>> = self
            .shared
            .retiring
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        futures::future::join_all(retiring.iter().map(|u| u.shutdown())).await;
    }
}

/// What a reload did, by upstream name.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadSummary {
    /// Unchanged: connection and child process kept.
    pub kept: Vec<String>,
    /// New or changed: connected afresh.
    pub started: Vec<String>,
    /// Dropped or changed: shut down once the calls running on them finished.
    pub stopped: Vec<String>,
}

/// Whether two upstream configurations are the same settings. Every configuration type
/// derives `Debug` over all of its fields (secrets are held as environment variable names,
/// not values), so equal renderings mean equal settings.
fn same_settings(a: &crate::config::UpstreamConfig, b: &crate::config::UpstreamConfig) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// A count of running calls that can be waited on to reach zero.
#[derive(Default)]
struct InFlight {
    running: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

struct Running<'a>(&'a InFlight);

impl InFlight {
    fn enter(&self) -> Running<'_> {
        self.running
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Running(self)
    }

    async fn drained(&self) {
        loop {
            let idle = self.idle.notified();
            if self.running.load(std::sync::atomic::Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self
            .0
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            self.0.idle.notify_waiters();
        }
    }
}
