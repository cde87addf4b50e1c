//! The whole model checked against its purpose: at the end of a default
//! history every starter segment of DESIGN.md §4 has members. The oracle
//! evaluates the segments straight from the output, independently of the
//! engine.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::GenerateConfig;
use super::clock::DAY_MS;
use super::test_support::{ms, parse, run, str_at};

#[test]
fn defaults_have_members_in_every_starter_segment() {
    let cfg = GenerateConfig::default();
    let (out, _) = run(&cfg);
    let mut oracle = Oracle::default();
    for e in parse(&out) {
        oracle.apply(&e);
    }
    let counts = oracle.segments(cfg.end.timestamp_millis());
    eprintln!("starter segment sizes at end: {counts:?}");
    for (segment, n) in &counts {
        assert!(*n > 0, "{segment} has no members");
    }
    let customers = oracle
        .accounts
        .values()
        .filter(|a| a.stage == "customer")
        .count();
    let share = customers as f64 / oracle.accounts.len() as f64;
    assert!((0.15..0.4).contains(&share), "customer share {share}");
}

/// A crude reference evaluation of the starter segments (DESIGN.md §4)
/// straight from the event stream, independent of the engine.
#[derive(Default)]
struct Oracle {
    accounts: HashMap<String, AccountState>,
    directory: HashMap<String, String>,
    contacts: HashMap<String, ContactState>,
}

#[derive(Default)]
struct AccountState {
    tier: i64,
    target: bool,
    fit: i64,
    stage: String,
    engagements: Vec<i64>,
    pricing_intent: Vec<i64>,
}

#[derive(Default)]
struct ContactState {
    sends: Vec<String>,
    first_send: Option<i64>,
    opened_or_clicked: HashSet<String>,
    open_click_times: Vec<i64>,
    engagements: Vec<i64>,
    suppressed: bool,
}

const ENGAGEMENTS: [&str; 6] = [
    "Email Opened",
    "Email Link Clicked",
    "Email Replied",
    "Meeting Booked",
    "Product Used",
    "Logged In",
];

impl Oracle {
    fn apply(&mut self, e: &Value) {
        let user = str_at(e, "/userId").map(str::to_owned);
        if str_at(e, "/type") == Some("group") {
            let g = str_at(e, "/groupId").expect("groupId").to_owned();
            match user {
                Some(u) => {
                    self.directory.insert(u, g);
                }
                None => {
                    let a = self.accounts.entry(g).or_default();
                    a.tier = e["traits"]["tier"].as_i64().expect("tier");
                    a.target = e["traits"]["target"].as_bool().expect("target");
                    a.fit = e["traits"]["icp_fit"].as_i64().expect("icp_fit");
                    a.stage = str_at(e, "/traits/lifecycle_stage")
                        .expect("stage")
                        .to_owned();
                }
            }
            return;
        }
        let account = str_at(e, "/context/groupId")
            .map(str::to_owned)
            .or_else(|| user.as_ref().and_then(|u| self.directory.get(u).cloned()));
        let t = ms(e);
        let is_page = str_at(e, "/type") == Some("page");
        let event = str_at(e, "/event").unwrap_or_default();
        let engagement = is_page || ENGAGEMENTS.contains(&event);
        if let Some(a) = account.and_then(|a| self.accounts.get_mut(&a)) {
            if engagement {
                a.engagements.push(t);
            }
            if is_pricing_intent(e) {
                a.pricing_intent.push(t);
            }
        }
        if let Some(u) = user
            && event != "Intent Signal"
        {
            self.apply_contact(u, e, t, engagement);
        }
    }

    fn apply_contact(&mut self, u: String, e: &Value, t: i64, engagement: bool) {
        let c = self.contacts.entry(u).or_default();
        let email_id = str_at(e, "/properties/email_id").map(str::to_owned);
        match str_at(e, "/event").unwrap_or_default() {
            "Email Delivered" | "Email Sent" => {
                c.sends.extend(email_id);
                c.first_send.get_or_insert(t);
            }
            "Email Opened" | "Email Link Clicked" => {
                c.opened_or_clicked.extend(email_id);
                c.open_click_times.push(t);
            }
            "Unsubscribed" | "Email Marked as Spam" => c.suppressed = true,
            "Email Bounced" => c.suppressed |= str_at(e, "/properties/type") == Some("hard"),
            _ => {}
        }
        if engagement {
            c.engagements.push(t);
        }
    }

    fn segments(&self, t: i64) -> BTreeMap<&'static str, usize> {
        let within = |times: &[i64], from: i64, to: i64| {
            times.iter().filter(|x| **x > from && **x <= to).count()
        };
        let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
        for key in [
            "engaged_target_contacts",
            "engaged_non_target_contacts",
            "dormant_high_fit_accounts",
            "decaying_customers",
            "sunset_candidates",
            "tier1_pricing_intent",
        ] {
            counts.insert(key, 0);
        }
        let mut bump = |key: &'static str| *counts.entry(key).or_default() += 1;
        for a in self.accounts.values() {
            if a.fit >= 70 && within(&a.engagements, t - 30 * DAY_MS, t) == 0 {
                bump("dormant_high_fit_accounts");
            }
        }
        for (u, c) in &self.contacts {
            let Some(a) = self.directory.get(u).and_then(|g| self.accounts.get(g)) else {
                continue;
            };
            if c.suppressed {
                continue;
            }
            let recent = within(&c.engagements, t - 30 * DAY_MS, t);
            if recent > 0 {
                bump(if a.target {
                    "engaged_target_contacts"
                } else {
                    "engaged_non_target_contacts"
                });
            }
            let prior = within(&c.engagements, t - 120 * DAY_MS, t - 30 * DAY_MS);
            if a.stage == "customer" && prior >= 3 && 6 * recent <= prior {
                bump("decaying_customers");
            }
            let quiet = within(&c.open_click_times, t - 90 * DAY_MS, t) == 0;
            if c.first_send.is_some_and(|f| f <= t - 90 * DAY_MS) && quiet {
                bump("sunset_candidates");
            }
            let last5 = c
                .sends
                .iter()
                .rev()
                .take(5)
                .filter(|id| c.opened_or_clicked.contains(*id))
                .count();
            if a.tier == 1 && last5 >= 2 && within(&a.pricing_intent, t - 30 * DAY_MS, t) > 0 {
                bump("tier1_pricing_intent");
            }
        }
        counts
    }
}

fn is_pricing_intent(e: &Value) -> bool {
    if str_at(e, "/type") == Some("page") {
        let category = str_at(e, "/properties/category")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let path = str_at(e, "/properties/path").unwrap_or_default();
        return category == "pricing"
            || category == "comparison"
            || path.starts_with("/pricing")
            || path.starts_with("/compare");
    }
    str_at(e, "/event") == Some("Intent Signal")
        && str_at(e, "/properties/source") == Some("first_party")
        && matches!(
            str_at(e, "/properties/topic"),
            Some("pricing" | "comparison")
        )
}
