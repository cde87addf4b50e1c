//! Reads a Segment-Spec JSONL stream into validated, deduplicated events,
//! for `liveseg replay`.
//!
//! Parsing JSON dominates a replay, so it runs on worker threads while the
//! engine work stays single-threaded and deterministic:
//!
//! reader thread --chunks of whole lines--> workers (parse + validate)
//!   --parsed chunks--> calling thread (reorders chunks, dedupes, reports)
//!
//! Chunks are numbered and consumed strictly in file order, so line numbers,
//! diagnostics and "first messageId wins" are exactly those of a sequential
//! read. Both channels are bounded: memory holds a few chunks of raw text
//! plus the validated events (which a replay must hold anyway, to sort them).

use std::collections::{BTreeMap, HashSet};
use std::io::{self, BufRead, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context as _, Result};
use liveseg_core::event::{Event, FieldError, Limits, parse_message};
use liveseg_core::Millis;
use serde_json::Value;

/// Raw text handed to a worker at a time: big enough to amortise channel
/// traffic, small enough that a few in flight cost little memory.
const CHUNK_BYTES: usize = 1 << 20;

/// What reading found, besides the events.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadCounts {
    /// Lines read, including blank and invalid ones.
    pub lines: u64,
    pub invalid: u64,
    /// Valid messages whose messageId an earlier line already used.
    pub duplicates: u64,
    /// Valid, first-seen messages with a timestamp after `at`.
    pub after_at: u64,
}

/// The outcome of one line.
enum Line {
    Blank,
    Event(Event),
    Invalid(FieldError),
}

struct RawChunk {
    seq: u64,
    /// 1-based number of the chunk's first line.
    first_line: u64,
    text: Vec<u8>,
}

struct ParsedChunk {
    seq: u64,
    first_line: u64,
    lines: Vec<Line>,
}

/// Reads every line of `input`; returns the events with `ts <= at`, each
/// messageId's first valid occurrence only, in file order. Invalid lines are
/// written to `diag` as `line N: field: reason` and skipped.
pub fn read_events(
    input: impl BufRead + Send,
    at: Millis,
    diag: &mut dyn Write,
) -> Result<(Vec<Event>, ReadCounts)> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 16));
    let (raw_tx, raw_rx) = sync_channel::<RawChunk>(workers * 2);
    let (parsed_tx, parsed_rx) = sync_channel::<ParsedChunk>(workers * 2);
    let raw_rx = Arc::new(Mutex::new(raw_rx));

    std::thread::scope(|scope| {
        let reader = scope.spawn(move || split_into_chunks(input, &raw_tx));
        for _ in 0..workers {
            let rx = Arc::clone(&raw_rx);
            let tx = parsed_tx.clone();
            scope.spawn(move || parse_chunks(&rx, &tx));
        }
        // Workers own the only senders now: the collector ends when they do.
        drop(parsed_tx);
        drop(raw_rx);
        let collected = collect_in_order(&parsed_rx, at, diag);
        // On a collector error, dropping the receiver stops workers and reader.
        drop(parsed_rx);
        let lines = reader
            .join()
            .map_err(|_| anyhow::anyhow!("the input reader thread panicked"))?
            .context("reading the events file")?;
        let (events, mut counts) = collected?;
        counts.lines = lines;
        Ok((events, counts))
    })
}

/// Reads whole lines into chunks of about `CHUNK_BYTES`; returns the line count.
fn split_into_chunks(mut input: impl BufRead, tx: &SyncSender<RawChunk>) -> io::Result<u64> {
    let mut lines: u64 = 0;
    let mut seq = 0;
    loop {
        let first_line = lines + 1;
        let mut text = Vec::with_capacity(CHUNK_BYTES + 4096);
        while text.len() < CHUNK_BYTES {
            let n = input.read_until(b'\n', &mut text)?;
            if n == 0 {
                break;
            }
            lines += 1;
        }
        if text.is_empty() {
            return Ok(lines);
        }
        if tx.send(RawChunk { seq, first_line, text }).is_err() {
            // The collector stopped early; its error is the one to report.
            return Ok(lines);
        }
        seq += 1;
    }
}

fn parse_chunks(rx: &Mutex<Receiver<RawChunk>>, tx: &SyncSender<ParsedChunk>) {
    let limits = Limits::default();
    loop {
        let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(chunk) = next else { return };
        let lines = chunk
            .text
            .split_inclusive(|b| *b == b'\n')
            .map(|line| parse_line(line, &limits))
            .collect();
        let parsed = ParsedChunk {
            seq: chunk.seq,
            first_line: chunk.first_line,
            lines,
        };
        if tx.send(parsed).is_err() {
            return;
        }
    }
}

/// Validates one line. Replay has no "future" check: the history may end
/// anywhere, so `now` is effectively unbounded.
fn parse_line(raw: &[u8], limits: &Limits) -> Line {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let Ok(text) = std::str::from_utf8(raw) else {
        return Line::Invalid(FieldError::new("", "not valid UTF-8"));
    };
    if text.trim().is_empty() {
        return Line::Blank;
    }
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Line::Invalid(FieldError::new("", format!("not valid JSON ({e})"))),
    };
    match parse_message(&value, Millis::MAX / 2, limits) {
        Ok(event) => Line::Event(event),
        Err(e) => Line::Invalid(e),
    }
}

fn collect_in_order(
    rx: &Receiver<ParsedChunk>,
    at: Millis,
    diag: &mut dyn Write,
) -> Result<(Vec<Event>, ReadCounts)> {
    let mut counts = ReadCounts::default();
    let mut events = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut pending: BTreeMap<u64, ParsedChunk> = BTreeMap::new();
    let mut next_seq = 0;
    for chunk in rx {
        pending.insert(chunk.seq, chunk);
        while let Some(chunk) = pending.remove(&next_seq) {
            next_seq += 1;
            for (i, line) in chunk.lines.into_iter().enumerate() {
                let line_no = chunk.first_line + i as u64;
                match line {
                    Line::Blank => {}
                    Line::Invalid(e) => {
                        counts.invalid += 1;
                        writeln!(diag, "{}", invalid_line(line_no, &e))
                            .context("writing diagnostics")?;
                    }
                    Line::Event(e) => {
                        if !seen.insert(e.message_id.clone()) {
                            counts.duplicates += 1;
                        } else if e.ts > at {
                            counts.after_at += 1;
                        } else {
                            events.push(e);
                        }
                    }
                }
            }
        }
    }
    Ok((events, counts))
}

/// `line N: field: reason`, or `line N: reason` when the whole line is at fault.
pub fn invalid_line(line_no: u64, e: &FieldError) -> String {
    if e.field.is_empty() {
        format!("line {line_no}: {}", e.reason)
    } else {
        format!("line {line_no}: {}: {}", e.field, e.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(id: &str, ts: &str) -> String {
        format!(
            r#"{{"type":"track","event":"Meeting Booked","userId":"u1","messageId":"{id}","timestamp":"{ts}"}}"#
        )
    }

    fn read(text: &str, at: &str) -> (Vec<Event>, ReadCounts, String) {
        let at = liveseg_core::time::parse_rfc3339(at).expect("at");
        let mut diag = Vec::new();
        let (events, counts) = read_events(text.as_bytes(), at, &mut diag).expect("read");
        (events, counts, String::from_utf8(diag).expect("utf8"))
    }

    #[test]
    fn first_message_id_wins_and_later_events_are_dropped() {
        let text = [
            track("a", "2026-01-02T00:00:00Z"),
            String::new(),
            track("a", "2026-01-01T00:00:00Z"),
            track("b", "2026-01-03T00:00:00Z"),
            "{not json".into(),
            r#"{"type":"track","messageId":"c","timestamp":"2026-01-01T00:00:00Z","userId":"u"}"#
                .into(),
            track("d", "2026-01-01T00:00:00Z"),
        ]
        .join("\r\n");
        let (events, counts, diag) = read(&text, "2026-01-02T00:00:00Z");
        let ids: Vec<&str> = events.iter().map(|e| e.message_id.as_str()).collect();
        assert_eq!(ids, ["a", "d"]);
        assert_eq!(
            counts,
            ReadCounts {
                lines: 7,
                invalid: 2,
                duplicates: 1,
                after_at: 1
            }
        );
        let diag: Vec<&str> = diag.lines().collect();
        assert_eq!(diag.len(), 2, "{diag:?}");
        assert!(diag[0].starts_with("line 5: not valid JSON"), "{diag:?}");
        assert_eq!(diag[1], "line 6: event: is required");
    }

    #[test]
    fn chunks_keep_file_order_and_line_numbers() {
        // Well over one chunk, so several workers take part.
        let n = 2 * CHUNK_BYTES / 100 + 17;
        let mut text = String::new();
        for i in 0..n {
            if i % 1000 == 999 {
                text.push_str("[]\n");
            } else {
                text.push_str(&track(&format!("m{i}"), "2026-01-01T00:00:00Z"));
                text.push('\n');
            }
        }
        let (events, counts, diag) = read(&text, "2026-01-01T00:00:00Z");
        assert_eq!(counts.lines, n as u64);
        assert_eq!(counts.invalid, (n / 1000) as u64);
        assert_eq!(events.len() as u64, n as u64 - counts.invalid);
        assert!(events.windows(2).all(|w| {
            let num = |e: &Event| e.message_id[1..].parse::<usize>().expect("number");
            num(&w[0]) < num(&w[1])
        }));
        assert_eq!(
            diag.lines().next(),
            Some("line 1000: message must be a JSON object")
        );
    }

    #[test]
    fn bad_utf8_is_one_invalid_line() {
        let mut bytes = track("a", "2026-01-01T00:00:00Z").into_bytes();
        bytes.extend_from_slice(b"\n\xff\xfe\n");
        let mut diag = Vec::new();
        let (events, counts) = read_events(&bytes[..], i64::MAX / 4, &mut diag).expect("read");
        assert_eq!((events.len(), counts.invalid), (1, 1));
        assert_eq!(String::from_utf8_lossy(&diag), "line 2: not valid UTF-8\n");
    }
}
