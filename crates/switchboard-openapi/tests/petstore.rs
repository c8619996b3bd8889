//! The Petstore 3.0 document (`fixtures/petstore.yaml`, the `petstore-expanded` shape with a
//! few extra operations for styles and media types) against a recording axum server on
//! 127.0.0.1: the tools it becomes, what each call sends, and how responses and failures come
//! back. Calls go through a real rmcp client over an in-process byte stream.

mod common;

use rmcp::{
    ServiceExt,
    model::{CallToolRequestParams, CallToolResult, Tool},
    service::{RoleClient, RunningService},
};
use serde_json::{Value, json};
use switchboard_openapi::{OpenApiConfig, OpenApiConnector};

async fn connect(config: &OpenApiConfig) -> RunningService<RoleClient, ()> {
    let connector = OpenApiConnector::load(config)
        .await
        .expect("connector loads");
    let (server_io, client_io) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        if let Ok(running) = connector.serve(server_io).await {
            let _ = running.waiting().await;
        }
    });
    ().serve(client_io).await.expect("client handshake")
}

fn config(base: &str) -> OpenApiConfig {
    let mut config = OpenApiConfig::new(common::petstore_path());
    config.base_url = Some(format!("{base}/api"));
    config
}

async fn call(client: &RunningService<RoleClient, ()>, tool: &str, args: Value) -> CallToolResult {
    let Value::Object(args) = args else {
        panic!("arguments must be an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect()
}

fn tool<'a>(tools: &'a [Tool], name: &str) -> &'a Tool {
    tools.iter().find(|t| t.name == name).unwrap_or_else(|| {
        panic!(
            "no tool {name}: {:?}",
            tools.iter().map(|t| &t.name).collect::<Vec<_>>()
        )
    })
}

#[tokio::test]
async fn operations_become_tools() {
    let server = common::start().await;
    let client = connect(&config(&server.base)).await;
    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort();
    // `find pet by id` is sanitised; the DELETE has no operationId and gets method_path.
    assert_eq!(
        names,
        [
            "addPet",
            "delete_pets_id",
            "findPets",
            "find_pet_by_id",
            "getPetPhoto",
            "searchPets"
        ]
    );

    let find = tool(&tools, "findPets");
    let annotations = find.annotations.clone().unwrap();
    assert_eq!(annotations.read_only_hint, Some(true));
    assert!(
        find.description
            .as_deref()
            .unwrap()
            .starts_with("Returns all pets\n\n")
    );
    assert_eq!(find.input_schema["properties"]["tags"]["type"], "array");
    assert_eq!(
        find.input_schema["properties"]["limit"]["description"],
        "maximum number of results to return"
    );
    assert!(find.input_schema.get("required").is_none());

    // The NewPet body is a plain object: merged beside the (absent) parameters.
    let add = tool(&tools, "addPet");
    assert_eq!(add.input_schema["required"], json!(["name"]));
    assert_eq!(
        add.input_schema["properties"]["tag"]["type"],
        json!(["string", "null"])
    );
    assert_eq!(add.annotations.clone().unwrap().read_only_hint, Some(false));

    let delete = tool(&tools, "delete_pets_id");
    assert_eq!(
        delete.annotations.clone().unwrap().destructive_hint,
        Some(true)
    );
    assert_eq!(delete.input_schema["required"], json!(["id"]));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn calls_send_path_query_header_and_body() {
    let server = common::start().await;
    let client = connect(&config(&server.base)).await;

    let result = call(
        &client,
        "findPets",
        json!({ "tags": ["a b", "c"], "limit": 5 }),
    )
    .await;
    assert_eq!(result.is_error, Some(false), "{}", text(&result));
    // A JSON array is wrapped: structuredContent must be an object.
    assert_eq!(
        result.structured_content,
        Some(json!({ "value": [{ "id": 1, "name": "Rex" }] }))
    );
    let seen = server.recorder.take();
    assert_eq!(seen[0].uri, "/api/pets?tags=a+b&tags=c&limit=5");

    let result = call(&client, "addPet", json!({ "name": "Rex", "tag": "dog" })).await;
    assert_eq!(
        result.structured_content,
        Some(json!({ "id": 7, "name": "Rex", "tag": "dog" }))
    );
    assert!(text(&result).contains("\"id\":7"));
    let seen = server.recorder.take();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].headers["content-type"], "application/json");
    let sent: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(sent, json!({ "name": "Rex", "tag": "dog" }));

    // Path values are one percent-encoded segment.
    let result = call(&client, "find_pet_by_id", json!({ "id": "a b/c?" })).await;
    assert_eq!(result.is_error, Some(false));
    assert_eq!(server.recorder.take()[0].uri, "/api/pets/a%20b%2Fc%3F");

    let result = call(
        &client,
        "searchPets",
        json!({ "filter": { "species": "cat", "color": "red" }, "ids": [1, 2], "X-Request-Id": "r-1" }),
    )
    .await;
    assert_eq!(result.is_error, Some(false));
    let seen = server.recorder.take();
    assert_eq!(
        seen[0].uri,
        "/api/search?filter%5Bcolor%5D=red&filter%5Bspecies%5D=cat&ids=1%2C2"
    );
    assert_eq!(seen[0].headers["x-request-id"], "r-1");

    // Text responses are text only.
    let result = call(&client, "getPetPhoto", json!({ "id": "1" })).await;
    assert_eq!(text(&result), "=^.^=");
    assert_eq!(result.structured_content, None);

    let result = call(&client, "delete_pets_id", json!({ "id": "1" })).await;
    assert_eq!(result.is_error, Some(false));
    assert!(text(&result).contains("204"));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn failures_are_tool_errors() {
    let server = common::start().await;
    let mut config = config(&server.base);
    config.max_response_bytes = 64 * 1024;
    let client = connect(&config).await;

    let result = call(&client, "find_pet_by_id", json!({ "id": "404" })).await;
    assert_eq!(result.is_error, Some(true));
    let error = &result.structured_content.as_ref().unwrap()["error"];
    assert_eq!(error["kind"], "http_error");
    assert_eq!(error["details"]["status"], 404);
    assert_eq!(error["details"]["body"]["message"], "no such pet");
    assert!(text(&result).contains("GET /pets/{id} answered HTTP 404"));

    let result = call(&client, "find_pet_by_id", json!({ "id": "huge" })).await;
    assert_eq!(result.is_error, Some(true));
    assert_eq!(
        result.structured_content.clone().unwrap()["error"]["kind"],
        "response_too_large"
    );

    // Nothing is sent when the arguments are wrong.
    server.recorder.take();
    let result = call(&client, "addPet", json!({})).await;
    assert_eq!(
        result.structured_content.clone().unwrap()["error"]["kind"],
        "invalid_arguments"
    );
    let result = call(&client, "find_pet_by_id", json!({ "id": "1", "bogus": 1 })).await;
    assert!(text(&result).contains("unknown argument \"bogus\""));
    assert!(server.recorder.take().is_empty());
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn redirects_stay_on_the_same_origin() {
    let server = common::start().await;
    let elsewhere = common::start().await;
    *server.recorder.elsewhere.lock().unwrap() = elsewhere.base.clone();
    let client = connect(&config(&server.base)).await;

    let result = call(&client, "find_pet_by_id", json!({ "id": "moved-here" })).await;
    assert_eq!(result.is_error, Some(false), "{}", text(&result));
    assert_eq!(result.structured_content.unwrap()["path"], "/api/pets/1");

    let result = call(&client, "find_pet_by_id", json!({ "id": "moved-away" })).await;
    assert_eq!(result.is_error, Some(true));
    assert_eq!(
        result.structured_content.clone().unwrap()["error"]["kind"],
        "redirect_refused"
    );
    assert!(
        text(&result).contains("another origin"),
        "{}",
        text(&result)
    );
    assert!(elsewhere.recorder.take().is_empty());
    client.cancel().await.unwrap();

    let mut open = config(&server.base);
    open.cross_origin_redirects = true;
    let client = connect(&open).await;
    let result = call(&client, "find_pet_by_id", json!({ "id": "moved-away" })).await;
    assert_eq!(result.is_error, Some(false), "{}", text(&result));
    assert_eq!(elsewhere.recorder.take().len(), 1);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn filters_and_overrides() {
    let server = common::start().await;
    let mut config = config(&server.base);
    config.exclude.tags = vec!["admin".into()];
    config.include.paths = vec!["/pets/**".into()];
    config.overrides.insert(
        "findPets".into(),
        switchboard_openapi::OperationOverride {
            name: Some("list_pets".into()),
            description: Some("All the pets.".into()),
        },
    );
    let client = connect(&config).await;
    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort();
    // `/pets` is not under `/pets/**`, but the override key still names the operation.
    assert_eq!(names, ["find_pet_by_id", "getPetPhoto"]);
    client.cancel().await.unwrap();

    config.include.paths = vec!["/pets".into()];
    let client = connect(&config).await;
    let tools = client.list_all_tools().await.unwrap();
    let list = tool(&tools, "list_pets");
    assert_eq!(list.description.as_deref(), Some("All the pets."));
    client.cancel().await.unwrap();
}
