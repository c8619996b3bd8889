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

#[test]
fn token_issue_signs_a_verifiable_hs256_token() {
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
