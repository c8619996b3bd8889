//! The Redis backend of the rate limits: one GCRA decision per call, made by one Lua script so
//! that reading and updating the bucket is atomic however many gateways share it.
//!
//! The bucket is one string key holding the theoretical arrival time (TAT) in microseconds of
//! Redis's own clock (`TIME`), with a TTL of the time until the bucket is full again, so idle
//! keys disappear by themselves. Needs Redis 5 or newer (scripts that write after `TIME`).

use std::{sync::Mutex, time::Duration};

use redis::{
    Client, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

/// `KEYS[1]`: the bucket. `ARGV[1]`: emission interval (µs), `ARGV[2]`: burst (the limit).
/// Returns `{1, 0}` when the call conforms (and records it), else `{0, µs until it would}`.
const GCRA: &str = r#"
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now
if tat < now then tat = now end
local new_tat = tat + emission
local allow_at = new_tat - emission * burst
if allow_at > now then
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
"#;

/// Why Redis could not decide.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected reply from the rate-limit script: {0:?}")]
    Reply(Vec<i64>),
}

/// Checks a Redis URL without connecting.
pub fn parse_url(url: &str) -> Result<Client, String> {
    // The URL may hold a password: the error names the problem, never the URL.
    Client::open(url).map_err(|e| format!("redis_url is not a valid Redis URL: {e}"))
}

/// Checks how a config section names its Redis: `redis_url` (the URL itself) or
/// `redis_url_env` (an environment variable holding it, so a URL with a password can come
/// from a secret), at most one of them. Returns whether one is given. The variable is read
/// only by [`resolve_url`], at start, so a config can be checked where it is not set.
pub fn check_url_source(url: Option<&str>, env: Option<&str>) -> Result<bool, String> {
    match (url, env) {
        (Some(_), Some(_)) => Err("give redis_url or redis_url_env, not both".into()),
        (Some(url), None) => parse_url(url).map(|_| true),
        (None, Some(name)) if name.trim().is_empty() => {
            Err("redis_url_env names an empty variable".into())
        }
        (None, Some(_)) => Ok(true),
        (None, None) => Ok(false),
    }
}

/// The Redis URL of a section checked by [`check_url_source`], reading `redis_url_env`'s
/// variable now; `None` when the section names no Redis.
pub fn resolve_url(url: Option<&str>, env: Option<&str>) -> Result<Option<String>, String> {
    check_url_source(url, env)?;
    let Some(name) = env else {
        return Ok(url.map(str::to_owned));
    };
    let url = std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| format!("redis_url_env: environment variable {name} is not set"))?;
    parse_url(&url).map_err(|e| format!("{e} (from {name})"))?;
    Ok(Some(url))
}

/// One Redis server, shared by every rule that names it.
pub struct RedisStore {
    client: Client,
    /// Bound of one decision, connecting included.
    timeout: Duration,
    /// Created on first use (it needs the runtime); reconnects by itself after failures.
    manager: Mutex<Option<ConnectionManager>>,
    script: Script,
}

impl RedisStore {
    pub fn new(url: &str, timeout: Duration) -> Result<RedisStore, String> {
        Ok(RedisStore {
            client: parse_url(url)?,
            timeout,
            manager: Mutex::new(None),
            script: Script::new(GCRA),
        })
    }

    fn manager(&self) -> Result<ConnectionManager, StoreError> {
        let mut guard = self
            .manager
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(manager) = guard.as_ref() {
            return Ok(manager.clone());
        }
        // One connection attempt per decision (no retry loop inside the manager): the timeout
        // bounds the decision, and the next decision tries again.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)?;
        *guard = Some(manager.clone());
        Ok(manager)
    }

    /// Runs `op` on a connection, bounded by `timeout` (connecting included): the cluster's
    /// cache and events share this connection handling with the rate limits.
    pub(crate) async fn run<T, F, Fut>(&self, timeout: Duration, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let connection = self.manager()?;
        tokio::time::timeout(timeout, op(connection))
            .await
            .map_err(|_| StoreError::Timeout(timeout))?
            .map_err(StoreError::from)
    }

    /// Spends one cell of `key`'s bucket: `None` when the call conforms, else how long until
    /// it would.
    pub async fn gcra(
        &self,
        key: &str,
        emission_us: u64,
        burst: u32,
    ) -> Result<Option<Duration>, StoreError> {
        let mut connection = self.manager()?;
        let invocation = async {
            self.script
                .key(key)
                .arg(emission_us)
                .arg(burst)
                .invoke_async::<Vec<i64>>(&mut connection)
                .await
        };
        let reply = tokio::time::timeout(self.timeout, invocation)
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))??;
        match reply.as_slice() {
            [1, _] => Ok(None),
            [0, wait_us] if *wait_us >= 0 => Ok(Some(Duration::from_micros(*wait_us as u64))),
            _ => Err(StoreError::Reply(reply)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_names_its_redis_once() {
        assert_eq!(check_url_source(None, None), Ok(false));
        assert_eq!(
            check_url_source(Some("redis://127.0.0.1:6379"), None),
            Ok(true)
        );
        // Not read at check time: a config can be checked where the variable is not set.
        assert_eq!(
            check_url_source(None, Some("SB_UNSET_REDIS_URL_1")),
            Ok(true)
        );
        assert!(
            check_url_source(Some("redis://127.0.0.1:6379"), Some("X"))
                .is_err_and(|e| e.contains("not both"))
        );
        assert!(check_url_source(None, Some(" ")).is_err_and(|e| e.contains("empty variable")));
        assert!(
            check_url_source(Some("http://x:secret@h"), None).is_err_and(|e| !e.contains("secret"))
        );
    }

    #[test]
    fn the_variable_is_read_at_start() {
        assert_eq!(
            resolve_url(Some("redis://127.0.0.1:6379"), None),
            Ok(Some("redis://127.0.0.1:6379".into()))
        );
        assert_eq!(resolve_url(None, None), Ok(None));
        assert!(
            resolve_url(None, Some("SB_UNSET_REDIS_URL_2"))
                .is_err_and(|e| e.contains("SB_UNSET_REDIS_URL_2 is not set"))
        );
        // PATH is set and is no Redis URL; the error names the variable, not its value.
        let path = std::env::var("PATH").unwrap_or_default();
        assert!(
            resolve_url(None, Some("PATH")).is_err_and(
                |e| e.contains("(from PATH)") && (path.is_empty() || !e.contains(&path))
            )
        );
    }
}
