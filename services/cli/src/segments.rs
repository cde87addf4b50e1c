//! `liveseg segments ...`: definitions as files (GitOps-friendly `apply -f`),
//! listing and inspection over the API, and offline `validate`, `presets`
//! and `schema` that need no node.

use std::io::{self, Read as _, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Subcommand;
use liveseg_core::definition::json_schema;
use liveseg_core::presets::PRESETS_YAML;
use liveseg_core::{SegmentDefinition, SegmentSet};
use liveseg_proto::pb;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::client::{Api, rpc_error};
use crate::definitions::{describe, with_presets};
use crate::exit::Reported;
use crate::output::{OutputFormat, col, print_items, print_value};

#[derive(Subcommand, Debug)]
pub enum SegmentsCommand {
    /// Create or replace definitions from a JSON or YAML file: one
    /// definition, a list, or `{segments: [...]}`.
    Apply {
        /// Definitions file (`-` reads stdin).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
    },
    /// List the tenant's segments.
    List,
    /// Show one segment's definition.
    Get { key: String },
    /// Delete a segment.
    Delete { key: String },
    /// Check definitions offline, together with the presets; prints every
    /// problem as `path: reason` and exits 1 if there is any.
    Validate {
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the starter segments (YAML).
    Presets,
    /// Print the JSON Schema of a segment definition.
    Schema,
}

impl SegmentsCommand {
    /// Whether the command works without a node.
    pub fn is_offline(&self) -> bool {
        matches!(
            self,
            SegmentsCommand::Validate { .. } | SegmentsCommand::Presets | SegmentsCommand::Schema
        )
    }
}

pub fn run_offline(cmd: &SegmentsCommand, format: OutputFormat) -> Result<()> {
    let mut out = io::stdout().lock();
    match cmd {
        SegmentsCommand::Validate { file } => {
            let text = read_text(file)?;
            let (valid, lines) = validate(&text, format);
            out.write_all(lines.as_bytes())?;
            if !valid {
                return Err(Reported { code: 1 }.into());
            }
        }
        SegmentsCommand::Presets => out.write_all(PRESETS_YAML.trim_start().as_bytes())?,
        SegmentsCommand::Schema => print_value(&mut out, OutputFormat::Json, &json_schema())?,
        _ => anyhow::bail!("this segments command needs a node"),
    }
    Ok(())
}

/// Checks `text` with the presets; returns validity and what to print.
pub fn validate(text: &str, format: OutputFormat) -> (bool, String) {
    // Offline, topics and content ids cannot be resolved: a node checks them
    // when the definition is applied.
    let result = with_presets(text).and_then(|defs| {
        let lib = liveseg_core::content::placeholder_library(&defs);
        SegmentSet::compile_with(&defs, std::sync::Arc::new(lib)).map(|_| defs)
    });
    let parsed = liveseg_core::definition::parse_definitions(text).unwrap_or_default();
    let keys: Vec<&str> = parsed.iter().map(|d| d.key.as_str()).collect();
    let errors = result.err().unwrap_or_default();
    if format.is_machine() {
        let errors: Vec<Value> = errors
            .iter()
            .map(|e| json!({"path": e.path, "reason": e.reason}))
            .collect();
        let doc = json!({"valid": errors.is_empty(), "segments": keys, "errors": errors});
        let mut out = Vec::new();
        let printed = print_value(&mut out, format, &doc);
        debug_assert!(printed.is_ok());
        return (
            doc["valid"] == json!(true),
            String::from_utf8_lossy(&out).into(),
        );
    }
    if errors.is_empty() {
        (
            true,
            format!("valid: {} ({})\n", keys.len(), keys.join(", ")),
        )
    } else {
        let lines: String = errors.iter().map(|e| describe(e) + "\n").collect();
        (false, lines)
    }
}

pub async fn run_online(cmd: &SegmentsCommand, api: &Api, format: OutputFormat) -> Result<()> {
    let mut client = api.segments();
    let mut out = io::stdout().lock();
    let columns = [
        col("KEY", "key"),
        col("ENTITY", "entity"),
        col("REVISION", "revision"),
        col("PRESET", "preset"),
        col("NAME", "name"),
    ];
    match cmd {
        SegmentsCommand::Apply { file } => {
            let items = split_definitions(&read_text(file)?)
                .with_context(|| format!("reading {}", file.display()))?;
            let mut applied = Vec::new();
            let mut failed = 0;
            for (i, text) in items.iter().enumerate() {
                let req = pb::ApplySegmentRequest {
                    definition: text.clone(),
                };
                match client.apply_segment(req).await {
                    Ok(resp) => applied.push(resp.into_inner()),
                    Err(status) => {
                        failed += 1;
                        eprintln!("{}", rpc_error(&format!("definition #{}", i + 1), &status));
                    }
                }
            }
            let rows: Vec<SegmentRow<'_>> = applied.iter().map(segment_row).collect();
            print_items(&mut out, format, &columns, &rows, "nothing applied")?;
            if failed > 0 {
                return Err(Reported { code: 1 }.into());
            }
        }
        SegmentsCommand::List => {
            let resp = client
                .list_segments(pb::ListSegmentsRequest {})
                .await
                .map_err(|s| rpc_error("listing segments", &s))?;
            let segments = resp.into_inner().segments;
            let rows: Vec<SegmentRow<'_>> = segments.iter().map(segment_row).collect();
            print_items(&mut out, format, &columns, &rows, "no segments")?;
        }
        SegmentsCommand::Get { key } => {
            let req = pb::GetSegmentRequest { key: key.clone() };
            let seg = client
                .get_segment(req)
                .await
                .map_err(|s| rpc_error(&format!("segment {key}"), &s))?
                .into_inner();
            if format.is_machine() {
                print_value(&mut out, format, &segment_row(&seg))?;
            } else {
                writeln!(
                    out,
                    "# revision {}{}",
                    seg.revision,
                    if seg.preset { ", preset" } else { "" }
                )?;
                out.write_all(definition_yaml(&seg)?.as_bytes())?;
            }
        }
        SegmentsCommand::Delete { key } => {
            let req = pb::DeleteSegmentRequest { key: key.clone() };
            let deleted = client
                .delete_segment(req)
                .await
                .map_err(|s| rpc_error(&format!("deleting segment {key}"), &s))?
                .into_inner()
                .deleted;
            if format.is_machine() {
                print_value(&mut out, format, &json!({"key": key, "deleted": deleted}))?;
            } else if deleted {
                writeln!(out, "deleted {key}")?;
            } else {
                eprintln!("segment {key} not found");
                return Err(Reported { code: 1 }.into());
            }
        }
        _ => return run_offline(cmd, format),
    }
    Ok(())
}

/// A segment as printed. The definition is embedded as the node sent it
/// (a JSON object, its key order kept), or as a string if it is not JSON.
#[derive(Serialize)]
pub struct SegmentRow<'a> {
    pub key: &'a str,
    pub name: &'a str,
    pub entity: &'a str,
    pub revision: u64,
    pub preset: bool,
    pub definition: Definition<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum Definition<'a> {
    Json(Box<RawValue>),
    Text(&'a str),
}

pub fn segment_row(s: &pb::Segment) -> SegmentRow<'_> {
    let definition = RawValue::from_string(s.definition_json.clone())
        .map_or(Definition::Text(&s.definition_json), Definition::Json);
    SegmentRow {
        key: &s.key,
        name: &s.name,
        entity: &s.entity,
        revision: s.revision,
        preset: s.preset,
        definition,
    }
}

/// The definition as YAML for people, in the definition's own field order
/// (JSON is YAML, and YAML mappings keep their order).
pub fn definition_yaml(s: &pb::Segment) -> Result<String> {
    let json = match serde_json::from_str::<SegmentDefinition>(&s.definition_json) {
        Ok(def) => serde_json::to_string(&def)?,
        Err(_) => s.definition_json.clone(),
    };
    Ok(
        match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&json) {
            Ok(v) => serde_yaml_ng::to_string(&v)?,
            Err(_) => format!("{json}\n"),
        },
    )
}

/// Splits a definitions document (JSON or YAML; one definition, a list, or
/// `{segments: [...]}`) into one JSON text per definition. The node
/// validates each; this only finds the items.
pub fn split_definitions(text: &str) -> Result<Vec<String>> {
    let doc: Value = serde_yaml_ng::from_str(text).context("not valid JSON or YAML")?;
    let items = match doc {
        Value::Array(items) => items,
        Value::Object(mut m) if m.contains_key("segments") => match m.remove("segments") {
            Some(Value::Array(items)) => items,
            _ => anyhow::bail!("segments: must be a list of definitions"),
        },
        Value::Null => Vec::new(),
        other => vec![other],
    };
    if items.is_empty() {
        anyhow::bail!("no segment definitions found");
    }
    items
        .iter()
        .map(|v| serde_json::to_string(v).context("encoding a definition"))
        .collect()
}

/// The whole text of `path`, or of stdin for `-`.
pub fn read_text(path: &Path) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        io::stdin()
            .read_to_string(&mut text)
            .context("reading stdin")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEETINGS: &str = "key: meeting_bookers\nname: Booked a meeting\nentity: contact\n\
        condition:\n  events: {event: {kind: meeting}, within: 30d, at_least: 1}\n";

    #[test]
    fn documents_split_into_one_definition_each() {
        let one = split_definitions(MEETINGS).expect("one");
        assert_eq!(one.len(), 1);
        let v: Value = serde_json::from_str(&one[0]).expect("json");
        assert_eq!(v["key"], "meeting_bookers");
        let list = format!("segments:\n  - {}", MEETINGS.replace('\n', "\n    "));
        assert_eq!(split_definitions(&list).expect("list").len(), 1);
        let arr = r#"[{"key":"a"},{"key":"b"}]"#;
        assert_eq!(split_definitions(arr).expect("array").len(), 2);
        assert!(split_definitions("segments: 3").is_err());
        assert!(split_definitions("").is_err());
        assert!(split_definitions("{unclosed").is_err());
    }

    #[test]
    fn validation_reports_every_problem_with_its_path() {
        let (ok, text) = validate(MEETINGS, OutputFormat::Table);
        assert!(ok, "{text}");
        assert_eq!(text, "valid: 1 (meeting_bookers)\n");
        let bad = "segments:\n  - key: x\n    name: X\n    entity: contact\n    condition:\n      \
                   events: {event: {kind: meeting}, within: 3w}\n";
        let (ok, text) = validate(bad, OutputFormat::Table);
        assert!(!ok);
        assert!(text.starts_with("segments[0].condition"), "{text}");
        let (ok, text) = validate(bad, OutputFormat::Json);
        assert!(!ok);
        let doc: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(doc["valid"], false);
        assert!(doc["errors"][0]["reason"].is_string(), "{doc}");
    }

    #[test]
    fn segments_render_their_definition_as_an_object() {
        let s = pb::Segment {
            key: "k".into(),
            name: "K".into(),
            entity: "contact".into(),
            definition_json: r#"{"key":"k"}"#.into(),
            revision: 3,
            preset: false,
        };
        assert_eq!(
            serde_json::to_string(&segment_row(&s)).expect("json"),
            r#"{"key":"k","name":"K","entity":"contact","revision":3,"preset":false,"definition":{"key":"k"}}"#
        );
        let text = pb::Segment {
            definition_json: "not json".into(),
            ..s.clone()
        };
        assert_eq!(
            serde_json::to_value(segment_row(&text)).expect("json")["definition"],
            "not json"
        );
        let full = pb::Segment {
            definition_json: r#"{"condition":{"all":[]},"entity":"contact","name":"K","key":"k"}"#
                .into(),
            ..s
        };
        assert_eq!(
            definition_yaml(&full).expect("yaml"),
            "key: k\nname: K\nentity: contact\ncondition:\n  all: []\n"
        );
    }
}
