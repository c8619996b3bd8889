//! `switchboard version`.

use clap::Args;

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: VersionArgs) -> anyhow::Result<()> {
    let protocols: Vec<String> = rmcp::model::ProtocolVersion::KNOWN_VERSIONS
        .iter()
        .map(|v| v.to_string())
        .collect();
    if args.json {
        let value = serde_json::json!({
            "name": "switchboard",
            "version": env!("CARGO_PKG_VERSION"),
            "protocolVersions": protocols,
            "latestProtocolVersion": rmcp::model::ProtocolVersion::LATEST.to_string(),
        });
        println!("{value}");
    } else {
        println!("switchboard {}", env!("CARGO_PKG_VERSION"));
        println!("MCP protocol versions: {}", protocols.join(", "));
    }
    Ok(())
}
