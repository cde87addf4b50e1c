//! Exact "have we seen this messageId" for replay's dedupe, fed with hashes
//! computed on the parsing threads so the single collecting thread does one
//! table lookup per event and never copies an id it keeps.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A hasher for keys that already are hashes.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Message ids by hash. Each entry remembers where the first id with that
/// hash is stored (`L`, resolved by the caller), so a hash match is
/// confirmed by comparing ids; ids whose hash matched a different id
/// (vanishingly rare with 64-bit hashes) go to a plain set instead.
pub struct SeenIds<L> {
    first: HashMap<u64, L, BuildHasherDefault<Prehashed>>,
    collided: HashSet<String>,
}

impl<L> Default for SeenIds<L> {
    fn default() -> Self {
        SeenIds {
            first: HashMap::default(),
            collided: HashSet::new(),
        }
    }
}

impl<L: Copy> SeenIds<L> {
    /// Records `id` (whose hash is `hash`, stored at `at`); true when it was
    /// not seen before. `id_at` returns the id stored at an earlier location.
    pub fn insert<'a>(
        &mut self,
        hash: u64,
        id: &str,
        at: L,
        id_at: impl FnOnce(L) -> &'a str,
    ) -> bool {
        match self.first.entry(hash) {
            Entry::Vacant(slot) => {
                slot.insert(at);
                true
            }
            Entry::Occupied(slot) => {
                id_at(*slot.get()) != id && self.collided.insert(id.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colliding_hashes_still_tell_ids_apart() {
        let ids = ["a", "b", "a", "c", "b", "c", "d"];
        let mut seen = SeenIds::default();
        // Every id gets the same hash: every decision needs a comparison.
        let first: Vec<bool> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| seen.insert(7, id, i, |j| ids[j]))
            .collect();
        assert_eq!(first, [true, true, false, true, false, false, true]);
        let mut seen = SeenIds::default();
        assert!(seen.insert(1, "x", 0, |_| "x"));
        assert!(!seen.insert(1, "x", 1, |_| "x"));
        assert!(seen.insert(2, "y", 2, |_| "x"));
    }
}
