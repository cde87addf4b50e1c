//! The ownership journal: every node appends what it believes about its
//! shards (acquired until a deadline, renewed until a later one, stopped,
//! released), stamped with CLOCK_MONOTONIC, which all processes on one
//! machine share. The checker reads the journals of all nodes and measures
//! double ownership: the total time two different owners of one shard both
//! believed they held it.
//!
//! A crashed node writes no "stop": its belief ends at the last deadline it
//! recorded, because after it the node's own fence refuses to write.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// CLOCK_MONOTONIC in nanoseconds: comparable across processes of one
/// machine (unlike `std::time::Instant`, whose origin is private).
pub fn mono_ns() -> i64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec * 1_000_000_000 + t.tv_nsec
}

/// What a node did with a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Acquired the lease; believes it owns the shard until `deadline_ns`.
    Acquire,
    /// Renewed; believes it owns the shard until `deadline_ns`.
    Renew,
    /// Began a graceful handoff (still the owner until it releases).
    Draining,
    /// Stopped serving: its monotonic deadline passed before a renewal.
    DeadlineStop,
    /// Stopped serving: a renewal found the lease gone.
    Lost,
    /// Stopped serving and released the lease (graceful).
    Release,
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// CLOCK_MONOTONIC of the event.
    pub mono_ns: i64,
    /// The node.
    pub node: String,
    /// The shard.
    pub shard: u32,
    /// The lease epoch concerned.
    pub epoch: u64,
    /// What happened.
    pub kind: Kind,
    /// For acquire/renew: until when the node believes it owns the shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ns: Option<i64>,
}

/// Appends records as JSON lines (one `write` per record, so lines from
/// concurrent writers do not interleave within a line).
pub struct Journal {
    file: Option<Mutex<std::fs::File>>,
}

impl Journal {
    /// A journal writing to `path` (appending), or a no-op one for `None`.
    pub fn open(path: Option<&Path>) -> std::io::Result<Self> {
        let file = match path {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            )),
            None => None,
        };
        Ok(Journal { file })
    }

    /// Writes one record; a failed write is logged, never fatal.
    pub fn record(&self, r: &Record) {
        let Some(f) = &self.file else { return };
        let Ok(mut line) = serde_json::to_vec(r) else {
            return;
        };
        line.push(b'\n');
        let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(&line) {
            tracing::warn!(error = %e, "ownership journal write failed");
        }
    }
}

/// Reads every `*.jsonl` record of the given files (unparsable lines are
/// skipped: a process killed mid-write can leave a torn last line).
pub fn read(paths: &[&Path]) -> std::io::Result<Vec<Record>> {
    let mut out = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(p)?;
        out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
    }
    Ok(out)
}

/// One owner's belief interval for a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    /// The shard.
    pub shard: u32,
    /// The owner.
    pub node: String,
    /// Its epoch.
    pub epoch: u64,
    /// Acquired at.
    pub start_ns: i64,
    /// Stopped at, or its last deadline if it never recorded a stop.
    pub end_ns: i64,
}

/// Belief intervals per (shard, node, epoch).
pub fn intervals(records: &[Record]) -> Vec<Interval> {
    let mut open: BTreeMap<(u32, String, u64), Interval> = BTreeMap::new();
    let mut sorted: Vec<&Record> = records.iter().collect();
    sorted.sort_by_key(|r| r.mono_ns);
    for r in sorted {
        let k = (r.shard, r.node.clone(), r.epoch);
        match r.kind {
            Kind::Acquire => {
                open.insert(
                    k,
                    Interval {
                        shard: r.shard,
                        node: r.node.clone(),
                        epoch: r.epoch,
                        start_ns: r.mono_ns,
                        end_ns: r.deadline_ns.unwrap_or(r.mono_ns),
                    },
                );
            }
            Kind::Renew => {
                if let (Some(i), Some(d)) = (open.get_mut(&k), r.deadline_ns) {
                    i.end_ns = i.end_ns.max(d);
                }
            }
            Kind::Draining => {}
            Kind::DeadlineStop | Kind::Lost | Kind::Release => {
                if let Some(i) = open.get_mut(&k) {
                    i.end_ns = i.end_ns.min(r.mono_ns);
                }
            }
        }
    }
    open.into_values().collect()
}

/// Total overlap (ns) between intervals of different owners, per shard.
/// Zero everywhere means no two nodes ever believed they owned one shard at
/// the same time.
pub fn double_ownership_ns(intervals: &[Interval]) -> BTreeMap<u32, i64> {
    let mut per_shard: BTreeMap<u32, Vec<&Interval>> = BTreeMap::new();
    for i in intervals {
        per_shard.entry(i.shard).or_default().push(i);
    }
    let mut out = BTreeMap::new();
    for (shard, list) in per_shard {
        let mut total = 0;
        for (a_i, a) in list.iter().enumerate() {
            for b in &list[a_i + 1..] {
                if (a.node.as_str(), a.epoch) == (b.node.as_str(), b.epoch) {
                    continue;
                }
                let overlap = a.end_ns.min(b.end_ns) - a.start_ns.max(b.start_ns);
                if overlap > 0 {
                    total += overlap;
                }
            }
        }
        out.insert(shard, total);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(mono: i64, node: &str, epoch: u64, kind: Kind, deadline: Option<i64>) -> Record {
        Record {
            mono_ns: mono,
            node: node.into(),
            shard: 1,
            epoch,
            kind,
            deadline_ns: deadline,
        }
    }

    #[test]
    fn crashed_owner_ends_at_its_deadline_and_overlap_is_measured() {
        let records = vec![
            rec(0, "a", 1, Kind::Acquire, Some(100)),
            rec(50, "a", 1, Kind::Renew, Some(150)),
            // a crashed: no stop. b acquires after a's deadline: no overlap.
            rec(160, "b", 2, Kind::Acquire, Some(300)),
            rec(250, "b", 2, Kind::Release, None),
        ];
        let iv = intervals(&records);
        assert_eq!(iv.len(), 2);
        assert_eq!((iv[0].start_ns, iv[0].end_ns), (0, 150));
        assert_eq!((iv[1].start_ns, iv[1].end_ns), (160, 250));
        assert_eq!(double_ownership_ns(&iv)[&1], 0);
        // c acquiring at 140 would have overlapped a by 10 ns.
        let mut bad = records.clone();
        bad.push(rec(140, "c", 3, Kind::Acquire, Some(400)));
        bad.push(rec(155, "c", 3, Kind::Lost, None));
        assert_eq!(double_ownership_ns(&intervals(&bad))[&1], 10);
    }

    #[test]
    fn journal_lines_round_trip_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.jsonl");
        let j = Journal::open(Some(&p)).unwrap();
        j.record(&rec(1, "a", 1, Kind::Acquire, Some(9)));
        j.record(&rec(2, "a", 1, Kind::Release, None));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"{\"mono_ns\":")
            .unwrap();
        let back = read(&[&p]).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].kind, Kind::Release);
        assert!(mono_ns() > 0);
    }
}
