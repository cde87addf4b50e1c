//! Tenant-wide insights computed where the state lives: each account actor
//! answers for its own contacts (read-only questions, see `host::Query`)
//! and the caller merges the shares.
//!
//! A lookalike search takes two rounds. First every account returns a
//! [`Summary`]: column sums over its contacts' features, the raw feature
//! rows of its seed members and the sum of their interest vectors. The
//! caller turns the merged summary into a [`LookalikeProbe`] (feature means
//! and deviations, the seed profile of `liveseg_learn::neighbours`, the
//! seed interest centroid), and every account then scans its non-members
//! against it into a bounded `TopN`, which the caller merges. Only seed rows
//! and the best `limit` per account travel; candidate rows never leave
//! their actor. The feature half equals `liveseg model lookalike` over the
//! same history: the same standardisation (population z-scores over every
//! unsuppressed contact) and the same cosine to the centroid of unit seeds.
//! Brute force is exact and cheap at this scale; see
//! `liveseg_learn::neighbours` for where an index would take over.

use liveseg_core::SegmentSet;
use liveseg_core::account::Account;
use liveseg_core::content::dot;
use liveseg_core::features::feature_names;
use liveseg_core::labels::Target;
use liveseg_core::scores::ScoreSlot;
use liveseg_core::time::Millis;
use liveseg_learn::neighbours::{NeighbourError, SeedProfile, Similarity, TopN};

/// Shared features named per lookalike.
const SHARED_FEATURES: usize = 3;
/// Interest weight when seeds have interest profiles and the caller set none.
pub const DEFAULT_INTEREST_WEIGHT: f32 = 0.3;

/// One account's share of the figures tenant-wide insights start from.
/// Sums and lists, so shares merge in any order.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Unsuppressed contacts with features.
    pub rows: u64,
    pub sum: Vec<f64>,
    pub sumsq: Vec<f64>,
    /// (contact, raw features) of the seed segment's members.
    pub seeds: Vec<(String, Vec<f32>)>,
    /// Sum of the seeds' unit interest vectors, and how many had one.
    pub seed_interest: Vec<f64>,
    pub seed_interest_rows: u64,
    /// Opens and clicks by UTC hour (the account's, summed: the tenant's).
    pub hours: [u64; 24],
    /// Current unsubscribe_7d scores: their sum and count.
    pub unsubscribe_sum: f64,
    pub unsubscribe_rows: u64,
}

impl Summary {
    pub fn merge(&mut self, other: Summary) {
        self.rows += other.rows;
        add_into(&mut self.sum, &other.sum);
        add_into(&mut self.sumsq, &other.sumsq);
        self.seeds.extend(other.seeds);
        add_into(&mut self.seed_interest, &other.seed_interest);
        self.seed_interest_rows += other.seed_interest_rows;
        for (a, b) in self.hours.iter_mut().zip(other.hours) {
            *a += b;
        }
        self.unsubscribe_sum += other.unsubscribe_sum;
        self.unsubscribe_rows += other.unsubscribe_rows;
    }

    /// Mean current P(unsubscribe_7d) over scored contacts (0 when none).
    pub fn unsubscribe_mean(&self) -> f64 {
        if self.unsubscribe_rows == 0 {
            0.0
        } else {
            self.unsubscribe_sum / self.unsubscribe_rows as f64
        }
    }

    /// The hour histogram as `send_time::best_hour` takes it.
    pub fn hours_u32(&self) -> [u32; 24] {
        std::array::from_fn(|h| u32::try_from(self.hours[h]).unwrap_or(u32::MAX))
    }
}

fn add_into(acc: &mut Vec<f64>, more: &[f64]) {
    if acc.len() < more.len() {
        acc.resize(more.len(), 0.0);
    }
    acc.iter_mut().zip(more).for_each(|(a, b)| *a += b);
}

fn unit(v: &[f32]) -> Option<Vec<f32>> {
    let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    (norm > 0.0 && norm.is_finite())
        .then(|| v.iter().map(|x| (f64::from(*x) / norm) as f32).collect())
}

/// The account's share at instant `t` (features see events before `t`);
/// `seed` is the seed segment's index, if any.
pub fn summarize(account: &Account, set: &SegmentSet, seed: Option<usize>, t: Millis) -> Summary {
    let mut s = Summary::default();
    if let Some(signals) = account.core.signals.as_deref() {
        for (h, n) in signals.hours.iter().enumerate() {
            s.hours[h] += u64::from(*n);
        }
    }
    for (c, f) in account.contact_features(set, t) {
        s.rows += 1;
        if s.sum.is_empty() {
            s.sum = vec![0.0; f.len()];
            s.sumsq = vec![0.0; f.len()];
        }
        for (j, v) in f.iter().enumerate() {
            let v = f64::from(*v);
            s.sum[j] += v;
            s.sumsq[j] += v * v;
        }
        if let Some(slot) = c
            .scores
            .as_deref()
            .and_then(|sc| sc.get(Target::Unsubscribe7d, t))
        {
            s.unsubscribe_sum += f64::from(slot.scored.probability);
            s.unsubscribe_rows += 1;
        }
        if seed.is_some_and(|i| c.member.get(i)) {
            if let Some(v) = c.interest.vector(&set.content).as_deref().and_then(unit) {
                let v: Vec<f64> = v.iter().map(|x| f64::from(*x)).collect();
                add_into(&mut s.seed_interest, &v);
                s.seed_interest_rows += 1;
            }
            s.seeds.push((c.id.to_string(), f));
        }
    }
    s
}

/// What every account scans its contacts against.
#[derive(Debug, Clone)]
pub struct LookalikeProbe {
    pub seed: usize,
    pub mean: Vec<f32>,
    pub sd: Vec<f32>,
    pub profile: SeedProfile,
    /// Unit seed interest centroid, when seeds have interest profiles.
    pub interest: Option<Vec<f32>>,
    pub interest_weight: f32,
    pub limit: usize,
}

/// Why no probe could be built.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("the seed segment has no unsuppressed members with features")]
    NoSeeds,
    #[error("seed profile: {0}")]
    Profile(#[from] NeighbourError),
}

impl LookalikeProbe {
    /// From the merged summary. `interest_weight` None: the default when
    /// seeds have interest, else 0; a weight without seed interest is 0.
    pub fn new(
        total: &Summary,
        seed: usize,
        interest_weight: Option<f32>,
        limit: usize,
    ) -> Result<LookalikeProbe, ProbeError> {
        if total.seeds.is_empty() || total.rows == 0 {
            return Err(ProbeError::NoSeeds);
        }
        let n = total.rows as f64;
        let (mean, sd): (Vec<f32>, Vec<f32>) = total
            .sum
            .iter()
            .zip(&total.sumsq)
            .map(|(s, sq)| {
                let mean = s / n;
                let var = (sq / n - mean * mean).max(0.0);
                let sd = if var > 1e-12 { var.sqrt() } else { 1.0 };
                (mean as f32, sd as f32)
            })
            .unzip();
        let dim = mean.len();
        let mut seeds = Vec::with_capacity(total.seeds.len() * dim);
        let mut ordered: Vec<&(String, Vec<f32>)> = total.seeds.iter().collect();
        // Summation order fixed by contact id: the same centroid however
        // the shares arrived.
        ordered.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, row) in ordered {
            seeds.extend(standardise(row, &mean, &sd));
        }
        let profile = SeedProfile::from_rows(&seeds, dim, Similarity::Cosine)?;
        let interest = (total.seed_interest_rows > 0)
            .then(|| {
                let v: Vec<f32> = total.seed_interest.iter().map(|x| *x as f32).collect();
                unit(&v)
            })
            .flatten();
        let interest_weight = match (&interest, interest_weight) {
            (None, _) => 0.0,
            (Some(_), Some(w)) => w,
            (Some(_), None) => DEFAULT_INTEREST_WEIGHT,
        };
        Ok(LookalikeProbe {
            seed,
            mean,
            sd,
            profile,
            interest,
            interest_weight,
            limit,
        })
    }

    /// Scans the account's contacts outside the seed (and not suppressed).
    pub fn scan(&self, account: &Account, set: &SegmentSet, t: Millis) -> Vec<LookalikeHit> {
        let centroid = unit(&self.profile.centroid).unwrap_or_default();
        let mut top: TopN<String> = TopN::new(self.limit);
        let mut details = std::collections::HashMap::new();
        for (c, f) in account.contact_features(set, t) {
            if c.member.get(self.seed) {
                continue;
            }
            let z = standardise(&f, &self.mean, &self.sd);
            let Some(zu) = unit(&z) else { continue };
            let feature = dot(&zu, &centroid);
            let interest = self.interest.as_ref().and_then(|target| {
                let v = c.interest.vector(&set.content)?;
                Some(dot(&unit(&v)?, target))
            });
            let w = self.interest_weight;
            let score = (1.0 - w) * feature + w * interest.unwrap_or(0.0);
            let id = c.id.to_string();
            if top.push(id.clone(), score) {
                details.insert(id, (feature, interest, zu));
            }
        }
        let names = feature_names();
        top.into_sorted_vec()
            .into_iter()
            .filter_map(|(contact, score)| {
                let (feature, interest, zu) = details.remove(&contact)?;
                let mut parts: Vec<(usize, f32)> = zu
                    .iter()
                    .zip(&centroid)
                    .map(|(a, b)| a * b)
                    .enumerate()
                    .filter(|(_, p)| *p > 0.0)
                    .collect();
                parts.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                let shared = parts
                    .into_iter()
                    .take(SHARED_FEATURES)
                    .map(|(j, p)| (names.get(j).cloned().unwrap_or_default(), p))
                    .collect();
                Some(LookalikeHit {
                    contact,
                    account: account.core.id.to_string(),
                    score,
                    feature_similarity: feature,
                    interest_similarity: interest,
                    shared,
                })
            })
            .collect()
    }
}

fn standardise(row: &[f32], mean: &[f32], sd: &[f32]) -> Vec<f32> {
    row.iter()
        .zip(mean.iter().zip(sd))
        .map(|(v, (m, s))| ((f64::from(*v) - f64::from(*m)) / f64::from(*s)) as f32)
        .collect()
}

/// One candidate as an account found it.
#[derive(Debug, Clone, PartialEq)]
pub struct LookalikeHit {
    pub contact: String,
    pub account: String,
    pub score: f32,
    pub feature_similarity: f32,
    pub interest_similarity: Option<f32>,
    /// (feature, part of the feature cosine), largest first.
    pub shared: Vec<(String, f32)>,
}

/// Merges the accounts' hits: best `limit`, ties by the lower contact id
/// (the order `TopN` keeps), whatever order the accounts answered in.
pub fn merge_hits(hits: Vec<LookalikeHit>, limit: usize) -> Vec<LookalikeHit> {
    let mut top: TopN<String> = TopN::new(limit);
    let mut by_id = std::collections::HashMap::new();
    for h in hits {
        if top.push(h.contact.clone(), h.score) {
            by_id.insert(h.contact.clone(), h);
        }
    }
    top.into_sorted_vec()
        .into_iter()
        .filter_map(|(id, _)| by_id.remove(&id))
        .collect()
}

/// What send timing needs from a contact's actor.
#[derive(Debug, Clone)]
pub struct ContactTiming {
    pub contact_hours: [u32; 24],
    pub account_hours: [u32; 24],
    pub unsubscribe: Option<ScoreSlot>,
}

/// The contact's hours, its account's and its current unsubscribe score;
/// `None` when the contact is unknown or keeps no features.
pub fn contact_timing(account: &Account, contact: &str, t: Millis) -> Option<ContactTiming> {
    let c = account.contact(contact)?;
    let f = c.features.as_deref()?;
    Some(ContactTiming {
        contact_hours: f.hours,
        account_hours: account.core.signals.as_deref().map_or([0; 24], |s| s.hours),
        unsubscribe: c
            .scores
            .as_deref()
            .and_then(|s| s.get(Target::Unsubscribe7d, t))
            .cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use liveseg_core::definition::parse_definitions;
    use liveseg_core::event::{Event, Limits, parse_message};
    use serde_json::json;
    use std::collections::BTreeMap;

    const DEFS: &str = r#"
- key: keep_features
  name: k
  entity: contact
  condition: {score: {target: click_7d, at_least: 0.5}}
- key: clickers
  name: c
  entity: contact
  condition: {events: {event: {kind: click}, within: 30d, at_least: 1}}
"#;

    fn set() -> SegmentSet {
        let defs = parse_definitions(DEFS).unwrap_or_else(|e| panic!("{e:?}"));
        SegmentSet::compile(&defs).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn event(n: usize, user: &str, event: &str, day: u32) -> Event {
        let v = json!({"type":"track","event":event,"messageId":format!("m{n}"),"userId":user,
            "timestamp":format!("2026-03-{day:02}T10:00:00Z"),"context":{"groupId":"acme"},
            "properties":{"email_id":"e1"}});
        parse_message(&v, Millis::MAX / 2, &Limits::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// u1 and u2 click (seeds), u3 opens a lot, u4 only receives, u5
    /// clicked but unsubscribed.
    fn account(set: &SegmentSet) -> Account {
        let mut a = Account::new("acme", set);
        let mut out = Vec::new();
        let mut n = 0;
        let mut add = |a: &mut Account, user: &str, name: &str, day: u32| {
            n += 1;
            let e = event(n, user, name, day);
            let ts = e.ts;
            a.apply(set, &e, None, ts, &mut out);
        };
        for user in ["u1", "u2", "u3", "u4", "u5"] {
            for day in 1..=4 {
                add(&mut a, user, "Email Delivered", day);
            }
        }
        for day in 2..=4 {
            add(&mut a, "u1", "Email Opened", day);
            add(&mut a, "u1", "Email Link Clicked", day);
            add(&mut a, "u2", "Email Opened", day);
            add(&mut a, "u3", "Email Opened", day);
            add(&mut a, "u3", "Email Opened", day);
        }
        add(&mut a, "u2", "Email Link Clicked", 4);
        add(&mut a, "u5", "Email Link Clicked", 3);
        add(&mut a, "u5", "Unsubscribed", 4);
        a
    }

    const T: Millis = 1_773_000_000_000; // 2026-03-08T20:00:00Z

    #[test]
    fn summaries_count_unsuppressed_contacts_and_list_seed_rows() {
        let set = set();
        let a = account(&set);
        let seed = set.index_of("clickers");
        let s = summarize(&a, &set, seed, T);
        assert_eq!(s.rows, 4, "u5 unsubscribed");
        let mut seeds: Vec<&str> = s.seeds.iter().map(|(c, _)| c.as_str()).collect();
        seeds.sort();
        assert_eq!(seeds, ["u1", "u2"]);
        assert_eq!(s.hours[10], 17, "12 opens and 5 clicks at 10:00");
        // Shares merge by addition.
        let mut twice = s.clone();
        twice.merge(s.clone());
        assert_eq!(twice.rows, 8);
        assert_eq!(twice.sum[0], 2.0 * s.sum[0]);
        assert_eq!(twice.seeds.len(), 4);
    }

    #[test]
    fn lookalikes_exclude_seeds_and_the_suppressed_and_rank_the_closest_first() {
        let set = set();
        let a = account(&set);
        let Some(seed) = set.index_of("clickers") else {
            panic!("no seed segment")
        };
        let total = summarize(&a, &set, Some(seed), T);
        let probe = LookalikeProbe::new(&total, seed, None, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(probe.interest_weight, 0.0, "no content: no interest");
        let hits = probe.scan(&a, &set, T);
        let ids: Vec<&str> = hits.iter().map(|h| h.contact.as_str()).collect();
        // u3 opens like the seeds do; u4 only receives mail.
        assert_eq!(ids, ["u3", "u4"]);
        assert!(hits[0].score > hits[1].score);
        assert!(
            hits[0].shared.iter().any(|(f, _)| f.contains("open")),
            "{hits:?}"
        );
        // Merging is order-independent and keeps the best `limit`.
        let mut reversed = hits.clone();
        reversed.reverse();
        assert_eq!(merge_hits(reversed, 1), merge_hits(hits.clone(), 1));
        assert_eq!(merge_hits(hits, 1)[0].contact, "u3");
    }

    #[test]
    fn interest_similarity_weighs_in_when_seeds_have_profiles() {
        use liveseg_core::content::ContentLibrary;
        let mut lib = ContentLibrary::default();
        lib.insert_content("guide", Some("/guide"), &[1.0, 0.0, 0.0])
            .unwrap_or_else(|e| panic!("{e:?}"));
        lib.insert_content("hiring", Some("/hiring"), &[0.0, 1.0, 0.0])
            .unwrap_or_else(|e| panic!("{e:?}"));
        let defs = parse_definitions(DEFS).unwrap_or_else(|e| panic!("{e:?}"));
        let set = SegmentSet::compile_with(&defs, std::sync::Arc::new(lib))
            .unwrap_or_else(|e| panic!("{e:?}"));
        let mut a = Account::new("acme", &set);
        let mut out = Vec::new();
        // Seeds u1 and u2 click the guide; u3 read the hiring post's page,
        // u4 the guide's (page views: not clickers).
        let events = [
            json!({"type":"track","event":"Email Link Clicked","userId":"u1",
                "properties":{"email_id":"e1","content_id":"guide"}}),
            json!({"type":"track","event":"Email Link Clicked","userId":"u2",
                "properties":{"email_id":"e1","content_id":"guide"}}),
            json!({"type":"page","name":"p","userId":"u3","properties":{"path":"/hiring"}}),
            json!({"type":"page","name":"p","userId":"u4","properties":{"path":"/guide"}}),
        ];
        for (n, mut v) in events.into_iter().enumerate() {
            v["messageId"] = json!(format!("c{n}"));
            v["timestamp"] = json!("2026-01-05T10:00:00Z");
            v["context"] = json!({"groupId":"acme"});
            let e = parse_message(&v, Millis::MAX / 2, &Limits::default())
                .unwrap_or_else(|e| panic!("{e}"));
            let ts = e.ts;
            a.apply(&set, &e, None, ts, &mut out);
        }
        let t = 1_767_830_400_000; // 2026-01-08
        let Some(seed) = set.index_of("clickers") else {
            panic!("no seed segment")
        };
        let total = summarize(&a, &set, Some(seed), t);
        assert_eq!(total.seed_interest_rows, 2);
        let probe =
            LookalikeProbe::new(&total, seed, Some(1.0), 10).unwrap_or_else(|e| panic!("{e}"));
        let hits = probe.scan(&a, &set, t);
        let by: BTreeMap<&str, &LookalikeHit> =
            hits.iter().map(|h| (h.contact.as_str(), h)).collect();
        let (u3, u4) = (by["u3"], by["u4"]);
        assert!(
            (u4.interest_similarity.unwrap_or(0.0) - 1.0).abs() < 1e-5,
            "{u4:?}"
        );
        assert!(u3.interest_similarity.unwrap_or(1.0).abs() < 1e-5, "{u3:?}");
        // Weight 1: interest alone decides.
        assert_eq!(hits[0].contact, "u4");
        assert!((u4.score - 1.0).abs() < 1e-5);
        // The default weight applies when the caller sets none.
        let default = LookalikeProbe::new(&total, seed, None, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(default.interest_weight, DEFAULT_INTEREST_WEIGHT);
    }

    #[test]
    fn a_seed_without_members_is_refused() {
        let set = set();
        let a = account(&set);
        let Some(seed) = set.index_of("keep_features") else {
            panic!("no segment")
        };
        let total = summarize(&a, &set, Some(seed), T);
        assert!(matches!(
            LookalikeProbe::new(&total, seed, None, 10),
            Err(ProbeError::NoSeeds)
        ));
    }

    #[test]
    fn timing_reads_the_contact_and_account_hours() {
        let set = set();
        let a = account(&set);
        let Some(t) = contact_timing(&a, "u3", T) else {
            panic!("u3 keeps features")
        };
        assert_eq!(t.contact_hours[10], 6);
        assert_eq!(t.account_hours[10], 17);
        assert!(t.unsubscribe.is_none());
        assert!(contact_timing(&a, "nobody", T).is_none());
    }
}
