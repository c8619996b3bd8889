//! Session-era `tools/call` answered without rmcp's session worker (`direct`), over real
//! HTTP: plain calls are answered by the session's own handler as one JSON body; calls and
//! sessions that need rmcp's serve loop keep it; a cancellation reaches a direct call; a
//! closed session is forgotten and, rebuilt from its sealed id, served directly again.
//! Waits are on signals and the session-count watch, never on sleeps.

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use common::wait_sessions;
use serde_json::{Value, json};
use switchboard_transport::{
    DirectSessions, HttpLimits, HttpRoutes, HttpServer, direct::DirectCallProgress, serve_http,
    sse::SseParser,
};
use tokio::sync::Notify;

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
        ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities,
        ServerConfig, Tool,
    },
    service::{NotificationContext, RequestContext},
};

/// Signals shared by every session of one test server.
#[derive(Default)]
struct Signals {
    /// A `wait` call has started.
    started: Notify,
    /// A `wait` call saw its context cancelled.
    cancelled: Notify,
    /// Lets a `paced` call go on after its first step.
    release: Notify,
}

/// A server with per-session state: `count` answers how many times this session called it.
struct Counting {
    direct: Arc<DirectSessions>,
    calls: Arc<AtomicUsize>,
    signals: Arc<Signals>,
}

impl Counting {
    fn same_session(&self) -> Counting {
        Counting {
            direct: self.direct.clone(),
            calls: self.calls.clone(),
            signals: self.signals.clone(),
        }
    }

    fn register(&self, extensions: &rmcp::model::Extensions, peer: &rmcp::Peer<RoleServer>) {
        self.direct
            .register(extensions, peer, || self.same_session());
    }
}

impl ServerHandler for Counting {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("counting", "0"))
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.register(&context.extensions, &context.peer);
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = Arc::new(serde_json::Map::from_iter([(
            "type".to_string(),
            json!("object"),
        )]));
        Ok(ListToolsResult::with_all_items(vec![
            Tool::new(
                "count",
                "Calls of this tool in this session",
                schema.clone(),
            ),
            Tool::new("wait", "Waits until cancelled", schema.clone()),
            Tool::new(
                "steps",
                "Reports two steps of progress, then answers",
                schema.clone(),
            ),
            Tool::new("paced", "Like steps, waiting after the first", schema),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.register(&context.extensions, &context.peer);
        let text = match request.name.as_ref() {
            "count" => (self.calls.fetch_add(1, Ordering::SeqCst) + 1).to_string(),
            "wait" => {
                self.signals.started.notify_one();
                context.ct.cancelled().await;
                self.signals.cancelled.notify_one();
                "cancelled".to_string()
            }
            "steps" | "paced" => {
                // Two progress reports before the answer: through the call's own channel
                // when it is answered directly, else through the session's peer.
                let token = context.meta.get_progress_token().ok_or_else(|| {
                    ErrorData::invalid_params("steps needs a progress token", None)
                })?;
                for step in 1..=2 {
                    if step == 2 && request.name == "paced" {
                        self.signals.release.notified().await;
                    }
                    let params = ProgressNotificationParam::new(token.clone(), f64::from(step));
                    match context.extensions.get::<DirectCallProgress>() {
                        Some(direct) => {
                            direct.notify(params).await;
                        }
                        None => {
                            let _ = context.peer.notify_progress(params).await;
                        }
                    }
                }
                "done".to_string()
            }
            other => return Err(ErrorData::invalid_params(format!("no tool {other}"), None)),
        };
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }
}

struct Fixture {
    server: HttpServer,
    direct: Arc<DirectSessions>,
    signals: Arc<Signals>,
    url: String,
    http: reqwest::Client,
}

async fn start() -> Fixture {
    start_with(HttpLimits::default()).await
}

async fn start_with(limits: HttpLimits) -> Fixture {
    let direct = Arc::new(DirectSessions::new());
    let signals = Arc::new(Signals::default());
    let limits = HttpLimits {
        direct_sessions: Some(direct.clone()),
        ..limits
    };
    let (for_factory, signals_for_factory) = (direct.clone(), signals.clone());
    let server = serve_http(
        move || {
            Ok(Counting {
                direct: for_factory.clone(),
                calls: Arc::default(),
                signals: signals_for_factory.clone(),
            })
        },
        "127.0.0.1:0".parse().expect("addr"),
        HttpRoutes::Streamable,
        &limits,
    )
    .await
    .expect("serve");
    let url = format!("http://{}/mcp", server.local_addr);
    Fixture {
        server,
        direct,
        signals,
        url,
        http: reqwest::Client::new(),
    }
}

fn post(fx: &Fixture, session: Option<&str>, body: &Value) -> reqwest::RequestBuilder {
    let request = fx
        .http
        .post(&fx.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_string());
    match session {
        Some(session) => request.header("mcp-session-id", session),
        None => request,
    }
}

/// Starts a 2025-11-25 session declaring `capabilities`; returns its id.
async fn open_session(fx: &Fixture, capabilities: Value) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": capabilities,
        "clientInfo": {"name": "raw", "version": "0"}}});
    let response = post(fx, None, &init).send().await.expect("POST");
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session id")
        .to_owned();
    drop(response.text().await);
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let ack = post(fx, Some(&session), &initialized)
        .send()
        .await
        .expect("POST");
    assert_eq!(ack.status(), 202);
    session
}

/// Sends `body` on `session` and returns the answer, and whether it was answered directly
/// (the direct-call count went up) or by rmcp.
async fn send(fx: &Fixture, session: &str, body: &Value) -> (bool, Value) {
    let before = fx.direct.served_count();
    let response = post(fx, Some(session), body).send().await.expect("POST");
    let message = answer(response).await;
    (fx.direct.served_count() > before, message)
}

/// The JSON-RPC answer of a response: its JSON body, or the event that carries it.
async fn answer(response: reqwest::Response) -> Value {
    let mut messages = messages(response).await;
    let at = messages
        .iter()
        .position(|message| message.get("id").is_some())
        .expect("an answer among the messages");
    messages.swap_remove(at)
}

/// Every JSON-RPC message of a response, in order: its JSON body, or its events.
async fn messages(response: reqwest::Response) -> Vec<Value> {
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response.bytes().await.expect("body");
    if content_type.starts_with("application/json") {
        return vec![serde_json::from_slice(&body).expect("JSON answer")];
    }
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let mut parser = SseParser::new(1 << 20);
    let mut events = Vec::new();
    parser.feed(&body, &mut events).expect("SSE");
    events
        .iter()
        .filter(|event| !event.data.is_empty())
        .map(|event| serde_json::from_str::<Value>(&event.data).expect("JSON event"))
        .collect()
}

fn call(id: u64, name: &str, meta: Option<Value>) -> Value {
    let mut params = json!({"name": name, "arguments": {}});
    if let Some(meta) = meta {
        params["_meta"] = meta;
    }
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
}

/// The (token, progress) of each progress notification among `messages`, in order.
fn progress_of(messages: &[Value]) -> Vec<(Value, Value)> {
    messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| {
            (
                m["params"]["progressToken"].clone(),
                m["params"]["progress"].clone(),
            )
        })
        .collect()
}

fn text_of(message: &Value) -> &str {
    message["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {message}"))
}

#[tokio::test]
async fn plain_calls_are_answered_directly_by_the_session_s_own_handler() {
    let fx = start().await;
    let one = open_session(&fx, json!({})).await;
    let two = open_session(&fx, json!({})).await;
    assert_eq!(
        fx.direct.len(),
        2,
        "both sessions registered on initialized"
    );

    for expected in 1..=3 {
        let (direct, message) = send(&fx, &one, &call(expected, "count", None)).await;
        assert!(direct, "a plain call is answered directly");
        assert_eq!(message["id"], json!(expected));
        assert_eq!(text_of(&message), expected.to_string());
    }
    // The other session has its own handler, and so its own count.
    let (direct, message) = send(&fx, &two, &call(9, "count", None)).await;
    assert!(direct);
    assert_eq!(text_of(&message), "1");
    assert_eq!(fx.direct.served_count(), 4);

    // Other methods still go through rmcp, on the same session state.
    let list = json!({"jsonrpc": "2.0", "id": 10, "method": "tools/list"});
    let (direct, message) = send(&fx, &one, &list).await;
    assert!(!direct);
    assert_eq!(message["result"]["tools"][0]["name"], "count");
    // A call's errors are the handler's, in the same JSON-RPC shape.
    let (direct, message) = send(&fx, &one, &call(11, "nope", None)).await;
    assert!(direct);
    assert_eq!(message["error"]["code"], json!(-32602));
    assert_eq!(message["id"], json!(11));
}

#[tokio::test]
async fn calls_and_sessions_that_need_rmcp_s_serve_loop_keep_it() {
    let fx = start().await;
    // A client the server could ask for sampling: its requests must ride the call's stream.
    let sampling = open_session(&fx, json!({"sampling": {}})).await;
    let (direct, message) = send(&fx, &sampling, &call(1, "count", None)).await;
    assert!(!direct);
    assert_eq!(text_of(&message), "1");

    // A request of the 2026-07-28 era on a session is rmcp's to judge.
    let plain = open_session(&fx, json!({})).await;
    let modern = call(
        2,
        "count",
        Some(json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28"})),
    );
    let before = fx.direct.served_count();
    let response = post(&fx, Some(&plain), &modern).send().await.expect("POST");
    drop(response.bytes().await);
    assert_eq!(fx.direct.served_count(), before);
    // The same session's plain call is direct.
    let (direct, _) = send(&fx, &plain, &call(3, "count", None)).await;
    assert!(direct);
    assert_eq!(fx.direct.len(), 1, "only the plain session registered");

    // A malformed body gets rmcp's own error.
    let broken = post(&fx, Some(&plain), &json!("not JSON-RPC"))
        .send()
        .await
        .expect("POST");
    assert!(broken.status().is_client_error(), "{}", broken.status());
}

#[tokio::test]
async fn a_cancellation_reaches_a_direct_call() {
    let fx = start().await;
    let session = open_session(&fx, json!({})).await;
    let pending = tokio::spawn(post(&fx, Some(&session), &call(7, "wait", None)).send());
    fx.signals.started.notified().await;

    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 7, "reason": "test"}});
    let ack = post(&fx, Some(&session), &cancel)
        .send()
        .await
        .expect("POST");
    assert_eq!(ack.status(), 202);
    fx.signals.cancelled.notified().await;
    let message = answer(pending.await.expect("join").expect("POST")).await;
    assert_eq!(
        fx.direct.served_count(),
        1,
        "the call was answered directly"
    );
    assert_eq!(text_of(&message), "cancelled");
}

#[tokio::test]
async fn a_closed_session_is_forgotten_and_a_rebuilt_one_served_directly_again() {
    // One session in memory: opening another moves the first out.
    let fx = start_with(HttpLimits {
        max_sessions: 1,
        ..HttpLimits::default()
    })
    .await;
    let first = open_session(&fx, json!({})).await;
    let (direct, _) = send(&fx, &first, &call(1, "count", None)).await;
    assert!(direct);

    let second = open_session(&fx, json!({})).await;
    assert_eq!(
        fx.direct.len(),
        1,
        "the session moved out of memory is forgotten"
    );
    let (direct, _) = send(&fx, &second, &call(2, "count", None)).await;
    assert!(direct);

    // The first session's sealed id rebuilds it through rmcp (a new handler, so a new
    // count), and its first call registers it again.
    let (direct, message) = send(&fx, &first, &call(3, "count", None)).await;
    assert!(!direct);
    assert_eq!(text_of(&message), "1");
    let (direct, message) = send(&fx, &first, &call(4, "count", None)).await;
    assert!(direct);
    assert_eq!(text_of(&message), "2");

    // A session the client ends is forgotten too.
    let closed = fx
        .http
        .delete(&fx.url)
        .header("mcp-session-id", &first)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .expect("DELETE");
    assert!(closed.status().is_success(), "{}", closed.status());
    wait_sessions(&fx.server, 0).await;
    assert_eq!(fx.direct.len(), 0);
}

#[tokio::test]
async fn progress_of_a_direct_call_rides_its_answer() {
    let fx = start().await;
    let session = open_session(&fx, json!({})).await;
    // A progress token with no progress reported: one JSON answer.
    let (direct, message) = send(
        &fx,
        &session,
        &call(1, "count", Some(json!({"progressToken": "quiet"}))),
    )
    .await;
    assert!(direct);
    assert_eq!(text_of(&message), "1");

    // Progress reported: an event stream with the progress, in order, then the answer.
    let before = fx.direct.served_count();
    let response = post(
        &fx,
        Some(&session),
        &call(2, "steps", Some(json!({"progressToken": "p"}))),
    )
    .send()
    .await
    .expect("POST");
    let content_type = response.headers().get("content-type").cloned();
    let steps = messages(response).await;
    assert_eq!(fx.direct.served_count(), before + 1, "answered directly");
    assert_eq!(
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    assert_eq!(
        progress_of(&steps),
        vec![(json!("p"), json!(1.0)), (json!("p"), json!(2.0))]
    );
    let last = steps.last().expect("messages");
    assert_eq!(last["id"], json!(2));
    assert_eq!(text_of(last), "done");

    // Progress while the call is still under way: the stream starts with it (the response's
    // head arrives before the call may go on), and the rest follows.
    let response = post(
        &fx,
        Some(&session),
        &call(3, "paced", Some(json!({"progressToken": "q"}))),
    )
    .send()
    .await
    .expect("POST");
    fx.signals.release.notify_one();
    let paced = messages(response).await;
    assert_eq!(
        progress_of(&paced),
        vec![(json!("q"), json!(1.0)), (json!("q"), json!(2.0))]
    );
    assert_eq!(text_of(paced.last().expect("messages")), "done");
    assert_eq!(fx.direct.served_count(), before + 2);
}
