//! `switchboard agent run` and `agent chat`, the real binary against a scripted
//! OpenAI-compatible endpoint on loopback: through a running `switchboard serve` gateway, with
//! a conversation's history kept across messages, and with no model endpoint configured.

mod common;

use std::process::Stdio;

use common::{BIN, spawn_listening};
use serde_json::{Value, json};
use switchboard_agent::scripted::{Dynamic, Reply, ScriptedModel, calls, text, tool_messages};
use tokio::io::AsyncWriteExt;

const HIGHEST: &str = "SELECT c.name, SUM(o.amount) AS total FROM customers c \
                       JOIN orders o ON o.customer_id = c.id GROUP BY c.id ORDER BY total DESC LIMIT 1";

/// An answer that quotes the customer the real `query` result named.
fn quote_top_customer() -> Dynamic {
    Box::new(|request: &Value| {
        let fed = tool_messages(request)
            .first()
            .and_then(|m| m["content"].as_str().map(String::from))
            .unwrap_or_default();
        let name = if fed.contains("Trần Thị Bình") {
            "Trần Thị Bình"
        } else {
            "nobody"
        };
        text(&format!("The top customer is {name}."))
    })
}

fn agent_command(cwd: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(BIN);
    command
        .current_dir(cwd)
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("SWITCHBOARD_AGENT_MODEL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// `switchboard agent run [EXTRA] --gateway MCP --base-url MODEL --model scripted --json TASK`;
/// fails the test unless it succeeds, and returns the printed `RunResult`.
async fn run_json(
    cwd: &std::path::Path,
    extra: &[&str],
    gateway: &str,
    model_url: &str,
    task: &str,
) -> Value {
    let output = agent_command(cwd)
        .args(["agent", "run"])
        .args(extra)
        .args([
            "--gateway",
            gateway,
            "--base-url",
            model_url,
            "--model",
            "scripted",
            "--json",
            task,
        ])
        .output()
        .await
        .expect("run the agent");
    assert!(
        output.status.success(),
        "agent run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("--json prints RunResult")
}

fn tool_names(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t["function"]["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn agent_run_uses_the_tools_of_a_running_gateway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let gateway = spawn_listening(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", data],
        dir.path(),
    )
    .await;
    let (model_url, model) = ScriptedModel::start(vec![
        Reply::Chunks(calls(&[("call_1", "sql__query", json!({"sql": HIGHEST}))])),
        Reply::Dynamic(quote_top_customer()),
    ])
    .await
    .expect("scripted model");

    let result = run_json(
        dir.path(),
        &["--agent", "data-analyst"],
        &gateway.mcp,
        &model_url,
        "Which customer has the highest total order value?",
    )
    .await;
    assert_eq!(result["final_output"], "The top customer is Trần Thị Bình.");
    assert_eq!(result["turns"], 2);

    let requests = model.requests();
    assert_eq!(requests.len(), 2, "one tool turn, one answer turn");
    // The gateway's aggregate catalog, under its names: every built-in server is there.
    let names = tool_names(&requests[0]);
    for expected in ["sql__query", "crm__search_contacts", "fs__read_text_file"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    let fed = tool_messages(&requests[1]);
    assert_eq!(fed.len(), 1);
    assert_eq!(fed[0]["tool_call_id"], "call_1");
    assert!(
        fed[0]["content"]
            .as_str()
            .is_some_and(|c| c.contains("Trần Thị Bình")),
        "the real row reached the model: {}",
        fed[0]
    );
}

#[tokio::test]
async fn agent_chat_keeps_the_conversation_across_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model_url, model) = ScriptedModel::start(vec![
        Reply::Chunks(calls(&[("call_1", "sql__query", json!({"sql": HIGHEST}))])),
        Reply::Dynamic(quote_top_customer()),
        Reply::Chunks(text("Yes, that was from the orders table.")),
    ])
    .await
    .expect("scripted model");

    let mut chat = agent_command(dir.path())
        .args([
            "agent",
            "chat",
            "--server",
            "builtin:sql",
            "--base-url",
            &model_url,
            "--model",
            "scripted",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("start agent chat");
    let mut stdin = chat.stdin.take().expect("stdin");
    stdin
        .write_all(b"Who spent most?\n/tools\nWas that from the orders table?\n")
        .await
        .expect("write the conversation");
    // EOF ends the chat.
    drop(stdin);
    let output = chat.wait_with_output().await.expect("chat ends at EOF");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "agent chat failed: {stderr}");
    assert!(
        stdout.contains("The top customer is Trần Thị Bình."),
        "{stdout}"
    );
    assert!(
        stdout.contains("Yes, that was from the orders table."),
        "{stdout}"
    );
    // Tool activity goes to stderr, and so does `/tools`.
    assert!(stderr.contains("→ sql__query"), "{stderr}");
    assert!(stderr.contains("  sql__describe_table"), "{stderr}");

    let requests = model.requests();
    assert_eq!(requests.len(), 3);
    // The second message is sent with the whole first exchange before it.
    let roles: Vec<&str> = requests[2]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["role"].as_str())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "tool", "assistant", "user"]
    );
    let messages = &requests[2]["messages"];
    assert_eq!(messages[1]["content"], "Who spent most?");
    assert_eq!(messages[4]["content"], "The top customer is Trần Thị Bình.");
    assert_eq!(messages[5]["content"], "Was that from the orders table?");
}

#[tokio::test]
async fn agent_without_a_model_endpoint_says_what_to_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = agent_command(dir.path())
        .args(["agent", "run", "--server", "builtin:sql", "hello"])
        .output()
        .await
        .expect("run the agent");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("OPENAI_BASE_URL"), "{stderr}");
    assert!(stderr.contains("OPENAI_API_KEY"), "{stderr}");
}

/// The agent reaches the CRM's REST API through the gateway's OpenAPI connector (issue 10):
/// `switchboard server crm` serves its REST API and OpenAPI document, the gateway wraps it as
/// the `crmrest` upstream, and the agent's `searchContacts` call returns the seeded contact.
#[tokio::test]
async fn agent_run_uses_a_rest_api_through_the_openapi_connector() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The CRM takes a fixed REST address: ask the OS for a free loopback port first.
    let rest_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let rest = format!("127.0.0.1:{rest_port}");
    let _crm = spawn_listening(
        &[
            "server",
            "crm",
            "--transport",
            "http",
            "--listen",
            "127.0.0.1:0",
            "--rest-listen",
            &rest,
        ],
        dir.path(),
    )
    .await;
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[audit]
enabled = false
[[upstream]]
name = "crmrest"
[upstream.openapi]
spec = "http://{rest}/api/openapi.json"
base_url = "http://{rest}"
exclude = {{ operation_ids = ["getOpenApiDocument"] }}
"#
        ),
    )
    .expect("write config");
    let config = config.display().to_string();
    let gateway = spawn_listening(
        &["serve", "--config", &config, "--listen", "127.0.0.1:0"],
        dir.path(),
    )
    .await;
    let quote_company: Dynamic = Box::new(|request: &Value| {
        let fed = tool_messages(request)
            .first()
            .and_then(|m| m["content"].as_str().map(String::from))
            .unwrap_or_default();
        text(if fed.contains("Nguyễn Văn Anh") {
            "Nguyễn Văn Anh works at Tech Solutions."
        } else {
            "Nobody found."
        })
    });
    let (model_url, model) = ScriptedModel::start(vec![
        Reply::Chunks(calls(&[(
            "call_1",
            "crmrest__searchContacts",
            json!({"query": "Tech Solutions"}),
        )])),
        Reply::Dynamic(quote_company),
    ])
    .await
    .expect("scripted model");

    let result = run_json(
        dir.path(),
        &[],
        &gateway.mcp,
        &model_url,
        "Who works at Tech Solutions?",
    )
    .await;
    assert_eq!(
        result["final_output"],
        "Nguyễn Văn Anh works at Tech Solutions."
    );
    let requests = model.requests();
    let names = tool_names(&requests[0]);
    assert!(
        names.iter().any(|n| n == "crmrest__searchContacts"),
        "{names:?}"
    );
    // The excluded operation is not offered to the model.
    assert!(!names.iter().any(|n| n == "crmrest__getOpenApiDocument"));
}
