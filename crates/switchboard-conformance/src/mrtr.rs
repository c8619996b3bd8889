//! SEP-2322 multi round-trip requests: building `inputRequests`, reading `inputResponses`, and
//! sealing the `requestState` the client echoes back.

use rmcp::model::{
    CreateMessageRequest, CreateMessageRequestParams, ElicitRequest, ElicitRequestParams,
    ElicitationSchema, InputRequest, InputResponses, ListRootsRequest, RequestStateCodec,
    SamplingMessage, SealOptions,
};
use serde_json::{Map, Value, json};

/// A form elicitation asking for one string field.
pub fn ask_string(message: &str, field: &str) -> InputRequest {
    ask_form(
        message,
        json!({"type": "object", "properties": {field: {"type": "string"}}, "required": [field]}),
    )
}

/// A form elicitation with a full requested schema.
pub fn ask_form(message: &str, schema: Value) -> InputRequest {
    let requested_schema: ElicitationSchema =
        serde_json::from_value(schema).expect("fixture elicitation schema is valid");
    InputRequest::Elicitation(ElicitRequest::new(
        ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: message.to_string(),
            requested_schema,
        },
    ))
}

/// A sampling request with one user message.
pub fn ask_model(prompt: &str) -> InputRequest {
    InputRequest::CreateMessage(CreateMessageRequest::new(CreateMessageRequestParams::new(
        vec![SamplingMessage::user_text(prompt)],
        128,
    )))
}

/// A `roots/list` request.
pub fn ask_roots() -> InputRequest {
    InputRequest::ListRoots(ListRootsRequest::default())
}

/// The client's answer under `key`, when it is usable: an object (an `ElicitResult`,
/// `CreateMessageResult` or `ListRootsResult`). Anything else counts as not answered, so the
/// server asks again instead of failing.
pub fn answer<'a>(
    responses: Option<&'a InputResponses>,
    key: &str,
) -> Option<&'a Map<String, Value>> {
    responses?.get(key)?.as_object()
}

/// The string the user entered in form field `field` of an accepted elicitation.
pub fn form_field<'a>(answer: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    if answer.get("action").and_then(Value::as_str) != Some("accept") {
        return None;
    }
    answer.get("content")?.get(field)?.as_str()
}

/// The text of a sampling answer.
pub fn sampled_text(answer: &Map<String, Value>) -> Option<&str> {
    let content = answer.get("content")?;
    // `content` is one block or (since 2025-11-25) an array of blocks.
    let block = match content {
        Value::Array(blocks) => blocks
            .iter()
            .find(|b| b.get("type") == Some(&json!("text")))?,
        block => block,
    };
    block.get("text")?.as_str()
}

/// The URIs in a `roots/list` answer.
pub fn root_uris(answer: &Map<String, Value>) -> Vec<&str> {
    answer
        .get("roots")
        .and_then(Value::as_array)
        .map(|roots| {
            roots
                .iter()
                .filter_map(|r| r.get("uri").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

/// Seals and opens `requestState` values. Each state is bound to the tool (or prompt) that
/// minted it, so a state from one flow cannot be replayed into another.
#[derive(Clone)]
pub struct StateSeal {
    codec: RequestStateCodec,
}

impl StateSeal {
    /// A codec with a fresh random key: states do not survive a restart, which a test fixture
    /// does not need.
    pub fn random() -> Self {
        let mut key = Vec::with_capacity(32);
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        StateSeal {
            codec: RequestStateCodec::new(key),
        }
    }

    pub fn seal(&self, flow: &str, state: &Value) -> String {
        self.codec.seal_with(
            state.to_string().as_bytes(),
            &SealOptions::new().associated_data(flow.as_bytes()),
        )
    }

    /// The state, or `None` if it was forged, tampered with, or minted for another flow.
    pub fn open(&self, flow: &str, sealed: &str) -> Option<Value> {
        let bytes = self.codec.open_with(sealed, flow.as_bytes()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_state_round_trips_and_is_bound_to_its_flow() {
        let seal = StateSeal::random();
        let sealed = seal.seal("a", &json!({"round": 1}));
        assert_eq!(seal.open("a", &sealed), Some(json!({"round": 1})));
        assert_eq!(seal.open("b", &sealed), None);
        let mut tampered = sealed.clone();
        tampered.insert(0, 'x');
        assert_eq!(seal.open("a", &tampered), None);
        assert_eq!(StateSeal::random().open("a", &sealed), None);
    }

    #[test]
    fn answers_must_be_objects() {
        let mut responses = InputResponses::new();
        responses.insert("a".into(), json!(7));
        responses.insert(
            "b".into(),
            json!({"action": "accept", "content": {"name": "Ada"}}),
        );
        assert!(answer(Some(&responses), "a").is_none());
        let b = answer(Some(&responses), "b").unwrap();
        assert_eq!(form_field(b, "name"), Some("Ada"));
        assert_eq!(
            sampled_text(
                &json!({"content": [{"type": "text", "text": "Paris"}]})
                    .as_object()
                    .unwrap()
                    .clone()
            ),
            Some("Paris")
        );
    }
}
