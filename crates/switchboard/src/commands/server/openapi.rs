//! `switchboard server openapi`: a REST service's OpenAPI document served as MCP tools on its
//! own (the gateway's `[upstream.openapi]` offers every option; these flags the common ones).

use clap::Args;
use switchboard_openapi::{AuthConfig, OpenApiConfig, OpenApiConnector};

use super::TransportArgs;

#[derive(Debug, Args)]
pub struct OpenApiArgs {
    /// The OpenAPI 3.0/3.1 document (JSON or YAML): a file path or an http(s) URL.
    #[arg(long)]
    pub spec: String,
    /// Where requests go; default: the document's first `servers` URL.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Send `Authorization: Bearer` with the token in this environment variable.
    #[arg(long, value_name = "VAR")]
    pub bearer_env: Option<String>,
    /// Deadline of one HTTP request, in seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
    /// Largest response body read, in bytes (larger: a `response_too_large` tool error).
    #[arg(long, default_value_t = 4 << 20)]
    pub max_response_bytes: u64,
    /// Follow redirects to other origins (refused by default).
    #[arg(long)]
    pub cross_origin_redirects: bool,
    #[command(flatten)]
    pub transport: TransportArgs,
}

pub async fn run(args: OpenApiArgs) -> anyhow::Result<()> {
    let mut config = OpenApiConfig::new(args.spec);
    config.base_url = args.base_url;
    config.auth = args
        .bearer_env
        .map(|token_env| AuthConfig::Bearer { token_env });
    config.timeout_secs = args.timeout_secs;
    config.max_response_bytes = args.max_response_bytes;
    config.cross_origin_redirects = args.cross_origin_redirects;
    let connector = OpenApiConnector::load(&config).await?;
    super::serve(connector, &args.transport).await
}
