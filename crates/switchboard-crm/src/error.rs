//! The CRM's one error type, shared by the store, the MCP tools and the REST API.
//!
//! Every variant maps to a stable machine-readable `kind` (what tools put in
//! `structuredContent.error.kind` and REST puts in `{"error":{"kind":…}}`) and to an HTTP
//! status, so both front ends report the same failure the same way.

use serde_json::Value;

/// Errors from the CRM store.
#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    /// Bad input the caller can fix; `kind` names which rule (e.g. `invalid_email`).
    #[error("{message}")]
    Invalid { kind: &'static str, message: String },
    /// An ID that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A uniqueness rule would be broken (e.g. an email already in use).
    #[error("{0}")]
    Conflict(String),
    /// The record changed since the caller read it.
    #[error("contact {id} is at version {current_version}, not {expected_version}")]
    VersionConflict {
        id: String,
        expected_version: i64,
        current_version: i64,
        /// The current record, so the caller can merge without another read.
        current: Box<Value>,
    },
    /// An idempotency key was reused with different arguments.
    #[error("idempotency key {key:?} of {tool} was first used with different arguments")]
    IdempotencyKeyReused { tool: String, key: String },
    /// The database failed (connection, I/O, constraint we did not expect).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("could not migrate the CRM schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Anything else that is our fault, not the caller's.
    #[error("{0}")]
    Internal(String),
}

impl CrmError {
    pub(crate) fn invalid(kind: &'static str, message: impl Into<String>) -> Self {
        CrmError::Invalid {
            kind,
            message: message.into(),
        }
    }

    /// The stable machine-readable kind of this error.
    pub fn kind(&self) -> &'static str {
        match self {
            CrmError::Invalid { kind, .. } => kind,
            CrmError::NotFound(_) => "not_found",
            CrmError::Conflict(_) => "conflict",
            CrmError::VersionConflict { .. } => "version_conflict",
            CrmError::IdempotencyKeyReused { .. } => "idempotency_key_reused",
            CrmError::Database(_) | CrmError::Migrate(_) | CrmError::Internal(_) => "internal",
        }
    }

    /// Extra structured data for the caller, if this kind has any.
    pub fn details(&self) -> Option<Value> {
        match self {
            CrmError::VersionConflict {
                expected_version,
                current_version,
                current,
                ..
            } => Some(serde_json::json!({
                "expected_version": expected_version,
                "current_version": current_version,
                "current": current,
            })),
            _ => None,
        }
    }

    /// The HTTP status the REST API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            CrmError::Invalid { .. } => 400,
            CrmError::NotFound(_) => 404,
            CrmError::Conflict(_)
            | CrmError::VersionConflict { .. }
            | CrmError::IdempotencyKeyReused { .. } => 409,
            CrmError::Database(_) | CrmError::Migrate(_) | CrmError::Internal(_) => 500,
        }
    }

    /// The error as an MCP tool result (`isError: true`).
    pub fn to_tool_result(&self) -> rmcp::model::CallToolResult {
        match self.details() {
            Some(details) => switchboard_core::failure_with(self.kind(), self.to_string(), details),
            None => switchboard_core::failure(self.kind(), self.to_string()),
        }
    }
}
