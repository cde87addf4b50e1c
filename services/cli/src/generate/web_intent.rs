//! Web visits and intent: anonymous (reverse-IP) visits and known contacts
//! browsing, the site's first-party intent scorer, and the weekly
//! third-party intent feed.

use super::clock::{MINUTE_MS, SECOND_MS};
use super::event::{Anon, Body, CONTEXT_GROUP_SHARE, Ctx, Ev};
use super::random::{between, chance, index, weighted};
use super::sim::Sim;
use super::site::{
    CAT_PRICING, PAGE_WEIGHTS_BASE, PAGE_WEIGHTS_CUSTOMER, PAGE_WEIGHTS_IN_MARKET, PAGES, PageRef,
};
use super::vocabulary::{THIRD_PARTY_TOPIC_WEIGHTS, TOPIC_COMPARISON, TOPIC_PRICING};
use super::world::{AccountStage, Persona};

impl Sim {
    /// Reverse-IP resolved visits: they count for the account, not a contact.
    pub(super) fn anonymous_visit(&mut self, a: usize, day: u32) {
        let acct = &self.world.accounts[a];
        if day >= acct.cold_from {
            return;
        }
        let in_market = acct.in_market(day);
        let (interest, visitors, stage) = (acct.interest, acct.visitors, acct.traits.stage);
        let p = interest * 0.12 * if in_market { 3.0 } else { 1.0 } * self.weekday_factor(day, 0.4);
        if !chance(&mut self.rng, p) {
            return;
        }
        let Some(mut ts) = self.slot(day, 0, 24) else {
            return;
        };
        let account = a as u32;
        let anon = Anon::Visitor(account, index(&mut self.rng, usize::from(visitors)) as u8);
        for _ in 0..between(&mut self.rng, 1, 4) {
            let page = self.pick_page(stage, in_market);
            let body = Body::Page {
                page,
                campaign: None,
            };
            self.push(ts, Ev::account_level(anon, account, body));
            if page.is_pricing_intent() && chance(&mut self.rng, 0.4) {
                self.first_party_intent(ts, None, anon, account, page);
            }
            ts += between(&mut self.rng, 20 * SECOND_MS, 4 * MINUTE_MS);
        }
    }

    /// A weekly third-party intent feed, stronger while the account is in
    /// market. Includes pricing topics so `source` filtering matters.
    pub(super) fn third_party_intent(&mut self, a: usize, day: u32) {
        if !(day as usize + a).is_multiple_of(7) {
            return;
        }
        let acct = &self.world.accounts[a];
        let in_market = acct.in_market(day);
        let p = (0.15 + 0.5 * acct.interest + if in_market { 0.35 } else { 0.0 }).min(0.95);
        if !chance(&mut self.rng, p) {
            return;
        }
        let Some(mut ts) = self.slot(day, 4, 6) else {
            return;
        };
        let account = a as u32;
        for _ in 0..between(&mut self.rng, 1, 3) {
            let topic = weighted(&mut self.rng, &THIRD_PARTY_TOPIC_WEIGHTS) as u8;
            let (lo, hi) = if in_market { (60, 99) } else { (20, 75) };
            let strength = between(&mut self.rng, lo, hi) as u8;
            let body = Body::Intent {
                topic,
                first_party: false,
                strength,
            };
            let anon = Anon::IntentFeed(account);
            self.push(ts, Ev::account_level(anon, account, body));
            ts += between(&mut self.rng, 1, 500);
        }
    }

    /// First-party intent emitted by the site's intent scorer after a
    /// pricing/comparison view: account level, occasionally attributed.
    fn first_party_intent(
        &mut self,
        ts: i64,
        user: Option<u32>,
        anon: Anon,
        account: u32,
        page: PageRef,
    ) {
        let user = user.filter(|_| chance(&mut self.rng, 0.3));
        let topic = if page.cat == CAT_PRICING {
            TOPIC_PRICING
        } else {
            TOPIC_COMPARISON
        };
        let strength = between(&mut self.rng, 55, 95) as u8;
        let body = Body::Intent {
            topic,
            first_party: true,
            strength,
        };
        let at = ts + between(&mut self.rng, 2 * SECOND_MS, 30 * SECOND_MS);
        let ev = Ev::account_level(anon, account, body);
        self.push(at, Ev { user, ..ev });
    }

    fn pick_page(&mut self, stage: AccountStage, in_market: bool) -> PageRef {
        let weights = if in_market {
            &PAGE_WEIGHTS_IN_MARKET
        } else if stage == AccountStage::Customer {
            &PAGE_WEIGHTS_CUSTOMER
        } else {
            &PAGE_WEIGHTS_BASE
        };
        let cat = weighted(&mut self.rng, weights);
        let idx = index(&mut self.rng, PAGES[cat].len());
        PageRef {
            cat: cat as u8,
            idx: idx as u8,
        }
    }

    pub(super) fn push_page(&mut self, c: usize, ts: i64, page: PageRef, campaign: Option<u32>) {
        let ctx = if chance(&mut self.rng, CONTEXT_GROUP_SHARE) {
            Ctx::Contact
        } else {
            Ctx::None
        };
        let user = c as u32;
        let body = Body::Page { page, campaign };
        let ev = Ev::contact(c, ctx, body);
        self.push(
            ts,
            Ev {
                anon: Anon::Cookie(user),
                ..ev
            },
        );
        if page.is_pricing_intent() && chance(&mut self.rng, 0.35) {
            let account = self.world.contacts[c].account_at(ts);
            self.first_party_intent(ts, Some(user), Anon::Cookie(user), account, page);
        }
    }

    /// Browsing sessions; pricing and comparison pages are likelier while the
    /// account is in market and for target accounts.
    pub(super) fn maybe_browse(&mut self, c: usize, day: u32, activity: f64) {
        let ct = &self.world.contacts[c];
        let acct = &self.world.accounts[ct.account as usize];
        let in_market =
            acct.in_market(day) || (acct.traits.target && ct.persona == Persona::Engaged);
        let stage = acct.traits.stage;
        let boost = if acct.in_market(day) { 1.8 } else { 1.0 };
        let p = ct.web_p * activity * boost * self.weekday_factor(day, 0.5);
        if !chance(&mut self.rng, p) {
            return;
        }
        let Some(mut ts) = self.slot(day, 10, 24) else {
            return;
        };
        for _ in 0..between(&mut self.rng, 1, 5) {
            let page = self.pick_page(stage, in_market);
            self.push_page(c, ts, page, None);
            ts += between(&mut self.rng, 15 * SECOND_MS, 5 * MINUTE_MS);
        }
    }
}
