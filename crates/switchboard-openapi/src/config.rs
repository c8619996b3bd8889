//! What one OpenAPI upstream is: where its document lives, where requests go, how they
//! authenticate, which operations become tools, and every limit.
//!
//! Deserialised from the gateway's `[upstream.openapi]` table (and built by the CLI), so
//! unknown keys are refused like everywhere else in the configuration.

use std::{collections::BTreeMap, time::Duration};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::auth::AuthConfig;

/// One OpenAPI upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenApiConfig {
    /// The OpenAPI 3.0/3.1 document, JSON or YAML: a file path (relative to the working
    /// directory) or an `http(s)://` URL.
    pub spec: String,
    /// Where requests go. Default: the document's first `servers[].url`, resolved against the
    /// document's URL when relative; required when that gives no absolute URL.
    #[serde(default)]
    pub base_url: Option<String>,
    /// How requests authenticate; absent: not at all.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Only operations matching one of these become tools (empty: all).
    #[serde(default)]
    pub include: OperationSelector,
    /// Operations matching one of these never become tools (wins over `include`).
    #[serde(default)]
    pub exclude: OperationSelector,
    /// Per operation (by `operationId`, or by the fallback tool name when it has none): a
    /// different tool name or description.
    #[serde(default)]
    pub overrides: BTreeMap<String, OperationOverride>,
    /// Deadline of one HTTP request, in seconds (connect to last body byte). Default 30.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Largest response body read, in bytes; a larger one is a `response_too_large` error.
    /// Default 4 MiB.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// Redirects followed per request. Default 5; 0 refuses every redirect.
    #[serde(default = "default_max_redirects")]
    pub max_redirects: usize,
    /// Follow redirects to another origin (scheme, host, port). Default false: they are
    /// refused, so credentials and requests never leave the configured service.
    #[serde(default)]
    pub cross_origin_redirects: bool,
    /// Largest OpenAPI document read, in bytes. Default 16 MiB.
    #[serde(default = "default_max_spec_bytes")]
    pub max_spec_bytes: u64,
    /// How many `$ref`s deep a schema is inlined into a tool's `inputSchema`; deeper (and
    /// recursive) references become `{}` with a description. Default 16.
    #[serde(default = "default_max_ref_depth")]
    pub max_ref_depth: usize,
}

fn default_timeout_secs() -> u64 {
    30
}
fn default_max_response_bytes() -> u64 {
    4 << 20
}
fn default_max_redirects() -> usize {
    5
}
fn default_max_spec_bytes() -> u64 {
    16 << 20
}
fn default_max_ref_depth() -> usize {
    16
}

/// Selects operations by `operationId` glob, tag or path glob; an operation matches when any
/// one of the lists matches it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationSelector {
    /// Globs over `operationId`s (`list*`).
    #[serde(default)]
    pub operation_ids: Vec<String>,
    /// Tags, exactly.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Globs over path templates (`/pets/**`, `/admin/*`).
    #[serde(default)]
    pub paths: Vec<String>,
}

impl OperationSelector {
    fn is_empty(&self) -> bool {
        self.operation_ids.is_empty() && self.tags.is_empty() && self.paths.is_empty()
    }
}

/// A tool name or description chosen by the operator instead of the document's.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationOverride {
    /// Tool name; must match `^[a-zA-Z0-9_-]{1,64}$`.
    #[serde(default)]
    pub name: Option<String>,
    /// Tool description.
    #[serde(default)]
    pub description: Option<String>,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl OpenApiConfig {
    /// A configuration with every default, for `spec`.
    pub fn new(spec: impl Into<String>) -> OpenApiConfig {
        OpenApiConfig {
            spec: spec.into(),
            base_url: None,
            auth: None,
            include: OperationSelector::default(),
            exclude: OperationSelector::default(),
            overrides: BTreeMap::new(),
            timeout_secs: default_timeout_secs(),
            max_response_bytes: default_max_response_bytes(),
            max_redirects: default_max_redirects(),
            cross_origin_redirects: false,
            max_spec_bytes: default_max_spec_bytes(),
            max_ref_depth: default_max_ref_depth(),
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// Checks what deserialisation cannot: limits, globs, override names, auth settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.spec.trim().is_empty() {
            return Err(ConfigError("`spec` is empty".into()));
        }
        if self.timeout_secs == 0 {
            return Err(ConfigError("`timeout_secs` must be at least 1".into()));
        }
        if self.max_response_bytes == 0 || self.max_spec_bytes == 0 {
            return Err(ConfigError(
                "`max_response_bytes` and `max_spec_bytes` must be at least 1".into(),
            ));
        }
        if let Some(base) = &self.base_url {
            let url = url::Url::parse(base)
                .map_err(|e| ConfigError(format!("`base_url` {base:?}: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ConfigError(format!(
                    "`base_url` {base:?} must be an http or https URL"
                )));
            }
        }
        for (operation, over) in &self.overrides {
            if let Some(name) = &over.name
                && !crate::naming::is_valid_tool_name(name)
            {
                return Err(ConfigError(format!(
                    "overrides.{operation}.name {name:?} must match ^[a-zA-Z0-9_-]{{1,64}}$"
                )));
            }
        }
        self.include.compile("include")?;
        self.exclude.compile("exclude")?;
        if let Some(auth) = &self.auth {
            auth.validate()?;
        }
        Ok(())
    }

    /// The compiled include/exclude rule.
    pub(crate) fn filter(&self) -> Result<OperationFilter, ConfigError> {
        Ok(OperationFilter {
            include: if self.include.is_empty() {
                None
            } else {
                Some(self.include.compile("include")?)
            },
            exclude: self.exclude.compile("exclude")?,
        })
    }
}

impl OperationSelector {
    fn compile(&self, what: &str) -> Result<CompiledSelector, ConfigError> {
        let build = |list: &str, patterns: &[String]| -> Result<GlobSet, ConfigError> {
            let mut builder = GlobSetBuilder::new();
            for pattern in patterns {
                let glob = Glob::new(pattern).map_err(|e| {
                    ConfigError(format!("{what}.{list}: bad glob {pattern:?}: {e}"))
                })?;
                builder.add(glob);
            }
            builder
                .build()
                .map_err(|e| ConfigError(format!("{what}.{list}: {e}")))
        };
        Ok(CompiledSelector {
            operation_ids: build("operation_ids", &self.operation_ids)?,
            tags: self.tags.clone(),
            paths: build("paths", &self.paths)?,
        })
    }
}

#[derive(Debug, Clone)]
struct CompiledSelector {
    operation_ids: GlobSet,
    tags: Vec<String>,
    paths: GlobSet,
}

impl CompiledSelector {
    fn matches(&self, operation_id: Option<&str>, tags: &[String], path: &str) -> bool {
        operation_id.is_some_and(|id| self.operation_ids.is_match(id))
            || tags.iter().any(|t| self.tags.contains(t))
            || self.paths.is_match(path)
    }
}

/// Which operations become tools.
#[derive(Debug, Clone)]
pub(crate) struct OperationFilter {
    include: Option<CompiledSelector>,
    exclude: CompiledSelector,
}

impl OperationFilter {
    pub(crate) fn allows(&self, operation_id: Option<&str>, tags: &[String], path: &str) -> bool {
        !self.exclude.matches(operation_id, tags, path)
            && self
                .include
                .as_ref()
                .is_none_or(|include| include.matches(operation_id, tags, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclude_wins_and_empty_include_allows_all() {
        let mut config = OpenApiConfig::new("spec.yaml");
        config.exclude.tags = vec!["admin".into()];
        let filter = config.filter().unwrap();
        assert!(filter.allows(Some("listPets"), &[], "/pets"));
        assert!(!filter.allows(Some("wipe"), &["admin".into()], "/admin"));

        config.include.paths = vec!["/pets/**".into()];
        config.include.operation_ids = vec!["list*".into()];
        let filter = config.filter().unwrap();
        assert!(filter.allows(None, &[], "/pets/{petId}"));
        assert!(filter.allows(Some("listOwners"), &[], "/owners"));
        assert!(!filter.allows(Some("getOwner"), &[], "/owners/{id}"));
    }

    #[test]
    fn refuses_bad_settings() {
        let toml_ok: OpenApiConfig = serde_json::from_value(serde_json::json!({
            "spec": "x.yaml", "base_url": "http://127.0.0.1:1/api"
        }))
        .unwrap();
        toml_ok.validate().unwrap();

        let mut config = OpenApiConfig::new("x.yaml");
        config.base_url = Some("ftp://host/".into());
        assert!(config.validate().unwrap_err().0.contains("http or https"));

        let mut config = OpenApiConfig::new("x.yaml");
        config.overrides.insert(
            "listPets".into(),
            OperationOverride {
                name: Some("has space".into()),
                description: None,
            },
        );
        assert!(
            config
                .validate()
                .unwrap_err()
                .0
                .contains("overrides.listPets")
        );

        let mut config = OpenApiConfig::new("x.yaml");
        config.include.paths = vec!["[".into()];
        assert!(config.validate().unwrap_err().0.contains("include.paths"));

        let unknown = serde_json::from_value::<OpenApiConfig>(serde_json::json!({
            "spec": "x.yaml", "bogus": 1
        }));
        assert!(unknown.is_err());
    }
}
