//! `switchboard agent run`: one task through the agent runner (`switchboard-agent`), printing
//! the streamed answer on stdout and tool calls on stderr as they happen. `switchboard agent
//! chat`: the same agent in a conversation that keeps its history, its MCP sources connected
//! once for the whole session.
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
    ToolOutcome, Toolbox,
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
    /// An interactive conversation with history (`/reset`, `/tools`, `/exit`); reads stdin.
    Chat(Box<AgentArgs>),
    /// List the built-in demo agents and their example tasks.
    List,
}

/// The agent, its sources, the model endpoint and the run limits (`run` and `chat`).
#[derive(Debug, Args)]
pub struct AgentArgs {
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
    /// Model turns before giving up (per task, or per message in a chat).
    #[arg(long, default_value_t = switchboard_agent::runner::DEFAULT_MAX_TURNS)]
    pub max_turns: usize,
    /// Deadline of one tool call, in seconds.
    #[arg(long, default_value_t = 60)]
    pub tool_timeout_secs: u64,
    /// Approve every call that needs approval (destructiveHint or configured) without asking.
    /// Without it, such calls are asked at the terminal, or refused when stdin is not one.
    #[arg(long)]
    pub approve_all: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
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
        AgentCommand::Chat(args) => chat(*args).await,
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

/// The agent `args` describe, with its sources, and its definition file when it has one.
fn build_agent(args: &AgentArgs) -> anyhow::Result<(Agent, Option<AgentFile>)> {
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
    Ok((agent, file))
}

/// The runner for `args`: the model endpoint (or the error saying what to set), limits, and
/// the approval policy (`--approve-all`, else a terminal prompt, else refuse).
fn build_runner(args: &AgentArgs) -> anyhow::Result<Runner> {
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
    Ok(Runner::new(model, config)?)
}

/// Prints one run event: answer text on stdout, tool activity on stderr.
fn print_event(event: RunEvent) {
    match event {
        RunEvent::TextDelta { text } => {
            let mut stdout = std::io::stdout();
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

fn print_usage(result: &switchboard_agent::RunResult) {
    eprintln!(
        "[{} turn(s), {} request(s), {} tokens]",
        result.turns, result.usage.requests, result.usage.total_tokens
    );
}

async fn run_task(args: RunArgs) -> anyhow::Result<()> {
    let (agent, file) = build_agent(&args.agent)?;
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
    let runner = build_runner(&args.agent)?;
    let mut stream = runner.run_streamed(&agent, &task);
    while let Some(event) = stream.next_event().await {
        if !args.json {
            print_event(event);
        }
    }
    let result = stream.finish().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!();
        print_usage(&result);
    }
    Ok(())
}

/// One line of stdin, read on the blocking pool through std's shared buffer (the approval
/// prompt reads the same buffer, so piped input is never read ahead and lost); `None` at EOF.
async fn read_line() -> anyhow::Result<Option<String>> {
    let (read, line) = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|n| (n, line))
    })
    .await
    .context("stdin reader")?
    .context("reading stdin")?;
    Ok((read > 0).then_some(line))
}

async fn chat(args: AgentArgs) -> anyhow::Result<()> {
    let (agent, file) = build_agent(&args)?;
    let runner = build_runner(&args)?;
    let config = runner.config();
    let toolbox = Toolbox::connect(&agent.sources, &config.connect, config.cache_tools).await?;
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "chatting with {} (model {}); /tools lists tools, /reset forgets, /exit ends",
            agent.name, agent.model
        );
        if let Some(example) = file.as_ref().and_then(|f| f.examples.first()) {
            eprintln!("try: {}", example.trim().replace('\n', " "));
        }
    }
    let outcome = chat_loop(&runner, &toolbox, &agent, interactive).await;
    toolbox.shutdown().await;
    outcome
}

async fn chat_loop(
    runner: &Runner,
    toolbox: &Toolbox,
    agent: &Agent,
    interactive: bool,
) -> anyhow::Result<()> {
    let mut history = Vec::new();
    loop {
        if interactive {
            eprint!("\nyou> ");
            let _ = std::io::stderr().flush();
        }
        let Some(line) = read_line().await? else {
            return Ok(());
        };
        let input = line.trim();
        match input {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/reset" => {
                history.clear();
                eprintln!("(history cleared)");
                continue;
            }
            "/tools" => {
                for tool in toolbox.tools(agent).await? {
                    eprintln!("  {}", tool.exposed);
                }
                continue;
            }
            _ => {}
        }
        let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
        let run = runner.run_in(toolbox, agent, history.clone(), input, Some(events));
        let print = async {
            while let Some(event) = received.recv().await {
                print_event(event);
            }
        };
        let (result, ()) = tokio::join!(run, print);
        println!();
        match result {
            Ok(result) => {
                print_usage(&result);
                history = result.messages;
            }
            // The conversation goes on after a failed message; its history is unchanged.
            Err(err) => eprintln!("error: {err}"),
        }
    }
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
