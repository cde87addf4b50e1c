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

pub async fn run(args: &WatchArgs, api: &Api, format: OutputFormat) -> Result<()> {
    let req = pb::WatchRequest {
        segment: args.segment.clone().unwrap_or_default(),
        after_cursor: args.after.unwrap_or(0),
        tail_only: args.tail,
    };
    let mut stream = api
        .membership()
        .watch(req)
        .await
        .map_err(|s| rpc_error("watching membership changes", &s))?
        .into_inner();
    let mut last = args.after;
    let mut out = io::stdout().lock();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let ended = loop {
        tokio::select! {
            _ = &mut ctrl_c => break "interrupted",
            next = stream.message() => match next {
                Ok(Some(change)) => {
                    last = Some(change.cursor);
                    let line = if format.is_machine() {
                        change_json(&change)
                    } else {
                        render_change(&change)
                    };
                    writeln!(out, "{line}").context("writing stdout")?;
                    out.flush().context("writing stdout")?;
                }
                Ok(None) => break "the stream ended",
                Err(status) => return Err(rpc_error("membership change stream", &status)),
            },
        }
    };
    match last {
        Some(cursor) => eprintln!("{ended}; resume with --after {cursor}"),
        None => eprintln!("{ended}; no changes received"),
    }
    Ok(())
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
