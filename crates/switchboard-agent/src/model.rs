//! Model access: OpenAI-compatible Chat Completions, always streamed, with retries.
//!
//! Built on `async-openai` (0.43, on our reqwest 0.13, so no second HTTP stack) in its `byot`
//! ("bring your own types") mode: the request is JSON we build and the stream chunks are our
//! own lenient types. OpenAI, Ollama, vLLM and llama.cpp's server all speak this API but differ
//! in details (a missing `index` on tool-call deltas, whole arguments in one chunk, extra
//! fields, usage only on request), and strict typed deserialisation is async-openai's known
//! weak spot with them, so every field we read is optional and unknown fields are ignored.
//!
//! We always stream (`stream: true`, with `stream_options.include_usage` for token usage):
//! `Runner::run` and `Runner::run_streamed` share one code path. A request is retried with
//! exponential backoff on HTTP 429 and 5xx, on connection errors, and on a stream that breaks
//! before its first delta; a stream that breaks after deltas were delivered is an error (the
//! consumer has already seen partial output).

use std::time::Duration;

use async_openai::{Client, config::OpenAIConfig, error::OpenAIError, middleware::ReqwestService};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::AgentError;

/// OpenAI's endpoint, used when only `OPENAI_API_KEY` is set.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// Retries of one model request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt. Default 4.
    pub max_retries: u32,
    /// Delay before the first retry, doubled each time. Default 500 ms.
    pub initial_backoff: Duration,
    /// Longest delay between attempts. Default 8 s.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based).
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Where the model is and how to talk to it.
#[derive(Clone)]
pub struct ModelConfig {
    /// e.g. `https://api.openai.com/v1`, `http://127.0.0.1:11434/v1` (Ollama).
    pub base_url: String,
    /// Sent as a bearer token; local servers ignore it.
    pub api_key: String,
    pub retry: RetryPolicy,
    /// Longest silence inside a streamed response. Default 120 s.
    pub stream_idle_timeout: Duration,
    /// TCP connect timeout. Default 30 s.
    pub connect_timeout: Duration,
    /// Ask for token usage in the stream (`stream_options.include_usage`). Default true.
    pub stream_usage: bool,
}

impl std::fmt::Debug for ModelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"***")
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl ModelConfig {
    /// An endpoint with default limits.
    pub fn new(base_url: impl Into<String>, api_key: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: api_key.into(),
            retry: RetryPolicy::default(),
            stream_idle_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(30),
            stream_usage: true,
        }
    }

    /// From explicit values, falling back to `OPENAI_BASE_URL` / `OPENAI_API_KEY`. A key alone
    /// means OpenAI; a base URL alone is fine (local servers need no key). Neither is
    /// [`AgentError::NoModelEndpoint`], whose message says what to set.
    pub fn resolve(base_url: Option<String>, api_key: Option<String>) -> Result<Self, AgentError> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self::from_values(
            base_url.or_else(|| env("OPENAI_BASE_URL")),
            api_key.or_else(|| env("OPENAI_API_KEY")),
        )
    }

    /// [`ModelConfig::resolve`] without the environment.
    pub fn from_values(
        base_url: Option<String>,
        api_key: Option<String>,
    ) -> Result<Self, AgentError> {
        match (base_url, api_key) {
            (None, None) => Err(AgentError::NoModelEndpoint),
            (None, Some(key)) => Ok(Self::new(OPENAI_BASE_URL, key)),
            (Some(url), key) => Ok(Self::new(url, key.unwrap_or_else(|| "unused".into()))),
        }
    }
}

/// Token usage, summed over a run's model requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Model requests that produced a response (retried attempts are not counted).
    pub requests: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.requests += other.requests;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.total_tokens += other.total_tokens;
    }
}

/// One tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelToolCall {
    pub id: String,
    pub name: String,
    /// The raw JSON text the model produced.
    pub arguments: String,
}

/// One assistant turn, assembled from the stream.
#[derive(Debug, Clone, Default)]
pub struct ModelTurn {
    pub content: String,
    pub tool_calls: Vec<ModelToolCall>,
    pub finish_reason: Option<String>,
    pub usage: Usage,
    /// Attempts it took (1 without retries).
    pub attempts: u32,
}

#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Debug, Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Debug, Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: u64,
}

/// Assembles streamed deltas into a [`ModelTurn`].
#[derive(Debug, Default)]
struct Accumulator {
    turn: ModelTurn,
    /// Whether anything was delivered to the consumer (then a retry would duplicate output).
    delivered: bool,
}

impl Accumulator {
    fn apply(&mut self, chunk: Chunk, on_delta: &mut dyn FnMut(&str)) -> Result<(), String> {
        if let Some(error) = chunk.error {
            return Err(format!("error in stream: {error}"));
        }
        if let Some(u) = chunk.usage {
            self.turn.usage.input_tokens = u.prompt_tokens;
            self.turn.usage.output_tokens = u.completion_tokens;
            self.turn.usage.total_tokens = if u.total_tokens > 0 {
                u.total_tokens
            } else {
                u.prompt_tokens + u.completion_tokens
            };
        }
        // Only the first choice is used (we never ask for `n > 1`).
        let Some(choice) = chunk.choices.into_iter().next() else {
            return Ok(());
        };
        if let Some(reason) = choice.finish_reason {
            self.turn.finish_reason = Some(reason);
        }
        let Some(delta) = choice.delta else {
            return Ok(());
        };
        if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
            self.delivered = true;
            on_delta(&text);
            self.turn.content.push_str(&text);
        }
        for call in delta.tool_calls.unwrap_or_default() {
            // Servers that omit `index` send each call whole, or continue the last one when
            // no new `id` arrives.
            let position = match call.index {
                Some(i) => i,
                None if call.id.is_some() => self.turn.tool_calls.len(),
                None => self.turn.tool_calls.len().saturating_sub(1),
            };
            while self.turn.tool_calls.len() <= position {
                self.turn.tool_calls.push(ModelToolCall {
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                });
            }
            if let Some(slot) = self.turn.tool_calls.get_mut(position) {
                if let Some(id) = call.id.filter(|id| !id.is_empty()) {
                    slot.id = id;
                }
                if let Some(f) = call.function {
                    if let Some(name) = f.name {
                        slot.name.push_str(&name);
                    }
                    if let Some(args) = f.arguments {
                        slot.arguments.push_str(&args);
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(mut self) -> ModelTurn {
        self.turn.tool_calls.retain(|c| !c.name.is_empty());
        for (i, call) in self.turn.tool_calls.iter_mut().enumerate() {
            if call.id.is_empty() {
                call.id = format!("call_{i}");
            }
        }
        self.turn.usage.requests = 1;
        self.turn
    }
}

/// Whether an error is worth retrying, and its description.
fn classify(error: &OpenAIError) -> (bool, String) {
    match error {
        OpenAIError::ApiError(e) => {
            let status = e.status_code.as_u16();
            (status == 429 || status >= 500, e.to_string())
        }
        OpenAIError::Reqwest(e) => (
            e.is_connect() || e.is_timeout() || e.is_request() || e.is_body(),
            e.to_string(),
        ),
        OpenAIError::StreamError(e) => (true, e.to_string()),
        other => (false, other.to_string()),
    }
}

/// An OpenAI-compatible Chat Completions client.
#[derive(Clone)]
pub struct ModelClient {
    client: Client<OpenAIConfig>,
    config: ModelConfig,
}

impl std::fmt::Debug for ModelClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelClient")
            .field("config", &self.config)
            .finish()
    }
}

/// What a streamed request reports besides the final turn.
pub(crate) enum StreamNote<'a> {
    Delta(&'a str),
    Retry { attempt: u32, error: &'a str },
}

impl ModelClient {
    pub fn new(config: ModelConfig) -> Result<Self, AgentError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| AgentError::Config(format!("HTTP client: {e}")))?;
        let openai = OpenAIConfig::new()
            .with_api_base(config.base_url.trim_end_matches('/'))
            .with_api_key(config.api_key.clone());
        Ok(Self {
            // A plain service: async-openai's default executor has its own retry layer (3
            // retries, its own backoff, and a non-JSON 429 body becomes a deserialisation
            // error); ours must be the only one, so retries stay bounded and configurable.
            client: Client::with_config(openai)
                .with_http_client(http.clone())
                .with_http_service(ReqwestService::new(http)),
            config,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Sends `request` (a Chat Completions body; `stream` fields are set here) and assembles
    /// the streamed answer, retrying per [`RetryPolicy`].
    pub(crate) async fn complete(
        &self,
        mut request: Value,
        note: &mut (dyn FnMut(StreamNote<'_>) + Send),
    ) -> Result<ModelTurn, AgentError> {
        if let Some(obj) = request.as_object_mut() {
            obj.insert("stream".into(), Value::Bool(true));
            if self.config.stream_usage {
                obj.insert(
                    "stream_options".into(),
                    serde_json::json!({"include_usage": true}),
                );
            }
        }
        let policy = self.config.retry;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (retryable, message) = match self.attempt(&request, note).await {
                Ok(mut turn) => {
                    turn.attempts = attempt;
                    return Ok(turn);
                }
                Err(AttemptError::Fatal(e)) => return Err(e),
                Err(AttemptError::Failed { retryable, message }) => (retryable, message),
            };
            if !retryable || attempt > policy.max_retries {
                return Err(AgentError::Model {
                    attempts: attempt,
                    message,
                });
            }
            tracing::warn!(attempt, error = %message, "model request failed; retrying");
            note(StreamNote::Retry {
                attempt,
                error: &message,
            });
            tokio::time::sleep(policy.backoff(attempt)).await;
        }
    }

    async fn attempt(
        &self,
        request: &Value,
        note: &mut (dyn FnMut(StreamNote<'_>) + Send),
    ) -> Result<ModelTurn, AttemptError> {
        let mut stream = self
            .client
            .chat()
            .create_stream_byot::<&Value, Chunk>(request)
            .await
            .map_err(|e| {
                let (retryable, message) = classify(&e);
                AttemptError::Failed { retryable, message }
            })?;
        let mut acc = Accumulator::default();
        let idle = self.config.stream_idle_timeout;
        loop {
            let next = tokio::time::timeout(idle, stream.next())
                .await
                .map_err(|_| AttemptError::Fatal(AgentError::ModelIdle(idle)))?;
            let Some(item) = next else { break };
            let failed = |retryable: bool, message: String, delivered: bool| {
                if delivered {
                    AttemptError::Failed {
                        retryable: false,
                        message: format!("{message} (after partial output)"),
                    }
                } else {
                    AttemptError::Failed { retryable, message }
                }
            };
            match item {
                Ok(chunk) => {
                    let mut on_delta = |t: &str| note(StreamNote::Delta(t));
                    if let Err(message) = acc.apply(chunk, &mut on_delta) {
                        return Err(failed(false, message, acc.delivered));
                    }
                }
                Err(e) => {
                    let (retryable, message) = classify(&e);
                    return Err(failed(retryable, message, acc.delivered));
                }
            }
        }
        Ok(acc.finish())
    }
}

enum AttemptError {
    Failed { retryable: bool, message: String },
    Fatal(AgentError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(v: Value) -> Chunk {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("chunk: {e}"))
    }

    #[test]
    fn assembles_split_tool_calls_and_usage() {
        let mut acc = Accumulator::default();
        let mut seen = String::new();
        let mut on = |t: &str| seen.push_str(t);
        for v in [
            serde_json::json!({"choices":[{"delta":{"content":"Hi"}}]}),
            serde_json::json!({"choices":[{"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"sql__query","arguments":"{\"sq"}}]}}]}),
            serde_json::json!({"choices":[{"delta":{"tool_calls":[{"index":1,"id":"b","function":{"name":"x","arguments":"{}"}}]}}]}),
            serde_json::json!({"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"l\":1}"}}]},"finish_reason":"tool_calls"}]}),
            serde_json::json!({"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}),
        ] {
            assert!(acc.apply(chunk(v), &mut on).is_ok());
        }
        let turn = acc.finish();
        assert_eq!(seen, "Hi");
        assert_eq!(turn.tool_calls.len(), 2);
        assert_eq!(turn.tool_calls[0].arguments, "{\"sql\":1}");
        assert_eq!(turn.tool_calls[1].name, "x");
        assert_eq!(turn.usage.total_tokens, 12);
        assert_eq!(turn.finish_reason.as_deref(), Some("tool_calls"));
    }

    #[test]
    fn calls_without_index_or_id_are_numbered() {
        let mut acc = Accumulator::default();
        let mut on = |_: &str| {};
        let v = serde_json::json!({"choices":[{"delta":{"tool_calls":[
            {"function":{"name":"a","arguments":"{}"}}]}}]});
        assert!(acc.apply(chunk(v), &mut on).is_ok());
        let turn = acc.finish();
        assert_eq!(turn.tool_calls[0].id, "call_0");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(500));
        assert_eq!(p.backoff(2), Duration::from_secs(1));
        assert_eq!(p.backoff(10), Duration::from_secs(8));
    }

    #[test]
    fn resolve_prefers_explicit_values() {
        assert!(matches!(
            ModelConfig::from_values(None, None),
            Err(AgentError::NoModelEndpoint)
        ));
        let c = ModelConfig::from_values(Some("http://127.0.0.1:1/v1".into()), None);
        assert!(matches!(c, Ok(ref c) if c.base_url == "http://127.0.0.1:1/v1"));
        let c = ModelConfig::from_values(None, Some("k".into()));
        assert!(matches!(c, Ok(ref c) if c.base_url == OPENAI_BASE_URL));
    }
}
