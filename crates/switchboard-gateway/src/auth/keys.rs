//! API keys: long random secrets (`sb_` + 64 hex digits) stored only as SHA-256 hashes, with a
//! name and scopes, in one JSON file (default `<data dir>/api-keys.json`, mode 0600).
//!
//! Why a hash and not a password hash: the secret has 256 random bits, so a fast hash cannot be
//! brute-forced, and a lookup costs one SHA-256 per request. The running gateway re-reads the
//! file when its modification time changes, so `switchboard key revoke` takes effect on the next
//! request without a restart. Writes go to a temporary file that is renamed over the store.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Mutex,
    time::SystemTime,
};

use serde::{Deserialize, Serialize};

use super::{AuthError, Identity};

/// Every key starts with this, so a bearer value is recognised as a key, not a JWT.
pub const KEY_PREFIX: &str = "sb_";

/// One stored key: never the secret itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub name: String,
    /// Lower-case hex SHA-256 of the whole key, prefix included.
    pub sha256: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// RFC 3339 creation time.
    pub created: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoreFile {
    #[serde(default)]
    keys: Vec<ApiKeyRecord>,
}

pub fn hash(key: &str) -> String {
    switchboard_audit::record::sha256_hex(key)
}

fn store_error(path: &Path, message: impl ToString) -> AuthError {
    AuthError::Store {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn read(path: &Path) -> Result<StoreFile, AuthError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| store_error(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StoreFile::default()),
        Err(e) => Err(store_error(path, e)),
    }
}

fn write(path: &Path, file: &StoreFile) -> Result<(), AuthError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| store_error(path, e))?;
    }
    let text = serde_json::to_string_pretty(file).map_err(|e| store_error(path, e))?;
    let tmp = path.with_extension("json.tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut out = options.open(&tmp).map_err(|e| store_error(path, e))?;
        out.write_all(text.as_bytes())
            .and_then(|()| out.sync_all())
            .map_err(|e| store_error(path, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| store_error(path, e))
}

/// Creates a key named `name` (unique) with `scopes`; returns the secret, shown only once.
pub fn create(path: &Path, name: &str, scopes: &[String]) -> Result<String, AuthError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(store_error(path, "a key name is [A-Za-z0-9._-]+"));
    }
    let mut file = read(path)?;
    if file.keys.iter().any(|k| k.name == name) {
        return Err(store_error(path, format!("a key named {name:?} exists")));
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| store_error(path, e))?;
    let secret = format!(
        "{KEY_PREFIX}{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    file.keys.push(ApiKeyRecord {
        name: name.to_string(),
        sha256: hash(&secret),
        scopes: scopes.to_vec(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    write(path, &file)?;
    Ok(secret)
}

pub fn list(path: &Path) -> Result<Vec<ApiKeyRecord>, AuthError> {
    Ok(read(path)?.keys)
}

/// Removes the key named `name`; false when there was none.
pub fn revoke(path: &Path, name: &str) -> Result<bool, AuthError> {
    let mut file = read(path)?;
    let before = file.keys.len();
    file.keys.retain(|k| k.name != name);
    if file.keys.len() == before {
        return Ok(false);
    }
    write(path, &file)?;
    Ok(true)
}

/// A file's modification time and length: when either changes, the store is re-read.
type FileStamp = (SystemTime, u64);

/// The store as the running gateway sees it: hash → record, reloaded when the file changes.
pub struct KeyStore {
    path: PathBuf,
    /// (modification time and length the map was read at, hash → record).
    cache: Mutex<(Option<FileStamp>, HashMap<String, ApiKeyRecord>)>,
}

impl KeyStore {
    pub fn new(path: PathBuf) -> KeyStore {
        KeyStore {
            path,
            cache: Mutex::new((None, HashMap::new())),
        }
    }

    pub fn verify(&self, key: &str) -> Result<Identity, AuthError> {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| Ok((m.modified()?, m.len())))
            .ok();
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| store_error(&self.path, "lock poisoned"))?;
        if cache.0.is_none() || cache.0 != modified {
            let file = read(&self.path)?;
            cache.1 = file
                .keys
                .into_iter()
                .map(|k| (k.sha256.clone(), k))
                .collect();
            cache.0 = modified;
        }
        let record = cache.1.get(&hash(key)).ok_or(AuthError::InvalidKey)?;
        Ok(Identity {
            subject: format!("key:{}", record.name),
            scopes: record.scopes.clone(),
            roles: Vec::new(),
            key: Some(record.name.clone()),
            anonymous: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_verify_revoke() -> Result<(), AuthError> {
        let dir = tempfile::tempdir().map_err(|e| AuthError::Config(e.to_string()))?;
        let path = dir.path().join("keys.json");
        let secret = create(&path, "ci", &["tool:crm__*".into()])?;
        assert!(secret.starts_with(KEY_PREFIX));
        let text = std::fs::read_to_string(&path).map_err(|e| AuthError::Config(e.to_string()))?;
        assert!(!text.contains(&secret), "the secret is never stored");
        let store = KeyStore::new(path.clone());
        let id = store.verify(&secret)?;
        assert_eq!(id.key.as_deref(), Some("ci"));
        assert_eq!(id.scopes, vec!["tool:crm__*".to_string()]);
        assert!(create(&path, "ci", &[]).is_err(), "names are unique");
        assert!(matches!(
            store.verify("sb_nope"),
            Err(AuthError::InvalidKey)
        ));
        assert!(revoke(&path, "ci")?);
        assert!(!revoke(&path, "ci")?);
        // The store is re-read, not trusted from before (mtime may be equal on coarse
        // filesystems, so force a reload the way a changed mtime would).
        let fresh = KeyStore::new(path);
        assert!(matches!(fresh.verify(&secret), Err(AuthError::InvalidKey)));
        Ok(())
    }
}
