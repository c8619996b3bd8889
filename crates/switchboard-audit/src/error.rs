//! Why an audit operation failed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database refused or failed (connection, schema, a write).
    #[error("audit store: {0}")]
    Database(#[from] sqlx::Error),
    /// A configuration value, filter or time that cannot be used.
    #[error("audit: {0}")]
    Invalid(String),
    /// Reading an audit log that does not exist (the CLI never creates one).
    #[error("no audit log at {}", .0.display())]
    Missing(PathBuf),
    #[error("could not create {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The local journal cannot take or give back records (full, damaged, a record too
    /// large, every slot in use).
    #[error("{0}")]
    Journal(String),
    /// The batch holding this record failed to commit; the call must not be acknowledged.
    #[error("the audit record could not be committed: {0}")]
    NotCommitted(String),
    /// The writer has stopped (shutdown, or it ended after an error).
    #[error("the audit writer has stopped")]
    Closed,
}
