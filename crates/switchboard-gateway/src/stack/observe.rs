//! Records every `tools/call` for metrics and the live call stream ([`crate::telemetry`]).
//!
//! It sits just inside the audit layer and outside authorization, so refusals (forbidden,
//! rate limited) are counted alongside answered calls, and the latency it measures is what
//! the client waits for, cache hits and retries included. A call whose future is dropped
//! before it finishes (the client cancelled or went away) is recorded as `cancelled`.
//! The `tools/call` tracing span around it is [`crate::stack::trace`]'s.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use rmcp::model::CallToolResponse;
use tower::{Layer, Service};

use crate::{
    error::GatewayError,
    stack::ToolCall,
    telemetry::{Observer, outcome_of},
};

#[derive(Clone)]
pub struct ObserveLayer {
    observer: Arc<Observer>,
}

impl ObserveLayer {
    pub fn new(observer: Arc<Observer>) -> ObserveLayer {
        ObserveLayer { observer }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            observer: self.observer.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    observer: Arc<Observer>,
}

impl<S> Service<ToolCall> for Observe<S>
where
    S: Service<ToolCall, Response = CallToolResponse, Error = GatewayError> + Send,
    S::Future: Send + 'static,
{
    type Response = CallToolResponse;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<CallToolResponse, GatewayError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: ToolCall) -> Self::Future {
        let mut record = Record {
            observer: self.observer.clone(),
            tool: call.exposed.clone(),
            upstream: call.upstream.name().to_string(),
            identity: call.identity.clone(),
            started: Instant::now(),
            done: false,
        };
        let future = self.inner.call(call);
        Box::pin(async move {
            let result = future.await;
            record.finish(outcome_of(&result, |response| {
                matches!(response, CallToolResponse::Complete(r) if r.is_error == Some(true))
            }));
            result
        })
    }
}

/// One call in flight; recorded once, as `cancelled` if dropped unfinished.
struct Record {
    observer: Arc<Observer>,
    tool: String,
    upstream: String,
    identity: Option<String>,
    started: Instant,
    done: bool,
}

impl Record {
    fn finish(&mut self, outcome: &str) {
        self.done = true;
        self.observer.record_call(
            &self.tool,
            &self.upstream,
            self.identity.as_deref(),
            self.started.elapsed(),
            outcome,
        );
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if !self.done {
            self.finish("cancelled");
        }
    }
}
