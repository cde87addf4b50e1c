//! The starter segments, with exactly the meaning of DESIGN.md section 4.

use crate::definition::{SegmentDefinition, parse_definitions};

/// The six starter segments as YAML, so users can read and copy them.
pub const PRESETS_YAML: &str = r#"
segments:
  - key: engaged_target_contacts
    name: Engaged contacts at target accounts
    description: Account target is true, and at least one engagement event within 30 days.
    entity: contact
    condition:
      all:
        - account_trait: {name: target, op: eq, value: true}
        - events: {event: {kind: engagement}, within: 30d, at_least: 1}
  - key: engaged_non_target_contacts
    name: Engaged contacts at non-target accounts
    description: Account target is not true, and at least one engagement event within 30 days.
    entity: contact
    condition:
      all:
        - account_trait: {name: target, op: ne, value: true}
        - events: {event: {kind: engagement}, within: 30d, at_least: 1}
  - key: dormant_high_fit_accounts
    name: Dormant high-fit accounts
    description: Account icp_fit >= 70, and no engagement on the account (any contact, or account-level) within 30 days.
    entity: account
    condition:
      all:
        - account_trait: {name: icp_fit, op: gte, value: 70}
        - account_events: {event: {kind: engagement}, within: 30d, at_most: 0}
  - key: decaying_customers
    name: Decaying customers
    description: >-
      Account lifecycle_stage is customer; with P = engagement events in (t-120d, t-30d] and
      R = in (t-30d, t]: P >= 3 and 6R <= P (the last 30 days at most half the prior 30-day average).
    entity: contact
    condition:
      all:
        - account_trait: {name: lifecycle_stage, op: eq, value: customer}
        - rate_change: {event: {kind: engagement}, recent: 30d, prior: 90d, min_prior: 3, max_ratio: 0.5}
  - key: sunset_candidates
    name: Sunset candidates
    description: First send at or before t-90d, and no open or click within 90 days.
    entity: contact
    condition:
      all:
        - first_event: {event: {kind: send}, older_than: 90d}
        - events: {event: {kind: [open, click]}, within: 90d, at_most: 0}
  - key: tier1_pricing_intent
    name: Tier-1 pricing intent
    description: >-
      Account tier is 1, at least 2 of the contact's last 5 sends were opened or clicked, and the
      account had first-party pricing/comparison intent within 30 days.
    entity: contact
    condition:
      all:
        - account_trait: {name: tier, op: eq, value: 1}
        - last_sends: {n: 5, at_least: 2, engaged: [open, click]}
        - account_events: {event: {kind: pricing_intent}, within: 30d, at_least: 1}
"#;

/// The starter segments, parsed.
pub fn presets() -> Vec<SegmentDefinition> {
    // The text is a constant checked by the tests below; an error here is a bug in this file.
    parse_definitions(PRESETS_YAML).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_compile() {
        let parsed = parse_definitions(PRESETS_YAML);
        assert!(parsed.is_ok(), "{parsed:?}");
        let defs = presets();
        assert_eq!(defs.len(), 6);
        let set = crate::compile::SegmentSet::compile(&defs);
        assert!(set.is_ok(), "{:?}", set.err());
    }
}
