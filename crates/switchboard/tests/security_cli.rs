//! `switchboard token issue` and `switchboard key create|list|revoke` through the real binary.

use std::process::Command;

fn switchboard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
}

fn stdout(command: &mut Command) -> String {
    let output = command.output().expect("run switchboard");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[tokio::test]
async fn token_issue_signs_a_verifiable_hs256_token() {
    let secret = "0123456789abcdef0123456789abcdef-cli";
    let token = stdout(
        switchboard()
            .args([
                "token",
                "issue",
                "--subject",
                "alice",
                "--scope",
                "tool:crm__*",
                "--ttl",
                "1h",
            ])
            .env("SWITCHBOARD_JWT_SECRET", secret),
    );
    let config = switchboard_gateway::auth::AuthConfig {
        jwt_keys: vec![switchboard_gateway::auth::jwt::JwtKeyConfig {
            kid: None,
            algorithm: switchboard_gateway::auth::jwt::KeyAlgorithm::HS256,
            secret: Some(secret.into()),
            secret_env: None,
            public_key: None,
        }],
        ..Default::default()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let auth = switchboard_gateway::auth::Authenticator::new(config, dir.path()).expect("auth");
    let identity = auth
        .authenticate(Some(&format!("Bearer {token}")), None)
        .await
        .expect("the issued token verifies");
    assert_eq!(identity.subject, "alice");
    assert_eq!(identity.scopes, vec!["tool:crm__*".to_string()]);

    // A short secret and a missing one are refused.
    let short = switchboard()
        .args(["token", "issue", "--subject", "a"])
        .env("SWITCHBOARD_JWT_SECRET", "short")
        .output()
        .expect("run");
    assert!(!short.status.success());
    let missing = switchboard()
        .args(["token", "issue", "--subject", "a"])
        .env_remove("SWITCHBOARD_JWT_SECRET")
        .output()
        .expect("run");
    assert!(!missing.status.success());
}

#[test]
fn key_create_list_revoke() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("keys.json");
    let store_arg = store.display().to_string();
    let secret = stdout(switchboard().args([
        "key",
        "create",
        "ci",
        "--scope",
        "tool:sql__*",
        "--store",
        &store_arg,
    ]));
    assert!(secret.starts_with("sb_"));
    let stored = std::fs::read_to_string(&store).expect("store");
    assert!(!stored.contains(&secret), "only the hash is stored");
    let listed: serde_json::Value = serde_json::from_str(&stdout(
        switchboard().args(["key", "list", "--json", "--store", &store_arg]),
    ))
    .expect("json");
    assert_eq!(listed[0]["name"], "ci");
    assert_eq!(listed[0]["scopes"][0], "tool:sql__*");
    stdout(switchboard().args(["key", "revoke", "ci", "--store", &store_arg]));
    let again = switchboard()
        .args(["key", "revoke", "ci", "--store", &store_arg])
        .output()
        .expect("run");
    assert!(!again.status.success(), "revoking twice fails");
}

/// `serve --stdio` with `[security.auth]`: stdio carries no headers, so the client's API key
/// is given once (`SWITCHBOARD_CREDENTIAL`), and the per-identity policies hide and refuse
/// tools exactly as on HTTP; without a credential the gateway refuses to start.
#[tokio::test]
async fn stdio_clients_are_authorized_per_identity() {
    use rmcp::{
        ServiceExt,
        model::CallToolRequestParams,
        transport::{ConfigureCommandExt, TokioChildProcess},
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().display().to_string();
    let key = stdout(switchboard().args(["key", "create", "analyst", "--data-dir", &data]));
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        r#"
[[upstream]]
name = "a"
builtin = { server = "echo" }
[[upstream]]
name = "b"
builtin = { server = "echo" }

[security.auth]
api_keys_enabled = true

[security.authorization]
default = "deny"
[[security.authorization.policy]]
keys = ["analyst"]
allow = ["a__*"]
"#,
    )
    .expect("write config");
    let config = config.display().to_string();
    let serve = |credential: Option<&str>| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .args(["serve", "--stdio", "--config", &config, "--data-dir", &data])
            .env_remove("SWITCHBOARD_CREDENTIAL");
        if let Some(credential) = credential {
            command.env("SWITCHBOARD_CREDENTIAL", credential);
        }
        command
    };

    let client = ()
        .serve(
            TokioChildProcess::new(serve(Some(&key)).configure(|c| {
                c.stderr(std::process::Stdio::null());
            }))
            .expect("spawn"),
        )
        .await
        .expect("initialize over stdio");
    let tools: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(!tools.is_empty());
    assert!(tools.iter().all(|t| t.starts_with("a__")), "{tools:?}");
    let allowed = client
        .call_tool(
            CallToolRequestParams::new(tools[0].clone()).with_arguments(
                serde_json::json!({"message": "hi"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        )
        .await
        .expect("an allowed call");
    assert_ne!(allowed.is_error, Some(true));
    let denied = client
        .call_tool(
            CallToolRequestParams::new(tools[0].replacen("a__", "b__", 1)).with_arguments(
                serde_json::json!({"message": "hi"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        )
        .await;
    assert!(
        denied.is_err(),
        "a denied tool is a JSON-RPC error: {denied:?}"
    );
    client.cancel().await.expect("close");

    // No credential, or a wrong one: the gateway does not start.
    for (credential, expected) in [
        (None, "SWITCHBOARD_CREDENTIAL"),
        (Some("sb_not_a_real_key"), "was refused"),
    ] {
        let output = serve(credential)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("run");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }
}
