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
    /// The rows' cells as measured while they were collected, for the text table.
    #[serde(skip)]
    #[schemars(skip)]
    pub(crate) measured: Option<MeasuredCells>,
}

/// Widest a cell is shown in a text table, in characters.
const MAX_WIDTH: usize = 48;

/// A value shown in a text table.
pub(crate) trait Cell {
    /// The cell's text when the cell holds it; otherwise the text is appended to `scratch`
    /// and `None` returned (numbers: each is formatted once per table, not once per pass).
    fn text<'a>(&'a self, scratch: &mut String) -> Option<&'a str>;
    /// Whether the cell's JSON is its text as a JSON string. Otherwise its JSON is as long as
    /// its text: a number's or a JSON value's text is its JSON, and `NULL`, `true` and
    /// `false` are as long as `null`, `true` and `false`.
    fn is_string(&self) -> bool;
}

impl Cell for String {
    fn text<'a>(&'a self, _: &mut String) -> Option<&'a str> {
        Some(self)
    }

    fn is_string(&self) -> bool {
        true
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

    fn is_string(&self) -> bool {
        matches!(self, Value::String(_))
    }
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
#[derive(Debug, Clone, Copy)]
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
        // Almost every cell is ASCII with no control character; one vectorised pass says so,
        // and only a cell that is not is counted by characters and searched for line breaks.
        if !any_byte(s.as_bytes(), |b| !(0x20..0x80).contains(&b)) {
            return Self::plain(s);
        }
        Self::measured(s)
    }

    /// The shape of `s`, known to be ASCII with no control character.
    fn plain(s: &str) -> Self {
        Self {
            chars: s.len().min(MAX_WIDTH),
            cut: s.len() > MAX_WIDTH,
            single_line: true,
        }
    }

    /// The shape of any `s`, counted by characters.
    fn measured(s: &str) -> Self {
        let (chars, cut) = shown_chars(s);
        let single_line = !any_byte(s.as_bytes(), |b| b < 0x20)
            || memchr::memchr2(b'\n', b'\r', s.as_bytes()).is_none();
        Self {
            chars,
            cut,
            single_line,
        }
    }
}

/// Whether any byte of `bytes` matches `pred`, tested in fixed-size blocks with no early exit
/// inside a block, so the compiler tests a block with a few vector instructions (a byte-wise
/// `any` stops after each byte and stays scalar). Whatever the blocks leave over is tested as
/// one more block that overlaps them (the last 32, 16, 8 or 4 bytes), which a test of "any"
/// allows, so no byte is copied: most cells are shorter than a block, and copying their tail
/// into a padded block was a `memcpy` call per cell.
#[inline]
pub(crate) fn any_byte(bytes: &[u8], pred: impl Fn(u8) -> bool + Copy) -> bool {
    #[inline(always)]
    fn block<const N: usize>(block: &[u8; N], pred: impl Fn(u8) -> bool) -> bool {
        block.iter().fold(false, |hit, &b| hit | pred(b))
    }
    // Both halves of each pair exist when the length is at least the block's size.
    #[inline(always)]
    fn ends<const N: usize>(bytes: &[u8], pred: impl Fn(u8) -> bool + Copy) -> bool {
        match (bytes.first_chunk::<N>(), bytes.last_chunk::<N>()) {
            (Some(first), Some(last)) => block(first, pred) | block(last, pred),
            _ => bytes.iter().any(|&b| pred(b)),
        }
    }
    match bytes.len() {
        0..4 => bytes.iter().fold(false, |hit, &b| hit | pred(b)),
        4..8 => ends::<4>(bytes, pred),
        8..16 => ends::<8>(bytes, pred),
        16..32 => ends::<16>(bytes, pred),
        _ => {
            let (blocks, rest) = bytes.as_chunks::<32>();
            blocks.iter().any(|b| block(b, pred))
                || (!rest.is_empty()
                    && bytes
                        .last_chunk::<32>()
                        .is_some_and(|last| block(last, pred)))
        }
    }
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
    MeasuredCells::of(rows).render(headers, rows)
}

/// The length of `s` as a JSON string, quotes included, escaped as serde_json escapes it:
/// `"` and `\\` and the short control escapes take two bytes, other control characters six.
fn json_string_len(s: &str) -> usize {
    2 + s.len()
        + s.bytes()
            .map(|b| match b {
                b'"' | b'\\' | 0x08 | 0x09 | 0x0a | 0x0c | 0x0d => 1,
                0x00..=0x1f => 5,
                _ => 0,
            })
            .sum::<usize>()
}

/// Every cell of a table measured once: its text (numbers and other values formatted here,
/// once), how it is shown, and the columns' widths so far. The SQL collector measures each
/// row as it takes it, while the row is fresh in the cache: the result-size limit needs the
/// row's JSON length, which the same pass gives, so a float is formatted twice per answer (here
/// and in the JSON) rather than three times, and a text cell is scanned once for both.
#[derive(Debug, Clone, Default)]
pub(crate) struct MeasuredCells {
    /// The texts of the cells that do not hold theirs, back to back.
    scratch: String,
    /// Per cell, in row order: where its text is in `scratch` (`None`: the cell holds it),
    /// and its shape.
    cells: Vec<(Option<std::ops::Range<usize>>, Shape)>,
    /// Per column, the widest cell shown.
    widths: Vec<usize>,
    /// How many rows to make room for at the first.
    expected_rows: usize,
}

impl MeasuredCells {
    /// Measures of rows to come: about `expected_rows` of them.
    pub(crate) fn for_rows(expected_rows: usize) -> Self {
        Self {
            expected_rows,
            ..Self::default()
        }
    }

    /// Measures every cell of `rows`.
    pub(crate) fn of<C: Cell>(rows: &[Vec<C>]) -> Self {
        let mut measured = Self::for_rows(rows.len());
        for row in rows {
            measured.push_row(row, |_| true);
        }
        measured
    }

    /// Measures `row` and passes its JSON length (the sum of its cells') to `admit`; keeps the
    /// row's measures if `admit` says yes, and leaves everything as it was if it says no.
    pub(crate) fn push_row<C: Cell>(
        &mut self,
        row: &[C],
        admit: impl FnOnce(usize) -> bool,
    ) -> bool {
        if self.cells.is_empty() {
            // Room for the rows expected, so the cells are not copied as they grow.
            self.cells
                .reserve(row.len().saturating_mul(self.expected_rows));
        }
        let (first_cell, first_text) = (self.cells.len(), self.scratch.len());
        let mut json_len = 0;
        for cell in row {
            let start = self.scratch.len();
            let (text, shape, len) = match cell.text(&mut self.scratch) {
                Some(held) if cell.is_string() => {
                    // One pass for both questions: nothing to escape, and nothing but
                    // printable ASCII.
                    let plain = !any_byte(held.as_bytes(), |b| {
                        !(0x20..0x80).contains(&b) | (b == b'"') | (b == b'\\')
                    });
                    if plain {
                        (None, Shape::plain(held), 2 + held.len())
                    } else {
                        (None, Shape::measured(held), json_string_len(held))
                    }
                }
                Some(held) => (None, Shape::of(held), held.len()),
                None => {
                    let text = self.scratch.get(start..).unwrap_or_default();
                    (Some(start..self.scratch.len()), Shape::of(text), text.len())
                }
            };
            json_len += len;
            self.cells.push((text, shape));
        }
        if !admit(json_len) {
            self.cells.truncate(first_cell);
            self.scratch.truncate(first_text);
            return false;
        }
        if self.widths.len() < row.len() {
            self.widths.resize(row.len(), 0);
        }
        for (w, (_, shape)) in self.widths.iter_mut().zip(&self.cells[first_cell..]) {
            *w = (*w).max(shape.chars);
        }
        true
    }

    /// Whether these are the measures of `rows` (the same number of cells).
    fn covers<C>(&self, rows: &[Vec<C>]) -> bool {
        self.cells.len() == rows.iter().map(Vec::len).sum::<usize>()
    }

    /// Lays out `rows`, which these cells measure, under `headers`; cells beyond the
    /// headers are left out.
    pub(crate) fn render<H: AsRef<str>, C: Cell>(&self, headers: &[H], rows: &[Vec<C>]) -> String {
        let header_shapes: Vec<Shape> = headers.iter().map(|h| Shape::of(h.as_ref())).collect();
        let widths: Vec<usize> = header_shapes
            .iter()
            .enumerate()
            .map(|(i, s)| s.chars.max(self.widths.get(i).copied().unwrap_or(0)))
            .collect();
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
        let mut at = 0;
        for row in rows {
            out.push('\n');
            let start = out.len();
            // Every cell of the row was measured; those beyond the headers are skipped.
            let measured = self.cells.get(at..at + row.len()).unwrap_or_default();
            at += row.len();
            for (i, ((w, cell), (text, shape))) in widths.iter().zip(row).zip(measured).enumerate()
            {
                if i > 0 {
                    out.push_str(" | ");
                }
                let text = match text {
                    Some(range) => self.scratch.get(range.clone()).unwrap_or_default(),
                    // A cell that held its text when measured holds it still.
                    None => cell.text(&mut String::new()).unwrap_or_default(),
                };
                push_cell(&mut out, text, *shape, *w);
            }
            end_line(&mut out, start);
        }
        out
    }
}

impl ToolOutput for QueryOutput {
    fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let headers: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        let mut out = match &self.measured {
            Some(measured) if measured.covers(&self.rows) => measured.render(&headers, &self.rows),
            _ => text_table(&headers, &self.rows),
        };
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
                // A predicate may match anything, a space included: no block is padded.
                let mut bytes = plain.clone();
                bytes[at] = b' ';
                assert!(any_byte(&bytes, |b| b == b' '), "{len} {at} space");
            }
            assert!(!any_byte(&plain, |b| b == b' '), "{len} space");
        }
    }

    #[test]
    fn a_row_is_measured_at_its_json_length() {
        let values = [
            serde_json::json!(null),
            serde_json::json!(true),
            serde_json::json!(false),
            serde_json::json!(0),
            serde_json::json!(9),
            serde_json::json!(10),
            serde_json::json!(-1),
            serde_json::json!(i64::MIN),
            serde_json::json!(i64::MAX),
            serde_json::json!(u64::MAX),
            serde_json::json!(1.5),
            serde_json::json!(-0.000123),
            serde_json::json!(122.82),
            serde_json::json!(0.1 + 0.2),
            serde_json::json!(-0.0),
            serde_json::json!(1e300),
            serde_json::json!(-1e-300),
            serde_json::json!(f64::MAX),
            serde_json::json!(f64::MIN_POSITIVE),
            serde_json::json!(5e-324),
            serde_json::json!(123_456_789_012_345_680.0),
            serde_json::json!(""),
            serde_json::json!("Nguyễn Văn An"),
            serde_json::json!("quote \" backslash \\ tab \t nl \n cr \r ff \u{c} bs \u{8}"),
            serde_json::json!("nul \u{0} esc \u{1b} del \u{7f} unit \u{1f}"),
            serde_json::json!([1, "a", null]),
            serde_json::json!({"k": "v"}),
        ];
        for value in values {
            let text = serde_json::to_string(&value).expect("serialises");
            let mut len = None;
            let mut measured = MeasuredCells::default();
            assert!(measured.push_row(std::slice::from_ref(&value), |n| {
                len = Some(n);
                true
            }));
            assert_eq!(len, Some(text.len()), "{text}");
        }
    }

    #[test]
    fn cells_measured_while_collecting_render_as_measured_afresh() {
        let rows = [
            vec![
                serde_json::json!(1),
                serde_json::json!("plain"),
                Value::Null,
            ],
            vec![
                serde_json::json!(2.5),
                serde_json::json!("quote \" é\nline"),
                serde_json::json!(true),
            ],
            vec![
                serde_json::json!(-3),
                serde_json::json!("x".repeat(60)),
                serde_json::json!({"k": 1}),
            ],
        ];
        let turned_away = vec![
            serde_json::json!(1e300),
            serde_json::json!("a much wider cell than any other here"),
            Value::Null,
        ];
        let mut measured = MeasuredCells::default();
        let mut kept = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            assert!(measured.push_row(row, |_| true));
            kept.push(row.clone());
            if i == 1 {
                // A row the byte limit turns away leaves no trace in the widths or texts.
                assert!(!measured.push_row(&turned_away, |_| false));
            }
        }
        let headers = ["n", "text", "other"];
        assert!(measured.covers(&kept));
        assert_eq!(
            measured.render(&headers, &kept),
            text_table(&headers, &kept)
        );
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
