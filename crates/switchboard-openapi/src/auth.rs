//! Authenticating requests to the REST service.
//!
//! Secrets come from environment variables named in the configuration (never from the file
//! itself) and are held in [`Secret`], whose `Debug` prints `***`; errors name the variable,
//! never its value. OAuth2 client-credentials tokens are cached and fetched again shortly
//! before they expire, or after the service answers 401.

use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use crate::config::ConfigError;

/// How requests authenticate (`[upstream.openapi.auth]`, tagged by `type`).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// Environment variable holding the token.
        token_env: String,
    },
    /// An API key in a header or a query parameter.
    ApiKey {
        /// `header` (default) or `query`.
        #[serde(default, rename = "in")]
        location: ApiKeyLocation,
        /// Header or query parameter name, e.g. `X-API-Key` or `api_key`.
        name: String,
        /// Environment variable holding the key.
        value_env: String,
    },
    /// HTTP basic authentication.
    Basic {
        username_env: String,
        password_env: String,
    },
    /// OAuth2 client credentials (RFC 6749 §4.4); the token is cached until shortly before
    /// it expires.
    Oauth2ClientCredentials {
        token_url: String,
        client_id_env: String,
        client_secret_env: String,
        #[serde(default)]
        scopes: Vec<String>,
        /// How the client authenticates to the token endpoint: `basic` (default, the
        /// Authorization header) or `body` (`client_id`/`client_secret` form fields).
        #[serde(default)]
        client_auth: ClientAuth,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKeyLocation {
    #[default]
    Header,
    Query,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    #[default]
    Basic,
    Body,
}

impl AuthConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        match self {
            AuthConfig::ApiKey { name, .. } if name.trim().is_empty() => {
                Err(ConfigError("auth.name is empty".into()))
            }
            AuthConfig::ApiKey {
                location: ApiKeyLocation::Header,
                name,
                ..
            } if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() => Err(
                ConfigError(format!("auth.name {name:?} is not a valid header name")),
            ),
            AuthConfig::Oauth2ClientCredentials { token_url, .. } => {
                let url = url::Url::parse(token_url)
                    .map_err(|e| ConfigError(format!("auth.token_url {token_url:?}: {e}")))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(ConfigError(format!(
                        "auth.token_url {token_url:?} must be an http or https URL"
                    )));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// A secret value: never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Why credentials could not be had.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("environment variable {0} is not set (or not UTF-8)")]
    MissingEnv(String),
    #[error("the OAuth2 token request failed: {0}")]
    TokenRequest(String),
    #[error("{0}")]
    Invalid(String),
}

fn env_secret(name: &str) -> Result<Secret, AuthError> {
    std::env::var(name)
        .map(Secret)
        .map_err(|_| AuthError::MissingEnv(name.to_string()))
}

/// Credentials read from the environment, ready to apply to requests.
#[derive(Debug)]
pub(crate) enum Auth {
    None,
    Bearer(Secret),
    ApiKeyHeader {
        name: reqwest::header::HeaderName,
        value: Secret,
    },
    ApiKeyQuery {
        name: String,
        value: Secret,
    },
    Basic {
        username: Secret,
        password: Secret,
    },
    OAuth2(OAuth2),
}

#[derive(Debug)]
pub(crate) struct OAuth2 {
    token_url: String,
    client_id: Secret,
    client_secret: Secret,
    scopes: Vec<String>,
    client_auth: ClientAuth,
    cached: Mutex<Option<CachedToken>>,
}

#[derive(Debug, Clone)]
struct CachedToken {
    token: Secret,
    /// When to fetch a new one (before the real expiry).
    refresh_at: Option<Instant>,
}

/// Refresh this long before a token's stated expiry (or at half its lifetime when shorter).
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Largest token response read, in bytes.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

impl Auth {
    /// Reads the secrets `config` names from the environment.
    pub(crate) fn from_config(config: Option<&AuthConfig>) -> Result<Auth, AuthError> {
        let Some(config) = config else {
            return Ok(Auth::None);
        };
        Ok(match config {
            AuthConfig::Bearer { token_env } => Auth::Bearer(env_secret(token_env)?),
            AuthConfig::ApiKey {
                location: ApiKeyLocation::Header,
                name,
                value_env,
            } => Auth::ApiKeyHeader {
                name: reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    AuthError::Invalid(format!("{name:?} is not a valid header name"))
                })?,
                value: env_secret(value_env)?,
            },
            AuthConfig::ApiKey {
                location: ApiKeyLocation::Query,
                name,
                value_env,
            } => Auth::ApiKeyQuery {
                name: name.clone(),
                value: env_secret(value_env)?,
            },
            AuthConfig::Basic {
                username_env,
                password_env,
            } => Auth::Basic {
                username: env_secret(username_env)?,
                password: env_secret(password_env)?,
            },
            AuthConfig::Oauth2ClientCredentials {
                token_url,
                client_id_env,
                client_secret_env,
                scopes,
                client_auth,
            } => Auth::OAuth2(OAuth2 {
                token_url: token_url.clone(),
                client_id: env_secret(client_id_env)?,
                client_secret: env_secret(client_secret_env)?,
                scopes: scopes.clone(),
                client_auth: *client_auth,
                cached: Mutex::new(None),
            }),
        })
    }

    /// Query parameters the credentials add (an API key in the query).
    pub(crate) fn query_pair(&self) -> Option<(&str, &str)> {
        match self {
            Auth::ApiKeyQuery { name, value } => Some((name, value.expose())),
            _ => None,
        }
    }

    /// Adds the credentials' headers to `request`.
    pub(crate) async fn apply(
        &self,
        http: &reqwest::Client,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, AuthError> {
        Ok(match self {
            Auth::None | Auth::ApiKeyQuery { .. } => request,
            Auth::Bearer(token) => request.bearer_auth(token.expose()),
            Auth::ApiKeyHeader { name, value } => {
                let mut value =
                    reqwest::header::HeaderValue::from_str(value.expose()).map_err(|_| {
                        AuthError::Invalid("the API key is not a valid header value".into())
                    })?;
                value.set_sensitive(true);
                request.header(name.clone(), value)
            }
            Auth::Basic { username, password } => {
                request.basic_auth(username.expose(), Some(password.expose()))
            }
            Auth::OAuth2(oauth) => request.bearer_auth(oauth.token(http).await?.expose()),
        })
    }

    /// Forgets a cached token after the service refused it; true when there was one to
    /// forget (so a retry may succeed).
    pub(crate) async fn invalidate(&self) -> bool {
        match self {
            Auth::OAuth2(oauth) => oauth.cached.lock().await.take().is_some(),
            _ => false,
        }
    }
}

impl OAuth2 {
    async fn token(&self, http: &reqwest::Client) -> Result<Secret, AuthError> {
        // Held across the fetch so concurrent calls wait for one token request.
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref()
            && token.refresh_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(token.token.clone());
        }
        let fresh = self.fetch(http).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<CachedToken, AuthError> {
        // Built before any await: the serialiser is not `Send`.
        let form = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials");
            if !self.scopes.is_empty() {
                form.append_pair("scope", &self.scopes.join(" "));
            }
            if self.client_auth == ClientAuth::Body {
                form.append_pair("client_id", self.client_id.expose());
                form.append_pair("client_secret", self.client_secret.expose());
            }
            form.finish()
        };
        let mut request = http.post(&self.token_url);
        if self.client_auth == ClientAuth::Basic {
            request =
                request.basic_auth(self.client_id.expose(), Some(self.client_secret.expose()));
        }
        let fail = |message: String| AuthError::TokenRequest(message);
        let response = request
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(form)
            .send()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        let status = response.status();
        let body = crate::call::read_capped(response, MAX_TOKEN_RESPONSE_BYTES as u64)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !status.is_success() {
            return Err(fail(format!(
                "HTTP {status}: {}",
                crate::call::excerpt(&String::from_utf8_lossy(&body))
            )));
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| fail(format!("the token response is not valid: {e}")))?;
        let now = Instant::now();
        let refresh_at = parsed.expires_in.map(|secs| {
            let lifetime = Duration::from_secs(secs);
            let margin = REFRESH_MARGIN.min(lifetime / 2);
            now + (lifetime - margin)
        });
        tracing::debug!(expires_in = ?parsed.expires_in, "fetched an OAuth2 access token");
        Ok(CachedToken {
            token: Secret(parsed.access_token),
            refresh_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let auth = Auth::Basic {
            username: Secret::new("alice"),
            password: Secret::new("hunter2"),
        };
        let printed = format!("{auth:?}");
        assert!(!printed.contains("hunter2") && !printed.contains("alice"));
        assert!(printed.contains("***"));
    }

    #[test]
    fn missing_env_names_the_variable() {
        let config = AuthConfig::Bearer {
            token_env: "SWITCHBOARD_OPENAPI_TEST_SURELY_UNSET".into(),
        };
        let err = Auth::from_config(Some(&config)).unwrap_err().to_string();
        assert!(err.contains("SWITCHBOARD_OPENAPI_TEST_SURELY_UNSET"));
    }

    #[test]
    fn parses_each_kind() {
        let parse = |v: serde_json::Value| serde_json::from_value::<AuthConfig>(v);
        assert!(matches!(
            parse(
                serde_json::json!({"type": "api_key", "in": "query", "name": "k", "value_env": "K"})
            ),
            Ok(AuthConfig::ApiKey {
                location: ApiKeyLocation::Query,
                ..
            })
        ));
        assert!(matches!(
            parse(
                serde_json::json!({"type": "oauth2_client_credentials", "token_url": "http://127.0.0.1/t",
                "client_id_env": "I", "client_secret_env": "S", "scopes": ["a"]})
            ),
            Ok(AuthConfig::Oauth2ClientCredentials {
                client_auth: ClientAuth::Basic,
                ..
            })
        ));
        assert!(parse(serde_json::json!({"type": "bearer", "token": "inline"})).is_err());
    }
}
