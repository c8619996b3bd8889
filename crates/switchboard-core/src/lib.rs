//! Conventions every built-in Switchboard MCP server shares.
//!
//! Every tool answers twice: once as `structuredContent` that matches the tool's `outputSchema`
//! (for programs), and once as a text rendering (for models and people). Failures the caller
//! can act on are tool results with `isError: true`, never protocol errors, as MCP 2025-11-25
//! (SEP-1303) asks. Keeping these rules in one place keeps the fs, sql and crm servers alike.

pub mod canonical;

use std::sync::Arc;

use rmcp::model::{CallToolResult, ContentBlock, JsonObject};
use schemars::JsonSchema;
use serde::Serialize;

/// A tool's output: serialisable as `structuredContent`, and renderable as text.
pub trait ToolOutput: Serialize {
    /// The human-readable rendering that goes into the result's text content.
    fn render_text(&self) -> String;
}

/// The `outputSchema` of a tool whose structured output is `T`.
///
/// rmcp caches schemas per type, so calling this per `tools/list` is cheap.
pub fn output_schema<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    rmcp::handler::server::common::schema_for_output::<T>()
}

/// A successful tool result carrying `output` both as structured content and as text.
pub fn success<T: ToolOutput>(output: &T) -> CallToolResult {
    match serde_json::to_value(output) {
        Ok(value) => {
            let mut result =
                CallToolResult::success(vec![ContentBlock::text(output.render_text())]);
            result.structured_content = Some(value);
            result
        }
        // Serialising our own output types cannot fail in practice (no maps with non-string
        // keys); if it ever does, the caller gets a clear tool error rather than a panic.
        Err(err) => failure(
            "internal",
            format!("could not serialise the tool output: {err}"),
        ),
    }
}

/// A tool error (`isError: true`) with a stable machine-readable `kind` and a message.
///
/// The structured content is `{"error": {"kind": …, "message": …}}` so that programs can
/// branch on `kind` without parsing prose.
pub fn failure(kind: &str, message: impl Into<String>) -> CallToolResult {
    let message = message.into();
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!(
        "Error ({kind}): {message}"
    ))]);
    result.structured_content = Some(serde_json::json!({
        "error": { "kind": kind, "message": message }
    }));
    result
}

/// A tool error that also carries details (for example the current version on a conflict).
pub fn failure_with(
    kind: &str,
    message: impl Into<String>,
    details: serde_json::Value,
) -> CallToolResult {
    let message = message.into();
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!(
        "Error ({kind}): {message}\n{details}"
    ))]);
    result.structured_content = Some(serde_json::json!({
        "error": { "kind": kind, "message": message, "details": details }
    }));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Greeting {
        text: String,
    }

    impl ToolOutput for Greeting {
        fn render_text(&self) -> String {
            self.text.clone()
        }
    }

    #[test]
    fn success_carries_text_and_structure() {
        let result = success(&Greeting { text: "hi".into() });
        assert_eq!(result.is_error, Some(false));
        assert_eq!(
            result.structured_content,
            Some(serde_json::json!({"text": "hi"}))
        );
        let text = result.content[0].as_text().map(|t| t.text.clone());
        assert_eq!(text.as_deref(), Some("hi"));
    }

    #[test]
    fn failure_is_flagged_and_typed() {
        let result = failure("not_found", "no such file");
        assert_eq!(result.is_error, Some(true));
        assert_eq!(
            result.structured_content,
            Some(serde_json::json!({"error": {"kind": "not_found", "message": "no such file"}}))
        );
    }
}
