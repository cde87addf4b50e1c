//! Micro-benchmark for `EventLog::append` on the embedded store.
//!
//! ```text
//! cargo run --release -p liveseg-store --example append_bench
//! ```
//!
//! What it does, in one process and one run:
//!
//! 1. pre-fills a fresh store with `PREFILL` events (default 2,000,000) in
//!    batches of 8192, so the log and the dedupe index are big B-trees;
//! 2. for each batch size in `BATCHES` (default `500,2048,8192`) appends
//!    `MEASURE` events (default 262,144) single-threaded, each batch one
//!    durable `append` call, and prints events/s;
//! 3. right after each store run, writes the same bytes (tenant, message id,
//!    payload of every event) through two "physical floor" peers on the same
//!    filesystem, one `sync_data` per batch:
//!    - `floor-append`: `std::fs::File` append + `sync_data` (the file grows,
//!      so every sync also commits filesystem metadata);
//!    - `floor-overwrite`: the same writes into a preallocated file, which is
//!      what a database that reuses file space pays;
//!
//!    and prints the ratio store/floor for both;
//! 4. prints the store's write amplification (bytes it passed to `write`
//!    syscalls per byte of event data: tenant + message id + payload), the
//!    peak RSS, and how long reopening the pre-filled store takes.
//!
//! Events look like ingest traffic: one tenant, random UUID-format message
//! ids (36 chars), ~350-byte JSON payloads, and `DUP_PERMILLE` (default 10,
//! i.e. 1%) of each batch re-sends an id accepted a few batches earlier, so
//! the duplicate path is exercised too.
//!
//! Environment knobs: `PREFILL`, `BATCHES`, `MEASURE`, `DUP_PERMILLE`,
//! `BENCH_DIR` (parent directory for the temporary data; default: the
//! system temp dir, which should be on the disk you care about),
//! `FLOORS=0` (skip the floor peers, e.g. when profiling),
//! `STORE_DIR` (keep the store there between runs; only the missing part
//! of `PREFILL` is appended, so a second run measures without pre-filling),
//! and the store options `CACHE_BYTES`, `DEDUPE_BUFFER`, `FILTER_BYTES`.

#![allow(clippy::unwrap_used)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use liveseg_store::{AppendItem, EmbeddedStore, EventLog, StoreOptions};

/// splitmix64: tiny, deterministic, good enough for ids and payloads.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn uuid(&mut self) -> String {
        let v = (u128::from(self.next()) << 64) | u128::from(self.next());
        let h = format!("{v:032x}");
        format!(
            "{}-{}-4{}-a{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32]
        )
    }
}

const TENANT: &str = "acme-corp";

fn payload(rng: &mut Rng, message_id: &str, ts_ms: i64) -> Vec<u8> {
    let user = rng.below(1_000_000);
    let account = rng.below(50_000);
    let plan = ["free", "starter", "growth", "enterprise"][rng.below(4) as usize];
    let seats = rng.below(500);
    format!(
        concat!(
            r#"{{"type":"track","event":"Product Used","messageId":"{}","#,
            r#""userId":"user-{:07}","timestamp":"{}","#,
            r#""properties":{{"feature":"dashboard_export","plan":"{}","seats":{},"#,
            r#""duration_ms":{}}},"context":{{"groupId":"acct-{:06}","#,
            r#""library":{{"name":"analytics-node","version":"6.2.0"}},"ip":"10.{}.{}.{}"}}}}"#
        ),
        message_id,
        user,
        ts_ms,
        plan,
        seats,
        rng.below(100_000),
        account,
        rng.below(256),
        rng.below(256),
        rng.below(256),
    )
    .into_bytes()
}

/// Remembers recently accepted ids so a batch can re-send a few of them.
struct Gen {
    rng: Rng,
    recent: Vec<String>,
    dup_permille: u64,
    now_ms: i64,
}

impl Gen {
    fn batch(&mut self, n: usize) -> Vec<AppendItem> {
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            let dup = !self.recent.is_empty() && self.rng.below(1000) < self.dup_permille;
            let message_id = if dup {
                let i = self.rng.below(self.recent.len() as u64) as usize;
                self.recent[i].clone()
            } else {
                let id = self.rng.uuid();
                if self.recent.len() < 65_536 {
                    self.recent.push(id.clone());
                } else {
                    let i = self.rng.below(self.recent.len() as u64) as usize;
                    self.recent[i] = id.clone();
                }
                id
            };
            let payload = payload(&mut self.rng, &message_id, self.now_ms);
            items.push(AppendItem {
                tenant: TENANT.to_owned(),
                message_id,
                payload,
            });
        }
        items
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user + system) of this process so far.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are
    // fields 14 and 15 (1-based) of the whole line, in clock ticks (100 Hz).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn batch_bytes(items: &[AppendItem]) -> Vec<u8> {
    let mut out = Vec::new();
    for it in items {
        out.extend_from_slice(it.tenant.as_bytes());
        out.extend_from_slice(it.message_id.as_bytes());
        out.extend_from_slice(&it.payload);
    }
    out
}

/// `std::fs::File` append + `sync_data` per batch.
fn floor_append(dir: &Path, batches: &[Vec<u8>]) -> f64 {
    let path = dir.join("floor-append.bin");
    let mut f = File::create(&path).unwrap();
    let start = Instant::now();
    for b in batches {
        f.write_all(b).unwrap();
        f.sync_data().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path).unwrap();
    secs
}

/// The same writes into a preallocated (already synced) file.
fn floor_overwrite(dir: &Path, batches: &[Vec<u8>]) -> f64 {
    let path = dir.join("floor-overwrite.bin");
    let total: usize = batches.iter().map(Vec::len).sum();
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let zeros = vec![0u8; 1 << 20];
    let mut written = 0;
    while written < total {
        let n = zeros.len().min(total - written);
        f.write_all_at(&zeros[..n], written as u64).unwrap();
        written += n;
    }
    f.sync_all().unwrap();
    let start = Instant::now();
    let mut off = 0u64;
    for b in batches {
        f.write_all_at(b, off).unwrap();
        off += b.len() as u64;
        f.sync_data().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path).unwrap();
    secs
}

fn main() {
    let prefill = env_usize("PREFILL", 2_000_000);
    let measure = env_usize("MEASURE", 262_144);
    let dup_permille = env_usize("DUP_PERMILLE", 10) as u64;
    let floors = env_usize("FLOORS", 1) != 0;
    let sizes: Vec<usize> = std::env::var("BATCHES")
        .unwrap_or_else(|_| "500,2048,8192".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|&n: &usize| n > 0)
        .collect();
    let parent = std::env::var_os("BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let tmp = tempfile::tempdir_in(&parent).unwrap();
    // STORE_DIR keeps the store between runs (e.g. pre-fill once, then
    // profile only the measured appends); otherwise it is temporary.
    let dir = std::env::var_os("STORE_DIR").map_or_else(|| tmp.path().join("store"), Into::into);

    let defaults = StoreOptions::default();
    let opts = StoreOptions {
        cache_bytes: env_usize("CACHE_BYTES", defaults.cache_bytes),
        dedupe_buffer_entries: env_usize("DEDUPE_BUFFER", defaults.dedupe_buffer_entries),
        dedupe_filter_bytes: env_usize("FILTER_BYTES", defaults.dedupe_filter_bytes),
        ..defaults
    };
    println!(
        "append_bench: prefill={prefill} measure={measure}/size dup={dup_permille}\u{2030} dir={} opts={opts:?}",
        tmp.path().display()
    );
    let store = EmbeddedStore::open(&dir, opts).unwrap();
    let existing = store.head().unwrap();
    let mut g = Gen {
        // A reused store gets fresh ids.
        rng: Rng(0x5EED_1234 ^ existing),
        recent: Vec::new(),
        dup_permille,
        now_ms: 1_760_000_000_000 + existing as i64,
    };

    // Pre-fill.
    let prefill = prefill.saturating_sub(existing as usize);
    let start = Instant::now();
    let mut done = 0usize;
    let mut last_report = Instant::now();
    while done < prefill {
        let n = 8192.min(prefill - done);
        let items = g.batch(n);
        g.now_ms += 5;
        store.append(&items, g.now_ms).unwrap();
        done += n;
        if last_report.elapsed().as_secs() >= 10 {
            last_report = Instant::now();
            println!(
                "  prefill {done}/{prefill} ({:.0} ev/s so far)",
                done as f64 / start.elapsed().as_secs_f64()
            );
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "prefill: {prefill} events in {secs:.1}s = {:.0} ev/s (batches of 8192, incl. duplicates)",
        prefill as f64 / secs.max(1e-9)
    );

    println!(
        "{:>6} {:>12} {:>10} {:>14} {:>8} {:>16} {:>8} {:>6} {:>9}",
        "batch",
        "store ev/s",
        "cpu us/ev",
        "floor-app ev/s",
        "ratio",
        "floor-ovw ev/s",
        "ratio",
        "dups",
        "write amp"
    );
    for &size in &sizes {
        let n_batches = measure.div_ceil(size).max(1);
        let batches: Vec<Vec<AppendItem>> = (0..n_batches).map(|_| g.batch(size)).collect();
        let events = n_batches * size;
        let mut dups = 0usize;
        let raw_bytes: usize = batches.iter().map(|b| batch_bytes(b).len()).sum();
        let wchar0 = io_field("wchar");
        let cpu0 = cpu_secs();
        let start = Instant::now();
        for b in &batches {
            g.now_ms += 5;
            let out = store.append(b, g.now_ms).unwrap();
            dups += out.iter().filter(|o| o.is_duplicate()).count();
        }
        let secs = start.elapsed().as_secs_f64();
        let cpu = cpu_secs() - cpu0;
        let written = io_field("wchar").saturating_sub(wchar0);
        let rate = events as f64 / secs;

        let (app, ovw) = if floors {
            let raw: Vec<Vec<u8>> = batches.iter().map(|b| batch_bytes(b)).collect();
            (
                events as f64 / floor_append(tmp.path(), &raw),
                events as f64 / floor_overwrite(tmp.path(), &raw),
            )
        } else {
            (f64::NAN, f64::NAN)
        };
        println!(
            "{size:>6} {rate:>12.0} {:>10.2} {app:>14.0} {:>8.2} {ovw:>16.0} {:>8.2} {dups:>6} {:>9.2}",
            cpu * 1e6 / events as f64,
            rate / app,
            rate / ovw,
            written as f64 / raw_bytes as f64,
        );
    }
    let head = store.head().unwrap();
    let size = std::fs::metadata(store.dir().join("liveseg.redb")).map_or(0, |m| m.len());
    println!(
        "final head={head} db file={:.0} MiB, peak RSS {} MiB (incl. the generated batches)",
        size as f64 / (1 << 20) as f64,
        status_kib("VmHWM") / 1024
    );
    // Reopen: what a restart costs (rebuilding the in-memory dedupe state).
    let opts = store.options().clone();
    drop(store);
    let start = Instant::now();
    let store = EmbeddedStore::open(&dir, opts).unwrap();
    println!(
        "reopen: {:.2}s (head {}), RSS now {} MiB",
        start.elapsed().as_secs_f64(),
        store.head().unwrap(),
        status_kib("VmRSS") / 1024
    );
}

/// A `/proc/self/io` counter (0 if unavailable); `wchar` is the bytes this
/// process passed to write-like syscalls.
fn io_field(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A `/proc/self/status` field in KiB (0 if unavailable).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
