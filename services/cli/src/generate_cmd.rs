//! `liveseg generate`: the command around `generate` (the synthetic
//! workload). Events go to stdout or `-O FILE`; statistics to stderr.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use clap::Args;
use liveseg_core::Millis;

use crate::args::parse_instant;
use crate::generate::{GenerateConfig, GenerateStats, generate};
use crate::output::rate;

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Number of accounts (companies).
    #[arg(long, default_value_t = GenerateConfig::default().accounts)]
    pub accounts: usize,
    /// Mean contacts per account (varies per account, at least one).
    #[arg(long, default_value_t = GenerateConfig::default().contacts_per_account)]
    pub contacts_per_account: usize,
    /// Days of history, ending at --end.
    #[arg(long, default_value_t = GenerateConfig::default().days)]
    pub days: u32,
    /// Last instant of history (RFC 3339) [default: 2026-11-01T00:00:00Z].
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
    pub end: Option<Millis>,
    /// Seed; the same flags and seed give byte-identical output.
    #[arg(long, default_value_t = GenerateConfig::default().seed)]
    pub seed: u64,
    /// Mean email sends per contact per week.
    #[arg(long, default_value_t = GenerateConfig::default().sends_per_week)]
    pub sends_per_week: f64,
    /// Write the events here instead of stdout.
    #[arg(short = 'O', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
}

impl GenerateArgs {
    pub fn config(&self) -> Result<GenerateConfig> {
        let defaults = GenerateConfig::default();
        let end = match self.end {
            Some(ms) => {
                DateTime::<Utc>::from_timestamp_millis(ms).context("--end is out of range")?
            }
            None => defaults.end,
        };
        Ok(GenerateConfig {
            accounts: self.accounts,
            contacts_per_account: self.contacts_per_account,
            days: self.days,
            end,
            seed: self.seed,
            sends_per_week: self.sends_per_week,
        })
    }
}

pub fn run(args: &GenerateArgs) -> Result<()> {
    let cfg = args.config()?;
    let started = Instant::now();
    let stats = match &args.out {
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = BufWriter::with_capacity(1 << 16, file);
            let stats = generate(&cfg, &mut out)
                .with_context(|| format!("generating into {}", path.display()))?;
            out.flush()
                .with_context(|| format!("writing {}", path.display()))?;
            stats
        }
        None => generate(&cfg, &mut io::stdout().lock()).context("generating to stdout")?,
    };
    let target = args
        .out
        .as_ref()
        .map_or_else(|| "stdout".to_string(), |p| p.display().to_string());
    eprint!(
        "{}",
        render_stats(&stats, &target, started.elapsed().as_secs_f64())
    );
    Ok(())
}

pub fn render_stats(stats: &GenerateStats, target: &str, secs: f64) -> String {
    let mut text = format!(
        "generated {} events ({} accounts, {} contacts) to {target} in {secs:.2} s ({:.0} events/s)\n",
        stats.events,
        stats.accounts,
        stats.contacts,
        rate(stats.events, secs)
    );
    let width = stats.by_kind.keys().map(String::len).max().unwrap_or(0);
    for (kind, n) in &stats.by_kind {
        text.push_str(&format!("  {kind:<width$}  {n}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: GenerateArgs,
    }

    #[test]
    fn flags_default_to_the_generator_defaults() {
        let w = Wrapper::try_parse_from(["generate"]).expect("parse");
        let cfg = w.args.config().expect("config");
        let d = GenerateConfig::default();
        assert_eq!(
            (
                cfg.accounts,
                cfg.contacts_per_account,
                cfg.days,
                cfg.end,
                cfg.seed
            ),
            (d.accounts, d.contacts_per_account, d.days, d.end, d.seed)
        );
        let w = Wrapper::try_parse_from([
            "generate",
            "--accounts",
            "3",
            "--end",
            "2026-06-01T00:00:00Z",
        ])
        .expect("parse");
        let cfg = w.args.config().expect("config");
        assert_eq!(cfg.accounts, 3);
        assert_eq!(cfg.end.to_rfc3339(), "2026-06-01T00:00:00+00:00");
    }

    #[test]
    fn stats_render_per_kind() {
        let mut stats = GenerateStats {
            events: 3,
            accounts: 1,
            contacts: 2,
            ..GenerateStats::default()
        };
        stats.by_kind.insert("group".into(), 2);
        stats.by_kind.insert("Email Opened".into(), 1);
        let text = render_stats(&stats, "out.jsonl", 0.0);
        assert_eq!(
            text,
            "generated 3 events (1 accounts, 2 contacts) to out.jsonl in 0.00 s (0 events/s)\n  \
             Email Opened  1\n  group         2\n"
        );
    }
}
