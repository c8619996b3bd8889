//! `switchboard-crm`: a small CRM as an MCP server, with the same operations over REST.
//!
//! It replaces the seed tutorial's in-memory toy (`search_contacts`, `get_contact_details`,
//! `create_opportunity`, `update_contact_notes`) with a real store: contacts, opportunities,
//! an append-only notes timeline and logged interactions, kept in SQLite by default or in
//! PostgreSQL when several gateway replicas share one database.
//!
//! - [`CrmStore`] does every read and write; [`CrmServer`] (MCP tools) and [`rest_router`]
//!   (REST + OpenAPI) are thin front ends over it, so validation and errors are identical.
//! - Creates accept an idempotency key; updates of contacts are guarded by a version.

mod currency;
mod db;
mod error;
pub mod model;
mod rest;
mod server;
mod store;
mod validate;

pub use error::CrmError;
pub use rest::{openapi_document, rest_router, serve_rest};
pub use server::CrmServer;
pub use store::{
    CrmConfig, CrmStore, DEFAULT_CURRENCY, DEFAULT_LIST_LIMIT, DEFAULT_SEARCH_LIMIT,
    DETAIL_TIMELINE_LIMIT, MAX_PAGE_SIZE,
};
