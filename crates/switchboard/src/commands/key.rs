//! `switchboard key create|list|revoke`: the gateway's API keys. Only SHA-256 hashes are
//! stored; `create` prints the key once. A running gateway sees changes on its next request.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use switchboard_gateway::{GatewayConfig, auth::keys};

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key and print it (shown only this once).
    Create {
        /// A unique name, `[A-Za-z0-9._-]+`; policies match it with `keys = […]`.
        name: String,
        /// A scope (repeatable), e.g. `tool:crm__*`.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the keys: name, scopes, creation time (never the key).
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke (delete) the key named NAME.
    Revoke {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Which key store: `--store`, else the config's `api_keys`, else `<data dir>/api-keys.json`.
#[derive(Debug, Args)]
pub struct StoreArgs {
    #[arg(long)]
    pub store: Option<PathBuf>,
    #[arg(long, short, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, default_value = "./switchboard-data")]
    pub data_dir: PathBuf,
}

impl StoreArgs {
    fn path(&self) -> anyhow::Result<PathBuf> {
        if let Some(store) = &self.store {
            return Ok(store.clone());
        }
        if let Some(config) = &self.config {
            let config = GatewayConfig::load(config)?;
            if let Some(path) = config.security.auth.and_then(|a| a.api_keys) {
                return Ok(path);
            }
        }
        Ok(switchboard_gateway::auth::default_key_store(&self.data_dir))
    }
}

pub fn run(command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Create {
            name,
            scopes,
            store,
        } => {
            let path = store.path()?;
            let secret = keys::create(&path, &name, &scopes)?;
            eprintln!(
                "created key {name:?} in {} (shown only once):",
                path.display()
            );
            println!("{secret}");
        }
        KeyCommand::List { json, store } => {
            let records = keys::list(&store.path()?)?;
            if json {
                let rows: Vec<_> = records
                    .iter()
                    .map(|r| serde_json::json!({"name": r.name, "scopes": r.scopes, "created": r.created}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in records {
                    println!("{:<24} {:<22} {}", r.name, r.created, r.scopes.join(" "));
                }
            }
        }
        KeyCommand::Revoke { name, store } => {
            let path = store.path()?;
            let removed = keys::revoke(&path, &name)?;
            if !removed {
                return Err(anyhow::anyhow!("no key named {name:?}"))
                    .context(path.display().to_string());
            }
            eprintln!("revoked key {name:?}");
        }
    }
    Ok(())
}
