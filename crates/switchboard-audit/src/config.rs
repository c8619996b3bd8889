//! `[audit]`: where the audit log lives and how it is written. Every field has a default, so
//! a gateway without the section audits to `<data dir>/audit.db`.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use switchboard_sql::DatabaseUrl;

use crate::error::AuditError;

/// The largest `max_batch`: a batch is one multi-row `INSERT`, and both engines cap the
/// number of bound parameters per statement (SQLite 32766, PostgreSQL 65535; 13 per record).
pub const MAX_BATCH_LIMIT: usize = 1000;
/// The largest `max_batch_delay_ms`: every caller in a batch waits for it.
pub const MAX_BATCH_DELAY_LIMIT_MS: u64 = 1000;
/// The default `journal_max_bytes`: 1 GiB of records not yet shipped to the store.
pub const DEFAULT_JOURNAL_MAX_BYTES: u64 = 1 << 30;
/// The smallest `journal_max_bytes`: room for a few batches of large records.
pub const MIN_JOURNAL_MAX_BYTES: u64 = 1 << 20;

/// Which database holds the audit log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Sqlite,
    Postgres,
}

/// The `[audit]` section.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Record every `tools/call`. Default true.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// `"sqlite"` (default) or `"postgres"`.
    #[serde(default)]
    pub store: StoreKind,
    /// SQLite: a path or `sqlite://path`, default `<data dir>/audit.db`. PostgreSQL: the
    /// `postgres://…` URL (required).
    #[serde(default)]
    pub url: Option<String>,
    /// Argument keys redacted in every tool's record (exact, case-insensitive), in addition to
    /// the built-in secret-looking keys.
    #[serde(default)]
    pub redact_keys: Vec<String>,
    /// Per tool (exposed name, glob syntax): argument keys redacted in its records.
    #[serde(default)]
    pub redact_tools: BTreeMap<String, Vec<String>>,
    /// Records older than this many days are deleted at start and hourly; 0 keeps them
    /// forever. Default 90.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Most records in one batch: one journal write, one store transaction. Default 256, at
    /// most 1000.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// How long the writer waits for more records before committing a batch that is not full,
    /// in milliseconds. Default 0: a batch is whatever queued while the previous commit ran.
    /// At most 1000.
    #[serde(default)]
    pub max_batch_delay_ms: u64,
    /// Records waiting for the writer before further calls wait to enqueue. Default 10000.
    #[serde(default = "default_max_queue")]
    pub max_queue: usize,
    /// Larger canonical arguments are stored as `"[TRUNCATED: N bytes]"` (the hash still
    /// covers them). Default 65536.
    #[serde(default = "default_max_arguments_bytes")]
    pub max_arguments_bytes: usize,
    /// Longer error messages are cut. Default 4096.
    #[serde(default = "default_max_error_bytes")]
    pub max_error_bytes: usize,
    /// What a record survives before its call is answered. `"fsync"` (default): each batch
    /// is fsynced (the journal's write; without the journal, SQLite's commit), so it survives
    /// a power loss. `"process"`: it survives the gateway's crash or `kill -9` (it is in the
    /// operating system's hands), but the last batches before a power loss or kernel crash
    /// can be lost. It also sets SQLite's own commits (`synchronous = FULL` or `NORMAL`);
    /// PostgreSQL follows the server's `synchronous_commit`.
    #[serde(default)]
    pub durability: Durability,
    /// Append each record to a local journal (one write, plus an fsync with `durability =
    /// "fsync"`, per batch) and answer the call then; a background shipper copies the
    /// journal into the store. Calls keep being answered while the store is down. Default
    /// true. With false, each batch is committed to the store before its calls are answered.
    #[serde(default = "default_enabled")]
    pub journal: bool,
    /// Where the journal lives. Default `<data dir>/audit-journal`.
    #[serde(default)]
    pub journal_dir: Option<PathBuf>,
    /// Most bytes of records journaled but not yet shipped to the store; beyond it calls fail
    /// with `audit_unavailable`. Default 1 GiB, at least 1 MiB.
    #[serde(default = "default_journal_max_bytes")]
    pub journal_max_bytes: u64,
}

/// See [`AuditConfig::durability`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    #[default]
    Fsync,
    Process,
}

fn default_enabled() -> bool {
    true
}
fn default_retention_days() -> u32 {
    90
}
fn default_max_batch() -> usize {
    256
}
fn default_max_queue() -> usize {
    10_000
}
fn default_max_arguments_bytes() -> usize {
    65_536
}
fn default_max_error_bytes() -> usize {
    4096
}
fn default_journal_max_bytes() -> u64 {
    DEFAULT_JOURNAL_MAX_BYTES
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: default_enabled(),
            store: StoreKind::default(),
            url: None,
            redact_keys: Vec::new(),
            redact_tools: BTreeMap::new(),
            retention_days: default_retention_days(),
            max_batch: default_max_batch(),
            max_batch_delay_ms: 0,
            max_queue: default_max_queue(),
            max_arguments_bytes: default_max_arguments_bytes(),
            max_error_bytes: default_max_error_bytes(),
            durability: Durability::default(),
            journal: true,
            journal_dir: None,
            journal_max_bytes: DEFAULT_JOURNAL_MAX_BYTES,
        }
    }
}

/// The URL's password never reaches a log.
impl fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditConfig")
            .field("enabled", &self.enabled)
            .field("store", &self.store)
            .field(
                "url",
                &self.url.as_ref().map(|u| DatabaseUrl::new(u.clone())),
            )
            .field("redact_keys", &self.redact_keys)
            .field("redact_tools", &self.redact_tools)
            .field("retention_days", &self.retention_days)
            .field("max_batch", &self.max_batch)
            .field("durability", &self.durability)
            .field("max_batch_delay_ms", &self.max_batch_delay_ms)
            .field("max_queue", &self.max_queue)
            .field("max_arguments_bytes", &self.max_arguments_bytes)
            .field("max_error_bytes", &self.max_error_bytes)
            .field("journal", &self.journal)
            .field("journal_dir", &self.journal_dir)
            .field("journal_max_bytes", &self.journal_max_bytes)
            .finish()
    }
}

/// Where an audit log is.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Location {
    /// `postgres://` and `postgresql://` URLs are PostgreSQL; anything else is a SQLite path
    /// (`sqlite://` or `sqlite:` prefix optional).
    pub fn from_url(url: &str) -> Location {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Location::Postgres(url.to_string());
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        Location::Sqlite(PathBuf::from(path))
    }

    /// The default store under a data directory.
    pub fn default_in(data_dir: &Path) -> Location {
        Location::Sqlite(data_dir.join("audit.db"))
    }
}

/// A SQLite path as it is, a PostgreSQL URL without its password.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => write!(f, "{}", DatabaseUrl::new(url.clone())),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

impl AuditConfig {
    /// Checks what the parser cannot (see each field's bounds).
    pub fn validate(&self) -> Result<(), AuditError> {
        let invalid = |m: String| Err(AuditError::Invalid(m));
        if self.max_batch == 0 || self.max_batch > MAX_BATCH_LIMIT {
            return invalid(format!("max_batch must be 1..={MAX_BATCH_LIMIT}"));
        }
        if self.max_batch_delay_ms > MAX_BATCH_DELAY_LIMIT_MS {
            return invalid(format!(
                "max_batch_delay_ms must be at most {MAX_BATCH_DELAY_LIMIT_MS}"
            ));
        }
        if self.max_queue == 0 {
            return invalid("max_queue must be at least 1".into());
        }
        if self.max_error_bytes == 0 {
            return invalid("max_error_bytes must be at least 1".into());
        }
        if self.journal_max_bytes < MIN_JOURNAL_MAX_BYTES {
            return invalid(format!(
                "journal_max_bytes must be at least {MIN_JOURNAL_MAX_BYTES} (1 MiB)"
            ));
        }
        if self
            .journal_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return invalid("journal_dir must not be empty".into());
        }
        crate::record::Redactor::new(&self.redact_keys, &self.redact_tools)?;
        self.location(Path::new(".")).map(|_| ())
    }

    /// The journal's directory (default under `data_dir`); `None` when `journal = false`.
    pub fn journal_dir(&self, data_dir: &Path) -> Option<PathBuf> {
        self.journal.then(|| {
            self.journal_dir
                .clone()
                .unwrap_or_else(|| data_dir.join("audit-journal"))
        })
    }

    /// Where this configuration's log is, with SQLite's default under `data_dir`.
    pub fn location(&self, data_dir: &Path) -> Result<Location, AuditError> {
        match (self.store, &self.url) {
            (StoreKind::Sqlite, None) => Ok(Location::default_in(data_dir)),
            (StoreKind::Sqlite, Some(url)) => match Location::from_url(url) {
                Location::Sqlite(path) => Ok(Location::Sqlite(path)),
                Location::Postgres(_) => Err(AuditError::Invalid(
                    "a postgres:// url needs store = \"postgres\"".into(),
                )),
            },
            (StoreKind::Postgres, Some(url)) => match Location::from_url(url) {
                Location::Postgres(url) => Ok(Location::Postgres(url)),
                Location::Sqlite(_) => Err(AuditError::Invalid(
                    "store = \"postgres\" needs a postgres:// url".into(),
                )),
            },
            (StoreKind::Postgres, None) => Err(AuditError::Invalid(
                "store = \"postgres\" needs url = \"postgres://…\"".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AuditConfig, String> {
        let config: AuditConfig = from_json(text)?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    fn from_json(text: &str) -> Result<AuditConfig, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_audit_to_sqlite_under_the_data_dir() {
        let config = parse("{}").expect("defaults");
        assert!(config.enabled);
        assert_eq!(
            config.location(Path::new("/d")).expect("location"),
            Location::Sqlite(PathBuf::from("/d/audit.db"))
        );
        assert_eq!(config.retention_days, 90);
        assert_eq!(
            config.journal_dir(Path::new("/d")),
            Some(PathBuf::from("/d/audit-journal"))
        );
        assert_eq!(config.journal_max_bytes, 1 << 30);
    }

    #[test]
    fn journal_settings_are_checked() {
        let off = parse(r#"{"journal": false}"#).expect("off");
        assert_eq!(off.journal_dir(Path::new("/d")), None);
        let custom = parse(r#"{"journal_dir": "j", "journal_max_bytes": 2097152}"#).expect("dir");
        assert_eq!(
            custom.journal_dir(Path::new("/d")),
            Some(PathBuf::from("j"))
        );
        let small = parse(r#"{"journal_max_bytes": 1000}"#).expect_err("too small");
        assert!(
            small.contains("journal_max_bytes must be at least"),
            "{small}"
        );
        assert!(parse(r#"{"journal_dir": ""}"#).is_err());
        assert!(parse(r#"{"journal": "yes"}"#).is_err());
    }

    #[test]
    fn store_and_url_must_agree() {
        assert!(parse(r#"{"store": "postgres"}"#).is_err());
        assert!(parse(r#"{"url": "postgres://u@h/db"}"#).is_err());
        assert!(parse(r#"{"store": "postgres", "url": "file.db"}"#).is_err());
        let pg = parse(r#"{"store": "postgres", "url": "postgres://u:pw@h/db"}"#).expect("pg");
        assert!(!format!("{pg:?}").contains("pw"));
        let loc = pg.location(Path::new(".")).expect("location");
        assert_eq!(loc.to_string(), "postgres://u:***@h/db");
        let sqlite = parse(r#"{"url": "sqlite://x/a.db"}"#).expect("sqlite");
        assert_eq!(
            sqlite.location(Path::new(".")).expect("location"),
            Location::Sqlite(PathBuf::from("x/a.db"))
        );
    }

    #[test]
    fn limits_are_bounded_and_unknown_keys_refused() {
        assert!(parse(r#"{"max_batch": 0}"#).is_err());
        assert!(parse(r#"{"max_batch": 1001}"#).is_err());
        assert!(parse(r#"{"max_batch_delay_ms": 5000}"#).is_err());
        assert!(parse(r#"{"redact_tools": {"a[": ["x"]}}"#).is_err());
        assert!(parse(r#"{"colour": "red"}"#).is_err());
    }
}
