//! How results are printed: `-o table` for people (kubectl-like columns, no
//! borders), `-o json` (one pretty JSON document) and `-o jsonl` (one
//! compact object per line) for programs. Commands build a list of JSON
//! objects once and pick the columns a table shows, so every format carries
//! the same data.

use std::io::{self, Write};

use clap::ValueEnum;
use comfy_table::{CellAlignment, Table, presets};
use serde::Serialize;
use serde_json::Value;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
    Jsonl,
}

impl OutputFormat {
    pub fn is_machine(self) -> bool {
        self != OutputFormat::Table
    }
}

/// A table column: its header and the key of the value it shows.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub header: &'static str,
    pub key: &'static str,
}

pub const fn col(header: &'static str, key: &'static str) -> Column {
    Column { header, key }
}

/// Prints `items` as a table of `columns` (looked up by key in each
/// item's JSON form), a JSON array, or JSON lines. JSON keeps the field
/// order of `T`. An empty table prints `empty` instead (e.g. "no members").
pub fn print_items<T: Serialize>(
    out: &mut dyn Write,
    format: OutputFormat,
    columns: &[Column],
    items: &[T],
    empty: &str,
) -> io::Result<()> {
    match format {
        OutputFormat::Table if items.is_empty() => writeln!(out, "{empty}"),
        OutputFormat::Table => {
            let mut rows = Vec::with_capacity(items.len());
            for item in items {
                let v = serde_json::to_value(item).map_err(io::Error::other)?;
                rows.push(columns.iter().map(|c| cell(&v[c.key])).collect());
            }
            let headers: Vec<&str> = columns.iter().map(|c| c.header).collect();
            out.write_all(render_table(&headers, rows).as_bytes())
        }
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, items)?;
            writeln!(out)
        }
        OutputFormat::Jsonl => items.iter().try_for_each(|item| {
            serde_json::to_writer(&mut *out, item)?;
            writeln!(out)
        }),
    }
}

/// Prints one JSON value: pretty for `json`, one line for `jsonl` (and for
/// `table`, where callers normally render something else).
pub fn print_value(
    out: &mut dyn Write,
    format: OutputFormat,
    value: &impl Serialize,
) -> io::Result<()> {
    if format == OutputFormat::Json {
        serde_json::to_writer_pretty(&mut *out, value)?;
    } else {
        serde_json::to_writer(&mut *out, value)?;
    }
    writeln!(out)
}

/// A borderless table with a header row; no trailing spaces on any line.
pub fn render_table(headers: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(headers.iter().map(|h| h.to_string()));
    for row in rows {
        table.add_row(row);
    }
    for column in table.column_iter_mut() {
        column.set_cell_alignment(CellAlignment::Left);
        column.set_padding((0, 2));
    }
    let mut text = String::new();
    for line in table.lines() {
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// How a JSON value reads in a table cell.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// `n` per second over `secs`, for summaries (0 when no time has passed).
pub fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn printed(format: OutputFormat, items: &[Value]) -> String {
        let mut out = Vec::new();
        let cols = [col("ID", "id"), col("SEGMENTS", "segments")];
        print_items(&mut out, format, &cols, items, "nothing").expect("write");
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn tables_are_aligned_without_borders_or_trailing_space() {
        let items = [
            json!({"id": "c-1", "segments": ["a", "b"]}),
            json!({"id": "contact-22", "segments": []}),
        ];
        assert_eq!(
            printed(OutputFormat::Table, &items),
            "ID          SEGMENTS\nc-1         a, b\ncontact-22  -\n"
        );
        assert_eq!(printed(OutputFormat::Table, &[]), "nothing\n");
    }

    #[test]
    fn json_and_jsonl_carry_every_field() {
        let items = [json!({"id": "c-1", "segments": ["a"], "extra": 1})];
        assert_eq!(
            printed(OutputFormat::Jsonl, &items),
            "{\"extra\":1,\"id\":\"c-1\",\"segments\":[\"a\"]}\n"
        );
        let doc: Value = serde_json::from_str(&printed(OutputFormat::Json, &items)).expect("json");
        assert_eq!(doc, json!([{"id": "c-1", "segments": ["a"], "extra": 1}]));
    }

    #[test]
    fn cells() {
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!(true)), "yes");
        assert_eq!(cell(&json!(42)), "42");
        assert_eq!(cell(&json!("x")), "x");
        assert_eq!(rate(10, 2.0), 5.0);
        assert_eq!(rate(10, 0.0), 0.0);
    }
}
