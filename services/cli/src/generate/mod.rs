//! `liveseg generate`: a deterministic, realistic synthetic B2B workload.
//!
//! Why it exists: the engine's interesting behaviour (time-window exits,
//! last-N-sends, account-plus-contact rules, job moves) only shows up on a
//! history that has the shape of a real B2B email programme. Benchmarks,
//! replays and end-to-end tests need such a history at any size, byte-identical
//! for a given seed, without shipping customer data.
//!
//! Shape of the output: Segment-Spec JSON lines (`group`, `identify`, `track`,
//! `page`), globally sorted by timestamp, ties broken by generation order.
//! Behaviour is driven by latent variables per account (tier, fit, interest,
//! in-market surge, going cold) and per contact (persona, open/click/web
//! propensities, decay), so every starter segment of DESIGN.md §4 has members.
//!
//! How it streams: time advances one UTC day at a time across all accounts.
//! Each simulated day pushes events into a min-heap; an event is never
//! scheduled before the start of the day that produced it, so once a day is
//! simulated every pending event before the next day is final and is written
//! out. Memory is the world state plus a few days of pending events.
//!
//! Where things live:
//!
//! - `config`: `GenerateConfig`, `GenerateStats` and config validation;
//!   `clock`: the UTC day grid and time units;
//! - `random`: the seeded draws (their call order is part of the output)
//!   and the `mix64` hash behind every id;
//! - `vocabulary` (names, titles, subjects, topics, assets) and `site` (the
//!   vendor's pages and where visitors and links go): the fixed tables;
//! - `world` (latent account and contact state) and `population` (building
//!   it, including planned CRM changes and job moves);
//! - `event`: the compact events waiting in the scheduler;
//! - `sim`: the day-by-day scheduler and its heap; the behaviour it drives
//!   is split by what it produces: `crm_sync` (account traits, contact
//!   placement, identifies, job moves), `email` (sends and their outcomes),
//!   `web_intent` (visits, browsing, first- and third-party intent) and
//!   `product_and_conversions` (product usage, meetings, webinars, assets);
//! - `sink` (ids, timestamps, buffering, stats), `render` (event -> message)
//!   and `message` (the JSON shape): writing the output.
//!
//! Tests sit in the module whose behaviour they check; `test_support` runs
//! the generator and parses its lines, and `starter_segments_tests` checks
//! the whole model against a reference evaluation of the starter segments.

mod clock;
mod config;
mod crm_sync;
mod email;
mod event;
mod message;
mod population;
mod product_and_conversions;
mod random;
mod render;
mod sim;
mod sink;
mod site;
#[cfg(test)]
mod starter_segments_tests;
#[cfg(test)]
mod test_support;
mod vocabulary;
mod web_intent;
mod world;

use std::io::{self, Write};

use rand::SeedableRng;
use rand::rngs::StdRng;

pub use config::{GenerateConfig, GenerateStats};

use clock::Clock;
use sim::Sim;
use sink::Sink;
use world::World;

/// Writes the workload described by `cfg` to `out` as JSON lines and flushes
/// it. Fails with `InvalidInput` on a config that cannot describe a history,
/// and with the writer's error if writing fails.
pub fn generate(cfg: &GenerateConfig, out: &mut dyn Write) -> io::Result<GenerateStats> {
    let clock = Clock::new(cfg)?;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let world = World::build(cfg, &clock, &mut rng);
    let mut sink = Sink::new(out, cfg.seed, &clock);
    let mut sim = Sim::new(world, rng, clock, cfg.sends_per_week);
    for day in 0..sim.clock.days {
        sim.simulate_day(day);
        let horizon = sim.clock.day_start(day + 1);
        sim.flush_before(horizon, &mut sink)?;
    }
    sim.flush_before(i64::MAX, &mut sink)?;
    let mut stats = sink.finish()?;
    stats.accounts = sim.world.accounts.len() as u64;
    stats.contacts = sim.world.contacts.len() as u64;
    Ok(stats)
}
