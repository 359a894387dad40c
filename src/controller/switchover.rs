//! The Switchover controller: runs each unfinished Switchover through the one executor
//! (`failover::executor`), on the Lease holder only, one switchover per pair at a time.
//!
//! Cancel: people may not write a Switchover's status, so `kubectl understudy cancel`
//! sets the [`CANCEL_REQUESTED_BY`] annotation with a resourceVersion precondition. A
//! Switchover that carries it and has not started is marked Cancelled here and never
//! runs; the executor's first status write carries the resourceVersion it was started
//! from, so a cancel that lands in between makes that write fail instead of racing it.
//! Every start, step result, forced gate, cancel and finish goes to the audit trail.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::context::{Context, lock, pair_key};
use super::executor_glue::WorkerHandle;
use super::worker::PairWorker;
use crate::api::switchover::{
    StepState, SwitchoverMode, SwitchoverPhase, SwitchoverStatus, Trigger,
};
use crate::api::{AccountPair, Switchover};
use crate::failover::executor::{Executor, Notifier, ReplicationControl, SwitchoverStore};

/// Annotation set by `kubectl understudy cancel` (value: who asked).
pub const CANCEL_REQUESTED_BY: &str = "understudy.dev/cancel-requested-by";
/// When the cancel was asked (RFC 3339).
pub const CANCEL_REQUESTED_AT: &str = "understudy.dev/cancel-requested-at";

/// Where a switchover's audit records go.
#[derive(Clone)]
struct Audit {
    sink: crate::audit::AuditSink,
    bootstrap: String,
    namespace: String,
    pair: String,
}

impl Audit {
    fn record(&self, kind: &str, data: serde_json::Value) {
        self.sink
            .record(&self.bootstrap, kind, &self.namespace, &self.pair, data);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// Persists the Switchover's status; refuses once this replica lost the Lease, which
/// stops the executor at once.
struct KubeStore {
    api: Api<Switchover>,
    name: String,
    ctx: Arc<Context>,
    /// resourceVersion the executor was started from, until its first write: a cancel
    /// (or any other change) in between makes that write fail with a conflict.
    precondition: std::sync::Mutex<Option<String>>,
}

#[async_trait]
impl SwitchoverStore for KubeStore {
    async fn save(&self, status: &SwitchoverStatus) -> Result<(), String> {
        if !self.ctx.leader.may_act() {
            return Err("lost the lease: another replica takes over this switchover".into());
        }
        let rv = lock(&self.precondition).take();
        let patch = match rv {
            Some(rv) => {
                serde_json::json!({ "metadata": { "resourceVersion": rv }, "status": status })
            }
            None => serde_json::json!({ "status": status }),
        };
        self.api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Events on the Switchover for every step.
struct EventNotifier {
    ctx: Arc<Context>,
    reference: k8s_openapi::api::core::v1::ObjectReference,
    audit: Audit,
    /// The spec, for the audit record of the start.
    start: serde_json::Value,
    first_step: String,
}

#[async_trait]
impl Notifier for EventNotifier {
    async fn step(&self, switchover: &str, step: &str, state: StepState, message: &str) {
        let (warning, reason) = match state {
            StepState::Running => (false, "StepStarted"),
            StepState::Succeeded => (false, "StepSucceeded"),
            StepState::Failed => (true, "StepFailed"),
            _ => (false, "Step"),
        };
        tracing::info!(switchover, step, state = ?state, message, "switchover step");
        match state {
            StepState::Running if step == self.first_step => self
                .audit
                .record(crate::audit::kind::SWITCHOVER_STARTED, self.start.clone()),
            StepState::Succeeded | StepState::Failed => {
                self.audit.record(
                    crate::audit::kind::SWITCHOVER_STEP,
                    serde_json::json!({ "name": switchover, "step": step, "state": state, "message": message }),
                );
                for gate in forced_gates(message) {
                    self.audit.record(
                        crate::audit::kind::GATE_FORCED,
                        serde_json::json!({ "name": switchover, "gate": gate }),
                    );
                }
            }
            _ => {}
        }
        // Published in the background: an Event is for humans and must not delay the flip.
        let (ctx, reference) = (self.ctx.clone(), self.reference.clone());
        let (step, note) = (step.to_string(), format!("{step}: {state:?} {message}"));
        tokio::spawn(async move { ctx.event(&reference, warning, reason, &step, note).await });
    }
}

pub async fn reconcile(so: Arc<Switchover>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.leader.may_act() {
        super::metrics::metrics()
            .dropped_work_total
            .with_label_values(&["switchover"])
            .inc();
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    if so.status.as_ref().is_some_and(|s| s.phase.is_finished()) {
        return Ok(Action::await_change());
    }
    let namespace = so.namespace().unwrap_or_default();
    let name = so.name_any();
    let api: Api<Switchover> = Api::namespaced(ctx.client.clone(), &namespace);
    let pairs: Api<AccountPair> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(pair) = pairs.get_opt(&so.spec.pair).await? else {
        fail(
            &api,
            &name,
            format!(
                "AccountPair {:?} not found in namespace {namespace}",
                so.spec.pair
            ),
            None,
        )
        .await?;
        return Ok(Action::await_change());
    };
    let audit = Audit {
        sink: ctx.audit.clone(),
        bootstrap: pair.spec.replication.kafka.bootstrap_servers.clone(),
        namespace: namespace.clone(),
        pair: so.spec.pair.clone(),
    };
    let Some(worker) = ctx.worker(&namespace, &so.spec.pair) else {
        return Ok(Action::requeue(Duration::from_secs(1)));
    };
    let pk = pair_key(&namespace, &so.spec.pair);
    let busy = {
        let mut executing = lock(&ctx.executing);
        if executing.contains(&format!("{pk}#{name}")) {
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
        let other = executing
            .iter()
            .find(|k| k.starts_with(&format!("{pk}#")))
            .cloned();
        if other.is_none() || so.spec.trigger == Trigger::Drill {
            executing.insert(format!("{pk}#{name}"));
        }
        other
    }
    .filter(|_| so.spec.trigger != Trigger::Drill);
    if let Some(other) = busy {
        let msg = format!(
            "another switchover ({}) is running for pair {}; wait for it to finish",
            other.rsplit('#').next().unwrap_or(""),
            so.spec.pair
        );
        fail(&api, &name, msg, Some(&audit)).await?;
        return Ok(Action::await_change());
    }
    // Holding the key, no other run of this switchover writes: decide on the stored
    // object, not the watch cache, which may lag behind a run that just ended (it would
    // be run, or finished, a second time).
    let release = || {
        lock(&ctx.executing).remove(&format!("{pk}#{name}"));
    };
    let so = match api.get_opt(&name).await {
        Ok(Some(so)) => so,
        Ok(None) => {
            release();
            return Ok(Action::await_change());
        }
        Err(e) => {
            release();
            return Err(e.into());
        }
    };
    let status = so.status.clone();
    if status.as_ref().is_some_and(|s| s.phase.is_finished()) {
        release();
        return Ok(Action::await_change());
    }
    let started = status.as_ref().is_some_and(|s| !s.steps.is_empty());
    if let Some(by) = so.annotations().get(CANCEL_REQUESTED_BY).cloned()
        && !started
    {
        release();
        cancel(&ctx, &api, &so, &by, &audit).await?;
        return Ok(Action::await_change());
    }
    // A planned switchover's lag gate needs replication's report: after a (re)start of
    // the pair's worker, wait for it rather than fail on "lag unknown".
    let prechecked = status.as_ref().is_some_and(|s| {
        s.steps
            .iter()
            .any(|st| st.name == "precheck" && st.state == StepState::Succeeded)
    });
    if so.spec.mode == SwitchoverMode::Planned
        && so.spec.trigger != Trigger::Drill
        && !prechecked
        && worker.replication_warming_up()
    {
        release();
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let traffic = if so.spec.trigger == Trigger::Drill {
        match crate::drills::rehearsal_traffic(&pair.spec) {
            Ok(t) => t.clone(),
            Err(msg) => {
                release();
                fail(&api, &name, msg, Some(&audit)).await?;
                return Ok(Action::await_change());
            }
        }
    } else {
        pair.spec.traffic.clone()
    };
    let targets = match super::targets::build(&ctx.client, &namespace, &traffic).await {
        Ok(t) => t,
        Err(e) => {
            lock(&ctx.executing).remove(&format!("{pk}#{name}"));
            fail(
                &api,
                &name,
                format!("cannot build the traffic targets: {e}"),
                Some(&audit),
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    let handle = Arc::new(WorkerHandle(worker.clone()));
    let first_step = crate::failover::plan::plan(&so.spec)
        .first()
        .map(|s| s.name().to_string())
        .unwrap_or_default();
    let start = serde_json::json!({
        "name": name, "from": worker.active(), "to": so.spec.to, "mode": so.spec.mode,
        "trigger": so.spec.trigger, "reason": so.spec.reason, "requestedBy": so.spec.requested_by,
        "dryRun": so.spec.dry_run, "force": so.spec.force,
    });
    let executor = Executor {
        name: name.clone(),
        spec: so.spec.clone(),
        active: worker.active(),
        store: Arc::new(KubeStore {
            api: api.clone(),
            name: name.clone(),
            ctx: ctx.clone(),
            precondition: std::sync::Mutex::new(
                (!started)
                    .then(|| so.metadata.resource_version.clone())
                    .flatten(),
            ),
        }),
        pair: handle.clone(),
        replication: (so.spec.trigger != Trigger::Drill).then(|| {
            Arc::new(PairReplication {
                handle: handle.clone(),
            }) as Arc<dyn ReplicationControl>
        }),
        dns: targets.dns,
        lbs: targets.lbs,
        notifier: Arc::new(EventNotifier {
            ctx: ctx.clone(),
            reference: so.object_ref(&()),
            audit: audit.clone(),
            start,
            first_step,
        }),
        max_lag: pair.spec.replication.max_lag_for_switchover.as_std(),
        drain_bound: ctx.opts.drain_bound,
        verify_within: ctx.opts.verify_within,
        failpoint: ctx.opts.failpoint.clone(),
    };
    let m = super::metrics::metrics();
    m.switchover_running
        .with_label_values(&[&namespace, &so.spec.pair])
        .set(1);
    m.switchover_started_timestamp_seconds
        .with_label_values(&[&namespace, &so.spec.pair])
        .set(chrono::Utc::now().timestamp() as f64);
    let trigger = format!("{:?}", so.spec.trigger).to_lowercase();
    let pair_name = so.spec.pair.clone();
    tokio::spawn(async move {
        let result = executor.run(status.filter(|s| !s.steps.is_empty())).await;
        lock(&ctx.executing).remove(&format!("{pk}#{name}"));
        m.switchover_running
            .with_label_values(&[&namespace, &pair_name])
            .set(0);
        match result {
            Ok(st) if st.phase.is_finished() => {
                audit.record(
                    crate::audit::kind::SWITCHOVER_FINISHED,
                    serde_json::json!({
                        "name": name, "phase": st.phase, "recordsLost": st.records_lost,
                        "durationMs": st.duration_ms, "message": st.message, "dryRun": executor.spec.dry_run,
                    }),
                );
                let result = if st.phase == SwitchoverPhase::Succeeded {
                    "succeeded"
                } else {
                    "failed"
                };
                // A cancelled switchover moved nothing: it is neither a success nor a failure.
                if !executor.spec.dry_run && st.phase != SwitchoverPhase::Cancelled {
                    m.failovers_total
                        .with_label_values(&[&namespace, &pair_name, &trigger, result])
                        .inc();
                    if let Some(ms) = st.duration_ms {
                        m.failover_duration_seconds
                            .with_label_values(&[&trigger])
                            .observe(ms as f64 / 1000.0);
                    }
                }
                // Dry runs and drill rehearsals never fence nor set the intent.
                if !executor.spec.dry_run && executor.spec.trigger != Trigger::Drill {
                    recover_after_failure(&ctx, &worker, &st).await;
                }
                worker.mark_dirty();
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(switchover = %name, error = %e, "switchover interrupted; it resumes on the next reconcile")
            }
        }
    });
    Ok(Action::requeue(Duration::from_secs(10)))
}

async fn fail(
    api: &Api<Switchover>,
    name: &str,
    message: String,
    audit: Option<&Audit>,
) -> Result<(), Error> {
    let now = super::conditions::rfc3339(chrono::Utc::now());
    let patch = serde_json::json!({ "status": { "phase": "Failed", "message": message, "finishedAt": now } });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    if let Some(a) = audit {
        a.record(
            crate::audit::kind::SWITCHOVER_FINISHED,
            serde_json::json!({ "name": name, "phase": "Failed", "message": message }),
        );
    }
    Ok(())
}

/// Mark a Switchover that has not started Cancelled, if it is still the version read.
async fn cancel(
    ctx: &Context,
    api: &Api<Switchover>,
    so: &Switchover,
    by: &str,
    audit: &Audit,
) -> Result<(), Error> {
    let name = so.name_any();
    let message = format!("cancelled by {by} before it started; nothing was changed");
    let now = super::conditions::rfc3339(chrono::Utc::now());
    let patch = serde_json::json!({
        "metadata": { "resourceVersion": so.metadata.resource_version },
        "status": { "phase": "Cancelled", "message": message, "finishedAt": now },
    });
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        // Changed meanwhile: the newer version is reconciled next.
        Err(kube::Error::Api(e)) if e.code == 409 => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    audit.record(
        crate::audit::kind::SWITCHOVER_CANCELLED,
        serde_json::json!({ "name": name, "by": by }),
    );
    ctx.event(&so.object_ref(&()), false, "Cancelled", "Cancel", message)
        .await;
    Ok(())
}

/// What to undo after a switchover failed.
#[derive(Debug, PartialEq, Eq)]
struct AfterFailure {
    /// The source was fenced and never reversed: start replication again from the
    /// active side (it resumes from the checkpoint the fence wrote).
    restart_replication: bool,
    /// No traffic step ran: withdraw `status.targetSide`, the pair is not moving.
    withdraw_intent: bool,
}

/// Pure: a failed switchover that never touched traffic leaves the pair as it was.
/// One that touched traffic (even a flip that failed) is left for humans to look at.
fn after_failure(st: &SwitchoverStatus) -> AfterFailure {
    let state = |n: &str| st.steps.iter().find(|s| s.name == n).map(|s| s.state);
    let touched = ["flip-dns", "flip-lb", "restore-dns", "restore-lb"]
        .iter()
        .any(|n| {
            matches!(
                state(n),
                Some(StepState::Succeeded | StepState::Failed | StepState::Running)
            )
        });
    let failed = st.phase == SwitchoverPhase::Failed;
    let fenced = matches!(
        state("fence"),
        Some(StepState::Succeeded | StepState::Failed)
    );
    let reversed = state("reverse") == Some(StepState::Succeeded);
    AfterFailure {
        restart_replication: failed && !touched && fenced && !reversed,
        withdraw_intent: failed && !touched,
    }
}

async fn recover_after_failure(ctx: &Context, worker: &Arc<PairWorker>, st: &SwitchoverStatus) {
    let todo = after_failure(st);
    if todo.restart_replication {
        *lock(&worker.fence_offsets) = None;
        let fenced = worker.pipeline.lock().await.take();
        if let Some(p) = fenced
            && let Err(e) = p.stop().await
        {
            tracing::warn!(pair = %worker.name, error = %e, "stopping the fenced pipeline was not clean");
        }
        tracing::info!(pair = %worker.name, "switchover failed before traffic moved: replication resumes from the active side");
    }
    if todo.withdraw_intent {
        {
            let mut state = lock(&worker.state);
            state.target = None;
            state.dirty = true;
        }
        let pairs: Api<AccountPair> = Api::namespaced(ctx.client.clone(), &worker.namespace);
        let patch = serde_json::json!({ "status": { "targetSide": null } });
        if let Err(e) = pairs
            .patch_status(&worker.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(pair = %worker.name, error = %e, "withdrawing the switchover's intent failed");
        }
    }
}

/// Names of the gates a precheck message reports as overridden by force.
fn forced_gates(message: &str) -> Vec<String> {
    message
        .split("; ")
        .filter(|g| g.contains("overridden by force"))
        .map(|g| g.trim().to_string())
        .collect()
}

/// The worker's replication, plus the failback's level comparison.
struct PairReplication {
    handle: Arc<WorkerHandle>,
}

#[async_trait]
impl ReplicationControl for PairReplication {
    async fn fence(&self) -> Result<(), String> {
        self.handle.fence().await
    }
    async fn drain(&self, bound: Duration) -> Result<u64, String> {
        self.handle.drain(bound).await
    }
    async fn reverse(&self, new_active: crate::api::Side, epoch: &str) -> Result<(), String> {
        self.handle.reverse(new_active, epoch).await
    }
    fn lag(&self) -> Option<Duration> {
        self.handle.lag()
    }
    async fn level(&self) -> Result<String, String> {
        self.handle.0.level(Duration::from_secs(60)).await
    }
}

pub fn error_policy(_so: Arc<Switchover>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "switchover reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_before_any_traffic_step_resumes_replication_and_withdraws_the_intent() {
        use crate::api::switchover::StepStatus;
        let st = |states: &[(&str, StepState)]| SwitchoverStatus {
            phase: SwitchoverPhase::Failed,
            steps: states
                .iter()
                .map(|(n, s)| StepStatus {
                    name: n.to_string(),
                    state: *s,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        use StepState::*;
        let level = st(&[
            ("precheck", Succeeded),
            ("fence", Succeeded),
            ("drain", Succeeded),
            ("verify-level", Failed),
            ("flip-dns", Pending),
            ("flip-lb", Pending),
            ("reverse", Pending),
        ]);
        assert_eq!(
            after_failure(&level),
            AfterFailure {
                restart_replication: true,
                withdraw_intent: true
            }
        );
        let gate = st(&[
            ("precheck", Failed),
            ("fence", Pending),
            ("flip-dns", Pending),
        ]);
        assert_eq!(
            after_failure(&gate),
            AfterFailure {
                restart_replication: false,
                withdraw_intent: true
            }
        );
        let split = st(&[
            ("precheck", Succeeded),
            ("fence", Succeeded),
            ("drain", Succeeded),
            ("flip-dns", Failed),
        ]);
        assert_eq!(
            after_failure(&split),
            AfterFailure {
                restart_replication: false,
                withdraw_intent: false
            },
            "a flip that failed is left for humans"
        );
        let mut ok = level.clone();
        ok.phase = SwitchoverPhase::Succeeded;
        assert!(!after_failure(&ok).withdraw_intent);
    }

    #[test]
    fn forced_gates_are_found_in_the_precheck_message() {
        let msg = "target-not-active: pass — traffic moves from primary to standby; \
                   target-healthy: pass — standby is Healthy; \
                   lag: FAIL (overridden by force) — lag 9.0s > maxLagForSwitchover 5.0s";
        let g = forced_gates(msg);
        assert_eq!(g.len(), 1);
        assert!(g[0].starts_with("lag: FAIL"));
        assert!(forced_gates("target-healthy: pass — standby is Healthy").is_empty());
    }
}
