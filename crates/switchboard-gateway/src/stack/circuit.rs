//! The circuit breaker: after `failure_threshold` consecutive upstream failures (connect
//! errors, timeouts, transport errors — not tool results with `isError`), calls to that
//! upstream are refused at once for `open_secs`; then one probe call is let through
//! (half-open), and its outcome closes or re-opens the circuit.

use std::{
    future::Future,
    pin::Pin,
    sync::Mutex,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tower::{Layer, Service};

use crate::{config::CircuitConfig, error::GatewayError, stack::ToolCall};

/// The observable circuit states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_in_flight: bool },
}

/// One upstream's breaker.
#[derive(Debug)]
pub struct Circuit {
    threshold: u32,
    open_for: Duration,
    inner: Mutex<Inner>,
    /// Times the circuit went from closed or half-open to open (for status and metrics).
    opened: std::sync::atomic::AtomicU64,
}

/// What the breaker allows for one call.
enum Admission {
    Allowed { probe: bool },
    Refused { retry_in: Duration },
}

impl Circuit {
    pub fn new(config: &CircuitConfig) -> Circuit {
        Circuit {
            threshold: config.failure_threshold.max(1),
            open_for: Duration::from_secs(config.open_secs),
            inner: Mutex::new(Inner::Closed {
                consecutive_failures: 0,
            }),
            opened: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Times the circuit opened since the gateway started.
    pub fn times_opened(&self) -> u64 {
        self.opened.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn state(&self) -> CircuitState {
        match self.inner.lock().map(|g| match *g {
            Inner::Closed { .. } => CircuitState::Closed,
            Inner::Open { until } if Instant::now() >= until => CircuitState::HalfOpen,
            Inner::Open { .. } => CircuitState::Open,
            Inner::HalfOpen { .. } => CircuitState::HalfOpen,
        }) {
            Ok(state) => state,
            Err(_) => CircuitState::Closed,
        }
    }

    fn admit(&self) -> Admission {
        let Ok(mut inner) = self.inner.lock() else {
            return Admission::Allowed { probe: false };
        };
        match *inner {
            Inner::Closed { .. } => Admission::Allowed { probe: false },
            Inner::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *inner = Inner::HalfOpen {
                        probe_in_flight: true,
                    };
                    Admission::Allowed { probe: true }
                } else {
                    Admission::Refused {
                        retry_in: until - now,
                    }
                }
            }
            Inner::HalfOpen { probe_in_flight } => {
                if probe_in_flight {
                    Admission::Refused {
                        retry_in: Duration::ZERO,
                    }
                } else {
                    *inner = Inner::HalfOpen {
                        probe_in_flight: true,
                    };
                    Admission::Allowed { probe: true }
                }
            }
        }
    }

    fn record(&self, failed: bool, probe: bool) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let next = match (&*inner, failed) {
            (_, false) => Inner::Closed {
                consecutive_failures: 0,
            },
            (Inner::HalfOpen { .. }, true) => Inner::Open {
                until: Instant::now() + self.open_for,
            },
            (
                Inner::Closed {
                    consecutive_failures,
                },
                true,
            ) => {
                let failures = consecutive_failures + 1;
                if failures >= self.threshold {
                    tracing::warn!(failures, "circuit opened");
                    Inner::Open {
                        until: Instant::now() + self.open_for,
                    }
                } else {
                    Inner::Closed {
                        consecutive_failures: failures,
                    }
                }
            }
            // A non-probe call that started before the circuit opened: it changes nothing.
            (Inner::Open { until }, true) => Inner::Open { until: *until },
        };
        if probe || !matches!(*inner, Inner::HalfOpen { .. }) {
            if matches!(next, Inner::Open { .. }) && !matches!(*inner, Inner::Open { .. }) {
                self.opened
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            *inner = next;
        }
    }
}

#[derive(Clone, Copy)]
pub struct CircuitLayer;

impl<S> Layer<S> for CircuitLayer {
    type Service = CircuitBreaker<S>;
    fn layer(&self, inner: S) -> CircuitBreaker<S> {
        CircuitBreaker { inner }
    }
}

#[derive(Clone)]
pub struct CircuitBreaker<S> {
    inner: S,
}

impl<S> Service<ToolCall> for CircuitBreaker<S>
where
    S: Service<ToolCall, Error = GatewayError> + Send,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, GatewayError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: ToolCall) -> Self::Future {
        let upstream = call.upstream.clone();
        let probe = match upstream.circuit.admit() {
            Admission::Allowed { probe } => probe,
            Admission::Refused { retry_in } => {
                return Box::pin(std::future::ready(Err(GatewayError::CircuitOpen {
                    upstream: upstream.name().to_string(),
                    retry_in,
                })));
            }
        };
        let future = self.inner.call(call);
        Box::pin(async move {
            let result = future.await;
            let failed = matches!(&result, Err(e) if e.is_upstream_failure());
            upstream.circuit.record(failed, probe);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn circuit(threshold: u32, open_secs: u64) -> Circuit {
        Circuit::new(&CircuitConfig {
            failure_threshold: threshold,
            open_secs,
        })
    }

    #[test]
    fn opens_after_the_threshold_and_probes_once() {
        let c = circuit(2, 0);
        assert!(matches!(c.admit(), Admission::Allowed { probe: false }));
        c.record(true, false);
        assert_eq!(c.state(), CircuitState::Closed);
        c.record(true, false);
        // open_secs = 0: the circuit is immediately due for a probe.
        assert_eq!(c.state(), CircuitState::HalfOpen);
        assert!(matches!(c.admit(), Admission::Allowed { probe: true }));
        assert!(
            matches!(c.admit(), Admission::Refused { .. }),
            "one probe at a time"
        );
        c.record(false, true);
        assert_eq!(c.state(), CircuitState::Closed);
    }

    #[test]
    fn a_failed_probe_reopens() {
        let c = circuit(1, 3600);
        c.record(true, false);
        assert_eq!(c.state(), CircuitState::Open);
        assert!(
            matches!(c.admit(), Admission::Refused { retry_in } if retry_in > Duration::from_secs(3000))
        );
    }

    #[test]
    fn success_resets_the_count() {
        let c = circuit(2, 3600);
        c.record(true, false);
        c.record(false, false);
        c.record(true, false);
        assert_eq!(c.state(), CircuitState::Closed);
    }
}
