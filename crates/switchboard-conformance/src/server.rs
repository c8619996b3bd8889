//! The fixture server: state, capabilities, resources, prompts, completion, logging and
//! subscriptions. Tools live in `tools.rs`.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CacheScope, CompleteRequestParams, CompleteResult, CompletionInfo, ContentBlock,
        GetPromptRequestParams, GetPromptResponse, GetPromptResult, ImageContent, Implementation,
        InputRequests, InputRequiredResult, ListPromptsResult, ListResourceTemplatesResult,
        ListResourcesResult, LoggingLevel, LoggingMessageNotificationParam, PaginatedRequestParams,
        Prompt, PromptArgument, PromptMessage, ProtocolVersion, ReadResourceRequestParams,
        ReadResourceResponse, ReadResourceResult, Reference, Resource, ResourceContents,
        ResourceTemplate, Role, ServerCapabilities, ServerConfig, SetLevelRequestParams,
        SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
    },
    service::{RequestContext, SubscriptionContext, SubscriptionSink},
    tool_handler,
};
use serde_json::json;
use tokio::sync::Mutex;

use crate::{fixtures, mrtr, mrtr::StateSeal, tools::ListKind};

/// State shared by every session and request of one process.
struct Shared {
    /// Open 2026-07-28 `subscriptions/listen` streams, by our own key.
    listeners: Mutex<BTreeMap<u64, SubscriptionSink>>,
    next_listener: AtomicU64,
}

/// The conformance fixture.
///
/// Cloning makes the handler of a new session (or, for stateless clients, of one request): it
/// shares the process state and starts with its own log level and resource subscriptions.
pub struct ConformanceServer {
    shared: Arc<Shared>,
    pub(crate) seal: StateSeal,
    /// `logging/setLevel` of this session (2025-era clients); `None` sends every level.
    log_level: Arc<Mutex<Option<LoggingLevel>>>,
    /// `resources/subscribe` URIs of this session (2025-era clients).
    resource_subscriptions: Arc<Mutex<HashSet<String>>>,
}

impl Clone for ConformanceServer {
    fn clone(&self) -> Self {
        ConformanceServer {
            shared: self.shared.clone(),
            seal: self.seal.clone(),
            log_level: Arc::new(Mutex::new(None)),
            resource_subscriptions: Arc::new(Mutex::new(HashSet::new())),
        }
    }
}

impl Default for ConformanceServer {
    fn default() -> Self {
        Self::new()
    }
}

fn rank(level: LoggingLevel) -> u8 {
    level as u8
}

/// Whether this request was made in the 2026-07-28 (stateless) era.
fn modern(cx: &RequestContext<RoleServer>) -> bool {
    cx.protocol_version()
        .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28)
}

impl ConformanceServer {
    pub fn new() -> Self {
        let seal = StateSeal::random();
        ConformanceServer {
            shared: Arc::new(Shared {
                listeners: Mutex::new(BTreeMap::new()),
                next_listener: AtomicU64::new(0),
            }),
            seal,
            log_level: Arc::new(Mutex::new(None)),
            resource_subscriptions: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Sends a log message on the request's stream, if the client wants it: in the 2026-07-28
    /// era only when the request carries a `logLevel` at or below `level`; before that, when
    /// the session's `logging/setLevel` allows it.
    pub(crate) async fn log(
        &self,
        cx: &RequestContext<RoleServer>,
        level: LoggingLevel,
        message: &str,
    ) {
        let threshold = if modern(cx) {
            match cx.meta.log_level() {
                Some(requested) => Some(requested),
                None => return,
            }
        } else {
            *self.log_level.lock().await
        };
        if threshold.is_some_and(|t| rank(level) < rank(t)) {
            return;
        }
        let _ = cx
            .peer
            .notify_logging_message(
                LoggingMessageNotificationParam::new(level, json!(message))
                    .with_logger("switchboard-conformance"),
            )
            .await;
    }

    /// Notifies every open subscription that accepted `kind`; returns how many were told.
    pub(crate) async fn notify_list_changed(&self, kind: ListKind) -> usize {
        let sinks: Vec<SubscriptionSink> = self
            .shared
            .listeners
            .lock()
            .await
            .values()
            .cloned()
            .collect();
        let mut told = 0;
        for sink in sinks {
            let sent = match kind {
                ListKind::Tools => sink.notify_tool_list_changed().await,
                ListKind::Prompts => sink.notify_prompt_list_changed().await,
            };
            if sent.is_ok() {
                told += 1;
            }
        }
        told
    }

    fn prompts() -> Vec<Prompt> {
        vec![
            Prompt::new(
                "test_simple_prompt",
                Some("A prompt without arguments"),
                None,
            ),
            Prompt::new(
                "test_prompt_with_arguments",
                Some("A prompt with two arguments"),
                Some(vec![
                    PromptArgument::new("arg1")
                        .with_description("First argument")
                        .with_required(true),
                    PromptArgument::new("arg2")
                        .with_description("Second argument")
                        .with_required(true),
                ]),
            ),
            Prompt::new(
                "test_prompt_with_embedded_resource",
                Some("A prompt that embeds a resource"),
                Some(vec![
                    PromptArgument::new("resourceUri")
                        .with_description("URI of the resource to embed")
                        .with_required(false),
                ]),
            ),
            Prompt::new(
                "test_prompt_with_image",
                Some("A prompt that contains an image"),
                None,
            ),
            Prompt::new(
                "test_input_required_result_prompt",
                Some("A prompt that first asks the user for context (SEP-2322)"),
                None,
            ),
        ]
    }
}

fn text_contents(uri: &str, mime: &str, text: impl Into<String>) -> ResourceContents {
    ResourceContents::TextResourceContents {
        uri: uri.to_string(),
        mime_type: Some(mime.to_string()),
        text: text.into(),
        meta: None,
    }
}

fn arg<'a>(args: &'a Option<rmcp::model::JsonObject>, name: &str) -> Option<&'a str> {
    args.as_ref()?.get(name)?.as_str()
}

#[tool_handler]
impl ServerHandler for ConformanceServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_prompts()
                .enable_prompts_list_changed()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_resources_list_changed()
                .enable_logging()
                .enable_completions()
                .build(),
        )
        .with_server_info(Implementation::new(
            "switchboard-conformance",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(
            "Switchboard's conformance fixture: the tools, resources and prompts the official \
             MCP conformance suite exercises.",
        )
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let result = ListResourcesResult {
            resources: vec![
                Resource::new(fixtures::STATIC_TEXT_URI, "static-text")
                    .with_description("A fixed text resource")
                    .with_mime_type("text/plain"),
                Resource::new(fixtures::STATIC_BINARY_URI, "static-binary")
                    .with_description("A fixed PNG image")
                    .with_mime_type("image/png"),
                Resource::new(fixtures::WATCHED_URI, "watched-resource")
                    .with_description("A resource clients may subscribe to")
                    .with_mime_type("text/plain"),
            ],
            ..Default::default()
        };
        Ok(if modern(&cx) {
            result
                .with_ttl_ms(fixtures::CACHE_TTL_MS)
                .with_cache_scope(CacheScope::Public)
        } else {
            result
        })
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let result = ListResourceTemplatesResult {
            resource_templates: vec![
                ResourceTemplate::new(fixtures::TEMPLATE_URI, "template-data")
                    .with_description("JSON data for any id")
                    .with_mime_type("application/json"),
            ],
            ..Default::default()
        };
        Ok(if modern(&cx) {
            result
                .with_ttl_ms(fixtures::CACHE_TTL_MS)
                .with_cache_scope(CacheScope::Public)
        } else {
            result
        })
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri.as_str();
        let contents = match uri {
            fixtures::STATIC_TEXT_URI => text_contents(uri, "text/plain", fixtures::STATIC_TEXT),
            fixtures::WATCHED_URI => text_contents(uri, "text/plain", fixtures::WATCHED_TEXT),
            fixtures::STATIC_BINARY_URI => ResourceContents::BlobResourceContents {
                uri: uri.to_string(),
                mime_type: Some("image/png".into()),
                blob: fixtures::PNG_BASE64.into(),
                meta: None,
            },
            _ => match fixtures::template_id(uri) {
                Some(id) => text_contents(
                    uri,
                    "application/json",
                    json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")})
                        .to_string(),
                ),
                None => {
                    return Err(ErrorData::resource_not_found(
                        format!("no resource {uri}"),
                        Some(json!({"uri": uri})),
                    ));
                }
            },
        };
        let result = ReadResourceResult::new(vec![contents]);
        let result = if modern(&cx) {
            result
                .with_ttl_ms(fixtures::CACHE_TTL_MS)
                .with_cache_scope(CacheScope::Public)
        } else {
            result
        };
        Ok(result.into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.resource_subscriptions
            .lock()
            .await
            .insert(request.uri.to_string());
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.resource_subscriptions
            .lock()
            .await
            .remove(request.uri.as_str());
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let key = self.shared.next_listener.fetch_add(1, Ordering::Relaxed);
        self.shared
            .listeners
            .lock()
            .await
            .insert(key, context.sink().clone());
        context.cancelled().await;
        self.shared.listeners.lock().await.remove(&key);
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let result = ListPromptsResult {
            prompts: Self::prompts(),
            ..Default::default()
        };
        Ok(if modern(&cx) {
            result
                .with_ttl_ms(fixtures::CACHE_TTL_MS)
                .with_cache_scope(CacheScope::Public)
        } else {
            result
        })
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let result = match request.name.as_str() {
            "test_simple_prompt" => GetPromptResult::new(vec![PromptMessage::new_text(
                Role::User,
                "This is a simple prompt for testing.",
            )]),
            "test_prompt_with_arguments" => {
                let arg1 = arg(&request.arguments, "arg1").unwrap_or_default();
                let arg2 = arg(&request.arguments, "arg2").unwrap_or_default();
                GetPromptResult::new(vec![PromptMessage::new_text(
                    Role::User,
                    format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"),
                )])
            }
            "test_prompt_with_embedded_resource" => {
                let uri =
                    arg(&request.arguments, "resourceUri").unwrap_or(fixtures::STATIC_TEXT_URI);
                GetPromptResult::new(vec![
                    PromptMessage::new(
                        Role::User,
                        ContentBlock::resource(text_contents(
                            uri,
                            "text/plain",
                            "Embedded resource content for testing.",
                        )),
                    ),
                    PromptMessage::new_text(
                        Role::User,
                        "Please process the embedded resource above.",
                    ),
                ])
            }
            "test_prompt_with_image" => GetPromptResult::new(vec![
                PromptMessage::new(
                    Role::User,
                    ContentBlock::Image(ImageContent::new(fixtures::PNG_BASE64, "image/png")),
                ),
                PromptMessage::new_text(Role::User, "Please analyze the image above."),
            ]),
            "test_input_required_result_prompt" => {
                let answer = mrtr::answer(request.input_responses.as_ref(), "user_context");
                return Ok(match answer {
                    Some(answer) => {
                        let context = mrtr::form_field(answer, "context").unwrap_or("(none)");
                        GetPromptResult::new(vec![PromptMessage::new_text(
                            Role::User,
                            format!("Prompt with elicited context: {context}"),
                        )])
                        .into()
                    }
                    None => {
                        let mut requests = InputRequests::new();
                        requests.insert(
                            "user_context".into(),
                            mrtr::ask_string("What context should the prompt use?", "context"),
                        );
                        InputRequiredResult::from_input_requests(requests).into()
                    }
                });
            }
            other => {
                return Err(ErrorData::invalid_params(
                    format!("no prompt named {other}"),
                    None,
                ));
            }
        };
        Ok(result.into())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let candidates: &[&str] = match (&request.r#ref, request.argument.name.as_str()) {
            (Reference::Resource(_), "id") => &["1", "2", "3", "42"],
            (Reference::Prompt(_), "arg1") => &["alpha", "beta", "gamma"],
            (Reference::Prompt(_), "arg2") => &["one", "two", "three"],
            _ => &[],
        };
        let prefix = request.argument.value.as_str();
        let values: Vec<String> = candidates
            .iter()
            .filter(|c| c.starts_with(prefix))
            .map(|c| c.to_string())
            .collect();
        let info = CompletionInfo::with_all_values(values)
            .map_err(|e| ErrorData::internal_error(e, None))?;
        Ok(CompleteResult::new(info))
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        *self.log_level.lock().await = Some(request.level);
        Ok(())
    }
}
