//! What the gateway tells operators about itself: Prometheus metrics and the live call stream.
//!
//! The [`Observer`] is shared by the `tools/call` stack's observe layer
//! ([`crate::stack::observe`]), which records every call, and by the HTTP routes of
//! [`crate::dashboard`] (`/metrics`, `/api/calls/stream`). Counters and latency histograms
//! live here; state that already has an owner (upstream health and circuit, restarts, cache
//! counters, sessions, SSE streams, child processes) is read from that owner at scrape time, so
//! there is one source of truth and nothing to keep in step.
//!
//! Labels are bounded: tool labels are exposed names from the catalog (a call to an unknown
//! tool is labelled `tool=""`), upstream labels are configured names, outcomes are
//! `ok`, `tool_error` or a [`GatewayError::kind`]. Identities never become labels (unbounded);
//! they appear only in the live call stream.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use serde::{Deserialize, Serialize};
use switchboard_transport::HttpStats;
use tokio::sync::broadcast;

use crate::{error::GatewayError, gateway::Gateway, health::HealthState};

/// `[observability]`: bounds of the live call stream. Metrics themselves need no settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservabilityConfig {
    /// Call events buffered for `/api/calls/stream` subscribers; a subscriber further behind
    /// skips ahead and is told how many events it missed. Default 1024.
    #[serde(default = "default_call_stream_buffer")]
    pub call_stream_buffer: usize,
    /// Most `/api/calls/stream` connections open at once; more get 503. Default 16.
    #[serde(default = "default_max_call_streams")]
    pub max_call_streams: usize,
    /// `[observability.otlp]`: OpenTelemetry trace export ([`crate::otlp`]); absent: off
    /// unless the standard `OTEL_EXPORTER_OTLP_*ENDPOINT` variables are set.
    #[serde(default)]
    pub otlp: Option<crate::otlp::OtlpConfig>,
}

fn default_call_stream_buffer() -> usize {
    1024
}
fn default_max_call_streams() -> usize {
    16
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        ObservabilityConfig {
            call_stream_buffer: default_call_stream_buffer(),
            max_call_streams: default_max_call_streams(),
            otlp: None,
        }
    }
}

/// One finished `tools/call`, as the live call stream shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CallEvent {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// The exposed tool name the client called.
    pub tool: String,
    pub upstream: String,
    /// The authenticated subject; `None` for anonymous callers and the gateway itself.
    pub identity: Option<String>,
    pub latency_ms: f64,
    /// `ok`, `tool_error` (a result with `isError`) or the [`GatewayError::kind`].
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    tool: String,
    upstream: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    tool: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    upstream: String,
    state: String,
}

fn tools_call_labels(tool: &str, upstream: &str, outcome: &str) -> RequestLabels {
    RequestLabels {
        method: "tools/call".into(),
        tool: tool.into(),
        upstream: upstream.into(),
        outcome: outcome.into(),
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets: 1 ms to about 33 s, doubling (16 buckets).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The gateway's metrics and live call stream (see the module docs).
pub struct Observer {
    config: ObservabilityConfig,
    requests: Family<RequestLabels, Counter>,
    tool_latency: HistogramFamily<ToolLabels>,
    upstream_latency: HistogramFamily<UpstreamLabels>,
    refused: Family<KindLabels, Counter>,
    calls: broadcast::Sender<CallEvent>,
    call_streams: Arc<AtomicUsize>,
    /// The HTTP listener's session and stream counters, once it is bound.
    http: OnceLock<HttpStats>,
    /// Set when the server shuts down, so open call streams end instead of holding it up.
    closing: tokio::sync::watch::Sender<bool>,
    /// Per upstream: call and error counts and recent latencies, for `/api/status`.
    windows: std::sync::Mutex<std::collections::HashMap<String, CallWindow>>,
}

/// Latencies kept per upstream for `/api/status` percentiles (the most recent calls).
pub const LATENCY_WINDOW: usize = 1024;

#[derive(Default)]
struct CallWindow {
    calls: u64,
    errors: u64,
    /// Recent latencies in microseconds, oldest first, at most [`LATENCY_WINDOW`].
    recent: std::collections::VecDeque<u64>,
}

/// One upstream's calls since start, for `/api/status` (the seed's `get_system_status`).
#[derive(Debug, Clone, Serialize)]
pub struct CallStats {
    pub calls: u64,
    /// Calls that did not end `ok` (tool errors included).
    pub errors: u64,
    /// Over the last (up to) [`LATENCY_WINDOW`] calls.
    pub p50_ms: f64,
    pub p95_ms: f64,
}

/// The kinds counted as refusals (`switchboard_calls_refused_total`): authorization denials
/// and rate limiting.
const REFUSAL_KINDS: [&str; 2] = ["forbidden", "rate_limited"];

impl Observer {
    pub fn new(config: ObservabilityConfig) -> Observer {
        let (calls, _) = broadcast::channel(config.call_stream_buffer.max(1));
        Observer {
            config,
            requests: Family::default(),
            tool_latency: Family::new_with_constructor(latency_histogram),
            upstream_latency: Family::new_with_constructor(latency_histogram),
            refused: Family::default(),
            calls,
            call_streams: Arc::new(AtomicUsize::new(0)),
            http: OnceLock::new(),
            closing: tokio::sync::watch::Sender::new(false),
            windows: std::sync::Mutex::default(),
        }
    }

    /// `upstream`'s call counts and recent latency percentiles; `None` before its first call.
    pub fn call_stats(&self, upstream: &str) -> Option<CallStats> {
        let windows = self.windows.lock().ok()?;
        let window = windows.get(upstream)?;
        let mut sorted: Vec<u64> = window.recent.iter().copied().collect();
        sorted.sort_unstable();
        let at = |q: f64| {
            let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
            sorted.get(index).map_or(0.0, |us| *us as f64 / 1000.0)
        };
        Some(CallStats {
            calls: window.calls,
            errors: window.errors,
            p50_ms: at(0.50),
            p95_ms: at(0.95),
        })
    }

    /// Ends every open call stream (on server shutdown); new ones end at once.
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Becomes `true` when [`Observer::close_streams`] was called.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    pub fn config(&self) -> &ObservabilityConfig {
        &self.config
    }

    /// Hands over the HTTP listener's counters (sessions, legacy SSE streams); once.
    pub fn attach_http(&self, stats: HttpStats) {
        let _ = self.http.set(stats);
    }

    /// Records a `tools/call` refused before routing (authorization, unknown tool). The
    /// metric's tool label is empty (the name is the client's, unbounded); the live call
    /// stream shows the name.
    pub fn record_refusal(&self, tool: &str, identity: Option<&str>, kind: &str) {
        self.count(tools_call_labels("", "", kind), kind);
        self.publish(tool, "", identity, Duration::ZERO, kind);
    }

    /// Records one `tools/call` that reached the stack, and publishes it to the live call
    /// stream.
    pub fn record_call(
        &self,
        tool: &str,
        upstream: &str,
        identity: Option<&str>,
        elapsed: Duration,
        outcome: &str,
    ) {
        self.count(tools_call_labels(tool, upstream, outcome), outcome);
        let seconds = elapsed.as_secs_f64();
        self.tool_latency
            .get_or_create(&ToolLabels { tool: tool.into() })
            .observe(seconds);
        self.upstream_latency
            .get_or_create(&UpstreamLabels {
                upstream: upstream.into(),
            })
            .observe(seconds);
        if let Ok(mut windows) = self.windows.lock() {
            let window = windows.entry(upstream.to_string()).or_default();
            window.calls += 1;
            if outcome != "ok" {
                window.errors += 1;
            }
            if window.recent.len() == LATENCY_WINDOW {
                window.recent.pop_front();
            }
            window
                .recent
                .push_back(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
        }
        self.publish(tool, upstream, identity, elapsed, outcome);
    }

    fn count(&self, labels: RequestLabels, outcome: &str) {
        self.requests.get_or_create(&labels).inc();
        if REFUSAL_KINDS.contains(&outcome) {
            self.refused
                .get_or_create(&KindLabels {
                    kind: outcome.into(),
                })
                .inc();
        }
    }

    fn publish(
        &self,
        tool: &str,
        upstream: &str,
        identity: Option<&str>,
        elapsed: Duration,
        outcome: &str,
    ) {
        // No subscriber is the normal case; the event is simply dropped.
        let _ = self.calls.send(CallEvent {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            tool: tool.into(),
            upstream: upstream.into(),
            identity: identity.map(str::to_string),
            latency_ms: elapsed.as_secs_f64() * 1000.0,
            outcome: outcome.into(),
        });
    }

    /// Counts one request of another MCP method (`tools/list`, `resources/read`, …).
    pub fn record_request(&self, method: &str, outcome: &str) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.into(),
                tool: String::new(),
                upstream: String::new(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// A subscription to the live call stream, or `None` when `max_call_streams` are open.
    /// The returned guard holds the slot until dropped.
    pub fn subscribe_calls(&self) -> Option<(broadcast::Receiver<CallEvent>, CallStreamSlot)> {
        let max = self.config.max_call_streams;
        let taken = self
            .call_streams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        taken.then(|| {
            (
                self.calls.subscribe(),
                CallStreamSlot(self.call_streams.clone()),
            )
        })
    }

    /// The whole exposition, in the OpenMetrics text format (which Prometheus reads).
    pub fn render(&self, gateway: &Gateway) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::with_prefix("switchboard");
        registry.register(
            "requests",
            "MCP requests by method, tool, upstream and outcome",
            self.requests.clone(),
        );
        registry.register(
            "tool_call_duration_seconds",
            "tools/call latency through the gateway, per exposed tool",
            self.tool_latency.clone(),
        );
        registry.register(
            "upstream_call_duration_seconds",
            "tools/call latency through the gateway, per upstream",
            self.upstream_latency.clone(),
        );
        registry.register(
            "calls_refused",
            "tools/call refused by authorization (forbidden) or rate limits (rate_limited)",
            self.refused.clone(),
        );
        self.register_state(&mut registry, gateway);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)?;
        Ok(text)
    }

    /// Series read from their owners now (module docs).
    fn register_state(&self, registry: &mut Registry, gateway: &Gateway) {
        let healthy = Family::<UpstreamLabels, Gauge>::default();
        let health = Family::<StateLabels, Gauge>::default();
        let circuit = Family::<StateLabels, Gauge>::default();
        let restarts = Family::<UpstreamLabels, Counter>::default();
        let cache_hits = Family::<UpstreamLabels, Counter>::default();
        let cache_misses = Family::<UpstreamLabels, Counter>::default();
        let tools = Family::<UpstreamLabels, Gauge>::default();
        for status in gateway.status() {
            let upstream = UpstreamLabels {
                upstream: status.name.clone(),
            };
            let state = status.health.state;
            healthy
                .get_or_create(&upstream)
                .set(i64::from(is_serving(state)));
            health
                .get_or_create(&StateLabels {
                    upstream: status.name.clone(),
                    state: state.as_str().into(),
                })
                .set(1);
            circuit
                .get_or_create(&StateLabels {
                    upstream: status.name.clone(),
                    state: status.circuit.into(),
                })
                .set(1);
            restarts.get_or_create(&upstream).inc_by(status.restarts);
            if let Some(cache) = &status.cache {
                cache_hits.get_or_create(&upstream).inc_by(cache.hits);
                cache_misses.get_or_create(&upstream).inc_by(cache.misses);
            }
            if let Some(count) = status.tools {
                tools
                    .get_or_create(&upstream)
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
            }
        }
        registry.register(
            "upstream_healthy",
            "1 when the upstream's health checks pass (healthy or degraded), else 0",
            healthy,
        );
        registry.register(
            "upstream_health_state",
            "The upstream's health state (the series with value 1)",
            health,
        );
        registry.register(
            "upstream_circuit_state",
            "The upstream's circuit breaker state (the series with value 1)",
            circuit,
        );
        registry.register(
            "upstream_restarts",
            "Reconnections of the upstream since start",
            restarts,
        );
        registry.register(
            "upstream_tools",
            "Tools the upstream contributes to the catalog",
            tools,
        );
        registry.register(
            "cache_hits",
            "tools/call answered by the result cache (stored or coalesced)",
            cache_hits,
        );
        registry.register(
            "cache_misses",
            "Cacheable tools/call that went to the upstream",
            cache_misses,
        );

        let gauge = |value: usize| {
            let g = Gauge::<i64>::default();
            g.set(i64::try_from(value).unwrap_or(i64::MAX));
            g
        };
        let http = self.http.get();
        let session_manager = http.and_then(|h| h.sessions.as_ref());
        let sessions = session_manager.map_or(0, |s| s.session_count());
        let sessions_evicted = Counter::<u64>::default();
        sessions_evicted.inc_by(session_manager.map_or(0, |s| s.evicted_count()));
        let sse = http
            .and_then(|h| h.legacy_sse.as_ref())
            .map_or(0, |s| s.connection_count());
        registry.register(
            "sessions_active",
            "Open Streamable HTTP sessions (session-era clients)",
            gauge(sessions),
        );
        registry.register(
            "sessions_evicted",
            "Idle sessions moved out of memory at --max-sessions since start (they resume from their ids)",
            sessions_evicted,
        );
        registry.register(
            "sse_streams_active",
            "Open legacy HTTP+SSE connections",
            gauge(sse),
        );
        registry.register(
            "http_connections_active",
            "Open TCP connections on the HTTP listener (each one a task while it is open)",
            gauge(http.map_or(0, |h| h.connections.count())),
        );
        let direct_calls = Counter::<u64>::default();
        direct_calls.inc_by(
            http.and_then(|h| h.direct.as_ref())
                .map_or(0, |d| d.served_count()),
        );
        registry.register(
            "direct_calls",
            "Session-era tools/call answered in the connection's task, without rmcp's session worker",
            direct_calls,
        );
        registry.register(
            "call_streams_active",
            "Open /api/calls/stream connections",
            gauge(self.call_streams.load(Ordering::Acquire)),
        );
        registry.register(
            "child_processes",
            "Live stdio upstream child processes",
            gauge(switchboard_transport::upstream::live_children()),
        );
        if let Some(auditor) = gateway.auditor() {
            registry.register(
                "audit_backlog_records",
                "Audit records journaled but not yet shipped to the audit store",
                gauge(usize::try_from(auditor.backlog().records).unwrap_or(usize::MAX)),
            );
        }
        if let Some(tasks) = runtime_alive_tasks() {
            registry.register(
                "runtime_alive_tasks",
                "Tasks alive on the gateway's tokio runtime (a count that only grows is a leak)",
                gauge(tasks),
            );
        }
    }
}

/// Tasks alive on the current tokio runtime; `None` outside one. Read at scrape time, so a
/// soak or fault test can tell a task leak from load: after calls end, the count comes back.
pub fn runtime_alive_tasks() -> Option<usize> {
    tokio::runtime::Handle::try_current()
        .ok()
        .map(|handle| handle.metrics().num_alive_tasks())
}

/// Whether an upstream in `state` answers calls (for `upstream_healthy` and `/readyz`).
pub fn is_serving(state: HealthState) -> bool {
    matches!(state, HealthState::Healthy | HealthState::Degraded)
}

/// The outcome label of a finished call.
pub fn outcome_of<T>(
    result: &Result<T, GatewayError>,
    is_error: impl FnOnce(&T) -> bool,
) -> &'static str {
    match result {
        Ok(value) if is_error(value) => "tool_error",
        Ok(_) => "ok",
        Err(err) => err.kind(),
    }
}

/// Holds one `/api/calls/stream` slot; frees it when dropped.
pub struct CallStreamSlot(Arc<AtomicUsize>);

impl Drop for CallStreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
