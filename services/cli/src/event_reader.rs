//! Reads a Segment-Spec JSONL stream into validated, deduplicated events,
//! for `liveseg replay`.
//!
//! Parsing JSON dominates reading, so it runs on worker threads while the
//! engine work stays single-threaded and deterministic:
//!
//! reader thread --chunks of whole lines--> workers (parse, validate, hash
//! the messageId) --parsed chunks--> calling thread (reorders chunks,
//! dedupes, reports invalid lines)
//!
//! Chunks are numbered and consumed strictly in file order, so line numbers,
//! diagnostics and "the first valid line of a messageId wins" are exactly
//! those of a sequential read. Both channels are bounded: memory holds a few
//! chunks of raw text plus the kept events (which a replay must hold anyway,
//! to sort them). The calling thread only does cheap work per event (a
//! lookup by precomputed hash), so it keeps up with the workers.

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{self, BufRead, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context as _, Result};
use liveseg_core::Millis;
use liveseg_core::event::{Event, FieldError, Limits, parse_owned};
use serde_json::Value;

use crate::event_log::EventLog;
use crate::message_ids::SeenIds;

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

struct RawChunk {
    seq: u64,
    /// 1-based number of the chunk's first line.
    first_line: u64,
    text: Vec<u8>,
}

struct ParsedChunk {
    seq: u64,
    first_line: u64,
    events: Vec<Event>,
    /// `hash_one(message_id)` of each event, computed by the worker.
    hashes: Vec<u64>,
    /// (line offset in the chunk, why), in line order.
    invalid: Vec<(u64, FieldError)>,
}

/// Reads every line of `input`; keeps the events with `ts <= at`, each
/// messageId's first valid occurrence only. Invalid lines are written to
/// `diag` as `line N: field: reason` and skipped.
pub fn read_events(
    input: impl BufRead + Send,
    at: Millis,
    diag: &mut dyn Write,
) -> Result<(EventLog, ReadCounts)> {
    read_events_with(input, at, diag, |e| e)
}

/// `read_events`, keeping `keep(event)` of each event instead of the
/// event: what a caller does not read is dropped on the workers, before
/// the whole history is held.
pub fn read_events_with(
    input: impl BufRead + Send,
    at: Millis,
    diag: &mut dyn Write,
    keep: fn(Event) -> Event,
) -> Result<(EventLog, ReadCounts)> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 16));
    let (raw_tx, raw_rx) = sync_channel::<RawChunk>(workers * 2);
    let (parsed_tx, parsed_rx) = sync_channel::<ParsedChunk>(workers * 2);
    let raw_rx = Arc::new(Mutex::new(raw_rx));
    let ids = RandomState::new();

    std::thread::scope(|scope| {
        let reader = scope.spawn(move || split_into_chunks(input, &raw_tx));
        for _ in 0..workers {
            let rx = Arc::clone(&raw_rx);
            let tx = parsed_tx.clone();
            let ids = ids.clone();
            scope.spawn(move || parse_chunks(&rx, &tx, &ids, keep));
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
        if tx
            .send(RawChunk {
                seq,
                first_line,
                text,
            })
            .is_err()
        {
            // The collector stopped early; its error is the one to report.
            return Ok(lines);
        }
        seq += 1;
    }
}

fn parse_chunks(
    rx: &Mutex<Receiver<RawChunk>>,
    tx: &SyncSender<ParsedChunk>,
    ids: &RandomState,
    keep: fn(Event) -> Event,
) {
    let limits = Limits::default();
    loop {
        let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(chunk) = next else { return };
        let mut parsed = ParsedChunk {
            seq: chunk.seq,
            first_line: chunk.first_line,
            events: Vec::new(),
            hashes: Vec::new(),
            invalid: Vec::new(),
        };
        for (offset, line) in chunk.text.split_inclusive(|b| *b == b'\n').enumerate() {
            match parse_line(line, &limits) {
                Ok(None) => {}
                Ok(Some(e)) => {
                    parsed.hashes.push(ids.hash_one(&e.message_id));
                    parsed.events.push(keep(e));
                }
                Err(e) => parsed.invalid.push((offset as u64, e)),
            }
        }
        if tx.send(parsed).is_err() {
            return;
        }
    }
}

/// Validates one line (`None` for a blank one). Replay has no "future"
/// check: the history may end anywhere, so `now` is effectively unbounded.
fn parse_line(raw: &[u8], limits: &Limits) -> Result<Option<Event>, FieldError> {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let text = std::str::from_utf8(raw).map_err(|_| FieldError::new("", "not valid UTF-8"))?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| FieldError::new("", format!("not valid JSON ({e})")))?;
    // Same checks as `parse_message`; moves the maps instead of copying them.
    parse_owned(value, Millis::MAX / 2, limits).map(Some)
}

/// Where the first event of a messageId is, to compare ids on a hash match.
#[derive(Clone, Copy)]
enum First {
    /// `chunks[chunk][index]` of the log being built (or of the current chunk).
    Kept(u32, u32),
    /// `after_at_ids[index]`: seen, but after `at`.
    AfterAt(u32),
}

/// The collector's dedupe state.
#[derive(Default)]
struct Dedupe {
    seen: SeenIds<First>,
    /// Ids of first-seen events after `at`: dropped, but they still claim their id.
    after_at_ids: Vec<String>,
}

fn collect_in_order(
    rx: &Receiver<ParsedChunk>,
    at: Millis,
    diag: &mut dyn Write,
) -> Result<(EventLog, ReadCounts)> {
    let mut counts = ReadCounts::default();
    let mut log = EventLog::default();
    let mut dedupe = Dedupe::default();
    let mut pending: BTreeMap<u64, ParsedChunk> = BTreeMap::new();
    let mut next_seq = 0;
    for chunk in rx {
        pending.insert(chunk.seq, chunk);
        while let Some(chunk) = pending.remove(&next_seq) {
            next_seq += 1;
            for (offset, e) in &chunk.invalid {
                counts.invalid += 1;
                writeln!(diag, "{}", invalid_line(chunk.first_line + offset, e))
                    .context("writing diagnostics")?;
            }
            let kept = keep_first_seen(&chunk, &log, &mut dedupe, at, &mut counts);
            let mut events = chunk.events;
            if kept.len() < events.len() {
                let mut keep = vec![false; events.len()];
                kept.iter().for_each(|i| keep[*i as usize] = true);
                let mut i = 0;
                events.retain(|_| {
                    i += 1;
                    keep[i - 1]
                });
            }
            log.push_chunk(events);
        }
    }
    Ok((log, counts))
}

/// Indices of the chunk's events to keep: first seen and not after `at`.
fn keep_first_seen(
    chunk: &ParsedChunk,
    log: &EventLog,
    dedupe: &mut Dedupe,
    at: Millis,
    counts: &mut ReadCounts,
) -> Vec<u32> {
    let this_chunk = log.chunk_count() as u32;
    let mut kept: Vec<u32> = Vec::with_capacity(chunk.events.len());
    for (i, (e, hash)) in chunk.events.iter().zip(&chunk.hashes).enumerate() {
        let here = if e.ts > at {
            First::AfterAt(dedupe.after_at_ids.len() as u32)
        } else {
            First::Kept(this_chunk, kept.len() as u32)
        };
        let after_at_ids = &dedupe.after_at_ids;
        let id_at = |first: First| match first {
            First::AfterAt(j) => after_at_ids[j as usize].as_str(),
            First::Kept(c, k) if c == this_chunk => {
                chunk.events[kept[k as usize] as usize].message_id.as_str()
            }
            First::Kept(c, k) => log.get(c, k).map_or("", |e| e.message_id.as_str()),
        };
        if !dedupe.seen.insert(*hash, &e.message_id, here, id_at) {
            counts.duplicates += 1;
        } else if e.ts > at {
            counts.after_at += 1;
            dedupe.after_at_ids.push(e.message_id.clone());
        } else {
            kept.push(i as u32);
        }
    }
    kept
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

    fn flatten(log: EventLog) -> Vec<Event> {
        log.into_chunks().into_iter().flatten().collect()
    }

    fn event(id: &str, ts: Millis) -> Event {
        let v: Value = serde_json::from_str(&track(id, "2026-01-01T00:00:00Z")).expect("json");
        let mut e = parse_owned(v, Millis::MAX / 2, &Limits::default()).expect("valid");
        e.ts = ts;
        e
    }

    #[test]
    fn ids_with_colliding_hashes_are_still_told_apart() {
        // Every id gets the same "hash": dedupe must fall back to comparing ids.
        let chunk = |seq, ids: &[(&str, Millis)]| ParsedChunk {
            seq,
            first_line: 1,
            events: ids.iter().map(|(id, ts)| event(id, *ts)).collect(),
            hashes: vec![7; ids.len()],
            invalid: vec![],
        };
        let (mut log, mut seen, mut counts) = (
            EventLog::default(),
            Dedupe::default(),
            ReadCounts::default(),
        );
        let first = chunk(0, &[("a", 1), ("late", 100), ("b", 2), ("a", 3)]);
        assert_eq!(
            keep_first_seen(&first, &log, &mut seen, 50, &mut counts),
            [0, 2]
        );
        log.push_chunk(vec![event("a", 1), event("b", 2)]);
        let second = chunk(1, &[("b", 4), ("late", 5), ("c", 6), ("c", 7), ("a", 8)]);
        assert_eq!(
            keep_first_seen(&second, &log, &mut seen, 50, &mut counts),
            [2]
        );
        assert_eq!(
            counts,
            ReadCounts {
                lines: 0,
                invalid: 0,
                duplicates: 5,
                after_at: 1
            }
        );
    }

    fn read(text: &str, at: &str) -> (Vec<Event>, ReadCounts, String) {
        let at = liveseg_core::time::parse_rfc3339(at).expect("at");
        let mut diag = Vec::new();
        let (log, counts) = read_events(text.as_bytes(), at, &mut diag).expect("read");
        (flatten(log), counts, String::from_utf8(diag).expect("utf8"))
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
        let (log, counts) = read_events(&bytes[..], i64::MAX / 4, &mut diag).expect("read");
        assert_eq!((log.len(), counts.invalid), (1, 1));
        assert_eq!(String::from_utf8_lossy(&diag), "line 2: not valid UTF-8\n");
    }
}
