//! `switchboard agent run`: one task through the agent runner (`switchboard-agent`), printing
//! the streamed answer on stdout and tool calls on stderr as they happen.
//!
//! The model endpoint comes from `--base-url`/`--api-key` or `OPENAI_BASE_URL`/
//! `OPENAI_API_KEY`; without either the error says exactly what to set (for Ollama,
//! `OPENAI_BASE_URL=http://127.0.0.1:11434/v1`). The three demo agents of the seed ship in
//! `agents/*.toml` and are built into the binary, so `--agent data-analyst` works anywhere.

use std::{
    io::{IsTerminal, Write},
    path::Path,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use switchboard_agent::{
    Agent, AgentFile, ApprovalDecision, ModelConfig, RunConfig, RunEvent, Runner, Source,
    ToolOutcome,
};
use switchboard_transport::Upstream;

/// The demo agents built into the binary (the files in `agents/`).
const BUILTIN_AGENTS: &[(&str, &str)] = &[
    (
        "file-manager",
        include_str!("../../../../agents/file-manager.toml"),
    ),
    (
        "data-analyst",
        include_str!("../../../../agents/data-analyst.toml"),
    ),
    (
        "crm-assistant",
        include_str!("../../../../agents/crm-assistant.toml"),
    ),
];

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Run one task: `switchboard agent run --agent data-analyst "Which customer spent most?"`.
    Run(Box<RunArgs>),
    /// List the built-in demo agents and their example tasks.
    List,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A built-in agent (file-manager, data-analyst, crm-assistant), `agents/NAME.toml`, or a
    /// TOML file.
    #[arg(long, conflicts_with = "instructions")]
    pub agent: Option<String>,
    /// Instructions of an ad-hoc agent (instead of --agent).
    #[arg(long)]
    pub instructions: Option<String>,
    /// An MCP server: a URL (`…/sse` means legacy SSE), `builtin:sql`, `builtin:crm`,
    /// `builtin:fs=DIR`, or a command line run over stdio. Prefix `NAME=` to choose the tool
    /// prefix. Repeat for several.
    #[arg(long = "server")]
    pub servers: Vec<String>,
    /// A Switchboard gateway URL; its tools are exposed under their gateway names.
    #[arg(long)]
    pub gateway: Option<String>,
    /// The model name (overrides the agent's).
    #[arg(long, env = "SWITCHBOARD_AGENT_MODEL")]
    pub model: Option<String>,
    /// The OpenAI-compatible endpoint, e.g. http://127.0.0.1:11434/v1 for Ollama.
    #[arg(long, env = "OPENAI_BASE_URL")]
    pub base_url: Option<String>,
    /// The API key (local servers need none).
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Model turns before giving up.
    #[arg(long, default_value_t = switchboard_agent::runner::DEFAULT_MAX_TURNS)]
    pub max_turns: usize,
    /// Deadline of one tool call, in seconds.
    #[arg(long, default_value_t = 60)]
    pub tool_timeout_secs: u64,
    /// Approve every call that needs approval (destructiveHint or configured) without asking.
    /// Without it, such calls are asked at the terminal, or refused when stdin is not one.
    #[arg(long)]
    pub approve_all: bool,
    /// Print the full RunResult as JSON at the end instead of streaming text.
    #[arg(long)]
    pub json: bool,
    /// Run the agent's N-th example task (1-based) instead of TASK.
    #[arg(long)]
    pub example: Option<usize>,
    /// The task.
    pub task: Vec<String>,
}

pub async fn run(command: AgentCommand) -> anyhow::Result<()> {
    match command {
        AgentCommand::List => {
            for (name, text) in BUILTIN_AGENTS {
                let (_, file) = Agent::from_toml(text)?;
                println!("{name}");
                for (i, example) in file.examples.iter().enumerate() {
                    println!(
                        "  --example {}: {}",
                        i + 1,
                        example.trim().replace('\n', " ")
                    );
                }
            }
            Ok(())
        }
        AgentCommand::Run(args) => run_task(*args).await,
    }
}

fn load_agent(spec: &str) -> anyhow::Result<(Agent, AgentFile)> {
    let path = Path::new(spec);
    if path.is_file() {
        return Ok(Agent::from_file(path)?);
    }
    let local = Path::new("agents").join(format!("{spec}.toml"));
    if local.is_file() {
        return Ok(Agent::from_file(&local)?);
    }
    match BUILTIN_AGENTS.iter().find(|(name, _)| *name == spec) {
        Some((_, text)) => Ok(Agent::from_toml(text)?),
        None => bail!(
            "no agent {spec:?}: not a file, not agents/{spec}.toml, and not one of {}",
            BUILTIN_AGENTS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `--server` → a source.
pub fn parse_server(spec: &str, index: usize) -> anyhow::Result<Source> {
    let (name, target) = match spec.split_once('=') {
        Some((n, rest))
            if !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                && !spec.starts_with("builtin:") =>
        {
            (Some(n.to_string()), rest)
        }
        _ => (None, spec),
    };
    let name = |default: &str| name.clone().unwrap_or_else(|| default.to_string());
    use switchboard_gateway::config::BuiltinServer;
    if let Some(builtin) = target.strip_prefix("builtin:") {
        let (kind, arg) = builtin.split_once('=').unwrap_or((builtin, ""));
        let server = match kind {
            "sql" => BuiltinServer::Sql {
                url: None,
                demo_db: None,
                allow_writes: false,
            },
            "crm" => BuiltinServer::Crm {
                db: None,
                demo: true,
            },
            "fs" => BuiltinServer::Fs {
                roots: vec![if arg.is_empty() {
                    ".".into()
                } else {
                    arg.into()
                }],
                read_only: false,
            },
            other => bail!("unknown built-in server {other:?} (sql, crm, fs)"),
        };
        return Ok(Source::Builtin {
            name: name(kind),
            server,
        });
    }
    if target.starts_with("http://") || target.starts_with("https://") {
        return Ok(Source::Upstream {
            name: name(&format!("s{index}")),
            upstream: Upstream::from_url(target),
        });
    }
    let mut words = target.split_whitespace().map(String::from);
    let Some(command) = words.next() else {
        bail!("--server needs a URL, builtin:KIND or a command");
    };
    let default = Path::new(&command)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("stdio")
        .to_string();
    Ok(Source::Upstream {
        name: name(&default),
        upstream: Upstream::stdio(command, words.collect()),
    })
}

fn ask(request: &switchboard_agent::ApprovalRequest) -> ApprovalDecision {
    eprint!(
        "\n? {} wants to call {} ({:?}) with {}\n  approve? [y/N] ",
        request.agent, request.name, request.reason, request.arguments
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(_) if matches!(line.trim(), "y" | "Y" | "yes") => ApprovalDecision::Approve,
        _ => ApprovalDecision::Deny {
            reason: Some("denied at the prompt".into()),
        },
    }
}

async fn run_task(args: RunArgs) -> anyhow::Result<()> {
    let (mut agent, file) = match (&args.agent, &args.instructions) {
        (Some(spec), _) => {
            let (agent, file) = load_agent(spec)?;
            (agent, Some(file))
        }
        (None, Some(instructions)) => (Agent::new("agent", instructions), None),
        (None, None) => (Agent::new("agent", "You are a helpful assistant."), None),
    };
    for (i, spec) in args.servers.iter().enumerate() {
        agent.sources.push(parse_server(spec, i + 1)?);
    }
    if let Some(url) = &args.gateway {
        agent.sources.push(Source::Gateway { url: url.clone() });
    }
    if let Some(model) = &args.model {
        agent.model = model.clone();
    }
    let task = match args.example {
        Some(n) => file
            .as_ref()
            .and_then(|f| f.examples.get(n.wrapping_sub(1)))
            .cloned()
            .with_context(|| format!("the agent has no example {n}"))?,
        None => args.task.join(" "),
    };
    if task.trim().is_empty() {
        bail!("no task: give one as the last argument, or --example N with --agent");
    }

    let model = ModelConfig::resolve(args.base_url.clone(), args.api_key.clone())?;
    let interactive = std::io::stdin().is_terminal();
    let approve_all = args.approve_all;
    let config = RunConfig {
        max_turns: args.max_turns,
        tool_timeout: Duration::from_secs(args.tool_timeout_secs),
        approver: Some(Arc::new(move |request| {
            Box::pin(async move {
                if approve_all {
                    ApprovalDecision::Approve
                } else if interactive {
                    tokio::task::spawn_blocking(move || ask(&request))
                        .await
                        .unwrap_or(ApprovalDecision::Deny {
                            reason: Some("the prompt failed".into()),
                        })
                } else {
                    ApprovalDecision::Deny {
                        reason: Some(
                            "approval needed and stdin is not a terminal (use --approve-all)"
                                .into(),
                        ),
                    }
                }
            })
        })),
        ..RunConfig::default()
    };
    let runner = Runner::new(model, config)?;
    let mut stream = runner.run_streamed(&agent, &task);
    let mut stdout = std::io::stdout();
    while let Some(event) = stream.next_event().await {
        if args.json {
            continue;
        }
        match event {
            RunEvent::TextDelta { text } => {
                let _ = write!(stdout, "{text}");
                let _ = stdout.flush();
            }
            RunEvent::ToolCallStarted {
                name, arguments, ..
            } => {
                eprintln!("\n→ {name} {arguments} …");
            }
            RunEvent::ToolCallFinished {
                name,
                outcome,
                output,
                ..
            } => {
                let mark = match outcome {
                    ToolOutcome::Success => "✓",
                    ToolOutcome::Error => "✗ error",
                    ToolOutcome::Refused => "⊘ refused",
                    ToolOutcome::Failed => "✗ failed",
                };
                let preview: String = output.chars().take(160).collect();
                eprintln!("← {name} {mark}: {}", preview.replace('\n', " "));
            }
            RunEvent::ModelRetry { attempt, error } => {
                eprintln!("(model request failed, retry {attempt}: {error})");
            }
            RunEvent::TurnStarted { .. }
            | RunEvent::ApprovalRequested { .. }
            | RunEvent::ApprovalResolved { .. } => {}
        }
    }
    let result = stream.finish().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!();
        eprintln!(
            "[{} turn(s), {} request(s), {} tokens]",
            result.turns, result.usage.requests, result.usage.total_tokens
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_parse() {
        assert!(
            matches!(parse_server("builtin:sql", 1), Ok(Source::Builtin { name, .. }) if name == "sql")
        );
        assert!(
            matches!(parse_server("db=builtin:sql", 1), Ok(Source::Builtin { name, .. }) if name == "db")
        );
        assert!(
            matches!(parse_server("http://127.0.0.1:9/mcp", 2), Ok(Source::Upstream { name, .. }) if name == "s2")
        );
        assert!(matches!(
            parse_server("files=/usr/bin/switchboard server fs .", 1),
            Ok(Source::Upstream { name, upstream: Upstream::Stdio { args, .. } }) if name == "files" && args.len() == 3
        ));
        assert!(parse_server("builtin:nope", 1).is_err());
    }

    #[test]
    fn builtin_agents_load() {
        for (name, _) in BUILTIN_AGENTS {
            assert!(load_agent(name).is_ok(), "{name}");
        }
    }
}
