//! `switchboard server crm`: the CRM server on its own, optionally with its REST API.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Args;
use switchboard_crm::{CrmConfig, CrmServer, CrmStore};

use super::{TransportArgs, TransportKind};

#[derive(Debug, Args)]
pub struct CrmArgs {
    /// Database: `sqlite://PATH` (created with its parent directories), a plain file path, or
    /// `postgres://…` when several gateway replicas share one CRM.
    #[arg(
        long,
        env = "SWITCHBOARD_CRM_DB",
        hide_env_values = true,
        default_value = CrmConfig::DEFAULT_DATABASE_URL,
        value_name = "URL"
    )]
    pub db: String,
    /// Start empty instead of seeding the demo contacts (seeding only ever happens on an
    /// empty database).
    #[arg(long)]
    pub no_demo: bool,
    /// Connections in the PostgreSQL pool.
    #[arg(long, default_value_t = 10)]
    pub max_connections: u32,
    /// Also serve the REST API (`/api/...`, OpenAPI at `/api/openapi.json`) on this address.
    /// Needs `--transport http`. Off by default.
    #[arg(long, value_name = "ADDR")]
    pub rest_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub transport: TransportArgs,
}

pub async fn run(args: CrmArgs) -> anyhow::Result<()> {
    if args.rest_listen.is_some() && args.transport.transport != TransportKind::Http {
        anyhow::bail!("--rest-listen needs --transport http");
    }
    let config = CrmConfig {
        database_url: args.db.clone(),
        demo_data: !args.no_demo,
        max_connections: args.max_connections,
    };
    // The URL may hold a password, so it is not repeated in the error.
    let store = CrmStore::open(&config)
        .await
        .context("could not open the CRM database")?;
    tracing::info!(engine = store.engine(), "CRM database ready");

    if let Some(addr) = args.rest_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("could not bind the REST API to {addr}"))?;
        let local = listener.local_addr().context("REST listener address")?;
        eprintln!("REST API on http://{local}/api (OpenAPI at /api/openapi.json)");
        let rest_store = store.clone();
        tokio::spawn(async move {
            if let Err(err) = switchboard_crm::serve_rest(rest_store, listener).await {
                tracing::error!(error = %err, "the CRM REST API stopped");
            }
        });
    }

    super::serve(CrmServer::new(store), &args.transport).await
}
