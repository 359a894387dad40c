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

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::api::Side;
use crate::model::Entity;
use crate::provider::{AccountProvider, ProviderError};
use crate::replication::checkpoint::{self, CheckpointError};
use crate::replication::codec::{self, EncodedRecord, RecordMeta};
use crate::replication::config::{PipelineConfig, backoff};
use crate::replication::decide::{
    self, CheckpointTracker, FeedVerdict, SourcePosition, StoredCheckpoint,
};

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

struct Run {
    cfg: PipelineConfig,
    provider: Arc<dyn AccountProvider>,
    shared: Arc<Shared>,
    producer: Arc<FutureProducer>,
    ctrl: mpsc::Receiver<Control>,
    feed_error: watch::Sender<Option<ProviderError>>,
    side: Side,
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

/// How the main loop ends.
enum Ending {
    Fence {
        head: Option<String>,
        deadline: Instant,
        reply: oneshot::Sender<SourceEnd>,
    },
    Stop(oneshot::Sender<SourceEnd>),
}

impl Run {
    fn set_state(&self, s: SourceState) {
        *lock(&self.shared.state) = s;
    }

    async fn main(mut self, position: SourcePosition) {
        let (cp_stop_tx, cp_stop_rx) = watch::channel(false);
        let checkpointer = tokio::spawn(checkpointer(
            self.shared.clone(),
            self.producer.clone(),
            self.cp_topic.clone(),
            self.cp_key.clone(),
            self.epoch.clone(),
            self.cfg.tuning.checkpoint_interval,
            cp_stop_rx,
        ));
        if position == SourcePosition::Bootstrap {
            self.cursor = None;
        }
        let ending = self.follow().await;
        // Settle: everything produced answered by Kafka (bounded), then the last checkpoint.
        let (reached_head, err) = match &ending {
            Ending::Fence { head, deadline, .. } => {
                let reached = match head {
                    Some(h) => self.read_to(h, *deadline).await,
                    None => false,
                };
                (reached, self.feed_error.borrow().clone())
            }
            Ending::Stop(_) => (false, None),
        };
        let unacked = self.settle(self.cfg.tuning.stop_timeout).await;
        let _ = cp_stop_tx.send(true);
        let _ = checkpointer.await;
        let cursor = lock(&self.shared.tracker).safe().map(str::to_string);
        if let Some(c) = &cursor {
            self.write_checkpoint(c).await;
        }
        let end = SourceEnd {
            checkpoint: cursor,
            reached_head,
            unacknowledged: unacked,
            feed_error: err,
        };
        *lock(&self.shared.end) = Some(end.clone());
        let reply = match ending {
            Ending::Fence { reply, .. } => {
                self.set_state(SourceState::Fenced);
                reply
            }
            Ending::Stop(reply) => {
                self.set_state(SourceState::Stopped);
                reply
            }
        };
        let _ = reply.send(end);
    }

    /// Wait until Kafka answered for everything produced, at most `within`; returns how
    /// many records are still unanswered.
    async fn settle(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.shared.acked.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let outstanding = lock(&self.shared.tracker).outstanding();
            if outstanding == 0 || Instant::now() >= deadline {
                return outstanding;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    async fn write_checkpoint(&self, cursor: &str) {
        let cp = StoredCheckpoint {
            cursor: cursor.to_string(),
            epoch: self.epoch.clone(),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let t = self.cfg.tuning.stop_timeout;
        match checkpoint::write(&self.producer, &self.cp_topic, &self.cp_key, &cp, t).await {
            Ok(()) => *lock(&self.shared.checkpoint) = Some(cursor.to_string()),
            Err(e) => {
                tracing::warn!(error = %e, "final checkpoint not written; the next start re-reads from the previous one")
            }
        }
    }

    /// Take a control message if one is waiting.
    fn poll_ctrl(&mut self) -> Option<Control> {
        self.pending_ctrl
            .take()
            .or_else(|| self.ctrl.try_recv().ok())
    }

    /// Sleep `d` unless a control message arrives first (kept for the loop).
    async fn pause(&mut self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            msg = self.ctrl.recv() => { self.pending_ctrl = msg; }
        }
    }

    /// Follow the feed until fenced or stopped.
    async fn follow(&mut self) -> Ending {
        let mut delays = backoff(&self.cfg.tuning);
        loop {
            match self.poll_ctrl() {
                Some(Control::Stop { reply }) => return Ending::Stop(reply),
                Some(Control::Fence { deadline, reply }) => {
                    let head = self.fence_head(deadline).await;
                    return Ending::Fence {
                        head,
                        deadline,
                        reply,
                    };
                }
                None => {}
            }
            if lock(&self.shared.tracker).failed() {
                self.rewind().await;
                continue;
            }
            if !self.wait_for_room().await {
                continue;
            }
            let Some(cursor) = self.cursor.clone() else {
                self.set_state(SourceState::Bootstrapping);
                match self.bootstrap().await {
                    Ok(()) => delays = backoff(&self.cfg.tuning),
                    Err(e) => {
                        let d = self.on_feed_error(e, &mut delays);
                        self.pause(d).await;
                    }
                }
                continue;
            };
            self.set_state(SourceState::Following);
            let t = &self.cfg.tuning;
            let read = tokio::select! {
                r = self.provider.changes(Some(&cursor), t.feed_batch, t.feed_wait) => r,
                msg = self.ctrl.recv() => { self.pending_ctrl = msg; continue; }
            };
            match read {
                Ok(batch) => {
                    delays = backoff(&self.cfg.tuning);
                    self.clear_feed_error();
                    self.produce_batch(batch.changes, Some(batch.cursor.clone()))
                        .await;
                    self.cursor = Some(batch.cursor);
                }
                Err(e) => {
                    let d = self.on_feed_error(e, &mut delays);
                    self.pause(d).await;
                }
            }
        }
    }

    /// The feed head to fence at, or `None` when the account cannot be read.
    async fn fence_head(&self, deadline: Instant) -> Option<String> {
        match tokio::time::timeout_at(deadline, self.provider.head_cursor()).await {
            Ok(Ok(h)) => Some(h),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "fence: the feed head cannot be read; fencing at the position reached");
                if decide::classify_feed_error(&e) == FeedVerdict::AccountUnusable {
                    let _ = self.feed_error.send(Some(e));
                }
                None
            }
            Err(_) => None,
        }
    }

    /// Fence: read (without waiting) until the cursor reaches `head` or the feed is empty.
    async fn read_to(&mut self, head: &str, deadline: Instant) -> bool {
        let mut delays = backoff(&self.cfg.tuning);
        loop {
            let Some(cursor) = self.cursor.clone() else {
                return false; // a bootstrap in progress is not finished by a fence
            };
            if cursor == head {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            let limit = self.cfg.tuning.feed_batch;
            let read = tokio::time::timeout_at(
                deadline,
                self.provider.changes(Some(&cursor), limit, Duration::ZERO),
            )
            .await;
            match read {
                Err(_) => return false,
                Ok(Ok(batch)) => {
                    let empty = batch.changes.is_empty();
                    self.produce_batch(batch.changes, Some(batch.cursor.clone()))
                        .await;
                    self.cursor = Some(batch.cursor);
                    if empty {
                        return true;
                    }
                }
                Ok(Err(e)) => {
                    let verdict = decide::classify_feed_error(&e);
                    let d = self.on_feed_error(e, &mut delays);
                    if verdict != FeedVerdict::Retry {
                        return false;
                    }
                    if tokio::time::timeout_at(deadline, tokio::time::sleep(d))
                        .await
                        .is_err()
                    {
                        return false;
                    }
                }
            }
        }
    }

    fn clear_feed_error(&self) {
        if self.feed_error.borrow().is_some() {
            let _ = self.feed_error.send(None);
        }
    }

    /// Handle a failed feed read; returns how long to wait before the next try.
    fn on_feed_error(
        &mut self,
        e: ProviderError,
        delays: &mut impl Iterator<Item = Duration>,
    ) -> Duration {
        let max = self.cfg.tuning.retry_max;
        let next = delays.next().unwrap_or(max);
        match decide::classify_feed_error(&e) {
            FeedVerdict::AccountUnusable => {
                tracing::warn!(error = %e, account = %self.account, "the source account's feed cannot be read");
                let _ = self.feed_error.send(Some(e));
                max
            }
            FeedVerdict::Resync => {
                tracing::warn!(error = %e, "the feed cursor expired; bootstrapping from a full listing");
                self.cursor = None;
                Duration::ZERO
            }
            FeedVerdict::Retry => {
                tracing::debug!(error = %e, "feed read failed; retrying");
                match &e {
                    ProviderError::RateLimited { retry_after } => next.max(*retry_after),
                    _ => next,
                }
            }
        }
    }

    /// Block while too many records wait for Kafka. Returns false when interrupted by a
    /// control message (the loop handles it).
    async fn wait_for_room(&mut self) -> bool {
        loop {
            let notified = self.shared.acked.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let room = {
                let t = lock(&self.shared.tracker);
                t.outstanding() < self.cfg.tuning.max_in_flight || t.failed()
            };
            if room {
                return true;
            }
            tokio::select! {
                _ = notified => {}
                msg = self.ctrl.recv() => { self.pending_ctrl = msg; return false; }
            }
        }
    }

    /// A batch failed in Kafka: wait for every answer, then read again from the last
    /// acknowledged position (recreating the producer if it is in a fatal state).
    async fn rewind(&mut self) {
        let unanswered = self.settle(self.cfg.tuning.message_timeout).await;
        if unanswered > 0 {
            return; // still waiting; the loop comes back here
        }
        {
            let mut t = lock(&self.shared.tracker);
            self.cursor = t.safe().map(str::to_string);
            t.reset();
        }
        tracing::warn!(cursor = ?self.cursor, "Kafka refused records; re-reading the feed from the last acknowledged position");
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            tracing::warn!(%code, %reason, "the producer is in a fatal state; creating a new one");
            match self.cfg.producer_config().create::<FutureProducer>() {
                Ok(p) => self.producer = Arc::new(p),
                Err(e) => *lock(&self.shared.kafka_error) = Some(e.to_string()),
            }
        }
    }

    /// List every entity and produce it, then continue from the head noted before.
    async fn bootstrap(&mut self) -> Result<(), ProviderError> {
        let head = self.provider.head_cursor().await?;
        self.clear_feed_error();
        let mut after = None;
        loop {
            if self.pending_ctrl.is_some() {
                return Ok(()); // interrupted: no checkpoint, the next start bootstraps again
            }
            if let Ok(msg) = self.ctrl.try_recv() {
                self.pending_ctrl = Some(msg);
                return Ok(());
            }
            let page = self
                .provider
                .list_entities(after.as_ref(), self.cfg.tuning.feed_batch)
                .await?;
            let now = chrono::Utc::now();
            let observed = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let records: Vec<EncodedRecord> = page
                .entities
                .iter()
                .filter(|e| self.cfg.kinds.is_empty() || self.cfg.kinds.contains(&e.key.kind()))
                .filter_map(|e| self.encode_entity(e, &observed, now.timestamp_millis()))
                .collect();
            self.produce(records, None).await;
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
            if !self.wait_for_room().await {
                return Ok(());
            }
        }
        lock(&self.shared.tracker).push(Some(head.clone()), 0, None);
        self.cursor = Some(head);
        Ok(())
    }

    fn encode_entity(&self, e: &Entity, observed: &str, now_ms: i64) -> Option<EncodedRecord> {
        let meta = RecordMeta {
            origin_side: self.side,
            source_account: self.account.clone(),
            seq: 0,
            observed_at: observed.to_string(),
        };
        codec::encode_entity(e, &meta, now_ms)
            .map_err(|err| tracing::error!(error = %err, "entity not encodable; skipped"))
            .ok()
    }

    async fn produce_batch(&mut self, changes: Vec<crate::model::Change>, cursor: Option<String>) {
        let now = chrono::Utc::now().timestamp_millis();
        let mut records = Vec::with_capacity(changes.len());
        let mut skipped = 0;
        for ch in &changes {
            if !decide::replicate(ch, &self.tag, &self.cfg.kinds) {
                skipped += 1;
                continue;
            }
            match codec::encode_change(ch, self.side, &self.account, now) {
                Ok(r) => records.push(r),
                Err(e) => {
                    skipped += 1;
                    tracing::error!(error = %e, "change not encodable; skipped");
                }
            }
        }
        self.shared.skipped.fetch_add(skipped, Ordering::Relaxed);
        self.produce(records, cursor).await;
    }

    /// Enqueue `records` and register them as one batch checkpointable at `cursor`.
    async fn produce(&mut self, records: Vec<EncodedRecord>, cursor: Option<String>) {
        if records.is_empty() {
            lock(&self.shared.tracker).push(cursor, 0, None);
            return;
        }
        let oldest = records.iter().map(|r| r.timestamp_ms).min();
        let mut futs: Vec<DeliveryFuture> = Vec::with_capacity(records.len());
        let mut ok = true;
        for r in &records {
            match self.enqueue(r).await {
                Ok(f) => futs.push(f),
                Err(e) => {
                    *lock(&self.shared.kafka_error) = Some(e.to_string());
                    ok = false;
                    break;
                }
            }
        }
        let id = lock(&self.shared.tracker).push(cursor, records.len(), oldest);
        let shared = self.shared.clone();
        let n = futs.len();
        tokio::spawn(async move {
            let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
            let mut err = None;
            for f in futs {
                match f.await {
                    Ok(Ok(d)) => {
                        let e = offsets.entry(d.partition).or_insert(0);
                        *e = (*e).max(d.offset + 1);
                    }
                    Ok(Err((e, _))) => {
                        ok = false;
                        err = Some(e.to_string());
                    }
                    Err(_) => ok = false,
                }
            }
            {
                let mut po = lock(&shared.produced_offsets);
                for (p, o) in offsets {
                    let e = po.entry(p).or_insert(0);
                    *e = (*e).max(o);
                }
            }
            if ok {
                shared.produced.fetch_add(n as u64, Ordering::Relaxed);
                *lock(&shared.kafka_error) = None;
            } else if let Some(e) = err {
                *lock(&shared.kafka_error) = Some(e);
            }
            lock(&shared.tracker).complete(id, ok);
            shared.acked.notify_waiters();
        });
    }

    /// Hand one record to librdkafka, waiting for room in its queue if needed.
    async fn enqueue(&self, r: &EncodedRecord) -> Result<DeliveryFuture, KafkaError> {
        loop {
            let mut rec = FutureRecord::to(&self.topic)
                .key(&r.key)
                .timestamp(r.timestamp_ms);
            if let Some(v) = &r.value {
                rec = rec.payload(v);
            }
            if !r.headers.is_empty() {
                let mut h = OwnedHeaders::new_with_capacity(r.headers.len());
                for (k, v) in &r.headers {
                    h = h.insert(Header {
                        key: k,
                        value: Some(v),
                    });
                }
                rec = rec.headers(h);
            }
            match self.producer.send_result(rec) {
                Ok(f) => return Ok(f),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    let notified = self.shared.acked.notified();
                    let _ = tokio::time::timeout(Duration::from_millis(10), notified).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
}

/// Writes the checkpoint every `interval` when it moved.
async fn checkpointer(
    shared: Arc<Shared>,
    producer: Arc<FutureProducer>,
    topic: String,
    key: String,
    epoch: Option<String>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut written: Option<String> = lock(&shared.checkpoint).clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        let safe = lock(&shared.tracker).safe().map(str::to_string);
        let Some(cursor) = safe else { continue };
        if written.as_deref() == Some(cursor.as_str()) {
            continue;
        }
        let cp = StoredCheckpoint {
            cursor: cursor.clone(),
            epoch: epoch.clone(),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let write = checkpoint::write(&producer, &topic, &key, &cp, Duration::from_secs(30));
        tokio::select! {
            r = write => match r {
                Ok(()) => {
                    *lock(&shared.checkpoint) = Some(cursor.clone());
                    written = Some(cursor);
                }
                Err(e) => tracing::warn!(error = %e, "checkpoint not written; retrying"),
            },
            _ = stop.changed() => return,
        }
    }
}
