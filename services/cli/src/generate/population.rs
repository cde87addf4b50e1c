//! Building the world: accounts with their traits and latent plans (surge,
//! going cold, CRM changes), their buying committees of contacts with
//! personas and propensities, and the job moves planned between accounts.

use rand::Rng;
use rand::rngs::StdRng;

use super::GenerateConfig;
use super::clock::Clock;
use super::random::{between, chance, index, lognormal, normal, uniform, weighted};
use super::vocabulary::{
    COMPANY_PREFIXES, COMPANY_SUFFIXES, FIRST_NAME_STRIDE, FIRST_NAMES, INDUSTRIES, LAST_NAMES,
    NAME_STRIDE, ROLE_WEIGHTS, SENIORITY_WEIGHTS, TLDS,
};
use super::world::{
    Account, AccountStage, AccountTraits, Change, Contact, ContactStage, Persona, World,
};

impl World {
    pub(super) fn build(cfg: &GenerateConfig, clock: &Clock, rng: &mut StdRng) -> Self {
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use crate::generate::GenerateConfig;
    use crate::generate::test_support::{parse, run, str_at};

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
}
