//! What the pair's traffic targets say, and what a failed switchover leaves behind.
//! Pure: the caller reads the targets back (DNS, Service, HAProxy) and acts on the
//! verdict.
//!
//! Contract:
//! - [`judge`] turns one reading per target into [`Traffic`]: every target on one side,
//!   or split (targets disagree, hold neither side's values, or cannot be read), with a
//!   message that names each target's state.
//! - [`after_failure`] decides what happens to the pair's recorded intent after a
//!   failed switchover (DESIGN §3: a failed switchover never leaves the pair stuck):
//!   - no traffic step ever ran → nothing moved: keep the recorded active side,
//!     withdraw the intent, and resume replication from it if it was fenced;
//!   - traffic steps ran → believe the targets, not the plan: all on the recorded
//!     active side → as above; all on the other side → adopt it as the active side
//!     (replication follows it); split → withdraw the intent, stop replication (no side
//!     is authoritative) and say which target points where, so a new switchover (or a
//!     fix by hand) can resolve it.

use crate::api::Side;
use crate::api::switchover::{StepState, StepStatus};

/// One target read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reading {
    /// e.g. `dns api.example.test. A`.
    pub target: String,
    /// The side it points at; `None` when neither, or unreadable.
    pub on: Option<Side>,
    /// What it holds (or why it could not be read), for humans.
    pub detail: String,
}

/// Where traffic points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Traffic {
    /// The pair has no traffic targets.
    NoTargets,
    /// Every target points at this side.
    On(Side),
    /// Anything else.
    Split { message: String },
}

/// Judge the readings of all the pair's targets.
pub fn judge(readings: &[Reading]) -> Traffic {
    let Some(first) = readings.first() else {
        return Traffic::NoTargets;
    };
    if let Some(side) = first.on
        && readings.iter().all(|r| r.on == Some(side))
    {
        return Traffic::On(side);
    }
    let each = readings
        .iter()
        .map(|r| match r.on {
            Some(s) => format!("{} → {s}", r.target),
            None => format!("{} → neither side ({})", r.target, r.detail),
        })
        .collect::<Vec<_>>()
        .join("; ");
    Traffic::Split {
        message: format!("traffic is split: {each}"),
    }
}

/// What to do after a failed switchover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// The recorded active side still serves: withdraw the intent; restart replication
    /// from it when the switchover had fenced it.
    Keep { resume_replication: bool },
    /// Every target points at this side now: record it as the active side.
    Adopt(Side),
    /// Targets disagree: withdraw the intent, hold replication, tell humans.
    Split { message: String },
}

/// Whether a failed switchover touched traffic (a traffic step started).
pub fn touched_traffic(steps: &[StepStatus]) -> bool {
    const TRAFFIC: [&str; 4] = ["flip-dns", "flip-lb", "restore-dns", "restore-lb"];
    steps.iter().any(|s| {
        TRAFFIC.contains(&s.name.as_str())
            && matches!(
                s.state,
                StepState::Running | StepState::Succeeded | StepState::Failed
            )
    })
}

/// See the module docs. `traffic` is `None` when the targets were not read (only
/// allowed when no traffic step ran).
pub fn after_failure(
    recorded_active: Side,
    steps: &[StepStatus],
    traffic: Option<&Traffic>,
) -> Recovery {
    let state = |n: &str| steps.iter().find(|s| s.name == n).map(|s| s.state);
    let fenced = matches!(
        state("fence"),
        Some(StepState::Succeeded | StepState::Failed | StepState::Running)
    );
    let reversed = state("reverse") == Some(StepState::Succeeded);
    let keep = Recovery::Keep {
        resume_replication: fenced && !reversed,
    };
    if !touched_traffic(steps) {
        return keep;
    }
    match traffic {
        None => Recovery::Split {
            message: "the traffic targets were not read back after the failed switchover".into(),
        },
        Some(Traffic::NoTargets) => keep,
        Some(Traffic::On(side)) if *side == recorded_active => keep,
        Some(Traffic::On(side)) => Recovery::Adopt(*side),
        Some(Traffic::Split { message }) => Recovery::Split {
            message: message.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StepState::*;

    fn steps(states: &[(&str, StepState)]) -> Vec<StepStatus> {
        states
            .iter()
            .map(|(n, s)| StepStatus {
                name: n.to_string(),
                state: *s,
                ..Default::default()
            })
            .collect()
    }

    fn on(target: &str, side: Option<Side>) -> Reading {
        Reading {
            target: target.into(),
            on: side,
            detail: "holds 10.9.9.9".into(),
        }
    }

    #[test]
    fn judging_names_every_target_when_they_disagree() {
        assert_eq!(judge(&[]), Traffic::NoTargets);
        let all = [
            on("dns a", Some(Side::Standby)),
            on("lb b", Some(Side::Standby)),
        ];
        assert_eq!(judge(&all), Traffic::On(Side::Standby));
        let split = [
            on("dns a", Some(Side::Standby)),
            on("lb b", Some(Side::Primary)),
        ];
        let Traffic::Split { message } = judge(&split) else {
            panic!()
        };
        assert!(message.contains("dns a → standby"), "{message}");
        assert!(message.contains("lb b → primary"), "{message}");
        let neither = [on("dns a", None)];
        let Traffic::Split { message } = judge(&neither) else {
            panic!()
        };
        assert!(
            message.contains("neither side (holds 10.9.9.9)"),
            "{message}"
        );
    }

    #[test]
    fn a_failure_before_any_traffic_step_keeps_the_side_and_resumes_a_fenced_pipeline() {
        let level = steps(&[
            ("precheck", Succeeded),
            ("fence", Succeeded),
            ("drain", Succeeded),
            ("verify-level", Failed),
            ("flip-dns", Pending),
            ("flip-lb", Pending),
            ("reverse", Pending),
        ]);
        assert_eq!(
            after_failure(Side::Standby, &level, None),
            Recovery::Keep {
                resume_replication: true
            }
        );
        let gate = steps(&[
            ("precheck", Failed),
            ("fence", Pending),
            ("flip-dns", Pending),
        ]);
        assert_eq!(
            after_failure(Side::Primary, &gate, None),
            Recovery::Keep {
                resume_replication: false
            }
        );
    }

    #[test]
    fn a_failed_flip_believes_the_targets_not_the_plan() {
        let failed_flip = steps(&[
            ("precheck", Succeeded),
            ("fence", Succeeded),
            ("drain", Succeeded),
            ("flip-dns", Failed),
            ("flip-lb", Pending),
        ]);
        // Nothing moved after all (the UPDATE was refused): back to normal, replication on.
        assert_eq!(
            after_failure(
                Side::Primary,
                &failed_flip,
                Some(&Traffic::On(Side::Primary))
            ),
            Recovery::Keep {
                resume_replication: true
            }
        );
        // Everything moved although the step failed (e.g. verification timed out).
        assert_eq!(
            after_failure(
                Side::Primary,
                &failed_flip,
                Some(&Traffic::On(Side::Standby))
            ),
            Recovery::Adopt(Side::Standby)
        );
        let split = Traffic::Split {
            message: "traffic is split: dns a → standby; lb b → primary".into(),
        };
        assert_eq!(
            after_failure(Side::Primary, &failed_flip, Some(&split)),
            Recovery::Split {
                message: "traffic is split: dns a → standby; lb b → primary".into()
            }
        );
        assert!(matches!(
            after_failure(Side::Primary, &failed_flip, None),
            Recovery::Split { .. }
        ));
    }

    #[test]
    fn a_failure_after_the_reverse_does_not_restart_the_old_direction() {
        let record_failed = steps(&[
            ("precheck", Succeeded),
            ("fence", Succeeded),
            ("drain", Succeeded),
            ("flip-dns", Succeeded),
            ("flip-lb", Succeeded),
            ("reverse", Succeeded),
            ("record", Failed),
        ]);
        // The reverse already recorded the standby as active.
        assert_eq!(
            after_failure(
                Side::Standby,
                &record_failed,
                Some(&Traffic::On(Side::Standby))
            ),
            Recovery::Keep {
                resume_replication: false
            }
        );
        let no_targets = steps(&[
            ("precheck", Succeeded),
            ("fence", Succeeded),
            ("drain", Succeeded),
            ("flip-dns", Succeeded),
            ("flip-lb", Succeeded),
            ("reverse", Failed),
        ]);
        assert_eq!(
            after_failure(Side::Primary, &no_targets, Some(&Traffic::NoTargets)),
            Recovery::Keep {
                resume_replication: true
            }
        );
    }
}
