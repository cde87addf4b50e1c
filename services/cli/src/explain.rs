//! `liveseg explain`: why an entity is in or out of its segments, as an
//! indented condition tree (✓ holds, ✗ does not) with the observed values,
//! the events behind them and the next change by time alone.

use std::fmt::Write as _;
use std::io::{self, Write};

use anyhow::Result;
use clap::Args;
use liveseg_proto::pb;
use serde_json::{Value, json};

use crate::client::{Api, rpc_error};
use crate::output::{OutputFormat, print_value};

/// Evidence items shown per condition before "+N more".
const EVIDENCE_SHOWN: usize = 5;

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Contact id (or account id with --account).
    #[arg(value_name = "CONTACT")]
    pub id: String,
    /// Only this segment [default: every segment of the entity's kind].
    pub segment: Option<String>,
    /// Explain an account instead of a contact.
    #[arg(long)]
    pub account: bool,
}

pub async fn run(args: &ExplainArgs, api: &Api, format: OutputFormat) -> Result<()> {
    let entity = if args.account { "account" } else { "contact" };
    let x = fetch(
        api,
        entity,
        &args.id,
        args.segment.as_deref().unwrap_or_default(),
    )
    .await?;
    let mut out = io::stdout().lock();
    if format.is_machine() {
        print_value(&mut out, format, &explanation_json(&x))?;
    } else {
        out.write_all(render(&x, EVIDENCE_SHOWN).as_bytes())?;
    }
    Ok(())
}

pub async fn fetch(api: &Api, entity: &str, id: &str, segment: &str) -> Result<pb::Explanation> {
    let req = pb::ExplainRequest {
        entity: entity.to_string(),
        id: id.to_string(),
        segment: segment.to_string(),
    };
    let resp = api
        .membership()
        .explain(req)
        .await
        .map_err(|s| rpc_error(&format!("explaining {entity} {id}"), &s))?;
    Ok(resp.into_inner())
}

/// The whole explanation for people; `evidence` items per condition at most.
pub fn render(x: &pb::Explanation, evidence: usize) -> String {
    let mut text = format!("{} {}", x.entity, x.id);
    if !x.account_id.is_empty() && x.account_id != x.id {
        let _ = write!(text, " (account {})", x.account_id);
    }
    text.push('\n');
    if let Some(t) = &x.send_timing {
        let _ = writeln!(text, "{}", crate::insight_cmd::TimingLine(t));
    }
    if x.segments.is_empty() {
        text.push_str("no segments to explain\n");
    }
    for s in &x.segments {
        text.push('\n');
        text.push_str(&render_segment(s, evidence));
    }
    text
}

pub fn render_segment(s: &pb::SegmentExplanation, evidence: usize) -> String {
    let verdict = match (s.member, s.suppressed) {
        (true, _) => "member",
        (false, true) => "not a member (suppressed)",
        (false, false) => "not a member",
    };
    let next = if s.next_change.is_empty() {
        "none by time alone".to_string()
    } else {
        s.next_change.clone()
    };
    let mut text = format!("{}: {verdict}\n", s.segment);
    let _ = writeln!(text, "  at {}, next change: {next}", s.at);
    if let Some(c) = &s.condition {
        render_condition(&mut text, c, 1, evidence);
    }
    text
}

fn render_condition(
    text: &mut String,
    c: &pb::ConditionExplanation,
    depth: usize,
    evidence: usize,
) {
    let indent = "  ".repeat(depth);
    let mark = if c.holds { '✓' } else { '✗' };
    let description = if c.description.is_empty() {
        &c.path
    } else {
        &c.description
    };
    let _ = write!(text, "{indent}{mark} {description}");
    if !c.observed.is_empty() {
        let _ = write!(text, " (observed: {})", c.observed);
    }
    text.push('\n');
    if !c.evidence.is_empty() && evidence > 0 {
        let shown: Vec<&str> = c
            .evidence
            .iter()
            .take(evidence)
            .map(String::as_str)
            .collect();
        let _ = write!(text, "{indent}    evidence: {}", shown.join(", "));
        if c.evidence.len() > shown.len() {
            let _ = write!(text, " (+{} more)", c.evidence.len() - shown.len());
        }
        text.push('\n');
    }
    for child in &c.children {
        render_condition(text, child, depth + 1, evidence);
    }
}

pub fn explanation_json(x: &pb::Explanation) -> Value {
    let segments: Vec<Value> = x.segments.iter().map(segment_json).collect();
    json!({
        "entity": x.entity,
        "id": x.id,
        "account_id": x.account_id,
        "segments": segments,
        "send_timing": x.send_timing.as_ref().map_or(Value::Null, timing_json),
    })
}

fn timing_json(t: &pb::SendTiming) -> Value {
    json!({
        "best_hour_utc": t.best_hour_utc,
        "confidence": t.confidence,
        "contact_events": t.contact_events,
        "basis": t.basis,
        "fatigue": t.fatigue.as_ref().map_or(Value::Null, |f| json!({
            "level": f.level,
            "p_unsubscribe_7d": f.p_unsubscribe_7d,
            "ratio_to_base_rate": f.ratio_to_base_rate,
            "model_version": f.model_version,
        })),
    })
}

fn segment_json(s: &pb::SegmentExplanation) -> Value {
    json!({
        "segment": s.segment,
        "member": s.member,
        "at": s.at,
        "next_change": if s.next_change.is_empty() { Value::Null } else { json!(s.next_change) },
        "suppressed": s.suppressed,
        "condition": s.condition.as_ref().map_or(Value::Null, condition_json),
    })
}

fn condition_json(c: &pb::ConditionExplanation) -> Value {
    let children: Vec<Value> = c.children.iter().map(condition_json).collect();
    json!({
        "path": c.path,
        "description": c.description,
        "holds": c.holds,
        "observed": c.observed,
        "evidence": c.evidence,
        "children": children,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(
        path: &str,
        description: &str,
        holds: bool,
        observed: &str,
        evidence: &[&str],
    ) -> pb::ConditionExplanation {
        pb::ConditionExplanation {
            path: path.into(),
            description: description.into(),
            holds,
            observed: observed.into(),
            evidence: evidence.iter().map(|e| e.to_string()).collect(),
            children: vec![],
        }
    }

    fn sample() -> pb::Explanation {
        let mut all = leaf("condition", "all of", false, "", &[]);
        all.children = vec![
            leaf(
                "condition.all[0]",
                "account target = true",
                true,
                "target = true",
                &[],
            ),
            leaf(
                "condition.all[1]",
                "engagement events within 30d >= 1",
                false,
                "0 events",
                &["m1", "m2", "m3"],
            ),
        ];
        pb::Explanation {
            entity: "contact".into(),
            id: "u1".into(),
            account_id: "acme".into(),
            send_timing: None,
            segments: vec![pb::SegmentExplanation {
                segment: "engaged_target_contacts".into(),
                member: false,
                at: "2026-02-15T00:00:00.000Z".into(),
                next_change: String::new(),
                condition: Some(all),
                suppressed: false,
            }],
        }
    }

    #[test]
    fn explanations_render_as_an_indented_tree() {
        assert_eq!(
            render(&sample(), 2),
            "contact u1 (account acme)\n\
             \n\
             engaged_target_contacts: not a member\n  \
             at 2026-02-15T00:00:00.000Z, next change: none by time alone\n  \
             ✗ all of\n    \
             ✓ account target = true (observed: target = true)\n    \
             ✗ engagement events within 30d >= 1 (observed: 0 events)\n        \
             evidence: m1, m2 (+1 more)\n"
        );
    }

    #[test]
    fn explanations_convert_to_json() {
        let v = explanation_json(&sample());
        assert_eq!(v["segments"][0]["next_change"], Value::Null);
        let cond = &v["segments"][0]["condition"];
        assert_eq!(cond["holds"], false);
        assert_eq!(cond["children"][1]["evidence"][2], "m3");
        assert_eq!(cond["children"][0]["observed"], "target = true");
    }
}
