//! Tests of the notification configuration: its YAML form, its checks, sink selection,
//! and that secrets never show.

use chrono::{TimeZone, Utc};

use super::*;
use crate::api::{SecretKeyRef, Side};
use crate::notify::event::Event;

const WECOM_URL: &str = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=SECRET-KEY-693a91f6";
const SLACK_URL: &str = "https://hooks.slack.com/services/T0123ABCD/B0456EFGH/xoxSeCrEtToKeN42";

fn sink(name: &str, kind: SinkKind, url: Option<&str>) -> NotificationSink {
    NotificationSink {
        name: name.into(),
        kind,
        secret_ref: SecretKeyRef {
            name: format!("{name}-secret"),
            key: None,
        },
        url: url.map(str::to_string),
        min_severity: None,
        events: vec![],
    }
}

fn note(event: Event) -> Notification {
    Notification {
        namespace: "payments".into(),
        pair: "wecom".into(),
        event,
        serving: Side::Standby,
        at: Utc.with_ymd_and_hms(2026, 3, 1, 2, 0, 0).unwrap(),
    }
}

#[test]
fn yaml_form() {
    let yaml = r#"
sinks:
  - name: oncall-group
    kind: WecomRobot
    secretRef: {name: wecom-robot}
  - name: pd
    kind: PagerDuty
    secretRef: {name: pd, key: integrationKey}
    minSeverity: critical
  - name: audit-hook
    kind: Webhook
    url: https://hooks.example.com/understudy
    secretRef: {name: hook}
    events: [FailoverSucceeded, Resolved]
switchoverStuckSeconds: 300
"#;
    let c: NotificationConfig = serde_yaml::from_str(yaml).unwrap();
    assert_eq!(c.sinks.len(), 3);
    assert_eq!(c.sinks[0].secret_key(), "url");
    assert_eq!(c.sinks[1].secret_key(), "integrationKey");
    assert_eq!(c.sinks[1].min_severity, Some(Severity::Critical));
    assert_eq!(c.sinks[2].secret_key(), "secret");
    assert_eq!(
        c.sinks[2].events,
        [EventKind::FailoverSucceeded, EventKind::Resolved]
    );
    assert_eq!(c.switchover_stuck_after(), chrono::Duration::minutes(5));
    assert_eq!(
        c.drill_overdue_after(),
        chrono::Duration::days(35),
        "the alert UnderstudyDrillOverdue's default"
    );
    assert_eq!(c.secret_refresh(), std::time::Duration::from_secs(60));
    for s in &c.sinks {
        s.validate().unwrap();
    }
    let again: NotificationConfig =
        serde_yaml::from_str(&serde_yaml::to_string(&c).unwrap()).unwrap();
    assert_eq!(again, c);
    assert_eq!(
        sink("p", SinkKind::PagerDuty, None).secret_key(),
        "routingKey"
    );
}

#[test]
fn the_pair_crd_carries_the_sink_rules() {
    let crds = crate::api::crds_yaml().unwrap();
    for needle in [
        "a Webhook sink needs url",
        "put the whole URL in the Secret",
        "notifications.sinks: two sinks have the same name",
        "is both in notifications.operatorSinks and in notifications.sinks",
    ] {
        assert!(crds.contains(needle), "{needle}");
    }
}

#[test]
fn validation_explains_without_showing_the_url() {
    let err = |s: NotificationSink| s.validate().unwrap_err().to_string();
    assert!(err(sink("w", SinkKind::Webhook, None)).contains("needs url"));
    let e = err(sink("s", SinkKind::Slack, Some(SLACK_URL)));
    assert!(
        e.contains("put it in the Secret") && !e.contains("xoxSeCrEt"),
        "{e}"
    );
    let e = err(sink(
        "w",
        SinkKind::Webhook,
        Some("https://bob:hunter2@h.example/x"),
    ));
    assert!(e.contains("credentials") && !e.contains("hunter2"), "{e}");
    assert!(err(sink("w", SinkKind::Webhook, Some("ftp://h/x"))).contains("http or https"));
    assert!(err(sink("w", SinkKind::Webhook, Some("not a url"))).contains("absolute"));
    assert!(err(sink("", SinkKind::Slack, None)).contains("name"));
    sink(
        "p",
        SinkKind::PagerDuty,
        Some("http://127.0.0.1:9/v2/enqueue"),
    )
    .validate()
    .unwrap();
}

#[test]
fn secrets_never_show_in_debug() {
    let s = Secret::from_bytes(b"hunter2").unwrap();
    assert_eq!(format!("{s:?}"), "<redacted>");
    assert_eq!(s.expose(), "hunter2");
    let wecom = ResolvedSink::resolve(&sink("g", SinkKind::WecomRobot, None), WECOM_URL.as_bytes())
        .unwrap();
    let dbg = format!("{wecom:?} {wecom:#?}");
    assert!(
        !dbg.contains("SECRET-KEY") && !dbg.contains("key="),
        "{dbg}"
    );
    assert!(
        dbg.contains("<redacted>") && dbg.contains("https://qyapi.weixin.qq.com"),
        "{dbg}"
    );
    assert_eq!(wecom.endpoint(), "https://qyapi.weixin.qq.com");
    let slack =
        ResolvedSink::resolve(&sink("s", SinkKind::Slack, None), SLACK_URL.as_bytes()).unwrap();
    assert!(!format!("{slack:?}").contains("xoxSeCrEt"));
    assert_eq!(slack.endpoint(), "https://hooks.slack.com");
    let pd = ResolvedSink::resolve(&sink("p", SinkKind::PagerDuty, None), b"R0UTINGKEY").unwrap();
    assert!(!format!("{pd:?}").contains("R0UTINGKEY"));
    assert_eq!(pd.endpoint(), "https://events.pagerduty.com/v2/enqueue");
    let hook = ResolvedSink::resolve(
        &sink(
            "h",
            SinkKind::Webhook,
            Some("https://h.example/in?token=abc123"),
        ),
        b"whsec",
    )
    .unwrap();
    assert_eq!(hook.endpoint(), "https://h.example/in");
    assert!(!format!("{hook:?}").contains("abc123"));
}

#[test]
fn resolving_trims_and_checks_the_secret() {
    let pd =
        ResolvedSink::resolve(&sink("p", SinkKind::PagerDuty, None), b" R0UTINGKEY\n").unwrap();
    assert_eq!(pd.secret_fragments(), ["R0UTINGKEY"]);
    let e = ResolvedSink::resolve(&sink("p", SinkKind::PagerDuty, None), b"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"routingKey\"") && e.contains("\"p-secret\""),
        "{e}"
    );
    assert!(ResolvedSink::resolve(&sink("p", SinkKind::PagerDuty, None), &[0xff, 0xfe]).is_err());
    let e = ResolvedSink::resolve(&sink("g", SinkKind::WecomRobot, None), b"key=SECRETVALUE")
        .unwrap_err()
        .to_string();
    assert!(e.contains("absolute") && !e.contains("SECRETVALUE"), "{e}");
}

#[test]
fn secret_fragments_cover_keys_in_query_and_path() {
    let wecom = ResolvedSink::resolve(&sink("g", SinkKind::WecomRobot, None), WECOM_URL.as_bytes())
        .unwrap();
    let f = wecom.secret_fragments();
    assert_eq!(f[0], WECOM_URL, "longest first");
    assert!(f.contains(&"SECRET-KEY-693a91f6".to_string()), "{f:?}");
    let slack =
        ResolvedSink::resolve(&sink("s", SinkKind::Slack, None), SLACK_URL.as_bytes()).unwrap();
    let f = slack.secret_fragments();
    for part in ["T0123ABCD", "B0456EFGH", "xoxSeCrEtToKeN42"] {
        assert!(f.contains(&part.to_string()), "{part}: {f:?}");
    }
}

#[test]
fn a_sink_takes_what_its_filters_allow() {
    let mut s = sink("p", SinkKind::PagerDuty, None);
    s.min_severity = Some(Severity::Critical);
    let pd = ResolvedSink::resolve(&s, b"R").unwrap();
    let brake = note(Event::BrakePaged { reason: "r".into() });
    let drill = note(Event::DrillOverdue { last: None });
    let resolved = note(Event::Resolved { detail: "d".into() });
    assert!(pd.wants(&brake));
    assert!(!pd.wants(&drill), "warning < critical");
    assert!(
        pd.wants(&resolved),
        "a resolution closes what the sink opened"
    );
    s.min_severity = None;
    s.events = vec![EventKind::DrillOverdue];
    let only_drills = ResolvedSink::resolve(&s, b"R").unwrap();
    assert!(only_drills.wants(&drill));
    assert!(!only_drills.wants(&brake));
    assert!(!only_drills.wants(&resolved));
}

#[test]
fn a_pair_chooses_operator_sinks_adds_its_own_and_replaces_by_name() {
    let operator = vec![
        sink("pd", SinkKind::PagerDuty, None),
        sink("chat", SinkKind::Slack, None),
    ];
    let names = |v: Vec<&NotificationSink>| v.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(effective_sinks(&operator, None)), ["pd", "chat"]);
    // Own sinks, every operator sink but the one it replaces.
    let mut pair = PairNotifications {
        operator_sinks: None,
        sinks: vec![
            sink("chat", SinkKind::WecomRobot, None),
            sink("team", SinkKind::Slack, None),
        ],
    };
    let got = effective_sinks(&operator, Some(&pair));
    assert_eq!(names(got.clone()), ["chat", "team", "pd"]);
    assert_eq!(
        got[0].kind,
        SinkKind::WecomRobot,
        "the pair's sink replaces the operator's"
    );
    // Only the operator sinks it names; [] for none.
    pair.operator_sinks = Some(vec!["pd".into()]);
    assert_eq!(
        names(effective_sinks(&operator, Some(&pair))),
        ["chat", "team", "pd"]
    );
    pair.operator_sinks = Some(vec![]);
    assert_eq!(
        names(effective_sinks(&operator, Some(&pair))),
        ["chat", "team"]
    );
    let only_pd = PairNotifications {
        operator_sinks: Some(vec!["pd".into()]),
        sinks: vec![],
    };
    assert_eq!(names(effective_sinks(&operator, Some(&only_pd))), ["pd"]);
    assert!(only_pd.uses_operator_sink("pd") && !only_pd.uses_operator_sink("chat"));
}

#[test]
fn operator_sinks_the_operator_does_not_have_are_named() {
    let operator = vec![sink("pd", SinkKind::PagerDuty, None)];
    let pair = PairNotifications {
        operator_sinks: Some(vec!["pd".into(), "pager".into()]),
        sinks: vec![],
    };
    assert_eq!(unknown_operator_sinks(&operator, &pair), ["pager"]);
    let all = PairNotifications::default();
    assert!(unknown_operator_sinks(&operator, &all).is_empty());
}
