//! The sink: consumes the pair's state topic and applies every record to the passive
//! account as a full-state `put_entity` / `delete_entity` tagged with the pair's origin.
//!
//! Contract:
//! - Assigns every partition of the state topic itself (no group rebalancing: one sink
//!   per pair and direction, which the controller's Lease guarantees) on the consumer
//!   shared by every sink of its direction and Kafka settings ([`SharedConsumer`]), and
//!   reads them from queues of their own, so a passive account that refuses writes
//!   stalls only its own pair. The shared group `understudy.sink.<direction>` only stores
//!   committed offsets. Without a committed offset there, the pair's former group
//!   `understudy.<ns>.<pair>.<direction>` is read once (an upgrade); without either the
//!   sink reads from the beginning, which bootstraps an empty standby from the compacted
//!   copy.
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
//! - `halt` stops taking records at once (a switchover's drain is over: nothing more may
//!   reach the side about to take traffic); a write already sent finishes, no other
//!   starts. Only `stop_within` or `abort` follow.
//! - `stop_within` finishes or abandons the chunk in hand and commits what was applied,
//!   within its bound whatever Kafka does (tasks that do not end in time are aborted, a
//!   commit Kafka does not answer in time is reported); `abort` is a crash (nothing
//!   committed beyond what already was): all lose nothing, since uncommitted records are
//!   applied again on the next start.
//! - Every Kafka call of `start` and `end_offsets` is bounded by one deadline.
//! - Prefetch memory is bounded per partition: see `Tuning::consumer_queue_kib`; a worker
//!   holds one chunk at a time: of the records it took (at most `Tuning::sink_chunk`),
//!   one per key, the newest (`decide::Coalesced`), kept as the bytes Kafka sent; a record
//!   is decoded in full only while its write is in flight. A chunk still being applied
//!   after a second (writes waiting for the operator's write slots, a standby that
//!   refuses them) parks its partition: librdkafka drops what it fetched ahead and fetches
//!   again from after the chunk once it is applied, so a backlog waits in Kafka rather than
//!   in memory (`understudy_sink_partitions_parked`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::IntCounter;
use rdkafka::Offset;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::metrics::metrics;
use crate::provider::{AccountProvider, ProviderError};
use crate::replication::clients;
use crate::replication::config::PipelineConfig;
use crate::replication::decide::{self, PartitionStart};
use crate::replication::shared_consumer::{AttachError, ErrorSlot, SharedConsumer};

mod apply;
mod start;

use apply::{commit_now, committer, worker};
pub(crate) use start::watermarks_until;

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
    #[error("{0}")]
    Attach(#[from] AttachError),
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
    /// Whether the shared group holds this partition's position (else the next commit
    /// writes it, progress or not).
    stored: AtomicBool,
    /// Observed-at (ms) of the first record of each chunk handed to the worker and not
    /// yet applied: the front is the oldest unapplied record the sink holds.
    pending: Mutex<VecDeque<i64>>,
    /// Per key, the version of the change last written to the passive account: a record
    /// not newer is not written again (`decide::choose`). Only this partition's worker
    /// uses it.
    written: Mutex<HashMap<crate::model::EntityKey, decide::Version>>,
}

struct Shared {
    parts: BTreeMap<i32, Part>,
    applied: AtomicU64,
    dlq: AtomicU64,
    writes: AtomicU64,
    last_applied_ms: AtomicI64,
    apply_error: Mutex<Option<ProviderError>>,
    /// Also written by the shared consumer's events thread.
    kafka_error: ErrorSlot,
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

/// How the sink stopped.
#[derive(Clone, Debug)]
pub struct SinkStop {
    pub status: SinkStatus,
    /// Every applied record's offset was committed within the bound.
    pub committed: bool,
    /// Why not, if not (the uncommitted records are applied again on the next start).
    pub commit_error: Option<String>,
}

/// A running sink.
pub struct Sink {
    shared: Arc<Shared>,
    consumer: Arc<SharedConsumer>,
    /// End offsets are asked on a connection of their own: on the consumer's, the broker
    /// answers only after its pending long-poll fetch (up to `fetch.wait.max.ms`), which
    /// a fence would wait for. Shared with the other pipelines ([`clients`]).
    offsets_reader: Arc<BaseConsumer>,
    topic: String,
    stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    committer: JoinHandle<()>,
    stop_timeout: Duration,
}

struct Ctx {
    cfg: PipelineConfig,
    /// Parks and unparks the partitions (see [`SharedConsumer::park`]).
    consumer: Arc<SharedConsumer>,
    provider: Arc<dyn AccountProvider>,
    dlq: Arc<crate::replication::producer::Producer>,
    shared: Arc<Shared>,
    tag: String,
    topic: String,
    dlq_topic: String,
}

/// How long a start waits before trying again to assign partitions still held by a sink
/// of the same pair that is going away.
const ATTACH_RETRY: Duration = Duration::from_millis(50);
/// The pause before a final commit refused by a moving coordinator is made again.
const COMMIT_RETRY: Duration = Duration::from_millis(200);

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SinkError> + Send + 'static,
) -> Result<T, SinkError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SinkError::Task(e.to_string()))?
}

impl Sink {
    /// Resolve each partition's start (committed offsets, or the flip's, or the
    /// beginning), assign them and start applying. The topics must exist. Kafka must
    /// answer within `Tuning::start_timeout`.
    pub async fn start(
        cfg: PipelineConfig,
        provider: Arc<dyn AccountProvider>,
    ) -> Result<Sink, SinkError> {
        let deadline = Instant::now() + cfg.tuning.start_timeout;
        Self::start_until(cfg, provider, deadline).await
    }

    pub(crate) async fn start_until(
        cfg: PipelineConfig,
        provider: Arc<dyn AccountProvider>,
        deadline: Instant,
    ) -> Result<Sink, SinkError> {
        let consumer =
            clients::sink_consumer(&cfg.consumer_config()).map_err(|source| SinkError::Client {
                what: "consumer",
                source,
            })?;
        let offsets_reader = clients::offsets_reader(&cfg.metadata_config()).map_err(|source| {
            SinkError::Client {
                what: "offsets reader",
                source,
            }
        })?;
        let dlq =
            clients::dlq_producer(&cfg.producer_config()).map_err(|source| SinkError::Client {
                what: "DLQ producer",
                source,
            })?;
        let topic = cfg.state_topic();
        let starts = {
            let (c, t, cfg) = (consumer.clone(), topic.clone(), cfg.clone());
            blocking(move || start::resolve_starts(c.consumer(), &cfg, &t, deadline)).await?
        };
        let labels = cfg.labels();
        let labels: [&str; 3] = [&labels[0], &labels[1], &labels[2]];
        let shared = Arc::new(Shared {
            parts: starts
                .iter()
                .map(|(p, r)| {
                    let part = Part {
                        applied: AtomicI64::new(r.first),
                        committed: AtomicI64::new(r.first),
                        stored: AtomicBool::new(r.stored),
                        pending: Mutex::new(VecDeque::new()),
                        written: Mutex::new(HashMap::new()),
                    };
                    (*p, part)
                })
                .collect(),
            applied: AtomicU64::new(0),
            dlq: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            last_applied_ms: AtomicI64::new(0),
            apply_error: Mutex::new(None),
            kafka_error: ErrorSlot::default(),
            progress: Notify::new(),
            epoch: cfg.start.epoch().unwrap_or("").to_string(),
            applied_total: metrics()
                .replication_applied_total
                .with_label_values(&labels),
            dlq_total: metrics().replication_dlq_total.with_label_values(&labels),
        });
        let offsets: Vec<(i32, Offset)> = starts
            .iter()
            .map(|(p, r)| match r.start {
                PartitionStart::Offset(o) => (*p, Offset::Offset(o)),
                PartitionStart::Beginning => (*p, Offset::Beginning),
            })
            .collect();
        // A sink of this pair that was just aborted leaves the assignment when its last
        // holder lets go (a task being cancelled): wait for that, within the deadline.
        let queues = loop {
            match consumer.attach(&topic, &offsets, &shared.kafka_error) {
                Err(AttachError::Busy { .. }) if Instant::now() + ATTACH_RETRY < deadline => {
                    tokio::time::sleep(ATTACH_RETRY).await;
                }
                r => break r?,
            }
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let ctx = Arc::new(Ctx {
            tag: cfg.origin_tag(),
            dlq_topic: cfg.dlq_topic(),
            topic: topic.clone(),
            consumer: consumer.clone(),
            cfg,
            provider,
            dlq,
            shared: shared.clone(),
        });
        let workers = queues
            .into_iter()
            .map(|(p, q)| tokio::spawn(worker(p, q, ctx.clone(), stop_rx.clone())))
            .collect();
        let committer = tokio::spawn(committer(
            consumer.commits().clone(),
            shared.clone(),
            topic.clone(),
            ctx.cfg.tuning.commit_interval,
            stop_rx,
        ));
        Ok(Sink {
            shared,
            consumer,
            offsets_reader,
            topic,
            stop: stop_tx,
            workers,
            committer,
            stop_timeout: ctx.cfg.tuning.stop_timeout,
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

    /// End offsets (high watermarks) of the state topic, asked of the broker now; all
    /// partitions within `timeout`.
    pub async fn end_offsets(&self, timeout: Duration) -> Result<BTreeMap<i32, i64>, SinkError> {
        let deadline = Instant::now() + timeout;
        let (c, t, parts) = (
            self.offsets_reader.clone(),
            self.topic.clone(),
            self.partitions(),
        );
        blocking(move || watermarks_until(&c, &t, &parts, deadline)).await
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

    /// Stop taking records now: writes already sent to the passive account finish, no
    /// other starts, the chunk in hand does not count as applied (it is applied again by
    /// the next start). Nothing is committed; follow with [`stop_within`](Self::stop_within)
    /// or [`abort`](Self::abort).
    pub fn halt(&self) {
        let _ = self.stop.send(true);
    }

    /// Stop taking records, finish (or abandon) the chunk in hand, commit what was
    /// applied — within `within` whatever Kafka does: tasks that have not ended by then are
    /// aborted, and a commit not answered by then is reported (`committed: false`).
    pub async fn stop_within(mut self, within: Duration) -> SinkStop {
        let deadline = Instant::now() + within;
        let _ = self.stop.send(true);
        let mut tasks: Vec<&mut JoinHandle<()>> = self.workers.iter_mut().collect();
        tasks.push(&mut self.committer);
        for t in tasks {
            if tokio::time::timeout_at(deadline, &mut *t).await.is_err() {
                t.abort();
            }
        }
        // A coordinator that moved or is loading (a broker restarted) is asked again
        // until the deadline: an uncommitted stop loses nothing, but the next start
        // applies the records again.
        let commit = async {
            loop {
                match commit_now(self.consumer.commits(), &self.shared, &self.topic).await {
                    Err(e) if e.retriable && Instant::now() + COMMIT_RETRY < deadline => {
                        tokio::time::sleep(COMMIT_RETRY).await;
                    }
                    r => return r,
                }
            }
        };
        let commit_error = match tokio::time::timeout_at(deadline, commit).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.message),
            Err(_) => Some(format!("Kafka did not answer within {within:?}")),
        };
        self.shared.progress.notify_waiters();
        let stop = SinkStop {
            status: self.status(),
            committed: commit_error.is_none(),
            commit_error,
        };
        // Closing a client waits for librdkafka: off the runtime's threads (the last sink
        // of a shared consumer hands it to the consumer's own thread, which closes it).
        let clients = (self.consumer.clone(), self.offsets_reader.clone());
        drop(self);
        drop(crate::replication::off_runtime("close", move || {
            drop(clients)
        }));
        stop
    }

    /// [`stop_within`](Self::stop_within) `Tuning::stop_timeout`; an error if the final
    /// commit did not succeed.
    pub async fn stop(self) -> Result<SinkStatus, SinkError> {
        let within = self.stop_timeout;
        let stop = self.stop_within(within).await;
        match stop.commit_error {
            None => Ok(stop.status),
            Some(e) => Err(SinkError::Commit(e)),
        }
    }

    /// Like a crash: end every task now; nothing more is committed. The partitions leave
    /// the shared consumer's assignment at once (a new sink of the pair may start now).
    pub fn abort(mut self) {
        self.abort_tasks();
    }

    fn abort_tasks(&mut self) {
        for w in &self.workers {
            w.abort();
        }
        self.committer.abort();
        let parts = self.partitions();
        self.consumer.detach(&self.topic, &parts);
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.abort_tasks();
    }
}

#[cfg(test)]
#[path = "sink/tests.rs"]
mod tests;
