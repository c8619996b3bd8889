//! Mounting the built-in servers in-process.
//!
//! A built-in server is served over an in-memory duplex stream and reached by the same rmcp
//! client the gateway uses for every other upstream. That keeps one code path for all
//! upstreams (list caching, notifications, the call stack) while starting no child process.
//!
//! `tools/call` on the sql, crm and echo servers takes a shorter way ([`DirectTools`]): the
//! server's handler is called in-process with the client's own request context, skipping the
//! duplex stream's JSON encoding and the task hand-offs of two rmcp service loops, which were
//! most of the gateway's added latency. It is only for servers that never talk back to the
//! client on their own session: the fs server asks its client for roots, and a client's roots
//! must stay that client's, so it keeps the duplex path.

use std::{future::Future, pin::Pin, sync::Arc};

use rmcp::{
    ClientHandler, ErrorData, RoleServer, ServiceExt,
    model::{CallToolRequestParams, CallToolResponse},
    service::RequestContext,
};
use switchboard_crm::{CrmConfig, CrmServer, CrmStore};
use switchboard_fs::{FsConfig, FsServer, Limits};
use switchboard_sql::{DatabaseUrl, SqlConfig, SqlServer};
use switchboard_transport::UpstreamClient;

use crate::{config::BuiltinServer, error::GatewayError};

/// Buffer of the in-memory stream between the gateway and a built-in server.
const DUPLEX_BUFFER_BYTES: usize = 1 << 20;

/// A built-in server's `tools/call`, run in-process with the calling client's context.
pub trait InProcessTools: Send + Sync {
    fn call_tool(
        &self,
        params: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Pin<Box<dyn Future<Output = Result<CallToolResponse, ErrorData>> + Send + 'static>>;
}

impl<S: rmcp::ServerHandler + Clone + Send + Sync + 'static> InProcessTools for S {
    fn call_tool(
        &self,
        params: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Pin<Box<dyn Future<Output = Result<CallToolResponse, ErrorData>> + Send + 'static>> {
        // Servers are cheap clones around shared state (see ARCHITECTURE.md).
        let server = self.clone();
        Box::pin(async move { rmcp::ServerHandler::call_tool(&server, params, cx).await })
    }
}

/// The in-process call path of a built-in server, when it has one.
pub type DirectTools = Arc<dyn InProcessTools>;

/// Starts `server` and connects `handler` to it; also returns the server's in-process call
/// path where it is safe to use.
pub async fn connect<H: ClientHandler>(
    name: &str,
    server: &BuiltinServer,
    handler: H,
) -> Result<(UpstreamClient<H>, Option<DirectTools>), GatewayError> {
    let (server_io, client_io) = tokio::io::duplex(DUPLEX_BUFFER_BYTES);
    let fail = |message: String| GatewayError::Connect {
        upstream: name.to_string(),
        message,
    };
    let direct = match server {
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
            None
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
            let direct: DirectTools = Arc::new(sql.clone());
            spawn_server(name, sql, server_io);
            Some(direct)
        }
        BuiltinServer::Echo => {
            let echo = crate::echo::EchoServer::default();
            let direct: DirectTools = Arc::new(echo.clone());
            spawn_server(name, echo, server_io);
            Some(direct)
        }
        BuiltinServer::Crm { db, demo } => {
            let mut config = CrmConfig::new(
                db.clone()
                    .unwrap_or_else(|| CrmConfig::DEFAULT_DATABASE_URL.to_string()),
            );
            config.demo_data = *demo;
            let store = CrmStore::open(&config)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let crm = CrmServer::new(store);
            let direct: DirectTools = Arc::new(crm.clone());
            spawn_server(name, crm, server_io);
            Some(direct)
        }
    };
    let client = handler
        .serve(client_io)
        .await
        .map_err(|e| fail(format!("handshake with the built-in server failed: {e}")))?;
    Ok((client, direct))
}

/// Loads an OpenAPI upstream's document and mounts its connector like a built-in server (it
/// never talks back to its client, so calls take the in-process path too).
pub async fn connect_openapi<H: ClientHandler>(
    name: &str,
    config: &switchboard_openapi::OpenApiConfig,
    handler: H,
) -> Result<(UpstreamClient<H>, Option<DirectTools>), GatewayError> {
    let fail = |message: String| GatewayError::Connect {
        upstream: name.to_string(),
        message,
    };
    let connector = switchboard_openapi::OpenApiConnector::load(config)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let (server_io, client_io) = tokio::io::duplex(DUPLEX_BUFFER_BYTES);
    let direct: DirectTools = Arc::new(connector.clone());
    spawn_server(name, connector, server_io);
    let client = handler
        .serve(client_io)
        .await
        .map_err(|e| fail(format!("handshake with the OpenAPI connector failed: {e}")))?;
    Ok((client, Some(direct)))
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
