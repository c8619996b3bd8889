//! Faithful conversion of engine values to JSON.
//!
//! JSON numbers are doubles in most clients, so exact types are written as strings:
//! decimals keep every digit, dates and timestamps are ISO 8601, binary data is base64.
//! Integers, floats, booleans and JSON columns stay native; NULL is `null`. A type this
//! module does not know falls back to its text form (or base64 when that is not UTF-8).

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::{
    Column, Row, TypeInfo, ValueRef,
    mysql::MySqlRow,
    postgres::{PgRow, PgValueFormat},
    sqlite::SqliteRow,
    types::Json,
};

/// Limits one cell in place: text (and binary, as base64 text) longer than `max` bytes is cut
/// at a character boundary and ends with `…`. Returns whether it was.
pub(crate) fn clip(value: &mut Value, max: usize) -> bool {
    let Value::String(s) = value else {
        return false;
    };
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
    true
}

fn b64(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn iso_datetime(dt: NaiveDateTime) -> Value {
    Value::String(dt.format("%Y-%m-%dT%H:%M:%S%.f").to_string())
}

fn float(f: f64) -> Value {
    // NaN and infinities have no JSON number; their names are the honest rendering.
    serde_json::Number::from_f64(f).map_or_else(|| Value::String(f.to_string()), Value::Number)
}

/// The PostgreSQL value of column `i` as JSON.
pub(crate) fn pg_value(row: &PgRow, i: usize) -> Result<Value, sqlx::Error> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let ty = raw.type_info().name().to_string();
    Ok(match ty.as_str() {
        "BOOL" => Value::Bool(row.try_get(i)?),
        "INT2" => Value::from(row.try_get::<i16, _>(i)?),
        "INT4" => Value::from(row.try_get::<i32, _>(i)?),
        "INT8" => Value::from(row.try_get::<i64, _>(i)?),
        "OID" => Value::from(row.try_get::<sqlx::postgres::types::Oid, _>(i)?.0),
        "FLOAT4" => float(f64::from(row.try_get::<f32, _>(i)?)),
        "FLOAT8" => float(row.try_get::<f64, _>(i)?),
        "NUMERIC" => match row.try_get::<Decimal, _>(i) {
            Ok(d) => Value::String(d.to_string()),
            // NaN or more digits than rust_decimal holds: say so rather than round.
            Err(_) => Value::String("<numeric outside the 28-digit range; cast it to text>".into()),
        },
        "JSON" | "JSONB" => row.try_get::<Json<Value>, _>(i)?.0,
        "BYTEA" => b64(&row.try_get::<Vec<u8>, _>(i)?),
        "DATE" => Value::String(row.try_get::<NaiveDate, _>(i)?.to_string()),
        "TIME" => Value::String(row.try_get::<NaiveTime, _>(i)?.to_string()),
        "TIMESTAMP" => iso_datetime(row.try_get::<NaiveDateTime, _>(i)?),
        "TIMESTAMPTZ" => Value::String(row.try_get::<DateTime<Utc>, _>(i)?.to_rfc3339()),
        "UUID" => {
            let bytes = raw.as_bytes().map_err(sqlx::Error::Decode)?;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            if hex.len() == 32 {
                Value::String(format!(
                    "{}-{}-{}-{}-{}",
                    &hex[..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..]
                ))
            } else {
                Value::String(hex)
            }
        }
        "TEXT[]" | "VARCHAR[]" | "NAME[]" | "BPCHAR[]" => {
            Value::from(row.try_get::<Vec<Option<String>>, _>(i)?)
        }
        "INT2[]" => Value::from(row.try_get::<Vec<Option<i16>>, _>(i)?),
        "INT4[]" => Value::from(row.try_get::<Vec<Option<i32>>, _>(i)?),
        "INT8[]" => Value::from(row.try_get::<Vec<Option<i64>>, _>(i)?),
        "BOOL[]" => Value::from(row.try_get::<Vec<Option<bool>>, _>(i)?),
        "FLOAT8[]" => Value::from(row.try_get::<Vec<Option<f64>>, _>(i)?),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CITEXT" | "XML" | "REGCLASS" => {
            Value::String(row.try_get_unchecked::<String, _>(i)?)
        }
        _ => {
            // Enums and text-like types arrive as their text in either format.
            let text_format = matches!(raw.format(), PgValueFormat::Text);
            let bytes = raw.as_bytes().map_err(sqlx::Error::Decode)?;
            match std::str::from_utf8(bytes) {
                Ok(s) if text_format || !s.chars().any(char::is_control) => Value::String(s.into()),
                _ => b64(bytes),
            }
        }
    })
}

/// The MySQL/MariaDB value of column `i` as JSON.
pub(crate) fn mysql_value(row: &MySqlRow, i: usize) -> Result<Value, sqlx::Error> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let ty = raw.type_info().name().to_string();
    Ok(match ty.as_str() {
        "BOOLEAN" => Value::Bool(row.try_get(i)?),
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => {
            Value::from(row.try_get::<i64, _>(i)?)
        }
        t if t.ends_with("UNSIGNED") => Value::from(row.try_get::<u64, _>(i)?),
        "FLOAT" => float(f64::from(row.try_get::<f32, _>(i)?)),
        "DOUBLE" => float(row.try_get::<f64, _>(i)?),
        "DECIMAL" => Value::String(row.try_get::<Decimal, _>(i)?.to_string()),
        "DATE" => Value::String(row.try_get::<NaiveDate, _>(i)?.to_string()),
        "DATETIME" => iso_datetime(row.try_get::<NaiveDateTime, _>(i)?),
        "TIMESTAMP" => Value::String(row.try_get::<DateTime<Utc>, _>(i)?.to_rfc3339()),
        "TIME" => match row.try_get::<NaiveTime, _>(i) {
            Ok(t) => Value::String(t.to_string()),
            // TIME can be negative or over 24 h, which NaiveTime cannot hold.
            Err(_) => Value::String(
                row.try_get::<sqlx::mysql::types::MySqlTime, _>(i)?
                    .to_string(),
            ),
        },
        "JSON" => row.try_get::<Json<Value>, _>(i)?.0,
        "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" | "BINARY" | "VARBINARY"
            if !mysql_binary_collation(&raw.type_info()) =>
        {
            // A text column with a `_bin` collation (MariaDB's JSON is one) carries the BINARY
            // flag, so sqlx names it like a blob; only the binary collation means bytes.
            match row.try_get_unchecked::<String, _>(i) {
                Ok(s) => Value::String(s),
                Err(_) => b64(&row.try_get_unchecked::<Vec<u8>, _>(i)?),
            }
        }
        "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" | "BINARY" | "VARBINARY" | "BIT"
        | "GEOMETRY" => b64(&row.try_get_unchecked::<Vec<u8>, _>(i)?),
        _ => match row.try_get_unchecked::<String, _>(i) {
            Ok(s) => Value::String(s),
            Err(_) => b64(&row.try_get_unchecked::<Vec<u8>, _>(i)?),
        },
    })
}

/// Whether a MySQL column uses the `binary` collation (63), i.e. holds bytes, not text.
///
/// sqlx keeps the collation crate-private; its `Debug` output is the only way to read it.
/// Should that output change, every blob-named column is treated as bytes (base64), which
/// loses readability, never data.
fn mysql_binary_collation(type_info: &sqlx::mysql::MySqlTypeInfo) -> bool {
    let debug = format!("{type_info:?}");
    !debug.contains("collation: Collation(") || debug.contains("collation: Collation(63)")
}

/// How a SQLite column's declared type shapes its values (SQLite's type affinity rules: the
/// declared type's words decide).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum SqliteClass {
    /// `DECIMAL(10,2)`, `NUMERIC`, …: numbers are written as exact strings.
    Numeric,
    /// `BOOLEAN`, `BOOL`: integers are booleans.
    Boolean,
    /// `TIMESTAMP`, `DATETIME`: text in SQLite's format becomes ISO 8601.
    DateTime,
    Other,
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

impl SqliteClass {
    /// The class of a declared type (or of sqlx's type name for a column without one).
    pub(crate) fn of(declared: &str) -> Self {
        if contains_ignore_case(declared, "DEC") || contains_ignore_case(declared, "NUMERIC") {
            Self::Numeric
        } else if declared
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("BOOL"))
        {
            Self::Boolean
        } else if contains_ignore_case(declared, "TIMESTAMP")
            || contains_ignore_case(declared, "DATETIME")
        {
            Self::DateTime
        } else {
            Self::Other
        }
    }
}

/// The SQLite value of column `i` as JSON. `declared` is the column's declared type
/// (`DECIMAL(10,2)`, `TIMESTAMP`, …), which sqlx does not keep.
pub(crate) fn sqlite_value(
    row: &SqliteRow,
    i: usize,
    declared: Option<&str>,
) -> Result<Value, sqlx::Error> {
    sqlite_value_in(row, i, declared.map(SqliteClass::of))
}

/// [`sqlite_value`] with the declared type already classified (once per column).
pub(crate) fn sqlite_value_in(
    row: &SqliteRow,
    i: usize,
    class: Option<SqliteClass>,
) -> Result<Value, sqlx::Error> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let storage = raw.type_info().name().to_string();
    let class = class.unwrap_or_else(|| SqliteClass::of(row.column(i).type_info().name()));
    Ok(match storage.as_str() {
        "INTEGER" | "INT8" | "BOOLEAN" | "INT" => sqlite_cell(
            StoredCell::Integer(row.try_get_unchecked::<i64, _>(i)?),
            class,
        ),
        "REAL" => sqlite_cell(StoredCell::Real(row.try_get_unchecked::<f64, _>(i)?), class),
        "BLOB" => sqlite_cell(
            StoredCell::Blob(&row.try_get_unchecked::<Vec<u8>, _>(i)?),
            class,
        ),
        _ => sqlite_cell(
            StoredCell::Text(row.try_get_unchecked::<String, _>(i)?.into()),
            class,
        ),
    })
}

/// A SQLite value in its storage class, as the engine hands it over (text is borrowed when
/// it is valid UTF-8).
pub(crate) enum StoredCell<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Blob(&'a [u8]),
    Text(std::borrow::Cow<'a, str>),
}

/// The JSON of one SQLite value: its storage class read through the column's declared
/// type (exact decimals, booleans, ISO 8601 timestamps). The one mapping behind both the
/// sqlx rows and the direct reader in `sqlite::read_rows`.
pub(crate) fn sqlite_cell(cell: StoredCell<'_>, class: SqliteClass) -> Value {
    match cell {
        StoredCell::Null => Value::Null,
        StoredCell::Integer(n) => match class {
            SqliteClass::Boolean => Value::Bool(n != 0),
            SqliteClass::Numeric => Value::String(n.to_string()),
            _ => Value::from(n),
        },
        StoredCell::Real(f) => match class {
            SqliteClass::Numeric => Value::String(f.to_string()),
            _ => float(f),
        },
        StoredCell::Blob(bytes) => b64(bytes),
        StoredCell::Text(s) => match class {
            SqliteClass::DateTime => {
                match NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S%.f") {
                    Ok(dt) => iso_datetime(dt),
                    Err(_) => Value::String(s.into_owned()),
                }
            }
            _ => Value::String(s.into_owned()),
        },
    }
}

/// Text for a JSON parameter when it is bound as text (PostgreSQL `insert_record`).
pub(crate) fn json_as_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Binds JSON parameters to a sqlx query, by JSON type. Objects and arrays become JSON
/// (jsonb on PostgreSQL, JSON text elsewhere).
macro_rules! bind_json {
    ($query:expr, $params:expr, $json_native:expr) => {{
        let mut query = $query;
        for value in $params {
            query = match value {
                serde_json::Value::Null => query.bind(None::<String>),
                serde_json::Value::Bool(b) => query.bind(*b),
                serde_json::Value::Number(n) => {
                    if let Some(i) = n.as_i64() {
                        query.bind(i)
                    } else if let Some(f) = n.as_f64() {
                        query.bind(f)
                    } else {
                        query.bind(n.to_string())
                    }
                }
                serde_json::Value::String(s) => query.bind(s.clone()),
                other => {
                    if $json_native {
                        query.bind(sqlx::types::Json(other.clone()))
                    } else {
                        query.bind(other.to_string())
                    }
                }
            };
        }
        query
    }};
}
pub(crate) use bind_json;
