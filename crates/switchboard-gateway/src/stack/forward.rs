//! The innermost service: sends the call to the upstream's live connection.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use rmcp::model::{CallToolRequestParams, CallToolResult};
use tower::Service;

use crate::{error::GatewayError, stack::ToolCall};

#[derive(Clone, Copy)]
pub struct Forward;

impl Service<ToolCall> for Forward {
    type Response = CallToolResult;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<CallToolResult, GatewayError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: ToolCall) -> Self::Future {
        Box::pin(async move {
            let peer = call.upstream.peer().await?;
            let mut params = CallToolRequestParams::new(call.tool);
            params.arguments = call.arguments;
            peer.call_tool(params)
                .await
                .map_err(|e| GatewayError::Upstream {
                    upstream: call.upstream.name().to_string(),
                    message: e.to_string(),
                })
        })
    }
}
