//! Test harness: a real MCP client talking to an `FsServer` over an in-process byte stream, so
//! every test goes through rmcp's framing, dispatch and schema handling, not a shortcut.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rmcp::{
    RoleClient, ServiceExt,
    model::{CallToolRequestParams, CallToolResult},
    service::RunningService,
};
use serde_json::{Value, json};
use switchboard_fs::{FsConfig, FsServer, Limits};

pub struct Harness {
    pub client: RunningService<RoleClient, ()>,
    /// Canonical path of the first root.
    pub root: PathBuf,
    _tmp: tempfile::TempDir,
}

/// A temporary directory with `root/` (the allowed directory) and `outside/secret.txt`.
pub fn layout() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(tmp.path().join("root")).expect("root");
    std::fs::create_dir(tmp.path().join("outside")).expect("outside");
    std::fs::write(tmp.path().join("outside/secret.txt"), "TOP SECRET").expect("secret");
    tmp
}

pub async fn start(tmp: tempfile::TempDir, read_only: bool, limits: Limits) -> Harness {
    let root = std::fs::canonicalize(tmp.path().join("root")).expect("canonical root");
    let server = FsServer::new(FsConfig {
        roots: vec![root.clone()],
        read_only,
        limits,
    })
    .expect("server");
    let (server_io, client_io) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        if let Ok(running) = server.serve(server_io).await {
            let _ = running.waiting().await;
        }
    });
    let client = ().serve(client_io).await.expect("client handshake");
    Harness {
        client,
        root,
        _tmp: tmp,
    }
}

pub async fn harness() -> Harness {
    start(layout(), false, Limits::default()).await
}

impl Harness {
    pub fn outside(&self) -> PathBuf {
        self.root.parent().expect("parent").join("outside")
    }

    pub fn path(&self, rel: &str) -> String {
        self.root.join(rel).display().to_string()
    }

    pub async fn call(&self, tool: &str, args: Value) -> CallToolResult {
        let Value::Object(arguments) = args else {
            panic!("arguments must be an object");
        };
        self.client
            .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments))
            .await
            .unwrap_or_else(|e| panic!("{tool} failed at the protocol level: {e}"))
    }

    /// Calls a tool that must succeed; returns its structured content.
    pub async fn ok(&self, tool: &str, args: Value) -> Value {
        let result = self.call(tool, args.clone()).await;
        assert_eq!(
            result.is_error,
            Some(false),
            "{tool}({args}) failed: {:?}",
            text(&result)
        );
        result.structured_content.unwrap_or(Value::Null)
    }

    /// Calls a tool that must fail with a tool error of `kind`; returns the message.
    pub async fn err(&self, tool: &str, args: Value, kind: &str) -> String {
        let result = self.call(tool, args.clone()).await;
        assert_eq!(
            result.is_error,
            Some(true),
            "{tool}({args}) should have failed but returned {:?}",
            text(&result)
        );
        let structured = result.structured_content.clone().unwrap_or(Value::Null);
        assert_eq!(
            structured["error"]["kind"],
            json!(kind),
            "{tool}({args}): wrong error kind: {structured}"
        );
        text(&result)
    }
}

pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}
