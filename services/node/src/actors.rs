//! The actor runtime: an actix system on its own thread with a few
//! arbiters (one OS thread each), and `AccountRef`, the handle the rest of
//! the node uses so that it never names actix itself.

use crate::actor::{AccountActor, ApplyBatch, Ask, Passivate, Snapshot, Stop, TakeContact};
use crate::host::{Answer, Delivery, Query};
use actix::{Actor, Addr};
use actix_rt::{Arbiter, ArbiterHandle, System};
use liveseg_core::Millis;
use liveseg_core::state::ContactState;
use liveseg_store::Seq;

/// The actor is gone (stopped or passivated); reload it and retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("account actor stopped")]
pub struct ActorGone;

/// A live account actor.
#[derive(Clone)]
pub struct AccountRef(Addr<AccountActor>);

impl AccountRef {
    /// Enqueues a batch; waits while the mailbox is full (backpressure).
    pub async fn apply(&self, batch: Vec<Delivery>) -> Result<usize, ActorGone> {
        self.0.send(ApplyBatch(batch)).await.map_err(|_| ActorGone)
    }

    pub async fn take_contact(&self, contact: String) -> Result<Option<ContactState>, ActorGone> {
        self.0
            .send(TakeContact(contact))
            .await
            .map_err(|_| ActorGone)
    }

    pub async fn snapshot(
        &self,
        force: bool,
    ) -> Result<Result<Option<(Seq, Vec<u8>)>, String>, ActorGone> {
        self.0.send(Snapshot { force }).await.map_err(|_| ActorGone)
    }

    pub async fn passivate(
        &self,
    ) -> Result<Result<(Seq, Vec<u8>, Option<Millis>), String>, ActorGone> {
        self.0.send(Passivate).await.map_err(|_| ActorGone)
    }

    pub async fn ask(&self, q: Query) -> Result<Answer, ActorGone> {
        self.0.send(Ask(q)).await.map_err(|_| ActorGone)
    }

    /// Stops the actor without an image (its timers die with it).
    pub async fn stop(&self) {
        // An actor that is already gone is stopped.
        let _ = self.0.send(Stop).await;
    }

    pub fn connected(&self) -> bool {
        self.0.connected()
    }
}

/// Arbiters hosting the account actors of every runtime on the node.
pub struct ActorPool {
    arbiters: Vec<ArbiterHandle>,
    /// The actix system; stopped (and its thread joined) by `stop`.
    system: System,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl ActorPool {
    pub fn start(threads: usize) -> Result<ActorPool, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("actix-system".into())
            .spawn(move || {
                let runner = actix_rt::System::new();
                let handles = runner.block_on(async {
                    let arbiters: Vec<Arbiter> =
                        (0..threads.max(1)).map(|_| Arbiter::new()).collect();
                    arbiters.iter().map(Arbiter::handle).collect::<Vec<_>>()
                });
                let _ = tx.send((System::current(), handles));
                if let Err(e) = runner.run() {
                    tracing::error!(error = %e, "actor system stopped with an error");
                }
            })
            .map_err(|e| format!("starting the actor system thread: {e}"))?;
        let (system, arbiters) = rx
            .recv()
            .map_err(|_| "the actor system failed to start".to_string())?;
        Ok(ActorPool {
            arbiters,
            system,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Starts an actor on the arbiter chosen by `placement` (a stable hash).
    pub fn spawn(&self, placement: u64, actor: AccountActor) -> AccountRef {
        let arbiter = &self.arbiters[(placement % self.arbiters.len() as u64) as usize];
        AccountRef(AccountActor::start_in_arbiter(arbiter, move |_| actor))
    }

    /// Stops every actor and the actor threads; later spawns fail quietly
    /// (their actors never start).
    pub fn stop(&self) {
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            for a in &self.arbiters {
                a.stop();
            }
            self.system.stop();
            let _ = t.join();
        }
    }
}
