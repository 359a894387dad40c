//! One AccountPair at run time: its replication pipeline (active → passive), a status
//! poll loop per side feeding the pure `Detector`, the failover trigger, risk warnings
//! and the status publisher. The worker is also what the Switchover executor drives
//! (`ReplicationControl`, `PairView`).
//!
//! A worker exists only on the Lease holder; losing the Lease aborts every worker at
//! once (see `run.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;

use super::context::{Context, lock};
use super::secrets;
use crate::api::account_pair::FlipStatus;
use crate::api::{AccountPair, AccountPairSpec, Side};
use crate::detection::risk::{RiskEvaluator, RiskFinding};
use crate::detection::signal::Signal;
use crate::detection::{Detector, DetectorConfig, Verdict, VerdictChange};
use crate::provider::AccountProvider;
use crate::provider::http::HttpProvider;
use crate::replication::config::{KafkaConfig, PipelineConfig};
use crate::replication::decide::{Flip, Start};
use crate::replication::pipeline::{Pipeline, PipelineSnapshot};

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    #[error("the {side} account's endpoint or token is unusable: {detail}")]
    Provider { side: Side, detail: String },
}

impl WorkerError {
    /// The user must change the spec or a Secret (vs. a transient failure).
    pub fn is_user_error(&self) -> bool {
        match self {
            WorkerError::Secret(e) => e.is_user_error(),
            WorkerError::Provider { .. } => true,
        }
    }
}

/// Mutable state behind one lock (never held across an await).
pub(super) struct State {
    pub active: Side,
    pub target: Option<Side>,
    pub detectors: [Detector; 2],
    pub page: Option<String>,
    pub risk: RiskEvaluator,
    pub risk_findings: Vec<RiskFinding>,
    pub pipeline_error: Option<String>,
    pub last_snapshot: Option<PipelineSnapshot>,
    pub last_flip: Option<FlipStatus>,
    pub dirty: bool,
}

pub struct PairWorker {
    pub namespace: String,
    pub name: String,
    pub generation: i64,
    pub spec: AccountPairSpec,
    pub(super) object_ref: ObjectReference,
    pub(super) providers: [Arc<dyn AccountProvider>; 2],
    pub(super) pipeline: tokio::sync::Mutex<Option<Pipeline>>,
    pub(super) fence_offsets: Mutex<Option<BTreeMap<i32, i64>>>,
    pub(super) state: Mutex<State>,
    pub(super) notice_secret: Option<Vec<u8>>,
    pub(super) ctx: Weak<Context>,
    /// Serialises failover evaluations of this pair.
    pub(super) trigger_lock: tokio::sync::Mutex<()>,
    /// When this worker started (a planned switchover waits for replication to report).
    started_at: std::time::Instant,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

pub(super) fn idx(side: Side) -> usize {
    match side {
        Side::Primary => 0,
        Side::Standby => 1,
    }
}

impl PairWorker {
    /// Build the worker from the pair as stored (Secrets read now) and start its loops.
    pub async fn start(
        ctx: &Arc<Context>,
        pair: &AccountPair,
    ) -> Result<Arc<PairWorker>, WorkerError> {
        let namespace = pair.metadata.namespace.clone().unwrap_or_default();
        let name = pair.metadata.name.clone().unwrap_or_default();
        let spec = pair.spec.clone();
        let client = &ctx.client;
        let mut providers: Vec<Arc<dyn AccountProvider>> = Vec::new();
        for (side, account) in [
            (Side::Primary, &spec.primary),
            (Side::Standby, &spec.standby),
        ] {
            let token = secrets::read_key(
                client,
                &namespace,
                &account.credentials_secret_ref,
                "token",
                &format!("spec.{side}.credentialsSecretRef"),
            )
            .await?;
            let token = String::from_utf8(token).map_err(|_| WorkerError::Provider {
                side,
                detail: "the token is not UTF-8".into(),
            })?;
            let p = HttpProvider::new(&account.endpoint, &account.account_id, Some(token.trim()))
                .map_err(|e| WorkerError::Provider {
                side,
                detail: e.to_string(),
            })?;
            providers.push(Arc::new(p));
        }
        let notice_secret = match &spec.detection.notices {
            Some(n) => Some(
                secrets::read_key(
                    client,
                    &namespace,
                    &n.secret_ref,
                    "secret",
                    "spec.detection.notices.secretRef",
                )
                .await?,
            ),
            None => None,
        };
        let status = pair.status.clone().unwrap_or_default();
        let active = status.active_side.unwrap_or(Side::Primary);
        let now = Utc::now();
        let dcfg = DetectorConfig::from(&spec.detection);
        let state = State {
            active,
            target: status.target_side,
            detectors: [
                Detector::new(Side::Primary, dcfg.clone(), now),
                Detector::new(Side::Standby, dcfg, now),
            ],
            page: None,
            risk: RiskEvaluator::new(&spec.detection.risk),
            risk_findings: Vec::new(),
            pipeline_error: None,
            last_snapshot: None,
            last_flip: status.last_flip.clone(),
            dirty: true,
        };
        let [primary, standby]: [Arc<dyn AccountProvider>; 2] = match providers.try_into() {
            Ok(p) => p,
            Err(_) => {
                return Err(WorkerError::Provider {
                    side: Side::Primary,
                    detail: "internal: two providers expected".into(),
                });
            }
        };
        let worker = Arc::new(PairWorker {
            namespace,
            name,
            generation: pair.metadata.generation.unwrap_or(0),
            spec,
            object_ref: pair.object_ref(&()),
            providers: [primary, standby],
            pipeline: tokio::sync::Mutex::new(None),
            fence_offsets: Mutex::new(None),
            state: Mutex::new(state),
            notice_secret,
            ctx: Arc::downgrade(ctx),
            trigger_lock: tokio::sync::Mutex::new(()),
            started_at: std::time::Instant::now(),
            tasks: Mutex::new(Vec::new()),
        });
        worker.spawn_loops();
        Ok(worker)
    }

    fn spawn_loops(self: &Arc<Self>) {
        let mut tasks = lock(&self.tasks);
        for side in [Side::Primary, Side::Standby] {
            tasks.push(tokio::spawn(super::worker_loops::poll_loop(
                Arc::downgrade(self),
                side,
            )));
        }
        tasks.push(tokio::spawn(super::worker_loops::replication_loop(
            Arc::downgrade(self),
        )));
        tasks.push(tokio::spawn(super::worker_loops::risk_loop(
            Arc::downgrade(self),
        )));
        tasks.push(tokio::spawn(super::worker_loops::status_loop(
            Arc::downgrade(self),
        )));
    }

    /// Stop everything: loops first, then the pipeline cleanly (flush and commit), so no
    /// acknowledged change is lost.
    pub async fn stop(&self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        if let Some(p) = self.pipeline.lock().await.take()
            && let Err(e) = p.stop().await
        {
            tracing::warn!(pair = %self.name, error = %e, "stopping the replication pipeline was not clean");
        }
    }

    /// Abort at once (lost Lease): no further writes from this replica.
    pub fn abort(&self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        if let Ok(mut p) = self.pipeline.try_lock()
            && let Some(p) = p.take()
        {
            p.abort();
        }
    }

    pub fn active(&self) -> Side {
        lock(&self.state).active
    }

    /// Just started and replication has not reported yet: its lag is unknown for a
    /// moment, which a planned switchover's lag gate must not mistake for a failure.
    pub fn replication_warming_up(&self) -> bool {
        lock(&self.state).last_snapshot.is_none()
            && self.started_at.elapsed() < Duration::from_secs(30)
    }

    pub fn verdict_of(&self, side: Side) -> Verdict {
        lock(&self.state).detectors[idx(side)].verdict().clone()
    }

    pub fn provider(&self, side: Side) -> Arc<dyn AccountProvider> {
        self.providers[idx(side)].clone()
    }

    /// The pipeline configuration for replication from `from`.
    pub(super) fn pipeline_config(
        &self,
        from: Side,
        start: Start,
        kafka_extra: BTreeMap<String, String>,
    ) -> PipelineConfig {
        let mut kafka = KafkaConfig::new(self.spec.replication.kafka.bootstrap_servers.clone());
        kafka.extra = kafka_extra;
        let mut cfg = PipelineConfig::new(&self.namespace, &self.name, from, kafka);
        cfg.partitions = self.spec.replication.partitions;
        cfg.kinds = self.spec.replication.kinds.clone();
        cfg.start = start;
        cfg
    }

    /// Where a (re)started pipeline from the active side begins.
    pub(super) fn start_position(&self) -> Start {
        match lock(&self.state).last_flip.clone() {
            Some(f) => Start::AfterFlip(Flip {
                epoch: f.epoch,
                source_cursor: f.source_cursor,
                sink_offsets: f
                    .sink_offsets
                    .iter()
                    .filter_map(|(k, v)| k.parse().ok().map(|p| (p, *v)))
                    .collect(),
            }),
            None => Start::Resume,
        }
    }

    /// Feed a signal to the side's detector; act on a verdict change.
    pub async fn observe(self: &Arc<Self>, signal: Signal) {
        let change = {
            let mut st = lock(&self.state);
            let change = st.detectors[idx(signal.side)].observe(&signal, Utc::now());
            st.dirty |= change.is_some();
            change
        };
        let verdict = self.verdict_of(signal.side);
        super::metrics::metrics()
            .freeze_signals_total
            .with_label_values(&[signal.source(), verdict.kind.as_str()])
            .inc();
        if let crate::detection::signal::SignalKind::Notice { notice, reason } = &signal.kind
            && let Some(ctx) = self.ctx.upgrade()
        {
            ctx.audit.record(
                &self.spec.replication.kafka.bootstrap_servers,
                crate::audit::kind::NOTICE,
                &self.namespace,
                &self.name,
                serde_json::json!({
                    "side": signal.side.as_str(),
                    "account": self.spec_account(signal.side),
                    "notice": notice.as_str(),
                    "reason": reason,
                    "at": super::conditions::rfc3339_ms(signal.at),
                }),
            );
        }
        if let Some(change) = change {
            self.on_verdict_change(change).await;
        }
        // Standby active and the primary observed: maybe time for an automatic failback.
        if signal.side == Side::Primary && self.active() == Side::Standby {
            super::failback::evaluate_failback(self).await;
        }
    }

    async fn on_verdict_change(self: &Arc<Self>, change: VerdictChange) {
        let side = change.side.as_str();
        super::metrics::set_account_status(
            &self.namespace,
            &self.name,
            side,
            change.to.kind.as_str(),
        );
        tracing::info!(pair = %self.name, side, from = change.from.kind.as_str(), to = change.to.kind.as_str(), reason = %change.to.reason, "verdict changed");
        if let Some(ctx) = self.ctx.upgrade() {
            let warning = change.to.kind.as_str() != "Healthy";
            let reason = format!("{}{}", capitalise(side), change.to.kind.as_str());
            let note = format!(
                "{side} account {}: {} → {} ({})",
                self.spec_account(change.side),
                change.from.kind.as_str(),
                change.to.kind.as_str(),
                change.to.reason
            );
            let last_signal = lock(&self.state).detectors[idx(change.side)]
                .last_signal()
                .map(str::to_string);
            ctx.audit.record(
                &self.spec.replication.kafka.bootstrap_servers,
                crate::audit::kind::VERDICT,
                &self.namespace,
                &self.name,
                serde_json::json!({
                    "side": side,
                    "account": self.spec_account(change.side),
                    "from": change.from.kind.as_str(),
                    "to": change.to.kind.as_str(),
                    "reason": change.to.reason,
                    "since": super::conditions::rfc3339_ms(change.to.since),
                    "signal": last_signal,
                }),
            );
            let reference = self.object_ref.clone();
            // In the background: the failover decision below must not wait for an Event.
            tokio::spawn(async move {
                ctx.event(&reference, warning, &reason, "Detect", note)
                    .await
            });
        }
        super::trigger::evaluate(self).await;
    }

    /// The failback's level check, after the drain: both accounts hold the same number
    /// of entities (counted page by page through the providers, within `within`).
    pub async fn level(&self, within: Duration) -> Result<String, String> {
        let active = self.active();
        let passive = active.other();
        let counted = tokio::time::timeout(
            within,
            futures::future::join(
                count_entities(self.provider(active)),
                count_entities(self.provider(passive)),
            ),
        )
        .await
        .map_err(|_| format!("counting the entities took longer than {within:?}"))?;
        let (a, p) = (counted.0?, counted.1?);
        if a != p {
            return Err(format!(
                "{passive} holds {p} entities but {active} holds {a}: one of them took writes outside replication (e.g. {passive} after it stopped being active, or {active} after the fence)"
            ));
        }
        Ok(format!(
            "level: {passive} and {active} both hold {a} entities; every acknowledged change was applied by the drain"
        ))
    }

    pub(super) fn spec_account(&self, side: Side) -> &str {
        match side {
            Side::Primary => &self.spec.primary.account_id,
            Side::Standby => &self.spec.standby.account_id,
        }
    }

    pub(super) fn mark_dirty(&self) {
        lock(&self.state).dirty = true;
    }
}

/// Number of entities of an account, read page by page (keys and digests only).
async fn count_entities(p: Arc<dyn AccountProvider>) -> Result<u64, String> {
    let mut n = 0u64;
    let mut after = None;
    loop {
        let page = p
            .list_digests(after.as_ref(), 1000)
            .await
            .map_err(|e| format!("listing entities failed: {e}"))?;
        n += page.items.len() as u64;
        match page.next {
            Some(k) => after = Some(k),
            None => return Ok(n),
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Poll interval of a side, bounded below so a typo cannot hammer the provider.
pub(super) fn poll_interval(spec: &AccountPairSpec) -> Duration {
    spec.detection
        .poll_interval
        .as_std()
        .max(Duration::from_millis(200))
}
