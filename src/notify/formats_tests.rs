//! Tests of each sink's body (byte for byte where the layout matters), the size limits,
//! and the generic webhook's signature.

use chrono::TimeZone;
use serde_json::{Value, json};

use super::*;
use crate::notify::event::{EventKind, StoppedState};
use crate::notify::message::render;

fn note(event: Event, serving: Side) -> Notification {
    Notification {
        namespace: "payments".into(),
        pair: "wecom".into(),
        event,
        serving,
        at: Utc.with_ymd_and_hms(2026, 3, 1, 2, 0, 0).unwrap(),
    }
}

fn succeeded() -> Notification {
    note(
        Event::FailoverSucceeded {
            to: Side::Standby,
            switchover: "wecom-failover-a1".into(),
            records_lost: 0,
        },
        Side::Standby,
    )
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn wecom_is_a_markdown_message() {
    let m = render(&succeeded());
    let body = wecom_body(&m);
    let expected = format!(
        r#"{{"msgtype":"markdown","markdown":{{"content":{}}}}}"#,
        serde_json::to_string(&m.markdown()).unwrap()
    );
    assert_eq!(String::from_utf8(body).unwrap(), expected);
}

#[test]
fn wecom_content_is_cut_to_4096_bytes_on_a_character_boundary() {
    // Free text is bounded when rendered, so build an oversized message by hand; its
    // three-byte characters put byte 4096 inside one.
    let mut m = render(&note(
        Event::SideFrozen {
            side: Side::Primary,
            state: StoppedState::Frozen,
            evidence: "e".into(),
        },
        Side::Primary,
    ));
    m.what = "冻结".repeat(2000);
    assert!(m.markdown().len() > WECOM_MAX_BYTES);
    let v = parse(&wecom_body(&m));
    let content = v["markdown"]["content"].as_str().unwrap();
    assert!(content.len() <= WECOM_MAX_BYTES && content.len() > WECOM_MAX_BYTES - 4);
    assert!(m.markdown().starts_with(content));
    assert_eq!(truncate_bytes("aé", 2), "a", "never half a character");
    assert_eq!(truncate_bytes("aé", 3), "aé");
    assert_eq!(truncate_bytes("", 0), "");
}

#[test]
fn slack_is_text_and_one_mrkdwn_section() {
    let m = render(&succeeded());
    let body = String::from_utf8(slack_body(&m)).unwrap();
    let expected = format!(
        r#"{{"text":{},"blocks":[{{"type":"section","text":{{"type":"mrkdwn","text":{}}}}}]}}"#,
        serde_json::to_string(&m.title).unwrap(),
        serde_json::to_string(&m.mrkdwn()).unwrap()
    );
    assert_eq!(body, expected);
}

#[test]
fn slack_section_is_at_most_3000_characters() {
    let mut m = render(&note(
        Event::RiskWarning {
            side: Side::Standby,
            detail: "d".into(),
        },
        Side::Primary,
    ));
    m.what = "<é>".repeat(1000);
    assert!(m.mrkdwn().chars().count() > SLACK_SECTION_MAX_CHARS);
    let v = parse(&slack_body(&m));
    let text = v["blocks"][0]["text"]["text"].as_str().unwrap();
    assert_eq!(text.chars().count(), SLACK_SECTION_MAX_CHARS);
    assert!(text.ends_with('…'));
    assert_eq!(truncate_chars("abc", 3), "abc");
    assert_eq!(truncate_chars("abcd", 3), "ab…");
}

#[test]
fn pagerduty_trigger_carries_the_incident_as_dedup_key() {
    let n = succeeded();
    let m = render(&n);
    let body = pagerduty_body("R0UTINGKEY", &n, &m);
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(
        text.starts_with(
            r#"{"routing_key":"R0UTINGKEY","event_action":"trigger","dedup_key":"understudy/payments/wecom/freeze","payload":{"summary":"WARNING payments/wecom: failover to the standby succeeded (0 records lost)","source":"payments/wecom","severity":"warning","timestamp":"2026-03-01T02:00:00.000Z","component":"failover","group":"payments","class":"FailoverSucceeded","custom_details":{"text":"#
        ),
        "{text}"
    );
    let v = parse(&body);
    let details = &v["payload"]["custom_details"];
    assert_eq!(details["text"], json!(m.plain()));
    assert_eq!(details["serving"], json!("standby"));
    assert_eq!(details["kind"], json!("FailoverSucceeded"));
    assert_eq!(
        details["details"],
        json!({"to": "standby", "switchover": "wecom-failover-a1", "recordsLost": 0})
    );
    assert_eq!(
        details["commands"],
        json!(
            m.choices
                .iter()
                .map(|c| c.command.clone())
                .collect::<Vec<_>>()
        )
    );
}

#[test]
fn pagerduty_resolve_is_the_three_documented_keys() {
    let n = note(
        Event::Resolved {
            detail: "failback succeeded".into(),
        },
        Side::Primary,
    );
    let body = pagerduty_body("R0UTINGKEY", &n, &render(&n));
    assert_eq!(
        String::from_utf8(body).unwrap(),
        r#"{"routing_key":"R0UTINGKEY","event_action":"resolve","dedup_key":"understudy/payments/wecom/freeze"}"#
    );
}

#[test]
fn pagerduty_summary_and_severities_stay_within_the_api() {
    let n = note(
        Event::SwitchoverStuck {
            switchover: "s".into(),
            step: "x".repeat(2000),
            for_secs: 60,
        },
        Side::Primary,
    );
    let v = parse(&pagerduty_body("R", &n, &render(&n)));
    let summary = v["payload"]["summary"].as_str().unwrap();
    assert_eq!(summary.chars().count(), PAGERDUTY_SUMMARY_MAX_CHARS);
    assert_eq!(v["payload"]["severity"], json!("critical"));
    assert_eq!(v["payload"]["component"], json!("switchover"));
    for s in [Severity::Info, Severity::Warning, Severity::Critical] {
        assert!(["critical", "error", "warning", "info"].contains(&pagerduty_severity(s)));
    }
}

#[test]
fn webhook_document_is_stable() {
    let n = succeeded();
    let m = render(&n);
    let body = String::from_utf8(webhook_body(&n, &m)).unwrap();
    let commands = serde_json::to_string(&m.choices).unwrap();
    let expected = format!(
        concat!(
            r#"{{"schemaVersion":1,"namespace":"payments","pair":"wecom","kind":"FailoverSucceeded","#,
            r#""details":{{"to":"standby","switchover":"wecom-failover-a1","recordsLost":0}},"#,
            r#""severity":"warning","incidentKey":"understudy/payments/wecom/freeze","resolves":false,"#,
            r#""serving":"standby","at":"2026-03-01T02:00:00.000Z","#,
            r#""title":"WARNING payments/wecom: failover to the standby succeeded (0 records lost)","#,
            r#""text":{},"commands":{}}}"#
        ),
        serde_json::to_string(&m.plain()).unwrap(),
        commands
    );
    assert_eq!(body, expected);
    assert!(commands.starts_with(r#"[{"label":"Stay on the standby and appeal"#));
    let back: WebhookDocument = serde_json::from_str(&body).unwrap();
    assert_eq!(back, WebhookDocument::new(&n, &m));
    assert_eq!(back.event.kind(), EventKind::FailoverSucceeded);
}

const SECRET: &[u8] = b"whsec-test";
const TS: i64 = 1_772_330_400;

#[test]
fn signature_is_hmac_sha256_of_timestamp_dot_body() {
    // Reference: Python `hmac.new(b"whsec-test", b'1772330400.{"a":1}', hashlib.sha256)`.
    let sig = sign(SECRET, TS, br#"{"a":1}"#).unwrap();
    assert_eq!(
        sig,
        "sha256=19be7174dc7ab44d2f7cd37aaaadd4b448d3144116858a2d92c302c8a539faf5"
    );
    // The operator's provider-notice webhook accepts the same scheme.
    assert_eq!(
        crate::provider::notice::sign(SECRET, TS, br#"{"a":1}"#).unwrap(),
        sig
    );
    assert_eq!(sign(b"", TS, b"{}"), None, "an empty secret signs nothing");
}

#[test]
fn verify_accepts_only_the_right_secret_body_and_timestamp() {
    let body = webhook_body(&succeeded(), &render(&succeeded()));
    let sig = sign(SECRET, TS, &body).unwrap();
    let ts = TS.to_string();
    assert!(verify(SECRET, &ts, &body, &sig));
    assert!(verify(
        SECRET,
        &format!(" {ts} "),
        &body,
        &format!(" {sig}\r")
    ));
    assert!(!verify(b"whsec-wrong", &ts, &body, &sig));
    assert!(!verify(SECRET, &(TS + 1).to_string(), &body, &sig));
    let mut altered = body.clone();
    altered[10] ^= 1;
    assert!(!verify(SECRET, &ts, &altered, &sig));
    assert!(!verify(
        SECRET,
        &ts,
        &body,
        sig.trim_start_matches("sha256=")
    ));
    assert!(!verify(SECRET, &ts, &body, "sha256=zz"));
    assert!(!verify(b"", &ts, &body, &sig));
}

#[test]
fn verify_fresh_bounds_the_timestamp_age() {
    let body = b"{}";
    let sig = sign(SECRET, TS, body).unwrap();
    let ts = TS.to_string();
    let window = std::time::Duration::from_secs(300);
    let at = |secs: i64| Utc.timestamp_opt(secs, 0).unwrap();
    assert!(verify_fresh(SECRET, &ts, body, &sig, at(TS + 300), window));
    assert!(verify_fresh(SECRET, &ts, body, &sig, at(TS - 300), window));
    assert!(
        !verify_fresh(SECRET, &ts, body, &sig, at(TS + 301), window),
        "replay"
    );
    assert!(
        !verify_fresh(SECRET, &ts, body, &sig, at(TS - 301), window),
        "future"
    );
    assert!(!verify_fresh(SECRET, "soon", body, &sig, at(TS), window));
    assert!(!verify_fresh(b"other", &ts, body, &sig, at(TS), window));
}
