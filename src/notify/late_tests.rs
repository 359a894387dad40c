//! Tests of the lateness rules: a stuck production switchover, an overdue drill, and
//! one message each.

use chrono::TimeZone;

use super::*;
use crate::api::Side;
use crate::api::switchover::{StepStatus, SwitchoverMode};

fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, h, m, s).unwrap()
}

fn spec(trigger: Trigger, dry_run: bool) -> SwitchoverSpec {
    SwitchoverSpec {
        pair: "wecom".into(),
        to: Side::Standby,
        mode: SwitchoverMode::Emergency,
        trigger,
        reason: "frozen".into(),
        requested_by: None,
        dry_run,
        not_before: None,
        force: None,
    }
}

fn step(name: &str, state: StepState) -> StepStatus {
    StepStatus {
        name: name.into(),
        state,
        ..Default::default()
    }
}

/// Started at 02:00:00, drained, flipping DNS.
fn running() -> SwitchoverStatus {
    SwitchoverStatus {
        phase: SwitchoverPhase::Running,
        started_at: Some("2026-03-01T02:00:00.000Z".into()),
        steps: vec![
            step("fence", StepState::Succeeded),
            step("drain", StepState::Succeeded),
            step("flip-dns", StepState::Running),
            step("flip-lb", StepState::Pending),
        ],
        ..Default::default()
    }
}

const TEN_MIN: Duration = Duration::minutes(10);

#[test]
fn a_production_switchover_running_past_the_bound_is_stuck_at_its_running_step() {
    let s = spec(Trigger::Automatic, false);
    assert_eq!(
        stuck("so-1", &s, Some(&running()), t(2, 9, 59), TEN_MIN),
        None
    );
    assert_eq!(
        stuck("so-1", &s, Some(&running()), t(2, 10, 0), TEN_MIN),
        Some(Event::SwitchoverStuck {
            switchover: "so-1".into(),
            step: "flip-dns".into(),
            for_secs: 600,
        })
    );
    // Between steps (the last one done, the next not yet marked): the next one.
    let mut between = running();
    between.steps[2].state = StepState::Succeeded;
    let Some(Event::SwitchoverStuck { step, for_secs, .. }) =
        stuck("so-1", &s, Some(&between), t(2, 25, 0), TEN_MIN)
    else {
        panic!("stuck between steps")
    };
    assert_eq!((step.as_str(), for_secs), ("flip-lb", 1500));
    // A manual switchover too.
    assert!(
        stuck(
            "so-1",
            &spec(Trigger::Manual, false),
            Some(&running()),
            t(3, 0, 0),
            TEN_MIN
        )
        .is_some()
    );
}

#[test]
fn rehearsals_dry_runs_finished_and_unstarted_switchovers_are_never_stuck() {
    let late = t(5, 0, 0);
    let drill = spec(Trigger::Drill, false);
    assert_eq!(stuck("r", &drill, Some(&running()), late, TEN_MIN), None);
    let dry = spec(Trigger::Manual, true);
    assert_eq!(stuck("d", &dry, Some(&running()), late, TEN_MIN), None);
    let s = spec(Trigger::Manual, false);
    for phase in [
        SwitchoverPhase::Pending,
        SwitchoverPhase::Succeeded,
        SwitchoverPhase::Failed,
        SwitchoverPhase::Cancelled,
    ] {
        let st = SwitchoverStatus { phase, ..running() };
        assert_eq!(stuck("s", &s, Some(&st), late, TEN_MIN), None, "{phase:?}");
    }
    assert_eq!(stuck("s", &s, None, late, TEN_MIN), None, "no status yet");
    let unstarted = SwitchoverStatus {
        started_at: None,
        ..running()
    };
    assert_eq!(stuck("s", &s, Some(&unstarted), late, TEN_MIN), None);
}

#[test]
fn one_stuck_message_per_switchover() {
    let s = spec(Trigger::Automatic, false);
    let mut once = Once::default();
    let mut sent = 0;
    for minute in 10..40 {
        if stuck("so-1", &s, Some(&running()), t(2, minute, 0), TEN_MIN).is_some()
            && once.first("payments/so-1", ())
        {
            sent += 1;
        }
    }
    assert_eq!(
        sent, 1,
        "checked every minute for half an hour: one message"
    );
    assert!(
        once.first("payments/so-2", ()),
        "another switchover is other news"
    );
}

fn day(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::days(i64::from(d))
}

const DAYS_35: Duration = Duration::days(35);

#[test]
fn a_drill_is_overdue_35_days_after_the_last_pass_or_the_pairs_creation() {
    let passed = Some(day(10));
    assert!(overdue(passed, day(0), day(44), DAYS_35).is_none());
    let (period, event) = overdue(passed, day(0), day(45), DAYS_35).unwrap();
    assert_eq!(
        period,
        OverduePeriod {
            since: day(10),
            periods: 1
        }
    );
    assert_eq!(event, Event::DrillOverdue { last: passed });
    // Never passed: counted from the pair's creation.
    assert!(overdue(None, day(0), day(34), DAYS_35).is_none());
    let (period, event) = overdue(None, day(0), day(35), DAYS_35).unwrap();
    assert_eq!(period.since, day(0));
    assert_eq!(event, Event::DrillOverdue { last: None });
}

#[test]
fn one_overdue_message_per_period_and_a_passed_drill_starts_over() {
    let mut once = Once::default();
    let mut sent = Vec::new();
    // Checked every hour for 100 days; a drill passes on day 80.
    for hour in 0..(100 * 24) {
        let now = day(0) + Duration::hours(hour);
        let last = (now >= day(80)).then(|| day(80));
        if let Some((period, _)) = overdue(last, day(0), now, DAYS_35)
            && once.first("payments/wecom", period)
        {
            sent.push((now - day(0)).num_days());
        }
    }
    assert_eq!(sent, [35, 70], "{sent:?}");
    // Day 115: 35 days after the pass on day 80.
    let (p, _) = overdue(Some(day(80)), day(0), day(115), DAYS_35).unwrap();
    assert!(once.first("payments/wecom", p));
    once.forget("payments/wecom");
    assert!(
        once.first("payments/wecom", p),
        "a forgotten pair starts over"
    );
}
