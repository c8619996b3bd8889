//! `switchboard bench --wire`: clients that check every answer without building it.
//!
//! The rmcp client turns each answer into typed values (every cell of a 1,000-row result
//! becomes its own allocation, after serde has buffered the message to pick a variant of
//! the JSON-RPC enum), and on a large answer that costs more than the server's own work:
//! it would measure the client. These clients still read every byte as JSON (so a malformed
//! answer fails the run) and check the answer's `id`, `error` and `isError`, but skip the
//! content instead of materialising it. Both servers of a comparison get the same client.
//!
//! - [`WireClient`]: a server command over stdio.
//! - [`WireHttpClient`]: a Streamable HTTP endpoint (`--url`), over plain HTTP/1.1
//!   connections (hyper, one per call in flight). Through rmcp's client, reqwest and rmcp's
//!   session tasks, a call cost the client ~60 µs of CPU, as much as the gateway it measured;
//!   on 2 cores that slows every case and hides the gateways' own differences. The
//!   protocol is spoken by the letter: `initialize` then calls on the `Mcp-Session-Id`
//!   (session era), or self-contained 2026-07-28 requests (stateless), answers as JSON or SSE.

use std::{
    collections::HashMap,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    HeaderMap, Method, Request, Uri,
    body::Bytes,
    header::{self, HeaderName, HeaderValue},
    http::response::Parts,
};
use serde::Deserialize;
use switchboard_transport::sse::SseParser;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, ChildStdout, Command},
    sync::oneshot,
};

/// The protocol version offered in `initialize`; servers answer with one they support.
const PROTOCOL_VERSION: &str = "2025-11-25";

/// What the client reads of an answer: everything else is parsed and skipped.
#[derive(Deserialize)]
struct Answer {
    id: Option<u64>,
    result: Option<AnswerResult>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct AnswerResult {
    #[serde(rename = "isError")]
    is_error: Option<bool>,
    /// Set in an `initialize` result.
    #[serde(rename = "protocolVersion")]
    protocol_version: Option<String>,
}

/// The `initialize` request both clients send, with id 0.
fn initialize_request() -> serde_json::Value {
    serde_json::json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "switchboard-bench", "version": env!("CARGO_PKG_VERSION")}
        }
    })
}

/// The JSON-RPC `tools/call` request `id` with `params` (serialized), as both clients send it.
fn tools_call(id: u64, params: &str) -> String {
    format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\",\"params\":{params}}}")
}

/// A response's id and whether the call succeeded (`Err`: the error, as shown to the user).
type Judged = (u64, Result<(), String>);

/// What an answer line says: `Ok(None)` for a notification or a request from the server
/// (a benchmark answers neither), `Ok(Some((id, outcome)))` for a response, `Err` when it
/// is not JSON-RPC.
fn judge(message: &[u8]) -> Result<Option<Judged>, String> {
    serde_json::from_slice::<Answer>(message)
        .map(judge_answer)
        .map_err(|e| format!("protocol error: unparsable answer: {e}"))
}

/// [`judge`] of a parsed answer.
fn judge_answer(answer: Answer) -> Option<Judged> {
    match answer {
        Answer {
            id: Some(id),
            error: Some(error),
            ..
        } => Some((id, Err(format!("protocol error: {error}")))),
        Answer {
            id: Some(id),
            result: Some(result),
            ..
        } => Some((
            id,
            if result.is_error == Some(true) {
                Err("tool error (isError)".to_string())
            } else {
                Ok(())
            },
        )),
        _ => None,
    }
}

/// The calls waiting for their answers; `None` once the reader has stopped, so a late call
/// fails instead of waiting forever.
type Waiters = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Result<(), String>>>>>>;

/// One server process and the calls in flight on it.
pub(super) struct WireClient {
    stdin: tokio::sync::Mutex<ChildStdin>,
    waiters: Waiters,
    next_id: AtomicU64,
    child: Child,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for WireClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Reads one line into `line` (cleared first); false at end of output.
async fn read_line(out: &mut BufReader<ChildStdout>, line: &mut Vec<u8>) -> anyhow::Result<bool> {
    line.clear();
    let n = out
        .read_until(b'\n', line)
        .await
        .context("reading the server's output")?;
    Ok(n > 0)
}

impl WireClient {
    /// Starts `command` and completes the `initialize` handshake.
    pub(super) async fn connect(command: &[String]) -> anyhow::Result<WireClient> {
        let (program, rest) = command
            .split_first()
            .context("give the server command after --")?;
        let mut child = Command::new(program)
            .args(rest)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("could not start the server")?;
        let mut stdin = child.stdin.take().context("no stdin")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut out = BufReader::with_capacity(1 << 16, stdout);
        let initialize = initialize_request();
        let mut frame = serde_json::to_vec(&initialize)?;
        frame.push(b'\n');
        stdin.write_all(&frame).await?;
        stdin.flush().await?;
        let mut line = Vec::new();
        loop {
            if !read_line(&mut out, &mut line).await? {
                bail!("the server exited before answering initialize");
            }
            // Skip whatever the server sends before its answer (log notifications).
            let Ok(answer) = serde_json::from_slice::<Answer>(&line) else {
                continue;
            };
            match answer {
                Answer {
                    id: Some(0),
                    error: Some(error),
                    ..
                } => {
                    bail!("initialize failed: {error}")
                }
                Answer { id: Some(0), .. } => break,
                _ => continue,
            }
        }
        stdin
            .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
            .await?;
        stdin.flush().await?;

        let waiters: Waiters = Arc::new(Mutex::new(Some(HashMap::new())));
        let reader = tokio::spawn(read_answers(out, waiters.clone()));
        Ok(WireClient {
            stdin: tokio::sync::Mutex::new(stdin),
            waiters,
            next_id: AtomicU64::new(1),
            child,
            reader,
        })
    }

    /// The server process's id.
    pub(super) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends `tools/call` with `params` (the serialized `{"name":…,"arguments":…}`) and waits
    /// for its answer.
    pub(super) async fn call(&self, params: &str) -> Result<(), String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        match self.waiters.lock().as_deref_mut() {
            Ok(Some(waiters)) => waiters.insert(id, tx),
            _ => return Err("protocol error: the server closed its output".into()),
        };
        let mut frame = tools_call(id, params);
        frame.push('\n');
        {
            let mut stdin = self.stdin.lock().await;
            if let Err(e) = stdin.write_all(frame.as_bytes()).await {
                return Err(format!("protocol error: writing the call: {e}"));
            }
            if let Err(e) = stdin.flush().await {
                return Err(format!("protocol error: writing the call: {e}"));
            }
        }
        rx.await
            .unwrap_or_else(|_| Err("protocol error: the server closed its output".into()))
    }
}

/// Matches each answer line to its waiting call.
async fn read_answers(mut out: BufReader<ChildStdout>, waiters: Waiters) {
    let mut line = Vec::with_capacity(1 << 16);
    loop {
        match read_line(&mut out, &mut line).await {
            Ok(true) => {}
            _ => break,
        }
        let outcome = match judge(&line) {
            Ok(Some(outcome)) => outcome,
            Ok(None) => continue,
            Err(message) => {
                if let Ok(Some(pending)) = waiters.lock().as_deref_mut() {
                    for (_, waiter) in pending.drain() {
                        let _ = waiter.send(Err(message.clone()));
                    }
                }
                break;
            }
        };
        let waiter = match waiters.lock().as_deref_mut() {
            Ok(Some(pending)) => pending.remove(&outcome.0),
            _ => None,
        };
        if let Some(waiter) = waiter {
            let _ = waiter.send(outcome.1);
        }
    }
    // Dropping the senders fails every call still waiting.
    if let Ok(mut waiters) = waiters.lock() {
        waiters.take();
    }
}

/// The protocol revision of stateless (`--era discover`) calls.
const STATELESS_VERSION: &str = "2026-07-28";
/// The largest answer (or SSE event) the HTTP client reads.
const MAX_HTTP_ANSWER: usize = 64 << 20;

/// How [`WireHttpClient`] speaks to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HttpEra {
    /// `initialize`, then every call on the `Mcp-Session-Id` (2025-11-25 and older).
    Session,
    /// Every call a self-contained 2026-07-28 request; no handshake.
    Stateless,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One MCP session (or, stateless, one client) on a Streamable HTTP endpoint, with a
/// connection per call in flight (HTTP/1.1 carries one request at a time).
pub(super) struct WireHttpClient {
    /// `host:port` to connect to.
    addr: String,
    /// The request target (origin form: path and query).
    target: Uri,
    era: HttpEra,
    /// What every request carries: content type, accept, the caller's headers, then the
    /// session id and protocol version once negotiated.
    headers: HeaderMap,
    /// Connections not in use.
    idle: Mutex<Vec<Sender>>,
    next_id: AtomicU64,
}

impl WireHttpClient {
    /// Opens the session (`initialize` and `notifications/initialized`), or for the stateless
    /// era only prepares the headers of `tools/call` of `tool`.
    pub(super) async fn connect(
        url: &str,
        extra_headers: &[(String, String)],
        era: HttpEra,
        tool: &str,
    ) -> anyhow::Result<WireHttpClient> {
        let uri: Uri = url.parse().with_context(|| format!("{url} is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            bail!("the wire client speaks plain http:// only; {url} is not");
        }
        let authority = uri.authority().context("the URL has no host")?;
        let addr = match authority.port_u16() {
            Some(_) => authority.as_str().to_owned(),
            None => format!("{}:80", authority.as_str()),
        };
        let target: Uri = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .context("the URL's path")?;
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(authority.as_str())?);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        for (name, value) in extra_headers {
            headers.append(
                HeaderName::from_bytes(name.as_bytes())
                    .with_context(|| format!("header name {name:?}"))?,
                HeaderValue::from_str(value).with_context(|| format!("header {name}'s value"))?,
            );
        }
        let mut client = WireHttpClient {
            addr,
            target,
            era,
            headers,
            idle: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
        };
        match era {
            HttpEra::Session => client.initialize().await?,
            HttpEra::Stateless => {
                let headers = &mut client.headers;
                headers.insert(
                    "mcp-protocol-version",
                    HeaderValue::from_static(STATELESS_VERSION),
                );
                headers.insert("mcp-method", HeaderValue::from_static("tools/call"));
                headers.insert(
                    "mcp-name",
                    HeaderValue::from_str(tool).context("the tool name as a header")?,
                );
            }
        }
        Ok(client)
    }

    async fn initialize(&mut self) -> anyhow::Result<()> {
        let initialize = initialize_request();
        let (parts, body) = self
            .post(initialize.to_string())
            .await
            .map_err(|e| anyhow::anyhow!("initialize: {e}"))?;
        let answer =
            answer_for(&parts, &body, 0).map_err(|e| anyhow::anyhow!("initialize: {e}"))?;
        if let Some(error) = answer.error {
            bail!("initialize failed: {error}");
        }
        let version = answer
            .result
            .and_then(|r| r.protocol_version)
            .context("initialize: the result has no protocolVersion")?;
        if let Some(session) = parts.headers.get("mcp-session-id") {
            self.headers.insert("mcp-session-id", session.clone());
        }
        self.headers.insert(
            "mcp-protocol-version",
            HeaderValue::from_str(&version).context("initialize: the protocolVersion")?,
        );
        self.post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned())
            .await
            .map_err(|e| anyhow::anyhow!("notifications/initialized: {e}"))?;
        Ok(())
    }

    /// Sends `tools/call` with `params` (the serialized `{"name":…,"arguments":…}`) and checks
    /// its answer.
    pub(super) async fn call(&self, params: &str) -> Result<(), String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = match (self.era, params.strip_prefix('{')) {
            // A stateless request says its revision and capabilities in `_meta`.
            (HttpEra::Stateless, Some(rest)) => tools_call(
                id,
                &format!(
                    "{{\"_meta\":{{\"io.modelcontextprotocol/protocolVersion\":\"{STATELESS_VERSION}\",\"io.modelcontextprotocol/clientCapabilities\":{{}}}},{rest}"
                ),
            ),
            _ => tools_call(id, params),
        };
        let (parts, answer) = self.post(body).await?;
        match judge_answer(answer_for(&parts, &answer, id)?) {
            Some((_, outcome)) => outcome,
            None => Err(format!(
                "protocol error: the answer to {id} has neither result nor error"
            )),
        }
    }

    /// Ends the session (`DELETE`), if there is one; a server may refuse, which is fine.
    pub(super) async fn close(&self) {
        if !self.headers.contains_key("mcp-session-id") {
            return;
        }
        let _ = self.send(Method::DELETE, Full::default()).await;
    }

    /// POSTs `body`; the answer's head and whole body when the status is a success.
    async fn post(&self, body: String) -> Result<(Parts, Bytes), String> {
        self.send(Method::POST, Full::new(Bytes::from(body))).await
    }

    async fn send(&self, method: Method, body: Full<Bytes>) -> Result<(Parts, Bytes), String> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut sender = match idle {
            Some(sender) => sender,
            None => self.open().await?,
        };
        if sender.ready().await.is_err() {
            // The server closed an idle connection: open another.
            sender = self.open().await?;
        }
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = self.target.clone();
        *request.headers_mut() = self.headers.clone();
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("protocol error: HTTP: {e}"))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_HTTP_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("protocol error: reading the answer: {e}"))?
            .to_bytes();
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(sender);
        }
        if !parts.status.is_success() {
            let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return Err(format!("protocol error: HTTP {}: {shown}", parts.status));
        }
        Ok((parts, body))
    }

    async fn open(&self) -> Result<Sender, String> {
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|e| format!("protocol error: connecting to {}: {e}", self.addr))?;
        // One request, one answer: nothing to gain from Nagle's delay.
        let _ = stream.set_nodelay(true);
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("protocol error: HTTP handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// The JSON-RPC answer to `id` in an HTTP answer: the body itself (`application/json`), or
/// the event that carries it (`text/event-stream`; other events are notifications or
/// requests, which a benchmark does not answer).
fn answer_for(parts: &Parts, body: &[u8], id: u64) -> Result<Answer, String> {
    let is_sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let parse = |json: &[u8]| {
        serde_json::from_slice::<Answer>(json)
            .map_err(|e| format!("protocol error: unparsable answer: {e}"))
    };
    if !is_sse {
        let answer = parse(body)?;
        return match answer.id {
            Some(got) if got == id => Ok(answer),
            got => Err(format!(
                "protocol error: the answer is for {got:?}, not {id}"
            )),
        };
    }
    let mut events = Vec::new();
    SseParser::new(MAX_HTTP_ANSWER)
        .feed(body, &mut events)
        .map_err(|e| format!("protocol error: {e}"))?;
    for event in events {
        if event.data.is_empty() {
            continue; // a priming event
        }
        let answer = parse(event.data.as_bytes())?;
        if answer.id == Some(id) && (answer.result.is_some() || answer.error.is_some()) {
            return Ok(answer);
        }
    }
    Err(format!(
        "protocol error: the answer stream ended without the answer to {id}"
    ))
}
