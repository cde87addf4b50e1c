//! `liveseg replay`: the engine in-process over a JSONL history with a
//! simulated clock (DESIGN.md section 4, an exact contract):
//!
//! - definitions: the presets, plus `--segments FILE` adding or replacing by key;
//! - every line is validated (no future check); invalid lines are reported on
//!   stderr as `line N: field: reason` and skipped; a messageId is applied
//!   once (its first valid line wins); events after `--at` are ignored;
//! - the rest is applied in timestamp order (file order for ties), each at
//!   its own instant, then every timer up to `--at` fires;
//! - stdout gets the memberships at `--at` as `{"segment","entity","id","account"}`
//!   lines sorted by segment, entity, id; or with `--transitions` every
//!   enter/exit up to `--at` as `{"instant","segment","entity","id","account","kind"}`
//!   sorted by instant, then emission order.
//!
//! Nothing but those lines goes to stdout; the summary goes to stderr.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Args;
use liveseg_core::definition::parse_definitions;
use liveseg_core::presets::presets;
use liveseg_core::time::format_rfc3339;
use liveseg_core::{Change, Engine, Millis, SegmentDefinition, SegmentSet, ValidationError};
use serde::Serialize;

use crate::args::parse_instant;
use crate::event_reader::{ReadCounts, read_events};
use crate::exit::Reported;
use crate::output::rate;

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Segment-Spec JSON lines to replay (`-` reads stdin).
    #[arg(long, value_name = "FILE.jsonl")]
    pub events: PathBuf,
    /// The simulated instant (RFC 3339): events after it are ignored and
    /// memberships are judged at it.
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
    pub at: Millis,
    /// Print every enter/exit up to --at instead of the memberships at --at.
    #[arg(long)]
    pub transitions: bool,
    /// Segment definitions (JSON or YAML) added to the presets; a definition
    /// with a preset's key replaces it.
    #[arg(long, value_name = "FILE")]
    pub segments: Option<PathBuf>,
    /// Fail (exit 1, nothing on stdout) if any line is invalid.
    #[arg(long)]
    pub strict: bool,
}

/// What a replay did, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub read: ReadCounts,
    pub applied: u64,
    /// Lines written to stdout (memberships or transitions).
    pub printed: u64,
}

/// One membership line; field order is the output contract.
#[derive(Serialize)]
struct MembershipLine<'a> {
    segment: &'a str,
    entity: &'a str,
    id: &'a str,
    account: &'a str,
}

/// One transition line; field order is the output contract.
#[derive(Serialize)]
struct TransitionLine<'a> {
    instant: String,
    segment: &'a str,
    entity: &'a str,
    id: &'a str,
    account: &'a str,
    kind: &'a str,
}

pub fn run(args: &ReplayArgs) -> Result<()> {
    let started = Instant::now();
    let set = compile_with_presets(args.segments.as_deref())?;
    let input: Box<dyn BufRead + Send> = if args.events.as_os_str() == "-" {
        Box::new(BufReader::with_capacity(1 << 20, io::stdin()))
    } else {
        let file = File::open(&args.events)
            .with_context(|| format!("cannot open {}", args.events.display()))?;
        Box::new(BufReader::with_capacity(1 << 20, file))
    };
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let mut diag = io::stderr().lock();
    let report = replay(input, set, args.at, args.transitions, args.strict, &mut out, &mut diag)?;
    out.flush().context("writing stdout")?;
    let secs = started.elapsed().as_secs_f64();
    let r = &report.read;
    writeln!(
        diag,
        "replay: {} lines, {} events applied, {} invalid, {} duplicates, {} after --at; \
         {} {} at {} in {secs:.3} s ({:.0} events/s)",
        r.lines,
        report.applied,
        r.invalid,
        r.duplicates,
        r.after_at,
        report.printed,
        if args.transitions { "transitions" } else { "memberships" },
        format_rfc3339(args.at),
        rate(report.applied, secs),
    )
    .context("writing the summary")?;
    Ok(())
}

/// Reads, applies and prints; see the module docs for the contract.
pub fn replay(
    input: impl BufRead + Send,
    set: SegmentSet,
    at: Millis,
    transitions: bool,
    strict: bool,
    out: &mut dyn Write,
    diag: &mut dyn Write,
) -> Result<ReplayReport> {
    let (mut events, read) = read_events(input, at, diag)?;
    if strict && read.invalid > 0 {
        writeln!(
            diag,
            "replay: {} invalid lines; nothing replayed (--strict)",
            read.invalid
        )?;
        return Err(Reported { code: 1 }.into());
    }
    // Stable: events with the same timestamp keep their file order.
    events.sort_by_key(|e| e.ts);
    let mut engine = Engine::new(set);
    let mut changes: Vec<Change> = Vec::new();
    for e in &events {
        engine.apply(e, e.ts, &mut changes);
        if !transitions {
            changes.clear();
        }
    }
    engine.advance_all(at, &mut changes);
    let mut report = ReplayReport {
        read,
        applied: events.len() as u64,
        printed: 0,
    };
    drop(events);
    if transitions {
        changes.retain(|c| c.instant <= at);
        // Stable: emission order within an instant.
        changes.sort_by_key(|c| c.instant);
        for c in &changes {
            let line = TransitionLine {
                instant: format_rfc3339(c.instant),
                segment: &c.segment,
                entity: c.entity.as_str(),
                id: &c.id,
                account: &c.account,
                kind: c.kind.as_str(),
            };
            write_line(out, &line)?;
        }
        report.printed = changes.len() as u64;
    } else {
        let memberships = engine.memberships();
        for m in &memberships {
            let line = MembershipLine {
                segment: &m.segment,
                entity: m.entity,
                id: &m.id,
                account: &m.account,
            };
            write_line(out, &line)?;
        }
        report.printed = memberships.len() as u64;
    }
    Ok(report)
}

fn write_line(out: &mut dyn Write, line: &impl Serialize) -> Result<()> {
    serde_json::to_writer(&mut *out, line).context("writing stdout")?;
    out.write_all(b"\n").context("writing stdout")?;
    Ok(())
}

/// The presets with `extra` (JSON/YAML definitions) added; a definition
/// with a preset's key replaces that preset in place.
pub fn with_presets(extra: &str) -> Result<Vec<SegmentDefinition>, Vec<ValidationError>> {
    let mut defs = presets();
    for def in parse_definitions(extra)? {
        match defs.iter_mut().find(|d| d.key == def.key) {
            Some(slot) => *slot = def,
            None => defs.push(def),
        }
    }
    Ok(defs)
}

/// The compiled presets plus the definitions in `file`; every problem is
/// printed to stderr as `FILE: path: reason`.
fn compile_with_presets(file: Option<&Path>) -> Result<SegmentSet> {
    let (label, defs) = match file {
        None => (String::new(), Ok(presets())),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            (path.display().to_string(), with_presets(&text))
        }
    };
    match defs.and_then(|d| SegmentSet::compile(&d)) {
        Ok(set) => Ok(set),
        Err(errors) => {
            let mut diag = io::stderr().lock();
            for e in &errors {
                writeln!(diag, "{label}: {}", describe(e))?;
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

