//! Rate limits on `tools/call` (`[[security.rate_limit]]`): the rules, their backends and
//! their counters. The tower layer that applies them is [`crate::stack::rate_limit`].
//!
//! Every rule is GCRA (the generic cell rate algorithm) with a burst of `limit` and one cell
//! replenished every `window_secs / limit`: a client that has been quiet may make `limit`
//! calls at once, then one per `window / limit`. So exactly `limit` of any number of
//! simultaneous calls pass, and over any window no more than `2 × limit - 1` can (the burst,
//! then the steady rate), with no fixed-window boundary to exploit.
//!
//! Backends:
//! - `local`: in this process, with [`governor`] (lock-free, one state per key).
//! - `redis`: shared by every gateway using the same Redis and `key_prefix`; each decision is
//!   one atomic Lua script ([`redis_store`]) using Redis's clock, so gateways need no clock sync and
//!   concurrent decisions across gateways are as exact as local ones.
//!
//! When Redis cannot answer within `redis_timeout_ms`, `on_redis_error` decides: `open` lets
//! the call through (a warning and the `failed_open` counter), `closed` refuses it.

pub(crate) mod redis_store;

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use globset::{Glob, GlobSet, GlobSetBuilder};
use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};
use serde::{Deserialize, Serialize};

use crate::{auth::Identity, config::ConfigError, error::GatewayError};

/// One `[[security.rate_limit]]` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitRule {
    /// Unique; named in refusals, logs and stats, and part of the Redis key.
    pub name: String,
    /// Globs over exposed tool names (`crm__*`); empty (the default): every tool.
    #[serde(default)]
    pub tools: Vec<String>,
    /// What one budget is shared by. Default `identity`.
    #[serde(default)]
    pub per: RateLimitScope,
    /// Calls allowed per window (and the largest burst). At least 1.
    pub limit: u32,
    /// The window, in seconds. At least 1.
    pub window_secs: u64,
    /// Where the counts live. Default `local`.
    #[serde(default)]
    pub backend: RateLimitBackend,
    /// `redis://[user:password@]host:port[/db]`; this or `redis_url_env` is required for
    /// `backend = "redis"`.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// The name of an environment variable holding the Redis URL (for a password kept out
    /// of the config file).
    #[serde(default)]
    pub redis_url_env: Option<String>,
    /// What happens when Redis cannot decide. Default `open`.
    #[serde(default)]
    pub on_redis_error: OnRedisError,
    /// Prefix of this rule's Redis keys (`<prefix><rule>:<scope>`). Default
    /// `switchboard:ratelimit:`; gateways that should share budgets use the same prefix.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Longest one decision waits for Redis, connecting included, in milliseconds. Default 500.
    #[serde(default = "default_redis_timeout_ms")]
    pub redis_timeout_ms: u64,
}

fn default_key_prefix() -> String {
    "switchboard:ratelimit:".into()
}
fn default_redis_timeout_ms() -> u64 {
    500
}

/// Who shares one budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitScope {
    /// Each authenticated subject (all anonymous callers share `anonymous`).
    #[default]
    Identity,
    /// Each exposed tool.
    Tool,
    /// Each upstream.
    Upstream,
    /// Everyone and every matching tool together.
    Global,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitBackend {
    #[default]
    Local,
    Redis,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRedisError {
    /// Let the call through; log a warning and count it.
    #[default]
    Open,
    /// Refuse the call with a `rate_limit_unavailable` error.
    Closed,
}

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid {
        upstream: "security.rate_limit".into(),
        message,
    }
}

/// Checks the rules without connecting anywhere (for `config check` and load time).
pub fn validate(rules: &[RateLimitRule]) -> Result<(), ConfigError> {
    let mut names = std::collections::HashSet::new();
    for rule in rules {
        let name = &rule.name;
        if name.is_empty() {
            return Err(invalid("every rule needs a name".into()));
        }
        if !names.insert(name.as_str()) {
            return Err(invalid(format!("rule {name:?}: the name is used twice")));
        }
        if rule.limit == 0 || rule.window_secs == 0 {
            return Err(invalid(format!(
                "rule {name:?}: limit and window_secs must be at least 1"
            )));
        }
        tool_globs(rule)?;
        let names_redis =
            redis_store::check_url_source(rule.redis_url.as_deref(), rule.redis_url_env.as_deref())
                .map_err(|e| invalid(format!("rule {name:?}: {e}")))?;
        match (rule.backend, names_redis) {
            (RateLimitBackend::Redis, false) => {
                return Err(invalid(format!(
                    "rule {name:?}: backend = \"redis\" needs redis_url or redis_url_env"
                )));
            }
            (RateLimitBackend::Redis, true) => {
                if rule.redis_timeout_ms == 0 {
                    return Err(invalid(format!(
                        "rule {name:?}: redis_timeout_ms must be at least 1"
                    )));
                }
            }
            (RateLimitBackend::Local, true) => {
                return Err(invalid(format!(
                    "rule {name:?}: redis_url is only used with backend = \"redis\""
                )));
            }
            (RateLimitBackend::Local, false) => {}
        }
    }
    Ok(())
}

fn tool_globs(rule: &RateLimitRule) -> Result<Option<GlobSet>, ConfigError> {
    if rule.tools.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for pattern in &rule.tools {
        builder.add(Glob::new(pattern).map_err(|e| {
            invalid(format!(
                "rule {:?}: bad tool glob {pattern:?}: {e}",
                rule.name
            ))
        })?);
    }
    builder
        .build()
        .map(Some)
        .map_err(|e| invalid(format!("rule {:?}: {e}", rule.name)))
}

/// One rule's counters, for status and tests.
#[derive(Debug, Clone, Serialize)]
pub struct RateLimitStats {
    pub rule: String,
    pub backend: RateLimitBackend,
    pub allowed: u64,
    pub limited: u64,
    /// Decisions Redis could not make (timeouts, connection and script errors).
    pub backend_errors: u64,
    /// Calls let through because Redis could not decide (`on_redis_error = "open"`).
    pub failed_open: u64,
    /// Calls refused because Redis could not decide (`on_redis_error = "closed"`).
    pub failed_closed: u64,
}

#[derive(Default)]
struct Counters {
    allowed: AtomicU64,
    limited: AtomicU64,
    backend_errors: AtomicU64,
    failed_open: AtomicU64,
    failed_closed: AtomicU64,
}

/// Local states are pruned of keys back at their initial state every this many decisions,
/// so per-identity rules do not grow without bound.
const PRUNE_EVERY: u64 = 4096;

enum Backend {
    Local {
        limiter: DefaultKeyedRateLimiter<String>,
        decisions: AtomicU64,
    },
    Redis {
        store: Arc<redis_store::RedisStore>,
        /// The GCRA emission interval (window / limit), in microseconds.
        emission_us: u64,
    },
}

struct Rule {
    config: RateLimitRule,
    tools: Option<GlobSet>,
    backend: Backend,
    counters: Counters,
}

/// What one rule says about one call.
enum Decision {
    Allow,
    Limited(Duration),
    /// The backend could not decide: why.
    Unknown(String),
}

impl Rule {
    fn applies_to(&self, tool: &str) -> bool {
        self.tools.as_ref().is_none_or(|globs| globs.is_match(tool))
    }

    /// The budget this call draws from, within the rule.
    fn scope(&self, who: &Identity, tool: &str, upstream: &str) -> String {
        match self.config.per {
            RateLimitScope::Identity => format!("identity:{}", who.subject),
            RateLimitScope::Tool => format!("tool:{tool}"),
            RateLimitScope::Upstream => format!("upstream:{upstream}"),
            RateLimitScope::Global => "global".to_string(),
        }
    }

    async fn decide(&self, scope: String) -> Decision {
        match &self.backend {
            Backend::Local { limiter, decisions } => {
                if decisions.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
                    limiter.retain_recent();
                }
                match limiter.check_key(&scope) {
                    Ok(()) => Decision::Allow,
                    Err(not_until) => {
                        Decision::Limited(not_until.wait_time_from(limiter.clock().now()))
                    }
                }
            }
            Backend::Redis { store, emission_us } => {
                let key = format!("{}{}:{scope}", self.config.key_prefix, self.config.name);
                match store.gcra(&key, *emission_us, self.config.limit).await {
                    Ok(None) => Decision::Allow,
                    Ok(Some(wait)) => Decision::Limited(wait),
                    Err(err) => Decision::Unknown(err.to_string()),
                }
            }
        }
    }

    fn stats(&self) -> RateLimitStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RateLimitStats {
            rule: self.config.name.clone(),
            backend: self.config.backend,
            allowed: load(&self.counters.allowed),
            limited: load(&self.counters.limited),
            backend_errors: load(&self.counters.backend_errors),
            failed_open: load(&self.counters.failed_open),
            failed_closed: load(&self.counters.failed_closed),
        }
    }
}

/// The compiled `[[security.rate_limit]]` rules.
pub struct RateLimits {
    rules: Vec<Rule>,
}

impl RateLimits {
    /// Compiles the rules; Redis is connected lazily, on the first decision that needs it.
    pub fn new(rules: &[RateLimitRule]) -> Result<RateLimits, ConfigError> {
        validate(rules)?;
        // One connection per Redis URL and timeout, shared by the rules that name it.
        let mut stores: HashMap<(String, u64), Arc<redis_store::RedisStore>> = HashMap::new();
        let mut compiled = Vec::with_capacity(rules.len());
        for rule in rules {
            let limit = NonZeroU32::new(rule.limit).ok_or_else(|| {
                invalid(format!("rule {:?}: limit must be at least 1", rule.name))
            })?;
            let window = Duration::from_secs(rule.window_secs);
            let url =
                redis_store::resolve_url(rule.redis_url.as_deref(), rule.redis_url_env.as_deref())
                    .map_err(|e| invalid(format!("rule {:?}: {e}", rule.name)))?;
            let backend = match (&rule.backend, &url) {
                (RateLimitBackend::Redis, Some(url)) => {
                    let timeout = Duration::from_millis(rule.redis_timeout_ms);
                    let store = match stores.get(&(url.clone(), rule.redis_timeout_ms)) {
                        Some(store) => store.clone(),
                        None => {
                            let store = Arc::new(
                                redis_store::RedisStore::new(url, timeout)
                                    .map_err(|e| invalid(format!("rule {:?}: {e}", rule.name)))?,
                            );
                            stores.insert((url.clone(), rule.redis_timeout_ms), store.clone());
                            store
                        }
                    };
                    Backend::Redis {
                        store,
                        emission_us: emission_interval(window, limit).as_micros() as u64,
                    }
                }
                _ => {
                    let quota = Quota::with_period(emission_interval(window, limit))
                        .ok_or_else(|| invalid(format!("rule {:?}: empty window", rule.name)))?
                        .allow_burst(limit);
                    Backend::Local {
                        limiter: DefaultKeyedRateLimiter::keyed(quota),
                        decisions: AtomicU64::new(0),
                    }
                }
            };
            compiled.push(Rule {
                tools: tool_globs(rule)?,
                config: rule.clone(),
                backend,
                counters: Counters::default(),
            });
        }
        Ok(RateLimits { rules: compiled })
    }

    /// Whether any rule applies to the exposed tool `tool` (a cheap pre-check).
    pub fn applies_to(&self, tool: &str) -> bool {
        self.rules.iter().any(|r| r.applies_to(tool))
    }

    /// Spends one call of every rule that applies, in order; the first rule that refuses
    /// ends the check (the budgets of the rules before it stay spent).
    pub async fn check(
        &self,
        who: &Identity,
        tool: &str,
        upstream: &str,
    ) -> Result<(), GatewayError> {
        for rule in self.rules.iter().filter(|r| r.applies_to(tool)) {
            let counters = &rule.counters;
            match rule.decide(rule.scope(who, tool, upstream)).await {
                Decision::Allow => {
                    counters.allowed.fetch_add(1, Ordering::Relaxed);
                }
                Decision::Limited(retry_after) => {
                    counters.limited.fetch_add(1, Ordering::Relaxed);
                    return Err(GatewayError::RateLimited {
                        rule: rule.config.name.clone(),
                        tool: tool.to_string(),
                        retry_after,
                    });
                }
                Decision::Unknown(message) => {
                    counters.backend_errors.fetch_add(1, Ordering::Relaxed);
                    match rule.config.on_redis_error {
                        OnRedisError::Open => {
                            counters.failed_open.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(rule = %rule.config.name, %tool, error = %message,
                                "rate limit could not be checked; letting the call through (on_redis_error = \"open\")");
                        }
                        OnRedisError::Closed => {
                            counters.failed_closed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(rule = %rule.config.name, %tool, error = %message,
                                "rate limit could not be checked; refusing the call (on_redis_error = \"closed\")");
                            return Err(GatewayError::RateLimitUnavailable {
                                rule: rule.config.name.clone(),
                                message,
                            });
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Each rule's counters, in configuration order.
    pub fn stats(&self) -> Vec<RateLimitStats> {
        self.rules.iter().map(Rule::stats).collect()
    }
}

/// `window / limit`, at least one microsecond (the Redis backend's resolution).
fn emission_interval(window: Duration, limit: NonZeroU32) -> Duration {
    (window / limit.get()).max(Duration::from_micros(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(toml_text: &str) -> Result<Vec<RateLimitRule>, String> {
        #[derive(Deserialize)]
        struct File {
            rate_limit: Vec<RateLimitRule>,
        }
        toml::from_str::<File>(toml_text)
            .map(|f| f.rate_limit)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_refusals() {
        let parsed =
            rules("[[rate_limit]]\nname = \"a\"\nlimit = 5\nwindow_secs = 60\n").expect("parses");
        assert_eq!(parsed[0].per, RateLimitScope::Identity);
        assert_eq!(parsed[0].backend, RateLimitBackend::Local);
        assert_eq!(parsed[0].on_redis_error, OnRedisError::Open);
        assert!(validate(&parsed).is_ok());

        let refused = |text: &str| {
            let parsed = rules(text).expect("parses");
            validate(&parsed).expect_err("refused").to_string()
        };
        assert!(
            refused("[[rate_limit]]\nname = \"a\"\nlimit = 0\nwindow_secs = 1\n")
                .contains("at least 1")
        );
        assert!(
            refused(
                "[[rate_limit]]\nname = \"a\"\nlimit = 1\nwindow_secs = 1\nbackend = \"redis\"\n"
            )
            .contains("needs redis_url")
        );
        assert!(refused(
            "[[rate_limit]]\nname = \"a\"\nlimit = 1\nwindow_secs = 1\nbackend = \"redis\"\nredis_url = \"nope\"\n"
        )
        .contains("rule \"a\""));
        assert!(
            refused("[[rate_limit]]\nname = \"a\"\nlimit = 1\nwindow_secs = 1\ntools = [\"[\"]\n")
                .contains("bad tool glob")
        );
        assert!(refused(
            "[[rate_limit]]\nname = \"a\"\nlimit = 1\nwindow_secs = 1\n[[rate_limit]]\nname = \"a\"\nlimit = 1\nwindow_secs = 1\n"
        )
        .contains("used twice"));
        assert!(
            rules("[[rate_limit]]\nname = \"a\"\nlimit = 1\nwindow_secs = 1\nper = \"ip\"\n")
                .is_err()
        );
    }

    #[tokio::test]
    async fn local_burst_is_exactly_the_limit_per_scope() {
        let parsed = rules(
            "[[rate_limit]]\nname = \"w\"\ntools = [\"crm__*\"]\nlimit = 3\nwindow_secs = 3600\n",
        )
        .expect("parses");
        let limits = RateLimits::new(&parsed).expect("compiles");
        let alice = Identity {
            subject: "alice".into(),
            ..Identity::anonymous()
        };
        let bob = Identity {
            subject: "bob".into(),
            ..Identity::anonymous()
        };
        assert!(!limits.applies_to("fs__read"));
        for _ in 0..3 {
            limits
                .check(&alice, "crm__create", "crm")
                .await
                .expect("within the limit");
        }
        match limits.check(&alice, "crm__update", "crm").await {
            Err(GatewayError::RateLimited {
                rule, retry_after, ..
            }) => {
                assert_eq!(rule, "w");
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1200));
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        limits
            .check(&bob, "crm__create", "crm")
            .await
            .expect("bob has his own budget");
        let stats = &limits.stats()[0];
        assert_eq!((stats.allowed, stats.limited), (4, 1));
    }
}
