//! Generated events as they wait in the scheduler: compact, index-based
//! descriptions that are only turned into JSON when written.

use std::cmp::Ordering;

use super::site::PageRef;
use super::world::{AccountTraits, ContactStage};

/// Share of contact events that carry `context.groupId`; the rest exercise
/// the engine's contact directory.
pub(super) const CONTEXT_GROUP_SHARE: f64 = 0.85;

/// Everything an `identify` says, captured when it is generated.
#[derive(Debug, Clone, Copy)]
pub(super) struct IdentitySnapshot {
    pub(super) account: u32,
    pub(super) first: u8,
    pub(super) last: u8,
    pub(super) email_n: u16,
    pub(super) seniority: u8,
    pub(super) role: u8,
    pub(super) stage: ContactStage,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Anon {
    None,
    /// The CRM connector that syncs account traits.
    Crm(u32),
    /// An unidentified visitor resolved to an account by reverse IP.
    Visitor(u32, u8),
    /// The browser cookie of a known contact.
    Cookie(u32),
    /// A third-party intent feed, per account.
    IntentFeed(u32),
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Ctx {
    None,
    Account(u32),
    /// The account current for the event's user at the event's instant.
    Contact,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Body {
    AccountGroup {
        account: u32,
        traits: AccountTraits,
    },
    Placement {
        account: u32,
    },
    Identify(IdentitySnapshot),
    Sent {
        email: u64,
        campaign: u32,
        variant: u8,
        alias: bool,
    },
    Opened {
        email: u64,
    },
    Clicked {
        email: u64,
        campaign: u32,
        variant: u8,
        link: PageRef,
    },
    Replied {
        email: u64,
    },
    Bounced {
        email: u64,
        hard: bool,
    },
    Spam {
        email: u64,
    },
    Unsubscribed {
        email: u64,
        campaign: u32,
    },
    Page {
        page: PageRef,
        campaign: Option<u32>,
    },
    Intent {
        topic: u8,
        first_party: bool,
        strength: u8,
    },
    Meeting {
        customer: bool,
        demo: bool,
    },
    LoggedIn,
    ProductUsed {
        feature: u8,
    },
    Webinar {
        webinar: u32,
        attended: bool,
    },
    Asset {
        asset: u8,
    },
}

impl Body {
    /// The send an email event belongs to.
    pub(super) fn email(&self) -> Option<u64> {
        match *self {
            Self::Sent { email, .. }
            | Self::Opened { email }
            | Self::Clicked { email, .. }
            | Self::Replied { email }
            | Self::Bounced { email, .. }
            | Self::Spam { email }
            | Self::Unsubscribed { email, .. } => Some(email),
            _ => None,
        }
    }

    /// `type` for non-track calls, the `event` name for tracks.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Self::AccountGroup { .. } | Self::Placement { .. } => "group",
            Self::Identify(_) => "identify",
            Self::Page { .. } => "page",
            Self::Sent { alias: true, .. } => "Email Sent",
            Self::Sent { .. } => "Email Delivered",
            Self::Opened { .. } => "Email Opened",
            Self::Clicked { .. } => "Email Link Clicked",
            Self::Replied { .. } => "Email Replied",
            Self::Bounced { .. } => "Email Bounced",
            Self::Spam { .. } => "Email Marked as Spam",
            Self::Unsubscribed { .. } => "Unsubscribed",
            Self::Intent { .. } => "Intent Signal",
            Self::Meeting { .. } => "Meeting Booked",
            Self::LoggedIn => "Logged In",
            Self::ProductUsed { .. } => "Product Used",
            Self::Webinar {
                attended: false, ..
            } => "Webinar Registered",
            Self::Webinar { .. } => "Webinar Attended",
            Self::Asset { .. } => "Asset Downloaded",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Ev {
    pub(super) user: Option<u32>,
    pub(super) anon: Anon,
    pub(super) ctx: Ctx,
    pub(super) body: Body,
}

impl Ev {
    /// An event that counts for the account only (no contact).
    pub(super) fn account_level(anon: Anon, account: u32, body: Body) -> Self {
        let ctx = Ctx::Account(account);
        Self {
            user: None,
            anon,
            ctx,
            body,
        }
    }

    /// An event of a known contact, without a cookie.
    pub(super) fn contact(c: usize, ctx: Ctx, body: Body) -> Self {
        let user = u32::try_from(c).ok();
        Self {
            user,
            anon: Anon::None,
            ctx,
            body,
        }
    }
}

/// A scheduled event; ordered by time, then by generation order so the
/// output sort is stable and deterministic.
pub(super) struct Pending {
    pub(super) ts: i64,
    pub(super) seq: u64,
    pub(super) ev: Ev,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.ts, self.seq) == (other.ts, other.seq)
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.ts, self.seq).cmp(&(other.ts, other.seq))
    }
}
