//! The pure switchover planner: which steps a Switchover runs, the prechecks' gates and
//! what to do next given the persisted status. No I/O, clock passed in.
//!
//! Steps (DESIGN §3): precheck · fence · drain · flip-dns · flip-lb · reverse · record.
//! A planned switchover to the primary (a failback) also runs verify-level after drain:
//! traffic returns only to a primary that holds what the standby holds.
//! A drill rehearsal runs precheck · flip-dns · flip-lb · restore-dns · restore-lb on the
//! drill's own traffic and never touches replication.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::Side;
use crate::api::switchover::{
    ForceSpec, StepState, StepStatus, SwitchoverMode, SwitchoverPhase, SwitchoverSpec,
    SwitchoverStatus, Trigger,
};

/// One step of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Precheck,
    Fence,
    Drain,
    FlipDns,
    FlipLb,
    Reverse,
    Record,
    RestoreDns,
    RestoreLb,
    VerifyLevel,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Precheck => "precheck",
            Step::Fence => "fence",
            Step::Drain => "drain",
            Step::FlipDns => "flip-dns",
            Step::FlipLb => "flip-lb",
            Step::Reverse => "reverse",
            Step::Record => "record",
            Step::RestoreDns => "restore-dns",
            Step::RestoreLb => "restore-lb",
            Step::VerifyLevel => "verify-level",
        }
    }

    pub fn parse(name: &str) -> Option<Step> {
        ALL_STEPS.into_iter().find(|s| s.name() == name)
    }

    /// Whether the step changes something outside the operator's own replication: a
    /// traffic target, the pair's recorded sides, an account. Its intent is persisted
    /// before it acts. The others (fencing and draining the pair's replication, comparing
    /// the two sides) are idempotent and redone on a resume whatever was persisted, so
    /// their intent is written while they run: one round trip less on the way to the
    /// flip when the API server is slow.
    pub fn acts_outside(self) -> bool {
        !matches!(self, Step::Fence | Step::Drain | Step::VerifyLevel)
    }
}

const ALL_STEPS: [Step; 10] = [
    Step::Precheck,
    Step::Fence,
    Step::Drain,
    Step::FlipDns,
    Step::FlipLb,
    Step::Reverse,
    Step::Record,
    Step::RestoreDns,
    Step::RestoreLb,
    Step::VerifyLevel,
];

/// The ordered steps for a switchover.
pub fn plan(spec: &SwitchoverSpec) -> Vec<Step> {
    match spec.trigger {
        Trigger::Drill => vec![
            Step::Precheck,
            Step::FlipDns,
            Step::FlipLb,
            Step::RestoreDns,
            Step::RestoreLb,
        ],
        Trigger::Manual | Trigger::Automatic => {
            let mut steps = vec![
                Step::Precheck,
                Step::Fence,
                Step::Drain,
                Step::FlipDns,
                Step::FlipLb,
                Step::Reverse,
                Step::Record,
            ];
            if is_failback(spec) {
                steps.insert(3, Step::VerifyLevel);
            }
            steps
        }
    }
}

/// A planned move back to the primary: it must find the primary level before traffic
/// returns.
pub fn is_failback(spec: &SwitchoverSpec) -> bool {
    spec.mode == SwitchoverMode::Planned
        && spec.to == Side::Primary
        && spec.trigger != Trigger::Drill
}

/// A fresh status for the plan: every step Pending.
pub fn initial_status(spec: &SwitchoverSpec, from: Side, now: DateTime<Utc>) -> SwitchoverStatus {
    let steps = plan(spec);
    SwitchoverStatus {
        phase: SwitchoverPhase::Running,
        plan: steps.iter().map(|s| s.name().to_string()).collect(),
        steps: steps
            .iter()
            .map(|s| StepStatus {
                name: s.name().to_string(),
                ..Default::default()
            })
            .collect(),
        from: Some(from),
        started_at: Some(crate::api::common::rfc3339_ms(now)),
        ..Default::default()
    }
}

/// What the planner knows about the pair when it checks the gates.
#[derive(Clone, Debug)]
pub struct GateInput {
    pub mode: SwitchoverMode,
    pub trigger: Trigger,
    /// Side serving traffic now.
    pub active: Side,
    pub to: Side,
    /// The verdict on the target side (`Healthy`, `Suspect`, `Frozen`, `Banned`, `Unknown`).
    pub target_verdict: String,
    /// Replication lag toward the target side; `None` when unknown.
    pub lag: Option<Duration>,
    pub max_lag: Duration,
    pub force: ForceSpec,
}

/// The verdict of one gate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gate {
    pub name: &'static str,
    pub passed: bool,
    /// Failed, but overridden by an explicit `force` field (recorded).
    pub overridden: bool,
    pub message: String,
}

impl Gate {
    pub fn allows(&self) -> bool {
        self.passed || self.overridden
    }

    pub fn describe(&self) -> String {
        let verdict = match (self.passed, self.overridden) {
            (true, _) => "pass",
            (false, true) => "FAIL (overridden by force)",
            (false, false) => "FAIL",
        };
        format!("{}: {verdict} — {}", self.name, self.message)
    }
}

/// Evaluate the prechecks. Every gate is reported, passing or not.
pub fn gates(input: &GateInput) -> Vec<Gate> {
    let mut out = Vec::new();
    if input.trigger != Trigger::Drill {
        out.push(Gate {
            name: "target-not-active",
            passed: input.to != input.active,
            overridden: false,
            message: if input.to != input.active {
                format!("traffic moves from {} to {}", input.active, input.to)
            } else {
                format!("{} is already the active side; nothing to switch", input.to)
            },
        });
    }
    let healthy = input.target_verdict == "Healthy";
    out.push(Gate {
        name: "target-healthy",
        passed: healthy,
        overridden: !healthy && input.force.skip_standby_health,
        message: format!("{} is {}", input.to, input.target_verdict),
    });
    if input.mode == SwitchoverMode::Planned && input.trigger != Trigger::Drill {
        let (passed, message) = match input.lag {
            Some(lag) if lag <= input.max_lag => (
                true,
                format!(
                    "lag {:.1}s ≤ {:.1}s",
                    lag.as_secs_f64(),
                    input.max_lag.as_secs_f64()
                ),
            ),
            Some(lag) => (
                false,
                format!(
                    "lag {:.1}s > maxLagForSwitchover {:.1}s",
                    lag.as_secs_f64(),
                    input.max_lag.as_secs_f64()
                ),
            ),
            None => (
                false,
                "replication lag is unknown (is replication running?)".to_string(),
            ),
        };
        out.push(Gate {
            name: "lag",
            passed,
            overridden: !passed && input.force.skip_lag_gate,
            message,
        });
    }
    out
}

/// Do the gates allow the switchover to proceed?
pub fn gates_allow(gates: &[Gate]) -> bool {
    gates.iter().all(Gate::allows)
}

/// What the executor should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing: the switchover finished.
    Done,
    /// Wait until `notBefore`.
    WaitUntil(DateTime<Utc>),
    /// The switchover cannot run as written (e.g. `notBefore` is not a time): fail it
    /// before anything moves, with this message.
    Refuse(String),
    /// Create the initial status (persist the plan) first.
    Initialise,
    /// Run (or re-run after a crash: steps are idempotent) step `index`.
    Run {
        index: usize,
        step: Step,
        resumed: bool,
    },
    /// Every step ended; finish with this phase.
    Finish(SwitchoverPhase),
}

/// Decide the next action from the spec and the persisted status.
pub fn next(spec: &SwitchoverSpec, status: Option<&SwitchoverStatus>, now: DateTime<Utc>) -> Next {
    if let Some(s) = status
        && s.phase.is_finished()
    {
        return Next::Done;
    }
    let started = status.is_some_and(|s| !s.steps.is_empty());
    if let Some(text) = spec.not_before.as_deref()
        && !started
    {
        match DateTime::parse_from_rfc3339(text) {
            Ok(nb) if now < nb => return Next::WaitUntil(nb.with_timezone(&Utc)),
            Ok(_) => {}
            // Never "at once": a time that cannot be read is refused.
            Err(e) => {
                return Next::Refuse(format!(
                    "spec.notBefore {text:?} is not an RFC 3339 date-time ({e}), e.g. 2026-03-01T02:00:00Z; nothing was changed: create a new Switchover"
                ));
            }
        }
    }
    let Some(status) = status.filter(|s| !s.steps.is_empty()) else {
        return Next::Initialise;
    };
    for (index, st) in status.steps.iter().enumerate() {
        match st.state {
            StepState::Succeeded | StepState::Skipped => continue,
            StepState::Failed => return Next::Finish(SwitchoverPhase::Failed),
            StepState::Pending | StepState::Running => {
                let Some(step) = Step::parse(&st.name) else {
                    return Next::Finish(SwitchoverPhase::Failed);
                };
                // A dry run stops after the prechecks.
                if spec.dry_run && step != Step::Precheck {
                    return Next::Finish(SwitchoverPhase::Succeeded);
                }
                return Next::Run {
                    index,
                    step,
                    resumed: st.state == StepState::Running,
                };
            }
        }
    }
    Next::Finish(SwitchoverPhase::Succeeded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(trigger: Trigger, mode: SwitchoverMode) -> SwitchoverSpec {
        SwitchoverSpec {
            pair: "p".into(),
            to: Side::Standby,
            mode,
            trigger,
            reason: "test".into(),
            requested_by: None,
            dry_run: false,
            not_before: None,
            force: None,
        }
    }

    fn input() -> GateInput {
        GateInput {
            mode: SwitchoverMode::Planned,
            trigger: Trigger::Manual,
            active: Side::Primary,
            to: Side::Standby,
            target_verdict: "Healthy".into(),
            lag: Some(Duration::from_millis(200)),
            max_lag: Duration::from_secs(5),
            force: ForceSpec::default(),
        }
    }

    #[test]
    fn plans_follow_the_trigger() {
        let names = |s: &SwitchoverSpec| {
            plan(s)
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(
            names(&spec(Trigger::Automatic, SwitchoverMode::Emergency)),
            "precheck,fence,drain,flip-dns,flip-lb,reverse,record"
        );
        assert_eq!(
            names(&spec(Trigger::Manual, SwitchoverMode::Planned)),
            "precheck,fence,drain,flip-dns,flip-lb,reverse,record"
        );
        assert_eq!(
            names(&spec(Trigger::Drill, SwitchoverMode::Planned)),
            "precheck,flip-dns,flip-lb,restore-dns,restore-lb"
        );
        for s in ALL_STEPS {
            assert_eq!(Step::parse(s.name()), Some(s));
        }
    }

    #[test]
    fn a_planned_move_to_the_primary_verifies_it_is_level_before_the_flip() {
        let mut s = spec(Trigger::Manual, SwitchoverMode::Planned);
        s.to = Side::Primary;
        assert!(is_failback(&s));
        let names: Vec<_> = plan(&s).iter().map(|s| s.name()).collect();
        assert_eq!(
            names.join(","),
            "precheck,fence,drain,verify-level,flip-dns,flip-lb,reverse,record"
        );
        s.trigger = Trigger::Automatic;
        assert!(plan(&s).contains(&Step::VerifyLevel));
        s.mode = SwitchoverMode::Emergency;
        assert!(
            !plan(&s).contains(&Step::VerifyLevel),
            "an emergency has no time for it"
        );
        s.mode = SwitchoverMode::Planned;
        s.to = Side::Standby;
        assert!(!plan(&s).contains(&Step::VerifyLevel));
    }

    #[test]
    fn a_cancelled_switchover_is_never_started() {
        let now = Utc::now();
        let s = spec(Trigger::Manual, SwitchoverMode::Planned);
        let st = SwitchoverStatus {
            phase: SwitchoverPhase::Cancelled,
            ..Default::default()
        };
        assert_eq!(next(&s, Some(&st), now), Next::Done);
    }

    #[test]
    fn healthy_target_within_lag_passes() {
        let g = gates(&input());
        assert!(gates_allow(&g), "{g:?}");
        assert_eq!(g.len(), 3);
    }

    #[test]
    fn lag_gate_fails_and_only_its_force_flag_overrides_it() {
        let mut i = input();
        i.lag = Some(Duration::from_secs(9));
        assert!(!gates_allow(&gates(&i)));
        i.force.skip_standby_health = true;
        assert!(
            !gates_allow(&gates(&i)),
            "the health override does not skip the lag gate"
        );
        i.force.skip_lag_gate = true;
        let g = gates(&i);
        assert!(gates_allow(&g));
        let lag = g.iter().find(|g| g.name == "lag").unwrap();
        assert!(!lag.passed && lag.overridden);
        assert!(lag.describe().contains("overridden"));
    }

    #[test]
    fn unknown_lag_fails_the_planned_gate() {
        let mut i = input();
        i.lag = None;
        assert!(!gates_allow(&gates(&i)));
    }

    #[test]
    fn emergency_has_no_lag_gate_but_still_needs_a_healthy_target() {
        let mut i = input();
        i.mode = SwitchoverMode::Emergency;
        i.lag = None;
        assert!(gates_allow(&gates(&i)));
        for verdict in ["Frozen", "Banned", "Suspect", "Unknown"] {
            i.target_verdict = verdict.into();
            assert!(!gates_allow(&gates(&i)), "never to a {verdict} standby");
        }
    }

    #[test]
    fn health_gate_is_overridable_only_by_its_flag() {
        let mut i = input();
        i.target_verdict = "Suspect".into();
        i.force.skip_lag_gate = true;
        assert!(!gates_allow(&gates(&i)));
        i.force.skip_standby_health = true;
        assert!(gates_allow(&gates(&i)));
    }

    #[test]
    fn switching_to_the_active_side_is_refused_and_not_overridable() {
        let mut i = input();
        i.to = Side::Primary;
        i.target_verdict = "Healthy".into();
        i.force = ForceSpec {
            skip_lag_gate: true,
            skip_standby_health: true,
        };
        let g = gates(&i);
        assert!(!gates_allow(&g));
        assert!(g[0].message.contains("already the active side"));
    }

    #[test]
    fn next_walks_steps_and_resumes_a_running_one() {
        let now = Utc::now();
        let s = spec(Trigger::Automatic, SwitchoverMode::Emergency);
        assert_eq!(next(&s, None, now), Next::Initialise);
        let mut st = initial_status(&s, Side::Primary, now);
        assert_eq!(
            next(&s, Some(&st), now),
            Next::Run {
                index: 0,
                step: Step::Precheck,
                resumed: false
            }
        );
        st.steps[0].state = StepState::Succeeded;
        st.steps[1].state = StepState::Succeeded;
        st.steps[2].state = StepState::Succeeded;
        st.steps[3].state = StepState::Running;
        assert_eq!(
            next(&s, Some(&st), now),
            Next::Run {
                index: 3,
                step: Step::FlipDns,
                resumed: true
            }
        );
        st.steps[3].state = StepState::Failed;
        assert_eq!(
            next(&s, Some(&st), now),
            Next::Finish(SwitchoverPhase::Failed)
        );
        for step in &mut st.steps {
            step.state = StepState::Succeeded;
        }
        assert_eq!(
            next(&s, Some(&st), now),
            Next::Finish(SwitchoverPhase::Succeeded)
        );
        st.phase = SwitchoverPhase::Succeeded;
        assert_eq!(next(&s, Some(&st), now), Next::Done);
    }

    #[test]
    fn dry_run_stops_after_precheck() {
        let now = Utc::now();
        let mut s = spec(Trigger::Manual, SwitchoverMode::Planned);
        s.dry_run = true;
        let mut st = initial_status(&s, Side::Primary, now);
        assert_eq!(
            next(&s, Some(&st), now),
            Next::Run {
                index: 0,
                step: Step::Precheck,
                resumed: false
            }
        );
        st.steps[0].state = StepState::Succeeded;
        assert_eq!(
            next(&s, Some(&st), now),
            Next::Finish(SwitchoverPhase::Succeeded)
        );
    }

    #[test]
    fn a_not_before_that_is_not_a_time_is_refused_never_run_at_once() {
        let now = Utc::now();
        let mut s = spec(Trigger::Manual, SwitchoverMode::Planned);
        s.not_before = Some("tomorrow".into());
        match next(&s, None, now) {
            Next::Refuse(msg) => assert!(
                msg.contains("\"tomorrow\"") && msg.contains("RFC 3339"),
                "{msg}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn not_before_waits() {
        let now = Utc::now();
        let mut s = spec(Trigger::Manual, SwitchoverMode::Planned);
        let later = now + chrono::Duration::minutes(5);
        s.not_before = Some(crate::api::common::rfc3339(later));
        match next(&s, None, now) {
            Next::WaitUntil(t) => assert!((t - later).num_seconds().abs() <= 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            next(&s, None, later + chrono::Duration::seconds(1)),
            Next::Initialise
        );
    }
}
