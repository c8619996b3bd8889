//! The durable audit log of `tools/call` ([`switchboard_audit`]): the outermost layer, so it
//! sees every call the stack refuses (authorization, validation, rate limits) as well as every
//! answered one. Calls refused before the stack (an unknown or disabled tool, a denial that
//! must not reveal whether the tool exists) are recorded by [`crate::Gateway::call_as`] with
//! [`record_unrouted`].
//!
//! The record is durable before the response goes back: the layer awaits the
//! [`Auditor`]'s group commit (to the local journal by default, else to the store), and if it
//! fails the call fails with `audit_unavailable` instead, so no acknowledged call lacks a
//! record. A call whose future is dropped (the client cancelled) is still recorded, in the
//! background, as an error.
//!
//! Off (no layer state) when `[audit] enabled = false` or no store was opened (library users
//! that build a `Gateway` without one).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use rmcp::model::{CallToolResponse, JsonObject};
use switchboard_audit::{Auditor, CallRecord, Decision, Outcome};
use tower::{Layer, Service};

use crate::{auth::Identity, error::GatewayError, passthrough::Downstream, stack::ToolCall};

/// The identity recorded for the gateway's own calls (no principal).
pub const GATEWAY_IDENTITY: &str = "gateway";
/// Longest `clientInfo` name/version kept (it is the client's own text).
const MAX_CLIENT_INFO_BYTES: usize = 256;

#[derive(Clone)]
pub struct AuditLayer {
    auditor: Option<Arc<Auditor>>,
}

impl AuditLayer {
    pub fn new(auditor: Option<Arc<Auditor>>) -> AuditLayer {
        AuditLayer { auditor }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;
    fn layer(&self, inner: S) -> Audit<S> {
        Audit {
            inner,
            auditor: self.auditor.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Audit<S> {
    inner: S,
    auditor: Option<Arc<Auditor>>,
}

/// What the stack's refusals and failures say about the gateway's decision.
pub fn decision_of(err: &GatewayError) -> Decision {
    match err {
        GatewayError::Forbidden { .. } => Decision::Denied,
        GatewayError::RateLimited { .. } | GatewayError::RateLimitUnavailable { .. } => {
            Decision::RateLimited
        }
        GatewayError::InvalidArguments { .. }
        | GatewayError::UnknownTool(_)
        | GatewayError::Disabled { .. } => Decision::Invalid,
        _ => Decision::Allowed,
    }
}

fn outcome_of(response: &CallToolResponse) -> Outcome {
    match response {
        CallToolResponse::Complete(result) if result.is_error == Some(true) => Outcome::ToolError,
        _ => Outcome::Ok,
    }
}

/// Which client made the call: the API key's name and the MCP `clientInfo`, when known.
pub fn client_of(principal: Option<&Identity>, downstream: Option<&Downstream>) -> Option<String> {
    let key = principal
        .and_then(|p| p.key.as_deref())
        .map(|k| format!("key:{k}"));
    let info = downstream
        .and_then(Downstream::client_info)
        .map(|i| switchboard_audit::record::truncate(&i, MAX_CLIENT_INFO_BYTES));
    match (key, info) {
        (Some(key), Some(info)) => Some(format!("{key} {info}")),
        (key, info) => key.or(info),
    }
}

fn identity_of(principal: Option<&Identity>) -> String {
    principal.map_or_else(|| GATEWAY_IDENTITY.to_string(), |p| p.subject.clone())
}

/// The error a call gets when its record could not be committed.
fn unavailable(err: switchboard_audit::AuditError) -> GatewayError {
    GatewayError::AuditUnavailable {
        message: err.to_string(),
    }
}

/// Records a call refused before it was routed (`err`); `Ok` once committed.
pub async fn record_unrouted(
    auditor: &Auditor,
    tool: &str,
    arguments: Option<&JsonObject>,
    principal: Option<&Identity>,
    downstream: Option<&Downstream>,
    err: &GatewayError,
) -> Result<(), GatewayError> {
    auditor
        .record(CallRecord {
            time: chrono::Utc::now(),
            identity: identity_of(principal),
            client: client_of(principal, downstream),
            tool: tool.to_string(),
            upstream: None,
            upstream_tool: None,
            arguments: arguments.cloned(),
            decision: decision_of(err),
            outcome: Outcome::Error,
            latency_ms: 0,
            error: Some(err.to_string()),
        })
        .await
        .map_err(unavailable)
}

/// Records the call if its future is dropped before it finished (client cancellation).
struct DropGuard {
    pending: Option<(Arc<Auditor>, CallRecord, Instant)>,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if let Some((auditor, mut record, started)) = self.pending.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            record.latency_ms = elapsed_ms(started);
            record.outcome = Outcome::Error;
            record.error = Some("cancelled by the client before the answer".into());
            runtime.spawn(async move {
                if let Err(err) = auditor.record(record).await {
                    tracing::error!(%err, "could not record a cancelled call");
                }
            });
        }
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl<S> Service<ToolCall> for Audit<S>
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
        let Some(auditor) = self.auditor.clone() else {
            return Box::pin(self.inner.call(call));
        };
        let principal = call.principal.as_deref();
        let record = CallRecord {
            time: chrono::Utc::now(),
            identity: identity_of(principal),
            client: client_of(principal, call.downstream.as_ref()),
            tool: call.exposed.clone(),
            upstream: Some(call.upstream.name().to_string()),
            upstream_tool: Some(call.tool.clone()),
            arguments: call.arguments.clone(),
            decision: Decision::Allowed,
            outcome: Outcome::Ok,
            latency_ms: 0,
            error: None,
        };
        let started = Instant::now();
        let future = self.inner.call(call);
        Box::pin(async move {
            let mut guard = DropGuard {
                pending: Some((auditor.clone(), record, started)),
            };
            let result = future.await;
            let Some((_, mut record, _)) = guard.pending.take() else {
                return result;
            };
            record.latency_ms = elapsed_ms(started);
            match &result {
                Ok(response) => record.outcome = outcome_of(response),
                Err(err) => {
                    record.decision = decision_of(err);
                    record.outcome = Outcome::Error;
                    record.error = Some(err.to_string());
                }
            }
            auditor.record(record).await.map_err(unavailable)?;
            result
        })
    }
}
