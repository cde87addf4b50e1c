//! `liveseg clock`: read or move the clock of a node started with
//! `--clock manual` (deterministic demos and tests), and the node stats
//! other commands poll.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use liveseg_core::Millis;
use liveseg_core::time::{format_rfc3339, parse_rfc3339};
use liveseg_proto::pb;
use serde_json::json;

use crate::args::{parse_duration, parse_instant};
use crate::client::{Api, rpc_error};
use crate::output::{OutputFormat, print_value};

#[derive(Args, Debug)]
pub struct ClockArgs {
    /// Move the clock to this instant (RFC 3339); it never goes back.
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant, conflicts_with = "advance")]
    pub advance_to: Option<Millis>,
    /// Move the clock forward by this much, e.g. 30d or 1h30m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub advance: Option<Duration>,
}

pub async fn clock(args: &ClockArgs, api: &Api, format: OutputFormat) -> Result<()> {
    let mut admin = api.admin();
    let mut reading = admin
        .get_clock(pb::GetClockRequest {})
        .await
        .map_err(|s| rpc_error("reading the clock", &s))?
        .into_inner();
    let target = match (args.advance_to, args.advance) {
        (Some(t), _) => Some(t),
        (None, Some(by)) => Some(advanced(&reading.now, by)?),
        (None, None) => None,
    };
    if let Some(t) = target {
        let req = pb::AdvanceClockRequest {
            to: format_rfc3339(t),
        };
        reading = admin
            .advance_clock(req)
            .await
            .map_err(|s| rpc_error("advancing the clock", &s))?
            .into_inner();
    }
    let mut out = io::stdout().lock();
    if format.is_machine() {
        print_value(
            &mut out,
            format,
            &json!({"now": reading.now, "manual": reading.manual}),
        )?;
    } else {
        writeln!(out, "{}", render_reading(&reading))?;
    }
    Ok(())
}

/// `now` (RFC 3339) moved forward by `by`.
pub fn advanced(now: &str, by: Duration) -> Result<Millis> {
    let now = parse_rfc3339(now)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("the node reported its clock as '{now}'"))?;
    let by = Millis::try_from(by.as_millis()).context("duration too large")?;
    now.checked_add(by).context("duration too large")
}

pub fn render_reading(r: &pb::ClockReading) -> String {
    let kind = if r.manual { "manual" } else { "system" };
    format!("{} ({kind} clock)", r.now)
}

pub async fn stats(api: &Api) -> Result<pb::NodeStats> {
    let resp = api
        .admin()
        .stats(pb::StatsRequest {})
        .await
        .map_err(|s| rpc_error("reading node stats", &s))?;
    Ok(resp.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_adds_the_duration_to_the_reported_clock() {
        let t = advanced("2026-01-01T00:00:00.000Z", Duration::from_secs(30 * 86_400));
        assert_eq!(
            t.ok().map(format_rfc3339).as_deref(),
            Some("2026-01-31T00:00:00.000Z")
        );
        assert!(advanced("soon", Duration::from_secs(1)).is_err());
        let r = pb::ClockReading {
            now: "2026-01-01T00:00:00.000Z".into(),
            manual: true,
        };
        assert_eq!(
            render_reading(&r),
            "2026-01-01T00:00:00.000Z (manual clock)"
        );
    }
}
