//! Exposed tool names: prefixes, the `^[a-zA-Z0-9_-]{1,64}$` rule, and stable short aliases.
//!
//! Clients (OpenAI's function calling among them) reject tool names outside
//! `^[a-zA-Z0-9_-]{1,64}$`, and two upstreams often expose the same tool name. The gateway
//! therefore exposes `upstream__tool` by default (stable when other upstreams come and go), and
//! fits any name that would still break the rule to a deterministic alias: the sanitised name
//! cut to 55 characters, `_`, and 8 hex digits of a 64-bit FNV-1a hash of the full name. The
//! hash is spelled out here, not taken from `std`, so aliases survive compiler upgrades.

use std::collections::{BTreeMap, HashMap};

use crate::config::PrefixMode;

/// Between the upstream prefix and the tool name.
pub const SEPARATOR: &str = "__";
/// The longest exposed name.
pub const MAX_NAME_LEN: usize = 64;

/// True for names matching `^[a-zA-Z0-9_-]{1,64}$`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn fnv1a64(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Fits a candidate name to the rule; returns the name and whether it had to be aliased.
pub fn fit(candidate: &str) -> (String, bool) {
    if is_valid_name(candidate) {
        return (candidate.to_string(), false);
    }
    let sanitized: String = candidate
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !sanitized.is_empty() && sanitized.len() <= MAX_NAME_LEN {
        // Sanitising alone can make two names equal (`a.b`, `a:b`); the caller detects that.
        return (sanitized, true);
    }
    let head: String = sanitized.chars().take(55).collect();
    let hash = fnv1a64(candidate) as u32;
    (format!("{head}_{hash:08x}"), true)
}

/// One upstream tool waiting for its exposed name.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub upstream: &'a str,
    /// The tool's name after any configured rename.
    pub tool: &'a str,
    pub prefix: PrefixMode,
}

/// The exposed name of a candidate, and the name before fitting when it was aliased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    pub exposed: String,
    pub aliased_from: Option<String>,
}

/// Two candidates that would be exposed under the same name.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "tool name {name:?} is exposed by both {first:?} and {second:?}; use prefix = \"always\" or a rename"
)]
pub struct Collision {
    pub name: String,
    pub first: String,
    pub second: String,
}

/// Assigns exposed names to every candidate, in order. Fails on a collision that the prefix
/// modes cannot resolve (two `never` upstreams with the same tool, or an alias clash).
pub fn assign(candidates: &[Candidate<'_>]) -> Result<Vec<Assigned>, Collision> {
    let mut bare_count: HashMap<&str, usize> = HashMap::new();
    for c in candidates {
        *bare_count.entry(c.tool).or_default() += 1;
    }
    let mut taken: BTreeMap<String, &str> = BTreeMap::new();
    let mut out = Vec::with_capacity(candidates.len());
    for c in candidates {
        let prefixed = match c.prefix {
            PrefixMode::Always => true,
            PrefixMode::Conditional => bare_count.get(c.tool).copied().unwrap_or(0) > 1,
            PrefixMode::Never => false,
        };
        let candidate = if prefixed {
            format!("{}{SEPARATOR}{}", c.upstream, c.tool)
        } else {
            c.tool.to_string()
        };
        let (exposed, aliased) = fit(&candidate);
        if let Some(first) = taken.get(&exposed) {
            return Err(Collision {
                name: exposed,
                first: (*first).to_string(),
                second: c.upstream.to_string(),
            });
        }
        taken.insert(exposed.clone(), c.upstream);
        out.push(Assigned {
            exposed,
            aliased_from: aliased.then_some(candidate),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c<'a>(upstream: &'a str, tool: &'a str, prefix: PrefixMode) -> Candidate<'a> {
        Candidate {
            upstream,
            tool,
            prefix,
        }
    }

    fn names(assigned: &[Assigned]) -> Vec<&str> {
        assigned.iter().map(|a| a.exposed.as_str()).collect()
    }

    #[test]
    fn always_prefixes_and_is_stable() {
        let one = assign(&[c("fs", "read", PrefixMode::Always)]).expect("assign");
        let two = assign(&[
            c("db", "read", PrefixMode::Always),
            c("fs", "read", PrefixMode::Always),
        ])
        .expect("assign");
        assert_eq!(names(&one), ["fs__read"]);
        assert_eq!(names(&two), ["db__read", "fs__read"]);
    }

    #[test]
    fn conditional_prefixes_only_on_collision() {
        let out = assign(&[
            c("a", "echo", PrefixMode::Conditional),
            c("b", "echo", PrefixMode::Conditional),
            c("b", "add", PrefixMode::Conditional),
        ])
        .expect("assign");
        assert_eq!(names(&out), ["a__echo", "b__echo", "add"]);
    }

    #[test]
    fn never_collisions_are_errors() {
        let err = assign(&[
            c("a", "echo", PrefixMode::Never),
            c("b", "echo", PrefixMode::Never),
        ])
        .expect_err("collision");
        assert_eq!(err.name, "echo");
    }

    #[test]
    fn long_and_odd_names_get_deterministic_valid_aliases() {
        let long = "x".repeat(80);
        let out = assign(&[
            c("up", &long, PrefixMode::Always),
            c("up", "do.thing", PrefixMode::Always),
        ])
        .expect("assign");
        for a in &out {
            assert!(is_valid_name(&a.exposed), "{}", a.exposed);
            assert!(a.aliased_from.is_some());
        }
        assert_eq!(out[1].exposed, "up__do_thing");
        let again = assign(&[c("up", &long, PrefixMode::Always)]).expect("assign");
        assert_eq!(again[0].exposed, out[0].exposed);
        assert_eq!(out[0].exposed.len(), 64);
    }
}
