use serde_json::json;

use super::*;

fn status(lag: i64, secs: f64, applied: Option<&str>, reason: &str, message: &str) -> Value {
    json!({
        "activeSide": "primary",
        "replication": {
            "direction": "primary-to-standby",
            "lagRecords": lag,
            "lagSeconds": secs,
            "lastAppliedAt": applied,
        },
        "conditions": [
            {"type": "Replicating", "status": "True", "reason": reason, "message": message},
            {"type": "PrimaryHealthy", "status": "True", "reason": "Healthy", "message": "ok"},
        ],
    })
}

fn replicating(lag: i64, secs: f64, applied: &str) -> Value {
    status(
        lag,
        secs,
        Some(applied),
        "Replicating",
        &format!("primary-to-standby · lag {lag} records / {secs:.1}s"),
    )
}

#[test]
fn the_first_status_and_an_equal_one() {
    let s = replicating(3, 0.2, "t1");
    assert_eq!(classify(None, &s), Change::Visible);
    assert_eq!(classify(Some(&s), &s.clone()), Change::None);
}

#[test]
fn lag_that_only_moves_is_figures() {
    let a = replicating(3, 0.2, "t1");
    let b = replicating(40, 1.5, "t2");
    assert_eq!(classify(Some(&a), &b), Change::Figures);
}

#[test]
fn catching_up_is_visible_and_falling_behind_is_a_figure() {
    let behind = replicating(3, 0.2, "t1");
    let caught_up = replicating(0, 0.0, "t2");
    // A status that showed the pair behind is corrected at once when it catches up.
    assert_eq!(classify(Some(&behind), &caught_up), Change::Visible);
    // One change a second makes the lag non-zero for a moment every second: that waits
    // for the interval like any other figure (a pair that stays behind shows within it).
    assert_eq!(classify(Some(&caught_up), &behind), Change::Figures);
}

#[test]
fn the_first_applied_record_is_visible() {
    let none = status(0, 0.0, None, "Replicating", "lag 0 records / 0.0s");
    let some = replicating(0, 0.0, "t1");
    assert_eq!(classify(Some(&none), &some), Change::Visible);
}

#[test]
fn anything_else_that_changes_is_visible() {
    let a = replicating(3, 0.2, "t1");
    let mut frozen = replicating(5, 0.3, "t2");
    frozen["conditions"][1]["status"] = json!("False");
    assert_eq!(classify(Some(&a), &frozen), Change::Visible);

    let mut flipped = replicating(5, 0.3, "t2");
    flipped["activeSide"] = json!("standby");
    assert_eq!(classify(Some(&a), &flipped), Change::Visible);

    // A replication problem replaces the figures in the message: visible.
    let broken = status(
        5,
        0.3,
        Some("t2"),
        "ReplicationError",
        "Kafka did not answer",
    );
    assert_eq!(classify(Some(&a), &broken), Change::Visible);
    // And a different problem message under the same reason is visible too.
    let other = status(
        5,
        0.3,
        Some("t2"),
        "ReplicationError",
        "the feed is refused",
    );
    assert_eq!(classify(Some(&broken), &other), Change::Visible);
}

#[test]
fn figures_wait_for_their_interval_and_visible_changes_do_not() {
    let t0 = Instant::now();
    let every = LAG_EVERY;
    assert!(due(Change::Visible, Some(t0), t0, every));
    assert!(!due(Change::None, None, t0, every));
    assert!(due(Change::Figures, None, t0, every));
    assert!(!due(Change::Figures, Some(t0), t0 + every / 2, every));
    assert!(!due(
        Change::Figures,
        Some(t0),
        t0 + every - Duration::from_millis(1),
        every
    ));
    assert!(due(Change::Figures, Some(t0), t0 + every, every));
}

/// The former definition: copy both statuses, blank their figures, compare the copies.
fn blanked(s: &Value) -> Value {
    let mut s = s.clone();
    if let Some(r) = s.get_mut("replication").and_then(Value::as_object_mut) {
        for k in FIGURES {
            r.remove(k);
        }
    }
    if let Some(conds) = s.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in conds {
            let figures_only = c.get("type").and_then(Value::as_str) == Some("Replicating")
                && c.get("reason").and_then(Value::as_str) == Some("Replicating");
            if figures_only && let Some(o) = c.as_object_mut() {
                o.remove("message");
            }
        }
    }
    s
}

#[test]
fn the_comparison_in_place_agrees_with_blanking_copies_on_every_pair_of_variants() {
    // Variants that touch each place the comparison skips or looks at.
    let mut variants = Vec::new();
    for (lag, applied) in [(0, Some("t1")), (4, Some("t2")), (4, None)] {
        for (reason, message) in [
            ("Replicating", "lag 0"),
            ("Replicating", "lag 4"),
            ("ReplicationError", "lag 4"),
            ("ReplicationError", "Kafka did not answer"),
        ] {
            variants.push(status(lag, lag as f64 / 10.0, applied, reason, message));
        }
    }
    let base = status(4, 0.4, Some("t2"), "Replicating", "lag 4");
    let mut more = Vec::new();
    let mut v = base.clone();
    v["conditions"][0]
        .as_object_mut()
        .unwrap()
        .remove("message");
    more.push(v);
    let mut v = base.clone();
    v["conditions"][0]["type"] = json!("Ready");
    more.push(v);
    let mut v = base.clone();
    v["conditions"].as_array_mut().unwrap().pop();
    more.push(v);
    let mut v = base.clone();
    v["replication"]["direction"] = json!("standby-to-primary");
    more.push(v);
    let mut v = base.clone();
    v["replication"] = Value::Null;
    more.push(v);
    let mut v = base.clone();
    v.as_object_mut().unwrap().remove("replication");
    more.push(v);
    let mut v = base.clone();
    v["conditions"] = json!("not a list");
    more.push(v);
    let mut v = base.clone();
    v["activeSide"] = json!("standby");
    more.push(v);
    let mut v = base.clone();
    v["replication"]["lagRecords"] = Value::Null;
    more.push(v);
    variants.extend(more);
    variants.push(json!("not an object"));
    let mut checked = 0;
    for a in &variants {
        for b in &variants {
            assert_eq!(same_but_figures(a, b), blanked(a) == blanked(b), "{a}\n{b}");
            checked += 1;
        }
    }
    assert_eq!(checked, variants.len() * variants.len());
    // Both answers occur among the pairs, so the agreement says something.
    assert!(
        variants
            .iter()
            .any(|a| variants.iter().any(|b| a != b && same_but_figures(a, b)))
    );
    assert!(
        variants
            .iter()
            .any(|a| variants.iter().any(|b| !same_but_figures(a, b)))
    );
}
