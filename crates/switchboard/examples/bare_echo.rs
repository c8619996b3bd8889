//! The "limit" of `bench/peers.sh`: a bare hyper HTTP/1.1 server that answers MCP's
//! Streamable HTTP JSON-RPC POSTs with fixed JSON, and nothing more. No MCP library, no
//! session state, no routing, no validation beyond parsing the body: what an HTTP JSON echo
//! costs on this machine, so a gateway's throughput can be put against it.
//!
//! It answers just enough for a session-era client (`switchboard bench --url`): `initialize`
//! gets a fixed result and an `Mcp-Session-Id`, notifications get 202, `tools/list` lists one
//! `echo` tool, `tools/call` returns the `message` argument as text, `server/discover` is
//! "method not found" (so era auto-detection falls back to `initialize`), any other request
//! gets an empty result. GET (the optional server stream) gets 405, DELETE 204.
//!
//! Usage: `cargo run --release -p switchboard --example bare_echo [ADDR]` (default
//! 127.0.0.1:0); prints `listening on http://ADDR/mcp` on stderr like `switchboard serve`.

use std::{convert::Infallible, net::SocketAddr};

use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{CONTENT_TYPE, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

const SESSION: &str = "bare-echo";

fn reply(status: StatusCode, body: Option<Value>, session: bool) -> Response<Full<Bytes>> {
    let bytes = body.map(|v| Bytes::from(v.to_string())).unwrap_or_default();
    let mut response = Response::new(Full::new(bytes));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if session {
        headers.insert("mcp-session-id", HeaderValue::from_static(SESSION));
    }
    response
}

fn answer(message: &Value) -> Option<Value> {
    let id = message.get("id")?.clone();
    let method = message.get("method").and_then(Value::as_str).unwrap_or("");
    let params = message.get("params");
    let result = match method {
        "initialize" => json!({
            "protocolVersion": params
                .and_then(|p| p.get("protocolVersion"))
                .cloned()
                .unwrap_or_else(|| json!("2025-11-25")),
            "capabilities": { "tools": {} },
            "serverInfo": { "name": "bare-echo", "version": "0" },
        }),
        "tools/list" => json!({ "tools": [{
            "name": "echo",
            "description": "Return the message unchanged.",
            "inputSchema": {
                "type": "object",
                "properties": { "message": { "type": "string" } },
                "required": ["message"],
            },
        }]}),
        "tools/call" => {
            let text = params
                .and_then(|p| p.get("arguments"))
                .and_then(|a| a.get("message"))
                .cloned()
                .unwrap_or_else(|| json!(""));
            json!({ "content": [{ "type": "text", "text": text }], "isError": false })
        }
        "server/discover" => {
            return Some(json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": { "code": -32601, "message": "Method not found" },
            }));
        }
        _ => json!({}),
    };
    Some(json!({ "jsonrpc": "2.0", "id": id, "result": result }))
}

async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    match *request.method() {
        Method::POST => {}
        Method::DELETE => return Ok(reply(StatusCode::NO_CONTENT, None, false)),
        _ => return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, None, false)),
    }
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, None, false)),
    };
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        let error = json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": { "code": -32700, "message": "Parse error" },
        });
        return Ok(reply(StatusCode::BAD_REQUEST, Some(error), false));
    };
    let initialize = message.get("method").and_then(Value::as_str) == Some("initialize");
    Ok(match answer(&message) {
        Some(response) => reply(StatusCode::OK, Some(response), initialize),
        // A notification or a response: accepted, no body.
        None => reply(StatusCode::ACCEPTED, None, false),
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(raw) => raw
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("listening on http://{}/mcp", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}
