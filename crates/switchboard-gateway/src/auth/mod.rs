//! Authentication of the gateway's HTTP clients: who is calling.
//!
//! Why here and not in rmcp: rmcp serves MCP but leaves identity to the embedder; it does pass
//! the HTTP request's `http::request::Parts` into every handler's `RequestContext`, so the
//! [`http`] middleware authenticates each request once, before rmcp sees it, and puts the
//! resulting [`Identity`] into the request's extensions, where [`crate::server`] finds it and
//! hands it to the `tools/call` stack (authorization, rate limits, the cache's identity scope).
//!
//! Credentials, each checked the same way on `/mcp`, `/sse` and `/messages`:
//! - **Bearer JWT** ([`jwt`]): HS256 with a configured secret, RS256/ES256 with configured
//!   public keys. The algorithm is fixed per key, never taken from the token; `exp`, `iss` and
//!   `aud` are required, `nbf` is checked when present, all with `leeway_secs` of slack.
//! - **API keys** ([`keys`]): `sb_…` secrets, stored only as SHA-256 hashes with a name and
//!   scopes; sent as `Authorization: Bearer sb_…` or `X-API-Key: sb_…`.
//! - **Anonymous**: only when `allow_anonymous = true`.
//!
//! Without a `[security.auth]` section nothing is checked and every caller is anonymous, as
//! before (the zero-configuration `serve` says so in its banner).

pub mod http;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod policy;

use std::path::PathBuf;

use serde::Deserialize;

/// Who is calling. Attached to the HTTP request by [`http`] and carried by each `ToolCall`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The JWT's `sub`, `key:<name>` for an API key, or `anonymous`.
    pub subject: String,
    /// Scopes from the token's `scope`/`scp` claims or the API key's scopes.
    pub scopes: Vec<String>,
    /// Roles from the token's `roles` claim.
    pub roles: Vec<String>,
    /// The API key's name, when the caller used one.
    pub key: Option<String>,
    /// True for a caller without credentials (only when `allow_anonymous`).
    pub anonymous: bool,
}

impl Identity {
    pub const ANONYMOUS: &'static str = "anonymous";

    pub fn anonymous() -> Identity {
        Identity {
            subject: Identity::ANONYMOUS.to_string(),
            scopes: Vec::new(),
            roles: Vec::new(),
            key: None,
            anonymous: true,
        }
    }

    /// The globs of the identity's `tool:GLOB` scopes (see [`policy`]).
    pub fn tool_scopes(&self) -> impl Iterator<Item = &str> {
        self.scopes.iter().filter_map(|s| s.strip_prefix("tool:"))
    }
}

/// `[security.auth]`: how HTTP clients authenticate. Absent: no authentication.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Let callers without credentials in, as the `anonymous` identity. Default false.
    #[serde(default)]
    pub allow_anonymous: bool,
    /// Also require credentials on `/api/status`. Default false.
    #[serde(default)]
    pub protect_status: bool,
    /// Clock slack for `exp` and `nbf`, in seconds. Default 30.
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    /// The required `iss` claim. Default `"switchboard"` (what `switchboard token issue` sets).
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// The required `aud` claim (one of the token's audiences). Default `"switchboard"`.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// The verification keys; a token must verify with one of them.
    #[serde(default, rename = "jwt")]
    pub jwt_keys: Vec<jwt::JwtKeyConfig>,
    /// JWKS endpoints whose keys also verify tokens ([`jwks`]).
    #[serde(default)]
    pub jwks: Vec<jwks::JwksConfig>,
    /// The API key store (JSON, hashes only). Default `<data dir>/api-keys.json`; API keys are
    /// accepted only when this is set or `api_keys_enabled` is true.
    #[serde(default)]
    pub api_keys: Option<PathBuf>,
    /// Accept API keys from the default store `<data dir>/api-keys.json`. Default false.
    #[serde(default)]
    pub api_keys_enabled: bool,
    /// RFC 9728 metadata: the protected resource's URL. Default `http://<Host>/mcp` of the
    /// request.
    #[serde(default)]
    pub resource: Option<String>,
    /// RFC 9728 metadata: the authorization servers clients should use. Default: `[issuer]`
    /// when the issuer is a URL, else none.
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// RFC 9728 metadata: `scopes_supported`. Default none.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
}

fn default_leeway_secs() -> u64 {
    30
}
fn default_issuer() -> String {
    "switchboard".into()
}
fn default_audience() -> String {
    "switchboard".into()
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            allow_anonymous: false,
            protect_status: false,
            leeway_secs: default_leeway_secs(),
            issuer: default_issuer(),
            audience: default_audience(),
            jwt_keys: Vec::new(),
            jwks: Vec::new(),
            api_keys: None,
            api_keys_enabled: false,
            resource: None,
            authorization_servers: Vec::new(),
            scopes_supported: Vec::new(),
        }
    }
}

/// The default API key store under a data directory.
pub fn default_key_store(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("api-keys.json")
}

/// Why a configuration or a credential was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials")]
    Missing,
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("invalid API key")]
    InvalidKey,
    #[error("auth configuration: {0}")]
    Config(String),
    #[error("API key store {path}: {message}")]
    Store { path: PathBuf, message: String },
}

/// The compiled `[security.auth]`: verifies one request's credentials.
pub struct Authenticator {
    pub config: AuthConfig,
    jwt: jwt::JwtVerifier,
    keys: Option<keys::KeyStore>,
}

impl Authenticator {
    /// Loads keys (PEM files, secrets from the environment) once, at start.
    pub fn new(config: AuthConfig, data_dir: &std::path::Path) -> Result<Authenticator, AuthError> {
        let jwt = jwt::JwtVerifier::new(&config)?;
        let store = match (&config.api_keys, config.api_keys_enabled) {
            (Some(path), _) => Some(path.clone()),
            (None, true) => Some(default_key_store(data_dir)),
            (None, false) => None,
        };
        if jwt.is_empty() && store.is_none() && !config.allow_anonymous {
            return Err(AuthError::Config(
                "[security.auth] accepts no credentials: configure a [[security.auth.jwt]] key, \
                 api_keys, or allow_anonymous"
                    .into(),
            ));
        }
        Ok(Authenticator {
            jwt,
            keys: store.map(keys::KeyStore::new),
            config,
        })
    }

    /// Verifies a request's credentials (`authorization` and `x-api-key` header values).
    /// No credentials: the anonymous identity if allowed, else [`AuthError::Missing`].
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        api_key: Option<&str>,
    ) -> Result<Identity, AuthError> {
        let bearer = match authorization {
            Some(value) => {
                let (scheme, token) = value
                    .trim()
                    .split_once(' ')
                    .ok_or_else(|| AuthError::InvalidToken("malformed Authorization".into()))?;
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return Err(AuthError::InvalidToken(
                        "only the Bearer scheme is accepted".into(),
                    ));
                }
                Some(token.trim())
            }
            None => None,
        };
        let key = api_key.or(bearer.filter(|t| t.starts_with(keys::KEY_PREFIX)));
        if let Some(key) = key {
            let store = self.keys.as_ref().ok_or(AuthError::InvalidKey)?;
            return store.verify(key);
        }
        match bearer {
            Some(token) => self.jwt.verify(token).await,
            None if self.config.allow_anonymous => Ok(Identity::anonymous()),
            None => Err(AuthError::Missing),
        }
    }

    /// A human summary for the banner, e.g. `bearer JWT (2 keys), API keys`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.jwt.is_empty() {
            parts.push(format!("bearer JWT ({})", self.jwt.describe()));
        }
        if self.keys.is_some() {
            parts.push("API keys".to_string());
        }
        if self.config.allow_anonymous {
            parts.push("anonymous allowed".to_string());
        }
        parts.join(", ")
    }
}

/// `[security]`: every security layer's settings. Each absent part is off, so a configuration
/// without `[security]` behaves exactly as before any of them existed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// Authentication of HTTP clients ([`AuthConfig`]). Absent: everyone is anonymous.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Per-tool authorization ([`policy`]). Absent with `auth` present: every tool is allowed
    /// except where a `tool:GLOB` scope narrows; absent without `auth`: no checks at all.
    #[serde(default)]
    pub authorization: Option<policy::AuthorizationConfig>,
    /// Input validation of `tools/call` arguments ([`crate::stack::validate`]). Absent: off.
    #[serde(default)]
    pub validation: Option<crate::stack::validate::ValidationConfig>,
    /// Rate limits on `tools/call` ([`crate::ratelimit`]), all applied in order. Absent: none.
    #[serde(default)]
    pub rate_limit: Vec<crate::ratelimit::RateLimitRule>,
}

impl SecurityConfig {
    /// The compiled authorization rules, when any apply (see the field docs).
    pub fn policies(&self) -> Result<Option<policy::Policies>, crate::config::ConfigError> {
        match (&self.authorization, &self.auth) {
            (Some(config), _) => policy::Policies::new(config).map(Some),
            (None, Some(_)) => policy::Policies::new(&policy::AuthorizationConfig {
                default: policy::DefaultDecision::Allow,
                policies: Vec::new(),
            })
            .map(Some),
            (None, None) => Ok(None),
        }
    }
}
