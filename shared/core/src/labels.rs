//! Point-in-time training rows for the propensity targets: one row per send,
//! its features from events strictly before the send (through the same
//! `features` code the live actors run), and its labels from events strictly
//! after it, inside each target's window.
//!
//! A label whose window has not closed by `as_of` is unknown (censored), not
//! negative: a send on Monday cannot be a "no click within 7 days" on
//! Wednesday. Rows of contacts already suppressed at the send are left out
//! (nobody sends to them, so a model should not learn from them).

use crate::content::ContentLibrary;
use crate::engine::Directory;
use crate::event::{Event, EventKind};
use crate::features::{AccountSignals, FeatureState, features_at, live_features_at};
use crate::send_affinity::send_content_of;
use crate::time::{DAY, Millis};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What a propensity model predicts for a send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A click on this send within 7 days.
    Click7d,
    /// A reply to this send within 14 days.
    Reply,
    /// A meeting booked by the contact within 30 days.
    Meeting30d,
    /// An unsubscribe or spam complaint by the contact within 7 days.
    Unsubscribe7d,
}

impl Target {
    pub const ALL: [Target; 4] = [
        Target::Click7d,
        Target::Reply,
        Target::Meeting30d,
        Target::Unsubscribe7d,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Click7d => "click_7d",
            Target::Reply => "reply",
            Target::Meeting30d => "meeting_30d",
            Target::Unsubscribe7d => "unsubscribe_7d",
        }
    }

    pub fn parse(text: &str) -> Result<Target, String> {
        Target::ALL
            .into_iter()
            .find(|t| t.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Target::ALL.iter().map(|t| t.name()).collect();
                format!("unknown target '{text}'; one of {}", names.join(", "))
            })
    }

    /// How long after a send its label stays open.
    pub fn window(self) -> Millis {
        match self {
            Target::Click7d | Target::Unsubscribe7d => 7 * DAY,
            Target::Reply => 14 * DAY,
            Target::Meeting30d => 30 * DAY,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One send with its point-in-time features and labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub contact: String,
    pub account: String,
    pub email: u64,
    pub send_ts: Millis,
    pub features: Vec<f32>,
    /// Per target (indexed as `Target::ALL`): `None` while censored.
    pub labels: [Option<bool>; 4],
}

impl Row {
    pub fn label(&self, t: Target) -> Option<bool> {
        self.labels[t.index()]
    }
}

/// Outcome events of one contact, for labelling its sends afterwards.
#[derive(Default)]
struct Outcomes {
    click: HashMap<u64, Vec<Millis>>,
    reply: HashMap<u64, Vec<Millis>>,
    meetings: Vec<Millis>,
    opt_outs: Vec<Millis>,
}

/// Whether any of `times` falls in `(from, from + window]`.
fn any_in(times: &[Millis], from: Millis, window: Millis) -> bool {
    times.iter().any(|t| *t > from && *t <= from + window)
}

/// Contact and account feature state replayed from a history in time
/// order, routed like the engine (the contact directory, moves, aliases).
#[derive(Default)]
pub struct FeatureReplay {
    directory: Directory,
    pub contacts: HashMap<String, FeatureState>,
    pub accounts: HashMap<String, AccountSignals>,
    /// When each contact was first suppressed.
    pub suppressed: HashMap<String, Millis>,
    /// The tenant's content, for the content-affinity features.
    pub library: Arc<ContentLibrary>,
}

impl FeatureReplay {
    /// The account a contact's event without a groupId goes to.
    pub fn account_of(&self, contact: &str) -> String {
        self.directory
            .get(contact)
            .map(str::to_string)
            .unwrap_or_else(|| crate::engine::personal_account(contact))
    }

    /// Applies one event; events must come in time order.
    pub fn apply(&mut self, e: &Event) {
        let route = self.directory.route(e);
        self.accounts.entry(route.account).or_default().apply(e);
        let Some(user) = &e.user_id else { return };
        if let EventKind::Alias { previous_id } = &e.kind
            && !self.contacts.contains_key(user)
            && let Some(state) = self.contacts.remove(previous_id)
        {
            // The engine renames the contact, keeping its state.
            self.contacts.insert(user.clone(), state);
        }
        let c = self.contacts.entry(user.clone()).or_default();
        c.apply(e);
        c.prune(e.ts);
        if e.kind.suppresses() {
            self.suppressed.entry(user.clone()).or_insert(e.ts);
        }
    }

    /// Features of `contact` (in its current account) at instant `t`, as a
    /// live score reads them (for the content of its latest send).
    pub fn features(&self, contact: &str, account: &str, t: Millis) -> Vec<f32> {
        let (c, a) = self.states(contact, account);
        live_features_at(c, a, &self.library, t)
    }

    /// Features of `contact` for a send of `content` at instant `t`.
    pub fn send_features(
        &self,
        contact: &str,
        account: &str,
        t: Millis,
        content: Option<u64>,
    ) -> Vec<f32> {
        let (c, a) = self.states(contact, account);
        features_at(c, a, &self.library, t, content)
    }

    fn states(&self, contact: &str, account: &str) -> (&FeatureState, &AccountSignals) {
        static EMPTY_C: std::sync::LazyLock<FeatureState> =
            std::sync::LazyLock::new(Default::default);
        static EMPTY_A: std::sync::LazyLock<AccountSignals> =
            std::sync::LazyLock::new(Default::default);
        (
            self.contacts.get(contact).unwrap_or(&EMPTY_C),
            self.accounts.get(account).unwrap_or(&EMPTY_A),
        )
    }
}

/// Sorts by event time (stable) and drops repeated `messageId`s.
pub fn in_time_order(mut events: Vec<Event>) -> Vec<Event> {
    events.sort_by_key(|e| e.ts);
    let mut seen = HashSet::new();
    events.retain(|e| seen.insert(e.message_id.clone()));
    events
}

/// Replays `events` up to and including `at` (any order in), with the
/// tenant's content `library`.
pub fn replay_until(events: Vec<Event>, at: Millis, library: Arc<ContentLibrary>) -> FeatureReplay {
    let mut r = FeatureReplay {
        library,
        ..Default::default()
    };
    for e in in_time_order(events).iter().take_while(|e| e.ts <= at) {
        r.apply(e);
    }
    r
}

/// Builds the rows of every send in `events` (any order; sorted here by
/// event time, stable), with labels known as of `as_of`. Duplicate
/// `messageId`s count once, and a repeated delivery of one email id to a
/// contact is one send, as in the engine. Each row's content-affinity
/// features are for the content of its send, looked up in `library`.
pub fn training_rows(events: Vec<Event>, as_of: Millis, library: Arc<ContentLibrary>) -> Vec<Row> {
    rows(events, as_of, Some(library))
}

/// `training_rows` without the features (left empty): the sends and their
/// labels only, what calibration tracking needs, at a fraction of the cost.
pub fn outcome_rows(events: Vec<Event>, as_of: Millis) -> Vec<Row> {
    rows(events, as_of, None)
}

/// The rows, with features when a library is given.
fn rows(events: Vec<Event>, as_of: Millis, library: Option<Arc<ContentLibrary>>) -> Vec<Row> {
    let events = in_time_order(events);
    let with_features = library.is_some();
    let mut replay = FeatureReplay {
        library: library.unwrap_or_default(),
        ..Default::default()
    };
    let mut outcomes: HashMap<String, Outcomes> = HashMap::new();
    let mut sent: HashSet<(String, u64)> = HashSet::new();
    let mut rows = Vec::new();

    let mut i = 0;
    while i < events.len() {
        // Events at one instant: snapshot the sends first, then apply all of
        // them, so a send never sees an event of its own instant.
        let ts = events[i].ts;
        let end = i + events[i..].partition_point(|e| e.ts == ts);
        for e in &events[i..end] {
            let (EventKind::Send { email }, Some(user)) = (&e.kind, &e.user_id) else {
                continue;
            };
            if !sent.insert((user.clone(), *email))
                || replay.suppressed.get(user).is_some_and(|s| *s < ts)
            {
                continue;
            }
            let account = e
                .group_id
                .clone()
                .unwrap_or_else(|| replay.account_of(user));
            rows.push(Row {
                contact: user.clone(),
                features: if with_features {
                    replay.send_features(user, &account, ts, send_content_of(e))
                } else {
                    Vec::new()
                },
                account,
                email: *email,
                send_ts: ts,
                labels: [None; 4],
            });
        }
        for e in &events[i..end] {
            replay.apply(e);
            let Some(user) = &e.user_id else { continue };
            let o = outcomes.entry(user.clone()).or_default();
            match &e.kind {
                EventKind::Click { email } => o.click.entry(*email).or_default().push(ts),
                EventKind::Reply { email } => o.reply.entry(*email).or_default().push(ts),
                EventKind::Meeting => o.meetings.push(ts),
                EventKind::Unsubscribe | EventKind::Complaint { .. } => o.opt_outs.push(ts),
                _ => {}
            }
        }
        i = end;
    }

    let none = Outcomes::default();
    for row in &mut rows {
        let o = outcomes.get(&row.contact).unwrap_or(&none);
        let email = row.email;
        let on_send = |m: &HashMap<u64, Vec<Millis>>| m.get(&email).cloned().unwrap_or_default();
        for t in Target::ALL {
            if row.send_ts + t.window() > as_of {
                continue;
            }
            let hit = match t {
                Target::Click7d => any_in(&on_send(&o.click), row.send_ts, t.window()),
                Target::Reply => any_in(&on_send(&o.reply), row.send_ts, t.window()),
                Target::Meeting30d => any_in(&o.meetings, row.send_ts, t.window()),
                Target::Unsubscribe7d => any_in(&o.opt_outs, row.send_ts, t.window()),
            };
            row.labels[t.index()] = Some(hit);
        }
    }
    rows
}
