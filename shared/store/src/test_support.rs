//! Builders shared by the tests of both backends.

use crate::traits::{AccountCheckpoint, AppendItem, ChangeRecord, DirectoryUpdate};

pub fn item(tenant: &str, id: &str, payload: &str) -> AppendItem {
    AppendItem {
        tenant: tenant.to_owned(),
        message_id: id.to_owned(),
        payload: payload.as_bytes().to_vec(),
    }
}

pub fn cp(tenant: &str, account: &str, seq: u64, state: Option<&str>) -> AccountCheckpoint {
    AccountCheckpoint {
        tenant: tenant.to_owned(),
        account: account.to_owned(),
        applied_seq: seq,
        state: state.map(|s| s.as_bytes().to_vec()),
    }
}

pub fn change(tenant: &str, payload: &str) -> ChangeRecord {
    ChangeRecord {
        tenant: tenant.to_owned(),
        payload: payload.as_bytes().to_vec(),
    }
}

pub fn dir_upd(tenant: &str, contact: &str, account: Option<&str>) -> DirectoryUpdate {
    DirectoryUpdate {
        tenant: tenant.to_owned(),
        contact: contact.to_owned(),
        account: account.map(str::to_owned),
    }
}
