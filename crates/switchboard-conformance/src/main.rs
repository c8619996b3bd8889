//! `switchboard-conformance`: the fixture server the official MCP conformance suite
//! (`@modelcontextprotocol/conformance`, server mode) tests, served over Switchboard's own
//! Streamable HTTP transport (`switchboard_transport::serve_http`), both protocol eras on `/mcp`.
//!
//! It prints `listening on http://ADDR/mcp` on stderr once bound, like `switchboard server`.
//! With `--stdio` it serves one client over stdin/stdout instead: the suite has no stdio
//! harness, but the gateway can reach the fixture as a stdio upstream and be tested in front
//! of it (`interop/conformance/run-gateway.sh`).

// The fixture deliberately exercises features the 2026-07-28 revision deprecates (logging,
// sampling, roots, resources/subscribe) because the 2025-11-25 scenarios still test them.
#![allow(deprecated)]

mod fixtures;
mod mrtr;
mod server;
mod tools;

use std::net::SocketAddr;

use clap::Parser;
use switchboard_transport::{HttpLimits, HttpRoutes};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "MCP conformance fixture server (Streamable HTTP at /mcp)"
)]
struct Args {
    /// Address to listen on. Without it, 127.0.0.1:$PORT, or 127.0.0.1:0 (any free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Port on 127.0.0.1 when --listen is not given.
    #[arg(long, env = "PORT")]
    port: Option<u16>,
    /// Serve one client over stdin/stdout (both eras) instead of HTTP.
    #[arg(long, conflicts_with_all = ["listen", "port"])]
    stdio: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    if args.stdio {
        switchboard_transport::serve_stdio(server::ConformanceServer::new()).await?;
        return Ok(());
    }
    let addr = args
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], args.port.unwrap_or(0))));

    let limits = HttpLimits {
        // The suite sends `Origin: http://<host>:<port>` with the loopback name it was given,
        // and must see a foreign Origin rejected (DNS-rebinding protection).
        allowed_origins: ["localhost", "127.0.0.1", "[::1]"]
            .iter()
            .map(|host| format!("http://{host}:*"))
            .collect(),
        ..HttpLimits::default()
    };
    let fixture = server::ConformanceServer::new();
    let http = switchboard_transport::serve_http(
        move || Ok(fixture.clone()),
        addr,
        HttpRoutes::Streamable,
        &limits,
    )
    .await?;
    eprintln!("listening on http://{}/mcp", http.local_addr);

    let stop = http.cancellation_token();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        stop.cancel();
    });
    http.wait().await?;
    Ok(())
}
