//! The security layers end to end over a real HTTP listener on 127.0.0.1: authentication (the
//! JWT attacks from issue 7, each a 401 with `WWW-Authenticate`), the RFC 9728 metadata
//! document, API keys, and per-identity authorization (hidden tools, refused calls) through a
//! real rmcp Streamable HTTP client.

use std::sync::Arc;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rmcp::{
    ServiceExt,
    model::{CallToolRequestParams, ClientConfig},
    service::{RoleClient, RunningService},
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};
use switchboard_gateway::{
    Gateway, GatewayConfig, GatewayServer,
    auth::{Authenticator, http::protect, keys},
};
use switchboard_transport::{HttpLimits, HttpRoutes, HttpServer};

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

struct Running {
    base: String,
    http: HttpServer,
    gateway: Arc<Gateway>,
    keys: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn stop(self) {
        let _ = self.http.shutdown().await;
        self.gateway.shutdown().await;
    }
}

async fn start(extra: &str) -> Running {
    start_with("", extra).await
}

/// `auth` goes inside `[security.auth]`, `extra` after the keys.
async fn start_with(auth: &str, extra: &str) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys.json");
    let text = format!(
        r#"
[[upstream]]
name = "a"
builtin = {{ server = "echo" }}
[[upstream]]
name = "b"
builtin = {{ server = "echo" }}

[security.auth]
leeway_secs = 5
{auth}
api_keys = "{keys}"
[[security.auth.jwt]]
kid = "hs"
algorithm = "HS256"
secret = "{SECRET}"
[[security.auth.jwt]]
kid = "rs"
algorithm = "RS256"
public_key = "{rs}"
[[security.auth.jwt]]
kid = "es"
algorithm = "ES256"
public_key = "{es}"
{extra}
"#,
        keys = keys.display(),
        rs = fixture("rsa_public.pem"),
        es = fixture("ec_public.pem"),
    );
    let config = GatewayConfig::parse(&text).expect("config");
    let auth = Arc::new(
        Authenticator::new(config.security.auth.clone().expect("auth"), dir.path())
            .expect("authenticator"),
    );
    let gateway = Arc::new(Gateway::new(config).expect("gateway"));
    gateway.start().await.expect("start");
    let server = GatewayServer::new(gateway.clone());
    let http = switchboard_transport::serve_http_wrapped(
        move || Ok(server.clone()),
        "127.0.0.1:0".parse().expect("addr"),
        HttpRoutes::All,
        &HttpLimits::default(),
        axum::Router::new(),
        move |router| protect(router, auth),
    )
    .await
    .expect("serve");
    Running {
        base: format!("http://{}", http.local_addr),
        http,
        gateway,
        keys,
        _dir: dir,
    }
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": "switchboard", "aud": "switchboard", "exp": now() + 600, "iat": now()})
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(String::from);
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

fn hs(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        Some("hs"),
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

fn b64(value: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

/// POSTs an `initialize` to `/mcp` with `authorization`; returns the response.
async fn initialize(base: &str, authorization: Option<String>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}}})
            .to_string(),
        );
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.expect("send")
}

async fn status_of(base: &str, token: &str) -> u16 {
    initialize(base, Some(format!("Bearer {token}")))
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn jwt_attacks_are_rejected_with_401() {
    let gw = start("").await;
    let base = gw.base.clone();

    // Valid tokens for each configured key pass.
    assert_eq!(status_of(&base, &hs(&claims("alice"))).await, 200, "HS256");
    let rs_key = EncodingKey::from_rsa_pem(&read("rsa_private.pem")).expect("rsa");
    let es_key = EncodingKey::from_ec_pem(&read("ec_private.pem")).expect("ec");
    assert_eq!(
        status_of(
            &base,
            &sign(Algorithm::RS256, Some("rs"), &rs_key, &claims("a"))
        )
        .await,
        200,
        "RS256"
    );
    assert_eq!(
        status_of(
            &base,
            &sign(Algorithm::ES256, Some("es"), &es_key, &claims("a"))
        )
        .await,
        200,
        "ES256"
    );

    let mut attacks: Vec<(&str, String)> = Vec::new();
    // alg: none, with and without a kid, with an empty and a bogus signature.
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "none", "kid": "hs"}),
    ] {
        let unsigned = format!("{}.{}", b64(&header), b64(&claims("admin")));
        attacks.push(("alg none", format!("{unsigned}.")));
        attacks.push(("alg none + signature", format!("{unsigned}.c2ln")));
    }
    // HS256 signed with the RS256 public key as the HMAC secret (key confusion).
    let public = EncodingKey::from_secret(&read("rsa_public.pem"));
    attacks.push((
        "HS256 with the RS256 public key (kid rs)",
        sign(Algorithm::HS256, Some("rs"), &public, &claims("admin")),
    ));
    attacks.push((
        "HS256 with the RS256 public key (no kid)",
        sign(Algorithm::HS256, None, &public, &claims("admin")),
    ));
    let mut expired = claims("alice");
    expired["exp"] = json!(now() - 3600);
    attacks.push(("expired", hs(&expired)));
    let mut early = claims("alice");
    early["nbf"] = json!(now() + 3600);
    attacks.push(("future nbf", hs(&early)));
    let mut iss = claims("alice");
    iss["iss"] = json!("https://evil.example");
    attacks.push(("wrong iss", hs(&iss)));
    let mut aud = claims("alice");
    aud["aud"] = json!("another-service");
    attacks.push(("wrong aud", hs(&aud)));
    let mut no_exp = claims("alice");
    no_exp.as_object_mut().map(|o| o.remove("exp"));
    attacks.push(("no exp", hs(&no_exp)));
    // Tampered payload: a valid token for alice with the payload swapped for admin's.
    let valid = hs(&claims("alice"));
    let parts: Vec<&str> = valid.split('.').collect();
    let mut admin = claims("alice");
    admin["sub"] = json!("admin");
    admin["roles"] = json!(["admin"]);
    attacks.push((
        "tampered payload",
        format!("{}.{}.{}", parts[0], b64(&admin), parts[2]),
    ));
    attacks.push((
        "unknown kid",
        sign(
            Algorithm::HS256,
            Some("nope"),
            &EncodingKey::from_secret(SECRET.as_bytes()),
            &claims("alice"),
        ),
    ));
    let other = EncodingKey::from_rsa_pem(&read("other_rsa_private.pem")).expect("other");
    attacks.push((
        "signed by another key (kid rs)",
        sign(Algorithm::RS256, Some("rs"), &other, &claims("alice")),
    ));
    attacks.push((
        "signed by another key (no kid)",
        sign(Algorithm::RS256, None, &other, &claims("alice")),
    ));
    attacks.push((
        "another HS256 secret",
        sign(
            Algorithm::HS256,
            Some("hs"),
            &EncodingKey::from_secret(b"another-secret-another-secret-another"),
            &claims("alice"),
        ),
    ));
    attacks.push(("garbage", "not.a.token".into()));
    attacks.push(("unknown API key", "sb_0000".into()));

    for (name, token) in &attacks {
        let response = initialize(&base, Some(format!("Bearer {token}"))).await;
        assert_eq!(response.status().as_u16(), 401, "{name} must be rejected");
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(
            challenge.contains(&format!(
                "resource_metadata=\"{base}/.well-known/oauth-protected-resource\""
            )) && challenge.contains("error=\"invalid_token\""),
            "{name}: {challenge}"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn missing_credentials_get_the_discovery_challenge() {
    let gw = start("").await;
    let response = initialize(&gw.base, None).await;
    assert_eq!(response.status().as_u16(), 401);
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        challenge.starts_with("Bearer resource_metadata="),
        "{challenge}"
    );
    // The legacy SSE routes are behind the same check.
    let sse = reqwest::get(format!("{}/sse", gw.base)).await.expect("sse");
    assert_eq!(sse.status().as_u16(), 401);
    let messages = reqwest::Client::new()
        .post(format!("{}/messages?sessionId=x", gw.base))
        .body("{}")
        .send()
        .await
        .expect("messages");
    assert_eq!(messages.status().as_u16(), 401);
    // RFC 9728 metadata is public.
    let metadata: Value = reqwest::get(format!("{}/.well-known/oauth-protected-resource", gw.base))
        .await
        .expect("metadata")
        .json()
        .await
        .expect("json");
    assert_eq!(metadata["resource"], json!(format!("{}/mcp", gw.base)));
    assert_eq!(metadata["bearer_methods_supported"], json!(["header"]));
    gw.stop().await;
}

async fn client(base: &str, token: &str) -> RunningService<RoleClient, ClientConfig> {
    ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp")).auth_header(token),
        ))
        .await
        .expect("connect")
}

async fn tool_names(client: &RunningService<RoleClient, ClientConfig>) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

async fn call(
    client: &RunningService<RoleClient, ClientConfig>,
    tool: &str,
) -> Result<String, String> {
    let arguments = json!({"message": "hi"})
        .as_object()
        .cloned()
        .unwrap_or_default();
    match client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments))
        .await
    {
        Ok(result) if result.is_error != Some(true) => Ok(format!("{:?}", result.content)),
        Ok(result) => Err(format!("tool error {:?}", result.content)),
        Err(e) => Err(e.to_string()),
    }
}

const POLICIES: &str = r#"
[security.authorization]
default = "deny"
[[security.authorization.policy]]
roles = ["admin"]
allow = ["*"]
[[security.authorization.policy]]
subjects = ["alice"]
allow = ["a__*"]
[[security.authorization.policy]]
keys = ["ci"]
allow = ["*"]
deny = ["b__*"]
"#;

#[tokio::test]
async fn tools_are_hidden_and_refused_per_identity() {
    let gw = start(POLICIES).await;
    let base = gw.base.clone();

    // alice: only a__*.
    let alice = client(&base, &hs(&claims("alice"))).await;
    assert_eq!(tool_names(&alice).await, vec!["a__echo"]);
    assert!(call(&alice, "a__echo").await.is_ok());
    let refused = call(&alice, "b__echo")
        .await
        .expect_err("b__echo is denied");
    assert!(refused.contains("not permitted"), "{refused}");
    // A tool that does not exist is refused the same way (nothing leaks).
    let missing = call(&alice, "c__nothing").await.expect_err("unknown");
    assert!(missing.contains("not permitted"), "{missing}");
    let _ = alice.cancel().await;

    // An admin token narrowed by a tool scope sees only that scope.
    let mut narrowed = claims("root");
    narrowed["roles"] = json!(["admin"]);
    narrowed["scope"] = json!("tool:b__*");
    let root = client(&base, &hs(&narrowed)).await;
    assert_eq!(tool_names(&root).await, vec!["b__echo"]);
    assert!(call(&root, "a__echo").await.is_err());
    let _ = root.cancel().await;

    // The admin role without scopes sees everything.
    let mut admin = claims("root");
    admin["roles"] = json!(["admin"]);
    let root = client(&base, &hs(&admin)).await;
    assert_eq!(tool_names(&root).await, vec!["a__echo", "b__echo"]);
    let _ = root.cancel().await;

    // An API key: allowed `*`, denied `b__*`; deny wins.
    let secret = keys::create(&gw.keys, "ci", &[]).expect("create key");
    let ci = client(&base, &secret).await;
    assert_eq!(tool_names(&ci).await, vec!["a__echo"]);
    assert!(call(&ci, "b__echo").await.is_err());
    let _ = ci.cancel().await;
    // The same key in X-API-Key.
    let response = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("x-api-key", &secret)
        .body(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}})
            .to_string(),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 200);
    // Revoked: refused on the next request, no restart.
    assert!(keys::revoke(&gw.keys, "ci").expect("revoke"));
    assert_eq!(status_of(&base, &secret).await, 401);

    // A subject no policy names gets nothing (default deny).
    let bob = client(&base, &hs(&claims("bob"))).await;
    assert!(tool_names(&bob).await.is_empty());
    let _ = bob.cancel().await;
    gw.stop().await;
}

#[tokio::test]
async fn anonymous_only_when_configured() {
    let gw = start("").await;
    assert_eq!(initialize(&gw.base, None).await.status().as_u16(), 401);
    gw.stop().await;

    let anonymous_policy = r#"
[security.authorization]
[[security.authorization.policy]]
anonymous = true
allow = ["a__*"]
"#;
    let gw = start_with("allow_anonymous = true", anonymous_policy).await;
    assert_eq!(initialize(&gw.base, None).await.status().as_u16(), 200);
    let anonymous = ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_uri(format!(
            "{}/mcp",
            gw.base
        )))
        .await
        .expect("connect");
    assert_eq!(tool_names(&anonymous).await, vec!["a__echo"]);
    // Bad credentials are still refused, not downgraded to anonymous.
    assert_eq!(status_of(&gw.base, "not.a.token").await, 401);
    let _ = anonymous.cancel().await;
    gw.stop().await;
}

/// The identity reaches the gateway over the legacy HTTP+SSE transport too: the POSTs to
/// `/messages` carry their authenticated request parts to the handler.
#[tokio::test]
async fn legacy_sse_callers_are_authorized_per_identity() {
    let gw = start(POLICIES).await;
    let mut headers = std::collections::BTreeMap::new();
    headers.insert(
        "Authorization".to_string(),
        format!("Bearer {}", hs(&claims("alice"))),
    );
    let upstream = switchboard_transport::Upstream::Sse {
        url: format!("{}/sse", gw.base),
        headers,
    };
    let alice = switchboard_transport::connect(
        &upstream,
        ClientConfig::default(),
        &switchboard_transport::ConnectOptions::default(),
    )
    .await
    .expect("connect over legacy SSE");
    assert_eq!(tool_names(&alice).await, vec!["a__echo"]);
    assert!(call(&alice, "a__echo").await.is_ok());
    let refused = call(&alice, "b__echo")
        .await
        .expect_err("b__echo is denied");
    assert!(refused.contains("not permitted"), "{refused}");
    let _ = alice.cancel().await;

    // Without credentials the SSE stream itself is refused.
    let anonymous = switchboard_transport::connect(
        &switchboard_transport::Upstream::Sse {
            url: format!("{}/sse", gw.base),
            headers: Default::default(),
        },
        ClientConfig::default(),
        &switchboard_transport::ConnectOptions::default(),
    )
    .await;
    assert!(anonymous.is_err());
    gw.stop().await;
}

/// A JWKS endpoint on loopback whose document the test swaps (a key rotation), counting
/// fetches.
struct JwksServer {
    url: String,
    document: Arc<std::sync::Mutex<String>>,
    fetches: Arc<std::sync::atomic::AtomicUsize>,
}

impl JwksServer {
    async fn start(fixture_name: &str) -> JwksServer {
        let document = Arc::new(std::sync::Mutex::new(
            String::from_utf8(read(fixture_name)).expect("utf-8"),
        ));
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (doc, count) = (document.clone(), fetches.clone());
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (doc, count) = (doc.clone(), count.clone());
                async move {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    doc.lock().map(|d| d.clone()).unwrap_or_default()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        JwksServer {
            url: format!("http://{addr}/jwks.json"),
            document,
            fetches,
        }
    }

    fn rotate_to(&self, fixture_name: &str) {
        if let Ok(mut doc) = self.document.lock() {
            *doc = String::from_utf8(read(fixture_name)).expect("utf-8");
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn jwks_config(url: &str, min_refresh_secs: u64) -> String {
    format!(
        "[[security.auth.jwks]]\nurl = \"{url}\"\nalgorithms = [\"RS256\"]\nmin_refresh_secs = {min_refresh_secs}\n"
    )
}

#[tokio::test]
async fn jwks_keys_verify_and_rotate_on_an_unknown_kid() {
    let idp = JwksServer::start("jwks-1.json").await;
    let gw = start(&jwks_config(&idp.url, 0)).await;
    let idp_1 = EncodingKey::from_rsa_pem(&read("rsa_private.pem")).expect("key");
    let idp_2 = EncodingKey::from_rsa_pem(&read("other_rsa_private.pem")).expect("key");

    // The first token fetches the set; the next one is served from the cache.
    let token = sign(Algorithm::RS256, Some("idp-1"), &idp_1, &claims("alice"));
    assert_eq!(status_of(&gw.base, &token).await, 200);
    assert_eq!(status_of(&gw.base, &token).await, 200);
    assert_eq!(idp.fetches(), 1);

    // A kid the provider has not published yet is refused…
    let rotated = sign(Algorithm::RS256, Some("idp-2"), &idp_2, &claims("alice"));
    assert_eq!(status_of(&gw.base, &rotated).await, 401);
    assert_eq!(idp.fetches(), 2);
    // …and accepted once it is: the unknown kid triggers a refetch.
    idp.rotate_to("jwks-2.json");
    assert_eq!(status_of(&gw.base, &rotated).await, 200);
    assert_eq!(idp.fetches(), 3);

    // The JWKS's symmetric key is never trusted, whatever the token says.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("idp-oct".into());
    let forged = jsonwebtoken::encode(
        &header,
        &claims("mallory"),
        &EncodingKey::from_secret(b"an-hs256-secret-that-is-long-enough-32b"),
    )
    .expect("sign");
    assert_eq!(status_of(&gw.base, &forged).await, 401);
    // A key of the set used with another algorithm than its own is refused.
    let wrong_alg = sign(Algorithm::RS512, Some("idp-1"), &idp_1, &claims("alice"));
    assert_eq!(status_of(&gw.base, &wrong_alg).await, 401);
    gw.stop().await;
}

#[tokio::test]
async fn jwks_refetches_are_bounded_by_min_refresh() {
    let idp = JwksServer::start("jwks-1.json").await;
    let gw = start(&jwks_config(&idp.url, 3600)).await;
    let idp_1 = EncodingKey::from_rsa_pem(&read("rsa_private.pem")).expect("key");
    let token = sign(Algorithm::RS256, Some("idp-1"), &idp_1, &claims("alice"));
    assert_eq!(status_of(&gw.base, &token).await, 200);
    assert_eq!(idp.fetches(), 1);
    // A flood of made-up kids does not reach the provider again within min_refresh_secs.
    for i in 0..20 {
        let made_up = sign(
            Algorithm::RS256,
            Some(&format!("made-up-{i}")),
            &idp_1,
            &claims("alice"),
        );
        assert_eq!(status_of(&gw.base, &made_up).await, 401);
    }
    assert_eq!(idp.fetches(), 1);
    gw.stop().await;
}

/// An upstream with two resources and two prompts, for resource and prompt authorization.
#[derive(Clone)]
struct Library;

impl rmcp::ServerHandler for Library {
    fn get_info(&self) -> rmcp::model::ServerConfig {
        rmcp::model::ServerConfig::new(
            rmcp::model::ServerCapabilities::builder()
                .enable_resources()
                .enable_prompts()
                .build(),
        )
    }

    async fn list_resources(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _cx: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, rmcp::ErrorData> {
        Ok(rmcp::model::ListResourcesResult {
            resources: vec![
                rmcp::model::Resource::new("doc://public/readme", "readme"),
                rmcp::model::Resource::new("doc://private/salaries", "salaries"),
            ],
            ..Default::default()
        })
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        _cx: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, rmcp::ErrorData> {
        Ok(rmcp::model::ReadResourceResult::new(vec![
            rmcp::model::ResourceContents::TextResourceContents {
                uri: request.uri.clone(),
                mime_type: Some("text/plain".into()),
                text: format!("contents of {}", request.uri),
                meta: None,
            },
        ])
        .into())
    }

    async fn list_prompts(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _cx: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ListPromptsResult, rmcp::ErrorData> {
        Ok(rmcp::model::ListPromptsResult {
            prompts: vec![
                rmcp::model::Prompt::new("summarise", Some("Summarise a document"), None),
                rmcp::model::Prompt::new("payroll", Some("Payroll questions"), None),
            ],
            ..Default::default()
        })
    }

    async fn get_prompt(
        &self,
        request: rmcp::model::GetPromptRequestParams,
        _cx: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::GetPromptResponse, rmcp::ErrorData> {
        Ok(
            rmcp::model::GetPromptResult::new(vec![rmcp::model::PromptMessage::new_text(
                rmcp::model::Role::User,
                format!("prompt {}", request.name),
            )])
            .into(),
        )
    }
}

/// Policies over resources and prompts hide and refuse them like tools; argument constraints
/// hold a role's calls to what it may touch.
#[tokio::test]
async fn resources_prompts_and_arguments_are_authorized_per_identity() {
    let library = switchboard_transport::serve_http(
        || Ok(Library),
        "127.0.0.1:0".parse().expect("addr"),
        HttpRoutes::Streamable,
        &HttpLimits::default(),
    )
    .await
    .expect("serve the library");
    let policies = format!(
        r#"
[[upstream]]
name = "lib"
connect = {{ transport = "http", url = "http://{addr}/mcp" }}

[security.authorization]
default = "deny"
[[security.authorization.policy]]
subjects = ["alice"]
allow = ["a__*"]
resources = {{ allow = ["switchboard://lib/doc%3A%2F%2Fpublic*"] }}
prompts = {{ allow = ["lib__summarise"] }}
[[security.authorization.policy.constraint]]
tools = ["a__echo"]
argument = "/message"
allow = ["hi", "hello *"]
[[security.authorization.policy]]
roles = ["admin"]
allow = ["*"]
resources = {{ allow = ["*"] }}
prompts = {{ allow = ["*"] }}
"#,
        addr = library.local_addr
    );
    let gw = start(&policies).await;

    let alice = client(&gw.base, &hs(&claims("alice"))).await;
    let resources = alice.list_all_resources().await.expect("resources/list");
    let uris: Vec<String> = resources.iter().map(|r| r.uri.clone()).collect();
    assert_eq!(uris.len(), 1, "{uris:?}");
    assert!(uris[0].contains("public"), "{uris:?}");
    let public = alice
        .read_resource(rmcp::model::ReadResourceRequestParams::new(uris[0].clone()))
        .await
        .expect("the public resource is readable");
    assert!(format!("{public:?}").contains("contents of doc://public/readme"));
    let private = uris[0].replace("public%2Freadme", "private%2Fsalaries");
    let refused = alice
        .read_resource(rmcp::model::ReadResourceRequestParams::new(private.clone()))
        .await
        .expect_err("the private resource is refused");
    assert!(refused.to_string().contains("not permitted"), "{refused}");
    let prompts: Vec<String> = alice
        .list_all_prompts()
        .await
        .expect("prompts/list")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(prompts, ["lib__summarise"]);
    assert!(
        alice
            .get_prompt(rmcp::model::GetPromptRequestParams::new("lib__payroll"))
            .await
            .is_err()
    );
    // The constraint: a__echo only with the allowed messages.
    assert!(call(&alice, "a__echo").await.is_ok());
    let constrained = alice
        .call_tool(
            CallToolRequestParams::new("a__echo").with_arguments(
                json!({"message": "something else"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        )
        .await
        .expect_err("a message outside the constraint is refused");
    assert!(
        constrained.to_string().contains("/message"),
        "{constrained}"
    );
    let _ = alice.cancel().await;

    // The admin role sees both resources and both prompts.
    let mut admin = claims("root");
    admin["roles"] = json!(["admin"]);
    let root = client(&gw.base, &hs(&admin)).await;
    assert_eq!(root.list_all_resources().await.expect("list").len(), 2);
    assert_eq!(root.list_all_prompts().await.expect("list").len(), 2);
    assert!(
        root.read_resource(rmcp::model::ReadResourceRequestParams::new(private))
            .await
            .is_ok()
    );
    let _ = root.cancel().await;
    gw.stop().await;
    let _ = library.shutdown().await;
}
