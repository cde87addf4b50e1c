//! The vendor's web site: its pages, which pages a visitor is likely to
//! read in a given situation, and where campaign links point.

const SITE: &str = "https://www.liveseg.example";

/// A web page of the vendor site.
pub(super) struct PageDef {
    pub(super) name: &'static str,
    pub(super) path: &'static str,
    pub(super) title: &'static str,
}

const fn page(name: &'static str, path: &'static str, title: &'static str) -> PageDef {
    PageDef { name, path, title }
}

/// A page of the site, by category and position in `PAGES`.
#[derive(Debug, Clone, Copy)]
pub(super) struct PageRef {
    /// Index into `PAGE_CATEGORIES` and `PAGES`.
    pub(super) cat: u8,
    /// Index into the category's pages.
    pub(super) idx: u8,
}

impl PageRef {
    pub(super) fn def(self) -> Option<&'static PageDef> {
        PAGES.get(usize::from(self.cat))?.get(usize::from(self.idx))
    }

    /// Pricing and comparison pages: what the site's intent scorer reacts to.
    pub(super) fn is_pricing_intent(self) -> bool {
        self.cat == CAT_PRICING || self.cat == CAT_COMPARISON
    }
}

/// Page categories; the index into these arrays is `PageRef::cat`.
#[rustfmt::skip]
pub(super) const PAGE_CATEGORIES: [&str; 7] = [
    "home", "blog", "docs", "product", "pricing", "comparison", "customers",
];
pub(super) const CAT_PRICING: u8 = 4;
const CAT_COMPARISON: u8 = 5;
pub(super) const PAGES: [&[PageDef]; 7] = [
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
pub(super) const PAGE_WEIGHTS_BASE: [f64; 7] = [14.0, 36.0, 14.0, 18.0, 6.0, 3.0, 9.0];
pub(super) const PAGE_WEIGHTS_CUSTOMER: [f64; 7] = [8.0, 20.0, 45.0, 15.0, 3.0, 1.0, 8.0];
pub(super) const PAGE_WEIGHTS_IN_MARKET: [f64; 7] = [10.0, 18.0, 10.0, 20.0, 26.0, 12.0, 4.0];
/// Where campaign links point (category, page index).
pub(super) const LINK_TARGETS: [PageRef; 10] = [
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

/// The page's URL, tagged with UTM parameters when reached from a campaign.
pub(super) fn page_url(def: &PageDef, campaign: Option<u32>) -> String {
    match campaign {
        Some(c) => format!(
            "{SITE}{}?utm_source=liveseg&utm_medium=email&utm_campaign=cmp_{c:05}",
            def.path
        ),
        None => format!("{SITE}{}", def.path),
    }
}
