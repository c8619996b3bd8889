//! `switchboard tools <target>`: list the tools of any MCP server, and the target handling
//! shared with `switchboard call`.
//!
//! A target is a URL or a command after `--`. URLs whose path ends in `/sse` are legacy
//! HTTP+SSE servers, other URLs Streamable HTTP (era auto-detected); `--transport` overrides
//! the guess. Connecting goes through `switchboard_transport::connect`, the same connector
//! the gateway uses, so these commands double as a way to check an upstream config.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use rmcp::{RoleClient, model::ClientConfig, service::RunningService};
use switchboard_transport::{ConnectOptions, Era, Upstream};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UrlTransport {
    /// Legacy HTTP+SSE (2024-11-05): the URL is the SSE endpoint.
    Sse,
    /// Streamable HTTP (any era): the URL is the MCP endpoint.
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EraArg {
    /// Probe `server/discover`, fall back to `initialize`.
    Auto,
    /// Always `initialize` (2025-11-25 and older).
    Initialize,
    /// Always `server/discover` (2026-07-28).
    Discover,
}

/// How to reach the server. Shared by `tools` and `call`.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// For a URL target: the transport, instead of guessing from the path.
    #[arg(long, value_enum)]
    pub transport: Option<UrlTransport>,
    /// Extra HTTP header for URL targets, as `Name: value`; repeat for several.
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// Seconds allowed for connecting and the handshake.
    #[arg(long, default_value_t = 30)]
    pub connect_timeout_secs: u64,
    /// Handshake to use.
    #[arg(long, value_enum, default_value_t = EraArg::Auto)]
    pub era: EraArg,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// A server command and its arguments (stdio target), after `--`.
    #[arg(last = true)]
    pub command: Vec<String>,
}

impl TargetArgs {
    /// The upstream for `url` (when given) or the command after `--`.
    pub fn upstream(&self, url: Option<&str>) -> anyhow::Result<Upstream> {
        match (url, self.command.split_first()) {
            (Some(_), Some(_)) => bail!("give either a URL or a command after --, not both"),
            (None, None) => bail!("give a server URL, or a server command after --"),
            (None, Some((program, args))) => Ok(Upstream::stdio(program.clone(), args.to_vec())),
            (Some(url), None) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    bail!("{url} is not an http(s) URL; put a server command after --");
                }
                let headers = self.header_map()?;
                Ok(match self.transport {
                    Some(UrlTransport::Sse) => Upstream::Sse {
                        url: url.to_owned(),
                        headers,
                    },
                    Some(UrlTransport::Http) => Upstream::Http {
                        url: url.to_owned(),
                        headers,
                    },
                    None => match Upstream::from_url(url) {
                        Upstream::Sse { url, .. } => Upstream::Sse { url, headers },
                        Upstream::Http { url, .. } => Upstream::Http { url, headers },
                        other => other,
                    },
                })
            }
        }
    }

    fn header_map(&self) -> anyhow::Result<BTreeMap<String, String>> {
        self.headers
            .iter()
            .map(|raw| {
                let (name, value) = raw
                    .split_once(':')
                    .with_context(|| format!("header {raw:?} is not `Name: value`"))?;
                Ok((name.trim().to_owned(), value.trim().to_owned()))
            })
            .collect()
    }

    /// Connects with a plain client handler.
    pub async fn connect(
        &self,
        url: Option<&str>,
    ) -> anyhow::Result<RunningService<RoleClient, ClientConfig>> {
        let upstream = self.upstream(url)?;
        let options = ConnectOptions {
            name: "target".into(),
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
            era: match self.era {
                EraArg::Auto => Era::Auto,
                EraArg::Initialize => Era::Initialize,
                EraArg::Discover => Era::Discover,
            },
            ..ConnectOptions::default()
        };
        switchboard_transport::connect(&upstream, ClientConfig::default(), &options)
            .await
            .context("could not connect to the server")
    }
}

#[derive(Debug, Args)]
pub struct ToolsArgs {
    /// Server URL (omit when giving a command after --).
    pub url: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
}

pub async fn run(args: ToolsArgs) -> anyhow::Result<()> {
    let client = args.target.connect(args.url.as_deref()).await?;
    let listed = client.list_all_tools().await;
    let closed = switchboard_transport::shutdown(client).await;
    let tools = listed.context("tools/list failed")?;
    if args.target.json {
        println!("{}", serde_json::to_string_pretty(&tools)?);
    } else {
        for tool in &tools {
            match tool.description.as_deref().map(str::trim) {
                Some(description) if !description.is_empty() => {
                    let first = description.lines().next().unwrap_or_default();
                    println!("{}\t{first}", tool.name);
                }
                _ => println!("{}", tool.name),
            }
        }
    }
    closed.context("closing the connection")?;
    Ok(())
}
