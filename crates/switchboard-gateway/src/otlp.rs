//! `[observability.otlp]`: where and how the gateway exports its traces (OTLP over HTTP,
//! protobuf). The exporter itself is installed by the binary, which owns the process's
//! `tracing` subscriber; the spans come from [`crate::stack::trace`].
//!
//! Off by default. When the table is absent, the standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//! (used as is) or `OTEL_EXPORTER_OTLP_ENDPOINT` (with `/v1/traces` appended) turns export on
//! with the defaults below ([`OtlpConfig::from_env`]); the table, when present, wins.

use std::{collections::BTreeMap, fmt};

use serde::Deserialize;

pub const TRACES_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
pub const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub const SERVICE_NAME_ENV: &str = "OTEL_SERVICE_NAME";

/// `[observability.otlp]`. `Debug` shows header names only: their values are usually
/// credentials.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's traces URL, e.g. `http://127.0.0.1:4318/v1/traces`. `None` only when
    /// built from the environment, where the exporter resolves the OTEL variables itself.
    pub endpoint: Option<String>,
    /// `service.name` of the exported resource. Default `switchboard` (or `OTEL_SERVICE_NAME`
    /// when configured from the environment).
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Fraction of new traces recorded, 0.0–1.0; a client's sampled flag is followed when it
    /// sent a trace context. Default 1.0.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// Extra HTTP headers on every export (an API key, say). Never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Deadline of one export request, in seconds. Default 10.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Finished spans buffered for export; more are dropped (and counted in the exporter's
    /// own log) rather than slowing calls down. Default 2048.
    #[serde(default = "default_max_queue_size")]
    pub max_queue_size: usize,
    /// Most spans in one export request. Default 512.
    #[serde(default = "default_max_export_batch_size")]
    pub max_export_batch_size: usize,
    /// How long finished spans may wait before they are exported, in milliseconds. Default 5000.
    /// Whatever is queued is exported on shutdown regardless.
    #[serde(default = "default_batch_delay_ms")]
    pub batch_delay_ms: u64,
}

fn default_service_name() -> String {
    "switchboard".into()
}
fn default_sample_ratio() -> f64 {
    1.0
}
fn default_timeout_secs() -> u64 {
    10
}
fn default_max_queue_size() -> usize {
    2048
}
fn default_max_export_batch_size() -> usize {
    512
}
fn default_batch_delay_ms() -> u64 {
    5000
}

impl OtlpConfig {
    /// The defaults with `endpoint`.
    pub fn to(endpoint: Option<String>) -> OtlpConfig {
        OtlpConfig {
            endpoint,
            service_name: default_service_name(),
            sample_ratio: default_sample_ratio(),
            headers: BTreeMap::new(),
            timeout_secs: default_timeout_secs(),
            max_queue_size: default_max_queue_size(),
            max_export_batch_size: default_max_export_batch_size(),
            batch_delay_ms: default_batch_delay_ms(),
        }
    }

    /// Export configured only by the standard environment variables: `Some` when
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set (non-empty).
    /// The endpoint is left to the exporter, which applies the OTEL precedence (the traces
    /// variable as is, else the base variable plus `/v1/traces`) and also reads
    /// `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_EXPORTER_OTLP_TIMEOUT`.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Option<OtlpConfig> {
        let set = |name: &str| var(name).filter(|value| !value.trim().is_empty());
        set(TRACES_ENDPOINT_ENV).or_else(|| set(ENDPOINT_ENV))?;
        let mut config = OtlpConfig::to(None);
        if let Some(name) = set(SERVICE_NAME_ENV) {
            config.service_name = name;
        }
        Some(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        if let Some(endpoint) = &self.endpoint {
            let url = reqwest::Url::parse(endpoint)
                .map_err(|e| format!("endpoint {endpoint:?} is not a URL: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!("endpoint {endpoint:?} must be an http(s) URL"));
            }
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err("sample_ratio must be between 0.0 and 1.0".into());
        }
        if self.service_name.is_empty() {
            return Err("service_name must not be empty".into());
        }
        if self.timeout_secs == 0 {
            return Err("timeout_secs must be at least 1".into());
        }
        if self.max_queue_size == 0 || self.max_export_batch_size == 0 {
            return Err("max_queue_size and max_export_batch_size must be at least 1".into());
        }
        for (name, value) in &self.headers {
            if axum::http::HeaderName::try_from(name.as_str()).is_err()
                || axum::http::HeaderValue::try_from(value.as_str()).is_err()
            {
                return Err(format!("header {name:?} is not a valid HTTP header"));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpConfig")
            .field("endpoint", &self.endpoint)
            .field("service_name", &self.service_name)
            .field("sample_ratio", &self.sample_ratio)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout_secs", &self.timeout_secs)
            .field("max_queue_size", &self.max_queue_size)
            .field("max_export_batch_size", &self.max_export_batch_size)
            .field("batch_delay_ms", &self.batch_delay_ms)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<OtlpConfig, String> {
        let config: OtlpConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn defaults() {
        let config = parse("endpoint = 'http://127.0.0.1:4318/v1/traces'").unwrap();
        assert_eq!(
            config,
            OtlpConfig::to(Some("http://127.0.0.1:4318/v1/traces".into()))
        );
    }

    #[test]
    fn bad_values_are_refused() {
        for (text, needle) in [
            ("endpoint = 'not a url'", "not a URL"),
            ("endpoint = 'ftp://h/v1/traces'", "http(s)"),
            ("endpoint = 'http://h'\nsample_ratio = 1.5", "sample_ratio"),
            ("endpoint = 'http://h'\ntimeout_secs = 0", "timeout_secs"),
            ("endpoint = 'http://h'\nheaders = { 'a b' = 'x' }", "header"),
            ("endpoint = 'http://h'\nsurprise = 1", "unknown field"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn header_values_are_not_in_debug() {
        let config =
            parse("endpoint = 'http://h/v1/traces'\nheaders = { x-api-key = 'sekrit' }").unwrap();
        let shown = format!("{config:?}");
        assert!(
            shown.contains("x-api-key") && !shown.contains("sekrit"),
            "{shown}"
        );
    }

    #[test]
    fn the_environment_turns_export_on_only_with_an_endpoint() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(OtlpConfig::from_env(env(&[])), None);
        assert_eq!(OtlpConfig::from_env(env(&[(ENDPOINT_ENV, " ")])), None);
        let from_base = OtlpConfig::from_env(env(&[(ENDPOINT_ENV, "http://c:4318")]));
        assert_eq!(from_base, Some(OtlpConfig::to(None)));
        let named = OtlpConfig::from_env(env(&[
            (TRACES_ENDPOINT_ENV, "http://c:4318/v1/traces"),
            (SERVICE_NAME_ENV, "edge"),
        ]));
        assert_eq!(named.map(|c| c.service_name), Some("edge".to_string()));
    }
}
