//! Pure: the lines `--wait` prints as a Switchover's status changes, and the exit
//! outcome of a finished Switchover.

use super::Failure;
use crate::api::switchover::{StepState, SwitchoverPhase, SwitchoverStatus};

/// Lines for what changed between two observations of the status (`prev` `None`: the
/// first observation). Pending steps are not printed; each step prints once per state.
pub fn step_lines(prev: Option<&SwitchoverStatus>, now: &SwitchoverStatus) -> Vec<String> {
    let mut out = Vec::new();
    let prev_phase = prev.map(|p| p.phase);
    for step in &now.steps {
        let before = prev
            .and_then(|p| p.steps.iter().find(|s| s.name == step.name))
            .map(|s| s.state);
        if step.state == StepState::Pending || before == Some(step.state) {
            continue;
        }
        let mut line = format!("  {:<13} {:?}", step.name, step.state);
        if step.state != StepState::Running
            && let Some(m) = step.message.as_deref().filter(|m| !m.is_empty())
        {
            line.push_str(&format!(" — {m}"));
        }
        out.push(line);
    }
    if now.phase.is_finished() && prev_phase != Some(now.phase) {
        let mut line = format!("{:?}", now.phase);
        if let Some(lost) = now.records_lost {
            line.push_str(&format!(", recordsLost {lost}"));
        }
        if let Some(ms) = now.duration_ms {
            line.push_str(&format!(", {:.1}s", ms as f64 / 1000.0));
        }
        if let Some(m) = now.message.as_deref().filter(|m| !m.is_empty()) {
            line.push_str(&format!(": {m}"));
        }
        out.push(line);
    }
    out
}

/// Exit outcome of a finished switchover.
pub fn outcome(name: &str, status: &SwitchoverStatus) -> Result<(), Failure> {
    match status.phase {
        SwitchoverPhase::Succeeded => Ok(()),
        SwitchoverPhase::Cancelled => Err(Failure::failed(format!(
            "switchover {name} was cancelled; nothing was changed"
        ))),
        SwitchoverPhase::Failed => Err(Failure::failed(format!(
            "switchover {name} failed: {}",
            status.message.as_deref().unwrap_or("see its steps")
        ))),
        other => Err(Failure::failed(format!(
            "switchover {name} has not finished ({other:?})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::switchover::StepStatus;

    fn status(states: &[(&str, StepState, &str)], phase: SwitchoverPhase) -> SwitchoverStatus {
        SwitchoverStatus {
            phase,
            steps: states
                .iter()
                .map(|(n, s, m)| StepStatus {
                    name: n.to_string(),
                    state: *s,
                    message: (!m.is_empty()).then(|| m.to_string()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn each_step_prints_once_per_state_with_its_result() {
        use StepState::*;
        let a = status(
            &[("precheck", Running, ""), ("fence", Pending, "")],
            SwitchoverPhase::Running,
        );
        assert_eq!(step_lines(None, &a), vec!["  precheck      Running"]);
        assert!(step_lines(Some(&a), &a).is_empty(), "nothing changed");
        let b = status(
            &[
                ("precheck", Succeeded, "lag: pass — lag 0.1s ≤ 5.0s"),
                ("fence", Running, ""),
            ],
            SwitchoverPhase::Running,
        );
        assert_eq!(
            step_lines(Some(&a), &b),
            vec![
                "  precheck      Succeeded — lag: pass — lag 0.1s ≤ 5.0s",
                "  fence         Running"
            ]
        );
    }

    #[test]
    fn the_end_prints_the_phase_loss_and_duration() {
        let mut end = status(
            &[("record", StepState::Succeeded, "standby recorded")],
            SwitchoverPhase::Succeeded,
        );
        end.records_lost = Some(0);
        end.duration_ms = Some(1234);
        end.message = Some("standby is active".into());
        let lines = step_lines(None, &end);
        assert_eq!(
            lines.last().map(String::as_str),
            Some("Succeeded, recordsLost 0, 1.2s: standby is active")
        );
        assert!(outcome("so", &end).is_ok());
    }

    #[test]
    fn failed_and_cancelled_are_non_zero() {
        let mut st = status(&[], SwitchoverPhase::Failed);
        st.message = Some("precheck failed: lag".into());
        let f = outcome("so", &st).unwrap_err();
        assert_eq!(f.code, crate::cli::exit::FAILED);
        assert!(f.message.contains("precheck failed"));
        let c = outcome("so", &status(&[], SwitchoverPhase::Cancelled)).unwrap_err();
        assert_ne!(c.code, 0);
    }
}
