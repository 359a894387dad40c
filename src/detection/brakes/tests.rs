//! Table-driven tests of the failover brakes and the ledger.

use chrono::TimeDelta;

use super::*;
use crate::detection::ledger::FailoverLedger;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap()
}

fn mins(m: i64) -> DateTime<Utc> {
    t0() + TimeDelta::minutes(m)
}

fn v(kind: VerdictKind) -> Verdict {
    Verdict::new(kind, format!("test {kind}"), t0())
}

/// Primary Frozen, standby Healthy, Automatic, nothing used up: a failover.
fn base() -> FailoverInput {
    FailoverInput {
        pair: "wecom".into(),
        mode: DetectionMode::Automatic,
        paused: false,
        active_side: Side::Primary,
        active: v(VerdictKind::Frozen),
        passive: v(VerdictKind::Healthy),
        last_automatic_failover: None,
        hold_down: Duration::from_secs(3600),
        pair_failovers: 0,
        pair_cap: 1,
        operator_failovers: 0,
        operator_cap: 5,
        switchover_running: false,
        rehearsal_running: false,
        failed_attempt: None,
    }
}

#[derive(Debug, PartialEq)]
enum Want {
    Failover,
    Page(Brake),
    Hold(Brake),
    Nothing,
}

fn want_of(d: &FailoverDecision) -> Want {
    match d {
        FailoverDecision::Failover { .. } => Want::Failover,
        FailoverDecision::Braked { brake, .. } if brake.pages() => Want::Page(*brake),
        FailoverDecision::Braked { brake, .. } => Want::Hold(*brake),
        FailoverDecision::Nothing => Want::Nothing,
    }
}

#[test]
fn decision_table() {
    type Row = (&'static str, fn(&mut FailoverInput), Want, &'static str);
    let rows: Vec<Row> = vec![
        (
            "frozen primary, healthy standby",
            |_| {},
            Want::Failover,
            "active side primary is Frozen",
        ),
        (
            "banned primary fails over like frozen",
            |i| i.active = v(VerdictKind::Banned),
            Want::Failover,
            "is Banned",
        ),
        (
            "healthy active: nothing",
            |i| i.active = v(VerdictKind::Healthy),
            Want::Nothing,
            "",
        ),
        (
            "suspect active: nothing",
            |i| i.active = v(VerdictKind::Suspect),
            Want::Nothing,
            "",
        ),
        (
            "unknown active: nothing",
            |i| i.active = v(VerdictKind::Unknown),
            Want::Nothing,
            "",
        ),
        (
            "standby frozen while primary healthy is not a failover matter",
            |i| {
                i.active = v(VerdictKind::Healthy);
                i.passive = v(VerdictKind::Frozen);
            },
            Want::Nothing,
            "",
        ),
        (
            "standby Suspect: page",
            |i| i.passive = v(VerdictKind::Suspect),
            Want::Page(Brake::StandbyNotHealthy),
            "never fail over to a side that is not Healthy",
        ),
        (
            "standby Unknown: page",
            |i| i.passive = v(VerdictKind::Unknown),
            Want::Page(Brake::StandbyNotHealthy),
            "standby is Unknown",
        ),
        (
            "both frozen: page saying so",
            |i| i.passive = v(VerdictKind::Frozen),
            Want::Page(Brake::BothSidesDown),
            "both sides are down",
        ),
        (
            "both down, standby banned",
            |i| i.passive = v(VerdictKind::Banned),
            Want::Page(Brake::BothSidesDown),
            "standby is Banned",
        ),
        (
            "manual mode: page",
            |i| i.mode = DetectionMode::Manual,
            Want::Page(Brake::Manual),
            "kubectl understudy switchover",
        ),
        (
            "paused: page, not hold",
            |i| i.paused = true,
            Want::Page(Brake::Paused),
            "spec.paused",
        ),
        (
            "paused and manual: paused wins",
            |i| {
                i.paused = true;
                i.mode = DetectionMode::Manual
            },
            Want::Page(Brake::Paused),
            "paused",
        ),
        (
            "switchover running: hold",
            |i| i.switchover_running = true,
            Want::Hold(Brake::SwitchoverRunning),
            "already running",
        ),
        (
            "switchover running beats everything, even both sides down",
            |i| {
                i.switchover_running = true;
                i.passive = v(VerdictKind::Frozen);
                i.paused = true;
            },
            Want::Hold(Brake::SwitchoverRunning),
            "",
        ),
        (
            "a rehearsal running: hold, the failover follows it",
            |i| i.rehearsal_running = true,
            Want::Hold(Brake::RehearsalRunning),
            "follows as soon as it ends",
        ),
        (
            "a rehearsal running beats the caps: nothing of the budget is used",
            |i| {
                i.rehearsal_running = true;
                i.operator_failovers = 5;
            },
            Want::Hold(Brake::RehearsalRunning),
            "nothing of the failover budget is used",
        ),
        (
            "this freeze's failover failed: page, no second attempt",
            |i| i.failed_attempt = Some("flip-dns failed: NXRRSET".into()),
            Want::Page(Brake::FailoverFailed),
            "flip-dns failed: NXRRSET",
        ),
        (
            "paused says how to move by hand and how to resume",
            |i| i.paused = true,
            Want::Page(Brake::Paused),
            "kubectl understudy resume wecom",
        ),
        (
            "both down beats paused",
            |i| {
                i.paused = true;
                i.passive = v(VerdictKind::Frozen)
            },
            Want::Page(Brake::BothSidesDown),
            "",
        ),
        (
            "hold-down active: hold",
            |i| {
                i.last_automatic_failover = Some(mins(-30));
                i.pair_cap = 2;
                i.pair_failovers = 1;
            },
            Want::Hold(Brake::HoldDown),
            "30m left",
        ),
        (
            "hold-down just passed: failover",
            |i| {
                i.last_automatic_failover = Some(mins(-60));
                i.pair_cap = 2;
                i.pair_failovers = 1;
            },
            Want::Failover,
            "pair 1/2",
        ),
        (
            "hold-down with the pair cap reached: page (holding would only delay it)",
            |i| {
                i.last_automatic_failover = Some(mins(-30));
                i.pair_failovers = 1;
            },
            Want::Page(Brake::PairCap),
            "maxAutomaticFailoversPerDay 1",
        ),
        (
            "per-pair cap reached",
            |i| i.pair_failovers = 1,
            Want::Page(Brake::PairCap),
            "1 time(s) in the last 24h",
        ),
        (
            "per-pair cap 0 disables automatic failover",
            |i| i.pair_cap = 0,
            Want::Page(Brake::PairCap),
            "",
        ),
        (
            "below the pair cap",
            |i| {
                i.pair_cap = 3;
                i.pair_failovers = 2
            },
            Want::Failover,
            "pair 2/3",
        ),
        (
            "operator cap reached",
            |i| i.operator_failovers = 5,
            Want::Page(Brake::OperatorCap),
            "mass freeze",
        ),
        (
            "standby unhealthy beats caps",
            |i| {
                i.passive = v(VerdictKind::Suspect);
                i.pair_failovers = 9
            },
            Want::Page(Brake::StandbyNotHealthy),
            "",
        ),
        (
            "after a failover the standby is active; its freeze moves back to the primary",
            |i| {
                i.active_side = Side::Standby;
                i.pair_cap = 2;
                i.pair_failovers = 1;
                i.last_automatic_failover = Some(mins(-120));
            },
            Want::Failover,
            "active side standby is Frozen",
        ),
        (
            "a last failover in the future (clock skew) still holds",
            |i| {
                i.last_automatic_failover = Some(mins(10));
                i.pair_cap = 5;
            },
            Want::Hold(Brake::HoldDown),
            "",
        ),
    ];
    for (name, tweak, want, needle) in rows {
        let mut input = base();
        tweak(&mut input);
        let d = decide_failover(&input, t0());
        assert_eq!(want_of(&d), want, "{name}: {d}");
        assert!(
            d.reason().contains(needle),
            "{name}: {d:?} should mention {needle:?}"
        );
    }
}

#[test]
fn hold_down_boundaries() {
    let mut input = base();
    input.pair_cap = 10;
    input.last_automatic_failover = Some(t0());
    let at = |ms| t0() + TimeDelta::milliseconds(ms);
    assert_eq!(
        want_of(&decide_failover(&input, at(3_599_999))),
        Want::Hold(Brake::HoldDown)
    );
    assert_eq!(
        want_of(&decide_failover(&input, at(3_600_000))),
        Want::Failover
    );
    // A hold-down too long for chrono means "forever", not an overflow.
    input.hold_down = Duration::MAX;
    assert_eq!(
        want_of(&decide_failover(&input, at(i64::from(i32::MAX)))),
        Want::Hold(Brake::HoldDown)
    );
}

#[test]
fn decision_labels_and_display() {
    assert_eq!(FailoverDecision::Nothing.as_str(), "nothing");
    assert_eq!(FailoverDecision::Nothing.to_string(), "nothing");
    let d = decide_failover(&base(), t0());
    assert_eq!(d.as_str(), "failover");
    assert!(
        d.to_string()
            .starts_with("failover: active side primary is Frozen (test Frozen)")
    );
    assert_eq!(Brake::OperatorCap.as_str(), "operator_cap");
    assert_eq!(Brake::HoldDown.as_str(), "hold_down");
}

/// A mass freeze of 100 pairs at once: only the operator cap's worth fail over, the
/// rest page humans. Decisions are made one after the other, each failover recorded in
/// the ledger before the next decision, as the module docs require.
#[test]
fn mass_freeze_fails_over_only_the_operator_cap() {
    let mut ledger = FailoverLedger::new();
    let now = t0();
    let mut decisions = Vec::new();
    for n in 0..100 {
        let pair = format!("ns/pair-{n:03}");
        let counts = ledger.counts(&pair, now);
        let input = FailoverInput {
            last_automatic_failover: counts.last_automatic_failover,
            pair_failovers: counts.pair_failovers,
            operator_failovers: counts.operator_failovers,
            ..base()
        };
        let d = decide_failover(&input, now);
        if matches!(d, FailoverDecision::Failover { .. }) {
            ledger.record(&pair, &format!("{pair}-failover"), now);
        }
        decisions.push(want_of(&d));
    }
    let failovers = decisions.iter().filter(|d| **d == Want::Failover).count();
    let pages = decisions
        .iter()
        .filter(|d| **d == Want::Page(Brake::OperatorCap))
        .count();
    assert_eq!((failovers, pages), (5, 95));
    assert_eq!(ledger.operator_count(now), 5);
    // A day later the window has slid past them: the cap is free again.
    assert_eq!(ledger.operator_count(now + TimeDelta::hours(24)), 0);
}

#[test]
fn per_pair_cap_over_a_day() {
    // Cap 2 per day, hold-down 1 h: failover, hold, failover, then pages until the first
    // one leaves the window.
    let mut l = FailoverLedger::new();
    let decide = |l: &FailoverLedger, at: DateTime<Utc>| {
        let c = l.counts("ns/p", at);
        let input = FailoverInput {
            pair_cap: 2,
            last_automatic_failover: c.last_automatic_failover,
            pair_failovers: c.pair_failovers,
            operator_failovers: c.operator_failovers,
            ..base()
        };
        want_of(&decide_failover(&input, at))
    };
    assert_eq!(decide(&l, mins(0)), Want::Failover);
    l.record("ns/p", "ns/p-1", mins(0));
    assert_eq!(decide(&l, mins(30)), Want::Hold(Brake::HoldDown));
    assert_eq!(decide(&l, mins(60)), Want::Failover);
    l.record("ns/p", "ns/p-2", mins(60));
    assert_eq!(decide(&l, mins(200)), Want::Page(Brake::PairCap));
    assert_eq!(decide(&l, mins(24 * 60 - 1)), Want::Page(Brake::PairCap));
    assert_eq!(decide(&l, mins(24 * 60)), Want::Failover);
}
