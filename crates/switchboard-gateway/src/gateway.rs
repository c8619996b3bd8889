//! The gateway: upstreams, the catalog built from them, and the call stack.

use std::sync::{Arc, Mutex};

use rmcp::model::{CallToolResult, JsonObject};
use serde::Serialize;
use tower::ServiceExt;

use crate::{
    catalog::Catalog,
    config::{ConfigError, GatewayConfig},
    error::GatewayError,
    hub::Hub,
    stack::{self, CallService, ToolCall},
    upstream::UpstreamRuntime,
};

pub struct Gateway {
    upstreams: Vec<Arc<UpstreamRuntime>>,
    hub: Arc<Hub>,
    catalog: Mutex<Option<Arc<Catalog>>>,
    /// Serialises catalog rebuilds, so a burst of `tools/list` fans out once.
    rebuild: tokio::sync::Mutex<()>,
    stack: CallService,
}

/// One upstream's state, for `/api/status`, `switchboard status` and logs.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamStatus {
    pub name: String,
    pub circuit: &'static str,
    pub restarts: u64,
    pub tools: Option<usize>,
}

impl Gateway {
    pub fn new(config: GatewayConfig) -> Result<Gateway, ConfigError> {
        config.validate()?;
        let hub = Arc::new(Hub::default());
        // One pooled HTTP client for every HTTP and SSE upstream.
        let http_client = switchboard_transport::upstream::default_http_client().ok();
        let upstreams = config
            .upstreams
            .into_iter()
            .map(|u| UpstreamRuntime::new(u, hub.clone(), http_client.clone()).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Gateway {
            upstreams,
            hub,
            catalog: Mutex::new(None),
            rebuild: tokio::sync::Mutex::new(()),
            stack: stack::build(),
        })
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn upstreams(&self) -> &[Arc<UpstreamRuntime>] {
        &self.upstreams
    }

    /// Connects every upstream and lists its tools, concurrently. Returns the upstreams that
    /// could not be reached (they are retried on use); fails on a naming collision.
    pub async fn start(&self) -> Result<Vec<(String, GatewayError)>, GatewayError> {
        let results = futures::future::join_all(self.upstreams.iter().map(|u| u.tools())).await;
        let failed = self
            .upstreams
            .iter()
            .zip(results)
            .filter_map(|(u, r)| r.err().map(|e| (u.name().to_string(), e)))
            .collect();
        self.catalog().await?;
        Ok(failed)
    }

    /// The current catalog, rebuilt when an upstream's tool list changed. Each upstream's
    /// listing has its own deadline; one that fails is skipped (logged) unless it is
    /// `fail_closed`.
    pub async fn catalog(&self) -> Result<Arc<Catalog>, GatewayError> {
        let _rebuilding = self.rebuild.lock().await;
        let listings = futures::future::join_all(self.upstreams.iter().map(|u| async move {
            match tokio::time::timeout(u.config.list_timeout(), u.tools()).await {
                Ok(result) => result,
                Err(_) => Err(GatewayError::Timeout {
                    upstream: u.name().to_string(),
                    timeout: u.config.list_timeout(),
                }),
            }
        }))
        .await;
        let mut sources = Vec::with_capacity(listings.len());
        for (upstream, listing) in self.upstreams.iter().zip(listings) {
            match listing {
                Ok(tools) => sources.push(Some(tools)),
                Err(err) if upstream.config.fail_closed => return Err(err),
                Err(err) => {
                    tracing::warn!(upstream = %upstream.name(), %err, "skipping upstream in tools/list");
                    sources.push(None);
                }
            }
        }
        if let Ok(guard) = self.catalog.lock()
            && let Some(current) = guard.as_ref()
            && current.built_from(&sources)
        {
            return Ok(current.clone());
        }
        let catalog = Arc::new(Catalog::build(&self.upstreams, sources)?);
        if let Ok(mut guard) = self.catalog.lock() {
            *guard = Some(catalog.clone());
        }
        Ok(catalog)
    }

    /// The last built catalog, without refreshing anything.
    pub fn cached_catalog(&self) -> Option<Arc<Catalog>> {
        self.catalog.lock().ok().and_then(|g| g.clone())
    }

    /// Routes and runs one `tools/call` through the stack.
    pub async fn call(
        &self,
        exposed: &str,
        arguments: Option<JsonObject>,
    ) -> Result<CallToolResult, GatewayError> {
        let cached = self.cached_catalog();
        let route = match cached.as_ref().and_then(|c| c.route(exposed)) {
            Some(route) => route.clone(),
            // Unknown to the last build: the tool may be new; rebuild once before refusing.
            None => self
                .catalog()
                .await?
                .route(exposed)
                .cloned()
                .ok_or_else(|| GatewayError::UnknownTool(exposed.to_string()))?,
        };
        self.stack
            .clone()
            .oneshot(ToolCall {
                upstream: route.upstream,
                tool: route.tool,
                exposed: exposed.to_string(),
                arguments,
            })
            .await
    }

    pub fn status(&self) -> Vec<UpstreamStatus> {
        let catalog = self.cached_catalog();
        self.upstreams
            .iter()
            .map(|u| UpstreamStatus {
                name: u.name().to_string(),
                circuit: u.circuit.state().as_str(),
                restarts: u.restarts.load(std::sync::atomic::Ordering::Relaxed),
                tools: catalog.as_ref().map(|c| {
                    c.tools
                        .iter()
                        .filter(|t| {
                            t.meta
                                .as_ref()
                                .and_then(|m| m.0.get("io.switchboard/upstream"))
                                .and_then(|v| v.as_str())
                                == Some(u.name())
                        })
                        .count()
                }),
            })
            .collect()
    }

    /// Closes every upstream; stdio children are ended with their process groups.
    pub async fn shutdown(&self) {
        futures::future::join_all(self.upstreams.iter().map(|u| u.shutdown())).await;
    }
}
