//! Fixed word lists the generator draws names, titles and event properties
//! from. Indices into these tables are what the world and the events store;
//! the strings only appear when a line is rendered.

// Companies and the people who work there.

#[rustfmt::skip]
pub(super) const COMPANY_PREFIXES: [&str; 48] = [
    "Northwind", "Blue Harbor", "Summit", "Ironclad", "Brightpath", "Cedar", "Lumen", "Vertex",
    "Quantum Leaf", "Redwood", "Silverline", "Harborview", "Pinnacle", "Trailhead", "Keystone",
    "Evergreen", "Bluefin", "Copperleaf", "Halcyon", "Meridian", "Orchid", "Polaris", "Riverstone",
    "Sable", "Tidewater", "Union Square", "Westbrook", "Zenith", "Aurora", "Beacon", "Crescent",
    "Driftwood", "Elmstead", "Foxglove", "Granite", "Highland", "Juniper", "Kestrel", "Lakeside",
    "Maple", "Nimbus", "Oakridge", "Prairie", "Quarry", "Rook", "Stonebridge", "Thistle",
    "Windward",
];
#[rustfmt::skip]
pub(super) const COMPANY_SUFFIXES: [&str; 24] = [
    "Analytics", "Systems", "Labs", "Logistics", "Health", "Capital", "Software", "Networks",
    "Robotics", "Foods", "Energy", "Media", "Bank", "Industries", "Solutions", "Cloud", "Security",
    "Partners", "Dynamics", "Works", "Biotech", "Retail", "Mobility", "Data",
];
pub(super) const TLDS: [&str; 5] = ["com", "io", "co", "net", "ai"];
/// Coprime with 48 * 24 * 5, so account index -> name is a permutation.
pub(super) const NAME_STRIDE: u64 = 1381;
#[rustfmt::skip]
pub(super) const INDUSTRIES: [&str; 10] = [
    "Software", "Financial Services", "Healthcare", "Manufacturing", "Retail", "Education",
    "Media", "Logistics", "Telecommunications", "Energy",
];
#[rustfmt::skip]
pub(super) const FIRST_NAMES: [&str; 48] = [
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Charles", "Karen", "Priya", "Wei", "Aisha", "Carlos", "Sofia", "Mateo", "Yuki", "Hiroshi",
    "Fatima", "Omar", "Elena", "Lucas", "Chloe", "Noah", "Amara", "Kwame", "Ingrid", "Lars",
    "Ananya", "Rohan", "Mei", "Jin", "Olga", "Ivan", "Zara", "Diego", "Nadia", "Tomas",
];
/// Coprime with `FIRST_NAMES.len()`: the first `len` contacts of an account
/// get distinct first names, hence distinct email addresses.
pub(super) const FIRST_NAME_STRIDE: usize = 5;
#[rustfmt::skip]
pub(super) const LAST_NAMES: [&str; 48] = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Clark", "Lewis",
    "Robinson", "Walker", "Young", "Patel", "Chen", "Kim", "Nguyen", "Singh", "Tanaka", "Muller",
    "Rossi", "Dubois", "Novak", "Kowalski", "Silva", "Okafor", "Haddad", "Johansson", "Ivanova",
    "Sato", "Byrne",
];
#[rustfmt::skip]
pub(super) const SENIORITIES: [&str; 5] = [
    "c_level", "vp", "director", "manager", "individual_contributor",
];
pub(super) const SENIORITY_WEIGHTS: [f64; 5] = [0.04, 0.08, 0.18, 0.30, 0.40];
#[rustfmt::skip]
pub(super) const ROLES: [&str; 7] = [
    "marketing", "sales", "engineering", "it", "finance", "operations", "product",
];
pub(super) const ROLE_WEIGHTS: [f64; 7] = [0.30, 0.20, 0.15, 0.10, 0.05, 0.10, 0.10];
/// Job title by seniority (row) and role (column).
pub(super) const TITLES: [[&str; 7]; 5] = [
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

// Properties of the events they generate.

pub(super) const SUBJECTS: [&str; 16] = [
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
pub(super) const INTENT_TOPICS: [&str; 8] = [
    "pricing", "comparison", "security", "integrations", "account_based_marketing",
    "email_deliverability", "customer_data_platform", "marketing_automation",
];
pub(super) const TOPIC_PRICING: u8 = 0;
pub(super) const TOPIC_COMPARISON: u8 = 1;
pub(super) const THIRD_PARTY_TOPIC_WEIGHTS: [f64; 8] =
    [0.05, 0.05, 0.15, 0.15, 0.2, 0.15, 0.15, 0.1];
#[rustfmt::skip]
pub(super) const FEATURES: [&str; 8] = [
    "segments", "live_members", "explain", "content_matching", "propensity", "webhooks",
    "grpc_api", "dashboards",
];
pub(super) const WEBINARS: [&str; 6] = [
    "Real-time ABM without the data team",
    "Building a sunset policy",
    "Intent data that sales trusts",
    "From MQL to buying group",
    "Explainable segmentation",
    "Deliverability in 2026",
];
pub(super) const ASSETS: [(&str, &str, &str); 4] = [
    ("ast_abm_guide", "ebook", "The ABM Guide"),
    ("ast_intent_report", "report", "State of B2B Intent 2026"),
    (
        "ast_security_whitepaper",
        "whitepaper",
        "liveseg Security Whitepaper",
    ),
    ("ast_roi_calculator", "tool", "Segmentation ROI Calculator"),
];
