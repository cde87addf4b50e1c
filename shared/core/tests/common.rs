//! Builders shared by the core's integration tests.
#![allow(dead_code)]

use liveseg_core::event::{Limits, parse_message};
use liveseg_core::time::{DAY, Millis, format_rfc3339};
use liveseg_core::{Change, Engine, Event, SegmentSet};
use serde_json::{Value, json};

/// 2026-01-01T00:00:00Z
pub const T0: Millis = 1_767_225_600_000;

pub fn at(days: f64) -> Millis {
    T0 + (days * DAY as f64) as Millis
}

pub struct Script {
    pub events: Vec<Event>,
    n: u64,
}

impl Default for Script {
    fn default() -> Self {
        Self::new()
    }
}

impl Script {
    pub fn new() -> Self {
        Script {
            events: Vec::new(),
            n: 0,
        }
    }

    pub fn push(&mut self, mut v: Value, ts: Millis) -> &mut Self {
        self.n += 1;
        v["messageId"] = json!(format!("m{}", self.n));
        v["timestamp"] = json!(format_rfc3339(ts));
        match parse_message(&v, Millis::MAX / 2, &Limits::default()) {
            Ok(e) => self.events.push(e),
            Err(err) => panic!("bad test event {v}: {err}"),
        }
        self
    }

    pub fn group(
        &mut self,
        user: Option<&str>,
        account: &str,
        traits: Value,
        ts: Millis,
    ) -> &mut Self {
        let mut v = json!({"type":"group","groupId":account,"traits":traits});
        match user {
            Some(u) => v["userId"] = json!(u),
            None => v["anonymousId"] = json!("anon"),
        }
        self.push(v, ts)
    }

    pub fn track(
        &mut self,
        user: &str,
        account: Option<&str>,
        event: &str,
        props: Value,
        ts: Millis,
    ) -> &mut Self {
        let mut v = json!({"type":"track","userId":user,"event":event,"properties":props});
        if let Some(a) = account {
            v["context"] = json!({"groupId": a});
        }
        self.push(v, ts)
    }

    pub fn page(
        &mut self,
        user: Option<&str>,
        account: Option<&str>,
        path: &str,
        ts: Millis,
    ) -> &mut Self {
        let mut v = json!({"type":"page","properties":{"path":path}});
        match user {
            Some(u) => v["userId"] = json!(u),
            None => v["anonymousId"] = json!("anon"),
        }
        if let Some(a) = account {
            v["context"] = json!({"groupId": a});
        }
        self.push(v, ts)
    }
}

/// Replays events in time order with the clock at each event, then to `until`.
pub fn replay(set: &SegmentSet, events: &[Event], until: Millis) -> (Engine, Vec<Change>) {
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| e.ts);
    let mut engine = Engine::new(set.clone());
    let mut out = Vec::new();
    for e in sorted {
        engine.apply(e, e.ts, &mut out);
    }
    engine.advance_all(until, &mut out);
    (engine, out)
}

pub fn presets() -> SegmentSet {
    match SegmentSet::compile(&liveseg_core::presets::presets()) {
        Ok(s) => s,
        Err(e) => panic!("presets: {e:?}"),
    }
}

/// Instants at which `id` entered/exited `segment`, in order.
pub fn flips(changes: &[Change], segment: &str, id: &str) -> Vec<(String, Millis)> {
    changes
        .iter()
        .filter(|c| c.segment == segment && c.id == id)
        .map(|c| (c.kind.as_str().to_string(), c.instant))
        .collect()
}
