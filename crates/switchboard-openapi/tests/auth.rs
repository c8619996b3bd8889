//! Credentials injected into requests, as the recording Petstore server receives them: bearer,
//! API key in a header and in the query, basic, and OAuth2 client credentials (fetched once,
//! cached, fetched again after a 401). Secrets never show in descriptions or errors.
//!
//! One `#[test]` that sets its environment variables before any thread exists (setting them
//! later would race other threads' reads), then runs every case on one runtime.

mod common;

use serde_json::{Value, json};
use switchboard_openapi::{AuthConfig, OpenApiConfig, OpenApiConnector, auth::ApiKeyLocation};

const TOKEN: &str = "bearer-secret-1";
const KEY: &str = "api-key-secret-2";
const PASSWORD: &str = "password-secret-3";
const CLIENT_SECRET: &str = "client-secret-4";

#[test]
fn credentials_reach_the_service_and_nowhere_else() {
    // SAFETY: no other thread exists yet in this test binary (one test, runtime not started).
    unsafe {
        std::env::set_var("SB_OPENAPI_TEST_TOKEN", TOKEN);
        std::env::set_var("SB_OPENAPI_TEST_KEY", KEY);
        std::env::set_var("SB_OPENAPI_TEST_USER", "alice");
        std::env::set_var("SB_OPENAPI_TEST_PASSWORD", PASSWORD);
        std::env::set_var("SB_OPENAPI_TEST_CLIENT_ID", "client-1");
        std::env::set_var("SB_OPENAPI_TEST_CLIENT_SECRET", CLIENT_SECRET);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

async fn connector(server: &common::PetServer, auth: AuthConfig) -> OpenApiConnector {
    let mut config = OpenApiConfig::new(common::petstore_path());
    config.base_url = Some(format!("{}/api", server.base));
    config.auth = Some(auth);
    OpenApiConnector::load(&config)
        .await
        .expect("connector loads")
}

async fn call(
    connector: &OpenApiConnector,
    tool: &str,
    args: Value,
) -> rmcp::model::CallToolResult {
    let Value::Object(args) = args else { panic!() };
    connector.call(tool, Some(args)).await.expect("known tool")
}

async fn run() {
    let server = common::start().await;

    let bearer = connector(
        &server,
        AuthConfig::Bearer {
            token_env: "SB_OPENAPI_TEST_TOKEN".into(),
        },
    )
    .await;
    call(&bearer, "findPets", json!({})).await;
    let seen = server.recorder.take();
    assert_eq!(seen[0].headers["authorization"], format!("Bearer {TOKEN}"));
    // Nothing secret in the tools or in the connector's Debug.
    let listing = serde_json::to_string(&bearer.tools()).unwrap();
    assert!(!listing.contains(TOKEN));
    assert!(!format!("{bearer:?}").contains(TOKEN));

    let header_key = connector(
        &server,
        AuthConfig::ApiKey {
            location: ApiKeyLocation::Header,
            name: "X-API-Key".into(),
            value_env: "SB_OPENAPI_TEST_KEY".into(),
        },
    )
    .await;
    call(&header_key, "findPets", json!({ "limit": 1 })).await;
    assert_eq!(server.recorder.take()[0].headers["x-api-key"], KEY);

    let query_key = connector(
        &server,
        AuthConfig::ApiKey {
            location: ApiKeyLocation::Query,
            name: "api_key".into(),
            value_env: "SB_OPENAPI_TEST_KEY".into(),
        },
    )
    .await;
    call(&query_key, "findPets", json!({ "limit": 1 })).await;
    assert_eq!(
        server.recorder.take()[0].uri,
        format!("/api/pets?limit=1&api_key={KEY}")
    );
    // An error never repeats the URL, which now holds the key.
    let result = call(&query_key, "find_pet_by_id", json!({ "id": "404" })).await;
    assert_eq!(result.is_error, Some(true));
    assert!(!serde_json::to_string(&result).unwrap().contains(KEY));
    server.recorder.take();

    let basic = connector(
        &server,
        AuthConfig::Basic {
            username_env: "SB_OPENAPI_TEST_USER".into(),
            password_env: "SB_OPENAPI_TEST_PASSWORD".into(),
        },
    )
    .await;
    call(&basic, "findPets", json!({})).await;
    let authorization = server.recorder.take()[0].headers["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(authorization.trim_start_matches("Basic "))
        .unwrap();
    assert_eq!(decoded, format!("alice:{PASSWORD}").as_bytes());

    // OAuth2: one token request for several calls; a 401 fetches a new token and retries once.
    let oauth = connector(
        &server,
        serde_json::from_value(json!({
            "type": "oauth2_client_credentials",
            "token_url": format!("{}/token", server.base),
            "client_id_env": "SB_OPENAPI_TEST_CLIENT_ID",
            "client_secret_env": "SB_OPENAPI_TEST_CLIENT_SECRET",
            "scopes": ["pets:read", "pets:write"],
        }))
        .unwrap(),
    )
    .await;
    call(&oauth, "findPets", json!({})).await;
    call(&oauth, "findPets", json!({})).await;
    let seen = server.recorder.take();
    assert_eq!(seen.len(), 3, "one token request, two calls");
    assert_eq!(seen[0].uri, "/token");
    let form = String::from_utf8(seen[0].body.to_vec()).unwrap();
    assert_eq!(
        form,
        "grant_type=client_credentials&scope=pets%3Aread+pets%3Awrite"
    );
    let client_auth = seen[0].headers["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(client_auth.trim_start_matches("Basic "))
        .unwrap();
    assert_eq!(decoded, format!("client-1:{CLIENT_SECRET}").as_bytes());
    assert_eq!(seen[1].headers["authorization"], "Bearer token-1");
    assert_eq!(seen[2].headers["authorization"], "Bearer token-1");

    // The server refuses token-1 on this path: the connector fetches token-2 and retries.
    let result = call(
        &oauth,
        "find_pet_by_id",
        json!({ "id": "unauthorized-once" }),
    )
    .await;
    assert_eq!(result.is_error, Some(false), "{result:?}");
    assert_eq!(server.recorder.tokens_issued(), 2);
    let seen = server.recorder.take();
    assert_eq!(
        seen.last().unwrap().headers["authorization"],
        "Bearer token-2"
    );
    assert!(!format!("{oauth:?}").contains(CLIENT_SECRET));

    // A missing variable is a load error that names the variable only.
    let mut config = OpenApiConfig::new(common::petstore_path());
    config.base_url = Some(server.base.clone());
    config.auth = Some(AuthConfig::Bearer {
        token_env: "SB_OPENAPI_TEST_UNSET".into(),
    });
    let err = OpenApiConnector::load(&config)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "environment variable SB_OPENAPI_TEST_UNSET is not set (or not UTF-8)"
    );
}
