//! `switchboard config import|check` on the real binary.

mod common;

use common::BIN;

fn switchboard(args: &[&str], cwd: &std::path::Path) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run switchboard")
}

#[test]
fn import_then_check_and_serve_refuses_bad_keys_with_the_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        tmp.path().join("claude.json"),
        r#"{"mcpServers": {
            "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "."]},
            "remote": {"url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": "Bearer s3cret"}}
        }}"#,
    )
    .expect("json");
    let import = switchboard(
        &[
            "config",
            "import",
            "claude.json",
            "--output",
            "gateway.toml",
        ],
        tmp.path(),
    );
    assert!(import.status.success(), "{import:?}");
    let again = switchboard(
        &[
            "config",
            "import",
            "claude.json",
            "--output",
            "gateway.toml",
        ],
        tmp.path(),
    );
    assert!(!again.status.success(), "must not overwrite");

    let check = switchboard(&["config", "check", "gateway.toml"], tmp.path());
    assert!(check.status.success(), "{check:?}");
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(out.contains("2 upstreams, valid"), "{out}");
    assert!(out.contains("stdio npx"), "{out}");
    assert!(
        !out.contains("s3cret"),
        "secrets must not be printed: {out}"
    );

    std::fs::write(
        tmp.path().join("bad.toml"),
        "[[upstream]]\nname = \"a\"\nbuiltin = { server = \"echo\" }\ntimeout = 3\n",
    )
    .expect("bad");
    for args in [
        &["config", "check", "bad.toml"][..],
        &["serve", "--config", "bad.toml", "--listen", "127.0.0.1:0"][..],
    ] {
        let out = switchboard(args, tmp.path());
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("line 4") && err.contains("timeout"), "{err}");
    }
}
