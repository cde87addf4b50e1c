//! Cluster mode: which node serves which shard, and the proof it may.
//!
//! # Module map
//!
//! - [`placement`] — pure: tenant → shard hashing, and rendezvous (HRW)
//!   hashing of shards onto live nodes with a bounded-load cap and a limit
//!   on moves per round.
//! - [`coordinator`] — the coordinator's Redis state: heartbeats judged on
//!   Redis's clock, the assignment table, fenced leader writes, handoff
//!   intents.
//! - [`handoff`] — pure: which planned moves wait for a handoff
//!   (make-before-break) and which the leader writes now.
//! - [`member`] — a node's control loop: heartbeat, leader election and
//!   placement rounds, shard lease acquire/renew/drain/release with a
//!   monotonic local deadline, behind the [`member::ShardHost`] trait.
//! - [`journal`] — the ownership journal every member writes on the shared
//!   monotonic clock, and the checker that measures double ownership.
//!
//! The safety argument in one place: a node serves a shard only while it
//! holds the shard's lease in Redis; it stops at a local monotonic deadline
//! that ends before Redis can expire the lease; every state write re-checks
//! `node#epoch` inside Redis (see `liveseg_store::redis`). The leader only
//! decides intent, so a wrong or stale leader costs moves, never safety.

pub mod coordinator;
pub mod handoff;
pub mod journal;
pub mod member;
pub mod placement;
