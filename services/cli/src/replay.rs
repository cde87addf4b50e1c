//! `liveseg replay`: the engine in-process over a JSONL history with a
//! simulated clock (DESIGN.md section 4, an exact contract):
//!
//! - definitions: the presets, plus `--segments FILE` adding or replacing by key;
//!   affinity conditions resolve against `--content FILE.jsonl` (embedded here
//!   with the model of `--model-dir`, as a node does at registration);
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
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Args;
use liveseg_core::time::format_rfc3339;
use liveseg_core::{Change, Engine, Millis, SegmentSet};
use serde::Serialize;

use crate::args::parse_instant;
use crate::definitions::compile_with_content;
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
    #[command(flatten)]
    pub content: crate::content_file::ContentFileArgs,
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
    let set = compile_with_content(args.segments.as_deref(), &args.content, args.strict)?;
    let input: Box<dyn BufRead + Send> = if args.events.as_os_str() == "-" {
        Box::new(BufReader::with_capacity(1 << 20, io::stdin()))
    } else {
        let file = File::open(&args.events)
            .with_context(|| format!("cannot open {}", args.events.display()))?;
        Box::new(BufReader::with_capacity(1 << 20, file))
    };
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let mut diag = io::stderr().lock();
    let report = replay(
        input,
        set,
        args.at,
        args.transitions,
        args.strict,
        &mut out,
        &mut diag,
    )?;
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
        if args.transitions {
            "transitions"
        } else {
            "memberships"
        },
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
    let (events, read) = read_events(input, at, diag)?;
    if strict && read.invalid > 0 {
        writeln!(
            diag,
            "replay: {} invalid lines; nothing replayed (--strict)",
            read.invalid
        )?;
        return Err(Reported { code: 1 }.into());
    }
    let mut report = ReplayReport {
        read,
        applied: events.len() as u64,
        printed: 0,
    };
    let mut engine = Engine::new(set);
    let mut changes: Vec<Change> = Vec::new();
    events.for_each_in_time_order(|e| {
        engine.apply(e, e.ts, &mut changes);
        if !transitions {
            changes.clear();
        }
    });
    engine.advance_all(at, &mut changes);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::with_presets;
    use liveseg_core::presets::presets;
    use liveseg_core::time::parse_rfc3339;

    /// An account-level CRM sync, a contact placed in it, an open (and a
    /// retried copy of it), a personal-account visitor, an invalid line,
    /// garbage, a blank line, and an event after the first `--at` used.
    const EVENTS: &str = r#"{"type":"group","messageId":"g1","anonymousId":"crm","groupId":"acme","traits":{"target":true,"icp_fit":80},"timestamp":"2026-01-01T00:00:00Z"}
{"type":"group","messageId":"g2","userId":"u1","groupId":"acme","timestamp":"2026-01-01T00:00:00Z"}
{"type":"track","messageId":"o1","userId":"u1","event":"Email Opened","properties":{"email_id":"e1"},"timestamp":"2026-01-10T12:00:00Z"}
{"type":"track","messageId":"o1","userId":"u1","event":"Email Opened","properties":{"email_id":"e1"},"timestamp":"2026-01-12T12:00:00Z"}
{"type":"page","messageId":"p1","userId":"u2","name":"Home","properties":{"path":"/"},"timestamp":"2026-01-15T08:00:00Z"}
{"type":"track","messageId":"x1","userId":"u1","timestamp":"2026-01-11T00:00:00Z"}
not json

{"type":"track","messageId":"m9","userId":"u1","event":"Meeting Booked","timestamp":"2026-03-01T00:00:00Z"}
"#;

    fn presets_set() -> SegmentSet {
        SegmentSet::compile(&presets()).expect("presets compile")
    }

    fn run_replay(set: SegmentSet, at: &str, transitions: bool) -> (String, String, ReplayReport) {
        let at = parse_rfc3339(at).expect("at");
        let (mut out, mut diag) = (Vec::new(), Vec::new());
        let report = replay(
            EVENTS.as_bytes(),
            set,
            at,
            transitions,
            false,
            &mut out,
            &mut diag,
        )
        .expect("replay");
        let text = |b: Vec<u8>| String::from_utf8(b).expect("utf8");
        (text(out), text(diag), report)
    }

    #[test]
    fn memberships_at_an_instant_in_contract_order() {
        let (out, diag, report) = run_replay(presets_set(), "2026-01-20T00:00:00Z", false);
        assert_eq!(
            out,
            concat!(
                r#"{"segment":"engaged_non_target_contacts","entity":"contact","id":"u2","account":"~u2"}"#,
                "\n",
                r#"{"segment":"engaged_target_contacts","entity":"contact","id":"u1","account":"acme"}"#,
                "\n",
            )
        );
        assert_eq!(
            diag,
            "line 6: event: is required\nline 7: not valid JSON (expected ident at line 1 column 2)\n"
        );
        let read = ReadCounts {
            lines: 9,
            invalid: 2,
            duplicates: 1,
            after_at: 1,
        };
        assert_eq!(
            report,
            ReplayReport {
                read,
                applied: 4,
                printed: 2
            }
        );
    }

    #[test]
    fn transitions_up_to_the_instant_including_time_driven_exits() {
        let (out, _, report) = run_replay(presets_set(), "2026-03-01T00:00:00Z", true);
        let line = |instant: &str,
                    segment: &str,
                    entity: &str,
                    id: &str,
                    account: &str,
                    kind: &str| {
            format!(
                r#"{{"instant":"{instant}","segment":"{segment}","entity":"{entity}","id":"{id}","account":"{account}","kind":"{kind}"}}"#
            )
        };
        let dormant = |instant: &str, kind: &str| {
            line(
                instant,
                "dormant_high_fit_accounts",
                "account",
                "acme",
                "acme",
                kind,
            )
        };
        let engaged = |instant: &str, kind: &str| {
            line(
                instant,
                "engaged_target_contacts",
                "contact",
                "u1",
                "acme",
                kind,
            )
        };
        let visitor = |instant: &str, kind: &str| {
            line(
                instant,
                "engaged_non_target_contacts",
                "contact",
                "u2",
                "~u2",
                kind,
            )
        };
        let expected = [
            // icp_fit 80 and no engagement yet.
            dormant("2026-01-01T00:00:00.000Z", "enter"),
            // The open engages the account and the contact (emission order).
            dormant("2026-01-10T12:00:00.000Z", "exit"),
            engaged("2026-01-10T12:00:00.000Z", "enter"),
            visitor("2026-01-15T08:00:00.000Z", "enter"),
            // Exactly 30 days after the open, by time alone.
            engaged("2026-02-09T12:00:00.000Z", "exit"),
            dormant("2026-02-09T12:00:00.000Z", "enter"),
            visitor("2026-02-14T08:00:00.000Z", "exit"),
            // The meeting at exactly --at is applied.
            dormant("2026-03-01T00:00:00.000Z", "exit"),
            engaged("2026-03-01T00:00:00.000Z", "enter"),
        ];
        assert_eq!(out.lines().collect::<Vec<_>>(), expected);
        assert_eq!(
            (report.applied, report.printed, report.read.after_at),
            (5, 9, 0)
        );
    }

    #[test]
    fn segments_file_overrides_presets_by_key_and_adds_new_ones() {
        let extra = r#"
segments:
  - key: engaged_target_contacts
    name: Engaged in the last week
    entity: contact
    condition:
      all:
        - account_trait: {name: target, op: eq, value: true}
        - events: {event: {kind: engagement}, within: 7d, at_least: 1}
  - key: openers
    name: Opened anything
    entity: contact
    condition:
      events: {event: {kind: open}, within: 90d, at_least: 1}
"#;
        let defs = with_presets(extra).expect("definitions");
        assert_eq!(defs.len(), presets().len() + 1);
        let set = SegmentSet::compile(&defs).expect("compile");
        let (out, _, _) = run_replay(set, "2026-01-20T00:00:00Z", false);
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            [
                r#"{"segment":"engaged_non_target_contacts","entity":"contact","id":"u2","account":"~u2"}"#,
                r#"{"segment":"openers","entity":"contact","id":"u1","account":"acme"}"#,
            ]
        );
    }

    #[test]
    fn strict_mode_prints_nothing_when_a_line_is_invalid() {
        let (mut out, mut diag) = (Vec::new(), Vec::new());
        let err = replay(
            EVENTS.as_bytes(),
            presets_set(),
            i64::MAX / 4,
            false,
            true,
            &mut out,
            &mut diag,
        )
        .expect_err("strict");
        assert!(matches!(
            err.downcast_ref::<Reported>(),
            Some(Reported { code: 1 })
        ));
        assert!(out.is_empty());
        assert!(String::from_utf8_lossy(&diag).contains("2 invalid lines"));
    }
}
