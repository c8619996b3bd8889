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

/// Widest a cell is shown in a text table, in characters.
const MAX_WIDTH: usize = 48;

/// A value shown in a text table.
pub(crate) trait Cell {
    /// The cell's text when the cell holds it; otherwise the text is appended to `scratch`
    /// and `None` returned (numbers: each is formatted once per table, not once per pass).
    fn text<'a>(&'a self, scratch: &mut String) -> Option<&'a str>;
}

impl Cell for String {
    fn text<'a>(&'a self, _: &mut String) -> Option<&'a str> {
        Some(self)
    }
}

impl Cell for Value {
    fn text<'a>(&'a self, scratch: &mut String) -> Option<&'a str> {
        match self {
            Value::Null => Some("NULL"),
            Value::Bool(true) => Some("true"),
            Value::Bool(false) => Some("false"),
            Value::String(s) => Some(s),
            Value::Number(n) => {
                with_number_text(n, |t| scratch.push_str(t));
                None
            }
            other => {
                scratch.push_str(&other.to_string());
                None
            }
        }
    }
}

/// Where a cell's text is: in the cell, or at a range of the table's scratch text.
enum CellText<'a> {
    Held(&'a str),
    Scratch(std::ops::Range<usize>),
}

/// Calls `f` with `n`'s JSON text, exactly as serde_json writes it (the same `itoa` and
/// `zmij` formatters), on the stack: a 1,000-row result formats thousands of numbers, and
/// `fmt`'s machinery would cost more than the formatting.
pub(crate) fn with_number_text<T>(n: &serde_json::Number, f: impl FnOnce(&str) -> T) -> T {
    if let Some(u) = n.as_u64() {
        f(itoa::Buffer::new().format(u))
    } else if let Some(i) = n.as_i64() {
        f(itoa::Buffer::new().format(i))
    } else {
        match n.as_f64() {
            // serde_json's Number holds only finite floats; the guard keeps that an assumption
            // this code does not rest on.
            Some(x) if x.is_finite() => f(zmij::Buffer::new().format_finite(x)),
            _ => f(&n.to_string()),
        }
    }
}

/// The characters of `s` shown in a cell (cut at [`MAX_WIDTH`]) and whether it was cut.
fn shown_chars(s: &str) -> (usize, bool) {
    if s.is_ascii() {
        return (s.len().min(MAX_WIDTH), s.len() > MAX_WIDTH);
    }
    if s.len() <= MAX_WIDTH {
        return (s.chars().count(), false);
    }
    let n = s.chars().take(MAX_WIDTH + 1).count();
    if n > MAX_WIDTH {
        (MAX_WIDTH, true)
    } else {
        (n, false)
    }
}

/// How a cell's text is shown, measured once per cell: the table needs it for the column
/// widths and again to lay the cell out.
#[derive(Clone, Copy)]
struct Shape {
    /// Characters shown (at most [`MAX_WIDTH`]).
    chars: usize,
    /// Cut at [`MAX_WIDTH`].
    cut: bool,
    /// Holds no line break (which the table shows as a space).
    single_line: bool,
}

impl Shape {
    fn of(s: &str) -> Self {
        let (chars, cut) = shown_chars(s);
        // Almost no cell holds a control character; one vectorised pass says so, and only
        // a cell that does is searched for its line breaks.
        let single_line = !any_byte(s.as_bytes(), |b| b < 0x20)
            || memchr::memchr2(b'\n', b'\r', s.as_bytes()).is_none();
        Self {
            chars,
            cut,
            single_line,
        }
    }
}

/// Whether any byte of `bytes` matches `pred`, which must not match a space: 32 bytes at a
/// time with no early exit inside a block, so the compiler tests a block with a few vector
/// instructions (a byte-wise `any` stops after each byte and stays scalar). The tail, which
/// is all of a short cell, is tested as a block padded with spaces.
#[inline]
pub(crate) fn any_byte(bytes: &[u8], pred: impl Fn(u8) -> bool) -> bool {
    debug_assert!(!pred(b' '), "the padding must not match");
    let block_hits = |block: &[u8; 32]| block.iter().fold(false, |hit, &b| hit | pred(b));
    // Fixed-size blocks: a slice's length is not known to the compiler, an array's is.
    let (blocks, rest) = bytes.as_chunks::<32>();
    if blocks.iter().any(block_hits) {
        return true;
    }
    let mut tail = [b' '; 32];
    tail[..rest.len()].copy_from_slice(rest);
    block_hits(&tail)
}

/// Appends `s`, of shape `shape`, as a cell: on one line, cut at [`MAX_WIDTH`] characters
/// with `…`, padded to `width` (a line's trailing padding is trimmed afterwards).
fn push_cell(out: &mut String, s: &str, shape: Shape, width: usize) {
    let Shape {
        chars: shown,
        cut,
        single_line,
    } = shape;
    if !cut && single_line {
        out.push_str(s);
    } else if single_line && s.is_ascii() {
        // One byte per character: cut by slicing.
        out.push_str(&s[..MAX_WIDTH - 1]);
        out.push('…');
    } else {
        let keep = if cut { MAX_WIDTH - 1 } else { shown };
        out.extend(s.chars().take(keep).map(|c| match c {
            '\n' | '\r' => ' ',
            c => c,
        }));
        if cut {
            out.push('…');
        }
    }
    let mut missing = width.saturating_sub(shown);
    while missing > 0 {
        let n = missing.min(SPACES.len());
        out.push_str(&SPACES[..n]);
        missing -= n;
    }
}

/// Padding, appended a slice at a time rather than a `char` at a time.
const SPACES: &str = "                                                                ";

/// Renders rows as an aligned text table, cells cut at a readable width.
pub(crate) fn text_table<H: AsRef<str>, C: Cell>(headers: &[H], rows: &[Vec<C>]) -> String {
    let header_shapes: Vec<Shape> = headers.iter().map(|h| Shape::of(h.as_ref())).collect();
    let mut widths: Vec<usize> = header_shapes.iter().map(|s| s.chars).collect();
    // One pass finds every cell's text (formatting those that need it) and the column
    // widths; the second lays the table out from those texts.
    let mut scratch = String::new();
    let mut texts: Vec<(CellText<'_>, Shape)> = Vec::with_capacity(rows.len() * widths.len());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            let start = scratch.len();
            let (text, shape) = match cell.text(&mut scratch) {
                Some(held) => (CellText::Held(held), Shape::of(held)),
                None => (
                    CellText::Scratch(start..scratch.len()),
                    Shape::of(&scratch[start..]),
                ),
            };
            *w = (*w).max(shape.chars);
            texts.push((text, shape));
        }
    }
    let line_len: usize = widths.iter().sum::<usize>() + 3 * widths.len() + 1;
    let mut out = String::with_capacity(line_len.saturating_mul(rows.len() + 2));
    let end_line = |out: &mut String, start: usize| {
        let kept = out[start..].trim_end().len();
        out.truncate(start + kept);
    };
    for (i, ((h, shape), w)) in headers.iter().zip(&header_shapes).zip(&widths).enumerate() {
        if i > 0 {
            out.push_str(" | ");
        }
        push_cell(&mut out, h.as_ref(), *shape, *w);
    }
    end_line(&mut out, 0);
    out.push('\n');
    for (i, w) in widths.iter().enumerate() {
        if i > 0 {
            out.push_str("-+-");
        }
        out.extend(std::iter::repeat_n('-', *w));
    }
    let mut texts = texts.iter();
    for row in rows {
        out.push('\n');
        let start = out.len();
        for (i, (w, (text, shape))) in widths.iter().take(row.len()).zip(&mut texts).enumerate() {
            if i > 0 {
                out.push_str(" | ");
            }
            let text = match text {
                CellText::Held(held) => held,
                CellText::Scratch(range) => scratch.get(range.clone()).unwrap_or_default(),
            };
            push_cell(&mut out, text, *shape, *w);
        }
        end_line(&mut out, start);
    }
    out
}

impl ToolOutput for QueryOutput {
    fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let headers: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        let mut out = text_table(&headers, &self.rows);
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "\n({} row{}, {} ms",
            self.row_count,
            if self.row_count == 1 { "" } else { "s" },
            self.elapsed_ms
        );
        if self.truncated {
            out.push_str(", truncated");
        }
        if let Some(cursor) = &self.next_cursor {
            let _ = write!(out, "; more rows: pass cursor \"{cursor}\"");
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward rendering the table writer must match.
    fn reference_table(headers: &[String], rows: &[Vec<String>]) -> String {
        const MAX: usize = MAX_WIDTH;
        let cut = |s: &str| -> String {
            let one_line = s.replace(['\n', '\r'], " ");
            if one_line.chars().count() > MAX {
                let mut t: String = one_line.chars().take(MAX - 1).collect();
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

    #[test]
    fn any_byte_finds_a_match_at_every_length_and_place() {
        let special = |b: u8| (b < 0x20) | (b == b'"') | (b == b'\\');
        for len in 0..100 {
            let plain = vec![b'x'; len];
            assert!(!any_byte(&plain, special), "{len}");
            for at in 0..len {
                for hit in [b'\n', 0, 0x1f, b'"', b'\\'] {
                    let mut bytes = plain.clone();
                    bytes[at] = hit;
                    assert!(any_byte(&bytes, special), "{len} {at} {hit}");
                }
            }
        }
    }

    #[test]
    fn text_table_matches_the_reference_rendering() {
        let long = "é".repeat(60);
        let exact = "x".repeat(48);
        let cases: Vec<(Vec<&str>, Vec<Vec<&str>>)> = vec![
            (vec!["id", "name"], vec![vec!["1", "a"], vec!["22", "bb"]]),
            (vec!["only"], vec![vec![""], vec!["  "], vec!["x \n"]]),
            (
                vec!["a\nb", "Trần Thị Bình"],
                vec![vec![&long, "line1\r\nline2"], vec![&exact, "tail  "]],
            ),
            (
                vec!["x", "y", "z"],
                vec![vec!["1"], vec!["1", "2", "3", "4"]],
            ),
            (vec![], vec![vec!["ignored"]]),
        ];
        for (headers, rows) in cases {
            let headers: Vec<String> = headers.into_iter().map(String::from).collect();
            let rows: Vec<Vec<String>> = rows
                .into_iter()
                .map(|r| r.into_iter().map(String::from).collect())
                .collect();
            assert_eq!(
                text_table(&headers, &rows),
                reference_table(&headers, &rows)
            );
        }
    }

    #[test]
    fn value_cells_render_like_their_text() {
        let values = vec![
            Value::Null,
            Value::Bool(true),
            serde_json::json!(-42),
            serde_json::json!(1.5),
            serde_json::json!(1e300),
            serde_json::json!(-0.000123),
            serde_json::json!(0.1 + 0.2),
            serde_json::json!(-0.0),
            serde_json::json!(f64::MIN_POSITIVE),
            serde_json::json!(u64::MAX),
            serde_json::json!(i64::MIN),
            Value::Bool(false),
            serde_json::json!("text"),
            serde_json::json!({"k": [1, 2]}),
        ];
        let texts: Vec<String> = values
            .iter()
            .map(|v| match v {
                Value::Null => "NULL".to_string(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        assert_eq!(
            text_table(
                &["v"],
                &values.into_iter().map(|v| vec![v]).collect::<Vec<_>>()
            ),
            text_table(
                &["v"],
                &texts.into_iter().map(|t| vec![t]).collect::<Vec<_>>()
            )
        );
    }
}
