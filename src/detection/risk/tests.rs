//! Tests of the early-warning rules: each at its threshold and one above, sliding
//! windows, clearing, and the bounded login memory.

use super::*;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap()
}

fn at(ms: i64) -> DateTime<Utc> {
    t0() + TimeDelta::milliseconds(ms)
}

fn stamp(ms: i64) -> String {
    at(ms).to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn adds(ms: i64, count: u32) -> ActivityEvent {
    ActivityEvent::MemberAdd {
        at: stamp(ms),
        count,
    }
}

fn hits(ms: i64, moderation_hits: u32) -> ActivityEvent {
    ActivityEvent::Message {
        at: stamp(ms),
        moderation_hits,
    }
}

fn login(ms: i64, device: &str, location: &str) -> ActivityEvent {
    ActivityEvent::Login {
        at: stamp(ms),
        device: device.into(),
        location: location.into(),
    }
}

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn kinds(findings: &[RiskFinding]) -> Vec<RiskKind> {
    findings.iter().map(|f| f.kind).collect()
}

fn evaluator() -> RiskEvaluator {
    RiskEvaluator::new(&RiskSpec::default())
}

/// Rows: name, batches of events (each observed at the time of its last event unless
/// `now_ms` is given), the kinds found by the last batch.
#[test]
fn rate_rules_table() {
    type Row = (&'static str, Vec<Vec<ActivityEvent>>, Vec<RiskKind>);
    let rows: Vec<Row> = vec![
        (
            "50 adds in an hour is at the threshold: nothing",
            vec![vec![adds(0, 50)]],
            vec![],
        ),
        (
            "51 adds in an hour is over it",
            vec![vec![adds(0, 51)]],
            vec![RiskKind::MassAdds],
        ),
        (
            "51 adds spread over 51 events in the hour",
            vec![(0..51).map(|i| adds(i * MIN, 1)).collect()],
            vec![RiskKind::MassAdds],
        ),
        (
            "30 + 21 adds less than an hour apart",
            vec![vec![adds(0, 30), adds(HOUR - 1, 21)]],
            vec![RiskKind::MassAdds],
        ),
        (
            "30 + 21 adds exactly an hour apart are in different windows",
            vec![vec![adds(0, 30), adds(HOUR, 21)]],
            vec![],
        ),
        (
            "the sliding hour spans batches",
            vec![vec![adds(0, 30)], vec![adds(30 * MIN, 21)]],
            vec![RiskKind::MassAdds],
        ),
        (
            "a steady 50 an hour never trips (each hour's adds leave before the next arrive)",
            vec![(0..10).map(|h| adds(h * HOUR, 50)).collect()],
            vec![],
        ),
        (
            "10 sensitive hits in a minute is at the threshold",
            vec![vec![hits(0, 10)]],
            vec![],
        ),
        (
            "11 sensitive hits in a minute is over it",
            vec![vec![hits(0, 11)]],
            vec![RiskKind::SensitiveBurst],
        ),
        (
            "6 + 5 hits less than a minute apart",
            vec![vec![hits(0, 6), hits(MIN - 1, 5)]],
            vec![RiskKind::SensitiveBurst],
        ),
        (
            "6 + 5 hits exactly a minute apart",
            vec![vec![hits(0, 6), hits(MIN, 5)]],
            vec![],
        ),
        (
            "messages without hits do not count",
            vec![(0..100).map(|i| hits(i, 0)).collect()],
            vec![],
        ),
        (
            "both rules in one batch",
            vec![vec![adds(0, 60), hits(1, 20)]],
            vec![RiskKind::MassAdds, RiskKind::SensitiveBurst],
        ),
    ];
    for (name, batches, want) in rows {
        let mut ev = evaluator();
        let mut last = Vec::new();
        for batch in &batches {
            let now = batch
                .iter()
                .map(|e| match e {
                    ActivityEvent::Login { at, .. }
                    | ActivityEvent::MemberAdd { at, .. }
                    | ActivityEvent::Message { at, .. } => {
                        event_time(at, DateTime::<Utc>::MAX_UTC).0
                    }
                })
                .max()
                .unwrap_or(t0());
            last = ev.observe(batch, now);
        }
        assert_eq!(kinds(&last), want, "{name}: {last:?}");
    }
}

#[test]
fn one_burst_is_one_finding_and_it_clears_after_its_time() {
    let mut ev = evaluator();
    let f = ev.observe(&[adds(0, 51)], at(0));
    assert_eq!(kinds(&f), vec![RiskKind::MassAdds]);
    assert!(
        f[0].message
            .starts_with("51 member/friend adds within one hour")
    );
    assert_eq!(f[0].active_until, at(HOUR));
    // More adds while active: the finding is extended, not repeated.
    assert!(ev.observe(&[adds(10 * MIN, 5)], at(10 * MIN)).is_empty());
    let active = ev.active_findings(at(10 * MIN));
    assert_eq!(kinds(&active), vec![RiskKind::MassAdds]);
    assert_eq!(active[0].active_until, at(10 * MIN + HOUR));
    assert!(active[0].message.starts_with("56 member/friend adds"));
    // Cleared an hour after the last breach.
    assert_eq!(ev.active_findings(at(70 * MIN - 1)).len(), 1);
    assert!(ev.active_findings(at(70 * MIN)).is_empty());
    // A new burst after clearing is a new finding.
    let f = ev.observe(&[adds(3 * HOUR, 51)], at(3 * HOUR));
    assert_eq!(kinds(&f), vec![RiskKind::MassAdds]);
}

#[test]
fn a_sensitive_burst_stays_active_for_ten_minutes() {
    let mut ev = evaluator();
    assert_eq!(
        kinds(&ev.observe(&[hits(0, 11)], at(0))),
        vec![RiskKind::SensitiveBurst]
    );
    assert_eq!(ev.active_findings(at(10 * MIN - 1)).len(), 1);
    assert!(ev.active_findings(at(10 * MIN)).is_empty());
}

#[test]
fn activity_too_old_to_be_active_raises_nothing() {
    let mut ev = evaluator();
    // Adds 90 minutes ago: the breach would have cleared 30 minutes ago.
    assert!(ev.observe(&[adds(0, 500)], at(90 * MIN)).is_empty());
    // Adds 3 hours ago are past the horizon and not even counted.
    assert!(ev.observe(&[adds(0, 500)], at(3 * HOUR)).is_empty());
    assert!(ev.active_findings(at(3 * HOUR)).is_empty());
    // A late batch still inside the window is counted.
    let mut ev = evaluator();
    assert_eq!(
        kinds(&ev.observe(&[adds(0, 51)], at(20 * MIN))),
        vec![RiskKind::MassAdds]
    );
}

#[test]
fn thresholds_follow_the_spec() {
    let mut ev = RiskEvaluator::new(&RiskSpec {
        member_adds_per_hour: 5,
        sensitive_hits_per_minute: 1,
        new_device_login: true,
    });
    assert!(ev.observe(&[adds(0, 5), hits(0, 1)], at(0)).is_empty());
    assert_eq!(
        kinds(&ev.observe(&[adds(1, 1), hits(1, 1)], at(1))),
        vec![RiskKind::MassAdds, RiskKind::SensitiveBurst]
    );
    ev.reconfigure(&RiskSpec {
        member_adds_per_hour: 1000,
        ..RiskSpec::default()
    });
    assert!(ev.observe(&[adds(3 * HOUR, 999)], at(3 * HOUR)).is_empty());
}

#[test]
fn new_device_at_new_location_only() {
    let mut ev = evaluator();
    // A fresh evaluator knows nothing: the first login only teaches.
    assert!(
        ev.observe(&[login(0, "phone-1", "Shenzhen")], at(0))
            .is_empty()
    );
    // New device, known place: no.
    assert!(
        ev.observe(&[login(MIN, "phone-2", "shenzhen ")], at(MIN))
            .is_empty()
    );
    // Known device, new place: no.
    assert!(
        ev.observe(&[login(2 * MIN, "phone-1", "Beijing")], at(2 * MIN))
            .is_empty()
    );
    // New device at a new place: yes.
    let f = ev.observe(&[login(3 * MIN, "laptop-x", "Lagos")], at(3 * MIN));
    assert_eq!(kinds(&f), vec![RiskKind::NewDeviceLogin]);
    assert!(f[0].message.contains("(laptop-x)") && f[0].message.contains("(lagos)"));
    // The same device again is now known.
    assert!(
        ev.observe(&[login(4 * MIN, "laptop-x", "Lagos")], at(4 * MIN))
            .is_empty()
    );
    // Each new device at a new place is its own finding, even while one is active.
    let f = ev.observe(
        &[
            login(5 * MIN, "tab-1", "Oslo"),
            login(6 * MIN, "tab-2", "Lima"),
        ],
        at(6 * MIN),
    );
    assert_eq!(
        kinds(&f),
        vec![RiskKind::NewDeviceLogin, RiskKind::NewDeviceLogin]
    );
    let active = ev.active_findings(at(6 * MIN));
    assert_eq!(active.len(), 1, "one active finding per kind, the latest");
    assert!(active[0].message.contains("tab-2"));
    assert!(ev.active_findings(at(6 * MIN + HOUR)).is_empty());
}

#[test]
fn logins_in_one_batch_are_judged_in_time_order() {
    let mut ev = evaluator();
    ev.remember(&[login(0, "phone-1", "Shenzhen")], at(0));
    let f = ev.observe(
        &[
            login(2 * MIN, "laptop-x", "Lagos"),
            login(MIN, "laptop-x", "Lagos"),
        ],
        at(2 * MIN),
    );
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].at, at(MIN));
}

#[test]
fn login_rule_can_be_switched_off_and_still_learns() {
    let mut ev = RiskEvaluator::new(&RiskSpec {
        new_device_login: false,
        ..RiskSpec::default()
    });
    ev.remember(&[login(0, "phone-1", "Shenzhen")], at(0));
    assert!(
        ev.observe(&[login(MIN, "laptop-x", "Lagos")], at(MIN))
            .is_empty()
    );
    ev.reconfigure(&RiskSpec::default());
    // Learnt while off, so not new now.
    assert!(
        ev.observe(&[login(2 * MIN, "laptop-x", "Lagos")], at(2 * MIN))
            .is_empty()
    );
}

#[test]
fn logins_without_device_or_location_only_teach() {
    let mut ev = evaluator();
    ev.remember(&[login(0, "phone-1", "Shenzhen")], at(0));
    assert!(ev.observe(&[login(MIN, "", "Lagos")], at(MIN)).is_empty());
    assert!(
        ev.observe(&[login(MIN, "laptop-x", "  ")], at(MIN))
            .is_empty()
    );
    // Lagos and laptop-x were both learnt from those logins.
    assert!(
        ev.observe(&[login(2 * MIN, "laptop-x", "Lagos")], at(2 * MIN))
            .is_empty()
    );
}

#[test]
fn login_memory_is_bounded_and_forgets_the_least_recent() {
    let mut ev = evaluator();
    let n = RiskEvaluator::MEMORY as i64 + 44;
    let seed: Vec<ActivityEvent> = (0..n)
        .map(|i| login(i, &format!("dev-{i}"), &format!("city-{i}")))
        .collect();
    ev.remember(&seed, at(n));
    assert_eq!(ev.devices.seen.len(), RiskEvaluator::MEMORY);
    assert_eq!(ev.locations.seen.len(), RiskEvaluator::MEMORY);
    // dev-0 at city-0 was evicted: it looks new again.
    assert_eq!(
        kinds(&ev.observe(&[login(n + 1, "dev-0", "city-0")], at(n + 1))),
        vec![RiskKind::NewDeviceLogin]
    );
    // The most recent are still known.
    let last = n - 1;
    assert!(
        ev.observe(
            &[login(
                n + 2,
                &format!("dev-{last}"),
                &format!("city-{last}")
            )],
            at(n + 2)
        )
        .is_empty()
    );
}

#[test]
fn event_times_unreadable_future_and_watermark() {
    let mut ev = evaluator();
    let now = at(10 * MIN);
    // An unreadable time counts as now; it does not move the watermark.
    let bad = ActivityEvent::MemberAdd {
        at: "yesterday-ish".into(),
        count: 51,
    };
    let f = ev.observe(&[bad], now);
    assert_eq!(kinds(&f), vec![RiskKind::MassAdds]);
    assert_eq!(f[0].at, now);
    assert_eq!(ev.watermark(), None);
    // A future time is clamped to now for counting, but the watermark keeps the
    // provider's own time so the next fetch does not return the event again.
    let mut ev = evaluator();
    let f = ev.observe(&[hits(HOUR, 11)], now);
    assert_eq!(f[0].at, now);
    assert_eq!(f[0].active_until, now + TimeDelta::minutes(10));
    assert_eq!(ev.watermark(), Some(at(HOUR)));
    ev.observe(&[hits(0, 1)], now);
    assert_eq!(ev.watermark(), Some(at(HOUR)));
}

#[test]
fn window_counter_prunes_to_the_horizon() {
    let mut ev = evaluator();
    let many: Vec<ActivityEvent> = (0..1000).map(|i| adds(i * MIN, 0)).collect();
    ev.observe(&many, at(1000 * MIN));
    assert!(ev.adds.entries.is_empty(), "zero-count adds are not stored");
    let many: Vec<ActivityEvent> = (0..600).map(|i| adds(i * MIN, 1)).collect();
    ev.observe(&many, at(600 * MIN));
    // Only the last two hours (window + active time) are kept.
    assert_eq!(ev.adds.entries.len(), 119);
    assert_eq!(RiskKind::MassAdds.as_str(), "mass_adds");
    assert_eq!(RiskKind::NewDeviceLogin.to_string(), "NewDeviceLogin");
}
