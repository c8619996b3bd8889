//! The innermost service: sends the call to the upstream's live connection, with the
//! client's request relayed both ways ([`crate::passthrough`]), or, for a built-in server that
//! allows it, calls the server in-process with the client's own request context
//! ([`crate::builtin::DirectTools`]).
//!
//! The upstream request carries the trace context in `_meta` (`traceparent`, `tracestate`):
//! this call's span when traces are exported, else the client's own ([`crate::trace_context`]).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, CallToolResult, ClientRequest,
    RequestMetaObject, ServerResult,
};
use tower::Service;

use crate::{
    error::GatewayError,
    passthrough::{self, Round},
    stack::ToolCall,
    trace_context,
};

#[derive(Clone, Copy)]
pub struct Forward;

impl Service<ToolCall> for Forward {
    type Response = CallToolResponse;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<CallToolResponse, GatewayError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: ToolCall) -> Self::Future {
        Box::pin(async move {
            if let (Some(direct), Some(down)) =
                (call.upstream.direct_tools(), call.downstream.as_ref())
            {
                let mut params = CallToolRequestParams::new(call.tool.clone());
                params.arguments = call.arguments.clone();
                params.input_responses = call.input_responses.clone();
                params.request_state = call.request_state.clone();
                let response = direct
                    .call_tool(params, down.context())
                    .await
                    .map_err(|error| GatewayError::Rpc {
                        upstream: call.upstream.name().to_string(),
                        error,
                    })?;
                return Ok(complete(response));
            }
            let trace = trace_context::outgoing(
                &tracing::Span::current(),
                call.downstream
                    .as_ref()
                    .and_then(|down| down.trace_context()),
            );
            let round = passthrough::drive(
                &call.upstream,
                call.downstream.as_ref(),
                |responses, state| {
                    let mut params = CallToolRequestParams::new(call.tool.clone());
                    params.arguments = call.arguments.clone();
                    params.input_responses = responses;
                    params.request_state = state;
                    params.meta = trace.as_ref().map(|trace| {
                        let mut meta = RequestMetaObject::default();
                        trace.write_to(&mut meta);
                        meta
                    });
                    ClientRequest::CallToolRequest(CallToolRequest::new(params))
                },
                |result| match result {
                    ServerResult::CallToolResult(r) => Some(Round::Done(r.into())),
                    ServerResult::CreateTaskResult(r) => Some(Round::Done(r.into())),
                    ServerResult::InputRequiredResult(r) => Some(Round::Input(r)),
                    // Contentless answers from servers that reply `{}`.
                    ServerResult::EmptyResult(_) => {
                        Some(Round::Done(CallToolResult::success(Vec::new()).into()))
                    }
                    _ => None,
                },
                (call.input_responses.clone(), call.request_state.clone()),
            )
            .await?;
            Ok(match round {
                Round::Done(response) => complete(response),
                Round::Input(input) => CallToolResponse::InputRequired(input),
            })
        })
    }
}

/// An older upstream's result has no resultType; 2026-07-28 clients need it (rmcp removes it
/// again for older clients).
fn complete(response: CallToolResponse) -> CallToolResponse {
    match response {
        CallToolResponse::Complete(mut result) => {
            result.result_type = Some(rmcp::model::ResultType::COMPLETE);
            CallToolResponse::Complete(result)
        }
        other => other,
    }
}
