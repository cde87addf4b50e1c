//! Matching an event against a definition's event filter (kinds, name and
//! property tests): what decides which series an event is counted in.

use crate::definition::{EventFilter, EventKindName};
use crate::event::{Event, EventKind};

/// Does the filter match the event?
pub fn filter_matches(f: &EventFilter, e: &Event) -> bool {
    let kind_ok = f.kind.kinds().iter().any(|k| kind_matches(*k, &e.kind));
    if !kind_ok {
        return false;
    }
    if let Some(name) = &f.name
        && e.name.as_deref() != Some(name.as_str())
    {
        return false;
    }
    f.where_.iter().all(|t| {
        let v = e
            .properties
            .get(&t.name)
            .and_then(crate::value::TraitValue::from_json);
        crate::eval::trait_test(v.as_ref(), t)
    })
}

fn kind_matches(k: EventKindName, e: &EventKind) -> bool {
    use EventKindName as N;
    match k {
        N::Engagement => e.is_engagement(),
        N::Send => matches!(e, EventKind::Send { .. }),
        N::Open => matches!(e, EventKind::Open { .. }),
        N::Click => matches!(e, EventKind::Click { .. }),
        N::Reply => matches!(e, EventKind::Reply { .. }),
        N::Bounce => matches!(e, EventKind::Bounce { .. }),
        N::HardBounce => matches!(e, EventKind::Bounce { hard: true, .. }),
        N::Complaint => matches!(e, EventKind::Complaint { .. }),
        N::Unsubscribe => matches!(e, EventKind::Unsubscribe),
        N::Meeting => matches!(e, EventKind::Meeting),
        N::Intent => matches!(e, EventKind::Intent { .. }),
        N::PricingIntent => e.is_pricing_intent(),
        N::ProductUsage => matches!(e, EventKind::ProductUsage),
        N::Page => matches!(e, EventKind::Page { .. }),
        N::Identify => matches!(e, EventKind::Identify),
        N::Group => matches!(e, EventKind::Group),
        N::Custom => matches!(e, EventKind::Custom),
        // Derived score records are the system's output, not the contact's activity.
        N::Track => !matches!(
            e,
            EventKind::Page { .. }
                | EventKind::Identify
                | EventKind::Group
                | EventKind::Alias { .. }
                | EventKind::Scored(_)
        ),
    }
}
