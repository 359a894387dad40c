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
