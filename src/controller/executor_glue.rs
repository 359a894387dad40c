//! The executor's traits over the running operator: the Switchover's status in the API
//! server ([`KubeStore`]), Events and audit records per step ([`EventNotifier`]), and
//! the pair's task and replication ([`PairAdapter`]). The pair's task persists the
//! intent, the flip and the result itself, right away (two-phase, like
//! `targetPrimary`/`currentPrimary`), not left to its periodic status write.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kube::api::{Api, Patch, PatchParams};

use super::context::{Context, lock};
use super::pair::PairHandle;
use crate::api::Side;
use crate::api::Switchover;
use crate::api::switchover::{StepState, SwitchoverStatus};
use crate::failover::executor::{Drained, Notifier, PairView, ReplicationControl, SwitchoverStore};
use crate::failover::plan::Gate;

/// Where a switchover's audit records go: the pair's Kafka, with its settings.
#[derive(Clone)]
pub struct Audit {
    pub sink: crate::audit::AuditSink,
    pub kafka: crate::audit::AuditKafka,
    pub namespace: String,
    pub pair: String,
}

impl Audit {
    pub fn record(&self, kind: &str, data: serde_json::Value) {
        self.sink
            .record_to(&self.kafka, kind, &self.namespace, &self.pair, data);
    }
}

/// Persists the Switchover's status; refuses once this replica lost the Lease, which
/// stops the executor at once.
pub struct KubeStore {
    pub api: Api<Switchover>,
    pub name: String,
    /// The switchover's pair (namespace, name): only the holder of its shard's Lease saves.
    pub pair: (String, String),
    pub ctx: Arc<Context>,
    /// resourceVersion the executor was started from, until its first write: a cancel
    /// (or a supersede) in between makes that write fail with a conflict.
    pub precondition: std::sync::Mutex<Option<String>>,
}

#[async_trait]
impl SwitchoverStore for KubeStore {
    fn may_save(&self) -> Result<(), String> {
        match self.ctx.leader.may_act_for(&self.pair.0, &self.pair.1) {
            true => Ok(()),
            false => Err("lost the lease: another replica takes over this switchover".into()),
        }
    }

    async fn save(&self, status: &SwitchoverStatus) -> Result<(), String> {
        self.may_save()?;
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

/// Events on the Switchover for every step, and the audit records.
pub struct EventNotifier {
    pub ctx: Arc<Context>,
    pub reference: k8s_openapi::api::core::v1::ObjectReference,
    pub audit: Audit,
    /// The spec, for the audit record of the start.
    pub start: serde_json::Value,
    pub first_step: String,
    /// Set for a production switchover (not a drill's rehearsal, not a dry run): its
    /// start is told to people.
    pub tell: Option<Tell>,
}

/// Who is told that a switchover started, and what.
pub struct Tell {
    pub from: Side,
    pub to: Side,
    pub automatic: bool,
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
            StepState::Running if step == self.first_step => {
                self.audit
                    .record(crate::audit::kind::SWITCHOVER_STARTED, self.start.clone());
                if let Some(t) = &self.tell {
                    self.ctx.notifications.send(
                        &self.audit.namespace,
                        &self.audit.pair,
                        t.from,
                        crate::notify::Event::FailoverStarted {
                            to: t.to,
                            switchover: switchover.to_string(),
                            automatic: t.automatic,
                        },
                    );
                }
            }
            StepState::Succeeded | StepState::Failed => {
                self.audit.record(
                    crate::audit::kind::SWITCHOVER_STEP,
                    serde_json::json!({ "name": switchover, "step": step, "state": state, "message": message }),
                );
            }
            _ => {}
        }
        // Published in the background: an Event is for humans and must not delay the flip.
        let note = format!("{step}: {state:?} {message}");
        self.ctx.env.event_in_background(
            self.reference.clone(),
            warning,
            reason.to_string(),
            step.to_string(),
            note,
        );
    }

    async fn forced(&self, switchover: &str, gates: &[Gate]) {
        for gate in gates {
            self.audit.record(
                crate::audit::kind::GATE_FORCED,
                serde_json::json!({ "name": switchover, "gate": gate.describe(), "gateName": gate.name }),
            );
        }
    }
}

/// The pair's task and replication as the executor drives them.
pub struct PairAdapter(pub Arc<PairHandle>);

#[async_trait]
impl ReplicationControl for PairAdapter {
    async fn fence(&self, bound: Duration) -> Result<String, String> {
        self.0.replication().fence(bound).await
    }

    async fn drain(&self, bound: Duration) -> Drained {
        self.0.replication().drain(bound).await
    }

    async fn reverse(&self, new_active: Side, epoch: &str) -> Result<String, String> {
        self.0
            .reverse(new_active, epoch, Duration::from_secs(5))
            .await
    }

    fn lag(&self) -> Option<Duration> {
        self.0.view().lag
    }

    async fn level(&self) -> Result<String, String> {
        self.0.level(Duration::from_secs(60)).await
    }
}

#[async_trait]
impl PairView for PairAdapter {
    fn verdict(&self, side: Side) -> String {
        self.0.verdict_of(side).kind.as_str().to_string()
    }

    async fn intend(&self, to: Side, switchover: &str) -> Result<(), String> {
        self.0.intend(to, switchover).await
    }

    async fn record_active(&self, to: Side, switchover: &str) -> Result<(), String> {
        self.0.record_active(to, switchover).await
    }
}
