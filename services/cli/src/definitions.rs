//! Segment definitions for offline work (`replay --segments`, `segments
//! validate`): the presets with a file's definitions added, a definition
//! with a preset's key replacing that preset.

use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context as _, Result};
use liveseg_core::definition::parse_definitions;
use liveseg_core::presets::presets;
use liveseg_core::{SegmentDefinition, SegmentSet, ValidationError};

use crate::content_file::ContentFileArgs;
use crate::exit::Reported;
use liveseg_core::content::ContentLibrary;
use liveseg_core::content::affinity_topics;
use std::sync::Arc;

/// The presets with `extra` (JSON/YAML definitions) added; a definition
/// with a preset's key replaces that preset in place. A key defined twice
/// in `extra` is an error, not a silent override.
pub fn with_presets(extra: &str) -> Result<Vec<SegmentDefinition>, Vec<ValidationError>> {
    let mut defs = presets();
    let preset_count = defs.len();
    let mut errors = Vec::new();
    for def in parse_definitions(extra)? {
        match defs.iter().position(|d| d.key == def.key) {
            Some(i) if i >= preset_count => errors.push(ValidationError::new(
                def.key.clone(),
                "defined more than once in the file",
            )),
            Some(i) => defs[i] = def,
            None => defs.push(def),
        }
    }
    if errors.is_empty() {
        Ok(defs)
    } else {
        Err(errors)
    }
}

/// The compiled presets plus the definitions in `file`, with affinity
/// conditions resolved against the `--content` library (its texts and the
/// definitions' topics embedded here; with `strict`, a bad content line
/// fails); every problem is printed to stderr as `FILE: path: reason`.
pub fn compile_with_content(
    file: Option<&Path>,
    content: &ContentFileArgs,
    strict: bool,
) -> Result<SegmentSet> {
    let (label, defs) = read_definitions(file)?;
    let library = match &defs {
        Ok(d) => content.library_with_topics(&affinity_topics(d), strict)?,
        Err(_) => ContentLibrary::default(),
    };
    report(
        &label,
        defs.and_then(|d| SegmentSet::compile_with(&d, Arc::new(library))),
    )
}

type Definitions = Result<Vec<SegmentDefinition>, Vec<ValidationError>>;

fn read_definitions(file: Option<&Path>) -> Result<(String, Definitions)> {
    Ok(match file {
        None => (String::new(), Ok(presets())),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            (format!("{}: ", path.display()), with_presets(&text))
        }
    })
}

fn report(label: &str, compiled: Result<SegmentSet, Vec<ValidationError>>) -> Result<SegmentSet> {
    match compiled {
        Ok(set) => Ok(set),
        Err(errors) => {
            let mut diag = io::stderr().lock();
            for e in &errors {
                writeln!(diag, "{label}{}", describe(e))?;
            }
            Err(Reported { code: 1 }.into())
        }
    }
}

/// `path: reason`, or just the reason for a problem with the whole document.
pub fn describe(e: &ValidationError) -> String {
    if e.path.is_empty() {
        e.reason.clone()
    } else {
        format!("{}: {}", e.path, e.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_definitions_are_reported_with_their_path() {
        let errors =
            with_presets("key: x\nname: X\nentity: contact\ncondition: {events: {within: 3w}}")
                .expect_err("invalid");
        assert!(
            errors.iter().all(|e| e.path.starts_with("condition")),
            "{errors:?}"
        );
        assert_eq!(
            describe(&ValidationError::new("", "not valid")),
            "not valid"
        );
        assert_eq!(describe(&ValidationError::new("a.b", "bad")), "a.b: bad");
    }

    #[test]
    fn a_file_adds_definitions_and_replaces_presets_in_place() {
        let extra = "- key: engaged_target_contacts\n  name: Replaced\n  entity: contact\n  \
                     condition: {events: {event: {kind: open}, within: 7d}}\n\
                     - key: openers\n  name: Openers\n  entity: contact\n  \
                     condition: {events: {event: {kind: open}, within: 90d}}\n";
        let defs = with_presets(extra).expect("definitions");
        let keys: Vec<&str> = defs.iter().map(|d| d.key.as_str()).collect();
        let preset_keys: Vec<String> = presets().into_iter().map(|d| d.key).collect();
        assert_eq!(
            keys[..preset_keys.len()],
            preset_keys.iter().map(String::as_str).collect::<Vec<_>>()[..]
        );
        assert_eq!(keys.last(), Some(&"openers"));
        assert_eq!(defs[0].name, "Replaced");
        assert!(SegmentSet::compile(&defs).is_ok());
        let dup = with_presets(
            "[{key: a, name: A, entity: contact, condition: {events: {event: {kind: open}, within: 7d}}}, \
                                {key: a, name: B, entity: contact, condition: {events: {event: {kind: open}, within: 7d}}}]",
        )
        .map(|_| ())
        .map_err(|e| e.into_iter().map(|e| e.to_string()).collect::<Vec<_>>());
        assert_eq!(
            dup,
            Err(vec!["a: defined more than once in the file".to_string()])
        );
    }
}
