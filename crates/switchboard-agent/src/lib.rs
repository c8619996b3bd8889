//! The agent runner: an LLM and MCP tools in a loop, as a library (the `switchboard agent`
//! command is a thin wrapper).
//!
//! - [`agent`]: what an agent is ([`Agent`], sources, tool filter, TOML definitions);
//! - [`model`]: OpenAI-compatible Chat Completions, streamed, with retries;
//! - [`tools`]: connected MCP sources, exposed names and schemas, calls with a timeout;
//! - [`runner`]: the loop ([`Runner::run`], [`Runner::run_streamed`]), approvals, results.
//!
//! Why our own loop rather than a framework: the loop is small, and owning it is how we get
//! what the others lack: `isError` kept (the OpenAI Agents SDK drops it), a real tool timeout
//! (60 s by default, rig added one only after a hang), approvals for `destructiveHint` tools,
//! and rmcp 3 with Switchboard's own connectors (rig pins rmcp 2).
//!
//! Why `async-openai` for the HTTP side: 0.43 is on reqwest 0.13, the version the workspace
//! already uses, so it adds no second HTTP stack (`cargo tree -d` shows no reqwest, hyper or
//! http duplicate); its `byot` mode lets us keep lenient wire types for Ollama, vLLM and
//! llama.cpp. Retries are ours ([`model::RetryPolicy`]), because a streamed request must not
//! be retried after partial output was shown.

pub mod agent;
pub mod error;
pub mod model;
pub mod runner;
#[cfg(feature = "scripted")]
pub mod scripted;
pub mod tools;

pub use agent::{Agent, AgentFile, ModelSettings, Source, ToolFilter, ToolRef, ToolUseBehavior};
pub use error::AgentError;
pub use model::{ModelConfig, RetryPolicy, Usage};
pub use runner::{
    ApprovalDecision, ApprovalReason, ApprovalRequest, Approver, RunConfig, RunEvent, RunItem,
    RunResult, RunStream, Runner, Span, Trace,
};
pub use tools::{ToolOutcome, Toolbox};
