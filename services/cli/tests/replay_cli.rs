//! `liveseg replay` end to end: the built binary over a JSONL file, with
//! exact stdout (the DESIGN.md section 4 contract), stderr diagnostics and
//! exit codes.

use std::io::Write as _;
use std::process::{Command, Output};

const EVENTS: &str = r#"{"type":"group","messageId":"g1","anonymousId":"crm","groupId":"acme","traits":{"target":true,"icp_fit":80,"tier":1},"timestamp":"2026-01-01T00:00:00Z"}
{"type":"group","messageId":"g2","userId":"u1","groupId":"acme","timestamp":"2026-01-01T00:00:00Z"}
{"type":"track","messageId":"s1","userId":"u1","event":"Email Delivered","properties":{"email_id":"e1"},"timestamp":"2026-01-05T09:00:00Z"}
{"type":"track","messageId":"o1","userId":"u1","event":"Email Opened","properties":{"email_id":"e1"},"timestamp":"2026-01-10T12:00:00Z"}
{"type":"track","messageId":"o1","userId":"u1","event":"Email Opened","properties":{"email_id":"e1"},"timestamp":"2026-01-10T12:00:00Z"}
{"type":"track","messageId":"u9","userId":"u3","event":"Unsubscribed","context":{"groupId":"acme"},"timestamp":"2026-01-12T00:00:00Z"}
{"type":"track","userId":"u1","event":"Email Opened","timestamp":"2026-01-11T00:00:00Z"}
{"type":"page","messageId":"p1","userId":"u2","properties":{"path":"/pricing"},"timestamp":"2026-01-15T08:00:00.123Z"}
{"type":"page","messageId":"p2","userId":"u2","properties":{"path":"/blog"},"timestamp":"2026-06-01T00:00:00Z"}
"#;

fn events_file() -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".jsonl")
        .tempfile()
        .expect("tempfile");
    file.write_all(EVENTS.as_bytes()).expect("write events");
    file
}

fn liveseg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_liveseg"))
        .args(args)
        .env_remove("LIVESEG_DATA_DIR")
        .output()
        .expect("run liveseg")
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8(out.stdout.clone())
        .expect("utf8 stdout")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn memberships_at_an_instant() {
    let file = events_file();
    let path = file.path().to_str().expect("utf8 path");
    let out = liveseg(&["replay", "--events", path, "--at", "2026-01-20T00:00:00Z"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout_lines(&out),
        [
            r#"{"segment":"engaged_non_target_contacts","entity":"contact","id":"u2","account":"~u2"}"#,
            r#"{"segment":"engaged_target_contacts","entity":"contact","id":"u1","account":"acme"}"#,
            r#"{"segment":"suppressed","entity":"contact","id":"u3","account":"acme"}"#,
        ]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 7: messageId: is required"),
        "{stderr}"
    );
    assert!(
        stderr.contains("6 events applied, 1 invalid, 1 duplicates, 1 after --at"),
        "{stderr}"
    );
}

#[test]
fn transitions_up_to_an_instant() {
    let file = events_file();
    let path = file.path().to_str().expect("utf8 path");
    let out = liveseg(&[
        "replay",
        "--events",
        path,
        "--at",
        "2026-02-10T00:00:00+01:00",
        "--transitions",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout_lines(&out),
        [
            r#"{"instant":"2026-01-01T00:00:00.000Z","segment":"dormant_high_fit_accounts","entity":"account","id":"acme","account":"acme","kind":"enter"}"#,
            r#"{"instant":"2026-01-10T12:00:00.000Z","segment":"dormant_high_fit_accounts","entity":"account","id":"acme","account":"acme","kind":"exit"}"#,
            r#"{"instant":"2026-01-10T12:00:00.000Z","segment":"engaged_target_contacts","entity":"contact","id":"u1","account":"acme","kind":"enter"}"#,
            r#"{"instant":"2026-01-12T00:00:00.000Z","segment":"suppressed","entity":"contact","id":"u3","account":"acme","kind":"enter"}"#,
            r#"{"instant":"2026-01-15T08:00:00.123Z","segment":"engaged_non_target_contacts","entity":"contact","id":"u2","account":"~u2","kind":"enter"}"#,
            r#"{"instant":"2026-02-09T12:00:00.000Z","segment":"engaged_target_contacts","entity":"contact","id":"u1","account":"acme","kind":"exit"}"#,
            r#"{"instant":"2026-02-09T12:00:00.000Z","segment":"dormant_high_fit_accounts","entity":"account","id":"acme","account":"acme","kind":"enter"}"#,
        ]
    );
}

#[test]
fn segments_file_and_strict_mode() {
    let file = events_file();
    let path = file.path().to_str().expect("utf8 path");
    let mut defs = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("tempfile");
    defs.write_all(
        b"key: pricing_visitors\nname: Pricing visitors\nentity: contact\n\
          condition: {events: {event: {kind: pricing_intent}, within: 30d}}\n",
    )
    .expect("write definitions");
    let defs_path = defs.path().to_str().expect("utf8 path");
    let out = liveseg(&[
        "replay",
        "--events",
        path,
        "--at",
        "2026-01-20T00:00:00Z",
        "--segments",
        defs_path,
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout_lines(&out).contains(
            &r#"{"segment":"pricing_visitors","entity":"contact","id":"u2","account":"~u2"}"#
                .to_string()
        ),
        "{out:?}"
    );

    let strict = liveseg(&[
        "replay",
        "--events",
        path,
        "--at",
        "2026-01-20T00:00:00Z",
        "--strict",
    ]);
    assert_eq!(strict.status.code(), Some(1));
    assert!(strict.stdout.is_empty());

    let missing = liveseg(&[
        "replay",
        "--events",
        "/nonexistent.jsonl",
        "--at",
        "2026-01-20T00:00:00Z",
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent.jsonl"));

    let bad_at = liveseg(&["replay", "--events", path, "--at", "tomorrow"]);
    assert_eq!(bad_at.status.code(), Some(64));
}
