//! W3C Trace Context across the gateway: accepted from clients, propagated to upstreams.
//!
//! A client's trace context arrives as the request's `_meta.traceparent`/`_meta.tracestate`
//! (the MCP convention, SEP-414, which works on every transport) or, over HTTP, as the
//! `traceparent`/`tracestate` headers of the POST that carried the request; `_meta` wins when
//! both are present, since it belongs to the one JSON-RPC request. The `tools/call` span
//! ([`crate::stack::trace`]) becomes a child of it.
//!
//! Upstreams get the current span's context in the outgoing request's `_meta`
//! ([`crate::stack::forward`]), on every transport. When no OpenTelemetry layer is installed
//! (tracing export is off) the gateway has no span context of its own, and forwards the
//! client's context unchanged, so a trace still joins up across it. rmcp's HTTP client
//! transport sets headers per connection, not per request, so the context is not sent as an
//! HTTP header to HTTP upstreams; `_meta` is the carrier.
//!
//! The propagator is used directly (not the process-wide global), so extraction does not
//! depend on what else the process configured.

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::TraceContextExt,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rmcp::{
    model::RequestMetaObject,
    service::{RequestContext, RoleServer},
};
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Longest `traceparent`/`tracestate` value accepted from a client, in bytes. A version-00
/// `traceparent` is 55 bytes; the W3C spec caps `tracestate` at 32 members of at most 256
/// bytes each, and vendors propagate at least 512 bytes; longer values are ignored.
pub const MAX_TRACE_HEADER_BYTES: usize = 8192;

/// A trace context as carried on the wire: `traceparent` and optional `tracestate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceCarrier {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

impl TraceCarrier {
    /// The client's trace context: `_meta` first, then (HTTP) the request's headers.
    pub fn from_request(cx: &RequestContext<RoleServer>) -> Option<TraceCarrier> {
        if let Some(traceparent) = cx.meta.0.get_traceparent() {
            return TraceCarrier::new(traceparent, cx.meta.0.get_tracestate());
        }
        let parts = cx.extensions.get::<axum::http::request::Parts>()?;
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
        };
        TraceCarrier::new(header(TRACEPARENT)?, header(TRACESTATE))
    }

    fn new(traceparent: &str, tracestate: Option<&str>) -> Option<TraceCarrier> {
        let bounded = |value: &str| value.len() <= MAX_TRACE_HEADER_BYTES;
        bounded(traceparent).then(|| TraceCarrier {
            traceparent: traceparent.to_string(),
            tracestate: tracestate.filter(|s| bounded(s)).map(str::to_string),
        })
    }

    /// The remote parent it names, if `traceparent` is valid.
    pub fn parent(&self) -> Option<Context> {
        let cx = TraceContextPropagator::new().extract(self);
        cx.span().span_context().is_valid().then_some(cx)
    }

    /// The context of `span`, when an OpenTelemetry layer tracks it.
    pub fn of_span(span: &tracing::Span) -> Option<TraceCarrier> {
        let cx = span.context();
        if !cx.span().span_context().is_valid() {
            return None;
        }
        let mut carrier = Collect::default();
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
        Some(TraceCarrier {
            traceparent: carrier.traceparent?,
            tracestate: carrier.tracestate.filter(|s| !s.is_empty()),
        })
    }

    /// Writes it into a request's `_meta` (`traceparent`, `tracestate`).
    pub fn write_to(&self, meta: &mut RequestMetaObject) {
        meta.0.set_traceparent(self.traceparent.clone());
        if let Some(state) = &self.tracestate {
            meta.0.set_tracestate(state.clone());
        }
    }
}

/// What to send upstream from inside `span`: its own context when traces are exported, else
/// the client's context unchanged.
pub fn outgoing(span: &tracing::Span, client: Option<TraceCarrier>) -> Option<TraceCarrier> {
    TraceCarrier::of_span(span).or(client)
}

impl Extractor for TraceCarrier {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => Some(&self.traceparent),
            TRACESTATE => self.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

#[derive(Default)]
struct Collect {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl Injector for Collect {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.traceparent = Some(value),
            TRACESTATE => self.tracestate = Some(value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn carrier(traceparent: &str) -> TraceCarrier {
        TraceCarrier {
            traceparent: traceparent.into(),
            tracestate: Some("vendor=1".into()),
        }
    }

    #[test]
    fn a_valid_traceparent_names_the_remote_parent() {
        let cx = carrier(PARENT)
            .parent()
            .map(|cx| cx.span().span_context().clone());
        let span = cx
            .as_ref()
            .map(|s| (s.trace_id().to_string(), s.is_remote()));
        assert_eq!(
            span,
            Some(("0af7651916cd43dd8448eb211c80319c".to_string(), true))
        );
    }

    #[test]
    fn an_invalid_traceparent_is_ignored() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        ] {
            assert!(carrier(bad).parent().is_none(), "{bad:?}");
        }
    }

    #[test]
    fn an_oversized_value_is_refused() {
        let long = "x".repeat(MAX_TRACE_HEADER_BYTES + 1);
        assert_eq!(TraceCarrier::new(&long, None), None);
        let kept = TraceCarrier::new(PARENT, Some(&long));
        assert_eq!(kept.and_then(|c| c.tracestate), None);
    }

    #[test]
    fn without_an_exporter_the_clients_context_is_forwarded_unchanged() {
        // No OpenTelemetry layer is installed in unit tests: the span has no context.
        let span = tracing::info_span!("test");
        assert_eq!(
            outgoing(&span, Some(carrier(PARENT))),
            Some(carrier(PARENT))
        );
        assert_eq!(outgoing(&span, None), None);
    }

    #[test]
    fn it_is_written_into_meta() {
        let mut meta = RequestMetaObject::default();
        carrier(PARENT).write_to(&mut meta);
        assert_eq!(meta.0.get_traceparent(), Some(PARENT));
        assert_eq!(meta.0.get_tracestate(), Some("vendor=1"));
    }
}
