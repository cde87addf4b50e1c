//! `liveseg ingest FILE.jsonl`: streams Segment-Spec lines to a node as raw
//! JSON (`SegmentMessage.json`), in batches, several requests in flight.
//!
//! A batch that meets UNAVAILABLE or RESOURCE_EXHAUSTED (the node's
//! backpressure) is retried with exponential backoff; the node dedupes by
//! messageId, so a retry never applies anything twice. Any other error stops
//! the run. Items the node rejects are reported by their line number.

use std::io::{self, IsTerminal as _, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use liveseg_proto::pb::{self, segment_message::Payload};
use serde::Serialize;
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::task::JoinSet;

use crate::client::{Api, rpc_error};
use crate::output::{OutputFormat, print_value, rate};

/// How many rejected items a summary lists.
const SHOWN_INVALID: usize = 20;
const MAX_ATTEMPTS: u32 = 10;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Segment-Spec JSON lines (`-` reads stdin).
    #[arg(value_name = "FILE.jsonl")]
    pub file: std::path::PathBuf,
    /// Messages per request (the node takes at most its --max-batch).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
}

/// One rejected line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InvalidItem {
    pub line: u64,
    pub field: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestSummary {
    pub lines: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub invalid: u64,
    /// The first `SHOWN_INVALID` rejected lines, by line number.
    pub first_invalid: Vec<InvalidItem>,
    pub seconds: f64,
}

struct Batch {
    /// Line number of each message.
    lines: Vec<u64>,
    messages: Vec<pb::SegmentMessage>,
    bytes: u64,
}

pub async fn run(args: &IngestArgs, api: &Api, format: OutputFormat) -> Result<()> {
    let summary = ingest_file(
        api,
        &args.file,
        args.batch as usize,
        args.concurrency as usize,
        !format.is_machine(),
    )
    .await?;
    let mut out = io::stdout().lock();
    if format.is_machine() {
        print_value(&mut out, format, &summary_json(&summary))?;
    } else {
        out.write_all(render_summary(&args.file.display().to_string(), &summary).as_bytes())?;
    }
    Ok(())
}

/// Streams `path` into the node; `progress` shows a bar on a terminal.
pub async fn ingest_file(
    api: &Api,
    path: &Path,
    batch: usize,
    concurrency: usize,
    progress: bool,
) -> Result<IngestSummary> {
    let started = Instant::now();
    let (input, total): (Box<dyn AsyncRead + Unpin + Send>, Option<u64>) =
        if path.as_os_str() == "-" {
            (Box::new(tokio::io::stdin()), None)
        } else {
            let file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("cannot open {}", path.display()))?;
            let len = file.metadata().await.ok().map(|m| m.len());
            (Box::new(file), len)
        };
    let bar = progress_bar(progress, total);
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let mut summary = IngestSummary::default();
    let mut inflight: JoinSet<Result<(Batch, pb::IngestResponse)>> = JoinSet::new();
    loop {
        let next = read_batch(&mut reader, batch, &mut summary)
            .await
            .with_context(|| format!("reading {}", path.display()))?;
        let Some(next) = next else { break };
        while inflight.len() >= concurrency {
            if let Some(done) = inflight.join_next().await {
                account(done??, &mut summary, &bar);
            }
        }
        inflight.spawn(send_with_retry(api.clone(), next));
    }
    while let Some(done) = inflight.join_next().await {
        account(done??, &mut summary, &bar);
    }
    bar.finish_and_clear();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn progress_bar(enabled: bool, total: Option<u64>) -> ProgressBar {
    if !enabled || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(len) => (
            ProgressBar::new(len),
            "{spinner} {elapsed_precise} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{spinner} {elapsed_precise} {bytes} {bytes_per_sec} {msg}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Reads up to `size` non-blank lines. Lines that cannot be sent at all
/// (not UTF-8) are counted as invalid here. `None` at end of input.
async fn read_batch(
    reader: &mut (impl AsyncBufRead + Unpin),
    size: usize,
    summary: &mut IngestSummary,
) -> io::Result<Option<Batch>> {
    let mut batch = Batch {
        lines: Vec::with_capacity(size),
        messages: Vec::with_capacity(size),
        bytes: 0,
    };
    let mut buf = Vec::new();
    while batch.messages.len() < size {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).await?;
        if n == 0 {
            break;
        }
        summary.lines += 1;
        batch.bytes += n as u64;
        let raw = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        match std::str::from_utf8(raw) {
            Ok(text) if text.trim().is_empty() => {}
            Ok(text) => {
                batch.lines.push(summary.lines);
                batch.messages.push(pb::SegmentMessage {
                    payload: Some(Payload::Json(text.to_string())),
                });
            }
            Err(_) => note_invalid(summary, summary.lines, "", "not valid UTF-8"),
        }
    }
    Ok((batch.bytes > 0).then_some(batch))
}

async fn send_with_retry(api: Api, batch: Batch) -> Result<(Batch, pb::IngestResponse)> {
    if batch.messages.is_empty() {
        return Ok((batch, pb::IngestResponse::default()));
    }
    let mut client = api.ingest();
    let first_line = batch.lines.first().copied().unwrap_or_default();
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        let req = pb::IngestRequest {
            messages: batch.messages.clone(),
        };
        match client.ingest(req).await {
            Ok(resp) => return Ok((batch, resp.into_inner())),
            Err(status) if retryable(status.code()) && attempt < MAX_ATTEMPTS => {
                // Spread retries of concurrent batches a little.
                let jitter = Duration::from_millis(first_line % 50);
                tokio::time::sleep(backoff + jitter).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                attempt += 1;
            }
            Err(status) => {
                let what = format!("ingesting the batch starting at line {first_line}");
                return Err(rpc_error(&what, &status));
            }
        }
    }
}

fn retryable(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable | tonic::Code::ResourceExhausted
    )
}

fn account(done: (Batch, pb::IngestResponse), summary: &mut IngestSummary, bar: &ProgressBar) {
    let (batch, resp) = done;
    summary.accepted += u64::from(resp.accepted);
    summary.duplicates += u64::from(resp.duplicates);
    for r in &resp.results {
        if r.status() == pb::ItemStatus::Invalid {
            let line = batch
                .lines
                .get(r.index as usize)
                .copied()
                .unwrap_or_default();
            note_invalid(summary, line, &r.field, &r.reason);
        }
    }
    bar.inc(batch.bytes);
    bar.set_message(format!("{} accepted", summary.accepted));
}

/// Counts one rejected line, keeping the first `SHOWN_INVALID` by line number.
fn note_invalid(summary: &mut IngestSummary, line: u64, field: &str, reason: &str) {
    summary.invalid += 1;
    let shown = &mut summary.first_invalid;
    if shown.len() >= SHOWN_INVALID && shown.last().is_some_and(|last| last.line < line) {
        return;
    }
    let item = InvalidItem {
        line,
        field: field.to_string(),
        reason: reason.to_string(),
    };
    let at = shown.partition_point(|i| i.line <= line);
    shown.insert(at, item);
    shown.truncate(SHOWN_INVALID);
}

pub fn invalid_text(i: &InvalidItem) -> String {
    if i.field.is_empty() {
        format!("line {}: {}", i.line, i.reason)
    } else {
        format!("line {}: {}: {}", i.line, i.field, i.reason)
    }
}

pub fn render_summary(source: &str, s: &IngestSummary) -> String {
    let sent = s.accepted + s.duplicates + s.invalid;
    let mut text = format!(
        "ingested {source}: {} lines in {:.1} s ({:.0} events/s)\n  accepted    {}\n  duplicates  {}\n  invalid     {}\n",
        s.lines,
        s.seconds,
        rate(sent, s.seconds),
        s.accepted,
        s.duplicates,
        s.invalid,
    );
    if !s.first_invalid.is_empty() {
        let more = s.invalid.saturating_sub(s.first_invalid.len() as u64);
        text.push_str(if more > 0 {
            "first invalid lines:\n"
        } else {
            "invalid lines:\n"
        });
        for i in &s.first_invalid {
            text.push_str(&format!("  {}\n", invalid_text(i)));
        }
        if more > 0 {
            text.push_str(&format!("  ... and {more} more\n"));
        }
    }
    text
}

/// The summary for programs, fields in reading order.
#[derive(Serialize)]
pub struct SummaryJson<'a> {
    lines: u64,
    accepted: u64,
    duplicates: u64,
    invalid: u64,
    seconds: f64,
    events_per_second: f64,
    first_invalid: Vec<InvalidJson<'a>>,
}

#[derive(Serialize)]
struct InvalidJson<'a> {
    line: u64,
    field: &'a str,
    reason: &'a str,
}

pub fn summary_json(s: &IngestSummary) -> SummaryJson<'_> {
    let sent = s.accepted + s.duplicates + s.invalid;
    let first_invalid = s
        .first_invalid
        .iter()
        .map(|i| InvalidJson {
            line: i.line,
            field: &i.field,
            reason: &i.reason,
        })
        .collect();
    SummaryJson {
        lines: s.lines,
        accepted: s.accepted,
        duplicates: s.duplicates,
        invalid: s.invalid,
        seconds: s.seconds,
        events_per_second: rate(sent, s.seconds),
        first_invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_skip_blank_lines_and_remember_line_numbers() {
        let text = b"{\"a\":1}\n\n{\"b\":2}\r\n\xff\n{\"c\":3}";
        let mut reader = BufReader::new(&text[..]);
        let mut summary = IngestSummary::default();
        let first = read_batch(&mut reader, 2, &mut summary)
            .await
            .expect("read");
        let first = first.expect("a batch");
        assert_eq!(first.lines, [1, 3]);
        assert_eq!(
            first.messages[1].payload,
            Some(Payload::Json("{\"b\":2}".into()))
        );
        let second = read_batch(&mut reader, 2, &mut summary)
            .await
            .expect("read");
        assert_eq!(second.expect("a batch").lines, [5]);
        assert!(
            read_batch(&mut reader, 2, &mut summary)
                .await
                .expect("read")
                .is_none()
        );
        assert_eq!((summary.lines, summary.invalid), (5, 1));
        assert_eq!(
            invalid_text(&summary.first_invalid[0]),
            "line 4: not valid UTF-8"
        );
    }

    #[test]
    fn only_the_first_invalid_lines_are_kept_in_order() {
        let mut s = IngestSummary::default();
        for line in (1..=30).rev() {
            note_invalid(&mut s, line * 2, "timestamp", "is required");
        }
        assert_eq!(s.invalid, 30);
        let lines: Vec<u64> = s.first_invalid.iter().map(|i| i.line).collect();
        assert_eq!(lines, (1..=20).map(|l| l * 2).collect::<Vec<_>>());
    }

    #[test]
    fn summaries_render_for_people_and_programs() {
        let mut s = IngestSummary {
            lines: 10,
            accepted: 7,
            duplicates: 1,
            seconds: 2.0,
            ..IngestSummary::default()
        };
        note_invalid(&mut s, 4, "timestamp", "is required");
        note_invalid(&mut s, 9, "", "not valid UTF-8");
        let text = render_summary("e.jsonl", &s);
        assert_eq!(
            text,
            "ingested e.jsonl: 10 lines in 2.0 s (5 events/s)\n  accepted    7\n  duplicates  1\n  invalid     2\n\
             invalid lines:\n  line 4: timestamp: is required\n  line 9: not valid UTF-8\n"
        );
        let v = serde_json::to_value(summary_json(&s)).expect("json");
        assert_eq!(v["first_invalid"][0]["field"], "timestamp");
        assert_eq!(v["events_per_second"], 5.0);
    }

    #[test]
    fn only_backpressure_and_unavailability_are_retried() {
        assert!(retryable(tonic::Code::Unavailable));
        assert!(retryable(tonic::Code::ResourceExhausted));
        assert!(!retryable(tonic::Code::InvalidArgument));
        assert!(!retryable(tonic::Code::Unauthenticated));
    }
}
