//! `switchboard bench --wire`: a stdio client that checks every answer without building it.
//!
//! The rmcp client turns each answer into typed values (every cell of a 1,000-row result
//! becomes its own allocation, after serde has buffered the message to pick a variant of
//! the JSON-RPC enum), and on a large answer that costs more than the server's own work:
//! it would measure the client. This client still reads every byte as JSON (so a malformed
//! answer fails the run) and checks the answer's `id`, `error` and `isError`, but skips the
//! content instead of materialising it. Both servers of a comparison get the same client.

use std::{
    collections::HashMap,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::{Context, bail};
use serde::Deserialize;
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
        let initialize = serde_json::json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "switchboard-bench", "version": env!("CARGO_PKG_VERSION")}
            }
        });
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
        let frame = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\",\"params\":{params}}}\n"
        );
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
        let outcome = match serde_json::from_slice::<Answer>(&line) {
            Ok(Answer {
                id: Some(id),
                error: Some(error),
                ..
            }) => (id, Err(format!("protocol error: {error}"))),
            Ok(Answer {
                id: Some(id),
                result: Some(result),
                ..
            }) => (
                id,
                if result.is_error == Some(true) {
                    Err("tool error (isError)".to_string())
                } else {
                    Ok(())
                },
            ),
            // Notifications and requests from the server need no answer from a benchmark.
            Ok(_) => continue,
            Err(e) => {
                let message = format!("protocol error: unparsable answer: {e}");
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
