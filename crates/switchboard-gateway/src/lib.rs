//! The MCP gateway: many MCP servers behind one endpoint.
//!
//! Upstreams are built-in servers mounted in-process ([`builtin`]) or servers reached over
//! stdio, legacy SSE or Streamable HTTP (`switchboard-transport`'s connector). The gateway
//! lists their tools concurrently into one [`catalog`] with stable, valid names ([`naming`]),
//! and sends each `tools/call` through a tower stack ([`stack`]) whose layers add the
//! production concerns one file each. [`server`] is its MCP face, served by
//! `switchboard-transport` like any other server.
//!
//! Invariants: a dead or slow upstream never breaks the others (fail-open listing, per-upstream
//! deadlines and circuit breakers); exposed names always match `^[a-zA-Z0-9_-]{1,64}$`; every
//! stdio child is ended with its process group on shutdown.

pub mod audit_api;
pub mod auth;
pub mod builtin;
pub mod catalog;
pub mod children;
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod echo;
pub mod error;
pub mod gateway;
pub mod health;
pub mod hub;
pub mod naming;
pub mod otlp;
pub mod passthrough;
pub mod ratelimit;
pub mod resources;
pub mod server;
pub mod stack;
pub mod status_api;
pub mod telemetry;
pub mod trace_context;
pub mod upstream;

pub use config::{BuiltinServer, ConfigError, GatewayConfig, PrefixMode, UpstreamConfig};
pub use error::GatewayError;
pub use gateway::{Gateway, UpstreamStatus};
pub use server::GatewayServer;
