//! Tracing spans for the `tools/call` stack, exported as OpenTelemetry traces when
//! `[observability.otlp]` is configured (the binary installs the exporter).
//!
//! [`TraceLayer`] is the outermost layer: one `tools/call` span (level INFO) per call, a child
//! of the client's W3C trace context when it sent one ([`crate::trace_context`]), carrying
//! the tool, upstream, `mcp.method`, outcome and error kind, never arguments or identities.
//! [`StageLayer`] wraps each layer below it in a child span (level DEBUG) named after the
//! layer, so a trace shows where a call spent its time and which layer refused it; retries
//! show one `circuit`/`timeout`/`forward` subtree per attempt.
//!
//! Stage spans cost nothing when nothing listens at DEBUG for this crate (no exporter and a
//! default log filter): a disabled span is a no-op and the call goes straight to the inner
//! service without boxing its future.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use futures::future::Either;
use rmcp::model::CallToolResponse;
use tower::{Layer, Service};
use tracing::{Instrument, Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{error::GatewayError, stack::ToolCall, telemetry::outcome_of};

type BoxedCall = Pin<Box<dyn Future<Output = Result<CallToolResponse, GatewayError>> + Send>>;

/// The `tools/call` span around the whole stack.
#[derive(Clone, Copy, Default)]
pub struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;
    fn layer(&self, inner: S) -> Trace<S> {
        Trace { inner }
    }
}

#[derive(Clone)]
pub struct Trace<S> {
    inner: S,
}

impl<S> Service<ToolCall> for Trace<S>
where
    S: Service<ToolCall, Response = CallToolResponse, Error = GatewayError> + Send,
    S::Future: Send + 'static,
{
    type Response = CallToolResponse;
    type Error = GatewayError;
    type Future = Either<S::Future, BoxedCall>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: ToolCall) -> Self::Future {
        let span = tracing::info_span!(
            "tools/call",
            otel.name = "tools/call",
            otel.kind = "server",
            otel.status_code = Empty,
            mcp.method = "tools/call",
            tool = %call.exposed,
            upstream = %call.upstream.name(),
            outcome = Empty,
            error.kind = Empty,
        );
        if span.is_disabled() {
            return Either::Left(self.inner.call(call));
        }
        if let Some(parent) = call
            .downstream
            .as_ref()
            .and_then(|down| down.trace_context())
            .and_then(|carrier| carrier.parent())
        {
            // Fails only when no OpenTelemetry layer is installed; then there is no trace.
            let _ = span.set_parent(parent);
        }
        Either::Right(run_in(span, &mut self.inner, call))
    }
}

/// The layers [`StageLayer`] can wrap, one span name each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Audit,
    Authorize,
    Validate,
    RateLimit,
    Cache,
    Retry,
    Circuit,
    Timeout,
    Forward,
}

impl Stage {
    /// The stage's span (each arm is its own callsite, so each can be filtered and is cached).
    fn span(self) -> Span {
        macro_rules! stage {
            ($name:literal) => {
                tracing::debug_span!(
                    $name,
                    otel.status_code = Empty,
                    outcome = Empty,
                    error.kind = Empty
                )
            };
        }
        match self {
            Stage::Audit => stage!("audit"),
            Stage::Authorize => stage!("authorize"),
            Stage::Validate => stage!("validate"),
            Stage::RateLimit => stage!("rate_limit"),
            Stage::Cache => stage!("cache"),
            Stage::Retry => stage!("retry"),
            Stage::Circuit => stage!("circuit"),
            Stage::Timeout => stage!("timeout"),
            // The call leaving the gateway: an OpenTelemetry client span.
            Stage::Forward => tracing::debug_span!(
                "forward",
                otel.kind = "client",
                otel.status_code = Empty,
                outcome = Empty,
                error.kind = Empty
            ),
        }
    }
}

/// Wraps a layer's service in a [`Stage`] span.
#[derive(Clone, Copy)]
pub struct StageLayer<L> {
    stage: Stage,
    layer: L,
}

/// `layer`, its calls in a `stage` span.
pub fn stage<L>(stage: Stage, layer: L) -> StageLayer<L> {
    StageLayer { stage, layer }
}

impl<S, L: Layer<S>> Layer<S> for StageLayer<L> {
    type Service = Staged<L::Service>;
    fn layer(&self, inner: S) -> Staged<L::Service> {
        Staged {
            stage: self.stage,
            inner: self.layer.layer(inner),
        }
    }
}

/// A service whose calls run in its stage's span.
#[derive(Clone)]
pub struct Staged<S> {
    stage: Stage,
    inner: S,
}

impl<S> Staged<S> {
    pub fn new(stage: Stage, inner: S) -> Staged<S> {
        Staged { stage, inner }
    }
}

impl<S> Service<ToolCall> for Staged<S>
where
    S: Service<ToolCall, Response = CallToolResponse, Error = GatewayError> + Send,
    S::Future: Send + 'static,
{
    type Response = CallToolResponse;
    type Error = GatewayError;
    type Future = Either<S::Future, BoxedCall>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: ToolCall) -> Self::Future {
        let span = self.stage.span();
        if span.is_disabled() {
            return Either::Left(self.inner.call(call));
        }
        Either::Right(run_in(span, &mut self.inner, call))
    }
}

/// Calls `inner` inside `span` (layers that call their inner service synchronously nest
/// under it too) and records the outcome on it.
fn run_in<S>(span: Span, inner: &mut S, call: ToolCall) -> BoxedCall
where
    S: Service<ToolCall, Response = CallToolResponse, Error = GatewayError>,
    S::Future: Send + 'static,
{
    let future = span.in_scope(|| inner.call(call));
    let recorder = span.clone();
    Box::pin(
        async move {
            let result = future.await;
            record_outcome(&recorder, &result);
            result
        }
        .instrument(span),
    )
}

/// `outcome` (`ok`, `tool_error` or the error kind) and, on failure, `error.kind` and the
/// OpenTelemetry error status.
fn record_outcome(span: &Span, result: &Result<CallToolResponse, GatewayError>) {
    let outcome = outcome_of(
        result,
        |response| matches!(response, CallToolResponse::Complete(r) if r.is_error == Some(true)),
    );
    span.record("outcome", outcome);
    if outcome != "ok" {
        span.record("error.kind", outcome);
        span.record("otel.status_code", "ERROR");
    }
}
