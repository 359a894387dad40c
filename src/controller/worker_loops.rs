//! The worker's background loops. Each holds only a `Weak` reference, so dropping the
//! worker ends them; none holds a lock across an await.

use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::Utc;
use kube::api::{Api, Patch, PatchParams};

use super::context::lock;
use super::status::{StatusInput, build};
use super::worker::{PairWorker, poll_interval};
use crate::api::AccountPair;
use crate::detection::signal::Signal;
use crate::replication::pipeline::Pipeline;

/// Poll one side's status every `pollInterval` and feed the detector.
pub async fn poll_loop(worker: Weak<PairWorker>, side: crate::api::Side) {
    loop {
        let Some(w) = worker.upgrade() else { return };
        let interval = poll_interval(&w.spec);
        let provider = w.provider(side);
        // A poll that outlives the interval counts as no answer (never as a freeze).
        let at = Utc::now();
        let signal =
            match tokio::time::timeout(interval.max(Duration::from_secs(2)), provider.status())
                .await
            {
                Ok(result) => Signal::poll(side, at, result),
                Err(_) => Signal::poll_timeout(side, at, format!("no answer within {interval:?}")),
            };
        w.observe(signal).await;
        // While the active side stays stopped, re-evaluate: a hold-down may expire.
        if side == w.active() && w.verdict_of(side).kind.is_stopped() {
            super::trigger::evaluate(&w).await;
        }
        drop(w);
        tokio::time::sleep(interval).await;
    }
}

/// Keep the pipeline running from the active side; publish its snapshot; turn its
/// freeze errors into detector signals.
pub async fn replication_loop(worker: Weak<PairWorker>) {
    loop {
        let Some(w) = worker.upgrade() else { return };
        let mut guard = w.pipeline.lock().await;
        if guard.is_none() {
            match start_pipeline(&w).await {
                Ok(p) => {
                    *guard = Some(p);
                    lock(&w.state).pipeline_error = None;
                }
                Err(e) => {
                    tracing::warn!(pair = %w.name, error = %e, "replication pipeline could not start; retrying");
                    let mut st = lock(&w.state);
                    st.pipeline_error = Some(e);
                    st.dirty = true;
                }
            }
        }
        let snapshot = guard.as_ref().map(Pipeline::snapshot);
        drop(guard);
        if let Some(snap) = snapshot {
            let active = w.active();
            let source_error = snap.source_error.clone();
            lock(&w.state).last_snapshot = Some(snap);
            if let Some(err) = source_error
                && let Some(signal) = Signal::replication_error(active, Utc::now(), &err)
            {
                w.observe(signal).await;
            }
        }
        drop(w);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn start_pipeline(w: &Arc<PairWorker>) -> Result<Pipeline, String> {
    let Some(ctx) = w.ctx.upgrade() else {
        return Err("operator shutting down".into());
    };
    let extra = match &w.spec.replication.kafka.secret_ref {
        Some(r) => super::secrets::read_all(
            &ctx.client,
            &w.namespace,
            &r.name,
            "spec.replication.kafka.secretRef",
        )
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect(),
        None => Default::default(),
    };
    let active = w.active();
    let cfg = w.pipeline_config(active, w.start_position(), extra);
    Pipeline::start(cfg, w.provider(active), w.provider(active.other()))
        .await
        .map_err(|e| e.to_string())
}

/// Watch the active account's activity for risk-control warnings. Each event is fed to
/// the evaluator once: activity is fetched from the evaluator's watermark (the newest
/// event time seen) and events at or before it are dropped.
pub async fn risk_loop(worker: Weak<PairWorker>) {
    let started = Utc::now();
    loop {
        let Some(w) = worker.upgrade() else { return };
        let interval = poll_interval(&w.spec).max(Duration::from_secs(1));
        let provider = w.provider(w.active());
        let watermark = lock(&w.state).risk.watermark();
        let since = watermark.unwrap_or(started);
        if let Ok(events) = provider.activity(&super::conditions::rfc3339(since)).await {
            let fresh: Vec<_> = events
                .into_iter()
                .filter(|e| watermark.is_none_or(|wm| event_time(e).is_none_or(|t| t > wm)))
                .collect();
            let now = Utc::now();
            let (new, active) = {
                let mut st = lock(&w.state);
                let new = st.risk.observe(&fresh, now);
                let active = st.risk.active_findings(now);
                let changed = active.len() != st.risk_findings.len();
                st.risk_findings = active.clone();
                st.dirty |= changed || !new.is_empty();
                (new, active)
            };
            let m = super::metrics::metrics();
            for kind in crate::detection::risk::RiskKind::ALL {
                let on = active.iter().any(|f| f.kind == kind);
                m.risk_warning
                    .with_label_values(&[&w.namespace, &w.name, kind.as_str()])
                    .set(i64::from(on));
            }
            if let Some(ctx) = w.ctx.upgrade() {
                for f in new {
                    ctx.event(
                        &w.object_ref,
                        true,
                        "RiskWarning",
                        "Detect",
                        f.message.clone(),
                    )
                    .await;
                }
            }
        }
        drop(w);
        tokio::time::sleep(interval).await;
    }
}

fn event_time(e: &crate::provider::ActivityEvent) -> Option<chrono::DateTime<Utc>> {
    use crate::provider::ActivityEvent::*;
    let at = match e {
        Login { at, .. } | MemberAdd { at, .. } | Message { at, .. } => at,
    };
    chrono::DateTime::parse_from_rfc3339(at)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Publish the status when something changed (at most every 500 ms).
pub async fn status_loop(worker: Weak<PairWorker>) {
    let mut last: Option<serde_json::Value> = None;
    loop {
        let Some(w) = worker.upgrade() else { return };
        if let Some(ctx) = w.ctx.upgrade()
            && ctx.leader.is_leader()
        {
            let api: Api<AccountPair> = Api::namespaced(ctx.client.clone(), &w.namespace);
            match api.get_status(&w.name).await {
                Ok(stored) => {
                    let previous = stored.status.unwrap_or_default();
                    let status = {
                        let st = lock(&w.state);
                        let d = &st.detectors;
                        let input = StatusInput {
                            previous: &previous,
                            generation: w.generation,
                            paused: w.spec.paused,
                            active: st.active,
                            target: st.target,
                            verdicts: [
                                (d[0].verdict(), d[0].last_signal()),
                                (d[1].verdict(), d[1].last_signal()),
                            ],
                            snapshot: st.last_snapshot.as_ref(),
                            pipeline_error: st.pipeline_error.as_deref(),
                            page: st.page.as_deref(),
                            risk: &st.risk_findings,
                            last_flip: st.last_flip.clone(),
                            last_switchover: None,
                        };
                        build(&input, Utc::now())
                    };
                    let value = serde_json::to_value(&status).unwrap_or_default();
                    // Conditions carry transition times only; compare without volatile lag.
                    if last.as_ref() != Some(&value) {
                        // Only over the status it was built from: conditions are replaced
                        // as a whole, and another writer (the drill controller's
                        // DrillsPassing) may have changed them since (409: rebuilt next time).
                        let patch = serde_json::json!({
                            "metadata": { "resourceVersion": stored.metadata.resource_version },
                            "status": value,
                        });
                        match api
                            .patch_status(&w.name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                        {
                            Ok(_) => last = Some(value),
                            Err(kube::Error::Api(s)) if s.code == 409 => {
                                tracing::debug!(pair = %w.name, "the status changed meanwhile; rebuilding it")
                            }
                            Err(e) => {
                                tracing::warn!(pair = %w.name, error = %e, "status update failed")
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(pair = %w.name, error = %e, "reading the pair's status failed; status not updated")
                }
            }
            for side in [crate::api::Side::Primary, crate::api::Side::Standby] {
                let v = w.verdict_of(side);
                super::metrics::set_account_status(
                    &w.namespace,
                    &w.name,
                    side.as_str(),
                    v.kind.as_str(),
                );
            }
        }
        drop(w);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
