//! The switchover executor: runs a plan step by step through the traits below. Before a
//! step acts its intent is persisted (state Running); after its effect was verified its
//! result is persisted (Succeeded/Failed) — a success in the same write as the next
//! step's intent, so every step costs one status write. Every external write is an idempotent
//! `ensure_*`, so a process killed at any point resumes the Running step and finishes
//! with exactly one flip: targets already moved answer "already there".
//!
//! Nothing is left half-flipped without saying so: a flip step that fails after moving
//! some targets names, in its message and the switchover's, which targets point where.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::plan::{self, GateInput, Next, Step};
use crate::api::Side;
use crate::api::switchover::{
    StepState, SwitchoverMode, SwitchoverPhase, SwitchoverSpec, SwitchoverStatus, Trigger,
};
use crate::controller::conditions::rfc3339_ms as rfc3339;
use crate::traffic::{Moved, TrafficError, TrafficTarget};

/// Where the Switchover's status is persisted.
#[async_trait]
pub trait SwitchoverStore: Send + Sync {
    async fn save(&self, status: &SwitchoverStatus) -> Result<(), String>;
}

/// The pair's replication, as the executor drives it.
#[async_trait]
pub trait ReplicationControl: Send + Sync {
    /// Stop the source on the old active side at the feed head seen now (idempotent).
    async fn fence(&self) -> Result<(), String>;
    /// Apply everything up to the fence within `bound`; returns records not applied.
    async fn drain(&self, bound: Duration) -> Result<u64, String>;
    /// Run replication from `new_active` from now on, starting at its feed head. `epoch`
    /// names the flip (the Switchover), so a resumed run re-uses the same positions.
    async fn reverse(&self, new_active: Side, epoch: &str) -> Result<(), String>;
    /// Lag toward the passive side now; `None` when unknown.
    fn lag(&self) -> Option<Duration>;
    /// After the drain of a failback: is the passive side (the primary) level with the
    /// active one? Ok(what was compared) or Err(why not). Adapters without a way to
    /// compare say so and pass: the drain already proved nothing acknowledged is missing.
    async fn level(&self) -> Result<String, String> {
        Ok("no level comparison available (drain applied everything)".into())
    }
}

/// What the executor reads from and records on the AccountPair.
#[async_trait]
pub trait PairView: Send + Sync {
    /// Verdict on a side: Healthy, Suspect, Frozen, Banned or Unknown.
    fn verdict(&self, side: Side) -> String;
    /// Persist the intent: traffic is moving to `to` (status.targetSide).
    async fn intend(&self, to: Side, switchover: &str) -> Result<(), String>;
    /// Persist the verified result: `to` is the active side now.
    async fn record_active(&self, to: Side, switchover: &str) -> Result<(), String>;
}

/// Human-visible notices (Kubernetes Events in the operator, a list in tests).
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn step(&self, switchover: &str, step: &str, state: StepState, message: &str);
}

/// A test hook: pause after persisting the intent of the named step, so an e2e test can
/// SIGKILL the process at that exact point (`UNDERSTUDY_FAILPOINT=pause-after-intent:<step>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failpoint {
    pub step: String,
}

impl Failpoint {
    pub fn from_env() -> Option<Failpoint> {
        let v = std::env::var("UNDERSTUDY_FAILPOINT").ok()?;
        v.strip_prefix("pause-after-intent:").map(|s| Failpoint {
            step: s.to_string(),
        })
    }
}

/// Everything one switchover needs.
pub struct Executor {
    pub name: String,
    pub spec: SwitchoverSpec,
    pub active: Side,
    pub store: Arc<dyn SwitchoverStore>,
    pub pair: Arc<dyn PairView>,
    pub replication: Option<Arc<dyn ReplicationControl>>,
    pub dns: Vec<Arc<dyn TrafficTarget>>,
    pub lbs: Vec<Arc<dyn TrafficTarget>>,
    pub notifier: Arc<dyn Notifier>,
    pub max_lag: Duration,
    /// Bound of the drain step: Emergency default 2 s.
    pub drain_bound: Duration,
    /// How long a flipped target may take to show the new value.
    pub verify_within: Duration,
    pub failpoint: Option<Failpoint>,
}

/// Why the executor stopped before finishing (the status says the rest).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("persisting the switchover status failed: {0}")]
    Store(String),
    #[error("waiting until notBefore {0}")]
    NotYet(DateTime<Utc>),
}

impl Executor {
    /// Run until the switchover finishes (or must wait). Returns the final status.
    pub async fn run(
        &self,
        status: Option<SwitchoverStatus>,
    ) -> Result<SwitchoverStatus, ExecError> {
        let mut status = status.unwrap_or_default();
        let started = Instant::now();
        loop {
            let now = Utc::now();
            match plan::next(
                &self.spec,
                Some(&status).filter(|s| !s.steps.is_empty()),
                now,
            ) {
                Next::Done => return Ok(status),
                Next::WaitUntil(t) => return Err(ExecError::NotYet(t)),
                Next::Initialise => {
                    status = plan::initial_status(&self.spec, self.active, now);
                    self.save(&status).await?;
                }
                Next::Finish(phase) => {
                    status.phase = phase;
                    status.finished_at = Some(rfc3339(Utc::now()));
                    status.duration_ms = Some(self.duration_ms(&status, started));
                    if status.message.is_none() {
                        status.message = Some(match phase {
                            SwitchoverPhase::Succeeded if self.spec.dry_run => {
                                "dry run: prechecks evaluated, nothing changed".into()
                            }
                            SwitchoverPhase::Succeeded if self.spec.trigger == Trigger::Drill => {
                                format!(
                                    "rehearsal: the drill's traffic flipped to {} and restored; production untouched",
                                    self.spec.to
                                )
                            }
                            SwitchoverPhase::Succeeded => format!("{} is active", self.spec.to),
                            _ => "failed".into(),
                        });
                    }
                    self.save(&status).await?;
                    return Ok(status);
                }
                Next::Run {
                    index,
                    step,
                    resumed,
                } => {
                    // Intent first.
                    let st = &mut status.steps[index];
                    st.state = StepState::Running;
                    st.started_at = Some(rfc3339(Utc::now()));
                    st.message = resumed.then(|| "resumed after a restart".to_string());
                    self.save(&status).await?;
                    self.notifier
                        .step(&self.name, step.name(), StepState::Running, "")
                        .await;
                    if self
                        .failpoint
                        .as_ref()
                        .is_some_and(|f| f.step == step.name())
                    {
                        tracing::warn!(
                            step = step.name(),
                            "failpoint: pausing after persisting intent"
                        );
                        std::future::pending::<()>().await;
                    }
                    let outcome = self.execute(step, &mut status).await;
                    let st = &mut status.steps[index];
                    st.finished_at = Some(rfc3339(Utc::now()));
                    match outcome {
                        Ok(msg) => {
                            st.state = StepState::Succeeded;
                            st.message = Some(msg.clone());
                            // Persisted with the next step's intent (or the finish), in
                            // one write and always before anything else acts. A crash
                            // before that write re-runs this step, which is idempotent.
                            self.notifier
                                .step(&self.name, step.name(), StepState::Succeeded, &msg)
                                .await;
                        }
                        Err(msg) => {
                            st.state = StepState::Failed;
                            st.message = Some(msg.clone());
                            status.message = Some(format!("{} failed: {msg}", step.name()));
                            self.save(&status).await?;
                            self.notifier
                                .step(&self.name, step.name(), StepState::Failed, &msg)
                                .await;
                        }
                    }
                }
            }
        }
    }

    fn duration_ms(&self, status: &SwitchoverStatus, started: Instant) -> i64 {
        status
            .started_at
            .as_deref()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| (Utc::now() - t.with_timezone(&Utc)).num_milliseconds())
            .unwrap_or_else(|| started.elapsed().as_millis() as i64)
    }

    async fn save(&self, status: &SwitchoverStatus) -> Result<(), ExecError> {
        self.store.save(status).await.map_err(ExecError::Store)
    }

    /// Run one step; Ok(message) when its effect is verified.
    async fn execute(&self, step: Step, status: &mut SwitchoverStatus) -> Result<String, String> {
        let to = self.spec.to;
        let from = status.from.unwrap_or(self.active);
        match step {
            Step::Precheck => {
                let input = GateInput {
                    mode: self.spec.mode,
                    trigger: self.spec.trigger,
                    active: from,
                    to,
                    target_verdict: self.pair.verdict(to),
                    lag: self.replication.as_ref().and_then(|r| r.lag()),
                    max_lag: self.max_lag,
                    force: self.spec.force.clone().unwrap_or_default(),
                };
                let gates = plan::gates(&input);
                let text = gates
                    .iter()
                    .map(plan::Gate::describe)
                    .collect::<Vec<_>>()
                    .join("; ");
                if !plan::gates_allow(&gates) {
                    return Err(format!("prechecks refused the switchover: {text}"));
                }
                if !self.spec.dry_run && self.spec.trigger != Trigger::Drill {
                    self.pair.intend(to, &self.name).await?;
                }
                Ok(text)
            }
            Step::Fence => match &self.replication {
                Some(r) => r
                    .fence()
                    .await
                    .map(|()| format!("source on {from} stopped at its feed head")),
                None => Ok("no replication to fence".into()),
            },
            Step::Drain => {
                let Some(r) = &self.replication else {
                    return Ok("no replication to drain".into());
                };
                // A resumed run re-fences: fencing is idempotent and the new end offsets
                // include everything the first fence captured.
                r.fence().await?;
                let bound = match self.spec.mode {
                    SwitchoverMode::Emergency => self.drain_bound,
                    SwitchoverMode::Planned => self.drain_bound.max(Duration::from_secs(30)),
                };
                let lost = r.drain(bound).await?;
                status.records_lost = Some(lost as i64);
                if lost > 0 && self.spec.mode == SwitchoverMode::Planned {
                    return Err(format!(
                        "{lost} acknowledged records were not applied to {to} within {bound:?}; a planned switchover loses nothing, so traffic was not moved"
                    ));
                }
                Ok(if lost == 0 {
                    "every acknowledged change applied (recordsLost 0)".to_string()
                } else {
                    format!(
                        "{lost} records not applied within {bound:?} (emergency: counted in recordsLost)"
                    )
                })
            }
            Step::VerifyLevel => match &self.replication {
                Some(r) => r.level().await.map_err(|e| {
                    format!("{to} is not level with {from}: {e}; traffic stays on {from}")
                }),
                None => Ok("no replication to compare".into()),
            },
            Step::FlipDns => self.flip(&self.dns, from, to).await,
            Step::FlipLb => self.flip(&self.lbs, from, to).await,
            Step::RestoreDns => self.flip(&self.dns, to, from).await,
            Step::RestoreLb => self.flip(&self.lbs, to, from).await,
            Step::Reverse => match &self.replication {
                Some(r) => r
                    .reverse(to, &self.name)
                    .await
                    .map(|()| format!("replication now runs from {to} to {}", to.other())),
                None => Ok("no replication to reverse".into()),
            },
            Step::Record => {
                self.pair.record_active(to, &self.name).await?;
                Ok(format!("{to} recorded as the active side"))
            }
        }
    }

    /// Move every target from `from` to `to`, verifying each. On the first failure, say
    /// exactly which targets moved and which did not.
    async fn flip(
        &self,
        targets: &[Arc<dyn TrafficTarget>],
        from: Side,
        to: Side,
    ) -> Result<String, String> {
        if targets.is_empty() {
            return Ok("no targets configured".into());
        }
        let mut done = Vec::new();
        for t in targets {
            let result = async {
                let moved = t.ensure_side(from, to).await?;
                t.verify_side(to, self.verify_within).await?;
                Ok::<Moved, TrafficError>(moved)
            }
            .await;
            match result {
                Ok(moved) => done.push(format!(
                    "{} → {to}{}",
                    t.describe(),
                    if moved == Moved::AlreadyThere {
                        " (already)"
                    } else {
                        ""
                    }
                )),
                Err(e) => {
                    let pending: Vec<String> = targets
                        .iter()
                        .skip(done.len() + 1)
                        .map(|t| format!("{} still on {from}", t.describe()))
                        .collect();
                    let mut msg = format!("{e}. NOT moved: {} (still on {from})", t.describe());
                    if !done.is_empty() {
                        msg.push_str(&format!("; ALREADY moved to {to}: {}", done.join(", ")));
                    }
                    if !pending.is_empty() {
                        msg.push_str(&format!("; not attempted: {}", pending.join(", ")));
                    }
                    msg.push_str(". Traffic is split: fix the target, then create a new Switchover (or move it by hand)");
                    if done.is_empty() {
                        msg =
                            format!("{e}. Nothing was moved: every target still points at {from}");
                    }
                    return Err(msg);
                }
            }
        }
        Ok(format!("verified: {}", done.join(", ")))
    }
}
