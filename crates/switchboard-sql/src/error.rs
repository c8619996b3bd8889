//! The crate's errors. Each maps to a stable tool-error `kind`, so callers can branch on it,
//! and none carries a connection URL or password: engine messages are kept (they are what a
//! user needs to fix a query), connection failures are described without the URL.

/// Everything that can go wrong in the SQL server.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The input was refused before reaching the engine (not one read-only statement, a
    /// denied function, …).
    #[error("{0}")]
    Rejected(String),
    /// A table, view or column named by the caller does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The arguments are malformed (bad parameter type, empty data, …).
    #[error("{0}")]
    InvalidInput(String),
    /// The engine refused or failed the statement; the message is the engine's.
    #[error("{0}")]
    Database(String),
    /// The statement ran longer than the configured timeout.
    #[error("the statement was cancelled after the {0} s statement timeout")]
    Timeout(u64),
    /// No pooled connection became free in time.
    #[error(
        "all {0} database connections are busy and none became free in time; retry later or \
         raise --pool-size"
    )]
    PoolExhausted(u32),
    /// The database could not be reached or opened (the URL is never included).
    #[error("could not connect to the {engine} database: {message}")]
    Connect {
        engine: &'static str,
        message: String,
    },
    /// The connection URL is not one this server understands.
    #[error("{0}")]
    Url(String),
    /// Local IO (creating the demo database's folder).
    #[error("{0}")]
    Io(String),
}

impl SqlError {
    /// The stable `kind` reported in the tool error's structured content.
    pub fn kind(&self) -> &'static str {
        match self {
            SqlError::Rejected(_) => "rejected",
            SqlError::NotFound(_) => "not_found",
            SqlError::InvalidInput(_) => "invalid_input",
            SqlError::Database(_) => "database",
            SqlError::Timeout(_) => "timeout",
            SqlError::PoolExhausted(_) => "busy",
            SqlError::Connect { .. } => "connect",
            SqlError::Url(_) => "invalid_url",
            SqlError::Io(_) => "io",
        }
    }

    /// Converts a sqlx error, keeping the engine's own message but never the URL.
    pub(crate) fn from_sqlx(err: sqlx::Error, timeout_secs: u64, pool_size: u32) -> Self {
        match err {
            sqlx::Error::Database(db) => {
                let message = db.message().to_string();
                let code = db.code().map(|c| c.to_string());
                // PostgreSQL 57014 query_canceled by statement_timeout; MySQL 3024 and
                // MariaDB 1969/70100 say so in their messages.
                let timed_out = message.contains("statement timeout")
                    || message.contains("max_statement_time")
                    || message.contains("maximum statement execution time")
                    || message.contains("execution time exceeded");
                if timed_out || message == "interrupted" {
                    SqlError::Timeout(timeout_secs)
                } else {
                    match code {
                        Some(code) => SqlError::Database(format!("{message} (code {code})")),
                        None => SqlError::Database(message),
                    }
                }
            }
            sqlx::Error::PoolTimedOut => SqlError::PoolExhausted(pool_size),
            sqlx::Error::Io(e) => SqlError::Database(format!("connection error: {e}")),
            sqlx::Error::Tls(e) => SqlError::Database(format!("TLS error: {e}")),
            sqlx::Error::Configuration(e) => SqlError::Url(format!("invalid configuration: {e}")),
            other => SqlError::Database(other.to_string()),
        }
    }
}
