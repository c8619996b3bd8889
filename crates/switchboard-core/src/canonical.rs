//! Canonical JSON: one text per JSON value, whatever the key order or whitespace it arrived
//! with. The audit log hashes it (so a record can be matched to the request that made it) and
//! the result cache keys on it (so `{"a":1,"b":2}` and `{"b":2,"a":1}` share an entry).

use serde::Serialize;
use serde_json::{Map, Value};

/// Canonical JSON: object keys sorted by their UTF-8 bytes, no insignificant whitespace,
/// strings escaped and numbers printed as `serde_json` prints them. Independent of whether
/// `serde_json` preserves insertion order.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    into_string(out)
}

/// [`canonical_json`] of an object, without wrapping (copying) it in a [`Value`].
pub fn canonical_object(map: &Map<String, Value>) -> String {
    let mut out = Vec::new();
    write_canonical_object(map, &mut out);
    into_string(out)
}

fn into_string(bytes: Vec<u8>) -> String {
    // serde_json writes UTF-8 only; the fallback never runs.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn write_canonical_object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push(b'{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(key, out);
        out.push(b':');
        write_canonical(value, out);
    }
    out.push(b'}');
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => write_canonical_object(map, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_json(scalar, out),
    }
}

/// A string or scalar as `serde_json` writes it (escaped, no whitespace).
fn write_json<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Writing a string or a scalar into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_are_sorted_at_every_depth_without_whitespace() {
        let value = json!({"b": 1, "a": {"z": [3, {"y": true, "x": null}], "é": "q\"uote"}});
        assert_eq!(
            canonical_json(&value),
            r#"{"a":{"z":[3,{"x":null,"y":true}],"é":"q\"uote"},"b":1}"#
        );
        let Value::Object(map) = json!({"b": 2, "a": 1}) else {
            unreachable!("an object literal")
        };
        assert_eq!(canonical_object(&map), r#"{"a":1,"b":2}"#);
    }
}
