//! Why a run failed. Tool failures are not here: they go back to the model as tool results
//! (so it can recover); only what ends a run is an [`AgentError`].

use std::time::Duration;

/// What ends a run early.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The model asked for tools on every one of `max_turns` turns.
    #[error("the agent did not finish within max_turns = {max_turns} model turns")]
    MaxTurnsExceeded { max_turns: usize },
    /// No model endpoint is configured; the message says what to set.
    #[error(
        "no model endpoint configured: set OPENAI_API_KEY to use OpenAI, or OPENAI_BASE_URL for an \
         OpenAI-compatible server (e.g. OPENAI_BASE_URL=http://127.0.0.1:11434/v1 for Ollama, \
         http://127.0.0.1:8000/v1 for vLLM, http://127.0.0.1:8080/v1 for llama.cpp's server)"
    )]
    NoModelEndpoint,
    /// The model endpoint failed, after the configured retries where the failure was retryable.
    #[error("model request failed after {attempts} attempt(s): {message}")]
    Model { attempts: u32, message: String },
    /// The model stream stalled longer than the idle timeout.
    #[error("the model stream sent nothing for {0:?}")]
    ModelIdle(Duration),
    /// A source could not be connected or listed.
    #[error("MCP source {source_name:?}: {message}")]
    Source {
        source_name: String,
        message: String,
    },
    /// The agent definition is invalid.
    #[error("invalid agent definition: {0}")]
    Config(String),
    /// The streamed run's task ended abnormally.
    #[error("the run task failed: {0}")]
    Task(String),
}
