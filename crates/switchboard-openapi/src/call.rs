//! One tool call: arguments → HTTP request → tool result.
//!
//! Values are serialised as OpenAPI says (path `simple`/`label`/`matrix`, query `form` with
//! or without `explode`, `spaceDelimited`, `pipeDelimited`, `deepObject`, JSON `content`),
//! path values percent-encoded as one segment. The response body is read in chunks up to the
//! cap. A JSON response becomes `structuredContent` (non-objects wrapped as `{"value": …}`)
//! plus its text; anything else is text. A non-2xx status is an `isError` result with the
//! status and a body excerpt. Errors never carry the request URL, which may hold an API key.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rmcp::model::{CallToolResult, ContentBlock, JsonObject};
use serde_json::{Value, json};
use switchboard_core::{failure, failure_with};

use crate::{
    connector::Inner,
    operation::{BodyEncoding, Location, Operation, Parameter, Style},
};

/// Characters left as they are in a path segment: RFC 3986 unreserved.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Longest body excerpt in an error, in characters.
const EXCERPT_CHARS: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("the response body is larger than the cap")]
    TooLarge,
    #[error("reading the response failed: {0}")]
    Transport(String),
}

/// The body of `response`, refusing (and dropping the connection) past `cap` bytes.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    cap: u64,
) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|len| len > cap) {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ReadError::Transport(error_chain(&e.without_url())))?
    {
        if body.len() as u64 + chunk.len() as u64 > cap {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `text` shortened to [`EXCERPT_CHARS`].
pub(crate) fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((end, _)) => format!("{}… (truncated)", &text[..end]),
        None => text.to_string(),
    }
}

/// An error and its sources, `: `-joined (the caller strips URLs first).
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = inner.source();
    }
    message
}

/// Performs `operation` with `arguments`.
pub(crate) async fn call(
    inner: &Inner,
    operation: &Operation,
    arguments: JsonObject,
) -> CallToolResult {
    let prepared = match prepare(inner, operation, arguments) {
        Ok(prepared) => prepared,
        Err(message) => return failure("invalid_arguments", message),
    };
    let mut result = send(inner, operation, &prepared).await;
    // A refused OAuth2 token may have been revoked early: fetch a new one, once.
    if let Err(Failure::Unauthorized(_)) = &result
        && inner.auth.invalidate().await
    {
        result = send(inner, operation, &prepared).await;
    }
    match result {
        Ok(result) => result,
        Err(Failure::Unauthorized(result)) | Err(Failure::Result(result)) => result,
    }
}

/// The request, independent of credentials (so it can be sent again).
struct Prepared {
    url: url::Url,
    headers: reqwest::header::HeaderMap,
    body: Option<(String, Vec<u8>)>,
}

enum Failure {
    /// HTTP 401: worth one retry with fresh credentials.
    Unauthorized(CallToolResult),
    Result(CallToolResult),
}

fn prepare(
    inner: &Inner,
    operation: &Operation,
    mut arguments: JsonObject,
) -> Result<Prepared, String> {
    // Required arguments, including the merged body's required properties.
    if let Some(required) = operation
        .input_schema
        .get("required")
        .and_then(Value::as_array)
    {
        for name in required.iter().filter_map(Value::as_str) {
            if arguments.get(name).is_none_or(Value::is_null) {
                return Err(format!("missing required argument {name:?}"));
            }
        }
    }
    let mut path = operation.path.clone();
    let mut query: Vec<(String, String)> = Vec::new();
    let mut headers = reqwest::header::HeaderMap::new();
    let mut cookies: Vec<String> = Vec::new();
    for parameter in &operation.parameters {
        let Some(value) = arguments
            .remove(&parameter.argument)
            .filter(|v| !v.is_null())
        else {
            if parameter.required {
                return Err(format!(
                    "missing required {} parameter {:?}",
                    parameter.location.as_str(),
                    parameter.argument
                ));
            }
            continue;
        };
        match parameter.location {
            Location::Path => {
                let text = path_value(parameter, &value);
                path = path.replace(&format!("{{{}}}", parameter.name), &text);
            }
            Location::Query => query.extend(query_pairs(parameter, &value)),
            Location::Header => {
                let name = reqwest::header::HeaderName::from_bytes(parameter.name.as_bytes())
                    .map_err(|_| format!("{:?} is not a valid header name", parameter.name))?;
                let text = simple(&value, parameter.explode, parameter.style);
                let value = reqwest::header::HeaderValue::from_str(&text)
                    .map_err(|_| format!("{:?}: not a valid header value", parameter.argument))?;
                headers.insert(name, value);
            }
            Location::Cookie => {
                for (name, text) in query_pairs(parameter, &value) {
                    cookies.push(format!("{name}={text}"));
                }
            }
        }
    }
    if !cookies.is_empty() {
        let value = reqwest::header::HeaderValue::from_str(&cookies.join("; "))
            .map_err(|_| "a cookie parameter is not a valid header value".to_string())?;
        headers.insert(reqwest::header::COOKIE, value);
    }

    // Body: the named argument, or every remaining argument when merged.
    let body = match &operation.body {
        None => {
            if let Some(unknown) = arguments.keys().next() {
                return Err(format!("unknown argument {unknown:?}"));
            }
            None
        }
        Some(body) => {
            let value = match &body.argument {
                Some(argument) => {
                    if let Some(unknown) = arguments.keys().find(|k| *k != argument) {
                        return Err(format!("unknown argument {unknown:?}"));
                    }
                    arguments.remove(argument).filter(|v| !v.is_null())
                }
                None if arguments.is_empty() && !body.required => None,
                None => Some(Value::Object(arguments)),
            };
            match value {
                None if body.required => return Err("missing the request body".into()),
                None => None,
                Some(value) => Some((
                    body.content_type.clone(),
                    encode_body(body.encoding, &value)?,
                )),
            }
        }
    };

    let mut url = url::Url::parse(&format!(
        "{}{}",
        inner.base_url.as_str().trim_end_matches('/'),
        path
    ))
    .map_err(|e| format!("the request URL is not valid: {e}"))?;
    if !query.is_empty() || inner.auth.query_pair().is_some() {
        let mut pairs = url.query_pairs_mut();
        for (name, value) in &query {
            pairs.append_pair(name, value);
        }
        if let Some((name, value)) = inner.auth.query_pair() {
            pairs.append_pair(name, value);
        }
    }
    Ok(Prepared { url, headers, body })
}

fn encode_body(encoding: BodyEncoding, value: &Value) -> Result<Vec<u8>, String> {
    match encoding {
        BodyEncoding::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
        BodyEncoding::Text => Ok(scalar(value).into_bytes()),
        BodyEncoding::Form => {
            let Value::Object(fields) = value else {
                return Err("a form body must be an object".into());
            };
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            for (name, value) in fields {
                match value {
                    Value::Array(items) => {
                        for item in items {
                            form.append_pair(name, &scalar(item));
                        }
                    }
                    other => {
                        form.append_pair(name, &scalar(other));
                    }
                }
            }
            Ok(form.finish().into_bytes())
        }
    }
}

async fn send(
    inner: &Inner,
    operation: &Operation,
    prepared: &Prepared,
) -> Result<CallToolResult, Failure> {
    let method = reqwest::Method::from_bytes(operation.method.as_bytes())
        .map_err(|_| Failure::Result(failure("internal", "bad method")))?;
    let mut request = inner
        .http
        .request(method, prepared.url.clone())
        .headers(prepared.headers.clone())
        .header(reqwest::header::ACCEPT, "application/json, */*;q=0.5");
    if let Some((content_type, bytes)) = &prepared.body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, content_type.as_str())
            .body(bytes.clone());
    }
    let request = inner
        .auth
        .apply(&inner.http, request)
        .await
        .map_err(|e| Failure::Result(failure("auth_failed", e.to_string())))?;
    let what = format!("{} {}", operation.method, operation.path);
    let response = request.send().await.map_err(|err| {
        let kind = if err.is_timeout() {
            "timeout"
        } else if err.is_redirect() {
            "redirect_refused"
        } else if err.is_connect() {
            "unreachable"
        } else {
            "request_failed"
        };
        Failure::Result(failure(
            kind,
            format!("{what}: {}", error_chain(&err.without_url())),
        ))
    })?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let body = read_capped(response, inner.max_response_bytes)
        .await
        .map_err(|err| {
            Failure::Result(match err {
                ReadError::TooLarge => failure(
                    "response_too_large",
                    format!(
                        "{what}: the response is larger than {} bytes (max_response_bytes)",
                        inner.max_response_bytes
                    ),
                ),
                ReadError::Transport(message) => {
                    failure("request_failed", format!("{what}: {message}"))
                }
            })
        })?;
    let text = String::from_utf8_lossy(&body).into_owned();
    let is_json = content_type.starts_with("application/json") || content_type.contains("+json");
    let parsed: Option<Value> = if is_json {
        serde_json::from_slice(&body).ok()
    } else {
        None
    };

    if !status.is_success() {
        let details = json!({
            "status": status.as_u16(),
            "body": match &parsed {
                Some(value) if text.len() <= EXCERPT_CHARS => value.clone(),
                _ => Value::String(excerpt(&text)),
            },
        });
        let result = failure_with(
            "http_error",
            format!("{what} answered HTTP {status}"),
            details,
        );
        return Err(if status == reqwest::StatusCode::UNAUTHORIZED {
            Failure::Unauthorized(result)
        } else {
            Failure::Result(result)
        });
    }
    if body.is_empty() {
        return Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "HTTP {status} (no content)"
        ))]));
    }
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    if let Some(value) = parsed {
        result.structured_content = Some(match value {
            Value::Object(_) => value,
            other => json!({ "value": other }),
        });
    }
    Ok(result)
}

/// A primitive as text (strings unquoted; nested structures as JSON).
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(_) | Value::Number(_) => value.to_string(),
        other => other.to_string(),
    }
}

/// `simple` style: `a,b,c`; objects `k,v,k,v` or, exploded, `k=v,k=v`.
fn simple(value: &Value, explode: bool, style: Style) -> String {
    if style == Style::Json {
        return value.to_string();
    }
    match value {
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(","),
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| {
                if explode {
                    format!("{k}={}", scalar(v))
                } else {
                    format!("{k},{}", scalar(v))
                }
            })
            .collect::<Vec<_>>()
            .join(","),
        other => scalar(other),
    }
}

/// A path value, percent-encoded so it stays one segment.
fn path_value(parameter: &Parameter, value: &Value) -> String {
    let encode = |text: &str| utf8_percent_encode(text, SEGMENT).to_string();
    let items: Vec<String> = match value {
        Value::Array(items) => items.iter().map(|v| encode(&scalar(v))).collect(),
        Value::Object(_) | Value::String(_) | Value::Bool(_) | Value::Number(_) | Value::Null => {
            vec![encode(&simple(value, parameter.explode, parameter.style))]
        }
    };
    match parameter.style {
        Style::Label => {
            let separator = if parameter.explode { "." } else { "," };
            format!(".{}", items.join(separator))
        }
        Style::Matrix => {
            let name = encode(&parameter.name);
            if parameter.explode && value.is_array() {
                items.iter().map(|i| format!(";{name}={i}")).collect()
            } else {
                format!(";{name}={}", items.join(","))
            }
        }
        _ => items.join(","),
    }
}

/// Query (and cookie) pairs, unencoded; the URL serialiser encodes them.
fn query_pairs(parameter: &Parameter, value: &Value) -> Vec<(String, String)> {
    let name = parameter.name.clone();
    match (parameter.style, value) {
        (Style::Json, value) => vec![(name, value.to_string())],
        (Style::DeepObject, Value::Object(_)) => {
            let mut pairs = Vec::new();
            deep_object(&name, value, &mut pairs);
            pairs
        }
        (Style::Form, Value::Array(items)) if parameter.explode => {
            items.iter().map(|v| (name.clone(), scalar(v))).collect()
        }
        (Style::Form, Value::Object(fields)) if parameter.explode => {
            fields.iter().map(|(k, v)| (k.clone(), scalar(v))).collect()
        }
        (Style::SpaceDelimited, Value::Array(items)) => {
            vec![(name, items.iter().map(scalar).collect::<Vec<_>>().join(" "))]
        }
        (Style::PipeDelimited, Value::Array(items)) => {
            vec![(name, items.iter().map(scalar).collect::<Vec<_>>().join("|"))]
        }
        (_, value) => vec![(name, simple(value, false, parameter.style))],
    }
}

/// `name[key]=value`, recursively for nested objects; arrays as `name[key][]=item`.
fn deep_object(prefix: &str, value: &Value, pairs: &mut Vec<(String, String)>) {
    match value {
        Value::Object(fields) => {
            for (key, value) in fields {
                deep_object(&format!("{prefix}[{key}]"), value, pairs);
            }
        }
        Value::Array(items) => {
            for item in items {
                pairs.push((format!("{prefix}[]"), scalar(item)));
            }
        }
        other => pairs.push((prefix.to_string(), scalar(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameter(location: Location, style: Style, explode: bool) -> Parameter {
        Parameter {
            name: "p".into(),
            argument: "p".into(),
            location,
            style,
            explode,
            required: false,
        }
    }

    #[test]
    fn query_styles() {
        let tags = json!(["a b", "c"]);
        assert_eq!(
            query_pairs(&parameter(Location::Query, Style::Form, true), &tags),
            vec![("p".into(), "a b".into()), ("p".into(), "c".into())]
        );
        assert_eq!(
            query_pairs(&parameter(Location::Query, Style::Form, false), &tags),
            vec![("p".into(), "a b,c".into())]
        );
        assert_eq!(
            query_pairs(
                &parameter(Location::Query, Style::PipeDelimited, false),
                &tags
            ),
            vec![("p".into(), "a b|c".into())]
        );
        let filter = json!({"color": "red", "size": {"min": 1}});
        assert_eq!(
            query_pairs(
                &parameter(Location::Query, Style::DeepObject, true),
                &filter
            ),
            vec![
                ("p[color]".into(), "red".into()),
                ("p[size][min]".into(), "1".into())
            ]
        );
        assert_eq!(
            query_pairs(
                &parameter(Location::Query, Style::Form, true),
                &json!({"x": 1, "y": true})
            ),
            vec![("x".into(), "1".into()), ("y".into(), "true".into())]
        );
    }

    #[test]
    fn path_values_stay_one_segment() {
        let p = parameter(Location::Path, Style::Simple, false);
        assert_eq!(path_value(&p, &json!("a/b c?d")), "a%2Fb%20c%3Fd");
        assert_eq!(path_value(&p, &json!([1, 2])), "1,2");
        assert_eq!(
            path_value(&parameter(Location::Path, Style::Label, false), &json!("x")),
            ".x"
        );
        assert_eq!(
            path_value(&parameter(Location::Path, Style::Matrix, false), &json!(5)),
            ";p=5"
        );
    }

    #[test]
    fn excerpts_are_bounded() {
        let long = "é".repeat(EXCERPT_CHARS + 10);
        assert!(excerpt(&long).ends_with("… (truncated)"));
        assert_eq!(excerpt("short"), "short");
    }
}
