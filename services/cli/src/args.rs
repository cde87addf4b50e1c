//! The command line: global flags, the command tree, and the value parsers
//! shared by several commands (durations, instants, clock modes). Each
//! command's own flags live next to its logic (`replay::ReplayArgs`, ...).

use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use liveseg_core::Millis;
use liveseg_core::time::parse_rfc3339;
use liveseg_node::ClockMode;

use crate::output::OutputFormat;
use crate::{admin, demo, explain, generate_cmd, ingest, query, replay, segments, serve, watch};

/// liveseg: real-time B2B email segmentation.
///
/// Serve a node, replay a history offline, manage segment definitions,
/// stream events in, and query who is in which segment and why.
#[derive(Parser, Debug)]
#[command(name = "liveseg", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Node to talk to (gRPC).
    #[arg(
        long,
        global = true,
        env = "LIVESEG_SERVER",
        default_value = "http://127.0.0.1:7070"
    )]
    pub server: String,
    /// API key of the tenant [default: the one in <data-dir>/credentials.json].
    #[arg(long, global = true, env = "LIVESEG_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Node data directory; holds credentials.json after the first start [default: .liveseg].
    #[arg(long, global = true, env = "LIVESEG_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Output format: a table for people, or JSON / JSON lines for programs.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Set when `--data-dir` was given on the command line itself (not via
    /// the environment): `demo` only reuses a directory it was pointed at
    /// explicitly, never a node's directory inherited from `LIVESEG_DATA_DIR`.
    #[arg(skip)]
    pub data_dir_on_command_line: bool,
}

impl GlobalArgs {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(".liveseg"))
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a standalone node (gRPC + HTTP on one port) until SIGTERM or Ctrl-C.
    Serve(Box<serve::ServeArgs>),
    /// Run the engine in-process over a JSONL history and print memberships at an instant.
    Replay(replay::ReplayArgs),
    /// Manage segment definitions.
    #[command(subcommand)]
    Segments(segments::SegmentsCommand),
    /// Stream a Segment-Spec JSONL file into a node.
    Ingest(ingest::IngestArgs),
    /// List the members of a segment.
    Members(query::MembersArgs),
    /// Explain why a contact (or an account) is in or out of its segments.
    Explain(explain::ExplainArgs),
    /// The segments a contact is in right now.
    Contact(query::ContactArgs),
    /// An account's segments and those of each of its contacts.
    Account(query::AccountArgs),
    /// Follow membership changes (enter/exit) as they happen.
    Watch(watch::WatchArgs),
    /// Write a deterministic synthetic B2B workload as Segment-Spec JSON lines.
    Generate(generate_cmd::GenerateArgs),
    /// Read or move the clock of a node started with `--clock manual`.
    Clock(admin::ClockArgs),
    /// One-command demo: generate, serve, ingest, then show segments and explanations.
    Demo(demo::DemoArgs),
    /// Measure ingest, latency, time-driven exits, memory and replay (BENCHMARKS.md).
    Bench(crate::bench::BenchArgs),
    /// The embedding model service.
    #[command(subcommand)]
    Model(crate::model_cmd::ModelCommand),
    /// Embed texts from stdin (one per line) as JSON vectors on stdout (one per line).
    Embed(crate::model_cmd::EmbedArgs),
    /// Register and list content for matching (embedded once by the node's model).
    #[command(subcommand)]
    Content(crate::content_cmd::ContentCommand),
    /// Rank content for a contact's interests (or for a text).
    Match(crate::content_cmd::MatchArgs),
    /// Write a stopped node's event log (one tenant) as Segment-Spec JSON lines.
    Export(crate::export_cmd::ExportArgs),
    /// Lookalikes, clusters and send timing from a node's live state.
    #[command(subcommand)]
    Insight(crate::insight_cmd::InsightCommand),
}

/// Parses the process arguments, remembering whether `--data-dir` came from
/// the command line.
pub fn parse() -> Result<Cli, clap::Error> {
    let mut cmd = Cli::command();
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(path) = crate::config_file::config_path(&raw) {
        cmd = crate::config_file::apply(cmd, &path)?;
    }
    let matches = cmd.try_get_matches_from(raw)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    cli.global.data_dir_on_command_line =
        data_dir_source(&matches) == Some(ValueSource::CommandLine);
    Ok(cli)
}

/// Global args are propagated to the subcommand that was used; look there too.
fn data_dir_source(matches: &clap::ArgMatches) -> Option<ValueSource> {
    let mut m = matches;
    let mut source = m.value_source("data_dir");
    while let Some((_, sub)) = m.subcommand() {
        m = sub;
        source = source.max(m.value_source("data_dir"));
    }
    source
}

/// Parses a duration written as one or more `<number><unit>` groups, e.g.
/// `250ms`, `2s`, `5m`, `1h30m`, `7d`, `2w`. Zero is rejected: a duration
/// the CLI takes is an interval, a window or a step forward...
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    match parse_duration_or_zero(text)? {
        d if d.is_zero() => Err(format!("'{}': must be longer than zero", text.trim())),
        d => Ok(d),
    }
}

/// ...unless zero turns a duty off (`--score-refresh 0s`).
pub fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration; write e.g. 2s, 5m, 7d".into());
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("'{text}': expected a number before '{rest}'"));
        }
        let (num, after) = rest.split_at(digits);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "" => return Err(format!("'{text}': missing unit; use ms, s, m, h, d or w")),
            other => {
                return Err(format!(
                    "'{text}': unknown unit '{other}'; use ms, s, m, h, d or w"
                ));
            }
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("'{text}': number too large"))?;
        total = n
            .checked_mul(scale)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(|| format!("'{text}': duration too large"))?;
        rest = next;
    }
    Ok(Duration::from_millis(total))
}

/// Parses an RFC 3339 instant into milliseconds since the epoch.
pub fn parse_instant(text: &str) -> Result<Millis, String> {
    parse_rfc3339(text.trim()).map_err(|e| format!("'{text}': {e}"))
}

/// Parses `system`, `manual` (starting now) or `manual:<RFC 3339>`.
pub fn parse_clock(text: &str) -> Result<ClockMode, String> {
    match text.trim() {
        "system" => Ok(ClockMode::System),
        "manual" => Ok(ClockMode::Manual(chrono::Utc::now().timestamp_millis())),
        other => match other.strip_prefix("manual:") {
            Some(start) => parse_instant(start).map(ClockMode::Manual),
            None => Err(format!(
                "'{other}': use system, manual or manual:<RFC 3339 instant>"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_every_unit_and_compounds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration(" 7d "), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
    }

    #[test]
    fn bad_durations_say_what_is_wrong() {
        assert!(parse_duration("").is_err());
        assert!(
            parse_duration("5")
                .expect_err("an error")
                .contains("missing unit")
        );
        assert!(
            parse_duration("5y")
                .expect_err("an error")
                .contains("unknown unit 'y'")
        );
        assert!(
            parse_duration("m")
                .expect_err("an error")
                .contains("expected a number")
        );
        assert!(
            parse_duration("0s")
                .expect_err("an error")
                .contains("longer than zero")
        );
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert!(
            parse_duration("9999999999999999d")
                .expect_err("an error")
                .contains("too large")
        );
    }

    #[test]
    fn clock_modes() {
        assert_eq!(parse_clock("system"), Ok(ClockMode::System));
        assert_eq!(
            parse_clock("manual:2026-01-01T00:00:00Z"),
            Ok(ClockMode::Manual(1_767_225_600_000))
        );
        assert!(matches!(parse_clock("manual"), Ok(ClockMode::Manual(_))));
        assert!(parse_clock("manual:yesterday").is_err());
        assert!(parse_clock("wall").is_err());
    }

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn data_dir_on_the_command_line_is_noticed_after_the_subcommand() {
        let parse = |argv: &[&str]| {
            let matches = Cli::command().try_get_matches_from(argv).expect("parse");
            data_dir_source(&matches)
        };
        assert_eq!(
            parse(&["liveseg", "demo", "--data-dir", "x"]),
            Some(ValueSource::CommandLine)
        );
        assert_eq!(
            parse(&["liveseg", "--data-dir", "x", "demo"]),
            Some(ValueSource::CommandLine)
        );
        assert_ne!(parse(&["liveseg", "demo"]), Some(ValueSource::CommandLine));
    }
}
