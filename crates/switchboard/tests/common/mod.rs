//! Helpers shared by the binary's integration tests: start the real `switchboard` on an
//! ephemeral loopback port, connect rmcp's client, call tools.

#![allow(dead_code)]

use std::{path::Path, process::Stdio};

use rmcp::{
    RoleClient, ServiceExt,
    model::{CallToolRequestParams, CallToolResult, ClientConfig},
    service::RunningService,
    transport::StreamableHttpClientTransport,
};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

pub const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// A running `switchboard` child (killed on drop) and where it listens.
pub struct Listening {
    pub child: tokio::process::Child,
    /// `http://ADDR`
    pub base: String,
    /// `http://ADDR/mcp`
    pub mcp: String,
}

/// Starts `switchboard ARGS` in `cwd` and waits for its `listening on http://ADDR/mcp` line.
/// Its later stderr is echoed (shown with a failing test's output) and always drained, so the
/// child never blocks on a full pipe.
pub async fn spawn_listening(args: &[&str], cwd: &Path) -> Listening {
    spawn_listening_with(args, cwd, |_| {}).await
}

/// [`spawn_listening`] in a process group of its own (its pid is the group id), so a test
/// can check that no process of that group outlives it.
pub async fn spawn_listening_in_own_group(args: &[&str], cwd: &Path) -> Listening {
    spawn_listening_with(args, cwd, |command| {
        command.process_group(0);
    })
    .await
}

pub async fn spawn_listening_with(
    args: &[&str],
    cwd: &Path,
    configure: impl FnOnce(&mut tokio::process::Command),
) -> Listening {
    let mut command = tokio::process::Command::new(BIN);
    command
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    configure(&mut command);
    let mut child = command.spawn().expect("spawn switchboard");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let base = loop {
        match lines.next_line().await.expect("read stderr") {
            Some(line) => {
                if let Some(base) = line
                    .strip_prefix("listening on ")
                    .and_then(|rest| rest.trim().strip_suffix("/mcp"))
                {
                    break base.to_string();
                }
            }
            None => panic!("switchboard {args:?} exited before listening"),
        }
    };
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("switchboard: {line}");
        }
    });
    Listening {
        child,
        mcp: format!("{base}/mcp"),
        base,
    }
}

/// A session-era rmcp client on a Streamable HTTP URL.
pub async fn client(url: &str) -> RunningService<RoleClient, ClientConfig> {
    ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_uri(url.to_string()))
        .await
        .expect("connect")
}

/// The JSON object `value` as tool arguments.
pub fn args(value: Value) -> serde_json::Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// Calls a tool; a protocol-level failure fails the test.
pub async fn call(
    client: &RunningService<RoleClient, ClientConfig>,
    tool: &str,
    arguments: Value,
) -> CallToolResult {
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args(arguments)))
        .await
        .unwrap_or_else(|e| panic!("{tool}: protocol error {e}"))
}

/// The pid a wrapper script wrote to `file` (`sh -c 'echo $$ > FILE; exec …'`).
pub fn pid_in(file: &Path) -> i32 {
    std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .trim()
        .parse()
        .expect("a pid")
}

/// Whether process `pid` exists and is not a zombie (a zombie is dead, only not yet reaped).
pub fn alive(pid: i32) -> bool {
    rustix::process::Pid::from_raw(pid)
        .is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.contains(") Z "))
}

/// Makes a FIFO at `path`. Tests use one to hold a call in flight: an upstream that opens it
/// for reading blocks until the test opens it for writing.
pub fn make_fifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Upstream `name`'s entry in the gateway's `GET /api/status`.
pub async fn upstream_status(base: &str, name: &str) -> Value {
    let status: Value = reqwest::get(format!("{base}/api/status"))
        .await
        .expect("GET /api/status")
        .json()
        .await
        .expect("status JSON");
    status["upstreams"]
        .as_array()
        .and_then(|all| all.iter().find(|u| u["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no upstream {name} in {status}"))
}
