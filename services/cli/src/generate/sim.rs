//! The day-by-day scheduler: walks simulated days over every account and
//! contact, keeps generated events in a min-heap, and hands the sink every
//! event that nothing generated later can precede.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;

use rand::rngs::StdRng;

use super::clock::{Clock, HOUR_MS, SYNC_MS};
use super::event::{Body, CONTEXT_GROUP_SHARE, Ctx, Ev, Pending};
use super::random::{between, chance, lognormal};
use super::sink::Sink;
use super::world::{Change, World};

/// The simulation state: the world, the one seeded RNG every draw comes
/// from, and the events generated but not yet written.
pub(super) struct Sim {
    pub(super) world: World,
    pub(super) rng: StdRng,
    pub(super) clock: Clock,
    heap: BinaryHeap<Reverse<Pending>>,
    /// Generation order of the next event: breaks timestamp ties.
    seq: u64,
    /// Sends so far; numbers each send.
    emails: u64,
    /// Configured sends per contact per day.
    pub(super) send_rate_scale: f64,
}

impl Sim {
    pub(super) fn new(world: World, rng: StdRng, clock: Clock, sends_per_week: f64) -> Self {
        Self {
            world,
            rng,
            clock,
            heap: BinaryHeap::new(),
            seq: 0,
            emails: 0,
            send_rate_scale: sends_per_week / 7.0,
        }
    }

    pub(super) fn simulate_day(&mut self, day: u32) {
        for a in 0..self.world.accounts.len() {
            self.account_day(a, day);
        }
        for c in 0..self.world.contacts.len() {
            self.contact_day(c, day);
        }
    }

    /// Writes every pending event strictly before `horizon`, in order.
    pub(super) fn flush_before(&mut self, horizon: i64, sink: &mut Sink<'_>) -> io::Result<()> {
        while self.heap.peek().is_some_and(|Reverse(p)| p.ts < horizon) {
            if let Some(Reverse(p)) = self.heap.pop() {
                sink.write(&self.world, &p)?;
            }
        }
        Ok(())
    }

    /// Schedules an event; anything after the end of history is dropped here
    /// so it never occupies memory.
    pub(super) fn push(&mut self, ts: i64, ev: Ev) {
        if ts > self.clock.end {
            return;
        }
        let seq = self.seq;
        self.seq += 1;
        self.heap.push(Reverse(Pending { ts, seq, ev }));
    }

    pub(super) fn push_contact(&mut self, ts: i64, c: usize, body: Body) {
        let ctx = if chance(&mut self.rng, CONTEXT_GROUP_SHARE) {
            Ctx::Contact
        } else {
            Ctx::None
        };
        self.push(ts, Ev::contact(c, ctx, body));
    }

    /// A random instant in `[from_h, to_h)` hours of `day`, or `None` if it
    /// falls before organic activity starts or after the end of history.
    pub(super) fn slot(&mut self, day: u32, from_h: i64, to_h: i64) -> Option<i64> {
        let lo = self.clock.day_start(day) + from_h * HOUR_MS;
        let ts = between(&mut self.rng, lo, lo + (to_h - from_h) * HOUR_MS - 1);
        (ts >= self.clock.start + SYNC_MS && ts <= self.clock.end).then_some(ts)
    }

    /// Activity multiplier (1 = normal) for weekday rhythm.
    pub(super) fn weekday_factor(&self, day: u32, weekend: f64) -> f64 {
        if self.clock.is_weekend(day) {
            weekend
        } else {
            (7.0 - 2.0 * weekend) / 5.0
        }
    }

    pub(super) fn delay(&mut self, median_ms: f64, sigma: f64, min_ms: i64, max_ms: i64) -> i64 {
        (lognormal(&mut self.rng, median_ms, sigma) as i64).clamp(min_ms, max_ms)
    }

    pub(super) fn next_email(&mut self) -> u64 {
        self.emails += 1;
        self.emails
    }
}

// The daily step of each account and contact. Which behaviours run, and in
// which order, fixes the order of random draws and so the output bytes.
impl Sim {
    fn account_day(&mut self, a: usize, day: u32) {
        if day == 0 {
            let ts = self.clock.start + between(&mut self.rng, 1, SYNC_MS / 2 - 1);
            self.push_account_group(a, ts);
        }
        if let Some((d, change)) = self.world.accounts[a].change
            && d == day
        {
            let traits = &mut self.world.accounts[a].traits;
            match change {
                Change::Tier(t) => traits.tier = t,
                Change::Target(t) => traits.target = t,
                Change::Stage(s) => traits.stage = s,
            }
            if let Some(ts) = self.slot(day, 8, 9) {
                self.push_account_group(a, ts);
            }
        }
        self.anonymous_visit(a, day);
        self.third_party_intent(a, day);
    }

    fn contact_day(&mut self, c: usize, day: u32) {
        if day < self.world.contacts[c].start_day {
            return;
        }
        if self.world.contacts[c].stage.is_none() && !self.onboard(c, day) {
            return;
        }
        if let Some((d, to)) = self.world.contacts[c].move_plan
            && d == day
        {
            self.change_job(c, day, to);
        }
        self.sync_stage(c, day);
        let activity = self.activity(c, day);
        self.maybe_send(c, day, activity);
        self.maybe_browse(c, day, activity);
        self.maybe_use_product(c, day, activity);
        self.maybe_convert(c, day, activity);
    }

    /// Engagement multiplier: personal decay and the account going cold.
    fn activity(&self, c: usize, day: u32) -> f64 {
        let ct = &self.world.contacts[c];
        let acct = &self.world.accounts[ct.account as usize];
        let personal = if day >= ct.decay_from { 0.03 } else { 1.0 };
        personal * if day >= acct.cold_from { 0.01 } else { 1.0 }
    }
}

#[cfg(test)]
mod tests {
    use crate::generate::clock::DAY_MS;
    use crate::generate::test_support::{ms, parse, run, small};

    #[test]
    fn output_is_time_sorted_within_history_with_ms_precision() {
        let cfg = small();
        let (out, _) = run(&cfg);
        let events = parse(&out);
        let end = cfg.end.timestamp_millis();
        let start = end - i64::from(cfg.days) * DAY_MS;
        let mut last = i64::MIN;
        for e in &events {
            let s = e["timestamp"].as_str().expect("timestamp");
            assert_eq!(s.len(), 24, "millisecond UTC timestamp: {s}");
            assert!(s.ends_with('Z'), "UTC: {s}");
            let t = ms(e);
            assert!(t >= last, "not sorted at {s}");
            assert!(t > start && t <= end, "outside history: {s}");
            last = t;
        }
    }
}
