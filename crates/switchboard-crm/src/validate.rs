//! Input rules, in one place so the MCP tools and the REST API reject the same things with
//! the same error kinds.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::currency;
use crate::error::CrmError;

/// Longest accepted name, company, position, title or phone (characters).
pub const MAX_SHORT_TEXT: usize = 300;
/// Longest accepted note or interaction summary (characters).
pub const MAX_LONG_TEXT: usize = 20_000;
/// Most tags on one contact.
pub const MAX_TAGS: usize = 50;
/// Largest accepted deal value (exclusive): 10^16, so totals stay far from Decimal's limit.
const MAX_VALUE_DIGITS: u32 = 16;
/// Most decimal places in a value (ISO 4217 minor units go up to 4).
pub const MAX_VALUE_SCALE: u32 = 4;

/// A required, trimmed, bounded piece of text.
pub fn required_text(field: &str, value: &str, max: usize) -> Result<String, CrmError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(CrmError::invalid(
            "invalid_argument",
            format!("{field} must not be empty"),
        ));
    }
    bounded(field, trimmed, max)?;
    Ok(trimmed.to_owned())
}

/// An optional trimmed text; empty means "none".
pub fn optional_text(
    field: &str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, CrmError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => {
            bounded(field, text, max)?;
            Ok(Some(text.to_owned()))
        }
    }
}

fn bounded(field: &str, value: &str, max: usize) -> Result<(), CrmError> {
    if value.chars().count() > max {
        return Err(CrmError::invalid(
            "invalid_argument",
            format!("{field} is longer than {max} characters"),
        ));
    }
    Ok(())
}

/// A plausible email address: one `@`, a non-empty local part, a dotted domain of letters,
/// digits and hyphens. ASCII only, so case-insensitive uniqueness means the same thing on
/// SQLite (whose `lower()` is ASCII-only) and PostgreSQL.
pub fn email(value: &str) -> Result<String, CrmError> {
    let email = value.trim();
    let bad = |why: &str| {
        CrmError::invalid(
            "invalid_email",
            format!("{email:?} is not a valid email address: {why}"),
        )
    };
    if email.len() > 254 {
        return Err(bad("longer than 254 characters"));
    }
    if !email.is_ascii() {
        return Err(bad("only ASCII addresses are accepted"));
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(bad("missing @"));
    };
    if local.is_empty() || local.len() > 64 {
        return Err(bad("the part before @ must have 1 to 64 characters"));
    }
    let local_ok = local
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    if !local_ok || local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(bad(
            "the part before @ has characters or dots in the wrong place",
        ));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(bad("the domain needs a dot"));
    }
    let labels_ok = labels.iter().all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    if !labels_ok {
        return Err(bad("the domain is not a valid host name"));
    }
    Ok(email.to_owned())
}

/// A deal value: a non-negative decimal with at most 4 places and below 10^16.
pub fn amount(field: &str, text: &str) -> Result<Decimal, CrmError> {
    let text = text.trim();
    let value = Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| {
            CrmError::invalid(
                "invalid_value",
                format!("{field} {text:?} is not a decimal number"),
            )
        })?;
    if value.is_sign_negative() && !value.is_zero() {
        return Err(CrmError::invalid(
            "invalid_value",
            format!("{field} must be at least 0, got {text}"),
        ));
    }
    if value.scale() > MAX_VALUE_SCALE {
        return Err(CrmError::invalid(
            "invalid_value",
            format!("{field} has more than {MAX_VALUE_SCALE} decimal places: {text}"),
        ));
    }
    if value >= Decimal::from(10u64.pow(MAX_VALUE_DIGITS)) {
        return Err(CrmError::invalid(
            "invalid_value",
            format!("{field} must be below 10^{MAX_VALUE_DIGITS}, got {text}"),
        ));
    }
    // "-0" parses as a negative zero; store it as plain 0.
    Ok(if value.is_zero() {
        Decimal::new(0, value.scale())
    } else {
        value
    })
}

/// An ISO 4217 code, upper-cased.
pub fn currency(code: &str) -> Result<String, CrmError> {
    let code = code.trim().to_ascii_uppercase();
    if currency::is_active(&code) {
        Ok(code)
    } else {
        Err(CrmError::invalid(
            "invalid_currency",
            format!("{code:?} is not an active ISO 4217 currency code"),
        ))
    }
}

/// A win probability in percent.
pub fn probability(value: i32) -> Result<i32, CrmError> {
    if (0..=100).contains(&value) {
        Ok(value)
    } else {
        Err(CrmError::invalid(
            "invalid_probability",
            format!("probability must be between 0 and 100, got {value}"),
        ))
    }
}

/// A calendar date, YYYY-MM-DD.
pub fn date(field: &str, text: &str) -> Result<NaiveDate, CrmError> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| {
        CrmError::invalid(
            "invalid_argument",
            format!("{field} {text:?} is not a YYYY-MM-DD date"),
        )
    })
}

/// A point in time: RFC 3339, or a bare date meaning midnight UTC.
pub fn timestamp(field: &str, text: &str) -> Result<DateTime<Utc>, CrmError> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(crate::db::truncate_micros(time.with_timezone(&Utc)));
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && let Some(midnight) = day.and_hms_opt(0, 0, 0)
    {
        return Ok(midnight.and_utc());
    }
    Err(CrmError::invalid(
        "invalid_argument",
        format!("{field} {text:?} is not an RFC 3339 time or a YYYY-MM-DD date"),
    ))
}

/// Tags: trimmed, non-empty, bounded, duplicates dropped (first occurrence kept).
pub fn tags(values: &[String]) -> Result<Vec<String>, CrmError> {
    let mut out: Vec<String> = Vec::new();
    for value in values {
        let tag = required_text("tag", value, 100)?;
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    if out.len() > MAX_TAGS {
        return Err(CrmError::invalid(
            "invalid_argument",
            format!("at most {MAX_TAGS} tags"),
        ));
    }
    Ok(out)
}

/// An idempotency key: 1 to 200 characters.
pub fn idempotency_key(key: &str) -> Result<String, CrmError> {
    if key.is_empty() || key.chars().count() > 200 {
        return Err(CrmError::invalid(
            "invalid_argument",
            "idempotency_key must have 1 to 200 characters",
        ));
    }
    Ok(key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(email("anh@company.com").is_ok());
        assert!(email(" Binh@Startup.VN ").is_ok());
        for bad in [
            "",
            "no-at",
            "@x.com",
            "a@b",
            "a@-b.com",
            "a..b@x.com",
            "a b@x.com",
            "a@b..com",
        ] {
            assert_eq!(
                email(bad).map_err(|e| e.kind()),
                Err("invalid_email"),
                "{bad}"
            );
        }
    }

    #[test]
    fn amounts() {
        assert_eq!(
            amount("value", "50000")
                .ok()
                .map(|d| d.to_string())
                .as_deref(),
            Some("50000")
        );
        assert_eq!(
            amount("value", "1234.50")
                .ok()
                .map(|d| d.to_string())
                .as_deref(),
            Some("1234.50")
        );
        assert_eq!(
            amount("value", "-0").ok().map(|d| d.to_string()).as_deref(),
            Some("0")
        );
        for bad in ["-1", "abc", "1.23456", "10000000000000000"] {
            assert_eq!(
                amount("value", bad).map_err(|e| e.kind()),
                Err("invalid_value"),
                "{bad}"
            );
        }
    }

    #[test]
    fn currencies_and_probabilities() {
        assert_eq!(currency("vnd").ok().as_deref(), Some("VND"));
        assert_eq!(
            currency("ABC").map_err(|e| e.kind()),
            Err("invalid_currency")
        );
        assert!(probability(0).is_ok() && probability(100).is_ok());
        assert_eq!(
            probability(101).map_err(|e| e.kind()),
            Err("invalid_probability")
        );
    }

    #[test]
    fn timestamps() {
        let t = timestamp("t", "2025-01-20").map(|t| t.to_rfc3339());
        assert_eq!(t.ok().as_deref(), Some("2025-01-20T00:00:00+00:00"));
        assert!(timestamp("t", "2025-01-20T10:00:00+07:00").is_ok());
        assert!(timestamp("t", "yesterday").is_err());
    }
}
