//! Retries of failed calls, for tools where running twice is harmless.
//!
//! A transport error or a timeout (`GatewayError::is_upstream_failure`) does not say whether
//! the upstream ran the call, so a call is retried only when repeating it is safe: the tool is
//! annotated `readOnlyHint` or `idempotentHint`, is listed in the upstream's `retry.tools`, or
//! takes an `idempotency_key` (the CRM's creates). For the last kind the gateway adds a random
//! key (UUID v4) before the first attempt when the caller sent none, so every attempt carries
//! the same key and the upstream deduplicates. A tool result with `isError` is an answer, never
//! retried.
//!
//! Retries back off exponentially (with jitter, so concurrent callers do not retry in
//! lockstep) and draw on a per-upstream budget: each first attempt earns `budget_percent`% of
//! a retry, each retry spends one, and the balance never exceeds `budget_burst`. A failing
//! upstream therefore sees at most `budget_percent`% more calls than it would without retries
//! (plus the burst), instead of `max_attempts` times as many. Each attempt passes the circuit
//! breaker (inside this layer): no retry is made while the circuit is open, and the caller
//! gets the upstream failure that happened, never the refusal of a retry that was not sent.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use tower::{Layer, Service, ServiceExt};

use crate::{
    config::{ConfigError, UpstreamConfig},
    error::GatewayError,
    stack::{ToolCall, circuit::CircuitState},
};

/// The argument a tool takes to make a create safe to repeat.
pub const IDEMPOTENCY_KEY: &str = "idempotency_key";

/// Upper bound of `max_attempts`, so a typo cannot turn one call into thousands.
const MAX_ATTEMPTS_LIMIT: u32 = 10;

/// Retry settings of one upstream (`retry = { … }`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Globs over upstream tool names retried although they carry neither `readOnlyHint` nor
    /// `idempotentHint`. Default: none.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Retries after the first attempt (a call is sent at most `1 + max_attempts` times);
    /// 0 turns retries off. At most 10. Default 2.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait before the first retry, in milliseconds, doubled for each further retry (with up
    /// to 50% jitter taken off). Default 100.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Longest wait before one retry, in milliseconds. Default 2000.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Retries may add at most this many percent on top of first attempts, per upstream.
    /// Default 20.
    #[serde(default = "default_budget_percent")]
    pub budget_percent: u32,
    /// Retries available before first attempts have earned any, and the most the budget
    /// saves up. Default 10.
    #[serde(default = "default_budget_burst")]
    pub budget_burst: u32,
}

fn default_max_attempts() -> u32 {
    2
}
fn default_backoff_ms() -> u64 {
    100
}
fn default_max_backoff_ms() -> u64 {
    2000
}
fn default_budget_percent() -> u32 {
    20
}
fn default_budget_burst() -> u32 {
    10
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            tools: Vec::new(),
            max_attempts: default_max_attempts(),
            backoff_ms: default_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            budget_percent: default_budget_percent(),
            budget_burst: default_budget_burst(),
        }
    }
}

impl RetryConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts > MAX_ATTEMPTS_LIMIT {
            return Err(format!(
                "retry.max_attempts must be at most {MAX_ATTEMPTS_LIMIT}"
            ));
        }
        if self.backoff_ms > self.max_backoff_ms {
            return Err("retry.backoff_ms must not exceed retry.max_backoff_ms".into());
        }
        if self.budget_percent > 100 {
            return Err("retry.budget_percent must be at most 100".into());
        }
        self.globs("<retry>").map(|_| ()).map_err(|e| e.to_string())
    }

    fn globs(&self, upstream: &str) -> Result<GlobSet, ConfigError> {
        compile_globs(upstream, "retry.tools", &self.tools)
    }
}

/// Compiles tool-name globs (the syntax of `tools = { allow, deny }`) for one upstream.
pub(crate) fn compile_globs(
    upstream: &str,
    key: &str,
    patterns: &[String],
) -> Result<GlobSet, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        upstream: upstream.to_string(),
        message,
    };
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        builder.add(
            Glob::new(pattern).map_err(|e| invalid(format!("bad {key} glob {pattern:?}: {e}")))?,
        );
    }
    builder.build().map_err(|e| invalid(e.to_string()))
}

/// The retry budget: a token bucket counted in thousandths of a retry.
#[derive(Debug)]
pub struct Budget {
    balance: Mutex<u64>,
    deposit: u64,
    cap: u64,
}

impl Budget {
    pub fn new(percent: u32, burst: u32) -> Budget {
        let cap = u64::from(burst) * 1000;
        Budget {
            balance: Mutex::new(cap),
            deposit: u64::from(percent) * 10,
            cap,
        }
    }

    /// A first attempt earns a fraction of a retry.
    pub fn deposit(&self) {
        if let Ok(mut balance) = self.balance.lock() {
            *balance = (*balance + self.deposit).min(self.cap);
        }
    }

    /// Spends one retry; false when the budget is exhausted.
    pub fn withdraw(&self) -> bool {
        match self.balance.lock() {
            Ok(mut balance) if *balance >= 1000 => {
                *balance -= 1000;
                true
            }
            _ => false,
        }
    }
}

/// Counters of one upstream's retries.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RetryStats {
    /// Retries sent.
    pub retries: u64,
    /// Failed calls that could have been retried but the budget was spent.
    pub budget_exhausted: u64,
}

/// One upstream's compiled retry policy and its budget.
#[derive(Debug)]
pub struct RetryPolicy {
    config: RetryConfig,
    globs: GlobSet,
    budget: Budget,
    retries: AtomicU64,
    budget_exhausted: AtomicU64,
}

impl RetryPolicy {
    pub fn new(upstream: &str, config: &RetryConfig) -> Result<RetryPolicy, ConfigError> {
        Ok(RetryPolicy {
            globs: config.globs(upstream)?,
            budget: Budget::new(config.budget_percent, config.budget_burst),
            config: config.clone(),
            retries: AtomicU64::new(0),
            budget_exhausted: AtomicU64::new(0),
        })
    }

    /// Whether repeating this call is known to be harmless.
    pub fn retryable(&self, call: &ToolCall) -> bool {
        let annotated = call
            .hints
            .annotations
            .as_ref()
            .is_some_and(|a| a.read_only_hint == Some(true) || a.idempotent_hint == Some(true));
        annotated || call.hints.idempotency_key || self.globs.is_match(&call.tool)
    }

    /// The wait before retry number `retry` (1-based): exponential, capped, with jitter.
    fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .config
            .backoff_ms
            .saturating_mul(1u64 << retry.saturating_sub(1).min(20));
        let ms = exp.min(self.config.max_backoff_ms);
        // "Equal jitter": half fixed, half random, so waits still grow.
        let random = (uuid::Uuid::new_v4().as_u128() as u64) % (ms / 2 + 1);
        Duration::from_millis(ms - ms / 2 + random)
    }

    pub fn stats(&self) -> RetryStats {
        RetryStats {
            retries: self.retries.load(Ordering::Relaxed),
            budget_exhausted: self.budget_exhausted.load(Ordering::Relaxed),
        }
    }
}

/// Every upstream's retry policy, by upstream name.
#[derive(Debug, Default)]
pub struct Retries {
    by_upstream: HashMap<String, Arc<RetryPolicy>>,
}

impl Retries {
    pub fn new<'a>(
        upstreams: impl IntoIterator<Item = &'a UpstreamConfig>,
    ) -> Result<Retries, ConfigError> {
        let mut by_upstream = HashMap::new();
        for upstream in upstreams {
            by_upstream.insert(
                upstream.name.clone(),
                Arc::new(RetryPolicy::new(&upstream.name, &upstream.retry)?),
            );
        }
        Ok(Retries { by_upstream })
    }

    pub fn get(&self, upstream: &str) -> Option<&Arc<RetryPolicy>> {
        self.by_upstream.get(upstream)
    }
}

/// Adds an `idempotency_key` when the tool takes one and the caller sent none.
fn ensure_idempotency_key(call: &mut ToolCall) {
    let arguments = call.arguments.get_or_insert_with(Default::default);
    let missing = arguments
        .get(IDEMPOTENCY_KEY)
        .is_none_or(serde_json::Value::is_null);
    if missing {
        arguments.insert(
            IDEMPOTENCY_KEY.to_string(),
            uuid::Uuid::new_v4().to_string().into(),
        );
    }
}

#[derive(Clone)]
pub struct RetryLayer {
    retries: Arc<Retries>,
}

impl RetryLayer {
    pub fn new(retries: Arc<Retries>) -> RetryLayer {
        RetryLayer { retries }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;
    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner,
            retries: self.retries.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Retry<S> {
    inner: S,
    retries: Arc<Retries>,
}

impl<S> Service<ToolCall> for Retry<S>
where
    S: Service<ToolCall, Error = GatewayError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, GatewayError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        // Each attempt drives a clone of the inner service to readiness (`oneshot`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut call: ToolCall) -> Self::Future {
        let inner = self.inner.clone();
        let policy = self.retries.get(call.upstream.name()).cloned();
        Box::pin(async move {
            let Some(policy) = policy.filter(|p| p.config.max_attempts > 0) else {
                return inner.oneshot(call).await;
            };
            if call.hints.idempotency_key {
                ensure_idempotency_key(&mut call);
            }
            let retryable = policy.retryable(&call);
            policy.budget.deposit();
            let mut retry = 0;
            let mut last_failure: Option<GatewayError> = None;
            loop {
                let result = inner.clone().oneshot(call.clone()).await;
                let err = match (result, last_failure.take()) {
                    // A retry refused by the circuit was never sent: the caller learns
                    // of the failure that happened, not of the refusal.
                    (Err(GatewayError::CircuitOpen { .. }), Some(previous)) => {
                        return Err(previous);
                    }
                    (Err(err), _)
                        if retryable
                            && err.is_upstream_failure()
                            && retry < policy.config.max_attempts
                            && call.upstream.circuit.state() != CircuitState::Open =>
                    {
                        err
                    }
                    (other, _) => return other,
                };
                if !policy.budget.withdraw() {
                    policy.budget_exhausted.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(upstream = %call.upstream.name(), tool = %call.tool, %err, "retry budget spent; not retrying");
                    return Err(err);
                }
                retry += 1;
                policy.retries.fetch_add(1, Ordering::Relaxed);
                let wait = policy.backoff(retry);
                tracing::info!(upstream = %call.upstream.name(), tool = %call.tool, %err, retry, ?wait, "retrying");
                tokio::time::sleep(wait).await;
                last_failure = Some(err);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_allows_the_burst_then_the_percentage() {
        let budget = Budget::new(20, 2);
        assert!(budget.withdraw());
        assert!(budget.withdraw());
        assert!(!budget.withdraw(), "burst spent");
        for _ in 0..4 {
            budget.deposit();
        }
        assert!(!budget.withdraw(), "4 first attempts earn 0.8 retries");
        budget.deposit();
        assert!(budget.withdraw(), "5 first attempts earn one retry");
        assert!(!budget.withdraw());
        for _ in 0..1000 {
            budget.deposit();
        }
        assert!(budget.withdraw() && budget.withdraw());
        assert!(!budget.withdraw(), "savings are capped at the burst");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy::new(
            "u",
            &RetryConfig {
                backoff_ms: 100,
                max_backoff_ms: 1000,
                ..RetryConfig::default()
            },
        )
        .expect("policy");
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            assert!(policy.backoff(30) <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        let too_many = RetryConfig {
            max_attempts: 11,
            ..RetryConfig::default()
        };
        assert!(too_many.validate().is_err());
        let bad_glob = RetryConfig {
            tools: vec!["[".into()],
            ..RetryConfig::default()
        };
        assert!(bad_glob.validate().is_err());
        assert!(RetryConfig::default().validate().is_ok());
    }
}
