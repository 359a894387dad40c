//! The pair's task: takes one message at a time, decides with the pure functions and
//! carries out the effects (see the module docs of `pair`). Failover and failback
//! evaluation are in `failover.rs`, the traffic read-back and the recovery after a
//! failed switchover in `traffic.rs`.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::recovery::Traffic;
use super::replication::{Cmd, ReplicationHandle, ReplicationReport};
use super::seen::{Admission, SeenNotices};
use super::{Finished, Msg, NoticeOutcome, PairView, ReceivedNotice, idx};
use crate::api::account_pair::{AccountPairStatus, FlipStatus, ObjectSummary};
use crate::api::{AccountPair, AccountPairSpec, Side};
use crate::controller::env::Env;
use crate::controller::metrics::{metrics, set_account_status};
use crate::controller::status::{StatusInput, build};
use crate::controller::status_pace;
use crate::detection::risk::{RiskEvaluator, RiskFinding};
use crate::detection::signal::{NoAnswerCause, PollOutcome, Signal, SignalKind};
use crate::detection::{Brake, Detector, DetectorConfig, VerdictChange};

mod pause;
mod signals;

/// How often a pair whose audit records cannot be written reads its Kafka Secret again.
const AUDIT_REFRESH: std::time::Duration = std::time::Duration::from_secs(15);

pub(super) struct Setup {
    pub env: Arc<Env>,
    pub namespace: String,
    pub name: String,
    pub generation: i64,
    pub spec: Arc<AccountPairSpec>,
    pub object_ref: ObjectReference,
    pub replication: ReplicationHandle,
    pub audit_kafka: watch::Sender<crate::audit::AuditKafka>,
    /// The pair's Kafka Secret was read for `audit_kafka` (else it holds no settings yet).
    pub audit_secret_read: bool,
    pub status: AccountPairStatus,
    /// The resourceVersion `status` was read at: the first status write is made against
    /// it (a conflict reads the status again), not after a GET of its own.
    pub status_version: Option<String>,
    /// The kinds the pair's provider reads but cannot write.
    pub not_replicable: Vec<crate::provider::NotReplicable>,
    /// `spec.paused` and who set it, as read at start (see `pause_record`).
    pub pause: super::pause_record::Seen,
}

/// Where the traffic targets were last seen pointing.
pub(super) struct TrafficState {
    pub judged: Option<Traffic>,
    /// The split was left by a failed switchover: resolving it resumes replication.
    pub split_from_failure: bool,
    pub next_check: Instant,
}

pub(super) struct PairActor {
    pub(super) env: Arc<Env>,
    pub(super) ns: String,
    pub(super) name: String,
    pub(super) generation: i64,
    pub(super) spec: Arc<AccountPairSpec>,
    pub(super) object_ref: ObjectReference,
    pub(super) replication: ReplicationHandle,
    audit_kafka: watch::Sender<crate::audit::AuditKafka>,
    audit_secret_read: bool,
    next_audit_refresh: Instant,
    view_tx: watch::Sender<PairView>,

    pub(super) active: Side,
    pub(super) target: Option<Side>,
    pub(super) detectors: [Detector; 2],
    /// What each side's last answered poll said is misconfigured (a permission, the IP
    /// allow-list), until a poll answers again.
    pub(super) misconfigured: [Option<String>; 2],
    not_replicable: Vec<crate::provider::NotReplicable>,
    /// The brake that stops an automatic failover now, with its message.
    pub(super) brake: Option<(Brake, String)>,
    /// The automatic failover created for the current freeze.
    pub(super) failover_started: Option<String>,
    /// When to evaluate the failover again by itself (a hold-down ends, a safety re-look).
    pub(super) next_evaluation: Option<Instant>,
    risk: RiskEvaluator,
    risk_findings: Vec<RiskFinding>,
    pub(super) report: Option<ReplicationReport>,
    replication_reported: bool,
    /// The replication source's failed feed reads already fed to the detector.
    feed_reads: super::seen::FeedReadsSeen,
    pub(super) last_flip: Option<FlipStatus>,
    pub(super) traffic: TrafficState,
    seen: SeenNotices,
    /// The status as last read or written (fields others own are carried from it).
    pub(super) stored: AccountPairStatus,
    /// The pair's resourceVersion as this task's last status write left it: the next
    /// status write goes over it without reading first (a 409 says someone else wrote
    /// meanwhile, and the write after reads afresh).
    stored_version: Option<String>,
    last_published: Option<serde_json::Value>,
    /// When the status was last written (lag figures alone wait `status_pace::LAG_EVERY`).
    last_published_at: Option<Instant>,
    /// A recorded intent found at start is checked once against its switchover.
    intent_unchecked: bool,
    /// `spec.paused` as seen at start, until the `Paused` condition says it.
    pause_unnoted: Option<super::pause_record::Seen>,
    /// This task queued the audit record of that change (a retried condition write does
    /// not queue it again).
    pause_recorded: bool,
}

impl PairActor {
    /// True while this replica holds the Lease of the pair's shard (checked before every
    /// write the task makes).
    pub(super) fn may_act(&self) -> bool {
        self.env.leader.may_act_for(&self.ns, &self.name)
    }

    /// The side that serves traffic changed (persisted): the `understudy_active_side`
    /// series says so at once, not on the next status tick, which a busy task may reach
    /// seconds later.
    pub(super) fn set_active(&mut self, side: Side) {
        self.active = side;
        crate::controller::metrics::set_pair_state(&self.ns, &self.name, side, self.spec.paused);
    }

    pub(super) fn new(s: Setup) -> (PairActor, watch::Receiver<PairView>) {
        let now = Utc::now();
        let dcfg = DetectorConfig::from(&s.spec.detection);
        let active = s.status.active_side.unwrap_or(Side::Primary);
        let detectors = [
            Detector::new(Side::Primary, dcfg.clone(), now),
            Detector::new(Side::Standby, dcfg, now),
        ];
        let view = PairView {
            active,
            target: s.status.target_side,
            verdicts: [
                detectors[0].verdict().clone(),
                detectors[1].verdict().clone(),
            ],
            lag: None,
            lag_records: None,
            replication_reported: false,
            observed: [false; 2],
        };
        let (view_tx, view_rx) = watch::channel(view);
        crate::controller::metrics::restore_drill_gauges(
            &s.namespace,
            &s.name,
            s.status.last_drill.as_ref(),
        );
        let actor = PairActor {
            ns: s.namespace,
            name: s.name,
            generation: s.generation,
            object_ref: s.object_ref,
            replication: s.replication,
            audit_kafka: s.audit_kafka,
            audit_secret_read: s.audit_secret_read,
            next_audit_refresh: Instant::now() + AUDIT_REFRESH,
            view_tx,
            active,
            target: s.status.target_side,
            detectors,
            misconfigured: [None, None],
            not_replicable: s.not_replicable,
            brake: None,
            failover_started: None,
            next_evaluation: None,
            risk: RiskEvaluator::new(&s.spec.detection.risk),
            risk_findings: Vec::new(),
            report: None,
            replication_reported: false,
            feed_reads: Default::default(),
            last_flip: s.status.last_flip.clone(),
            traffic: TrafficState {
                judged: None,
                split_from_failure: false,
                next_check: Instant::now() + Duration::from_secs(5),
            },
            seen: SeenNotices::from_status(&s.status.seen_notices),
            stored: s.status,
            stored_version: s.status_version,
            last_published: None,
            last_published_at: None,
            intent_unchecked: true,
            pause_unnoted: Some(s.pause),
            pause_recorded: false,
            spec: s.spec,
            env: s.env,
        };
        (actor, view_rx)
    }

    pub(super) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Msg>,
        mut reports: watch::Receiver<Option<ReplicationReport>>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reporting = true;
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => self.on(msg).await,
                    None => return,
                },
                changed = reports.changed(), if reporting => match changed {
                    Ok(()) => {
                        let report = reports.borrow_and_update().clone();
                        if let Some(report) = report {
                            self.on_replication(report).await;
                        }
                    }
                    // Replication ended (the pair stops): no more reports.
                    Err(_) => reporting = false,
                },
                _ = tick.tick() => self.on_tick().await,
            }
            self.publish_view();
        }
    }

    pub(super) fn key(&self) -> String {
        crate::controller::env::pair_key(&self.ns, &self.name)
    }

    pub(super) fn account(&self, side: Side) -> &str {
        match side {
            Side::Primary => self.spec.primary.id(),
            Side::Standby => self.spec.standby.id(),
        }
    }

    pub(super) fn audit(&self, kind: &str, data: serde_json::Value) {
        self.env
            .audit
            .record_to(&self.audit_kafka.borrow(), kind, &self.ns, &self.name, data);
    }

    /// While the pair's audit records cannot be written (or its Kafka Secret could not be
    /// read), read the Secret again every [`AUDIT_REFRESH`]: once it is fixed, new records
    /// go with the new settings and the waiting ones follow them. A Secret that cannot be
    /// read keeps the settings in use.
    async fn refresh_audit_kafka(&mut self, now: Instant) {
        if now < self.next_audit_refresh {
            return;
        }
        self.next_audit_refresh = now + AUDIT_REFRESH;
        if self.audit_secret_read && self.env.audit.problem(&self.ns, &self.name).is_none() {
            return;
        }
        let mut pair = AccountPair::new(&self.name, (*self.spec).clone());
        pair.metadata.namespace = Some(self.ns.clone());
        match crate::audit::pair_kafka(&self.env.client, &pair).await {
            Ok(k) => {
                self.audit_secret_read = true;
                self.audit_kafka.send_if_modified(|current| {
                    let changed = *current != k;
                    if changed {
                        tracing::info!(pair = %self.name, "the pair's Kafka settings for the audit trail changed; writing with the new ones");
                        *current = k.clone();
                    }
                    changed
                });
                self.env.audit.reroute(&k, &self.ns, &self.name);
            }
            Err(e) => {
                tracing::warn!(pair = %self.name, error = %e, "the pair's Kafka Secret cannot be read for the audit trail")
            }
        }
    }

    /// An Event on the pair, published in the background (a decision never waits for it).
    pub(super) fn event(&self, warning: bool, reason: &str, action: &str, note: String) {
        self.env.event_in_background(
            self.object_ref.clone(),
            warning,
            reason.to_string(),
            action.to_string(),
            note,
        );
    }

    async fn on(&mut self, msg: Msg) {
        match msg {
            Msg::Signal(signal) => self.observe(signal).await,
            Msg::Notice { notice, reply } => {
                let (outcome, next) = self.on_notice(notice).await;
                let _ = reply.send(outcome);
                self.decide(next).await;
            }
            Msg::Activity(events) => self.on_activity(events),
            Msg::Intend {
                to,
                switchover,
                reply,
            } => {
                self.target = Some(to);
                let r = self
                    .persist(serde_json::json!({
                        "targetSide": to,
                        "phase": "SwitchingOver",
                        "lastSwitchover": ObjectSummary { name: switchover, result: Some("Running".into()), finished_at: None },
                    }))
                    .await;
                let _ = reply.send(r);
            }
            Msg::RecordFlip { to, flip, reply } => {
                let r = self
                    .persist(serde_json::json!({ "activeSide": to, "lastFlip": flip }))
                    .await;
                if r.is_ok() {
                    self.set_active(to);
                    self.last_flip = Some(flip.clone());
                    self.replication.send(Cmd::Follow {
                        active: to,
                        flip: Some(flip),
                    });
                }
                let _ = reply.send(r);
            }
            Msg::FlipCompleted { flip, reply } => {
                let r = self.persist(serde_json::json!({ "lastFlip": flip })).await;
                if r.is_ok() {
                    self.last_flip = Some(flip);
                }
                let _ = reply.send(r);
            }
            Msg::RecordActive {
                to,
                switchover,
                reply,
            } => {
                let r = self
                    .persist(serde_json::json!({
                        "activeSide": to,
                        "targetSide": null,
                        "lastSwitchover": ObjectSummary {
                            name: switchover,
                            result: Some("Succeeded".into()),
                            finished_at: Some(crate::controller::conditions::rfc3339(Utc::now())),
                        },
                    }))
                    .await;
                if r.is_ok() {
                    self.set_active(to);
                    self.target = None;
                    self.traffic.judged = None;
                    self.traffic.split_from_failure = false;
                }
                let _ = reply.send(r);
            }
            Msg::SwitchoverFinished(f) => self.on_finished(*f).await,
        }
    }

    async fn on_tick(&mut self) {
        if self.intent_unchecked {
            self.intent_unchecked = false;
            if self.target.is_some() && self.may_act() {
                self.reconcile_intent().await;
            }
        }
        let now = Instant::now();
        if self.next_evaluation.is_some_and(|t| now >= t) {
            self.next_evaluation = None;
            self.evaluate_failover().await;
        }
        if self.target.is_none() && now >= self.traffic.next_check {
            self.check_traffic().await;
        }
        self.refresh_audit_kafka(now).await;
        if self.pause_unnoted.is_some() {
            self.note_pause().await;
        }
        self.seen.prune(Utc::now(), self.env.opts.notice_window);
        self.publish_status().await;
    }

    async fn on_finished(&mut self, f: Finished) {
        use crate::api::switchover::{SwitchoverPhase, Trigger};
        if self.failover_started.as_deref() == Some(f.name.as_str()) {
            self.failover_started = None;
        }
        let production = f.spec.trigger != Trigger::Drill && !f.spec.dry_run;
        if production && f.status.phase == SwitchoverPhase::Failed {
            self.recover(&f).await;
        }
        // A brake that waited for this switchover (or rehearsal) may be gone: look now.
        self.next_evaluation = Some(Instant::now());
    }

    /// Merge `status` into the pair's stored status (fields this task owns alone).
    pub(super) async fn persist(&mut self, status: serde_json::Value) -> Result<(), String> {
        if !self.may_act() {
            return Err("this replica no longer holds the lease; stopping".into());
        }
        let api: Api<AccountPair> = Api::namespaced(self.env.client.clone(), &self.ns);
        let stored = api
            .patch_status(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(&serde_json::json!({ "status": status })),
            )
            .await
            .map_err(|e| format!("updating the AccountPair status failed: {e}"))?;
        self.stored = stored.status.unwrap_or_default();
        self.stored_version = stored.metadata.resource_version;
        Ok(())
    }

    fn publish_view(&self) {
        let snap = self.report.as_ref().and_then(|r| r.snapshot.as_ref());
        let view = PairView {
            active: self.active,
            target: self.target,
            verdicts: [
                self.detectors[0].verdict().clone(),
                self.detectors[1].verdict().clone(),
            ],
            lag: snap.map(|s| Duration::from_secs_f64(s.lag_seconds.max(0.0))),
            lag_records: snap.and_then(|s| s.known_lag_records()),
            replication_reported: self.replication_reported,
            observed: [
                self.detectors[0].last_observed_at().is_some(),
                self.detectors[1].last_observed_at().is_some(),
            ],
        };
        self.view_tx.send_if_modified(|v| {
            let changed = *v != view;
            if changed {
                *v = view;
            }
            changed
        });
    }

    fn status_input<'a>(
        &'a self,
        previous: &'a AccountPairStatus,
        (audit_problem, notifications_problem): (Option<&'a str>, Option<&'a str>),
    ) -> StatusInput<'a> {
        let d = &self.detectors;
        let report = self.report.as_ref();
        StatusInput {
            previous,
            generation: self.generation,
            paused: self.spec.paused,
            mode: self.spec.detection.mode,
            active: self.active,
            target: self.target,
            verdicts: [
                (d[0].verdict(), d[0].last_signal()),
                (d[1].verdict(), d[1].last_signal()),
            ],
            misconfigured: [
                self.misconfigured[0].as_deref(),
                self.misconfigured[1].as_deref(),
            ],
            not_replicable: &self.not_replicable,
            snapshot: report.and_then(|r| r.snapshot.as_ref()),
            pipeline_error: report.and_then(|r| r.problem.as_deref()),
            brake: self.brake.as_ref().map(|(b, m)| (*b, m.as_str())),
            failover_started: self.failover_started.as_deref(),
            traffic: self.traffic.judged.as_ref(),
            risk: &self.risk_findings,
            last_flip: self.last_flip.clone(),
            seen_notices: self.seen.entries(),
            audit_problem,
            notifications_problem,
        }
    }

    /// Write the status when what this task shows changed, over the version read (the
    /// drill controller writes its condition too: a conflict is rebuilt next tick).
    async fn publish_status(&mut self) {
        if !self.may_act() {
            return;
        }
        crate::controller::metrics::set_pair_state(
            &self.ns,
            &self.name,
            self.active,
            self.spec.paused,
        );
        let now = Utc::now();
        let audit_problem = self.env.audit.problem(&self.ns, &self.name);
        let notifications_problem =
            notifications_problem(&self.env.notifications.failing_for(&self.ns, &self.name));
        let problems = (audit_problem.as_deref(), notifications_problem.as_deref());
        let value = serde_json::to_value(build(&self.status_input(&self.stored, problems), now))
            .unwrap_or_default();
        let change = status_pace::classify(self.last_published.as_ref(), &value);
        if !status_pace::due(
            change,
            self.last_published_at,
            Instant::now(),
            status_pace::LAG_EVERY,
        ) {
            return;
        }
        let Some(_slot) = crate::controller::status_budget::slot() else {
            return; // still due on the next tick
        };
        let api: Api<AccountPair> = Api::namespaced(self.env.client.clone(), &self.ns);
        let (previous, version) = match self.stored_version.take() {
            // Our last write is the latest version unless the write below is refused.
            Some(v) => (self.stored.clone(), Some(v)),
            None => match api.get_status(&self.name).await {
                Ok(p) => (p.status.unwrap_or_default(), p.metadata.resource_version),
                Err(e) => {
                    tracing::warn!(pair = %self.name, error = %e, "reading the pair's status failed; status not updated");
                    return;
                }
            },
        };
        let status = build(&self.status_input(&previous, problems), now);
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": version },
            "status": status,
        });
        match api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(p) => {
                self.stored = p.status.unwrap_or_default();
                self.stored_version = p.metadata.resource_version;
                self.last_published = Some(value);
                self.last_published_at = Some(Instant::now());
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                self.stored = previous;
                tracing::debug!(pair = %self.name, "the status changed meanwhile; rebuilding it");
            }
            Err(e) => tracing::warn!(pair = %self.name, error = %e, "status update failed"),
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

/// What the `NotificationsDelivered` condition says while sinks fail: each failing sink
/// with why (never a secret: failures name the sink and its endpoint only).
fn notifications_problem(failing: &[crate::notify::Failure]) -> Option<String> {
    if failing.is_empty() {
        return None;
    }
    let each: Vec<String> = failing
        .iter()
        .map(|f| {
            format!(
                "{} ({}): {} after {} tries: {}",
                f.sink, f.kind, f.category, f.attempts, f.detail
            )
        })
        .collect();
    Some(format!(
        "notifications are not reaching people: {}; see understudy_notifications_total",
        each.join("; ")
    ))
}
