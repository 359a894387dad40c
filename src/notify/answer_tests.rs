//! Tests of how each sink's answers are judged.

use super::*;

#[test]
fn wecom_needs_errcode_zero() {
    let ok = br#"{"errcode":0,"errmsg":"ok"}"#;
    assert_eq!(
        judge(SinkKind::WecomRobot, 200, None, ok),
        Verdict::Delivered
    );
    let removed = br#"{"errcode":93000,"errmsg":"invalid webhook url, hint: [x]"}"#;
    assert_eq!(
        judge(SinkKind::WecomRobot, 200, None, removed),
        Verdict::GiveUp {
            detail: "WeCom errcode 93000: invalid webhook url, hint: [x]".into()
        }
    );
    for code in [45009, 45033, -1] {
        let body = format!(r#"{{"errcode":{code},"errmsg":"busy"}}"#);
        assert!(
            matches!(
                judge(SinkKind::WecomRobot, 200, None, body.as_bytes()),
                Verdict::Retry { .. }
            ),
            "{code}"
        );
    }
    assert!(matches!(
        judge(SinkKind::WecomRobot, 200, None, b"<html>proxy</html>"),
        Verdict::GiveUp { .. }
    ));
}

#[test]
fn status_codes_decide_for_the_others() {
    for kind in [SinkKind::Slack, SinkKind::PagerDuty, SinkKind::Webhook] {
        assert_eq!(judge(kind, 200, None, b"ok"), Verdict::Delivered);
        assert_eq!(judge(kind, 202, None, b""), Verdict::Delivered);
        assert!(matches!(judge(kind, 500, None, b""), Verdict::Retry { .. }));
        assert!(matches!(judge(kind, 503, None, b""), Verdict::Retry { .. }));
        assert!(matches!(judge(kind, 408, None, b""), Verdict::Retry { .. }));
        assert!(matches!(
            judge(kind, 400, None, b""),
            Verdict::GiveUp { .. }
        ));
        assert!(matches!(
            judge(kind, 404, None, b""),
            Verdict::GiveUp { .. }
        ));
        assert!(matches!(
            judge(kind, 302, None, b""),
            Verdict::GiveUp { .. }
        ));
    }
    assert!(matches!(
        judge(SinkKind::WecomRobot, 502, None, b"bad gateway"),
        Verdict::Retry { .. }
    ));
}

#[test]
fn rate_limits_carry_retry_after() {
    assert_eq!(
        judge(SinkKind::PagerDuty, 429, Some("7"), b""),
        Verdict::Retry {
            detail: "HTTP 429 (rate limited)".into(),
            after: Some(Duration::from_secs(7))
        }
    );
    assert_eq!(
        judge(
            SinkKind::Slack,
            429,
            Some("Wed, 21 Oct 2015 07:28:00 GMT"),
            b""
        ),
        Verdict::Retry {
            detail: "HTTP 429 (rate limited)".into(),
            after: None
        }
    );
}

#[test]
fn quoted_bodies_are_short_and_on_one_line() {
    let long = format!("invalid_payload\n{}", "x".repeat(1000));
    let Verdict::GiveUp { detail } = judge(SinkKind::Slack, 400, None, long.as_bytes()) else {
        panic!("400 must be final");
    };
    assert!(
        detail.starts_with("HTTP 400: invalid_payload x"),
        "{detail}"
    );
    assert!(!detail.contains('\n'));
    assert!(detail.chars().count() <= "HTTP 400: ".len() + MAX_QUOTED_BODY);
}
