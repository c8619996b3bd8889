//! The fixture's tools. Names, argument shapes and content kinds are the ones the conformance
//! scenarios call; the texts are ours.

use rmcp::{
    ErrorData, RoleServer,
    handler::server::{
        tool::{InputResponses as Answers, RequestState},
        wrapper::Parameters,
    },
    model::{
        AudioContent, CallToolResponse, CallToolResult, ClientCapabilities, ContentBlock,
        CreateMessageRequestParams, ElicitRequestParams, ElicitationAction, ElicitationSchema,
        InputRequests, JsonObject, LoggingLevel, ProgressNotificationParam, RequestMetaObject,
        ResourceContents, SamplingMessage,
    },
    service::RequestContext,
    tool, tool_router,
};
use serde_json::{Value, json};

use crate::{fixtures, mrtr, server::ConformanceServer};

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct PromptArg {
    /// Text sent to the client's model.
    pub prompt: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct MessageArg {
    /// Text shown to the user.
    pub message: String,
}

fn text(s: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(s)])
}

fn action_name(action: &ElicitationAction) -> &'static str {
    match action {
        ElicitationAction::Accept => "accept",
        ElicitationAction::Decline => "decline",
        ElicitationAction::Cancel => "cancel",
        #[allow(unreachable_patterns)]
        _ => "unknown",
    }
}

fn form(message: &str, schema: Value) -> ElicitRequestParams {
    let requested_schema: ElicitationSchema =
        serde_json::from_value(schema).expect("fixture elicitation schema is valid");
    ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: message.to_string(),
        requested_schema,
    }
}

#[tool_router(vis = "pub(crate)")]
impl ConformanceServer {
    #[tool(description = "Returns one text block")]
    async fn test_simple_text(&self) -> CallToolResult {
        text("This is a simple text response for testing.")
    }

    #[tool(description = "Returns one PNG image block")]
    async fn test_image_content(&self) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::image(fixtures::PNG_BASE64, "image/png")])
    }

    #[tool(description = "Returns one WAV audio block")]
    async fn test_audio_content(&self) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::Audio(AudioContent::new(
            fixtures::WAV_BASE64,
            "audio/wav",
        ))])
    }

    #[tool(description = "Returns one embedded text resource")]
    async fn test_embedded_resource(&self) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::resource(
            ResourceContents::TextResourceContents {
                uri: "test://embedded-resource".into(),
                mime_type: Some("text/plain".into()),
                text: "This is an embedded resource content.".into(),
                meta: None,
            },
        )])
    }

    #[tool(description = "Returns text, an image and an embedded resource")]
    async fn test_multiple_content_types(&self) -> CallToolResult {
        CallToolResult::success(vec![
            ContentBlock::text("Multiple content types test:"),
            ContentBlock::image(fixtures::PNG_BASE64, "image/png"),
            ContentBlock::resource(ResourceContents::TextResourceContents {
                uri: "test://mixed-content-resource".into(),
                mime_type: Some("application/json".into()),
                text: json!({"test": "data", "value": 123}).to_string(),
                meta: None,
            }),
        ])
    }

    #[tool(description = "Sends three log messages while it runs")]
    async fn test_tool_with_logging(&self, cx: RequestContext<RoleServer>) -> CallToolResult {
        for message in [
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed",
        ] {
            self.log(&cx, LoggingLevel::Info, message).await;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        text("Logging test completed")
    }

    #[tool(
        description = "Reports progress 0, 50 and 100 of 100 to a caller that sent a progressToken"
    )]
    async fn test_tool_with_progress(&self, cx: RequestContext<RoleServer>) -> CallToolResult {
        let token = cx.meta.get_progress_token();
        for (done, message) in [(0.0, "Starting"), (50.0, "Halfway"), (100.0, "Complete")] {
            if let Some(token) = &token {
                let _ = cx
                    .peer
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), done)
                            .with_total(100.0)
                            .with_message(message),
                    )
                    .await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        text("Progress test completed")
    }

    #[tool(description = "Always fails with a tool execution error (isError)")]
    async fn test_error_handling(&self) -> CallToolResult {
        CallToolResult::error(vec![ContentBlock::text(
            "This tool intentionally returns an error for testing",
        )])
    }

    #[tool(description = "Asks the client's model (sampling/createMessage; 2025-era clients)")]
    async fn test_sampling(
        &self,
        Parameters(PromptArg { prompt }): Parameters<PromptArg>,
        cx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let request =
            CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 128);
        match cx.peer.create_message(request).await {
            Ok(result) => {
                let reply = result
                    .message
                    .content
                    .first()
                    .and_then(|c| c.as_text())
                    .map(|t| t.text.clone())
                    .unwrap_or_else(|| "(no text)".into());
                text(format!("LLM response: {reply}"))
            }
            Err(e) => {
                CallToolResult::error(vec![ContentBlock::text(format!("sampling failed: {e}"))])
            }
        }
    }

    #[tool(
        description = "Asks the user for a username and email (elicitation/create; 2025-era clients)"
    )]
    async fn test_elicitation(
        &self,
        Parameters(MessageArg { message }): Parameters<MessageArg>,
        cx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let schema = json!({
            "type": "object",
            "properties": {
                "username": {"type": "string", "description": "Your user name"},
                "email": {"type": "string", "description": "Your email address"}
            },
            "required": ["username", "email"]
        });
        match cx.peer.create_elicitation(form(&message, schema)).await {
            Ok(result) => text(format!(
                "User response: action={}, content={}",
                action_name(&result.action),
                result.content.map(|c| c.to_string()).unwrap_or_default()
            )),
            Err(e) => {
                CallToolResult::error(vec![ContentBlock::text(format!("elicitation failed: {e}"))])
            }
        }
    }

    #[tool(description = "Elicits a form whose fields all carry defaults (SEP-1034)")]
    async fn test_elicitation_sep1034_defaults(
        &self,
        cx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let request = form("Confirm or change the defaults", fixtures::defaults_form());
        match cx.peer.create_elicitation(request).await {
            Ok(result) => text(format!(
                "Elicitation completed: action={}, content={}",
                action_name(&result.action),
                result.content.map(|c| c.to_string()).unwrap_or_default()
            )),
            Err(e) => {
                CallToolResult::error(vec![ContentBlock::text(format!("elicitation failed: {e}"))])
            }
        }
    }

    #[tool(description = "Elicits a form with every enum shape (SEP-1330)")]
    async fn test_elicitation_sep1330_enums(
        &self,
        cx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let request = form("Pick some options", fixtures::enums_form());
        match cx.peer.create_elicitation(request).await {
            Ok(result) => text(format!(
                "Enum elicitation completed: action={}",
                action_name(&result.action)
            )),
            Err(e) => {
                CallToolResult::error(vec![ContentBlock::text(format!("elicitation failed: {e}"))])
            }
        }
    }

    #[tool(
        description = "Has an input schema with JSON Schema 2020-12 keywords (SEP-1613)",
        input_schema = fixtures::json_schema_2020_12_input()
    )]
    async fn json_schema_2020_12_tool(&self, args: JsonObject) -> CallToolResult {
        let name = args.get("name").and_then(Value::as_str).unwrap_or("world");
        text(format!("Hello, {name}!"))
    }

    #[tool(description = "Answers after a short pause (SSE stream behaviour)")]
    async fn test_reconnection(&self) -> CallToolResult {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        text("Reconnection test completed")
    }

    #[tool(
        description = "Echoes `value`, which the client mirrors into the Mcp-Param-Value header (SEP-2243)",
        input_schema = fixtures::custom_header_input()
    )]
    async fn test_custom_header(&self, args: JsonObject) -> Result<CallToolResult, ErrorData> {
        match args.get("value").and_then(Value::as_str) {
            Some(value) => Ok(text(value)),
            None => Err(ErrorData::invalid_params("`value` must be a string", None)),
        }
    }

    #[tool(description = "Notifies tools/list_changed on every open subscription")]
    async fn test_trigger_tool_change(&self) -> CallToolResult {
        let n = self.notify_list_changed(ListKind::Tools).await;
        text(format!("Tool list change sent to {n} subscription(s)"))
    }

    #[tool(description = "Notifies prompts/list_changed on every open subscription")]
    async fn test_trigger_prompt_change(&self) -> CallToolResult {
        let n = self.notify_list_changed(ListKind::Prompts).await;
        text(format!("Prompt list change sent to {n} subscription(s)"))
    }

    #[tool(
        description = "Refuses to run unless the client declared the sampling capability (-32021)"
    )]
    async fn test_missing_capability(
        &self,
        meta: RequestMetaObject,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let declared = meta
            .client_capabilities()
            .or_else(|| cx.peer.peer_info().map(|info| info.capabilities.clone()));
        if declared.is_some_and(|caps| caps.sampling.is_some()) {
            Ok(text("The sampling capability is declared"))
        } else {
            Err(ErrorData::missing_required_client_capability(
                ClientCapabilities::builder().enable_sampling().build(),
            ))
        }
    }

    #[tool(description = "Answers on a request-scoped stream with an input_required result")]
    async fn test_streaming_elicitation(&self) -> CallToolResponse {
        let mut requests = InputRequests::new();
        requests.insert(
            "streaming_elicitation".into(),
            mrtr::ask_string("Enter a value", "value"),
        );
        rmcp::model::InputRequiredResult::from_input_requests(requests).into()
    }

    #[tool(description = "Logs one message, only when the request carries a logLevel")]
    async fn test_logging_tool(&self, cx: RequestContext<RoleServer>) -> CallToolResult {
        self.log(&cx, LoggingLevel::Info, "logLevel was requested")
            .await;
        text("Logging tool completed")
    }

    // ---- SEP-2322: input_required results ------------------------------------------------

    #[tool(description = "Needs the user's name (elicitation input request)")]
    async fn test_input_required_result_elicitation(
        &self,
        Answers(responses): Answers,
    ) -> CallToolResponse {
        match mrtr::answer(responses.as_ref(), "user_name") {
            Some(answer) => {
                let name = mrtr::form_field(answer, "name").unwrap_or("stranger");
                text(format!("Hello, {name}!")).into()
            }
            None => single("user_name", mrtr::ask_string("What is your name?", "name")),
        }
    }

    #[tool(description = "Needs a model answer (sampling input request)")]
    async fn test_input_required_result_sampling(
        &self,
        Answers(responses): Answers,
    ) -> CallToolResponse {
        match mrtr::answer(responses.as_ref(), "capital_question") {
            Some(answer) => text(format!(
                "Sampling response: {}",
                mrtr::sampled_text(answer).unwrap_or("(no text)")
            ))
            .into(),
            None => single(
                "capital_question",
                mrtr::ask_model("What is the capital of France?"),
            ),
        }
    }

    #[tool(description = "Needs the client's roots (roots/list input request)")]
    async fn test_input_required_result_list_roots(
        &self,
        Answers(responses): Answers,
    ) -> CallToolResponse {
        match mrtr::answer(responses.as_ref(), "client_roots") {
            Some(answer) => text(format!(
                "Client roots: [{}]",
                mrtr::root_uris(answer).join(", ")
            ))
            .into(),
            None => single("client_roots", mrtr::ask_roots()),
        }
    }

    #[tool(description = "Round-trips an integrity-protected requestState")]
    async fn test_input_required_result_request_state(
        &self,
        RequestState(state): RequestState,
    ) -> Result<CallToolResponse, ErrorData> {
        self.confirm_flow("test_input_required_result_request_state", state.as_deref())
    }

    #[tool(description = "Rejects a requestState that fails verification")]
    async fn test_input_required_result_tampered_state(
        &self,
        RequestState(state): RequestState,
    ) -> Result<CallToolResponse, ErrorData> {
        self.confirm_flow(
            "test_input_required_result_tampered_state",
            state.as_deref(),
        )
    }

    #[tool(description = "Needs an elicitation, a sampling and a roots answer in one round")]
    async fn test_input_required_result_multiple_inputs(
        &self,
        RequestState(state): RequestState,
        Answers(responses): Answers,
    ) -> Result<CallToolResponse, ErrorData> {
        const FLOW: &str = "test_input_required_result_multiple_inputs";
        let verified = match state.as_deref() {
            Some(sealed) => Some(self.open_state(FLOW, sealed)?),
            None => None,
        };
        let answered = ["user_name", "greeting", "client_roots"]
            .iter()
            .all(|key| mrtr::answer(responses.as_ref(), key).is_some());
        if answered && verified.is_some() {
            return Ok(text("All inputs received").into());
        }
        let mut requests = InputRequests::new();
        requests.insert(
            "user_name".into(),
            mrtr::ask_string("What is your name?", "name"),
        );
        requests.insert(
            "greeting".into(),
            mrtr::ask_model("Write a one-line greeting"),
        );
        requests.insert("client_roots".into(), mrtr::ask_roots());
        let sealed = self.seal.seal(FLOW, &json!({"stage": "gather"}));
        Ok(rmcp::model::InputRequiredResult::new(Some(requests), Some(sealed)).into())
    }

    #[tool(description = "Takes two input rounds, carrying the round in requestState")]
    async fn test_input_required_result_multi_round(
        &self,
        RequestState(state): RequestState,
        Answers(responses): Answers,
    ) -> Result<CallToolResponse, ErrorData> {
        const FLOW: &str = "test_input_required_result_multi_round";
        let (round, name) = match state.as_deref() {
            None => (0, None),
            Some(sealed) => {
                let state = self.open_state(FLOW, sealed)?;
                (
                    state.get("round").and_then(Value::as_u64).unwrap_or(0),
                    state.get("name").and_then(Value::as_str).map(str::to_owned),
                )
            }
        };
        let step1 = mrtr::answer(responses.as_ref(), "step1");
        let step2 = mrtr::answer(responses.as_ref(), "step2");
        match (round, step1, step2) {
            (1, Some(answer), _) => {
                let name = mrtr::form_field(answer, "name").unwrap_or("stranger");
                let sealed = self.seal.seal(FLOW, &json!({"round": 2, "name": name}));
                let mut requests = InputRequests::new();
                requests.insert(
                    "step2".into(),
                    mrtr::ask_string("Step 2: what is your favourite colour?", "color"),
                );
                Ok(rmcp::model::InputRequiredResult::new(Some(requests), Some(sealed)).into())
            }
            (2, _, Some(answer)) => {
                let color = mrtr::form_field(answer, "color").unwrap_or("no colour");
                Ok(text(format!(
                    "Multi-round complete for {} who likes {color}",
                    name.as_deref().unwrap_or("stranger")
                ))
                .into())
            }
            // First call, or a retry that did not answer the pending step: (re-)ask it.
            (2, _, None) => {
                let sealed = self.seal.seal(FLOW, &json!({"round": 2, "name": name}));
                let mut requests = InputRequests::new();
                requests.insert(
                    "step2".into(),
                    mrtr::ask_string("Step 2: what is your favourite colour?", "color"),
                );
                Ok(rmcp::model::InputRequiredResult::new(Some(requests), Some(sealed)).into())
            }
            _ => {
                let sealed = self.seal.seal(FLOW, &json!({"round": 1}));
                let mut requests = InputRequests::new();
                requests.insert(
                    "step1".into(),
                    mrtr::ask_string("Step 1: what is your name?", "name"),
                );
                Ok(rmcp::model::InputRequiredResult::new(Some(requests), Some(sealed)).into())
            }
        }
    }

    #[tool(description = "Asks only for inputs the client declared it can answer")]
    async fn test_input_required_result_capabilities(
        &self,
        meta: RequestMetaObject,
        Answers(responses): Answers,
    ) -> CallToolResponse {
        if responses.is_some_and(|r| !r.is_empty()) {
            return text("Capability-aware flow complete").into();
        }
        let caps = meta.client_capabilities().unwrap_or_default();
        let mut requests = InputRequests::new();
        if caps.elicitation.is_some() {
            requests.insert(
                "user_name".into(),
                mrtr::ask_string("What is your name?", "name"),
            );
        }
        if caps.sampling.is_some() {
            requests.insert(
                "greeting".into(),
                mrtr::ask_model("Write a one-line greeting"),
            );
        }
        if caps.roots.is_some() {
            requests.insert("client_roots".into(), mrtr::ask_roots());
        }
        if requests.is_empty() {
            text("The client declared no capability that can answer an input request").into()
        } else {
            rmcp::model::InputRequiredResult::from_input_requests(requests).into()
        }
    }
}

/// An `input_required` result with one request.
fn single(key: &str, request: rmcp::model::InputRequest) -> CallToolResponse {
    let mut requests = InputRequests::new();
    requests.insert(key.into(), request);
    rmcp::model::InputRequiredResult::from_input_requests(requests).into()
}

/// Which list changed.
#[derive(Debug, Clone, Copy)]
pub enum ListKind {
    Tools,
    Prompts,
}

impl ConformanceServer {
    fn open_state(&self, flow: &str, sealed: &str) -> Result<Value, ErrorData> {
        self.seal
            .open(flow, sealed)
            .ok_or_else(|| ErrorData::invalid_params("requestState failed verification", None))
    }

    /// One confirmation round whose progress lives in a sealed `requestState`.
    fn confirm_flow(&self, flow: &str, state: Option<&str>) -> Result<CallToolResponse, ErrorData> {
        match state {
            None => {
                let sealed = self.seal.seal(flow, &json!({"stage": "confirm"}));
                let mut requests = InputRequests::new();
                requests.insert(
                    "confirm".into(),
                    mrtr::ask_form(
                        "Please confirm",
                        json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}),
                    ),
                );
                Ok(rmcp::model::InputRequiredResult::new(Some(requests), Some(sealed)).into())
            }
            Some(sealed) => {
                self.open_state(flow, sealed)?;
                Ok(text("Confirmed: state-ok").into())
            }
        }
    }
}
