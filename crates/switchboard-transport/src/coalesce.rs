//! One write for a session-era answer that is ready at once.
//!
//! rmcp answers each session-era POST with an SSE stream (a priming event, then the answer),
//! which hyper sends as headers, one chunk per event and a terminating chunk: several writes and
//! TCP segments for one answer, where a stateless answer or a peer proxy's JSON answer is one.
//! [`coalesce_event_stream`] collects the events that are ready and, when the stream has
//! ended, sends them as one body with a length. It never reorders or holds back a message:
//! progress and requests to the client pass on at once, and a slow answer streams as before.

use axum::response::Response;

/// How long an answer's first event may be waited for before its stream is passed on as is.
const COALESCE_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// rmcp answers each session-era POST with an SSE stream, which hyper sends as headers, one
/// chunk per event and a terminating chunk: several writes for what is usually one event.
/// When the answer's events are all ready at once (the common case: a tool answered), they go
/// out as one body with a length, in one write; otherwise (progress first, or a slow tool) the
/// stream passes on unchanged after at most [`COALESCE_WAIT`], so headers are never held back
/// for long and nothing is reordered.
pub(crate) async fn coalesce_event_stream(response: Response) -> Response {
    use futures::{FutureExt, StreamExt};
    let is_event_stream = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !is_event_stream {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let mut data = body.into_data_stream();
    let mut ready: Vec<bytes::Bytes> = Vec::new();
    match tokio::time::timeout(COALESCE_WAIT, data.next()).await {
        Ok(Some(Ok(chunk))) => ready.push(chunk),
        Ok(None) => return Response::from_parts(parts, axum::body::Body::empty()),
        Ok(Some(Err(err))) => {
            let failed = futures::stream::once(async move { Err::<bytes::Bytes, _>(err) });
            return Response::from_parts(parts, axum::body::Body::from_stream(failed));
        }
        Err(_) => return Response::from_parts(parts, axum::body::Body::from_stream(data)),
    }
    loop {
        // After the answer to the request rmcp ends the stream, and after a priming event (no
        // message) the answer is next: wait for either (bounded). After anything else
        // (progress, a request to the client), take only what is ready now.
        let waits = ready
            .last()
            .is_some_and(|chunk| is_final_response(chunk) || !carries_message(chunk));
        let polled = if waits {
            tokio::time::timeout(COALESCE_WAIT, data.next()).await.ok()
        } else {
            data.next().now_or_never()
        };
        match polled {
            // Ended: everything is here.
            Some(None) => {
                let whole: bytes::Bytes = if ready.len() == 1 {
                    ready.remove(0)
                } else {
                    ready.concat().into()
                };
                parts.headers.remove(axum::http::header::CONTENT_LENGTH);
                return Response::from_parts(parts, axum::body::Body::from(whole));
            }
            Some(Some(Ok(chunk))) => ready.push(chunk),
            // More to come later, or an error: pass on what is here, then the rest.
            pending => {
                let failed = match pending {
                    Some(Some(Err(err))) => Some(Err(err)),
                    _ => None,
                };
                let head = futures::stream::iter(
                    ready.into_iter().map(Ok::<_, axum::Error>).chain(failed),
                );
                return Response::from_parts(
                    parts,
                    axum::body::Body::from_stream(head.chain(data)),
                );
            }
        }
    }
}

/// Whether an SSE chunk holds a JSON-RPC message (a priming event's `data:` is empty).
fn carries_message(chunk: &[u8]) -> bool {
    chunk.windows(7).any(|w| w == b"data: {")
}

/// Whether an SSE chunk is the event carrying a JSON-RPC response or error (what ends a
/// request's stream), judged from its first bytes as rmcp writes them
/// (`data: {"jsonrpc":"2.0","id":ID,"result"…`), so a large answer is not parsed.
fn is_final_response(chunk: &[u8]) -> bool {
    const HEAD: &[u8] = b"data: {\"jsonrpc\":\"2.0\",\"id\":";
    let Some(start) = chunk.windows(HEAD.len()).position(|w| w == HEAD) else {
        return false;
    };
    let rest = &chunk[start + HEAD.len()..];
    // The id: a number, or a string without quotes inside (rmcp's own ids and clients' usual).
    let after_id = match rest.first() {
        Some(b'"') => rest[1..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\')
            .filter(|&end| rest[1 + end] == b'"')
            .map(|end| &rest[end + 2..]),
        Some(b'-' | b'0'..=b'9') => rest
            .iter()
            .position(|&b| !(b == b'-' || b.is_ascii_digit()))
            .map(|end| &rest[end..]),
        _ => None,
    };
    after_id
        .is_some_and(|tail| tail.starts_with(b",\"result\":") || tail.starts_with(b",\"error\":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_stream(chunks: Vec<&'static str>, then_pending: bool) -> Response {
        let ready = futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from_static(c.as_bytes()))),
        );
        let body = if then_pending {
            axum::body::Body::from_stream(futures::StreamExt::chain(
                ready,
                futures::stream::pending(),
            ))
        } else {
            axum::body::Body::from_stream(ready)
        };
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(body)
            .expect("response")
    }

    const PRIMING: &str = "data: \nid: 0/0\nretry: 3000\n\n";
    const ANSWER: &str = "data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n\n";
    const PROGRESS: &str = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n";

    #[tokio::test]
    async fn an_answer_ready_at_once_goes_out_as_one_body() {
        let response = coalesce_event_stream(event_stream(vec![PRIMING, ANSWER], false)).await;
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        assert_eq!(body, format!("{PRIMING}{ANSWER}"));
        let response = coalesce_event_stream(event_stream(vec![PRIMING, ANSWER], false)).await;
        assert_eq!(
            axum::body::HttpBody::size_hint(response.body()).exact(),
            Some((PRIMING.len() + ANSWER.len()) as u64),
            "a length, not a chunked stream"
        );
    }

    #[tokio::test]
    async fn a_stream_still_open_passes_through_in_order() {
        use futures::StreamExt;
        // Progress first, then nothing yet: the stream is passed on with what it had.
        let response = coalesce_event_stream(event_stream(vec![PRIMING, PROGRESS], true)).await;
        assert_eq!(
            axum::body::HttpBody::size_hint(response.body()).exact(),
            None
        );
        let mut data = response.into_body().into_data_stream();
        let mut seen = Vec::new();
        for _ in 0..2 {
            seen.push(data.next().await.expect("chunk").expect("ok"));
        }
        assert_eq!(seen, vec![PRIMING.as_bytes(), PROGRESS.as_bytes()]);
    }

    #[test]
    fn final_responses_are_told_from_other_events() {
        assert!(is_final_response(
            b"data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n\n"
        ));
        assert!(is_final_response(
            b"id: 0/1\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"a-1\",\"error\":{}}\n\n"
        ));
        // A request to the client, a notification, a priming event.
        assert!(!is_final_response(
            b"data: {\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"sampling/createMessage\"}\n\n"
        ));
        assert!(!is_final_response(
            b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n"
        ));
        assert!(!is_final_response(b"id: 0\nretry: 3000\ndata:\n\n"));
        assert!(!is_final_response(
            b"data: {\"jsonrpc\":\"2.0\",\"id\":\"x\\\"y\",\"result\":{}}"
        ));
    }
}
