//! Log chunks: several consecutive log entries stored as one redb row.
//!
//! The log table maps the seq of a chunk's first entry to the encoded
//! chunk; entry `i` of a chunk has seq `first + i`. All entries of a chunk
//! come from the same `append` call, so they share one acceptance time.
//! Storing one row per event made every append pay a B-tree insert per event
//! and left the log's leaves half empty (right-edge splits); a chunk costs
//! one insert per [`CHUNK_BYTES`] or so and packs pages fully.
//!
//! Encoding (all integers little endian):
//!
//! ```text
//! chunk := version:u8 (=1) accepted_ms:i64 count:u32 entry*count
//! entry := dedupe_key:u128 tenant_len:u32 payload_len:u32 tenant payload
//! ```

use crate::error::{Result, StoreError};

/// Chunk format version byte.
const VERSION: u8 = 1;
/// Header: version, accepted_ms, count.
const HEADER: usize = 1 + 8 + 4;
/// Fixed part of an entry: key, tenant_len, payload_len.
const ENTRY_FIXED: usize = 16 + 4 + 4;

/// A chunk is closed once its encoding reaches this size (a single large
/// entry still makes a chunk of its own).
pub(crate) const CHUNK_BYTES: usize = 32 * 1024;

/// Builds one chunk.
#[derive(Debug)]
pub(crate) struct ChunkBuilder {
    buf: Vec<u8>,
    count: u32,
}

impl ChunkBuilder {
    pub(crate) fn new(accepted_ms: i64) -> Self {
        let mut buf = Vec::with_capacity(CHUNK_BYTES + 4096);
        buf.push(VERSION);
        buf.extend_from_slice(&accepted_ms.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        ChunkBuilder { buf, count: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub(crate) fn is_full(&self) -> bool {
        self.buf.len() >= CHUNK_BYTES
    }

    /// Add an entry. Errors only if a length does not fit the format.
    pub(crate) fn push(&mut self, key: u128, tenant: &str, payload: &[u8]) -> Result<()> {
        let too_big = |what: &str, n: usize| {
            StoreError::InvalidInput(format!("{what} of {n} bytes is too large for the log"))
        };
        let tenant_len = u32::try_from(tenant.len()).map_err(|_| too_big("tenant", tenant.len()))?;
        let payload_len =
            u32::try_from(payload.len()).map_err(|_| too_big("payload", payload.len()))?;
        self.buf.reserve(ENTRY_FIXED + tenant.len() + payload.len());
        self.buf.extend_from_slice(&key.to_le_bytes());
        self.buf.extend_from_slice(&tenant_len.to_le_bytes());
        self.buf.extend_from_slice(&payload_len.to_le_bytes());
        self.buf.extend_from_slice(tenant.as_bytes());
        self.buf.extend_from_slice(payload);
        self.count += 1;
        Ok(())
    }

    /// The encoded chunk (the builder can be [`reset`](Self::reset) after).
    pub(crate) fn finish(&mut self) -> &[u8] {
        self.buf[9..13].copy_from_slice(&self.count.to_le_bytes());
        &self.buf
    }

    /// Start a new chunk with the same acceptance time, reusing the buffer.
    pub(crate) fn reset(&mut self) {
        self.buf.truncate(HEADER);
        self.count = 0;
    }
}

/// One decoded entry, borrowing from the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkEntry<'a> {
    pub key: u128,
    pub tenant: &'a str,
    pub payload: &'a [u8],
}

/// A decoded chunk header plus an iterator over its entries.
#[derive(Debug, Clone)]
pub(crate) struct Chunk<'a> {
    pub accepted_ms: i64,
    pub count: u32,
    rest: &'a [u8],
    left: u32,
}

fn corrupt(first_seq: u64, what: &str) -> StoreError {
    StoreError::Corrupt(format!("log chunk at seq {first_seq}: {what}"))
}

fn take<'a>(buf: &mut &'a [u8], n: usize, first_seq: u64) -> Result<&'a [u8]> {
    if buf.len() < n {
        return Err(corrupt(first_seq, "truncated"));
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

fn le<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[..N]);
    out
}

impl<'a> Chunk<'a> {
    /// Parse the header of the chunk stored at `first_seq`.
    pub(crate) fn parse(data: &'a [u8], first_seq: u64) -> Result<Self> {
        let mut rest = data;
        let header = take(&mut rest, HEADER, first_seq)?;
        if header[0] != VERSION {
            return Err(corrupt(first_seq, "unknown chunk version"));
        }
        let accepted_ms = i64::from_le_bytes(le(&header[1..9]));
        let count = u32::from_le_bytes(le(&header[9..13]));
        if count == 0 {
            return Err(corrupt(first_seq, "empty chunk"));
        }
        Ok(Chunk {
            accepted_ms,
            count,
            rest,
            left: count,
        })
    }

    /// The next entry, `None` after the last. `first_seq` is only used in
    /// error messages.
    pub(crate) fn next_entry(&mut self, first_seq: u64) -> Result<Option<ChunkEntry<'a>>> {
        if self.left == 0 {
            if !self.rest.is_empty() {
                return Err(corrupt(first_seq, "trailing bytes"));
            }
            return Ok(None);
        }
        let fixed = take(&mut self.rest, ENTRY_FIXED, first_seq)?;
        let key = u128::from_le_bytes(le(&fixed[0..16]));
        let tenant_len = u32::from_le_bytes(le(&fixed[16..20])) as usize;
        let payload_len = u32::from_le_bytes(le(&fixed[20..24])) as usize;
        let tenant = take(&mut self.rest, tenant_len, first_seq)?;
        let tenant =
            std::str::from_utf8(tenant).map_err(|_| corrupt(first_seq, "tenant is not UTF-8"))?;
        let payload = take(&mut self.rest, payload_len, first_seq)?;
        self.left -= 1;
        Ok(Some(ChunkEntry {
            key,
            tenant,
            payload,
        }))
    }

    /// Skip `n` entries (without validating their tenant strings).
    pub(crate) fn skip(&mut self, n: u32, first_seq: u64) -> Result<()> {
        for _ in 0..n.min(self.left) {
            let fixed = take(&mut self.rest, ENTRY_FIXED, first_seq)?;
            let tenant_len = u32::from_le_bytes(le(&fixed[16..20])) as usize;
            let payload_len = u32::from_le_bytes(le(&fixed[20..24])) as usize;
            take(&mut self.rest, tenant_len + payload_len, first_seq)?;
            self.left -= 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn round_trip_and_skip() {
        let mut b = ChunkBuilder::new(-42);
        assert!(b.is_empty());
        b.push(1, "t1", b"one").unwrap();
        b.push(u128::MAX, "", b"").unwrap();
        b.push(3, "t\u{e9}", &[0u8; 100]).unwrap();
        let data = b.finish().to_vec();
        let mut c = Chunk::parse(&data, 7).unwrap();
        assert_eq!((c.accepted_ms, c.count), (-42, 3));
        let e = c.next_entry(7).unwrap().unwrap();
        assert_eq!((e.key, e.tenant, e.payload), (1, "t1", &b"one"[..]));
        let e = c.next_entry(7).unwrap().unwrap();
        assert_eq!((e.key, e.tenant, e.payload), (u128::MAX, "", &b""[..]));
        let e = c.next_entry(7).unwrap().unwrap();
        assert_eq!((e.tenant, e.payload.len()), ("t\u{e9}", 100));
        assert_eq!(c.next_entry(7).unwrap(), None);

        let mut c = Chunk::parse(&data, 7).unwrap();
        c.skip(2, 7).unwrap();
        assert_eq!(c.next_entry(7).unwrap().unwrap().key, 3);

        // reset keeps the time and drops the entries
        b.reset();
        b.push(9, "x", b"y").unwrap();
        let data = b.finish().to_vec();
        let mut c = Chunk::parse(&data, 1).unwrap();
        assert_eq!((c.accepted_ms, c.count), (-42, 1));
        assert_eq!(c.next_entry(1).unwrap().unwrap().key, 9);
    }

    #[test]
    fn corrupt_chunks_are_errors_not_panics() {
        let mut b = ChunkBuilder::new(5);
        b.push(1, "tenant", b"payload").unwrap();
        let data = b.finish().to_vec();
        for cut in 0..data.len() {
            let r = Chunk::parse(&data[..cut], 1).and_then(|mut c| {
                while c.next_entry(1)?.is_some() {}
                Ok(())
            });
            assert!(matches!(r, Err(StoreError::Corrupt(_))), "cut at {cut}");
        }
        let mut bad = data.clone();
        bad[0] = 99;
        assert!(Chunk::parse(&bad, 1).is_err());
        let mut trailing = data.clone();
        trailing.push(0);
        let mut c = Chunk::parse(&trailing, 1).unwrap();
        c.next_entry(1).unwrap();
        assert!(c.next_entry(1).is_err());
        let mut bad_utf8 = data;
        bad_utf8[HEADER + ENTRY_FIXED] = 0xFF;
        let mut c = Chunk::parse(&bad_utf8, 1).unwrap();
        assert!(c.next_entry(1).is_err());
    }
}
