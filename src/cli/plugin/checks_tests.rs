//! Unit tests of the plugin's pure decisions.

use super::*;
use crate::api::switchover::{StepState, StepStatus, SwitchoverStatus};
use crate::cli::exit;
use serde_json::json;

pub(crate) fn pair(active: Side) -> AccountPair {
    serde_json::from_value(json!({
        "apiVersion": "understudy.dev/v1alpha1",
        "kind": "AccountPair",
        "metadata": { "name": "wecom", "namespace": "payments" },
        "spec": {
            "primary": { "endpoint": "http://p", "accountId": "corp-a", "credentialsSecretRef": { "name": "t" } },
            "standby": { "endpoint": "http://p", "accountId": "corp-b", "credentialsSecretRef": { "name": "t" } },
            "replication": { "kafka": { "bootstrapServers": "k:9092" } },
            "traffic": { "dns": [{ "servers": ["ns1:53"], "zone": "example.com.", "name": "api", "type": "A", "ttl": 5,
                                   "tsigSecretRef": { "name": "tsig" }, "primary": ["10.0.0.1"], "standby": ["10.0.0.2"] }] }
        },
        "status": {
            "activeSide": active,
            "primary": { "status": "Healthy" },
            "standby": { "status": "Healthy" },
            "replication": { "direction": "primary-to-standby", "lagSeconds": 0.4, "lagRecords": 3 }
        }
    }))
    .unwrap()
}

pub(crate) fn so(name: &str, pair: &str, status: Option<SwitchoverStatus>) -> Switchover {
    let mut s = Switchover::new(
        name,
        build_spec(&Request {
            pair,
            to: Side::Standby,
            reason: "r",
            requested_by: "alice",
            dry_run: false,
            not_before: None,
            skip_lag_gate: false,
            skip_target_health: false,
        }),
    );
    s.status = status;
    s
}

fn running() -> SwitchoverStatus {
    SwitchoverStatus {
        phase: SwitchoverPhase::Running,
        steps: vec![StepStatus {
            name: "flip-dns".into(),
            state: StepState::Running,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn at_takes_rfc3339_or_a_relative_duration() {
    let now = "2026-02-28T12:00:00Z"
        .parse::<chrono::DateTime<Utc>>()
        .unwrap();
    let t = parse_at("+30m", now).unwrap();
    assert_eq!((t - now).num_minutes(), 30);
    let t = parse_at("2026-03-01T02:00:00Z", now).unwrap();
    assert_eq!(t.to_rfc3339(), "2026-03-01T02:00:00+00:00");
    let t = parse_at("2026-03-01T10:00:00+08:00", now).unwrap();
    assert_eq!(t.to_rfc3339(), "2026-03-01T02:00:00+00:00");
    for bad in ["tomorrow", "+", "+3x", "2026-03-01"] {
        assert_eq!(parse_at(bad, now).unwrap_err().code, exit::USAGE, "{bad}");
    }
}

#[test]
fn at_in_the_past_is_refused_saying_so_and_what_now_is() {
    let now = "2026-03-01T03:00:00Z"
        .parse::<chrono::DateTime<Utc>>()
        .unwrap();
    for past in [
        "2026-03-01T02:00:00Z",
        "2026-03-01T10:59:59+08:00",
        "2020-01-01T00:00:00Z",
    ] {
        let e = parse_at(past, now).unwrap_err();
        assert_eq!(e.code, exit::USAGE, "{past}");
        assert!(
            e.message.contains(&format!("--at {past} is in the past"))
                && e.message.contains("now is 2026-03-01T03:00:00Z"),
            "{}",
            e.message
        );
    }
    // Now itself, a relative time and a future time are fine.
    assert_eq!(parse_at("2026-03-01T03:00:00Z", now).unwrap(), now);
    assert_eq!(
        parse_at("+1m", now).unwrap(),
        now + chrono::Duration::minutes(1)
    );
    assert!(parse_at("2026-03-01T11:00:01+08:00", now).is_ok());
}

#[test]
fn a_reason_is_required() {
    let e = check_request(&pair(Side::Primary), &[], Side::Standby, "  ").unwrap_err();
    assert_eq!(e.code, exit::USAGE);
    assert!(e.message.contains("reason is required"));
}

#[test]
fn switching_to_the_active_side_is_refused() {
    let e = check_request(&pair(Side::Primary), &[], Side::Primary, "x").unwrap_err();
    assert_eq!(e.code, exit::USAGE);
    assert!(
        e.message.contains("already the active side"),
        "{}",
        e.message
    );
    assert!(check_request(&pair(Side::Standby), &[], Side::Primary, "x").is_ok());
}

#[test]
fn a_second_switchover_while_one_runs_is_a_conflict() {
    let p = pair(Side::Primary);
    let busy = [so("wecom-switchover-abc", "wecom", Some(running()))];
    let e = check_request(&p, &busy, Side::Standby, "x").unwrap_err();
    assert_eq!(e.code, exit::CONFLICT);
    assert!(e.message.contains("wecom-switchover-abc") && e.message.contains("flip-dns"));
    let pending = [so("wecom-switchover-def", "wecom", None)];
    assert_eq!(
        check_request(&p, &pending, Side::Standby, "x")
            .unwrap_err()
            .code,
        exit::CONFLICT
    );
    let done = SwitchoverStatus {
        phase: SwitchoverPhase::Failed,
        ..Default::default()
    };
    let other = [
        so("old", "wecom", Some(done)),
        so("else", "other-pair", Some(running())),
    ];
    assert!(check_request(&p, &other, Side::Standby, "x").is_ok());
    let mut moving = pair(Side::Primary);
    if let Some(st) = moving.status.as_mut() {
        st.target_side = Some(Side::Standby);
    }
    assert_eq!(
        check_request(&moving, &[], Side::Standby, "x")
            .unwrap_err()
            .code,
        exit::CONFLICT
    );
}

#[test]
fn failback_needs_the_standby_active() {
    assert_eq!(
        check_failback(&pair(Side::Primary)).unwrap_err().code,
        exit::USAGE
    );
    assert!(check_failback(&pair(Side::Standby)).is_ok());
}

#[test]
fn the_spec_records_the_reason_user_time_and_each_force_flag() {
    let now = Utc::now();
    let s = build_spec(&Request {
        pair: "wecom",
        to: Side::Standby,
        reason: " maintenance ",
        requested_by: "system:serviceaccount:ops:oncall",
        dry_run: true,
        not_before: Some(now),
        skip_lag_gate: true,
        skip_target_health: false,
    });
    assert_eq!(s.mode, SwitchoverMode::Planned);
    assert_eq!(s.trigger, Trigger::Manual);
    assert_eq!(s.reason, "maintenance");
    assert!(s.dry_run);
    assert!(s.not_before.is_some());
    assert_eq!(
        s.force,
        Some(ForceSpec {
            skip_lag_gate: true,
            skip_standby_health: false
        })
    );
    let plain = so("x", "wecom", None);
    assert_eq!(plain.spec.force, None, "no flag, no force field");
}

#[test]
fn the_plan_shows_steps_gates_forces_and_traffic() {
    let p = pair(Side::Primary);
    let mut s = so("x", "wecom", None).spec;
    s.force = Some(ForceSpec {
        skip_lag_gate: true,
        skip_standby_health: false,
    });
    let text = describe_plan(&p, &s);
    assert!(text.contains("payments/wecom: primary → standby"), "{text}");
    assert!(text.contains("precheck → fence → drain → flip-dns → flip-lb → reverse → record"));
    assert!(text.contains("standby is Healthy"));
    assert!(text.contains("now 0.4s, must be ≤ 5s"), "{text}");
    assert!(text.contains("SKIPPED by --force-skip-lag-gate"));
    assert!(text.contains("1 DNS record(s) [api (example.com.)]"));
    let mut back = s.clone();
    back.to = Side::Primary;
    let text = describe_plan(&pair(Side::Standby), &back);
    assert!(text.starts_with("Failback"), "{text}");
    assert!(text.contains("verify-level"));
}

#[test]
fn gate_verdicts_come_from_the_precheck_message() {
    let lines = gate_lines(
        "prechecks refused the switchover: target-not-active: pass — traffic moves from primary to standby; lag: FAIL — lag 9.0s > maxLagForSwitchover 5.0s",
    );
    assert_eq!(lines.len(), 2);
    assert!(lines[1].starts_with("lag: FAIL"));
}

#[test]
fn only_a_switchover_that_has_not_started_may_be_cancelled() {
    assert_eq!(
        cancel_decision(&so("a", "wecom", None)),
        Ok(CancelState::Cancellable)
    );
    let pending = SwitchoverStatus::default();
    assert_eq!(
        cancel_decision(&so("a", "wecom", Some(pending))),
        Ok(CancelState::Cancellable)
    );
    let e = cancel_decision(&so("a", "wecom", Some(running()))).unwrap_err();
    assert_eq!(e.code, exit::CONFLICT);
    assert!(e.message.contains("already started"), "{}", e.message);
    let done = SwitchoverStatus {
        phase: SwitchoverPhase::Succeeded,
        ..Default::default()
    };
    assert_eq!(
        cancel_decision(&so("a", "wecom", Some(done)))
            .unwrap_err()
            .code,
        exit::CONFLICT
    );
    let mut asked = so("a", "wecom", None);
    asked.metadata.annotations = Some(
        [(CANCEL_REQUESTED_BY.to_string(), "bob".to_string())]
            .into_iter()
            .collect(),
    );
    assert_eq!(
        cancel_decision(&asked),
        Ok(CancelState::AlreadyRequested("bob".into()))
    );
}

#[test]
fn pausing_twice_changes_nothing() {
    let mut p = pair(Side::Primary);
    assert!(pause_noop(&p, true).is_none());
    assert!(pause_noop(&p, false).unwrap().contains("not paused"));
    p.spec.paused = true;
    assert!(pause_noop(&p, true).unwrap().contains("already paused"));
    assert!(pause_noop(&p, false).is_none());
}

fn drill(name: &str, pair: &str, phase: Option<crate::api::drill::DrillPhase>) -> Drill {
    let mut d = Drill::new(
        name,
        crate::api::DrillSpec {
            pair: pair.into(),
            rehearse: false,
            slot: None,
        },
    );
    d.status = phase.map(|phase| crate::api::DrillStatus {
        phase,
        ..Default::default()
    });
    d
}

#[test]
fn one_drill_per_pair_at_a_time() {
    use crate::api::drill::DrillPhase;
    let p = pair(Side::Primary);
    let finished = drill("old", "wecom", Some(DrillPhase::Finished));
    let other_pair = drill("x", "billing", Some(DrillPhase::Verifying));
    assert!(check_drill_request(&p, &[finished.clone(), other_pair.clone()], false).is_ok());
    for phase in [
        None,
        Some(DrillPhase::Verifying),
        Some(DrillPhase::Rehearsing),
    ] {
        let running = drill("now", "wecom", phase);
        let e = check_drill_request(&p, &[finished.clone(), running], false).unwrap_err();
        assert_eq!(e.code, exit::CONFLICT, "{phase:?}");
        assert!(
            e.message.contains("drill now of wecom is not finished"),
            "{}",
            e.message
        );
        assert!(e.message.contains("drill report now"), "{}", e.message);
    }
}

#[test]
fn a_rehearsal_needs_the_pairs_own_rehearsal_traffic() {
    let mut p = pair(Side::Primary);
    let e = check_drill_request(&p, &[], true).unwrap_err();
    assert_eq!(e.code, exit::USAGE);
    assert!(
        e.message.contains("spec.drills.rehearsalTraffic"),
        "{}",
        e.message
    );
    assert!(check_drill_request(&p, &[], false).is_ok());
    // The production record as rehearsal traffic is refused too.
    p.spec.drills.rehearsal_traffic = Some(p.spec.traffic.clone());
    let e = check_drill_request(&p, &[], true).unwrap_err();
    assert!(
        e.message.contains("production DNS record api"),
        "{}",
        e.message
    );
    // Its own record is fine; a pair that always rehearses is checked without the flag.
    let mut own = p.spec.traffic.clone();
    own.dns[0].name = "drill-api".into();
    p.spec.drills.rehearsal_traffic = Some(own);
    assert!(check_drill_request(&p, &[], true).is_ok());
    p.spec.drills.rehearsal_traffic = None;
    p.spec.drills.rehearse = true;
    assert_eq!(
        check_drill_request(&p, &[], false).unwrap_err().code,
        exit::USAGE
    );
}
