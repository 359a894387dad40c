//! The source's loop: reads the feed, produces, tracks acknowledgements, checkpoints,
//! fences and stops (see the parent module for the contract).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::{Control, Shared, SourceEnd, SourceState, lock};
use crate::api::Side;
use crate::model::Entity;
use crate::provider::{AccountProvider, ProviderError};
use crate::replication::checkpoint;
use crate::replication::codec::{self, EncodedRecord, RecordMeta};
use crate::replication::config::{PipelineConfig, backoff};
use crate::replication::decide::{self, FeedVerdict, SourcePosition, StoredCheckpoint};

pub(super) struct Run {
    pub(super) cfg: PipelineConfig,
    pub(super) provider: Arc<dyn AccountProvider>,
    pub(super) shared: Arc<Shared>,
    pub(super) producer: Arc<FutureProducer>,
    pub(super) ctrl: mpsc::Receiver<Control>,
    pub(super) feed_error: watch::Sender<Option<ProviderError>>,
    pub(super) side: Side,
    pub(super) account: String,
    pub(super) tag: String,
    pub(super) topic: String,
    pub(super) cp_topic: String,
    pub(super) cp_key: String,
    pub(super) epoch: Option<String>,
    /// The cursor the next read starts after (`None`: a bootstrap is due).
    pub(super) cursor: Option<String>,
    pub(super) pending_ctrl: Option<Control>,
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

    pub(super) async fn main(mut self, position: SourcePosition) {
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
        let t = Instant::now();
        let unacked = self.settle(self.cfg.tuning.stop_timeout).await;
        let settle_ms = t.elapsed().as_millis();
        let _ = cp_stop_tx.send(true);
        let _ = checkpointer.await;
        let checkpointer_ms = t.elapsed().as_millis() - settle_ms;
        let cursor = lock(&self.shared.tracker).safe().map(str::to_string);
        if let Some(c) = &cursor {
            self.write_checkpoint(c).await;
        }
        tracing::debug!(
            settle_ms,
            checkpointer_ms,
            total_ms = t.elapsed().as_millis(),
            "source end timings"
        );
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
        // Dropping the Kafka producer joins its polling thread and waits for librdkafka:
        // tens of milliseconds that must not block this runtime thread, where the task
        // just woken by the reply (the switchover's fence step) is about to run.
        tokio::task::spawn_blocking(move || drop(self));
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
            msg = self.ctrl.recv() => { self.pending_ctrl = Some(msg.unwrap_or_else(orphaned)); }
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
                msg = self.ctrl.recv() => { self.pending_ctrl = Some(msg.unwrap_or_else(orphaned)); continue; }
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
                msg = self.ctrl.recv() => { self.pending_ctrl = Some(msg.unwrap_or_else(orphaned)); return false; }
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

/// The handle is gone without stopping the source: stop as if asked (nobody waits for
/// the answer).
fn orphaned() -> Control {
    Control::Stop {
        reply: oneshot::channel().0,
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
