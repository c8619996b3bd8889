//! The `tools/call` path as a tower stack. Each cross-cutting concern is one `Layer` in its
//! own file; `build` composes them, outermost first, so the stack reads top to bottom:
//!
//! 0. [`audit`]: the durable audit record of every call, refusals included, committed before
//!    the answer is released (on unless `[audit] enabled = false`).
//! 0. [`observe`]: metrics and the live call stream for every call, refusals included.
//! 0. [`authorize`]: refuse tools the caller may not use (off unless `[security]` says so).
//! 0. [`validate`]: refuse arguments that break the tool's `inputSchema` or the size limits
//!    (off unless `[security.validation]`).
//! 0. [`rate_limit`]: spend the caller's budget of each matching `[[security.rate_limit]]`.
//! 1. [`cache`]: answer opted-in tools from the result cache; coalesce identical calls.
//! 2. [`retry`]: retry failed calls to idempotent tools, within a per-upstream budget.
//! 3. [`circuit`]: refuse fast while an upstream's circuit is open; count failures.
//! 4. [`timeout`]: the per-upstream deadline (of each attempt).
//! 5. [`forward`]: the call itself, on the upstream's live connection.
//!
//! The request carries its upstream's run-time state, so one stack serves every upstream and
//! per-upstream settings come from the request, not from one stack per upstream.
//!
//! [`trace`] wraps it all in one `tools/call` tracing span and each layer but `observe` in a
//! child span named after it (exported as OpenTelemetry traces when configured).

pub mod audit;
pub mod authorize;
pub mod cache;
pub mod circuit;
pub mod forward;
pub mod observe;
pub mod rate_limit;
pub mod retry;
pub mod timeout;
pub mod trace;
pub mod validate;

use std::sync::Arc;

use rmcp::model::{CallToolResponse, InputResponses, JsonObject, Tool, ToolAnnotations};
use tower::{ServiceBuilder, util::BoxCloneSyncService};

use crate::{error::GatewayError, passthrough::Downstream, upstream::UpstreamRuntime};

/// One routed `tools/call`. Cloned for each retry attempt.
#[derive(Clone)]
pub struct ToolCall {
    pub upstream: Arc<UpstreamRuntime>,
    /// The tool's name at the upstream.
    pub tool: String,
    /// The name the client called.
    pub exposed: String,
    pub arguments: Option<JsonObject>,
    /// The client's request, for progress, logs, cancellation and sampling/elicitation
    /// (`None`: the gateway calls on its own behalf).
    pub downstream: Option<Downstream>,
    /// A 2026-07-28 client's answers to an `input_required` result, forwarded as they are.
    pub input_responses: Option<InputResponses>,
    /// The `requestState` echoed by a 2026-07-28 client, forwarded as it is.
    pub request_state: Option<String>,
    /// What the upstream's listing says about the tool (from the catalog's `Route`).
    pub hints: ToolHints,
    /// Who is calling, for the cache's identity scope: the authenticated subject; `None` for
    /// anonymous callers and the gateway itself.
    pub identity: Option<String>,
    /// The caller's full identity, for authorization and rate limits; `None` only for calls
    /// the gateway makes on its own behalf.
    pub principal: Option<Arc<crate::auth::Identity>>,
}

/// What the stack needs to know about a tool from its listing.
#[derive(Debug, Clone, Default)]
pub struct ToolHints {
    pub annotations: Option<ToolAnnotations>,
    /// The input schema has an `idempotency_key` property (see [`retry`]).
    pub idempotency_key: bool,
    /// The input schema, compiled on first use (see [`validate`]).
    pub input_schema: Option<Arc<validate::InputSchema>>,
}

impl ToolHints {
    pub fn of(tool: &Tool) -> ToolHints {
        ToolHints {
            annotations: tool.annotations.clone(),
            idempotency_key: tool
                .input_schema
                .get("properties")
                .and_then(|p| p.as_object())
                .is_some_and(|p| p.contains_key(retry::IDEMPOTENCY_KEY)),
            input_schema: Some(Arc::new(validate::InputSchema::new(
                tool.input_schema.clone(),
            ))),
        }
    }
}

/// The composed call stack. Its answer is a `CallToolResponse`: a result, or (for a 2026-07-28
/// client) an `input_required` result passed through.
pub type CallService = BoxCloneSyncService<ToolCall, CallToolResponse, GatewayError>;

pub fn build(retries: Arc<retry::Retries>, caches: Arc<cache::ResultCaches>) -> CallService {
    build_secured(
        retries,
        caches,
        &Security::default(),
        Arc::new(crate::telemetry::Observer::new(Default::default())),
    )
}

/// The security layers' compiled state; `Default` is every layer off.
#[derive(Default, Clone)]
pub struct Security {
    pub policies: Option<Arc<crate::auth::policy::Policies>>,
    /// `[security.validation]`; `None`: arguments are not checked.
    pub validation: Option<Arc<validate::ValidationConfig>>,
    /// `[[security.rate_limit]]`; `None`: no limits.
    pub rate_limits: Option<Arc<crate::ratelimit::RateLimits>>,
    /// The audit log's writer; `None`: calls are not audited.
    pub audit: Option<Arc<switchboard_audit::Auditor>>,
}

/// [`build`] with the security layers in front.
pub fn build_secured(
    retries: Arc<retry::Retries>,
    caches: Arc<cache::ResultCaches>,
    security: &Security,
    observer: Arc<crate::telemetry::Observer>,
) -> CallService {
    use trace::{Stage, stage};
    let stack = ServiceBuilder::new()
        .layer(trace::TraceLayer)
        .layer(stage(
            Stage::Audit,
            audit::AuditLayer::new(security.audit.clone()),
        ))
        .layer(observe::ObserveLayer::new(observer))
        .layer(stage(
            Stage::Authorize,
            authorize::AuthorizeLayer::new(security.policies.clone()),
        ))
        .layer(stage(
            Stage::Validate,
            validate::ValidateLayer::new(security.validation.clone()),
        ))
        .layer(stage(
            Stage::RateLimit,
            rate_limit::RateLimitLayer::new(security.rate_limits.clone()),
        ))
        .layer(stage(Stage::Cache, cache::CacheLayer::new(caches)))
        .layer(stage(Stage::Retry, retry::RetryLayer::new(retries)))
        .layer(stage(Stage::Circuit, circuit::CircuitLayer))
        .layer(stage(Stage::Timeout, timeout::TimeoutLayer))
        .service(trace::Staged::new(Stage::Forward, forward::Forward));
    BoxCloneSyncService::new(stack)
}
