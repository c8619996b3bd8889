//! The result cache: opt-in, per upstream and tool, for tools whose answer depends only on
//! their arguments for a while (reference data, slow searches).
//!
//! Nothing is cached unless an upstream's `cache = { tools = [...] }` names the tool, because a
//! stale answer is worse than a slow one for most tools (agentgateway and ContextForge cache
//! no results by default for the same reason). The key is the upstream tool, its arguments in
//! canonical JSON (keys sorted, so `{"a":1,"b":2}` and `{"b":2,"a":1}` share an entry) and the
//! caller's identity: two callers never share an entry unless the upstream says `shared = true`,
//! since a tool's answer may depend on who asks. Identical calls in flight together are
//! coalesced into one upstream call (moka's `try_get_with`), so a burst of agents asking the
//! same thing costs the upstream one call. Only successful results are stored: errors, results
//! with `isError`, and `input_required`/task answers are returned but never kept.
//!
//! With `[cluster] shared_cache` the stored results also go to Redis ([`crate::cluster`]): a
//! local miss asks Redis before the upstream, so a result computed on one replica serves the
//! others until its TTL, which Redis keeps. Redis failures fall back to the upstream.
//!
//! Freshness is checked against tokio's clock (each entry remembers when it was stored), so the
//! TTL follows `tokio::time::pause` in tests; moka's own TTL, on the wall clock, only reclaims
//! the memory of entries nobody asks for again.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use globset::{GlobMatcher, GlobSet};
use moka::notification::RemovalCause;
use rmcp::model::{CallToolResponse, CallToolResult};
use serde::{Deserialize, Serialize};
use switchboard_core::canonical::canonical_object;
use tower::{Layer, Service, ServiceExt};

use crate::{
    config::{ConfigError, UpstreamConfig},
    error::GatewayError,
    stack::{ToolCall, retry::compile_globs},
};

/// The result cache of one upstream (`cache = { … }`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Globs over upstream tool names whose results are cached. Required, at least one.
    pub tools: Vec<String>,
    /// How long a stored result is served, in seconds. At least 1. Default 60.
    #[serde(default = "default_ttl_secs")]
    pub ttl_secs: u64,
    /// Most results kept for this upstream; the least used go first. At least 1.
    /// Default 10000.
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
    /// Share entries across caller identities (only for answers that do not depend on who
    /// asks). Default false.
    #[serde(default)]
    pub shared: bool,
}

fn default_ttl_secs() -> u64 {
    60
}
fn default_max_entries() -> u64 {
    10_000
}

impl CacheConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.tools.is_empty() {
            return Err("cache.tools must name at least one tool glob".into());
        }
        if self.ttl_secs == 0 || self.max_entries == 0 {
            return Err("cache.ttl_secs and cache.max_entries must be at least 1".into());
        }
        compile_globs("<cache>", "cache.tools", &self.tools)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// One upstream's cache counters.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CacheStats {
    /// Stored results (approximate: moka counts lazily).
    pub entries: u64,
    /// Calls answered without calling the upstream: from a stored result, or by sharing an
    /// identical call already in flight.
    pub hits: u64,
    /// Calls that went to the upstream.
    pub misses: u64,
    /// Results dropped to stay within `max_entries`.
    pub evictions: u64,
    /// Results dropped because their TTL passed.
    pub expirations: u64,
    /// Results dropped by `Gateway::invalidate_cache`.
    pub invalidations: u64,
    /// Local misses answered from the cluster's shared cache (another replica's result).
    #[serde(default)]
    pub shared_hits: u64,
    /// Cacheable calls under way now (waiting on a stored result or on the upstream).
    pub in_flight: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
    invalidations: AtomicU64,
    shared_hits: AtomicU64,
    in_flight: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    tool: String,
    /// Canonical JSON of the arguments.
    arguments: String,
    /// `None` for shared caches (and for anonymous callers).
    identity: Option<String>,
}

#[derive(Clone)]
struct Entry {
    result: Arc<CallToolResult>,
    stored: tokio::time::Instant,
}

/// Why a call's outcome was not stored (shared with coalesced callers).
enum Unstored {
    Answer(CallToolResponse),
    Failed(GatewayError),
}

/// One upstream's result cache.
pub struct ResultCache {
    upstream: String,
    /// The shared second tier, with `[cluster] shared_cache`.
    cluster: Option<Arc<crate::cluster::Cluster>>,
    tools: GlobSet,
    ttl: Duration,
    shared: bool,
    cache: moka::future::Cache<CacheKey, Entry>,
    counters: Arc<Counters>,
}

impl ResultCache {
    pub fn new(upstream: &str, config: &CacheConfig) -> Result<ResultCache, ConfigError> {
        Self::with_cluster(upstream, config, None)
    }

    /// [`ResultCache::new`], sharing results through `cluster` when it shares caches.
    pub fn with_cluster(
        upstream: &str,
        config: &CacheConfig,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> Result<ResultCache, ConfigError> {
        let counters = Arc::new(Counters::default());
        let listener = counters.clone();
        let ttl = Duration::from_secs(config.ttl_secs);
        let cache = moka::future::Cache::builder()
            .max_capacity(config.max_entries)
            .time_to_live(ttl)
            .eviction_listener(move |_key, _value, cause| match cause {
                RemovalCause::Size => {
                    listener.evictions.fetch_add(1, Ordering::Relaxed);
                }
                RemovalCause::Expired => {
                    listener.expirations.fetch_add(1, Ordering::Relaxed);
                }
                RemovalCause::Explicit | RemovalCause::Replaced => {}
            })
            .build();
        Ok(ResultCache {
            upstream: upstream.to_owned(),
            cluster: cluster.filter(|c| c.shares_cache()),
            tools: compile_globs(upstream, "cache.tools", &config.tools)?,
            ttl,
            shared: config.shared,
            cache,
            counters,
        })
    }

    /// Whether this call may be answered from, and stored in, the cache.
    fn applies_to(&self, call: &ToolCall) -> bool {
        // Continuations of an `input_required` round trip are never cached.
        self.tools.is_match(&call.tool)
            && call.input_responses.is_none()
            && call.request_state.is_none()
    }

    fn key(&self, call: &ToolCall) -> CacheKey {
        let arguments = match &call.arguments {
            Some(map) => canonical_object(map),
            None => "{}".to_string(),
        };
        CacheKey {
            tool: call.tool.clone(),
            arguments,
            identity: if self.shared {
                None
            } else {
                call.identity.clone()
            },
        }
    }

    /// The key of `key`'s entry in the shared cache: the tool in clear (so invalidation can
    /// match it), the rest hashed.
    fn shared_key(&self, cluster: &crate::cluster::Cluster, key: &CacheKey) -> String {
        let identity = key.identity.as_deref().unwrap_or("");
        let digest = switchboard_audit::record::sha256_hex(&format!(
            "{}\0{}\0{identity}",
            key.tool, key.arguments
        ));
        cluster.cache_key(&self.upstream, &key.tool, &digest)
    }

    /// Drops every stored result of the tools matching `tool`, here and in the shared cache;
    /// returns how many.
    pub async fn invalidate(&self, tool: &GlobMatcher) -> u64 {
        let shared = match &self.cluster {
            Some(cluster) => cluster.cache_invalidate(&self.upstream, tool).await,
            None => 0,
        };
        self.invalidate_local(tool).await.max(shared)
    }

    /// Drops this replica's stored results of the tools matching `tool`; returns how many.
    pub async fn invalidate_local(&self, tool: &GlobMatcher) -> u64 {
        let keys: Vec<Arc<CacheKey>> = self
            .cache
            .iter()
            .filter(|(key, _)| tool.is_match(&key.tool))
            .map(|(key, _)| key)
            .collect();
        for key in &keys {
            self.cache.invalidate(key.as_ref()).await;
        }
        let count = keys.len() as u64;
        self.counters
            .invalidations
            .fetch_add(count, Ordering::Relaxed);
        count
    }

    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats {
            entries: self.cache.entry_count(),
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            expirations: c.expirations.load(Ordering::Relaxed),
            invalidations: c.invalidations.load(Ordering::Relaxed),
            shared_hits: c.shared_hits.load(Ordering::Relaxed),
            in_flight: c.in_flight.load(Ordering::Relaxed),
        }
    }

    /// Answers `call` from the cache or through `inner`, coalescing identical calls.
    async fn call<S>(&self, inner: S, call: ToolCall) -> Result<CallToolResponse, GatewayError>
    where
        S: Service<ToolCall, Response = CallToolResponse, Error = GatewayError> + Send,
        S::Future: Send,
    {
        let key = self.key(&call);
        let _in_flight = InFlight::enter(&self.counters);
        if let Some(entry) = self.cache.get(&key).await {
            if entry.stored.elapsed() < self.ttl {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(CallToolResponse::Complete((*entry.result).clone()));
            }
            self.cache.invalidate(&key).await;
            self.counters.expirations.fetch_add(1, Ordering::Relaxed);
        }
        let ran = AtomicBool::new(false);
        let shared_key = self
            .cluster
            .as_ref()
            .map(|cluster| (cluster, self.shared_key(cluster, &key)));
        let outcome = self
            .cache
            .try_get_with(key, async {
                ran.store(true, Ordering::Relaxed);
                if let Some((cluster, shared_key)) = &shared_key
                    && let Some((bytes, left)) = cluster.cache_get(shared_key).await
                    && let Ok(result) = serde_json::from_slice::<CallToolResult>(&bytes)
                {
                    self.counters.shared_hits.fetch_add(1, Ordering::Relaxed);
                    // Keep it here only for what is left of the TTL Redis counts.
                    let now = tokio::time::Instant::now();
                    let age = self.ttl.saturating_sub(left);
                    return Ok(Entry {
                        result: Arc::new(result),
                        stored: now.checked_sub(age).unwrap_or(now),
                    });
                }
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                match inner.oneshot(call).await {
                    Ok(CallToolResponse::Complete(result)) if result.is_error != Some(true) => {
                        if let Some((cluster, shared_key)) = &shared_key
                            && let Ok(bytes) = serde_json::to_vec(&result)
                        {
                            cluster.cache_put(shared_key, bytes, self.ttl).await;
                        }
                        Ok(Entry {
                            result: Arc::new(result),
                            stored: tokio::time::Instant::now(),
                        })
                    }
                    Ok(answer) => Err(Unstored::Answer(answer)),
                    Err(err) => Err(Unstored::Failed(err)),
                }
            })
            .await;
        if !ran.load(Ordering::Relaxed) {
            self.counters.hits.fetch_add(1, Ordering::Relaxed);
        }
        match outcome {
            Ok(entry) => Ok(CallToolResponse::Complete(
                Arc::try_unwrap(entry.result).unwrap_or_else(|shared| (*shared).clone()),
            )),
            Err(shared) => match Arc::try_unwrap(shared) {
                Ok(Unstored::Answer(answer)) => Ok(answer),
                Ok(Unstored::Failed(err)) => Err(err),
                Err(shared) => match &*shared {
                    Unstored::Answer(answer) => Ok(answer.clone()),
                    Unstored::Failed(err) => Err(clone_error(err)),
                },
            },
        }
    }
}

/// Counts a cacheable call as in flight until dropped (also when the caller goes away).
struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    fn enter(counters: &'a Counters) -> InFlight<'a> {
        counters.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(counters)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A copy of an error shared by coalesced callers. `GatewayError` is not `Clone` (its
/// collision variant carries a naming report), and none of the cases a call can produce
/// needs it: those are rebuilt field by field; anything else keeps its message.
fn clone_error(err: &GatewayError) -> GatewayError {
    match err {
        GatewayError::Timeout { upstream, timeout } => GatewayError::Timeout {
            upstream: upstream.clone(),
            timeout: *timeout,
        },
        GatewayError::Upstream { upstream, message } => GatewayError::Upstream {
            upstream: upstream.clone(),
            message: message.clone(),
        },
        GatewayError::Connect { upstream, message } => GatewayError::Connect {
            upstream: upstream.clone(),
            message: message.clone(),
        },
        GatewayError::Unavailable {
            upstream,
            retry_in,
            message,
        } => GatewayError::Unavailable {
            upstream: upstream.clone(),
            retry_in: *retry_in,
            message: message.clone(),
        },
        GatewayError::CircuitOpen { upstream, retry_in } => GatewayError::CircuitOpen {
            upstream: upstream.clone(),
            retry_in: *retry_in,
        },
        GatewayError::Rpc { upstream, error } => GatewayError::Rpc {
            upstream: upstream.clone(),
            error: error.clone(),
        },
        GatewayError::Cancelled { upstream } => GatewayError::Cancelled {
            upstream: upstream.clone(),
        },
        other => GatewayError::Upstream {
            upstream: String::new(),
            message: other.to_string(),
        },
    }
}

/// Every upstream's result cache, by upstream name (only upstreams with `cache = { … }`).
#[derive(Default)]
pub struct ResultCaches {
    by_upstream: HashMap<String, Arc<ResultCache>>,
}

impl ResultCaches {
    pub fn new<'a>(
        upstreams: impl IntoIterator<Item = &'a UpstreamConfig>,
    ) -> Result<ResultCaches, ConfigError> {
        Self::with_cluster(upstreams, None)
    }

    /// [`ResultCaches::new`], each sharing results through `cluster` (`[cluster]`).
    pub fn with_cluster<'a>(
        upstreams: impl IntoIterator<Item = &'a UpstreamConfig>,
        cluster: Option<&Arc<crate::cluster::Cluster>>,
    ) -> Result<ResultCaches, ConfigError> {
        let mut by_upstream = HashMap::new();
        for upstream in upstreams {
            if let Some(config) = &upstream.cache {
                by_upstream.insert(
                    upstream.name.clone(),
                    Arc::new(ResultCache::with_cluster(
                        &upstream.name,
                        config,
                        cluster.cloned(),
                    )?),
                );
            }
        }
        Ok(ResultCaches { by_upstream })
    }

    pub fn get(&self, upstream: &str) -> Option<&Arc<ResultCache>> {
        self.by_upstream.get(upstream)
    }
}

#[derive(Clone)]
pub struct CacheLayer {
    caches: Arc<ResultCaches>,
}

impl CacheLayer {
    pub fn new(caches: Arc<ResultCaches>) -> CacheLayer {
        CacheLayer { caches }
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = Cache<S>;
    fn layer(&self, inner: S) -> Cache<S> {
        Cache {
            inner,
            caches: self.caches.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Cache<S> {
    inner: S,
    caches: Arc<ResultCaches>,
}

impl<S> Service<ToolCall> for Cache<S>
where
    S: Service<ToolCall, Response = CallToolResponse, Error = GatewayError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = CallToolResponse;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<CallToolResponse, GatewayError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        // The inner service is driven to readiness per call (`oneshot`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: ToolCall) -> Self::Future {
        let inner = self.inner.clone();
        let cache = self
            .caches
            .get(call.upstream.name())
            .filter(|c| c.applies_to(&call))
            .cloned();
        // Only a cached tool's call carries the cache's future (the coalescing map, the
        // shared tier's Redis round trips): several KB that every call would otherwise move.
        match cache {
            Some(cache) => Box::pin(async move { cache.call(inner, call).await }),
            None => Box::pin(inner.oneshot(call)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::UpstreamConfig, hub::Hub, stack::ToolHints, upstream::UpstreamRuntime};
    use serde_json::{Value, json};
    use std::sync::atomic::AtomicUsize;

    fn cache(ttl_secs: u64, shared: bool) -> ResultCache {
        ResultCache::new(
            "up",
            &CacheConfig {
                tools: vec!["get_*".into(), "fail".into()],
                ttl_secs,
                max_entries: 100,
                shared,
            },
        )
        .expect("cache")
    }

    fn call(tool: &str, arguments: Value, identity: Option<&str>) -> ToolCall {
        let upstream = UpstreamRuntime::new(
            UpstreamConfig::remote("up", None),
            Arc::new(Hub::default()),
            None,
        )
        .expect("upstream");
        ToolCall {
            upstream: Arc::new(upstream),
            tool: tool.into(),
            exposed: format!("up__{tool}"),
            arguments: arguments.as_object().cloned(),
            downstream: None,
            input_responses: None,
            request_state: None,
            hints: ToolHints::default(),
            identity: identity.map(String::from),
            principal: None,
        }
    }

    /// An upstream stand-in that counts calls and answers with the count; `fail` answers
    /// with `isError`.
    fn counting(
        calls: &Arc<AtomicUsize>,
    ) -> impl Service<
        ToolCall,
        Response = CallToolResponse,
        Error = GatewayError,
        Future = impl Future<Output = Result<CallToolResponse, GatewayError>> + Send,
    > + Clone
    + Send {
        let calls = calls.clone();
        tower::service_fn(move |call: ToolCall| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let text = rmcp::model::ContentBlock::text(n.to_string());
                Ok(if call.tool == "fail" {
                    CallToolResult::error(vec![text])
                } else {
                    CallToolResult::success(vec![text])
                }
                .into())
            }
        })
    }

    fn answer(response: CallToolResponse) -> String {
        match response {
            CallToolResponse::Complete(result) => result.content[0]
                .as_text()
                .map(|t| t.text.clone())
                .unwrap_or_default(),
            _ => String::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_the_ttl() {
        let cache = cache(60, false);
        let calls = Arc::new(AtomicUsize::new(0));
        let args = json!({"id": 7, "fields": ["a", "b"]});
        let first = cache
            .call(counting(&calls), call("get_x", args.clone(), None))
            .await
            .expect("first");
        tokio::time::advance(Duration::from_secs(59)).await;
        let second = cache
            .call(counting(&calls), call("get_x", args.clone(), None))
            .await
            .expect("second");
        assert_eq!(answer(first), "1");
        assert_eq!(answer(second), "1", "served from the cache");
        tokio::time::advance(Duration::from_secs(2)).await;
        let third = cache
            .call(counting(&calls), call("get_x", args, None))
            .await
            .expect("third");
        assert_eq!(answer(third), "2", "expired: asked again");
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.expirations), (1, 2, 1));
        assert_eq!(stats.in_flight, 0);
    }

    #[tokio::test]
    async fn identities_do_not_share_entries_unless_shared() {
        let calls = Arc::new(AtomicUsize::new(0));
        let private = cache(60, false);
        for who in [Some("alice"), Some("bob"), None, Some("alice")] {
            private
                .call(counting(&calls), call("get_x", json!({}), who))
                .await
                .expect("call");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3, "alice, bob, anonymous");
        let shared = cache(60, true);
        for who in [Some("alice"), Some("bob")] {
            shared
                .call(counting(&calls), call("get_x", json!({}), who))
                .await
                .expect("call");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 4, "one entry for everyone");
    }

    #[tokio::test]
    async fn error_results_are_returned_but_not_kept() {
        let calls = Arc::new(AtomicUsize::new(0));
        let cache = cache(60, false);
        for _ in 0..2 {
            let response = cache
                .call(counting(&calls), call("fail", json!({}), None))
                .await
                .expect("an isError result");
            assert!(matches!(response, CallToolResponse::Complete(r) if r.is_error == Some(true)));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(cache.stats().entries, 0);
    }

    #[tokio::test]
    async fn invalidation_drops_matching_tools_only() {
        let calls = Arc::new(AtomicUsize::new(0));
        let cache = cache(60, false);
        for tool in ["get_a", "get_b"] {
            cache
                .call(counting(&calls), call(tool, json!({}), None))
                .await
                .expect("call");
        }
        let dropped = cache
            .invalidate(&globset::Glob::new("get_a").expect("glob").compile_matcher())
            .await;
        assert_eq!(dropped, 1);
        for tool in ["get_a", "get_b"] {
            cache
                .call(counting(&calls), call(tool, json!({}), None))
                .await
                .expect("call");
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "only get_a was asked again"
        );
        assert_eq!(cache.stats().invalidations, 1);
    }

    #[test]
    fn settings_are_checked() {
        let mut config = CacheConfig {
            tools: vec![],
            ttl_secs: 60,
            max_entries: 10,
            shared: false,
        };
        assert!(config.validate().is_err(), "no tools");
        config.tools = vec!["get_*".into()];
        assert!(config.validate().is_ok());
        config.ttl_secs = 0;
        assert!(config.validate().is_err());
    }
}
