//! `--content FILE`: a tenant's content library for the commands that
//! compute model features offline over a history (`model train`, `model
//! report`, `score`, `discover`), so their content-affinity features are the
//! ones the node computes live from its registered content.
//!
//! The file is JSON lines of `{"id", "url", "vector", "model"}`, what
//! `liveseg content list --vectors -o jsonl` prints; other fields are
//! ignored. A bad line is reported on stderr with its number, field and
//! reason, and the good lines are still read.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use liveseg_core::content::ContentLibrary;
use serde_json::Value;

#[derive(Args, Debug, Clone, Default)]
pub struct ContentFileArgs {
    /// The tenant's content with its vectors, as JSON lines (what `liveseg
    /// content list --vectors -o jsonl` prints): the content-affinity
    /// features look sends and engagements up in it. Without it they read
    /// 0, "unknown", for every contact.
    #[arg(long = "content", value_name = "FILE")]
    pub content: Option<PathBuf>,
}

impl ContentFileArgs {
    /// The library of the file, or an empty one without `--content`.
    pub fn library(&self) -> Result<Arc<ContentLibrary>> {
        let Some(path) = &self.content else {
            return Ok(Arc::default());
        };
        let lib = read_library_file(path, &mut io::stderr().lock())?;
        Ok(Arc::new(lib))
    }
}

fn read_library_file(path: &Path, diag: &mut impl Write) -> Result<ContentLibrary> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    read_library(BufReader::new(file), diag)
        .with_context(|| format!("--content {}", path.display()))
}

/// Reads the lines of a content file; bad lines are reported on `diag`.
pub fn read_library(reader: impl BufRead, diag: &mut impl Write) -> Result<ContentLibrary> {
    let mut lib = ContentLibrary::default();
    let (mut items, mut invalid) = (0usize, 0usize);
    for (n, line) in reader.lines().enumerate() {
        let line = line.context("reading")?;
        if line.trim().is_empty() {
            continue;
        }
        match add_line(&mut lib, &line) {
            Ok(()) => items += 1,
            Err(reason) => {
                invalid += 1;
                writeln!(diag, "content line {}: {reason}", n + 1)?;
            }
        }
    }
    let models: Vec<&str> = lib.models().collect();
    if models.len() > 1 {
        bail!(
            "vectors of more than one model ({}) cannot be compared: run \
             `liveseg content reembed` on the node and list the content again",
            models.join(", ")
        );
    }
    if items == 0 && invalid > 0 {
        bail!("none of its {invalid} lines is a content item");
    }
    writeln!(diag, "content: {items} items, {invalid} invalid lines")?;
    Ok(lib)
}

fn add_line(lib: &mut ContentLibrary, line: &str) -> Result<(), String> {
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
    let vector: Vec<f32> = match v.get("vector") {
        Some(Value::Array(xs)) => xs
            .iter()
            .map(|x| x.as_f64().map(|f| f as f32))
            .collect::<Option<_>>()
            .ok_or_else(|| format!("{id}: vector: must hold numbers only"))?,
        Some(_) => return Err(format!("{id}: vector: must be an array of numbers")),
        None => {
            return Err(format!(
                "{id}: vector: missing (list content with --vectors)"
            ));
        }
    };
    lib.insert_content(id, url, &vector)
        .map_err(|e| format!("{id}: vector: {e}"))?;
    if let Some(Value::String(m)) = v.get("model") {
        lib.note_model(m);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use liveseg_core::content::content_key;

    fn read(text: &str) -> (Result<ContentLibrary>, String) {
        let mut diag = Vec::new();
        let lib = read_library(text.as_bytes(), &mut diag);
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
            "content line 6: novec: vector: missing (list content with --vectors)",
            "content line 7: not JSON",
            "content: 2 items, 5 invalid lines",
        ] {
            assert!(diag.contains(expected), "{expected:?} not in:\n{diag}");
        }
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
