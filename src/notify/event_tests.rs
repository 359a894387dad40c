//! Tests of events: severity, incident keys (one incident = one thread) and the wire form.

use chrono::TimeZone;
use serde_json::json;

use super::*;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 2, 0, 0).unwrap()
}

fn note(namespace: &str, pair: &str, event: Event) -> Notification {
    Notification {
        namespace: namespace.into(),
        pair: pair.into(),
        event,
        serving: Side::Standby,
        at: at(),
    }
}

/// One event of each kind.
pub(crate) fn every_event() -> Vec<Event> {
    vec![
        Event::SideFrozen {
            side: Side::Primary,
            state: StoppedState::Frozen,
            evidence: "provider notice n-1".into(),
        },
        Event::FailoverStarted {
            to: Side::Standby,
            switchover: "wecom-failover-a1".into(),
            automatic: true,
        },
        Event::FailoverSucceeded {
            to: Side::Standby,
            switchover: "wecom-failover-a1".into(),
            records_lost: 0,
        },
        Event::FailoverFailed {
            switchover: "wecom-failover-a1".into(),
            reason: "flip-dns: SERVFAIL".into(),
        },
        Event::BrakePaged {
            reason: "BothSidesDown".into(),
        },
        Event::SwitchoverStuck {
            switchover: "wecom-switchover-x7".into(),
            step: "drain".into(),
            for_secs: 600,
        },
        Event::DrillFailed {
            drill: "wecom-drill-1".into(),
            reason: "3 keys differ".into(),
        },
        Event::DrillOverdue { last: None },
        Event::RiskWarning {
            side: Side::Standby,
            detail: "replication lag 900 s".into(),
        },
        Event::Resolved {
            detail: "failback succeeded".into(),
        },
    ]
}

#[test]
fn severities() {
    let got: Vec<(EventKind, Severity)> = every_event()
        .iter()
        .map(|e| (e.kind(), e.severity()))
        .collect();
    use EventKind::*;
    use Severity::*;
    assert_eq!(
        got,
        vec![
            (SideFrozen, Critical),
            (FailoverStarted, Critical),
            (FailoverSucceeded, Warning),
            (FailoverFailed, Critical),
            (BrakePaged, Critical),
            (SwitchoverStuck, Critical),
            (DrillFailed, Warning),
            (DrillOverdue, Warning),
            (RiskWarning, Warning),
            (Resolved, Info),
        ]
    );
    let lossy = Event::FailoverSucceeded {
        to: Side::Standby,
        switchover: "s".into(),
        records_lost: 2,
    };
    assert_eq!(lossy.severity(), Critical, "lost records need a human");
    assert!(Info < Warning && Warning < Critical);
}

#[test]
fn a_freeze_and_its_failover_share_one_thread() {
    let keys: Vec<String> = every_event()
        .into_iter()
        .map(|e| note("payments", "wecom", e).incident_key())
        .collect();
    let freeze = "understudy/payments/wecom/freeze";
    for i in [0, 1, 2, 3, 4, 9] {
        assert_eq!(keys[i], freeze, "event {i}");
    }
    assert_eq!(
        keys[5],
        "understudy/payments/wecom/switchover/wecom-switchover-x7"
    );
    assert_eq!(keys[6], "understudy/payments/wecom/drills");
    assert_eq!(
        keys[7], keys[6],
        "a failed and an overdue drill are one thread"
    );
    assert_eq!(keys[8], "understudy/payments/wecom/risk/standby");
}

#[test]
fn threads_of_different_pairs_never_meet() {
    let e = every_event().remove(0);
    let a = note("payments", "wecom", e.clone()).incident_key();
    let b = note("payments", "oa", e.clone()).incident_key();
    let c = note("billing", "wecom", e).incident_key();
    assert_ne!(a, b);
    assert_ne!(a, c);
}

#[test]
fn long_keys_are_shortened_stably_and_stay_distinct() {
    let long = "s".repeat(253);
    let stuck = |name: &str| {
        note(
            &"n".repeat(63),
            &"p".repeat(253),
            Event::SwitchoverStuck {
                switchover: name.into(),
                step: "drain".into(),
                for_secs: 1,
            },
        )
        .incident_key()
    };
    let a = stuck(&format!("{long}a"));
    let b = stuck(&format!("{long}b"));
    assert_eq!(a.chars().count(), MAX_INCIDENT_KEY);
    assert_eq!(b.chars().count(), MAX_INCIDENT_KEY);
    assert_ne!(a, b, "the digest keeps cut keys apart");
    assert_eq!(a, stuck(&format!("{long}a")), "stable");
    assert!(a.starts_with("understudy/nnn"), "{a}");
    let short = note("ns", "p", Event::BrakePaged { reason: "r".into() }).incident_key();
    assert_eq!(short, "understudy/ns/p/freeze", "short keys are untouched");
}

#[test]
fn only_a_resolution_resolves() {
    for e in every_event() {
        assert_eq!(e.resolves(), e.kind() == EventKind::Resolved, "{e:?}");
    }
}

#[test]
fn wire_form_is_kind_and_camel_case_details() {
    let e = Event::FailoverSucceeded {
        to: Side::Standby,
        switchover: "wecom-failover-a1".into(),
        records_lost: 3,
    };
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(
        v,
        json!({"kind": "FailoverSucceeded", "details": {
            "to": "standby", "switchover": "wecom-failover-a1", "recordsLost": 3}})
    );
    let overdue = Event::DrillOverdue { last: Some(at()) };
    assert_eq!(
        serde_json::to_value(&overdue).unwrap(),
        json!({"kind": "DrillOverdue", "details": {"last": "2026-03-01T02:00:00Z"}})
    );
    for e in every_event() {
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), e, "{text}");
        // The configuration's filter names kinds as the wire does.
        let kind = serde_json::to_value(e.kind()).unwrap();
        assert_eq!(kind, json!(e.kind().as_str()));
        assert_eq!(serde_json::to_value(&e).unwrap()["kind"], kind);
    }
}
