//! Operations of a document, each turned into a tool: name, description, annotations and an
//! `inputSchema` that carries every parameter and the request body.
//!
//! **The input rule.** Path, query, header and cookie parameters are top-level properties
//! named as in the document (a name used in two locations gets `_query`, `_header`, … on the
//! later one). A JSON request body whose schema is a plain object (`properties`, no
//! `allOf`/`anyOf`/`oneOf`) with no property named like a parameter is *merged*: its
//! properties sit beside the parameters, and every argument that is not a parameter goes into
//! the body. Any other body (an array, a composition, a collision) is the single `body`
//! property.

use std::collections::{BTreeSet, HashSet};

use rmcp::model::{JsonObject, ToolAnnotations};
use serde_json::{Map, Value, json};

use crate::{
    config::{OpenApiConfig, OperationFilter},
    naming,
    spec::{Resolver, Spec, SpecError, child},
};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Path,
    Query,
    Header,
    Cookie,
}

impl Location {
    pub fn as_str(self) -> &'static str {
        match self {
            Location::Path => "path",
            Location::Query => "query",
            Location::Header => "header",
            Location::Cookie => "cookie",
        }
    }
}

/// How a parameter's value is written (OpenAPI `style`, or `content` for JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Simple,
    Label,
    Matrix,
    Form,
    SpaceDelimited,
    PipeDelimited,
    DeepObject,
    /// `content: {application/json: …}`: the value serialised as JSON.
    Json,
}

#[derive(Debug, Clone)]
pub struct Parameter {
    /// The name in the request.
    pub name: String,
    /// The argument (inputSchema property) that carries it.
    pub argument: String,
    pub location: Location,
    pub style: Style,
    pub explode: bool,
    pub required: bool,
}

/// How the request body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    Json,
    Form,
    Text,
}

#[derive(Debug, Clone)]
pub struct Body {
    pub content_type: String,
    pub encoding: BodyEncoding,
    pub required: bool,
    /// The argument that carries it, or `None` when its properties are merged.
    pub argument: Option<String>,
}

/// One operation, ready to call.
#[derive(Debug, Clone)]
pub struct Operation {
    pub tool_name: String,
    /// Upper case (`GET`).
    pub method: String,
    /// The path template (`/pets/{petId}`).
    pub path: String,
    pub operation_id: Option<String>,
    pub tags: Vec<String>,
    pub description: String,
    pub annotations: ToolAnnotations,
    pub input_schema: JsonObject,
    pub parameters: Vec<Parameter>,
    pub body: Option<Body>,
}

/// An operation that does not become a tool, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub method: String,
    pub path: String,
    pub reason: String,
}

/// Every operation of a document, filtered and named.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub operations: Vec<Operation>,
    pub skipped: Vec<Skipped>,
}

/// Builds the tools of `spec` under `config`'s filter, overrides and depth bound.
pub fn build(spec: &Spec, config: &OpenApiConfig) -> Result<Catalog, crate::OpenApiError> {
    let filter = config.filter()?;
    Ok(build_filtered(spec, config, &filter)?)
}

fn build_filtered(
    spec: &Spec,
    config: &OpenApiConfig,
    filter: &OperationFilter,
) -> Result<Catalog, SpecError> {
    let resolver = Resolver::new(spec, config.max_ref_depth);
    let mut catalog = Catalog::default();
    let Some(paths) = spec.document.get("paths") else {
        return Ok(catalog);
    };
    let Some(paths) = paths.as_object() else {
        return Err(SpecError::invalid("/paths", "must be an object"));
    };
    let mut used_names: HashSet<String> = HashSet::new();
    for (path, item) in paths {
        let item_pointer = child("/paths", path);
        if !path.starts_with('/') {
            return Err(SpecError::invalid(item_pointer, "a path must start with /"));
        }
        let (item, item_pointer) = resolver.follow(item, &item_pointer)?;
        let Some(item) = item.as_object() else {
            return Err(SpecError::invalid(
                item_pointer,
                "a path item must be an object",
            ));
        };
        let shared = item.get("parameters");
        for method in METHODS {
            let Some(op) = item.get(method) else {
                continue;
            };
            let pointer = child(&item_pointer, method);
            let Some(op) = op.as_object() else {
                return Err(SpecError::invalid(
                    pointer,
                    "an operation must be an object",
                ));
            };
            let operation_id = match op.get("operationId") {
                None => None,
                Some(Value::String(id)) => Some(id.clone()),
                Some(_) => {
                    return Err(SpecError::invalid(
                        child(&pointer, "operationId"),
                        "must be a string",
                    ));
                }
            };
            let tags = string_list(op.get("tags"), &child(&pointer, "tags"))?;
            if !filter.allows(operation_id.as_deref(), &tags, path) {
                continue;
            }
            let method_upper = method.to_ascii_uppercase();
            let built = build_operation(
                &resolver,
                &BuildInput {
                    method: &method_upper,
                    path,
                    pointer: &pointer,
                    op,
                    item_pointer: &item_pointer,
                    shared,
                    operation_id,
                    tags,
                },
            )?;
            let mut operation = match built {
                Ok(operation) => operation,
                Err(reason) => {
                    tracing::warn!(method = %method_upper, path, %reason, "OpenAPI operation skipped");
                    catalog.skipped.push(Skipped {
                        method: method_upper,
                        path: path.clone(),
                        reason,
                    });
                    continue;
                }
            };
            let key = operation
                .operation_id
                .clone()
                .unwrap_or_else(|| operation.tool_name.clone());
            if let Some(over) = config.overrides.get(&key) {
                if let Some(name) = &over.name {
                    operation.tool_name = name.clone();
                }
                if let Some(description) = &over.description {
                    operation.description = description.clone();
                }
            }
            let identity = format!("{method_upper} {path}");
            if used_names.contains(&operation.tool_name) {
                // Two operations sanitise to one name: the later one gets a hash suffix.
                operation.tool_name = naming::with_hash(&operation.tool_name, &identity);
            }
            used_names.insert(operation.tool_name.clone());
            catalog.operations.push(operation);
        }
    }
    Ok(catalog)
}

struct BuildInput<'a> {
    method: &'a str,
    path: &'a str,
    pointer: &'a str,
    op: &'a Map<String, Value>,
    item_pointer: &'a str,
    shared: Option<&'a Value>,
    operation_id: Option<String>,
    tags: Vec<String>,
}

fn string_list(value: Option<&Value>, pointer: &str) -> Result<Vec<String>, SpecError> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().map(str::to_string).ok_or_else(|| {
                    SpecError::invalid(child(pointer, &i.to_string()), "must be a string")
                })
            })
            .collect(),
        Some(_) => Err(SpecError::invalid(pointer, "must be an array")),
    }
}

/// A parameter as declared, before argument names are assigned.
struct Declared {
    name: String,
    location: Location,
    style: Style,
    explode: bool,
    required: bool,
    schema: Value,
}

/// `Ok(Err(reason))` when the operation is valid but cannot be a tool (an unsupported body).
fn build_operation(
    resolver: &Resolver<'_>,
    input: &BuildInput<'_>,
) -> Result<Result<Operation, String>, SpecError> {
    // Path-level parameters first; an operation-level one with the same name and location
    // replaces it.
    let mut declared: Vec<Declared> = Vec::new();
    let lists = [
        (input.shared, child(input.item_pointer, "parameters")),
        (
            input.op.get("parameters"),
            child(input.pointer, "parameters"),
        ),
    ];
    for (list, pointer) in lists {
        let Some(list) = list else { continue };
        let Some(list) = list.as_array() else {
            return Err(SpecError::invalid(pointer, "must be an array"));
        };
        for (i, parameter) in list.iter().enumerate() {
            let parameter = parameter_of(resolver, parameter, &child(&pointer, &i.to_string()))?;
            declared.retain(|d| !(d.name == parameter.name && d.location == parameter.location));
            declared.push(parameter);
        }
    }
    // A template variable nobody declared is still a required string.
    for variable in template_variables(input.path) {
        if !declared
            .iter()
            .any(|d| d.location == Location::Path && d.name == variable)
        {
            declared.push(Declared {
                name: variable,
                location: Location::Path,
                style: Style::Simple,
                explode: false,
                required: true,
                schema: json!({ "type": "string" }),
            });
        }
    }

    let mut properties = Map::new();
    let mut required = BTreeSet::new();
    let mut parameters = Vec::new();
    for d in declared {
        let argument = if properties.contains_key(&d.name) {
            format!("{}_{}", d.name, d.location.as_str())
        } else {
            d.name.clone()
        };
        if d.required {
            required.insert(argument.clone());
        }
        properties.insert(argument.clone(), d.schema);
        parameters.push(Parameter {
            name: d.name,
            argument,
            location: d.location,
            style: d.style,
            explode: d.explode,
            required: d.required,
        });
    }

    let mut body = None;
    if let Some(request_body) = input.op.get("requestBody") {
        let pointer = child(input.pointer, "requestBody");
        let (request_body, pointer) = resolver.follow(request_body, &pointer)?;
        let body_required = request_body
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let Some(content) = request_body.get("content").and_then(Value::as_object) else {
            return Err(SpecError::invalid(pointer, "missing \"content\""));
        };
        let Some((content_type, encoding, media)) = pick_media(content) else {
            let types: Vec<&str> = content.keys().map(String::as_str).collect();
            return Ok(Err(format!(
                "request body media types not supported: {}",
                types.join(", ")
            )));
        };
        let media_pointer = child(&child(&pointer, "content"), content_type);
        let schema = match media.get("schema") {
            Some(schema) => resolver.inline_schema(schema, &child(&media_pointer, "schema"))?,
            None => json!({}),
        };
        let mergeable = encoding != BodyEncoding::Text
            && is_plain_object(&schema)
            && schema["properties"]
                .as_object()
                .is_some_and(|p| p.keys().all(|k| !properties.contains_key(k)));
        let argument = if mergeable {
            if body_required && let Some(names) = schema.get("required").and_then(Value::as_array) {
                required.extend(names.iter().filter_map(Value::as_str).map(str::to_string));
            }
            if let Some(props) = schema["properties"].as_object() {
                properties.extend(props.clone());
            }
            None
        } else {
            let name = ["body", "request_body", "_body"]
                .into_iter()
                .find(|n| !properties.contains_key(*n))
                .unwrap_or("_body")
                .to_string();
            if body_required {
                required.insert(name.clone());
            }
            properties.insert(name.clone(), schema);
            Some(name)
        };
        body = Some(Body {
            content_type: content_type.to_string(),
            encoding,
            required: body_required,
            argument,
        });
    }

    let mut input_schema = JsonObject::new();
    input_schema.insert("type".into(), json!("object"));
    input_schema.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        input_schema.insert("required".into(), json!(required));
    }

    let text = |key: &str| {
        input
            .op
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let mut description = match (text("summary"), text("description")) {
        (Some(summary), Some(details)) if summary != details => format!("{summary}\n\n{details}"),
        (Some(one), _) | (None, Some(one)) => one.to_string(),
        (None, None) => format!("{} {}", input.method, input.path),
    };
    if input.op.get("deprecated") == Some(&Value::Bool(true)) {
        description.push_str("\n\n(Deprecated.)");
    }

    let tool_name = input
        .operation_id
        .as_deref()
        .and_then(naming::sanitize)
        .unwrap_or_else(|| naming::fallback(input.method, input.path));

    let mut annotations = ToolAnnotations::new().open_world(true);
    if let Some(summary) = text("summary") {
        annotations.title = Some(summary.to_string());
    }
    annotations = match input.method {
        "GET" | "HEAD" | "OPTIONS" => annotations.read_only(true),
        "DELETE" => annotations.read_only(false).destructive(true),
        "PUT" => annotations.read_only(false).idempotent(true),
        _ => annotations.read_only(false),
    };

    Ok(Ok(Operation {
        tool_name,
        method: input.method.to_string(),
        path: input.path.to_string(),
        operation_id: input.operation_id.clone(),
        tags: input.tags.clone(),
        description,
        annotations,
        input_schema,
        parameters,
        body,
    }))
}

fn parameter_of(
    resolver: &Resolver<'_>,
    value: &Value,
    pointer: &str,
) -> Result<Declared, SpecError> {
    let (value, pointer) = resolver.follow(value, pointer)?;
    let Some(object) = value.as_object() else {
        return Err(SpecError::invalid(pointer, "a parameter must be an object"));
    };
    let name = match object.get("name") {
        Some(Value::String(name)) if !name.is_empty() => name.clone(),
        Some(_) => {
            return Err(SpecError::invalid(
                child(&pointer, "name"),
                "must be a non-empty string",
            ));
        }
        None => return Err(SpecError::invalid(pointer, "missing \"name\"")),
    };
    let location = match object.get("in") {
        Some(Value::String(location)) => match location.as_str() {
            "path" => Location::Path,
            "query" => Location::Query,
            "header" => Location::Header,
            "cookie" => Location::Cookie,
            other => {
                return Err(SpecError::invalid(
                    child(&pointer, "in"),
                    format!("{other:?} is not one of path, query, header, cookie"),
                ));
            }
        },
        Some(_) => {
            return Err(SpecError::invalid(
                child(&pointer, "in"),
                "must be a string",
            ));
        }
        None => return Err(SpecError::invalid(pointer, "missing \"in\"")),
    };
    let (schema, json_content) = match (object.get("schema"), object.get("content")) {
        (Some(schema), _) => (
            resolver.inline_schema(schema, &child(&pointer, "schema"))?,
            false,
        ),
        (None, Some(Value::Object(content))) => {
            let Some((media_type, media)) = content.iter().next() else {
                return Err(SpecError::invalid(child(&pointer, "content"), "is empty"));
            };
            let schema_pointer = child(&child(&child(&pointer, "content"), media_type), "schema");
            match media.get("schema") {
                Some(schema) => (resolver.inline_schema(schema, &schema_pointer)?, true),
                None => (json!({}), true),
            }
        }
        (None, _) => (json!({}), false),
    };
    let mut schema = schema;
    if let (Some(description), Value::Object(s)) = (
        object.get("description").and_then(Value::as_str),
        &mut schema,
    ) && !s.contains_key("description")
    {
        s.insert("description".into(), json!(description));
    }
    let default_style = match location {
        Location::Query | Location::Cookie => Style::Form,
        Location::Path | Location::Header => Style::Simple,
    };
    let style = if json_content {
        Style::Json
    } else {
        match object.get("style").and_then(Value::as_str) {
            None => default_style,
            Some("simple") => Style::Simple,
            Some("label") => Style::Label,
            Some("matrix") => Style::Matrix,
            Some("form") => Style::Form,
            Some("spaceDelimited") => Style::SpaceDelimited,
            Some("pipeDelimited") => Style::PipeDelimited,
            Some("deepObject") => Style::DeepObject,
            Some(other) => {
                return Err(SpecError::invalid(
                    child(&pointer, "style"),
                    format!("unknown style {other:?}"),
                ));
            }
        }
    };
    let explode = object
        .get("explode")
        .and_then(Value::as_bool)
        .unwrap_or(style == Style::Form);
    let required = location == Location::Path
        || object
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    Ok(Declared {
        name,
        location,
        style,
        explode,
        required,
        schema,
    })
}

/// `{name}` variables of a path template, in order.
pub fn template_variables(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push(rest[start + 1..start + len].to_string());
        rest = &rest[start + len + 1..];
    }
    out
}

/// The request body's media type: JSON first, then form, then plain text.
fn pick_media(content: &Map<String, Value>) -> Option<(&str, BodyEncoding, &Value)> {
    let is_json = |t: &str| {
        let t = t.split(';').next().unwrap_or(t).trim();
        t == "application/json" || t.ends_with("+json") || t == "*/*"
    };
    let find = |pred: &dyn Fn(&str) -> bool, encoding| {
        content
            .iter()
            .find(|(t, _)| pred(t))
            .map(|(t, m)| (t.as_str(), encoding, m))
    };
    find(&is_json, BodyEncoding::Json)
        .or_else(|| {
            find(
                &|t: &str| t.starts_with("application/x-www-form-urlencoded"),
                BodyEncoding::Form,
            )
        })
        .or_else(|| find(&|t: &str| t.starts_with("text/plain"), BodyEncoding::Text))
}

fn is_plain_object(schema: &Value) -> bool {
    let Some(object) = schema.as_object() else {
        return false;
    };
    let typed_object = match object.get("type") {
        None => true,
        Some(Value::String(t)) => t == "object",
        Some(_) => false,
    };
    typed_object
        && object.get("properties").is_some_and(Value::is_object)
        && !["allOf", "anyOf", "oneOf", "not", "if"]
            .iter()
            .any(|k| object.contains_key(*k))
}
