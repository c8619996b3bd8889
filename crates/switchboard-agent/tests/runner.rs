//! The real runner against an OpenAI-compatible fixture on loopback and the real built-in
//! servers (mounted in-process). The fixture replays a scripted conversation, records every
//! request, and the tests assert on what it received: tool schemas, tool results, turn order.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Value, json};
use switchboard_agent::{
    Agent, AgentError, ApprovalDecision, ApprovalReason, ModelConfig, ModelSettings, RetryPolicy,
    RunConfig, RunEvent, RunItem, Runner, Source, ToolOutcome, ToolUseBehavior,
    scripted::{Dynamic, Reply, ScriptedModel, calls, text, tool_messages},
    tools::{TOOL_ERROR_PREFIX, TOOL_REFUSED_PREFIX},
};
use switchboard_gateway::config::BuiltinServer;

async fn start(replies: Vec<Reply>) -> (String, Arc<ScriptedModel>) {
    ScriptedModel::start(replies)
        .await
        .unwrap_or_else(|e| panic!("scripted model: {e}"))
}

fn runner(base_url: &str, config: RunConfig) -> Runner {
    let mut model = ModelConfig::new(base_url, "test-key");
    // Fast, not timed: the tests never assert on durations.
    model.retry = RetryPolicy {
        max_retries: 2,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(1),
    };
    Runner::new(model, config).unwrap_or_else(|e| panic!("runner: {e}"))
}

fn sql_agent(dir: &Path) -> Agent {
    Agent::new("data-analyst", "You are a data analyst. Use the sql tools.")
        .with_model("scripted")
        .with_source(Source::Builtin {
            name: "sql".into(),
            server: BuiltinServer::Sql {
                url: None,
                demo_db: Some(dir.join("demo.db")),
                allow_writes: false,
            },
        })
}

const HIGHEST: &str = "SELECT c.name, SUM(o.amount) AS total FROM customers c \
                       JOIN orders o ON o.customer_id = c.id GROUP BY c.id ORDER BY total DESC LIMIT 1";

#[tokio::test]
async fn data_analyst_finds_the_customer_with_the_highest_total() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let answer_from_tool: Dynamic = Box::new(|request: &Value| {
        // Quote the row the real server returned.
        let tool = tool_messages(request)
            .first()
            .and_then(|m| m["content"].as_str().map(String::from))
            .unwrap_or_default();
        let name = if tool.contains("Trần Thị Bình") {
            "Trần Thị Bình"
        } else {
            "unknown"
        };
        text(&format!(
            "The top customer is {name} with 30000000 in orders."
        ))
    });
    let (url, fixture) = start(vec![
        Reply::Chunks(calls(&[("call_1", "sql__query", json!({"sql": HIGHEST}))])),
        Reply::Dynamic(answer_from_tool),
    ])
    .await;
    let result = runner(&url, RunConfig::default())
        .run(
            &sql_agent(dir.path()),
            "Tìm khách hàng nào có tổng giá trị đơn hàng cao nhất",
        )
        .await
        .unwrap_or_else(|e| panic!("run: {e}"));

    assert_eq!(
        result.final_output,
        "The top customer is Trần Thị Bình with 30000000 in orders."
    );
    assert_eq!(result.turns, 2);
    assert_eq!(result.usage.requests, 2);
    assert_eq!(result.usage.total_tokens, 46);
    let requests = fixture.requests();
    assert_eq!(requests.len(), 2);

    // Turn 1: system + user, the sql tools with valid names and object schemas, streaming.
    let first = &requests[0];
    assert_eq!(first["model"], "scripted");
    assert_eq!(first["stream"], true);
    assert_eq!(first["messages"][0]["role"], "system");
    assert_eq!(first["messages"][1]["role"], "user");
    let tools = first["tools"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = tools
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert!(names.contains(&"sql__query"), "{names:?}");
    assert!(names.contains(&"sql__list_tables"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.contains("execute")),
        "read-only server: {names:?}"
    );
    for name in &names {
        assert!(
            name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "{name}"
        );
    }
    let query = tools
        .iter()
        .find(|t| t["function"]["name"] == "sql__query")
        .cloned()
        .unwrap_or_default();
    assert_eq!(query["type"], "function");
    assert_eq!(query["function"]["parameters"]["type"], "object");
    assert!(query["function"]["parameters"]["properties"]["sql"].is_object());

    // Turn 2: the assistant's call, then the real row as the tool result, same id.
    let second = &requests[1];
    let assistant = &second["messages"][2];
    assert_eq!(assistant["role"], "assistant");
    assert_eq!(assistant["tool_calls"][0]["id"], "call_1");
    assert_eq!(assistant["tool_calls"][0]["function"]["name"], "sql__query");
    let fed = tool_messages(second);
    assert_eq!(fed.len(), 1);
    assert_eq!(fed[0]["tool_call_id"], "call_1");
    let content = fed[0]["content"].as_str().unwrap_or_default();
    assert!(
        content.contains("Trần Thị Bình") && content.contains("30000000"),
        "{content}"
    );

    // Items in order.
    assert!(matches!(&result.items[0], RunItem::ToolCall { name, .. } if name == "sql__query"));
    assert!(matches!(
        &result.items[1],
        RunItem::ToolOutput {
            outcome: ToolOutcome::Success,
            ..
        }
    ));
    assert!(matches!(&result.items[2], RunItem::Message { .. }));
    assert_eq!(result.trace.spans.len(), 3);
}

#[tokio::test]
async fn max_turns_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let (url, fixture) = start(vec![]).await;
    fixture.repeat_forever(calls(&[("c", "sql__list_tables", json!({}))]));
    let config = RunConfig {
        max_turns: 3,
        ..RunConfig::default()
    };
    let error = runner(&url, config)
        .run(&sql_agent(dir.path()), "loop forever")
        .await
        .err();
    assert!(
        matches!(error, Some(AgentError::MaxTurnsExceeded { max_turns: 3 })),
        "{error:?}"
    );
    assert_eq!(fixture.requests().len(), 3);
    assert_eq!(RunConfig::default().max_turns, 10);
    assert_eq!(RunConfig::default().tool_timeout, Duration::from_secs(60));
}

#[tokio::test]
async fn an_is_error_result_reaches_the_model_as_an_error() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let (url, fixture) = start(vec![
        Reply::Chunks(calls(&[(
            "bad",
            "sql__query",
            json!({"sql": "SELECT * FROM no_such_table"}),
        )])),
        Reply::Chunks(text("That table does not exist.")),
    ])
    .await;
    let result = runner(&url, RunConfig::default())
        .run(&sql_agent(dir.path()), "query a missing table")
        .await
        .unwrap_or_else(|e| panic!("run: {e}"));
    let fed = tool_messages(&fixture.requests()[1]);
    let content = fed[0]["content"].as_str().unwrap_or_default();
    assert!(content.starts_with(TOOL_ERROR_PREFIX), "{content}");
    assert!(content.contains("no_such_table"), "{content}");
    assert!(result.items.iter().any(|i| matches!(
        i,
        RunItem::ToolOutput {
            outcome: ToolOutcome::Error,
            ..
        }
    )));
}

#[tokio::test]
async fn a_denied_destructive_call_goes_back_as_refused() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let agent = Agent::new("crm-assistant", "CRM assistant.")
        .with_model("scripted")
        .with_source(Source::Builtin {
            name: "crm".into(),
            server: BuiltinServer::Crm {
                db: Some(format!("sqlite://{}", dir.path().join("crm.db").display())),
                demo: true,
            },
        });
    let (url, fixture) = start(vec![
        Reply::Chunks(calls(&[(
            "u1",
            "crm__update_contact",
            json!({"contact_id": "c-1", "status": "customer"}),
        )])),
        Reply::Chunks(text("I did not change the contact.")),
    ])
    .await;
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let config = RunConfig {
        approver: Some(Arc::new(move |request| {
            if let Ok(mut s) = seen.lock() {
                s.push((request.name.clone(), request.reason));
            }
            Box::pin(async {
                ApprovalDecision::Deny {
                    reason: Some("not today".into()),
                }
            })
        })),
        ..RunConfig::default()
    };
    let mut stream = runner(&url, config).run_streamed(&agent, "mark c-1 as customer");
    let mut events = Vec::new();
    while let Some(e) = stream.next_event().await {
        events.push(e);
    }
    let result = stream.finish().await.unwrap_or_else(|e| panic!("run: {e}"));
    assert_eq!(
        asked.lock().map(|a| a.clone()).unwrap_or_default(),
        vec![(
            "crm__update_contact".to_string(),
            ApprovalReason::DestructiveHint
        )]
    );
    let fed = tool_messages(&fixture.requests()[1]);
    let content = fed[0]["content"].as_str().unwrap_or_default();
    assert!(
        content.starts_with(TOOL_REFUSED_PREFIX) && content.contains("not today"),
        "{content}"
    );
    assert!(result.items.iter().any(|i| matches!(
        i,
        RunItem::ToolOutput {
            outcome: ToolOutcome::Refused,
            ..
        }
    )));
    assert!(events.contains(&RunEvent::ApprovalResolved {
        call_id: "u1".into(),
        name: "crm__update_contact".into(),
        approved: false
    }));
    // A refused call never starts.
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, RunEvent::ToolCallStarted { .. }))
    );
}

#[tokio::test]
async fn parallel_tool_calls_run_and_return_in_order() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let agent = sql_agent(dir.path()).with_settings(ModelSettings {
        parallel_tool_calls: Some(true),
        temperature: Some(0.0),
        ..ModelSettings::new()
    });
    let (url, fixture) = start(vec![
        Reply::Chunks(calls(&[
            (
                "p1",
                "sql__query",
                json!({"sql": "SELECT count(*) AS n FROM customers"}),
            ),
            (
                "p2",
                "sql__query",
                json!({"sql": "SELECT sum(amount) AS revenue FROM orders"}),
            ),
        ])),
        Reply::Chunks(text("3 customers, 57500000 revenue.")),
    ])
    .await;
    let result = runner(&url, RunConfig::default())
        .run(&agent, "Tính tổng doanh thu")
        .await
        .unwrap_or_else(|e| panic!("run: {e}"));
    let requests = fixture.requests();
    assert_eq!(requests[0]["parallel_tool_calls"], true);
    assert_eq!(requests[0]["temperature"], 0.0);
    let fed = tool_messages(&requests[1]);
    assert_eq!(fed.len(), 2);
    assert_eq!(fed[0]["tool_call_id"], "p1");
    assert_eq!(fed[1]["tool_call_id"], "p2");
    assert!(
        fed[1]["content"]
            .as_str()
            .unwrap_or_default()
            .contains("57500000")
    );
    assert_eq!(result.final_output, "3 customers, 57500000 revenue.");
}

#[tokio::test]
async fn a_stream_failing_with_500_is_retried() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let (url, fixture) = start(vec![
        Reply::Status(500),
        Reply::Chunks(calls(&[("t1", "sql__list_tables", json!({}))])),
        Reply::Status(429),
        Reply::Chunks(text("There are two tables.")),
    ])
    .await;
    let mut stream =
        runner(&url, RunConfig::default()).run_streamed(&sql_agent(dir.path()), "tables?");
    let mut events = Vec::new();
    while let Some(e) = stream.next_event().await {
        events.push(e);
    }
    let result = stream.finish().await.unwrap_or_else(|e| panic!("run: {e}"));
    let requests = fixture.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(
        requests[0], requests[1],
        "the retry resends the same request"
    );
    assert_eq!(result.usage.requests, 2);
    let retries = events
        .iter()
        .filter(|e| matches!(e, RunEvent::ModelRetry { .. }))
        .count();
    assert_eq!(retries, 2);
    let streamed: String = events
        .iter()
        .filter_map(|e| match e {
            RunEvent::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(streamed, result.final_output);
    let started = events
        .iter()
        .position(|e| matches!(e, RunEvent::ToolCallStarted { .. }));
    let finished = events.iter().position(|e| {
        matches!(
            e,
            RunEvent::ToolCallFinished {
                outcome: ToolOutcome::Success,
                ..
            }
        )
    });
    assert!(
        matches!((started, finished), (Some(s), Some(f)) if s < f),
        "{events:?}"
    );
}

#[tokio::test]
async fn retries_are_bounded_and_4xx_is_not_retried() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let (url, fixture) = start(vec![
        Reply::Status(503),
        Reply::Status(503),
        Reply::Status(503),
    ])
    .await;
    let error = runner(&url, RunConfig::default())
        .run(&sql_agent(dir.path()), "x")
        .await
        .err();
    assert!(
        matches!(error, Some(AgentError::Model { attempts: 3, .. })),
        "{error:?}"
    );
    assert_eq!(fixture.requests().len(), 3);

    let (url, fixture) = start(vec![Reply::Status(400)]).await;
    let error = runner(&url, RunConfig::default())
        .run(&sql_agent(dir.path()), "x")
        .await
        .err();
    assert!(
        matches!(error, Some(AgentError::Model { attempts: 1, .. })),
        "{error:?}"
    );
    assert_eq!(fixture.requests().len(), 1);
}

#[tokio::test]
async fn stop_on_first_tool_and_filters() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let agent = sql_agent(dir.path())
        .with_tool_use_behavior(ToolUseBehavior::StopOnFirstTool)
        .with_tool_filter(
            switchboard_agent::ToolFilter::globs(&["sql__query".into()], &[])
                .unwrap_or_else(|e| panic!("{e}")),
        );
    let (url, fixture) = start(vec![Reply::Chunks(calls(&[(
        "s1",
        "sql__query",
        json!({"sql": "SELECT 42 AS answer"}),
    )]))])
    .await;
    let result = runner(&url, RunConfig::default())
        .run(&agent, "x")
        .await
        .unwrap_or_else(|e| panic!("run: {e}"));
    assert!(
        result.final_output.contains("42"),
        "{}",
        result.final_output
    );
    let requests = fixture.requests();
    assert_eq!(requests.len(), 1);
    let tools = requests[0]["tools"].as_array().cloned().unwrap_or_default();
    assert_eq!(tools.len(), 1);
}
