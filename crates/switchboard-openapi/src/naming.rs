//! Tool names from operations: valid (`^[a-zA-Z0-9_-]{1,64}$`) and deterministic.
//!
//! The name is the `operationId` with every other character replaced by `_`; without one it
//! is `method_path` (`get_pets_petId` for `GET /pets/{petId}`). A name longer than 64 keeps
//! its first 55 characters and gets `_` plus 8 hex digits of the SHA-256 of the full name, so
//! two long names that share a prefix still differ.

use sha2::{Digest, Sha256};

/// Longest tool name MCP allows.
pub const MAX_TOOL_NAME: usize = 64;
const HASH_HEX: usize = 8;

pub fn is_valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOOL_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `raw` with invalid characters replaced by `_`, runs of `_` collapsed, `_` trimmed at the
/// ends, and shortened with a hash suffix when over 64 characters. `None` when nothing is left.
pub fn sanitize(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            c
        } else {
            '_'
        };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    let trimmed = out.trim_matches('_');
    if trimmed.is_empty() {
        return None;
    }
    Some(shorten(trimmed, raw))
}

/// The name of an operation without an `operationId`: `get_pets_petId`.
pub fn fallback(method: &str, path: &str) -> String {
    let raw = format!("{}_{path}", method.to_ascii_lowercase());
    sanitize(&raw).unwrap_or_else(|| method.to_ascii_lowercase())
}

/// `name` itself when short enough, else [`with_hash`].
pub fn shorten(name: &str, seed: &str) -> String {
    if name.len() <= MAX_TOOL_NAME {
        name.to_string()
    } else {
        with_hash(name, seed)
    }
}

/// At most the first 55 characters of `name` (ASCII), `_`, and 8 hex digits of `seed`'s
/// SHA-256: always valid, and distinct for distinct seeds.
pub fn with_hash(name: &str, seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let hex: String = digest
        .iter()
        .take(HASH_HEX / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    let keep = name.len().min(MAX_TOOL_NAME - HASH_HEX - 1);
    let prefix = name.get(..keep).unwrap_or(name).trim_end_matches('_');
    format!("{prefix}_{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_are_sanitised() {
        assert_eq!(sanitize("listPets").as_deref(), Some("listPets"));
        assert_eq!(sanitize("pets.list v2").as_deref(), Some("pets_list_v2"));
        assert_eq!(sanitize("  //  "), None);
        assert_eq!(sanitize("ünïcode-op").as_deref(), Some("n_code-op"));
    }

    #[test]
    fn fallback_from_method_and_path() {
        assert_eq!(fallback("GET", "/pets/{petId}"), "get_pets_petId");
        assert_eq!(fallback("delete", "/"), "delete");
        assert_eq!(
            fallback("POST", "/v1/users/{user-id}/keys"),
            "post_v1_users_user-id_keys"
        );
    }

    #[test]
    fn long_names_are_truncated_with_a_stable_hash() {
        let long_a = format!("get_{}", "segment_".repeat(12));
        let long_b = format!("get_{}x", "segment_".repeat(12));
        let a = sanitize(&long_a).unwrap();
        let b = sanitize(&long_b).unwrap();
        assert!(is_valid_tool_name(&a) && is_valid_tool_name(&b), "{a} {b}");
        assert!(a.len() <= MAX_TOOL_NAME && a.len() > 50);
        assert_ne!(a, b);
        assert_eq!(a, sanitize(&long_a).unwrap());
    }
}
