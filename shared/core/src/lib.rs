//! liveseg's segmentation core: pure, deterministic, no I/O.
//!
//! - `time`: instants (ms since epoch), durations, RFC 3339.
//! - `event`: Segment-Spec validation into typed `Event`s, with per-field errors.
//! - `definition`: the segment language (JSON/YAML), its JSON Schema and checks.
//! - `compile`: definitions into a `SegmentSet` (matchers, traits, dependency masks).
//! - `state`: compact per-contact and per-account state.
//! - `eval`: judging and the next time-driven change; `explain` says why.
//! - `filter`: which events a definition's event filter counts.
//! - `check` and `fields`: per-definition checks and per-field message reading.
//! - `account`: `Account`, the per-account state machine the actors wrap.
//! - `engine`: routing (contact directory, moves) and a single-threaded engine for replay.
//! - `content`: the content library (embeddings); `interest`: contact interest
//!   profiles, which the library turns into vectors.
//! - `presets`: the six starter segments.
//! - `brute`: a brute-force reference evaluator over raw events, for tests.

pub mod account;
pub mod brute;
mod check;
pub mod cluster_rules;
pub mod compile;
pub mod content;
pub mod definition;
pub mod engine;
pub mod eval;
pub mod event;
mod explain;
pub mod features;
mod fields;
mod filter;
pub mod interest;
pub mod labels;
pub mod presets;
pub mod scores;
pub mod send_affinity;
pub mod send_time;
pub mod served;
pub mod state;
pub mod time;
pub mod value;

pub use account::{Account, Cause, Change, ChangeKind, Explained};
pub use compile::SegmentSet;
pub use definition::{Entity, SegmentDefinition, ValidationError};
pub use engine::{Directory, Engine, Membership};
pub use event::{Event, EventKind, FieldError, Limits};
pub use time::Millis;
