//! The sink: consumes the pair's state topic and applies every record to the passive
//! account as a full-state `put_entity` / `delete_entity` tagged with the pair's origin.
//!
//! Contract:
//! - Assigns every partition of the state topic itself (no group rebalancing: one sink
//!   per pair and direction, which the controller's Lease guarantees); the consumer group
//!   `understudy.<ns>.<pair>.<direction>` only stores committed offsets. Without committed
//!   offsets it reads from the beginning, which bootstraps an empty standby from the
//!   compacted copy.
//! - Per-key order: the records of one partition are applied in offset order, one chunk
//!   at a time; within a chunk only the last state of each key is written (earlier ones
//!   are superseded full states) and distinct keys are written concurrently. Partitions
//!   run in parallel.
//! - An offset is committed (with the pipeline's epoch as metadata) only after every
//!   record before it was applied or dead-lettered; `enable.auto.commit=false`.
//! - Transient provider errors are retried with backoff forever, never skipped; a passive
//!   account that cannot take writes (frozen, credentials) is retried and reported. A
//!   record that can never be applied — undecodable, or `ProviderError::Rejected` — goes
//!   to `understudy.<ns>.<pair>.dlq` with the reason in headers, and the rest flows.
//! - `stop` finishes or abandons the chunk in hand and commits what was applied; `abort`
//!   is a crash (nothing committed beyond what already was): both lose nothing, since
//!   uncommitted records are applied again on the next start.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use prometheus::IntCounter;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::metrics::metrics;
use crate::provider::{AccountProvider, ProviderError};
use crate::replication::codec::{self, DlqReason, StateRecord};
use crate::replication::config::{PipelineConfig, backoff};
use crate::replication::decide::{self, ApplyVerdict, PartitionStart};

/// Errors starting or stopping the sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("creating the Kafka {what} failed: {source}; check the pair's Kafka settings")]
    Client {
        what: &'static str,
        source: KafkaError,
    },
    #[error(
        "reading {what} of {topic} failed: {source}; check that Kafka is reachable and the topic exists"
    )]
    Metadata {
        what: &'static str,
        topic: String,
        source: KafkaError,
    },
    #[error("topic {0} has no partitions; it must be created before the sink starts")]
    NoPartitions(String),
    #[error(
        "the final commit of the sink's offsets failed: {0}; the uncommitted records are applied again on restart"
    )]
    Commit(String),
    #[error("a blocking Kafka call failed to run: {0}")]
    Task(String),
}

/// Per-partition progress.
struct Part {
    /// Offset after the last record applied or dead-lettered.
    applied: AtomicI64,
    committed: AtomicI64,
    /// Observed-at (ms) of the first record of each chunk handed to the worker and not
    /// yet applied: the front is the oldest unapplied record the sink holds.
    pending: Mutex<VecDeque<i64>>,
}

struct Shared {
    parts: BTreeMap<i32, Part>,
    applied: AtomicU64,
    dlq: AtomicU64,
    writes: AtomicU64,
    last_applied_ms: AtomicI64,
    apply_error: Mutex<Option<ProviderError>>,
    kafka_error: Mutex<Option<String>>,
    progress: Notify,
    epoch: String,
    applied_total: IntCounter,
    dlq_total: IntCounter,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A point-in-time view of the sink.
#[derive(Clone, Debug, Default)]
pub struct SinkStatus {
    /// Records applied (including states superseded within a chunk).
    pub applied: u64,
    pub dlq: u64,
    /// Provider writes made.
    pub writes: u64,
    pub last_applied_ms: Option<i64>,
    /// Per partition, the offset after the last record applied or dead-lettered.
    pub applied_offsets: BTreeMap<i32, i64>,
    pub committed_offsets: BTreeMap<i32, i64>,
    /// Observed-at (ms) of the oldest record fetched but not applied.
    pub oldest_pending_ms: Option<i64>,
    /// Why the passive account refuses writes right now, if it does.
    pub apply_error: Option<ProviderError>,
    pub kafka_error: Option<String>,
}

/// A running sink.
pub struct Sink {
    shared: Arc<Shared>,
    consumer: Arc<StreamConsumer>,
    topic: String,
    stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    dispatcher: JoinHandle<()>,
    committer: JoinHandle<()>,
    commit_timeout: Duration,
}

struct Ctx {
    cfg: PipelineConfig,
    provider: Arc<dyn AccountProvider>,
    dlq: FutureProducer,
    shared: Arc<Shared>,
    tag: String,
    topic: String,
    dlq_topic: String,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SinkError> + Send + 'static,
) -> Result<T, SinkError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SinkError::Task(e.to_string()))?
}

impl Sink {
    /// Resolve each partition's start (committed offsets, or the flip's, or the
    /// beginning), assign them and start applying. The topics must exist.
    pub async fn start(
        cfg: PipelineConfig,
        provider: Arc<dyn AccountProvider>,
    ) -> Result<Sink, SinkError> {
        let consumer: StreamConsumer =
            cfg.consumer_config()
                .create()
                .map_err(|source| SinkError::Client {
                    what: "consumer",
                    source,
                })?;
        let consumer = Arc::new(consumer);
        let dlq: FutureProducer =
            cfg.producer_config()
                .create()
                .map_err(|source| SinkError::Client {
                    what: "DLQ producer",
                    source,
                })?;
        let topic = cfg.state_topic();
        let starts = {
            let (c, t, start) = (consumer.clone(), topic.clone(), cfg.start.clone());
            blocking(move || resolve_starts(&c, &t, &start)).await?
        };
        let mut tpl = TopicPartitionList::new();
        for (p, (start, _)) in &starts {
            let off = match start {
                PartitionStart::Offset(o) => Offset::Offset(*o),
                PartitionStart::Beginning => Offset::Beginning,
            };
            tpl.add_partition_offset(&topic, *p, off)
                .map_err(|source| SinkError::Metadata {
                    what: "assignment",
                    topic: topic.clone(),
                    source,
                })?;
        }
        consumer
            .assign(&tpl)
            .map_err(|source| SinkError::Metadata {
                what: "assignment",
                topic: topic.clone(),
                source,
            })?;
        let labels = cfg.labels();
        let labels: [&str; 3] = [&labels[0], &labels[1], &labels[2]];
        let shared = Arc::new(Shared {
            parts: starts
                .iter()
                .map(|(p, (_, first))| {
                    let part = Part {
                        applied: AtomicI64::new(*first),
                        committed: AtomicI64::new(*first),
                        pending: Mutex::new(VecDeque::new()),
                    };
                    (*p, part)
                })
                .collect(),
            applied: AtomicU64::new(0),
            dlq: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            last_applied_ms: AtomicI64::new(0),
            apply_error: Mutex::new(None),
            kafka_error: Mutex::new(None),
            progress: Notify::new(),
            epoch: cfg.start.epoch().unwrap_or("").to_string(),
            applied_total: metrics()
                .replication_applied_total
                .with_label_values(&labels),
            dlq_total: metrics().replication_dlq_total.with_label_values(&labels),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let ctx = Arc::new(Ctx {
            tag: cfg.origin_tag(),
            dlq_topic: cfg.dlq_topic(),
            topic: topic.clone(),
            cfg,
            provider,
            dlq,
            shared: shared.clone(),
        });
        let mut senders = BTreeMap::new();
        let mut workers = Vec::new();
        for p in starts.keys() {
            let (tx, rx) = mpsc::channel(4);
            senders.insert(*p, tx);
            workers.push(tokio::spawn(worker(*p, rx, ctx.clone(), stop_rx.clone())));
        }
        let dispatcher = tokio::spawn(dispatch(
            consumer.clone(),
            senders,
            shared.clone(),
            ctx.cfg.tuning.sink_chunk,
            stop_rx.clone(),
        ));
        let committer = tokio::spawn(committer(
            consumer.clone(),
            shared.clone(),
            topic.clone(),
            ctx.cfg.tuning.commit_interval,
            stop_rx,
        ));
        Ok(Sink {
            shared,
            consumer,
            topic,
            stop: stop_tx,
            workers,
            dispatcher,
            committer,
            commit_timeout: ctx.cfg.tuning.stop_timeout,
        })
    }
}

impl Sink {
    pub fn status(&self) -> SinkStatus {
        let s = &self.shared;
        let last = s.last_applied_ms.load(Ordering::Relaxed);
        SinkStatus {
            applied: s.applied.load(Ordering::Relaxed),
            dlq: s.dlq.load(Ordering::Relaxed),
            writes: s.writes.load(Ordering::Relaxed),
            last_applied_ms: (last > 0).then_some(last),
            applied_offsets: s
                .parts
                .iter()
                .map(|(p, st)| (*p, st.applied.load(Ordering::Acquire)))
                .collect(),
            committed_offsets: s
                .parts
                .iter()
                .map(|(p, st)| (*p, st.committed.load(Ordering::Acquire)))
                .collect(),
            oldest_pending_ms: s
                .parts
                .values()
                .filter_map(|st| lock(&st.pending).front().copied())
                .min(),
            apply_error: lock(&s.apply_error).clone(),
            kafka_error: lock(&s.kafka_error).clone(),
        }
    }

    /// The partitions the sink applies.
    pub fn partitions(&self) -> Vec<i32> {
        self.shared.parts.keys().copied().collect()
    }

    /// End offsets (high watermarks) of the state topic, asked of the broker now.
    pub async fn end_offsets(&self, timeout: Duration) -> Result<BTreeMap<i32, i64>, SinkError> {
        let (c, t, parts) = (self.consumer.clone(), self.topic.clone(), self.partitions());
        blocking(move || {
            parts
                .into_iter()
                .map(|p| {
                    c.fetch_watermarks(&t, p, timeout)
                        .map(|(_, high)| (p, high))
                        .map_err(|source| SinkError::Metadata {
                            what: "end offsets",
                            topic: t.clone(),
                            source,
                        })
                })
                .collect()
        })
        .await
    }

    /// Wait until every partition applied up to `target` (exclusive end offsets), or
    /// until `deadline`; returns the records of `target` not applied by then.
    pub async fn wait_applied(
        &self,
        target: &BTreeMap<i32, i64>,
        deadline: tokio::time::Instant,
    ) -> u64 {
        loop {
            let notified = self.shared.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let lost = decide::records_lost(target, &self.status().applied_offsets);
            if lost == 0 || tokio::time::Instant::now() >= deadline {
                return lost;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    /// Stop taking records, finish (or abandon) the chunk in hand, commit what was applied.
    pub async fn stop(mut self) -> Result<SinkStatus, SinkError> {
        let _ = self.stop.send(true);
        for w in self.workers.drain(..) {
            let _ = w.await;
        }
        let _ = (&mut self.dispatcher).await;
        let _ = (&mut self.committer).await;
        let commit = commit_now(&self.consumer, &self.shared, &self.topic);
        let result = match tokio::time::timeout(self.commit_timeout, commit).await {
            Ok(Ok(())) => Ok(self.status()),
            Ok(Err(e)) => Err(SinkError::Commit(e)),
            Err(_) => Err(SinkError::Commit(format!(
                "no answer within {:?}",
                self.commit_timeout
            ))),
        };
        self.shared.progress.notify_waiters();
        result
    }

    /// Like a crash: end every task now; nothing more is committed.
    pub fn abort(mut self) {
        self.abort_tasks();
    }

    fn abort_tasks(&mut self) {
        for w in &self.workers {
            w.abort();
        }
        self.dispatcher.abort();
        self.committer.abort();
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.abort_tasks();
    }
}

/// Each partition's start and the offset its progress counts from.
fn resolve_starts(
    consumer: &StreamConsumer,
    topic: &str,
    start: &decide::Start,
) -> Result<BTreeMap<i32, (PartitionStart, i64)>, SinkError> {
    let timeout = Duration::from_secs(10);
    let meta_err = |what, source| SinkError::Metadata {
        what,
        topic: topic.to_string(),
        source,
    };
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| meta_err("metadata", e))?;
    let parts: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if parts.is_empty() {
        return Err(SinkError::NoPartitions(topic.to_string()));
    }
    let mut tpl = TopicPartitionList::new();
    for p in &parts {
        tpl.add_partition(topic, *p);
    }
    let committed = consumer
        .committed_offsets(tpl, timeout)
        .map_err(|e| meta_err("committed offsets", e))?;
    let mut out = BTreeMap::new();
    for p in parts {
        let c = committed
            .find_partition(topic, p)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some((o, e.metadata().to_string())),
                _ => None,
            });
        let start = decide::sink_position(start, p, c.as_ref().map(|(o, m)| (*o, m.as_str())));
        let first = match start {
            PartitionStart::Offset(o) => o,
            PartitionStart::Beginning => {
                consumer
                    .fetch_watermarks(topic, p, timeout)
                    .map_err(|e| meta_err("watermarks", e))?
                    .0
            }
        };
        out.insert(p, (start, first));
    }
    Ok(out)
}

/// Reads ready messages in chunks and hands each partition's run to its worker.
async fn dispatch(
    consumer: Arc<StreamConsumer>,
    senders: BTreeMap<i32, mpsc::Sender<Vec<OwnedMessage>>>,
    shared: Arc<Shared>,
    chunk: usize,
    mut stop: watch::Receiver<bool>,
) {
    let mut stream = consumer.stream().ready_chunks(chunk.max(1));
    loop {
        let batch = tokio::select! {
            b = stream.next() => b,
            _ = stop.changed() => return,
        };
        let Some(batch) = batch else { return };
        let mut by_part: BTreeMap<i32, Vec<OwnedMessage>> = BTreeMap::new();
        for m in batch {
            match m {
                Ok(m) => by_part.entry(m.partition()).or_default().push(m.detach()),
                Err(e) => {
                    tracing::warn!(error = %e, "consuming the state topic");
                    *lock(&shared.kafka_error) = Some(e.to_string());
                }
            }
        }
        for (p, msgs) in by_part {
            let (Some(tx), Some(part)) = (senders.get(&p), shared.parts.get(&p)) else {
                continue;
            };
            let first_ts = msgs
                .first()
                .and_then(|m| m.timestamp().to_millis())
                .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
            lock(&part.pending).push_back(first_ts);
            tokio::select! {
                r = tx.send(msgs) => if r.is_err() { return },
                _ = stop.changed() => return,
            }
        }
    }
}

/// Applies one partition's chunks in order.
async fn worker(
    p: i32,
    mut rx: mpsc::Receiver<Vec<OwnedMessage>>,
    ctx: Arc<Ctx>,
    stop: watch::Receiver<bool>,
) {
    let Some(part) = ctx.shared.parts.get(&p) else {
        return;
    };
    loop {
        let mut stop_w = stop.clone();
        if *stop_w.borrow() {
            return;
        }
        let chunk = tokio::select! {
            c = rx.recv() => c,
            _ = stop_w.changed() => return,
        };
        let Some(chunk) = chunk else { return };
        let Some(last) = chunk.last().map(|m| m.offset()) else {
            continue;
        };
        if !apply_chunk(&ctx, &chunk, &stop).await {
            return; // stopped mid-chunk: nothing of it counts as applied
        }
        part.applied.store(last + 1, Ordering::Release);
        lock(&part.pending).pop_front();
        ctx.shared.progress.notify_waiters();
    }
}

enum Applied {
    Done,
    Poison(String),
    Stopped,
}

/// Applies one chunk; false when stopped before it was complete.
async fn apply_chunk(ctx: &Ctx, chunk: &[OwnedMessage], stop: &watch::Receiver<bool>) -> bool {
    let mut dead: Vec<(usize, DlqReason, String)> = Vec::new();
    let mut decoded = Vec::with_capacity(chunk.len());
    for (i, m) in chunk.iter().enumerate() {
        let headers = m.headers();
        let lookup = |name: &str| {
            headers.and_then(|h| h.iter().find(|x| x.key == name).and_then(|x| x.value))
        };
        match codec::decode(m.key(), m.payload(), lookup) {
            Ok(rec) => decoded.push((rec.key().clone(), (i, rec))),
            Err(e) => dead.push((i, DlqReason::Undecodable, e.to_string())),
        }
    }
    let n_decoded = decoded.len();
    let writes = decide::coalesce(decoded);
    let n_writes = writes.len();
    let conc = ctx.cfg.tuning.apply_concurrency.max(1);
    let results: Vec<(usize, Applied)> = futures::stream::iter(writes)
        .map(|(_, (i, rec))| async move { (i, apply_one(ctx, &rec, stop.clone()).await) })
        .buffer_unordered(conc)
        .collect()
        .await;
    let mut rejected = 0;
    for (i, r) in results {
        match r {
            Applied::Done => {}
            Applied::Poison(e) => {
                rejected += 1;
                dead.push((i, DlqReason::Rejected, e));
            }
            Applied::Stopped => return false,
        }
    }
    dead.sort_by_key(|(i, _, _)| *i);
    for (i, reason, err) in &dead {
        if !dead_letter(ctx, &chunk[*i], *reason, err, stop).await {
            return false;
        }
    }
    let s = &ctx.shared;
    let applied = (n_decoded - rejected) as u64;
    s.applied.fetch_add(applied, Ordering::Relaxed);
    s.writes
        .fetch_add((n_writes - rejected) as u64, Ordering::Relaxed);
    s.dlq.fetch_add(dead.len() as u64, Ordering::Relaxed);
    s.applied_total.inc_by(applied);
    s.dlq_total.inc_by(dead.len() as u64);
    s.last_applied_ms
        .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    true
}

/// Writes one record to the passive account, retrying until it succeeds, is poison, or
/// the sink stops.
async fn apply_one(ctx: &Ctx, rec: &StateRecord, mut stop: watch::Receiver<bool>) -> Applied {
    let mut delays = backoff(&ctx.cfg.tuning);
    loop {
        let result = match rec {
            StateRecord::Upsert { entity, .. } => {
                ctx.provider.put_entity(entity, Some(&ctx.tag)).await
            }
            StateRecord::Delete { key, .. } => {
                match ctx.provider.delete_entity(key, Some(&ctx.tag)).await {
                    Err(ProviderError::NotFound(_)) => Ok(()),
                    r => r,
                }
            }
        };
        let err = match result {
            Ok(()) => {
                let mut e = lock(&ctx.shared.apply_error);
                if e.is_some() {
                    *e = None;
                }
                return Applied::Done;
            }
            Err(e) => e,
        };
        let verdict = decide::classify_apply_error(&err);
        if verdict == ApplyVerdict::Poison {
            return Applied::Poison(err.to_string());
        }
        let mut delay = delays.next().unwrap_or(ctx.cfg.tuning.retry_max);
        if let ProviderError::RateLimited { retry_after } = &err {
            delay = delay.max(*retry_after);
        }
        if verdict == ApplyVerdict::Blocked {
            tracing::warn!(error = %err, key = %rec.key(), "the passive account refuses writes; retrying");
        }
        *lock(&ctx.shared.apply_error) = Some(err);
        if *stop.borrow() {
            return Applied::Stopped;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return Applied::Stopped,
        }
    }
}

/// Copies a record to the DLQ with the reason in its headers; retries until Kafka
/// acknowledges or the sink stops.
async fn dead_letter(
    ctx: &Ctx,
    m: &OwnedMessage,
    reason: DlqReason,
    err: &str,
    stop: &watch::Receiver<bool>,
) -> bool {
    tracing::warn!(reason = reason.as_str(), error = %err, partition = m.partition(), offset = m.offset(), "record to the dead-letter topic");
    let mut headers = OwnedHeaders::new();
    if let Some(h) = m.headers() {
        for x in h.iter() {
            headers = headers.insert(Header {
                key: x.key,
                value: x.value,
            });
        }
    }
    for (k, v) in codec::dlq_headers(reason, err, &ctx.topic, m.partition(), m.offset()) {
        headers = headers.insert(Header {
            key: k,
            value: Some(&v),
        });
    }
    let mut delays = backoff(&ctx.cfg.tuning);
    let mut stop = stop.clone();
    loop {
        let mut rec: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&ctx.dlq_topic).headers(headers.clone());
        if let Some(k) = m.key() {
            rec = rec.key(k);
        }
        if let Some(v) = m.payload() {
            rec = rec.payload(v);
        }
        match ctx.dlq.send(rec, Duration::from_secs(5)).await {
            Ok(_) => return true,
            Err((e, _)) => {
                tracing::warn!(error = %e, "writing to the dead-letter topic; retrying");
                *lock(&ctx.shared.kafka_error) = Some(e.to_string());
            }
        }
        let d = delays.next().unwrap_or(ctx.cfg.tuning.retry_max);
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = stop.changed() => return false,
        }
    }
}

/// Commits the applied offsets every `interval`.
async fn committer(
    consumer: Arc<StreamConsumer>,
    shared: Arc<Shared>,
    topic: String,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = commit_now(&consumer, &shared, &topic).await {
            tracing::warn!(error = %e, "committing the sink's offsets; retrying");
        }
    }
}

/// Commits every partition whose applied offset moved past the committed one, with the
/// pipeline's epoch as the offsets' metadata.
async fn commit_now(
    consumer: &Arc<StreamConsumer>,
    shared: &Arc<Shared>,
    topic: &str,
) -> Result<(), String> {
    let mut tpl = TopicPartitionList::new();
    let mut moved = Vec::new();
    for (p, st) in &shared.parts {
        let a = st.applied.load(Ordering::Acquire);
        if a > st.committed.load(Ordering::Acquire) {
            let mut e = tpl.add_partition(topic, *p);
            e.set_offset(Offset::Offset(a)).map_err(|e| e.to_string())?;
            e.set_metadata(&shared.epoch);
            moved.push((*p, a));
        }
    }
    if moved.is_empty() {
        return Ok(());
    }
    let c = consumer.clone();
    let r = tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync))
        .await
        .map_err(|e| e.to_string())?;
    match r {
        Ok(()) => {
            for (p, a) in moved {
                if let Some(st) = shared.parts.get(&p) {
                    st.committed.fetch_max(a, Ordering::AcqRel);
                }
            }
            Ok(())
        }
        Err(e) => {
            *lock(&shared.kafka_error) = Some(e.to_string());
            Err(e.to_string())
        }
    }
}
