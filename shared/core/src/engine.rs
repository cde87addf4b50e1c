//! Routing events to accounts (the contact directory, personal accounts and
//! moves) and `Engine`, a single-threaded multi-account engine used by
//! `liveseg replay`, what-if runs and tests. The node does the same routing
//! with one actor per account.

use crate::account::{Account, Change};
use crate::compile::SegmentSet;
use crate::definition::Entity;
use crate::event::Event;
use crate::time::Millis;
use serde::Serialize;
use std::collections::HashMap;

/// Account ids starting with this are personal accounts of contacts with no known account.
pub const PERSONAL_PREFIX: &str = "~";

pub fn personal_account(user: &str) -> String {
    format!("{PERSONAL_PREFIX}{user}")
}

/// Where an event goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub account: String,
    /// The contact was in this other account and moves with its state.
    pub moved_from: Option<String>,
}

/// Contact -> account. The account of an event is its groupId, else the
/// contact's current account, else the contact's personal account.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    map: HashMap<String, String>,
}

impl Directory {
    pub fn from_entries(entries: impl IntoIterator<Item = (String, String)>) -> Self {
        Directory {
            map: entries.into_iter().collect(),
        }
    }

    pub fn get(&self, contact: &str) -> Option<&str> {
        self.map.get(contact).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Every account that has a contact, sorted.
    pub fn accounts(&self) -> Vec<String> {
        let set: std::collections::BTreeSet<&str> = self.map.values().map(String::as_str).collect();
        set.into_iter().map(str::to_owned).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Decides the account of `e` and updates the directory.
    pub fn route(&mut self, e: &Event) -> Route {
        if let crate::event::EventKind::Alias { previous_id } = &e.kind {
            return self.route_alias(e, previous_id);
        }
        match (&e.user_id, &e.group_id) {
            (Some(u), Some(g)) => match self.map.get_mut(u) {
                Some(cur) if cur == g => Route {
                    account: g.clone(),
                    moved_from: None,
                },
                Some(cur) => Route {
                    account: g.clone(),
                    moved_from: Some(std::mem::replace(cur, g.clone())),
                },
                None => {
                    self.map.insert(u.clone(), g.clone());
                    Route {
                        account: g.clone(),
                        moved_from: None,
                    }
                }
            },
            (Some(u), None) => match self.map.get(u) {
                Some(a) => Route {
                    account: a.clone(),
                    moved_from: None,
                },
                None => {
                    let a = personal_account(u);
                    self.map.insert(u.clone(), a.clone());
                    Route {
                        account: a,
                        moved_from: None,
                    }
                }
            },
            (None, Some(g)) => Route {
                account: g.clone(),
                moved_from: None,
            },
            // Validation rejects these; route to a personal account of the anonymous id.
            (None, None) => Route {
                account: personal_account(e.anonymous_id.as_deref().unwrap_or("anonymous")),
                moved_from: None,
            },
        }
    }

    /// `alias`: the contact known as `previous_id` is now `userId`. When
    /// only the previous id is known, the entry is renamed (the account then
    /// renames the contact, keeping its state); when both are known they
    /// stay two contacts (merging histories is not supported).
    fn route_alias(&mut self, e: &Event, previous_id: &str) -> Route {
        let new = e
            .user_id
            .as_deref()
            .or(e.anonymous_id.as_deref())
            .unwrap_or(previous_id);
        if !self.map.contains_key(new)
            && let Some(account) = self.map.remove(previous_id)
        {
            self.map.insert(new.to_string(), account.clone());
            return Route {
                account,
                moved_from: None,
            };
        }
        let account = self
            .map
            .entry(new.to_string())
            .or_insert_with(|| personal_account(new))
            .clone();
        Route {
            account,
            moved_from: None,
        }
    }
}

/// One current membership, as `liveseg replay` prints it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Membership {
    pub segment: String,
    pub entity: &'static str,
    pub id: String,
    pub account: String,
}

/// All accounts of one tenant in one thread.
pub struct Engine {
    pub set: SegmentSet,
    pub accounts: HashMap<String, Account>,
    pub directory: Directory,
}

impl Engine {
    pub fn new(set: SegmentSet) -> Self {
        Engine {
            set,
            accounts: HashMap::new(),
            directory: Directory::default(),
        }
    }

    /// Applies one event at processing instant `now`, moving its contact if needed.
    pub fn apply(&mut self, e: &Event, now: Millis, out: &mut Vec<Change>) {
        let route = self.directory.route(e);
        let arriving = route.moved_from.as_ref().and_then(|from| {
            let uid = e.user_id.as_deref().unwrap_or_default();
            self.accounts
                .get_mut(from)
                .and_then(|a| a.take_contact(&self.set, uid, now, out))
        });
        let set = &self.set;
        let account = self
            .accounts
            .entry(route.account.clone())
            .or_insert_with(|| Account::new(&route.account, set));
        account.apply(set, e, arriving, now, out);
    }

    /// Fires every timer up to `t` in every account.
    pub fn advance_all(&mut self, t: Millis, out: &mut Vec<Change>) {
        for a in self.accounts.values_mut() {
            a.advance_to(&self.set, t, out);
        }
    }

    /// Current memberships, sorted.
    pub fn memberships(&self) -> Vec<Membership> {
        let mut out = Vec::new();
        for a in self.accounts.values() {
            account_memberships(&self.set, a, &mut out);
        }
        out.sort();
        out
    }
}

/// The current memberships of one account and its contacts.
pub fn account_memberships(set: &SegmentSet, a: &Account, out: &mut Vec<Membership>) {
    let id = a.id().to_string();
    let key = |seg: usize| set.segments.get(seg).map(|s| s.def.key.clone());
    for seg in a.core.member.iter() {
        if let Some(k) = key(seg) {
            out.push(Membership {
                segment: k,
                entity: Entity::Account.as_str(),
                id: id.clone(),
                account: id.clone(),
            });
        }
    }
    for c in &a.contacts {
        for seg in c.member.iter() {
            if let Some(k) = key(seg) {
                out.push(Membership {
                    segment: k,
                    entity: Entity::Contact.as_str(),
                    id: c.id.to_string(),
                    account: id.clone(),
                });
            }
        }
    }
}
