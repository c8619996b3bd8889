//! The gateway's durable audit log (issue #7): who called which tool with what, what the
//! gateway decided, and how it ended, for every `tools/call`, including refused ones.
//!
//! A crate of its own because two programs use it: the gateway writes (through its `audit`
//! stack layer and [`Auditor`]) and serves `GET /api/audit`, and `switchboard audit` reads and
//! prunes the same store directly.
//!
//! - [`record`]: the record, canonical JSON, the arguments' SHA-256, redaction.
//! - [`writer`]: [`Auditor`], the group-committing writer; a call's record is durable before
//!   its response is released ("no acknowledged call lacks a record").
//! - [`journal`]: the local append-only journal a record is written to first (default), so
//!   calls are answered while the store is slow or down.
//! - [`shipper`]: copies the journal into the store, idempotently (unique record ids).
//! - [`store`]: the table on SQLite (WAL, `synchronous = FULL`) or PostgreSQL.
//! - [`query`]: filters and the shared time syntax (`1h`, `30d`, RFC 3339).
//! - [`config`]: the `[audit]` section.

pub mod config;
pub mod error;
pub mod journal;
pub mod query;
pub mod record;
pub mod shipper;
pub mod store;
pub mod writer;

pub use config::{AuditConfig, Durability, Location, StoreKind};
pub use error::AuditError;
pub use query::Filter;
pub use record::{AuditRecord, CallRecord, Decision, Outcome};
pub use shipper::ship_leftovers;
pub use store::Store;
pub use writer::{Auditor, Backlog};
