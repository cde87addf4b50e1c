//! Rendering each kind of event into its message: traits of `group` and
//! `identify`, page properties, email and activity properties.

use std::io;

use super::event::{Body, IdentitySnapshot};
use super::message::{Head, Msg, Props, Traits};
use super::random::mix64;
use super::sink::{Sink, lookup};
use super::site::{PAGE_CATEGORIES, PageRef, page_url};
use super::vocabulary::{
    ASSETS, FEATURES, FIRST_NAMES, INDUSTRIES, INTENT_TOPICS, LAST_NAMES, ROLES, SENIORITIES,
    SUBJECTS, TITLES, WEBINARS,
};
use super::world::{AccountTraits, World};

impl Sink<'_> {
    pub(super) fn render(&mut self, world: &World, head: &Head<'_>, body: &Body) -> io::Result<()> {
        match *body {
            Body::AccountGroup { account, traits } => {
                self.render_account(world, head, account, &traits)
            }
            Body::Placement { account } => {
                let acct = lookup(&world.accounts, account as usize)?;
                let msg = Msg {
                    group_id: Some(&acct.id),
                    ..head.msg("group")
                };
                self.emit(&msg)
            }
            Body::Identify(snapshot) => self.render_identify(world, head, &snapshot),
            Body::Page { page, campaign } => self.render_page(head, page, campaign),
            Body::Sent { .. }
            | Body::Opened { .. }
            | Body::Clicked { .. }
            | Body::Replied { .. }
            | Body::Bounced { .. }
            | Body::Spam { .. }
            | Body::Unsubscribed { .. } => self.render_email(head, body),
            _ => self.render_activity(head, body),
        }
    }

    fn render_account(
        &mut self,
        world: &World,
        head: &Head<'_>,
        account: u32,
        t: &AccountTraits,
    ) -> io::Result<()> {
        let acct = lookup(&world.accounts, account as usize)?;
        let traits = Traits::Account {
            name: &acct.name,
            domain: &acct.domain,
            tier: t.tier,
            target: t.target,
            icp_fit: t.icp_fit,
            lifecycle_stage: t.stage.as_str(),
            industry: lookup(&INDUSTRIES, t.industry)?,
            employees: t.employees,
        };
        let msg = Msg {
            group_id: Some(&acct.id),
            traits: Some(traits),
            ..head.msg("group")
        };
        self.emit(&msg)
    }

    fn render_identify(
        &mut self,
        world: &World,
        head: &Head<'_>,
        s: &IdentitySnapshot,
    ) -> io::Result<()> {
        let acct = lookup(&world.accounts, s.account as usize)?;
        let first = *lookup(&FIRST_NAMES, s.first)?;
        let last = *lookup(&LAST_NAMES, s.last)?;
        let local = format!("{first}.{last}").to_ascii_lowercase();
        let email = if s.email_n == 0 {
            format!("{local}@{}", acct.domain)
        } else {
            format!("{local}{}@{}", s.email_n, acct.domain)
        };
        let traits = Traits::Contact {
            email: &email,
            first_name: first,
            last_name: last,
            title: lookup(lookup(&TITLES, s.seniority)?, s.role)?,
            seniority: lookup(&SENIORITIES, s.seniority)?,
            role: lookup(&ROLES, s.role)?,
            lifecycle_stage: s.stage.as_str(),
        };
        self.emit(&Msg {
            traits: Some(traits),
            ..head.msg("identify")
        })
    }

    fn render_page(
        &mut self,
        head: &Head<'_>,
        page: PageRef,
        campaign: Option<u32>,
    ) -> io::Result<()> {
        let def = page.def().ok_or_else(|| io::Error::other("unknown page"))?;
        let url = page_url(def, campaign);
        let properties = Props::Page {
            name: def.name,
            category: lookup(&PAGE_CATEGORIES, page.cat)?,
            path: def.path,
            url: &url,
            title: def.title,
        };
        self.emit(&Msg {
            name: Some(def.name),
            properties: Some(properties),
            ..head.msg("page")
        })
    }

    fn render_email(&mut self, head: &Head<'_>, body: &Body) -> io::Result<()> {
        let email = body
            .email()
            .ok_or_else(|| io::Error::other("not an email event"))?;
        let email_id = format!("em_{:016x}", mix64(email ^ self.key.rotate_left(29)));
        let campaign_id;
        let content_id;
        let url;
        let properties = match *body {
            Body::Sent {
                campaign, variant, ..
            } => {
                campaign_id = format!("cmp_{campaign:05}");
                content_id = content(campaign, variant);
                let subject = subject(campaign);
                Props::Send {
                    email_id: &email_id,
                    campaign_id: &campaign_id,
                    content_id: &content_id,
                    subject,
                }
            }
            Body::Clicked {
                campaign,
                variant,
                link,
                ..
            } => {
                let def = link.def().ok_or_else(|| io::Error::other("unknown link"))?;
                url = page_url(def, Some(campaign));
                content_id = content(campaign, variant);
                Props::Click {
                    email_id: &email_id,
                    url: &url,
                    content_id: &content_id,
                }
            }
            Body::Bounced { hard, .. } => Props::Bounce {
                email_id: &email_id,
                bounce_type: if hard { "hard" } else { "soft" },
            },
            Body::Unsubscribed { campaign, .. } => {
                campaign_id = format!("cmp_{campaign:05}");
                Props::Unsubscribe {
                    email_id: &email_id,
                    campaign_id: &campaign_id,
                }
            }
            _ => Props::EmailRef {
                email_id: &email_id,
            },
        };
        self.emit(&Msg {
            properties: Some(properties),
            ..head.track(body.kind())
        })
    }

    fn render_activity(&mut self, head: &Head<'_>, body: &Body) -> io::Result<()> {
        let webinar_id;
        let properties = match *body {
            Body::Intent {
                topic,
                first_party,
                strength,
            } => Props::Intent {
                topic: lookup(&INTENT_TOPICS, topic)?,
                source: if first_party {
                    "first_party"
                } else {
                    "third_party"
                },
                strength,
            },
            Body::Meeting { customer, demo } => Props::Meeting {
                meeting_type: match (customer, demo) {
                    (true, true) => "onboarding",
                    (true, false) => "qbr",
                    (false, true) => "demo",
                    (false, false) => "discovery",
                },
                booked_via: if demo { "calendar_link" } else { "sdr" },
            },
            Body::LoggedIn => Props::Login { method: "sso" },
            Body::ProductUsed { feature } => Props::Feature {
                feature: lookup(&FEATURES, feature)?,
            },
            Body::Webinar { webinar, .. } => {
                webinar_id = format!("wbn_{webinar:03}");
                let title = WEBINARS[webinar as usize % WEBINARS.len()];
                Props::Webinar {
                    webinar_id: &webinar_id,
                    webinar_title: title,
                }
            }
            Body::Asset { asset } => {
                let (asset_id, asset_type, title) = *lookup(&ASSETS, asset)?;
                Props::Asset {
                    asset_id,
                    asset_type,
                    title,
                }
            }
            _ => return Err(io::Error::other("not an activity event")),
        };
        self.emit(&Msg {
            properties: Some(properties),
            ..head.track(body.kind())
        })
    }
}

/// Each campaign has one subject line, fixed by its number.
fn subject(campaign: u32) -> &'static str {
    SUBJECTS[(mix64(u64::from(campaign) + 7) % SUBJECTS.len() as u64) as usize]
}

/// A/B variants of a campaign carry distinct content ids.
fn content(campaign: u32, variant: u8) -> String {
    format!("cnt_{campaign:05}{}", if variant == 0 { 'a' } else { 'b' })
}
