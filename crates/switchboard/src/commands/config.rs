//! `switchboard config`: convert and check gateway configurations.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use switchboard_gateway::{BuiltinServer, GatewayConfig};
use switchboard_transport::Upstream;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Convert a desktop client's `{"mcpServers": {…}}` JSON (Claude Desktop, Cursor) to
    /// Switchboard's TOML.
    Import {
        /// The JSON file, e.g. claude_desktop_config.json.
        file: PathBuf,
        /// Write the TOML here instead of stdout (refuses to overwrite an existing file).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Load and validate a TOML configuration; prints its upstreams, or the error with its line.
    Check { file: PathBuf },
}

pub fn run(command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Import { file, output } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("could not read {}", file.display()))?;
            let toml = GatewayConfig::import_mcp_servers_json(&text)?;
            match output {
                Some(path) => {
                    use std::io::Write;
                    let mut out = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .with_context(|| format!("could not create {}", path.display()))?;
                    out.write_all(toml.as_bytes())
                        .with_context(|| format!("could not write {}", path.display()))?;
                    eprintln!("wrote {}", path.display());
                }
                None => print!("{toml}"),
            }
            Ok(())
        }
        ConfigCommand::Check { file } => {
            let config = GatewayConfig::load(&file)?;
            println!(
                "{}: {} upstreams, valid",
                file.display(),
                config.upstreams.len()
            );
            for upstream in &config.upstreams {
                // Only what identifies the upstream: headers and env may hold secrets.
                let kind = match (&upstream.builtin, &upstream.connect) {
                    (Some(BuiltinServer::Fs { roots, .. }), _) => format!("builtin fs {roots:?}"),
                    (Some(BuiltinServer::Sql { .. }), _) => String::from("builtin sql"),
                    (Some(BuiltinServer::Crm { .. }), _) => String::from("builtin crm"),
                    (Some(BuiltinServer::Echo), _) => String::from("builtin echo"),
                    (None, None) if upstream.openapi.is_some() => format!(
                        "openapi {}",
                        upstream.openapi.as_ref().map_or("", |o| o.spec.as_str())
                    ),
                    (_, Some(Upstream::Stdio { command, args, .. })) => {
                        format!("stdio {command} {}", args.join(" "))
                    }
                    (_, Some(Upstream::Sse { url, .. })) => format!("sse {url}"),
                    (_, Some(Upstream::Http { url, .. })) => format!("http {url}"),
                    _ => String::from("?"),
                };
                println!("  {:<16} {kind}", upstream.name);
            }
            Ok(())
        }
    }
}
