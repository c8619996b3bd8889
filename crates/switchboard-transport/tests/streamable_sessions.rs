//! Streamable HTTP hardening: the session cap, idle reaping of sessions that never send
//! DELETE (rmcp issue #1244), sealed session ids that resume on any server holding the key,
//! and `Last-Event-ID` replay from the bounded event store.
//! Waits are on the session-count watch, never on sleeps.

mod common;

use std::{sync::Arc, time::Duration};

use common::wait_sessions;
use futures::StreamExt;
use serde_json::{Value, json};
use switchboard_fs::{FsConfig, FsServer, Limits};
use switchboard_transport::{
    HttpLimits, HttpRoutes, HttpServer, SessionKeys, SessionSealer, serve_http,
    sse::{SseEvent, SseParser},
};

async fn start(root: &std::path::Path, limits: HttpLimits) -> HttpServer {
    let server = FsServer::new(FsConfig {
        roots: vec![root.to_path_buf()],
        read_only: false,
        limits: Limits::default(),
    })
    .expect("fs server");
    serve_http(
        move || Ok(server.clone()),
        "127.0.0.1:0".parse().expect("addr"),
        HttpRoutes::Streamable,
        &limits,
    )
    .await
    .expect("serve")
}

fn post(http: &reqwest::Client, url: &str, body: &Value) -> reqwest::RequestBuilder {
    http.post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string())
}

/// Starts a 2025-11-25 session; returns its id.
async fn open_session(http: &reqwest::Client, url: &str) -> Result<String, (u16, String)> {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}});
    let response = post(http, url, &init).send().await.expect("POST");
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await.unwrap_or_default();
    let Some(session) = session else {
        return Err((status, body));
    };
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let ack = post(http, url, &initialized)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .expect("POST");
    assert_eq!(ack.status(), 202);
    Ok(session)
}

/// Opens the session's `GET` stream and returns it once its headers arrived, so the server
/// already counts the session busy.
async fn open_get_stream(http: &reqwest::Client, url: &str, session: &str) -> reqwest::Response {
    let stream = http
        .get(url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .expect("GET");
    assert_eq!(stream.status(), 200);
    stream
}

#[tokio::test]
async fn at_the_cap_the_least_recent_idle_session_leaves_memory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let limits = HttpLimits {
        max_sessions: 2,
        ..HttpLimits::default()
    };
    let server = start(tmp.path(), limits).await;
    let sessions = server.stats.sessions.clone().expect("/mcp served");
    let url = format!("http://{}/mcp", server.local_addr);
    let http = reqwest::Client::new();
    let a = open_session(&http, &url).await.expect("a");
    let b = open_session(&http, &url).await.expect("b");
    let c = open_session(&http, &url)
        .await
        .expect("at the cap, an idle session makes room");
    assert_eq!(sessions.session_count(), 2);
    assert_eq!(
        sessions.evicted_count(),
        1,
        "a, the least recent, left memory"
    );
    // Every session still works: each one rebuilt from its id moves the least recent out.
    for (session, evicted) in [(&a, 2), (&b, 3), (&c, 4), (&b, 4)] {
        assert_lists_tools(list_tools(&http, &url, session).await).await;
        assert_eq!(sessions.evicted_count(), evicted);
        assert_eq!(sessions.session_count(), 2);
    }
    // In memory now: c and b. A session with an open stream is busy and never moved out.
    let _c_stream = open_get_stream(&http, &url, &c).await;
    let _b_stream = open_get_stream(&http, &url, &b).await;
    let (status, body) = open_session(&http, &url)
        .await
        .expect_err("every session in memory is busy");
    assert_eq!(status, 500);
    assert!(body.contains("session limit reached"), "{body}");
    assert_eq!(
        list_tools(&http, &url, &a).await.status(),
        500,
        "nor can a session be rebuilt while all are busy"
    );
    let deleted = http
        .delete(&url)
        .header("mcp-session-id", &c)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .expect("DELETE");
    assert!(deleted.status().is_success(), "{}", deleted.status());
    wait_sessions(&server, 1).await;
    open_session(&http, &url)
        .await
        .expect("a slot is free again");
    assert_eq!(
        list_tools(&http, &url, &c).await.status(),
        404,
        "a session ended with DELETE stays ended"
    );
    server.shutdown().await.expect("stop");
}

#[tokio::test]
async fn idle_sessions_without_delete_are_reaped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let limits = HttpLimits {
        session_idle_timeout: Duration::from_millis(200),
        ..HttpLimits::default()
    };
    let server = start(tmp.path(), limits).await;
    let url = format!("http://{}/mcp", server.local_addr);
    let http = reqwest::Client::new();
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(open_session(&http, &url).await.expect("session"));
    }
    assert!(
        server
            .stats
            .sessions
            .as_ref()
            .expect("stats")
            .session_count()
            >= 1
    );
    // No DELETE: the idle timeout alone must free every session and its map entry.
    wait_sessions(&server, 0).await;
    // The id is sealed: the server rebuilds the session from it instead of forgetting it.
    let resumed = list_tools(&http, &url, &sessions[0]).await;
    assert_eq!(
        resumed.status(),
        200,
        "a reaped session resumes from its id"
    );
    assert!(
        resumed
            .text()
            .await
            .expect("body")
            .contains("read_text_file")
    );
    wait_sessions(&server, 1).await;
    // DELETE ends it for good: the same id is then unknown.
    let deleted = http
        .delete(&url)
        .header("mcp-session-id", &sessions[0])
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .expect("DELETE");
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let gone = list_tools(&http, &url, &sessions[0]).await;
    assert_eq!(gone.status(), 404, "an ended session is unknown");
    server.shutdown().await.expect("stop");
}

async fn list_tools(http: &reqwest::Client, url: &str, session: &str) -> reqwest::Response {
    post(
        http,
        url,
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .header("mcp-session-id", session)
    .header("mcp-protocol-version", "2025-11-25")
    .send()
    .await
    .expect("POST")
}

/// The answer is the fs server's tool list.
async fn assert_lists_tools(answer: reqwest::Response) {
    assert_eq!(answer.status(), 200);
    let body = answer.text().await.expect("body");
    assert!(body.contains("read_text_file"), "{body}");
}

fn sealer(keys: &[&str]) -> Arc<SessionSealer> {
    Arc::new(SessionSealer::new(
        SessionKeys::from_base64(keys).expect("keys"),
        Duration::from_secs(3600),
    ))
}

#[tokio::test]
async fn a_session_continues_on_any_server_holding_its_key() {
    // 32 bytes each, base64.
    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    const KEY_B: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8";
    let tmp = tempfile::tempdir().expect("tempdir");
    let with = |sealer| HttpLimits {
        session_sealer: Some(sealer),
        ..HttpLimits::default()
    };
    let first = start(tmp.path(), with(sealer(&[KEY_A]))).await;
    let second = start(tmp.path(), with(sealer(&[KEY_A]))).await;
    // Rotation: a server that seals with a new key still opens the old one's ids.
    let rotated = start(tmp.path(), with(sealer(&[KEY_B, KEY_A]))).await;
    let stranger = start(tmp.path(), with(sealer(&[KEY_B]))).await;
    let url = |s: &HttpServer| format!("http://{}/mcp", s.local_addr);
    let http = reqwest::Client::new();

    let session = open_session(&http, &url(&first)).await.expect("session");
    assert!(
        session.len() > 40,
        "a sealed token, not a bare uuid: {session}"
    );
    for server in [&second, &rotated, &first, &second] {
        assert_lists_tools(list_tools(&http, &url(server), &session).await).await;
    }
    wait_sessions(&second, 1).await;
    wait_sessions(&rotated, 1).await;
    let refused = list_tools(&http, &url(&stranger), &session).await;
    assert_eq!(
        refused.status(),
        404,
        "a server without the key cannot open it"
    );
    let forged = list_tools(&http, &url(&second), &format!("{session}A")).await;
    assert_eq!(forged.status(), 404);
    for server in [first, second, rotated, stranger] {
        server.shutdown().await.expect("stop");
    }
}

async fn sse_events(response: reqwest::Response) -> Vec<SseEvent> {
    let mut body = response.bytes_stream();
    let mut parser = SseParser::new(1 << 20);
    let mut events = Vec::new();
    while let Some(chunk) = body.next().await {
        parser
            .feed(&chunk.expect("chunk"), &mut events)
            .expect("parse");
    }
    events
}

#[tokio::test]
async fn last_event_id_replays_from_the_event_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let limits = HttpLimits {
        event_store_capacity: 64,
        ..HttpLimits::default()
    };
    let server = start(tmp.path(), limits).await;
    let url = format!("http://{}/mcp", server.local_addr);
    let http = reqwest::Client::new();
    let session = open_session(&http, &url).await.expect("session");
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"});
    let response = post(&http, &url, &call)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .header("accept", "text/event-stream, application/json")
        .send()
        .await
        .expect("POST");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let events = sse_events(response).await;
    let ids: Vec<&str> = events.iter().filter_map(|e| e.id.as_deref()).collect();
    assert!(
        events.len() >= 2,
        "priming event and the response: {events:?}"
    );
    let response_event = events
        .iter()
        .find(|e| e.data.contains("\"id\":7"))
        .expect("the tools/list response");
    // Pretend the client saw only the first (priming) event, then reconnect.
    let resumed = http
        .get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .header("last-event-id", ids[0])
        .send()
        .await
        .expect("GET");
    assert_eq!(resumed.status(), 200);
    let replayed = sse_events(resumed).await;
    let replayed: Vec<&SseEvent> = replayed.iter().filter(|e| !e.data.is_empty()).collect();
    assert_eq!(replayed.len(), 1, "{replayed:?}");
    assert_eq!(replayed[0].data, response_event.data);
    assert_eq!(replayed[0].id, response_event.id);
    // Another session's event ids are unguessable; a forged one replays nothing.
    let forged = http
        .get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .header("last-event-id", "00000000000000000000000000000000-0")
        .send()
        .await
        .expect("GET");
    assert!(sse_events(forged).await.iter().all(|e| e.data.is_empty()));
    assert!(server.stats.event_store.as_ref().expect("store").len() <= 64);
    server.shutdown().await.expect("stop");
}

/// A connection that never finishes its request must not hold up a stop past the grace period:
/// the server ends, and the half-sent request's connection is dropped.
#[tokio::test]
async fn a_stuck_connection_does_not_hold_up_the_stop() {
    use tokio::io::AsyncWriteExt;

    let tmp = tempfile::tempdir().expect("tempdir");
    let limits = HttpLimits {
        shutdown_grace: Duration::from_millis(200),
        ..HttpLimits::default()
    };
    let server = start(tmp.path(), limits).await;
    let mut stuck = tokio::net::TcpStream::connect(server.local_addr)
        .await
        .expect("connect");
    // Headers promise a body that never comes: graceful shutdown alone would wait for it.
    stuck
        .write_all(
            b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
              accept: application/json, text/event-stream\r\ncontent-length: 1000\r\n\r\n{\"jsonrpc\"",
        )
        .await
        .expect("write");
    stuck.flush().await.expect("flush");
    server.cancellation_token().cancel();
    // The deadline only detects a hang; the stop itself takes the 200 ms grace.
    tokio::time::timeout(Duration::from_secs(60), server.wait())
        .await
        .expect("the server stopped after the grace period")
        .expect("clean stop");
}
