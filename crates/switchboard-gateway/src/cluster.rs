//! `[cluster]`: what replicas of the gateway share through Redis, beyond rate limits: a second
//! tier for the result cache, and a pub/sub channel that fans out what one replica learns.
//!
//! Replicas keep their own upstream connections, catalogs and caches; Redis only carries what
//! must agree between them, so a Redis outage degrades to independent replicas instead of an
//! outage (every Redis use here is bounded by `redis_timeout_ms` and falls back to local
//! behaviour). Events on the channel:
//! - an upstream's `list_changed` (tools, prompts, resources), so replicas whose own
//!   connection did not get the notification refresh too;
//! - a configuration reload, so every replica rereads its file at once;
//! - a result-cache invalidation, so no replica keeps serving what another dropped;
//! - a session ended with `DELETE`, so no replica resumes its sealed id.
//!
//! Each event names the replica that sent it; a replica ignores its own.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::ratelimit::redis_store::{RedisStore, StoreError, check_url_source, resolve_url};

/// The `[cluster]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The Redis every replica shares (`redis://[user:password@]host:port[/db]`, `rediss://`
    /// for TLS). This or `redis_url_env` is required.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// The name of an environment variable holding the Redis URL, for a URL with a password
    /// kept out of the config file (a Kubernetes Secret, say).
    #[serde(default)]
    pub redis_url_env: Option<String>,
    /// Prefix of every key and of the channel; replicas with the same prefix form one
    /// cluster. Default `switchboard:`.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// Keep cached tool results in Redis too, so one replica's result serves the others.
    /// Default true.
    #[serde(default = "default_true")]
    pub shared_cache: bool,
    /// Longest any one Redis operation may take before the replica goes on without it, in
    /// milliseconds. Default 500.
    #[serde(default = "default_timeout_ms")]
    pub redis_timeout_ms: u64,
    /// Largest result stored in Redis, in bytes; larger ones stay local. Default 1 MiB.
    #[serde(default = "default_max_value_bytes")]
    pub max_value_bytes: usize,
}

fn default_prefix() -> String {
    "switchboard:".into()
}
fn default_true() -> bool {
    true
}
fn default_timeout_ms() -> u64 {
    500
}
fn default_max_value_bytes() -> usize {
    1024 * 1024
}

impl ClusterConfig {
    pub fn validate(&self) -> Result<(), String> {
        let given = check_url_source(self.redis_url.as_deref(), self.redis_url_env.as_deref())
            .map_err(|e| format!("cluster: {e}"))?;
        if !given {
            return Err("cluster needs redis_url or redis_url_env".into());
        }
        if self.redis_timeout_ms == 0 {
            return Err("cluster.redis_timeout_ms must be at least 1".into());
        }
        Ok(())
    }
}

/// The `[sessions]` section: how session-era `Mcp-Session-Id`s are sealed
/// ([`switchboard_transport::sealed`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    /// Environment variables, each holding a base64 32-byte key. The first seals new session
    /// ids; all open them (rotation). Empty (the default): a key is made at start, so sessions
    /// resume on this process only.
    #[serde(default)]
    pub keys_env: Vec<String>,
    /// Session ids older than this are refused (the client starts a new session), in
    /// seconds; 0 accepts any age. Default 86400.
    #[serde(default = "default_max_age_secs")]
    pub max_age_secs: u64,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            keys_env: Vec::new(),
            max_age_secs: default_max_age_secs(),
        }
    }
}

fn default_max_age_secs() -> u64 {
    86_400
}

impl SessionsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.keys_env.iter().any(|name| name.trim().is_empty()) {
            return Err("sessions.keys_env names an empty variable".into());
        }
        Ok(())
    }

    /// The sealer: keys read from the environment now, once.
    pub fn sealer(&self) -> Result<switchboard_transport::SessionSealer, String> {
        let max_age = Duration::from_secs(self.max_age_secs);
        if self.keys_env.is_empty() {
            return Ok(switchboard_transport::SessionSealer::new(
                switchboard_transport::SessionKeys::ephemeral(),
                max_age,
            ));
        }
        let values = self
            .keys_env
            .iter()
            .map(|name| {
                std::env::var(name).map_err(|_| {
                    format!(
                        "sessions.keys_env: environment variable {name} is not set (each must \
                         hold a base64 32-byte key, e.g. from `openssl rand -base64 32`)"
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let keys =
            switchboard_transport::SessionKeys::from_base64(&values).map_err(|e| match e {
                switchboard_transport::SealError::BadKey { index } => format!(
                    "sessions.keys_env: {} does not hold base64 of exactly 32 bytes",
                    self.keys_env[index]
                ),
                other => other.to_string(),
            })?;
        Ok(switchboard_transport::SessionSealer::new(keys, max_age))
    }
}

/// Which list of an upstream changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
}

/// What one replica tells the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ClusterEvent {
    ListChanged { upstream: String, list: ListKind },
    Reload,
    CacheInvalidated { upstream: String, tool_glob: String },
    SessionEnded { session: String },
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    from: String,
    #[serde(flatten)]
    event: ClusterEvent,
}

/// A replica's handle on the shared Redis.
pub struct Cluster {
    config: ClusterConfig,
    /// This replica's random id, to ignore its own events.
    node: String,
    channel: String,
    store: RedisStore,
    client: redis::Client,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("Cluster")
            .field("node", &self.node)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    pub fn new(config: &ClusterConfig) -> Result<Arc<Cluster>, String> {
        config.validate()?;
        let url = resolve_url(config.redis_url.as_deref(), config.redis_url_env.as_deref())
            .map_err(|e| format!("cluster: {e}"))?
            .ok_or("cluster needs redis_url or redis_url_env")?;
        let timeout = Duration::from_millis(config.redis_timeout_ms);
        let mut node = [0u8; 8];
        getrandom::fill(&mut node).map_err(|e| format!("random node id: {e}"))?;
        Ok(Arc::new(Cluster {
            node: node.iter().map(|b| format!("{b:02x}")).collect(),
            channel: format!("{}events", config.key_prefix),
            store: RedisStore::new(&url, timeout)?,
            client: crate::ratelimit::redis_store::parse_url(&url)?,
            config: config.clone(),
        }))
    }

    /// This replica's id in events.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn shares_cache(&self) -> bool {
        self.config.shared_cache
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.redis_timeout_ms)
    }

    /// Tells the other replicas; a failure is logged, never the caller's problem.
    pub async fn publish(&self, event: ClusterEvent) {
        let envelope = Envelope {
            from: self.node.clone(),
            event,
        };
        let Ok(payload) = serde_json::to_string(&envelope) else {
            return;
        };
        let result = self
            .store
            .run(self.timeout(), |mut c| {
                let channel = self.channel.clone();
                async move {
                    redis::cmd("PUBLISH")
                        .arg(channel)
                        .arg(payload)
                        .query_async::<i64>(&mut c)
                        .await
                }
            })
            .await;
        if let Err(err) = result {
            tracing::warn!(error = %err, "could not tell the other replicas");
        }
    }

    /// Runs `handle` for every event another replica sends, until `cancel`; resubscribes with
    /// backoff after Redis goes away (events sent meanwhile are missed: each replica's own
    /// TTLs and health checks bound how long it stays behind).
    pub fn subscribe<F>(
        self: &Arc<Self>,
        cancel: tokio_util::sync::CancellationToken,
        handle: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn(ClusterEvent) + Send + Sync + 'static,
    {
        let cluster = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let session = async {
                    let mut pubsub = cluster.client.get_async_pubsub().await?;
                    pubsub.subscribe(&cluster.channel).await?;
                    tracing::info!(channel = %cluster.channel, "cluster events subscribed");
                    let mut messages = pubsub.into_on_message();
                    while let Some(message) = messages.next().await {
                        let Ok(payload) = message.get_payload::<String>() else {
                            continue;
                        };
                        match serde_json::from_str::<Envelope>(&payload) {
                            Ok(envelope) if envelope.from != cluster.node => handle(envelope.event),
                            Ok(_) => {}
                            Err(err) => tracing::warn!(error = %err, "ignored a cluster event"),
                        }
                    }
                    Ok::<(), redis::RedisError>(())
                };
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    ended = session => {
                        match ended {
                            Ok(()) => tracing::warn!("cluster events: Redis closed the subscription"),
                            Err(err) => tracing::warn!(error = %err, "cluster events: Redis unreachable"),
                        }
                    }
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        })
    }

    /// The Redis key of a cached result.
    pub fn cache_key(&self, upstream: &str, tool: &str, digest: &str) -> String {
        format!("{}cache:{upstream}:{tool}:{digest}", self.config.key_prefix)
    }

    /// A cached result and its remaining lifetime, if Redis has it (and answers in time).
    pub async fn cache_get(&self, key: &str) -> Option<(Vec<u8>, Duration)> {
        let key = key.to_owned();
        let reply = self
            .store
            .run(self.timeout(), |mut c| async move {
                redis::pipe()
                    .cmd("GET")
                    .arg(&key)
                    .cmd("PTTL")
                    .arg(&key)
                    .query_async::<(Option<Vec<u8>>, i64)>(&mut c)
                    .await
            })
            .await;
        match reply {
            Ok((Some(value), ttl_ms)) if ttl_ms > 0 => {
                Some((value, Duration::from_millis(ttl_ms as u64)))
            }
            Ok(_) => None,
            Err(err) => {
                tracing::debug!(error = %err, "shared cache read skipped");
                None
            }
        }
    }

    /// Stores a result for `ttl`; too large values and Redis failures are skipped.
    pub async fn cache_put(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        if value.len() > self.config.max_value_bytes {
            return;
        }
        let key = key.to_owned();
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let result = self
            .store
            .run(self.timeout(), |mut c| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
        if let Err(err) = result {
            tracing::debug!(error = %err, "shared cache write skipped");
        }
    }

    /// Deletes the shared entries of `upstream`'s tools matching `tool`; returns how many.
    pub async fn cache_invalidate(&self, upstream: &str, tool: &globset::GlobMatcher) -> u64 {
        let pattern = format!("{}cache:{upstream}:*", self.config.key_prefix);
        let prefix_len = pattern.len() - 1;
        let keys = self
            .store
            .run(self.timeout() * 10, |mut c| {
                let pattern = pattern.clone();
                async move {
                    let mut keys = Vec::new();
                    let mut cursor: u64 = 0;
                    loop {
                        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(&pattern)
                            .arg("COUNT")
                            .arg(500)
                            .query_async(&mut c)
                            .await?;
                        keys.extend(batch);
                        if next == 0 {
                            return Ok(keys);
                        }
                        cursor = next;
                    }
                }
            })
            .await;
        let keys: Vec<String> = match keys {
            Ok(keys) => keys
                .into_iter()
                .filter(|key| {
                    key.get(prefix_len..)
                        .and_then(|rest| rest.rsplit_once(':'))
                        .is_some_and(|(name, _)| tool.is_match(name))
                })
                .collect(),
            Err(err) => {
                tracing::warn!(error = %err, "shared cache invalidation failed");
                return 0;
            }
        };
        if keys.is_empty() {
            return 0;
        }
        let deleted = self
            .store
            .run(self.timeout(), |mut c| async move {
                redis::cmd("DEL").arg(keys).query_async::<u64>(&mut c).await
            })
            .await;
        deleted.unwrap_or_else(|err: StoreError| {
            tracing::warn!(error = %err, "shared cache invalidation failed");
            0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis_url() -> String {
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    fn config(prefix: &str) -> ClusterConfig {
        ClusterConfig {
            redis_url: Some(redis_url()),
            redis_url_env: None,
            key_prefix: prefix.into(),
            shared_cache: true,
            redis_timeout_ms: 2000,
            max_value_bytes: 1024,
        }
    }

    fn unique_prefix() -> String {
        let mut b = [0u8; 6];
        getrandom::fill(&mut b).expect("random");
        format!(
            "sbtest:{}:",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        )
    }

    async fn reachable(cluster: &Cluster) {
        let probe = cluster.cache_key("probe", "probe", "0");
        cluster
            .cache_put(&probe, b"1".to_vec(), Duration::from_secs(5))
            .await;
        assert!(
            cluster.cache_get(&probe).await.is_some(),
            "Redis is not reachable at {} (start it with `redis-server --daemonize yes`, or set \
             REDIS_URL)",
            redis_url()
        );
    }

    #[tokio::test]
    async fn events_reach_the_other_replicas_but_not_the_sender() {
        let prefix = unique_prefix();
        let a = Cluster::new(&config(&prefix)).expect("a");
        let b = Cluster::new(&config(&prefix)).expect("b");
        reachable(&a).await;
        let cancel = tokio_util::sync::CancellationToken::new();
        let (to_a, mut at_a) = tokio::sync::mpsc::unbounded_channel();
        let (to_b, mut at_b) = tokio::sync::mpsc::unbounded_channel();
        let _a_events = a.subscribe(cancel.clone(), move |e| {
            let _ = to_a.send(e);
        });
        let _b_events = b.subscribe(cancel.clone(), move |e| {
            let _ = to_b.send(e);
        });
        let event = ClusterEvent::ListChanged {
            upstream: "crm".into(),
            list: ListKind::Tools,
        };
        // Subscribing is asynchronous: publish until b hears it (a poll, not a timing bet).
        let heard = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                a.publish(event.clone()).await;
                if let Ok(Some(e)) =
                    tokio::time::timeout(Duration::from_millis(100), at_b.recv()).await
                {
                    return e;
                }
            }
        })
        .await
        .expect("b never heard a's event");
        assert_eq!(heard, event);
        // b's own event reaches a; a never hears its own events, which Redis delivered to
        // it (in channel order) before b's.
        b.publish(ClusterEvent::Reload).await;
        let got = tokio::time::timeout(Duration::from_secs(30), at_a.recv())
            .await
            .expect("a never heard b");
        assert_eq!(got, Some(ClusterEvent::Reload), "a heard itself first");
        cancel.cancel();
    }

    #[tokio::test]
    async fn cached_values_are_shared_and_invalidated_by_tool() {
        let prefix = unique_prefix();
        let a = Cluster::new(&config(&prefix)).expect("a");
        let b = Cluster::new(&config(&prefix)).expect("b");
        reachable(&a).await;
        let k1 = a.cache_key("crm", "search", "d1");
        let k2 = a.cache_key("crm", "get", "d2");
        a.cache_put(&k1, b"one".to_vec(), Duration::from_secs(60))
            .await;
        a.cache_put(&k2, b"two".to_vec(), Duration::from_secs(60))
            .await;
        a.cache_put(
            &a.cache_key("crm", "big", "d3"),
            vec![0; 4096],
            Duration::from_secs(60),
        )
        .await;
        let (value, ttl) = b.cache_get(&k1).await.expect("shared");
        assert_eq!(value, b"one");
        assert!(ttl <= Duration::from_secs(60));
        assert!(
            b.cache_get(&a.cache_key("crm", "big", "d3"))
                .await
                .is_none(),
            "over max_value_bytes"
        );
        let glob = globset::Glob::new("sea*").expect("glob").compile_matcher();
        assert_eq!(b.cache_invalidate("crm", &glob).await, 1);
        assert!(a.cache_get(&k1).await.is_none());
        assert!(a.cache_get(&k2).await.is_some());
    }
}
