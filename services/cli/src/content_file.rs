//! `--content FILE`: a tenant's content library for the commands that run
//! over a history offline (`replay`, `model train`, `model report`, `model
//! score`, `model cluster`, `model lookalike`), so their affinity
//! conditions and content-affinity features see what the node's registered
//! content gives it.
//!
//! The file is JSON lines of content items. A line with a `vector` is used
//! as it is: what `liveseg content list --vectors -o jsonl` prints (with
//! the `model` that embedded it). A line with a `text` and no vector is
//! embedded here with the model of `--model-dir`, as a node embeds at
//! registration: `{"id", "text", "url"}`, what `liveseg content add --file`
//! reads. The definitions' affinity topics are embedded with it. A bad line
//! is reported on stderr with its number, field and reason, and the good
//! lines are still read.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use liveseg_core::content::ContentLibrary;
use liveseg_model::Embedder;
use serde_json::Value;

use crate::exit::usage;
use crate::model_cmd::ModelDir;

#[derive(Args, Debug, Clone)]
pub struct ContentFileArgs {
    /// The tenant's content as JSON lines: with vectors as `liveseg content
    /// list --vectors -o jsonl` prints them, or `{"id","text","url"}` to
    /// embed with the model of --model-dir (as a node does at
    /// registration). Affinity conditions and the content-affinity model
    /// features look content up in it; without it, the features read 0
    /// ("unknown") for every contact.
    #[arg(long = "content", value_name = "FILE.jsonl")]
    pub content: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelDir,
}

impl ContentFileArgs {
    /// The library of the file, or an empty one without `--content`.
    pub fn library(&self) -> Result<Arc<ContentLibrary>> {
        Ok(Arc::new(self.library_with_topics(&[], false)?))
    }

    /// The library of the file plus the embeddings of `topics` (the
    /// definitions' affinity topic texts); the model is loaded only when
    /// there is text to embed. With `strict`, any bad line fails the run
    /// (after all of them are reported).
    pub fn library_with_topics(&self, topics: &[String], strict: bool) -> Result<ContentLibrary> {
        let mut diag = io::stderr().lock();
        let (mut lib, texts, mut invalid) = match &self.content {
            Some(path) => {
                let file =
                    File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
                read_library(BufReader::new(file), &mut diag)
                    .with_context(|| format!("--content {}", path.display()))?
            }
            None => (ContentLibrary::default(), Vec::new(), 0),
        };
        if !texts.is_empty() || !topics.is_empty() {
            let model = Embedder::load_with(&self.model.model_dir, self.model.precision)?;
            let refs: Vec<&str> = texts.iter().map(|t| t.text.as_str()).collect();
            for (item, v) in texts.iter().zip(model.embed(&refs)?) {
                if let Err(e) = lib.insert_content(&item.id, Some(item.url.as_str()), &v) {
                    invalid += 1;
                    writeln!(diag, "content line {}: {}: vector: {e}", item.line, item.id)?;
                }
            }
            embed_topics(&mut lib, &model, topics)?;
            lib.note_model(model.model_id());
            check_one_model(&lib)?;
        }
        if strict && invalid > 0 {
            bail!(usage(format!(
                "--content: {invalid} bad lines (--strict fails on any)"
            )));
        }
        Ok(lib)
    }
}

/// Adds the embeddings of the definitions' topic texts.
fn embed_topics(lib: &mut ContentLibrary, model: &Embedder, topics: &[String]) -> Result<()> {
    if topics.is_empty() {
        return Ok(());
    }
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    for (t, v) in topics.iter().zip(model.embed(&refs)?) {
        lib.insert_topic(t, &v)
            .map_err(|e| usage(format!("topic {t:?}: {e}")))?;
    }
    Ok(())
}

/// A content line with text to embed.
#[derive(Debug, Clone, PartialEq)]
pub struct TextItem {
    /// Its line number in the file, for messages.
    pub line: usize,
    pub id: String,
    pub url: String,
    pub text: String,
}

/// Reads the lines of a content file: items with vectors go into the
/// library, items with only text are returned to be embedded; bad lines are
/// reported on `diag` and counted (the third value).
pub fn read_library(
    reader: impl BufRead,
    diag: &mut impl Write,
) -> Result<(ContentLibrary, Vec<TextItem>, usize)> {
    let mut lib = ContentLibrary::default();
    let mut texts = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let (mut items, mut invalid) = (0usize, 0usize);
    for (n, bytes) in reader.split(b'\n').enumerate() {
        let bytes = bytes.context("reading")?;
        let outcome = match std::str::from_utf8(&bytes) {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => add_line(&mut lib, line, n + 1),
            Err(e) => Err(format!("not UTF-8: {e}")),
        };
        match outcome {
            Ok((id, text)) => {
                items += 1;
                texts.extend(text);
                if !seen.insert(id.clone()) {
                    writeln!(
                        diag,
                        "content line {}: {id}: id repeated; this line wins",
                        n + 1
                    )?;
                }
            }
            Err(reason) => {
                invalid += 1;
                writeln!(diag, "content line {}: {reason}", n + 1)?;
            }
        }
    }
    check_one_model(&lib)?;
    if items == 0 && invalid > 0 {
        bail!("none of its {invalid} lines is a content item");
    }
    writeln!(
        diag,
        "content: {items} items ({} to embed), {invalid} invalid lines",
        texts.len()
    )?;
    Ok((lib, texts, invalid))
}

fn check_one_model(lib: &ContentLibrary) -> Result<()> {
    let models: Vec<&str> = lib.models().collect();
    if models.len() > 1 {
        bail!(
            "vectors of more than one model ({}) cannot be compared: run \
             `liveseg content reembed` on the node and list the content again, \
             or give texts to embed here",
            models.join(", ")
        );
    }
    Ok(())
}

/// Adds a line with a vector to `lib`, or returns its text to embed; with
/// the item's id either way.
fn add_line(
    lib: &mut ContentLibrary,
    line: &str,
    number: usize,
) -> Result<(String, Option<TextItem>), String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let id = match v.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.as_str(),
        Some(_) => return Err("id: must be a non-empty string".into()),
        None => return Err("id: missing".into()),
    };
    let url = match v.get("url") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(format!("{id}: url: must be a string")),
    };
    let vector: Vec<f32> = match (v.get("vector"), v.get("text")) {
        (Some(Value::Array(xs)), _) => xs
            .iter()
            .map(|x| x.as_f64().map(|f| f as f32))
            .collect::<Option<_>>()
            .ok_or_else(|| format!("{id}: vector: must hold numbers only"))?,
        (Some(_), _) => return Err(format!("{id}: vector: must be an array of numbers")),
        (None, Some(Value::String(text))) if !text.trim().is_empty() => {
            return Ok((
                id.to_string(),
                Some(TextItem {
                    line: number,
                    id: id.to_string(),
                    url: url.unwrap_or_default().to_string(),
                    text: text.clone(),
                }),
            ));
        }
        (None, Some(_)) => return Err(format!("{id}: text: must be a non-empty string")),
        (None, None) => {
            return Err(format!(
                "{id}: vector or text: one is required (list content with --vectors)"
            ));
        }
    };
    lib.insert_content(id, url, &vector)
        .map_err(|e| format!("{id}: vector: {e}"))?;
    if let Some(Value::String(m)) = v.get("model") {
        lib.note_model(m);
    }
    Ok((id.to_string(), None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use liveseg_core::content::content_key;

    fn read(text: &str) -> (Result<ContentLibrary>, String) {
        let mut diag = Vec::new();
        let lib = read_library(text.as_bytes(), &mut diag).map(|(lib, _, _)| lib);
        (lib, String::from_utf8(diag).expect("utf-8"))
    }

    #[test]
    fn reads_listed_content_and_reports_bad_lines_by_number_and_field() {
        let text = r#"{"id":"guide","url":"https://x.io/guide","model":"m","vector":[3,4],"text":"ignored"}
{"id":"","vector":[1,0]}

{"id":"short","vector":[1]}
{"id":"nan","vector":["a",1]}
{"id":"novec","model":"m"}
not json
{"id":"deck","vector":[0,2],"model":"m"}
{"id":"blank","text":" "}
"#;
        let (lib, diag) = read(text);
        let lib = lib.expect("good lines are read");
        assert_eq!(lib.len(), 2, "{diag}");
        let guide = lib.get(content_key("guide")).expect("guide");
        assert_eq!(guide.vector, vec![0.6, 0.8]);
        assert!(lib.content("deck").is_some());
        for expected in [
            "content line 2: id: must be a non-empty string",
            "content line 4: short: vector: vector has 1 dimensions; the library's have 2",
            "content line 5: nan: vector: must hold numbers only",
            "content line 6: novec: vector or text: one is required (list content with --vectors)",
            "content line 7: not JSON",
            "content line 9: blank: text: must be a non-empty string",
            "content: 2 items (0 to embed), 6 invalid lines",
        ] {
            assert!(diag.contains(expected), "{expected:?} not in:\n{diag}");
        }
    }

    #[test]
    fn returns_texts_to_embed_beside_the_vectors() {
        let text = "{\"id\":\"a\",\"vector\":[1,0]}\n{\"id\":\"b\",\"text\":\"Pricing guide\",\"url\":\"/guide\"}\n";
        let mut diag = Vec::new();
        let (lib, texts, invalid) = read_library(text.as_bytes(), &mut diag).expect("read");
        assert_eq!(invalid, 0);
        assert_eq!(lib.len(), 1);
        assert_eq!(
            texts,
            vec![TextItem {
                line: 2,
                id: "b".into(),
                url: "/guide".into(),
                text: "Pricing guide".into()
            }]
        );
        let diag = String::from_utf8(diag).expect("utf-8");
        assert!(
            diag.contains("content: 2 items (1 to embed), 0 invalid lines"),
            "{diag}"
        );
    }

    #[test]
    fn a_line_that_is_not_utf8_or_repeats_an_id_is_named() {
        let mut text = b"{\"id\":\"a\",\"vector\":[1,0]}\n".to_vec();
        text.extend(b"{\"id\":\"\xff\"}\n");
        text.extend(b"{\"id\":\"a\",\"vector\":[0,1]}\n");
        let mut diag = Vec::new();
        let (lib, _, invalid) = read_library(&text[..], &mut diag).expect("read");
        let diag = String::from_utf8(diag).expect("utf-8");
        assert_eq!((lib.len(), invalid), (1, 1), "{diag}");
        assert_eq!(
            lib.content("a").map(|i| i.vector.clone()),
            Some(vec![0.0, 1.0])
        );
        assert!(diag.contains("content line 2: not UTF-8"), "{diag}");
        assert!(
            diag.contains("content line 3: a: id repeated; this line wins"),
            "{diag}"
        );
    }

    #[test]
    fn refuses_vectors_of_two_models_and_a_file_of_no_items() {
        let (lib, _) = read(
            "{\"id\":\"a\",\"model\":\"m1\",\"vector\":[1,0]}\n{\"id\":\"b\",\"model\":\"m2\",\"vector\":[0,1]}\n",
        );
        let err = format!("{:#}", lib.expect_err("two models"));
        assert!(err.contains("m1, m2") && err.contains("reembed"), "{err}");
        let (lib, _) = read("{}\n[]\n");
        let err = format!("{:#}", lib.expect_err("no items"));
        assert!(err.contains("none of its 2 lines"), "{err}");
    }
}
