//! What an agent is: instructions, a model with settings, MCP sources and tool policy.
//!
//! An [`Agent`] is plain data (cheap to clone, `Send + 'static`), so one definition can be run
//! many times, concurrently, and moved into the task of a streamed run. It can be built in
//! code or read from a TOML definition ([`AgentFile`], the format of `agents/*.toml`).

use std::{fmt, path::Path, sync::Arc};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use switchboard_gateway::config::BuiltinServer;
use switchboard_transport::Upstream;

use crate::error::AgentError;

/// The model used when an agent names none.
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";

/// Sampling settings sent with every model request; `None` leaves the server's default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    pub temperature: Option<f32>,
    /// Sent as `max_tokens` (the field every OpenAI-compatible server understands).
    pub max_tokens: Option<u32>,
    /// Whether the model may ask for several tools in one turn; sent only when tools exist.
    pub parallel_tool_calls: Option<bool>,
    /// Mark a tool `strict` where its schema already satisfies strict mode (every property
    /// required, `additionalProperties: false`). Default true; schemas are never rewritten.
    #[serde(default = "default_true")]
    pub strict_tools: bool,
}

fn default_true() -> bool {
    true
}

impl ModelSettings {
    /// No overrides, strict tools where possible.
    pub fn new() -> Self {
        Self {
            strict_tools: true,
            ..Self::default()
        }
    }
}

/// Where an agent's tools come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Any upstream the transport crate reaches (stdio child, legacy SSE, Streamable HTTP).
    /// Its tools are exposed to the model as `name__tool`.
    Upstream { name: String, upstream: Upstream },
    /// A built-in server mounted in-process (no child process). Exposed as `name__tool`.
    Builtin { name: String, server: BuiltinServer },
    /// A Switchboard gateway (Streamable HTTP, or legacy SSE for a `/sse` URL). Its names are
    /// already `upstream__tool` and valid, so they are exposed unchanged.
    Gateway { url: String },
}

impl Source {
    /// The name used in logs, errors and as the tool prefix.
    pub fn name(&self) -> &str {
        match self {
            Source::Upstream { name, .. } | Source::Builtin { name, .. } => name,
            Source::Gateway { .. } => "gateway",
        }
    }

    /// Whether tool names get the `name__` prefix.
    pub fn prefixed(&self) -> bool {
        !matches!(self, Source::Gateway { .. })
    }
}

/// What the filter sees about a tool.
#[derive(Debug, Clone, Copy)]
pub struct ToolRef<'a> {
    pub source: &'a str,
    pub tool: &'a str,
    pub exposed: &'a str,
}

/// Which tools the model sees.
#[derive(Clone, Default)]
pub enum ToolFilter {
    /// Every tool.
    #[default]
    All,
    /// Globs over the upstream tool name or the exposed `source__tool` name; deny wins, an
    /// empty allow list allows all.
    Globs { allow: GlobSet, deny: GlobSet },
    /// Any rule in code.
    Predicate(Arc<dyn Fn(&ToolRef<'_>) -> bool + Send + Sync>),
}

impl fmt::Debug for ToolFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolFilter::All => f.write_str("All"),
            ToolFilter::Globs { allow, deny } => f
                .debug_struct("Globs")
                .field("allow", &allow.len())
                .field("deny", &deny.len())
                .finish(),
            ToolFilter::Predicate(_) => f.write_str("Predicate(..)"),
        }
    }
}

/// Compiles globs into a set (an invalid glob is a configuration error).
pub fn glob_set(patterns: &[String]) -> Result<GlobSet, AgentError> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        builder.add(
            Glob::new(pattern).map_err(|e| AgentError::Config(format!("glob {pattern:?}: {e}")))?,
        );
    }
    builder
        .build()
        .map_err(|e| AgentError::Config(format!("globs: {e}")))
}

impl ToolFilter {
    /// Allow and deny globs.
    pub fn globs(allow: &[String], deny: &[String]) -> Result<Self, AgentError> {
        Ok(ToolFilter::Globs {
            allow: glob_set(allow)?,
            deny: glob_set(deny)?,
        })
    }

    /// A predicate.
    pub fn predicate(f: impl Fn(&ToolRef<'_>) -> bool + Send + Sync + 'static) -> Self {
        ToolFilter::Predicate(Arc::new(f))
    }

    /// Whether the model sees this tool.
    pub fn allows(&self, tool: &ToolRef<'_>) -> bool {
        match self {
            ToolFilter::All => true,
            ToolFilter::Globs { allow, deny } => {
                let hit = |set: &GlobSet| set.is_match(tool.tool) || set.is_match(tool.exposed);
                !hit(deny) && (allow.is_empty() || hit(allow))
            }
            ToolFilter::Predicate(f) => f(tool),
        }
    }
}

/// What happens after tools ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolUseBehavior {
    /// Feed the results back and call the model again (the default).
    #[default]
    RunLlmAgain,
    /// The first tool's output is the final output; the model is not called again.
    StopOnFirstTool,
}

/// An agent: the model, what it is told, and which tools it may use.
#[derive(Debug, Clone)]
pub struct Agent {
    pub name: String,
    /// The system message.
    pub instructions: String,
    /// Model name sent to the endpoint. Default [`DEFAULT_MODEL`].
    pub model: String,
    pub settings: ModelSettings,
    pub sources: Vec<Source>,
    pub tool_filter: ToolFilter,
    pub tool_use_behavior: ToolUseBehavior,
    /// Globs (upstream or exposed names) of tools that need approval in addition to those
    /// annotated `destructiveHint: true`.
    pub require_approval: GlobSet,
}

impl Agent {
    /// An agent with no tools, the default model and default settings.
    pub fn new(name: impl Into<String>, instructions: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            instructions: instructions.into(),
            model: DEFAULT_MODEL.to_string(),
            settings: ModelSettings::new(),
            sources: Vec::new(),
            tool_filter: ToolFilter::All,
            tool_use_behavior: ToolUseBehavior::RunLlmAgain,
            require_approval: GlobSet::empty(),
        }
    }

    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    pub fn with_source(mut self, source: Source) -> Self {
        self.sources.push(source);
        self
    }

    pub fn with_settings(mut self, settings: ModelSettings) -> Self {
        self.settings = settings;
        self
    }

    pub fn with_tool_filter(mut self, filter: ToolFilter) -> Self {
        self.tool_filter = filter;
        self
    }

    pub fn with_tool_use_behavior(mut self, behavior: ToolUseBehavior) -> Self {
        self.tool_use_behavior = behavior;
        self
    }

    /// Tools matching these globs need approval.
    pub fn with_approval_required(mut self, globs: &[String]) -> Result<Self, AgentError> {
        self.require_approval = glob_set(globs)?;
        Ok(self)
    }

    /// Reads a TOML definition.
    pub fn from_toml(text: &str) -> Result<(Self, AgentFile), AgentError> {
        let file: AgentFile =
            toml::from_str(text).map_err(|e| AgentError::Config(e.to_string()))?;
        Ok((file.to_agent()?, file))
    }

    /// Reads a TOML definition from a file.
    pub fn from_file(path: &Path) -> Result<(Self, AgentFile), AgentError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AgentError::Config(format!("{}: {e}", path.display())))?;
        Self::from_toml(&text)
    }
}

/// One `[[sources]]` entry of an agent file: exactly one of `builtin`, `connect`, `gateway`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    /// The tool prefix (not used for a gateway).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub builtin: Option<BuiltinServer>,
    #[serde(default)]
    pub connect: Option<Upstream>,
    #[serde(default)]
    pub gateway: Option<String>,
}

/// Allow/deny globs in an agent file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterFile {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

/// The TOML form of an agent (`agents/*.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    pub name: String,
    pub instructions: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub settings: Option<ModelSettings>,
    #[serde(default)]
    pub sources: Vec<SourceFile>,
    #[serde(default)]
    pub tools: FilterFile,
    #[serde(default)]
    pub tool_use_behavior: ToolUseBehavior,
    /// Extra tools needing approval (globs).
    #[serde(default)]
    pub require_approval: Vec<String>,
    /// Example tasks (documentation; `switchboard agent run --agent NAME --example N`).
    #[serde(default)]
    pub examples: Vec<String>,
}

impl AgentFile {
    /// The agent this file defines.
    pub fn to_agent(&self) -> Result<Agent, AgentError> {
        let mut agent = Agent::new(&self.name, &self.instructions)
            .with_tool_filter(ToolFilter::globs(&self.tools.allow, &self.tools.deny)?)
            .with_tool_use_behavior(self.tool_use_behavior)
            .with_approval_required(&self.require_approval)?;
        if let Some(model) = &self.model {
            agent.model = model.clone();
        }
        if let Some(settings) = &self.settings {
            agent.settings = settings.clone();
        }
        for (i, s) in self.sources.iter().enumerate() {
            let name = || s.name.clone().unwrap_or_else(|| format!("s{}", i + 1));
            let source = match (&s.builtin, &s.connect, &s.gateway) {
                (Some(server), None, None) => Source::Builtin {
                    name: name(),
                    server: server.clone(),
                },
                (None, Some(upstream), None) => Source::Upstream {
                    name: name(),
                    upstream: upstream.clone(),
                },
                (None, None, Some(url)) => Source::Gateway { url: url.clone() },
                _ => {
                    return Err(AgentError::Config(format!(
                        "source {} needs exactly one of `builtin`, `connect`, `gateway`",
                        i + 1
                    )));
                }
            };
            agent.sources.push(source);
        }
        Ok(agent)
    }
}
