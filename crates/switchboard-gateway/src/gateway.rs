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

pub struct Gateway {
    upstreams: Vec<Arc<UpstreamRuntime>>,
    hub: Arc<Hub>,
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
        config.validate()?;
        let hub = Arc::new(Hub::default());
        // One pooled HTTP client for every HTTP and SSE upstream.
        let http_client = switchboard_transport::upstream::default_http_client().ok();
        let retries = Arc::new(Retries::new(&config.upstreams)?);
        let caches = Arc::new(ResultCaches::new(&config.upstreams)?);
        let policies = config.security.policies()?.map(Arc::new);
        let observer = Arc::new(crate::telemetry::Observer::new(
            config.observability.clone(),
        ));
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
            .map(|u| UpstreamRuntime::new(u, hub.clone(), http_client.clone()).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Gateway {
            hub,
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

    /// The audit log's writer, when calls are audited.
    pub fn auditor(&self) -> Option<&Arc<switchboard_audit::Auditor>> {
        self.audit.as_ref()
    }

    /// Metrics and the live call stream ([`crate::telemetry`]).
    pub fn observer(&self) -> &Arc<crate::telemetry::Observer> {
        &self.observer
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
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
            })
            .collect()
    }

    /// Closes every upstream; stdio children are ended with their process groups.
    pub async fn shutdown(&self) {
        self.health.stop().await;
        futures::future::join_all(self.upstreams.iter().map(|u| u.shutdown())).await;
    }
}
