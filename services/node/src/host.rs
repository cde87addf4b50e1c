//! `AccountHost`: everything an account actor does, as a plain struct that
//! unit tests drive without actix. The actor shell (`actor.rs`) only
//! forwards messages here and keeps the timer armed.

use crate::insight;
use liveseg_core::state::ContactState;
use liveseg_core::{Account, Change, Event, Explained, Millis, SegmentSet};
use liveseg_store::Seq;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One event for this account, in log order.
#[derive(Debug)]
pub struct Delivery {
    pub seq: Seq,
    pub event: Event,
    /// The contact's state when this event moves it here from another account.
    pub arriving: Option<ContactState>,
}

/// A checkpoint image: the account and the last log sequence applied to it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    pub applied_seq: Seq,
    /// `SegmentSet::fingerprint` of the set that shaped `account`.
    pub fingerprint: u64,
    /// `ContentLibrary::digest` of the library `account` was judged under.
    pub library: u64,
    pub account: Account,
}

/// `Checkpoint` borrowing its account: the same fields in the same order,
/// so it encodes to the same bytes. Checkpoints encode through it because
/// cloning an account of tens of thousands of contacts just to serialise
/// it cost 8x the encoding itself (35k contacts: 46 ms with the clone).
#[derive(Serialize)]
pub struct CheckpointRef<'a> {
    pub applied_seq: Seq,
    pub fingerprint: u64,
    pub library: u64,
    pub account: &'a Account,
}

impl CheckpointRef<'_> {
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let plain = postcard::to_allocvec(self).map_err(|e| format!("encoding checkpoint: {e}"))?;
        Ok(compress(&plain))
    }
}

/// Tags an LZ4-compressed image. Images are compressed because every
/// checkpoint rewrites each changed account whole, and account images are
/// repetitive (ids with common prefixes, mostly-default series): 35k
/// contacts like the fault mix's take 2.1 MB plain and 0.18 MB
/// compressed, which is what Redis receives, appends to its AOF and fsyncs
/// each checkpoint, and what a new owner reads. Images written before
/// compression carry no tag and are read as they are: a plain image starts
/// with two postcard varints, the applied seq and the definitions
/// fingerprint, so it would look tagged only if its seq were 76 and its
/// 64-bit fingerprint 83. (A build from before compression reads a tagged
/// image as unreadable and rebuilds the tenant from the log: correct, but a
/// full replay, so a downgrade across this change is slow.)
const LZ4_TAG: &[u8; 4] = b"LSZ1";
/// LZ4's decompressed size is at most 255x its compressed size: a larger
/// size header is damage, refused before it allocates.
const LZ4_MAX_RATIO: usize = 255;

fn compress(plain: &[u8]) -> Vec<u8> {
    let packed = lz4_flex::compress_prepend_size(plain);
    let mut out = Vec::with_capacity(LZ4_TAG.len() + packed.len());
    out.extend_from_slice(LZ4_TAG);
    out.extend_from_slice(&packed);
    out
}

/// The plain postcard bytes of a stored image, tagged or not.
fn decompress(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, String> {
    let Some(packed) = bytes.strip_prefix(LZ4_TAG.as_slice()) else {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    };
    let declared = packed
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("decoding checkpoint: truncated compressed image")?;
    if declared > packed.len().saturating_mul(LZ4_MAX_RATIO) {
        return Err(format!(
            "decoding checkpoint: a compressed image of {} bytes claims {declared} bytes",
            packed.len()
        ));
    }
    lz4_flex::decompress_size_prepended(packed)
        .map(std::borrow::Cow::Owned)
        .map_err(|e| format!("decoding checkpoint: {e}"))
}

impl Checkpoint {
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        CheckpointRef {
            applied_seq: self.applied_seq,
            fingerprint: self.fingerprint,
            library: self.library,
            account: &self.account,
        }
        .encode()
    }

    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
        postcard::from_bytes::<Checkpoint>(&decompress(bytes)?)
            .map_err(|e| format!("decoding checkpoint: {e}"))
    }

    /// Whether this image can be used under `set` as it is: shaped by the
    /// same definitions and judged under the same content library.
    /// Anything else is rebuilt from the log.
    pub fn fits(&self, set: &SegmentSet) -> bool {
        self.fingerprint == set.fingerprint() && self.library == set.content.digest()
    }
}

pub struct AccountHost {
    pub tenant: Arc<str>,
    pub set: Arc<SegmentSet>,
    pub account: Account,
    pub applied_seq: Seq,
    /// State changed since the last checkpoint.
    pub dirty: bool,
}

impl AccountHost {
    pub fn new(tenant: Arc<str>, set: Arc<SegmentSet>, account: Account, applied_seq: Seq) -> Self {
        AccountHost {
            tenant,
            set,
            account,
            applied_seq,
            dirty: false,
        }
    }

    /// Applies deliveries in order, skipping any at or below `applied_seq`
    /// (already in the checkpoint this host was loaded from): exactly once.
    pub fn apply(&mut self, batch: Vec<Delivery>, now: Millis, out: &mut Vec<Change>) -> usize {
        let mut applied = 0;
        for d in batch {
            if d.seq <= self.applied_seq {
                continue;
            }
            self.account
                .apply(&self.set, &d.event, d.arriving, now, out);
            self.applied_seq = d.seq;
            applied += 1;
        }
        self.dirty |= applied > 0;
        applied
    }

    /// Removes a contact that moves away at log position `seq`.
    pub fn take_contact(
        &mut self,
        contact: &str,
        now: Millis,
        out: &mut Vec<Change>,
    ) -> Option<ContactState> {
        let c = self.account.take_contact(&self.set, contact, now, out);
        self.dirty |= c.is_some();
        c
    }

    /// Fires timers due at or before `now`.
    pub fn on_time(&mut self, now: Millis, out: &mut Vec<Change>) {
        let before = out.len();
        self.account.advance_to(&self.set, now, out);
        self.dirty |= out.len() > before;
    }

    pub fn next_timer(&self) -> Option<Millis> {
        self.account.next_timer()
    }

    /// A checkpoint image if anything changed since the last one (or `force`).
    pub fn snapshot(&mut self, force: bool) -> Result<Option<(Seq, Vec<u8>)>, String> {
        if !self.dirty && !force {
            return Ok(None);
        }
        let bytes = CheckpointRef {
            applied_seq: self.applied_seq,
            fingerprint: self.set.fingerprint(),
            library: self.set.content.digest(),
            account: &self.account,
        }
        .encode()?;
        self.dirty = false;
        Ok(Some((self.applied_seq, bytes)))
    }

    pub fn query(&self, q: &Query, now: Millis) -> Answer {
        let set = &self.set;
        match q {
            Query::ContactSegments(id) => Answer::Segments(self.account.contact_segments(set, id)),
            Query::Account => Answer::Account(AccountView {
                segments: self.account.account_segments(set),
                contacts: self
                    .account
                    .contacts
                    .iter()
                    .map(|c| {
                        (
                            c.id.to_string(),
                            c.member
                                .iter()
                                .filter_map(|i| set.segments.get(i).map(|s| s.def.key.clone()))
                                .collect(),
                        )
                    })
                    .collect(),
            }),
            Query::Explain { segment, contact } => {
                let seg = match set.index_of(segment) {
                    Some(s) => s,
                    None => return Answer::Explained(None),
                };
                Answer::Explained(self.account.explain(set, seg, contact.as_deref(), now))
            }
            Query::Members => {
                let mut out = Vec::new();
                for seg in self.account.core.member.iter() {
                    out.push((set.segments[seg].def.key.clone(), None));
                }
                for c in &self.account.contacts {
                    for seg in c.member.iter() {
                        out.push((set.segments[seg].def.key.clone(), Some(c.id.to_string())));
                    }
                }
                Answer::Members(out)
            }
            Query::Stats => Answer::Stats {
                contacts: self.account.contacts.len(),
                applied_seq: self.applied_seq,
            },
            Query::Interest(id) => {
                Answer::Interest(self.account.contact(id).map(|c| c.interest.clone()))
            }
            // Features see events strictly before their instant: `now + 1`
            // counts everything applied so far.
            Query::FeatureRows => {
                Answer::FeatureRows(self.account.feature_rows(set, now.saturating_add(1)))
            }
            Query::InsightSummary { seed } => Answer::InsightSummary(Box::new(insight::summarize(
                &self.account,
                set,
                *seed,
                now.saturating_add(1),
            ))),
            Query::Lookalikes(probe) => {
                Answer::Lookalikes(probe.scan(&self.account, set, now.saturating_add(1)))
            }
            Query::ScoringRows(targets) => Answer::ScoringRows(crate::scorer::scoring_rows(
                &self.account,
                set,
                targets,
                now.saturating_add(1),
            )),
            Query::SendTiming(contact) => Answer::SendTiming(
                insight::contact_timing(&self.account, contact, now.saturating_add(1))
                    .map(Box::new),
            ),
        }
    }
}

/// Read-only questions an account answers.
#[derive(Debug, Clone)]
pub enum Query {
    ContactSegments(String),
    Account,
    Explain {
        segment: String,
        contact: Option<String>,
    },
    /// Every (segment key, contact id or None for the account) membership.
    Members,
    Stats,
    /// A contact's interest profile (content matching).
    Interest(String),
    /// Model features of every unsuppressed contact now (the live scorer).
    FeatureRows,
    /// This account's share of tenant-wide insight figures; `seed` is a
    /// lookalike seed segment's index.
    InsightSummary {
        seed: Option<usize>,
    },
    /// The best lookalikes among this account's contacts.
    Lookalikes(Arc<insight::LookalikeProbe>),
    /// A contact's send-timing inputs.
    SendTiming(String),
    /// Features and the latest score of these targets (the live scorer).
    ScoringRows(Arc<[liveseg_core::labels::Target]>),
}

#[derive(Debug)]
pub enum Answer {
    Segments(Option<Vec<String>>),
    Account(AccountView),
    Explained(Option<Explained>),
    Members(Vec<(String, Option<String>)>),
    Stats { contacts: usize, applied_seq: Seq },
    Interest(Option<liveseg_core::content::Interest>),
    FeatureRows(Vec<(String, Vec<f32>)>),
    InsightSummary(Box<insight::Summary>),
    Lookalikes(Vec<insight::LookalikeHit>),
    SendTiming(Option<Box<insight::ContactTiming>>),
    ScoringRows(Vec<crate::scorer::ScoringRow>),
}

#[derive(Debug, Clone)]
pub struct AccountView {
    pub segments: Vec<String>,
    pub contacts: Vec<(String, Vec<String>)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use liveseg_core::event::{Limits, parse_message};
    use serde_json::json;

    fn event(id: &str, ts: &str, user: &str) -> Event {
        let v = json!({"type":"track","event":"Meeting Booked","messageId":id,"userId":user,"timestamp":ts,"context":{"groupId":"acme"}});
        match parse_message(&v, Millis::MAX / 2, &Limits::default()) {
            Ok(e) => e,
            Err(e) => panic!("{e}"),
        }
    }

    fn host() -> AccountHost {
        let set = match SegmentSet::compile(&liveseg_core::presets::presets()) {
            Ok(s) => Arc::new(s),
            Err(e) => panic!("{e:?}"),
        };
        let account = Account::new("acme", &set);
        AccountHost::new("t".into(), set, account, 0)
    }

    /// A checkpoint is reused only under the definitions and the content
    /// library it was made under: content registered while this state was
    /// elsewhere (a node down, a shard moved) makes it rebuild.
    #[test]
    fn an_image_fits_only_its_definitions_and_library() {
        use liveseg_core::content::ContentLibrary;
        let defs = liveseg_core::presets::presets();
        let with = |items: &[(&str, [f32; 2])]| {
            let mut lib = ContentLibrary::default();
            for (id, v) in items {
                lib.insert_content(id, None, v).expect("test vector");
            }
            SegmentSet::compile_with(&defs, Arc::new(lib)).expect("presets compile")
        };
        let before = with(&[("a", [1.0, 0.0])]);
        let mut h = AccountHost::new(
            "t".into(),
            Arc::new(before.clone()),
            Account::new("acme", &before),
            0,
        );
        let bytes = match h.snapshot(true) {
            Ok(Some((_, bytes))) => bytes,
            other => panic!("{other:?}"),
        };
        let image = Checkpoint::decode(&bytes).expect("decodes");
        assert!(image.fits(&before));
        assert!(image.fits(&with(&[("a", [2.0, 0.0])])), "same unit vector");
        let after = with(&[("a", [1.0, 0.0]), ("b", [0.0, 1.0])]);
        assert_eq!(after.fingerprint(), before.fingerprint(), "same shape");
        assert!(!image.fits(&after), "content registered since");
        let other_defs = SegmentSet::compile_with(&defs[..1], before.content.clone())
            .expect("one preset compiles");
        assert!(!image.fits(&other_defs), "other definitions");
    }

    /// Images are stored compressed; one written before compression (plain
    /// postcard) still reads; a damaged one is an error, not a panic or a
    /// huge allocation.
    #[test]
    fn images_compress_and_plain_or_damaged_ones_are_handled() {
        let mut h = host();
        let mut out = Vec::new();
        let batch: Vec<Delivery> = (0..200)
            .map(|i| Delivery {
                seq: i + 1,
                event: event(&format!("m{i}"), "2026-01-01T00:00:00Z", &format!("u{i}")),
                arriving: None,
            })
            .collect();
        let now = batch[0].event.ts;
        h.apply(batch, now, &mut out);
        let fields = CheckpointRef {
            applied_seq: h.applied_seq,
            fingerprint: h.set.fingerprint(),
            library: h.set.content.digest(),
            account: &h.account,
        };
        let plain = postcard::to_allocvec(&fields).expect("encodes");
        let stored = fields.encode().expect("encodes");
        assert!(stored.starts_with(LZ4_TAG) && stored.len() * 4 < plain.len());
        let want = serde_json::to_value(&h.account).expect("json");
        for bytes in [&stored, &plain] {
            let image = Checkpoint::decode(bytes).expect("decodes");
            assert_eq!(image.applied_seq, 200);
            assert_eq!(serde_json::to_value(&image.account).expect("json"), want);
        }
        let mut huge = stored.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = Checkpoint::decode(&huge).unwrap_err();
        assert!(err.contains("claims"), "{err}");
        let mut garbled = stored.clone();
        let mid = garbled.len() / 2;
        garbled.truncate(mid);
        assert!(Checkpoint::decode(&garbled).is_err());
        assert!(Checkpoint::decode(&stored[..6]).is_err());
    }

    #[test]
    fn deliveries_at_or_below_the_checkpoint_are_skipped() {
        let mut h = host();
        let mut out = Vec::new();
        let e1 = event("m1", "2026-01-01T00:00:00Z", "u1");
        let now = e1.ts;
        assert_eq!(
            h.apply(
                vec![Delivery {
                    seq: 5,
                    event: e1,
                    arriving: None
                }],
                now,
                &mut out
            ),
            1
        );
        let again = event("m1", "2026-01-01T00:00:00Z", "u1");
        assert_eq!(
            h.apply(
                vec![Delivery {
                    seq: 5,
                    event: again,
                    arriving: None
                }],
                now,
                &mut out
            ),
            0
        );
        assert_eq!(h.applied_seq, 5);
        assert_eq!(out.len(), 1, "{out:?}");
    }

    #[test]
    fn snapshot_round_trips_and_clears_dirty() {
        let mut h = host();
        let mut out = Vec::new();
        let e1 = event("m1", "2026-01-01T00:00:00Z", "u1");
        let now = e1.ts;
        h.apply(
            vec![Delivery {
                seq: 1,
                event: e1,
                arriving: None,
            }],
            now,
            &mut out,
        );
        let snap = h.snapshot(false);
        let Ok(Some((seq, bytes))) = snap else {
            panic!("no snapshot")
        };
        assert_eq!(seq, 1);
        assert!(matches!(h.snapshot(false), Ok(None)));
        let image = Checkpoint::decode(&bytes);
        let Ok(image) = image else { panic!("decode") };
        let restored = image.account.restore();
        assert_eq!(
            restored.contact_segments(&h.set, "u1"),
            h.account.contact_segments(&h.set, "u1")
        );
        assert_eq!(restored.next_timer(), h.account.next_timer());
    }
}
