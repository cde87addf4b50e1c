//! The account actor: a thin actix shell around `AccountHost`.
//!
//! This file and `actors.rs` are the only places that name actix (DESIGN.md
//! section 2). Handlers never panic and never block: they forward to the
//! host, hand membership changes to the outbox, and re-arm the one timer
//! that fires the account's next time-driven change at its exact instant.

use crate::clock::SharedClock;
use crate::host::{AccountHost, Answer, Delivery, Query};
use crate::outbox::OutboxSender;
use actix::prelude::*;
use liveseg_core::state::ContactState;
use liveseg_core::{Change, Millis};
use liveseg_store::Seq;

pub struct AccountActor {
    host: AccountHost,
    clock: SharedClock,
    /// Where membership changes go (durable change log, index, watchers).
    outbox: OutboxSender,
    /// The armed timer and its instant; replaced whenever the next due instant moves.
    timer: Option<(Millis, SpawnHandle)>,
    mailbox_capacity: usize,
}

impl AccountActor {
    pub fn new(
        host: AccountHost,
        clock: SharedClock,
        outbox: OutboxSender,
        mailbox_capacity: usize,
    ) -> Self {
        AccountActor {
            host,
            clock,
            outbox,
            timer: None,
            mailbox_capacity,
        }
    }

    fn emit(&self, changes: Vec<Change>) {
        if !changes.is_empty() {
            self.outbox.send(self.host.tenant.clone(), changes);
        }
    }

    /// Keeps exactly one timer, at the account's next due instant.
    fn rearm(&mut self, ctx: &mut Context<Self>) {
        let due = self.host.next_timer();
        if self.timer.as_ref().map(|(at, _)| *at) == due {
            return;
        }
        if let Some((_, handle)) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        if let Some(at) = due {
            let sleep = self.clock.sleep_until(at);
            let handle = ctx.spawn(
                actix::fut::wrap_future::<_, Self>(sleep).map(|_, act, ctx| {
                    act.timer = None;
                    act.on_timer(ctx);
                }),
            );
            self.timer = Some((at, handle));
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<Self>) {
        let now = self.clock.now();
        let mut out = Vec::new();
        self.host.on_time(now, &mut out);
        for c in &out {
            // How late the time-driven change is against its exact instant.
            metrics::histogram!(liveseg_telemetry::names::TIME_DRIVEN_EXIT_LAG_SECONDS)
                .record((now - c.instant).max(0) as f64 / 1000.0);
        }
        self.emit(out);
        self.rearm(ctx);
    }
}

impl Actor for AccountActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
        self.rearm(ctx);
    }
}

/// Apply events in log order.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct ApplyBatch(pub Vec<Delivery>);

impl Handler<ApplyBatch> for AccountActor {
    type Result = usize;

    fn handle(&mut self, msg: ApplyBatch, ctx: &mut Self::Context) -> usize {
        let now = self.clock.now();
        let mut out = Vec::new();
        let n = self.host.apply(msg.0, now, &mut out);
        self.emit(out);
        self.rearm(ctx);
        n
    }
}

/// Hand over a contact that moves to another account.
#[derive(Message)]
#[rtype(result = "Option<ContactState>")]
pub struct TakeContact(pub String);

impl Handler<TakeContact> for AccountActor {
    type Result = Option<ContactState>;

    fn handle(&mut self, msg: TakeContact, ctx: &mut Self::Context) -> Self::Result {
        let mut out = Vec::new();
        let c = self.host.take_contact(&msg.0, self.clock.now(), &mut out);
        self.emit(out);
        self.rearm(ctx);
        c
    }
}

/// A checkpoint image if dirty (or always with `force`).
#[derive(Message)]
#[rtype(result = "Result<Option<(Seq, Vec<u8>)>, String>")]
pub struct Snapshot {
    pub force: bool,
}

impl Handler<Snapshot> for AccountActor {
    type Result = Result<Option<(Seq, Vec<u8>)>, String>;

    fn handle(&mut self, msg: Snapshot, _: &mut Self::Context) -> Self::Result {
        self.host.snapshot(msg.force)
    }
}

/// Final image, then stop (idle passivation, shutdown or a redefinition).
#[derive(Message)]
#[rtype(result = "Result<(Seq, Vec<u8>, Option<Millis>), String>")]
pub struct Passivate;

impl Handler<Passivate> for AccountActor {
    type Result = Result<(Seq, Vec<u8>, Option<Millis>), String>;

    fn handle(&mut self, _: Passivate, ctx: &mut Self::Context) -> Self::Result {
        let image = self.host.snapshot(true)?;
        ctx.stop();
        let (seq, bytes) = image.ok_or("no image")?;
        Ok((seq, bytes, self.host.next_timer()))
    }
}

/// Stop at once without an image: the shard moved away (or the node
/// stops after its final checkpoint); whatever is not checkpointed is
/// rebuilt from the log by the next owner.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for AccountActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

#[derive(Message)]
#[rtype(result = "Answer")]
pub struct Ask(pub Query);

impl Handler<Ask> for AccountActor {
    type Result = MessageResult<Ask>;

    fn handle(&mut self, msg: Ask, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.host.query(&msg.0, self.clock.now()))
    }
}
