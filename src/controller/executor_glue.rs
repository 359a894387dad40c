//! The worker as the Switchover executor sees it: replication control (fence, drain,
//! reverse) and the pair's view (verdicts, intent, recorded active side). Intent and
//! result are written to the AccountPair's status right away (two-phase, like
//! `targetPrimary`/`currentPrimary`), not left to the periodic status publisher.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kube::api::{Api, Patch, PatchParams};

use super::context::lock;
use super::worker::PairWorker;
use crate::api::account_pair::{FlipStatus, ObjectSummary};
use crate::api::{AccountPair, Side};
use crate::failover::executor::{PairView, ReplicationControl};

/// An `Arc<PairWorker>` the executor can hold.
pub struct WorkerHandle(pub Arc<PairWorker>);

impl WorkerHandle {
    async fn patch_status(&self, status: serde_json::Value) -> Result<(), String> {
        let ctx = self.0.ctx.upgrade().ok_or("operator shutting down")?;
        if !ctx.leader.may_act() {
            return Err("this replica no longer holds the lease; stopping".into());
        }
        let api: Api<AccountPair> = Api::namespaced(ctx.client.clone(), &self.0.namespace);
        api.patch_status(
            &self.0.name,
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({ "status": status })),
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("updating the AccountPair status failed: {e}"))
    }
}

#[async_trait]
impl ReplicationControl for WorkerHandle {
    async fn fence(&self) -> Result<(), String> {
        let guard = self.0.pipeline.lock().await;
        let Some(p) = guard.as_ref() else {
            return Ok(());
        };
        let report = p
            .fence(Duration::from_secs(2))
            .await
            .map_err(|e| e.to_string())?;
        *lock(&self.0.fence_offsets) = Some(report.end_offsets);
        Ok(())
    }

    async fn drain(&self, bound: Duration) -> Result<u64, String> {
        let offsets = lock(&self.0.fence_offsets).clone().unwrap_or_default();
        let guard = self.0.pipeline.lock().await;
        let Some(p) = guard.as_ref() else {
            return Ok(0);
        };
        let report = p.drain(&offsets, std::time::Instant::now() + bound).await;
        Ok(report.records_lost)
    }

    async fn reverse(&self, new_active: Side, epoch: &str) -> Result<(), String> {
        let mut guard = self.0.pipeline.lock().await;
        if self.0.active() == new_active && guard.is_some() {
            return Ok(());
        }
        let Some(p) = guard.take() else {
            // No pipeline (e.g. it could not start): the replication loop starts one from
            // the new active side once the state says so.
            lock(&self.0.state).active = new_active;
            return Ok(());
        };
        let (pipeline, flip) = p.reverse(epoch).await.map_err(|e| e.to_string())?;
        let flip = FlipStatus {
            epoch: flip.epoch,
            source_cursor: flip.source_cursor,
            sink_offsets: flip
                .sink_offsets
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        };
        *guard = Some(pipeline);
        {
            let mut st = lock(&self.0.state);
            st.active = new_active;
            st.last_flip = Some(flip.clone());
            st.dirty = true;
        }
        drop(guard);
        self.patch_status(serde_json::json!({ "lastFlip": flip }))
            .await
    }

    fn lag(&self) -> Option<Duration> {
        let st = lock(&self.0.state);
        st.last_snapshot
            .as_ref()
            .map(|s| Duration::from_secs_f64(s.lag_seconds.max(0.0)))
    }
}

#[async_trait]
impl PairView for WorkerHandle {
    fn verdict(&self, side: Side) -> String {
        self.0.verdict_of(side).kind.as_str().to_string()
    }

    async fn intend(&self, to: Side, switchover: &str) -> Result<(), String> {
        {
            let mut st = lock(&self.0.state);
            st.target = Some(to);
            st.dirty = true;
        }
        self.patch_status(serde_json::json!({
            "targetSide": to,
            "phase": "SwitchingOver",
            "lastSwitchover": ObjectSummary { name: switchover.to_string(), result: Some("Running".into()), finished_at: None },
        }))
        .await
    }

    async fn record_active(&self, to: Side, switchover: &str) -> Result<(), String> {
        {
            let mut st = lock(&self.0.state);
            st.active = to;
            st.target = None;
            st.dirty = true;
        }
        self.patch_status(serde_json::json!({
            "activeSide": to,
            "targetSide": null,
            "lastSwitchover": ObjectSummary {
                name: switchover.to_string(),
                result: Some("Succeeded".into()),
                finished_at: Some(super::conditions::rfc3339(chrono::Utc::now())),
            },
        }))
        .await
    }
}
