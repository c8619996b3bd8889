//! Documents the connector refuses, each with the JSON pointer of the bad node, and the
//! naming rules for operations without a usable `operationId`.

use serde_json::{Value, json};
use switchboard_openapi::{OpenApiConfig, OpenApiConnector, OpenApiError, Spec, spec};

fn build(document: Value) -> Result<OpenApiConnector, OpenApiError> {
    let version = spec::version_of(&document)?;
    let spec = Spec {
        document,
        version,
        url: None,
    };
    let mut config = OpenApiConfig::new("inline.json");
    config.base_url = Some("http://127.0.0.1:9/".into());
    let http = switchboard_openapi::http_client(&config)?;
    OpenApiConnector::from_spec(&config, &spec, http)
}

fn error(document: Value) -> String {
    build(document)
        .expect_err("the document is refused")
        .to_string()
}

#[test]
fn errors_name_the_json_pointer() {
    assert_eq!(
        error(
            json!({ "openapi": "3.0.3", "paths": { "/pets/{petId}": { "get": {
                "parameters": [{ "name": "petId", "schema": { "type": "string" } }]
            }}}})
        ),
        "/paths/~1pets~1{petId}/get/parameters/0: missing \"in\""
    );
    assert_eq!(
        error(json!({ "openapi": "3.1.0", "paths": { "/a": { "post": {
            "parameters": [{ "name": "x", "in": "body" }]
        }}}})),
        "/paths/~1a/post/parameters/0/in: \"body\" is not one of path, query, header, cookie"
    );
    // The pointer is the referenced node's when the error is behind a `$ref`.
    assert_eq!(
        error(json!({ "openapi": "3.1.0",
            "paths": { "/a": { "get": { "parameters": [{ "$ref": "#/components/parameters/Broken" }] } } },
            "components": { "parameters": { "Broken": { "in": "query" } } }
        })),
        "/components/parameters/Broken: missing \"name\""
    );
    assert_eq!(
        error(json!({ "openapi": "3.1.0", "paths": { "/a": { "get": {
            "responses": {}, "parameters": [{ "name": "q", "in": "query",
                "schema": { "$ref": "#/components/schemas/Nope" } }]
        }}}})),
        "/paths/~1a/get/parameters/0/schema/$ref: unresolved reference #/components/schemas/Nope"
    );
    assert_eq!(
        error(json!({ "openapi": "3.0.0", "paths": { "/a": { "post": {
            "requestBody": { "required": true }
        }}}})),
        "/paths/~1a/post/requestBody: missing \"content\""
    );
    assert_eq!(
        error(json!({ "openapi": "2.5", "paths": {} })),
        "/openapi: version \"2.5\" is not supported (3.0.x or 3.1.x)"
    );
    assert_eq!(
        error(json!({ "openapi": "3.1.0", "paths": [] })),
        "/paths: must be an object"
    );
}

#[test]
fn recursive_schemas_are_bounded_in_tools() {
    let connector = build(json!({ "openapi": "3.1.0",
        "paths": { "/trees": { "post": {
            "operationId": "plantTree",
            "requestBody": { "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Tree" } } } }
        }}},
        "components": { "schemas": { "Tree": { "type": "object", "properties": {
            "name": { "type": "string" },
            "children": { "type": "array", "items": { "$ref": "#/components/schemas/Tree" } }
        }}}}
    }))
    .unwrap();
    let tool = &connector.tools()[0];
    let children = &tool.input_schema["properties"]["children"];
    assert!(
        children["items"]["description"]
            .as_str()
            .unwrap()
            .starts_with("recursive reference to #/components/schemas/Tree")
    );
}

#[test]
fn names_are_sanitised_deduplicated_and_fall_back() {
    let long_path = format!("/{}", "very-long-segment/".repeat(6) + "{id}");
    let connector = build(json!({ "openapi": "3.1.0", "paths": {
        "/a": { "get": { "operationId": "list things!" }, "post": { "operationId": "list_things" } },
        "/users/{userId}/keys": { "delete": {} },
        long_path.clone(): { "get": {} }
    }}))
    .unwrap();
    let names: Vec<String> = connector
        .tools()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    for name in &names {
        assert!(
            !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "{name}"
        );
    }
    assert!(names.contains(&"list_things".to_string()));
    // The second operation that sanitises to the same name gets a hash suffix.
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("list_things_") && n.len() == "list_things_".len() + 8),
        "{names:?}"
    );
    assert!(names.contains(&"delete_users_userId_keys".to_string()));
    let long = names
        .iter()
        .find(|n| n.starts_with("get_very-long"))
        .unwrap();
    assert_eq!(long.len(), 64);
    // Stable across loads.
    let again: Vec<String> =
        build(json!({ "openapi": "3.1.0", "paths": { long_path: { "get": {} } } }))
            .unwrap()
            .tools()
            .iter()
            .map(|t| t.name.to_string())
            .collect();
    assert_eq!(&again[0], long);
}
