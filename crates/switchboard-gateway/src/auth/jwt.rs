//! Bearer JWT verification (the `jsonwebtoken` crate) and HS256 issuing.
//!
//! The classic JWT attacks are closed by construction: every configured key has exactly one
//! algorithm, and a token is checked only with that algorithm, so `alg: none` and "HS256 signed
//! with the RS256 public key" are refused as an algorithm mismatch; a token naming a `kid` that
//! no key has is refused rather than tried against every key; `exp`, `iss` and `aud` are
//! required and `nbf` is checked when present, with `leeway_secs` (default 30) of slack.
//! Keys come from the configuration (`[[security.auth.jwt]]`) and from JWKS endpoints
//! ([`super::jwks`]), under the same rules.

use std::path::PathBuf;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::{AuthConfig, AuthError, Identity};

/// The algorithms a key may be configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum KeyAlgorithm {
    HS256,
    RS256,
    ES256,
}

impl From<KeyAlgorithm> for Algorithm {
    fn from(a: KeyAlgorithm) -> Algorithm {
        match a {
            KeyAlgorithm::HS256 => Algorithm::HS256,
            KeyAlgorithm::RS256 => Algorithm::RS256,
            KeyAlgorithm::ES256 => Algorithm::ES256,
        }
    }
}

/// `[[security.auth.jwt]]`: one verification key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// The `kid` tokens name for this key. A token with a `kid` is checked only against the key
    /// with that `kid`; a token without one against every key. Default none.
    #[serde(default)]
    pub kid: Option<String>,
    /// The only algorithm this key accepts.
    pub algorithm: KeyAlgorithm,
    /// HS256: the shared secret, inline (prefer `secret_env`).
    #[serde(default)]
    pub secret: Option<String>,
    /// HS256: the environment variable holding the shared secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// RS256/ES256: a PEM file with the public key.
    #[serde(default)]
    pub public_key: Option<PathBuf>,
}

impl JwtKeyConfig {
    /// The HS256 secret, from `secret` or `secret_env`.
    pub fn hs256_secret(&self) -> Result<String, AuthError> {
        if let Some(secret) = &self.secret {
            return Ok(secret.clone());
        }
        let var = self.secret_env.as_ref().ok_or_else(|| {
            AuthError::Config("an HS256 key needs `secret` or `secret_env`".into())
        })?;
        std::env::var(var).map_err(|_| {
            AuthError::Config(format!(
                "environment variable {var} (HS256 secret) is not set"
            ))
        })
    }
}

/// One verification key, bound to its one algorithm (in `validation`).
#[derive(Clone)]
pub struct Key {
    kid: Option<String>,
    decoding: DecodingKey,
    validation: Validation,
}

impl Key {
    pub fn new(kid: Option<String>, decoding: DecodingKey, validation: Validation) -> Key {
        Key {
            kid,
            decoding,
            validation,
        }
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.kid.as_deref() == Some(kid)
    }
}

/// The claim rules every key applies: required `exp`, `iss`, `aud` and `sub`, `nbf` when
/// present, with the configured leeway; `algorithm` is the key's only algorithm.
pub fn validation_for(algorithm: Algorithm, config: &AuthConfig) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = config.leeway_secs;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.set_issuer(&[&config.issuer]);
    validation.set_audience(&[&config.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation
}

/// The compiled keys: configured ones, and JWKS endpoints.
pub struct JwtVerifier {
    keys: Vec<Key>,
    jwks: Vec<super::jwks::JwksSource>,
}

/// Shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

impl JwtVerifier {
    pub fn new(config: &AuthConfig) -> Result<JwtVerifier, AuthError> {
        let mut keys = Vec::with_capacity(config.jwt_keys.len());
        for key in &config.jwt_keys {
            let decoding = match key.algorithm {
                KeyAlgorithm::HS256 => {
                    let secret = key.hs256_secret()?;
                    if secret.len() < MIN_HS256_SECRET_BYTES {
                        return Err(AuthError::Config(format!(
                            "the HS256 secret must be at least {MIN_HS256_SECRET_BYTES} bytes"
                        )));
                    }
                    DecodingKey::from_secret(secret.as_bytes())
                }
                KeyAlgorithm::RS256 | KeyAlgorithm::ES256 => {
                    let path = key.public_key.as_ref().ok_or_else(|| {
                        AuthError::Config(format!(
                            "a {:?} key needs `public_key` (a PEM file)",
                            key.algorithm
                        ))
                    })?;
                    let pem = std::fs::read(path).map_err(|e| {
                        AuthError::Config(format!("could not read {}: {e}", path.display()))
                    })?;
                    let parsed = if key.algorithm == KeyAlgorithm::RS256 {
                        DecodingKey::from_rsa_pem(&pem)
                    } else {
                        DecodingKey::from_ec_pem(&pem)
                    };
                    parsed.map_err(|e| {
                        AuthError::Config(format!("bad public key {}: {e}", path.display()))
                    })?
                }
            };
            keys.push(Key {
                kid: key.kid.clone(),
                decoding,
                validation: validation_for(key.algorithm.into(), config),
            });
        }
        let jwks = config
            .jwks
            .iter()
            .map(|source| {
                // The algorithm is set per key when the set is fetched.
                super::jwks::JwksSource::new(
                    source.clone(),
                    validation_for(Algorithm::RS256, config),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(JwtVerifier { keys, jwks })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.jwks.is_empty()
    }

    /// A human summary of where keys come from, e.g. `2 keys, 1 JWKS`.
    pub fn describe(&self) -> String {
        match self.jwks.len() {
            0 => format!("{} keys", self.keys.len()),
            n => format!("{} keys, {n} JWKS", self.keys.len()),
        }
    }

    /// Verifies `token`; the identity comes from `sub`, `scope`/`scp` and `roles`.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::InvalidToken(format!("malformed token: {e}")))?;
        let kid = header.kid.as_deref();
        let matches = |k: &&Key| kid.is_none_or(|kid| k.has_kid(kid));
        let mut candidates: Vec<Key> = self.keys.iter().filter(matches).cloned().collect();
        // JWKS keys are looked up (and fetched) only when no configured key could apply.
        if candidates.is_empty() || kid.is_none() {
            for source in &self.jwks {
                candidates.extend(source.keys(kid).await.iter().filter(matches).cloned());
            }
        }
        if candidates.is_empty() {
            return Err(AuthError::InvalidToken(match header.kid {
                Some(kid) => format!("unknown key id {kid:?}"),
                None => "no verification key is configured".into(),
            }));
        }
        let mut last = None;
        for key in &candidates {
            match jsonwebtoken::decode::<Value>(token, &key.decoding, &key.validation) {
                Ok(data) => return identity_of(&data.claims),
                Err(e) => last = Some(e),
            }
        }
        Err(AuthError::InvalidToken(
            last.map(|e| e.to_string())
                .unwrap_or_else(|| "not verified".into()),
        ))
    }
}

fn strings(value: Option<&Value>, split_spaces: bool) -> Vec<String> {
    match value {
        Some(Value::String(s)) if split_spaces => {
            s.split_whitespace().map(str::to_string).collect()
        }
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn identity_of(claims: &Value) -> Result<Identity, AuthError> {
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AuthError::InvalidToken("the `sub` claim must be a string".into()))?;
    let mut scopes = strings(claims.get("scope"), true);
    scopes.extend(strings(claims.get("scp"), true));
    Ok(Identity {
        subject: subject.to_string(),
        scopes,
        roles: strings(claims.get("roles"), false),
        key: None,
        anonymous: false,
    })
}

/// What `switchboard token issue` puts in a token.
pub struct IssueRequest<'a> {
    pub secret: &'a [u8],
    pub kid: Option<String>,
    pub subject: &'a str,
    pub scopes: &'a [String],
    pub roles: &'a [String],
    pub ttl: std::time::Duration,
    pub issuer: &'a str,
    pub audience: &'a str,
}

/// Signs an HS256 token valid from now for `ttl`.
pub fn issue_hs256(request: &IssueRequest<'_>) -> Result<String, AuthError> {
    if request.secret.len() < MIN_HS256_SECRET_BYTES {
        return Err(AuthError::Config(format!(
            "the HS256 secret must be at least {MIN_HS256_SECRET_BYTES} bytes"
        )));
    }
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = serde_json::json!({
        "sub": request.subject,
        "iss": request.issuer,
        "aud": request.audience,
        "iat": now,
        "nbf": now,
        "exp": now.saturating_add(request.ttl.as_secs()),
    });
    if !request.scopes.is_empty() {
        claims["scope"] = request.scopes.join(" ").into();
    }
    if !request.roles.is_empty() {
        claims["roles"] = request.roles.into();
    }
    let mut header = Header::new(Algorithm::HS256);
    header.kid = request.kid.clone();
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(request.secret))
        .map_err(|e| AuthError::Config(format!("could not sign: {e}")))
}
