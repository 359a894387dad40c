//! The pair's Switchovers as the failover decision sees them, and the Switchovers the
//! operator creates by itself. Classification is pure.
//!
//! Contract:
//! - A production Switchover (trigger Manual or Automatic, not a dry run) that has
//!   started (its status has steps), or that will start at once (not Planned), is
//!   *running*: the pair belongs to it.
//! - A Planned production Switchover that has not started (typically waiting for
//!   `notBefore`) is *pending*: it does not block an emergency, which supersedes it
//!   (cancels it with a resourceVersion precondition, so if it starts meanwhile the
//!   cancel fails and the failover waits for it instead).
//! - An unfinished Drill-trigger Switchover is a *rehearsal*: an automatic failover
//!   waits for it (and uses nothing of the budget meanwhile).
//! - The freeze episode's own failover Switchover (named after the verdict's start) is
//!   reported with how it ended: one attempt per episode.

use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};

use crate::api::switchover::{SwitchoverMode, SwitchoverPhase, Trigger};
use crate::api::{Side, Switchover, SwitchoverSpec};

/// What the pair's Switchovers say.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PairSwitchovers {
    /// A production switchover that owns the pair now.
    pub running: Option<String>,
    /// An unfinished drill rehearsal.
    pub rehearsal: Option<String>,
    /// Planned switchovers that have not started: `(name, resourceVersion)`.
    pub pending: Vec<(String, Option<String>)>,
    /// This episode's failover, if it exists: its phase and message.
    pub episode: Option<(SwitchoverPhase, String)>,
}

impl PairSwitchovers {
    /// The episode's failover ended without success (its message).
    pub fn failed_attempt(&self) -> Option<String> {
        match &self.episode {
            Some((phase, message))
                if phase.is_finished() && *phase != SwitchoverPhase::Succeeded =>
            {
                Some(format!("{phase:?}: {message}"))
            }
            _ => None,
        }
    }
}

/// Classify `all` (the namespace's Switchovers) for `pair`; see the module docs.
pub fn classify(all: &[Switchover], pair: &str, episode: &str) -> PairSwitchovers {
    let mut out = PairSwitchovers::default();
    for so in all.iter().filter(|s| s.spec.pair == pair) {
        let name = so.name_any();
        let status = so.status.as_ref();
        let phase = status.map(|s| s.phase).unwrap_or_default();
        if name == episode {
            let message = status.and_then(|s| s.message.clone()).unwrap_or_default();
            out.episode = Some((phase, message));
        }
        if phase.is_finished() || so.spec.dry_run {
            continue;
        }
        let started = status.is_some_and(|s| !s.steps.is_empty());
        if so.spec.trigger == Trigger::Drill {
            out.rehearsal = Some(name);
        } else if !started && so.spec.mode == SwitchoverMode::Planned {
            out.pending
                .push((name, so.metadata.resource_version.clone()));
        } else {
            out.running = Some(name);
        }
    }
    out
}

/// A Switchover the operator starts by itself (requested by `understudy`): an automatic
/// failover or failback, or a drill's rehearsal.
pub fn own_switchover(
    name: &str,
    pair: &str,
    to: Side,
    mode: SwitchoverMode,
    trigger: Trigger,
    reason: &str,
) -> Switchover {
    Switchover::new(
        name,
        SwitchoverSpec {
            pair: pair.to_string(),
            to,
            mode,
            trigger,
            reason: reason.to_string(),
            requested_by: Some("understudy".into()),
            dry_run: false,
            not_before: None,
            force: None,
        },
    )
}

/// The name of an episode's automatic switchover: the same freeze (or recovery) maps
/// to one name, so a restarted operator gets AlreadyExists instead of a second one.
pub fn episode_name(pair: &str, what: &str, since: chrono::DateTime<chrono::Utc>) -> String {
    format!("{pair}-{what}-{}", since.format("%Y%m%d-%H%M%S"))
}

/// Mark a not-yet-started Switchover Cancelled because an emergency supersedes it, if
/// it is still the version read. `Ok(false)`: it changed meanwhile (it may have
/// started); the caller must look again.
pub async fn supersede(
    api: &Api<Switchover>,
    name: &str,
    resource_version: Option<&str>,
    by: &str,
) -> Result<bool, kube::Error> {
    let message =
        format!("superseded by the automatic failover {by} before it started; nothing was changed");
    let now = crate::controller::conditions::rfc3339(chrono::Utc::now());
    let patch = serde_json::json!({
        "metadata": { "resourceVersion": resource_version },
        "status": { "phase": "Cancelled", "message": message, "finishedAt": now },
    });
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Create `so` in `namespace`. `Ok(false)` when it exists already: it is named after
/// its episode, so that is the same one.
pub async fn create(api: &Api<Switchover>, so: &Switchover) -> Result<bool, kube::Error> {
    match api.create(&PostParams::default(), so).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// The object reference of a Switchover by name (for Events on it).
pub fn reference(namespace: &str, name: &str) -> k8s_openapi::api::core::v1::ObjectReference {
    let mut so = own_switchover(
        name,
        "",
        Side::Standby,
        SwitchoverMode::Planned,
        Trigger::Manual,
        "",
    );
    so.metadata.namespace = Some(namespace.to_string());
    so.object_ref(&())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::switchover::{StepStatus, SwitchoverStatus};

    fn so(name: &str, pair: &str, trigger: Trigger, mode: SwitchoverMode) -> Switchover {
        let mut s = own_switchover(name, pair, Side::Standby, mode, trigger, "r");
        s.metadata.resource_version = Some(format!("rv-{name}"));
        s
    }

    fn with(mut s: Switchover, phase: SwitchoverPhase, started: bool) -> Switchover {
        s.status = Some(SwitchoverStatus {
            phase,
            steps: if started {
                vec![StepStatus {
                    name: "precheck".into(),
                    ..Default::default()
                }]
            } else {
                vec![]
            },
            message: Some("flip-dns failed: refused".into()),
            ..Default::default()
        });
        s
    }

    #[test]
    fn a_scheduled_planned_switchover_does_not_block_an_emergency() {
        let all = vec![so("later", "p", Trigger::Manual, SwitchoverMode::Planned)];
        let c = classify(&all, "p", "p-failover-x");
        assert_eq!(c.running, None);
        assert_eq!(
            c.pending,
            vec![("later".to_string(), Some("rv-later".to_string()))]
        );
    }

    #[test]
    fn started_or_emergency_switchovers_own_the_pair_and_rehearsals_are_apart() {
        let all = vec![
            with(
                so("a", "p", Trigger::Manual, SwitchoverMode::Planned),
                SwitchoverPhase::Running,
                true,
            ),
            so("b", "q", Trigger::Manual, SwitchoverMode::Emergency),
            so("r", "p", Trigger::Drill, SwitchoverMode::Planned),
        ];
        let c = classify(&all, "p", "x");
        assert_eq!(c.running.as_deref(), Some("a"));
        assert_eq!(c.rehearsal.as_deref(), Some("r"));
        assert!(c.pending.is_empty());
        let emergency = vec![so("e", "p", Trigger::Manual, SwitchoverMode::Emergency)];
        assert_eq!(classify(&emergency, "p", "x").running.as_deref(), Some("e"));
    }

    #[test]
    fn finished_and_dry_run_switchovers_block_nothing_and_a_failed_episode_is_named() {
        let mut dry = so("d", "p", Trigger::Manual, SwitchoverMode::Planned);
        dry.spec.dry_run = true;
        let all = vec![
            dry,
            with(
                so(
                    "p-failover-x",
                    "p",
                    Trigger::Automatic,
                    SwitchoverMode::Emergency,
                ),
                SwitchoverPhase::Failed,
                true,
            ),
        ];
        let c = classify(&all, "p", "p-failover-x");
        assert_eq!((&c.running, &c.rehearsal), (&None, &None));
        assert!(c.pending.is_empty());
        assert!(
            c.failed_attempt()
                .is_some_and(|m| m.contains("flip-dns failed")),
            "{:?}",
            c.episode
        );
    }
}
