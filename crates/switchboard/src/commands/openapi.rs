//! `switchboard openapi inspect SPEC`: the tools an OpenAPI document would become, without
//! starting anything, so an operator can check names, filters and annotations before adding
//! the `[upstream.openapi]` table.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use switchboard_openapi::{OpenApiConfig, operation, spec};

#[derive(Debug, Subcommand)]
pub enum OpenApiCommand {
    /// Print the tools a document would expose: name, method, path, annotations, description.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The OpenAPI 3.0/3.1 document (JSON or YAML): a file path or an http(s) URL.
    pub spec: String,
    /// Print JSON (one object per tool, with its inputSchema) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// How many `$ref`s deep schemas are inlined (as `max_ref_depth` in the config).
    #[arg(long, default_value_t = 16)]
    pub max_ref_depth: usize,
    /// Largest document read, in bytes (as `max_spec_bytes` in the config).
    #[arg(long, default_value_t = 16 << 20)]
    pub max_spec_bytes: u64,
}

pub async fn run(command: OpenApiCommand) -> anyhow::Result<()> {
    match command {
        OpenApiCommand::Inspect(args) => inspect(args).await,
    }
}

async fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let mut config = OpenApiConfig::new(args.spec.clone());
    config.max_ref_depth = args.max_ref_depth;
    config.max_spec_bytes = args.max_spec_bytes;
    let http = switchboard_openapi::http_client(&config)?;
    let document = spec::load(&config.spec, config.max_spec_bytes, &http).await?;
    let catalog = operation::build(&document, &config)
        .with_context(|| format!("{} is not usable", args.spec))?;
    for skipped in &catalog.skipped {
        eprintln!(
            "skipped {} {}: {}",
            skipped.method, skipped.path, skipped.reason
        );
    }
    if args.json {
        let tools: Vec<_> = catalog
            .operations
            .iter()
            .map(|op| {
                json!({
                    "name": op.tool_name,
                    "method": op.method,
                    "path": op.path,
                    "operation_id": op.operation_id,
                    "tags": op.tags,
                    "annotations": op.annotations,
                    "description": op.description,
                    "input_schema": op.input_schema,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&tools)?);
        return Ok(());
    }
    let name_width = catalog
        .operations
        .iter()
        .map(|op| op.tool_name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let path_width = catalog
        .operations
        .iter()
        .map(|op| op.method.len() + 1 + op.path.len())
        .max()
        .unwrap_or(9)
        .max(9);
    println!(
        "{:<name_width$}  {:<path_width$}  {:<18}  DESCRIPTION",
        "TOOL", "OPERATION", "HINTS"
    );
    for op in &catalog.operations {
        let mut hints = Vec::new();
        if op.annotations.read_only_hint == Some(true) {
            hints.push("read-only");
        }
        if op.annotations.destructive_hint == Some(true) {
            hints.push("destructive");
        }
        if op.annotations.idempotent_hint == Some(true) {
            hints.push("idempotent");
        }
        let first_line = op.description.lines().next().unwrap_or("");
        println!(
            "{:<name_width$}  {:<path_width$}  {:<18}  {first_line}",
            op.tool_name,
            format!("{} {}", op.method, op.path),
            hints.join(","),
        );
    }
    eprintln!(
        "{} tools, {} operations skipped",
        catalog.operations.len(),
        catalog.skipped.len()
    );
    Ok(())
}
