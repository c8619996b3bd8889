//! The innermost service: sends the call to the upstream's live connection, with the
//! client's request relayed both ways ([`crate::passthrough`]).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, CallToolResult, ClientRequest,
    ServerResult,
};
use tower::Service;

use crate::{
    error::GatewayError,
    passthrough::{self, Round},
    stack::ToolCall,
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
            let round = passthrough::drive(
                &call.upstream,
                call.downstream.as_ref(),
                |responses, state| {
                    let mut params = CallToolRequestParams::new(call.tool.clone());
                    params.arguments = call.arguments.clone();
                    params.input_responses = responses;
                    params.request_state = state;
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
                // An older upstream's result has no resultType; 2026-07-28 clients need it
                // (rmcp removes it again for older clients).
                Round::Done(CallToolResponse::Complete(mut result)) => {
                    result.result_type = Some(rmcp::model::ResultType::COMPLETE);
                    CallToolResponse::Complete(result)
                }
                Round::Done(response) => response,
                Round::Input(input) => CallToolResponse::InputRequired(input),
            })
        })
    }
}
