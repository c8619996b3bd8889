//! The gateway's MCP face: one `ServerHandler` that lists the catalog and routes calls.

use std::sync::Arc;

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
        PaginatedRequestParams, ResultType, ServerCapabilities, ServerConfig, Tool,
    },
    service::{NotificationContext, RequestContext},
};

use crate::{error::GatewayError, gateway::Gateway};

/// A handle on the gateway for one client session (cheap to clone).
#[derive(Clone)]
pub struct GatewayServer {
    gateway: Arc<Gateway>,
}

impl GatewayServer {
    pub fn new(gateway: Arc<Gateway>) -> GatewayServer {
        GatewayServer { gateway }
    }
}

impl ServerHandler for GatewayServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new(
            "switchboard",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(
            "Switchboard gateway: the tools of several MCP servers, named `upstream__tool`.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let catalog = self
            .gateway
            .catalog()
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let mut result = ListToolsResult::with_all_items(catalog.tools.clone());
        result.result_type = Some(ResultType::COMPLETE);
        Ok(result)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        let catalog = self.gateway.cached_catalog()?;
        catalog.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        match self.gateway.call(&request.name, request.arguments).await {
            Ok(result) => Ok(result.into()),
            Err(GatewayError::UnknownTool(name)) => Err(ErrorData::invalid_params(
                format!("unknown tool {name:?}"),
                None,
            )),
            Err(err) => {
                tracing::warn!(tool = %request.name, %err, "tools/call failed");
                Ok(switchboard_core::failure(err.kind(), err.to_string()).into())
            }
        }
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.gateway.hub().register(context.peer);
    }
}
