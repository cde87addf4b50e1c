//! Content affinity as a model feature, end to end through `liveseg model
//! train`: in a history where contacts click only content of their own
//! topic, a click model trained with the tenant's content (`--content`)
//! must find what one trained without it cannot, and the run without says
//! why its affinity features are empty.
//!
//! The content vectors are synthetic (four topics in four dimensions), so
//! the test reads the feature's signal, not the embedding model's.

use anyhow::Result;
use liveseg_core::time::{DAY, HOUR, Millis, format_rfc3339};
use liveseg_tests::models::{figure, liveseg, ok};
use serde_json::json;
use std::fmt::Write as _;

const TOPICS: usize = 4;
const CONTACTS: usize = 300;
const DAYS: i64 = 120;
/// 2026-01-01T00:00:00Z
const T0: Millis = 1_767_225_600_000;

/// A small deterministic generator (SplitMix64), so the history is fixed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Two items per topic, each leaning a little toward the next topic.
fn content_lines() -> String {
    let mut out = String::new();
    for topic in 0..TOPICS {
        for variant in ["a", "b"] {
            let mut v = vec![0.0f32; TOPICS];
            v[topic] = 1.0;
            v[(topic + 1) % TOPICS] = if variant == "a" { 0.2 } else { 0.35 };
            let line = json!({"id": format!("t{topic}-{variant}"), "url": "",
                "model": "synthetic", "vector": v});
            writeln!(out, "{line}").expect("string");
        }
    }
    out
}

/// Sends every other day with content of a random topic; a contact clicks
/// 45% of the sends of its own topic and 4% of the others.
fn history() -> String {
    let mut rng = Rng(7);
    let mut out = String::new();
    let mut n = 0;
    let mut line = |kind: &str, user: &str, props: serde_json::Value, ts: Millis| {
        n += 1;
        let e = json!({"type": "track", "event": kind, "userId": user,
            "messageId": format!("m{n}"), "timestamp": format_rfc3339(ts),
            "properties": props});
        writeln!(out, "{e}").expect("string");
    };
    for c in 0..CONTACTS {
        let (user, own) = (format!("c{c}"), c % TOPICS);
        for day in (0..DAYS).step_by(2) {
            let ts = T0 + day * DAY + (c as i64 % 24) * HOUR;
            let topic = rng.next() as usize % TOPICS;
            let variant = if rng.next().is_multiple_of(2) {
                "a"
            } else {
                "b"
            };
            let (email, content) = (format!("{user}-{day}"), format!("t{topic}-{variant}"));
            line(
                "Email Delivered",
                &user,
                json!({"email_id": email, "content_id": content}),
                ts,
            );
            let p = if topic == own { 0.45 } else { 0.04 };
            if rng.unit() < p {
                line(
                    "Email Link Clicked",
                    &user,
                    json!({"email_id": email, "content_id": content}),
                    ts + HOUR,
                );
            }
        }
    }
    out
}

#[test]
fn a_click_model_learns_content_affinity_from_the_content_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let events = dir.path().join("events.jsonl");
    let content = dir.path().join("content.jsonl");
    std::fs::write(&events, history())?;
    std::fs::write(&content, content_lines())?;
    let (events, content) = (events.display().to_string(), content.display().to_string());
    let train = |registry: &str, extra: &[&str]| {
        let reg = dir.path().join(registry).display().to_string();
        let mut args = vec![
            "model",
            "train",
            "--events",
            &events,
            "--target",
            "click_7d",
            "--registry",
            &reg,
        ];
        args.extend_from_slice(extra);
        liveseg(&args)
    };

    let with = train("with", &["--content", &content, "--activate"])?;
    let with_out = String::from_utf8_lossy(&with.stdout);
    let with_err = String::from_utf8_lossy(&with.stderr);
    assert!(with.status.success(), "{with_out}\n{with_err}");
    assert!(
        with_err.contains("content: 8 items (0 to embed), 0 invalid lines")
            && with_err.contains("18000 of 18000 sends name content the --content library knows"),
        "{with_err}"
    );
    let without = train("without", &[])?;
    let without_out = String::from_utf8_lossy(&without.stdout);
    let without_err = String::from_utf8_lossy(&without.stderr);
    assert!(without.status.success(), "{without_out}\n{without_err}");
    assert!(
        without_err.contains("no --content library was given"),
        "{without_err}"
    );

    // Clicks depend on the topic match alone: without the content the
    // model has little to go on; with it, the affinity separates them.
    let (auc_with, auc_without) = (figure(&with_out, "AUC"), figure(&without_out, "AUC"));
    eprintln!("click_7d validation AUC: with content {auc_with}, without {auc_without}");
    assert!(
        auc_with > 0.75 && auc_with > auc_without + 0.2,
        "AUC with content {auc_with}, without {auc_without}\n{with_out}\n{without_out}"
    );
    let ece = figure(&with_out, "ECE");
    assert!(ece < 0.05, "ECE {ece}\n{with_out}");

    // Scored for a send of one topic's content, the contact of that topic
    // comes out far above the contact of another, and the other way round.
    let registry = dir.path().join("with").display().to_string();
    let score = |content_id: &str| -> Result<std::collections::HashMap<String, f64>> {
        let out = ok(&[
            "model",
            "score",
            "--events",
            &events,
            "--content",
            &content,
            "--for-content",
            content_id,
            "--target",
            "click_7d",
            "--contact",
            "c0",
            "--contact",
            "c1",
            "--registry",
            &registry,
        ])?;
        out.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l)?;
                let p = v["scores"]["click_7d"]["probability"].as_f64();
                Ok((
                    v["contact"].as_str().unwrap_or("").to_string(),
                    p.unwrap_or(f64::NAN),
                ))
            })
            .collect()
    };
    let (topic0, topic1) = (score("t0-a")?, score("t1-a")?);
    eprintln!("P(click_7d) for t0-a: {topic0:?}; for t1-a: {topic1:?}");
    assert!(topic0["c0"] > 2.0 * topic0["c1"], "{topic0:?}");
    assert!(topic1["c1"] > 2.0 * topic1["c0"], "{topic1:?}");
    let unknown = liveseg(&[
        "model",
        "score",
        "--events",
        &events,
        "--content",
        &content,
        "--for-content",
        "nope",
        "--registry",
        &registry,
    ])?;
    let why = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        !unknown.status.success()
            && why.contains("--for-content: 'nope' is not in the --content file"),
        "{why}"
    );

    // The bad line of a content file is named, and its neighbours still count.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        format!("{}{{\"id\":\"x\",\"vector\":[1,2]}}\n", content_lines()),
    )?;
    let out = train("bad", &["--content", &bad.display().to_string()])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("content line 9: x: vector: vector has 2 dimensions; the library's have 4")
            && err.contains("content: 8 items (0 to embed), 1 invalid lines"),
        "{err}"
    );
    // `replay --strict` fails on the bad line; without it the rest is used.
    let bad = bad.display().to_string();
    let replay = |strict: bool| {
        let mut args = vec![
            "replay",
            "--events",
            &events,
            "--at",
            "2026-06-01T00:00:00Z",
        ];
        args.extend(["--content", bad.as_str()]);
        if strict {
            args.push("--strict");
        }
        liveseg(&args)
    };
    let strict = replay(true)?;
    let why = String::from_utf8_lossy(&strict.stderr);
    assert!(
        !strict.status.success() && why.contains("--content: 1 bad lines (--strict fails on any)"),
        "{why}"
    );
    assert!(replay(false)?.status.success());
    Ok(())
}
