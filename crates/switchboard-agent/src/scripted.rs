//! A scripted OpenAI-compatible Chat Completions endpoint on loopback, for tests.
//!
//! No real model can be fetched where Switchboard is built and tested, so the runner is tested
//! against this: it replays a script of streamed replies, one per request, and records every
//! request so a test can assert on what the runner sent (tool schemas, tool results fed back,
//! turn order). It serves the same SSE chunk format as OpenAI, Ollama and vLLM.
//!
//! Only compiled with the `scripted` feature; the runner's own tests and the binary's CLI tests
//! share it.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};

/// Builds a reply from the request it answers (to quote what a tool really returned).
pub type Dynamic = Box<dyn Fn(&Value) -> Vec<Value> + Send + Sync>;

/// One scripted answer.
pub enum Reply {
    /// These chunks as an SSE stream, then `[DONE]`.
    Chunks(Vec<Value>),
    /// Chunks computed from the request.
    Dynamic(Dynamic),
    /// An HTTP error status with an OpenAI-style error body.
    Status(u16),
}

/// The endpoint's script and what it received.
#[derive(Default)]
pub struct ScriptedModel {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Value>>,
    /// Served after the script ran out (for `max_turns`); without it, HTTP 410.
    repeat: Mutex<Option<Vec<Value>>>,
}

impl ScriptedModel {
    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Answers every request past the script's end with `chunks`.
    pub fn repeat_forever(&self, chunks: Vec<Value>) {
        if let Ok(mut repeat) = self.repeat.lock() {
            *repeat = Some(chunks);
        }
    }

    /// Starts serving `replies` at `http://127.0.0.1:PORT/v1` (the base URL to configure).
    pub async fn start(replies: Vec<Reply>) -> std::io::Result<(String, Arc<ScriptedModel>)> {
        let model = Arc::new(ScriptedModel {
            replies: Mutex::new(replies.into()),
            ..ScriptedModel::default()
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(model.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((format!("http://{addr}/v1"), model))
    }
}

async fn completions(State(model): State<Arc<ScriptedModel>>, body: String) -> Response {
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if let Ok(mut r) = model.requests.lock() {
        r.push(request.clone());
    }
    let next = model.replies.lock().ok().and_then(|mut r| r.pop_front());
    match next {
        Some(Reply::Chunks(c)) => sse(&c),
        Some(Reply::Dynamic(make)) => sse(&make(&request)),
        Some(Reply::Status(code)) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            r#"{"error":{"message":"scripted failure","type":"server_error","param":null,"code":null}}"#,
        )
            .into_response(),
        None => match model.repeat.lock().ok().and_then(|r| r.clone()) {
            Some(c) => sse(&c),
            None => (StatusCode::GONE, "script exhausted").into_response(),
        },
    }
}

fn sse(chunks: &[Value]) -> Response {
    let mut body = String::new();
    for c in chunks {
        body.push_str(&format!("data: {c}\n\n"));
    }
    body.push_str("data: [DONE]\n\n");
    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}

/// A text answer, split in two deltas as servers do, with usage.
pub fn text(answer: &str) -> Vec<Value> {
    let mid = answer
        .char_indices()
        .nth(answer.chars().count() / 2)
        .map_or(0, |(i, _)| i);
    let (a, b) = answer.split_at(mid);
    vec![
        json!({"choices":[{"index":0,"delta":{"role":"assistant","content":a}}]}),
        json!({"choices":[{"index":0,"delta":{"content":b},"finish_reason":"stop"}]}),
        json!({"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":5,"total_tokens":16}}),
    ]
}

/// Tool calls `(id, name, arguments)`, each with its arguments split over two chunks.
pub fn calls(list: &[(&str, &str, Value)]) -> Vec<Value> {
    let mut chunks = Vec::new();
    for (i, (id, name, args)) in list.iter().enumerate() {
        let args = args.to_string();
        let (a, b) = args.split_at(args.len() / 2);
        chunks.push(json!({"choices":[{"index":0,"delta":{"tool_calls":[
            {"index":i,"id":id,"type":"function","function":{"name":name,"arguments":a}}]}}]}));
        chunks.push(json!({"choices":[{"index":0,"delta":{"tool_calls":[
            {"index":i,"function":{"arguments":b}}]}}]}));
    }
    chunks.push(json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}));
    chunks.push(
        json!({"choices":[],"usage":{"prompt_tokens":20,"completion_tokens":10,"total_tokens":30}}),
    );
    chunks
}

/// The `tool` messages of a recorded request (what the runner fed back to the model).
pub fn tool_messages(request: &Value) -> Vec<Value> {
    request["messages"]
        .as_array()
        .map(|m| m.iter().filter(|m| m["role"] == "tool").cloned().collect())
        .unwrap_or_default()
}
