//! One AccountPair at run time, as one task that owns the pair's state.
//!
//! Contract:
//! - The pair's task ([`actor`]) alone holds the pair's state: the recorded active side
//!   and intent, both sides' detectors, the brake shown, risk findings, what
//!   replication reports, the traffic check, the notices seen. Everything else talks to
//!   it through messages ([`Msg`]): the observers (`loops`: polls, probes, activity),
//!   replication's reports, verified notices, and the Switchover executor's requests
//!   (persist the intent, the flip, the result; a switchover ended). Messages are taken
//!   one at a time, so no two decisions about a pair ever interleave.
//! - It decides with the pure functions (`detection::Detector`,
//!   `detection::decide_failover`, `failback::decide_failback`, [`recovery`],
//!   [`switchovers::classify`], [`seen`], [`pause_record`], `status::build`) and carries
//!   out the effects — status writes, Events, audit records, metrics, Switchovers — only
//!   while this replica may act (the Lease). Every change of the spec starts a new task,
//!   which records a change of `spec.paused` made without `kubectl understudy` once
//!   ([`pause_record`]).
//! - Replication runs in a task of its own ([`replication`]) that the pair's task
//!   commands; its direction changes only after the pair's task persisted the new
//!   active side.
//! - [`PairHandle`] is what the controllers hold: a cheap [`PairView`] (for the
//!   executor's prechecks), requests to the task, and the replication handle.

mod actor;
mod failover;
mod loops;
pub mod pause_record;
pub mod providers;
pub mod recovery;
pub mod replication;
pub mod seen;
pub mod switchovers;
mod traffic;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Resource;
use kube::api::Api;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::env::{Env, lock};
use super::secrets;
use crate::api::account_pair::FlipStatus;
use crate::api::switchover::{SwitchoverSpec, SwitchoverStatus};
use crate::api::{AccountPair, AccountPairSpec, Side};
use crate::detection::Verdict;
use crate::detection::signal::{Notice, Signal};
use crate::provider::AccountProvider;
pub use replication::ReplicationHandle;

pub(crate) fn idx(side: Side) -> usize {
    match side {
        Side::Primary => 0,
        Side::Standby => 1,
    }
}

/// Why a pair could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    #[error("the {side} account's endpoint or token is unusable: {detail}")]
    Provider { side: Side, detail: String },
    #[error("reading the AccountPair failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("the AccountPair was deleted")]
    Gone,
}

impl StartError {
    /// The user must change the spec or a Secret (vs. a transient failure).
    pub fn is_user_error(&self) -> bool {
        match self {
            StartError::Secret(e) => e.is_user_error(),
            StartError::Provider { .. } => true,
            StartError::Kube(_) | StartError::Gone => false,
        }
    }
}

/// What others may read about the pair at any time (published by its task).
#[derive(Clone, Debug, PartialEq)]
pub struct PairView {
    pub active: Side,
    pub target: Option<Side>,
    pub verdicts: [Verdict; 2],
    /// Replication lag toward the passive side; `None` when unknown.
    pub lag: Option<Duration>,
    pub lag_records: Option<u64>,
    /// Replication reported a running pipeline at least once.
    pub replication_reported: bool,
    /// Each side's detector has taken a signal (its verdict is more than "no signal yet").
    pub observed: [bool; 2],
}

/// A verified notice, as the webhook hands it over.
#[derive(Clone, Debug)]
pub struct ReceivedNotice {
    pub id: String,
    pub side: Side,
    pub event: Notice,
    pub reason: String,
    /// The notice's own time, bounded by when it was received.
    pub at: chrono::DateTime<chrono::Utc>,
    pub received: chrono::DateTime<chrono::Utc>,
}

/// What became of a notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoticeOutcome {
    /// It took effect (or was recorded; the message says).
    Accepted(String),
    /// Seen before.
    Replay(String),
    /// Could not be recorded; nothing changed, the provider should retry.
    Failed(String),
}

/// A switchover of the pair ended (any phase).
#[derive(Clone, Debug)]
pub struct Finished {
    pub name: String,
    pub spec: SwitchoverSpec,
    pub status: SwitchoverStatus,
}

pub enum Msg {
    Signal(Signal),
    Notice {
        notice: ReceivedNotice,
        reply: oneshot::Sender<NoticeOutcome>,
    },
    Activity(Vec<crate::provider::ActivityEvent>),
    /// The executor persists its intent: traffic is moving to `to`.
    Intend {
        to: Side,
        switchover: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// The reverse step: `to` is active now, replication starts at `flip`.
    RecordFlip {
        to: Side,
        flip: FlipStatus,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Replication completed the flip's positions before starting from them.
    FlipCompleted {
        flip: FlipStatus,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// The executor's last step: `to` is the verified active side.
    RecordActive {
        to: Side,
        switchover: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    SwitchoverFinished(Box<Finished>),
}

/// The controllers' handle on a running pair.
pub struct PairHandle {
    pub namespace: String,
    pub name: String,
    pub generation: i64,
    pub spec: Arc<AccountPairSpec>,
    /// When the AccountPair was created (the drill schedule counts from it).
    pub created: Option<chrono::DateTime<chrono::Utc>>,
    notice_secret: Option<Vec<u8>>,
    /// Where the pair's audit records go (its Kafka, with its SASL/TLS settings, read
    /// again by the pair's task while the records cannot be written).
    audit_kafka: watch::Receiver<crate::audit::AuditKafka>,
    providers: [Arc<dyn AccountProvider>; 2],
    /// WeCom sides: their callbacks' keys and feeds (`/webhooks/wecom/…`).
    wecom: [Option<Arc<providers::WecomSide>>; 2],
    /// Agora Chat sides: their callback secrets and feeds (`/webhooks/agora/…`).
    agora: [Option<Arc<providers::AgoraSide>>; 2],
    /// Callbacks already taken (their signatures), so a replay changes nothing.
    callbacks_seen: Mutex<crate::provider::wecom::callback::Seen>,
    tx: mpsc::Sender<Msg>,
    view: watch::Receiver<PairView>,
    replication: ReplicationHandle,
    started: std::time::Instant,
    /// The pair's task and its observers (aborted on stop).
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The replication task (stopped cleanly on a graceful stop).
    replication_task: Mutex<Option<JoinHandle<()>>>,
}

/// Capacity of the pair's message queue: observers wait when it is full.
const QUEUE: usize = 256;

impl PairHandle {
    /// Read the pair as stored now (its recorded active side decides replication's
    /// direction, so a cached copy will not do), its Secrets, and start its task,
    /// replication and observers.
    pub async fn start(
        env: &Arc<Env>,
        cached: &AccountPair,
    ) -> Result<Arc<PairHandle>, StartError> {
        let namespace = cached.metadata.namespace.clone().unwrap_or_default();
        let name = cached.metadata.name.clone().unwrap_or_default();
        let began = std::time::Instant::now();
        let api: Api<AccountPair> = Api::namespaced(env.client.clone(), &namespace);
        let pair = api.get_opt(&name).await?.ok_or(StartError::Gone)?;
        let get_ms = began.elapsed().as_millis();
        let spec = Arc::new(pair.spec.clone());
        let client = &env.client;
        // The providers' Secrets, the notice Secret and the audit trail's Kafka Secret are
        // read at once: under a shard taken over, a hundred pairs start together and each
        // read waits on a busy API server.
        let notice_secret = async {
            match &spec.detection.notices {
                Some(n) => secrets::read_key(
                    client,
                    &namespace,
                    &n.secret_ref,
                    "secret",
                    "spec.detection.notices.secretRef",
                )
                .await
                .map(Some),
                None => Ok(None),
            }
        };
        let (built, notice_secret, audit_kafka) = tokio::join!(
            providers::build(client, (&namespace, &name), &spec),
            notice_secret,
            crate::audit::pair_kafka(&env.client, &pair),
        );
        let built = built?;
        let notice_secret = notice_secret?;
        let secrets_ms = began.elapsed().as_millis() - get_ms;
        // Every write to either account is sent only while this replica holds the pair.
        let guard = crate::controller::guard::WriteGuard::for_pair(&env.leader, &namespace, &name);
        let providers = built.sides.map(|p| guard.provider(p));
        // The audit trail goes to the pair's Kafka with its SASL/TLS settings. A Secret
        // that cannot be read now shows as the AuditTrail condition once records wait;
        // the pair's task reads it again until it can (see `PairActor::refresh_audit_kafka`).
        let (audit_kafka, audit_secret_read) = match audit_kafka {
            Ok(k) => (k, true),
            Err(e) => {
                tracing::warn!(pair = %name, error = %e, "the pair's Kafka Secret cannot be read for the audit trail; reading it again while records wait");
                (
                    crate::audit::AuditKafka::plain(&spec.replication.kafka.bootstrap_servers),
                    false,
                )
            }
        };
        tracing::info!(%namespace, pair = %name, get_ms, secrets_ms, "pair task starting");
        let (audit_tx, audit_rx) = watch::channel(audit_kafka);
        let status = pair.status.clone().unwrap_or_default();
        let active = status.active_side.unwrap_or(Side::Primary);
        let (tx, rx) = mpsc::channel(QUEUE);
        let (reports_tx, reports_rx) = watch::channel(None);
        let (replication, replication_task) = replication::spawn(
            replication::Setup {
                client: env.client.clone(),
                namespace: namespace.clone(),
                name: name.clone(),
                spec: spec.clone(),
                providers: providers.clone(),
                active,
                flip: status.last_flip.clone(),
                fenced: status.target_side.is_some(),
                starts: env.starts.clone(),
                pair: tx.clone(),
                reports: reports_tx,
            },
            &env.opts,
        );
        let (actor, view) = actor::PairActor::new(actor::Setup {
            env: env.clone(),
            namespace: namespace.clone(),
            name: name.clone(),
            generation: pair.metadata.generation.unwrap_or(0),
            spec: spec.clone(),
            object_ref: pair.object_ref(&()),
            replication: replication.clone(),
            audit_kafka: audit_tx,
            audit_secret_read,
            status,
            status_version: pair.metadata.resource_version.clone(),
            not_replicable: providers[0].not_replicable(),
            pause: pause_record::Seen::of(&pair),
        });
        let mut tasks = vec![tokio::spawn(actor.run(rx, reports_rx))];
        let interval = poll_interval(&spec);
        for side in [Side::Primary, Side::Standby] {
            tasks.push(tokio::spawn(loops::poll(
                side,
                providers[idx(side)].clone(),
                interval,
                tx.clone(),
            )));
            if let Some(p) = &spec.detection.probe {
                tasks.push(tokio::spawn(loops::probe(
                    side,
                    providers[idx(side)].clone(),
                    p.interval.as_std().max(Duration::from_millis(200)),
                    p.timeout.as_std(),
                    tx.clone(),
                )));
            }
        }
        let scan_every = spec.replication.reconcile_interval.as_std();
        for side in [Side::Primary, Side::Standby] {
            if let Some(feed) = &built.scans[idx(side)] {
                tasks.push(env.opts.spawn_data(loops::reconcile(
                    (namespace.clone(), name.clone()),
                    side,
                    feed.clone(),
                    scan_every,
                    view.clone(),
                )));
            }
        }
        tasks.push(tokio::spawn(loops::activity(
            providers.clone(),
            view.clone(),
            interval.max(Duration::from_secs(1)),
            tx.clone(),
        )));
        Ok(Arc::new(PairHandle {
            namespace,
            name,
            generation: pair.metadata.generation.unwrap_or(0),
            spec,
            created: pair
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| chrono::DateTime::from_timestamp_micros(t.0.as_microsecond())),
            notice_secret,
            audit_kafka: audit_rx,
            providers,
            wecom: built.wecom,
            agora: built.agora,
            callbacks_seen: Mutex::default(),
            tx,
            view,
            replication,
            started: std::time::Instant::now(),
            tasks: Mutex::new(tasks),
            replication_task: Mutex::new(Some(replication_task)),
        }))
    }

    pub fn key(&self) -> String {
        super::env::pair_key(&self.namespace, &self.name)
    }

    pub fn view(&self) -> PairView {
        self.view.borrow().clone()
    }

    pub fn active(&self) -> Side {
        self.view.borrow().active
    }

    pub fn verdict_of(&self, side: Side) -> Verdict {
        self.view.borrow().verdicts[idx(side)].clone()
    }

    pub fn provider(&self, side: Side) -> Arc<dyn AccountProvider> {
        self.providers[idx(side)].clone()
    }

    pub fn notice_secret(&self) -> Option<&[u8]> {
        self.notice_secret.as_deref()
    }

    /// The pair's WeCom sides (none for `provider: http`).
    pub fn wecom_sides(&self) -> impl Iterator<Item = (Side, &providers::WecomSide)> {
        [Side::Primary, Side::Standby]
            .into_iter()
            .filter_map(|side| self.wecom[idx(side)].as_deref().map(|w| (side, w)))
    }

    /// The pair's Agora Chat sides.
    pub fn agora_sides(&self) -> impl Iterator<Item = (Side, &providers::AgoraSide)> {
        [Side::Primary, Side::Standby]
            .into_iter()
            .filter_map(|side| self.agora[idx(side)].as_deref().map(|a| (side, a)))
    }

    /// The callbacks this pair took, to refuse a replay.
    pub fn callbacks_seen(
        &self,
    ) -> std::sync::MutexGuard<'_, crate::provider::wecom::callback::Seen> {
        lock(&self.callbacks_seen)
    }

    pub fn replication(&self) -> &ReplicationHandle {
        &self.replication
    }

    /// Just started and replication has not reported yet: its lag is unknown for a
    /// moment, which a planned switchover's lag gate must not mistake for a failure.
    pub fn replication_warming_up(&self) -> bool {
        !self.view.borrow().replication_reported && self.started.elapsed() < Duration::from_secs(30)
    }

    /// Where the pair's audit records go now.
    pub fn audit_kafka(&self) -> crate::audit::AuditKafka {
        self.audit_kafka.borrow().clone()
    }

    /// `side` has not been observed by this pair's task yet: its verdict is "no signal
    /// yet" (Unknown), which a switchover's health gate must not mistake for an unhealthy
    /// side. Not bounded by the task's age: a task observes nothing while this replica's
    /// claim on the shard has lapsed, so a task older than any bound could still be
    /// unobserved when its shard comes back with a switchover to resume (a replica killed
    /// during a precheck; the precheck resumed elsewhere failed on "standby is Unknown").
    /// Both sides are polled while the task acts, and a poll that gets no answer is an
    /// observation too, so this lasts about one poll once the task may act.
    pub fn detection_warming_up(&self, side: Side) -> bool {
        !self.view.borrow().observed[idx(side)]
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Msg) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| "the pair's task stopped".to_string())?;
        rx.await.map_err(|_| "the pair's task stopped".to_string())
    }

    /// Hand a verified notice to the pair's task (which persists its id first).
    pub async fn notice(&self, notice: ReceivedNotice) -> NoticeOutcome {
        self.ask(|reply| Msg::Notice { notice, reply })
            .await
            .unwrap_or_else(NoticeOutcome::Failed)
    }

    pub async fn intend(&self, to: Side, switchover: &str) -> Result<(), String> {
        let switchover = switchover.to_string();
        self.ask(|reply| Msg::Intend {
            to,
            switchover,
            reply,
        })
        .await?
    }

    pub async fn record_active(&self, to: Side, switchover: &str) -> Result<(), String> {
        let switchover = switchover.to_string();
        self.ask(|reply| Msg::RecordActive {
            to,
            switchover,
            reply,
        })
        .await?
    }

    /// The reverse step: stop the old direction, capture the flip's positions, persist
    /// `to` as the active side with them, and only then let replication follow it.
    pub async fn reverse(&self, to: Side, epoch: &str, bound: Duration) -> Result<String, String> {
        let flip = self.replication.stop_for_reverse(to, epoch, bound).await?;
        let pending = flip.sink_offsets.is_empty();
        self.ask(|reply| Msg::RecordFlip { to, flip, reply })
            .await??;
        Ok(if pending {
            format!(
                "{to} recorded as active; replication from {to} to {} starts once Kafka answers (retrying in the background; Replicating says when)",
                to.other()
            )
        } else {
            format!("replication now runs from {to} to {}", to.other())
        })
    }

    /// Tell the pair's task a switchover ended.
    pub async fn switchover_finished(&self, finished: Finished) {
        let _ = self
            .tx
            .send(Msg::SwitchoverFinished(Box::new(finished)))
            .await;
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

    /// Stop everything: observers and the pair's task first, then replication cleanly
    /// (flush and commit) within `within`, so no acknowledged change is lost.
    /// Stop within `within` (plus a second): replication stops cleanly if it can, and
    /// is aborted if its task is still busy with another command by then.
    pub async fn stop(&self, within: Duration) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        let stopping = self.replication.stop(within);
        if tokio::time::timeout(within + Duration::from_secs(1), stopping)
            .await
            .is_err()
        {
            tracing::warn!(pair = %self.name, ?within, "replication did not stop in time; aborted");
        }
        let task = lock(&self.replication_task).take();
        if let Some(t) = task {
            t.abort();
        }
    }

    /// Abort at once (lost Lease): no further writes from this replica.
    pub fn abort(&self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        if let Some(t) = lock(&self.replication_task).take() {
            t.abort();
        }
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

/// Poll interval of a side, bounded below so a typo cannot hammer the provider.
pub fn poll_interval(spec: &AccountPairSpec) -> Duration {
    spec.detection
        .poll_interval
        .as_std()
        .max(Duration::from_millis(200))
}
