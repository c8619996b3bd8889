//! Helpers shared by this crate's HTTP tests.

use std::time::Duration;

use switchboard_transport::HttpServer;

/// Waits (on the session-count watch, never by sleeping) until `server` holds `n` sessions.
pub async fn wait_sessions(server: &HttpServer, n: usize) {
    let mut watch = server
        .stats
        .sessions
        .as_ref()
        .expect("/mcp served")
        .watch_count();
    tokio::time::timeout(Duration::from_secs(30), watch.wait_for(|c| *c == n))
        .await
        .expect("session count never reached the expected value")
        .expect("server gone");
}
