//! The tools' structured outputs and their text renderings.

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use switchboard_core::ToolOutput;

/// A result column: its name and the engine's type name.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

/// The result of `query`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct QueryOutput {
    pub columns: Vec<ColumnInfo>,
    /// One array per row, values in column order.
    pub rows: Vec<Vec<Value>>,
    pub row_count: usize,
    /// True when rows were left out (row or byte limit) or cells were cut.
    pub truncated: bool,
    /// Cells cut to the cell size limit.
    pub truncated_cells: usize,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Rows skipped before this page.
    pub offset: u64,
    pub elapsed_ms: u64,
}

/// Renders rows as an aligned text table, cells cut at a readable width.
pub(crate) fn text_table(headers: &[String], rows: &[Vec<String>]) -> String {
    const MAX_WIDTH: usize = 48;
    let cut = |s: &str| -> String {
        let one_line = s.replace(['\n', '\r'], " ");
        if one_line.chars().count() > MAX_WIDTH {
            let mut t: String = one_line.chars().take(MAX_WIDTH - 1).collect();
            t.push('…');
            t
        } else {
            one_line
        }
    };
    let headers: Vec<String> = headers.iter().map(|h| cut(h)).collect();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cut(c)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect::<Vec<_>>()
            .join(" | ")
            .trim_end()
            .to_string()
    };
    let mut out = line(&headers);
    out.push('\n');
    out.push_str(
        &widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-"),
    );
    for row in &rows {
        out.push('\n');
        out.push_str(&line(row));
    }
    out
}

fn cell_text(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl ToolOutput for QueryOutput {
    fn render_text(&self) -> String {
        let headers: Vec<String> = self.columns.iter().map(|c| c.name.clone()).collect();
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(cell_text).collect())
            .collect();
        let mut out = text_table(&headers, &rows);
        out.push_str(&format!(
            "\n({} row{}, {} ms",
            self.row_count,
            if self.row_count == 1 { "" } else { "s" },
            self.elapsed_ms
        ));
        if self.truncated {
            out.push_str(", truncated");
        }
        if let Some(cursor) = &self.next_cursor {
            out.push_str(&format!("; more rows: pass cursor \"{cursor}\""));
        }
        out.push(')');
        out
    }
}

/// One table or view.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TableEntry {
    pub schema: String,
    pub name: String,
    /// `table` or `view`.
    pub kind: String,
    /// Rows, estimated from engine statistics (exact on SQLite); absent when unknown.
    pub row_estimate: Option<i64>,
}

/// The result of `list_tables`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TablesOutput {
    /// `sqlite`, `postgres` or `mysql`.
    pub engine: String,
    pub tables: Vec<TableEntry>,
}

impl ToolOutput for TablesOutput {
    fn render_text(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .tables
            .iter()
            .map(|t| {
                vec![
                    t.schema.clone(),
                    t.name.clone(),
                    t.kind.clone(),
                    t.row_estimate.map_or_else(|| "?".into(), |n| n.to_string()),
                ]
            })
            .collect();
        let headers = ["schema", "name", "kind", "rows (est.)"].map(String::from);
        format!(
            "{} database, {} tables and views\n{}",
            self.engine,
            self.tables.len(),
            text_table(&headers, &rows)
        )
    }
}

/// One column of a table.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TableColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub nullable: bool,
    pub default: Option<String>,
    pub primary_key: bool,
}

/// A foreign key.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ForeignKey {
    pub name: Option<String>,
    pub columns: Vec<String>,
    pub referenced_schema: Option<String>,
    pub referenced_table: String,
    pub referenced_columns: Vec<String>,
}

/// An index.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct IndexInfo {
    pub name: String,
    pub columns: Vec<String>,
    pub unique: bool,
    pub primary: bool,
}

/// The result of `describe_table` / `get_table_schema`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TableDescription {
    pub schema: String,
    pub table: String,
    /// `table` or `view`.
    pub kind: String,
    pub columns: Vec<TableColumn>,
    pub primary_key: Vec<String>,
    pub foreign_keys: Vec<ForeignKey>,
    pub indexes: Vec<IndexInfo>,
}

impl ToolOutput for TableDescription {
    fn render_text(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .columns
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.type_name.clone(),
                    if c.nullable { "yes" } else { "no" }.into(),
                    c.default.clone().unwrap_or_default(),
                    if c.primary_key { "PK" } else { "" }.into(),
                ]
            })
            .collect();
        let headers = ["column", "type", "nullable", "default", "key"].map(String::from);
        let mut out = format!(
            "{} {}.{}\n{}",
            self.kind,
            self.schema,
            self.table,
            text_table(&headers, &rows)
        );
        for fk in &self.foreign_keys {
            out.push_str(&format!(
                "\nforeign key ({}) references {}({})",
                fk.columns.join(", "),
                fk.referenced_table,
                fk.referenced_columns.join(", ")
            ));
        }
        for ix in &self.indexes {
            out.push_str(&format!(
                "\n{}index {} ({})",
                if ix.unique { "unique " } else { "" },
                ix.name,
                ix.columns.join(", ")
            ));
        }
        out
    }
}

/// The result of `explain_query`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ExplainOutput {
    pub engine: String,
    /// The engine's plan: JSON from PostgreSQL and MySQL, `EXPLAIN QUERY PLAN` rows from SQLite.
    pub plan: Value,
}

impl ToolOutput for ExplainOutput {
    fn render_text(&self) -> String {
        match serde_json::to_string_pretty(&self.plan) {
            Ok(text) => format!("{} plan:\n{text}", self.engine),
            Err(_) => format!("{} plan: {}", self.engine, self.plan),
        }
    }
}

/// The result of `insert_record`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct InsertOutput {
    pub table: String,
    pub rows_affected: u64,
    /// The inserted row's key (primary-key columns, or SQLite's rowid when there is none).
    pub inserted_key: serde_json::Map<String, Value>,
}

impl ToolOutput for InsertOutput {
    fn render_text(&self) -> String {
        format!(
            "Inserted {} row into {}; key {}",
            self.rows_affected,
            self.table,
            Value::Object(self.inserted_key.clone())
        )
    }
}

/// The result of `execute`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ExecuteOutput {
    pub rows_affected: u64,
    /// The generated id, where the engine reports one (MySQL/MariaDB, SQLite).
    pub last_insert_id: Option<i64>,
    pub elapsed_ms: u64,
}

impl ToolOutput for ExecuteOutput {
    fn render_text(&self) -> String {
        let mut out = format!(
            "{} row(s) affected ({} ms)",
            self.rows_affected, self.elapsed_ms
        );
        if let Some(id) = self.last_insert_id {
            out.push_str(&format!("; last insert id {id}"));
        }
        out
    }
}
