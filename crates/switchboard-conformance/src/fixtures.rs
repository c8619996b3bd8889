//! Fixed data of the fixture: media payloads, resource texts and the hand-written schemas of
//! the tools whose `inputSchema` is itself under test.

use std::sync::Arc;

use rmcp::model::JsonObject;
use serde_json::{Value, json};

/// A 2x2 RGB PNG (generated for this crate).
pub const PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR42mNQSDgARAwQCgAgjgUBD9g89AAAAABJRU5ErkJggg==";
/// Eight samples of 8-bit mono silence at 8 kHz, as a WAV file.
pub const WAV_BASE64: &str =
    "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAACAgICAgICAgA==";

pub const STATIC_TEXT_URI: &str = "test://static-text";
pub const STATIC_BINARY_URI: &str = "test://static-binary";
pub const WATCHED_URI: &str = "test://watched-resource";
pub const TEMPLATE_URI: &str = "test://template/{id}/data";
pub const TEMPLATE_PREFIX: &str = "test://template/";
pub const TEMPLATE_SUFFIX: &str = "/data";

pub const STATIC_TEXT: &str = "This is the content of the static text resource.";
pub const WATCHED_TEXT: &str = "Watched resource content";

/// How long clients may cache list and read results of this fixture (2026-07-28 cache hints).
pub const CACHE_TTL_MS: u64 = 30_000;

fn object(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        other => unreachable!("schema literal is not an object: {other}"),
    }
}

/// SEP-2243: a parameter mirrored into the `Mcp-Param-Value` header.
pub fn custom_header_input() -> Arc<JsonObject> {
    object(json!({
        "type": "object",
        "properties": {"value": {"type": "string", "x-mcp-header": "Value"}},
        "required": ["value"]
    }))
}

/// SEP-1613: a schema using 2020-12 keywords, which must reach the client unchanged.
pub fn json_schema_2020_12_input() -> Arc<JsonObject> {
    object(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "$anchor": "address",
                "type": "object",
                "properties": {
                    "street": {"type": "string"},
                    "city": {"type": "string"}
                }
            }
        },
        "properties": {
            "name": {"type": "string"},
            "address": {"$ref": "#/$defs/address"}
        },
        "allOf": [{"anyOf": [{"required": ["name"]}, {"required": ["address"]}]}],
        "if": {"required": ["address"]},
        "then": {"properties": {"address": {"required": ["city"]}}},
        "else": {"required": ["name"]},
        "additionalProperties": false
    }))
}

/// SEP-1034: every primitive type with a default.
pub fn defaults_form() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "Name", "default": "John Doe"},
            "age": {"type": "integer", "description": "Age", "default": 30},
            "score": {"type": "number", "description": "Score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "Status",
                "enum": ["active", "inactive", "pending"],
                "default": "active"
            },
            "verified": {"type": "boolean", "description": "Verified", "default": true}
        }
    })
}

/// SEP-1330: the five enum shapes (untitled/titled single, legacy enumNames, untitled/titled
/// multi-select).
pub fn enums_form() -> Value {
    json!({
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
            "titledSingle": {
                "type": "string",
                "oneOf": [
                    {"const": "value1", "title": "First Option"},
                    {"const": "value2", "title": "Second Option"},
                    {"const": "value3", "title": "Third Option"}
                ]
            },
            "legacyEnum": {
                "type": "string",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"]
            },
            "untitledMulti": {
                "type": "array",
                "items": {"type": "string", "enum": ["option1", "option2", "option3"]}
            },
            "titledMulti": {
                "type": "array",
                "items": {
                    "anyOf": [
                        {"const": "value1", "title": "First Choice"},
                        {"const": "value2", "title": "Second Choice"},
                        {"const": "value3", "title": "Third Choice"}
                    ]
                }
            }
        }
    })
}

/// The `id` of a `test://template/{id}/data` URI, if `uri` is one.
pub fn template_id(uri: &str) -> Option<&str> {
    let id = uri
        .strip_prefix(TEMPLATE_PREFIX)?
        .strip_suffix(TEMPLATE_SUFFIX)?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_ids() {
        assert_eq!(template_id("test://template/42/data"), Some("42"));
        assert_eq!(template_id("test://template//data"), None);
        assert_eq!(template_id("test://template/a/b/data"), None);
        assert_eq!(template_id("test://static-text"), None);
    }

    #[test]
    fn media_decodes() {
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(PNG_BASE64)
            .unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let wav = base64::engine::general_purpose::STANDARD
            .decode(WAV_BASE64)
            .unwrap();
        assert_eq!(&wav[0..4], b"RIFF");
    }
}
