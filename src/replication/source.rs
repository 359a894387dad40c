//! The source: follows the active account's change feed and produces full-state records
//! to the pair's compacted state topic.
//!
//! Contract:
//! - Reads the feed with large long-poll batches; skips changes carrying the pair's
//!   origin tag (the sink's own writes: echo prevention) and kinds not replicated.
//! - Produces with the idempotent producer (`acks=all`), many batches in flight, bounded
//!   by `Tuning::max_in_flight`.
//! - Checkpoints a feed cursor only after Kafka acknowledged every record read up to it
//!   ([`CheckpointTracker`]); a record Kafka finally refuses makes the source rewind to
//!   its checkpoint and read again (at-least-once; duplicates are harmless full states).
//! - Without a usable checkpoint it bootstraps: notes the feed head, produces every
//!   entity of a full listing, then follows the feed from that head. An expired cursor
//!   bootstraps again.
//! - A feed it cannot read because the account is frozen, banned or refuses the
//!   credentials is reported on [`Source::feed_errors`] (the detector uses it) and retried
//!   slowly; the source never crashes on a provider answer.
//! - `fence` reads up to the feed head seen at the call (or stops at once if the account
//!   cannot be read), waits for Kafka's acknowledgements, writes the final checkpoint and
//!   ends. `stop` does the same without reading further.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::provider::{AccountProvider, ProviderError};
use crate::replication::checkpoint::{self, CheckpointError};
use crate::replication::config::PipelineConfig;
use feed::Run;

use crate::replication::decide::{self, CheckpointTracker, SourcePosition};

mod feed;

/// Errors of the source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("creating the Kafka producer failed: {0}; check the pair's Kafka settings")]
    Producer(#[source] KafkaError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("the source has already ended (fenced, stopped or aborted); start a new pipeline")]
    Ended,
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
    /// Why the feed cannot be read right now (frozen, banned, …), if so.
    pub feed_error: Option<ProviderError>,
    /// The last Kafka error seen while producing (cleared by the next success).
    pub kafka_error: Option<String>,
}

/// How the source ended.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceEnd {
    /// Feed cursor of the final checkpoint (everything before it is in Kafka).
    pub checkpoint: Option<String>,
    /// Whether the source read up to the feed head seen at the fence.
    pub reached_head: bool,
    /// Records produced but not acknowledged when it gave up waiting (re-read on restart).
    pub unacknowledged: usize,
    /// The feed error that stopped it early, if any.
    pub feed_error: Option<ProviderError>,
}

enum Control {
    Fence {
        deadline: Instant,
        reply: oneshot::Sender<SourceEnd>,
    },
    Stop {
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
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running source.
pub struct Source {
    shared: Arc<Shared>,
    ctrl: mpsc::Sender<Control>,
    task: JoinHandle<()>,
    feed_errors: watch::Receiver<Option<ProviderError>>,
}

impl Source {
    /// Reads the checkpoint, resolves the start position and starts following the feed.
    /// The topics must exist (the pipeline ensures them).
    pub async fn start(
        cfg: PipelineConfig,
        provider: Arc<dyn AccountProvider>,
    ) -> Result<Source, SourceError> {
        let producer: FutureProducer = cfg
            .producer_config()
            .create()
            .map_err(SourceError::Producer)?;
        let cp_key = checkpoint::checkpoint_key(cfg.from, provider.account_id());
        let stored = checkpoint::read(&cfg, &cp_key, Duration::from_secs(30)).await?;
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
        });
        let (ctrl_tx, ctrl_rx) = mpsc::channel(4);
        let (err_tx, err_rx) = watch::channel(None);
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
            producer: Arc::new(producer),
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
        })
    }

    pub fn status(&self) -> SourceStatus {
        let t = lock(&self.shared.tracker);
        SourceStatus {
            state: *lock(&self.shared.state),
            produced: self.shared.produced.load(Ordering::Relaxed),
            skipped: self.shared.skipped.load(Ordering::Relaxed),
            checkpoint: lock(&self.shared.checkpoint).clone(),
            oldest_pending_ms: t.oldest_pending_ms(),
            produced_offsets: lock(&self.shared.produced_offsets).clone(),
            feed_error: self.feed_errors.borrow().clone(),
            kafka_error: lock(&self.shared.kafka_error).clone(),
        }
    }

    /// Typed errors of the feed (frozen, banned, unauthorized…); `None` once it reads again.
    pub fn feed_errors(&self) -> watch::Receiver<Option<ProviderError>> {
        self.feed_errors.clone()
    }

    /// Read up to the feed head seen now (giving up at `within`), wait for Kafka, write
    /// the final checkpoint and end. Idempotent: a second call returns the same end.
    pub async fn fence(&self, within: Duration) -> Result<SourceEnd, SourceError> {
        let (reply, rx) = oneshot::channel();
        let deadline = Instant::now() + within;
        self.control(Control::Fence { deadline, reply }, rx).await
    }

    /// Stop reading, wait for Kafka, write the final checkpoint and end.
    pub async fn stop(mut self) -> Result<SourceEnd, SourceError> {
        let (reply, rx) = oneshot::channel();
        let end = self.control(Control::Stop { reply }, rx).await;
        let _ = (&mut self.task).await;
        end
    }

    /// End at once, like a crash: nothing is flushed or checkpointed.
    pub fn abort(self) {
        self.task.abort();
    }

    async fn control(
        &self,
        msg: Control,
        rx: oneshot::Receiver<SourceEnd>,
    ) -> Result<SourceEnd, SourceError> {
        if let Some(end) = lock(&self.shared.end).clone() {
            return Ok(end);
        }
        if self.ctrl.send(msg).await.is_err() {
            return lock(&self.shared.end).clone().ok_or(SourceError::Ended);
        }
        match rx.await {
            Ok(end) => Ok(end),
            Err(_) => lock(&self.shared.end).clone().ok_or(SourceError::Ended),
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.task.abort();
    }
}
