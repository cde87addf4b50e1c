//! `liveseg content add|list` and `liveseg match`: content registration
//! (each text embedded once by the node's model) and ranking content for a
//! contact's interest profile or for a free text.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use liveseg_proto::pb;
use serde::{Deserialize, Serialize};

use crate::client::{Api, rpc_error};
use crate::exit::{Reported, usage};
use crate::output::{Column, OutputFormat, col, print_items};

/// Items per RegisterContent call (the node's limit).
const BATCH: usize = 256;

#[derive(Subcommand, Debug)]
pub enum ContentCommand {
    /// Register (or replace) content: one item from flags, or JSON lines
    /// `{"id","text","url","metadata":{}}` from --file (`-` for stdin).
    Add(AddArgs),
    /// List the tenant's registered content.
    List(ListArgs),
    /// Embed every content item and affinity topic of the tenant again with
    /// the node's current model (after a model upgrade, or a switch of
    /// precision, f32, int8 or q8_0: vectors of two models cannot be
    /// compared, so the node refuses new content until this has run).
    Reembed,
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// Content id (with --text).
    #[arg(long, requires = "text", conflicts_with = "file")]
    pub id: Option<String>,
    /// The text to embed: subject and body, page title and copy, ...
    #[arg(long, requires = "id")]
    pub text: Option<String>,
    /// The page's URL or path, when the content is a page.
    #[arg(long, requires = "id")]
    pub url: Option<String>,
    /// Metadata as key=value (repeatable).
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta, requires = "id")]
    pub metadata: Vec<(String, String)>,
    /// A JSON-lines file of items; `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Include each item's embedding.
    #[arg(long)]
    pub vectors: bool,
}

#[derive(Args, Debug)]
pub struct MatchArgs {
    /// Contact id whose interest profile ranks the content.
    #[arg(
        value_name = "CONTACT",
        required_unless_present = "text",
        conflicts_with = "text"
    )]
    pub contact: Option<String>,
    /// Rank for this text instead of a contact.
    #[arg(long)]
    pub text: Option<String>,
    /// Content ids to rank, comma-separated [default: all content].
    #[arg(long, value_delimiter = ',')]
    pub candidates: Vec<String>,
    /// Most results.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
}

fn parse_meta(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("'{text}': expected KEY=VALUE")),
    }
}

/// One line of a content file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemLine {
    id: String,
    text: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

/// Reads items from JSON lines; a bad line is an error naming its number.
fn read_items(reader: impl BufRead) -> Result<Vec<pb::ContentItem>> {
    let mut items = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let item: ItemLine =
            serde_json::from_str(&line).map_err(|e| usage(format!("line {}: {e}", n + 1)))?;
        items.push(pb::ContentItem {
            id: item.id,
            text: item.text,
            url: item.url,
            metadata: item.metadata.into_iter().collect(),
        });
    }
    Ok(items)
}

#[derive(Serialize)]
struct ResultRow {
    id: String,
    status: String,
    tokens: u32,
    truncated: bool,
}

const RESULT_COLUMNS: [Column; 4] = [
    col("ID", "id"),
    col("STATUS", "status"),
    col("TOKENS", "tokens"),
    col("TRUNCATED", "truncated"),
];

pub async fn run(cmd: &ContentCommand, api: &Api, format: OutputFormat) -> Result<()> {
    match cmd {
        ContentCommand::Add(a) => add(a, api, format).await,
        ContentCommand::List(a) => list(a, api, format).await,
        ContentCommand::Reembed => reembed(api, format).await,
    }
}

#[derive(Serialize)]
struct ReembedRow {
    records: u32,
    model: String,
    previous_models: Vec<String>,
}

const REEMBED_COLUMNS: [Column; 3] = [
    col("RECORDS", "records"),
    col("MODEL", "model"),
    col("BEFORE", "before"),
];

async fn reembed(api: &Api, format: OutputFormat) -> Result<()> {
    let r = api
        .content()
        .reembed_content(pb::ReembedContentRequest {})
        .await
        .map_err(|s| rpc_error("embedding content again", &s))?
        .into_inner();
    let row = ReembedRow {
        records: r.records,
        model: r.model,
        previous_models: r.previous_models,
    };
    let mut out = io::stdout().lock();
    if format.is_machine() {
        return Ok(print_items(&mut out, format, &[], &[row], "")?);
    }
    if row.records == 0 {
        writeln!(out, "no content registered")?;
        return Ok(());
    }
    let shown = serde_json::json!({"records": row.records, "model": row.model,
        "before": row.previous_models.join(", ")});
    print_items(
        &mut out,
        format,
        &REEMBED_COLUMNS,
        &[shown],
        "no content registered",
    )?;
    Ok(())
}

async fn add(args: &AddArgs, api: &Api, format: OutputFormat) -> Result<()> {
    let items = match (&args.file, &args.id, &args.text) {
        (Some(path), _, _) if path.as_os_str() == "-" => read_items(io::stdin().lock())?,
        (Some(path), _, _) => read_items(io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        ))?,
        (None, Some(id), Some(text)) => vec![pb::ContentItem {
            id: id.clone(),
            text: text.clone(),
            url: args.url.clone().unwrap_or_default(),
            metadata: args.metadata.iter().cloned().collect::<HashMap<_, _>>(),
        }],
        _ => return Err(usage("give --id and --text, or --file")),
    };
    if items.is_empty() {
        return Err(usage("no content items to register"));
    }
    let mut rows = Vec::with_capacity(items.len());
    for chunk in items.chunks(BATCH) {
        let resp = api
            .content()
            .register_content(pb::RegisterContentRequest {
                items: chunk.to_vec(),
            })
            .await
            .map_err(|s| rpc_error("registering content", &s))?;
        rows.extend(resp.into_inner().results.into_iter().map(|r| ResultRow {
            status: if r.error.is_empty() {
                "registered".into()
            } else {
                r.error
            },
            id: r.id,
            tokens: r.tokens,
            truncated: r.truncated,
        }));
    }
    print_items(
        &mut io::stdout().lock(),
        format,
        &RESULT_COLUMNS,
        &rows,
        "nothing registered",
    )?;
    if rows.iter().any(|r| r.status != "registered") {
        return Err(Reported { code: 1 }.into());
    }
    Ok(())
}

#[derive(Serialize)]
struct ContentRow {
    id: String,
    url: String,
    registered_at: String,
    /// The model that embedded it.
    model: String,
    metadata: BTreeMap<String, String>,
    text: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    vector: Vec<f32>,
}

const CONTENT_COLUMNS: [Column; 4] = [
    col("ID", "id"),
    col("URL", "url"),
    col("REGISTERED", "registered_at"),
    col("TEXT", "preview"),
];

async fn list(args: &ListArgs, api: &Api, format: OutputFormat) -> Result<()> {
    let mut items = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = api
            .content()
            .list_content(pb::ListContentRequest {
                with_vectors: args.vectors,
                page_size: 1000,
                page_token,
            })
            .await
            .map_err(|s| rpc_error("listing content", &s))?
            .into_inner();
        items.extend(page.items);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let rows: Vec<ContentRow> = items
        .into_iter()
        .map(|r| {
            let item = r.item.unwrap_or_default();
            ContentRow {
                id: item.id,
                url: item.url,
                registered_at: r.registered_at,
                model: r.model,
                metadata: item.metadata.into_iter().collect(),
                text: item.text,
                vector: r.vector,
            }
        })
        .collect();
    let mut out = io::stdout().lock();
    if format.is_machine() {
        return Ok(print_items(&mut out, format, &[], &rows, "")?);
    }
    // People see the first words of each text.
    let previews: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let preview: String = r.text.chars().take(60).collect();
            serde_json::json!({"id": r.id, "url": r.url, "registered_at": r.registered_at,
                "preview": if r.text.chars().count() > 60 { format!("{preview}…") } else { preview }})
        })
        .collect();
    print_items(
        &mut out,
        format,
        &CONTENT_COLUMNS,
        &previews,
        "no content registered",
    )?;
    Ok(())
}

#[derive(Serialize)]
struct MatchRow {
    rank: usize,
    id: String,
    score: f32,
}

const MATCH_COLUMNS: [Column; 3] = [col("RANK", "rank"), col("ID", "id"), col("SCORE", "score")];

pub async fn matches(args: &MatchArgs, api: &Api, format: OutputFormat) -> Result<()> {
    let resp = api
        .content()
        .match_content(pb::MatchContentRequest {
            contact_id: args.contact.clone().unwrap_or_default(),
            text: args.text.clone().unwrap_or_default(),
            candidates: args.candidates.clone(),
            limit: args.limit,
        })
        .await
        .map_err(|s| rpc_error("matching content", &s))?
        .into_inner();
    let rows: Vec<MatchRow> = resp
        .matches
        .into_iter()
        .enumerate()
        .map(|(i, m)| MatchRow {
            rank: i + 1,
            id: m.id,
            // Four decimals are all a cosine says; JSON keeps them stable.
            score: (m.score * 10_000.0).round() / 10_000.0,
        })
        .collect();
    let mut out = io::stdout().lock();
    let empty = if args.contact.is_some() {
        "no match: the contact engaged with no registered content yet"
    } else {
        "no content to rank"
    };
    print_items(&mut out, format, &MATCH_COLUMNS, &rows, empty)?;
    if !format.is_machine() {
        if !resp.profile.is_empty() {
            writeln!(out, "profile: {}", resp.profile.join(", "))?;
        }
        if !resp.unknown.is_empty() {
            writeln!(out, "not registered: {}", resp.unknown.join(", "))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_lines_parse_and_bad_lines_are_named() {
        let text = "{\"id\":\"a\",\"text\":\"A\",\"url\":\"/a\",\"metadata\":{\"k\":\"v\"}}\n\n{\"id\":\"b\",\"text\":\"B\"}\n";
        let items = read_items(text.as_bytes()).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].url, "/a");
        assert_eq!(items[0].metadata.get("k").map(String::as_str), Some("v"));
        let err = read_items("{\"id\":\"a\"}\n".as_bytes()).unwrap_err();
        assert!(format!("{err:#}").contains("line 1"), "{err:#}");
        let err =
            read_items("{\"id\":\"a\",\"text\":\"t\",\"colour\":1}\n".as_bytes()).unwrap_err();
        assert!(format!("{err:#}").contains("colour"), "{err:#}");
    }

    #[test]
    fn metadata_flags_need_a_key() {
        assert_eq!(
            parse_meta("kind=email"),
            Ok(("kind".into(), "email".into()))
        );
        assert_eq!(parse_meta("x=a=b"), Ok(("x".into(), "a=b".into())));
        assert!(parse_meta("=v").is_err());
        assert!(parse_meta("novalue").is_err());
    }
}
