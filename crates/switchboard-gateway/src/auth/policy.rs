//! Authorization: which identities may see and call which tools.
//!
//! Decision for an identity and an exposed tool name, in order:
//! 1. a `deny` glob of any policy that applies to the identity matches: **denied** (deny wins);
//! 2. the identity carries `tool:GLOB` scopes (a token or key limited to some tools) and none
//!    matches: **denied** (scopes only ever narrow);
//! 3. an `allow` glob of an applicable policy, or a `tool:GLOB` scope, matches: **allowed**;
//! 4. otherwise `default` (`"deny"` unless configured `"allow"`).
//!
//! A policy applies when any of its selectors matches (globs over the subject, scopes, roles and
//! API key names; `anonymous = true` for the anonymous caller); a policy with no selector applies
//! to everyone. Denied tools are hidden from `tools/list` and refused on `tools/call`
//! ([`crate::stack::authorize`]). Calls the gateway makes on its own behalf carry no identity and
//! are not checked.

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use super::Identity;
use crate::config::ConfigError;

/// `[security.authorization]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// What a tool no rule mentions gets. Default `deny`.
    #[serde(default)]
    pub default: DefaultDecision,
    #[serde(default, rename = "policy")]
    pub policies: Vec<PolicyConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultDecision {
    #[default]
    Deny,
    Allow,
}

/// `[[security.authorization.policy]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// For logs only.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub subjects: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// API key names.
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub anonymous: bool,
    /// Globs over exposed tool names.
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

struct Policy {
    everyone: bool,
    subjects: GlobSet,
    scopes: GlobSet,
    roles: GlobSet,
    keys: GlobSet,
    anonymous: bool,
    allow: GlobSet,
    deny: GlobSet,
}

fn globs(patterns: &[String], what: &str) -> Result<GlobSet, ConfigError> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        builder.add(Glob::new(pattern).map_err(|e| ConfigError::Invalid {
            upstream: "security.authorization".into(),
            message: format!("bad {what} glob {pattern:?}: {e}"),
        })?);
    }
    builder.build().map_err(|e| ConfigError::Invalid {
        upstream: "security.authorization".into(),
        message: e.to_string(),
    })
}

impl Policy {
    fn applies(&self, id: &Identity) -> bool {
        self.everyone
            || (self.anonymous && id.anonymous)
            || self.subjects.is_match(&id.subject)
            || id.scopes.iter().any(|s| self.scopes.is_match(s))
            || id.roles.iter().any(|r| self.roles.is_match(r))
            || id.key.as_ref().is_some_and(|k| self.keys.is_match(k))
    }
}

/// The compiled authorization rules.
pub struct Policies {
    default: DefaultDecision,
    policies: Vec<Policy>,
}

/// Why a tool is refused (for the error message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    DeniedByPolicy,
    OutsideScopes,
    NotAllowed,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Denial::DeniedByPolicy => "denied by policy",
            Denial::OutsideScopes => "outside the credential's tool scopes",
            Denial::NotAllowed => "not allowed by any policy",
        })
    }
}

impl Policies {
    pub fn new(config: &AuthorizationConfig) -> Result<Policies, ConfigError> {
        let policies = config
            .policies
            .iter()
            .map(|p| {
                Ok(Policy {
                    everyone: p.subjects.is_empty()
                        && p.scopes.is_empty()
                        && p.roles.is_empty()
                        && p.keys.is_empty()
                        && !p.anonymous,
                    subjects: globs(&p.subjects, "subject")?,
                    scopes: globs(&p.scopes, "scope")?,
                    roles: globs(&p.roles, "role")?,
                    keys: globs(&p.keys, "key")?,
                    anonymous: p.anonymous,
                    allow: globs(&p.allow, "tool")?,
                    deny: globs(&p.deny, "tool")?,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok(Policies {
            default: config.default,
            policies,
        })
    }

    /// May `identity` see and call `tool`?
    pub fn check(&self, identity: &Identity, tool: &str) -> Result<(), Denial> {
        let applicable: Vec<&Policy> = self
            .policies
            .iter()
            .filter(|p| p.applies(identity))
            .collect();
        if applicable.iter().any(|p| p.deny.is_match(tool)) {
            return Err(Denial::DeniedByPolicy);
        }
        let mut scoped = false;
        let mut in_scope = false;
        for glob in identity.tool_scopes() {
            scoped = true;
            if Glob::new(glob).is_ok_and(|g| g.compile_matcher().is_match(tool)) {
                in_scope = true;
            }
        }
        if scoped && !in_scope {
            return Err(Denial::OutsideScopes);
        }
        if in_scope
            || applicable.iter().any(|p| p.allow.is_match(tool))
            || self.default == DefaultDecision::Allow
        {
            Ok(())
        } else {
            Err(Denial::NotAllowed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(subject: &str, scopes: &[&str], roles: &[&str]) -> Identity {
        Identity {
            subject: subject.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
            key: None,
            anonymous: false,
        }
    }

    fn policies(toml_text: &str) -> Policies {
        let config: AuthorizationConfig = match toml::from_str(toml_text) {
            Ok(c) => c,
            Err(e) => panic!("bad test config: {e}"),
        };
        match Policies::new(&config) {
            Ok(p) => p,
            Err(e) => panic!("bad test policies: {e}"),
        }
    }

    #[test]
    fn deny_wins_and_scopes_narrow() {
        let p = policies(
            r#"
            [[policy]]
            roles = ["support"]
            allow = ["crm__*"]
            deny = ["crm__delete_*"]
            [[policy]]
            subjects = ["admin"]
            allow = ["*"]
            [[policy]]
            deny = ["fs__write_*"]
            "#,
        );
        let support = id("alice", &[], &["support"]);
        assert_eq!(p.check(&support, "crm__get_contact"), Ok(()));
        assert_eq!(
            p.check(&support, "crm__delete_contact"),
            Err(Denial::DeniedByPolicy)
        );
        assert_eq!(p.check(&support, "sql__query"), Err(Denial::NotAllowed));
        let admin = id("admin", &[], &[]);
        assert_eq!(p.check(&admin, "sql__query"), Ok(()));
        assert_eq!(
            p.check(&admin, "fs__write_file"),
            Err(Denial::DeniedByPolicy)
        );
        let narrowed = id("admin", &["tool:sql__*"], &[]);
        assert_eq!(p.check(&narrowed, "sql__query"), Ok(()));
        assert_eq!(
            p.check(&narrowed, "crm__get_contact"),
            Err(Denial::OutsideScopes)
        );
        let scoped = id("bob", &["tool:crm__*"], &[]);
        assert_eq!(p.check(&scoped, "crm__get_contact"), Ok(()));
        assert_eq!(
            p.check(&Identity::anonymous(), "crm__get_contact"),
            Err(Denial::NotAllowed)
        );
    }
}
