//! Mounting the built-in servers in-process.
//!
//! A built-in server is served over an in-memory duplex stream and reached by the same rmcp
//! client the gateway uses for every other upstream. That keeps one code path for all
//! upstreams (list caching, notifications, the call stack) while starting no child process.

use rmcp::{ClientHandler, ServiceExt};
use switchboard_crm::{CrmConfig, CrmServer, CrmStore};
use switchboard_fs::{FsConfig, FsServer, Limits};
use switchboard_sql::{DatabaseUrl, SqlConfig, SqlServer};
use switchboard_transport::UpstreamClient;

use crate::{config::BuiltinServer, error::GatewayError};

/// Buffer of the in-memory stream between the gateway and a built-in server.
const DUPLEX_BUFFER_BYTES: usize = 1 << 20;

/// Starts `server` and connects `handler` to it.
pub async fn connect<H: ClientHandler>(
    name: &str,
    server: &BuiltinServer,
    handler: H,
) -> Result<UpstreamClient<H>, GatewayError> {
    let (server_io, client_io) = tokio::io::duplex(DUPLEX_BUFFER_BYTES);
    let fail = |message: String| GatewayError::Connect {
        upstream: name.to_string(),
        message,
    };
    match server {
        BuiltinServer::Fs { roots, read_only } => {
            for root in roots {
                std::fs::create_dir_all(root)
                    .map_err(|e| fail(format!("could not create {}: {e}", root.display())))?;
            }
            let fs = FsServer::new(FsConfig {
                roots: roots.clone(),
                read_only: *read_only,
                limits: Limits::default(),
            })
            .map_err(|e| fail(e.to_string()))?;
            spawn_server(name, fs, server_io);
        }
        BuiltinServer::Sql {
            url,
            demo_db,
            allow_writes,
        } => {
            let mut config = SqlConfig {
                url: url.clone().map(DatabaseUrl::new),
                allow_writes: *allow_writes,
                ..SqlConfig::default()
            };
            if let Some(path) = demo_db {
                config.demo_path = path.clone();
            }
            let sql = SqlServer::connect(&config)
                .await
                .map_err(|e| fail(e.to_string()))?;
            spawn_server(name, sql, server_io);
        }
        BuiltinServer::Echo => spawn_server(name, crate::echo::EchoServer::default(), server_io),
        BuiltinServer::Crm { db, demo } => {
            let mut config = CrmConfig::new(
                db.clone()
                    .unwrap_or_else(|| CrmConfig::DEFAULT_DATABASE_URL.to_string()),
            );
            config.demo_data = *demo;
            let store = CrmStore::open(&config)
                .await
                .map_err(|e| fail(e.to_string()))?;
            spawn_server(name, CrmServer::new(store), server_io);
        }
    }
    handler
        .serve(client_io)
        .await
        .map_err(|e| fail(format!("handshake with the built-in server failed: {e}")))
}

fn spawn_server<S: rmcp::ServerHandler>(name: &str, server: S, io: tokio::io::DuplexStream) {
    let name = name.to_string();
    tokio::spawn(async move {
        match server.serve(io).await {
            Ok(running) => {
                let _ = running.waiting().await;
            }
            Err(err) => tracing::error!(upstream = %name, %err, "built-in server failed to start"),
        }
    });
}
