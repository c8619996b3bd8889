//! Newline-delimited JSON-RPC decoding as stdio runs it: rmcp's `AsyncRwTransport`, which the
//! stdio upstream connector (client role) and `serve --stdio` (server role) read with, over
//! bytes a peer controls. The input arrives in small reads, and `receive` is cancelled
//! mid-line, as the service loop's `select!` does. Whatever the bytes, it must not panic or
//! loop, and must yield exactly the messages of the complete lines that fit the line limit
//! and parse, in order: nothing lost at a read boundary or a cancellation, nothing from an
//! oversized or unterminated line.
#![no_main]

use std::{
    future::Future,
    io,
    pin::{Pin, pin},
    task::{Context, Poll, Waker},
};

use libfuzzer_sys::fuzz_target;
use rmcp::{
    RoleClient, RoleServer,
    service::{RxJsonRpcMessage, ServiceRole},
    transport::{Transport, async_rw::AsyncRwTransport},
};
use serde_json::Value;
use tokio::io::{AsyncRead, ReadBuf};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A pipe that delivers at most `step` bytes per read and is not ready every other read.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    step: usize,
    ready: bool,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.ready = !self.ready;
        if !self.ready {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = self
            .step
            .min(buf.remaining())
            .min(self.data.len() - self.at);
        buf.put_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

/// Every message the transport yields, as JSON. With `cancel`, each `receive` that is not
/// ready at once is dropped and started again.
fn receive_all<R: ServiceRole>(
    data: &[u8],
    step: usize,
    max_line: usize,
    cancel: bool,
) -> Vec<Value> {
    let pipe = Trickle {
        data: data.to_vec(),
        at: 0,
        step,
        ready: false,
    };
    let mut transport =
        AsyncRwTransport::<R, _, _>::new(pipe, tokio::io::sink()).with_max_line_length(max_line);
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    // Every second read delivers at least one byte or reports the end, so this terminates;
    // the bound turns a livelock into a failure instead of a hang.
    for _ in 0..(4 * data.len() + 16) {
        let mut receive = pin!(transport.receive());
        let message = loop {
            match receive.as_mut().poll(&mut cx) {
                Poll::Ready(message) => break Some(message),
                Poll::Pending if cancel => break None,
                Poll::Pending => {}
            }
        };
        match message {
            Some(Some(message)) => out.push(serde_json::to_value(&message).expect("serialisable")),
            Some(None) => return out,
            None => {} // Cancelled; the partial line must survive in the transport.
        }
    }
    panic!(
        "the transport did not reach the end of {} bytes",
        data.len()
    );
}

/// The specification: complete lines within the limit (terminator included), without `\r`
/// and BOM, that parse as the role's incoming message.
fn expected<R: ServiceRole>(data: &[u8], max_line: usize) -> Vec<Value> {
    let mut lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    lines.pop(); // Unterminated at the end of the stream.
    lines
        .into_iter()
        .filter(|line| line.len() < max_line)
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = line.strip_prefix(BOM).unwrap_or(line);
            let message = serde_json::from_slice::<RxJsonRpcMessage<R>>(line).ok()?;
            Some(serde_json::to_value(&message).expect("serialisable"))
        })
        .collect()
}

fn check<R: ServiceRole>(data: &[u8], step: usize, max_line: usize, cancel: bool) {
    assert_eq!(
        receive_all::<R>(data, step, max_line, cancel),
        expected::<R>(data, max_line),
        "step {step}, max line {max_line}, cancel {cancel}"
    );
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the read size, the role, the line limit and cancellation.
    let Some((&control, body)) = data.split_first() else {
        return;
    };
    let step = 1 + usize::from(control & 0x0f);
    let max_line = if control & 0x10 == 0 { 64 } else { 1 << 20 };
    let cancel = control & 0x20 != 0;
    if control & 0x40 == 0 {
        check::<RoleClient>(body, step, max_line, cancel);
    } else {
        check::<RoleServer>(body, step, max_line, cancel);
    }
});
