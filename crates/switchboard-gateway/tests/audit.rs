//! The audit layer through the real gateway stack, on a real SQLite store: an allowed call, a
//! call refused by policy, a tool error and an unknown tool each leave the right record, with
//! secrets redacted and the arguments' hash; the writer's group commit under concurrency; and
//! retention pruning. PostgreSQL storage is covered by the binary's crash test.

use std::sync::Arc;

use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use switchboard_audit::{
    Auditor, Decision, Filter, Outcome,
    record::{REDACTED, arguments_sha256},
};
use switchboard_gateway::{Gateway, GatewayConfig, GatewayError, auth::Identity};

struct Fixture {
    gateway: Arc<Gateway>,
    auditor: Arc<Auditor>,
    _dir: tempfile::TempDir,
}

async fn start(extra: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("files");
    std::fs::create_dir_all(&root).expect("root");
    let text = format!(
        r#"
[[upstream]]
name = "echo"
builtin = {{ server = "echo" }}
[[upstream]]
name = "fs"
builtin = {{ server = "fs", roots = ["{root}"] }}

[security.authorization]
default = "allow"
[[security.authorization.policy]]
subjects = ["mallory"]
deny = ["fs__*"]

[audit]
redact_keys = ["ssn"]
{extra}
[audit.redact_tools]
"echo__*" = ["message"]
"#,
        root = root.display()
    );
    let config = GatewayConfig::parse(&text).expect("config");
    let auditor = Auditor::open(&config.audit, dir.path())
        .await
        .expect("open audit")
        .expect("audit enabled");
    let gateway = Arc::new(Gateway::with_audit(config, Some(auditor.clone())).expect("gateway"));
    gateway.start().await.expect("start");
    Fixture {
        gateway,
        auditor,
        _dir: dir,
    }
}

fn who(subject: &str) -> Option<Arc<Identity>> {
    Some(Arc::new(Identity {
        subject: subject.into(),
        scopes: Vec::new(),
        roles: Vec::new(),
        key: Some(format!("{subject}-key")),
        anonymous: false,
    }))
}

fn request(tool: &str, arguments: Value) -> CallToolRequestParams {
    let mut request = CallToolRequestParams::new(tool.to_string());
    request.arguments = arguments.as_object().cloned();
    request
}

async fn all_records(auditor: &Auditor) -> Vec<switchboard_audit::AuditRecord> {
    let mut records = auditor.query(&Filter::default()).await.expect("query");
    records.reverse();
    records
}

#[tokio::test]
async fn allowed_denied_tool_error_and_unknown_calls_are_recorded() {
    let fx = start("").await;
    let gw = &fx.gateway;

    // Allowed: the answer arrives only after the record is committed.
    let arguments = json!({"message": "hello", "password": "hunter2", "ssn": "123"});
    gw.call_as(request("echo__echo", arguments.clone()), None, who("alice"))
        .await
        .expect("echo");
    // Denied by policy (refused before routing, so the refusal reveals nothing).
    let denied = gw
        .call_as(
            request("fs__read_text_file", json!({"path": "x"})),
            None,
            who("mallory"),
        )
        .await;
    assert!(matches!(denied, Err(GatewayError::Forbidden { .. })));
    // A tool error: the file does not exist.
    let missing = gw
        .call_as(
            request("fs__read_text_file", json!({"path": "missing.txt"})),
            None,
            who("alice"),
        )
        .await
        .expect("tool error is a result");
    assert!(matches!(
        missing,
        rmcp::model::CallToolResponse::Complete(ref r) if r.is_error == Some(true)
    ));
    // Unknown tool.
    let unknown = gw
        .call_as(request("nope__nothing", json!({})), None, who("alice"))
        .await;
    assert!(matches!(unknown, Err(GatewayError::UnknownTool(_))));
    // The gateway's own call.
    gw.call(
        "echo__echo",
        json!({"message": "self"}).as_object().cloned(),
    )
    .await
    .expect("own call");

    let records = all_records(&fx.auditor).await;
    assert_eq!(records.len(), 5, "{records:#?}");

    let allowed = &records[0];
    assert_eq!(allowed.identity, "alice");
    assert_eq!(allowed.client.as_deref(), Some("key:alice-key"));
    assert_eq!(allowed.tool, "echo__echo");
    assert_eq!(allowed.upstream.as_deref(), Some("echo"));
    assert_eq!(allowed.upstream_tool.as_deref(), Some("echo"));
    assert_eq!(allowed.decision, Decision::Allowed);
    assert_eq!(allowed.outcome, Outcome::Ok);
    assert_eq!(allowed.error, None);
    // Built-in secret key, configured key, per-tool field: all redacted.
    assert_eq!(
        allowed.arguments,
        json!({"message": REDACTED, "password": REDACTED, "ssn": REDACTED})
    );
    assert_eq!(
        allowed.arguments_sha256,
        arguments_sha256(arguments.as_object())
    );

    let denied = &records[1];
    assert_eq!(denied.identity, "mallory");
    assert_eq!(denied.tool, "fs__read_text_file");
    assert_eq!(denied.decision, Decision::Denied);
    assert_eq!(denied.outcome, Outcome::Error);
    assert!(
        denied
            .error
            .as_deref()
            .is_some_and(|e| e.contains("not permitted")),
        "{denied:?}"
    );
    assert_eq!(denied.arguments, json!({"path": "x"}));

    let tool_error = &records[2];
    assert_eq!(tool_error.decision, Decision::Allowed);
    assert_eq!(tool_error.outcome, Outcome::ToolError);
    assert_eq!(tool_error.upstream.as_deref(), Some("fs"));
    assert_eq!(tool_error.upstream_tool.as_deref(), Some("read_text_file"));

    let unknown = &records[3];
    assert_eq!(unknown.decision, Decision::Invalid);
    assert_eq!(unknown.upstream, None);

    let own = &records[4];
    assert_eq!(own.identity, "gateway");
    assert_eq!(own.client, None);

    // Filters: tool glob, identity, decision.
    let store = &fx.auditor;
    let by_tool = store
        .query(&Filter {
            tool: Some("fs__*".into()),
            ..Filter::default()
        })
        .await
        .expect("query");
    assert_eq!(by_tool.len(), 2);
    let denied_only = store
        .query(&Filter {
            decision: Some(Decision::Denied),
            ..Filter::default()
        })
        .await
        .expect("query");
    assert_eq!(denied_only.len(), 1);
    assert_eq!(denied_only[0].identity, "mallory");
    let alice = store
        .query(&Filter {
            identity: Some("alice".into()),
            limit: Some(1),
            ..Filter::default()
        })
        .await
        .expect("query");
    assert_eq!(alice.len(), 1);
    assert_eq!(alice[0].decision, Decision::Invalid, "newest first");

    fx.gateway.shutdown().await;
    fx.auditor.shutdown().await;
}

#[tokio::test]
async fn concurrent_calls_are_group_committed_and_each_recorded() {
    let fx = start("max_batch = 16").await;
    let calls = (0..200).map(|i| {
        let gateway = fx.gateway.clone();
        async move {
            gateway
                .call_as(
                    request("echo__echo", json!({"n": i, "message": "m"})),
                    None,
                    who("bob"),
                )
                .await
                .map(|_| i)
        }
    });
    let done = futures::future::join_all(calls).await;
    assert!(done.iter().all(Result::is_ok));
    let records = fx
        .auditor
        .query(&Filter {
            limit: Some(1000),
            ..Filter::default()
        })
        .await
        .expect("query");
    let mut seen: Vec<i64> = records
        .iter()
        .filter_map(|r| r.arguments.get("n").and_then(Value::as_i64))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..200).collect::<Vec<_>>());
    fx.gateway.shutdown().await;
    fx.auditor.shutdown().await;
}

#[tokio::test]
async fn pruning_deletes_only_old_records_and_a_closed_writer_fails_calls() {
    let fx = start("").await;
    let store = fx.auditor.store().clone();
    let now = chrono::Utc::now();
    let old = |days: i64, tool: &str| switchboard_audit::AuditRecord {
        id: None,
        time: now - chrono::Duration::days(days),
        identity: "x".into(),
        client: None,
        tool: tool.into(),
        upstream: None,
        upstream_tool: None,
        arguments_sha256: arguments_sha256(None),
        arguments: json!({}),
        decision: Decision::Allowed,
        outcome: Outcome::Ok,
        latency_ms: 1,
        error: None,
    };
    store
        .insert(&[old(40, "old"), old(10, "recent"), old(0, "now")])
        .await
        .expect("insert");
    let deleted = store
        .prune(now - chrono::Duration::days(30))
        .await
        .expect("prune");
    assert_eq!(deleted, 1);
    let left: Vec<String> = all_records(&fx.auditor)
        .await
        .into_iter()
        .map(|r| r.tool)
        .collect();
    assert_eq!(left, vec!["recent".to_string(), "now".to_string()]);

    // After shutdown no call is answered without its record.
    fx.auditor.shutdown().await;
    let refused = fx
        .gateway
        .call_as(
            request("echo__echo", json!({"message": "late"})),
            None,
            who("a"),
        )
        .await;
    assert!(
        matches!(refused, Err(GatewayError::AuditUnavailable { .. })),
        "{refused:?}"
    );
    fx.gateway.shutdown().await;
}
