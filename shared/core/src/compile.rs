//! Compiling definitions into a `SegmentSet`: the distinct event filters
//! (matchers) whose timestamps state must keep, the traits it must keep, how
//! far back each matcher must remember, dependency masks that let an event
//! re-evaluate only the segments it can affect, and a topological order so a
//! segment is judged after the segments it names.

use crate::content::ContentLibrary;
use crate::definition::*;
use std::sync::Arc;

use crate::time::Millis;
use std::collections::HashMap;

mod builder;
use builder::Builder;

/// Key of the system segment of suppressed contacts.
pub const SUPPRESSED_KEY: &str = "suppressed";

/// Where a matcher's timestamps are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Contact,
    Account,
}

/// A compiled condition; indices point into the set's matchers, traits and segments.
#[derive(Clone, Debug)]
pub enum Cond {
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
    ContactTrait {
        idx: usize,
        test: TraitTest,
    },
    AccountTrait {
        idx: usize,
        test: TraitTest,
    },
    Count {
        scope: Scope,
        m: usize,
        within: Millis,
        at_least: u32,
        at_most: Option<u32>,
    },
    Recency {
        scope: Scope,
        m: usize,
        newer_than: Option<Millis>,
        older_than: Option<Millis>,
        or_never: bool,
    },
    First {
        scope: Scope,
        m: usize,
        older_than: Millis,
    },
    LastSends {
        n: usize,
        at_least: u32,
        open: bool,
        click: bool,
        reply: bool,
    },
    Contacts {
        quantifier: Quantifier,
        count: u32,
        inner: Box<Cond>,
    },
    Rate {
        scope: Scope,
        m: usize,
        recent: Millis,
        prior: Millis,
        min_prior: u32,
        max_ratio: Option<f64>,
        min_ratio: Option<f64>,
    },
    InSegment(usize),
    /// The system segment.
    Suppressed,
    /// The contact's current score of `target` is within `[at_least, at_most]`.
    Score {
        target: crate::labels::Target,
        at_least: f32,
        at_most: f32,
        /// Lowest percentile rank (100 - top_percent), when set.
        min_percentile: Option<f32>,
    },
    /// Interest-profile cosine with a unit `target` >= `at_least`.
    Affinity {
        target: Arc<[f32]>,
        /// What the target is, for explain: `topic "..."` or `content ...`.
        label: String,
        at_least: f32,
    },
}

/// Which state features a segment reads, as bit masks: matchers 0-31
/// (past 31 share bit 31), traits 32-60 (past 60 share bit 60), then
/// suppression, sends and interest; shared bits keep the masks
/// conservative, never wrong.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deps {
    /// Features of the contact being judged.
    pub contact: u64,
    /// Features of the account.
    pub account: u64,
    /// Contact features whose change in ANY contact of the account affects this segment.
    pub any_contact: u64,
}

impl Deps {
    fn union(self, o: Deps) -> Deps {
        Deps {
            contact: self.contact | o.contact,
            account: self.account | o.account,
            any_contact: self.any_contact | o.any_contact,
        }
    }
}

/// Contact feature bits beyond matchers and traits.
pub const FEAT_SENDS: u64 = 1 << 62;
pub const FEAT_SUPPRESS: u64 = 1 << 61;
/// The contact's interest profile (bit 63 is free of trait bits, which stop at 60).
pub const FEAT_INTEREST: u64 = 1 << 63;
/// The contact's current scores: model outputs share the interest bit (a
/// shared bit only re-judges a little more, never less).
pub const FEAT_SCORES: u64 = FEAT_INTEREST;
/// Account feature bit: the set of contacts changed (enter/leave).
pub const FEAT_CONTACT_SET: u64 = 1 << 62;

pub fn feature_bit(i: usize) -> u64 {
    1u64 << i.min(60)
}

#[derive(Clone, Debug)]
pub struct CompiledSegment {
    pub def: SegmentDefinition,
    pub cond: Cond,
    pub deps: Deps,
}

/// The compiled definitions of one tenant. State is shaped by it: when the
/// set changes, state is rebuilt by replaying the log.
#[derive(Clone, Debug)]
pub struct SegmentSet {
    /// Topological order: a segment comes after every segment it names.
    pub segments: Vec<CompiledSegment>,
    pub contact_matchers: Vec<EventFilter>,
    pub account_matchers: Vec<EventFilter>,
    /// How long each matcher must remember timestamps (0: only first/last).
    pub contact_horizon: Vec<Millis>,
    pub account_horizon: Vec<Millis>,
    pub contact_traits: Vec<String>,
    pub account_traits: Vec<String>,
    /// Most sends any last_sends condition looks at.
    pub max_sends: usize,
    /// Whether any condition reads interest profiles (else none is kept).
    pub tracks_interest: bool,
    /// Whether contacts keep their current propensity scores (some
    /// definition has a score condition).
    pub tracks_scores: bool,
    /// The targets score conditions read (what a live scorer must score).
    pub score_targets: Vec<crate::labels::Target>,
    /// Embeddings of registered content and topic texts (affinity).
    pub content: Arc<ContentLibrary>,
    by_key: HashMap<String, usize>,
    fingerprint: u64,
    /// Segment indices per entity, in evaluation order.
    contact_segs: Vec<usize>,
    account_segs: Vec<usize>,
}

impl SegmentSet {
    /// Compiles definitions with an empty content library (no affinity
    /// condition can resolve); the system `suppressed` segment is first.
    pub fn compile(defs: &[SegmentDefinition]) -> Result<SegmentSet, Vec<ValidationError>> {
        SegmentSet::compile_with(defs, Arc::new(ContentLibrary::default()))
    }

    /// Compiles definitions whose affinity conditions resolve in `content`:
    /// every content id they name must be registered and every topic text
    /// embedded.
    pub fn compile_with(
        defs: &[SegmentDefinition],
        content: Arc<ContentLibrary>,
    ) -> Result<SegmentSet, Vec<ValidationError>> {
        // State is laid out by segment, matcher and trait positions: compile
        // in key order so the same definitions give the same layout however
        // they were stored or applied (the fingerprint hashes them in key
        // order, and a checkpoint is trusted on it).
        let mut sorted: Vec<&SegmentDefinition> = defs.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        let defs: Vec<SegmentDefinition> = sorted.into_iter().cloned().collect();
        let defs = &defs[..];
        let mut errors = Vec::new();
        let mut by_def: HashMap<&str, usize> = HashMap::new();
        for (i, d) in defs.iter().enumerate() {
            for e in check_definition(d) {
                errors.push(ValidationError::new(
                    format!("{}.{}", d.key, e.path),
                    e.reason,
                ));
            }
            if by_def.insert(d.key.as_str(), i).is_some() {
                errors.push(ValidationError::new(d.key.clone(), "duplicate segment key"));
            }
        }
        let order = match topo_order(defs, &by_def) {
            Ok(o) => o,
            Err(e) => {
                errors.extend(e);
                return Err(errors);
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut set = SegmentSet::empty();
        set.content = content;
        for i in order {
            let def = &defs[i];
            let mut b = Builder {
                set: &mut set,
                errors: &mut errors,
                key: &def.key,
            };
            let (cond, deps) =
                b.cond_in(&def.condition, "condition", def.entity == Entity::Account);
            let deps = if def.entity == Entity::Contact {
                deps.union(Deps {
                    contact: FEAT_SUPPRESS,
                    ..Deps::default()
                })
            } else {
                deps
            };
            set.by_key.insert(def.key.clone(), set.segments.len());
            match def.entity {
                Entity::Contact => set.contact_segs.push(set.segments.len()),
                Entity::Account => set.account_segs.push(set.segments.len()),
            }
            set.segments.push(CompiledSegment {
                def: def.clone(),
                cond,
                deps,
            });
        }
        // Contacts keep interest profiles once the tenant has content, so
        // Match can rank for them, or once a definition reads them.
        set.tracks_interest |= !set.content.is_empty();
        set.fingerprint = shape_fingerprint(defs, set.tracks_interest);
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    fn empty() -> SegmentSet {
        let def = SegmentDefinition {
            key: SUPPRESSED_KEY.into(),
            name: "Suppressed (unsubscribed, complained, hard bounce)".into(),
            description:
                "System segment; suppressed contacts are left out of every other contact segment."
                    .into(),
            entity: Entity::Contact,
            condition: Condition::All(vec![]),
        };
        let deps = Deps {
            contact: FEAT_SUPPRESS,
            ..Deps::default()
        };
        let mut by_key = HashMap::new();
        by_key.insert(SUPPRESSED_KEY.to_string(), 0);
        SegmentSet {
            segments: vec![CompiledSegment {
                def,
                cond: Cond::Suppressed,
                deps,
            }],
            contact_matchers: vec![],
            account_matchers: vec![],
            contact_horizon: vec![],
            account_horizon: vec![],
            contact_traits: vec![],
            account_traits: vec![],
            max_sends: 0,
            tracks_interest: false,
            tracks_scores: false,
            score_targets: Vec::new(),
            content: Arc::new(ContentLibrary::default()),
            by_key,
            fingerprint: 0,
            contact_segs: vec![0],
            account_segs: vec![],
        }
    }

    pub fn index_of(&self, key: &str) -> Option<usize> {
        self.by_key.get(key).copied()
    }

    /// Indices of segments of one entity, in evaluation order.
    pub fn of_entity(&self, entity: Entity) -> impl Iterator<Item = usize> + '_ {
        self.entity_segs(entity).iter().copied()
    }

    pub fn entity_segs(&self, entity: Entity) -> &[usize] {
        match entity {
            Entity::Contact => &self.contact_segs,
            Entity::Account => &self.account_segs,
        }
    }

    /// A stable fingerprint of the definitions; state built under another
    /// fingerprint has another shape and must be rebuilt from the log.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The user-visible definitions (without the system segment).
    pub fn definitions(&self) -> Vec<SegmentDefinition> {
        self.segments
            .iter()
            .skip(1)
            .map(|s| s.def.clone())
            .collect()
    }
}

/// Version of the state layout (`state.rs`); bump it when `ContactState`
/// or `AccountCore` change, so older checkpoints are rebuilt from the log.
pub const STATE_FORMAT: u32 = 6;

/// The shape of state: the layout version, whether profiles are kept, and
/// the definitions in key order (so the order they were stored or applied
/// in does not matter).
fn shape_fingerprint(defs: &[SegmentDefinition], tracks_interest: bool) -> u64 {
    let mut sorted: Vec<&SegmentDefinition> = defs.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let text = serde_json::to_string(&sorted).unwrap_or_default();
    crate::event::stable_hash(&format!("{STATE_FORMAT}|{tracks_interest}|{text}"))
}

fn topo_order(
    defs: &[SegmentDefinition],
    by_def: &HashMap<&str, usize>,
) -> Result<Vec<usize>, Vec<ValidationError>> {
    let mut errors = Vec::new();
    let mut refs: Vec<Vec<usize>> = vec![vec![]; defs.len()];
    for (i, d) in defs.iter().enumerate() {
        let mut names = Vec::new();
        collect_refs(&d.condition, &mut names);
        for name in names {
            if name == SUPPRESSED_KEY {
                continue;
            }
            match by_def.get(name.as_str()) {
                Some(j) => refs[i].push(*j),
                None => errors.push(ValidationError::new(
                    format!("{}.condition", d.key),
                    format!("in_segment names unknown segment '{name}'"),
                )),
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Depth-first with colours; a grey node reached again is a cycle.
    let mut colour = vec![0u8; defs.len()];
    let mut order = Vec::with_capacity(defs.len());
    fn visit(
        i: usize,
        refs: &[Vec<usize>],
        colour: &mut [u8],
        order: &mut Vec<usize>,
    ) -> Result<(), usize> {
        match colour[i] {
            2 => return Ok(()),
            1 => return Err(i),
            _ => {}
        }
        colour[i] = 1;
        for &j in &refs[i] {
            visit(j, refs, colour, order)?;
        }
        colour[i] = 2;
        order.push(i);
        Ok(())
    }
    for i in 0..defs.len() {
        if let Err(j) = visit(i, &refs, &mut colour, &mut order) {
            return Err(vec![ValidationError::new(
                format!("{}.condition", defs[j].key),
                "in_segment references form a cycle",
            )]);
        }
    }
    Ok(order)
}

fn collect_refs(c: &Condition, out: &mut Vec<String>) {
    match c {
        Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(|c| collect_refs(c, out)),
        Condition::Not(c) => collect_refs(c, out),
        Condition::Contacts(q) => collect_refs(&q.condition, out),
        Condition::InSegment(k) => out.push(k.clone()),
        _ => {}
    }
}

/// Contact feature bit of contact trait `idx` (matchers use bits 0-31).
pub fn contact_trait_bit(idx: usize) -> u64 {
    feature_bit(32 + idx)
}

/// Account feature bit of account trait `idx` (matchers use bits 0-31).
pub fn account_trait_bit(idx: usize) -> u64 {
    feature_bit(32 + idx)
}

/// Matcher feature bit (matchers past 31 share bit 31; conservative).
pub fn matcher_bit(m: usize) -> u64 {
    1u64 << m.min(31)
}

pub use crate::filter::filter_matches;
