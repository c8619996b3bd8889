//! Which records a query wants, and the time syntax the CLI and the HTTP API share:
//! `--since 1h`, `?since=2024-05-01T00:00:00Z`, `prune --older-than 30d`.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use crate::{
    error::AuditError,
    record::{AuditRecord, Decision},
};

/// Records a query returns when no limit is given.
pub const DEFAULT_LIMIT: u32 = 100;
/// The most records one query returns.
pub const MAX_LIMIT: u32 = 10_000;

/// A query over the audit log; every part is optional. Newest records first.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Records at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Records before this time.
    pub until: Option<DateTime<Utc>>,
    /// The exposed tool name, glob syntax (`*`, `?`), case-sensitive.
    pub tool: Option<String>,
    /// The identity (subject), glob syntax.
    pub identity: Option<String>,
    pub decision: Option<Decision>,
    /// At most this many records (capped at [`MAX_LIMIT`]); `None`: [`DEFAULT_LIMIT`].
    pub limit: Option<u32>,
}

impl Filter {
    /// The effective limit.
    pub fn limit(&self) -> u32 {
        self.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT)
    }

    /// Whether `record` matches, as the store's query would decide it (the limit aside): for
    /// records still in the journal.
    pub fn matches(&self, record: &AuditRecord) -> bool {
        self.since.is_none_or(|since| record.time >= since)
            && self.until.is_none_or(|until| record.time < until)
            && self
                .tool
                .as_deref()
                .is_none_or(|glob| glob_matches(glob, &record.tool))
            && self
                .identity
                .as_deref()
                .is_none_or(|glob| glob_matches(glob, &record.identity))
            && self.decision.is_none_or(|d| d == record.decision)
    }
}

/// Our glob: `*` any run of characters, `?` one character, everything else literal and
/// case-sensitive (what SQLite's `GLOB` and the `LIKE` pattern in the store do).
pub fn glob_matches(glob: &str, text: &str) -> bool {
    let glob: Vec<char> = glob.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point (the last `*`): linear in practice.
    let (mut g, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match glob.get(g) {
            Some('*') => {
                star = Some((g, t));
                g += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                g += 1;
                t += 1;
            }
            _ => match star {
                Some((sg, st)) => {
                    g = sg + 1;
                    t = st + 1;
                    star = Some((sg, st + 1));
                }
                None => return false,
            },
        }
    }
    glob[g..].iter().all(|c| *c == '*')
}

/// A duration such as `90s`, `15m`, `1h`, `7d` or `2w` (one number, one unit).
pub fn parse_duration(text: &str) -> Result<Duration, AuditError> {
    let text = text.trim();
    let bad = || {
        AuditError::Invalid(format!(
            "bad duration {text:?}: expected a number and a unit s, m, h, d or w, e.g. 30d"
        ))
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

/// A point in time: a duration back from `now` (`1h`), an RFC 3339 time, or a UTC date
/// (`2024-05-01`, midnight).
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, AuditError> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && let Some(midnight) = date.and_hms_opt(0, 0, 0)
    {
        return Ok(midnight.and_utc());
    }
    let ago = parse_duration(text).map_err(|_| {
        AuditError::Invalid(format!(
            "bad time {text:?}: expected a duration ago (1h, 7d), an RFC 3339 time or a date"
        ))
    })?;
    chrono::Duration::from_std(ago)
        .ok()
        .and_then(|ago| now.checked_sub_signed(ago))
        .ok_or_else(|| AuditError::Invalid(format!("time {text:?} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_the_store() {
        assert!(glob_matches("crm__*", "crm__create_customer"));
        assert!(!glob_matches("crm__*", "fs__read"));
        assert!(glob_matches("a?c", "abc"));
        assert!(!glob_matches("a?c", "ac"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("*x*y", "axbxy"));
        assert!(!glob_matches("Alice", "alice"));
        assert!(glob_matches("a[1]", "a[1]"));
        assert!(glob_matches("50%_*", "50%_off"));
    }

    #[test]
    fn durations_and_times_parse() {
        assert_eq!(parse_duration("30d").expect("30d").as_secs(), 30 * 86_400);
        assert_eq!(parse_duration("90s").expect("90s").as_secs(), 90);
        assert!(parse_duration("1.5h").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("10y").is_err());
        assert!(parse_duration("99999999999999999999w").is_err());
        let now = DateTime::parse_from_rfc3339("2024-05-02T12:00:00Z")
            .expect("now")
            .with_timezone(&Utc);
        assert_eq!(
            parse_time("1h", now).expect("1h").to_rfc3339(),
            "2024-05-02T11:00:00+00:00"
        );
        assert_eq!(
            parse_time("2024-05-01", now).expect("date").to_rfc3339(),
            "2024-05-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_time("2024-05-01T10:00:00+02:00", now)
                .expect("rfc3339")
                .to_rfc3339(),
            "2024-05-01T08:00:00+00:00"
        );
        assert!(parse_time("yesterday", now).is_err());
    }
}
