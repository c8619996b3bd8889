//! `switchboard tools` / `switchboard call` against the real binary: over stdio (a command
//! after `--`) and against one `--transport all` server through both `/mcp` and `/sse`.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Output, Stdio},
};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

fn switchboard<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run switchboard")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn tools_and_call_over_stdio() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_str().expect("utf-8 path");
    let server = ["--", BIN, "server", "fs", "--root", root];
    let with = |head: &[&'static str]| -> Vec<String> {
        head.iter()
            .chain(server.iter())
            .map(|s| s.to_string())
            .collect()
    };

    let listed = switchboard(&with(&["tools"]));
    assert!(listed.status.success(), "{listed:?}");
    assert!(
        stdout(&listed)
            .lines()
            .any(|l| l.starts_with("read_text_file\t")),
        "{listed:?}"
    );

    let json = switchboard(&with(&["tools", "--json"]));
    let tools: Value = serde_json::from_slice(&json.stdout).expect("JSON tool list");
    assert!(
        tools
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "write_file"))
    );

    let written = switchboard(&with(&[
        "call",
        "write_file",
        r#"{"path": "note.txt", "content": "from the cli"}"#,
    ]));
    assert!(written.status.success(), "{written:?}");
    let read = switchboard(&with(&[
        "call",
        "read_text_file",
        r#"{"path": "note.txt"}"#,
    ]));
    assert!(read.status.success(), "{read:?}");
    let text = stdout(&read);
    assert!(text.contains("from the cli"), "{text}");
    assert!(text.contains("structured content:"), "{text}");

    // A tool error: printed and marked, and the exit status says so.
    let escape = switchboard(&with(&[
        "call",
        "read_text_file",
        r#"{"path": "../../etc/passwd"}"#,
    ]));
    assert!(!escape.status.success(), "{escape:?}");
    assert!(stdout(&escape).contains("[isError]"), "{escape:?}");

    // Bad arguments fail before connecting.
    let bad = switchboard(&with(&["call", "read_text_file", "not json"]));
    assert!(!bad.status.success());
}

/// A `server fs --transport all` child with its base URL; killed on drop.
struct Served {
    child: Child,
    base: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_all(root: &str) -> Served {
    let mut child = Command::new(BIN)
        .args([
            "server",
            "fs",
            "--transport",
            "all",
            "--listen",
            "127.0.0.1:0",
            "--root",
            root,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut urls = Vec::new();
    while urls.len() < 2 {
        let line = lines
            .next()
            .expect("server exited early")
            .expect("read stderr");
        if let Some(url) = line.strip_prefix("listening on ") {
            urls.push(url.trim().to_owned());
        }
    }
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    assert!(urls.iter().any(|u| u.ends_with("/mcp")), "{urls:?}");
    assert!(urls.iter().any(|u| u.ends_with("/sse")), "{urls:?}");
    let base = urls[0].rsplit_once('/').expect("path").0.to_owned();
    Served { child, base }
}

#[test]
fn transport_all_serves_both_urls() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_str().expect("utf-8 path");
    std::fs::write(tmp.path().join("seed.txt"), "seeded").expect("seed");
    let served = serve_all(root);
    let mcp = format!("{}/mcp", served.base);
    let sse = format!("{}/sse", served.base);

    for url in [&mcp, &sse] {
        let listed = switchboard(&["tools", url]);
        assert!(listed.status.success(), "{url}: {listed:?}");
        assert!(stdout(&listed).contains("read_text_file"), "{url}");
        let read = switchboard(&["call", url, "read_text_file", r#"{"path": "seed.txt"}"#]);
        assert!(read.status.success(), "{url}: {read:?}");
        assert!(stdout(&read).contains("seeded"), "{url}");
    }
    // Forcing the transport: the /sse URL spoken to as legacy SSE explicitly, and the modern
    // handshake on /mcp.
    let forced = switchboard(&["tools", "--transport", "sse", &sse]);
    assert!(forced.status.success(), "{forced:?}");
    let modern = switchboard(&[
        "call",
        "--era",
        "discover",
        "--json",
        &mcp,
        "list_allowed_directories",
    ]);
    assert!(modern.status.success(), "{modern:?}");
    let result: Value = serde_json::from_slice(&modern.stdout).expect("JSON result");
    assert!(result.get("content").is_some(), "{result}");
}
