//! `switchboard status [--url URL] [--json]`: a running gateway's upstreams at a glance.
//!
//! Reads the gateway's `GET /api/status` (the same JSON `--json` prints) and renders one row
//! per upstream: health, circuit, restarts, tools, retries and cache counters. It reads the
//! JSON loosely (missing fields show as `-`), so an older or newer gateway still prints.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The gateway's base URL (where `/mcp` is served, without the path).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Print the raw status document instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Give up after this many seconds. Default 10.
    #[arg(long, default_value_t = 10)]
    pub timeout_secs: u64,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let base = args.url.trim_end_matches('/');
    let base = base.strip_suffix("/mcp").unwrap_or(base);
    let url = format!("{base}/api/status");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs))
        .build()
        .context("could not build the HTTP client")?;
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("could not reach the gateway at {url}"))?;
    let code = response.status();
    if !code.is_success() {
        bail!("{url} answered HTTP {code}; is this a switchboard gateway?");
    }
    let status: Value = response
        .json()
        .await
        .with_context(|| format!("{url} did not answer with JSON"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&status));
    }
    Ok(())
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The status document as a table.
fn render(status: &Value) -> String {
    let mut rows = vec![
        [
            "UPSTREAM", "HEALTH", "CIRCUIT", "RESTARTS", "TOOLS", "RETRIES", "CACHE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let empty = Vec::new();
    let upstreams = status["upstreams"].as_array().unwrap_or(&empty);
    for u in upstreams {
        let health = &u["health"];
        let mut state = text(&health["state"]);
        if let Some(n) = health["consecutive_failures"].as_u64().filter(|n| *n > 0) {
            state.push_str(&format!(" ({n} failed)"));
        }
        let cache = &u["cache"];
        let cache = if cache.is_object() {
            format!(
                "{} entries, {} hits, {} misses, {} evicted",
                text(&cache["entries"]),
                text(&cache["hits"]),
                text(&cache["misses"]),
                cache["evictions"].as_u64().unwrap_or(0)
                    + cache["expirations"].as_u64().unwrap_or(0),
            )
        } else {
            "off".into()
        };
        rows.push(vec![
            text(&u["name"]),
            state,
            text(&u["circuit"]),
            text(&u["restarts"]),
            text(&u["tools"]),
            text(&u["retry"]["retries"]),
            cache,
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "{} tools from {} upstreams (switchboard {})\n",
        text(&status["tools"]),
        upstreams.len(),
        text(&status["version"]),
    ));
    for u in upstreams {
        if let Some(error) = u["health"]["last_error"].as_str() {
            out.push_str(&format!("{}: {error}\n", text(&u["name"])));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_a_table_with_missing_fields() {
        let table = render(&json!({
            "version": "0.1.0",
            "tools": 3,
            "upstreams": [
                {"name": "fs", "circuit": "closed", "restarts": 0, "tools": 3,
                 "health": {"state": "healthy", "consecutive_failures": 0},
                 "cache": {"entries": 1, "hits": 2, "misses": 1, "evictions": 0, "expirations": 1},
                 "retry": {"retries": 4}},
                {"name": "gone", "health": {"state": "unhealthy", "consecutive_failures": 3,
                 "last_error": "refused"}}
            ]
        }));
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("UPSTREAM"), "{table}");
        assert!(
            lines[1].contains("healthy") && lines[1].contains("2 hits"),
            "{table}"
        );
        assert!(lines[1].contains("1 evicted"), "{table}");
        assert!(
            lines[2].contains("unhealthy (3 failed)") && lines[2].contains("off"),
            "{table}"
        );
        assert!(table.contains("gone: refused"), "{table}");
    }
}
