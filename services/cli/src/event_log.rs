//! `EventLog`: the events a replay keeps, in file order, and their
//! traversal in timestamp order (ties in file order) for the engine.

use liveseg_core::Millis;
use liveseg_core::event::Event;

/// The kept events, chunk by chunk in file order.
#[derive(Debug, Default)]
pub struct EventLog {
    chunks: Vec<Vec<Event>>,
}

impl EventLog {
    /// Appends the next chunk (in file order).
    pub fn push_chunk(&mut self, events: Vec<Event>) {
        if !events.is_empty() {
            self.chunks.push(events);
        }
    }

    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Event `index` of chunk `chunk`.
    pub fn get(&self, chunk: u32, index: u32) -> Option<&Event> {
        self.chunks.get(chunk as usize)?.get(index as usize)
    }

    #[cfg(test)]
    pub fn into_chunks(self) -> Vec<Vec<Event>> {
        self.chunks
    }

    /// Every event, in file order.
    pub fn into_events(self) -> Vec<Event> {
        self.chunks.into_iter().flatten().collect()
    }

    pub fn len(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }

    /// Calls `f` on every event in timestamp order, ties in file order.
    /// Input that is already in order (the common case) is not sorted, and
    /// each chunk is freed as soon as it has been visited.
    pub fn for_each_in_time_order(self, mut f: impl FnMut(&Event)) {
        if self.chunks.iter().flatten().map(|e| e.ts).is_sorted() {
            for chunk in self.chunks {
                chunk.iter().for_each(&mut f);
            }
            return;
        }
        // (ts, chunk, index) is unique, so an unstable sort gives file order for ties.
        let mut order: Vec<(Millis, u32, u32)> = Vec::with_capacity(self.len());
        for (c, chunk) in self.chunks.iter().enumerate() {
            for (i, e) in chunk.iter().enumerate() {
                order.push((e.ts, c as u32, i as u32));
            }
        }
        order.sort_unstable();
        for (_, c, i) in order {
            f(&self.chunks[c as usize][i as usize]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use liveseg_core::event::{Limits, parse_message};

    fn event(id: &str, ts: Millis) -> Event {
        let v = serde_json::json!({
            "type": "track", "event": "Meeting Booked", "userId": "u1",
            "messageId": id, "timestamp": "2026-01-01T00:00:00Z"
        });
        let mut e = parse_message(&v, Millis::MAX / 2, &Limits::default()).expect("valid");
        e.ts = ts;
        e
    }

    #[test]
    fn out_of_order_events_are_visited_by_time_then_file_order() {
        let log = EventLog {
            chunks: vec![
                vec![event("a", 30), event("b", 10)],
                vec![event("c", 30), event("d", 10), event("e", 20)],
            ],
        };
        let mut seen = Vec::new();
        log.for_each_in_time_order(|e| seen.push(e.message_id.clone()));
        assert_eq!(seen, ["b", "d", "e", "a", "c"]);
    }
}
