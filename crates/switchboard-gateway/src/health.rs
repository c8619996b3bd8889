//! Active health checks: one background task per enabled upstream lists its tools every
//! `health.interval_secs`, so an upstream that died while idle is seen before a caller hits it,
//! and one that came back is seen as healthy again (a check reconnects through the upstream's
//! own backoff, so a dead upstream costs one quick refusal per interval).
//!
//! States: `unknown` (not checked yet), `healthy`, `degraded` (the last check was slower than
//! `slow_ms`, or failed fewer than `unhealthy_after` times in a row), `unhealthy`
//! (`unhealthy_after` consecutive failures) and `disabled` (the upstream is configured with
//! `enabled = false`: never connected, never checked). Health is kept apart from "enabled"
//! and from the circuit breaker: it is an observation for operators (`/api/status`,
//! `switchboard status`), not a gate on calls, so a false "unhealthy" can never take a working
//! upstream offline. The startup listing counts as the first check. A check neither keeps a
//! stdio child from being ended for idleness nor starts one that was ([`crate::children`]): an
//! idle upstream keeps its last state until it is used again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{error::GatewayError, upstream::UpstreamRuntime};

/// Health-check settings of one upstream (`health = { … }`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Seconds between two checks; 0 turns active checks off. Default 30.
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
    /// Consecutive failed checks that make the upstream `unhealthy`. At least 1. Default 3.
    #[serde(default = "default_unhealthy_after")]
    pub unhealthy_after: u32,
    /// A check slower than this many milliseconds makes the upstream `degraded`.
    /// Default 2000.
    #[serde(default = "default_slow_ms")]
    pub slow_ms: u64,
}

fn default_interval_secs() -> u64 {
    30
}
fn default_unhealthy_after() -> u32 {
    3
}
fn default_slow_ms() -> u64 {
    2000
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval_secs: default_interval_secs(),
            unhealthy_after: default_unhealthy_after(),
            slow_ms: default_slow_ms(),
        }
    }
}

impl HealthConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.unhealthy_after == 0 {
            return Err("health.unhealthy_after must be at least 1".into());
        }
        Ok(())
    }
}

/// An upstream's observed health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    Unknown,
    Healthy,
    Degraded,
    Unhealthy,
    Disabled,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Unknown => "unknown",
            HealthState::Healthy => "healthy",
            HealthState::Degraded => "degraded",
            HealthState::Unhealthy => "unhealthy",
            HealthState::Disabled => "disabled",
        }
    }
}

/// What `/api/status` shows of an upstream's health.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealthReport {
    pub state: HealthState,
    /// Checks made so far (the startup listing included).
    pub checks: u64,
    pub consecutive_failures: u32,
    /// Duration of the last successful check.
    pub last_latency_ms: Option<u64>,
    /// Why the last check failed, while it is failing.
    pub last_error: Option<String>,
}

/// One upstream's health, updated by its check task.
#[derive(Debug)]
pub struct Health {
    unhealthy_after: u32,
    slow: Duration,
    report: Mutex<HealthReport>,
}

impl Health {
    pub fn new(config: &HealthConfig, enabled: bool) -> Health {
        Health {
            unhealthy_after: config.unhealthy_after.max(1),
            slow: Duration::from_millis(config.slow_ms),
            report: Mutex::new(HealthReport {
                state: if enabled {
                    HealthState::Unknown
                } else {
                    HealthState::Disabled
                },
                checks: 0,
                consecutive_failures: 0,
                last_latency_ms: None,
                last_error: None,
            }),
        }
    }

    pub fn report(&self) -> HealthReport {
        match self.report.lock() {
            Ok(report) => report.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn state(&self) -> HealthState {
        self.report().state
    }

    /// Records one check's outcome and how long it took.
    pub fn record(&self, outcome: Result<(), &GatewayError>, took: Duration) {
        let Ok(mut report) = self.report.lock() else {
            return;
        };
        if report.state == HealthState::Disabled {
            return;
        }
        report.checks += 1;
        match outcome {
            Ok(()) => {
                report.consecutive_failures = 0;
                report.last_error = None;
                report.last_latency_ms = Some(took.as_millis().try_into().unwrap_or(u64::MAX));
                report.state = if took > self.slow {
                    HealthState::Degraded
                } else {
                    HealthState::Healthy
                };
            }
            Err(err) => {
                report.consecutive_failures = report.consecutive_failures.saturating_add(1);
                report.last_error = Some(err.to_string());
                report.state = if report.consecutive_failures >= self.unhealthy_after {
                    HealthState::Unhealthy
                } else {
                    HealthState::Degraded
                };
            }
        }
    }
}

/// Lists `upstream`'s tools once, within its list timeout, reconnecting if needed. A child
/// the idle reaper ended is not started again for a check (the check passes); nor does a check
/// count as activity that keeps a child running.
pub async fn check(upstream: &UpstreamRuntime) -> Result<(), GatewayError> {
    let timeout = upstream.config.list_timeout();
    let attempt = async {
        let Some(lease) = upstream.lease_for_check().await? else {
            return Ok(());
        };
        lease
            .peer()
            .list_all_tools()
            .await
            .map(|_| ())
            .map_err(|e| GatewayError::List {
                upstream: upstream.name().to_string(),
                message: e.to_string(),
            })
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(GatewayError::Timeout {
                upstream: upstream.name().to_string(),
                timeout,
            })
        })
}

/// Checks `upstream` once and records the outcome in `health`; skipped while the idle reaper
/// has ended its child (the last outcome stands).
pub async fn check_and_record(upstream: &UpstreamRuntime, health: &Health) {
    if upstream.idle_reaped() {
        return;
    }
    let started = tokio::time::Instant::now();
    let outcome = check(upstream).await;
    if let Err(err) = &outcome {
        tracing::warn!(upstream = %upstream.name(), %err, "health check failed");
    }
    health.record(outcome.as_ref().map(|_| ()), started.elapsed());
}

/// Every upstream's health and the tasks that check them.
#[derive(Default)]
pub struct HealthMonitor {
    by_upstream: HashMap<String, Arc<Health>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl HealthMonitor {
    pub fn new(upstreams: &[Arc<UpstreamRuntime>]) -> HealthMonitor {
        HealthMonitor {
            by_upstream: upstreams
                .iter()
                .map(|u| {
                    (
                        u.name().to_string(),
                        Arc::new(Health::new(&u.config.health, u.config.enabled)),
                    )
                })
                .collect(),
            tasks: Mutex::new(Vec::new()),
        }
    }

    pub fn get(&self, upstream: &str) -> Option<&Arc<Health>> {
        self.by_upstream.get(upstream)
    }

    /// Records the startup listing as each upstream's first check (`took`: the listing's
    /// duration, shared by all since they ran concurrently).
    pub fn record_start<T>(
        &self,
        upstreams: &[Arc<UpstreamRuntime>],
        results: &[Result<T, GatewayError>],
        took: Duration,
    ) {
        for (upstream, result) in upstreams.iter().zip(results) {
            if let Some(health) = self.get(upstream.name()) {
                health.record(result.as_ref().map(|_| ()), took);
            }
        }
    }

    /// Starts one check task per enabled upstream with a non-zero interval; the first check
    /// runs one interval from now. Calling it again replaces the running tasks.
    pub fn spawn(&self, upstreams: &[Arc<UpstreamRuntime>]) {
        self.abort_all();
        let mut spawned = Vec::new();
        for upstream in upstreams {
            let interval = Duration::from_secs(upstream.config.health.interval_secs);
            let Some(health) = self.get(upstream.name()).cloned() else {
                continue;
            };
            if !upstream.config.enabled || interval.is_zero() {
                continue;
            }
            let upstream = upstream.clone();
            spawned.push(tokio::spawn(async move {
                let mut ticker =
                    tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    check_and_record(&upstream, &health).await;
                }
            }));
        }
        if let Ok(mut tasks) = self.tasks.lock() {
            *tasks = spawned;
        }
    }

    fn abort_all(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let tasks: Vec<_> = match self.tasks.lock() {
            Ok(mut tasks) => tasks.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for task in &tasks {
            task.abort();
        }
        tasks
    }

    /// Stops every check task and waits until they are gone (each holds its upstream).
    pub async fn stop(&self) {
        for task in self.abort_all() {
            // A cancelled task's `JoinError` is the expected outcome.
            let _ = task.await;
        }
    }
}

impl Drop for HealthMonitor {
    fn drop(&mut self) {
        self.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> GatewayError {
        GatewayError::Connect {
            upstream: "u".into(),
            message: "refused".into(),
        }
    }

    #[test]
    fn states_follow_checks() {
        let health = Health::new(
            &HealthConfig {
                interval_secs: 30,
                unhealthy_after: 3,
                slow_ms: 100,
            },
            true,
        );
        assert_eq!(health.state(), HealthState::Unknown);
        health.record(Ok(()), Duration::from_millis(5));
        assert_eq!(health.state(), HealthState::Healthy);
        health.record(Ok(()), Duration::from_millis(500));
        assert_eq!(health.state(), HealthState::Degraded, "slow");
        let err = failure();
        health.record(Err(&err), Duration::ZERO);
        health.record(Err(&err), Duration::ZERO);
        assert_eq!(health.state(), HealthState::Degraded, "two failures");
        health.record(Err(&err), Duration::ZERO);
        let report = health.report();
        assert_eq!(report.state, HealthState::Unhealthy);
        assert_eq!(report.consecutive_failures, 3);
        assert!(
            report
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("refused"))
        );
        health.record(Ok(()), Duration::from_millis(5));
        let report = health.report();
        assert_eq!(report.state, HealthState::Healthy, "recovers on its own");
        assert_eq!(report.checks, 6);
        assert_eq!(report.last_error, None);
    }

    #[test]
    fn disabled_stays_disabled() {
        let health = Health::new(&HealthConfig::default(), false);
        health.record(Ok(()), Duration::ZERO);
        assert_eq!(health.state(), HealthState::Disabled);
        assert_eq!(health.report().checks, 0);
    }
}
