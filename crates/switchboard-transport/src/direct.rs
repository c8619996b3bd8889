//! Session-era `tools/call` answered in the connection's own task.
//!
//! rmcp serves every request of a session-era (2025-11-25 and older) Streamable HTTP session
//! through the session's worker task and its serve loop: the request crosses a channel to the
//! worker, another to the serve loop, which spawns a task for the handler, and the answer
//! comes back the same way to an SSE stream. That is four task hand-offs and an event-stream
//! body for what is nearly always one call and one answer, and on a gateway in front of a fast
//! upstream it was most of the time a call spent in the gateway.
//!
//! [`DirectSessions`] answers the common case itself: a `tools/call` on a session whose client
//! declared no capability the server could ask it for something with (roots, sampling,
//! elicitation, tasks). It calls the session's own handler, with the session's own peer and a
//! request context built as rmcp's serve loop builds it, in the task of the HTTP connection,
//! and sends the answer as one `application/json` body, which the transport allows for any
//! request. A call with a progress token gets a [`DirectCallProgress`] in its context: if the
//! handler reports progress before it answers, the answer becomes an event stream (the
//! progress, then the answer), as rmcp's would be; the session's peer would send that
//! progress to the session's standalone stream instead. Everything else (other methods, a
//! session whose handler has not registered, requests of the 2026-07-28 era) goes to rmcp
//! unchanged.
//!
//! Invariants:
//! - A session is served directly only by the handler instance rmcp made for it (the server
//!   registers a view of itself that shares its per-session state), so per-session state
//!   (log level, per-client children, identity) is the same on both paths.
//! - A direct call marks its session busy (it is not moved out of memory while the call runs)
//!   and used, and resets the rmcp worker's idle clock at most once per quarter of the idle
//!   timeout, so a session used only directly is not reaped as idle.
//! - An entry is forgotten when its session closes ([`crate::CappedSessionManager`] calls
//!   [`DirectSessions::forget`]), so no session outlives its close here.
//! - A `notifications/cancelled` naming a direct call in flight cancels it (the handler's
//!   context token), as rmcp's serve loop would.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures::future::BoxFuture;
use rmcp::{
    ServerHandler, Service,
    model::{
        CallToolRequest, ClientJsonRpcMessage, ClientNotification, ClientRequest, Extensions,
        GetExtensions, GetMeta, JsonRpcNotification, JsonRpcRequest, ProgressNotification,
        ProgressNotificationParam, ProtocolVersion, RequestId, RequestMetaObject,
        ServerJsonRpcMessage, ServerNotification,
    },
    service::{Peer, RequestContext, RoleServer},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{MCP_PATH, session::CappedSessionManager};

/// The session header, as rmcp names it (after [`crate::sealed`] has opened the token).
const SESSION_HEADER: &str = "mcp-session-id";
const PROTOCOL_VERSION_HEADER: &str = "mcp-protocol-version";

/// The sessions whose `tools/call` requests are answered directly, each with the handler
/// that serves it. Shared by the server (which registers its sessions), the `/mcp` route
/// (which serves them) and the session manager (which forgets closed ones).
pub struct DirectSessions {
    sessions: RwLock<HashMap<Arc<str>, Arc<dyn DirectSession>>>,
    /// The origin of the entries' keep-alive clocks.
    started: Instant,
    /// Calls answered directly since start.
    served: AtomicU64,
}

impl fmt::Debug for DirectSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectSessions")
            .field("sessions", &self.len())
            .finish()
    }
}

impl Default for DirectSessions {
    fn default() -> Self {
        Self::new()
    }
}

impl DirectSessions {
    pub fn new() -> Self {
        Self {
            sessions: RwLock::default(),
            started: Instant::now(),
            served: AtomicU64::new(0),
        }
    }

    /// `tools/call` requests answered directly since start.
    pub fn served_count(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Sessions registered now.
    pub fn len(&self) -> usize {
        self.sessions.read().map(|map| map.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers the session that `extensions` belongs to, served by the handler `view`
    /// makes (called only when the session is not yet registered). A request or notification
    /// that did not come over a Streamable HTTP session (stdio, a stateless request, a
    /// session rebuilt without its HTTP request), or a client that declared a capability the
    /// server could use during a call (roots, sampling, elicitation, tasks: those requests
    /// must ride the call's own stream, which only rmcp's serve loop knows), registers
    /// nothing: such sessions keep rmcp's path. A registered handler must send a call's
    /// progress through the [`DirectCallProgress`] in its context's extensions when there is
    /// one.
    pub fn register<H: ServerHandler>(
        &self,
        extensions: &Extensions,
        peer: &Peer<RoleServer>,
        view: impl FnOnce() -> H,
    ) {
        let Some(sid) = session_of(extensions) else {
            return;
        };
        if self.get(sid).is_some() || !may_serve_directly(peer) {
            return;
        }
        let entry: Arc<dyn DirectSession> = Arc::new(Entry {
            handler: view(),
            peer: peer.clone(),
            in_flight: Mutex::default(),
            pinged_at_ms: AtomicU64::new(self.now_ms()),
        });
        if let Ok(mut map) = self.sessions.write() {
            map.entry(Arc::from(sid)).or_insert(entry);
        }
    }

    /// Forgets a closed session: its next request goes to rmcp (which rebuilds it from its
    /// sealed id), and its handler view is dropped.
    pub fn forget(&self, sid: &str) {
        let removed = self
            .sessions
            .write()
            .ok()
            .and_then(|mut map| map.remove(sid));
        drop(removed);
    }

    /// The registered session `sid`, with its id as the map holds it (rmcp's `Arc<str>`, so
    /// a request needs no copy of its own).
    fn get(&self, sid: &str) -> Option<(Arc<str>, Arc<dyn DirectSession>)> {
        let sessions = self.sessions.read().ok()?;
        let (id, entry) = sessions.get_key_value(sid)?;
        Some((id.clone(), entry.clone()))
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// The rmcp session id a request or notification arrived on (the header, as rmcp sees it).
fn session_of(extensions: &Extensions) -> Option<&str> {
    extensions
        .get::<axum::http::request::Parts>()?
        .headers
        .get(SESSION_HEADER)?
        .to_str()
        .ok()
}

/// In the context of a call answered directly (its extensions), when the client asked for
/// progress: where the handler sends the call's progress, so it rides the call's own answer.
/// Dropped with the context, which ends the call's progress.
#[derive(Clone)]
pub struct DirectCallProgress(mpsc::Sender<ServerJsonRpcMessage>);

impl DirectCallProgress {
    /// Sends one progress notification on the call's answer; false if the answer has gone
    /// (the client disconnected).
    pub async fn notify(&self, params: ProgressNotificationParam) -> bool {
        let notification =
            ServerNotification::ProgressNotification(ProgressNotification::new(params));
        self.0
            .send(ServerJsonRpcMessage::notification(notification))
            .await
            .is_ok()
    }
}

/// Progress notifications queued on one direct call's answer before the handler waits.
const PROGRESS_QUEUE: usize = 64;

/// Whether the client declared nothing the server could ask of it during a call.
fn may_serve_directly(peer: &Peer<RoleServer>) -> bool {
    let Some(info) = peer.peer_info() else {
        return false;
    };
    let caps = &info.capabilities;
    caps.roots.is_none()
        && caps.sampling.is_none()
        && caps.elicitation.is_none()
        && !caps.supports_tasks()
}

/// One registered session, type-erased so [`DirectSessions`] holds any server's.
trait DirectSession: Send + Sync {
    fn call(
        self: Arc<Self>,
        id: RequestId,
        request: CallToolRequest,
        parts: axum::http::request::Parts,
        progress: Option<DirectCallProgress>,
    ) -> BoxFuture<'static, ServerJsonRpcMessage>;

    /// Cancels the direct call `id` if it is in flight; whether it was.
    fn cancel(&self, id: &RequestId) -> bool;

    /// Stamps the keep-alive clock if it is older than `every`; whether it was.
    fn due_for_keep_alive(&self, now_ms: u64, every: Duration) -> bool;
}

struct Entry<H> {
    handler: H,
    peer: Peer<RoleServer>,
    /// The direct calls under way, for `notifications/cancelled`.
    in_flight: Mutex<HashMap<RequestId, CancellationToken>>,
    /// When the rmcp worker's idle clock was last reset (ms since [`DirectSessions`] began).
    pinged_at_ms: AtomicU64,
}

impl<H: ServerHandler> DirectSession for Entry<H> {
    fn call(
        self: Arc<Self>,
        id: RequestId,
        request: CallToolRequest,
        parts: axum::http::request::Parts,
        progress: Option<DirectCallProgress>,
    ) -> BoxFuture<'static, ServerJsonRpcMessage> {
        Box::pin(async move {
            let ct = CancellationToken::new();
            let _in_flight = InFlight::begin(&self.in_flight, &id, &ct);
            // As rmcp's serve loop does: the request's `_meta` and extensions move into the
            // context, and the HTTP request's parts join the extensions.
            let mut request = ClientRequest::CallToolRequest(request);
            let meta = std::mem::take(request.get_meta_mut());
            let mut extensions = std::mem::take(request.extensions_mut());
            extensions.insert(parts);
            if let Some(progress) = progress {
                extensions.insert(progress);
            }
            let mut context = RequestContext::new(id.clone(), self.peer.clone());
            context.ct = ct;
            context.meta = meta;
            context.extensions = extensions;
            match Service::handle_request(&self.handler, request, context).await {
                Ok(result) => ServerJsonRpcMessage::response(result, id),
                Err(error) => ServerJsonRpcMessage::error(error, Some(id)),
            }
        })
    }

    fn cancel(&self, id: &RequestId) -> bool {
        let token = self
            .in_flight
            .lock()
            .ok()
            .and_then(|calls| calls.get(id).cloned());
        token.map(|token| token.cancel()).is_some()
    }

    fn due_for_keep_alive(&self, now_ms: u64, every: Duration) -> bool {
        let last = self.pinged_at_ms.load(Ordering::Relaxed);
        let every_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
        now_ms.saturating_sub(last) >= every_ms
            && self
                .pinged_at_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// A direct call's entry in its session's in-flight table, removed when the call ends or is
/// dropped (the client went away).
struct InFlight<'a> {
    calls: &'a Mutex<HashMap<RequestId, CancellationToken>>,
    id: RequestId,
}

impl<'a> InFlight<'a> {
    fn begin(
        calls: &'a Mutex<HashMap<RequestId, CancellationToken>>,
        id: &RequestId,
        ct: &CancellationToken,
    ) -> Self {
        if let Ok(mut calls) = calls.lock() {
            calls.insert(id.clone(), ct.clone());
        }
        Self {
            calls,
            id: id.clone(),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.remove(&self.id);
        }
    }
}

/// What the `/mcp` middleware needs: the registered sessions, the session manager (busy and
/// used marks, the worker's idle clock) and the listener's limits.
#[derive(Clone)]
pub(crate) struct DirectRoute {
    pub(crate) direct: Arc<DirectSessions>,
    pub(crate) sessions: Arc<CappedSessionManager>,
    pub(crate) max_body_bytes: usize,
    /// The session idle timeout: a directly served session's worker is told it is in use
    /// every quarter of it.
    pub(crate) idle_timeout: Duration,
}

/// The `/mcp` middleware (inside [`crate::sealed::seal_session_ids`], so the session header
/// is rmcp's id): serves a registered session's plain `tools/call` directly and hands every
/// other request to rmcp unchanged.
pub(crate) async fn direct_tool_calls(
    State(route): State<DirectRoute>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != axum::http::Method::POST || request.uri().path() != MCP_PATH {
        return next.run(request).await;
    }
    let entry = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|sid| route.direct.get(sid));
    let Some((sid, entry)) = entry else {
        return next.run(request).await;
    };
    if !plain_session_post(request.headers(), route.max_body_bytes) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, route.max_body_bytes).await else {
        return (
            StatusCode::BAD_REQUEST,
            "Bad Request: the body could not be read",
        )
            .into_response();
    };
    // Anything but a plain call (or a cancellation of one) goes to rmcp with the same bytes,
    // so its answers (errors included) are exactly rmcp's.
    let message = serde_json::from_slice::<ClientJsonRpcMessage>(&bytes).ok();
    let to_rmcp = |parts, bytes| next.run(Request::from_parts(parts, Body::from(bytes)));
    match message {
        Some(ClientJsonRpcMessage::Request(JsonRpcRequest {
            id,
            request: ClientRequest::CallToolRequest(call),
            ..
        })) if plain_call(&call) => {
            let busy = route.sessions.mark_busy(&sid);
            if entry.due_for_keep_alive(route.direct.now_ms(), route.idle_timeout / 4) {
                route.sessions.keep_alive(sid.clone());
            }
            route.direct.served.fetch_add(1, Ordering::Relaxed);
            if !wants_progress(&call) {
                let answer = entry.call(id, call, parts, None).await;
                drop(busy);
                return json_answer(&answer);
            }
            let (progress, mut reported) = mpsc::channel(PROGRESS_QUEUE);
            let mut answering = entry.call(id, call, parts, Some(DirectCallProgress(progress)));
            tokio::select! {
                biased;
                answer = &mut answering => match reported.try_recv() {
                    // Progress came just before the answer: both go, in order, as events.
                    Ok(first) => event_stream(first, reported, answer_when_ready(answer), busy),
                    Err(_) => json_answer(&answer),
                },
                Some(first) = reported.recv() => {
                    // Progress before the answer: the answer becomes an event stream, and the
                    // call, already under way, moves to its own task so the stream can pass
                    // each event on as it comes.
                    event_stream(first, reported, tokio::spawn(answering), busy)
                }
            }
        }
        Some(ClientJsonRpcMessage::Notification(JsonRpcNotification {
            notification: ClientNotification::CancelledNotification(cancelled),
            ..
        })) if cancelled
            .params
            .request_id
            .as_ref()
            .is_some_and(|id| entry.cancel(id)) =>
        {
            StatusCode::ACCEPTED.into_response()
        }
        _ => to_rmcp(parts, bytes).await,
    }
}

/// A session-era POST whose answer may be a JSON body: the client accepts JSON and event
/// streams and sends JSON (rmcp answers anything else with its error), with a declared length
/// within the limit (an undeclared or larger one is left to rmcp's reading), and no header
/// of the 2026-07-28 era (standard headers are checked against the body by rmcp).
fn plain_session_post(headers: &HeaderMap, max_body_bytes: usize) -> bool {
    let accepts = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.split(';').next().unwrap_or("").trim());
    let (mut json, mut sse) = (false, false);
    for essence in accepts {
        json |= essence.eq_ignore_ascii_case("application/json");
        sse |= essence.eq_ignore_ascii_case("text/event-stream");
    }
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
    let length_within = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n <= max_body_bytes);
    let session_era = headers
        .get(PROTOCOL_VERSION_HEADER)
        .is_none_or(|v| v.to_str().is_ok_and(is_session_era_version));
    let standard_headers = headers.keys().any(|name| {
        let name = name.as_str();
        name.starts_with("mcp-") && name != SESSION_HEADER && name != PROTOCOL_VERSION_HEADER
    });
    json && sse && json_body && length_within && session_era && !standard_headers
}

/// A version rmcp knows that predates per-request metadata and standard headers.
fn is_session_era_version(version: &str) -> bool {
    version < ProtocolVersion::V_2026_07_28.as_str()
        && ProtocolVersion::KNOWN_VERSIONS
            .iter()
            .any(|known| known.as_str() == version)
}

/// The `_meta` objects of a call: rmcp keeps a request's in its extensions; the params'
/// copy is read too.
fn metas(call: &CallToolRequest) -> impl Iterator<Item = &RequestMetaObject> {
    [
        call.extensions.get::<RequestMetaObject>(),
        call.params.meta.as_ref(),
    ]
    .into_iter()
    .flatten()
}

/// A call with nothing that needs rmcp's serve loop: no per-request protocol version (the
/// 2026-07-28 era) and no multi-round-trip state.
fn plain_call(call: &CallToolRequest) -> bool {
    let params = &call.params;
    metas(call).all(|meta| meta.protocol_version().is_none())
        && params.input_responses.is_none()
        && params.request_state.is_none()
}

/// Whether the client asked for the call's progress (rmcp's client always does).
fn wants_progress(call: &CallToolRequest) -> bool {
    metas(call).any(|meta| meta.0.0.contains_key("progressToken"))
}

/// The answer of a call that already finished, as the last item of [`event_stream`].
fn answer_when_ready(
    answer: ServerJsonRpcMessage,
) -> std::future::Ready<Result<ServerJsonRpcMessage, tokio::task::JoinError>> {
    std::future::ready(Ok(answer))
}

/// An event-stream answer: the `first` progress notification, the rest as the handler sends
/// them (until its context, and so its sender, is dropped), then the answer. `busy` (the
/// session's busy mark) is held until the stream ends.
fn event_stream(
    first: ServerJsonRpcMessage,
    rest: mpsc::Receiver<ServerJsonRpcMessage>,
    answer: impl Future<Output = Result<ServerJsonRpcMessage, tokio::task::JoinError>> + Send + 'static,
    busy: impl Send + 'static,
) -> Response {
    use futures::StreamExt;
    let answer = futures::stream::once(answer).map(|answer| {
        answer.unwrap_or_else(|err| {
            ServerJsonRpcMessage::error(
                rmcp::ErrorData::internal_error(format!("the call failed: {err}"), None),
                None,
            )
        })
    });
    let events = futures::stream::once(std::future::ready(first))
        .chain(tokio_stream::wrappers::ReceiverStream::new(rest))
        .chain(answer)
        .map(move |message| {
            let _busy = &busy;
            let mut data = Vec::with_capacity(256);
            crate::stdio_serving::encode_json(&message, &mut data)?;
            let data = String::from_utf8(data).map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>(crate::sse::encode_event(None, &data))
        });
    let mut response = Response::new(Body::from_stream(events));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The answer as one JSON body.
fn json_answer(answer: &ServerJsonRpcMessage) -> Response {
    let mut body = Vec::with_capacity(256);
    if let Err(err) = crate::stdio_serving::encode_json(answer, &mut body) {
        tracing::error!(%err, "could not encode an answer");
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not encode the answer",
        )
            .into_response();
    }
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    const PLAIN: &[(&str, &str)] = &[
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("content-length", "64"),
        ("mcp-session-id", "s"),
        ("mcp-protocol-version", "2025-11-25"),
    ];

    #[test]
    fn only_plain_session_era_posts_are_served_directly() {
        assert!(plain_session_post(&headers(PLAIN), 1024));
        let without = |name: &str| {
            let pairs: Vec<_> = PLAIN.iter().copied().filter(|(n, _)| *n != name).collect();
            headers(&pairs)
        };
        let with = |extra: (&'static str, &'static str)| {
            let mut pairs = PLAIN.to_vec();
            pairs.retain(|(n, _)| *n != extra.0);
            pairs.push(extra);
            headers(&pairs)
        };
        // An absent version header is the 2025-03-26 default.
        assert!(plain_session_post(&without("mcp-protocol-version"), 1024));
        assert!(!plain_session_post(&without("accept"), 1024));
        assert!(!plain_session_post(
            &with(("accept", "application/json")),
            1024
        ));
        assert!(!plain_session_post(&without("content-type"), 1024));
        assert!(!plain_session_post(
            &with(("content-type", "text/plain")),
            1024
        ));
        assert!(!plain_session_post(&without("content-length"), 1024));
        assert!(!plain_session_post(&headers(PLAIN), 63));
        assert!(!plain_session_post(
            &with(("mcp-protocol-version", "2026-07-28")),
            1024
        ));
        assert!(!plain_session_post(
            &with(("mcp-protocol-version", "1999-01-01")),
            1024
        ));
        assert!(!plain_session_post(
            &with(("mcp-method", "tools/call")),
            1024
        ));
        assert!(plain_session_post(
            &with(("accept", "text/event-stream;q=0.9, Application/JSON")),
            1024
        ));
    }

    fn call(params: serde_json::Value) -> CallToolRequest {
        let message: ClientJsonRpcMessage = serde_json::from_value(serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params
        }))
        .expect("a call");
        match message {
            ClientJsonRpcMessage::Request(JsonRpcRequest {
                request: ClientRequest::CallToolRequest(call),
                ..
            }) => call,
            other => panic!("not a call: {other:?}"),
        }
    }

    #[test]
    fn calls_of_the_2026_era_keep_rmcp_s_path_and_progress_is_noticed() {
        let plain = call(serde_json::json!({"name": "echo"}));
        assert!(plain_call(&plain) && !wants_progress(&plain));
        let other_meta =
            call(serde_json::json!({"name": "echo", "arguments": {"a": 1}, "_meta": {"x": 1}}));
        assert!(plain_call(&other_meta) && !wants_progress(&other_meta));
        let progress = call(serde_json::json!({"name": "echo", "_meta": {"progressToken": 7}}));
        assert!(plain_call(&progress) && wants_progress(&progress));
        let modern = call(serde_json::json!({"name": "echo",
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}));
        assert!(!plain_call(&modern));
        assert!(!plain_call(&call(
            serde_json::json!({"name": "echo", "requestState": "opaque"})
        )));
    }
}
