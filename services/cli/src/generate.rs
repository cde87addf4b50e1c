//! `liveseg generate`: a deterministic, realistic synthetic B2B workload.
//!
//! Why it exists: the engine's interesting behaviour (time-window exits,
//! last-N-sends, account-plus-contact rules, job moves) only shows up on a
//! history that has the shape of a real B2B email programme. Benchmarks,
//! replays and end-to-end tests need such a history at any size, byte-identical
//! for a given seed, without shipping customer data.
//!
//! Shape of the output: Segment-Spec JSON lines (`group`, `identify`, `track`,
//! `page`), globally sorted by timestamp, ties broken by generation order.
//! Behaviour is driven by latent variables per account (tier, fit, interest,
//! in-market surge, going cold) and per contact (persona, open/click/web
//! propensities, decay), so every starter segment of DESIGN.md §4 has members.
//!
//! How it streams: time advances one UTC day at a time across all accounts.
//! Each simulated day pushes events into a min-heap; an event is never
//! scheduled before the start of the day that produced it, so once a day is
//! simulated every pending event before the next day is final and is written
//! out. Memory is the world state plus a few days of pending events.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// The initial CRM sync happens in the first hour of history; organic
/// activity starts after it so every contact is placed before it acts.
const SYNC_MS: i64 = HOUR_MS;
/// Share of contact events that carry `context.groupId`; the rest exercise
/// the engine's contact directory.
const CONTEXT_GROUP_SHARE: f64 = 0.85;
const CAMPAIGNS_PER_DAY: u32 = 3;
const SITE: &str = "https://www.liveseg.example";
/// Longest history accepted; keeps day arithmetic far from overflow.
const MAX_DAYS: u32 = 36_600;
/// Largest expected contact count; keeps contact indices well inside u32.
const MAX_CONTACTS: usize = 100_000_000;
/// Output is handed to the writer in chunks of about this size.
const FLUSH_BYTES: usize = 1 << 16;

/// What to generate. The history covers `(end - days, end]`.
#[derive(Debug, Clone)]
pub struct GenerateConfig {
    /// Number of accounts (companies).
    pub accounts: usize,
    /// Mean contacts per account; each account gets at least one, and the
    /// count varies log-normally like real buying committees do.
    pub contacts_per_account: usize,
    /// History length in days.
    pub days: u32,
    /// Last instant of history; nothing later is written.
    pub end: DateTime<Utc>,
    /// Seed of every random choice; same config and seed give identical bytes.
    pub seed: u64,
    /// Mean email sends per contact per week (each contact varies around it).
    pub sends_per_week: f64,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        let end = Utc
            .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
            .single()
            .unwrap_or(DateTime::UNIX_EPOCH);
        Self {
            accounts: 200,
            contacts_per_account: 8,
            days: 120,
            end,
            seed: 42,
            sends_per_week: 1.5,
        }
    }
}

/// What was written. `by_kind` counts `group`, `identify`, `page` and each
/// `track` event name (e.g. `Email Opened`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenerateStats {
    pub events: u64,
    pub accounts: u64,
    pub contacts: u64,
    pub by_kind: BTreeMap<String, u64>,
}

/// Writes the workload described by `cfg` to `out` as JSON lines and flushes
/// it. Fails with `InvalidInput` on a config that cannot describe a history,
/// and with the writer's error if writing fails.
pub fn generate(cfg: &GenerateConfig, out: &mut dyn Write) -> io::Result<GenerateStats> {
    let clock = Clock::new(cfg)?;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let world = World::build(cfg, &clock, &mut rng);
    let mut sink = Sink::new(out, cfg.seed, &clock);
    let mut sim = Sim {
        world,
        rng,
        clock,
        heap: BinaryHeap::new(),
        seq: 0,
        emails: 0,
        send_rate_scale: cfg.sends_per_week / 7.0,
    };
    for day in 0..sim.clock.days {
        sim.simulate_day(day);
        let horizon = sim.clock.day_start(day + 1);
        sim.flush_before(horizon, &mut sink)?;
    }
    sim.flush_before(i64::MAX, &mut sink)?;
    let mut stats = sink.finish()?;
    stats.accounts = sim.world.accounts.len() as u64;
    stats.contacts = sim.world.contacts.len() as u64;
    Ok(stats)
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned())
}

// ---------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------

/// Simulated days are aligned to UTC midnight so times of day look real
/// (sends in business hours, feeds at dawn) even when `end` is not midnight.
#[derive(Debug, Clone, Copy)]
struct Clock {
    /// `end - days`: history is `(start, end]`.
    start: i64,
    /// Last instant of history.
    end: i64,
    /// UTC midnight at or before `start`: the start of day 0.
    base: i64,
    days: u32,
    /// Weekday of day 0, Monday = 0.
    weekday0: u32,
}

impl Clock {
    fn new(cfg: &GenerateConfig) -> io::Result<Self> {
        if cfg.days == 0 || cfg.days > MAX_DAYS {
            return Err(invalid("days must be between 1 and 36600"));
        }
        if cfg.accounts.saturating_mul(cfg.contacts_per_account.max(1)) > MAX_CONTACTS {
            return Err(invalid(
                "accounts x contacts_per_account must be at most 100 million",
            ));
        }
        if !cfg.sends_per_week.is_finite() || cfg.sends_per_week < 0.0 {
            return Err(invalid("sends_per_week must be a finite number >= 0"));
        }
        let end = cfg.end.timestamp_millis();
        let start = end - i64::from(cfg.days) * DAY_MS;
        if DateTime::from_timestamp_millis(start).is_none() {
            return Err(invalid("history starts before the representable range"));
        }
        let base = start.div_euclid(DAY_MS) * DAY_MS;
        let days = u32::try_from((end - base + DAY_MS - 1) / DAY_MS)
            .map_err(|_| invalid("history too long"))?
            .max(1);
        // 1970-01-01 was a Thursday (Monday = 0).
        let weekday0 = u32::try_from((base.div_euclid(DAY_MS) + 3).rem_euclid(7)).unwrap_or(0);
        Ok(Self {
            start,
            end,
            base,
            days,
            weekday0,
        })
    }

    fn day_start(&self, day: u32) -> i64 {
        self.base + i64::from(day) * DAY_MS
    }

    fn is_weekend(&self, day: u32) -> bool {
        (self.weekday0 + day) % 7 >= 5
    }

    /// The simulated day containing `end - days_before_end` days, clamped.
    fn day_before_end(&self, days_before_end: u32) -> u32 {
        let ms = self.end - i64::from(days_before_end) * DAY_MS;
        let day = (ms - self.base).div_euclid(DAY_MS);
        u32::try_from(day.clamp(0, i64::from(self.days - 1))).unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------
// Randomness helpers (no panicking ranges, no external distributions)
// ---------------------------------------------------------------------------

fn chance(rng: &mut StdRng, p: f64) -> bool {
    rng.random::<f64>() < p
}

fn uniform(rng: &mut StdRng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// Uniform integer in `[lo, hi]`; returns `lo` when the range is empty.
fn between(rng: &mut StdRng, lo: i64, hi: i64) -> i64 {
    if hi <= lo {
        lo
    } else {
        rng.random_range(lo..=hi)
    }
}

/// Uniform index below `n`; 0 when `n` is 0 so callers never panic.
fn index(rng: &mut StdRng, n: usize) -> usize {
    if n == 0 { 0 } else { rng.random_range(0..n) }
}

/// Standard normal via Box–Muller.
fn normal(rng: &mut StdRng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn lognormal(rng: &mut StdRng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

/// Index drawn with probability proportional to `weights`.
fn weighted(rng: &mut StdRng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len().saturating_sub(1)
}

/// SplitMix64 finaliser: a bijection on u64, so distinct inputs give
/// distinct ids (uniqueness without bookkeeping).
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------
// Vocabulary tables
// ---------------------------------------------------------------------------

#[rustfmt::skip]
const COMPANY_PREFIXES: [&str; 48] = [
    "Northwind", "Blue Harbor", "Summit", "Ironclad", "Brightpath", "Cedar", "Lumen", "Vertex",
    "Quantum Leaf", "Redwood", "Silverline", "Harborview", "Pinnacle", "Trailhead", "Keystone",
    "Evergreen", "Bluefin", "Copperleaf", "Halcyon", "Meridian", "Orchid", "Polaris", "Riverstone",
    "Sable", "Tidewater", "Union Square", "Westbrook", "Zenith", "Aurora", "Beacon", "Crescent",
    "Driftwood", "Elmstead", "Foxglove", "Granite", "Highland", "Juniper", "Kestrel", "Lakeside",
    "Maple", "Nimbus", "Oakridge", "Prairie", "Quarry", "Rook", "Stonebridge", "Thistle",
    "Windward",
];
#[rustfmt::skip]
const COMPANY_SUFFIXES: [&str; 24] = [
    "Analytics", "Systems", "Labs", "Logistics", "Health", "Capital", "Software", "Networks",
    "Robotics", "Foods", "Energy", "Media", "Bank", "Industries", "Solutions", "Cloud", "Security",
    "Partners", "Dynamics", "Works", "Biotech", "Retail", "Mobility", "Data",
];
const TLDS: [&str; 5] = ["com", "io", "co", "net", "ai"];
/// Coprime with 48 * 24 * 5, so account index -> name is a permutation.
const NAME_STRIDE: u64 = 1381;
#[rustfmt::skip]
const INDUSTRIES: [&str; 10] = [
    "Software", "Financial Services", "Healthcare", "Manufacturing", "Retail", "Education",
    "Media", "Logistics", "Telecommunications", "Energy",
];
#[rustfmt::skip]
const FIRST_NAMES: [&str; 48] = [
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Charles", "Karen", "Priya", "Wei", "Aisha", "Carlos", "Sofia", "Mateo", "Yuki", "Hiroshi",
    "Fatima", "Omar", "Elena", "Lucas", "Chloe", "Noah", "Amara", "Kwame", "Ingrid", "Lars",
    "Ananya", "Rohan", "Mei", "Jin", "Olga", "Ivan", "Zara", "Diego", "Nadia", "Tomas",
];
/// Coprime with `FIRST_NAMES.len()`: the first `len` contacts of an account
/// get distinct first names, hence distinct email addresses.
const FIRST_NAME_STRIDE: usize = 5;
#[rustfmt::skip]
const LAST_NAMES: [&str; 48] = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Clark", "Lewis",
    "Robinson", "Walker", "Young", "Patel", "Chen", "Kim", "Nguyen", "Singh", "Tanaka", "Muller",
    "Rossi", "Dubois", "Novak", "Kowalski", "Silva", "Okafor", "Haddad", "Johansson", "Ivanova",
    "Sato", "Byrne",
];
#[rustfmt::skip]
const SENIORITIES: [&str; 5] = [
    "c_level", "vp", "director", "manager", "individual_contributor",
];
const SENIORITY_WEIGHTS: [f64; 5] = [0.04, 0.08, 0.18, 0.30, 0.40];
#[rustfmt::skip]
const ROLES: [&str; 7] = [
    "marketing", "sales", "engineering", "it", "finance", "operations", "product",
];
const ROLE_WEIGHTS: [f64; 7] = [0.30, 0.20, 0.15, 0.10, 0.05, 0.10, 0.10];
/// Job title by seniority (row) and role (column).
const TITLES: [[&str; 7]; 5] = [
    [
        "Chief Marketing Officer",
        "Chief Revenue Officer",
        "Chief Technology Officer",
        "Chief Information Officer",
        "Chief Financial Officer",
        "Chief Operating Officer",
        "Chief Product Officer",
    ],
    [
        "VP of Marketing",
        "VP of Sales",
        "VP of Engineering",
        "VP of IT",
        "VP of Finance",
        "VP of Operations",
        "VP of Product",
    ],
    [
        "Director of Demand Generation",
        "Director of Sales",
        "Director of Engineering",
        "Director of IT",
        "Director of Finance",
        "Director of Operations",
        "Director of Product",
    ],
    [
        "Marketing Manager",
        "Sales Manager",
        "Engineering Manager",
        "IT Manager",
        "Finance Manager",
        "Operations Manager",
        "Product Manager",
    ],
    [
        "Marketing Operations Specialist",
        "Account Executive",
        "Software Engineer",
        "Systems Administrator",
        "Financial Analyst",
        "Operations Analyst",
        "Product Analyst",
    ],
];

/// A web page of the vendor site.
struct PageDef {
    name: &'static str,
    path: &'static str,
    title: &'static str,
}

const fn page(name: &'static str, path: &'static str, title: &'static str) -> PageDef {
    PageDef { name, path, title }
}

/// Page categories; the index into these arrays is `PageRef::cat`.
#[rustfmt::skip]
const PAGE_CATEGORIES: [&str; 7] = [
    "home", "blog", "docs", "product", "pricing", "comparison", "customers",
];
const CAT_PRICING: u8 = 4;
const CAT_COMPARISON: u8 = 5;
const PAGES: [&[PageDef]; 7] = [
    &[page("Home", "/", "liveseg | Real-time B2B segmentation")],
    &[
        page(
            "Blog Post",
            "/blog/real-time-segments",
            "Why batch segments miss the moment",
        ),
        page("Blog Post", "/blog/abm-playbook", "The 2026 ABM playbook"),
        page(
            "Blog Post",
            "/blog/last-n-sends",
            "Counting engagement over the last N sends",
        ),
        page("Blog Post", "/blog/intent-data-101", "Intent data 101"),
        page(
            "Blog Post",
            "/blog/sunset-policies",
            "Sunset policies that protect deliverability",
        ),
        page(
            "Blog Post",
            "/blog/buying-committees",
            "Mapping the buying committee",
        ),
        page(
            "Blog Post",
            "/blog/email-benchmarks-2026",
            "B2B email benchmarks 2026",
        ),
        page(
            "Blog Post",
            "/blog/propensity-scoring",
            "Propensity scoring without the hype",
        ),
    ],
    &[
        page("Docs", "/docs/getting-started", "Getting started"),
        page("Docs", "/docs/segment-dsl", "Segment definitions"),
        page("Docs", "/docs/grpc-api", "gRPC API reference"),
        page("Docs", "/docs/webhooks", "ESP webhooks"),
        page(
            "Docs",
            "/docs/integrations/salesforce",
            "Salesforce integration",
        ),
        page("Docs", "/docs/explain", "Explaining memberships"),
    ],
    &[
        page("Product", "/product/live-segments", "Live segments"),
        page("Product", "/product/intent", "Intent signals"),
        page("Product", "/product/content-matching", "Content matching"),
        page(
            "Product",
            "/product/explainability",
            "Explainable membership",
        ),
    ],
    &[
        page("Pricing", "/pricing", "Pricing"),
        page("Pricing", "/pricing/enterprise", "Enterprise pricing"),
    ],
    &[
        page(
            "Comparison",
            "/compare/liveseg-vs-segment",
            "liveseg vs Segment",
        ),
        page(
            "Comparison",
            "/compare/liveseg-vs-klaviyo",
            "liveseg vs Klaviyo",
        ),
        page(
            "Comparison",
            "/compare/liveseg-vs-hubspot",
            "liveseg vs HubSpot",
        ),
    ],
    &[
        page("Customers", "/customers", "Customer stories"),
        page(
            "Customers",
            "/customers/northwind-case-study",
            "How Northwind doubled reply rates",
        ),
    ],
];
/// Page-category weights (order of `PAGE_CATEGORIES`) by visitor situation.
const PAGE_WEIGHTS_BASE: [f64; 7] = [14.0, 36.0, 14.0, 18.0, 6.0, 3.0, 9.0];
const PAGE_WEIGHTS_CUSTOMER: [f64; 7] = [8.0, 20.0, 45.0, 15.0, 3.0, 1.0, 8.0];
const PAGE_WEIGHTS_IN_MARKET: [f64; 7] = [10.0, 18.0, 10.0, 20.0, 26.0, 12.0, 4.0];
/// Where campaign links point (category, page index).
const LINK_TARGETS: [PageRef; 10] = [
    PageRef { cat: 1, idx: 0 },
    PageRef { cat: 1, idx: 1 },
    PageRef { cat: 1, idx: 3 },
    PageRef { cat: 1, idx: 6 },
    PageRef { cat: 2, idx: 0 },
    PageRef { cat: 3, idx: 0 },
    PageRef { cat: 3, idx: 1 },
    PageRef { cat: 4, idx: 0 },
    PageRef { cat: 5, idx: 0 },
    PageRef { cat: 6, idx: 1 },
];
const SUBJECTS: [&str; 16] = [
    "Your segments are stale by the time you send",
    "The ABM playbook for Q4",
    "3 signals your buyers are in market",
    "New: explain any segment membership",
    "Webinar: real-time ABM without the data team",
    "How Northwind doubled reply rates",
    "Stop emailing people who stopped reading",
    "B2B email benchmarks 2026 are here",
    "Intent data, minus the guesswork",
    "Your weekly ABM digest",
    "What changed in liveseg this month",
    "Is your sunset policy hurting deliverability?",
    "Pricing that scales with your pipeline",
    "Quick question about your outbound stack",
    "Buying committees: who actually decides",
    "Last-N-sends: the engagement window you are missing",
];
#[rustfmt::skip]
const INTENT_TOPICS: [&str; 8] = [
    "pricing", "comparison", "security", "integrations", "account_based_marketing",
    "email_deliverability", "customer_data_platform", "marketing_automation",
];
const TOPIC_PRICING: u8 = 0;
const TOPIC_COMPARISON: u8 = 1;
const THIRD_PARTY_TOPIC_WEIGHTS: [f64; 8] = [0.05, 0.05, 0.15, 0.15, 0.2, 0.15, 0.15, 0.1];
#[rustfmt::skip]
const FEATURES: [&str; 8] = [
    "segments", "live_members", "explain", "content_matching", "propensity", "webhooks",
    "grpc_api", "dashboards",
];
const WEBINARS: [&str; 6] = [
    "Real-time ABM without the data team",
    "Building a sunset policy",
    "Intent data that sales trusts",
    "From MQL to buying group",
    "Explainable segmentation",
    "Deliverability in 2026",
];
const ASSETS: [(&str, &str, &str); 4] = [
    ("ast_abm_guide", "ebook", "The ABM Guide"),
    ("ast_intent_report", "report", "State of B2B Intent 2026"),
    (
        "ast_security_whitepaper",
        "whitepaper",
        "liveseg Security Whitepaper",
    ),
    ("ast_roi_calculator", "tool", "Segmentation ROI Calculator"),
];

// ---------------------------------------------------------------------------
// World: latent state of accounts and contacts
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AccountStage {
    Prospect,
    Opportunity,
    Customer,
}

impl AccountStage {
    fn as_str(self) -> &'static str {
        match self {
            Self::Prospect => "prospect",
            Self::Opportunity => "opportunity",
            Self::Customer => "customer",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContactStage {
    Lead,
    Mql,
    Sql,
    Opportunity,
    Customer,
}

impl ContactStage {
    fn as_str(self) -> &'static str {
        match self {
            Self::Lead => "lead",
            Self::Mql => "marketing_qualified_lead",
            Self::Sql => "sales_qualified_lead",
            Self::Opportunity => "opportunity",
            Self::Customer => "customer",
        }
    }

    /// A contact's stage follows its account once the account is in a deal.
    fn within(base: Self, account: AccountStage) -> Self {
        match account {
            AccountStage::Customer => Self::Customer,
            AccountStage::Opportunity => Self::Opportunity,
            AccountStage::Prospect => base,
        }
    }
}

/// The account traits a `group` call carries (a snapshot at event time).
#[derive(Debug, Clone, Copy)]
struct AccountTraits {
    tier: u8,
    target: bool,
    icp_fit: u8,
    stage: AccountStage,
    industry: u8,
    employees: u32,
}

/// A trait change the CRM will sync during the history.
#[derive(Debug, Clone, Copy)]
enum Change {
    Tier(u8),
    Target(bool),
    Stage(AccountStage),
}

struct Account {
    id: String,
    name: String,
    domain: String,
    traits: AccountTraits,
    /// Latent interest in the category (0..1): drives anonymous visits and
    /// third-party intent.
    interest: f64,
    /// Days `[from, to)` in which the account is actively evaluating vendors.
    surge: (u32, u32),
    /// From this day the whole account goes quiet (reorg, budget freeze):
    /// this is what makes `dormant_high_fit_accounts` non-empty.
    cold_from: u32,
    change: Option<(u32, Change)>,
    /// Every contact ever placed here, to keep email addresses unique.
    roster: Vec<u32>,
    /// Number of distinct unidentified visitors seen by reverse IP.
    visitors: u8,
}

impl Account {
    fn in_market(&self, day: u32) -> bool {
        day >= self.surge.0 && day < self.surge.1
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persona {
    Engaged,
    Casual,
    /// Never opens or clicks: feeds `sunset_candidates`.
    Silent,
    /// Engaged until `decay_from`, then quiet: feeds `decaying_customers`.
    Decaying,
}

struct Contact {
    account: u32,
    /// `(instant, old account)` of the contact's job move, so events written
    /// later still resolve the account that was current at their timestamp.
    moved: Option<(i64, u32)>,
    first: u8,
    last: u8,
    /// Disambiguates the email local part when 0 would collide.
    email_n: u16,
    seniority: u8,
    role: u8,
    base_stage: ContactStage,
    /// Last stage sent in an `identify`; `None` until the contact is placed.
    stage: Option<ContactStage>,
    persona: Persona,
    open_p: f64,
    click_p: f64,
    reply_p: f64,
    web_p: f64,
    product_p: f64,
    /// Multiplier of the configured send rate.
    send_scale: f64,
    product_user: bool,
    decay_from: u32,
    start_day: u32,
    move_plan: Option<(u32, u32)>,
    suppressed: bool,
}

impl Contact {
    /// The account current at `ts` (before or after the job move).
    fn account_at(&self, ts: i64) -> u32 {
        match self.moved {
            Some((at, old)) if ts < at => old,
            _ => self.account,
        }
    }

    fn identity(&self, stage: ContactStage) -> IdentitySnapshot {
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

struct World {
    accounts: Vec<Account>,
    contacts: Vec<Contact>,
}

impl World {
    fn build(cfg: &GenerateConfig, clock: &Clock, rng: &mut StdRng) -> Self {
        let mut accounts = Vec::with_capacity(cfg.accounts);
        let mut contacts = Vec::new();
        for a in 0..cfg.accounts {
            let mut account = new_account(a, cfg.seed, clock, rng);
            let n = contact_count(cfg.contacts_per_account, rng);
            for k in 0..n {
                let idx = u32::try_from(contacts.len()).unwrap_or(u32::MAX);
                account.roster.push(idx);
                contacts.push(new_contact(a, k, &account, clock, rng));
            }
            accounts.push(account);
        }
        plan_job_moves(&mut contacts, accounts.len(), clock, rng);
        Self { accounts, contacts }
    }
}

fn account_name(a: usize, seed: u64) -> (String, String) {
    let combos = (COMPANY_PREFIXES.len() * COMPANY_SUFFIXES.len() * TLDS.len()) as u64;
    let a = a as u64;
    let combo = (a.wrapping_mul(NAME_STRIDE) + seed % combos) % combos;
    let generation = a / combos;
    let combo = combo as usize;
    let prefix = COMPANY_PREFIXES[combo % COMPANY_PREFIXES.len()];
    let suffix = COMPANY_SUFFIXES[(combo / COMPANY_PREFIXES.len()) % COMPANY_SUFFIXES.len()];
    let tld = TLDS[combo / (COMPANY_PREFIXES.len() * COMPANY_SUFFIXES.len())];
    let slug: String = format!("{prefix}{suffix}")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let domain = if generation == 0 {
        format!("{slug}.{tld}")
    } else {
        format!("{slug}{}.{tld}", generation + 1)
    };
    (format!("{prefix} {suffix}"), domain)
}

fn new_account(a: usize, seed: u64, clock: &Clock, rng: &mut StdRng) -> Account {
    let (name, domain) = account_name(a, seed);
    let traits = account_traits(rng);
    let t = usize::from(traits.tier - 1);
    let mut surge_p = [0.55, 0.3, 0.15][t];
    if traits.stage == AccountStage::Opportunity {
        surge_p = 0.8;
    }
    let surge = if chance(rng, surge_p) {
        let from = index(rng, clock.days as usize) as u32;
        (from, from.saturating_add(between(rng, 14, 35) as u32))
    } else {
        (u32::MAX, u32::MAX)
    };
    let cold_from = if chance(rng, 0.18) {
        clock.day_before_end(between(rng, 35, 80) as u32).max(1)
    } else {
        u32::MAX
    };
    let interest = (rng.random::<f64>().powi(2) + if traits.target { 0.2 } else { 0.0 }).min(1.0);
    Account {
        id: format!("acct_{a:05}"),
        name,
        domain,
        traits,
        interest,
        surge,
        cold_from,
        change: plan_account_change(&traits, clock, rng),
        roster: Vec::new(),
        visitors: between(rng, 1, 6) as u8,
    }
}

fn account_traits(rng: &mut StdRng) -> AccountTraits {
    let tier = weighted(rng, &[0.15, 0.35, 0.50]) as u8 + 1;
    let t = usize::from(tier - 1);
    let target = chance(rng, [0.7, 0.35, 0.15][t]);
    // Skewed towards low fit: most accounts are a poor match.
    let fit = 100.0 * rng.random::<f64>().powf(1.6) + if tier == 1 { 15.0 } else { 0.0 };
    let stage = if chance(rng, [0.35, 0.25, 0.17][t]) {
        AccountStage::Customer
    } else if chance(rng, 0.18) {
        AccountStage::Opportunity
    } else {
        AccountStage::Prospect
    };
    let employees = lognormal(rng, [5000.0, 600.0, 60.0][t], 0.8).max(2.0);
    AccountTraits {
        tier,
        target,
        icp_fit: fit.round().clamp(0.0, 100.0) as u8,
        stage,
        industry: index(rng, INDUSTRIES.len()) as u8,
        employees: employees.round() as u32,
    }
}

fn plan_account_change(
    t: &AccountTraits,
    clock: &Clock,
    rng: &mut StdRng,
) -> Option<(u32, Change)> {
    if clock.days < 10 {
        return None;
    }
    let change = if t.stage == AccountStage::Prospect && chance(rng, 0.10) {
        Change::Stage(AccountStage::Opportunity)
    } else if t.stage == AccountStage::Opportunity && chance(rng, 0.30) {
        Change::Stage(AccountStage::Customer)
    } else if chance(rng, 0.04) {
        let tier = if t.tier == 1 || (t.tier == 2 && chance(rng, 0.5)) {
            t.tier + 1
        } else {
            t.tier - 1
        };
        Change::Tier(tier)
    } else if chance(rng, 0.04) {
        Change::Target(!t.target)
    } else {
        return None;
    };
    let days = i64::from(clock.days);
    Some((between(rng, days / 10, days * 9 / 10) as u32, change))
}

/// Log-normal around the configured mean, at least one contact.
fn contact_count(mean: usize, rng: &mut StdRng) -> usize {
    if mean <= 1 {
        return 1;
    }
    let sigma = 0.6;
    let mu = (mean as f64).ln() - sigma * sigma / 2.0;
    let n = (mu + sigma * normal(rng)).exp().round();
    (n as usize).clamp(1, mean.saturating_mul(20))
}

fn new_contact(a: usize, k: usize, account: &Account, clock: &Clock, rng: &mut StdRng) -> Contact {
    let persona = [
        Persona::Engaged,
        Persona::Casual,
        Persona::Silent,
        Persona::Decaying,
    ][weighted(rng, &[0.30, 0.35, 0.20, 0.15])];
    let base_stage = match persona {
        Persona::Engaged if chance(rng, 0.5) => ContactStage::Mql,
        Persona::Engaged if chance(rng, 0.4) => ContactStage::Sql,
        _ => ContactStage::Lead,
    };
    let start_day = if clock.days > 1 && chance(rng, 0.25) {
        between(rng, 1, i64::from(clock.days) - 1) as u32
    } else {
        0
    };
    let decay_from = if persona == Persona::Decaying {
        clock.day_before_end(between(rng, 45, 75) as u32)
    } else {
        u32::MAX
    };
    let mut contact = Contact {
        account: a as u32,
        moved: None,
        first: ((a * 7 + k * FIRST_NAME_STRIDE) % FIRST_NAMES.len()) as u8,
        last: index(rng, LAST_NAMES.len()) as u8,
        email_n: if k >= FIRST_NAMES.len() { k as u16 } else { 0 },
        seniority: weighted(rng, &SENIORITY_WEIGHTS) as u8,
        role: weighted(rng, &ROLE_WEIGHTS) as u8,
        base_stage,
        stage: None,
        persona,
        open_p: 0.0,
        click_p: 0.0,
        reply_p: 0.0,
        web_p: 0.0,
        product_p: 0.0,
        send_scale: uniform(rng, 0.5, 1.5),
        product_user: chance(rng, 0.55),
        decay_from,
        start_day,
        move_plan: None,
        suppressed: false,
    };
    set_propensities(&mut contact, account, rng);
    contact
}

/// Per-persona propensities, with C-level contacts opening less and target
/// accounts browsing more.
fn set_propensities(c: &mut Contact, account: &Account, rng: &mut StdRng) {
    let (open, click, reply, web, product) = match c.persona {
        Persona::Engaged => (
            (0.45, 0.8),
            (0.12, 0.3),
            (0.02, 0.06),
            (0.05, 0.15),
            (0.3, 0.6),
        ),
        Persona::Casual => (
            (0.12, 0.35),
            (0.03, 0.12),
            (0.005, 0.02),
            (0.01, 0.04),
            (0.1, 0.3),
        ),
        Persona::Silent => (
            (0.0, 0.0),
            (0.0, 0.0),
            (0.0, 0.0),
            (0.0, 0.003),
            (0.02, 0.1),
        ),
        Persona::Decaying => (
            (0.4, 0.75),
            (0.1, 0.25),
            (0.01, 0.04),
            (0.04, 0.1),
            (0.3, 0.5),
        ),
    };
    let seniority_damp = if c.seniority <= 1 { 0.7 } else { 1.0 };
    let target_boost = if account.traits.target { 1.5 } else { 1.0 };
    c.open_p = uniform(rng, open.0, open.1) * seniority_damp;
    c.click_p = uniform(rng, click.0, click.1);
    c.reply_p = uniform(rng, reply.0, reply.1);
    c.web_p = uniform(rng, web.0, web.1) * target_boost;
    c.product_p = uniform(rng, product.0, product.1);
}

/// About 2% of contacts change jobs to another account during the history.
fn plan_job_moves(contacts: &mut [Contact], accounts: usize, clock: &Clock, rng: &mut StdRng) {
    if accounts < 2 || clock.days < 12 {
        return;
    }
    let last = i64::from(clock.days) - 5;
    for c in contacts.iter_mut() {
        if !chance(rng, 0.02) {
            continue;
        }
        let from = i64::from(c.start_day) + 3;
        if from > last {
            continue;
        }
        let day = between(rng, from, last) as u32;
        let mut to = index(rng, accounts - 1) as u32;
        if to >= c.account {
            to += 1;
        }
        c.move_plan = Some((day, to));
    }
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct PageRef {
    cat: u8,
    idx: u8,
}

impl PageRef {
    fn def(self) -> Option<&'static PageDef> {
        PAGES.get(usize::from(self.cat))?.get(usize::from(self.idx))
    }

    fn is_pricing_intent(self) -> bool {
        self.cat == CAT_PRICING || self.cat == CAT_COMPARISON
    }
}

/// Everything an `identify` says, captured when it is generated.
#[derive(Debug, Clone, Copy)]
struct IdentitySnapshot {
    account: u32,
    first: u8,
    last: u8,
    email_n: u16,
    seniority: u8,
    role: u8,
    stage: ContactStage,
}

#[derive(Debug, Clone, Copy)]
enum Anon {
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
enum Ctx {
    None,
    Account(u32),
    /// The account current for the event's user at the event's instant.
    Contact,
}

#[derive(Debug, Clone, Copy)]
enum Body {
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
    fn email(&self) -> Option<u64> {
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
    fn kind(&self) -> &'static str {
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
struct Ev {
    user: Option<u32>,
    anon: Anon,
    ctx: Ctx,
    body: Body,
}

impl Ev {
    /// An event that counts for the account only (no contact).
    fn account_level(anon: Anon, account: u32, body: Body) -> Self {
        let ctx = Ctx::Account(account);
        Self {
            user: None,
            anon,
            ctx,
            body,
        }
    }

    /// An event of a known contact, without a cookie.
    fn contact(c: usize, ctx: Ctx, body: Body) -> Self {
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
struct Pending {
    ts: i64,
    seq: u64,
    ev: Ev,
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

// ---------------------------------------------------------------------------
// Simulation
// ---------------------------------------------------------------------------

struct Sim {
    world: World,
    rng: StdRng,
    clock: Clock,
    heap: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    emails: u64,
    /// Configured sends per contact per day.
    send_rate_scale: f64,
}

impl Sim {
    fn simulate_day(&mut self, day: u32) {
        for a in 0..self.world.accounts.len() {
            self.account_day(a, day);
        }
        for c in 0..self.world.contacts.len() {
            self.contact_day(c, day);
        }
    }

    /// Writes every pending event strictly before `horizon`, in order.
    fn flush_before(&mut self, horizon: i64, sink: &mut Sink<'_>) -> io::Result<()> {
        while self.heap.peek().is_some_and(|Reverse(p)| p.ts < horizon) {
            if let Some(Reverse(p)) = self.heap.pop() {
                sink.write(&self.world, &p)?;
            }
        }
        Ok(())
    }

    /// Schedules an event; anything after the end of history is dropped here
    /// so it never occupies memory.
    fn push(&mut self, ts: i64, ev: Ev) {
        if ts > self.clock.end {
            return;
        }
        let seq = self.seq;
        self.seq += 1;
        self.heap.push(Reverse(Pending { ts, seq, ev }));
    }

    fn push_contact(&mut self, ts: i64, c: usize, body: Body) {
        let ctx = if chance(&mut self.rng, CONTEXT_GROUP_SHARE) {
            Ctx::Contact
        } else {
            Ctx::None
        };
        self.push(ts, Ev::contact(c, ctx, body));
    }

    /// A random instant in `[from_h, to_h)` hours of `day`, or `None` if it
    /// falls before organic activity starts or after the end of history.
    fn slot(&mut self, day: u32, from_h: i64, to_h: i64) -> Option<i64> {
        let lo = self.clock.day_start(day) + from_h * HOUR_MS;
        let ts = between(&mut self.rng, lo, lo + (to_h - from_h) * HOUR_MS - 1);
        (ts >= self.clock.start + SYNC_MS && ts <= self.clock.end).then_some(ts)
    }

    /// Activity multiplier (1 = normal) for weekday rhythm.
    fn weekday_factor(&self, day: u32, weekend: f64) -> f64 {
        if self.clock.is_weekend(day) {
            weekend
        } else {
            (7.0 - 2.0 * weekend) / 5.0
        }
    }

    fn delay(&mut self, median_ms: f64, sigma: f64, min_ms: i64, max_ms: i64) -> i64 {
        (lognormal(&mut self.rng, median_ms, sigma) as i64).clamp(min_ms, max_ms)
    }

    fn next_email(&mut self) -> u64 {
        self.emails += 1;
        self.emails
    }
}

// Account-level behaviour.
impl Sim {
    fn account_day(&mut self, a: usize, day: u32) {
        if day == 0 {
            let ts = self.clock.start + between(&mut self.rng, 1, SYNC_MS / 2 - 1);
            self.push_account_group(a, ts);
        }
        if let Some((d, change)) = self.world.accounts[a].change
            && d == day
        {
            let traits = &mut self.world.accounts[a].traits;
            match change {
                Change::Tier(t) => traits.tier = t,
                Change::Target(t) => traits.target = t,
                Change::Stage(s) => traits.stage = s,
            }
            if let Some(ts) = self.slot(day, 8, 9) {
                self.push_account_group(a, ts);
            }
        }
        self.anonymous_visit(a, day);
        self.third_party_intent(a, day);
    }

    fn push_account_group(&mut self, a: usize, ts: i64) {
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

    /// Reverse-IP resolved visits: they count for the account, not a contact.
    fn anonymous_visit(&mut self, a: usize, day: u32) {
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
    fn third_party_intent(&mut self, a: usize, day: u32) {
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
}

// Contact-level behaviour.
impl Sim {
    fn contact_day(&mut self, c: usize, day: u32) {
        if day < self.world.contacts[c].start_day {
            return;
        }
        if self.world.contacts[c].stage.is_none() && !self.onboard(c, day) {
            return;
        }
        if let Some((d, to)) = self.world.contacts[c].move_plan
            && d == day
        {
            self.change_job(c, day, to);
        }
        self.sync_stage(c, day);
        let activity = self.activity(c, day);
        self.maybe_send(c, day, activity);
        self.maybe_browse(c, day, activity);
        self.maybe_use_product(c, day, activity);
        self.maybe_convert(c, day, activity);
    }

    /// Engagement multiplier: personal decay and the account going cold.
    fn activity(&self, c: usize, day: u32) -> f64 {
        let ct = &self.world.contacts[c];
        let acct = &self.world.accounts[ct.account as usize];
        let personal = if day >= ct.decay_from { 0.03 } else { 1.0 };
        personal * if day >= acct.cold_from { 0.01 } else { 1.0 }
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
    fn onboard(&mut self, c: usize, day: u32) -> bool {
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
    fn change_job(&mut self, c: usize, day: u32, to: u32) {
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
    fn sync_stage(&mut self, c: usize, day: u32) {
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

    fn maybe_send(&mut self, c: usize, day: u32, activity: f64) {
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

    fn push_page(&mut self, c: usize, ts: i64, page: PageRef, campaign: Option<u32>) {
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
    fn maybe_browse(&mut self, c: usize, day: u32, activity: f64) {
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

    /// Customers' users log in and use features on working days.
    fn maybe_use_product(&mut self, c: usize, day: u32, activity: f64) {
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
    fn maybe_convert(&mut self, c: usize, day: u32, activity: f64) {
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

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Msg<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message_id: &'a str,
    timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    anonymous_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    properties: Option<Props<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traits: Option<Traits<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<Context<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Context<'a> {
    group_id: &'a str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Props<'a> {
    Send {
        email_id: &'a str,
        campaign_id: &'a str,
        content_id: &'a str,
        subject: &'static str,
    },
    Click {
        email_id: &'a str,
        url: &'a str,
        content_id: &'a str,
    },
    Bounce {
        email_id: &'a str,
        #[serde(rename = "type")]
        bounce_type: &'static str,
    },
    Unsubscribe {
        email_id: &'a str,
        campaign_id: &'a str,
    },
    EmailRef {
        email_id: &'a str,
    },
    Page {
        name: &'static str,
        category: &'static str,
        path: &'static str,
        url: &'a str,
        title: &'static str,
    },
    Intent {
        topic: &'static str,
        source: &'static str,
        strength: u8,
    },
    Meeting {
        meeting_type: &'static str,
        booked_via: &'static str,
    },
    Login {
        method: &'static str,
    },
    Feature {
        feature: &'static str,
    },
    Webinar {
        webinar_id: &'a str,
        webinar_title: &'static str,
    },
    Asset {
        asset_id: &'static str,
        asset_type: &'static str,
        title: &'static str,
    },
}

#[derive(Serialize)]
#[serde(untagged)]
enum Traits<'a> {
    Account {
        name: &'a str,
        domain: &'a str,
        tier: u8,
        target: bool,
        icp_fit: u8,
        lifecycle_stage: &'static str,
        industry: &'static str,
        employees: u32,
    },
    Contact {
        email: &'a str,
        #[serde(rename = "firstName")]
        first_name: &'static str,
        #[serde(rename = "lastName")]
        last_name: &'static str,
        title: &'static str,
        seniority: &'static str,
        role: &'static str,
        lifecycle_stage: &'static str,
    },
}

/// Fields common to every message, already formatted.
struct Head<'w> {
    message_id: String,
    timestamp: String,
    user_id: Option<String>,
    anonymous_id: Option<String>,
    group: Option<&'w str>,
}

impl<'w> Head<'w> {
    fn msg(&self, kind: &'static str) -> Msg<'_> {
        Msg {
            kind,
            message_id: &self.message_id,
            timestamp: &self.timestamp,
            user_id: self.user_id.as_deref(),
            anonymous_id: self.anonymous_id.as_deref(),
            event: None,
            name: None,
            group_id: None,
            properties: None,
            traits: None,
            context: self.group.map(|group_id| Context { group_id }),
        }
    }

    fn track(&self, event: &'static str) -> Msg<'_> {
        Msg {
            event: Some(event),
            ..self.msg("track")
        }
    }
}

fn timestamp(ms: i64) -> io::Result<String> {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .ok_or_else(|| invalid("timestamp out of range"))
}

fn lookup<T>(table: &[T], i: impl Into<usize>) -> io::Result<&T> {
    table
        .get(i.into())
        .ok_or_else(|| io::Error::other("generator table index out of range"))
}

/// Serialises events into a buffer handed to the writer in large chunks
/// (the caller's writer may be unbuffered, e.g. a raw stdout lock).
struct Sink<'o> {
    out: &'o mut dyn Write,
    buf: Vec<u8>,
    /// Seed-derived key: ids differ between seeds, so two generated files can
    /// be ingested into one tenant without messageId collisions.
    key: u64,
    start: i64,
    end: i64,
    stats: GenerateStats,
}

impl<'o> Sink<'o> {
    fn new(out: &'o mut dyn Write, seed: u64, clock: &Clock) -> Self {
        Self {
            out,
            buf: Vec::with_capacity(FLUSH_BYTES * 2),
            key: mix64(seed ^ 0x6C69_7665_7365_6721),
            start: clock.start,
            end: clock.end,
            stats: GenerateStats::default(),
        }
    }

    fn finish(self) -> io::Result<GenerateStats> {
        self.out.write_all(&self.buf)?;
        self.out.flush()?;
        Ok(self.stats)
    }

    fn write(&mut self, world: &World, p: &Pending) -> io::Result<()> {
        if p.ts <= self.start || p.ts > self.end {
            return Ok(());
        }
        let head = self.head(world, p)?;
        self.render(world, &head, &p.ev.body)?;
        self.stats.events += 1;
        let kind = p.ev.body.kind();
        match self.stats.by_kind.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                self.stats.by_kind.insert(kind.to_owned(), 1);
            }
        }
        if self.buf.len() >= FLUSH_BYTES {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn head<'w>(&self, world: &'w World, p: &Pending) -> io::Result<Head<'w>> {
        let hi = mix64(p.seq ^ self.key);
        let lo = mix64(hi ^ self.key.rotate_left(17));
        let message_id = format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xffff,
            hi & 0xffff,
            lo >> 48,
            lo & 0xffff_ffff_ffff
        );
        let user =
            p.ev.user
                .map(|u| lookup(&world.contacts, u as usize))
                .transpose()?;
        let account = match p.ev.ctx {
            Ctx::None => None,
            Ctx::Account(a) => Some(a),
            Ctx::Contact => user.map(|u| u.account_at(p.ts)),
        };
        let group = account
            .map(|a| lookup(&world.accounts, a as usize).map(|a| a.id.as_str()))
            .transpose()?;
        Ok(Head {
            message_id,
            timestamp: timestamp(p.ts)?,
            user_id: p.ev.user.map(|u| format!("usr_{u:06}")),
            anonymous_id: self.anonymous_id(world, p.ev.anon)?,
            group,
        })
    }

    fn anonymous_id(&self, world: &World, anon: Anon) -> io::Result<Option<String>> {
        let account_id = |a: u32| lookup(&world.accounts, a as usize).map(|a| a.id.as_str());
        Ok(match anon {
            Anon::None => None,
            Anon::Crm(a) => Some(format!("crm-sync:{}", account_id(a)?)),
            Anon::IntentFeed(a) => Some(format!("intent-feed:{}", account_id(a)?)),
            Anon::Visitor(a, k) => {
                let salt = (u64::from(a) << 8) | u64::from(k) | (1 << 62);
                Some(format!("anon-{:016x}", mix64(salt ^ self.key)))
            }
            Anon::Cookie(c) => Some(format!("anon-{:016x}", mix64(u64::from(c) ^ self.key))),
        })
    }

    fn emit(&mut self, msg: &Msg<'_>) -> io::Result<()> {
        serde_json::to_writer(&mut self.buf, msg)?;
        self.buf.push(b'\n');
        Ok(())
    }

    fn render(&mut self, world: &World, head: &Head<'_>, body: &Body) -> io::Result<()> {
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

/// The page's URL, tagged with UTM parameters when reached from a campaign.
fn page_url(def: &PageDef, campaign: Option<u32>) -> String {
    match campaign {
        Some(c) => format!(
            "{SITE}{}?utm_source=liveseg&utm_medium=email&utm_campaign=cmp_{c:05}",
            def.path
        ),
        None => format!("{SITE}{}", def.path),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::{HashMap, HashSet};

    fn small() -> GenerateConfig {
        GenerateConfig {
            accounts: 40,
            days: 60,
            ..GenerateConfig::default()
        }
    }

    fn run(cfg: &GenerateConfig) -> (Vec<u8>, GenerateStats) {
        let mut out = Vec::new();
        let stats = generate(cfg, &mut out).expect("generate");
        (out, stats)
    }

    fn parse(bytes: &[u8]) -> Vec<Value> {
        bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("line is JSON"))
            .collect()
    }

    fn ms(v: &Value) -> i64 {
        let s = v["timestamp"].as_str().expect("timestamp");
        DateTime::parse_from_rfc3339(s)
            .expect("rfc3339")
            .timestamp_millis()
    }

    fn str_at<'v>(v: &'v Value, pointer: &str) -> Option<&'v str> {
        v.pointer(pointer).and_then(Value::as_str)
    }

    #[test]
    fn same_seed_same_bytes_and_other_seed_differs() {
        let cfg = small();
        let (a, _) = run(&cfg);
        let (b, _) = run(&cfg);
        assert!(a == b, "same seed must give byte-identical output");
        let (c, _) = run(&GenerateConfig { seed: 7, ..cfg });
        assert!(a != c, "a different seed must give different output");
    }

    #[test]
    fn output_is_time_sorted_within_history_with_ms_precision() {
        let cfg = small();
        let (out, _) = run(&cfg);
        let events = parse(&out);
        let end = cfg.end.timestamp_millis();
        let start = end - i64::from(cfg.days) * DAY_MS;
        let mut last = i64::MIN;
        for e in &events {
            let s = e["timestamp"].as_str().expect("timestamp");
            assert_eq!(s.len(), 24, "millisecond UTC timestamp: {s}");
            assert!(s.ends_with('Z'), "UTC: {s}");
            let t = ms(e);
            assert!(t >= last, "not sorted at {s}");
            assert!(t > start && t <= end, "outside history: {s}");
            last = t;
        }
    }

    #[test]
    fn message_ids_are_unique() {
        let (out, stats) = run(&small());
        let events = parse(&out);
        let ids: HashSet<&str> = events
            .iter()
            .filter_map(|e| str_at(e, "/messageId"))
            .collect();
        assert_eq!(ids.len(), events.len());
        assert_eq!(stats.events, events.len() as u64);
        assert_eq!(stats.by_kind.values().sum::<u64>(), stats.events);
    }

    #[test]
    fn every_line_has_the_fields_its_type_requires() {
        let (out, _) = run(&small());
        for e in parse(&out) {
            assert!(str_at(&e, "/messageId").is_some(), "{e}");
            let user = str_at(&e, "/userId");
            assert!(
                user.is_some() || str_at(&e, "/anonymousId").is_some(),
                "{e}"
            );
            match str_at(&e, "/type").expect("type") {
                "track" => assert!(str_at(&e, "/event").is_some(), "{e}"),
                "group" => assert!(str_at(&e, "/groupId").is_some(), "{e}"),
                "identify" => assert!(
                    str_at(&e, "/traits/email").is_some_and(|m| m.contains('@')),
                    "{e}"
                ),
                "page" => {
                    assert!(str_at(&e, "/name").is_some(), "{e}");
                    for key in ["name", "category", "path", "url", "title"] {
                        assert!(e["properties"][key].is_string(), "page {key}: {e}");
                    }
                }
                other => panic!("unexpected type {other}"),
            }
            if user.is_none() && str_at(&e, "/type") != Some("group") {
                assert!(
                    str_at(&e, "/context/groupId").is_some(),
                    "account-level needs groupId: {e}"
                );
            }
        }
    }

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

    #[test]
    fn sizes_follow_the_config() {
        let cfg = GenerateConfig {
            accounts: 300,
            contacts_per_account: 6,
            days: 30,
            ..GenerateConfig::default()
        };
        let (out, stats) = run(&cfg);
        assert_eq!(stats.accounts, 300);
        let wanted = 300.0 * 6.0;
        let ratio = stats.contacts as f64 / wanted;
        assert!(
            (0.85..1.2).contains(&ratio),
            "contacts {} vs {wanted}",
            stats.contacts
        );
        let events = parse(&out);
        let groups: HashSet<&str> = events
            .iter()
            .filter(|e| e["traits"]["tier"].is_number())
            .filter_map(|e| str_at(e, "/groupId"))
            .collect();
        assert_eq!(groups.len(), 300);
        let users: HashSet<&str> = events
            .iter()
            .filter(|e| str_at(e, "/type") == Some("identify"))
            .filter_map(|e| str_at(e, "/userId"))
            .collect();
        assert_eq!(
            users.len() as u64,
            stats.contacts,
            "every contact is identified"
        );
    }

    #[test]
    fn rejects_configs_without_a_history() {
        let mut sink = Vec::new();
        let zero_days = GenerateConfig { days: 0, ..small() };
        let err = generate(&zero_days, &mut sink).expect_err("days = 0");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let nan = GenerateConfig {
            sends_per_week: f64::NAN,
            ..small()
        };
        assert!(generate(&nan, &mut sink).is_err());
    }

    #[test]
    fn end_need_not_be_midnight() {
        let end = Utc
            .with_ymd_and_hms(2026, 6, 3, 15, 27, 11)
            .single()
            .expect("date");
        let cfg = GenerateConfig {
            end,
            days: 10,
            accounts: 10,
            ..GenerateConfig::default()
        };
        let (out, stats) = run(&cfg);
        let events = parse(&out);
        assert!(stats.events > 100);
        assert!(events.iter().all(|e| ms(e) <= end.timestamp_millis()));
        // The CRM sync (group calls) comes first.
        assert_eq!(str_at(&events[0], "/type"), Some("group"));
    }

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

    #[test]
    fn defaults_have_members_in_every_starter_segment() {
        let cfg = GenerateConfig::default();
        let (out, _) = run(&cfg);
        let mut oracle = Oracle::default();
        for e in parse(&out) {
            oracle.apply(&e);
        }
        let counts = oracle.segments(cfg.end.timestamp_millis());
        eprintln!("starter segment sizes at end: {counts:?}");
        for (segment, n) in &counts {
            assert!(*n > 0, "{segment} has no members");
        }
        let customers = oracle
            .accounts
            .values()
            .filter(|a| a.stage == "customer")
            .count();
        let share = customers as f64 / oracle.accounts.len() as f64;
        assert!((0.15..0.4).contains(&share), "customer share {share}");
    }

    /// A crude reference evaluation of the starter segments (DESIGN.md §4)
    /// straight from the event stream, independent of the engine.
    #[derive(Default)]
    struct Oracle {
        accounts: HashMap<String, AccountState>,
        directory: HashMap<String, String>,
        contacts: HashMap<String, ContactState>,
    }

    #[derive(Default)]
    struct AccountState {
        tier: i64,
        target: bool,
        fit: i64,
        stage: String,
        engagements: Vec<i64>,
        pricing_intent: Vec<i64>,
    }

    #[derive(Default)]
    struct ContactState {
        sends: Vec<String>,
        first_send: Option<i64>,
        opened_or_clicked: HashSet<String>,
        open_click_times: Vec<i64>,
        engagements: Vec<i64>,
        suppressed: bool,
    }

    const ENGAGEMENTS: [&str; 6] = [
        "Email Opened",
        "Email Link Clicked",
        "Email Replied",
        "Meeting Booked",
        "Product Used",
        "Logged In",
    ];

    impl Oracle {
        fn apply(&mut self, e: &Value) {
            let user = str_at(e, "/userId").map(str::to_owned);
            if str_at(e, "/type") == Some("group") {
                let g = str_at(e, "/groupId").expect("groupId").to_owned();
                match user {
                    Some(u) => {
                        self.directory.insert(u, g);
                    }
                    None => {
                        let a = self.accounts.entry(g).or_default();
                        a.tier = e["traits"]["tier"].as_i64().expect("tier");
                        a.target = e["traits"]["target"].as_bool().expect("target");
                        a.fit = e["traits"]["icp_fit"].as_i64().expect("icp_fit");
                        a.stage = str_at(e, "/traits/lifecycle_stage")
                            .expect("stage")
                            .to_owned();
                    }
                }
                return;
            }
            let account = str_at(e, "/context/groupId")
                .map(str::to_owned)
                .or_else(|| user.as_ref().and_then(|u| self.directory.get(u).cloned()));
            let t = ms(e);
            let is_page = str_at(e, "/type") == Some("page");
            let event = str_at(e, "/event").unwrap_or_default();
            let engagement = is_page || ENGAGEMENTS.contains(&event);
            if let Some(a) = account.and_then(|a| self.accounts.get_mut(&a)) {
                if engagement {
                    a.engagements.push(t);
                }
                if is_pricing_intent(e) {
                    a.pricing_intent.push(t);
                }
            }
            if let Some(u) = user
                && event != "Intent Signal"
            {
                self.apply_contact(u, e, t, engagement);
            }
        }

        fn apply_contact(&mut self, u: String, e: &Value, t: i64, engagement: bool) {
            let c = self.contacts.entry(u).or_default();
            let email_id = str_at(e, "/properties/email_id").map(str::to_owned);
            match str_at(e, "/event").unwrap_or_default() {
                "Email Delivered" | "Email Sent" => {
                    c.sends.extend(email_id);
                    c.first_send.get_or_insert(t);
                }
                "Email Opened" | "Email Link Clicked" => {
                    c.opened_or_clicked.extend(email_id);
                    c.open_click_times.push(t);
                }
                "Unsubscribed" | "Email Marked as Spam" => c.suppressed = true,
                "Email Bounced" => c.suppressed |= str_at(e, "/properties/type") == Some("hard"),
                _ => {}
            }
            if engagement {
                c.engagements.push(t);
            }
        }

        fn segments(&self, t: i64) -> BTreeMap<&'static str, usize> {
            let within = |times: &[i64], from: i64, to: i64| {
                times.iter().filter(|x| **x > from && **x <= to).count()
            };
            let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
            for key in [
                "engaged_target_contacts",
                "engaged_non_target_contacts",
                "dormant_high_fit_accounts",
                "decaying_customers",
                "sunset_candidates",
                "tier1_pricing_intent",
            ] {
                counts.insert(key, 0);
            }
            let mut bump = |key: &'static str| *counts.entry(key).or_default() += 1;
            for a in self.accounts.values() {
                if a.fit >= 70 && within(&a.engagements, t - 30 * DAY_MS, t) == 0 {
                    bump("dormant_high_fit_accounts");
                }
            }
            for (u, c) in &self.contacts {
                let Some(a) = self.directory.get(u).and_then(|g| self.accounts.get(g)) else {
                    continue;
                };
                if c.suppressed {
                    continue;
                }
                let recent = within(&c.engagements, t - 30 * DAY_MS, t);
                if recent > 0 {
                    bump(if a.target {
                        "engaged_target_contacts"
                    } else {
                        "engaged_non_target_contacts"
                    });
                }
                let prior = within(&c.engagements, t - 120 * DAY_MS, t - 30 * DAY_MS);
                if a.stage == "customer" && prior >= 3 && 6 * recent <= prior {
                    bump("decaying_customers");
                }
                let quiet = within(&c.open_click_times, t - 90 * DAY_MS, t) == 0;
                if c.first_send.is_some_and(|f| f <= t - 90 * DAY_MS) && quiet {
                    bump("sunset_candidates");
                }
                let last5 = c
                    .sends
                    .iter()
                    .rev()
                    .take(5)
                    .filter(|id| c.opened_or_clicked.contains(*id))
                    .count();
                if a.tier == 1 && last5 >= 2 && within(&a.pricing_intent, t - 30 * DAY_MS, t) > 0 {
                    bump("tier1_pricing_intent");
                }
            }
            counts
        }
    }

    fn is_pricing_intent(e: &Value) -> bool {
        if str_at(e, "/type") == Some("page") {
            let category = str_at(e, "/properties/category")
                .unwrap_or_default()
                .to_ascii_lowercase();
            let path = str_at(e, "/properties/path").unwrap_or_default();
            return category == "pricing"
                || category == "comparison"
                || path.starts_with("/pricing")
                || path.starts_with("/compare");
        }
        str_at(e, "/event") == Some("Intent Signal")
            && str_at(e, "/properties/source") == Some("first_party")
            && matches!(
                str_at(e, "/properties/topic"),
                Some("pricing" | "comparison")
            )
    }
}
