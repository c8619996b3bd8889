//! Reading an OpenAPI document and resolving its local `$ref`s.
//!
//! The document is parsed into a `serde_json::Value` and walked by hand rather than into a
//! typed model: one walk serves 3.0 and 3.1 alike, and every error can name the JSON pointer
//! of the offending node (`/paths/~1pets~1{petId}/get/parameters/0: missing "in"`), which is
//! what an operator needs to fix a document.

use std::collections::HashSet;

use serde_json::{Map, Value};

/// Why a document could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("could not read the OpenAPI document {source_name}: {message}")]
    Read {
        source_name: String,
        message: String,
    },
    #[error("the OpenAPI document {source_name} is larger than {limit} bytes (max_spec_bytes)")]
    TooLarge { source_name: String, limit: u64 },
    #[error("the OpenAPI document {source_name} is neither JSON nor YAML: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    /// A node of the document is wrong; `pointer` is its JSON pointer (RFC 6901).
    #[error("{pointer}: {message}")]
    Invalid { pointer: String, message: String },
}

impl SpecError {
    pub(crate) fn invalid(pointer: impl Into<String>, message: impl Into<String>) -> SpecError {
        let pointer = pointer.into();
        SpecError::Invalid {
            pointer: if pointer.is_empty() {
                "/".into()
            } else {
                pointer
            },
            message: message.into(),
        }
    }
}

/// Which OpenAPI major line a document follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecVersion {
    V3_0,
    V3_1,
}

/// A loaded document.
#[derive(Debug, Clone)]
pub struct Spec {
    pub document: Value,
    pub version: SpecVersion,
    /// Where it was fetched from, when from a URL (relative `servers` resolve against it).
    pub url: Option<url::Url>,
}

/// Reads `source` (a file path or an `http(s)://` URL), at most `max_bytes`.
pub async fn load(source: &str, max_bytes: u64, http: &reqwest::Client) -> Result<Spec, SpecError> {
    let read_error = |message: String| SpecError::Read {
        source_name: source.to_string(),
        message,
    };
    let too_large = || SpecError::TooLarge {
        source_name: source.to_string(),
        limit: max_bytes,
    };
    let (bytes, url) = if source.starts_with("http://") || source.starts_with("https://") {
        let url = url::Url::parse(source).map_err(|e| read_error(e.to_string()))?;
        let response = http
            .get(url.clone())
            .header(
                reqwest::header::ACCEPT,
                "application/json, application/yaml;q=0.9, */*;q=0.1",
            )
            .send()
            .await
            .map_err(|e| read_error(crate::call::error_chain(&e.without_url())))?;
        let status = response.status();
        if !status.is_success() {
            return Err(read_error(format!("HTTP {status}")));
        }
        let bytes = crate::call::read_capped(response, max_bytes)
            .await
            .map_err(|e| match e {
                crate::call::ReadError::TooLarge => too_large(),
                other => read_error(other.to_string()),
            })?;
        (bytes, Some(url))
    } else {
        let path = std::path::Path::new(source);
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| read_error(e.to_string()))?
            .len();
        if size > max_bytes {
            return Err(too_large());
        }
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| read_error(e.to_string()))?;
        (bytes, None)
    };
    let text = String::from_utf8(bytes).map_err(|_| SpecError::Parse {
        source_name: source.to_string(),
        message: "not UTF-8".into(),
    })?;
    let document = parse(&text).map_err(|message| SpecError::Parse {
        source_name: source.to_string(),
        message,
    })?;
    let version = version_of(&document)?;
    Ok(Spec {
        document,
        version,
        url,
    })
}

/// JSON when it parses as JSON, YAML otherwise.
pub fn parse(text: &str) -> Result<Value, String> {
    match serde_json::from_str(text) {
        Ok(value) => Ok(value),
        Err(json_err) if text.trim_start().starts_with('{') => Err(format!("JSON: {json_err}")),
        Err(_) => serde_yaml_ng::from_str(text).map_err(|e| format!("YAML: {e}")),
    }
}

/// The document's OpenAPI version; only 3.0.x and 3.1.x are accepted.
pub fn version_of(document: &Value) -> Result<SpecVersion, SpecError> {
    if !document.is_object() {
        return Err(SpecError::invalid("", "the document is not an object"));
    }
    match document.get("openapi") {
        Some(Value::String(v)) if v.starts_with("3.0") => Ok(SpecVersion::V3_0),
        Some(Value::String(v)) if v.starts_with("3.1") => Ok(SpecVersion::V3_1),
        Some(Value::String(v)) => Err(SpecError::invalid(
            "/openapi",
            format!("version {v:?} is not supported (3.0.x or 3.1.x)"),
        )),
        Some(_) => Err(SpecError::invalid("/openapi", "must be a string")),
        None if document.get("swagger").is_some() => Err(SpecError::invalid(
            "/swagger",
            "Swagger 2.0 is not supported; convert the document to OpenAPI 3",
        )),
        None => Err(SpecError::invalid("", "missing \"openapi\"")),
    }
}

/// Escapes one reference token of a JSON pointer (RFC 6901).
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// `base/token`, escaped.
pub fn child(base: &str, token: &str) -> String {
    format!("{base}/{}", escape(token))
}

/// Nodes inlined into one schema at most; beyond, references are left unexpanded. Guards
/// against documents whose references fan out exponentially without being recursive.
const MAX_INLINED_NODES: usize = 100_000;

/// Keywords whose values are data, not schemas: never searched for `$ref`.
const DATA_KEYWORDS: [&str; 5] = ["example", "examples", "default", "enum", "const"];

/// Resolves local references (`#/…`) in one document.
pub struct Resolver<'d> {
    document: &'d Value,
    version: SpecVersion,
    max_depth: usize,
}

impl<'d> Resolver<'d> {
    pub fn new(spec: &'d Spec, max_depth: usize) -> Resolver<'d> {
        Resolver {
            document: &spec.document,
            version: spec.version,
            max_depth,
        }
    }

    /// Follows `value`'s `$ref` chain (for parameters, request bodies, path items) to the
    /// node it names, and that node's pointer. `at` is `value`'s own pointer.
    pub fn follow(&self, value: &'d Value, at: &str) -> Result<(&'d Value, String), SpecError> {
        let mut current = value;
        let mut pointer = at.to_string();
        let mut seen = HashSet::new();
        while let Some(reference) = current.get("$ref") {
            let target = self.reference(reference, &pointer)?;
            if !seen.insert(target.clone()) {
                return Err(SpecError::invalid(
                    child(&pointer, "$ref"),
                    format!("reference cycle through {target}"),
                ));
            }
            current = self.lookup(&target, &pointer)?;
            pointer = target;
        }
        Ok((current, pointer))
    }

    /// The pointer a `$ref` value names (only local references are supported).
    fn reference(&self, reference: &Value, at: &str) -> Result<String, SpecError> {
        let at = child(at, "$ref");
        let Value::String(reference) = reference else {
            return Err(SpecError::invalid(at, "$ref must be a string"));
        };
        let Some(fragment) = reference.strip_prefix('#') else {
            return Err(SpecError::invalid(
                at,
                format!("only local references (#/…) are supported, found {reference:?}"),
            ));
        };
        percent_encoding::percent_decode_str(fragment)
            .decode_utf8()
            .map(|decoded| decoded.into_owned())
            .map_err(|_| SpecError::invalid(at, format!("{reference:?} is not valid UTF-8")))
    }

    fn lookup(&self, pointer: &str, at: &str) -> Result<&'d Value, SpecError> {
        self.document.pointer(pointer).ok_or_else(|| {
            SpecError::invalid(
                child(at, "$ref"),
                format!("unresolved reference #{pointer}"),
            )
        })
    }

    /// `schema` with every reference inlined (to `max_depth`; recursive references become a
    /// described `{}`), and 3.0's `nullable` turned into JSON Schema.
    pub fn inline_schema(&self, schema: &Value, at: &str) -> Result<Value, SpecError> {
        let mut state = InlineState {
            stack: Vec::new(),
            nodes: 0,
        };
        self.inline(schema, at, &mut state)
    }

    fn inline(
        &self,
        schema: &Value,
        at: &str,
        state: &mut InlineState,
    ) -> Result<Value, SpecError> {
        state.nodes += 1;
        match schema {
            Value::Object(object) => {
                if let Some(reference) = object.get("$ref").filter(|r| r.is_string()) {
                    let target = self.reference(reference, at)?;
                    let node = self.lookup(&target, at)?;
                    let mut resolved = if state.stack.contains(&target) {
                        unexpanded(&target, "recursive reference")
                    } else if state.stack.len() >= self.max_depth {
                        unexpanded(&target, "reference nested deeper than max_ref_depth")
                    } else if state.nodes >= MAX_INLINED_NODES {
                        unexpanded(&target, "schema too large to inline")
                    } else {
                        state.stack.push(target.clone());
                        let inlined = self.inline(node, &target, state);
                        state.stack.pop();
                        inlined?
                    };
                    // 3.1 allows keywords beside `$ref` (a description, say); they apply too.
                    if let Value::Object(resolved) = &mut resolved {
                        for (key, value) in object {
                            if key != "$ref" {
                                let value = self.inline(value, &child(at, key), state)?;
                                resolved.insert(key.clone(), value);
                            }
                        }
                    }
                    return Ok(resolved);
                }
                let mut out = Map::new();
                for (key, value) in object {
                    if DATA_KEYWORDS.contains(&key.as_str()) || key.starts_with("x-") {
                        if key != "example" {
                            out.insert(key.clone(), value.clone());
                        }
                        continue;
                    }
                    if matches!(
                        key.as_str(),
                        "nullable" | "discriminator" | "xml" | "externalDocs"
                    ) {
                        continue;
                    }
                    out.insert(key.clone(), self.inline(value, &child(at, key), state)?);
                }
                if self.version == SpecVersion::V3_0
                    && object.get("nullable") == Some(&Value::Bool(true))
                    && let Some(Value::String(ty)) = out.get("type").cloned()
                {
                    out.insert("type".into(), serde_json::json!([ty, "null"]));
                }
                Ok(Value::Object(out))
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.inline(item, &child(at, &i.to_string()), state))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => Ok(other.clone()),
        }
    }
}

struct InlineState {
    /// References being expanded, outermost first.
    stack: Vec<String>,
    nodes: usize,
}

fn unexpanded(target: &str, why: &str) -> Value {
    serde_json::json!({ "description": format!("{why} to #{target}, not expanded") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(document: Value) -> Spec {
        let version = version_of(&document).unwrap();
        Spec {
            document,
            version,
            url: None,
        }
    }

    #[test]
    fn recursive_references_are_bounded() {
        let s = spec(json!({
            "openapi": "3.1.0",
            "components": { "schemas": {
                "Node": { "type": "object", "properties": {
                    "value": { "type": "string" },
                    "children": { "type": "array", "items": { "$ref": "#/components/schemas/Node" } }
                }}
            }}
        }));
        let resolver = Resolver::new(&s, 16);
        let inlined = resolver
            .inline_schema(&json!({ "$ref": "#/components/schemas/Node" }), "/x")
            .unwrap();
        assert_eq!(inlined["properties"]["value"]["type"], "string");
        let inner = &inlined["properties"]["children"]["items"];
        assert!(inner.get("$ref").is_none());
        assert!(
            inner["description"]
                .as_str()
                .unwrap()
                .contains("recursive reference to #/components/schemas/Node")
        );
    }

    #[test]
    fn depth_bound_applies_to_long_chains() {
        let s = spec(json!({
            "openapi": "3.1.0",
            "components": { "schemas": {
                "A": { "type": "object", "properties": { "b": { "$ref": "#/components/schemas/B" } } },
                "B": { "type": "object", "properties": { "c": { "$ref": "#/components/schemas/C" } } },
                "C": { "type": "string" }
            }}
        }));
        let inlined = Resolver::new(&s, 2)
            .inline_schema(&json!({ "$ref": "#/components/schemas/A" }), "/x")
            .unwrap();
        assert!(
            inlined["properties"]["b"]["properties"]["c"]["description"]
                .as_str()
                .unwrap()
                .contains("max_ref_depth")
        );
        let full = Resolver::new(&s, 3)
            .inline_schema(&json!({ "$ref": "#/components/schemas/A" }), "/x")
            .unwrap();
        assert_eq!(full["properties"]["b"]["properties"]["c"]["type"], "string");
    }

    #[test]
    fn unresolved_and_external_references_name_the_pointer() {
        let s = spec(json!({ "openapi": "3.0.3" }));
        let resolver = Resolver::new(&s, 4);
        let err = resolver
            .inline_schema(
                &json!({ "$ref": "#/components/schemas/Missing" }),
                "/paths/~1a/get",
            )
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "/paths/~1a/get/$ref: unresolved reference #/components/schemas/Missing"
        );
        let err = resolver
            .inline_schema(&json!({ "$ref": "other.yaml#/X" }), "/p")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/p/$ref: only local references"), "{err}");
    }

    #[test]
    fn nullable_becomes_a_type_union_in_3_0() {
        let s = spec(json!({ "openapi": "3.0.3" }));
        let inlined = Resolver::new(&s, 4)
            .inline_schema(
                &json!({ "type": "string", "nullable": true, "example": "x" }),
                "/s",
            )
            .unwrap();
        assert_eq!(inlined, json!({ "type": ["string", "null"] }));
    }

    #[test]
    fn versions_and_formats() {
        assert!(
            parse("openapi: 3.0.0\ninfo: {title: t}\n")
                .unwrap()
                .is_object()
        );
        assert!(parse("{\"openapi\": ").unwrap_err().starts_with("JSON"));
        assert_eq!(
            version_of(&json!({"swagger": "2.0"}))
                .unwrap_err()
                .to_string(),
            "/swagger: Swagger 2.0 is not supported; convert the document to OpenAPI 3"
        );
        assert_eq!(
            version_of(&json!({"info": {}})).unwrap_err().to_string(),
            "/: missing \"openapi\""
        );
    }
}
