//! Product usage by customers' users, and the rarer high-intent actions:
//! meetings, webinars, content downloads.

use super::clock::{DAY_MS, MINUTE_MS, SECOND_MS};
use super::event::Body;
use super::random::{between, chance, index};
use super::sim::Sim;
use super::vocabulary::{ASSETS, FEATURES};
use super::world::AccountStage;

impl Sim {
    /// Customers' users log in and use features on working days.
    pub(super) fn maybe_use_product(&mut self, c: usize, day: u32, activity: f64) {
        let ct = &self.world.contacts[c];
        let stage = self.world.accounts[ct.account as usize].traits.stage;
        if stage != AccountStage::Customer || !ct.product_user {
            return;
        }
        let p = ct.product_p * activity * self.weekday_factor(day, 0.3);
        if !chance(&mut self.rng, p) {
            return;
        }
        let Some(mut ts) = self.slot(day, 10, 23) else {
            return;
        };
        self.push_contact(ts, c, Body::LoggedIn);
        for _ in 0..between(&mut self.rng, 1, 4) {
            ts += between(&mut self.rng, 30 * SECOND_MS, 20 * MINUTE_MS);
            let feature = index(&mut self.rng, FEATURES.len()) as u8;
            self.push_contact(ts, c, Body::ProductUsed { feature });
        }
    }

    /// Rarer high-intent actions: meetings, webinars, content downloads.
    pub(super) fn maybe_convert(&mut self, c: usize, day: u32, activity: f64) {
        let ct = &self.world.contacts[c];
        let acct = &self.world.accounts[ct.account as usize];
        let customer = acct.traits.stage == AccountStage::Customer;
        let deal = if acct.traits.stage == AccountStage::Opportunity {
            2.0
        } else {
            1.0
        };
        let target = if acct.traits.target { 2.0 } else { 1.0 };
        let (open_p, web_p) = (ct.open_p, ct.web_p);
        if chance(&mut self.rng, 0.0015 * open_p * activity * deal * target)
            && let Some(ts) = self.slot(day, 14, 22)
        {
            let demo = chance(&mut self.rng, 0.6);
            self.push_contact(ts, c, Body::Meeting { customer, demo });
        }
        if chance(&mut self.rng, 0.003 * (open_p + 0.1) * activity)
            && let Some(ts) = self.slot(day, 12, 22)
        {
            let webinar = day / 14;
            self.push_contact(
                ts,
                c,
                Body::Webinar {
                    webinar,
                    attended: false,
                },
            );
            if chance(&mut self.rng, 0.4) {
                let at = ts + between(&mut self.rng, 2 * DAY_MS, 9 * DAY_MS);
                self.push_contact(
                    at,
                    c,
                    Body::Webinar {
                        webinar,
                        attended: true,
                    },
                );
            }
        }
        if chance(&mut self.rng, 0.02 * web_p * activity)
            && let Some(ts) = self.slot(day, 10, 23)
        {
            let asset = index(&mut self.rng, ASSETS.len()) as u8;
            self.push_contact(ts, c, Body::Asset { asset });
        }
    }
}
