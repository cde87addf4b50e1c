//! What the caller asks for (`GenerateConfig`), what it gets back
//! (`GenerateStats`), and the checks that a config describes a history.

use std::collections::BTreeMap;
use std::io;

use chrono::{DateTime, TimeZone, Utc};

/// Longest history accepted; keeps day arithmetic far from overflow.
const MAX_DAYS: u32 = 36_600;
/// Largest expected contact count; keeps contact indices well inside u32.
const MAX_CONTACTS: usize = 100_000_000;

/// What to generate. The history covers `(end - days, end]`.
#[derive(Debug, Clone)]
pub struct GenerateConfig {
    /// Number of accounts (companies).
    pub accounts: usize,
    /// Mean contacts per account; each account gets at least one, and the
    /// count varies log-normally like real buying committees do.
    pub contacts_per_account: usize,
    /// History length in days.
    pub days: u32,
    /// Last instant of history; nothing later is written.
    pub end: DateTime<Utc>,
    /// Seed of every random choice; same config and seed give identical bytes.
    pub seed: u64,
    /// Mean email sends per contact per week (each contact varies around it).
    pub sends_per_week: f64,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        let end = Utc
            .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
            .single()
            .unwrap_or(DateTime::UNIX_EPOCH);
        Self {
            accounts: 200,
            contacts_per_account: 8,
            days: 120,
            end,
            seed: 42,
            sends_per_week: 1.5,
        }
    }
}

/// What was written. `by_kind` counts `group`, `identify`, `page` and each
/// `track` event name (e.g. `Email Opened`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenerateStats {
    pub events: u64,
    pub accounts: u64,
    pub contacts: u64,
    pub by_kind: BTreeMap<String, u64>,
}

impl GenerateConfig {
    /// Rejects sizes the generator cannot describe as a history. The clock
    /// adds its own check that the history fits the representable range.
    pub(super) fn validate(&self) -> io::Result<()> {
        if self.days == 0 || self.days > MAX_DAYS {
            return Err(invalid("days must be between 1 and 36600"));
        }
        let contacts = self
            .accounts
            .saturating_mul(self.contacts_per_account.max(1));
        if contacts > MAX_CONTACTS {
            return Err(invalid(
                "accounts x contacts_per_account must be at most 100 million",
            ));
        }
        if !self.sends_per_week.is_finite() || self.sends_per_week < 0.0 {
            return Err(invalid("sends_per_week must be a finite number >= 0"));
        }
        Ok(())
    }
}

/// The error for a config (or a derived instant) that cannot describe a
/// history: `generate` reports it as `InvalidInput`.
pub(super) fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned())
}

#[cfg(test)]
mod tests {
    use std::io;

    use crate::generate::test_support::small;
    use crate::generate::{GenerateConfig, generate};

    #[test]
    fn rejects_configs_without_a_history() {
        let mut sink = Vec::new();
        let zero_days = GenerateConfig { days: 0, ..small() };
        let err = generate(&zero_days, &mut sink).expect_err("days = 0");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let nan = GenerateConfig {
            sends_per_week: f64::NAN,
            ..small()
        };
        assert!(generate(&nan, &mut sink).is_err());
    }
}
