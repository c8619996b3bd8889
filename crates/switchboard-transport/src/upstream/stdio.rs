//! A stdio upstream: the server as a child process in its own process group.
//!
//! rmcp's `TokioChildProcess` signals only the child it spawned and its shutdown timeouts are
//! fixed, so a server that forks helpers (a shell wrapper, `npx`, a Python launcher) would
//! leave them running. Here the child leads a new process group (`process_group(0)`), and
//! shutdown follows the MCP stdio rules for the whole group:
//! 1. close the child's stdin (the server SHOULD exit on EOF);
//! 2. wait up to `stdin_grace` for the leader to exit;
//! 3. SIGTERM the group, wait up to `term_grace`;
//! 4. SIGKILL the group;
//! 5. reap the leader (no zombie), then SIGTERM/SIGKILL any group member that outlived it
//!    (no orphans).
//!
//! If the handle is dropped without a shutdown, the group is SIGKILLed and tokio reaps the
//! leader in the background. The child's stderr is forwarded line by line to `tracing`
//! (target `upstream`), bounded per line, and always drained so the child never blocks on a
//! full pipe.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Stdio,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use rmcp::{
    RoleClient,
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::{Transport, async_rw::AsyncRwTransport},
};
use rustix::process::{Pid, Signal, kill_process_group, test_kill_process_group};
use tokio::{
    io::AsyncReadExt,
    process::{Child, ChildStderr, ChildStdin, ChildStdout},
};

/// Children spawned by this process whose handle is still alive (not yet shut down or
/// dropped), for the gateway's metrics.
static LIVE_CHILDREN: AtomicUsize = AtomicUsize::new(0);

/// How many stdio upstream children this process is running now.
pub fn live_children() -> usize {
    LIVE_CHILDREN.load(Ordering::Relaxed)
}

/// How long each shutdown step may take; see the module docs for the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownTimeouts {
    /// Wait after closing stdin before SIGTERM. Default 2 s.
    pub stdin_grace: Duration,
    /// Wait after SIGTERM before SIGKILL. Default 2 s.
    pub term_grace: Duration,
}

impl Default for ShutdownTimeouts {
    fn default() -> Self {
        Self {
            stdin_grace: Duration::from_secs(2),
            term_grace: Duration::from_secs(2),
        }
    }
}

/// What the child is started with.
#[derive(Debug, Clone)]
pub struct StdioCommand {
    pub command: String,
    pub args: Vec<String>,
    /// Variables set for the child, on top of the allow-listed ones.
    pub env: BTreeMap<String, String>,
    /// Names of parent variables passed through; every other parent variable is withheld.
    pub env_allowlist: Vec<String>,
    pub cwd: Option<PathBuf>,
}

/// How the shutdown ended, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// The server exited after stdin closed.
    ExitedOnEof,
    /// It needed SIGTERM.
    Terminated,
    /// It needed SIGKILL.
    Killed,
}

/// A spawned child leading its own process group.
#[derive(Debug)]
pub struct ProcessGroupChild {
    child: Child,
    pgid: Pid,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    done: bool,
}

impl ProcessGroupChild {
    /// Spawns `spec` with piped stdio in a new process group; stderr goes to `tracing` under
    /// the upstream `name`, lines cut at `max_stderr_line` bytes.
    pub fn spawn(spec: &StdioCommand, name: &str, max_stderr_line: usize) -> std::io::Result<Self> {
        let mut command = tokio::process::Command::new(&spec.command);
        command.args(&spec.args).env_clear();
        for key in &spec.env_allowlist {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        command.envs(&spec.env);
        if let Some(cwd) = &spec.cwd {
            command.current_dir(cwd);
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = command.spawn()?;
        let pid = child
            .id()
            .and_then(|id| Pid::from_raw(id as i32))
            .ok_or_else(|| std::io::Error::other("the child exited before its pid was read"))?;
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(forward_stderr(stderr, name.to_owned(), max_stderr_line));
        }
        LIVE_CHILDREN.fetch_add(1, Ordering::Relaxed);
        if let Some(stdout) = &child.stdout {
            crate::widen_pipe(stdout);
        }
        Ok(Self {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            child,
            pgid: pid,
            done: false,
        })
    }

    /// The process group id (equal to the leader's pid).
    pub fn pgid(&self) -> i32 {
        self.pgid.as_raw_nonzero().get()
    }

    /// Takes the child's stdout and stdin (once) for the MCP transport.
    pub fn take_stdio(&mut self) -> Option<(ChildStdout, ChildStdin)> {
        Some((self.stdout.take()?, self.stdin.take()?))
    }

    /// Runs the shutdown sequence (module docs). Closing stdin is the caller's part when it
    /// took the pipes; any stdin still held here is closed first.
    pub async fn shutdown(
        mut self,
        timeouts: ShutdownTimeouts,
    ) -> std::io::Result<ShutdownOutcome> {
        drop(self.stdin.take());
        drop(self.stdout.take());
        let mut outcome = ShutdownOutcome::ExitedOnEof;
        if tokio::time::timeout(timeouts.stdin_grace, self.child.wait())
            .await
            .is_err()
        {
            outcome = ShutdownOutcome::Terminated;
            self.signal_group(Signal::TERM);
            if tokio::time::timeout(timeouts.term_grace, self.child.wait())
                .await
                .is_err()
            {
                outcome = ShutdownOutcome::Killed;
                self.signal_group(Signal::KILL);
            }
        }
        // Reaps the leader (immediately if one of the waits above already did).
        self.child.wait().await?;
        // Members that outlived the leader keep the group id alive, so it cannot have been
        // reused yet; give them the same TERM-then-KILL treatment.
        if self.group_alive() {
            self.signal_group(Signal::TERM);
            let deadline = tokio::time::Instant::now() + timeouts.term_grace;
            while self.group_alive() && tokio::time::Instant::now() < deadline {
                // Not our children, so there is nothing to wait on: poll the group.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if self.group_alive() {
                self.signal_group(Signal::KILL);
            }
        }
        self.done = true;
        Ok(outcome)
    }

    fn group_alive(&self) -> bool {
        test_kill_process_group(self.pgid).is_ok()
    }

    fn signal_group(&self, signal: Signal) {
        if let Err(err) = kill_process_group(self.pgid, signal)
            && err != rustix::io::Errno::SRCH
        {
            tracing::warn!(target: "upstream", pgid = self.pgid(), %err, ?signal, "could not signal the upstream process group");
        }
    }
}

/// Whether any process of group `pgid` still exists (zombies count until reaped).
pub fn process_group_alive(pgid: i32) -> bool {
    Pid::from_raw(pgid).is_some_and(|pid| test_kill_process_group(pid).is_ok())
}

impl Drop for ProcessGroupChild {
    fn drop(&mut self) {
        LIVE_CHILDREN.fetch_sub(1, Ordering::Relaxed);
        if !self.done {
            // No orderly shutdown happened: do not leave the group running. tokio reaps the
            // killed leader in the background.
            self.signal_group(Signal::KILL);
        }
    }
}

async fn forward_stderr(mut stderr: ChildStderr, name: String, max_line: usize) {
    let mut line: Vec<u8> = Vec::new();
    let mut truncated = false;
    let mut chunk = [0u8; 4096];
    let emit = |line: &[u8], truncated: bool| {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        tracing::info!(target: "upstream", upstream = %name, truncated, "{text}");
    };
    loop {
        let n = match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &byte in &chunk[..n] {
            if byte == b'\n' {
                emit(&line, truncated);
                line.clear();
                truncated = false;
            } else if line.len() < max_line {
                line.push(byte);
            } else {
                truncated = true;
            }
        }
    }
    if !line.is_empty() {
        emit(&line, truncated);
    }
}

/// rmcp's newline-delimited JSON-RPC transport over the child's pipes, which runs the group
/// shutdown when rmcp closes the transport (on `cancel()`, or when the server goes away).
pub(crate) struct StdioUpstreamTransport {
    inner: AsyncRwTransport<RoleClient, ChildStdout, ChildStdin>,
    child: Option<ProcessGroupChild>,
    timeouts: ShutdownTimeouts,
}

impl StdioUpstreamTransport {
    pub(crate) fn new(
        mut child: ProcessGroupChild,
        max_line_bytes: usize,
        timeouts: ShutdownTimeouts,
    ) -> std::io::Result<Self> {
        let (stdout, stdin) = child
            .take_stdio()
            .ok_or_else(|| std::io::Error::other("the child's pipes were already taken"))?;
        Ok(Self {
            inner: AsyncRwTransport::new_client(stdout, stdin).with_max_line_length(max_line_bytes),
            child: Some(child),
            timeouts,
        })
    }
}

impl Transport<RoleClient> for StdioUpstreamTransport {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        self.inner.receive()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        // Closing rmcp's writer closes the child's stdin: step 1 of the sequence.
        self.inner.close().await?;
        if let Some(child) = self.child.take() {
            let pgid = child.pgid();
            let outcome = child.shutdown(self.timeouts).await?;
            tracing::debug!(target: "upstream", pgid, ?outcome, "stdio upstream stopped");
        }
        Ok(())
    }
}
