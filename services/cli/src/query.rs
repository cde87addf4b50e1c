//! Live membership queries: `members`, `contact`, `account`.

use std::io::{self, Write};

use anyhow::Result;
use clap::Args;
use liveseg_proto::pb;
use serde::Serialize;
use serde_json::{Value, json};

use crate::client::{Api, rpc_error};
use crate::output::{Column, OutputFormat, col, print_items, print_value, render_table};

const MEMBER_COLUMNS: [Column; 3] = [
    col("ENTITY", "entity"),
    col("ID", "id"),
    col("ACCOUNT", "account"),
];

#[derive(Args, Debug)]
pub struct MembersArgs {
    /// Segment key.
    pub segment: String,
    /// Members per request (at most 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page_size: u32,
    /// Continue from this page token (printed after a partial listing).
    #[arg(long, value_name = "TOKEN", conflicts_with = "all")]
    pub page_token: Option<String>,
    /// Follow page tokens until every member is listed.
    #[arg(long)]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct ContactArgs {
    /// Contact id (the Segment-Spec userId).
    pub id: String,
}

#[derive(Args, Debug)]
pub struct AccountArgs {
    /// Account id (the Segment-Spec groupId).
    pub id: String,
}

pub async fn members(args: &MembersArgs, api: &Api, format: OutputFormat) -> Result<()> {
    let mut token = args.page_token.clone().unwrap_or_default();
    let mut members = Vec::new();
    loop {
        let page = list_page(api, &args.segment, args.page_size, &token).await?;
        members.extend(page.members);
        token = page.next_page_token;
        if token.is_empty() || !args.all {
            break;
        }
    }
    let items: Vec<MemberRow<'_>> = members.iter().map(member_row).collect();
    let mut out = io::stdout().lock();
    let empty = format!("no members in {}", args.segment);
    print_items(&mut out, format, &MEMBER_COLUMNS, &items, &empty)?;
    if !token.is_empty() {
        eprintln!("more members: add --all, or --page-token {token}");
    }
    Ok(())
}

pub async fn list_page(
    api: &Api,
    segment: &str,
    page_size: u32,
    token: &str,
) -> Result<pb::ListMembersResponse> {
    let req = pb::ListMembersRequest {
        segment: segment.to_string(),
        page_size,
        page_token: token.to_string(),
    };
    let resp = api
        .membership()
        .list_members(req)
        .await
        .map_err(|s| rpc_error(&format!("members of {segment}"), &s))?;
    Ok(resp.into_inner())
}

/// Every member of `segment`, following page tokens.
pub async fn all_members(api: &Api, segment: &str) -> Result<Vec<pb::Member>> {
    let mut token = String::new();
    let mut members = Vec::new();
    loop {
        let page = list_page(api, segment, 1000, &token).await?;
        members.extend(page.members);
        if page.next_page_token.is_empty() || page.next_page_token == token {
            return Ok(members);
        }
        token = page.next_page_token;
    }
}

/// A member as printed: entity, id, account.
#[derive(Serialize)]
pub struct MemberRow<'a> {
    pub entity: &'a str,
    pub id: &'a str,
    pub account: &'a str,
}

pub fn member_row(m: &pb::Member) -> MemberRow<'_> {
    MemberRow {
        entity: &m.entity,
        id: &m.id,
        account: &m.account_id,
    }
}

pub async fn contact(args: &ContactArgs, api: &Api, format: OutputFormat) -> Result<()> {
    let req = pb::GetContactSegmentsRequest {
        contact_id: args.id.clone(),
    };
    let resp = api
        .membership()
        .get_contact_segments(req)
        .await
        .map_err(|s| rpc_error(&format!("contact {}", args.id), &s))?
        .into_inner();
    let mut out = io::stdout().lock();
    if format.is_machine() {
        print_value(&mut out, format, &contact_json(&resp))?;
    } else {
        out.write_all(render_contact(&resp).as_bytes())?;
    }
    Ok(())
}

pub async fn account(args: &AccountArgs, api: &Api, format: OutputFormat) -> Result<()> {
    let req = pb::GetAccountRequest {
        account_id: args.id.clone(),
    };
    let resp = api
        .membership()
        .get_account(req)
        .await
        .map_err(|s| rpc_error(&format!("account {}", args.id), &s))?
        .into_inner();
    let mut out = io::stdout().lock();
    if format.is_machine() {
        print_value(&mut out, format, &account_json(&resp))?;
    } else {
        out.write_all(render_account(&resp).as_bytes())?;
    }
    Ok(())
}

pub fn contact_json(c: &pb::ContactSegments) -> Value {
    json!({"contact": c.contact_id, "account": c.account_id, "segments": c.segments})
}

pub fn account_json(a: &pb::AccountMembership) -> Value {
    let contacts: Vec<Value> = a.contacts.iter().map(contact_json).collect();
    json!({"account": a.account_id, "segments": a.segments, "contacts": contacts})
}

fn segment_list(segments: &[String]) -> String {
    if segments.is_empty() {
        "(none)".into()
    } else {
        segments.join(", ")
    }
}

pub fn render_contact(c: &pb::ContactSegments) -> String {
    format!(
        "contact   {}\naccount   {}\nsegments  {}\n",
        c.contact_id,
        c.account_id,
        segment_list(&c.segments)
    )
}

pub fn render_account(a: &pb::AccountMembership) -> String {
    let mut text = format!(
        "account   {}\nsegments  {}\ncontacts  {}\n",
        a.account_id,
        segment_list(&a.segments),
        a.contacts.len()
    );
    if !a.contacts.is_empty() {
        text.push('\n');
        let rows = a
            .contacts
            .iter()
            .map(|c| vec![c.contact_id.clone(), segment_list(&c.segments)]);
        text.push_str(&render_table(&["CONTACT", "SEGMENTS"], rows));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(id: &str, segments: &[&str]) -> pb::ContactSegments {
        pb::ContactSegments {
            contact_id: id.into(),
            account_id: "acme".into(),
            segments: segments.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn contacts_and_accounts_render() {
        assert_eq!(
            render_contact(&contact("u1", &["a", "b"])),
            "contact   u1\naccount   acme\nsegments  a, b\n"
        );
        let acct = pb::AccountMembership {
            account_id: "acme".into(),
            segments: vec![],
            contacts: vec![contact("u1", &["a"]), contact("u22", &[])],
        };
        assert_eq!(
            render_account(&acct),
            "account   acme\nsegments  (none)\ncontacts  2\n\n\
             CONTACT  SEGMENTS\nu1       a\nu22      (none)\n"
        );
        let v = account_json(&acct);
        assert_eq!(v["contacts"][1]["contact"], "u22");
        assert_eq!(v["contacts"][0]["segments"][0], "a");
    }

    #[test]
    fn members_render_as_a_table() {
        let m = pb::Member {
            entity: "contact".into(),
            id: "u1".into(),
            account_id: "acme".into(),
        };
        let mut out = Vec::new();
        print_items(
            &mut out,
            OutputFormat::Table,
            &MEMBER_COLUMNS,
            &[member_row(&m)],
            "none",
        )
        .expect("write");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "ENTITY   ID  ACCOUNT\ncontact  u1  acme\n"
        );
    }
}
