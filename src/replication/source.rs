//! The source: follows the active account's change feed and produces full-state records
//! to the pair's compacted state topic.
//!
//! Contract:
//! - Reads the feed with large long-poll batches; skips changes carrying the pair's
//!   origin tag (the sink's own writes: echo prevention) and kinds not replicated.
//! - Produces with the idempotent producer (`acks=all`), many batches in flight, bounded
//!   by `Tuning::max_in_flight`. The producer is shared by every source with the same
//!   Kafka settings ([`clients::source_producer`]).
//! - Checkpoints a feed cursor only after Kafka acknowledged every record read up to it
//!   ([`CheckpointTracker`]); a record Kafka finally refuses makes the source rewind to
//!   its checkpoint and read again (at-least-once; duplicates are harmless full states).
//! - Without a usable checkpoint it bootstraps: notes the feed head, produces every
//!   entity of a full listing and, once Kafka acknowledged it, a tombstone for every key
//!   the state topic still holds that the listing no longer returned (an entity deleted
//!   while no position was kept), then follows the feed from that head. An expired cursor
//!   bootstraps again.
//! - A feed it cannot read because the account is frozen, banned or refuses the
//!   credentials is reported on [`Source::feed_errors`] (the detector uses it): each failed
//!   read is one observation, numbered and timed ([`FeedErrors`]), retried no faster than
//!   `Tuning::retry_max`; the source never crashes on a provider answer.
//! - `fence` and `stop` end the source **within their bound whatever Kafka does**: `fence`
//!   reads up to the feed head seen at the call (or stops at once if the account cannot
//!   be read) for most of the bound, then waits for Kafka's acknowledgements until the
//!   bound; `stop` only waits. Then nothing more is produced (records Kafka has not
//!   acknowledged are purged from the shared producer, other sources' unanswered records
//!   with them, which those sources re-read, and counted in
//!   [`SourceEnd::unacknowledged`]), and the final checkpoint — only ever a cursor whose
//!   records Kafka acknowledged — is written if Kafka takes it in time, otherwise in the
//!   background for at most `Tuning::stop_timeout`, or not at all (the next start re-reads
//!   from the previous one). If the source's task does not answer in time, the handle ends
//!   it itself with the same guarantees.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::error::KafkaError;
use rdkafka::producer::PurgeConfig;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::provider::{AccountProvider, ProviderError};
use crate::replication::checkpoint::{self, CheckpointError};
use crate::replication::clients;
use crate::replication::config::PipelineConfig;

use crate::replication::decide::{self, CheckpointTracker, SourcePosition};
use crate::replication::producer::Producer;

mod bootstrap;
mod feed;
mod produce;

/// How long after its deadline the source's task has to answer a fence or stop before
/// the handle ends the source itself.
const END_GRACE: Duration = Duration::from_millis(600);
/// How long to wait for the delivery reports of purged records (they fail at once).
const PURGE_GRACE: Duration = Duration::from_millis(200);

/// Errors of the source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("creating the Kafka producer failed: {0}; check the pair's Kafka settings")]
    Producer(#[source] KafkaError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// What the source is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceState {
    Starting,
    /// Producing a full listing (no usable checkpoint).
    Bootstrapping,
    Following,
    /// Ended by `fence`.
    Fenced,
    /// Ended by `stop`.
    Stopped,
}

/// The source's observations of its feed being unreadable. Each failed read is one
/// observation: `seq` grows by one per failed attempt (never per status poll), `at` is
/// when that attempt failed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeedErrors {
    /// Why the latest failed read found the account unusable (frozen, banned, credentials
    /// refused, gone); `None` once a read succeeds again.
    pub error: Option<ProviderError>,
    /// Failed reads that found the account unusable since this source started.
    pub seq: u64,
    /// When the read numbered `seq` failed.
    pub at: Option<DateTime<Utc>>,
}

/// One running source: what its read loop (`feed.rs`) and its producing half
/// (`produce.rs`) share.
struct Run {
    cfg: PipelineConfig,
    provider: Arc<dyn AccountProvider>,
    shared: Arc<Shared>,
    /// The current producer (recreated after a fatal error); the final checkpoint uses it.
    producer: Arc<Producer>,
    ctrl: tokio::sync::mpsc::Receiver<Control>,
    feed_error: tokio::sync::watch::Sender<FeedErrors>,
    side: crate::api::Side,
    account: String,
    tag: String,
    topic: String,
    cp_topic: String,
    cp_key: String,
    epoch: Option<String>,
    /// The cursor the next read starts after (`None`: a bootstrap is due).
    cursor: Option<String>,
    pending_ctrl: Option<Control>,
}

/// A point-in-time view of the source.
#[derive(Clone, Debug)]
pub struct SourceStatus {
    pub state: SourceState,
    /// Records acknowledged by Kafka.
    pub produced: u64,
    /// Changes skipped: the pair's own writes, or kinds not replicated.
    pub skipped: u64,
    /// The last checkpoint written.
    pub checkpoint: Option<String>,
    /// Observed-at (epoch ms) of the oldest change read but not yet acknowledged.
    pub oldest_pending_ms: Option<i64>,
    /// Per partition, the offset after the newest record acknowledged.
    pub produced_offsets: BTreeMap<i32, i64>,
    /// Records read (since the last rewind) that Kafka has not acknowledged.
    pub unacknowledged: u64,
    /// Why the feed cannot be read right now (frozen, banned, …), if so.
    pub feed_error: Option<ProviderError>,
    /// Number of the latest failed feed read (see [`FeedErrors`]).
    pub feed_error_seq: u64,
    /// When that read failed.
    pub feed_error_at: Option<DateTime<Utc>>,
    /// The last Kafka error seen while producing (cleared by the next success).
    pub kafka_error: Option<String>,
    /// The source has read up to the feed's head at least once. Until then its lag is
    /// unknown: the changes it has not read yet are counted nowhere.
    pub caught_up: bool,
}

/// How the source ended.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceEnd {
    /// The newest feed cursor up to which Kafka acknowledged every record: the final
    /// checkpoint (changes after it were not replicated).
    pub checkpoint: Option<String>,
    /// Whether that checkpoint was durably written by the time the source ended (if not,
    /// it may still be written in the background; a restart before that re-reads from the
    /// previous one).
    pub checkpoint_written: bool,
    /// How far the source read the feed: changes after this cursor were not read.
    pub read_cursor: Option<String>,
    /// Whether the source read up to the feed head seen at the fence.
    pub reached_head: bool,
    /// Changes read from the feed (to be replicated) that Kafka had not acknowledged when
    /// the source ended: produced and unanswered, refused, or never handed to the
    /// producer. They were purged: nothing more is produced; a restart re-reads them.
    pub unacknowledged: u64,
    /// The feed error that stopped it early, if any.
    pub feed_error: Option<ProviderError>,
    /// Where the ending's time went.
    pub timings: EndTimings,
}

/// Where a source's ending spent its time, in milliseconds (zero for a part it did not
/// go through): the fence's log line says which part a slow fence waited on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndTimings {
    /// Asking the provider for the feed head (a fence only).
    pub head_ms: u64,
    /// Reading the feed up to that head.
    pub read_ms: u64,
    /// Waiting for Kafka to answer what was produced.
    pub settle_ms: u64,
    /// Writing the final checkpoint.
    pub checkpoint_ms: u64,
}

impl SourceEnd {
    /// Everything read was acknowledged and the final checkpoint written.
    pub fn clean(&self) -> bool {
        self.unacknowledged == 0 && self.checkpoint_written
    }
}

enum Control {
    Fence {
        /// Reading the feed stops here; then only Kafka's answers are awaited.
        read_until: Instant,
        deadline: Instant,
        reply: oneshot::Sender<SourceEnd>,
    },
    Stop {
        deadline: Instant,
        reply: oneshot::Sender<SourceEnd>,
    },
}

struct Shared {
    tracker: Mutex<CheckpointTracker>,
    acked: Notify,
    produced: AtomicU64,
    skipped: AtomicU64,
    produced_offsets: Mutex<BTreeMap<i32, i64>>,
    checkpoint: Mutex<Option<String>>,
    state: Mutex<SourceState>,
    kafka_error: Mutex<Option<String>>,
    end: Mutex<Option<SourceEnd>>,
    /// The producer records of the state topic go through; `None` once the source ended.
    /// Enqueueing holds this lock, so closing it and purging leaves nothing behind.
    gate: Mutex<Option<Arc<Producer>>>,
    /// A read of the feed returned less than a full batch: the source has been at the
    /// feed's head once, so what it has not handed to Kafka is counted in its lag.
    caught_up: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// The state, unless the source already ended (a late write never undoes the end).
    fn set_state(&self, s: SourceState) {
        let end = lock(&self.end);
        if end.is_none() {
            *lock(&self.state) = s;
        }
    }

    /// Stop producing to the state topic: close the gate and, if records of this source
    /// still wait for Kafka's answer, purge the producer (their delivery reports fail at
    /// once). The producer is shared with other sources (see `clients`): a purge fails
    /// their unanswered records too, and they re-read them; a source that ends with
    /// nothing unanswered leaves them alone. Idempotent.
    fn close_and_purge(&self) {
        let Some(p) = lock(&self.gate).take() else {
            return;
        };
        let unanswered = lock(&self.tracker).outstanding();
        if unanswered > 0 {
            tracing::info!(
                unanswered,
                "records of this source wait for Kafka at its end: purging the shared producer (other sources re-send theirs)"
            );
            crate::metrics::metrics().source_producer_purges_total.inc();
            p.purge(PurgeConfig::default().queue().inflight());
        }
    }

    /// Wait until every record produced has its answer, at most until `until`.
    async fn answered(&self, until: Instant) {
        loop {
            let notified = self.acked.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if lock(&self.tracker).outstanding() == 0 || Instant::now() >= until {
                return;
            }
            let _ = tokio::time::timeout_at(until, notified).await;
        }
    }

    /// Record how the source ended (the first end wins) and return the recorded one.
    fn record_end(&self, end: SourceEnd, state: SourceState) -> SourceEnd {
        let mut e = lock(&self.end);
        if let Some(first) = &*e {
            return first.clone();
        }
        *lock(&self.state) = state;
        *e = Some(end.clone());
        end
    }
}

/// A running source.
pub struct Source {
    shared: Arc<Shared>,
    ctrl: mpsc::Sender<Control>,
    task: JoinHandle<()>,
    feed_errors: watch::Receiver<FeedErrors>,
    stop_timeout: Duration,
}

impl Source {
    /// Reads the checkpoint, resolves the start position and starts following the feed.
    /// The topics must exist (the pipeline ensures them). Kafka must answer within
    /// `Tuning::start_timeout`.
    pub async fn start(
        cfg: PipelineConfig,
        provider: Arc<dyn AccountProvider>,
    ) -> Result<Source, SourceError> {
        let deadline = Instant::now() + cfg.tuning.start_timeout;
        Self::start_until(cfg, provider, deadline).await
    }

    pub(crate) async fn start_until(
        cfg: PipelineConfig,
        provider: Arc<dyn AccountProvider>,
        deadline: Instant,
    ) -> Result<Source, SourceError> {
        let producer = clients::source_producer(&cfg.producer_config(), &cfg.namespace, &cfg.pair)
            .map_err(SourceError::Producer)?;
        let cp_key = checkpoint::checkpoint_key(cfg.from, provider.account_id());
        let left = deadline.saturating_duration_since(Instant::now());
        let stored = checkpoint::read(&cfg, &cp_key, left).await?;
        let (position, epoch) = decide::source_position(&cfg.start, stored.as_ref());
        let start_cursor = match &position {
            SourcePosition::Cursor(c) => Some(c.clone()),
            SourcePosition::Bootstrap => None,
        };
        let shared = Arc::new(Shared {
            tracker: Mutex::new(CheckpointTracker::new(start_cursor.clone())),
            acked: Notify::new(),
            produced: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            produced_offsets: Mutex::new(BTreeMap::new()),
            checkpoint: Mutex::new(stored.map(|c| c.cursor)),
            state: Mutex::new(SourceState::Starting),
            kafka_error: Mutex::new(None),
            end: Mutex::new(None),
            gate: Mutex::new(Some(producer.clone())),
            caught_up: std::sync::atomic::AtomicBool::new(false),
        });
        let (ctrl_tx, ctrl_rx) = mpsc::channel(4);
        let (err_tx, err_rx) = watch::channel(FeedErrors::default());
        let stop_timeout = cfg.tuning.stop_timeout;
        let run = Run {
            side: cfg.from,
            account: provider.account_id().to_string(),
            tag: cfg.origin_tag(),
            topic: cfg.state_topic(),
            cp_topic: cfg.checkpoint_topic(),
            cp_key,
            epoch,
            cfg,
            provider,
            shared: shared.clone(),
            producer,
            ctrl: ctrl_rx,
            feed_error: err_tx,
            cursor: start_cursor,
            pending_ctrl: None,
        };
        let task = tokio::spawn(run.main(position));
        Ok(Source {
            shared,
            ctrl: ctrl_tx,
            task,
            feed_errors: err_rx,
            stop_timeout,
        })
    }

    pub fn status(&self) -> SourceStatus {
        let (oldest_pending_ms, unacknowledged) = {
            let t = lock(&self.shared.tracker);
            (t.oldest_pending_ms(), t.unacknowledged())
        };
        let feed = self.feed_errors.borrow().clone();
        SourceStatus {
            state: *lock(&self.shared.state),
            produced: self.shared.produced.load(Ordering::Relaxed),
            skipped: self.shared.skipped.load(Ordering::Relaxed),
            checkpoint: lock(&self.shared.checkpoint).clone(),
            oldest_pending_ms,
            produced_offsets: lock(&self.shared.produced_offsets).clone(),
            unacknowledged,
            feed_error: feed.error,
            feed_error_seq: feed.seq,
            feed_error_at: feed.at,
            kafka_error: lock(&self.shared.kafka_error).clone(),
            caught_up: self.shared.caught_up.load(Ordering::Acquire),
        }
    }

    /// The feed's failed reads (frozen, banned, unauthorized…), one observation each; the
    /// error is `None` once it reads again.
    pub fn feed_errors(&self) -> watch::Receiver<FeedErrors> {
        self.feed_errors.clone()
    }

    /// Read up to the feed head seen now, wait for Kafka, write the final checkpoint and
    /// end — all within `within` (plus well under a second), whatever Kafka does.
    /// Idempotent: a second call returns the same end.
    pub async fn fence(&self, within: Duration) -> SourceEnd {
        let now = Instant::now();
        let deadline = now + within;
        let read_until = now + decide::fence_read_budget(within);
        let (reply, rx) = oneshot::channel();
        let msg = Control::Fence {
            read_until,
            deadline,
            reply,
        };
        self.control(msg, rx, deadline, SourceState::Fenced).await
    }

    /// Stop reading, wait for Kafka, write the final checkpoint and end, within `within`
    /// (plus well under a second) whatever Kafka does; [`SourceEnd::clean`] says whether
    /// everything was acknowledged and checkpointed.
    pub async fn stop_within(mut self, within: Duration) -> SourceEnd {
        let deadline = Instant::now() + within;
        let (reply, rx) = oneshot::channel();
        let msg = Control::Stop { deadline, reply };
        let end = self.control(msg, rx, deadline, SourceState::Stopped).await;
        if tokio::time::timeout(END_GRACE, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
        end
    }

    /// [`stop_within`](Self::stop_within) `Tuning::stop_timeout`.
    pub async fn stop(self) -> SourceEnd {
        let within = self.stop_timeout;
        self.stop_within(within).await
    }

    /// End at once, like a crash: nothing is flushed or checkpointed.
    pub fn abort(self) {
        self.task.abort();
    }

    async fn control(
        &self,
        msg: Control,
        rx: oneshot::Receiver<SourceEnd>,
        deadline: Instant,
        state: SourceState,
    ) -> SourceEnd {
        if let Some(end) = lock(&self.shared.end).clone() {
            return end;
        }
        let hard = deadline + END_GRACE;
        if let Ok(Ok(())) = tokio::time::timeout_at(hard, self.ctrl.send(msg)).await
            && let Ok(Ok(end)) = tokio::time::timeout_at(hard, rx).await
        {
            return end;
        }
        // The task did not answer in time (or is gone): end the source from here.
        if let Some(end) = lock(&self.shared.end).clone() {
            return end;
        }
        self.force_end(state).await
    }

    /// End the source without its task: abort it, close the gate and purge, count.
    async fn force_end(&self, state: SourceState) -> SourceEnd {
        tracing::warn!(
            ?state,
            "the source did not end in time by itself; ending it from the handle"
        );
        self.task.abort();
        self.shared.close_and_purge();
        self.shared.answered(Instant::now() + PURGE_GRACE).await;
        let (checkpoint, read_cursor, unacknowledged) = {
            let t = lock(&self.shared.tracker);
            let c = |x: Option<&str>| x.map(str::to_string);
            (c(t.safe()), c(t.read()), t.unacknowledged())
        };
        let checkpoint_written =
            checkpoint.is_none() || *lock(&self.shared.checkpoint) == checkpoint;
        let end = SourceEnd {
            checkpoint,
            checkpoint_written,
            read_cursor,
            reached_head: false,
            unacknowledged,
            feed_error: self.feed_errors.borrow().error.clone(),
            timings: EndTimings::default(),
        };
        self.shared.record_end(end, state)
    }
}

#[cfg(test)]
impl Source {
    /// The producer this source sends through, until it ends.
    fn producer(&self) -> Option<Arc<Producer>> {
        lock(&self.shared.gate).clone()
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests;
