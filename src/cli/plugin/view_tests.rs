//! Unit tests of the status and history views.

use super::super::checks::tests::{pair, so};
use super::*;
use crate::api::{Condition, Side};

fn cond(t: &str, status: &str, reason: &str, message: &str) -> Condition {
    Condition {
        type_: t.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        ..Default::default()
    }
}

#[test]
fn attention_lists_what_a_human_must_look_at() {
    let mut p = pair(Side::Primary);
    if let Some(st) = p.status.as_mut() {
        st.conditions = vec![
            cond(
                "Ready",
                "False",
                "NotReady",
                "the active side (primary) is not healthy",
            ),
            cond(
                "NeedsHuman",
                "True",
                "FailoverBlocked",
                "both sides are frozen",
            ),
            cond(
                "RiskWarning",
                "True",
                "mass_adds",
                "61 member adds in an hour",
            ),
            cond("Replicating", "True", "Replicating", "ok"),
            cond("NeedsHuman", "False", "None", "nothing"),
            cond(
                "AuditTrail",
                "False",
                "AuditWriteFailing",
                "audit records cannot be written",
            ),
        ];
    }
    p.spec.paused = true;
    p.metadata.annotations = Some(
        [(PAUSE_REASON.to_string(), "INC-4411".to_string())]
            .into_iter()
            .collect(),
    );
    let a = attention(&p);
    assert_eq!(a.len(), 5, "{a:#?}");
    assert!(a[0].starts_with("Ready=False"));
    assert!(a[1].contains("both sides are frozen"));
    assert!(a[2].starts_with("RiskWarning=True"));
    assert!(a[3].starts_with("AuditTrail=False"));
    assert!(a[4].contains("INC-4411"));
    let mut fresh = pair(Side::Primary);
    fresh.status = None;
    assert!(attention(&fresh)[0].contains("operator"));
}

#[test]
fn status_table_shows_sides_lag_and_what_is_in_progress() {
    let p = pair(Side::Standby);
    let busy = so("wecom-failback-x", "wecom", None);
    let r = row(&p, &[busy]);
    assert_eq!(r.active, "standby");
    assert_eq!(r.primary, "Healthy (corp-a)");
    assert_eq!(r.lag, "0.4s/3");
    assert!(
        r.in_progress
            .as_deref()
            .unwrap()
            .contains("wecom-failback-x")
    );
    let text = render_status(&[r]);
    let header = text.lines().next().unwrap();
    assert!(header.starts_with("PAIR") && header.contains("LAST DRILL"));
    assert!(text.contains("in progress: wecom-failback-x"), "{text}");
}

#[test]
fn table_columns_align() {
    let t = table(
        &["A", "BB"],
        &[vec!["xxx".into(), "y".into()], vec!["z".into(), "".into()]],
    );
    assert_eq!(t, "A    BB\nxxx  y\nz\n");
}
