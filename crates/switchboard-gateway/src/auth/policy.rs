//! Authorization: which identities may see and use which tools, resources and prompts.
//!
//! Decision for an identity and an exposed tool name (or resource URI, or prompt name), in
//! order:
//! 1. a `deny` glob of any policy that applies to the identity matches: **denied** (deny wins);
//! 2. the identity carries `tool:GLOB` scopes (`resource:GLOB`, `prompt:GLOB`; a token or key
//!    limited to some tools) and none matches: **denied** (scopes only ever narrow);
//! 3. an `allow` glob of an applicable policy, or such a scope, matches: **allowed**;
//! 4. otherwise `default` (`"deny"` unless configured `"allow"`).
//!
//! Tools use the policy's `allow`/`deny`; resources and prompts their own
//! `resources = { allow, deny }` and `prompts = { allow, deny }`. A tool call allowed so far is
//! then held to the `constraints` of every applicable policy whose `tools` globs match it: the
//! argument at each constraint's JSON pointer must be a string matching one of its globs (for
//! `path = true`, after lexical normalisation: `.` dropped, `..` resolved, and a `..` that
//! climbs above the start refused), so "this role may only read under `reports/`" holds for
//! `reports/../secrets.txt` too.
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
    /// `allow`/`deny` globs over exposed resource URIs (and resource template URIs), in the
    /// same form as an upstream's tool filter.
    #[serde(default)]
    pub resources: crate::config::ToolFilter,
    /// `allow`/`deny` globs over exposed prompt names.
    #[serde(default)]
    pub prompts: crate::config::ToolFilter,
    /// Limits on the arguments of the tools this policy applies to.
    #[serde(default, rename = "constraint")]
    pub constraints: Vec<ConstraintConfig>,
}

/// `[[security.authorization.policy.constraint]]`: the argument at `argument` (a JSON pointer,
/// e.g. `/path`) of the tools matching `tools` must be a string matching one of `allow`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstraintConfig {
    /// Globs over exposed tool names.
    pub tools: Vec<String>,
    /// A JSON pointer into the arguments.
    pub argument: String,
    /// Globs the value must match (one of).
    pub allow: Vec<String>,
    /// Normalise the value as a `/`-separated path before matching. Default false.
    #[serde(default)]
    pub path: bool,
}

struct Rules {
    allow: GlobSet,
    deny: GlobSet,
}

struct Constraint {
    tools: GlobSet,
    argument: String,
    allow: GlobSet,
    path: bool,
}

struct Policy {
    everyone: bool,
    subjects: GlobSet,
    scopes: GlobSet,
    roles: GlobSet,
    keys: GlobSet,
    anonymous: bool,
    tools: Rules,
    resources: Rules,
    prompts: Rules,
    constraints: Vec<Constraint>,
}

/// What an authorization decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Tool,
    Resource,
    Prompt,
}

impl Subject {
    /// The credential scope prefix that narrows this kind.
    fn scope_prefix(self) -> &'static str {
        match self {
            Subject::Tool => "tool:",
            Subject::Resource => "resource:",
            Subject::Prompt => "prompt:",
        }
    }
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

/// Why a tool (resource, prompt) is refused (for the error message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    DeniedByPolicy,
    OutsideScopes,
    NotAllowed,
    /// An argument broke a policy constraint.
    Constraint {
        argument: String,
    },
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denial::DeniedByPolicy => f.write_str("denied by policy"),
            Denial::OutsideScopes => f.write_str("outside the credential's scopes"),
            Denial::NotAllowed => f.write_str("not allowed by any policy"),
            Denial::Constraint { argument } => write!(
                f,
                "argument {argument} is missing or outside what the policy allows"
            ),
        }
    }
}

/// The value at JSON pointer `pointer` (RFC 6901) in the arguments object, without copying it
/// into a `Value` first (this runs on every constrained call).
fn argument_at<'a>(
    arguments: &'a serde_json::Map<String, serde_json::Value>,
    pointer: &str,
) -> Option<&'a serde_json::Value> {
    let rest = pointer.strip_prefix('/')?;
    let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let value = arguments.get(&first.replace("~1", "/").replace("~0", "~"))?;
    if tail.is_empty() && !rest.ends_with('/') {
        Some(value)
    } else {
        value.pointer(&format!("/{tail}"))
    }
}

/// `value` as a normalised `/`-separated path: `.` and empty segments dropped, `..` resolved;
/// `None` when a `..` climbs above the start, or the value holds a NUL or a backslash (which
/// path handlers may read differently than this function).
fn normalise_path(value: &str) -> Option<String> {
    if value.contains('\0') || value.contains('\\') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in value.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    Some(if value.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    })
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
                    tools: Rules {
                        allow: globs(&p.allow, "tool")?,
                        deny: globs(&p.deny, "tool")?,
                    },
                    resources: Rules {
                        allow: globs(&p.resources.allow, "resource")?,
                        deny: globs(&p.resources.deny, "resource")?,
                    },
                    prompts: Rules {
                        allow: globs(&p.prompts.allow, "prompt")?,
                        deny: globs(&p.prompts.deny, "prompt")?,
                    },
                    constraints: p
                        .constraints
                        .iter()
                        .map(|c| {
                            if !c.argument.starts_with('/') {
                                return Err(ConfigError::Invalid {
                                    upstream: "security.authorization".into(),
                                    message: format!(
                                        "constraint argument {:?} must be a JSON pointer such as \"/path\"",
                                        c.argument
                                    ),
                                });
                            }
                            Ok(Constraint {
                                tools: globs(&c.tools, "constraint tool")?,
                                argument: c.argument.clone(),
                                allow: globs(&c.allow, "constraint value")?,
                                path: c.path,
                            })
                        })
                        .collect::<Result<Vec<_>, ConfigError>>()?,
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
        self.check_kind(identity, Subject::Tool, tool)
    }

    /// May `identity` see and use the resource URI or prompt name `name`?
    pub fn check_kind(&self, identity: &Identity, kind: Subject, name: &str) -> Result<(), Denial> {
        let applicable: Vec<&Policy> = self
            .policies
            .iter()
            .filter(|p| p.applies(identity))
            .collect();
        fn rules(p: &Policy, kind: Subject) -> &Rules {
            match kind {
                Subject::Tool => &p.tools,
                Subject::Resource => &p.resources,
                Subject::Prompt => &p.prompts,
            }
        }
        if applicable
            .iter()
            .any(|p| rules(p, kind).deny.is_match(name))
        {
            return Err(Denial::DeniedByPolicy);
        }
        let mut scoped = false;
        let mut in_scope = false;
        for glob in identity
            .scopes
            .iter()
            .filter_map(|s| s.strip_prefix(kind.scope_prefix()))
        {
            scoped = true;
            if Glob::new(glob).is_ok_and(|g| g.compile_matcher().is_match(name)) {
                in_scope = true;
            }
        }
        if scoped && !in_scope {
            return Err(Denial::OutsideScopes);
        }
        if in_scope
            || applicable
                .iter()
                .any(|p| rules(p, kind).allow.is_match(name))
            || self.default == DefaultDecision::Allow
        {
            Ok(())
        } else {
            Err(Denial::NotAllowed)
        }
    }

    /// [`Policies::check`], then the argument constraints of every applicable policy.
    pub fn check_call(
        &self,
        identity: &Identity,
        tool: &str,
        arguments: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<(), Denial> {
        self.check(identity, tool)?;
        for policy in self.policies.iter().filter(|p| p.applies(identity)) {
            for constraint in policy.constraints.iter().filter(|c| c.tools.is_match(tool)) {
                let value = arguments
                    .and_then(|args| argument_at(args, &constraint.argument))
                    .and_then(|v| v.as_str())
                    .map(str::to_string);
                let permitted = value
                    .and_then(|v| {
                        if constraint.path {
                            normalise_path(&v)
                        } else {
                            Some(v)
                        }
                    })
                    .is_some_and(|v| constraint.allow.is_match(&v));
                if !permitted {
                    return Err(Denial::Constraint {
                        argument: constraint.argument.clone(),
                    });
                }
            }
        }
        Ok(())
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
        // Tool scopes do not narrow resources or prompts, and vice versa.
        assert_eq!(
            p.check_kind(&scoped, Subject::Resource, "switchboard://crm/x"),
            Err(Denial::NotAllowed)
        );
        assert_eq!(p.check(&scoped, "crm__get_contact"), Ok(()));
        assert_eq!(
            p.check(&Identity::anonymous(), "crm__get_contact"),
            Err(Denial::NotAllowed)
        );
    }

    #[test]
    fn resources_and_prompts_have_their_own_rules() {
        let p = policies(
            r#"
            [[policy]]
            roles = ["analyst"]
            allow = ["sql__*"]
            resources = { allow = ["switchboard://docs/*"], deny = ["switchboard://docs/secret*"] }
            prompts = { allow = ["sql__*"] }
            "#,
        );
        let analyst = id("ann", &[], &["analyst"]);
        assert_eq!(
            p.check_kind(&analyst, Subject::Resource, "switchboard://docs/readme"),
            Ok(())
        );
        assert_eq!(
            p.check_kind(&analyst, Subject::Resource, "switchboard://docs/secret.txt"),
            Err(Denial::DeniedByPolicy)
        );
        assert_eq!(
            p.check_kind(&analyst, Subject::Resource, "switchboard://fs/x"),
            Err(Denial::NotAllowed)
        );
        assert_eq!(
            p.check_kind(&analyst, Subject::Prompt, "sql__explain"),
            Ok(())
        );
        assert_eq!(
            p.check_kind(&analyst, Subject::Prompt, "crm__summary"),
            Err(Denial::NotAllowed)
        );
        let narrowed = id("ann", &["resource:switchboard://docs/r*"], &["analyst"]);
        assert_eq!(
            p.check_kind(&narrowed, Subject::Resource, "switchboard://docs/readme"),
            Ok(())
        );
        assert_eq!(
            p.check_kind(&narrowed, Subject::Resource, "switchboard://docs/other"),
            Err(Denial::OutsideScopes)
        );
    }

    #[test]
    fn argument_constraints_hold_after_path_normalisation() {
        let p = policies(
            r#"
            [[policy]]
            roles = ["reader"]
            allow = ["fs__read_*", "fs__list_directory"]
            [[policy.constraint]]
            tools = ["fs__read_*"]
            argument = "/path"
            allow = ["reports", "reports/**"]
            path = true
            "#,
        );
        let reader = id("rita", &[], &["reader"]);
        let args = |v: serde_json::Value| v.as_object().cloned();
        let call = |tool: &str, a: serde_json::Value| p.check_call(&reader, tool, args(a).as_ref());
        assert_eq!(
            call(
                "fs__read_text_file",
                serde_json::json!({"path": "reports/q3.txt"})
            ),
            Ok(())
        );
        assert_eq!(
            call(
                "fs__read_text_file",
                serde_json::json!({"path": "./reports/./a/../q3.txt"})
            ),
            Ok(())
        );
        let outside = Err(Denial::Constraint {
            argument: "/path".into(),
        });
        assert_eq!(
            call(
                "fs__read_text_file",
                serde_json::json!({"path": "reports/../secrets.txt"})
            ),
            outside
        );
        assert_eq!(
            call(
                "fs__read_text_file",
                serde_json::json!({"path": "../../etc/passwd"})
            ),
            outside
        );
        assert_eq!(
            call(
                "fs__read_text_file",
                serde_json::json!({"path": "reports\\..\\x"})
            ),
            outside
        );
        assert_eq!(call("fs__read_text_file", serde_json::json!({})), outside);
        assert_eq!(
            call("fs__read_text_file", serde_json::json!({"path": 7})),
            outside
        );
        // Tools the constraint does not name are not held to it.
        assert_eq!(
            call("fs__list_directory", serde_json::json!({"path": "/"})),
            Ok(())
        );
        assert_eq!(normalise_path("/a/./b/../c"), Some("/a/c".into()));
        let nested = serde_json::json!({"a/b": {"c": ["x", "y"]}, "d": 1});
        let nested = nested.as_object().cloned().unwrap_or_default();
        assert_eq!(
            argument_at(&nested, "/a~1b/c/1"),
            Some(&serde_json::json!("y"))
        );
        assert_eq!(argument_at(&nested, "/d"), Some(&serde_json::json!(1)));
        assert_eq!(argument_at(&nested, "/missing"), None);
        assert_eq!(argument_at(&nested, "d"), None);
        assert_eq!(normalise_path("a/../.."), None);
    }
}
