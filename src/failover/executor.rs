//! The switchover executor: runs a plan step by step through the traits below. Before a
//! step acts its intent is persisted (state Running); after its effect was verified its
//! result is persisted (Succeeded/Failed) — a success in the same write as the next
//! step's intent, so every step costs one status write, and the plan itself rides on the
//! first step's intent. Steps that only fence, drain or compare the pair's own
//! replication (see [`Step::acts_outside`]) write their intent while they run. Every
//! external write is an idempotent `ensure_*`, so a process killed at any point resumes
//! the Running step and finishes with exactly one flip: targets already moved answer
//! "already there".
//!
//! Nothing is left half-flipped without saying so: a flip step that fails reads every
//! traffic target back and names, in its message and the switchover's, what each one
//! holds (see `flip`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::flip;
use super::plan::{self, GateInput, Next, Step};
use crate::api::Side;
use crate::api::common::rfc3339_ms as rfc3339;
use crate::api::switchover::{
    StepState, SwitchoverMode, SwitchoverPhase, SwitchoverSpec, SwitchoverStatus, Trigger,
};
use crate::traffic::TrafficTarget;

/// Where the Switchover's status is persisted.
#[async_trait]
pub trait SwitchoverStore: Send + Sync {
    async fn save(&self, status: &SwitchoverStatus) -> Result<(), String>;
    /// Err(why) when a save would be refused now (this replica no longer holds the
    /// pair): asked before a step that acts alongside its intent's write.
    fn may_save(&self) -> Result<(), String> {
        Ok(())
    }
}

/// What a drain left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drained {
    /// Changes the feed delivered that Kafka did not acknowledge or the sink did not
    /// apply; `None` when it cannot be known (no pipeline was running).
    pub records_lost: Option<u64>,
    /// What happened, for the step's message.
    pub detail: String,
}

/// The pair's replication, as the executor drives it.
#[async_trait]
pub trait ReplicationControl: Send + Sync {
    /// Stop the source on the old active side at the feed head seen now, within
    /// `bound` whatever Kafka does (idempotent). Ok(what happened).
    async fn fence(&self, bound: Duration) -> Result<String, String>;
    /// Apply everything up to the fence within `bound`; says what was not copied.
    async fn drain(&self, bound: Duration) -> Drained;
    /// Record `new_active` as the active side and run replication from it (starting at
    /// its feed head captured at the fence). `epoch` names the flip (the Switchover), so
    /// a resumed run re-uses the same positions. Ok(what happened).
    async fn reverse(&self, new_active: Side, epoch: &str) -> Result<String, String>;
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
    /// Gates that failed and were overridden by an explicit `force` field (recorded).
    async fn forced(&self, _switchover: &str, _gates: &[plan::Gate]) {}
}

/// A test hook after persisting the intent of the named step: pause for ever, so an
/// e2e test can SIGKILL the process at that exact point
/// (`UNDERSTUDY_FAILPOINT=pause-after-intent:<step>`), or hold the step for a while, so
/// it can SIGTERM the process while the step runs
/// (`UNDERSTUDY_FAILPOINT=slow-step:<step>:<milliseconds>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failpoint {
    pub step: String,
    /// `None`: pause for ever.
    pub delay: Option<Duration>,
}

impl Failpoint {
    pub fn from_env() -> Option<Failpoint> {
        Self::parse(&std::env::var("UNDERSTUDY_FAILPOINT").ok()?)
    }

    pub fn parse(v: &str) -> Option<Failpoint> {
        if let Some(step) = v.strip_prefix("pause-after-intent:") {
            return Some(Failpoint {
                step: step.to_string(),
                delay: None,
            });
        }
        let (step, ms) = v.strip_prefix("slow-step:")?.split_once(':')?;
        Some(Failpoint {
            step: step.to_string(),
            delay: Some(Duration::from_millis(ms.parse().ok()?)),
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
    /// True once the process shuts down gracefully: no further step starts (the one
    /// running reaches its persisted point; the next leader resumes from there).
    pub shutdown: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Why the executor stopped before finishing (the status says the rest).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("persisting the switchover status failed: {0}")]
    Store(String),
    #[error("waiting until notBefore {0}")]
    NotYet(DateTime<Utc>),
    #[error("the operator is shutting down; the next leader resumes at step {0}")]
    ShuttingDown(String),
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
                Next::Refuse(message) => {
                    if status.steps.is_empty() {
                        status = plan::initial_status(&self.spec, self.active, now);
                    }
                    status.phase = SwitchoverPhase::Failed;
                    status.finished_at = Some(rfc3339(now));
                    status.message = Some(message);
                    self.save(&status).await?;
                    return Ok(status);
                }
                Next::Initialise => {
                    // Not saved on its own: the first step's intent (or a refusal, or
                    // the finish of a dry run) carries the plan in the same write.
                    status = plan::initial_status(&self.spec, self.active, now);
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
                    if self.shutdown.as_ref().is_some_and(|s| *s.borrow()) {
                        // The last step's result is persisted before we go (it would
                        // otherwise ride on this step's intent).
                        self.save(&status).await?;
                        return Err(ExecError::ShuttingDown(step.name().to_string()));
                    }
                    let st = &mut status.steps[index];
                    st.state = StepState::Running;
                    st.started_at = Some(rfc3339(Utc::now()));
                    st.message = resumed.then(|| "resumed after a restart".to_string());
                    let failpoint = self.failpoint.as_ref().filter(|f| f.step == step.name());
                    let outcome = if step.acts_outside() || failpoint.is_some() {
                        // Intent first.
                        self.save(&status).await?;
                        self.notifier
                            .step(&self.name, step.name(), StepState::Running, "")
                            .await;
                        if let Some(f) = failpoint {
                            tracing::warn!(
                                step = step.name(),
                                delay = ?f.delay,
                                "failpoint: holding the step after persisting its intent"
                            );
                            match f.delay {
                                Some(d) => tokio::time::sleep(d).await,
                                None => std::future::pending::<()>().await,
                            }
                        }
                        self.execute(step, &mut status, resumed).await
                    } else {
                        // Only the pair's own replication moves, and a resume redoes it:
                        // the intent is written while the step runs. Its result is saved
                        // after that write, never before.
                        self.store.may_save().map_err(ExecError::Store)?;
                        let intent = status.clone();
                        let (saved, outcome) = tokio::join!(
                            self.save(&intent),
                            self.execute(step, &mut status, resumed)
                        );
                        saved?;
                        self.notifier
                            .step(&self.name, step.name(), StepState::Running, "")
                            .await;
                        outcome
                    };
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

    /// Bound of the fence and the drain: the operator's drain bound in an emergency,
    /// at least 30 s for a planned switchover (which must lose nothing).
    fn step_bound(&self) -> Duration {
        match self.spec.mode {
            SwitchoverMode::Emergency => self.drain_bound,
            SwitchoverMode::Planned => self.drain_bound.max(Duration::from_secs(30)),
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
    async fn execute(
        &self,
        step: Step,
        status: &mut SwitchoverStatus,
        resumed: bool,
    ) -> Result<String, String> {
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
                let forced: Vec<plan::Gate> =
                    gates.iter().filter(|g| g.overridden).cloned().collect();
                if !forced.is_empty() {
                    self.notifier.forced(&self.name, &forced).await;
                }
                if !self.spec.dry_run && self.spec.trigger != Trigger::Drill {
                    self.pair.intend(to, &self.name).await?;
                }
                Ok(text)
            }
            Step::Fence => match &self.replication {
                Some(r) => r.fence(self.step_bound()).await,
                None => Ok("no replication to fence".into()),
            },
            Step::Drain => {
                let Some(r) = &self.replication else {
                    return Ok("no replication to drain".into());
                };
                // A resumed run re-fences: fencing is idempotent and the new end offsets
                // include everything the first fence captured.
                r.fence(self.step_bound()).await?;
                let bound = self.step_bound();
                let drained = r.drain(bound).await;
                status.records_lost = drained.records_lost.map(|n| n as i64);
                status.records_lost_unknown = match drained.records_lost {
                    Some(_) => None,
                    None => Some(drained.detail.clone()),
                };
                let forced = self.spec.force.as_ref().is_some_and(|f| f.skip_lag_gate);
                match (drained.records_lost, self.spec.mode) {
                    (Some(lost), SwitchoverMode::Planned) if lost > 0 => Err(format!(
                        "{}; a planned switchover loses nothing, so traffic was not moved",
                        drained.detail
                    )),
                    (None, SwitchoverMode::Planned) if !forced => Err(format!(
                        "{}; a planned switchover must prove it loses nothing, so traffic was not moved (fix replication first, or switch over with --force-skip-lag-gate, recorded)",
                        drained.detail
                    )),
                    (Some(_), SwitchoverMode::Emergency) => Ok(format!(
                        "{} (emergency: counted in recordsLost)",
                        drained.detail
                    )),
                    (None, _) => Ok(format!("recordsLost unknown: {}", drained.detail)),
                    (Some(_), _) => Ok(drained.detail),
                }
            }
            Step::VerifyLevel => match &self.replication {
                Some(r) => r.level().await.map_err(|e| {
                    format!("{to} is not level with {from}: {e}; traffic stays on {from}")
                }),
                None => Ok("no replication to compare".into()),
            },
            Step::FlipDns => {
                flip::run(&self.dns, &self.lbs, from, to, self.verify_within, resumed).await
            }
            Step::FlipLb => {
                flip::run(&self.lbs, &self.dns, from, to, self.verify_within, resumed).await
            }
            Step::RestoreDns => {
                flip::run(&self.dns, &self.lbs, to, from, self.verify_within, resumed).await
            }
            Step::RestoreLb => {
                flip::run(&self.lbs, &self.dns, to, from, self.verify_within, resumed).await
            }
            Step::Reverse => match &self.replication {
                Some(r) => r.reverse(to, &self.name).await,
                None => Ok("no replication to reverse".into()),
            },
            Step::Record => {
                self.pair.record_active(to, &self.name).await?;
                Ok(format!("{to} recorded as the active side"))
            }
        }
    }
}
