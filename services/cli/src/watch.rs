//! `liveseg watch`: follows the membership-change stream (like
//! `kubectl get -w`) until Ctrl-C or the stream ends, and says which cursor
//! to resume from.

use std::io::{self, Write};

use anyhow::{Context as _, Result};
use clap::Args;
use liveseg_proto::pb;
use serde::Serialize;

use crate::client::{Api, rpc_error};
use crate::output::OutputFormat;

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Only changes of this segment [default: every segment].
    pub segment: Option<String>,
    /// Resume after this cursor (exclusive) [default: the oldest retained change].
    #[arg(long, value_name = "CURSOR")]
    pub after: Option<u64>,
    /// Start at the live tail instead of the oldest retained change.
    #[arg(long, conflicts_with = "after")]
    pub tail: bool,
}

/// How long the stream may stay unreachable (a shard moving, a node
/// restarting) before `watch` gives up.
const RESUME_FOR: std::time::Duration = std::time::Duration::from_secs(60);

pub async fn run(args: &WatchArgs, api: &Api, format: OutputFormat) -> Result<()> {
    let mut last = args.after;
    let mut out = io::stdout().lock();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut unavailable_since: Option<std::time::Instant> = None;
    let ended = 'outer: loop {
        // Resuming by cursor: nothing is skipped or repeated across a move.
        let req = pb::WatchRequest {
            segment: args.segment.clone().unwrap_or_default(),
            after_cursor: last.unwrap_or(0),
            tail_only: args.tail && last.is_none(),
        };
        let opened = api.membership().watch(req).await;
        let mut stream = match opened {
            Ok(s) => s.into_inner(),
            Err(status) if resumable(&status, &mut unavailable_since) => {
                pause(&mut ctrl_c).await?;
                continue;
            }
            Err(status) => return Err(rpc_error("watching membership changes", &status)),
        };
        loop {
            tokio::select! {
                _ = &mut ctrl_c => break 'outer "interrupted",
                next = stream.message() => match next {
                    Ok(Some(change)) => {
                        unavailable_since = None;
                        last = Some(change.cursor);
                        let line = if format.is_machine() {
                            change_json(&change)
                        } else {
                            render_change(&change)
                        };
                        writeln!(out, "{line}").context("writing stdout")?;
                        out.flush().context("writing stdout")?;
                    }
                    Ok(None) => break 'outer "the stream ended",
                    // The shard moved (or its node went away): resume elsewhere.
                    Err(status) if resumable(&status, &mut unavailable_since) => {
                        tracing::debug!(status = %status.message(), "watch interrupted; resuming");
                        break;
                    }
                    Err(status) => return Err(rpc_error("membership change stream", &status)),
                },
            }
        }
    };
    match last {
        Some(cursor) => eprintln!("{ended}; resume with --after {cursor}"),
        None => eprintln!("{ended}; no changes received"),
    }
    Ok(())
}

/// UNAVAILABLE is retried for up to [`RESUME_FOR`] since it was first seen.
fn resumable(status: &tonic::Status, since: &mut Option<std::time::Instant>) -> bool {
    if status.code() != tonic::Code::Unavailable {
        return false;
    }
    since.get_or_insert_with(std::time::Instant::now).elapsed() < RESUME_FOR
}

/// A short pause before reconnecting; Ctrl-C still ends the command.
async fn pause(ctrl_c: &mut std::pin::Pin<&mut impl std::future::Future>) -> Result<()> {
    tokio::select! {
        _ = ctrl_c => Err(anyhow::anyhow!("interrupted")),
        _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => Ok(()),
    }
}

pub fn kind_text(kind: pb::ChangeKind) -> &'static str {
    match kind {
        pb::ChangeKind::Enter => "enter",
        pb::ChangeKind::Exit => "exit",
        pb::ChangeKind::Unspecified => "?",
    }
}

/// One change for people: instant, kind, segment, entity and account, cursor, cause.
pub fn render_change(c: &pb::MembershipChange) -> String {
    let account = if c.account_id.is_empty() || c.account_id == c.id {
        String::new()
    } else {
        format!(" @ {}", c.account_id)
    };
    format!(
        "{}  {:<5}  {}  {} {}{account}  #{}  {}",
        c.instant,
        kind_text(c.kind()),
        c.segment,
        c.entity,
        c.id,
        c.cursor,
        c.cause
    )
}

/// One change as a JSON line; the fields of `liveseg replay --transitions`
/// in the same order, plus the cursor and the cause.
#[derive(Serialize)]
pub struct ChangeLine<'a> {
    pub cursor: u64,
    pub instant: &'a str,
    pub segment: &'a str,
    pub entity: &'a str,
    pub id: &'a str,
    pub account: &'a str,
    pub kind: &'static str,
    pub cause: &'a str,
}

pub fn change_json(c: &pb::MembershipChange) -> String {
    let line = ChangeLine {
        cursor: c.cursor,
        instant: &c.instant,
        segment: &c.segment,
        entity: &c.entity,
        id: &c.id,
        account: &c.account_id,
        kind: kind_text(c.kind()),
        cause: &c.cause,
    };
    serde_json::to_string(&line).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_render_as_lines() {
        let c = pb::MembershipChange {
            cursor: 17,
            segment: "engaged_target_contacts".into(),
            entity: "contact".into(),
            id: "u1".into(),
            account_id: "acme".into(),
            kind: pb::ChangeKind::Exit as i32,
            instant: "2026-02-09T12:00:00.000Z".into(),
            cause: "time:condition.all[1]".into(),
        };
        assert_eq!(
            render_change(&c),
            "2026-02-09T12:00:00.000Z  exit   engaged_target_contacts  contact u1 @ acme  #17  time:condition.all[1]"
        );
        assert_eq!(
            change_json(&c),
            r#"{"cursor":17,"instant":"2026-02-09T12:00:00.000Z","segment":"engaged_target_contacts","entity":"contact","id":"u1","account":"acme","kind":"exit","cause":"time:condition.all[1]"}"#
        );
    }
}
