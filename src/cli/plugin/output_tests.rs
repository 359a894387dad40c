//! Unit tests of the typed `-o json` output: numbers are numbers, times parse as RFC 3339.

use serde_json::{Value, json};

use super::super::checks::tests::{pair, so};
use super::super::history::{Inputs, build};
use super::*;
use crate::api::Condition;
use crate::api::switchover::{StepStatus, SwitchoverPhase, SwitchoverStatus};

fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| DateTime::parse_from_rfc3339(s).is_ok())
}

#[test]
fn status_json_has_lag_as_numbers_and_times_as_rfc3339() {
    let mut p = pair(Side::Standby);
    if let Some(st) = p.status.as_mut() {
        st.primary.as_mut().unwrap().since = Some("2026-03-01T02:00:00.250Z".into());
        st.replication.as_mut().unwrap().last_applied_at = Some("2026-03-01T02:05:00Z".into());
        st.last_switchover = Some(ObjectSummary {
            name: "wecom-failover-1".into(),
            result: Some("Succeeded".into()),
            finished_at: Some("2026-03-01T02:01:00+08:00".into()),
        });
        st.conditions = vec![Condition {
            type_: "RiskWarning".into(),
            status: "True".into(),
            reason: "MassAdds".into(),
            message: "61 member adds".into(),
            last_transition_time: Some("2026-03-01T02:00:50Z".into()),
            ..Default::default()
        }];
    }
    p.spec.paused = true;
    p.metadata.annotations = Some(
        [
            (PAUSE_REASON.to_string(), "INC-1".to_string()),
            (PAUSED_AT.to_string(), "2026-03-01T02:10:00Z".to_string()),
        ]
        .into(),
    );
    let running = so(
        "wecom-failback-x",
        "wecom",
        Some(SwitchoverStatus {
            phase: SwitchoverPhase::Running,
            steps: vec![StepStatus {
                name: "flip-dns".into(),
                state: StepState::Running,
                ..Default::default()
            }],
            ..Default::default()
        }),
    );
    let v = serde_json::to_value(pair_status(&p, &[running])).unwrap();
    assert_eq!(v["active"], json!("standby"));
    assert_eq!(v["replication"]["lagRecords"], json!(3));
    assert_eq!(v["replication"]["lagSeconds"].as_f64(), Some(0.4));
    assert!(is_rfc3339(&v["replication"]["lastAppliedAt"]), "{v}");
    assert!(is_rfc3339(&v["primary"]["since"]), "{v}");
    assert_eq!(v["primary"]["verdict"], json!("Healthy"));
    assert_eq!(v["primary"]["account"], json!("corp-a"));
    assert_eq!(
        v["lastSwitchover"]["finishedAt"],
        json!("2026-02-28T18:01:00Z"),
        "in UTC"
    );
    assert_eq!(v["paused"]["reason"], json!("INC-1"));
    assert!(is_rfc3339(&v["paused"]["at"]), "{v}");
    assert_eq!(v["inProgress"]["step"], json!("flip-dns"));
    assert_eq!(v["attention"][0]["type"], json!("RiskWarning"));
    assert!(is_rfc3339(&v["attention"][0]["lastTransitionTime"]));
    // No display strings anywhere: a lag is never "0.4s/3".
    assert!(!v.to_string().contains("0.4s"), "{v}");
}

#[test]
fn status_json_of_a_pair_without_status_is_null_not_a_question_mark() {
    let mut p = pair(Side::Primary);
    p.status = None;
    let v = serde_json::to_value(pair_status(&p, &[])).unwrap();
    assert_eq!(v["active"], Value::Null);
    assert_eq!(v["replication"]["lagRecords"], Value::Null);
    assert_eq!(v["primary"]["verdict"], Value::Null);
    assert!(!v.to_string().contains('?'), "{v}");
}

#[test]
fn history_json_entries_are_typed_by_kind() {
    let p = pair(Side::Standby);
    let mut s = so(
        "wecom-failover-1",
        "wecom",
        Some(SwitchoverStatus {
            phase: SwitchoverPhase::Succeeded,
            records_lost: Some(2),
            duration_ms: Some(840),
            ..Default::default()
        }),
    );
    s.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_second(1_772_330_400).unwrap(),
    ));
    let since = "2026-01-01T00:00:00Z".parse().unwrap();
    let entries = build(
        &Inputs {
            pair: &p,
            switchovers: &[s],
            drills: &[],
            events: &[],
            audit: None,
            since,
        },
        10,
    );
    let out = History {
        pair: "wecom".into(),
        namespace: "payments".into(),
        since,
        audit_trail: AuditSource {
            read: false,
            topic: "understudy.audit".into(),
            records: None,
            error: Some("no Kafka".into()),
        },
        entries,
    };
    let v = serde_json::to_value(&out).unwrap();
    assert!(is_rfc3339(&v["since"]));
    assert_eq!(v["auditTrail"]["read"], json!(false));
    let e = &v["entries"][0];
    assert_eq!(e["kind"], json!("switchover"));
    assert_eq!(e["at"], json!("2026-03-01T02:00:00Z"));
    assert_eq!(e["recordsLost"], json!(2));
    assert_eq!(e["durationMs"], json!(840));
    assert_eq!(e["to"], json!("standby"));
    assert_eq!(e["phase"], json!("Succeeded"));
    assert_eq!(e["trigger"], json!("Manual"));
    assert_eq!(e["by"], json!("alice"));
    assert_eq!(e["source"], json!("switchover"));
    assert_eq!(e["forcedGates"], json!([]));
    // YAML carries the same types.
    let y: serde_yaml::Value = serde_yaml::from_str(&serde_yaml::to_string(&out).unwrap()).unwrap();
    assert_eq!(y["entries"][0]["recordsLost"].as_i64(), Some(2));
}
