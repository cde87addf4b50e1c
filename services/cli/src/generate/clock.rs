//! Simulated time: the day grid the scheduler walks, and the time units
//! every behaviour module schedules with.

use std::io;

use chrono::DateTime;

use super::GenerateConfig;
use super::config::invalid;

pub(super) const SECOND_MS: i64 = 1_000;
pub(super) const MINUTE_MS: i64 = 60 * SECOND_MS;
pub(super) const HOUR_MS: i64 = 60 * MINUTE_MS;
pub(super) const DAY_MS: i64 = 24 * HOUR_MS;
/// The initial CRM sync happens in the first hour of history; organic
/// activity starts after it so every contact is placed before it acts.
pub(super) const SYNC_MS: i64 = HOUR_MS;

/// Simulated days are aligned to UTC midnight so times of day look real
/// (sends in business hours, feeds at dawn) even when `end` is not midnight.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    /// `end - days`: history is `(start, end]`.
    pub(super) start: i64,
    /// Last instant of history.
    pub(super) end: i64,
    /// UTC midnight at or before `start`: the start of day 0.
    base: i64,
    pub(super) days: u32,
    /// Weekday of day 0, Monday = 0.
    weekday0: u32,
}

impl Clock {
    /// Validates `cfg` first, so a clock always describes a non-empty
    /// history inside the representable range.
    pub(super) fn new(cfg: &GenerateConfig) -> io::Result<Self> {
        cfg.validate()?;
        let end = cfg.end.timestamp_millis();
        let start = end - i64::from(cfg.days) * DAY_MS;
        if DateTime::from_timestamp_millis(start).is_none() {
            return Err(invalid("history starts before the representable range"));
        }
        let base = start.div_euclid(DAY_MS) * DAY_MS;
        let days = u32::try_from((end - base + DAY_MS - 1) / DAY_MS)
            .map_err(|_| invalid("history too long"))?
            .max(1);
        // 1970-01-01 was a Thursday (Monday = 0).
        let weekday0 = u32::try_from((base.div_euclid(DAY_MS) + 3).rem_euclid(7)).unwrap_or(0);
        Ok(Self {
            start,
            end,
            base,
            days,
            weekday0,
        })
    }

    pub(super) fn day_start(&self, day: u32) -> i64 {
        self.base + i64::from(day) * DAY_MS
    }

    pub(super) fn is_weekend(&self, day: u32) -> bool {
        (self.weekday0 + day) % 7 >= 5
    }

    /// The simulated day containing `end - days_before_end` days, clamped.
    pub(super) fn day_before_end(&self, days_before_end: u32) -> u32 {
        let ms = self.end - i64::from(days_before_end) * DAY_MS;
        let day = (ms - self.base).div_euclid(DAY_MS);
        u32::try_from(day.clamp(0, i64::from(self.days - 1))).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use crate::generate::GenerateConfig;
    use crate::generate::test_support::{ms, parse, run, str_at};

    #[test]
    fn end_need_not_be_midnight() {
        let end = Utc
            .with_ymd_and_hms(2026, 6, 3, 15, 27, 11)
            .single()
            .expect("date");
        let cfg = GenerateConfig {
            end,
            days: 10,
            accounts: 10,
            ..GenerateConfig::default()
        };
        let (out, stats) = run(&cfg);
        let events = parse(&out);
        assert!(stats.events > 100);
        assert!(events.iter().all(|e| ms(e) <= end.timestamp_millis()));
        // The CRM sync (group calls) comes first.
        assert_eq!(str_at(&events[0], "/type"), Some("group"));
    }
}
