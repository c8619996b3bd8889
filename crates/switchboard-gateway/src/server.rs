//! The gateway's MCP face: one `ServerHandler` that lists the catalog and routes calls, and
//! passes prompts, resources, completion and logging through ([`crate::resources`],
//! [`crate::passthrough`]).

// logging/setLevel and resources/subscribe are deprecated by 2026-07-28 but served to the
// session-era clients that use them.
#![allow(deprecated)]

use std::sync::{Arc, Mutex};

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult,
        GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult,
        ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, LoggingLevel,
        PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ResultType,
        ServerCapabilities, ServerConfig, SetLevelRequestParams, SubscribeRequestParams, Tool,
        UnsubscribeRequestParams,
    },
    service::{NotificationContext, RequestContext},
};

use crate::{
    auth::policy::Subject, children::ClientSession, error::GatewayError, gateway::Gateway,
    passthrough::Downstream, resources,
};

/// A handle on the gateway for one client session (cheap to clone).
pub struct GatewayServer {
    gateway: Arc<Gateway>,
    /// This session's `logging/setLevel` (session-era clients); `None`: every level.
    log_level: Arc<Mutex<Option<LoggingLevel>>>,
    /// Who a request is from when its transport carries no credentials (stdio): the identity
    /// `serve --stdio` authenticated once at start; `None`: anonymous.
    transport_identity: Option<Arc<crate::auth::Identity>>,
    /// This session, for per-client upstream children; dropped with the instance, which
    /// ends them ([`crate::children`]).
    session: Arc<ClientSession>,
    /// Where HTTP sessions register to have their plain calls answered without rmcp's
    /// session worker ([`switchboard_transport::direct`]); `None`: not served that way.
    direct: Option<Arc<switchboard_transport::DirectSessions>>,
}

/// A clone serves a new session (or one stateless request): it starts with its own log level
/// and is its own client for per-client upstream children.
impl Clone for GatewayServer {
    fn clone(&self) -> Self {
        GatewayServer {
            gateway: self.gateway.clone(),
            log_level: Arc::new(Mutex::new(None)),
            transport_identity: self.transport_identity.clone(),
            session: ClientSession::new(),
            direct: self.direct.clone(),
        }
    }
}

impl GatewayServer {
    pub fn new(gateway: Arc<Gateway>) -> GatewayServer {
        GatewayServer {
            gateway,
            log_level: Arc::new(Mutex::new(None)),
            transport_identity: None,
            session: ClientSession::new(),
            direct: None,
        }
    }

    /// Registers each HTTP session in `direct`, which then answers its plain `tools/call`
    /// requests itself ([`switchboard_transport::direct`]).
    pub fn with_direct_sessions(
        mut self,
        direct: Arc<switchboard_transport::DirectSessions>,
    ) -> GatewayServer {
        self.direct = Some(direct);
        self
    }

    /// This instance's session, seen through a second handle (which registers nothing):
    /// what serves the session's direct calls.
    fn same_session(&self) -> GatewayServer {
        GatewayServer {
            gateway: self.gateway.clone(),
            log_level: self.log_level.clone(),
            transport_identity: self.transport_identity.clone(),
            session: self.session.clone(),
            direct: None,
        }
    }

    /// Registers this instance's HTTP session for direct calls, if it is one and is not yet
    /// registered (a session rebuilt from its sealed id registers on its first call).
    fn register_direct(
        &self,
        extensions: &rmcp::model::Extensions,
        peer: &rmcp::service::Peer<RoleServer>,
    ) {
        if let Some(direct) = &self.direct {
            direct.register(extensions, peer, || self.same_session());
        }
    }

    /// Requests that carry no credentials of their own (stdio) act as `identity`.
    pub fn with_transport_identity(mut self, identity: crate::auth::Identity) -> GatewayServer {
        self.transport_identity = Some(Arc::new(identity));
        self
    }

    /// Counts one request of `method` for `/metrics` (`tools/call` is counted by the stack).
    fn count<T>(&self, method: &str, result: Result<T, ErrorData>) -> Result<T, ErrorData> {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.gateway.observer().record_request(method, outcome);
        result
    }

    fn downstream(&self, cx: &RequestContext<RoleServer>) -> Downstream {
        // The subject is the one `ToolCall::identity` carries (`None`: anonymous).
        let principal = self.principal(cx);
        let subject = (!principal.anonymous).then(|| principal.subject.clone());
        Downstream::new(cx, self.log_level.clone()).with_client(self.session.clone(), subject)
    }

    fn permits(&self, who: &crate::auth::Identity, kind: Subject, name: &str) -> bool {
        self.gateway.permits_kind(Some(who), kind, name)
    }

    /// Refuses a resource or prompt the caller may not use: the same JSON-RPC error whether
    /// or not it exists, so a refusal reveals nothing about what the caller cannot see.
    fn authorize(
        &self,
        context: &RequestContext<RoleServer>,
        kind: Subject,
        name: &str,
    ) -> Result<(), ErrorData> {
        if !self.gateway.has_policies() {
            return Ok(());
        }
        let who = self.principal(context);
        if self.permits(&who, kind, name) {
            return Ok(());
        }
        let what = match kind {
            Subject::Resource => "resource",
            Subject::Prompt => "prompt",
            Subject::Tool => "tool",
        };
        tracing::info!(%name, subject = %who.subject, what, "denied");
        Err(ErrorData::invalid_params(
            format!("{what} {name:?} is not permitted for {:?}", who.subject),
            Some(serde_json::json!({"kind": "forbidden"})),
        ))
    }

    /// Who sent this request: the identity the HTTP authentication attached, else (stdio, or a
    /// transport that carries none) the transport's identity, else the anonymous identity.
    fn principal(&self, cx: &RequestContext<RoleServer>) -> Arc<crate::auth::Identity> {
        crate::auth::http::identity_of(cx)
            .or_else(|| self.transport_identity.clone())
            .unwrap_or_else(|| Arc::new(crate::auth::Identity::anonymous()))
    }
}

/// The JSON-RPC error for a tool the caller may not use (`invalid_params`, like an unknown
/// tool, with `data.kind = "forbidden"`).
fn forbidden(err: &GatewayError) -> ErrorData {
    ErrorData::invalid_params(
        err.to_string(),
        Some(serde_json::json!({ "kind": err.kind() })),
    )
}

/// The JSON-RPC code of a call the gateway's rate limits refused (the implementation-defined
/// server error range; JSON-RPC and MCP define none for it).
pub const RATE_LIMITED: rmcp::model::ErrorCode = rmcp::model::ErrorCode(-32000);

/// The JSON-RPC code of a request refused because its per-client upstream runs
/// `max_processes` busy children ([`GatewayError::ProcessCapReached`]).
pub const PROCESS_CAP_REACHED: rmcp::model::ErrorCode = rmcp::model::ErrorCode(-32003);

/// The JSON-RPC errors of the validation and rate-limit layers and of the process cap;
/// `data.kind` is the stable kind.
pub(crate) fn refused(err: &GatewayError) -> ErrorData {
    let message = err.to_string();
    match err {
        GatewayError::InvalidArguments { tool, violations } => ErrorData::invalid_params(
            message,
            Some(serde_json::json!({ "kind": err.kind(), "tool": tool, "errors": violations })),
        ),
        GatewayError::RateLimited {
            rule, retry_after, ..
        } => ErrorData::new(
            RATE_LIMITED,
            message,
            Some(serde_json::json!({
                "kind": err.kind(),
                "rule": rule,
                // Rounded up, so retrying after it never arrives early.
                "retry_after_ms": retry_after.as_micros().div_ceil(1000) as u64,
            })),
        ),
        GatewayError::RateLimitUnavailable { rule, .. } => ErrorData::new(
            RATE_LIMITED,
            message,
            Some(serde_json::json!({ "kind": err.kind(), "rule": rule })),
        ),
        GatewayError::ProcessCapReached {
            upstream,
            max_processes,
        } => ErrorData::new(
            PROCESS_CAP_REACHED,
            message,
            Some(serde_json::json!({
                "kind": err.kind(),
                "upstream": upstream,
                "max_processes": max_processes,
            })),
        ),
        _ => ErrorData::internal_error(message, None),
    }
}

impl ServerHandler for GatewayServer {
    fn get_info(&self) -> ServerConfig {
        let mut capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        // Only what at least one upstream has (as last seen; upstreams connect at start).
        let gateway = &self.gateway;
        if resources::any_upstream(gateway, |c| c.prompts.is_some()) {
            let mut prompts = rmcp::model::PromptsCapability::default();
            prompts.list_changed = Some(true);
            capabilities.prompts = Some(prompts);
        }
        if resources::any_upstream(gateway, |c| c.resources.is_some()) {
            let subscribe = resources::any_upstream(gateway, |c| {
                c.resources.as_ref().and_then(|r| r.subscribe) == Some(true)
            });
            let mut resources_cap = rmcp::model::ResourcesCapability::default();
            resources_cap.list_changed = Some(true);
            resources_cap.subscribe = subscribe.then_some(true);
            capabilities.resources = Some(resources_cap);
        }
        if resources::any_upstream(gateway, |c| c.completions.is_some()) {
            capabilities.completions = Some(Default::default());
        }
        if resources::any_upstream(gateway, |c| c.logging.is_some()) {
            capabilities.logging = Some(Default::default());
        }
        ServerConfig::new(capabilities)
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
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let catalog = self.count(
            "tools/list",
            self.gateway
                .catalog()
                .await
                .map_err(|e| ErrorData::internal_error(e.to_string(), None)),
        )?;
        // Denied tools are hidden, per caller.
        let tools = if self.gateway.has_policies() {
            let who = self.principal(&context);
            catalog
                .tools
                .iter()
                .filter(|t| self.gateway.permits(Some(&who), &t.name))
                .cloned()
                .collect()
        } else {
            catalog.tools.clone()
        };
        let mut result = ListToolsResult::with_all_items(tools);
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
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.register_direct(&context.extensions, &context.peer);
        let name = request.name.clone();
        let principal = self.principal(&context);
        // Boxed: the relayed call is a deep future, and rmcp nests every handler's future.
        match Box::pin(self.gateway.call_as(
            request,
            Some(self.downstream(&context)),
            Some(principal),
        ))
        .await
        {
            Ok(response) => Ok(response),
            Err(err @ GatewayError::Forbidden { .. }) => Err(forbidden(&err)),
            Err(
                err @ (GatewayError::InvalidArguments { .. }
                | GatewayError::RateLimited { .. }
                | GatewayError::RateLimitUnavailable { .. }
                | GatewayError::ProcessCapReached { .. }),
            ) => Err(refused(&err)),
            // The upstream's own JSON-RPC error (invalid params, a missing capability…).
            Err(GatewayError::Rpc { error, .. }) => Err(error),
            Err(GatewayError::UnknownTool(name)) => Err(ErrorData::invalid_params(
                format!("unknown tool {name:?}"),
                None,
            )),
            Err(err) => {
                tracing::warn!(tool = %name, %err, "tools/call failed");
                Ok(switchboard_core::failure(err.kind(), err.to_string()).into())
            }
        }
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.register_direct(&context.extensions, &context.peer);
        self.gateway.hub().register(context.peer);
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let prompts = Box::pin(resources::list_prompts(&self.gateway)).await;
        let mut prompts = self.count("prompts/list", prompts)?;
        if self.gateway.has_policies() {
            let who = self.principal(&context);
            prompts.retain(|p| self.permits(&who, Subject::Prompt, &p.name));
        }
        let mut result = ListPromptsResult::with_all_items(prompts);
        result.result_type = Some(ResultType::COMPLETE);
        Ok(result)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        self.authorize(&context, Subject::Prompt, &request.name)?;
        let response = Box::pin(resources::get_prompt(
            &self.gateway,
            request,
            Some(&self.downstream(&context)),
        ))
        .await;
        self.count("prompts/get", response)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let listed = Box::pin(resources::list_resources(&self.gateway)).await;
        let mut listed = self.count("resources/list", listed)?;
        if self.gateway.has_policies() {
            let who = self.principal(&context);
            listed.retain(|r| self.permits(&who, Subject::Resource, &r.uri));
        }
        let mut result = ListResourcesResult::with_all_items(listed);
        result.result_type = Some(ResultType::COMPLETE);
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let mut templates = Box::pin(resources::list_resource_templates(&self.gateway)).await?;
        if self.gateway.has_policies() {
            let who = self.principal(&context);
            templates.retain(|t| self.permits(&who, Subject::Resource, &t.uri_template));
        }
        let mut result = ListResourceTemplatesResult::with_all_items(templates);
        result.result_type = Some(ResultType::COMPLETE);
        Ok(result)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.authorize(&context, Subject::Resource, &request.uri)?;
        let response = Box::pin(resources::read_resource(
            &self.gateway,
            request,
            Some(&self.downstream(&context)),
        ))
        .await;
        self.count("resources/read", response)
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.authorize(&context, Subject::Resource, &request.uri)?;
        let down = self.downstream(&context);
        let (upstream, original) = Box::pin(resources::subscribe(
            &self.gateway,
            &request.uri,
            Some(&down),
        ))
        .await?;
        self.gateway
            .hub()
            .subscribe(upstream.name(), &original, &request.uri, context.peer);
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // The upstream subscription is shared: end it only when no client holds it any more.
        if !self.gateway.hub().unsubscribe(&request.uri, &context.peer) {
            let down = self.downstream(&context);
            Box::pin(resources::unsubscribe(
                &self.gateway,
                &request.uri,
                Some(&down),
            ))
            .await?;
        }
        Ok(())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        Box::pin(resources::complete(
            &self.gateway,
            request,
            Some(&self.downstream(&context)),
        ))
        .await
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // Filtered per session by the gateway; upstreams keep sending what they send.
        if let Ok(mut level) = self.log_level.lock() {
            *level = Some(request.level);
        }
        Ok(())
    }
}
