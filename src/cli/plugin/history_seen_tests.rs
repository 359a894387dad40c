//! Unit tests of the history entries the operator records for what it sees: pauses and
//! resumes made without `kubectl understudy pause/resume`, and risk warnings.

use super::*;
use crate::controller::pair::pause_record;

fn observed(seq: u64, at: i64, k: &str, by: &str, generation: i64) -> (i64, AuditRecord) {
    let mut data = json!({
        "observedBy": "operator",
        "changedBy": by,
        "changedAt": t(at - 2).to_rfc3339(),
        "generation": generation,
    });
    if k == kind::PAUSED {
        data["reason"] = Value::Null;
    } else {
        data["previousReason"] = Value::Null;
    }
    record(seq, at, k, "understudy/op-0", data)
}

#[test]
fn the_plugin_and_the_operator_name_the_same_annotations() {
    assert_eq!(PAUSE_REASON, pause_record::REASON_ANNOTATION);
    assert_eq!(PAUSED_AT, pause_record::REASON_AT_ANNOTATION);
}

#[test]
fn a_pause_and_resume_made_with_kubectl_patch_show_who_made_them_once_each() {
    let mut c = Case::new();
    c.pair.spec.paused = true;
    // The operator saw the pause (no annotations: not made with the plugin).
    if let Some(st) = c.pair.status.as_mut() {
        st.conditions = vec![Condition {
            type_: "Paused".into(),
            status: "True".into(),
            reason: "Paused".into(),
            message: "automatic failover is paused (spec.paused, set by kubectl-patch)".into(),
            last_transition_time: Some("2026-03-01T02:05:01Z".into()),
            ..Default::default()
        }];
    }
    // Without the audit trail: the pause in force, dated by the condition.
    c.audit = None;
    let h = c.build();
    assert_eq!(kinds(&h), ["pause"]);
    assert_eq!((h[0].source, h[0].at), (Source::Pair, Some(t(301))));
    // With it: an earlier pause and resume by kubectl-patch (the resume recorded twice
    // by two replicas, same generation), and the pause in force once, from the trail.
    c.audit = Some(vec![
        observed(1, 100, kind::PAUSED, "kubectl-patch", 2),
        observed(2, 200, kind::RESUMED, "kubectl-edit", 3),
        observed(3, 201, kind::RESUMED, "kubectl-edit", 3),
        observed(4, 300, kind::PAUSED, "kubectl-patch", 4),
    ]);
    let h = c.build();
    assert_eq!(kinds(&h), ["pause", "resume", "pause"]);
    assert!(h.iter().all(|e| e.source == Source::Audit), "{h:?}");
    assert_eq!(
        h.iter().map(|e| e.by.as_deref()).collect::<Vec<_>>(),
        [
            Some("kubectl-patch"),
            Some("kubectl-edit"),
            Some("kubectl-patch")
        ],
        "who made the change, not the operator that recorded it"
    );
    let text = render_history(&h);
    assert!(
        text.contains("kubectl-edit") && text.contains("resumed") && text.contains("paused"),
        "{text}"
    );
    // A pause recorded by the plugin keeps its user.
    c.audit = Some(vec![record(
        1,
        300,
        kind::PAUSED,
        "carol",
        json!({ "reason": "INC-4411" }),
    )]);
    let h = c.build();
    assert_eq!(kinds(&h), ["pause"]);
    assert_eq!(h[0].by.as_deref(), Some("carol"));
}

#[test]
fn risk_warnings_come_from_the_audit_trail_once_with_their_event_and_condition() {
    let msg = "61 member adds in an hour (limit 50)";
    let mut c = Case::new();
    c.audit = Some(vec![record(
        1,
        50,
        kind::RISK_WARNING,
        "understudy/op-0",
        json!({ "side": "primary", "account": "corp-a", "risk": "mass_adds", "message": msg,
                "at": "2026-03-01T02:00:49.000Z", "activeUntil": "2026-03-01T03:00:49.000Z" }),
    )]);
    // Long after: the Event expired and the condition is gone; the trail still has it.
    let h = c.build();
    assert_eq!(kinds(&h), ["risk-warning"]);
    assert_eq!((h[0].source, h[0].at), (Source::Audit, Some(t(50))));
    assert!(render_history(&h).contains(msg));
    // While they exist, the Event and the condition (all findings, joined) are the same
    // fact: shown once.
    c.events = vec![event(50, "RiskWarning", msg)];
    if let Some(st) = c.pair.status.as_mut() {
        st.conditions = vec![Condition {
            type_: "RiskWarning".into(),
            status: "True".into(),
            reason: "mass_adds".into(),
            message: format!("{msg}; a login from a new device"),
            last_transition_time: Some("2026-03-01T02:00:51Z".into()),
            ..Default::default()
        }];
    }
    let h = c.build();
    assert_eq!(kinds(&h), ["risk-warning"]);
    assert_eq!(h[0].source, Source::Audit);
    c.events = vec![];
    assert_eq!(kinds(&c.build()), ["risk-warning"], "condition and record");
    // Another finding an hour later, only as an Event: shown too.
    c.events = vec![event(3650, "RiskWarning", "a login from a new device")];
    assert_eq!(kinds(&c.build()), ["risk-warning", "risk-warning"]);
}
