//! The world: latent state of accounts and contacts that drives behaviour.
//! Built once by `population`, then mutated day by day (trait changes, job
//! moves, suppressions) by the behaviour modules.

use super::event::IdentitySnapshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AccountStage {
    Prospect,
    Opportunity,
    Customer,
}

impl AccountStage {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Prospect => "prospect",
            Self::Opportunity => "opportunity",
            Self::Customer => "customer",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ContactStage {
    Lead,
    Mql,
    Sql,
    Opportunity,
    Customer,
}

impl ContactStage {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Lead => "lead",
            Self::Mql => "marketing_qualified_lead",
            Self::Sql => "sales_qualified_lead",
            Self::Opportunity => "opportunity",
            Self::Customer => "customer",
        }
    }

    /// A contact's stage follows its account once the account is in a deal.
    pub(super) fn within(base: Self, account: AccountStage) -> Self {
        match account {
            AccountStage::Customer => Self::Customer,
            AccountStage::Opportunity => Self::Opportunity,
            AccountStage::Prospect => base,
        }
    }
}

/// The account traits a `group` call carries (a snapshot at event time).
#[derive(Debug, Clone, Copy)]
pub(super) struct AccountTraits {
    pub(super) tier: u8,
    pub(super) target: bool,
    pub(super) icp_fit: u8,
    pub(super) stage: AccountStage,
    pub(super) industry: u8,
    pub(super) employees: u32,
}

/// A trait change the CRM will sync during the history.
#[derive(Debug, Clone, Copy)]
pub(super) enum Change {
    Tier(u8),
    Target(bool),
    Stage(AccountStage),
}

pub(super) struct Account {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) domain: String,
    pub(super) traits: AccountTraits,
    /// Latent interest in the category (0..1): drives anonymous visits and
    /// third-party intent.
    pub(super) interest: f64,
    /// Days `[from, to)` in which the account is actively evaluating vendors.
    pub(super) surge: (u32, u32),
    /// From this day the whole account goes quiet (reorg, budget freeze):
    /// this is what makes `dormant_high_fit_accounts` non-empty.
    pub(super) cold_from: u32,
    pub(super) change: Option<(u32, Change)>,
    /// Every contact ever placed here, to keep email addresses unique.
    pub(super) roster: Vec<u32>,
    /// Number of distinct unidentified visitors seen by reverse IP.
    pub(super) visitors: u8,
}

impl Account {
    pub(super) fn in_market(&self, day: u32) -> bool {
        day >= self.surge.0 && day < self.surge.1
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Persona {
    Engaged,
    Casual,
    /// Never opens or clicks: feeds `sunset_candidates`.
    Silent,
    /// Engaged until `decay_from`, then quiet: feeds `decaying_customers`.
    Decaying,
}

pub(super) struct Contact {
    pub(super) account: u32,
    /// `(instant, old account)` of the contact's job move, so events written
    /// later still resolve the account that was current at their timestamp.
    pub(super) moved: Option<(i64, u32)>,
    pub(super) first: u8,
    pub(super) last: u8,
    /// Disambiguates the email local part when 0 would collide.
    pub(super) email_n: u16,
    pub(super) seniority: u8,
    pub(super) role: u8,
    pub(super) base_stage: ContactStage,
    /// Last stage sent in an `identify`; `None` until the contact is placed.
    pub(super) stage: Option<ContactStage>,
    pub(super) persona: Persona,
    pub(super) open_p: f64,
    pub(super) click_p: f64,
    pub(super) reply_p: f64,
    pub(super) web_p: f64,
    pub(super) product_p: f64,
    /// Multiplier of the configured send rate.
    pub(super) send_scale: f64,
    pub(super) product_user: bool,
    pub(super) decay_from: u32,
    pub(super) start_day: u32,
    pub(super) move_plan: Option<(u32, u32)>,
    pub(super) suppressed: bool,
}

impl Contact {
    /// The account current at `ts` (before or after the job move).
    pub(super) fn account_at(&self, ts: i64) -> u32 {
        match self.moved {
            Some((at, old)) if ts < at => old,
            _ => self.account,
        }
    }

    pub(super) fn identity(&self, stage: ContactStage) -> IdentitySnapshot {
        IdentitySnapshot {
            account: self.account,
            first: self.first,
            last: self.last,
            email_n: self.email_n,
            seniority: self.seniority,
            role: self.role,
            stage,
        }
    }
}

pub(super) struct World {
    pub(super) accounts: Vec<Account>,
    pub(super) contacts: Vec<Contact>,
}
