//! The AccountPair controller, as a pipeline of steps: validate (pure) → ensure the
//! pair's task (replication, detection) runs for the current generation → report. A
//! finalizer stops the pair's pipeline cleanly (flush, commit) before the object goes.
//!
//! Requeue by error kind: an invalid spec waits for a change; a missing Secret is
//! retried slowly (it may be created later); transient API errors back off.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};

use super::conditions::{CondStatus, set_condition};
use super::context::{Context, lock, pair_key};
use super::pair::PairHandle;
use crate::api::{AccountPair, AccountPairSpec};

pub const FINALIZER: &str = "understudy.dev/replication";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

/// Checks the schema cannot make: the schedule parses with the cron library, the time
/// zone is a known IANA zone. Pure.
pub fn validate(spec: &AccountPairSpec) -> Result<(), String> {
    spec.drills
        .schedule
        .parse()
        .map_err(|e| format!("spec.drills.schedule: {e}"))?;
    spec.drills
        .time_zone
        .parse::<chrono_tz::Tz>()
        .map_err(|_| {
            format!(
                "spec.drills.timeZone {:?} is not an IANA time zone (e.g. Asia/Shanghai, UTC)",
                spec.drills.time_zone
            )
        })?;
    Ok(())
}

pub async fn reconcile(pair: Arc<AccountPair>, ctx: Arc<Context>) -> Result<Action, Error> {
    let shards = ctx.leader.shards();
    if shards > 1
        && let Some(shard) = super::shard_watch::label_to_set(pair.as_ref(), shards)
    {
        // Watched here by a label naming another shard (edited, or the shard count
        // changed): the right label moves it to the watch of its shard's holder.
        let api: Api<AccountPair> =
            Api::namespaced(ctx.client.clone(), &pair.namespace().unwrap_or_default());
        super::shard_watch::set_label(&api, &pair.name_any(), &shard).await?;
        return Ok(Action::await_change());
    }
    if !ctx
        .leader
        .may_act_for(&pair.namespace().unwrap_or_default(), &pair.name_any())
    {
        return Ok(ctx.not_ours("accountpair"));
    }
    let ns = pair.namespace().unwrap_or_default();
    let api: Api<AccountPair> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, pair, |event| async {
        match event {
            Finalizer::Apply(p) => apply(p, ctx.clone()).await,
            Finalizer::Cleanup(p) => cleanup(p, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

async fn apply(pair: Arc<AccountPair>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = pair.namespace().unwrap_or_default();
    let name = pair.name_any();
    let key = pair_key(&ns, &name);
    let generation = pair.metadata.generation.unwrap_or(0);
    let running = ctx.pair(&ns, &name);
    if let Some(w) = &running
        && w.generation != generation
        && lock(&ctx.executing).contains_key(&key)
    {
        // The spec changed (valid or not): never swap or stop the pair's task under a
        // running switchover; the change is taken once it ends.
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    if let Err(msg) = validate(&pair.spec) {
        stop_pair(&ctx, &key).await;
        report_problem(&ctx, &pair, "InvalidSpec", &msg).await?;
        return Ok(Action::await_change());
    }
    if let Some(w) = running {
        if w.generation == generation {
            return Ok(Action::requeue(Duration::from_secs(60)));
        }
        stop_pair(&ctx, &key).await;
    }
    match PairHandle::start(&ctx.env, &pair).await {
        Ok(w) => {
            lock(&ctx.pairs).insert(key.clone(), w);
            // The pair's shard may have gone while it started: then it must not run
            // here (the shard's holder starts it). Checked after the insert, so either
            // this sees the loss or the leadership watch, which looks at every pair
            // running, does.
            if !ctx.leader.may_act_for(&ns, &name) {
                if let Some(w) = lock(&ctx.pairs).remove(&key) {
                    w.abort();
                    super::metrics::forget_pair(&ns, &name, false);
                }
                return Ok(ctx.not_ours("accountpair"));
            }
            count_pairs(&ctx);
            ctx.event(
                &pair.object_ref(&()),
                false,
                "Started",
                "Replicate",
                format!("replication and detection started (generation {generation})"),
            )
            .await;
            Ok(Action::requeue(Duration::from_secs(60)))
        }
        Err(e) if e.is_user_error() => {
            report_problem(&ctx, &pair, "ConfigurationError", &e.to_string()).await?;
            Ok(Action::requeue(Duration::from_secs(15)))
        }
        Err(e) => {
            tracing::warn!(pair = %name, error = %e, "starting the pair failed; retrying");
            Ok(Action::requeue(Duration::from_secs(5)))
        }
    }
}

async fn cleanup(pair: Arc<AccountPair>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (ns, name) = (pair.namespace().unwrap_or_default(), pair.name_any());
    let key = pair_key(&ns, &name);
    stop_pair(&ctx, &key).await;
    count_pairs(&ctx);
    // A deleted pair leaves no series behind (a stale status would keep an alert
    // firing, a stale last-drill time would raise DrillOverdue a month later).
    super::metrics::forget_pair(&ns, &name, true);
    ctx.audit.forget(&ns, &name);
    ctx.event(
        &pair.object_ref(&()),
        false,
        "Stopped",
        "Delete",
        "replication stopped cleanly; the pair is deleted".into(),
    )
    .await;
    Ok(Action::await_change())
}

async fn stop_pair(ctx: &Context, key: &str) {
    let w = lock(&ctx.pairs).remove(key);
    if let Some(w) = w {
        w.stop(std::time::Duration::from_secs(30)).await;
    }
}

fn count_pairs(ctx: &Context) {
    let workers = lock(&ctx.pairs);
    let m = super::metrics::metrics();
    m.pairs.reset();
    for w in workers.values() {
        m.pairs.with_label_values(&[&w.namespace]).inc();
    }
}

async fn report_problem(
    ctx: &Context,
    pair: &AccountPair,
    reason: &str,
    message: &str,
) -> Result<(), Error> {
    let ns = pair.namespace().unwrap_or_default();
    let api: Api<AccountPair> = Api::namespaced(ctx.client.clone(), &ns);
    let mut status = pair.status.clone().unwrap_or_default();
    let g = pair.metadata.generation;
    let changed = set_condition(
        &mut status.conditions,
        "Ready",
        CondStatus::False,
        reason,
        message,
        g,
        Utc::now(),
    );
    if changed || status.phase.as_deref() != Some("Invalid") {
        // Only the fields this writes, and only over the version it read: a status the
        // pair's task wrote meanwhile (active side, last flip, seen notices) is never
        // overwritten with the cached copy; on a conflict the reconcile runs again.
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": pair.metadata.resource_version },
            "status": {
                "conditions": status.conditions,
                "phase": "Invalid",
                "observedGeneration": g,
            }
        });
        api.patch_status(
            &pair.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        ctx.event(
            &pair.object_ref(&()),
            true,
            reason,
            "Validate",
            message.to_string(),
        )
        .await;
    }
    Ok(())
}

pub fn error_policy(_pair: Arc<AccountPair>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "account pair reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> AccountPairSpec {
        serde_json::from_value(serde_json::json!({
            "primary": { "endpoint": "http://a", "accountId": "a", "credentialsSecretRef": { "name": "s" } },
            "standby": { "endpoint": "http://b", "accountId": "b", "credentialsSecretRef": { "name": "s" } },
            "replication": { "kafka": { "bootstrapServers": "k:9092" } }
        }))
        .unwrap()
    }

    #[test]
    fn default_spec_is_valid() {
        assert!(validate(&spec()).is_ok());
    }

    #[test]
    fn unknown_time_zone_is_reported_with_the_field() {
        let mut s = spec();
        s.drills.time_zone = "Mars/Olympus".into();
        let e = validate(&s).unwrap_err();
        assert!(
            e.contains("spec.drills.timeZone") && e.contains("Mars/Olympus"),
            "{e}"
        );
    }
}
