//! Errors of the gateway, each mapped to what the client sees.

use std::time::Duration;

/// Why a gateway operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No upstream exposes this tool (a JSON-RPC `invalid_params` error for the client).
    #[error("unknown tool {0:?}")]
    UnknownTool(String),
    #[error("upstream {upstream:?} could not be reached: {message}")]
    Connect { upstream: String, message: String },
    #[error(
        "upstream {upstream:?} is unavailable (reconnecting; next attempt in {retry_in:?}): {message}"
    )]
    Unavailable {
        upstream: String,
        retry_in: Duration,
        message: String,
    },
    #[error("upstream {upstream:?} did not answer within {timeout:?}")]
    Timeout { upstream: String, timeout: Duration },
    #[error("upstream {upstream:?} is failing; its circuit is open for another {retry_in:?}")]
    CircuitOpen {
        upstream: String,
        retry_in: Duration,
    },
    #[error("upstream {upstream:?} failed: {message}")]
    Upstream { upstream: String, message: String },
    #[error("listing the tools of {upstream:?} failed: {message}")]
    List { upstream: String, message: String },
    #[error(transparent)]
    Naming(#[from] crate::naming::Collision),
    /// The upstream is configured with `enabled = false`.
    #[error("upstream {upstream:?} is disabled in the gateway configuration")]
    Disabled { upstream: String },
    /// The upstream answered with a JSON-RPC error; passed to the client unchanged.
    #[error("upstream {upstream:?} answered with an error: {}", error.message)]
    Rpc {
        upstream: String,
        error: rmcp::ErrorData,
    },
    /// The client cancelled the request (or went away) before the upstream answered.
    #[error("the request to upstream {upstream:?} was cancelled by the client")]
    Cancelled { upstream: String },
    /// A new configuration could not be applied; the running one is unchanged.
    #[error("the new configuration was not applied: {message}")]
    Reload { message: String },
    /// Authorization refused the call ([`crate::stack::authorize`]); a JSON-RPC error.
    #[error("tool {tool:?} is not permitted for {subject:?}: {reason}")]
    Forbidden {
        tool: String,
        subject: String,
        reason: String,
    },
    /// The arguments failed input validation ([`crate::stack::validate`]): a JSON-RPC
    /// `invalid_params` error listing each violation's JSON pointer and message.
    #[error(
        "invalid arguments for tool {tool:?}: {}",
        describe_violations(violations)
    )]
    InvalidArguments {
        tool: String,
        violations: Vec<crate::stack::validate::Violation>,
    },
    /// A rate limit refused the call ([`crate::stack::rate_limit`]); a JSON-RPC error whose
    /// `data.retry_after_ms` says when the same call could pass.
    #[error("rate limit {rule:?} exceeded for tool {tool:?}; retry in {retry_after:?}")]
    RateLimited {
        rule: String,
        tool: String,
        retry_after: Duration,
    },
    /// A rate limit's backend (Redis) could not decide and the rule fails closed.
    #[error("rate limit {rule:?} could not be checked ({message}); refusing the call")]
    RateLimitUnavailable { rule: String, message: String },
    /// The call's audit record could not be committed ([`crate::stack::audit`]), so its
    /// answer is withheld.
    #[error("the audit log could not record the call: {message}")]
    AuditUnavailable { message: String },
    /// A client of an `isolation = "per_client"` upstream needs a child of its own, the
    /// upstream already runs `max_processes` and none of its per-client children is idle
    /// ([`crate::children`]). Refused at once, never queued: a JSON-RPC error whose `data`
    /// names the upstream and the cap.
    #[error(
        "upstream {upstream:?} already runs its maximum of {max_processes} processes and every per-client child is busy; retry when a call has finished"
    )]
    ProcessCapReached {
        upstream: String,
        max_processes: u32,
    },
}

/// `"/a: message; /b: message"`, the whole object shown as `(arguments)`.
fn describe_violations(violations: &[crate::stack::validate::Violation]) -> String {
    violations
        .iter()
        .map(|v| {
            let at = if v.pointer.is_empty() {
                "(arguments)"
            } else {
                v.pointer.as_str()
            };
            format!("{at}: {}", v.message)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl GatewayError {
    /// The stable kind carried in the tool error's structured content.
    pub fn kind(&self) -> &'static str {
        match self {
            GatewayError::UnknownTool(_) => "unknown_tool",
            GatewayError::Connect { .. } | GatewayError::Unavailable { .. } => {
                "upstream_unavailable"
            }
            GatewayError::Timeout { .. } => "upstream_timeout",
            GatewayError::CircuitOpen { .. } => "circuit_open",
            GatewayError::Upstream { .. } => "upstream_error",
            GatewayError::List { .. } => "upstream_list_failed",
            GatewayError::Naming(_) => "name_collision",
            GatewayError::Disabled { .. } => "upstream_disabled",
            GatewayError::Rpc { .. } => "upstream_rpc_error",
            GatewayError::Cancelled { .. } => "cancelled",
            GatewayError::Forbidden { .. } => "forbidden",
            GatewayError::Reload { .. } => "reload_failed",
            GatewayError::InvalidArguments { .. } => "invalid_arguments",
            GatewayError::RateLimited { .. } => "rate_limited",
            GatewayError::RateLimitUnavailable { .. } => "rate_limit_unavailable",
            GatewayError::AuditUnavailable { .. } => "audit_unavailable",
            GatewayError::ProcessCapReached { .. } => "process_cap_reached",
        }
    }

    /// Whether this failure says the upstream is unhealthy (it counts toward the circuit).
    pub fn is_upstream_failure(&self) -> bool {
        matches!(
            self,
            GatewayError::Connect { .. }
                | GatewayError::Unavailable { .. }
                | GatewayError::Timeout { .. }
                | GatewayError::Upstream { .. }
        )
    }
}
