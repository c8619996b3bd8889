//! The CRM through its real front ends: MCP over an in-process duplex pipe (rmcp client
//! against rmcp server) and the REST API over loopback HTTP, on both engines.

mod common;

use std::collections::{BTreeSet, HashSet};

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use serde_json::{Value, json};
use switchboard_crm::{CrmServer, CrmStore, openapi_document, rest_router};

type Client = rmcp::service::RunningService<rmcp::RoleClient, ()>;

async fn call(client: &Client, tool: &'static str, args: Value) -> CallToolResult {
    let args = args.as_object().cloned().expect("arguments are an object");
    client
        .call_tool(CallToolRequestParams::new(tool).with_arguments(args))
        .await
        .unwrap_or_else(|err| panic!("{tool} failed at the protocol level: {err}"))
}

/// The structured content of a successful call, after checking it also has text.
async fn ok(client: &Client, tool: &'static str, args: Value) -> Value {
    let result = call(client, tool, args).await;
    assert_eq!(result.is_error, Some(false), "{tool}: {result:?}");
    let text = result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone());
    assert!(
        text.is_some_and(|t| !t.is_empty()),
        "{tool} has a text rendering"
    );
    result.structured_content.expect("structured content")
}

/// The error kind of a failed call, and its structured error.
async fn err(client: &Client, tool: &'static str, args: Value) -> (String, Value) {
    let result = call(client, tool, args).await;
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool} should fail: {result:?}"
    );
    let error = result.structured_content.expect("structured error")["error"].clone();
    (error["kind"].as_str().unwrap_or_default().to_owned(), error)
}

async fn every_tool_over_mcp(store: &CrmStore) {
    let (server_half, client_half) = tokio::io::duplex(64 * 1024);
    let server = CrmServer::new(store.clone());
    let server_task = tokio::spawn(async move {
        let running = server.serve(server_half).await.expect("server starts");
        let _ = running.waiting().await;
    });
    let client: Client = ().serve(client_half).await.expect("client connects");

    let tools = client.list_all_tools().await.expect("tools/list");
    let names: BTreeSet<String> = tools.iter().map(|t| t.name.to_string()).collect();
    let expected: BTreeSet<String> = [
        "search_contacts",
        "get_contact_details",
        "create_contact",
        "update_contact",
        "create_opportunity",
        "update_opportunity_stage",
        "list_opportunities",
        "add_contact_note",
        "update_contact_notes",
        "log_interaction",
        "pipeline_summary",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(names, expected);
    for tool in &tools {
        assert!(
            tool.output_schema.is_some(),
            "{} has an outputSchema",
            tool.name
        );
        let annotations = tool.annotations.as_ref().expect("annotations");
        assert!(annotations.read_only_hint.is_some() && annotations.destructive_hint.is_some());
        assert!(annotations.idempotent_hint.is_some());
    }
    let read_only: BTreeSet<&str> = tools
        .iter()
        .filter(|t| t.annotations.as_ref().and_then(|a| a.read_only_hint) == Some(true))
        .map(|t| t.name.as_ref())
        .collect();
    assert_eq!(
        read_only,
        BTreeSet::from([
            "search_contacts",
            "get_contact_details",
            "list_opportunities",
            "pipeline_summary"
        ])
    );

    // The seeded demo data, found the way the tutorial's agent found it.
    let page = ok(&client, "search_contacts", json!({"query": "Tech"})).await;
    assert_eq!(page["contacts"][0]["name"], "Nguyễn Văn Anh");
    let anh_id = page["contacts"][0]["id"].as_str().expect("id").to_owned();
    let details = ok(
        &client,
        "get_contact_details",
        json!({"contact_id": anh_id}),
    )
    .await;
    assert_eq!(
        details["opportunities"][0]["title"],
        "AI Consulting Project"
    );

    let created = ok(&client, "create_contact", json!({"name": "Phạm Minh", "email": "minh@example.vn", "company": "Saigon Labs", "idempotency_key": "mcp-1"})).await;
    let again = ok(&client, "create_contact", json!({"name": "Phạm Minh", "email": "minh@example.vn", "company": "Saigon Labs", "idempotency_key": "mcp-1"})).await;
    assert_eq!(created, again);
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(
        err(
            &client,
            "create_contact",
            json!({"name": "X", "email": "nope"})
        )
        .await
        .0,
        "invalid_email"
    );
    assert_eq!(
        err(
            &client,
            "create_contact",
            json!({"name": "X", "email": "MINH@example.vn"})
        )
        .await
        .0,
        "conflict"
    );

    let updated = ok(
        &client,
        "update_contact",
        json!({"contact_id": id, "version": 1, "status": "active"}),
    )
    .await;
    assert_eq!(updated["version"], 2);
    let (kind, error) = err(
        &client,
        "update_contact",
        json!({"contact_id": id, "version": 1, "status": "churned"}),
    )
    .await;
    assert_eq!(kind, "version_conflict");
    assert_eq!(error["details"]["current_version"], 2);
    assert_eq!(error["details"]["current"]["status"], "active");

    let opp = ok(
        &client,
        "create_opportunity",
        json!({"contact_id": id, "title": "Pilot", "value": "2500.75", "currency": "EUR"}),
    )
    .await;
    assert_eq!(opp["value"], "2500.75");
    // JSON numbers are accepted too (as in the seed tutorial).
    let number = ok(
        &client,
        "create_opportunity",
        json!({"contact_id": id, "title": "Numeric", "value": 50000}),
    )
    .await;
    assert_eq!(number["value"], "50000");
    assert_eq!(
        err(
            &client,
            "create_opportunity",
            json!({"contact_id": id, "title": "Neg", "value": "-1"})
        )
        .await
        .0,
        "invalid_value"
    );
    assert_eq!(
        err(
            &client,
            "create_opportunity",
            json!({"contact_id": "nope", "title": "T", "value": "1"})
        )
        .await
        .0,
        "not_found"
    );

    let moved = ok(
        &client,
        "update_opportunity_stage",
        json!({"opportunity_id": opp["id"], "stage": "negotiation"}),
    )
    .await;
    assert_eq!(moved["probability"], 75);
    assert_eq!(
        err(
            &client,
            "update_opportunity_stage",
            json!({"opportunity_id": opp["id"], "stage": "closed"})
        )
        .await
        .0,
        "invalid_stage"
    );

    let listed = ok(
        &client,
        "list_opportunities",
        json!({"contact_id": id, "min_value": "3000"}),
    )
    .await;
    assert_eq!(listed["opportunities"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["opportunities"][0]["title"], "Numeric");

    let note = ok(
        &client,
        "add_contact_note",
        json!({"contact_id": id, "notes": "Met at the meetup", "author": "sales"}),
    )
    .await;
    let alias = ok(
        &client,
        "update_contact_notes",
        json!({"contact_id": id, "notes": "Follow up next week"}),
    )
    .await;
    assert_ne!(note["id"], alias["id"]);
    let logged = ok(&client, "log_interaction", json!({"contact_id": id, "kind": "meeting", "summary": "Kick-off", "occurred_at": "2025-02-01T08:00:00Z"})).await;
    assert_eq!(logged["kind"], "meeting");

    let details = ok(&client, "get_contact_details", json!({"contact_id": id})).await;
    assert_eq!(
        details["notes"].as_array().map(Vec::len),
        Some(2),
        "the alias appends, never overwrites"
    );
    assert_eq!(
        details["contact"]["last_contact_at"],
        "2025-02-01T08:00:00.000000Z"
    );

    let summary = ok(&client, "pipeline_summary", json!({})).await;
    let negotiation = summary["stages"]
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|r| r["stage"] == "negotiation" && r["currency"] == "EUR")
        })
        .cloned()
        .expect("negotiation EUR row");
    assert_eq!(negotiation["total_value"], "2500.75");
    assert_eq!(negotiation["weighted_value"], "1875.5625");

    client.cancel().await.expect("client closes");
    server_task.await.expect("server task");
}

async fn rest_over_loopback_http(store: &CrmStore) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = tokio::spawn(axum::serve(listener, rest_router(store.clone())).into_future());
    let base = format!("http://{addr}/api");
    let http = reqwest::Client::new();

    let page: Value = http
        .get(format!("{base}/contacts?query=innovation&limit=5"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(page["contacts"][0]["name"], "Trần Thị Bình");

    let response = http
        .post(format!("{base}/contacts"))
        .header("Idempotency-Key", "rest-1")
        .json(&json!({"name": "Võ Lan", "email": "lan@example.vn", "tags": ["rest"]}))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 201);
    let lan: Value = response.json().await.expect("json");
    let retry: Value = http
        .post(format!("{base}/contacts"))
        .header("Idempotency-Key", "rest-1")
        .json(&json!({"name": "Võ Lan", "email": "lan@example.vn", "tags": ["rest"]}))
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("json");
    assert_eq!(lan, retry);
    let id = lan["id"].as_str().expect("id").to_owned();

    let duplicate = http
        .post(format!("{base}/contacts"))
        .json(&json!({"name": "Dup", "email": "LAN@example.vn"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(duplicate.status(), 409);
    let body: Value = duplicate.json().await.expect("json");
    assert_eq!(body["error"]["kind"], "conflict");

    let invalid = http
        .post(format!("{base}/contacts"))
        .json(&json!({"name": "Bad", "email": "bad"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(invalid.status(), 400);
    assert_eq!(
        invalid.json::<Value>().await.expect("json")["error"]["kind"],
        "invalid_email"
    );
    let malformed = http
        .post(format!("{base}/contacts"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("POST");
    assert_eq!(malformed.status(), 400);
    assert_eq!(
        malformed.json::<Value>().await.expect("json")["error"]["kind"],
        "invalid_request"
    );

    let missing = http
        .get(format!("{base}/contacts/nope"))
        .send()
        .await
        .expect("GET");
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.expect("json")["error"]["kind"],
        "not_found"
    );

    let patched = http
        .patch(format!("{base}/contacts/{id}"))
        .json(&json!({"version": 1, "position": "COO"}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(patched.status(), 200);
    let stale = http
        .patch(format!("{base}/contacts/{id}"))
        .json(&json!({"version": 1, "position": "CFO"}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(stale.status(), 409);
    let stale: Value = stale.json().await.expect("json");
    assert_eq!(stale["error"]["kind"], "version_conflict");
    assert_eq!(stale["error"]["details"]["current_version"], 2);

    let note = http
        .post(format!("{base}/contacts/{id}/notes"))
        .json(&json!({"notes": "via REST"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(note.status(), 201);

    let opp = http
        .post(format!("{base}/opportunities"))
        .json(&json!({"contact_id": id, "title": "REST deal", "value": "100000.01", "currency": "USD", "idempotency_key": "rest-opp"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(opp.status(), 201);
    let opp: Value = opp.json().await.expect("json");
    let listed: Value = http
        .get(format!(
            "{base}/opportunities?min_value=100000&currency=USD"
        ))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["opportunities"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["opportunities"][0]["id"], opp["id"]);
    let bad_filter = http
        .get(format!("{base}/opportunities?stage=closed"))
        .send()
        .await
        .expect("GET");
    assert_eq!(bad_filter.status(), 400);

    let staged = http
        .patch(format!(
            "{base}/opportunities/{}/stage",
            opp["id"].as_str().unwrap_or_default()
        ))
        .json(&json!({"stage": "won"}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(staged.status(), 200);
    assert_eq!(
        staged.json::<Value>().await.expect("json")["probability"],
        100
    );
    let unknown = http
        .patch(format!("{base}/opportunities/nope/stage"))
        .json(&json!({"stage": "won"}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(unknown.status(), 404);

    let details: Value = http
        .get(format!("{base}/contacts/{id}"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(details["notes"][0]["body"], "via REST");
    assert_eq!(details["opportunities"][0]["stage"], "won");

    let pipeline: Value = http
        .get(format!("{base}/pipeline"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert!(pipeline["stages"].as_array().is_some_and(|rows| {
        rows.iter()
            .any(|r| r["stage"] == "won" && r["total_value"] == "100000.01")
    }));

    let served: Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(served, openapi_document());

    server.abort();
}

on_both_engines!(true => every_tool_over_mcp, rest_over_loopback_http);

/// Collects every `$ref` in `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "$ref"
                    && let Some(target) = child.as_str()
                {
                    out.push(target.to_owned());
                }
                refs(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, out)),
        _ => {}
    }
}

#[test]
fn openapi_document_is_complete_and_resolvable() {
    let doc = openapi_document();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = BTreeSet::new();
    let mut operation_ids = HashSet::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            operations.insert(format!("{} {path}", method.to_uppercase()));
            let id = operation["operationId"].as_str().expect("operationId");
            assert!(
                operation_ids.insert(id.to_owned()),
                "duplicate operationId {id}"
            );
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty())
            );
            let path_params: Vec<&str> = operation["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(
                path_params.len(),
                path.matches('{').count(),
                "{method} {path} declares its path parameters"
            );
            if method == "post" || method == "patch" {
                assert!(
                    operation["requestBody"]["content"]["application/json"]["schema"].is_object()
                );
            }
        }
    }
    let expected: BTreeSet<String> = [
        "GET /api/contacts",
        "POST /api/contacts",
        "GET /api/contacts/{id}",
        "PATCH /api/contacts/{id}",
        "POST /api/contacts/{id}/notes",
        "GET /api/opportunities",
        "POST /api/opportunities",
        "PATCH /api/opportunities/{id}/stage",
        "GET /api/pipeline",
        "GET /api/openapi.json",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(operations, expected);

    let search_params: BTreeSet<&str> = doc["paths"]["/api/contacts"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        search_params,
        BTreeSet::from([
            "query",
            "status",
            "last_contact_before",
            "last_contact_after",
            "limit",
            "cursor"
        ])
    );

    let mut all_refs = Vec::new();
    refs(&doc, &mut all_refs);
    assert!(!all_refs.is_empty());
    for target in all_refs {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("foreign $ref {target}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling $ref {target}"
        );
    }
}
