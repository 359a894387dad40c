//! Unit tests of the history: each kind of entry from its source, duplicates dropped,
//! order, window and limit, and the table.

use chrono::TimeZone;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::super::checks::tests::{pair, so};
use super::super::view::render_history;
use super::*;
use crate::api::Side;
use crate::api::drill::DrillResult;
use crate::api::switchover::{ForceSpec, SwitchoverMode, SwitchoverStatus, Trigger};
use crate::api::{Condition, DrillSpec};

const T0: i64 = 1_772_330_400; // 2026-03-01T02:00:00Z

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(T0 + s, 0).unwrap()
}

fn k8s(s: i64) -> Option<Time> {
    Some(Time(
        k8s_openapi::jiff::Timestamp::from_second(T0 + s).unwrap(),
    ))
}

fn record(seq: u64, at: i64, kind: &str, actor: &str, data: Value) -> (i64, AuditRecord) {
    (
        seq as i64 + 100,
        AuditRecord {
            seq,
            at: t(at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            kind: kind.into(),
            namespace: "payments".into(),
            pair: "wecom".into(),
            actor: actor.into(),
            data,
            prev_hash: String::new(),
            hash: String::new(),
        },
    )
}

fn event(at: i64, reason: &str, note: &str) -> EventLine {
    EventLine {
        at: t(at),
        type_: "Warning".into(),
        reason: reason.into(),
        object: "AccountPair/wecom".into(),
        note: note.into(),
    }
}

fn drill(name: &str, at: i64, slot: Option<&str>) -> Drill {
    let mut d = Drill::new(
        name,
        DrillSpec {
            pair: "wecom".into(),
            rehearse: true,
            slot: slot.map(str::to_string),
        },
    );
    d.metadata.creation_timestamp = k8s(at);
    d
}

struct Case {
    pair: AccountPair,
    sos: Vec<Switchover>,
    drills: Vec<Drill>,
    events: Vec<EventLine>,
    audit: Option<Vec<(i64, AuditRecord)>>,
}

impl Case {
    fn new() -> Case {
        Case {
            pair: pair(Side::Primary),
            sos: vec![],
            drills: vec![],
            events: vec![],
            audit: Some(vec![]),
        }
    }
    fn build(&self) -> Vec<Entry> {
        build(
            &Inputs {
                pair: &self.pair,
                switchovers: &self.sos,
                drills: &self.drills,
                events: &self.events,
                audit: self.audit.as_deref(),
                since: t(-86_400),
            },
            50,
        )
    }
}

fn kinds(entries: &[Entry]) -> Vec<&'static str> {
    entries.iter().map(|e| kind_name(&e.what)).collect()
}

#[test]
fn a_switchover_shows_trigger_result_loss_duration_who_why_and_forced_gates() {
    let mut c = Case::new();
    let mut s = so("wecom-failover-1", "wecom", None);
    s.metadata.creation_timestamp = k8s(60);
    s.spec.trigger = Trigger::Automatic;
    s.spec.mode = SwitchoverMode::Emergency;
    s.spec.force = Some(ForceSpec {
        skip_lag_gate: true,
        skip_standby_health: false,
    });
    s.status = Some(SwitchoverStatus {
        phase: SwitchoverPhase::Succeeded,
        records_lost: Some(2),
        duration_ms: Some(840),
        ..Default::default()
    });
    let mut other = so("x", "other", None);
    other.metadata.creation_timestamp = k8s(70);
    c.sos = vec![s, other];
    let h = c.build();
    assert_eq!(h.len(), 1, "another pair's switchover is not shown");
    assert_eq!(h[0].at, Some(t(60)));
    assert_eq!(h[0].by.as_deref(), Some("alice"));
    let What::Switchover {
        records_lost,
        duration_ms,
        forced_gates,
        trigger,
        reason,
        ..
    } = &h[0].what
    else {
        panic!("{h:?}")
    };
    assert_eq!((*records_lost, *duration_ms), (Some(2), Some(840)));
    assert_eq!(forced_gates, &vec!["lag".to_string()]);
    assert_eq!(*trigger, Some(Trigger::Automatic));
    assert_eq!(reason.as_deref(), Some("r"));
    let text = render_history(&h);
    let row = text.lines().nth(1).unwrap();
    for needle in [
        "2026-03-01T02:01:00Z",
        "switchover",
        "wecom-failover-1",
        "Succeeded",
        " 2 ",
        "0.8s",
        "alice",
        "Emergency",
        "Automatic",
        "forced: lag gate skipped",
        "reason: r",
    ] {
        assert!(row.contains(needle), "{needle}: {text}");
    }
}

#[test]
fn a_switchover_still_pending_or_running_says_so() {
    let mut c = Case::new();
    let mut asked = so("wecom-switchover-2", "wecom", None);
    asked.metadata.annotations = Some(
        [(
            crate::controller::switchover::CANCEL_REQUESTED_BY.to_string(),
            "bob".to_string(),
        )]
        .into(),
    );
    c.sos = vec![asked];
    assert!(
        render_history(&c.build()).contains("Pending (cancel requested)"),
        "{:?}",
        c.build()
    );
}

#[test]
fn drills_show_result_differences_and_whether_scheduled() {
    let mut c = Case::new();
    let mut failed = drill("wecom-drill-x", 10, None);
    failed.status = Some(crate::api::drill::DrillStatus {
        phase: DrillPhase::Finished,
        result: Some(DrillResult::Failed),
        verification: Some(crate::api::drill::VerificationStatus {
            missing_on_standby: 2,
            mismatched: 1,
            ..Default::default()
        }),
        started_at: Some(t(10).to_rfc3339()),
        finished_at: Some(t(40).to_rfc3339()),
        ..Default::default()
    });
    c.drills = vec![
        failed,
        drill("wecom-20260301", 20, Some("2026-03-01T02:00:20Z")),
    ];
    let h = c.build();
    assert_eq!(kinds(&h), ["drill", "drill"]);
    assert_eq!(h[0].by.as_deref(), Some("schedule"));
    let What::Drill {
        result,
        differences,
        duration_ms,
        ..
    } = &h[1].what
    else {
        panic!()
    };
    assert_eq!(
        (*result, *differences, *duration_ms),
        (Some(DrillResult::Failed), Some(3), Some(30_000))
    );
    let text = render_history(&h);
    assert!(
        text.contains("Failed") && text.contains("3 records differ") && text.contains("30.0s"),
        "{text}"
    );
}

#[test]
fn pauses_and_resumes_come_from_the_audit_trail_and_the_pause_in_force_from_the_pair() {
    let mut c = Case::new();
    c.pair.spec.paused = true;
    c.pair.metadata.annotations = Some(
        [
            (PAUSE_REASON.to_string(), "INC-4411".to_string()),
            (PAUSED_BY.to_string(), "carol".to_string()),
            (PAUSED_AT.to_string(), "2026-03-01T02:10:00Z".to_string()),
        ]
        .into(),
    );
    // Without the audit trail: only the pause in force, from the annotations.
    c.audit = None;
    let h = c.build();
    assert_eq!(kinds(&h), ["pause"]);
    assert_eq!(
        (h[0].source, h[0].by.as_deref(), h[0].at),
        (Source::Pair, Some("carol"), Some(t(600)))
    );
    // With it: the earlier pause and resume too, and the pause in force once.
    c.audit = Some(vec![
        record(
            1,
            100,
            kind::PAUSED,
            "dave",
            json!({ "reason": "maintenance" }),
        ),
        record(
            2,
            200,
            kind::RESUMED,
            "dave",
            json!({ "previousReason": "maintenance" }),
        ),
        record(
            3,
            601,
            kind::PAUSED,
            "carol",
            json!({ "reason": "INC-4411" }),
        ),
    ]);
    let h = c.build();
    assert_eq!(kinds(&h), ["pause", "resume", "pause"]);
    assert!(h.iter().all(|e| e.source == Source::Audit), "{h:?}");
    let text = render_history(&h);
    assert!(
        text.contains("INC-4411") && text.contains("resumed"),
        "{text}"
    );
}

#[test]
fn gates_overridden_in_a_precheck_and_notices_come_from_the_audit_trail() {
    let mut c = Case::new();
    c.audit = Some(vec![
        record(
            1,
            5,
            kind::NOTICE,
            "understudy/op-0",
            json!({ "side": "primary", "account": "corp-a", "notice": "frozen", "reason": "content_violation" }),
        ),
        record(
            2,
            9,
            kind::GATE_FORCED,
            "understudy/op-0",
            json!({ "name": "wecom-switchover-1", "gate": "lag 12s above 5s", "gateName": "lag" }),
        ),
        record(
            3,
            10,
            kind::SWITCHOVER_STEP,
            "understudy/op-0",
            json!({ "name": "wecom-switchover-1" }),
        ),
    ]);
    let h = c.build();
    assert_eq!(
        kinds(&h),
        ["gate-forced", "notice"],
        "steps are not history rows"
    );
    let What::Notice { notice, reason, .. } = &h[1].what else {
        panic!()
    };
    assert_eq!(
        (notice.as_str(), reason.as_deref()),
        ("frozen", Some("content_violation"))
    );
    let text = render_history(&h);
    assert!(
        text.contains("the lag gate failed and was skipped"),
        "{text}"
    );
    assert!(
        text.contains("content_violation") && text.contains("corp-a"),
        "{text}"
    );
}

#[test]
fn verdicts_and_pages_come_from_events_and_once_when_the_audit_trail_has_them_too() {
    let mut c = Case::new();
    c.events = vec![
        event(
            30,
            "PrimaryFrozen",
            "primary account corp-a: Suspect → Frozen (notice)",
        ),
        event(
            31,
            "NeedsHuman",
            "no automatic failover (paused): paused by carol",
        ),
        event(32, "DrillPassed", "drill x"),
        event(
            40,
            "StandbyFrozen",
            "standby account corp-b: Healthy → Frozen (poll)",
        ),
    ];
    c.audit = None;
    let h = c.build();
    assert_eq!(
        kinds(&h),
        ["verdict", "page", "verdict"],
        "drill Events are left to Drill objects"
    );
    assert!(h.iter().all(|e| e.source == Source::Event));
    // Which side went first reads top to bottom, newest first.
    let text = render_history(&h);
    let standby = text.find("standby").unwrap();
    let primary = text.find("primary").unwrap();
    assert!(standby < primary, "{text}");
    c.audit = Some(vec![
        record(
            1,
            29,
            kind::VERDICT,
            "understudy/op-0",
            json!({ "side": "primary", "account": "corp-a", "from": "Suspect", "to": "Frozen", "reason": "notice" }),
        ),
        record(
            2,
            31,
            kind::PAGE,
            "understudy/op-0",
            json!({ "brake": "paused", "pages": true, "reason": "paused by carol" }),
        ),
    ]);
    let h = c.build();
    assert_eq!(kinds(&h), ["verdict", "page", "verdict"]);
    assert_eq!(
        h.iter().map(|e| e.source).collect::<Vec<_>>(),
        [Source::Event, Source::Audit, Source::Audit],
        "the standby's verdict only in an Event; the others once, from the audit trail"
    );
    assert!(render_history(&h).contains("Suspect -> Frozen"));
}

#[test]
fn risk_warnings_come_from_events_or_the_condition_in_force() {
    let mut c = Case::new();
    if let Some(st) = c.pair.status.as_mut() {
        st.conditions = vec![Condition {
            type_: "RiskWarning".into(),
            status: "True".into(),
            reason: "MassAdds".into(),
            message: "61 member adds in an hour".into(),
            last_transition_time: Some("2026-03-01T02:00:50Z".into()),
            ..Default::default()
        }];
    }
    let h = c.build();
    assert_eq!(kinds(&h), ["risk-warning"]);
    assert_eq!((h[0].source, h[0].at), (Source::Pair, Some(t(50))));
    c.events = vec![event(50, "RiskWarning", "61 member adds in an hour")];
    let h = c.build();
    assert_eq!(kinds(&h), ["risk-warning"]);
    assert_eq!(h[0].source, Source::Event);
}

#[test]
fn switchovers_and_drills_whose_objects_are_gone_come_from_the_audit_trail() {
    let mut c = Case::new();
    let spec = so("wecom-failover-old", "wecom", None).spec;
    let mut kept = drill("wecom-drill-kept", 5, None);
    kept.status = Some(Default::default());
    c.drills = vec![kept];
    c.audit = Some(vec![
        record(
            1,
            1,
            kind::SWITCHOVER_CREATED,
            "alice",
            json!({ "name": "wecom-failover-old", "spec": spec }),
        ),
        record(
            2,
            3,
            kind::SWITCHOVER_FINISHED,
            "understudy/op-0",
            json!({ "name": "wecom-failover-old", "phase": "Succeeded", "recordsLost": 4, "durationMs": 1200 }),
        ),
        record(
            3,
            8,
            kind::DRILL_FINISHED,
            "understudy/op-0",
            json!({ "name": "wecom-drill-gone", "result": "Passed", "verification": { "mismatched": 0 } }),
        ),
        record(
            4,
            9,
            kind::DRILL_FINISHED,
            "understudy/op-0",
            json!({ "name": "wecom-drill-kept", "result": "Passed" }),
        ),
    ]);
    let h = c.build();
    assert_eq!(kinds(&h), ["drill", "drill", "switchover"]);
    let What::Switchover {
        phase,
        records_lost,
        to,
        ..
    } = &h[2].what
    else {
        panic!()
    };
    assert_eq!(
        (*phase, *records_lost, to.as_deref()),
        (Some(SwitchoverPhase::Succeeded), Some(4), Some("standby"))
    );
    assert_eq!(h[0].source, Source::Audit);
    assert_eq!(
        h[1].source,
        Source::Drill,
        "a kept drill is shown once, from its object"
    );
}

#[test]
fn newest_first_within_the_window_and_at_most_the_limit() {
    let mut c = Case::new();
    c.audit = Some(
        (0..10)
            .map(|i| {
                record(
                    i,
                    i as i64 * 10,
                    kind::PAUSED,
                    "x",
                    json!({ "reason": i.to_string() }),
                )
            })
            .chain([record(
                99,
                -90_000,
                kind::PAUSED,
                "x",
                json!({ "reason": "too old" }),
            )])
            .collect(),
    );
    let all = c.build();
    assert_eq!(all.len(), 10, "the record before --since is left out");
    assert!(all.windows(2).all(|w| w[0].at >= w[1].at));
    let three = build(
        &Inputs {
            pair: &c.pair,
            switchovers: &[],
            drills: &[],
            events: &[],
            audit: c.audit.as_deref(),
            since: t(-86_400),
        },
        3,
    );
    assert_eq!(three, all[..3].to_vec());
    assert!(render_history(&[]).contains("nothing"));
}

#[path = "history_seen_tests.rs"]
mod seen;
