//! A discovered cluster as a live segment: the features that set it apart
//! turned into conditions of the segment language, so the cluster can be
//! saved, kept live, watched and explained like any segment.
//!
//! k-means membership itself is not a condition: it depends on every
//! feature at once and moves with time, so it could not be explained or
//! timed. The rule keeps what a marketer reads in the description (e.g.
//! `opens_30d high (6.1 vs 1.2)`) and cuts each feature halfway between the
//! cluster's mean and everyone's. Its precision and recall against the
//! cluster (`RuleTest::holds` over the clustered rows) say how faithful it
//! is. Counts over a window map to `events` conditions, "days since last"
//! to recency ones, and the account's tier, fit, target and lifecycle to
//! `account_trait`; the rest (ratios, last-5 outcomes, role, seniority)
//! have no condition and are listed as skipped.

use serde_json::{Value, json};

/// One distinguishing feature as the description gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct Split<'a> {
    pub feature: &'a str,
    /// Whether the cluster sits above everyone on it.
    pub high: bool,
    pub cluster_mean: f64,
    pub overall_mean: f64,
}

/// A threshold on one feature, the feature-space twin of one condition.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleTest {
    pub feature: String,
    pub at_least: Option<f32>,
    pub at_most: Option<f32>,
}

impl RuleTest {
    pub fn holds(&self, value: f32) -> bool {
        self.at_least.is_none_or(|m| value >= m) && self.at_most.is_none_or(|m| value <= m)
    }
}

/// The rule: a condition (JSON, the `condition` of a definition), the
/// feature tests it amounts to, and the features left out.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterRule {
    pub condition: Value,
    pub tests: Vec<RuleTest>,
    pub skipped: Vec<String>,
}

/// Feature name prefix -> event kind of the segment language.
const COUNTED: [(&str, &str); 7] = [
    ("sends", "send"),
    ("opens", "open"),
    ("clicks", "click"),
    ("replies", "reply"),
    ("pages", "page"),
    ("meetings", "meeting"),
    ("product_uses", "product_usage"),
];

/// "days_since_last_*" suffix -> event kind.
const RECENCY: [(&str, &str); 7] = [
    ("send", "send"),
    ("open", "open"),
    ("click", "click"),
    ("reply", "reply"),
    ("page", "page"),
    ("meeting", "meeting"),
    ("product_use", "product_usage"),
];

fn test(feature: &str, at_least: Option<f32>, at_most: Option<f32>) -> RuleTest {
    RuleTest {
        feature: feature.into(),
        at_least,
        at_most,
    }
}

/// The condition and test for one split, or `None` when no condition
/// expresses it.
fn one(s: &Split<'_>) -> Option<(Value, RuleTest)> {
    let cut = (s.cluster_mean + s.overall_mean) / 2.0;
    let f = s.feature;
    if let Some((prefix, days)) = f.rsplit_once('_')
        && let Some(days) = days.strip_suffix('d').and_then(|d| d.parse::<u32>().ok())
        && let Some((_, kind)) = COUNTED.iter().find(|(p, _)| *p == prefix)
    {
        let within = format!("{days}d");
        let event = json!({"kind": kind});
        return Some(if s.high {
            let n = cut.ceil().max(1.0);
            (
                json!({"events": {"event": event, "within": within, "at_least": n as u64}}),
                test(f, Some(n as f32), None),
            )
        } else {
            let n = cut.floor();
            if n < 0.0 {
                return None;
            }
            (
                json!({"events": {"event": event, "within": within, "at_most": n as u64}}),
                test(f, None, Some(n as f32)),
            )
        });
    }
    if let Some(suffix) = f.strip_prefix("days_since_last_")
        && let Some((_, kind)) = RECENCY.iter().find(|(p, _)| *p == suffix)
    {
        let event = json!({"kind": kind});
        return Some(if s.high {
            // Long ago (or never): none within the cut.
            let d = cut.floor().max(1.0);
            (
                json!({"events": {"event": event, "within": format!("{d}d"), "at_most": 0}}),
                test(f, Some(d as f32), None),
            )
        } else {
            let d = cut.ceil().max(1.0);
            (
                json!({"events": {"event": event, "within": format!("{d}d"), "at_least": 1}}),
                test(f, None, Some(d as f32)),
            )
        });
    }
    let trait_test = |name: &str, op: &str, value: Value| json!({"account_trait": {"name": name, "op": op, "value": value}});
    match f {
        "account_tier" | "account_icp_fit" => {
            let name = if f == "account_tier" {
                "tier"
            } else {
                "icp_fit"
            };
            Some(if s.high {
                let n = cut.ceil();
                (
                    trait_test(name, "gte", json!(n)),
                    test(f, Some(n as f32), None),
                )
            } else {
                let n = cut.floor();
                (
                    trait_test(name, "lte", json!(n)),
                    test(f, None, Some(n as f32)),
                )
            })
        }
        "account_target" => Some(if s.high {
            (
                trait_test("target", "eq", json!(true)),
                test(f, Some(1.0), None),
            )
        } else {
            (
                trait_test("target", "ne", json!(true)),
                test(f, None, Some(0.0)),
            )
        }),
        "account_customer" => Some(if s.high {
            (
                trait_test("lifecycle_stage", "eq", json!("customer")),
                test(f, Some(1.0), None),
            )
        } else {
            (
                trait_test("lifecycle_stage", "ne", json!("customer")),
                test(f, None, Some(0.0)),
            )
        }),
        _ => None,
    }
}

/// The rule of a cluster from its distinguishing features; `None` when
/// none of them has a condition.
pub fn cluster_rule(splits: &[Split<'_>]) -> Option<ClusterRule> {
    let mut conditions = Vec::new();
    let mut tests = Vec::new();
    let mut skipped = Vec::new();
    for s in splits {
        match one(s) {
            Some((c, t)) => {
                conditions.push(c);
                tests.push(t);
            }
            None => skipped.push(s.feature.to_string()),
        }
    }
    if conditions.is_empty() {
        return None;
    }
    let condition = if conditions.len() == 1 {
        conditions.remove(0)
    } else {
        json!({ "all": conditions })
    };
    Some(ClusterRule {
        condition,
        tests,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::parse_definitions;

    fn split(feature: &str, high: bool, cluster_mean: f64, overall_mean: f64) -> Split<'_> {
        Split {
            feature,
            high,
            cluster_mean,
            overall_mean,
        }
    }

    #[test]
    fn splits_become_conditions_that_compile() {
        let rule = cluster_rule(&[
            split("opens_30d", true, 6.1, 1.2),
            split("days_since_last_click", false, 3.0, 41.0),
            split("account_target", true, 0.9, 0.4),
            split("click_rate_smoothed", true, 0.3, 0.1),
        ]);
        let Some(rule) = rule else { panic!("a rule") };
        assert_eq!(rule.skipped, ["click_rate_smoothed"]);
        let all = &rule.condition["all"];
        assert_eq!(
            all[0]["events"]["at_least"], 4,
            "halfway between 6.1 and 1.2, up"
        );
        assert_eq!(all[0]["events"]["within"], "30d");
        assert_eq!(all[1]["events"]["within"], "22d");
        assert_eq!(all[2]["account_trait"]["op"], "eq");
        let def =
            json!({"key": "c0", "name": "C0", "entity": "contact", "condition": rule.condition});
        let defs = parse_definitions(&def.to_string()).unwrap_or_else(|e| panic!("{e:?}"));
        let set = crate::SegmentSet::compile(&defs);
        assert!(set.is_ok(), "{:?}", set.err());
        // The tests mirror the conditions.
        assert!(rule.tests[0].holds(4.0) && !rule.tests[0].holds(3.0));
        assert!(rule.tests[1].holds(22.0) && !rule.tests[1].holds(23.0));
    }

    #[test]
    fn low_counts_and_old_recency_read_as_absence() {
        let Some(rule) = cluster_rule(&[
            split("sends_90d", false, 0.4, 5.0),
            split("days_since_last_open", true, 300.0, 60.0),
        ]) else {
            panic!("a rule")
        };
        assert_eq!(rule.condition["all"][0]["events"]["at_most"], 2);
        assert_eq!(rule.condition["all"][1]["events"]["within"], "180d");
        assert_eq!(rule.condition["all"][1]["events"]["at_most"], 0);
        assert!(cluster_rule(&[split("role_sales", true, 1.0, 0.2)]).is_none());
    }
}
