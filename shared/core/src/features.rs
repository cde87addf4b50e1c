//! Model features of a contact and its account: the one feature code that
//! both training (over replayed history, `crate::labels`) and live scoring
//! (in the account actors) run, so the two cannot drift apart.
//!
//! A contact's `FeatureState` keeps, per engagement kind, the timestamps of
//! the last 90 days (at most `MAX_TIMES` per kind), the last instant ever,
//! its last sends with the first open/click/reply of each, an hour-of-day
//! histogram of opens and clicks (for send timing), the traits the
//! features read, and its engagements with content and the content of its
//! sends (`crate::send_affinity`). The account's `AccountSignals` keeps account-wide series
//! (all contacts and account-level events) and account traits.
//!
//! Every update is independent of arrival order (timestamps are inserted
//! sorted; traits keep the value of the latest event time), so a live node
//! that receives events out of order and a training replay that sorts them
//! reach the same state. One exception, documented: a kind with more than
//! `MAX_TIMES` events in 90 days keeps the latest `MAX_TIMES` it has seen.
//!
//! Features at instant `t` read only events strictly before `t`, the rule
//! that keeps a training row free of its own outcome.

use crate::content::ContentLibrary;
use crate::event::{Event, EventKind};
use crate::send_affinity::ContentTrail;
use crate::state::{Orphan, SendRecord, add_send, engage};
use crate::time::{DAY, HOUR, Millis};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Identifies the layout of `FeatureVector`; stored with every trained
/// model, and a model trained on another layout is refused.
pub const FEATURE_SET: &str = "contact-v2";

/// The longest window any feature reads.
pub const HORIZON: Millis = 90 * DAY;
/// Timestamps kept per kind within the horizon; counts saturate here.
pub const MAX_TIMES: usize = 64;
/// Sends remembered for last-N outcomes.
pub const LAST_SENDS: usize = 5;
/// Cap of the "days since" features (and their value when never seen).
const DAYS_CAP: f32 = 365.0;

/// Contact-level kinds with their own series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Send = 0,
    Open,
    Click,
    Reply,
    Page,
    Meeting,
    Product,
    SoftBounce,
    ContentClick,
}

const KINDS: usize = 9;
const KIND_NAMES: [&str; KINDS] = [
    "sends",
    "opens",
    "clicks",
    "replies",
    "pages",
    "meetings",
    "product_uses",
    "soft_bounces",
    "content_clicks",
];
/// Kinds with 7/30/90-day counts and a "days since last" feature.
const WINDOWED: [Kind; 7] = [
    Kind::Send,
    Kind::Open,
    Kind::Click,
    Kind::Reply,
    Kind::Page,
    Kind::Meeting,
    Kind::Product,
];
const WINDOWS_DAYS: [i64; 3] = [7, 30, 90];

/// Timestamps of one kind within the horizon, sorted, plus the last ever.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Times {
    pub ts: Vec<Millis>,
    /// The latest timestamp dropped from `ts` (pruned or over the cap).
    pub dropped_last: Option<Millis>,
}

impl Times {
    fn insert(&mut self, t: Millis) {
        let at = self.ts.partition_point(|x| *x <= t);
        if self.ts.len() < MAX_TIMES {
            self.ts.insert(at, t);
        } else if at == 0 {
            // Older than everything kept: only the latest MAX_TIMES count.
            self.note_dropped(t);
        } else {
            let oldest = self.ts.remove(0);
            self.note_dropped(oldest);
            self.ts.insert(at - 1, t);
        }
    }

    fn note_dropped(&mut self, t: Millis) {
        self.dropped_last = Some(self.dropped_last.map_or(t, |d| d.max(t)));
    }

    /// Events in `[t - window, t)`.
    fn count_before(&self, t: Millis, window: Millis) -> usize {
        let hi = self.ts.partition_point(|x| *x < t);
        let lo = self.ts.partition_point(|x| *x < t.saturating_sub(window));
        hi.saturating_sub(lo)
    }

    /// The latest event strictly before `t`.
    fn last_before(&self, t: Millis) -> Option<Millis> {
        match self.ts.partition_point(|x| *x < t) {
            0 => self.dropped_last.filter(|d| *d < t),
            n => Some(self.ts[n - 1]),
        }
    }

    fn prune(&mut self, cutoff: Millis) {
        let n = self.ts.partition_point(|x| *x < cutoff);
        if n > 0 {
            self.note_dropped(self.ts[n - 1]);
            self.ts.drain(..n);
        }
    }
}

/// A trait value with the event time that set it. The latest event time
/// wins, a null included; at one instant the larger value wins, so the
/// order events arrive in never matters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stamped {
    pub value: Option<String>,
    /// When it was last set (None: never).
    pub at: Option<Millis>,
}

impl Stamped {
    fn set(&mut self, v: Option<&Value>, at: Millis) {
        let Some(v) = v else { return };
        let value = match v {
            Value::Null => None,
            Value::String(s) => Some(s.trim().to_ascii_lowercase()),
            other => Some(other.to_string()),
        };
        if self.at.is_none_or(|cur| (at, &value) > (cur, &self.value)) {
            self.at = Some(at);
            self.value = value;
        }
    }

    fn number(&self) -> Option<f32> {
        self.value
            .as_deref()
            .and_then(|s| s.parse::<f32>().ok())
            .filter(|v| v.is_finite())
    }
}

/// A contact's feature state (see the module comment).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureState {
    pub times: [Times; KINDS],
    pub first_send: Option<Millis>,
    pub sends: Vec<SendRecord>,
    pub orphans: Vec<Orphan>,
    /// Opens and clicks by UTC hour of day, all time (for send timing).
    pub hours: [u32; 24],
    pub seniority: Stamped,
    pub role: Stamped,
    /// For the content-affinity features.
    #[serde(default)]
    pub content: ContentTrail,
}

impl FeatureState {
    /// Applies one event of this contact.
    pub fn apply(&mut self, e: &Event) {
        let ts = e.ts;
        self.content.apply(e);
        let times = &mut self.times;
        let mut add = |k: Kind| times[k as usize].insert(ts);
        match &e.kind {
            EventKind::Send { email } => {
                add(Kind::Send);
                self.first_send = Some(self.first_send.map_or(e.ts, |f| f.min(e.ts)));
                add_send(&mut self.sends, &mut self.orphans, *email, e.ts);
            }
            EventKind::Open { email } => {
                add(Kind::Open);
                engage(&mut self.sends, &mut self.orphans, *email, 0, e.ts);
                self.hours[hour_of(e.ts)] += 1;
            }
            EventKind::Click { email } => {
                add(Kind::Click);
                if e.properties.get("content_id").is_some_and(|v| !v.is_null()) {
                    add(Kind::ContentClick);
                }
                engage(&mut self.sends, &mut self.orphans, *email, 1, e.ts);
                self.hours[hour_of(e.ts)] += 1;
            }
            EventKind::Reply { email } => {
                add(Kind::Reply);
                engage(&mut self.sends, &mut self.orphans, *email, 2, e.ts);
            }
            EventKind::Page { .. } => add(Kind::Page),
            EventKind::Meeting => add(Kind::Meeting),
            EventKind::ProductUsage => add(Kind::Product),
            EventKind::Bounce { hard: false, .. } => add(Kind::SoftBounce),
            EventKind::Identify => {
                self.seniority.set(e.traits.get("seniority"), e.ts);
                self.role.set(e.traits.get("role"), e.ts);
            }
            _ => {}
        }
    }

    /// Drops what no feature at an instant after `now` can read.
    pub fn prune(&mut self, now: Millis) {
        for t in &mut self.times {
            t.prune(now.saturating_sub(HORIZON));
        }
        self.content.prune(now);
        // Sends before `now` beyond the last few can no longer be among the
        // last LAST_SENDS before any instant from `now` on.
        let settled = self.sends.partition_point(|s| s.ts < now);
        if settled > LAST_SENDS {
            self.sends.drain(..settled - LAST_SENDS);
        }
    }
}

/// `e` with only what this module and `crate::labels` read: the kind,
/// instant and ids (the anonymous id included: an alias or an event
/// without a user id is routed by it), a click's `content_id`, the content
/// an event names (`Event::content`, already keys), and the traits features
/// use. Training holds every event of a history in memory
/// to replay it in time order; their other properties and traits and the
/// track name are most of an event's bytes and change no row.
pub fn keep_for_features(mut e: Event) -> Event {
    let keep = |map: &mut serde_json::Map<String, Value>, keys: &[&str]| {
        if map.keys().any(|k| !keys.contains(&k.as_str())) {
            *map = keys
                .iter()
                .filter_map(|k| map.get_mut(*k).map(|v| (k.to_string(), v.take())))
                .collect();
        }
    };
    match e.kind {
        EventKind::Click { .. } => keep(&mut e.properties, &["content_id"]),
        _ => e.properties = Default::default(),
    }
    keep(&mut e.traits, &TRAITS_READ);
    e.name = None;
    e
}

/// Every trait `FeatureState` and `AccountSignals` read.
const TRAITS_READ: [&str; 6] = [
    "seniority",
    "role",
    "tier",
    "target",
    "icp_fit",
    "lifecycle_stage",
];

fn hour_of(ts: Millis) -> usize {
    (ts.rem_euclid(DAY) / HOUR) as usize
}

/// Account-wide series and traits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountSignals {
    pub engagement: Times,
    pub pricing_intent: Times,
    pub intent: Times,
    pub hours: [u32; 24],
    pub tier: Stamped,
    pub target: Stamped,
    pub icp_fit: Stamped,
    pub lifecycle: Stamped,
}

impl AccountSignals {
    /// Applies any event routed to the account (contact or account-level).
    pub fn apply(&mut self, e: &Event) {
        if e.kind.is_engagement() {
            self.engagement.insert(e.ts);
        }
        if e.kind.is_pricing_intent() {
            self.pricing_intent.insert(e.ts);
        }
        if matches!(e.kind, EventKind::Intent { .. }) {
            self.intent.insert(e.ts);
        }
        if matches!(e.kind, EventKind::Open { .. } | EventKind::Click { .. }) {
            self.hours[hour_of(e.ts)] += 1;
        }
        if matches!(e.kind, EventKind::Group) {
            self.tier.set(e.traits.get("tier"), e.ts);
            self.target.set(e.traits.get("target"), e.ts);
            self.icp_fit.set(e.traits.get("icp_fit"), e.ts);
            self.lifecycle.set(e.traits.get("lifecycle_stage"), e.ts);
        }
    }

    pub fn prune(&mut self, now: Millis) {
        for t in [
            &mut self.engagement,
            &mut self.pricing_intent,
            &mut self.intent,
        ] {
            t.prune(now.saturating_sub(HORIZON));
        }
    }
}

/// Names of the features, in vector order.
pub fn feature_names() -> Vec<String> {
    let mut names = Vec::with_capacity(FEATURE_COUNT);
    for k in WINDOWED {
        for w in WINDOWS_DAYS {
            names.push(format!("{}_{w}d", KIND_NAMES[k as usize]));
        }
    }
    for k in WINDOWED {
        names.push(format!("days_since_last_{}", singular(k)));
    }
    for n in [
        "soft_bounces_90d",
        "content_clicks_90d",
        "last5_sends_opened",
        "last5_sends_clicked",
        "last5_sends_replied",
        "click_rate_smoothed",
        "hours_since_last_send",
        "days_since_first_send",
        "seniority_level",
        "role_marketing",
        "role_sales",
        "role_technical",
        "role_finance",
        "account_tier",
        "account_target",
        "account_icp_fit",
        "account_customer",
        "account_engagement_30d",
        "account_pricing_intent_30d",
        "account_intent_signals_30d",
        "send_content_affinity",
        "send_content_known",
    ] {
        names.push(n.to_string());
    }
    names
}

/// Number of features in `FEATURE_SET`.
pub const FEATURE_COUNT: usize = WINDOWED.len() * 4 + 22;

fn singular(k: Kind) -> &'static str {
    match k {
        Kind::Send => "send",
        Kind::Open => "open",
        Kind::Click => "click",
        Kind::Reply => "reply",
        Kind::Page => "page",
        Kind::Meeting => "meeting",
        Kind::Product => "product_use",
        Kind::SoftBounce => "soft_bounce",
        Kind::ContentClick => "content_click",
    }
}

/// The feature vector a live score reads: `features_at` for the content of
/// the contact's latest send before `t` (see `crate::send_affinity`).
pub fn live_features_at(
    c: &FeatureState,
    a: &AccountSignals,
    lib: &ContentLibrary,
    t: Millis,
) -> Vec<f32> {
    features_at(c, a, lib, t, c.content.latest_send_content(t))
}

/// The feature vector of a contact at instant `t` (events strictly before
/// `t`) for a send of `content` (a content key; `None`: no content).
pub fn features_at(
    c: &FeatureState,
    a: &AccountSignals,
    lib: &ContentLibrary,
    t: Millis,
    content: Option<u64>,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(FEATURE_COUNT);
    let count = |times: &Times, days: i64| times.count_before(t, days * DAY) as f32;
    for k in WINDOWED {
        for w in WINDOWS_DAYS {
            out.push(count(&c.times[k as usize], w));
        }
    }
    for k in WINDOWED {
        out.push(days_since(c.times[k as usize].last_before(t), t));
    }
    out.push(count(&c.times[Kind::SoftBounce as usize], 90));
    out.push(count(&c.times[Kind::ContentClick as usize], 90));
    let before: Vec<&SendRecord> = c.sends.iter().filter(|s| s.ts < t).collect();
    let last = &before[before.len().saturating_sub(LAST_SENDS)..];
    let outcomes: [fn(&SendRecord) -> Millis; 3] = [|s| s.open, |s| s.click, |s| s.reply];
    for pick in outcomes {
        out.push(last.iter().filter(|s| pick(s) < t).count() as f32);
    }
    let sends_90 = count(&c.times[Kind::Send as usize], 90);
    let clicks_90 = count(&c.times[Kind::Click as usize], 90);
    // A Beta(1, 9) prior: a contact with no sends sits at a 10% click rate.
    out.push((clicks_90 + 1.0) / (sends_90 + 10.0));
    out.push(match c.times[Kind::Send as usize].last_before(t) {
        Some(l) => ((t - l) as f32 / HOUR as f32).min(DAYS_CAP * 24.0),
        None => DAYS_CAP * 24.0,
    });
    out.push(match c.first_send.filter(|f| *f < t) {
        Some(f) => ((t - f) as f32 / DAY as f32).min(2.0 * DAYS_CAP),
        None => 0.0,
    });
    out.push(seniority_level(c.seniority.value.as_deref()));
    let role = c.role.value.as_deref().unwrap_or("");
    for family in [
        &["marketing", "growth", "demand"][..],
        &["sales", "revenue", "business development", "account"],
        &[
            "engineering",
            "it",
            "data",
            "developer",
            "technology",
            "security",
        ],
        &["finance", "procurement", "accounting"],
    ] {
        out.push(if family.iter().any(|w| role.contains(w)) {
            1.0
        } else {
            0.0
        });
    }
    out.push(a.tier.number().unwrap_or(0.0));
    out.push(if a.target.value.as_deref() == Some("true") {
        1.0
    } else {
        0.0
    });
    out.push(a.icp_fit.number().unwrap_or(0.0).clamp(0.0, 100.0));
    out.push(if a.lifecycle.value.as_deref() == Some("customer") {
        1.0
    } else {
        0.0
    });
    out.push(count(&a.engagement, 30));
    out.push(count(&a.pricing_intent, 30));
    out.push(count(&a.intent, 30));
    out.extend(c.content.affinity(lib, t, content));
    out
}

fn days_since(last: Option<Millis>, t: Millis) -> f32 {
    last.map_or(DAYS_CAP, |l| ((t - l) as f32 / DAY as f32).min(DAYS_CAP))
}

/// An ordinal of the `seniority` trait: executive 4, VP 3, director/head 2,
/// manager 1, anything else or unknown 0.
fn seniority_level(s: Option<&str>) -> f32 {
    let s = s.unwrap_or("");
    let has = |ws: &[&str]| ws.iter().any(|w| s.contains(w));
    if has(&[
        "c-level",
        "chief",
        "ceo",
        "cfo",
        "cto",
        "cmo",
        "founder",
        "owner",
        "executive",
        "president",
    ]) && !s.contains("vice")
    {
        4.0
    } else if has(&["vp", "vice"]) {
        3.0
    } else if has(&["director", "head"]) {
        2.0
    } else if has(&["manager", "lead"]) {
        1.0
    } else {
        0.0
    }
}

#[cfg(test)]
#[path = "features_tests.rs"]
mod tests;
