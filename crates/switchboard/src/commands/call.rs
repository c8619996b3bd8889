//! `switchboard call <target> <tool> '<json-args>'`: call one tool of any MCP server.
//!
//! Text content is printed as is, other content as a one-line summary, structured content
//! pretty-printed; `--json` prints the whole result. The exit status is non-zero when the
//! call fails or the result has `isError`, so scripts can rely on it.

use anyhow::{Context, bail};
use clap::Args;
use rmcp::model::CallToolRequestParams;
use serde_json::Value;

use super::tools::TargetArgs;

#[derive(Debug, Args)]
pub struct CallArgs {
    /// `[URL] TOOL [JSON-ARGS]`: the URL is omitted when the server command follows `--`;
    /// the arguments default to `{}`.
    #[arg(required = true, num_args = 1..=3)]
    pub positional: Vec<String>,
    #[command(flatten)]
    pub target: TargetArgs,
}

pub async fn run(args: CallArgs) -> anyhow::Result<()> {
    let stdio = !args.target.command.is_empty();
    let (url, rest) = if stdio {
        (None, args.positional.as_slice())
    } else {
        match args.positional.split_first() {
            Some((url, rest)) => (Some(url.as_str()), rest),
            None => bail!("give a server URL, or a server command after --"),
        }
    };
    let (tool, json) = match rest {
        [tool] => (tool.clone(), "{}"),
        [tool, json] => (tool.clone(), json.as_str()),
        _ => bail!("expected [URL] TOOL [JSON-ARGS]"),
    };
    let arguments: serde_json::Map<String, Value> =
        serde_json::from_str(json).context("the tool arguments must be a JSON object")?;
    let client = args.target.connect(url).await?;
    let result = client
        .call_tool(CallToolRequestParams::new(tool.clone()).with_arguments(arguments))
        .await;
    let closed = switchboard_transport::shutdown(client).await;
    let result = result.with_context(|| format!("calling {tool} failed"))?;
    let is_error = result.is_error == Some(true);
    if args.target.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        if is_error {
            println!("[isError] the tool reported an error:");
        }
        for item in &result.content {
            println!("{}", render_content(&serde_json::to_value(item)?));
        }
        if let Some(structured) = &result.structured_content {
            println!("structured content:");
            println!("{}", serde_json::to_string_pretty(structured)?);
        }
    }
    closed.context("closing the connection")?;
    if is_error {
        bail!("{tool} returned isError");
    }
    Ok(())
}

/// One content item as text; non-text content as a short summary (it is not printable).
fn render_content(item: &Value) -> String {
    let field = |name: &str| item.get(name).and_then(Value::as_str).unwrap_or_default();
    match field("type") {
        "text" => field("text").to_owned(),
        kind @ ("image" | "audio") => format!(
            "[{kind}: {}, {} base64 bytes]",
            field("mimeType"),
            field("data").len()
        ),
        "resource" => {
            let resource = item.get("resource").cloned().unwrap_or_default();
            let uri = resource.get("uri").and_then(Value::as_str).unwrap_or("?");
            match resource.get("text").and_then(Value::as_str) {
                Some(text) => format!("[resource {uri}]\n{text}"),
                None => format!("[resource {uri}, binary]"),
            }
        }
        "resource_link" => format!("[link {}]", field("uri")),
        _ => item.to_string(),
    }
}
