//! A minimal echo server: one `echo` tool that returns its `message`.
//!
//! It exists to measure and check the gateway itself: benchmarks put it behind the gateway and
//! behind peer gateways (as `switchboard server echo` over stdio, or mounted in-process) so the
//! figures are the gateway's cost and not an upstream's.

use rmcp::{
    ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{Implementation, ServerCapabilities, ServerConfig},
    tool, tool_handler, tool_router,
};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct EchoParams {
    /// Text to send back.
    pub message: String,
}

#[derive(Clone)]
pub struct EchoServer {
    router: std::sync::Arc<ToolRouter<EchoServer>>,
}

impl Default for EchoServer {
    fn default() -> Self {
        EchoServer {
            router: std::sync::Arc::new(Self::tool_router()),
        }
    }
}

#[tool_router]
impl EchoServer {
    #[tool(
        description = "Return the message unchanged.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn echo(&self, Parameters(p): Parameters<EchoParams>) -> String {
        p.message
    }
}

#[tool_handler(router = self.router)]
impl ServerHandler for EchoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_server_info(
            Implementation::new("switchboard-echo", env!("CARGO_PKG_VERSION")),
        )
    }
}
