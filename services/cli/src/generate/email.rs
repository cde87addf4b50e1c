//! Email sends and everything they cause: deliveries and bounces,
//! complaints, opens, clicks with their landing page, replies, unsubscribes.

use rand::Rng;

use super::clock::{DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS};
use super::event::Body;
use super::random::{between, chance, index, mix64};
use super::sim::Sim;
use super::site::LINK_TARGETS;

/// Campaigns running each day; a send picks one, so campaign ids encode
/// the day they were sent on.
const CAMPAIGNS_PER_DAY: u32 = 3;

impl Sim {
    pub(super) fn maybe_send(&mut self, c: usize, day: u32, activity: f64) {
        let ct = &self.world.contacts[c];
        if ct.suppressed {
            return;
        }
        let p = self.send_rate_scale * ct.send_scale * self.weekday_factor(day, 0.25);
        if !chance(&mut self.rng, p) {
            return;
        }
        if let Some(ts) = self.slot(day, 13, 17) {
            self.send_email(c, day, ts, activity);
        }
    }

    /// One send and everything it causes: bounce, complaint, opens, clicks,
    /// replies, unsubscribe. Suppressing outcomes stop further sends.
    fn send_email(&mut self, c: usize, day: u32, ts: i64, activity: f64) {
        let email = self.next_email();
        let campaign =
            day * CAMPAIGNS_PER_DAY + index(&mut self.rng, CAMPAIGNS_PER_DAY as usize) as u32;
        let variant = index(&mut self.rng, 2) as u8;
        let open_p = self.world.contacts[c].open_p;
        let roll = self.rng.random::<f64>();
        if roll < 0.011 {
            let hard = roll < 0.003;
            self.push_contact(
                ts,
                c,
                Body::Sent {
                    email,
                    campaign,
                    variant,
                    alias: true,
                },
            );
            let at = ts + between(&mut self.rng, 2 * SECOND_MS, 90 * SECOND_MS);
            self.push_contact(at, c, Body::Bounced { email, hard });
            self.world.contacts[c].suppressed |= hard;
            return;
        }
        self.push_contact(
            ts,
            c,
            Body::Sent {
                email,
                campaign,
                variant,
                alias: false,
            },
        );
        if chance(&mut self.rng, 0.0001 + 0.0004 * (1.0 - open_p)) {
            let at = ts + self.delay(2.0 * HOUR_MS as f64, 1.0, 5 * MINUTE_MS, 20 * HOUR_MS);
            self.push_contact(at, c, Body::Spam { email });
            self.world.contacts[c].suppressed = true;
            return;
        }
        if chance(&mut self.rng, open_p * activity) {
            self.open_chain(c, ts, email, campaign, variant);
        }
        if chance(&mut self.rng, 0.0006 + 0.002 * (1.0 - open_p)) {
            let at = ts + between(&mut self.rng, 2 * MINUTE_MS, 8 * HOUR_MS);
            self.push_contact(at, c, Body::Unsubscribed { email, campaign });
            self.world.contacts[c].suppressed = true;
        }
    }

    /// Opens (minutes to days after the send), re-opens, a click with a
    /// landing-page view, and sometimes a reply.
    fn open_chain(&mut self, c: usize, sent: i64, email: u64, campaign: u32, variant: u8) {
        let opened = sent + self.delay(75.0 * MINUTE_MS as f64, 1.4, MINUTE_MS, 6 * DAY_MS);
        self.push_contact(opened, c, Body::Opened { email });
        if chance(&mut self.rng, 0.25) {
            let again = opened + self.delay(DAY_MS as f64, 1.0, 10 * MINUTE_MS, 5 * DAY_MS);
            self.push_contact(again, c, Body::Opened { email });
        }
        let (click_p, reply_p) = (
            self.world.contacts[c].click_p,
            self.world.contacts[c].reply_p,
        );
        if chance(&mut self.rng, click_p) {
            let link =
                LINK_TARGETS[(mix64(u64::from(campaign)) % LINK_TARGETS.len() as u64) as usize];
            let clicked = opened + between(&mut self.rng, 5 * SECOND_MS, 5 * MINUTE_MS);
            self.push_contact(
                clicked,
                c,
                Body::Clicked {
                    email,
                    campaign,
                    variant,
                    link,
                },
            );
            if chance(&mut self.rng, 0.6) {
                let landed = clicked + between(&mut self.rng, 2 * SECOND_MS, 20 * SECOND_MS);
                self.push_page(c, landed, link, Some(campaign));
            }
        }
        if chance(&mut self.rng, reply_p) {
            let at = opened + self.delay(3.0 * HOUR_MS as f64, 1.0, 5 * MINUTE_MS, 3 * DAY_MS);
            self.push_contact(at, c, Body::Replied { email });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::generate::test_support::{ms, parse, run, small, str_at};

    #[test]
    fn email_events_reference_an_earlier_send_to_the_same_user() {
        let (out, _) = run(&small());
        let mut sent: HashMap<String, (String, i64)> = HashMap::new();
        for e in parse(&out) {
            let Some(event) = str_at(&e, "/event") else {
                continue;
            };
            if !event.starts_with("Email ") {
                continue;
            }
            let id = str_at(&e, "/properties/email_id")
                .expect("email_id")
                .to_owned();
            let user = str_at(&e, "/userId")
                .expect("email events have a userId")
                .to_owned();
            if event == "Email Delivered" || event == "Email Sent" {
                assert!(sent.insert(id, (user, ms(&e))).is_none(), "email_id reused");
                continue;
            }
            let (to, at) = sent
                .get(&id)
                .unwrap_or_else(|| panic!("{event} of unknown {id}"));
            assert_eq!(to, &user, "{event} of {id} by another user");
            assert!(*at <= ms(&e), "{event} before its send");
        }
        assert!(!sent.is_empty());
    }
}
