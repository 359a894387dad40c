//! The Switchover controller: runs each unfinished Switchover through the one executor
//! (`failover::executor`), on the Lease holder only, one switchover per pair at a time.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::context::{Context, lock, pair_key};
use super::executor_glue::WorkerHandle;
use crate::api::switchover::{StepState, SwitchoverPhase, SwitchoverStatus, Trigger};
use crate::api::{AccountPair, Switchover};
use crate::failover::executor::{Executor, Notifier, SwitchoverStore};

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
}

#[async_trait]
impl SwitchoverStore for KubeStore {
    async fn save(&self, status: &SwitchoverStatus) -> Result<(), String> {
        if !self.ctx.leader.may_act() {
            return Err("lost the lease: another replica takes over this switchover".into());
        }
        let patch = serde_json::json!({ "status": status });
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
        self.ctx
            .event(
                &self.reference,
                warning,
                reason,
                step,
                format!("{step}: {state:?} {message}"),
            )
            .await;
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
    let status = so.status.clone();
    if status.as_ref().is_some_and(|s| s.phase.is_finished()) {
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
        )
        .await?;
        return Ok(Action::await_change());
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
        fail(&api, &name, msg).await?;
        return Ok(Action::await_change());
    }
    let traffic = if so.spec.trigger == Trigger::Drill {
        pair.spec
            .drills
            .rehearsal_traffic
            .clone()
            .unwrap_or_default()
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
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    let handle = Arc::new(WorkerHandle(worker.clone()));
    let executor = Executor {
        name: name.clone(),
        spec: so.spec.clone(),
        active: worker.active(),
        store: Arc::new(KubeStore {
            api: api.clone(),
            name: name.clone(),
            ctx: ctx.clone(),
        }),
        pair: handle.clone(),
        replication: (so.spec.trigger != Trigger::Drill)
            .then(|| handle.clone() as Arc<dyn crate::failover::executor::ReplicationControl>),
        dns: targets.dns,
        lbs: targets.lbs,
        notifier: Arc::new(EventNotifier {
            ctx: ctx.clone(),
            reference: so.object_ref(&()),
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
                let result = if st.phase == SwitchoverPhase::Succeeded {
                    "succeeded"
                } else {
                    "failed"
                };
                if !executor.spec.dry_run {
                    m.failovers_total
                        .with_label_values(&[&namespace, &pair_name, &trigger, result])
                        .inc();
                    if let Some(ms) = st.duration_ms {
                        m.failover_duration_seconds
                            .with_label_values(&[&trigger])
                            .observe(ms as f64 / 1000.0);
                    }
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

async fn fail(api: &Api<Switchover>, name: &str, message: String) -> Result<(), Error> {
    let now = super::conditions::rfc3339(chrono::Utc::now());
    let patch = serde_json::json!({ "status": { "phase": "Failed", "message": message, "finishedAt": now } });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

pub fn error_policy(_so: Arc<Switchover>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "switchover reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}
