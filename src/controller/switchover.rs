//! The Switchover controller: runs each unfinished Switchover through the one executor
//! (`failover::executor`), on the Lease holder only, one switchover per pair at a time.
//!
//! One at a time, rehearsals included: a pair executes at most one Switchover in this
//! process. A production switchover that finds the pair's drill rehearsal executing
//! waits for it (it is short); a rehearsal that finds a production switchover
//! executing is refused (the drill reports why). So a rehearsal and a production move
//! never overlap, in either order.
//!
//! Cancel: people may not write a Switchover's status, so `kubectl understudy cancel`
//! sets the [`CANCEL_REQUESTED_BY`] annotation with a resourceVersion precondition. A
//! Switchover that carries it and has not started is marked Cancelled here and never
//! runs; the executor's first status write carries the resourceVersion it was started
//! from, so a cancel (or an emergency superseding it) that lands in between makes that
//! write fail instead of racing it. Every start, step result, forced gate, cancel and
//! finish goes to the audit trail, and the pair's task hears of every end.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::context::{Context, Executing, lock, pair_key};
use super::executor_glue::{Audit, EventNotifier, KubeStore, PairAdapter};
use super::pair::{Finished, PairHandle};
use crate::api::switchover::{StepState, SwitchoverMode, SwitchoverPhase, Trigger};
use crate::api::{AccountPair, Switchover};
use crate::failover::executor::{ExecError, Executor, ReplicationControl};

/// Annotation set by `kubectl understudy cancel` (value: who asked).
pub const CANCEL_REQUESTED_BY: &str = "understudy.dev/cancel-requested-by";
/// When the cancel was asked (RFC 3339).
pub const CANCEL_REQUESTED_AT: &str = "understudy.dev/cancel-requested-at";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// What the pair's executing slot says about this switchover.
#[derive(Debug, PartialEq, Eq)]
enum Slot {
    /// Taken for this switchover now.
    Taken,
    /// This switchover already executes here.
    Mine,
    /// A rehearsal executes: a production switchover waits for it.
    WaitForRehearsal(String),
    /// A production switchover executes: refuse (`rehearsal`: this one is a rehearsal).
    Busy { other: String, rehearsal: bool },
}

/// Pure: may `name` (with `trigger`) take the pair's slot, given what holds it?
fn slot(current: Option<&Executing>, name: &str, trigger: Trigger) -> Slot {
    match current {
        None => Slot::Taken,
        Some(e) if e.name == name => Slot::Mine,
        Some(e) if e.trigger == Trigger::Drill && trigger != Trigger::Drill => {
            Slot::WaitForRehearsal(e.name.clone())
        }
        Some(e) => Slot::Busy {
            other: e.name.clone(),
            rehearsal: trigger == Trigger::Drill,
        },
    }
}

pub async fn reconcile(so: Arc<Switchover>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = so.namespace().unwrap_or_default();
    if !ctx.leader.may_act_for(&namespace, &so.spec.pair) && !ctx.is_shutting_down() {
        return Ok(ctx.not_ours("switchover"));
    }
    if ctx.is_shutting_down() {
        super::metrics::metrics()
            .dropped_work_total
            .with_label_values(&["switchover"])
            .inc();
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    if so.status.as_ref().is_some_and(|s| s.phase.is_finished()) {
        return Ok(Action::await_change());
    }
    let name = so.name_any();
    let api: Api<Switchover> = Api::namespaced(ctx.client.clone(), &namespace);
    let pairs: Api<AccountPair> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(handle) = ctx.pair(&namespace, &so.spec.pair) else {
        // No task for the pair here: a pair that does not exist fails the switchover;
        // one whose task is (re)starting is waited for.
        if pairs.get_opt(&so.spec.pair).await?.is_none() {
            fail(&api, &name, pair_not_found(&namespace, &so.spec.pair), None).await?;
            return Ok(Action::await_change());
        }
        return Ok(Action::requeue(Duration::from_secs(1)));
    };
    let audit = Audit {
        sink: ctx.audit.clone(),
        kafka: handle.audit_kafka(),
        namespace: namespace.clone(),
        pair: so.spec.pair.clone(),
    };
    let pk = pair_key(&namespace, &so.spec.pair);
    let taken = {
        let mut executing = lock(&ctx.executing);
        let s = slot(executing.get(&pk), &name, so.spec.trigger);
        if s == Slot::Taken {
            executing.insert(
                pk.clone(),
                Executing {
                    name: name.clone(),
                    trigger: so.spec.trigger,
                    task: None,
                },
            );
        }
        s
    };
    match taken {
        Slot::Taken => {}
        Slot::Mine => {
            // Running here: tell people once if it runs past the bound.
            ctx.notifications.switchover_stuck(
                &namespace,
                &name,
                &so.spec,
                so.status.as_ref(),
                handle.active(),
            );
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
        Slot::WaitForRehearsal(other) => {
            tracing::info!(switchover = %name, rehearsal = %other, "waiting for the pair's drill rehearsal to finish");
            return Ok(Action::requeue(Duration::from_millis(500)));
        }
        Slot::Busy { other, rehearsal } => {
            let msg = if rehearsal {
                format!(
                    "the production switchover {other} of pair {} is running; the rehearsal was not started (a rehearsal never overlaps a production switchover)",
                    so.spec.pair
                )
            } else {
                format!(
                    "another switchover ({other}) is running for pair {}; wait for it to finish",
                    so.spec.pair
                )
            };
            fail(&api, &name, msg, Some(&audit)).await?;
            return Ok(Action::await_change());
        }
    }
    let release = || {
        let mut executing = lock(&ctx.executing);
        if executing.get(&pk).is_some_and(|e| e.name == name) {
            executing.remove(&pk);
        }
    };
    match prepare(&ctx, &api, &pairs, &handle, &name, &audit).await {
        Ok(Some((executor, status))) => {
            spawn_executor(ctx.clone(), handle, executor, status, audit, pk);
            Ok(Action::requeue(Duration::from_secs(10)))
        }
        Ok(None) => {
            release();
            Ok(Action::await_change())
        }
        Err(Prepared::Later(action)) => {
            release();
            Ok(action)
        }
        Err(Prepared::Failed(e)) => {
            release();
            Err(e)
        }
    }
}

enum Prepared {
    Later(Action),
    Failed(Error),
}

impl From<kube::Error> for Prepared {
    fn from(e: kube::Error) -> Self {
        Prepared::Failed(e.into())
    }
}

impl From<Error> for Prepared {
    fn from(e: Error) -> Self {
        Prepared::Failed(e)
    }
}

fn pair_not_found(namespace: &str, pair: &str) -> String {
    format!("AccountPair {pair:?} not found in namespace {namespace}")
}

/// With the pair's slot held: decide on the stored object (not the watch cache, which
/// may lag behind a run that just ended) and build the executor. `Ok(None)`: nothing to
/// run (finished, cancelled, refused). The Switchover and its pair are read at once:
/// under load each read waits on the API server, and this is on the way from a freeze
/// notice to the traffic moved.
async fn prepare(
    ctx: &Arc<Context>,
    api: &Api<Switchover>,
    pairs: &Api<AccountPair>,
    handle: &Arc<PairHandle>,
    name: &str,
    audit: &Audit,
) -> Result<Option<(Executor, Option<crate::api::switchover::SwitchoverStatus>)>, Prepared> {
    let pair_name = handle.name.clone();
    let (so, pair) = tokio::join!(api.get_opt(name), pairs.get_opt(&pair_name));
    let Some(so) = so? else {
        return Ok(None);
    };
    let Some(pair) = pair? else {
        if !so.status.as_ref().is_some_and(|s| s.phase.is_finished()) {
            let namespace = so.namespace().unwrap_or_default();
            fail(api, name, pair_not_found(&namespace, &pair_name), None).await?;
        }
        return Ok(None);
    };
    let pair = &pair;
    let status = so.status.clone();
    if status.as_ref().is_some_and(|s| s.phase.is_finished()) {
        return Ok(None);
    }
    let started = status.as_ref().is_some_and(|s| !s.steps.is_empty());
    if let Some(by) = so.annotations().get(CANCEL_REQUESTED_BY).cloned()
        && !started
    {
        cancel(ctx, api, &so, &by, audit).await?;
        return Ok(None);
    }
    // A planned switchover's lag gate needs replication's report: after a (re)start of
    // the pair's task, wait for it rather than fail on "lag unknown".
    let prechecked = status.as_ref().is_some_and(|s| {
        s.steps
            .iter()
            .any(|st| st.name == "precheck" && st.state == StepState::Succeeded)
    });
    if so.spec.mode == SwitchoverMode::Planned
        && so.spec.trigger != Trigger::Drill
        && !prechecked
        && handle.replication_warming_up()
    {
        return Err(Prepared::Later(Action::requeue(Duration::from_millis(500))));
    }
    // Likewise the health gate needs the target side observed once (a resumed or fresh
    // switchover right after a restart would otherwise find it "Unknown").
    if !prechecked && handle.detection_warming_up(so.spec.to) {
        return Err(Prepared::Later(Action::requeue(Duration::from_millis(200))));
    }
    let traffic = if so.spec.trigger == Trigger::Drill {
        match crate::drills::rehearsal_traffic(&pair.spec) {
            Ok(t) => t.clone(),
            Err(msg) => {
                fail(api, name, msg, Some(audit)).await?;
                return Ok(None);
            }
        }
    } else {
        pair.spec.traffic.clone()
    };
    let namespace = so.namespace().unwrap_or_default();
    let guard = super::guard::WriteGuard::for_pair(&ctx.leader, &namespace, &so.spec.pair);
    let targets = match super::targets::build(&ctx.client, &namespace, &traffic, &guard).await {
        Ok(t) => t,
        Err(e) => {
            fail(
                api,
                name,
                format!("cannot build the traffic targets: {e}"),
                Some(audit),
            )
            .await?;
            return Ok(None);
        }
    };
    let adapter = Arc::new(PairAdapter(handle.clone()));
    let first_step = crate::failover::plan::plan(&so.spec)
        .first()
        .map(|s| s.name().to_string())
        .unwrap_or_default();
    let start = serde_json::json!({
        "name": name, "from": handle.active(), "to": so.spec.to, "mode": so.spec.mode,
        "trigger": so.spec.trigger, "reason": so.spec.reason, "requestedBy": so.spec.requested_by,
        "dryRun": so.spec.dry_run, "force": so.spec.force,
    });
    let executor = Executor {
        name: name.to_string(),
        spec: so.spec.clone(),
        active: handle.active(),
        store: Arc::new(KubeStore {
            api: api.clone(),
            name: name.to_string(),
            pair: (namespace.clone(), so.spec.pair.clone()),
            ctx: ctx.clone(),
            precondition: std::sync::Mutex::new(
                (!started)
                    .then(|| so.metadata.resource_version.clone())
                    .flatten(),
            ),
        }),
        pair: adapter.clone(),
        replication: (so.spec.trigger != Trigger::Drill)
            .then(|| adapter.clone() as Arc<dyn ReplicationControl>),
        dns: targets.dns,
        lbs: targets.lbs,
        notifier: Arc::new(EventNotifier {
            ctx: ctx.clone(),
            reference: so.object_ref(&()),
            audit: audit.clone(),
            start,
            first_step,
            tell: (so.spec.trigger != Trigger::Drill && !so.spec.dry_run).then(|| {
                super::executor_glue::Tell {
                    from: handle.active(),
                    to: so.spec.to,
                    automatic: so.spec.trigger == Trigger::Automatic,
                }
            }),
        }),
        max_lag: pair.spec.replication.max_lag_for_switchover.as_std(),
        drain_bound: ctx.opts.drain_bound,
        verify_within: ctx.opts.verify_within,
        failpoint: ctx.opts.failpoint.clone(),
        shutdown: Some(ctx.shutting_down()),
    };
    Ok(Some((executor, status.filter(|s| !s.steps.is_empty()))))
}

fn spawn_executor(
    ctx: Arc<Context>,
    handle: Arc<PairHandle>,
    executor: Executor,
    status: Option<crate::api::switchover::SwitchoverStatus>,
    audit: Audit,
    pk: String,
) {
    let m = super::metrics::metrics();
    let namespace = handle.namespace.clone();
    let pair_name = executor.spec.pair.clone();
    m.switchover_running
        .with_label_values(&[&namespace, &pair_name])
        .set(1);
    m.switchover_started_timestamp_seconds
        .with_label_values(&[&namespace, &pair_name])
        .set(chrono::Utc::now().timestamp() as f64);
    let trigger = format!("{:?}", executor.spec.trigger).to_lowercase();
    let name = executor.name.clone();
    let (ctx2, pk2, name2) = (ctx.clone(), pk.clone(), name.clone());
    let (ns2, pair2) = (namespace.clone(), pair_name.clone());
    let task = tokio::spawn(async move {
        let result = executor.run(status).await;
        {
            let mut executing = lock(&ctx.executing);
            if executing.get(&pk).is_some_and(|e| e.name == name) {
                executing.remove(&pk);
            }
        }
        m.switchover_running
            .with_label_values(&[&namespace, &pair_name])
            .set(0);
        match result {
            Ok(st) if st.phase.is_finished() => {
                audit.record(
                    crate::audit::kind::SWITCHOVER_FINISHED,
                    serde_json::json!({
                        "name": name, "phase": st.phase, "recordsLost": st.records_lost,
                        "recordsLostUnknown": st.records_lost_unknown,
                        "durationMs": st.duration_ms, "message": st.message, "dryRun": executor.spec.dry_run,
                    }),
                );
                let result = if st.phase == SwitchoverPhase::Succeeded {
                    "succeeded"
                } else {
                    "failed"
                };
                // A cancelled switchover moved nothing: it is neither a success nor a
                // failure; a drill's rehearsal moves only the drill's own targets and a
                // dry run nothing: neither is a failover.
                if !executor.spec.dry_run
                    && executor.spec.trigger != Trigger::Drill
                    && st.phase != SwitchoverPhase::Cancelled
                {
                    tell_finished(&ctx, &handle, &name, &executor.spec, &st);
                    m.failovers_total
                        .with_label_values(&[&namespace, &pair_name, &trigger, result])
                        .inc();
                    if let Some(ms) = st.duration_ms {
                        m.failover_duration_seconds
                            .with_label_values(&[&trigger])
                            .observe(ms as f64 / 1000.0);
                    }
                }
                handle
                    .switchover_finished(Finished {
                        name: name.clone(),
                        spec: executor.spec.clone(),
                        status: st,
                    })
                    .await;
            }
            Ok(_) => {}
            Err(ExecError::NotYet(t)) => {
                tracing::debug!(switchover = %name, not_before = %t, "waiting for notBefore")
            }
            Err(e) => {
                tracing::warn!(switchover = %name, error = %e, "switchover interrupted; it resumes on the next reconcile")
            }
        }
    });
    // The slot learns its task (unless the task already ended and freed it, or the
    // Lease went meanwhile and the slot was emptied: then the task must not run on).
    let mut executing = lock(&ctx2.executing);
    match executing.get_mut(&pk2) {
        Some(e) if e.name == name2 => e.task = Some(task.abort_handle()),
        _ if !task.is_finished() && !ctx2.leader.may_act_for(&ns2, &pair2) => task.abort(),
        _ => {}
    }
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

pub fn error_policy(_so: Arc<Switchover>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "switchover reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

/// A production switchover's end, told to people: which side serves traffic now and,
/// for a success, how many changes did not reach it.
fn tell_finished(
    ctx: &Context,
    handle: &PairHandle,
    name: &str,
    spec: &crate::api::SwitchoverSpec,
    st: &crate::api::switchover::SwitchoverStatus,
) {
    use crate::notify::Event;
    let (serving, event) = if st.phase == SwitchoverPhase::Succeeded {
        let event = Event::FailoverSucceeded {
            to: spec.to,
            switchover: name.to_string(),
            records_lost: st.records_lost.map_or(0, |n| n.max(0) as u64),
        };
        (spec.to, event)
    } else {
        let event = Event::FailoverFailed {
            switchover: name.to_string(),
            reason: st.message.clone().unwrap_or_else(|| "failed".into()),
        };
        (handle.active(), event)
    };
    ctx.notifications
        .send(&handle.namespace, &handle.name, serving, event);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(name: &str, trigger: Trigger) -> Executing {
        Executing {
            name: name.into(),
            trigger,
            task: None,
        }
    }

    #[test]
    fn a_rehearsal_and_a_production_switchover_never_run_together_in_either_order() {
        // A production switchover arriving during a rehearsal waits for it.
        assert_eq!(
            slot(
                Some(&running("d-rehearsal", Trigger::Drill)),
                "p-failover",
                Trigger::Automatic
            ),
            Slot::WaitForRehearsal("d-rehearsal".into())
        );
        assert_eq!(
            slot(
                Some(&running("d-rehearsal", Trigger::Drill)),
                "manual",
                Trigger::Manual
            ),
            Slot::WaitForRehearsal("d-rehearsal".into())
        );
        // A rehearsal arriving during a production switchover is refused.
        assert_eq!(
            slot(
                Some(&running("p-failover", Trigger::Automatic)),
                "d-rehearsal",
                Trigger::Drill
            ),
            Slot::Busy {
                other: "p-failover".into(),
                rehearsal: true
            }
        );
        // Two production switchovers: the second is refused, as before.
        assert_eq!(
            slot(Some(&running("a", Trigger::Manual)), "b", Trigger::Manual),
            Slot::Busy {
                other: "a".into(),
                rehearsal: false
            }
        );
        assert_eq!(slot(None, "b", Trigger::Drill), Slot::Taken);
        assert_eq!(
            slot(Some(&running("b", Trigger::Drill)), "b", Trigger::Drill),
            Slot::Mine
        );
    }
}
