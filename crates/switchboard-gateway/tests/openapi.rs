//! The OpenAPI connector as a gateway upstream: the CRM's own REST API (served on 127.0.0.1,
//! port 0) wrapped through the OpenAPI document it publishes at `/api/openapi.json`, beside the
//! same CRM mounted natively. A contact created through the connector's tools is read back
//! through them and through the native tools, which share the database.

use std::sync::Arc;

use rmcp::model::JsonObject;
use serde_json::{Value, json};
use switchboard_crm::{CrmConfig, CrmStore};
use switchboard_gateway::{Gateway, GatewayConfig};

fn args(value: Value) -> Option<JsonObject> {
    value.as_object().cloned()
}

#[tokio::test]
async fn crm_rest_api_through_the_connector() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", dir.path().join("crm.db").display());
    let mut crm_config = CrmConfig::new(db.clone());
    crm_config.demo_data = false;
    let store = CrmStore::open(&crm_config).await.expect("CRM store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let rest = tokio::spawn(switchboard_crm::serve_rest(store, listener));

    let config = GatewayConfig::parse(&format!(
        r#"
[[upstream]]
name = "crm"
builtin = {{ server = "crm", db = "{db}", demo = false }}

[[upstream]]
name = "crmrest"
[upstream.openapi]
spec = "{base}/api/openapi.json"
base_url = "{base}"
exclude = {{ operation_ids = ["getOpenApiDocument"] }}
timeout_secs = 10
"#
    ))
    .expect("config parses");
    let gateway = Arc::new(Gateway::new(config).expect("gateway"));
    let failures = gateway.start().await.expect("start");
    assert!(failures.is_empty(), "{failures:?}");

    let catalog = gateway.catalog().await.expect("catalog");
    let names: Vec<&str> = catalog.tools.iter().map(|t| t.name.as_ref()).collect();
    for expected in [
        "crm__create_contact",
        "crmrest__createContact",
        "crmrest__getContactDetails",
        "crmrest__searchContacts",
        "crmrest__pipelineSummary",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(!names.contains(&"crmrest__getOpenApiDocument"));
    let get = catalog
        .tools
        .iter()
        .find(|t| t.name == "crmrest__getContactDetails")
        .expect("tool");
    assert_eq!(
        get.annotations.as_ref().and_then(|a| a.read_only_hint),
        Some(true)
    );

    // Create through the connector: body fields merged beside the Idempotency-Key header.
    let ada = json!({
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "company": "Analytical Engines",
        "Idempotency-Key": "create-ada-1"
    });
    let created = gateway
        .call("crmrest__createContact", args(ada.clone()))
        .await
        .expect("call");
    assert_eq!(created.is_error, Some(false), "{created:?}");
    let contact = created.structured_content.expect("structured");
    let id = contact["id"].as_str().expect("id").to_string();
    assert_eq!(contact["email"], "ada@example.com");

    // The same request with the same idempotency key returns the first result.
    let again = gateway
        .call("crmrest__createContact", args(ada))
        .await
        .expect("call");
    assert_eq!(again.structured_content.expect("structured")["id"], id);

    // Read back through the connector (path parameter) and natively.
    let details = gateway
        .call("crmrest__getContactDetails", args(json!({ "id": id })))
        .await
        .expect("call");
    assert_eq!(details.is_error, Some(false), "{details:?}");
    assert_eq!(
        details.structured_content.expect("structured")["contact"]["name"],
        "Ada Lovelace"
    );
    let native = gateway
        .call(
            "crm__get_contact_details",
            args(json!({ "contact_id": id })),
        )
        .await
        .expect("call");
    assert_eq!(native.is_error, Some(false), "{native:?}");

    // Query parameters, and a REST error as an isError result with its status.
    let found = gateway
        .call(
            "crmrest__searchContacts",
            args(json!({ "query": "Lovelace" })),
        )
        .await
        .expect("call");
    let page = found.structured_content.expect("structured");
    assert!(page.to_string().contains(&id), "{page}");
    let missing = gateway
        .call(
            "crmrest__getContactDetails",
            args(json!({ "id": "no-such-contact" })),
        )
        .await
        .expect("call");
    assert_eq!(missing.is_error, Some(true));
    let error = &missing.structured_content.expect("structured")["error"];
    assert_eq!(error["kind"], "http_error");
    assert_eq!(error["details"]["status"], 404);
    assert_eq!(error["details"]["body"]["error"]["kind"], "not_found");

    gateway.shutdown().await;
    rest.abort();
}

#[test]
fn openapi_upstreams_are_checked_at_load() {
    let refused = |text: &str| GatewayConfig::parse(text).expect_err("refused").to_string();
    let err = refused(
        r#"
[[upstream]]
name = "both"
builtin = { server = "echo" }
[upstream.openapi]
spec = "x.yaml"
"#,
    );
    assert!(err.contains("exactly one of"), "{err}");
    let err = refused(
        r#"
[[upstream]]
name = "bad"
[upstream.openapi]
spec = "x.yaml"
base_url = "ftp://example/"
"#,
    );
    assert!(err.contains("http or https"), "{err}");
    let err = refused(
        r#"
[[upstream]]
name = "typo"
[upstream.openapi]
spec = "x.yaml"
[upstream.openapi.auth]
type = "bearer"
token = "inline-secrets-are-not-accepted"
"#,
    );
    assert!(err.contains("unknown field"), "{err}");
}
