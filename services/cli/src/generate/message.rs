//! The Segment-Spec JSON shape of an output line, borrowed from buffers
//! the sink formats once per event.

use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Msg<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) message_id: &'a str,
    pub(super) timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) anonymous_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) event: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) group_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) properties: Option<Props<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) traits: Option<Traits<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) context: Option<Context<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Context<'a> {
    pub(super) group_id: &'a str,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum Props<'a> {
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
pub(super) enum Traits<'a> {
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
pub(super) struct Head<'w> {
    pub(super) message_id: String,
    pub(super) timestamp: String,
    pub(super) user_id: Option<String>,
    pub(super) anonymous_id: Option<String>,
    pub(super) group: Option<&'w str>,
}

impl<'w> Head<'w> {
    pub(super) fn msg(&self, kind: &'static str) -> Msg<'_> {
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

    pub(super) fn track(&self, event: &'static str) -> Msg<'_> {
        Msg {
            event: Some(event),
            ..self.msg("track")
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::generate::test_support::{parse, run, small, str_at};

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
}
