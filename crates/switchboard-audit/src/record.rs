//! What one audit record holds, and how a call's arguments become its `arguments` and
//! `arguments_sha256`: canonical JSON (sorted keys, no whitespace), a SHA-256 of the arguments
//! as received, and a redacted copy for reading.
//!
//! The hash is taken before redaction so that whoever holds the original request can prove it
//! matches the record; the stored copy never holds a redacted value.

use chrono::{DateTime, SecondsFormat, Utc};
use globset::{Glob, GlobMatcher};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use switchboard_core::canonical::{canonical_json, canonical_object};

use crate::error::AuditError;

/// What replaces a redacted value.
pub const REDACTED: &str = "[REDACTED]";

/// Key fragments that mark a value as a secret wherever it appears. A key is compared after
/// lower-casing it and removing `-` and `_`, and matches when it *contains* a fragment, so
/// `client_secret`, `X-Api-Key` and `accessToken` are all caught.
pub const SECRET_KEY_FRAGMENTS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "authorization",
    "credential",
    "privatekey",
    "accesskey",
    "cookie",
];

/// The gateway's verdict before the call reached an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Every check passed; the call went on towards the upstream.
    Allowed,
    /// Authorization refused it.
    Denied,
    /// A rate limit refused it.
    RateLimited,
    /// Refused as malformed: unknown tool, arguments that fail validation.
    Invalid,
}

impl Decision {
    pub const ALL: [Decision; 4] = [
        Decision::Allowed,
        Decision::Denied,
        Decision::RateLimited,
        Decision::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
            Decision::RateLimited => "rate_limited",
            Decision::Invalid => "invalid",
        }
    }

    pub fn parse(text: &str) -> Result<Decision, AuditError> {
        Decision::ALL
            .into_iter()
            .find(|d| d.as_str() == text)
            .ok_or_else(|| {
                AuditError::Invalid(format!(
                    "unknown decision {text:?} (allowed, denied, rate_limited, invalid)"
                ))
            })
    }
}

/// How the call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A result without `isError` (or an `input_required` result passed through).
    Ok,
    /// A result with `isError: true`: the tool ran and reported a failure.
    ToolError,
    /// No result: refused, or the gateway or the upstream failed.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::Error => "error",
        }
    }

    pub fn parse(text: &str) -> Result<Outcome, AuditError> {
        [Outcome::Ok, Outcome::ToolError, Outcome::Error]
            .into_iter()
            .find(|o| o.as_str() == text)
            .ok_or_else(|| AuditError::Invalid(format!("unknown outcome {text:?}")))
    }
}

/// One `tools/call` as the gateway saw it, before redaction: what the stack hands to
/// [`crate::Auditor::record`].
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub time: DateTime<Utc>,
    /// The caller's subject (`anonymous` without authentication, `gateway` for its own calls).
    pub identity: String,
    /// Which client: the API key's name and/or the MCP `clientInfo`, when known.
    pub client: Option<String>,
    /// The name the client called.
    pub tool: String,
    /// The upstream and its name for the tool; `None` when the name did not route.
    pub upstream: Option<String>,
    pub upstream_tool: Option<String>,
    pub arguments: Option<Map<String, Value>>,
    pub decision: Decision,
    pub outcome: Outcome,
    pub latency_ms: u64,
    pub error: Option<String>,
}

/// One stored audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The store's row id (`None` before it is written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// UTC, millisecond precision; RFC 3339 in JSON.
    #[serde(serialize_with = "rfc3339_millis")]
    pub time: DateTime<Utc>,
    pub identity: String,
    pub client: Option<String>,
    pub tool: String,
    pub upstream: Option<String>,
    pub upstream_tool: Option<String>,
    /// SHA-256 (hex) of the canonical JSON of the arguments as received (`{}` when absent).
    pub arguments_sha256: String,
    /// The arguments with secrets replaced by `"[REDACTED]"`, or a `"[TRUNCATED: N bytes]"`
    /// string when their canonical JSON exceeded `max_arguments_bytes`.
    pub arguments: Value,
    pub decision: Decision,
    pub outcome: Outcome,
    pub latency_ms: u64,
    pub error: Option<String>,
}

fn rfc3339_millis<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Lower-case hex SHA-256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    hex
}

/// The SHA-256 of a call's arguments in canonical form; absent arguments hash as `{}`.
pub fn arguments_sha256(arguments: Option<&Map<String, Value>>) -> String {
    match arguments {
        Some(map) => sha256_hex(&canonical_object(map)),
        None => sha256_hex("{}"),
    }
}

/// A key as redaction compares it: lower case, without `-` and `_`.
fn normalise_key(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Decides which argument values are secrets: keys containing a [`SECRET_KEY_FRAGMENTS`]
/// fragment, the configured extra keys (exact, case-insensitive), and per-tool fields (keys,
/// exact, case-insensitive, at any depth) for the tools matching a glob.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    extra_keys: Vec<String>,
    tools: Vec<(GlobMatcher, Vec<String>)>,
}

impl Redactor {
    /// `tools` maps an exposed-tool glob (e.g. `crm__create_*`) to field names.
    pub fn new<'a>(
        extra_keys: &[String],
        tools: impl IntoIterator<Item = (&'a String, &'a Vec<String>)>,
    ) -> Result<Redactor, AuditError> {
        let tools = tools
            .into_iter()
            .map(|(glob, fields)| {
                let matcher = Glob::new(glob)
                    .map_err(|e| {
                        AuditError::Invalid(format!("redact_tools: bad tool glob {glob:?}: {e}"))
                    })?
                    .compile_matcher();
                Ok((matcher, fields.iter().map(|f| normalise_key(f)).collect()))
            })
            .collect::<Result<Vec<_>, AuditError>>()?;
        Ok(Redactor {
            extra_keys: extra_keys.iter().map(|k| normalise_key(k)).collect(),
            tools,
        })
    }

    /// A copy of `arguments` with every secret value (of any type) replaced by
    /// [`REDACTED`], recursively through objects and arrays.
    pub fn redact(&self, tool: &str, arguments: &Map<String, Value>) -> Map<String, Value> {
        let fields: Vec<&str> = self
            .tools
            .iter()
            .filter(|(glob, _)| glob.is_match(tool))
            .flat_map(|(_, fields)| fields.iter().map(String::as_str))
            .collect();
        self.redact_map(arguments, &fields)
    }

    fn is_secret(&self, key: &str, tool_fields: &[&str]) -> bool {
        let key = normalise_key(key);
        SECRET_KEY_FRAGMENTS.iter().any(|f| key.contains(f))
            || self.extra_keys.contains(&key)
            || tool_fields.contains(&key.as_str())
    }

    fn redact_map(&self, map: &Map<String, Value>, fields: &[&str]) -> Map<String, Value> {
        map.iter()
            .map(|(key, value)| {
                let value = if self.is_secret(key, fields) {
                    Value::String(REDACTED.into())
                } else {
                    self.redact_value(value, fields)
                };
                (key.clone(), value)
            })
            .collect()
    }

    fn redact_value(&self, value: &Value, fields: &[&str]) -> Value {
        match value {
            Value::Object(map) => Value::Object(self.redact_map(map, fields)),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| self.redact_value(item, fields))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary, marked with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn the_hash_ignores_key_order_and_whitespace() {
        let a: Value = serde_json::from_str(r#"{ "x": 1, "y": [1, 2] }"#).expect("json");
        let b: Value = serde_json::from_str(r#"{"y":[1,2],"x":1}"#).expect("json");
        let (a, b) = (object(a), object(b));
        assert_eq!(arguments_sha256(Some(&a)), arguments_sha256(Some(&b)));
        // The SHA-256 of the canonical text `{"x":1,"y":[1,2]}`.
        assert_eq!(
            arguments_sha256(Some(&a)),
            sha256_hex(r#"{"x":1,"y":[1,2]}"#)
        );
        assert_eq!(arguments_sha256(None), sha256_hex("{}"));
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn secret_looking_keys_are_redacted_recursively_and_case_insensitively() {
        let redactor = Redactor::new(&[], std::iter::empty()).expect("redactor");
        let args = object(json!({
            "user": "ann",
            "Password": "hunter2",
            "nested": {"client_secret": {"deep": 1}, "list": [{"X-Api-Key": "k", "ok": 2}]},
            "accessToken": "t",
            "Authorization": "Bearer x",
        }));
        let out = Value::Object(redactor.redact("any", &args));
        assert_eq!(
            out,
            json!({
                "user": "ann",
                "Password": REDACTED,
                "nested": {"client_secret": REDACTED, "list": [{"X-Api-Key": REDACTED, "ok": 2}]},
                "accessToken": REDACTED,
                "Authorization": REDACTED,
            })
        );
    }

    #[test]
    fn configured_keys_and_per_tool_fields_are_redacted() {
        let tools = std::collections::BTreeMap::from([(
            "crm__create_*".to_string(),
            vec!["email".to_string()],
        )]);
        let redactor = Redactor::new(&["ssn".to_string()], &tools).expect("redactor");
        let args = object(json!({"email": "a@b.c", "SSN": "1", "name": "n"}));
        assert_eq!(
            Value::Object(redactor.redact("crm__create_customer", &args)),
            json!({"email": REDACTED, "SSN": REDACTED, "name": "n"})
        );
        // Another tool keeps its email.
        assert_eq!(
            Value::Object(redactor.redact("crm__get_customer", &args)),
            json!({"email": "a@b.c", "SSN": REDACTED, "name": "n"})
        );
    }

    #[test]
    fn a_bad_tool_glob_is_refused() {
        let tools = std::collections::BTreeMap::from([("a[".to_string(), vec![])]);
        assert!(Redactor::new(&[], &tools).is_err());
    }

    #[test]
    fn truncation_keeps_character_boundaries() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("aéb", 2), "a…");
    }
}
