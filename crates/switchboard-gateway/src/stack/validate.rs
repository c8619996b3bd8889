//! Input validation of a `tools/call` before it leaves the gateway: the arguments' shape
//! (nesting depth, string lengths, total size) and then the tool's `inputSchema` (JSON Schema,
//! 2020-12 unless the schema's `$schema` names another draft).
//!
//! Why in the gateway when upstreams validate too: a malformed or oversized call is refused
//! before it costs rate-limit budget, a cache entry or upstream work, every upstream gets the
//! same clear error (which field, why), and an upstream that validates poorly is protected.
//!
//! Each tool's schema is compiled once, on its first call, and kept in its [`ToolHints`] (see
//! [`InputSchema`]); a catalog rebuild (the next `tools/list` after an upstream's list
//! changed) makes fresh hints, so the schema checked is always the one the gateway last listed
//! to clients, never an older one compiled earlier. Schemas are compiled offline: a
//! `$ref` to anything outside the schema is not fetched, and such a schema (or one that does
//! not compile) is logged once and not enforced here (the upstream still validates).
//!
//! The HTTP request body is bounded earlier by the transport's `HttpLimits::max_body_bytes`;
//! these limits apply to the arguments of every call, on every transport (stdio included).
//!
//! [`ToolHints`]: crate::stack::ToolHints

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
};

use rmcp::model::JsonObject;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tower::{Layer, Service};

use crate::{error::GatewayError, stack::ToolCall};

/// `[security.validation]`: input validation of `tools/call` arguments. Absent: off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationConfig {
    /// Validate at all. Default true (when the section exists).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Check the arguments against the tool's `inputSchema`. Default true.
    #[serde(default = "default_true")]
    pub schema: bool,
    /// Deepest nesting of objects and arrays; the arguments object itself is depth 1.
    /// Default 32.
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
    /// Longest string (value or object key), in UTF-8 bytes. Default 1 MiB (1048576).
    #[serde(default = "default_max_string_bytes")]
    pub max_string_bytes: usize,
    /// Largest arguments object, serialized as compact JSON, in bytes. Default 4 MiB
    /// (4194304), the same as the HTTP transport's default body limit.
    #[serde(default = "default_max_argument_bytes")]
    pub max_argument_bytes: usize,
    /// Most schema violations reported in one error's `data.errors`. Default 10.
    #[serde(default = "default_max_reported_errors")]
    pub max_reported_errors: usize,
}

fn default_true() -> bool {
    true
}
fn default_max_depth() -> usize {
    32
}
fn default_max_string_bytes() -> usize {
    1024 * 1024
}
fn default_max_argument_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_max_reported_errors() -> usize {
    10
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig {
            enabled: true,
            schema: true,
            max_depth: default_max_depth(),
            max_string_bytes: default_max_string_bytes(),
            max_argument_bytes: default_max_argument_bytes(),
            max_reported_errors: default_max_reported_errors(),
        }
    }
}

impl ValidationConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_depth == 0 {
            return Err("security.validation.max_depth must be at least 1".into());
        }
        if self.max_string_bytes == 0 || self.max_argument_bytes == 0 {
            return Err(
                "security.validation.max_string_bytes and max_argument_bytes must be at least 1"
                    .into(),
            );
        }
        if self.max_reported_errors == 0 {
            return Err("security.validation.max_reported_errors must be at least 1".into());
        }
        Ok(())
    }
}

/// One reason the arguments were refused: where (a JSON pointer into the arguments; `""` is
/// the whole object) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub pointer: String,
    pub message: String,
}

/// A tool's input schema and, after its first call, its compiled validator.
pub struct InputSchema {
    schema: Arc<JsonObject>,
    /// `None` inside: the schema does not compile offline and is not enforced.
    compiled: OnceLock<Option<jsonschema::Validator>>,
}

impl std::fmt::Debug for InputSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputSchema")
            .field("compiled", &self.compiled.get().map(|v| v.is_some()))
            .finish_non_exhaustive()
    }
}

impl InputSchema {
    pub fn new(schema: Arc<JsonObject>) -> InputSchema {
        InputSchema {
            schema,
            compiled: OnceLock::new(),
        }
    }

    /// The compiled validator, compiling on first use; `None` if the schema cannot be.
    fn validator(&self, tool: &str) -> Option<&jsonschema::Validator> {
        self.compiled
            .get_or_init(|| {
                let schema = Value::Object((*self.schema).clone());
                match jsonschema::options().offline().build(&schema) {
                    Ok(validator) => Some(validator),
                    Err(err) => {
                        tracing::warn!(%tool, %err, "inputSchema does not compile; not enforced by the gateway");
                        None
                    }
                }
            })
            .as_ref()
    }

    /// The schema violations of `arguments`, at most `max` of them.
    pub fn check(&self, tool: &str, arguments: &Value, max: usize) -> Vec<Violation> {
        let Some(validator) = self.validator(tool) else {
            return Vec::new();
        };
        validator
            .iter_errors(arguments)
            .take(max)
            .map(|error| Violation {
                pointer: error.instance_path().as_str().to_string(),
                // Masked: the message names the rule, not the (possibly secret, possibly
                // large) value the client sent.
                message: error.masked().to_string(),
            })
            .collect()
    }
}

/// The shape limits of [`ValidationConfig`], checked in one walk without allocating.
pub fn check_shape(arguments: &Value, config: &ValidationConfig) -> Result<(), Violation> {
    let size = serialized_len(arguments);
    if size > config.max_argument_bytes {
        return Err(Violation {
            pointer: String::new(),
            message: format!(
                "the arguments are {size} bytes of JSON, more than the limit of {} \
                 (security.validation.max_argument_bytes)",
                config.max_argument_bytes
            ),
        });
    }
    walk(arguments, 1, config, &mut Vec::new())
}

/// Depth-first over `value` at `depth`; `path` holds the segments to `value` for the error's
/// pointer (built only on failure).
fn walk<'a>(
    value: &'a Value,
    depth: usize,
    config: &ValidationConfig,
    path: &mut Vec<Segment<'a>>,
) -> Result<(), Violation> {
    let too_deep = |path: &[Segment<'_>]| Violation {
        pointer: pointer(path),
        message: format!(
            "nested deeper than the limit of {} levels (security.validation.max_depth)",
            config.max_depth
        ),
    };
    let too_long = |path: &[Segment<'_>], what: &str, len: usize| Violation {
        pointer: pointer(path),
        message: format!(
            "{what} is {len} bytes, longer than the limit of {} (security.validation.max_string_bytes)",
            config.max_string_bytes
        ),
    };
    match value {
        Value::String(s) if s.len() > config.max_string_bytes => {
            Err(too_long(path, "the string", s.len()))
        }
        Value::Object(map) => {
            if depth > config.max_depth {
                return Err(too_deep(path));
            }
            for (key, child) in map {
                path.push(Segment::Key(key));
                if key.len() > config.max_string_bytes {
                    return Err(too_long(path, "the key", key.len()));
                }
                walk(child, depth + 1, config, path)?;
                path.pop();
            }
            Ok(())
        }
        Value::Array(items) => {
            if depth > config.max_depth {
                return Err(too_deep(path));
            }
            for (index, child) in items.iter().enumerate() {
                path.push(Segment::Index(index));
                walk(child, depth + 1, config, path)?;
                path.pop();
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// RFC 6901 pointer of `path`.
fn pointer(path: &[Segment<'_>]) -> String {
    let mut out = String::new();
    for segment in path {
        out.push('/');
        match segment {
            Segment::Key(key) => out.push_str(&key.replace('~', "~0").replace('/', "~1")),
            Segment::Index(index) => out.push_str(&index.to_string()),
        }
    }
    out
}

/// Bytes of `value` as compact JSON, counted without building the string.
fn serialized_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a `Value` to an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// The layer's compiled settings.
#[derive(Clone)]
pub struct ValidateLayer {
    config: Option<Arc<ValidationConfig>>,
}

impl ValidateLayer {
    /// `None` (or `enabled = false`): the layer passes every call through.
    pub fn new(config: Option<Arc<ValidationConfig>>) -> ValidateLayer {
        ValidateLayer {
            config: config.filter(|c| c.enabled),
        }
    }
}

impl<S> Layer<S> for ValidateLayer {
    type Service = Validate<S>;
    fn layer(&self, inner: S) -> Validate<S> {
        Validate {
            inner,
            config: self.config.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Validate<S> {
    inner: S,
    config: Option<Arc<ValidationConfig>>,
}

/// Checks one call's arguments; the refusal lists what failed.
fn check_call(call: &mut ToolCall, config: &ValidationConfig) -> Result<(), GatewayError> {
    // Moved into a `Value` for the checks and back again, so nothing is cloned.
    let had_arguments = call.arguments.is_some();
    let arguments = Value::Object(call.arguments.take().unwrap_or_default());
    let mut violations = match check_shape(&arguments, config) {
        Ok(()) => Vec::new(),
        Err(violation) => vec![violation],
    };
    if violations.is_empty()
        && config.schema
        && let Some(schema) = &call.hints.input_schema
    {
        violations = schema.check(&call.exposed, &arguments, config.max_reported_errors);
    }
    if let Value::Object(map) = arguments
        && (had_arguments || !map.is_empty())
    {
        call.arguments = Some(map);
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(GatewayError::InvalidArguments {
            tool: call.exposed.clone(),
            violations,
        })
    }
}

impl<S> Service<ToolCall> for Validate<S>
where
    S: Service<ToolCall, Error = GatewayError> + Send,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, GatewayError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut call: ToolCall) -> Self::Future {
        if let Some(config) = &self.config
            && let Err(err) = check_call(&mut call, config)
        {
            tracing::info!(tool = %call.exposed, %err, "tools/call arguments refused");
            return Box::pin(async move { Err(err) });
        }
        Box::pin(self.inner.call(call))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config() -> ValidationConfig {
        ValidationConfig {
            max_depth: 3,
            max_string_bytes: 8,
            max_argument_bytes: 64,
            ..ValidationConfig::default()
        }
    }

    #[test]
    fn depth_counts_the_arguments_object_as_one() {
        assert_eq!(check_shape(&json!({"a": {"b": 1}}), &config()), Ok(()));
        assert_eq!(check_shape(&json!({"a": {"b": [1]}}), &config()), Ok(()));
        let err = check_shape(&json!({"a": {"b": [[1]]}}), &config()).unwrap_err();
        assert_eq!(err.pointer, "/a/b/0");
        assert!(err.message.contains("max_depth"), "{}", err.message);
    }

    #[test]
    fn long_strings_and_keys_are_named_by_pointer() {
        let err = check_shape(&json!({"x": ["ok", "123456789"]}), &config()).unwrap_err();
        assert_eq!(err.pointer, "/x/1");
        let err = check_shape(&json!({"a/b~": {"123456789": 1}}), &config()).unwrap_err();
        assert_eq!(err.pointer, "/a~1b~0/123456789");
        assert!(
            err.message.starts_with("the key is 9 bytes"),
            "{}",
            err.message
        );
    }

    #[test]
    fn total_size_is_the_compact_json_length() {
        let value = json!({"k": "12345678"});
        assert_eq!(serialized_len(&value), value.to_string().len());
        let big = json!({"a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "f": "6", "g": "7", "h": "8", "i": "9"});
        let err = check_shape(&big, &config()).unwrap_err();
        assert_eq!(err.pointer, "");
        assert!(
            err.message.contains("max_argument_bytes"),
            "{}",
            err.message
        );
    }

    #[test]
    fn schema_violations_name_the_field_without_echoing_the_value() {
        let schema = json!({
            "type": "object",
            "properties": {"count": {"type": "integer", "minimum": 1}, "name": {"type": "string"}},
            "required": ["name"],
        });
        let Value::Object(schema) = schema else {
            unreachable!()
        };
        let input = InputSchema::new(Arc::new(schema));
        let violations = input.check("t", &json!({"count": "secret-value"}), 10);
        assert_eq!(violations.len(), 2, "{violations:?}");
        let count = violations
            .iter()
            .find(|v| v.pointer == "/count")
            .expect("a violation at /count");
        assert!(count.message.contains("integer"), "{}", count.message);
        assert!(!count.message.contains("secret-value"), "{}", count.message);
        assert!(
            violations
                .iter()
                .any(|v| v.pointer.is_empty() && v.message.contains("name"))
        );
        assert!(
            input
                .check("t", &json!({"name": "x", "count": 2}), 10)
                .is_empty()
        );
        assert_eq!(input.check("t", &json!({"count": 0}), 1).len(), 1);
    }

    #[test]
    fn a_schema_that_needs_the_network_is_not_enforced() {
        let Value::Object(schema) = json!({"$ref": "https://example.invalid/schema.json"}) else {
            unreachable!()
        };
        let input = InputSchema::new(Arc::new(schema));
        assert!(input.check("t", &json!({"anything": 1}), 10).is_empty());
    }
}
