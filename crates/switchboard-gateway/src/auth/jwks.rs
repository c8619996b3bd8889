//! Verification keys from a JWKS URL (`[[security.auth.jwks]]`), cached and refreshed.
//!
//! An identity provider rotates its signing keys by publishing a new key (with a new `kid`)
//! in its JWKS before it signs with it. So the set is fetched at start, refreshed when the
//! cache is older than `cache_secs`, and refetched at once when a token names a `kid` the cache
//! does not have, at most once per `min_refresh_secs`: a stream of tokens with made-up `kid`s
//! cannot turn the gateway into a request amplifier against the provider.
//!
//! The algorithm of a key never comes from the token: each JWKS entry is configured with the
//! algorithms its keys may have (`algorithms`), a key whose `alg` (or, without one, whose key
//! type) is not among them is ignored, and symmetric (`oct`) keys are never taken from a JWKS.
//! A failed refresh keeps the keys already known.

use std::{sync::Arc, time::Duration};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm as JwkAlgorithm, PublicKeyUse},
};
use serde::Deserialize;
use tokio::time::Instant;

use super::{
    AuthError,
    jwt::{Key, KeyAlgorithm},
};

/// `[[security.auth.jwks]]`: a JWKS endpoint whose keys verify tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksConfig {
    /// The JWKS document's URL (use `https://` outside loopback).
    pub url: String,
    /// The algorithms this provider's keys may use (`RS256`, `ES256`). Required: keys with any
    /// other algorithm are ignored.
    pub algorithms: Vec<KeyAlgorithm>,
    /// Refresh the set when it is older than this, in seconds. Default 300.
    #[serde(default = "default_cache_secs")]
    pub cache_secs: u64,
    /// Least time between two fetches, in seconds, however many unknown `kid`s arrive.
    /// Default 30.
    #[serde(default = "default_min_refresh_secs")]
    pub min_refresh_secs: u64,
    /// Deadline of one fetch, in seconds. Default 5.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_cache_secs() -> u64 {
    300
}
fn default_min_refresh_secs() -> u64 {
    30
}
fn default_timeout_secs() -> u64 {
    5
}

/// Largest JWKS document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

#[derive(Default)]
struct Cached {
    keys: Arc<Vec<Key>>,
    /// When the last fetch was attempted (successful or not); `None`: never.
    attempted: Option<Instant>,
    /// When the keys were last fetched successfully.
    fetched: Option<Instant>,
}

/// One JWKS endpoint's cached keys.
pub struct JwksSource {
    config: JwksConfig,
    client: reqwest::Client,
    validation: jsonwebtoken::Validation,
    cached: tokio::sync::Mutex<Cached>,
}

impl JwksSource {
    /// `validation` carries the claim rules (issuer, audience, leeway); the algorithm is set
    /// per key.
    pub fn new(
        config: JwksConfig,
        validation: jsonwebtoken::Validation,
    ) -> Result<JwksSource, AuthError> {
        if config.algorithms.is_empty() {
            return Err(AuthError::Config(format!(
                "[[security.auth.jwks]] {}: `algorithms` must name at least one of RS256, ES256",
                config.url
            )));
        }
        if config.algorithms.contains(&KeyAlgorithm::HS256) {
            return Err(AuthError::Config(format!(
                "[[security.auth.jwks]] {}: HS256 keys are never taken from a JWKS",
                config.url
            )));
        }
        reqwest::Url::parse(&config.url).map_err(|e| {
            AuthError::Config(format!(
                "[[security.auth.jwks]] bad url {:?}: {e}",
                config.url
            ))
        })?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AuthError::Config(format!("JWKS client: {e}")))?;
        Ok(JwksSource {
            config,
            client,
            validation,
            cached: tokio::sync::Mutex::new(Cached::default()),
        })
    }

    pub fn url(&self) -> &str {
        &self.config.url
    }

    /// The keys that may have signed a token naming `kid`, refreshing the set when it is
    /// stale, or when `kid` is unknown and the last fetch is old enough.
    pub async fn keys(&self, kid: Option<&str>) -> Arc<Vec<Key>> {
        // One lock for lookup and refresh: concurrent callers wait for one fetch instead of
        // each starting their own.
        let mut cached = self.cached.lock().await;
        let now = Instant::now();
        let stale = cached
            .fetched
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(self.config.cache_secs));
        let unknown = kid.is_some_and(|kid| !cached.keys.iter().any(|k| k.has_kid(kid)));
        let may_fetch = cached.attempted.is_none_or(|t| {
            now.duration_since(t) >= Duration::from_secs(self.config.min_refresh_secs)
        });
        if (stale || unknown) && may_fetch {
            cached.attempted = Some(now);
            match self.fetch().await {
                Ok(keys) => {
                    tracing::debug!(url = %self.config.url, keys = keys.len(), "fetched JWKS");
                    cached.keys = Arc::new(keys);
                    cached.fetched = Some(Instant::now());
                }
                Err(err) => {
                    tracing::warn!(url = %self.config.url, %err, "JWKS refresh failed; keeping the known keys");
                }
            }
        }
        cached.keys.clone()
    }

    async fn fetch(&self) -> Result<Vec<Key>, AuthError> {
        let fail = |message: String| AuthError::Config(format!("JWKS {}: {message}", self.url()));
        let mut response = self
            .client
            .get(&self.config.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| fail(e.to_string()))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(fail(format!("larger than {MAX_JWKS_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| fail(e.to_string()))?;
        Ok(self.usable_keys(&set))
    }

    /// The keys of `set` this source may use, each bound to its one algorithm.
    fn usable_keys(&self, set: &JwkSet) -> Vec<Key> {
        let mut keys = Vec::new();
        for jwk in &set.keys {
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let algorithm = match (&jwk.common.key_algorithm, &jwk.algorithm) {
                (Some(JwkAlgorithm::RS256), AlgorithmParameters::RSA(_)) => KeyAlgorithm::RS256,
                (Some(JwkAlgorithm::ES256), AlgorithmParameters::EllipticCurve(ec))
                    if ec.curve == EllipticCurve::P256 =>
                {
                    KeyAlgorithm::ES256
                }
                (None, AlgorithmParameters::RSA(_)) => KeyAlgorithm::RS256,
                (None, AlgorithmParameters::EllipticCurve(ec))
                    if ec.curve == EllipticCurve::P256 =>
                {
                    KeyAlgorithm::ES256
                }
                // Symmetric keys, other algorithms and mismatched key types are never used.
                _ => continue,
            };
            if !self.config.algorithms.contains(&algorithm) {
                continue;
            }
            let Ok(decoding) = DecodingKey::from_jwk(jwk) else {
                tracing::warn!(url = %self.config.url, kid = ?jwk.common.key_id, "skipping an unreadable JWKS key");
                continue;
            };
            let mut validation = self.validation.clone();
            validation.algorithms = vec![Algorithm::from(algorithm)];
            keys.push(Key::new(jwk.common.key_id.clone(), decoding, validation));
        }
        keys
    }
}
