//! The per-upstream deadline of a `tools/call` (default 60 s, set by `timeout_secs`).
//!
//! Dropping the inner future on expiry drops rmcp's request handle, which sends
//! `notifications/cancelled` to the upstream, so a timed-out call does not keep running there
//! unobserved.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tower::{Layer, Service};

use crate::{error::GatewayError, stack::ToolCall};

#[derive(Clone, Copy)]
pub struct TimeoutLayer;

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;
    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout { inner }
    }
}

#[derive(Clone)]
pub struct Timeout<S> {
    inner: S,
}

impl<S> Service<ToolCall> for Timeout<S>
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
        let timeout = call.upstream.config.call_timeout();
        let upstream = call.upstream.name().to_string();
        let future = self.inner.call(call);
        Box::pin(async move {
            tokio::time::timeout(timeout, future)
                .await
                .map_err(|_| GatewayError::Timeout { upstream, timeout })?
        })
    }
}
