//! The real `switchboard serve`'s operator surface: `/metrics` counters move with calls,
//! `/healthz` and `/readyz` answer, the live call stream reports a call, the dashboard is
//! served, same-origin requests pass the `Origin` check while foreign origins do not, and with
//! authentication on only the probes and the page shell are public.

mod common;

use std::time::Duration;

use common::{call, spawn_listening};
use serde_json::{Value, json};

/// The value of the sample `name{labels…}` in an OpenMetrics exposition, where every
/// `key="value"` in `labels` must appear among the sample's labels; 0 when absent.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (series, ""),
            };
            (series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

async fn scrape(http: &reqwest::Client, base: &str) -> String {
    let response = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    response.text().await.expect("metrics body")
}

/// Reads SSE from `response` until an event `call` whose data has `tool`; bounded by an
/// overall deadline (a wait for a condition, not a timing assertion).
async fn next_call_event(response: &mut reqwest::Response, tool: &str) -> Value {
    let mut buffer = String::new();
    let wait = async {
        loop {
            let chunk = response
                .chunk()
                .await
                .expect("read the call stream")
                .expect("the call stream ended");
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                if !block.lines().any(|l| l == "event: call") {
                    continue;
                }
                let data: String = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                let event: Value = serde_json::from_str(&data).expect("call event JSON");
                if event["tool"] == tool {
                    return event;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("the call appeared in the stream")
}

#[tokio::test]
async fn metrics_probes_and_call_stream_of_the_zero_config_gateway() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = spawn_listening(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", "data"],
        tmp.path(),
    )
    .await;
    let base = server.base.clone();
    let http = reqwest::Client::new();

    let healthz = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(healthz.status(), 200);
    let readyz = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(readyz.status(), 200);
    let ready: Value = readyz.json().await.expect("readyz json");
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["upstreams"]["fs"], "healthy", "{ready}");

    let before = scrape(&http, &base).await;
    for upstream in ["fs", "sql", "crm"] {
        assert_eq!(
            sample(
                &before,
                "switchboard_upstream_healthy",
                &[("upstream", upstream)]
            ),
            1.0,
            "{before}"
        );
        assert_eq!(
            sample(
                &before,
                "switchboard_upstream_circuit_state",
                &[("upstream", upstream), ("state", "closed")]
            ),
            1.0
        );
    }
    let ok_calls = [
        ("method", "tools/call"),
        ("tool", "fs__read_text_file"),
        ("upstream", "fs"),
        ("outcome", "ok"),
    ];
    assert_eq!(
        sample(&before, "switchboard_requests_total", &ok_calls),
        0.0
    );

    let mut stream = http
        .get(format!("{base}/api/calls/stream"))
        .send()
        .await
        .expect("open the call stream");
    assert_eq!(stream.status(), 200);

    let client = common::client(&server.mcp).await;
    let read = call(&client, "fs__read_text_file", json!({"path": "README.txt"})).await;
    assert_ne!(read.is_error, Some(true), "{read:?}");
    let missing = call(&client, "fs__read_text_file", json!({"path": "absent.txt"})).await;
    assert_eq!(missing.is_error, Some(true), "{missing:?}");
    let unknown = client
        .call_tool(rmcp::model::CallToolRequestParams::new("no__such_tool"))
        .await;
    assert!(unknown.is_err(), "an unknown tool is a protocol error");

    let event = next_call_event(&mut stream, "fs__read_text_file").await;
    assert_eq!(event["upstream"], "fs");
    assert_eq!(event["outcome"], "ok");
    assert!(event["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
    assert!(event["time"].as_str().is_some_and(|t| t.ends_with('Z')));

    let after = scrape(&http, &base).await;
    assert_eq!(sample(&after, "switchboard_requests_total", &ok_calls), 1.0);
    assert_eq!(
        sample(
            &after,
            "switchboard_requests_total",
            &[("tool", "fs__read_text_file"), ("outcome", "tool_error")]
        ),
        1.0,
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "switchboard_requests_total",
            &[("tool", ""), ("outcome", "unknown_tool")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "switchboard_tool_call_duration_seconds_count",
            &[("tool", "fs__read_text_file")]
        ),
        2.0
    );
    assert_eq!(
        sample(
            &after,
            "switchboard_upstream_call_duration_seconds_count",
            &[("upstream", "fs")]
        ),
        2.0
    );
    assert_eq!(sample(&after, "switchboard_sessions_active", &[]), 1.0);
    // This client's connection at least (the scrape's own included).
    assert!(sample(&after, "switchboard_http_connections_active", &[]) >= 1.0);
    // rmcp's client declares no capability the gateway could use during a call, so its calls
    // were answered without rmcp's session worker; the first one only if the session's
    // `notifications/initialized`, which registers it, was handled before it arrived.
    let direct = sample(&after, "switchboard_direct_calls_total", &[]);
    assert!((2.0..=3.0).contains(&direct), "{after}");
    assert_eq!(sample(&after, "switchboard_call_streams_active", &[]), 1.0);

    // The dashboard and its API.
    let page = http.get(format!("{base}/")).send().await.expect("GET /");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("html").contains("Switchboard"));
    let invalidate = http
        .post(format!("{base}/api/cache/invalidate"))
        .json(&json!({"upstream": "fs"}))
        .send()
        .await
        .expect("invalidate");
    assert_eq!(invalidate.status(), 200);
    assert_eq!(
        invalidate.json::<Value>().await.expect("json")["dropped"],
        0
    );

    // The gateway's own origin passes the Origin check on /mcp; a foreign one does not.
    let host = base.trim_start_matches("http://");
    let discover = json!({
        "jsonrpc": "2.0", "id": 1, "method": "server/discover",
        "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}
        }}
    });
    let post = |origin: String| {
        http.post(&server.mcp)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "server/discover")
            .header("origin", origin)
            .body(discover.to_string())
            .send()
    };
    let same = post(format!("http://{host}")).await.expect("same origin");
    assert_eq!(same.status(), 200);
    let foreign = post("http://evil.example".into())
        .await
        .expect("foreign origin");
    assert_eq!(foreign.status(), 403);
    let rebinding = http
        .post(&server.mcp)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "server/discover")
        .header("host", "attacker.example")
        .header("origin", "http://attacker.example")
        .body(discover.to_string())
        .send()
        .await
        .expect("rebinding");
    assert_eq!(rebinding.status(), 403);

    client.cancel().await.expect("close");
    drop(server.child);
}

#[tokio::test]
async fn with_authentication_only_probes_and_the_page_shell_are_public() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(tmp.path().join("files")).expect("files");
    std::fs::write(
        tmp.path().join("gateway.toml"),
        r#"
[[upstream]]
name = "fs"
builtin = { server = "fs", roots = ["./files"] }

[security.auth]
protect_status = true

[[security.auth.jwt]]
algorithm = "HS256"
secret = "0123456789abcdef0123456789abcdef-observability"
"#,
    )
    .expect("config");
    let server = spawn_listening(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "gateway.toml",
        ],
        tmp.path(),
    )
    .await;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    for public in [
        "/healthz",
        "/readyz",
        "/",
        "/dashboard/app.js",
        "/dashboard/app.css",
    ] {
        let response = http
            .get(format!("{base}{public}"))
            .send()
            .await
            .expect("public route");
        assert_eq!(response.status(), 200, "{public}");
    }
    for protected in ["/metrics", "/api/status", "/api/calls/stream"] {
        let response = http
            .get(format!("{base}{protected}"))
            .send()
            .await
            .expect("protected route");
        assert_eq!(response.status(), 401, "{protected}");
    }
    let invalidate = http
        .post(format!("{base}/api/cache/invalidate"))
        .json(&json!({}))
        .send()
        .await
        .expect("invalidate");
    assert_eq!(invalidate.status(), 401);
    drop(server.child);
}
