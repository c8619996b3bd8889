//! The loop: call the model; if it asked for tools, (approve and) run them, feed the results
//! back and call it again; stop on an answer without tool calls, or after `max_turns`.
//!
//! One code path serves [`Runner::run`] and [`Runner::run_streamed`]: the streamed form runs
//! the same loop in a task and sends [`RunEvent`]s on an unbounded channel (unbounded so a
//! slow consumer never drops a delta; what it holds is bounded by the run's own output).
//! Tool calls of one turn are approved one after another (an approver may be a person at a
//! prompt), then the approved ones run concurrently; their results go back in the model's
//! order, so the conversation is deterministic.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use rmcp::model::JsonObject;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_transport::ConnectOptions;
use tokio::sync::mpsc;

use crate::{
    agent::{Agent, ToolUseBehavior},
    error::AgentError,
    model::{ModelClient, ModelConfig, StreamNote, Usage},
    tools::{
        TOOL_ERROR_PREFIX, TOOL_REFUSED_PREFIX, ToolEntry, ToolOutcome, Toolbox, result_text,
        truncate,
    },
};

/// Model turns allowed per run unless configured.
pub const DEFAULT_MAX_TURNS: usize = 10;
/// Deadline of one tool call unless configured.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(60);
/// Characters of one tool result fed to the model unless configured.
pub const DEFAULT_MAX_TOOL_OUTPUT_CHARS: usize = 100_000;

/// Why a call needs approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalReason {
    /// The tool is annotated `destructiveHint: true`.
    DestructiveHint,
    /// The agent's `require_approval` globs match it.
    Configured,
}

/// A call waiting for approval.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalRequest {
    pub agent: String,
    pub call_id: String,
    /// The exposed name (`source__tool`).
    pub name: String,
    pub source: String,
    pub tool: String,
    pub arguments: Value,
    pub reason: ApprovalReason,
}

/// The approver's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalDecision {
    Approve,
    /// The call is not made; the model is told it was refused (with the reason, if any).
    Deny {
        reason: Option<String>,
    },
}

/// Decides approvals (a policy in code, or a prompt in the CLI).
pub type Approver =
    Arc<dyn Fn(ApprovalRequest) -> BoxFuture<'static, ApprovalDecision> + Send + Sync>;

/// Knobs of a run; every limit has a documented default.
#[derive(Clone)]
pub struct RunConfig {
    /// Model turns before [`AgentError::MaxTurnsExceeded`]. Default [`DEFAULT_MAX_TURNS`] (10).
    pub max_turns: usize,
    /// Deadline of one tool call. Default [`DEFAULT_TOOL_TIMEOUT`] (60 s).
    pub tool_timeout: Duration,
    /// Reuse a source's tool list until it sends `list_changed`. Default true.
    pub cache_tools: bool,
    /// Longest tool result fed to the model, in characters. Default 100 000.
    pub max_tool_output_chars: usize,
    /// How sources are connected (timeouts, stdio limits). Default: the transport's defaults.
    pub connect: ConnectOptions,
    /// Decides calls that need approval. Default none: such calls are refused.
    pub approver: Option<Approver>,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            max_turns: DEFAULT_MAX_TURNS,
            tool_timeout: DEFAULT_TOOL_TIMEOUT,
            cache_tools: true,
            max_tool_output_chars: DEFAULT_MAX_TOOL_OUTPUT_CHARS,
            connect: ConnectOptions::default(),
            approver: None,
        }
    }
}

impl std::fmt::Debug for RunConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunConfig")
            .field("max_turns", &self.max_turns)
            .field("tool_timeout", &self.tool_timeout)
            .field("cache_tools", &self.cache_tools)
            .field("max_tool_output_chars", &self.max_tool_output_chars)
            .field("approver", &self.approver.is_some())
            .finish_non_exhaustive()
    }
}

/// What happened during a run, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunItem {
    /// Text from the model.
    Message { text: String },
    /// The model asked for a tool.
    ToolCall {
        call_id: String,
        name: String,
        arguments: Value,
    },
    /// What the model was given back.
    ToolOutput {
        call_id: String,
        name: String,
        outcome: ToolOutcome,
        output: String,
    },
}

/// One timed step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub turn: usize,
    /// `model` or `tool`.
    pub kind: String,
    /// The model name, or the exposed tool name.
    pub name: String,
    pub duration_ms: u64,
    /// Model: attempts and finish reason; tool: the outcome.
    pub detail: String,
}

/// A run's timeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub spans: Vec<Span>,
}

/// What a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub agent: String,
    pub final_output: String,
    pub items: Vec<RunItem>,
    pub usage: Usage,
    pub trace: Trace,
    /// Model turns taken.
    pub turns: usize,
    /// The whole conversation in Chat Completions form, to continue it (chat history).
    #[serde(skip)]
    pub messages: Vec<Value>,
}

/// Progress of a streamed run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunEvent {
    TurnStarted {
        turn: usize,
    },
    /// A piece of the model's text.
    TextDelta {
        text: String,
    },
    /// A model request failed and is being retried.
    ModelRetry {
        attempt: u32,
        error: String,
    },
    ApprovalRequested {
        call_id: String,
        name: String,
        arguments: Value,
    },
    ApprovalResolved {
        call_id: String,
        name: String,
        approved: bool,
    },
    ToolCallStarted {
        call_id: String,
        name: String,
        arguments: Value,
    },
    ToolCallFinished {
        call_id: String,
        name: String,
        outcome: ToolOutcome,
        output: String,
    },
}

/// A run in progress: events, then the result.
#[derive(Debug)]
pub struct RunStream {
    events: mpsc::UnboundedReceiver<RunEvent>,
    task: tokio::task::JoinHandle<Result<RunResult, AgentError>>,
}

impl RunStream {
    /// The next event; `None` once the run ended.
    pub async fn next_event(&mut self) -> Option<RunEvent> {
        self.events.recv().await
    }

    /// Waits for the result (events not yet read are dropped).
    pub async fn finish(self) -> Result<RunResult, AgentError> {
        drop(self.events);
        self.task
            .await
            .map_err(|e| AgentError::Task(e.to_string()))?
    }
}

type Sink = Option<mpsc::UnboundedSender<RunEvent>>;

fn emit(sink: &Sink, event: RunEvent) {
    if let Some(tx) = sink {
        // A consumer that stopped listening does not stop the run.
        let _ = tx.send(event);
    }
}

/// Runs agents against one model endpoint.
#[derive(Debug, Clone)]
pub struct Runner {
    model: ModelClient,
    config: RunConfig,
}

struct Pending<'a> {
    call_id: String,
    name: String,
    arguments: Value,
    /// Ready to run, or the text the model gets instead.
    action: Result<(&'a ToolEntry, Option<JsonObject>), (ToolOutcome, String)>,
}

impl Runner {
    pub fn new(model: ModelConfig, config: RunConfig) -> Result<Self, AgentError> {
        Ok(Self {
            model: ModelClient::new(model)?,
            config,
        })
    }

    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// Connects the agent's sources, runs `input` to a final answer, and disconnects.
    pub async fn run(&self, agent: &Agent, input: &str) -> Result<RunResult, AgentError> {
        self.run_inner(agent, input, None).await
    }

    /// Like [`Runner::run`], reporting progress as [`RunEvent`]s.
    pub fn run_streamed(&self, agent: &Agent, input: &str) -> RunStream {
        let (tx, events) = mpsc::unbounded_channel();
        let runner = self.clone();
        let agent = agent.clone();
        let input = input.to_string();
        let task = tokio::spawn(async move { runner.run_inner(&agent, &input, Some(tx)).await });
        RunStream { events, task }
    }

    async fn run_inner(
        &self,
        agent: &Agent,
        input: &str,
        sink: Sink,
    ) -> Result<RunResult, AgentError> {
        let toolbox = Toolbox::connect(
            &agent.sources,
            &self.config.connect,
            self.config.cache_tools,
        )
        .await?;
        let messages = initial_messages(agent, Vec::new(), input);
        let result = self.run_with(&toolbox, agent, messages, sink).await;
        toolbox.shutdown().await;
        result
    }

    /// Runs on already connected sources, continuing `history` (a previous
    /// [`RunResult::messages`], or empty) with `input`: the building block of a chat.
    pub async fn run_in(
        &self,
        toolbox: &Toolbox,
        agent: &Agent,
        history: Vec<Value>,
        input: &str,
        events: Option<mpsc::UnboundedSender<RunEvent>>,
    ) -> Result<RunResult, AgentError> {
        let messages = initial_messages(agent, history, input);
        self.run_with(toolbox, agent, messages, events).await
    }

    async fn run_with(
        &self,
        toolbox: &Toolbox,
        agent: &Agent,
        mut messages: Vec<Value>,
        sink: Sink,
    ) -> Result<RunResult, AgentError> {
        let mut items = Vec::new();
        let mut usage = Usage::default();
        let mut trace = Trace::default();
        for turn in 1..=self.config.max_turns {
            let tools = toolbox.tools(agent).await?;
            let request = build_request(agent, &messages, &tools);
            emit(&sink, RunEvent::TurnStarted { turn });
            let started = Instant::now();
            let mut note = |n: StreamNote<'_>| match n {
                StreamNote::Delta(text) => emit(
                    &sink,
                    RunEvent::TextDelta {
                        text: text.to_string(),
                    },
                ),
                StreamNote::Retry { attempt, error } => emit(
                    &sink,
                    RunEvent::ModelRetry {
                        attempt,
                        error: error.to_string(),
                    },
                ),
            };
            let answer = self.model.complete(request, &mut note).await?;
            usage.add(&answer.usage);
            trace.spans.push(Span {
                turn,
                kind: "model".into(),
                name: agent.model.clone(),
                duration_ms: elapsed_ms(started),
                detail: format!(
                    "attempts={} finish_reason={}",
                    answer.attempts,
                    answer.finish_reason.as_deref().unwrap_or("-")
                ),
            });
            let mut assistant = json!({"role": "assistant", "content": Value::Null});
            if !answer.content.is_empty() {
                assistant["content"] = Value::String(answer.content.clone());
                items.push(RunItem::Message {
                    text: answer.content.clone(),
                });
            }
            if answer.tool_calls.is_empty() {
                messages.push(assistant);
                return Ok(RunResult {
                    agent: agent.name.clone(),
                    final_output: answer.content,
                    items,
                    usage,
                    trace,
                    turns: turn,
                    messages,
                });
            }
            assistant["tool_calls"] = Value::Array(
                answer
                    .tool_calls
                    .iter()
                    .map(|c| {
                        json!({"id": c.id, "type": "function",
                               "function": {"name": c.name, "arguments": c.arguments}})
                    })
                    .collect(),
            );
            messages.push(assistant);

            // Resolve and approve, in the model's order.
            let mut pending = Vec::with_capacity(answer.tool_calls.len());
            for call in &answer.tool_calls {
                let parsed: Result<Option<JsonObject>, String> = if call.arguments.trim().is_empty()
                {
                    Ok(None)
                } else {
                    serde_json::from_str::<JsonObject>(&call.arguments)
                        .map(Some)
                        .map_err(|e| format!("the arguments are not a JSON object: {e}"))
                };
                let arguments = parsed
                    .as_ref()
                    .ok()
                    .and_then(|a| a.clone())
                    .map(Value::Object)
                    .unwrap_or_else(|| Value::String(call.arguments.clone()));
                items.push(RunItem::ToolCall {
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    arguments: arguments.clone(),
                });
                let action = match (tools.iter().find(|t| t.exposed == call.name), parsed) {
                    (None, _) => Err((
                        ToolOutcome::Failed,
                        format!("{TOOL_ERROR_PREFIX}there is no tool named {:?}", call.name),
                    )),
                    (Some(_), Err(e)) => {
                        Err((ToolOutcome::Failed, format!("{TOOL_ERROR_PREFIX}{e}")))
                    }
                    (Some(entry), Ok(args)) => {
                        match self
                            .approve(agent, entry, &call.id, &arguments, &sink)
                            .await
                        {
                            ApprovalDecision::Approve => Ok((entry, args)),
                            ApprovalDecision::Deny { reason } => Err((
                                ToolOutcome::Refused,
                                format!(
                                    "{TOOL_REFUSED_PREFIX}the user did not approve this call to {}{}. \
                                     It was not executed; do not retry it unless the user asks.",
                                    call.name,
                                    reason.map(|r| format!(" ({r})")).unwrap_or_default()
                                ),
                            )),
                        }
                    }
                };
                pending.push(Pending {
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    arguments,
                    action,
                });
            }

            // Run the approved calls concurrently.
            let outputs = futures::future::join_all(pending.into_iter().map(|p| {
                let sink = sink.clone();
                async move {
                    let started = Instant::now();
                    let (outcome, output) = match p.action {
                        Err(done) => done,
                        Ok((entry, args)) => {
                            emit(
                                &sink,
                                RunEvent::ToolCallStarted {
                                    call_id: p.call_id.clone(),
                                    name: p.name.clone(),
                                    arguments: p.arguments.clone(),
                                },
                            );
                            let max = self.config.max_tool_output_chars;
                            match toolbox.call(entry, args, self.config.tool_timeout).await {
                                Ok(result) => {
                                    let outcome = if result.is_error == Some(true) {
                                        ToolOutcome::Error
                                    } else {
                                        ToolOutcome::Success
                                    };
                                    (outcome, result_text(&result, max))
                                }
                                Err(e) => (
                                    ToolOutcome::Failed,
                                    truncate(format!("{TOOL_ERROR_PREFIX}{e}"), max),
                                ),
                            }
                        }
                    };
                    emit(
                        &sink,
                        RunEvent::ToolCallFinished {
                            call_id: p.call_id.clone(),
                            name: p.name.clone(),
                            outcome,
                            output: output.clone(),
                        },
                    );
                    (p.call_id, p.name, outcome, output, elapsed_ms(started))
                }
            }))
            .await;

            let mut first_output = None;
            for (call_id, name, outcome, output, duration_ms) in outputs {
                messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
                trace.spans.push(Span {
                    turn,
                    kind: "tool".into(),
                    name: name.clone(),
                    duration_ms,
                    detail: format!("{outcome:?}"),
                });
                first_output.get_or_insert_with(|| output.clone());
                items.push(RunItem::ToolOutput {
                    call_id,
                    name,
                    outcome,
                    output,
                });
            }
            if agent.tool_use_behavior == ToolUseBehavior::StopOnFirstTool {
                return Ok(RunResult {
                    agent: agent.name.clone(),
                    final_output: first_output.unwrap_or_default(),
                    items,
                    usage,
                    trace,
                    turns: turn,
                    messages,
                });
            }
        }
        Err(AgentError::MaxTurnsExceeded {
            max_turns: self.config.max_turns,
        })
    }

    async fn approve(
        &self,
        agent: &Agent,
        entry: &ToolEntry,
        call_id: &str,
        arguments: &Value,
        sink: &Sink,
    ) -> ApprovalDecision {
        let reason = if entry.destructive {
            ApprovalReason::DestructiveHint
        } else if agent.require_approval.is_match(&entry.tool)
            || agent.require_approval.is_match(&entry.exposed)
        {
            ApprovalReason::Configured
        } else {
            return ApprovalDecision::Approve;
        };
        emit(
            sink,
            RunEvent::ApprovalRequested {
                call_id: call_id.to_string(),
                name: entry.exposed.clone(),
                arguments: arguments.clone(),
            },
        );
        let decision = match &self.config.approver {
            Some(approver) => {
                approver(ApprovalRequest {
                    agent: agent.name.clone(),
                    call_id: call_id.to_string(),
                    name: entry.exposed.clone(),
                    source: entry.source.clone(),
                    tool: entry.tool.clone(),
                    arguments: arguments.clone(),
                    reason,
                })
                .await
            }
            None => ApprovalDecision::Deny {
                reason: Some("no approver is configured".into()),
            },
        };
        emit(
            sink,
            RunEvent::ApprovalResolved {
                call_id: call_id.to_string(),
                name: entry.exposed.clone(),
                approved: decision == ApprovalDecision::Approve,
            },
        );
        decision
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn initial_messages(agent: &Agent, history: Vec<Value>, input: &str) -> Vec<Value> {
    let mut messages = history;
    if messages.is_empty() && !agent.instructions.trim().is_empty() {
        messages.push(json!({"role": "system", "content": agent.instructions}));
    }
    messages.push(json!({"role": "user", "content": input}));
    messages
}

/// The Chat Completions request body (without the `stream` fields).
pub fn build_request(agent: &Agent, messages: &[Value], tools: &[ToolEntry]) -> Value {
    let mut request = json!({"model": agent.model, "messages": messages});
    let s = &agent.settings;
    if let Some(t) = s.temperature {
        request["temperature"] = json!(t);
    }
    if let Some(m) = s.max_tokens {
        request["max_tokens"] = json!(m);
    }
    if !tools.is_empty() {
        request["tools"] =
            Value::Array(tools.iter().map(|t| t.to_openai(s.strict_tools)).collect());
        if let Some(p) = s.parallel_tool_calls {
            request["parallel_tool_calls"] = json!(p);
        }
    }
    request
}
