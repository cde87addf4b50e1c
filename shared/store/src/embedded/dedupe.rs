//! The event log's dedupe index: hashed keys, the in-memory front (pending
//! keys and a membership filter) and the on-disk index (runs and base rows).
//!
//! # Keys
//!
//! A dedupe key is the first 128 bits of SHA-256 over `(tenant, message_id)`
//! (length-prefixed tenant, domain-separated; see [`dedupe_key`]). Two
//! different pairs share a key with probability 2^-128 per pair, and SHA-256
//! makes it infeasible to *construct* a pair that collides with another
//! tenant's, so a client cannot make someone else's events look like
//! duplicates. A collision would make the second event a `Duplicate` of the
//! first (it would not be written); at 2^-128 per pair, even 10^12 keys in
//! one window give a collision probability around 10^-15.
//!
//! # Where a key lives
//!
//! Every accepted log entry carries its dedupe key and acceptance time, so
//! the log itself is the durable record of every acceptance; the index is
//! derived from it and brought up to date lazily, one *bucket* at a time:
//!
//! - keys are split into [`BUCKETS`] buckets by their top bits, so a bucket
//!   is a contiguous key range;
//! - a newly accepted key goes to the in-memory [`Pending`] map of its
//!   bucket only (the log entry written in the same transaction makes it
//!   durable);
//! - each append transaction also *flushes* a few buckets, round robin: a
//!   bucket's pending keys are written, sorted, as one *run* (see [`rows`]),
//!   or every [`rows::MAX_RUNS`] flushes merged with the bucket's runs into
//!   its *base rows*; the bucket's row in
//!   [`DEDUPE_FLUSHED`](super::DEDUPE_FLUSHED) records the log head up to
//!   which the bucket's keys are in the index. The number of buckets flushed
//!   per commit is proportional to the number of events accepted, so a full
//!   round takes about `dedupe_buffer_entries` events and about that many
//!   keys are pending at any time.
//!
//! Why: inserting each key into a B-tree keyed by a random hash copies
//! (copy-on-write) about one 4 KiB leaf per event once the tree is much
//! bigger than a batch, plus a B-tree descent per key; that is what made
//! appends slow on a big store. A run costs one insert per flushed bucket
//! (~`dedupe_buffer_entries / BUCKETS` keys) and a compaction rewrites a
//! bucket's base once per `MAX_RUNS` rounds.
//!
//! After a restart the pending maps are rebuilt by scanning the log tail:
//! every entry whose seq is above its bucket's flushed mark (and not behind
//! the pruning cursor) is pending. That tail is about `dedupe_buffer_entries`
//! long. The filter is rebuilt by reading the whole index.
//!
//! Lookups check the batch itself; then, only if the [`Filter`] (which holds
//! every pending and indexed key) says the key may be known, the pending map
//! and then the index (runs newest first, then the base row).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use sha2::{Digest, Sha256};

use crate::traits::Seq;

/// Domain-separation and version tag of the hash input. One byte, so a
/// typical input (tenant id of up to 10 bytes + 36-char UUID) fits a single
/// SHA-256 block.
const DOMAIN: u8 = 0xD2;

/// The dedupe key of `(tenant, message_id)`: the first 128 bits (big endian)
/// of SHA-256(0xD2 || len(tenant) as u64 LE || tenant || message_id).
///
/// The tenant is length-prefixed, so `("a", "b:c")` and `("a:b", "c")` hash
/// different inputs; the message id is last, so it needs no prefix.
pub(crate) fn dedupe_key(tenant: &str, message_id: &str) -> u128 {
    let mut h = Sha256::new();
    h.update([DOMAIN]);
    h.update((tenant.len() as u64).to_le_bytes());
    h.update(tenant.as_bytes());
    h.update(message_id.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first)
}

/// log2 of [`BUCKETS`]. Part of the on-disk layout (the flushed marks are
/// per bucket): changing it needs a schema version bump.
pub(crate) const BUCKET_BITS: u32 = 12;
/// Number of flush buckets.
pub(crate) const BUCKETS: usize = 1 << BUCKET_BITS;

/// The bucket of a key: its top [`BUCKET_BITS`] bits, so each bucket is a
/// contiguous range of the (numerically ordered) table.
pub(crate) fn bucket_of(key: u128) -> usize {
    (key >> (128 - BUCKET_BITS)) as usize
}

/// Lowest key of bucket `b`.
pub(crate) fn bucket_start(b: usize) -> u128 {
    (b as u128) << (128 - BUCKET_BITS)
}

/// Highest key of bucket `b`.
pub(crate) fn bucket_end(b: usize) -> u128 {
    bucket_start(b) | ((1u128 << (128 - BUCKET_BITS)) - 1)
}

/// Index rows and runs.
///
/// The dedupe index does not store one B-tree entry per key. Both of its
/// tables store sorted arrays of fixed-width entries ("rows"):
///
/// - `DEDUPE_RUNS`: one *run* per flush of a bucket, keyed
///   `(bucket, slot)`, holding exactly the keys that flush moved out of
///   memory. Writing a run costs about the size of its entries; nothing
///   else is rewritten. Slots `0..n` hold the bucket's `n` live runs, oldest
///   first (`n` is kept with the bucket's flushed mark); slots past `n` are
///   stale and get overwritten later.
/// - `DEDUPE` (the *base*): per bucket, a sorted partition of older keys
///   into rows of at most `ROW_MAX_ENTRIES`. A row is keyed by the lowest
///   key of its range and covers keys up to the next row's key (or the end
///   of its bucket). Rows never span buckets, and a bucket that has any row
///   has one starting exactly at its first key, which is never deleted (it
///   may become empty).
///
/// When a bucket would reach `MAX_RUNS` runs, the flush instead merges its
/// runs and the new keys into its base rows (a *compaction*; a later copy
/// of a key wins). So a bucket's base is rewritten once per `MAX_RUNS`
/// flushes instead of on every flush. Before a bucket's first compaction
/// the threshold is staggered by bucket number, so buckets do not all
/// compact in the same round.
///
/// A key can have copies in several runs and the base; the newest run
/// holding it has its latest acceptance (then older runs, then the base).
/// So a lookup reads at most `MAX_RUNS - 1` runs plus one base row; lookups
/// are rare anyway, since the filter answers most. Pruning removes the
/// latest copy together with any older ones.
///
/// Entry encoding: `key:u128 LE, seq:u64 LE, accepted_ms:i64 LE` (32 bytes).
pub(crate) mod rows {
    use super::Acceptance;
    use crate::error::{Result, StoreError};

    /// Bytes per row entry.
    pub(crate) const ENTRY: usize = 32;
    /// A base row with more entries than this is split.
    pub(crate) const ROW_MAX_ENTRIES: usize = 128;
    /// Entries per piece when splitting (so a split row has room to grow).
    const SPLIT_TARGET: usize = ROW_MAX_ENTRIES * 3 / 4;
    /// A bucket is compacted instead of getting its `MAX_RUNS`-th run.
    pub(crate) const MAX_RUNS: u8 = 8;

    /// Number of entries, or `Corrupt` if the length is not a multiple.
    pub(crate) fn len(row: &[u8]) -> Result<usize> {
        if !row.len().is_multiple_of(ENTRY) {
            return Err(StoreError::Corrupt(format!(
                "dedupe index row of {} bytes is not a multiple of {ENTRY}",
                row.len()
            )));
        }
        Ok(row.len() / ENTRY)
    }

    /// Key of entry `i` (caller checked the length).
    pub(crate) fn key_at(row: &[u8], i: usize) -> u128 {
        let mut k = [0u8; 16];
        k.copy_from_slice(&row[i * ENTRY..i * ENTRY + 16]);
        u128::from_le_bytes(k)
    }

    fn acc_at(row: &[u8], i: usize) -> Acceptance {
        let mut seq = [0u8; 8];
        let mut ms = [0u8; 8];
        seq.copy_from_slice(&row[i * ENTRY + 16..i * ENTRY + 24]);
        ms.copy_from_slice(&row[i * ENTRY + 24..i * ENTRY + 32]);
        Acceptance {
            seq: u64::from_le_bytes(seq),
            accepted_ms: i64::from_le_bytes(ms),
        }
    }

    /// Encode sorted, distinct entries as a row.
    pub(crate) fn encode(entries: &[(u128, Acceptance)]) -> Vec<u8> {
        let mut out = Vec::with_capacity(entries.len() * ENTRY);
        for (key, acc) in entries {
            out.extend_from_slice(&key.to_le_bytes());
            out.extend_from_slice(&acc.seq.to_le_bytes());
            out.extend_from_slice(&acc.accepted_ms.to_le_bytes());
        }
        out
    }

    /// Index of `key` in a row, if present.
    fn position(row: &[u8], key: u128) -> Result<Option<usize>> {
        let n = len(row)?;
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match key_at(row, mid).cmp(&key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Some(mid)),
            }
        }
        Ok(None)
    }

    /// Binary search `key` in a row.
    pub(crate) fn find(row: &[u8], key: u128) -> Result<Option<Acceptance>> {
        Ok(position(row, key)?.map(|i| acc_at(row, i)))
    }

    /// All keys of a row, in order.
    pub(crate) fn keys(row: &[u8]) -> Result<impl Iterator<Item = u128> + '_> {
        let n = len(row)?;
        Ok((0..n).map(move |i| key_at(row, i)))
    }

    /// Merge two rows; on equal keys the entry of `new` wins (it is the
    /// later acceptance).
    pub(crate) fn merge(old: &[u8], new: &[u8]) -> Result<Vec<u8>> {
        let (n, m) = (len(old)?, len(new)?);
        let mut out = Vec::with_capacity(old.len() + new.len());
        let (mut i, mut j) = (0usize, 0usize);
        while i < n && j < m {
            let (a, b) = (key_at(old, i), key_at(new, j));
            if a < b {
                out.extend_from_slice(&old[i * ENTRY..(i + 1) * ENTRY]);
                i += 1;
            } else {
                if a == b {
                    i += 1; // replaced
                }
                out.extend_from_slice(&new[j * ENTRY..(j + 1) * ENTRY]);
                j += 1;
            }
        }
        out.extend_from_slice(&old[i * ENTRY..]);
        out.extend_from_slice(&new[j * ENTRY..]);
        Ok(out)
    }

    /// Cut a merged row that starts at `start` into rows of at most
    /// [`ROW_MAX_ENTRIES`]: `(row key, bytes)`. The first piece keeps
    /// `start`; the others are keyed by their first entry.
    pub(crate) fn split(merged: &[u8], start: u128) -> Vec<(u128, &[u8])> {
        let n = merged.len() / ENTRY;
        if n <= ROW_MAX_ENTRIES {
            return vec![(start, merged)];
        }
        let pieces = n.div_ceil(SPLIT_TARGET);
        let mut out = Vec::with_capacity(pieces);
        let mut from = 0usize;
        for p in 0..pieces {
            let to = n * (p + 1) / pieces;
            let key = if p == 0 { start } else { key_at(merged, from) };
            out.push((key, &merged[from * ENTRY..to * ENTRY]));
            from = to;
        }
        out
    }

    /// Remove `key` from `row` if its entry has `seq` (any entry for
    /// `None`); returns whether it did.
    pub(crate) fn remove(row: &mut Vec<u8>, key: u128, seq: Option<u64>) -> Result<bool> {
        match position(row, key)? {
            Some(i) if seq.is_none_or(|s| acc_at(row, i).seq == s) => {
                row.drain(i * ENTRY..(i + 1) * ENTRY);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// Hasher for keys that are already uniformly random: uses the key's low 64
/// bits as the hash. Not exposed to attacker-chosen bits, because keys are
/// SHA-256 outputs.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only reached for non-u128 keys (not used); keep it well defined.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
    }

    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A hash map keyed by dedupe keys.
pub(crate) type KeyMap<V> = HashMap<u128, V, BuildHasherDefault<KeyHasher>>;

/// A new [`KeyMap`] with room for `n` entries.
pub(crate) fn key_map<V>(n: usize) -> KeyMap<V> {
    HashMap::with_capacity_and_hasher(n, BuildHasherDefault::default())
}

/// What the store remembers about one acceptance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Acceptance {
    /// Log position.
    pub seq: Seq,
    /// `now_ms` of the append that accepted it.
    pub accepted_ms: i64,
}

/// Accepted keys not yet in the dedupe table, per bucket. Always holds the
/// LATEST acceptance of a key it contains (a re-acceptance overwrites).
#[derive(Debug)]
pub(crate) struct Pending {
    buckets: Vec<KeyMap<Acceptance>>,
    len: usize,
}

impl Pending {
    pub(crate) fn new() -> Self {
        Pending {
            buckets: (0..BUCKETS).map(|_| key_map(0)).collect(),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn bucket_len(&self, b: usize) -> usize {
        self.buckets[b].len()
    }

    pub(crate) fn get(&self, key: u128) -> Option<Acceptance> {
        self.buckets[bucket_of(key)].get(&key).copied()
    }

    pub(crate) fn insert(&mut self, key: u128, acc: Acceptance) {
        if self.buckets[bucket_of(key)].insert(key, acc).is_none() {
            self.len += 1;
        }
    }

    pub(crate) fn remove(&mut self, key: u128) {
        if self.buckets[bucket_of(key)].remove(&key).is_some() {
            self.len -= 1;
        }
    }

    /// The entries of bucket `b`, sorted by key (the table's order).
    pub(crate) fn sorted_bucket(&self, b: usize) -> Vec<(u128, Acceptance)> {
        let mut v: Vec<(u128, Acceptance)> =
            self.buckets[b].iter().map(|(k, a)| (*k, *a)).collect();
        v.sort_unstable_by_key(|(k, _)| *k);
        v
    }

    /// Forget bucket `b` (it was flushed). Keeps the map's capacity: the
    /// bucket fills up to about the same size again before its next flush.
    pub(crate) fn clear_bucket(&mut self, b: usize) {
        self.len -= self.buckets[b].len();
        self.buckets[b].clear();
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = u128> + '_ {
        self.buckets.iter().flat_map(|m| m.keys().copied())
    }
}

/// A blocked Bloom filter over every key in the dedupe table (and pending):
/// "definitely not there" lets a new key skip the table lookup, which would
/// otherwise be a random page read per event. One 64-byte block per key, 4
/// bits set in it. Deleted keys cannot be removed, so the filter is rebuilt
/// from the table when it holds many more insertions than live keys.
#[derive(Debug)]
pub(crate) struct Filter {
    blocks: Vec<[u64; 8]>,
    /// Insertions since the last (re)build, including duplicates of keys
    /// already present; drives the rebuild decision.
    inserted: u64,
    /// Deletions (by pruning) since the last (re)build.
    removed: u64,
}

impl Filter {
    /// A filter of about `bytes` bytes (rounded down to 64-byte blocks).
    /// Zero disables it: every key "may be present".
    pub(crate) fn new(bytes: usize) -> Self {
        Filter {
            blocks: vec![[0u64; 8]; bytes / 64],
            inserted: 0,
            removed: 0,
        }
    }

    /// Block index and the four bit positions (0..512) of a key. Uses key
    /// bits disjoint from the bucket bits (top 12).
    fn probe(&self, key: u128) -> Option<(usize, [u32; 4])> {
        if self.blocks.is_empty() {
            return None;
        }
        let lo = key as u64;
        let block = (((lo >> 32) * self.blocks.len() as u64) >> 32) as usize;
        let bits = lo as u32 as u64 | (((key >> 64) as u64 & 0xF) << 32);
        Some((
            block,
            [
                (bits & 511) as u32,
                ((bits >> 9) & 511) as u32,
                ((bits >> 18) & 511) as u32,
                ((bits >> 27) & 511) as u32,
            ],
        ))
    }

    pub(crate) fn insert(&mut self, key: u128) {
        if let Some((block, bits)) = self.probe(key) {
            let b = &mut self.blocks[block];
            for bit in bits {
                b[(bit >> 6) as usize] |= 1u64 << (bit & 63);
            }
            self.inserted += 1;
        }
    }

    /// False only if `key` was never inserted since the last clear.
    pub(crate) fn may_contain(&self, key: u128) -> bool {
        match self.probe(key) {
            None => true,
            Some((block, bits)) => {
                let b = &self.blocks[block];
                bits.iter()
                    .all(|&bit| b[(bit >> 6) as usize] & (1u64 << (bit & 63)) != 0)
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.blocks.iter_mut().for_each(|b| *b = [0; 8]);
        self.inserted = 0;
        self.removed = 0;
    }

    pub(crate) fn is_enabled(&self) -> bool {
        !self.blocks.is_empty()
    }

    /// Record that `n` keys were deleted from the set the filter covers.
    pub(crate) fn note_removed(&mut self, n: u64) {
        self.removed = self.removed.saturating_add(n);
    }

    /// Whether a rebuild would noticeably lower the false-positive rate:
    /// the filter is loaded (>= 1 insertion per 16 bits) and most of what
    /// was inserted has been deleted since.
    pub(crate) fn wants_rebuild(&self) -> bool {
        let bits = self.blocks.len() as u64 * 512;
        self.is_enabled()
            && self.inserted.saturating_mul(16) >= bits
            && self.removed.saturating_mul(2) > self.inserted
    }
}

/// The in-memory half of the event log's state, guarded by the store's
/// log mutex. Only ever changed after a successful commit, so it always
/// matches what is durable.
#[derive(Debug)]
pub(crate) struct LogState {
    pub pending: Pending,
    pub filter: Filter,
    /// Next bucket to flush.
    pub cursor: usize,
    /// Accepted events since the last flush, times [`BUCKETS`]; one bucket is
    /// flushed per `dedupe_buffer_entries` of credit.
    pub credit: u128,
    /// Number of runs each bucket has in the index (< [`rows::MAX_RUNS`]).
    pub runs: Vec<u8>,
    /// Whether each bucket has base rows (was compacted at least once).
    pub has_base: Vec<bool>,
}

impl LogState {
    /// Nothing pending, empty filter; `EmbeddedStore::load_log_state`
    /// fills it from disk.
    pub(crate) fn empty(opts: &super::StoreOptions) -> Self {
        LogState {
            pending: Pending::new(),
            filter: Filter::new(opts.dedupe_filter_bytes),
            cursor: 0,
            credit: 0,
            runs: vec![0; BUCKETS],
            has_base: vec![false; BUCKETS],
        }
    }
}
#[cfg(test)]
#[path = "dedupe_tests.rs"]
mod tests;
