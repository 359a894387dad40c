//! The operator's side of the audit trail: call sites hand a record to [`AuditSink`] and
//! go on at once (a flip never waits for the audit log).
//!
//! Contract:
//! - One writer task per Kafka cluster **and** client properties ([`AuditKafka`]): it
//!   appends its records in the order they were handed over, with the pair's SASL/TLS
//!   settings, and retries a record (backoff up to 30 s) until it is written.
//! - Each writer's queue is bounded (`AuditSettings::queue_capacity`, default 10,000).
//!   [`AuditSink::record_to`] never blocks and never waits: when the queue is full the
//!   record is dropped and counted (`understudy_audit_dropped_records_total`).
//! - A pair's records go where it was last recorded to: when its Secret changes (a fixed
//!   password) the records still waiting in the old writer move to the new one (after
//!   the records already queued there) and the old writer ends once nobody uses it.
//! - [`AuditSink::problem`] says, without any secret, when a pair's records cannot be
//!   written (see [`super::health`]); metrics count failed attempts, drops and records
//!   waiting, per pair.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;
use tokio::sync::{Notify, mpsc};

use super::access::AuditKafka;
use super::chain::Draft;
use super::context::ClientErrors;
use super::health::PairHealth;
use super::kafka::{Appended, AuditError, AuditTarget, ChainWriter};
use super::metrics::{forget as forget_series, metrics};

/// Records a writer holds before new ones are dropped.
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;
/// How long a pair's oldest unwritten record may wait before the pair reports it.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(10);

const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Settings of the operator's audit trail.
#[derive(Clone, Debug)]
pub struct AuditSettings {
    pub enabled: bool,
    pub topic: String,
    pub retention: Duration,
    /// `understudy/<replica identity>`.
    pub actor: String,
    /// Records one writer (one cluster and credentials) holds; beyond it they are dropped.
    pub queue_capacity: usize,
    /// A pair whose oldest unwritten record waited longer has a [`AuditSink::problem`].
    pub stall_after: Duration,
    /// Chains (partitions) the topic is created with: the operator's shards.
    pub chains: u16,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            enabled: true,
            topic: super::kafka::DEFAULT_TOPIC.to_string(),
            retention: super::kafka::DEFAULT_RETENTION,
            actor: "understudy".to_string(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            stall_after: DEFAULT_STALL_AFTER,
            chains: 1,
        }
    }
}

/// What a writer task appends with ([`ChainWriter`]; tests give their own).
#[async_trait::async_trait]
pub trait Append: Send {
    async fn append(&mut self, draft: &Draft) -> Result<Appended, AuditError>;
    /// Where the appender's Kafka clients report their errors, if anywhere.
    fn client_errors(&self) -> Option<ClientErrors> {
        None
    }
}

#[async_trait::async_trait]
impl Append for ChainWriter {
    async fn append(&mut self, draft: &Draft) -> Result<Appended, AuditError> {
        ChainWriter::append(self, draft).await
    }
    fn client_errors(&self) -> Option<ClientErrors> {
        Some(self.target().errors.clone())
    }
}

type Connect = dyn Fn(&AuditKafka) -> Box<dyn Append> + Send + Sync;
type PairKey = (String, String);

/// A record on its way.
struct Queued {
    id: u64,
    draft: Draft,
}

struct Writer {
    tx: mpsc::Sender<Queued>,
    errors: Option<ClientErrors>,
}

#[derive(Default)]
struct State {
    writers: HashMap<AuditKafka, Writer>,
    /// Where each pair's records go now: where it was last recorded to.
    routes: HashMap<PairKey, AuditKafka>,
    health: HashMap<PairKey, PairHealth>,
    next_id: u64,
}

struct Inner {
    settings: AuditSettings,
    connect: Box<Connect>,
    state: Mutex<State>,
    /// Woken when a pair's records go somewhere else: writers waiting to retry look
    /// whether their records moved.
    rerouted: Arc<Notify>,
}

/// Cheap to clone; `record_to` never blocks.
#[derive(Clone)]
pub struct AuditSink {
    inner: Arc<Inner>,
}

impl AuditSink {
    pub fn new(settings: AuditSettings) -> Self {
        let (topic, retention, chains) =
            (settings.topic.clone(), settings.retention, settings.chains);
        AuditSink::with_connect(settings, move |kafka: &AuditKafka| {
            Box::new(ChainWriter::new(
                AuditTarget::with_kafka(kafka, &topic, retention).with_chains(chains),
            )) as Box<dyn Append>
        })
    }

    /// A sink whose writers append with what `connect` makes for a cluster.
    pub fn with_connect(
        settings: AuditSettings,
        connect: impl Fn(&AuditKafka) -> Box<dyn Append> + Send + Sync + 'static,
    ) -> Self {
        AuditSink {
            inner: Arc::new(Inner {
                settings,
                connect: Box::new(connect),
                state: Mutex::new(State::default()),
                rerouted: Arc::new(Notify::new()),
            }),
        }
    }

    /// A sink that drops everything (unit tests, `--audit=false`).
    pub fn disabled() -> Self {
        AuditSink::new(AuditSettings {
            enabled: false,
            ..AuditSettings::default()
        })
    }

    pub fn actor(&self) -> &str {
        &self.inner.settings.actor
    }

    pub fn settings(&self) -> &AuditSettings {
        &self.inner.settings
    }

    /// Append a record by the operator to the chain on a cluster reached without client
    /// properties. Prefer [`AuditSink::record_to`] with the pair's settings.
    pub fn record(&self, bootstrap: &str, kind: &str, namespace: &str, pair: &str, data: Value) {
        self.record_to(&AuditKafka::plain(bootstrap), kind, namespace, pair, data);
    }

    /// Append a record by the operator to the chain on `kafka` (the pair's cluster and
    /// its SASL/TLS properties). Returns at once; a full queue drops the record (counted).
    pub fn record_to(
        &self,
        kafka: &AuditKafka,
        kind: &str,
        namespace: &str,
        pair: &str,
        data: Value,
    ) {
        if !self.inner.settings.enabled || kafka.bootstrap.is_empty() {
            return;
        }
        let draft = Draft::new(
            kind,
            namespace,
            pair,
            &self.inner.settings.actor,
            data,
            Utc::now(),
        );
        let key = (namespace.to_string(), pair.to_string());
        let mut st = self.inner.lock();
        let before = st.routes.insert(key.clone(), kafka.clone());
        if before.as_ref().is_some_and(|b| b != kafka) {
            self.inner.rerouted.notify_waiters();
        }
        let id = st.next_id;
        st.next_id += 1;
        let target = self.inner.target_text(kafka);
        st.health
            .entry(key)
            .or_default()
            .handed_over(id, Instant::now(), &target);
        self.inner.enqueue(&mut st, kafka, Queued { id, draft });
    }

    /// From now on `namespace/pair`'s records go to `kafka` (its Secret changed): the
    /// records still waiting elsewhere follow, in order, without a new record.
    pub fn reroute(&self, kafka: &AuditKafka, namespace: &str, pair: &str) {
        if !self.inner.settings.enabled || kafka.bootstrap.is_empty() {
            return;
        }
        let key = (namespace.to_string(), pair.to_string());
        let mut st = self.inner.lock();
        let before = st.routes.insert(key, kafka.clone());
        if before.as_ref().is_some_and(|b| b != kafka) {
            self.inner.rerouted.notify_waiters();
        }
    }

    /// `Some(message)` while `namespace/pair`'s audit records cannot be written: its
    /// oldest unwritten record waited longer than `stall_after`, or records were dropped
    /// since its last successful write. The message says what failed and never carries a
    /// secret. `None` when healthy (or never recorded).
    pub fn problem(&self, namespace: &str, pair: &str) -> Option<String> {
        if !self.inner.settings.enabled {
            return None;
        }
        let st = self.inner.lock();
        let key = (namespace.to_string(), pair.to_string());
        let health = st.health.get(&key)?;
        // What the pair's Kafka client reported since its oldest record was handed over.
        let client = health.oldest().and_then(|oldest| {
            let kafka = st.routes.get(&key)?;
            let e = st.writers.get(kafka)?.errors.as_ref()?.since(oldest)?;
            Some(format!("Kafka client: {}", kafka.scrub(&e.reason)))
        });
        health.problem(
            Instant::now(),
            self.inner.settings.stall_after,
            client.as_deref(),
        )
    }

    /// The pair is gone: stop tracking it and remove its metric series. Records of it
    /// still queued are written all the same.
    pub fn forget(&self, namespace: &str, pair: &str) {
        let key = (namespace.to_string(), pair.to_string());
        let mut st = self.inner.lock();
        st.health.remove(&key);
        st.routes.remove(&key);
        // A writer that served only this pair may end.
        self.inner.rerouted.notify_waiters();
        forget_series(namespace, pair);
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn target_text(&self, kafka: &AuditKafka) -> String {
        format!("{} on {}", self.settings.topic, kafka.bootstrap)
    }

    /// Put a record into `kafka`'s writer (started when missing); drop it when full.
    fn enqueue(self: &Arc<Self>, st: &mut State, kafka: &AuditKafka, q: Queued) {
        let key = (q.draft.namespace.clone(), q.draft.pair.clone());
        let mut q = Some(q);
        for _ in 0..2 {
            let Some(item) = q.take() else { break };
            if !st.writers.contains_key(kafka) {
                match self.spawn_writer(kafka) {
                    Some(w) => {
                        st.writers.insert(kafka.clone(), w);
                    }
                    None => {
                        q = Some(item);
                        break;
                    }
                }
            }
            let Some(w) = st.writers.get(kafka) else {
                q = Some(item);
                break;
            };
            match w.tx.try_send(item) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(item)) => {
                    q = Some(item);
                    break;
                }
                // The writer ended meanwhile: start another one and try once more.
                Err(mpsc::error::TrySendError::Closed(item)) => {
                    st.writers.remove(kafka);
                    q = Some(item);
                }
            }
        }
        if let Some(dropped) = q {
            self.dropped(st, kafka, &dropped);
        }
        self.publish(st, &key);
    }

    fn dropped(&self, st: &mut State, kafka: &AuditKafka, q: &Queued) {
        let (ns, pair) = (&q.draft.namespace, &q.draft.pair);
        let target = self.target_text(kafka);
        let Some(h) = st.health.get_mut(&(ns.clone(), pair.clone())) else {
            return;
        };
        h.dropped(Some(q.id), &target);
        metrics()
            .records_dropped_total
            .with_label_values(&[ns, pair])
            .inc();
        // Once per run of drops (the counter and `problem` tell the rest).
        if h.dropped_since_write() == 1 {
            tracing::warn!(
                namespace = %ns, pair = %pair, kind = %q.draft.kind, capacity = self.settings.queue_capacity,
                "the audit writer's queue is full (Kafka is not keeping up or not reachable); audit records are dropped"
            );
        }
    }

    /// Update the pair's waiting gauge.
    fn publish(&self, st: &State, key: &PairKey) {
        if let Some(h) = st.health.get(key) {
            metrics()
                .records_waiting
                .with_label_values(&[&key.0, &key.1])
                .set(i64::try_from(h.waiting()).unwrap_or(i64::MAX));
        }
    }

    fn spawn_writer(self: &Arc<Self>, kafka: &AuditKafka) -> Option<Writer> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("audit record handed over outside the async runtime; not written");
            return None;
        };
        let (tx, rx) = mpsc::channel::<Queued>(self.settings.queue_capacity.max(1));
        let appender = (self.connect)(kafka);
        let errors = appender.client_errors();
        runtime.spawn(run_writer(
            Arc::downgrade(self),
            self.rerouted.clone(),
            kafka.clone(),
            rx,
            appender,
        ));
        Some(Writer { tx, errors })
    }

    /// Where the draft's pair is recorded to now, if somewhere else than `here`.
    fn moved(&self, draft: &Draft, here: &AuditKafka) -> Option<AuditKafka> {
        let st = self.lock();
        let key = (draft.namespace.clone(), draft.pair.clone());
        st.routes.get(&key).filter(|k| *k != here).cloned()
    }

    fn forward(self: &Arc<Self>, to: &AuditKafka, q: Queued) {
        let mut st = self.lock();
        let target = self.target_text(to);
        if let Some(h) = st
            .health
            .get_mut(&(q.draft.namespace.clone(), q.draft.pair.clone()))
        {
            h.moved_to(&target);
        }
        self.enqueue(&mut st, to, q);
    }

    fn written(&self, q: &Queued, appended: &Appended) {
        tracing::debug!(seq = appended.record.seq, offset = appended.offset, kind = %q.draft.kind, "audit record written");
        let mut st = self.lock();
        let key = (q.draft.namespace.clone(), q.draft.pair.clone());
        let Some(h) = st.health.get_mut(&key) else {
            return;
        };
        h.written(q.id);
        metrics()
            .records_written_total
            .with_label_values(&[&key.0, &key.1])
            .inc();
        self.publish(&st, &key);
    }

    fn failed(&self, q: &Queued, kafka: &AuditKafka, e: &AuditError) {
        let message = kafka.scrub(&e.to_string());
        tracing::warn!(error = %message, kind = %q.draft.kind, namespace = %q.draft.namespace, pair = %q.draft.pair, "writing an audit record failed; retrying");
        let mut st = self.lock();
        let key = (q.draft.namespace.clone(), q.draft.pair.clone());
        let target = self.target_text(kafka);
        let Some(h) = st.health.get_mut(&key) else {
            return;
        };
        h.failed(&message, &target);
        metrics()
            .write_failures_total
            .with_label_values(&[&key.0, &key.1])
            .inc();
    }

    /// End `kafka`'s writer when its queue is empty and no pair is recorded to it any
    /// more. Under the lock, so no record can be handed to it meanwhile.
    fn retire_if_unused(&self, kafka: &AuditKafka, rx: &mpsc::Receiver<Queued>) -> bool {
        let mut st = self.lock();
        let used = st.routes.values().any(|k| k == kafka);
        if used || !rx.is_empty() {
            return false;
        }
        st.writers.remove(kafka);
        true
    }
}

async fn run_writer(
    sink: Weak<Inner>,
    rerouted: Arc<Notify>,
    kafka: AuditKafka,
    mut rx: mpsc::Receiver<Queued>,
    mut appender: Box<dyn Append>,
) {
    loop {
        // Idle: also end when the pairs recorded here moved elsewhere (no record of theirs
        // would come here any more).
        let q = tokio::select! {
            q = rx.recv() => match q {
                Some(q) => q,
                None => return,
            },
            _ = rerouted.notified() => {
                if let Some(inner) = sink.upgrade()
                    && inner.retire_if_unused(&kafka, &rx)
                {
                    return;
                }
                continue;
            }
        };
        let mut wait = RETRY_MIN;
        loop {
            // Registered before looking where the record goes, so a move during the
            // attempt below ends the backoff after it.
            let moved = rerouted.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            // The sink's owner is gone (shutdown): nothing left to report to.
            let Some(inner) = sink.upgrade() else { return };
            if let Some(to) = inner.moved(&q.draft, &kafka) {
                inner.forward(&to, q);
                break;
            }
            // Do not keep the sink alive while waiting for Kafka.
            drop(inner);
            let result = appender.append(&q.draft).await;
            let Some(inner) = sink.upgrade() else { return };
            match result {
                Ok(a) => {
                    inner.written(&q, &a);
                    break;
                }
                Err(e) => {
                    inner.failed(&q, &kafka, &e);
                    drop(inner);
                    // Retry after the backoff, or at once when a pair's records moved
                    // (its credentials were fixed): the record may have to go there.
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = &mut moved => {}
                    }
                    wait = (wait * 2).min(RETRY_MAX);
                }
            }
        }
        if let Some(inner) = sink.upgrade()
            && inner.retire_if_unused(&kafka, &rx)
        {
            return;
        }
    }
}

#[cfg(test)]
#[path = "sink_tests.rs"]
mod tests;
