//! Serving over a pair of byte streams (this process's stdin and stdout): rmcp reads the
//! lines, and we write the answers.
//!
//! rmcp's `AsyncRwTransport` encodes every outgoing message with `serde_json::to_writer`
//! into its frame buffer: one small write per token, and string escaping a byte at a time.
//! A 1,000-row SQL answer is ~270 KB (structured rows plus a text table of the same rows),
//! and serde_json's escaping alone was 17% of the SQL server's instructions per call. Here
//! each outgoing message is encoded by `sonic-rs` (the same serde data model, SIMD string
//! escaping, the same number formatting; tests compare it with serde_json) into one buffer,
//! and written whole. Reading stays rmcp's: its line framing, its limits, and its
//! `Invalid request` reply to well-formed JSON that is not a message.
//!
//! Both writers share the one output stream behind a fair async mutex, and each writes whole
//! lines under it, so messages never interleave.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use futures::future::BoxFuture;
use rmcp::{
    RoleServer,
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::{Transport, async_rw::AsyncRwTransport},
};
use serde::Serialize;
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    sync::Mutex,
};

/// The output stream, `None` once closed.
type SharedOutput<W> = Arc<Mutex<Option<W>>>;

/// Encodes `message` as one line of JSON (newline included) into `out`.
///
/// The output is the JSON serde_json would write for it (same escapes, same shortest
/// round-trip numbers), only faster on long strings.
pub fn encode_line<T: Serialize + ?Sized>(message: &T, out: &mut Vec<u8>) -> io::Result<()> {
    encode_json(message, out)?;
    out.push(b'\n');
    Ok(())
}

/// Encodes `message` as JSON into `out`, as [`encode_line`] does, without the newline: the
/// body of an HTTP answer ([`crate::direct`]).
pub fn encode_json<T: Serialize + ?Sized>(message: &T, out: &mut Vec<u8>) -> io::Result<()> {
    sonic_rs::to_writer(&mut *out, message).map_err(io::Error::other)
}

/// Writes `line` whole to `output` and flushes it.
async fn write_line<W: AsyncWrite + Unpin>(
    output: &SharedOutput<W>,
    line: &[u8],
) -> io::Result<()> {
    let mut guard = output.lock().await;
    let writer = guard
        .as_mut()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the transport is closed"))?;
    writer.write_all(line).await?;
    writer.flush().await
}

/// A server transport over `read` and `write`: rmcp's reader, our writer.
pub struct ServerStreamTransport<R, W>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin + 'static,
{
    inbound: AsyncRwTransport<RoleServer, R, RmcpWrites<W>>,
    output: SharedOutput<W>,
}

/// The buffer an answer starts in. It is not sized from earlier answers: sonic-rs reserves
/// six bytes per byte of a string before escaping it, so a large text (a SQL answer's table,
/// a file) grows any buffer to several times its size at once, and `realloc` copies the old
/// buffer's whole capacity. From a small start that copy is small; a buffer sized from the
/// previous 270 KB answer was copied whole on every call (3.5% of a 1,000-row call's
/// instructions), and one huge answer would have made every later small one allocate as much.
const INITIAL_LINE_CAPACITY: usize = 1024;

impl<R, W> ServerStreamTransport<R, W>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin + 'static,
{
    pub fn new(read: R, write: W) -> Self {
        let output = Arc::new(Mutex::new(Some(write)));
        Self {
            inbound: AsyncRwTransport::new_server(read, RmcpWrites::new(output.clone())),
            output,
        }
    }
}

impl<R, W> Transport<RoleServer> for ServerStreamTransport<R, W>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin + 'static,
{
    type Error = io::Error;

    // The send does not borrow the transport (the trait allows it to): several can be in
    // flight at once, as rmcp's service loop has them.
    #[allow(refining_impl_trait)]
    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static + use<R, W> {
        let output = self.output.clone();
        // rmcp runs each send in its own task: encoding there lets answers encode in
        // parallel, and only the write is one at a time.
        async move {
            let mut line = Vec::with_capacity(INITIAL_LINE_CAPACITY);
            encode_line(&item, &mut line)?;
            drop(item);
            write_line(&output, &line).await
        }
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleServer>>> + Send {
        self.inbound.receive()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        // rmcp's close drops its writer, which closed the stream; ours is shared, so it is
        // taken out (later sends fail with `NotConnected`) and shut down here.
        self.inbound.close().await?;
        let writer = self.output.lock().await.take();
        match writer {
            Some(mut writer) => writer.shutdown().await,
            None => Ok(()),
        }
    }
}

/// The writer rmcp's reader is given, for the replies it writes itself: it collects what
/// rmcp writes and, on flush, writes it whole to the shared output.
struct RmcpWrites<W> {
    output: SharedOutput<W>,
    pending: Vec<u8>,
    in_flight: Option<BoxFuture<'static, io::Result<()>>>,
}

impl<W> RmcpWrites<W> {
    fn new(output: SharedOutput<W>) -> Self {
        Self {
            output,
            pending: Vec::new(),
            in_flight: None,
        }
    }
}

impl<W: AsyncWrite + Send + Unpin + 'static> RmcpWrites<W> {
    /// Drives the write in flight, then starts one for what is pending, until both are done.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if let Some(write) = self.in_flight.as_mut() {
                let result = ready!(write.as_mut().poll(cx));
                self.in_flight = None;
                result?;
            }
            if self.pending.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let line = std::mem::take(&mut self.pending);
            let output = self.output.clone();
            self.in_flight = Some(Box::pin(async move { write_line(&output, &line).await }));
        }
    }
}

impl<W: AsyncWrite + Send + Unpin + 'static> AsyncWrite for RmcpWrites<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // rmcp's frame writer hands over whole frames and flushes after each message.
        self.get_mut().pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_drain(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The shared stream is shut down by the transport's `close`, not by this view of it.
        self.get_mut().poll_drain(cx)
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::{
        CallToolResult, ContentBlock, ErrorCode, NumberOrString, ServerJsonRpcMessage, ServerResult,
    };
    use serde_json::{Value, json};
    use tokio::io::{AsyncBufReadExt, BufReader};

    use super::*;

    /// Messages with everything escaping and number formatting meet: control characters,
    /// quotes, backslashes, line separators, non-ASCII text, and floats at their edges.
    fn awkward_answer(id: i64) -> ServerJsonRpcMessage {
        let text = "a\u{1}b\u{1f}\"\\\n\t\r\u{7f}\u{2028}\u{2029} é 漢字 😀 </script>";
        let floats = [
            0.1,
            1.0,
            -0.0,
            1e20,
            1e21,
            1e-7,
            5e-324,
            f64::MAX,
            25_000_000.0,
            123_456_789.125,
        ];
        let mut result = CallToolResult::success(vec![ContentBlock::text(text.repeat(50))]);
        result.structured_content = Some(json!({
            "rows": [[1, text, floats, null, true, u64::MAX, i64::MIN]],
            "nested": {"z": [], "a": {}, "m": {"k": "v"}},
        }));
        ServerJsonRpcMessage::response(
            ServerResult::CallToolResult(result),
            NumberOrString::Number(id),
        )
    }

    #[test]
    fn lines_are_what_serde_json_writes() {
        let message = awkward_answer(7);
        let mut ours = Vec::new();
        encode_line(&message, &mut ours).expect("encode");
        let mut theirs = serde_json::to_vec(&message).expect("serde_json");
        theirs.push(b'\n');
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs)
        );
    }

    type Read = tokio::io::ReadHalf<tokio::io::DuplexStream>;
    type Write = tokio::io::WriteHalf<tokio::io::DuplexStream>;

    /// The server side of a transport over an in-memory pipe, and the client's ends.
    fn pipe() -> (
        ServerStreamTransport<Read, Write>,
        Write,
        tokio::io::Lines<BufReader<Read>>,
    ) {
        let (server, client) = tokio::io::duplex(1 << 16);
        let (server_read, server_write) = tokio::io::split(server);
        let (client_read, client_write) = tokio::io::split(client);
        (
            ServerStreamTransport::new(server_read, server_write),
            client_write,
            BufReader::new(client_read).lines(),
        )
    }

    /// The next line the client reads, as JSON.
    async fn next_message(lines: &mut tokio::io::Lines<BufReader<Read>>) -> Value {
        let line = lines.next_line().await.expect("read").expect("a line");
        serde_json::from_str(&line).expect("each line is one message")
    }

    #[tokio::test]
    async fn concurrent_answers_arrive_whole_and_rmcp_replies_still_go_out() {
        let (mut transport, mut client_write, mut client_lines) = pipe();
        // Larger than the pipe's buffer, so every write is split and waits for the reader.
        let sends: Vec<_> = (0..8)
            .map(|id| transport.send(awkward_answer(id)))
            .collect();
        let writers = tokio::spawn(futures::future::try_join_all(sends));

        let mut ids = Vec::new();
        for _ in 0..8 {
            let value = next_message(&mut client_lines).await;
            assert_eq!(
                value,
                serde_json::to_value(awkward_answer(value["id"].as_i64().expect("id")))
                    .expect("value")
            );
            ids.push(value["id"].as_i64().expect("id"));
        }
        writers.await.expect("join").expect("every send succeeds");
        ids.sort_unstable();
        assert_eq!(ids, (0..8).collect::<Vec<_>>());

        // Well-formed JSON that is not a message: rmcp answers `Invalid request` itself,
        // through the shared output, then goes on to the next line.
        client_write
            .write_all(b"{\"not\":\"a message\"}\n{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
            .await
            .expect("write");
        let next = transport.receive().await.expect("the notification");
        assert!(matches!(next, rmcp::model::JsonRpcMessage::Notification(_)));
        let reply = next_message(&mut client_lines).await;
        assert_eq!(
            reply["error"]["code"],
            json!(ErrorCode::INVALID_REQUEST.0),
            "{reply}"
        );

        // Closing shuts the output: the client reads the end, and later sends fail plainly.
        transport.close().await.expect("close");
        assert!(client_lines.next_line().await.expect("read").is_none());
        let err = transport.send(awkward_answer(9)).await.expect_err("closed");
        assert_eq!(err.kind(), io::ErrorKind::NotConnected);
    }
}
