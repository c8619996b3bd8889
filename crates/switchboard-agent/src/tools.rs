//! The agent's side of MCP: connected sources, their (cached) tool lists, the names and
//! schemas the model sees, and calls bounded by a timeout.
//!
//! Every source is reached through Switchboard's own connectors (the transport crate's
//! `connect`, or the gateway's in-process built-in mount), so stdio children are supervised in
//! their own process group and ended on [`Toolbox::shutdown`]. Tool lists are cached per
//! connection by default (listing on every turn costs a round trip per source per turn); a
//! `notifications/tools/list_changed` invalidates that source's cache.
//!
//! Results keep MCP's `isError`: the Agents SDK turns an error result into ordinary output,
//! so the model cannot tell failure from data. Here it becomes [`ToolOutcome::Error`] and the
//! text the model reads starts with an explicit error marker.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use rmcp::{
    ClientHandler, RoleClient,
    model::{CallToolRequestParams, CallToolResult, ContentBlock, JsonObject, Tool},
    service::NotificationContext,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_gateway::naming;
use switchboard_transport::{ConnectOptions, Upstream, UpstreamClient};

use crate::{
    agent::{Agent, Source, ToolRef},
    error::AgentError,
};

/// Prefix of the text the model reads for an `isError` result.
pub const TOOL_ERROR_PREFIX: &str = "ERROR (the tool reported a failure): ";
/// Prefix of the text the model reads for a call the user refused.
pub const TOOL_REFUSED_PREFIX: &str = "REFUSED: ";

/// Our MCP client handler: marks the source's tool list stale on `list_changed`.
#[derive(Debug, Clone, Default)]
pub struct ListWatcher {
    stale: Arc<AtomicBool>,
}

impl ClientHandler for ListWatcher {
    fn on_tool_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.stale.store(true, Ordering::SeqCst);
        std::future::ready(())
    }
}

struct Connected {
    name: String,
    prefixed: bool,
    client: UpstreamClient<ListWatcher>,
    stale: Arc<AtomicBool>,
    cache: Mutex<Option<Arc<Vec<Tool>>>>,
}

/// A tool as the model sees it, and where it goes.
#[derive(Debug, Clone)]
pub struct ToolEntry {
    /// The name the model uses: `source__tool`, fitted to `^[a-zA-Z0-9_-]{1,64}$`.
    pub exposed: String,
    pub source: String,
    pub tool: String,
    pub description: String,
    /// The MCP `inputSchema`, normalised to an object schema.
    pub parameters: Value,
    /// Whether the schema already satisfies OpenAI's strict mode.
    pub strict_compatible: bool,
    /// Annotated `destructiveHint: true`.
    pub destructive: bool,
    source_index: usize,
}

impl ToolEntry {
    /// The Chat Completions `tools[]` element.
    pub fn to_openai(&self, strict: bool) -> Value {
        let mut function = serde_json::json!({
            "name": self.exposed,
            "description": self.description,
            "parameters": self.parameters,
        });
        if strict
            && self.strict_compatible
            && let Some(obj) = function.as_object_mut()
        {
            obj.insert("strict".into(), Value::Bool(true));
        }
        serde_json::json!({"type": "function", "function": function})
    }
}

/// How a tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolOutcome {
    Success,
    /// The tool answered with `isError: true`.
    Error,
    /// The user (approval callback) refused the call; it was not sent.
    Refused,
    /// The call could not be made or did not finish: timeout, transport failure, unknown
    /// tool, invalid arguments.
    Failed,
}

/// The connected sources of one agent.
pub struct Toolbox {
    sources: Vec<Connected>,
    cache_tools: bool,
}

impl std::fmt::Debug for Toolbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toolbox")
            .field(
                "sources",
                &self.sources.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .field("cache_tools", &self.cache_tools)
            .finish()
    }
}

async fn connect_one(source: &Source, options: &ConnectOptions) -> Result<Connected, AgentError> {
    let watcher = ListWatcher::default();
    let stale = watcher.stale.clone();
    let fail = |message: String| AgentError::Source {
        source_name: source.name().to_string(),
        message,
    };
    let mut options = options.clone();
    options.name = source.name().to_string();
    let client = match source {
        Source::Builtin { name, server } => {
            // The agent calls through the MCP client like any source (one code path for
            // approvals, timeouts and results); the in-process shortcut is the gateway's.
            switchboard_gateway::builtin::connect(name, server, watcher)
                .await
                .map_err(|e| fail(e.to_string()))?
                .0
        }
        Source::Upstream { upstream, .. } => {
            switchboard_transport::connect(upstream, watcher, &options)
                .await
                .map_err(|e| fail(e.to_string()))?
        }
        Source::Gateway { url } => {
            switchboard_transport::connect(&Upstream::from_url(url), watcher, &options)
                .await
                .map_err(|e| fail(e.to_string()))?
        }
    };
    Ok(Connected {
        name: source.name().to_string(),
        prefixed: source.prefixed(),
        client,
        stale,
        cache: Mutex::new(None),
    })
}

/// Whether a JSON schema already meets strict mode: every object closes
/// `additionalProperties` and requires all of its properties.
pub fn strict_compatible(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => {
            let is_object = map.get("type").and_then(Value::as_str) == Some("object");
            if is_object {
                let props = map.get("properties").and_then(Value::as_object);
                let required: HashSet<&str> = map
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let closed = map.get("additionalProperties") == Some(&Value::Bool(false));
                let all_required = props
                    .map(|p| p.keys().all(|k| required.contains(k.as_str())))
                    .unwrap_or(true);
                if !closed || !all_required {
                    return false;
                }
            }
            map.iter()
                .filter(|(k, _)| k.as_str() != "required" && k.as_str() != "enum")
                .all(|(_, v)| strict_compatible(v))
        }
        Value::Array(items) => items.iter().all(strict_compatible),
        _ => true,
    }
}

/// The MCP input schema as Chat Completions parameters: an object schema with `properties`
/// (some servers reject an object schema without it), without the `$schema` marker.
pub fn parameters_for(input_schema: &JsonObject) -> Value {
    let mut schema = input_schema.clone();
    schema.remove("$schema");
    schema
        .entry("type")
        .or_insert_with(|| Value::String("object".into()));
    schema
        .entry("properties")
        .or_insert_with(|| Value::Object(Default::default()));
    Value::Object(schema)
}

/// The text the model reads for a result; `isError` gets [`TOOL_ERROR_PREFIX`]. Output longer
/// than `max_chars` is cut with a note.
pub fn result_text(result: &CallToolResult, max_chars: usize) -> String {
    let mut parts: Vec<String> = result
        .content
        .iter()
        .map(|block| match block {
            ContentBlock::Text(t) => t.text.clone(),
            other => serde_json::to_string(other).unwrap_or_default(),
        })
        .collect();
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        parts.push(structured.to_string());
    }
    let mut text = parts.join("\n");
    if result.is_error == Some(true) {
        text = format!("{TOOL_ERROR_PREFIX}{text}");
    }
    truncate(text, max_chars)
}

/// Cuts `text` to `max_chars` characters, saying so.
pub fn truncate(text: String, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!(
            "{}\n[output truncated to {max_chars} characters]",
            &text[..cut]
        ),
        None => text,
    }
}

impl Toolbox {
    /// Connects every source concurrently; any failure fails the whole (the agent was told
    /// it has those tools).
    pub async fn connect(
        sources: &[Source],
        options: &ConnectOptions,
        cache_tools: bool,
    ) -> Result<Self, AgentError> {
        let results =
            futures::future::join_all(sources.iter().map(|s| connect_one(s, options))).await;
        let mut connected = Vec::with_capacity(results.len());
        let mut first_error = None;
        for result in results {
            match result {
                Ok(c) => connected.push(c),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let toolbox = Toolbox {
            sources: connected,
            cache_tools,
        };
        if let Some(e) = first_error {
            toolbox.shutdown().await;
            return Err(e);
        }
        Ok(toolbox)
    }

    async fn list(&self, index: usize) -> Result<Arc<Vec<Tool>>, AgentError> {
        let Some(source) = self.sources.get(index) else {
            return Ok(Arc::new(Vec::new()));
        };
        let stale = source.stale.swap(false, Ordering::SeqCst);
        if self.cache_tools
            && !stale
            && let Ok(guard) = source.cache.lock()
            && let Some(tools) = guard.as_ref()
        {
            return Ok(tools.clone());
        }
        let tools = Arc::new(source.client.peer().list_all_tools().await.map_err(|e| {
            AgentError::Source {
                source_name: source.name.clone(),
                message: format!("tools/list failed: {e}"),
            }
        })?);
        if let Ok(mut guard) = source.cache.lock() {
            *guard = Some(tools.clone());
        }
        Ok(tools)
    }

    /// The tools `agent` may use, with their exposed names (listed now, or from the cache).
    pub async fn tools(&self, agent: &Agent) -> Result<Vec<ToolEntry>, AgentError> {
        let lists =
            futures::future::try_join_all((0..self.sources.len()).map(|i| self.list(i))).await?;
        let mut used = HashSet::new();
        let mut entries = Vec::new();
        for (index, (source, tools)) in self.sources.iter().zip(lists.iter()).enumerate() {
            for tool in tools.iter() {
                let candidate = if source.prefixed {
                    format!("{}{}{}", source.name, naming::SEPARATOR, tool.name)
                } else {
                    tool.name.to_string()
                };
                let (mut exposed, _) = naming::fit(&candidate);
                let mut n = 2;
                while used.contains(&exposed) {
                    exposed = naming::fit(&format!("{candidate}_{n}")).0;
                    n += 1;
                }
                let r = ToolRef {
                    source: &source.name,
                    tool: &tool.name,
                    exposed: &exposed,
                };
                if !agent.tool_filter.allows(&r) {
                    continue;
                }
                used.insert(exposed.clone());
                let parameters = parameters_for(&tool.input_schema);
                entries.push(ToolEntry {
                    strict_compatible: strict_compatible(&parameters),
                    parameters,
                    exposed,
                    source: source.name.clone(),
                    tool: tool.name.to_string(),
                    description: tool.description.as_deref().unwrap_or_default().to_string(),
                    destructive: tool
                        .annotations
                        .as_ref()
                        .and_then(|a| a.destructive_hint)
                        .unwrap_or(false),
                    source_index: index,
                });
            }
        }
        Ok(entries)
    }

    /// Calls a tool; `Err` carries the text for the model when the call could not complete.
    pub async fn call(
        &self,
        entry: &ToolEntry,
        arguments: Option<JsonObject>,
        timeout: Duration,
    ) -> Result<CallToolResult, String> {
        let source = self
            .sources
            .get(entry.source_index)
            .ok_or_else(|| format!("source {} is gone", entry.source))?;
        let mut params = CallToolRequestParams::new(entry.tool.clone());
        if let Some(arguments) = arguments {
            params = params.with_arguments(arguments);
        }
        // On timeout the request future is dropped, and rmcp sends `notifications/cancelled`.
        match tokio::time::timeout(timeout, source.client.peer().call_tool(params)).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(e)) => Err(format!("the call failed: {e}")),
            Err(_) => Err(format!("the call timed out after {timeout:?}")),
        }
    }

    /// Ends every connection (stdio children with their process group).
    pub async fn shutdown(self) {
        for source in self.sources {
            if let Err(e) = switchboard_transport::shutdown(source.client).await {
                tracing::debug!(source = %source.name, error = %e, "closing an MCP source failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_needs_closed_objects_with_everything_required() {
        let open = serde_json::json!({"type":"object","properties":{"a":{"type":"string"}}});
        assert!(!strict_compatible(&open));
        let closed = serde_json::json!({"type":"object","properties":{"a":{"type":"string"}},
            "required":["a"],"additionalProperties":false});
        assert!(strict_compatible(&closed));
        let optional = serde_json::json!({"type":"object","properties":{"a":{},"b":{}},
            "required":["a"],"additionalProperties":false});
        assert!(!strict_compatible(&optional));
    }

    #[test]
    fn truncation_is_explicit() {
        assert_eq!(truncate("abc".into(), 3), "abc");
        assert!(truncate("abcdef".into(), 3).starts_with("abc\n[output truncated"));
    }

    #[test]
    fn parameters_always_have_properties() {
        let schema: JsonObject = serde_json::from_value(serde_json::json!({
            "$schema": "x", "type": "object"}))
        .unwrap_or_default();
        let p = parameters_for(&schema);
        assert!(p.get("properties").is_some() && p.get("$schema").is_none());
    }
}
