//! Rate limits on `tools/call` ([`crate::ratelimit`]): after authorization and validation, so
//! refused and malformed calls spend no budget, and before the cache, so a cached answer
//! still counts as a call (the limit is on what a client may ask, not on upstream load).
//!
//! A limited call is a JSON-RPC error (`kind = "rate_limited"`, `data.retry_after_ms`). The
//! MCP request is already inside the session machinery here, past the HTTP response's status
//! line, so it cannot be an HTTP 429.
//!
//! Calls without a principal are the gateway's own (health checks, `switchboard call`) and are
//! not limited.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tower::{Layer, Service};

use crate::{error::GatewayError, ratelimit::RateLimits, stack::ToolCall};

#[derive(Clone)]
pub struct RateLimitLayer {
    limits: Option<Arc<RateLimits>>,
}

impl RateLimitLayer {
    /// `None`: no rules, every call passes.
    pub fn new(limits: Option<Arc<RateLimits>>) -> RateLimitLayer {
        RateLimitLayer { limits }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            limits: self.limits.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    limits: Option<Arc<RateLimits>>,
}

impl<S> Service<ToolCall> for RateLimit<S>
where
    S: Service<ToolCall, Error = GatewayError> + Clone + Send + 'static,
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
        let (limits, principal) = match (&self.limits, &call.principal) {
            (Some(limits), Some(principal)) if limits.applies_to(&call.exposed) => {
                (limits.clone(), principal.clone())
            }
            _ => return Box::pin(self.inner.call(call)),
        };
        // The service that was polled ready goes into the future; a clone stays behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            limits
                .check(&principal, &call.exposed, call.upstream.name())
                .await?;
            inner.call(call).await
        })
    }
}
