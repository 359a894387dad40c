//! The pair's task noting a change of `spec.paused` made without `kubectl understudy
//! pause/resume`: the audit record, then the `Paused` condition that says it is recorded
//! (the decision is `pause_record::decide`).

use super::*;
use crate::controller::conditions::{get, set_condition};
use crate::controller::pair::pause_record::{CONDITION, decide};

impl PairActor {
    /// Once per task (every spec change starts a new one), on the Lease holder: compare
    /// `spec.paused` with the `Paused` condition as stored now; queue the audit record of
    /// a change, then write the condition over the version read. A conflict (another
    /// writer of the status) is retried on the next tick without a second record.
    pub(super) async fn note_pause(&mut self) {
        if !self.may_act() {
            return;
        }
        let Some(seen) = self.pause_unnoted.clone() else {
            return;
        };
        let api: Api<AccountPair> = Api::namespaced(self.env.client.clone(), &self.ns);
        let fresh = match api.get_status(&self.name).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(pair = %self.name, error = %e, "reading the pair's status failed; the pause state is looked at again");
                return;
            }
        };
        let mut status = fresh.status.clone().unwrap_or_default();
        let decision = decide(&seen, get(&status.conditions, CONDITION));
        if let Some((kind, data)) = decision.record
            && !self.pause_recorded
        {
            tracing::info!(pair = %self.name, kind, changed_by = ?seen.setter.as_ref().map(|s| &s.manager), "spec.paused changed without kubectl understudy; recording it in the audit trail");
            self.audit(kind, data);
            self.pause_recorded = true;
        }
        let Some(c) = decision.condition else {
            self.pause_unnoted = None;
            return;
        };
        set_condition(
            &mut status.conditions,
            CONDITION,
            c.paused.into(),
            c.reason,
            &c.message,
            Some(self.generation),
            Utc::now(),
        );
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": fresh.metadata.resource_version },
            "status": { "conditions": status.conditions },
        });
        match api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(p) => {
                self.stored = p.status.unwrap_or_default();
                self.pause_unnoted = None;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                tracing::debug!(pair = %self.name, "the status changed meanwhile; writing the Paused condition again");
            }
            Err(e) => {
                tracing::warn!(pair = %self.name, error = %e, "writing the Paused condition failed; retrying")
            }
        }
    }
}
