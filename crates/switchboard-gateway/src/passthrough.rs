//! Pass-through between a downstream client and an upstream server, in both directions.
//!
//! An upstream connection is shared by all downstream clients (unless the upstream gives each
//! client its own child, [`crate::children`]), so nothing the upstream sends names the
//! downstream request it belongs to, except progress tokens. The gateway therefore keeps, per
//! upstream connection, a registry of the requests it has in flight there ([`Relay`]):
//!
//! - **Progress** is exact: rmcp gives each upstream request its own progress token; the
//!   registry maps it back to the downstream peer and the token *that* client sent, and the
//!   notification is re-sent with the client's token (or dropped when the client sent none).
//! - **Cancellation**: the downstream request's cancellation token (`notifications/cancelled`,
//!   or rmcp cancelling a request whose HTTP stream closed) ends the wait, and the upstream
//!   request is cancelled with `notifications/cancelled`; the same happens whenever the call
//!   future is dropped (the per-upstream deadline, a client gone).
//! - **Logging** (`notifications/message`) and **server-to-client requests** of session-era
//!   upstreams (`sampling/createMessage`, `elicitation/create`, `roots/list`) carry no request
//!   id on the wire, so they go to the most recent in-flight request on that upstream (whose
//!   client can answer, for requests). With one client at a time this is exact; with several
//!   concurrent clients on one upstream it is a best guess, and the log says so. A per-client
//!   child ([`crate::children`]) has its own registry, so there it is always that client's.
//! - **MRTR** (2026-07-28 `input_required` results): a 2026-07-28 downstream gets the result
//!   unchanged and retries through the gateway with `inputResponses`/`requestState`, which are
//!   forwarded as they are. A session-era downstream cannot answer `input_required`, so the
//!   gateway drives the rounds itself: it asks the client with real `sampling/createMessage`,
//!   `elicitation/create` or `roots/list` requests and retries upstream with the answers.
//! - **Not bridged**: a session-era upstream's server-to-client request while only 2026-07-28
//!   clients are in flight (they cannot receive requests; the upstream gets an error), and
//!   logging outside any request (no client to attribute it to; dropped).
//!
//! Everything sent to a downstream client is sent from inside that client's handler future
//! (through a per-request channel), so rmcp routes it onto that request's stream.

// Sampling, roots and logging are deprecated by 2026-07-28 (SEP-2577) but still part of it and
// of every older revision; bridging them is this module's job.
#![allow(deprecated)]

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use futures::{FutureExt, StreamExt, future::BoxFuture, stream::FuturesUnordered};
use rmcp::{
    ErrorData, Peer, RoleClient, RoleServer,
    model::{
        CancelledNotificationParam, ClientRequest, ClientResult, CreateMessageRequest,
        CreateMessageRequestParams, CreateMessageResult, ElicitRequest, ElicitRequestParams,
        ElicitResult, InputRequest, InputRequests, InputRequiredResult, InputResponses,
        ListRootsResult, LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam,
        ProgressToken, ProtocolVersion, RequestMetaObject, ServerCapabilities, ServerRequest,
        ServerResult,
    },
    service::{PeerRequestOptions, RequestContext, ServiceError},
};
use switchboard_transport::direct::DirectCallProgress;
use tokio::sync::{mpsc, oneshot};

use crate::{
    children::{ClientKey, ClientSession},
    error::GatewayError,
    upstream::UpstreamRuntime,
};

/// Rounds of `input_required` the gateway answers for a session-era client before giving up.
pub const MAX_MRTR_ROUNDS: usize = 10;
/// Messages queued for one downstream request before further ones are dropped.
const JOB_QUEUE: usize = 64;

/// The downstream request an upstream call is made for.
#[derive(Clone)]
pub struct Downstream {
    cx: RequestContext<RoleServer>,
    /// `logging/setLevel` of the client's session (session era); `None`: every level.
    session_level: Arc<Mutex<Option<LoggingLevel>>>,
    /// The client's session or connection, which keys its per-client children; `None` for a
    /// stateless request (its server instance lives for that request only).
    session: Option<Arc<ClientSession>>,
    /// The caller's authenticated subject (`None`: anonymous), which keys the per-client
    /// children of stateless requests.
    subject: Option<String>,
}

impl Downstream {
    pub fn new(
        cx: &RequestContext<RoleServer>,
        session_level: Arc<Mutex<Option<LoggingLevel>>>,
    ) -> Downstream {
        Downstream {
            cx: cx.clone(),
            session_level,
            session: None,
            subject: None,
        }
    }

    /// Who the client is, for per-client children: its `session` (the server instance's),
    /// unless the request is stateless (2026-07-28 over HTTP, where an instance serves one
    /// request), and its authenticated `subject`.
    pub fn with_client(mut self, session: Arc<ClientSession>, subject: Option<String>) -> Self {
        let stateless = self.modern()
            && self
                .cx
                .extensions
                .get::<axum::http::request::Parts>()
                .is_some();
        self.session = (!stateless).then_some(session);
        self.subject = subject;
        self
    }

    /// The key of this client's child on a per-client upstream: its session, else its subject.
    pub fn client_key(&self) -> ClientKey {
        match &self.session {
            Some(session) => ClientKey::Session(session.id()),
            None => ClientKey::Subject(self.subject.clone()),
        }
    }

    /// The client's session, when the request has one (see [`Downstream::with_client`]).
    pub fn session(&self) -> Option<&Arc<ClientSession>> {
        self.session.as_ref()
    }

    /// The client's `clientInfo` as `name/version`: from the request's `_meta` (2026-07-28)
    /// or the session's `initialize`.
    pub fn client_info(&self) -> Option<String> {
        self.cx
            .client_info()
            .map(|info| format!("{}/{}", info.name, info.version))
    }

    /// The client's request context, for a built-in server called in-process
    /// ([`crate::builtin::DirectTools`]): its progress, logs and cancellation then reach the
    /// client directly.
    pub fn context(&self) -> RequestContext<RoleServer> {
        self.cx.clone()
    }

    /// The client's W3C trace context (`_meta` or HTTP headers), if it sent one.
    pub fn trace_context(&self) -> Option<crate::trace_context::TraceCarrier> {
        crate::trace_context::TraceCarrier::from_request(&self.cx)
    }

    /// Whether the request was made in the 2026-07-28 (stateless, MRTR) era.
    pub fn modern(&self) -> bool {
        self.cx
            .protocol_version()
            .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28)
    }

    /// Whether this client wants a log message of `level`: per request in the 2026-07-28 era
    /// (no `logLevel`, no messages), per session before.
    fn wants_log(&self, level: LoggingLevel) -> bool {
        let threshold = if self.modern() {
            match self.cx.meta.log_level() {
                Some(level) => Some(level),
                None => return false,
            }
        } else {
            self.session_level.lock().ok().and_then(|l| *l)
        };
        threshold.is_none_or(|t| level as u8 >= t as u8)
    }

    /// What the upstream request carries from the client's: its capabilities (so the
    /// upstream asks only what the client can answer) and its log level.
    fn forwarded_meta(&self) -> RequestMetaObject {
        let mut meta = RequestMetaObject::default();
        if let Some(caps) = self.cx.client_capabilities() {
            meta.set_client_capabilities(caps);
        }
        if let Some(level) = self.cx.meta.log_level() {
            meta.set_log_level(level);
        }
        meta
    }
}

/// Something to deliver to a downstream client, from inside its request's handler.
enum Job {
    Progress(ProgressNotificationParam),
    Log(LoggingMessageNotificationParam),
    Request(
        ServerRequest,
        oneshot::Sender<Result<ClientResult, ErrorData>>,
    ),
}

struct InFlight {
    key: u64,
    /// Known once the request is sent (rmcp assigns it); progress is matched on it.
    upstream_token: Option<ProgressToken>,
    down: Downstream,
    jobs: mpsc::Sender<Job>,
    /// The last progress value relayed: rmcp hands each incoming notification to its own
    /// task, so two can reach the relay swapped, and a client must only see increasing
    /// progress (a stale one is dropped; progress is a latest-value signal).
    last_progress: Option<f64>,
}

/// Per-upstream registry of in-flight downstream requests, and the upstream's capabilities
/// as last seen.
#[derive(Default)]
pub struct Relay {
    next: AtomicU64,
    in_flight: Mutex<Vec<InFlight>>,
    capabilities: Mutex<Option<ServerCapabilities>>,
}

/// Removes its in-flight entry when the call ends, however it ends.
struct Registration<'a> {
    relay: &'a Relay,
    key: u64,
}

impl Registration<'_> {
    /// Records the progress token rmcp gave the upstream request.
    fn sent_with(&self, token: ProgressToken) {
        if let Ok(mut list) = self.relay.in_flight.lock()
            && let Some(entry) = list.iter_mut().find(|f| f.key == self.key)
        {
            entry.upstream_token = Some(token);
        }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Ok(mut list) = self.relay.in_flight.lock() {
            list.retain(|f| f.key != self.key);
        }
    }
}

/// Sends `notifications/cancelled` upstream unless disarmed (the response arrived).
struct CancelOnDrop {
    peer: Peer<RoleClient>,
    id: Option<rmcp::model::RequestId>,
    reason: &'static str,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let peer = self.peer.clone();
        let reason = self.reason;
        runtime.spawn(async move {
            let _ = peer
                .notify_cancelled(CancelledNotificationParam::new(
                    Some(id),
                    Some(reason.into()),
                ))
                .await;
        });
    }
}

impl Relay {
    /// The upstream's capabilities: from the live connection, else as last seen.
    pub fn capabilities(&self, peer: Option<&Peer<RoleClient>>) -> Option<ServerCapabilities> {
        if let Some(info) = peer.and_then(|p| p.peer_info()) {
            let caps = info.capabilities.clone();
            if let Ok(mut slot) = self.capabilities.lock() {
                *slot = Some(caps.clone());
            }
            return Some(caps);
        }
        self.capabilities.lock().ok().and_then(|c| c.clone())
    }

    /// Registers `down`'s request before it is sent upstream: an upstream may ask its client
    /// something (elicitation, sampling, roots) as soon as it reads the request.
    fn register(&self, down: &Downstream, jobs: mpsc::Sender<Job>) -> Registration<'_> {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut list) = self.in_flight.lock() {
            list.push(InFlight {
                key,
                upstream_token: None,
                down: down.clone(),
                jobs,
                last_progress: None,
            });
        }
        Registration { relay: self, key }
    }

    /// Re-sends an upstream progress notification to the client whose request it belongs to.
    pub fn progress(&self, params: ProgressNotificationParam) {
        let Ok(mut list) = self.in_flight.lock() else {
            return;
        };
        let Some(entry) = list
            .iter_mut()
            .find(|f| f.upstream_token.as_ref() == Some(&params.progress_token))
        else {
            return;
        };
        if entry
            .last_progress
            .is_some_and(|last| params.progress <= last)
        {
            tracing::debug!(
                progress = params.progress,
                "dropped an out-of-order progress notification"
            );
            return;
        }
        entry.last_progress = Some(params.progress);
        // The client's own token, or nothing: a client that sent none gets no progress.
        let Some(token) = entry.down.cx.meta.get_progress_token() else {
            return;
        };
        let mut params = params;
        params.progress_token = token;
        let _ = entry.jobs.try_send(Job::Progress(params));
    }

    /// Relays a log message to the most recent in-flight request on this upstream, if its
    /// client wants that level.
    pub fn log(&self, upstream: &str, params: LoggingMessageNotificationParam) {
        let Ok(list) = self.in_flight.lock() else {
            return;
        };
        let Some(entry) = list.last() else {
            tracing::debug!(
                upstream,
                "upstream log message outside any request; dropped"
            );
            return;
        };
        if list.len() > 1 {
            tracing::debug!(
                upstream,
                "log message attributed to the most recent of several requests"
            );
        }
        if entry.down.wants_log(params.level) {
            let _ = entry.jobs.try_send(Job::Log(params));
        }
    }

    /// Forwards an upstream's server-to-client request to the most recent in-flight
    /// session-era client that declared `capable`.
    async fn ask(
        &self,
        upstream: &str,
        what: &str,
        capable: impl Fn(&rmcp::model::ClientCapabilities) -> bool,
        request: ServerRequest,
    ) -> Result<ClientResult, ErrorData> {
        let jobs = {
            let list = self
                .in_flight
                .lock()
                .map_err(|_| ErrorData::internal_error("relay state poisoned", None))?;
            list.iter()
                .rev()
                .find(|f| {
                    !f.down.modern() && f.down.cx.client_capabilities().is_some_and(|c| capable(&c))
                })
                .map(|f| f.jobs.clone())
        };
        let Some(jobs) = jobs else {
            return Err(ErrorData::invalid_request(
                format!(
                    "{what}: no client of the gateway with a request in flight on {upstream:?} can answer it"
                ),
                None,
            ));
        };
        let (tx, rx) = oneshot::channel();
        jobs.send(Job::Request(request, tx))
            .await
            .map_err(|_| ErrorData::internal_error("the client's request has ended", None))?;
        rx.await
            .map_err(|_| ErrorData::internal_error("the client's request has ended", None))?
    }

    pub async fn create_message(
        &self,
        upstream: &str,
        params: CreateMessageRequestParams,
    ) -> Result<CreateMessageResult, ErrorData> {
        let request = ServerRequest::CreateMessageRequest(CreateMessageRequest::new(params));
        match self
            .ask(
                upstream,
                "sampling/createMessage",
                |c| c.sampling.is_some(),
                request,
            )
            .await?
        {
            ClientResult::CreateMessageResult(result) => Ok(*result),
            _ => Err(unexpected()),
        }
    }

    pub async fn create_elicitation(
        &self,
        upstream: &str,
        params: ElicitRequestParams,
    ) -> Result<ElicitResult, ErrorData> {
        let request = ServerRequest::ElicitRequest(ElicitRequest::new(params));
        match self
            .ask(
                upstream,
                "elicitation/create",
                |c| c.elicitation.is_some(),
                request,
            )
            .await?
        {
            ClientResult::ElicitResult(result) => Ok(result),
            _ => Err(unexpected()),
        }
    }

    pub async fn list_roots(&self, upstream: &str) -> Result<ListRootsResult, ErrorData> {
        let request = ServerRequest::ListRootsRequest(Default::default());
        match self
            .ask(upstream, "roots/list", |c| c.roots.is_some(), request)
            .await?
        {
            ClientResult::ListRootsResult(result) => Ok(result),
            _ => Err(unexpected()),
        }
    }
}

fn unexpected() -> ErrorData {
    ErrorData::internal_error("the client answered with an unexpected result type", None)
}

fn service_error(upstream: &str, err: ServiceError) -> GatewayError {
    match err {
        ServiceError::McpError(error) => GatewayError::Rpc {
            upstream: upstream.to_string(),
            error,
        },
        other => GatewayError::Upstream {
            upstream: upstream.to_string(),
            message: other.to_string(),
        },
    }
}

/// Runs one job for the downstream client, inside its handler future.
fn run_job(cx: &RequestContext<RoleServer>, job: Job) -> BoxFuture<'static, ()> {
    let peer = cx.peer.clone();
    // A call answered without rmcp's session worker carries its own progress channel: the
    // session's peer would send the progress to the session's standalone stream.
    let direct = cx.extensions.get::<DirectCallProgress>().cloned();
    async move {
        match job {
            Job::Progress(params) => match direct {
                Some(direct) => {
                    direct.notify(params).await;
                }
                None => {
                    let _ = peer.notify_progress(params).await;
                }
            },
            Job::Log(params) => {
                let _ = peer.notify_logging_message(params).await;
            }
            Job::Request(request, reply) => {
                let result = peer.send_request(request).await.map_err(|e| match e {
                    ServiceError::McpError(error) => error,
                    other => ErrorData::internal_error(
                        format!("the client did not answer: {other}"),
                        None,
                    ),
                });
                let _ = reply.send(result);
            }
        }
    }
    .boxed()
}

/// Sends one request to the upstream's shared connection on behalf of `down` (or of the
/// gateway itself), relaying progress, logs and server-to-client requests while it runs, and
/// cancelling it upstream when the downstream request is cancelled or this future is dropped.
pub async fn send(
    upstream: &UpstreamRuntime,
    request: ClientRequest,
    down: Option<&Downstream>,
) -> Result<ServerResult, GatewayError> {
    send_on(upstream, false, request, down).await
}

/// [`send`], on `down`'s own child when `per_client` and the upstream isolates clients.
async fn send_on(
    upstream: &UpstreamRuntime,
    per_client: bool,
    request: ClientRequest,
    down: Option<&Downstream>,
) -> Result<ServerResult, GatewayError> {
    let name = upstream.name();
    // Held until the answer arrives: the idle reaper never ends a connection in use.
    let lease = upstream.lease(if per_client { down } else { None }).await?;
    let peer = lease.peer();
    let mut options = PeerRequestOptions::no_options();
    if let Some(down) = down {
        options = options.with_meta(down.forwarded_meta());
    }
    // Registered before sending, so nothing the upstream asks while reading it is missed.
    let registered = down.map(|down| {
        let (jobs_tx, jobs_rx) = mpsc::channel(JOB_QUEUE);
        (lease.relay().register(down, jobs_tx), jobs_rx)
    });
    let handle = peer
        .send_request_with_option(request, options)
        .await
        .map_err(|e| service_error(name, e))?;
    let mut cancel = CancelOnDrop {
        peer: peer.clone(),
        id: Some(handle.id.clone()),
        reason: "the gateway's client cancelled or abandoned the request",
    };
    let (Some(down), Some((registration, mut jobs_rx))) = (down, registered) else {
        let result = handle.await_response().await;
        cancel.id = None;
        return result.map_err(|e| service_error(name, e));
    };
    registration.sent_with(handle.progress_token.clone());
    let response = handle.await_response();
    tokio::pin!(response);
    // Boxed jobs: `FuturesUnordered::new` allocates a stub task the size of its future, and
    // relays (progress, logs, requests to the client) are rare next to calls.
    let mut running: FuturesUnordered<BoxFuture<'static, ()>> = FuturesUnordered::new();
    let result = loop {
        tokio::select! {
            result = &mut response => break result,
            _ = down.cx.ct.cancelled() => {
                return Err(GatewayError::Cancelled { upstream: name.to_string() });
            }
            Some(job) = jobs_rx.recv() => running.push(run_job(&down.cx, job)),
            Some(()) = running.next(), if !running.is_empty() => {}
        }
    };
    cancel.id = None;
    // Deliver what arrived before the response (progress, logs) before answering.
    while let Ok(job) = jobs_rx.try_recv() {
        running.push(run_job(&down.cx, job));
    }
    while running.next().await.is_some() {}
    result.map_err(|e| service_error(name, e))
}

/// A result that may ask for input (MRTR), split.
pub enum Round<T> {
    Done(T),
    Input(InputRequiredResult),
}

/// Sends a request that may answer `input_required`, answering the rounds for a session-era
/// client (see the module docs); a 2026-07-28 client gets the `input_required` result.
/// `make` builds the request from the answers and state of the previous round. This is the
/// path of `tools/call`, `resources/read` and `prompts/get`: on a per-client upstream, each
/// goes to the client's own child.
pub async fn drive<T>(
    upstream: &UpstreamRuntime,
    down: Option<&Downstream>,
    mut make: impl FnMut(Option<InputResponses>, Option<String>) -> ClientRequest,
    split: impl Fn(ServerResult) -> Option<Round<T>>,
    first: (Option<InputResponses>, Option<String>),
) -> Result<Round<T>, GatewayError> {
    let (mut responses, mut state) = first;
    for _ in 0..MAX_MRTR_ROUNDS {
        let result = send_on(upstream, true, make(responses.take(), state.take()), down).await?;
        let round = split(result).ok_or_else(|| GatewayError::Upstream {
            upstream: upstream.name().to_string(),
            message: "unexpected result type".into(),
        })?;
        match (round, down) {
            (Round::Input(input), Some(down)) if !down.modern() => {
                responses = Some(fulfil(upstream.name(), down, input.input_requests).await?);
                state = input.request_state;
            }
            (round, _) => return Ok(round),
        }
    }
    Err(GatewayError::Upstream {
        upstream: upstream.name().to_string(),
        message: format!("still asking for input after {MAX_MRTR_ROUNDS} rounds"),
    })
}

/// Answers `input_required` requests by asking a session-era client directly.
async fn fulfil(
    upstream: &str,
    down: &Downstream,
    requests: Option<InputRequests>,
) -> Result<InputResponses, GatewayError> {
    let mut responses = InputResponses::new();
    for (key, request) in requests.unwrap_or_default() {
        let request = match request {
            InputRequest::CreateMessage(r) => ServerRequest::CreateMessageRequest(r),
            InputRequest::Elicitation(r) => ServerRequest::ElicitRequest(r),
            InputRequest::ListRoots(r) => ServerRequest::ListRootsRequest(r),
            other => {
                return Err(GatewayError::Upstream {
                    upstream: upstream.to_string(),
                    message: format!("an input request the gateway cannot forward: {other:?}"),
                });
            }
        };
        let answer = down
            .cx
            .peer
            .send_request(request)
            .await
            .map_err(|e| service_error(upstream, e))?;
        let value = match answer {
            ClientResult::CreateMessageResult(r) => serde_json::to_value(r),
            ClientResult::ElicitResult(r) => serde_json::to_value(r),
            ClientResult::ListRootsResult(r) => serde_json::to_value(r),
            other => serde_json::to_value(other),
        }
        .map_err(|e| GatewayError::Upstream {
            upstream: upstream.to_string(),
            message: e.to_string(),
        })?;
        responses.insert(key, value);
    }
    Ok(responses)
}
