//! The `tools/call` path as a tower stack. Each cross-cutting concern is one `Layer` in its
//! own file; `build` composes them, outermost first, so the stack reads top to bottom:
//!
//! 1. [`circuit`]: refuse fast while an upstream's circuit is open; count failures.
//! 2. [`timeout`]: the per-upstream deadline.
//! 3. [`forward`]: the call itself, on the upstream's live connection.
//!
//! The request carries its upstream's run-time state, so one stack serves every upstream and
//! per-upstream settings come from the request, not from one stack per upstream.

pub mod circuit;
pub mod forward;
pub mod timeout;

use std::sync::Arc;

use rmcp::model::{CallToolResult, JsonObject};
use tower::{ServiceBuilder, util::BoxCloneSyncService};

use crate::{error::GatewayError, upstream::UpstreamRuntime};

/// One routed `tools/call`.
pub struct ToolCall {
    pub upstream: Arc<UpstreamRuntime>,
    /// The tool's name at the upstream.
    pub tool: String,
    /// The name the client called.
    pub exposed: String,
    pub arguments: Option<JsonObject>,
}

/// The composed call stack.
pub type CallService = BoxCloneSyncService<ToolCall, CallToolResult, GatewayError>;

pub fn build() -> CallService {
    let stack = ServiceBuilder::new()
        .layer(circuit::CircuitLayer)
        .layer(timeout::TimeoutLayer)
        .service(forward::Forward);
    BoxCloneSyncService::new(stack)
}
