//! `switchboard token issue`: signs an HS256 bearer token for a gateway whose
//! `[security.auth]` has an HS256 key. For operators and tests; production identity providers
//! issue their own tokens (RS256/ES256), which the gateway verifies with their public keys.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use switchboard_gateway::{
    GatewayConfig,
    auth::jwt::{IssueRequest, KeyAlgorithm, issue_hs256},
};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a signed HS256 token on stdout.
    Issue(IssueArgs),
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The token's `sub`: who it identifies.
    #[arg(long)]
    pub subject: String,
    /// A scope (repeatable), e.g. `tool:crm__*` to limit the token to those tools.
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// A role (repeatable), matched by `roles` in authorization policies.
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// Lifetime: a number with s, m, h or d (`30m`, `1h`, `7d`). Default 1h.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// The gateway configuration: its first HS256 key, issuer and audience are used.
    #[arg(long, short, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Without --config: the environment variable holding the HS256 secret.
    #[arg(long, default_value = "SWITCHBOARD_JWT_SECRET")]
    pub secret_env: String,
    /// Without --config: the `iss` claim. Default `switchboard`.
    #[arg(long, default_value = "switchboard")]
    pub issuer: String,
    /// Without --config: the `aud` claim. Default `switchboard`.
    #[arg(long, default_value = "switchboard")]
    pub audience: String,
    /// The `kid` header (default: the configured key's `kid`, if any).
    #[arg(long)]
    pub kid: Option<String>,
}

/// Parses `90s`, `15m`, `1h`, `7d` (a bare number is seconds).
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30m, 1h or 7d"))?;
    let seconds = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .filter(|s| *s > 0)
    .ok_or_else(|| format!("{text:?} is not a positive duration like 30m, 1h or 7d"))?;
    Ok(Duration::from_secs(seconds))
}

pub fn run(command: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Issue(args) = command;
    let (secret, issuer, audience, kid) = match &args.config {
        Some(path) => {
            let config = GatewayConfig::load(path)?;
            let auth = config
                .security
                .auth
                .with_context(|| format!("{} has no [security.auth]", path.display()))?;
            let key = auth
                .jwt_keys
                .iter()
                .find(|k| k.algorithm == KeyAlgorithm::HS256)
                .with_context(|| {
                    format!("{} has no HS256 [[security.auth.jwt]] key", path.display())
                })?;
            (
                key.hs256_secret()?,
                auth.issuer.clone(),
                auth.audience.clone(),
                key.kid.clone(),
            )
        }
        None => match std::env::var(&args.secret_env) {
            Ok(secret) => (secret, args.issuer.clone(), args.audience.clone(), None),
            Err(_) => bail!(
                "set {} to the gateway's HS256 secret, or pass --config",
                args.secret_env
            ),
        },
    };
    let token = issue_hs256(&IssueRequest {
        secret: secret.as_bytes(),
        kid: args.kid.clone().or(kid),
        subject: &args.subject,
        scopes: &args.scopes,
        roles: &args.roles,
        ttl: args.ttl,
        issuer: &issuer,
        audience: &audience,
    })?;
    println!("{token}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl() {
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_ttl("45"), Ok(Duration::from_secs(45)));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
