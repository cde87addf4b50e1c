//! What the CRM syncs: account traits (`group` without a user), contacts
//! placed in their account (`group` with a user) and identified, job moves,
//! and re-identifies when a contact's lifecycle stage follows its account.

use super::clock::{SECOND_MS, SYNC_MS};
use super::event::{Anon, Body, Ctx, Ev};
use super::random::{between, chance};
use super::sim::Sim;
use super::world::ContactStage;

impl Sim {
    pub(super) fn push_account_group(&mut self, a: usize, ts: i64) {
        let account = a as u32;
        let traits = self.world.accounts[a].traits;
        let body = Body::AccountGroup { account, traits };
        let ev = Ev::account_level(Anon::Crm(account), account, body);
        self.push(
            ts,
            Ev {
                ctx: Ctx::None,
                ..ev
            },
        );
    }

    fn current_stage(&self, c: usize) -> ContactStage {
        let ct = &self.world.contacts[c];
        ContactStage::within(
            ct.base_stage,
            self.world.accounts[ct.account as usize].traits.stage,
        )
    }

    /// Places the contact in its account (`group`) and identifies it: on the
    /// initial CRM sync, or on the day the lead is created.
    pub(super) fn onboard(&mut self, c: usize, day: u32) -> bool {
        let ts = if day == 0 {
            self.clock.start + between(&mut self.rng, SYNC_MS / 2, SYNC_MS - 10 * SECOND_MS)
        } else {
            match self.slot(day, 6, 8) {
                Some(ts) => ts,
                None => return false,
            }
        };
        self.place(c, ts);
        true
    }

    /// Moves the contact to another account, with a new address there.
    pub(super) fn change_job(&mut self, c: usize, day: u32, to: u32) {
        let Some(ts) = self.slot(day, 6, 8) else {
            return;
        };
        let (first, last) = (self.world.contacts[c].first, self.world.contacts[c].last);
        let roster = &self.world.accounts[to as usize].roster;
        let taken = roster.iter().any(|&o| {
            let other = &self.world.contacts[o as usize];
            other.first == first && other.last == last
        });
        let email_n = if taken {
            u16::try_from(roster.len()).unwrap_or(u16::MAX)
        } else {
            0
        };
        self.world.accounts[to as usize].roster.push(c as u32);
        let promoted = chance(&mut self.rng, 0.3);
        let ct = &mut self.world.contacts[c];
        ct.moved = Some((ts, ct.account));
        ct.account = to;
        ct.email_n = email_n;
        ct.base_stage = ContactStage::Lead;
        if promoted {
            ct.seniority = ct.seniority.saturating_sub(1);
        }
        self.place(c, ts);
    }

    /// `group` (userId + groupId) placing the contact in its current account,
    /// then an `identify` with its traits there.
    fn place(&mut self, c: usize, ts: i64) {
        let account = self.world.contacts[c].account;
        let body = Body::Placement { account };
        self.push(ts, Ev::contact(c, Ctx::None, body));
        let stage = self.current_stage(c);
        let snapshot = self.world.contacts[c].identity(stage);
        let at = ts + between(&mut self.rng, SECOND_MS, 5 * SECOND_MS);
        self.push_contact(at, c, Body::Identify(snapshot));
        self.world.contacts[c].stage = Some(stage);
    }

    /// Re-identifies a contact whose account entered a deal or closed.
    pub(super) fn sync_stage(&mut self, c: usize, day: u32) {
        let stage = self.current_stage(c);
        if self.world.contacts[c].stage == Some(stage) {
            return;
        }
        if let Some(ts) = self.slot(day, 9, 10) {
            let snapshot = self.world.contacts[c].identity(stage);
            self.push_contact(ts, c, Body::Identify(snapshot));
            self.world.contacts[c].stage = Some(stage);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::generate::GenerateConfig;
    use crate::generate::test_support::{parse, run, str_at};

    #[test]
    fn contacts_move_and_context_follows_the_current_account() {
        let (out, _) = run(&GenerateConfig::default());
        let mut directory: HashMap<String, String> = HashMap::new();
        let (mut moves, mut with_ctx, mut contact_events) = (0, 0, 0);
        for e in parse(&out) {
            let user = str_at(&e, "/userId").map(str::to_owned);
            if str_at(&e, "/type") == Some("group") {
                if let Some(u) = user {
                    let g = str_at(&e, "/groupId").expect("groupId").to_owned();
                    if directory.insert(u, g.clone()).is_some_and(|old| old != g) {
                        moves += 1;
                    }
                }
                continue;
            }
            let Some(u) = user else { continue };
            if str_at(&e, "/event") == Some("Intent Signal") {
                continue; // account-level even when attributed
            }
            contact_events += 1;
            if let Some(g) = str_at(&e, "/context/groupId") {
                with_ctx += 1;
                assert_eq!(
                    directory.get(&u).map(String::as_str),
                    Some(g),
                    "stale context: {e}"
                );
            }
        }
        assert!(moves > 0, "some contacts change jobs");
        let share = f64::from(with_ctx) / f64::from(contact_events);
        assert!((0.8..0.9).contains(&share), "context.groupId share {share}");
    }
}
