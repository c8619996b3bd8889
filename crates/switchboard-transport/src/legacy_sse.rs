//! The legacy HTTP+SSE transport (MCP 2024-11-05), server side: `GET /sse` + `POST /messages`.
//!
//! Why hand-written: rmcp removed this transport in PR #562 and calls it a deliberate
//! non-goal, yet deployed clients (older IDE plugins, Inspector v1, SDKs pinned to 2024-11-05)
//! still only speak it. It is small: a per-connection SSE stream whose first event
//! (`endpoint`) names a POST URL carrying an unguessable session token, and POSTs that feed
//! that connection. Each connection gets its own rmcp service, connected through rmcp's
//! generic `(Sink, Stream)` transport, so the protocol engine is still rmcp's.
//!
//! Limits, all from [`crate::HttpLimits`]: a cap on concurrent SSE connections (503 beyond),
//! a bounded queue per direction per connection (a reader too slow to drain its queue is
//! disconnected rather than buffered without bound; a full inbound queue answers 503), the
//! shared body-size cap (413) and `Host`/`Origin` checks (403, via [`crate::guard`]).
//! The session, its rmcp service and its connection slot are released when the SSE stream
//! ends, whichever side ends it.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{DefaultBodyLimit, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use rmcp::{
    ServerHandler, ServiceExt,
    model::{ClientJsonRpcMessage, GetExtensions, ServerJsonRpcMessage},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::sse::{KEEP_ALIVE, encode_event};

/// Path of the SSE stream.
pub const SSE_PATH: &str = "/sse";
/// Path that receives the client's messages (`?sessionId=<token>`).
pub const MESSAGES_PATH: &str = "/messages";

/// Limits of the legacy SSE routes (copied out of [`crate::HttpLimits`]).
#[derive(Debug, Clone)]
pub(crate) struct SseSettings {
    pub max_connections: usize,
    pub queue_len: usize,
    pub keep_alive: Duration,
    pub max_body_bytes: usize,
}

/// Live state shared by the routes, and a read-only view for the server's owner.
#[derive(Debug)]
struct Shared {
    sessions: Mutex<HashMap<String, mpsc::Sender<ClientJsonRpcMessage>>>,
    slots: Arc<Semaphore>,
    count: watch::Sender<usize>,
    settings: SseSettings,
    cancel: CancellationToken,
}

impl Shared {
    fn publish(&self, sessions: &HashMap<String, mpsc::Sender<ClientJsonRpcMessage>>) {
        self.count.send_replace(sessions.len());
    }

    fn remove(&self, token: &str) {
        if let Ok(mut sessions) = self.sessions.lock()
            && sessions.remove(token).is_some()
        {
            self.publish(&sessions);
        }
    }
}

/// A handle on the legacy SSE sessions of a running server.
#[derive(Debug, Clone)]
pub struct LegacySseStats {
    shared: Arc<Shared>,
}

impl LegacySseStats {
    /// Open SSE connections (sessions).
    pub fn connection_count(&self) -> usize {
        *self.shared.count.borrow()
    }

    /// A receiver of the connection count, updated on every open and close.
    pub fn watch_connections(&self) -> watch::Receiver<usize> {
        self.shared.count.subscribe()
    }
}

type Factory<S> = Arc<dyn Fn() -> Result<S, std::io::Error> + Send + Sync>;

struct App<S> {
    factory: Factory<S>,
    shared: Arc<Shared>,
}

impl<S> Clone for App<S> {
    fn clone(&self) -> Self {
        Self {
            factory: self.factory.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// The `/sse` and `/messages` routes, plus a stats handle. `cancel` ends every stream (so a
/// graceful HTTP shutdown is not held open by infinite SSE bodies).
pub(crate) fn router<S>(
    factory: Factory<S>,
    settings: SseSettings,
    cancel: CancellationToken,
) -> (Router, LegacySseStats)
where
    S: ServerHandler + Send + 'static,
{
    let shared = Arc::new(Shared {
        sessions: Mutex::new(HashMap::new()),
        slots: Arc::new(Semaphore::new(settings.max_connections)),
        count: watch::Sender::new(0),
        settings: settings.clone(),
        cancel,
    });
    let app = App {
        factory,
        shared: shared.clone(),
    };
    let router = Router::new()
        .route(SSE_PATH, get(open_stream::<S>))
        .route(
            MESSAGES_PATH,
            post(post_message::<S>).layer(DefaultBodyLimit::max(settings.max_body_bytes)),
        )
        .with_state(app);
    (router, LegacySseStats { shared })
}

/// Releases a connection's session and slot when its SSE body is dropped (client gone,
/// server shutdown, or slow-reader disconnect), and stops its rmcp service.
struct Connection {
    shared: Arc<Shared>,
    token: String,
    cancel: CancellationToken,
    slot: Option<OwnedSemaphorePermit>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Free the slot before the count drops, so whoever sees the new count can connect.
        drop(self.slot.take());
        self.cancel.cancel();
        self.shared.remove(&self.token);
        tracing::debug!(session = %self.token, "legacy SSE connection closed");
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

async fn open_stream<S>(State(app): State<App<S>>) -> Response
where
    S: ServerHandler + Send + 'static,
{
    let shared = &app.shared;
    let Ok(slot) = shared.slots.clone().try_acquire_owned() else {
        tracing::warn!(
            limit = shared.settings.max_connections,
            "refused a legacy SSE connection: limit reached"
        );
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable: too many SSE connections",
        );
    };
    let token = match crate::random_token() {
        Ok(token) => token,
        Err(err) => {
            tracing::error!(%err, "no randomness for a session token");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "no session token");
        }
    };
    let server = match (app.factory)() {
        Ok(server) => server,
        Err(err) => {
            tracing::error!(%err, "could not create the MCP server for a legacy SSE connection");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "could not create server");
        }
    };
    let queue_len = shared.settings.queue_len.max(1);
    let (in_tx, in_rx) = mpsc::channel::<ClientJsonRpcMessage>(queue_len);
    let (out_tx, out_rx) = mpsc::channel::<ServerJsonRpcMessage>(queue_len);
    let cancel = shared.cancel.child_token();
    if let Ok(mut sessions) = shared.sessions.lock() {
        sessions.insert(token.clone(), in_tx);
        shared.publish(&sessions);
    }
    let connection = Connection {
        shared: shared.clone(),
        token: token.clone(),
        cancel: cancel.clone(),
        slot: Some(slot),
    };

    // Server -> client: never wait on a slow reader; a full queue disconnects it.
    let sink_cancel = cancel.clone();
    let sink = Box::pin(futures::sink::unfold(
        out_tx,
        move |tx, message: ServerJsonRpcMessage| {
            let cancel = sink_cancel.clone();
            async move {
                match tx.try_send(message) {
                    Ok(()) => Ok(tx),
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!("legacy SSE client too slow to read; disconnecting");
                        cancel.cancel();
                        Err(std::io::Error::other("SSE client too slow"))
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => Err(std::io::Error::new(
                        std::io::ErrorKind::BrokenPipe,
                        "SSE stream closed",
                    )),
                }
            }
        },
    ));
    let stream = tokio_stream::wrappers::ReceiverStream::new(in_rx);
    let service_cancel = cancel.clone();
    let service_shared = shared.clone();
    let service_token = token.clone();
    tokio::spawn(async move {
        match server
            .serve_with_ct((sink, stream), service_cancel.clone())
            .await
        {
            Ok(running) => {
                let _ = running.waiting().await;
            }
            Err(err) => tracing::debug!(%err, "legacy SSE session ended before initialisation"),
        }
        // The service is gone: end the SSE stream and forget the session.
        service_cancel.cancel();
        service_shared.remove(&service_token);
    });

    let endpoint = format!("{MESSAGES_PATH}?sessionId={token}");
    let keep_alive = shared.settings.keep_alive;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = BodyState {
        endpoint: Some(endpoint),
        out_rx,
        tick,
        connection,
    };
    let body = futures::stream::unfold(state, |mut st| async move {
        if let Some(endpoint) = st.endpoint.take() {
            let frame = encode_event(Some("endpoint"), &endpoint);
            return Some((Ok::<_, Infallible>(Bytes::from(frame)), st));
        }
        loop {
            tokio::select! {
                biased;
                _ = st.connection.cancel.cancelled() => return None,
                message = st.out_rx.recv() => {
                    let message = message?;
                    match serde_json::to_string(&message) {
                        Ok(json) => {
                            let frame = encode_event(Some("message"), &json);
                            return Some((Ok(Bytes::from(frame)), st));
                        }
                        Err(err) => tracing::error!(%err, "could not serialise a server message"),
                    }
                }
                _ = st.tick.tick() => return Some((Ok(Bytes::from_static(KEEP_ALIVE.as_bytes())), st)),
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}

struct BodyState {
    endpoint: Option<String>,
    out_rx: mpsc::Receiver<ServerJsonRpcMessage>,
    tick: tokio::time::Interval,
    connection: Connection,
}

async fn post_message<S>(
    State(app): State<App<S>>,
    Query(query): Query<HashMap<String, String>>,
    parts: axum::http::request::Parts,
    body: Bytes,
) -> Response
where
    S: ServerHandler + Send + 'static,
{
    let Some(token) = query.get("sessionId") else {
        return plain(StatusCode::BAD_REQUEST, "Bad Request: missing sessionId");
    };
    let sender = app
        .shared
        .sessions
        .lock()
        .ok()
        .and_then(|sessions| sessions.get(token).cloned());
    let Some(sender) = sender else {
        return plain(StatusCode::NOT_FOUND, "Not Found: unknown session");
    };
    let mut message: ClientJsonRpcMessage = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(err) => {
            tracing::debug!(%err, "rejected a malformed legacy SSE message");
            return plain(
                StatusCode::BAD_REQUEST,
                "Bad Request: body is not one JSON-RPC message",
            );
        }
    };
    // As rmcp does for Streamable HTTP: the handler sees this POST's HTTP request parts
    // (headers, and what middleware such as authentication attached to them).
    match &mut message {
        ClientJsonRpcMessage::Request(request) => {
            request.request.extensions_mut().insert(parts);
        }
        ClientJsonRpcMessage::Notification(notification) => {
            notification.notification.extensions_mut().insert(parts);
        }
        _ => {}
    }
    match sender.try_send(message) {
        Ok(()) => plain(StatusCode::ACCEPTED, "Accepted"),
        Err(mpsc::error::TrySendError::Full(_)) => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable: session queue full",
        ),
        Err(mpsc::error::TrySendError::Closed(_)) => {
            plain(StatusCode::NOT_FOUND, "Not Found: session closed")
        }
    }
}
