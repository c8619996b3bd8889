//! `switchboard-openapi`: any REST service with an OpenAPI 3.0/3.1 document becomes MCP tools.
//!
//! The gateway has built-in servers for a few domains; everything else people want an agent
//! to reach is usually a REST API that already publishes an OpenAPI document. This crate turns
//! each operation of that document into a tool and each tool call into an HTTP request, so a
//! service is one `[upstream.openapi]` table away instead of a hand-written MCP server.
//!
//! - [`spec`] reads the document (file or URL, JSON or YAML) and resolves local `$ref`s, with
//!   errors that name the JSON pointer of the bad node.
//! - [`operation`] turns operations into tools (names, descriptions, annotations,
//!   `inputSchema`); [`naming`] keeps names valid and stable.
//! - `call` builds requests and maps responses to tool results; [`auth`] adds credentials.
//! - [`OpenApiConnector`] is the MCP face (an rmcp `ServerHandler`).

pub mod auth;
mod call;
pub mod config;
mod connector;
pub mod naming;
pub mod operation;
pub mod spec;

pub use auth::{AuthConfig, Secret};
pub use config::{OpenApiConfig, OperationOverride, OperationSelector};
pub use connector::{OpenApiConnector, http_client, tool_of};
pub use operation::{Catalog, Operation};
pub use spec::{Spec, SpecError};

/// Why a connector could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    #[error("invalid OpenAPI upstream configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error("no base URL: {0}")]
    BaseUrl(String),
    #[error("could not build the HTTP client: {0}")]
    Http(String),
}
