//! Best send hour per contact: when its opens and clicks happen (UTC hour
//! of day), smoothed toward its account's and its tenant's hours when the
//! contact has little data.
//!
//! The estimate is a posterior mean over 24 hours: the contact's counts plus
//! `ACCOUNT_PRIOR` pseudo-events spread like its account's hours plus
//! `TENANT_PRIOR` pseudo-events spread like the tenant's, then a circular
//! [1/4, 1/2, 1/4] kernel so a 09:00 and a 10:00 open support each other.
//! A contact with 40 opens keeps its own peak; one with 2 mostly follows
//! its account; one with none gets the account's or tenant's hour. Event
//! hours are UTC: contacts carry no time zone in the vocabulary yet.

use serde::Serialize;

/// Pseudo-events of the account's distribution added to a contact's.
pub const ACCOUNT_PRIOR: f64 = 4.0;
/// Pseudo-events of the tenant's distribution.
pub const TENANT_PRIOR: f64 = 2.0;

/// Where most of the evidence behind a best hour came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    Contact,
    Account,
    Tenant,
    /// No opens or clicks anywhere: no preference.
    None,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SendHour {
    /// 0-23, UTC.
    pub hour: u8,
    /// Share of the smoothed mass in that hour and its two neighbours.
    pub confidence: f64,
    /// The contact's own opens and clicks behind it.
    pub contact_events: u32,
    pub basis: Basis,
}

fn share(h: &[u32; 24]) -> Option<[f64; 24]> {
    let total: u32 = h.iter().sum();
    if total == 0 {
        return None;
    }
    Some(std::array::from_fn(|i| f64::from(h[i]) / f64::from(total)))
}

/// The best hour of a contact given its, its account's and the tenant's
/// hour histograms (the account's and tenant's include the contact's).
pub fn best_hour(contact: &[u32; 24], account: &[u32; 24], tenant: &[u32; 24]) -> SendHour {
    let own: u32 = contact.iter().sum();
    let acc = share(account);
    let ten = share(tenant);
    let mut mass = [0.0f64; 24];
    for (h, m) in mass.iter_mut().enumerate() {
        *m = f64::from(contact[h])
            + acc.map_or(0.0, |a| ACCOUNT_PRIOR * a[h])
            + ten.map_or(0.0, |t| TENANT_PRIOR * t[h]);
    }
    let smooth: [f64; 24] = std::array::from_fn(|h| {
        0.25 * mass[(h + 23) % 24] + 0.5 * mass[h] + 0.25 * mass[(h + 1) % 24]
    });
    let total: f64 = smooth.iter().sum();
    if total == 0.0 {
        return SendHour {
            hour: 0,
            confidence: 0.0,
            contact_events: 0,
            basis: Basis::None,
        };
    }
    // Ties go to the earliest hour, so the answer is deterministic.
    let (hour, _) =
        smooth.iter().enumerate().fold(
            (0, f64::MIN),
            |best, (h, v)| if *v > best.1 { (h, *v) } else { best },
        );
    let near = smooth[(hour + 23) % 24] + smooth[hour] + smooth[(hour + 1) % 24];
    let prior_a = if acc.is_some() { ACCOUNT_PRIOR } else { 0.0 };
    let prior_t = if ten.is_some() { TENANT_PRIOR } else { 0.0 };
    // The largest share of the mass names the basis.
    let own_mass = f64::from(own);
    let basis = if own_mass >= prior_a && own_mass >= prior_t {
        Basis::Contact
    } else if prior_a >= prior_t {
        Basis::Account
    } else {
        Basis::Tenant
    };
    SendHour {
        hour: hour as u8,
        confidence: near / total,
        contact_events: own,
        basis,
    }
}

/// Sending pressure from the unsubscribe model: the contact's current
/// P(unsubscribe or complaint within 7 days) against a base rate (the
/// model's training rate offline, the tenant's mean score live).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fatigue {
    /// `high` (at least twice the base rate), `elevated` (1.25x) or `normal`.
    pub level: &'static str,
    pub p_unsubscribe_7d: f32,
    pub ratio_to_base_rate: f64,
}

/// Ratio at or above which fatigue is `high`.
pub const FATIGUE_HIGH: f64 = 2.0;
/// Ratio at or above which fatigue is `elevated`.
pub const FATIGUE_ELEVATED: f64 = 1.25;

/// The fatigue signal of probability `p` against `base_rate` (a base rate
/// of 0 gives ratio 0: nothing to compare with).
pub fn fatigue(p: f32, base_rate: f64) -> Fatigue {
    let ratio = if base_rate > 0.0 {
        f64::from(p) / base_rate
    } else {
        0.0
    };
    Fatigue {
        level: if ratio >= FATIGUE_HIGH {
            "high"
        } else if ratio >= FATIGUE_ELEVATED {
            "elevated"
        } else {
            "normal"
        },
        p_unsubscribe_7d: p,
        ratio_to_base_rate: ratio,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(pairs: &[(usize, u32)]) -> [u32; 24] {
        let mut h = [0; 24];
        for (hour, n) in pairs {
            h[*hour] += n;
        }
        h
    }

    #[test]
    fn plenty_of_own_data_keeps_the_contacts_peak() {
        let contact = hist(&[(14, 30), (9, 5)]);
        let account = hist(&[(9, 200), (14, 30)]);
        let s = best_hour(&contact, &account, &account);
        assert_eq!((s.hour, s.basis), (14, Basis::Contact));
        assert!(s.confidence > 0.5, "{s:?}");
    }

    #[test]
    fn thin_data_follows_the_account_and_none_the_tenant() {
        let account = hist(&[(9, 50), (10, 20)]);
        let tenant = hist(&[(16, 500)]);
        let thin = best_hour(&hist(&[(20, 1)]), &account, &tenant);
        assert_eq!((thin.hour, thin.basis), (9, Basis::Account));
        let none = best_hour(&[0; 24], &[0; 24], &tenant);
        assert_eq!((none.hour, none.basis), (16, Basis::Tenant));
        let nothing = best_hour(&[0; 24], &[0; 24], &[0; 24]);
        assert_eq!(nothing.basis, Basis::None);
    }

    #[test]
    fn fatigue_levels_follow_the_ratio_to_the_base_rate() {
        assert_eq!(fatigue(0.10, 0.05).level, "high");
        assert_eq!(fatigue(0.07, 0.05).level, "elevated");
        assert_eq!(fatigue(0.05, 0.05).level, "normal");
        assert_eq!(fatigue(0.5, 0.0).ratio_to_base_rate, 0.0);
    }

    #[test]
    fn neighbouring_hours_support_each_other_across_midnight() {
        // 23:00 and 00:00 together outweigh a single busier 12:00.
        let contact = hist(&[(23, 6), (0, 6), (12, 8)]);
        let s = best_hour(&contact, &contact, &contact);
        assert!(s.hour == 23 || s.hour == 0, "{s:?}");
    }
}
