//! Log chunks: several consecutive log entries stored as one redb row.
//!
//! The log table maps the seq of a chunk's first entry to the encoded
//! chunk; entry `i` of a chunk has seq `first + i`. All entries of a chunk
//! come from the same `append` call, so they share one acceptance time.
//! Storing one row per event made every append pay a B-tree insert per event
//! and left the log's leaves half empty (right-edge splits); a chunk costs
//! one insert per [`CHUNK_BYTES`] or so and packs pages fully.
//!
//! Encoding (fixed-width integers little endian, lengths as LEB128
//! varints so no length is ever too large and small ones cost one byte):
//!
//! ```text
//! chunk := version:u8 (=1) accepted_ms:i64 count:u32 entry*count
//! entry := dedupe_key:u128 tenant_len:varint payload_len:varint tenant payload
//! ```

use crate::error::{Result, StoreError};

/// Chunk format version byte.
const VERSION: u8 = 1;
/// Header: version, accepted_ms, count.
const HEADER: usize = 1 + 8 + 4;
/// Upper bound of an entry's size besides tenant and payload: key and two
/// varints of at most 10 bytes.
const ENTRY_OVERHEAD_MAX: usize = 16 + 10 + 10;

/// Chunks are kept at or below this size (a single larger entry makes a
/// chunk of its own). A little under a power of two, so a chunk plus redb's
/// page header fits a 64 KiB page instead of spilling into a 128 KiB one.
/// Measured: 64 KiB chunks beat 8, 16 and 32 KiB ones and were no worse
/// than 128 or 256 KiB, which would make small `read_after` calls read more.
pub(crate) const CHUNK_BYTES: usize = 64 * 1024 - 256;

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Builds one chunk.
#[derive(Debug)]
pub(crate) struct ChunkBuilder {
    buf: Vec<u8>,
    count: u32,
}

impl ChunkBuilder {
    pub(crate) fn new(accepted_ms: i64) -> Self {
        let mut buf = Vec::with_capacity(CHUNK_BYTES);
        buf.push(VERSION);
        buf.extend_from_slice(&accepted_ms.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        ChunkBuilder { buf, count: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether adding an entry with this tenant and payload could take a
    /// non-empty chunk over [`CHUNK_BYTES`] (or its count over `u32`).
    pub(crate) fn would_overflow(&self, tenant: &str, payload: &[u8]) -> bool {
        self.count > 0
            && (self.buf.len() + ENTRY_OVERHEAD_MAX + tenant.len() + payload.len() > CHUNK_BYTES
                || self.count == u32::MAX)
    }

    /// Add an entry (call [`would_overflow`](Self::would_overflow) first).
    pub(crate) fn push(&mut self, key: u128, tenant: &str, payload: &[u8]) {
        self.buf
            .reserve(ENTRY_OVERHEAD_MAX + tenant.len() + payload.len());
        self.buf.extend_from_slice(&key.to_le_bytes());
        put_varint(&mut self.buf, tenant.len() as u64);
        put_varint(&mut self.buf, payload.len() as u64);
        self.buf.extend_from_slice(tenant.as_bytes());
        self.buf.extend_from_slice(payload);
        self.count += 1;
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

fn varint(buf: &mut &[u8], first_seq: u64) -> Result<usize> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = take(buf, 1, first_seq)?[0];
        v |= u64::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            return usize::try_from(v).map_err(|_| corrupt(first_seq, "length overflow"));
        }
    }
    Err(corrupt(first_seq, "bad varint"))
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
        let key = u128::from_le_bytes(le(take(&mut self.rest, 16, first_seq)?));
        let tenant_len = varint(&mut self.rest, first_seq)?;
        let payload_len = varint(&mut self.rest, first_seq)?;
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
            take(&mut self.rest, 16, first_seq)?;
            let tenant_len = varint(&mut self.rest, first_seq)?;
            let payload_len = varint(&mut self.rest, first_seq)?;
            take(&mut self.rest, tenant_len, first_seq)?;
            take(&mut self.rest, payload_len, first_seq)?;
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
        b.push(1, "t1", b"one");
        b.push(u128::MAX, "", b"");
        b.push(3, "t\u{e9}", &[7u8; 300]);
        let data = b.finish().to_vec();
        let mut c = Chunk::parse(&data, 7).unwrap();
        assert_eq!((c.accepted_ms, c.count), (-42, 3));
        let e = c.next_entry(7).unwrap().unwrap();
        assert_eq!((e.key, e.tenant, e.payload), (1, "t1", &b"one"[..]));
        let e = c.next_entry(7).unwrap().unwrap();
        assert_eq!((e.key, e.tenant, e.payload), (u128::MAX, "", &b""[..]));
        let e = c.next_entry(7).unwrap().unwrap();
        assert_eq!((e.tenant, e.payload), ("t\u{e9}", &[7u8; 300][..]));
        assert_eq!(c.next_entry(7).unwrap(), None);

        let mut c = Chunk::parse(&data, 7).unwrap();
        c.skip(2, 7).unwrap();
        assert_eq!(c.next_entry(7).unwrap().unwrap().key, 3);

        // reset keeps the time and drops the entries
        b.reset();
        b.push(9, "x", b"y");
        let data = b.finish().to_vec();
        let mut c = Chunk::parse(&data, 1).unwrap();
        assert_eq!((c.accepted_ms, c.count), (-42, 1));
        assert_eq!(c.next_entry(1).unwrap().unwrap().key, 9);
    }

    #[test]
    fn corrupt_chunks_are_errors_not_panics() {
        let mut b = ChunkBuilder::new(5);
        b.push(1, "tenant", b"payload");
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
        bad_utf8[HEADER + 16 + 2] = 0xFF; // first tenant byte
        let mut c = Chunk::parse(&bad_utf8, 1).unwrap();
        assert!(c.next_entry(1).is_err());
        // A length varint that never ends.
        let mut endless = ChunkBuilder::new(0);
        endless.push(1, "", b"");
        let mut data = endless.finish().to_vec();
        data.truncate(HEADER + 16);
        data.extend_from_slice(&[0xFF; 11]);
        let mut c = Chunk::parse(&data, 1).unwrap();
        assert!(matches!(c.next_entry(1), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn varints_round_trip_and_chunks_stay_bounded() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX) + 1,
        ] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            let mut slice = &buf[..];
            assert_eq!(varint(&mut slice, 0).unwrap() as u64, v);
            assert!(slice.is_empty());
        }
        let mut b = ChunkBuilder::new(1);
        let payload = vec![1u8; 1000];
        let mut n = 0;
        while !b.would_overflow("tenant", &payload) {
            b.push(n, "tenant", &payload);
            n += 1;
        }
        assert!(n > 1);
        assert!(b.finish().len() <= CHUNK_BYTES);
        // A single oversized entry still goes into an empty chunk.
        let mut b = ChunkBuilder::new(1);
        let big = vec![2u8; CHUNK_BYTES * 2];
        assert!(!b.would_overflow("t", &big));
        b.push(5, "t", &big);
        let data = b.finish().to_vec();
        let mut c = Chunk::parse(&data, 9).unwrap();
        assert_eq!(c.next_entry(9).unwrap().unwrap().payload.len(), big.len());
    }
}
