//! The MCP face of the SQL server: tool definitions, annotations and results.
//!
//! Tool names are stable API. Write tools (`insert_record`, `execute`) are removed from the
//! router unless writes are allowed, so a read-only server does not even list them.

use std::sync::Arc;

use rmcp::{
    ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{CallToolResult, ContentBlock},
    tool, tool_handler, tool_router,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};
use switchboard_core::{ToolOutput, failure, output_schema, success};

use crate::{
    config::SqlConfig,
    db::Database,
    error::SqlError,
    output::{
        ExecuteOutput, ExplainOutput, InsertOutput, QueryOutput, TableDescription, TablesOutput,
    },
};

/// Arguments of `describe_table` / `get_table_schema`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct DescribeTableParams {
    /// The table or view name, exactly as `list_tables` shows it.
    #[serde(alias = "table_name")]
    pub table: String,
    /// The schema (PostgreSQL schema, MySQL database, SQLite `main`); default: the search path.
    #[serde(default)]
    pub schema: Option<String>,
}

/// Arguments of `query`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct QueryParams {
    /// One read-only SQL statement (SELECT, WITH, VALUES, TABLE, SHOW, DESCRIBE). Use
    /// placeholders for values: `?` (SQLite, MySQL) or `$1` (PostgreSQL).
    #[serde(alias = "query")]
    pub sql: String,
    /// Values bound to the placeholders, in order.
    #[serde(default)]
    pub params: Vec<Value>,
    /// Rows to skip (the query is re-run; prefer ORDER BY for stable pages).
    #[serde(default)]
    pub offset: Option<u64>,
    /// The `next_cursor` of the previous page; overrides `offset`.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Most rows to return (capped by the server's limit).
    #[serde(default)]
    pub max_rows: Option<usize>,
}

/// Arguments of `explain_query`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ExplainParams {
    /// One read-only SQL statement to plan (it is not executed).
    #[serde(alias = "query")]
    pub sql: String,
    /// Values for the placeholders, in order.
    #[serde(default)]
    pub params: Vec<Value>,
}

/// Arguments of `insert_record`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct InsertParams {
    /// The table to insert into.
    #[serde(alias = "table_name")]
    pub table: String,
    /// The schema; default: the search path.
    #[serde(default)]
    pub schema: Option<String>,
    /// Column name to value. Columns not given get their defaults.
    pub data: Map<String, Value>,
}

/// Arguments of `execute`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ExecuteParams {
    /// One SQL statement: INSERT, UPDATE, DELETE or DDL.
    #[serde(alias = "query")]
    pub sql: String,
    /// Values bound to the placeholders, in order.
    #[serde(default)]
    pub params: Vec<Value>,
}

/// The SQL MCP server. Cheap to clone: the pools live behind an `Arc`.
#[derive(Clone)]
pub struct SqlServer {
    db: Arc<Database>,
    tool_router: ToolRouter<Self>,
}

impl std::fmt::Debug for SqlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlServer")
            .field("engine", &self.db.engine())
            .finish_non_exhaustive()
    }
}

fn respond<T: switchboard_core::ToolOutput>(result: Result<T, SqlError>) -> CallToolResult {
    match result {
        Ok(output) => success(&output),
        Err(err) => {
            tracing::debug!(kind = err.kind(), "sql tool error: {err}");
            failure(err.kind(), err.to_string())
        }
    }
}

/// [`respond`] for `query`: the rows are moved into the structured content rather than
/// copied (`success` serialises a copy of the whole output).
fn respond_query(result: Result<QueryOutput, SqlError>) -> CallToolResult {
    let mut output = match result {
        Ok(output) => output,
        Err(err) => return respond::<QueryOutput>(Err(err)),
    };
    let text = output.render_text();
    let rows = std::mem::take(&mut output.rows);
    match serde_json::to_value(&output) {
        Ok(mut value) => {
            if let Some(slot) = value.get_mut("rows") {
                *slot = Value::Array(rows.into_iter().map(Value::Array).collect());
            }
            let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
            result.structured_content = Some(value);
            result
        }
        Err(err) => failure(
            "internal",
            format!("could not serialise the tool output: {err}"),
        ),
    }
}

#[tool_router(router = tool_router)]
impl SqlServer {
    /// Connects to the configured database (or creates the seeded demo database) and builds
    /// the server. Without `allow_writes`, `insert_record` and `execute` are not offered.
    pub async fn connect(config: &SqlConfig) -> Result<Self, SqlError> {
        let db = Database::connect(config).await?;
        let mut tool_router = Self::tool_router();
        if !config.allow_writes {
            tool_router.remove_route("execute");
            tool_router.remove_route("insert_record");
        }
        Ok(Self {
            db: Arc::new(db),
            tool_router,
        })
    }

    /// `sqlite`, `postgres` or `mysql`.
    pub fn engine(&self) -> &'static str {
        self.db.engine()
    }

    /// Closes the connection pools (the server stops working).
    pub async fn close(&self) {
        self.db.close().await;
    }

    #[tool(
        name = "list_tables",
        description = "List the schemas, tables and views of the database, with row estimates.",
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = output_schema::<TablesOutput>()
    )]
    async fn list_tables(&self) -> CallToolResult {
        respond(self.db.list_tables().await)
    }

    #[tool(
        name = "describe_table",
        description = "Describe a table or view: columns with types, nullability and defaults, primary key, foreign keys and indexes.",
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = output_schema::<TableDescription>()
    )]
    async fn describe_table(
        &self,
        Parameters(p): Parameters<DescribeTableParams>,
    ) -> CallToolResult {
        respond(self.db.describe(p.schema.as_deref(), &p.table).await)
    }

    #[tool(
        name = "get_table_schema",
        description = "Alias of describe_table: columns, types, keys and indexes of a table or view.",
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = output_schema::<TableDescription>()
    )]
    async fn get_table_schema(
        &self,
        Parameters(p): Parameters<DescribeTableParams>,
    ) -> CallToolResult {
        respond(self.db.describe(p.schema.as_deref(), &p.table).await)
    }

    #[tool(
        name = "query",
        description = "Run one read-only SQL statement (SELECT/WITH/VALUES/SHOW) with optional bound params. The database enforces read-only. Results are limited in rows and bytes; page with `cursor`.",
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = output_schema::<QueryOutput>()
    )]
    async fn query(&self, Parameters(p): Parameters<QueryParams>) -> CallToolResult {
        let offset = match p.cursor.as_deref().map(str::parse::<u64>) {
            Some(Ok(offset)) => offset,
            Some(Err(_)) => {
                return failure(
                    "invalid_input",
                    "the cursor is not one this server returned",
                );
            }
            None => p.offset.unwrap_or(0),
        };
        respond_query(self.db.query(&p.sql, &p.params, offset, p.max_rows).await)
    }

    #[tool(
        name = "explain_query",
        description = "Show the engine's query plan for one read-only statement, without running it.",
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = output_schema::<ExplainOutput>()
    )]
    async fn explain_query(&self, Parameters(p): Parameters<ExplainParams>) -> CallToolResult {
        respond(self.db.explain(&p.sql, &p.params).await)
    }

    #[tool(
        name = "insert_record",
        description = "Insert one row: `data` maps column names to values. Names are checked against the live schema; values are bound. Returns the new row's key.",
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false),
        output_schema = output_schema::<InsertOutput>()
    )]
    async fn insert_record(&self, Parameters(p): Parameters<InsertParams>) -> CallToolResult {
        respond(self.db.insert(p.schema.as_deref(), &p.table, &p.data).await)
    }

    #[tool(
        name = "execute",
        description = "Execute one data-changing statement (INSERT, UPDATE, DELETE or DDL) with optional bound params, and report the affected rows. Changes are committed.",
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false),
        output_schema = output_schema::<ExecuteOutput>()
    )]
    async fn execute(&self, Parameters(p): Parameters<ExecuteParams>) -> CallToolResult {
        respond(self.db.execute(&p.sql, &p.params).await)
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "switchboard-sql",
    instructions = "SQL database tools. Start with list_tables and describe_table, then query with one read-only statement and bound params. Writes are only possible when the server was started with --allow-writes."
)]
impl ServerHandler for SqlServer {}

impl SqlServer {
    /// The limits in force (for diagnostics and tests).
    pub fn limits(&self) -> &crate::Limits {
        self.db.limits()
    }
}
