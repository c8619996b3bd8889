//! The stdio connector against the real binary: connect, use, shut down, and no process of
//! the upstream's group is left.

use rmcp::model::ClientConfig;
use switchboard_transport::{ConnectOptions, Upstream, upstream::process_group_alive};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

#[tokio::test]
async fn stdio_upstream_connects_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pid_file = tmp.path().join("pid");
    // `exec` keeps the shell's pid, which is the process group id of the upstream.
    let script = format!(
        "echo $$ > '{}'; exec '{}' server fs --root '{}'",
        pid_file.display(),
        BIN,
        tmp.path().display()
    );
    let upstream = Upstream::stdio("sh", vec!["-c".into(), script]);
    let client = switchboard_transport::connect(
        &upstream,
        ClientConfig::default(),
        &ConnectOptions {
            name: "fs".into(),
            ..ConnectOptions::default()
        },
    )
    .await
    .expect("connect over stdio");
    let tools = client.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|t| t.name == "read_text_file"));
    let pgid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(process_group_alive(pgid));
    switchboard_transport::shutdown(client)
        .await
        .expect("shutdown");
    assert!(
        !process_group_alive(pgid),
        "the upstream's group outlived shutdown"
    );
}

#[test]
fn upstream_config_deserialises() {
    let stdio: Upstream = serde_json::from_str(
        r#"{"transport": "stdio", "command": "mcp-server", "args": ["--x"], "env": {"A": "1"}}"#,
    )
    .expect("stdio");
    match stdio {
        Upstream::Stdio {
            env_allowlist, env, ..
        } => {
            assert!(env_allowlist.contains(&"PATH".to_string()));
            assert_eq!(env.get("A").map(String::as_str), Some("1"));
        }
        other => panic!("{other:?}"),
    }
    let sse: Upstream =
        serde_json::from_str(r#"{"transport": "sse", "url": "http://127.0.0.1:1/sse"}"#)
            .expect("sse");
    assert!(matches!(sse, Upstream::Sse { .. }));
    let http: Upstream = serde_json::from_str(
        r#"{"transport": "http", "url": "http://127.0.0.1:1/mcp", "headers": {"Authorization": "Bearer x"}}"#,
    )
    .expect("http");
    assert!(matches!(http, Upstream::Http { .. }));
}
