//! The legacy HTTP+SSE transport (2024-11-05), client side.
//!
//! rmcp has no client for it either (see [`crate::legacy_sse`]). The sequence: GET the SSE URL,
//! wait for the `endpoint` event, then POST every client message to that URL and read server
//! messages from `message` events. The endpoint must be on the SSE URL's origin, so a hostile
//! server cannot redirect the client's messages (and headers, e.g. credentials) elsewhere.
//! The transport has no resumability: when the stream ends, the session ends.

use std::collections::BTreeMap;

use futures::StreamExt;
use reqwest::{
    Url,
    header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue},
};
use rmcp::{
    RoleClient,
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::Transport,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::sse::SseParser;

/// Failures of the legacy SSE client.
#[derive(Debug, thiserror::Error)]
pub enum SseClientError {
    #[error("invalid URL {0}")]
    Url(String),
    #[error("invalid header {0}")]
    Header(String),
    #[error("HTTP request failed: {0}")]
    Request(#[from] reqwest::Error),
    #[error("the server answered {status} to {what}")]
    Status {
        what: &'static str,
        status: reqwest::StatusCode,
    },
    #[error("the SSE stream ended before the endpoint event")]
    NoEndpoint,
    #[error("the endpoint {0} is not on the SSE URL's origin")]
    ForeignEndpoint(String),
    #[error("the SSE stream is invalid: {0}")]
    Stream(String),
}

/// A connected legacy SSE session.
pub struct SseClientTransport {
    client: reqwest::Client,
    endpoint: Url,
    headers: HeaderMap,
    messages: mpsc::Receiver<RxJsonRpcMessage<RoleClient>>,
    cancel: CancellationToken,
}

impl Drop for SseClientTransport {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

pub(crate) fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap, SseClientError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::try_from(name.as_str())
            .map_err(|_| SseClientError::Header(name.clone()))?;
        let value = HeaderValue::try_from(value.as_str())
            .map_err(|_| SseClientError::Header(name.to_string()))?;
        map.insert(name, value);
    }
    Ok(map)
}

impl SseClientTransport {
    /// Opens the SSE stream at `url` and waits for the `endpoint` event. Events above
    /// `max_event_bytes` end the session; up to `queue_len` server messages are buffered
    /// before the reader stops reading the socket (TCP backpressure).
    pub async fn connect(
        client: reqwest::Client,
        url: &str,
        headers: &BTreeMap<String, String>,
        max_event_bytes: usize,
        queue_len: usize,
    ) -> Result<Self, SseClientError> {
        let url = Url::parse(url).map_err(|_| SseClientError::Url(url.to_owned()))?;
        let headers = header_map(headers)?;
        let response = client
            .get(url.clone())
            .headers(headers.clone())
            .header(ACCEPT, "text/event-stream")
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(SseClientError::Status {
                what: "the SSE GET",
                status: response.status(),
            });
        }
        let mut body = response.bytes_stream();
        let mut parser = SseParser::new(max_event_bytes);
        let mut events = Vec::new();
        // Read until the endpoint event; anything before it is ignored.
        let endpoint = 'found: loop {
            let chunk = body
                .next()
                .await
                .ok_or(SseClientError::NoEndpoint)?
                .map_err(SseClientError::Request)?;
            parser
                .feed(&chunk, &mut events)
                .map_err(|e| SseClientError::Stream(e.to_string()))?;
            while !events.is_empty() {
                let event = events.remove(0);
                if event.event_type() == "endpoint" {
                    break 'found event.data;
                }
            }
        };
        let endpoint = url
            .join(endpoint.trim())
            .map_err(|_| SseClientError::Url(endpoint.clone()))?;
        if endpoint.origin() != url.origin() {
            return Err(SseClientError::ForeignEndpoint(endpoint.to_string()));
        }
        let (tx, messages) = mpsc::channel(queue_len.max(1));
        let cancel = CancellationToken::new();
        let reader_cancel = cancel.clone();
        tokio::spawn(async move {
            // Messages that arrived in the same chunk as the endpoint come first.
            let mut pending = events;
            loop {
                for event in pending.drain(..) {
                    if event.event_type() != "message" {
                        continue;
                    }
                    match serde_json::from_str(&event.data) {
                        Ok(message) => {
                            if tx.send(message).await.is_err() {
                                return;
                            }
                        }
                        Err(err) => {
                            tracing::warn!(%err, "ignored an SSE message that is not JSON-RPC")
                        }
                    }
                }
                let chunk = tokio::select! {
                    _ = reader_cancel.cancelled() => return,
                    chunk = body.next() => chunk,
                };
                match chunk {
                    Some(Ok(chunk)) => {
                        if let Err(err) = parser.feed(&chunk, &mut pending) {
                            tracing::warn!(%err, "closing the legacy SSE session");
                            return;
                        }
                    }
                    Some(Err(err)) => {
                        tracing::debug!(%err, "the legacy SSE stream failed");
                        return;
                    }
                    None => return,
                }
            }
        });
        Ok(Self {
            client,
            endpoint,
            headers,
            messages,
            cancel,
        })
    }

    /// The URL messages are POSTed to.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }
}

impl Transport<RoleClient> for SseClientTransport {
    type Error = SseClientError;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let request = self
            .client
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .json(&item);
        async move {
            let response = request.send().await?;
            if !response.status().is_success() {
                return Err(SseClientError::Status {
                    what: "a message POST",
                    status: response.status(),
                });
            }
            Ok(())
        }
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        self.messages.recv()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.cancel.cancel();
        Ok(())
    }
}
