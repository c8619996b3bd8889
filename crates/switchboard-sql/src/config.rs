//! Configuration: which database, whether writes are allowed, and every limit, explicit.
//!
//! The URL is wrapped in [`DatabaseUrl`], whose `Debug` and `Display` hide the password, so
//! that logging a config or an error can never leak credentials.

use std::{fmt, path::PathBuf, time::Duration};

/// A database connection URL whose password never appears in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps a URL such as `sqlite://file.db`, `postgres://user:pw@host/db` or
    /// `mysql://user:pw@host/db`.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The full URL, password included. Only for handing to the driver.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with the password (in the authority or a `password=` parameter) masked.
    pub fn redacted(&self) -> String {
        let url = &self.0;
        let Some(scheme_end) = url.find("://") else {
            return url.clone();
        };
        let rest_start = scheme_end + 3;
        let rest = &url[rest_start..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let mut out = url[..rest_start].to_string();
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        let tail = &rest[authority_end..];
        match tail.split_once('?') {
            Some((path, query)) => {
                out.push_str(path);
                out.push('?');
                let params: Vec<String> = query
                    .split('&')
                    .map(|kv| match kv.split_once('=') {
                        Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                        _ => kv.to_string(),
                    })
                    .collect();
                out.push_str(&params.join("&"));
            }
            None => out.push_str(tail),
        }
        out
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({:?})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Limits applied to every call. All are configurable from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most rows returned by one `query` call; more sets `truncated` and a `next_cursor`.
    pub max_rows: usize,
    /// Most bytes of cell data (as JSON) in one result; the rows that fit are returned.
    pub max_result_bytes: usize,
    /// Most bytes of one text or binary cell; longer cells are cut and counted.
    pub max_cell_bytes: usize,
    /// How long one statement may run before the engine cancels it.
    pub statement_timeout: Duration,
    /// Connections in the pool (on SQLite: in each of the two read pools, `query`'s and the
    /// catalog tools'; see `held`).
    pub pool_size: u32,
    /// How long a call waits for a free pooled connection before failing with `busy`.
    pub acquire_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_rows: 1_000,
            max_result_bytes: 4 * 1024 * 1024,
            max_cell_bytes: 64 * 1024,
            statement_timeout: Duration::from_secs(30),
            pool_size: 5,
            acquire_timeout: Duration::from_secs(30),
        }
    }
}

/// How the SQL server is set up.
#[derive(Debug, Clone)]
pub struct SqlConfig {
    /// The database. `None` means the seeded SQLite demo database at [`Self::demo_path`].
    pub url: Option<DatabaseUrl>,
    /// Where the demo database lives when no URL is given.
    pub demo_path: PathBuf,
    /// Whether `execute` and `insert_record` are offered.
    pub allow_writes: bool,
    /// Result, time and pool limits.
    pub limits: Limits,
}

impl Default for SqlConfig {
    fn default() -> Self {
        Self {
            url: None,
            demo_path: PathBuf::from("./switchboard-data/demo.db"),
            allow_writes: false,
            limits: Limits::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        let url = DatabaseUrl::new("postgres://alice:s3cret@db.example:5432/app?sslmode=require");
        assert_eq!(
            url.to_string(),
            "postgres://alice:***@db.example:5432/app?sslmode=require"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        let url = DatabaseUrl::new("mysql://db/app?user=bob&password=hunter2");
        assert_eq!(url.to_string(), "mysql://db/app?user=bob&password=***");
        let url = DatabaseUrl::new("sqlite://./demo.db");
        assert_eq!(url.to_string(), "sqlite://./demo.db");
    }
}
