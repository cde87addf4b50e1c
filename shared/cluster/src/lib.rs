//! Cluster mode: which node serves which shard, and the proof it may.
//!
//! # Module map
//!
//! - [`placement`] — pure: rendezvous (HRW) hashing of shards onto live
//!   nodes with a bounded-load cap and a limit on moves per round.
pub mod placement;
