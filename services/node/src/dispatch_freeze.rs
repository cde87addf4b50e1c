//! The dispatcher's freeze for a handoff (`Command::Freeze`): a checkpoint,
//! then no writes until a thaw (`Command::Thaw`), while entries are still
//! applied. Both carry request numbers: one older than the last applied
//! is ignored.

use super::{Command, Dispatcher, fatal, handing_off};
use crate::error::{NodeError, Result};
use liveseg_store::Seq;
use std::sync::atomic::Ordering;
use tokio::sync::oneshot;

impl Dispatcher {
    /// `cmd`, unless the runtime is frozen and `cmd` would write: then it
    /// is answered here (nothing written; a rebuild is refused as
    /// retryable) and `None` returned.
    pub(super) fn unless_frozen(&self, cmd: Command) -> Option<Command> {
        if !self.progress.frozen.load(Ordering::Acquire) {
            return Some(cmd);
        }
        match cmd {
            Command::Checkpoint(reply) | Command::Passivate(_, reply) => {
                let _ = reply.send(Ok(0));
            }
            Command::Redefine { reply, .. } | Command::Rejudge { reply, .. } => {
                let _ = reply.send(Err(handing_off()));
            }
            other => return Some(other),
        }
        None
    }

    /// Checkpoints, then freezes (`Command::Freeze`). A checkpoint that
    /// fails leaves the runtime as it was (and stops it, if fatal).
    pub(super) async fn freeze(
        &mut self,
        request: u64,
        reply: oneshot::Sender<Result<Option<Seq>>>,
    ) -> Result<()> {
        if request < self.freeze_request {
            let _ = reply.send(Err(NodeError::Unavailable(
                "a later thaw overtook this freeze".into(),
            )));
            return Ok(());
        }
        self.freeze_request = request;
        if self.progress.frozen.load(Ordering::Acquire) {
            let _ = reply.send(Ok(None));
            return Ok(());
        }
        let r = self.checkpoint().await;
        let fatal = fatal(&r);
        if let Err(e) = r {
            let _ = reply.send(Err(e));
            return fatal.map_or(Ok(()), |e| {
                Err(NodeError::Internal(format!("checkpoint failed: {e}")))
            });
        }
        self.progress.frozen.store(true, Ordering::Release);
        // A change-log commit the outbox began before the flag ends before
        // the answer: nothing this runtime writes lands after it.
        let _ = self.registry.outbox().flush().await;
        let _ = reply.send(Ok(Some(self.dispatched)));
        Ok(())
    }

    /// Writes again (`Command::Thaw`), unless a later freeze was applied.
    pub(super) fn thaw(&mut self, request: u64, reply: oneshot::Sender<()>) {
        if request > self.freeze_request {
            self.freeze_request = request;
            self.progress.frozen.store(false, Ordering::Release);
        }
        let _ = reply.send(());
    }
}
