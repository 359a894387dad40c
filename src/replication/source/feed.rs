//! The source's loop: reads the feed (following, bootstrapping, fencing) and reports the
//! feed's failures; producing and ending are in `produce` (see the parent module for the
//! contract).

use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::{Control, EndTimings, Run, SourceState, lock};
use crate::provider::ProviderError;
use crate::replication::config::backoff;
use crate::replication::decide::{self, FeedVerdict, SourcePosition};

/// How the main loop ends.
enum Ending {
    Fence {
        head: Option<String>,
        /// Spent asking for the head.
        head_ms: u64,
        read_until: Instant,
        deadline: Instant,
        reply: oneshot::Sender<super::SourceEnd>,
    },
    Stop {
        deadline: Instant,
        reply: oneshot::Sender<super::SourceEnd>,
    },
}

impl Run {
    pub(super) fn set_state(&self, s: SourceState) {
        self.shared.set_state(s);
    }

    pub(super) async fn main(mut self, position: SourcePosition) {
        let (cp_stop_tx, cp_stop_rx) = watch::channel(false);
        let checkpointer = tokio::spawn(super::produce::checkpointer(
            self.shared.clone(),
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
        let mut timings = EndTimings::default();
        let (reached_head, deadline, state, reply) = match ending {
            Ending::Fence {
                head,
                head_ms,
                read_until,
                deadline,
                reply,
            } => {
                let t = Instant::now();
                let reached = match &head {
                    Some(h) => self.read_to(h, read_until).await,
                    None => false,
                };
                timings = EndTimings {
                    head_ms,
                    read_ms: super::produce::millis(t.elapsed()),
                    ..EndTimings::default()
                };
                (reached, deadline, SourceState::Fenced, reply)
            }
            Ending::Stop { deadline, reply } => (false, deadline, SourceState::Stopped, reply),
        };
        let mut end = self
            .finish(reached_head, deadline, cp_stop_tx, checkpointer)
            .await;
        end.timings.head_ms = timings.head_ms;
        end.timings.read_ms = timings.read_ms;
        if state == SourceState::Stopped {
            end.feed_error = None;
        }
        let end = self.shared.record_end(end, state);
        let _ = reply.send(end);
        // Dropping the last holder of the Kafka producer waits for librdkafka: tens of
        // milliseconds that must not block this runtime thread, where the task just woken
        // by the reply (the switchover's fence step) is about to run.
        drop(crate::replication::off_runtime("close", move || drop(self)));
    }

    /// Take a control message if one is waiting.
    fn poll_ctrl(&mut self) -> Option<Control> {
        self.pending_ctrl
            .take()
            .or_else(|| self.ctrl.try_recv().ok())
    }

    /// Sleep `d` unless a control message arrives first (kept for the loop).
    pub(super) async fn pause(&mut self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            msg = self.ctrl.recv() => { self.pending_ctrl = Some(msg.unwrap_or_else(|| self.orphaned())); }
        }
    }

    /// The handle is gone without stopping the source: stop as if asked (nobody waits for
    /// the answer).
    pub(super) fn orphaned(&self) -> Control {
        Control::Stop {
            deadline: Instant::now() + self.cfg.tuning.stop_timeout,
            reply: oneshot::channel().0,
        }
    }

    /// Follow the feed until fenced or stopped.
    async fn follow(&mut self) -> Ending {
        let mut delays = backoff(&self.cfg.tuning);
        loop {
            match self.poll_ctrl() {
                Some(Control::Stop { deadline, reply }) => {
                    return Ending::Stop { deadline, reply };
                }
                Some(Control::Fence {
                    read_until,
                    deadline,
                    reply,
                }) => {
                    let t = Instant::now();
                    let head = self.fence_head(read_until).await;
                    return Ending::Fence {
                        head,
                        head_ms: super::produce::millis(t.elapsed()),
                        read_until,
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
            // Until a read has reached the feed's head, reads do not wait: an idle feed's
            // first read answers at once, so the lag is known without a long poll's wait.
            let wait = if self
                .shared
                .caught_up
                .load(std::sync::atomic::Ordering::Acquire)
            {
                t.feed_wait
            } else {
                Duration::ZERO
            };
            let read = tokio::select! {
                r = self.provider.changes(Some(&cursor), t.feed_batch, wait) => r,
                msg = self.ctrl.recv() => { self.pending_ctrl = Some(msg.unwrap_or_else(|| self.orphaned())); continue; }
            };
            match read {
                Ok(batch) => {
                    delays = backoff(&self.cfg.tuning);
                    self.clear_feed_error();
                    let at_head = batch.changes.len() < self.cfg.tuning.feed_batch;
                    self.produce_batch(batch.changes, Some(batch.cursor.clone()), None)
                        .await;
                    self.cursor = Some(batch.cursor);
                    if at_head {
                        // What was read is now counted as unacknowledged or produced.
                        self.shared
                            .caught_up
                            .store(true, std::sync::atomic::Ordering::Release);
                    }
                }
                Err(e) => {
                    let d = self.on_feed_error(e, &mut delays);
                    self.pause(d).await;
                }
            }
        }
    }

    /// The feed head to fence at, or `None` when the account cannot be read. An account
    /// whose last feed read found it unusable is asked only briefly
    /// ([`decide::head_read_budget`]).
    async fn fence_head(&self, until: Instant) -> Option<String> {
        let known_unusable = self.feed_error.borrow().error.is_some();
        let left = until.saturating_duration_since(Instant::now());
        let budget = decide::head_read_budget(left, known_unusable);
        match tokio::time::timeout(budget, self.provider.head_cursor()).await {
            Ok(Ok(h)) => Some(h),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "fence: the feed head cannot be read; fencing at the position reached");
                if decide::classify_feed_error(&e) == FeedVerdict::AccountUnusable {
                    self.observe_feed_error(e);
                }
                None
            }
            Err(_) => {
                if known_unusable {
                    tracing::info!(
                        ?budget,
                        "fence: the account, unusable at its last feed read, gave no feed head in time; fencing at the position reached"
                    );
                }
                None
            }
        }
    }

    /// Fence: read (without waiting) until the cursor reaches `head` or the feed is empty,
    /// giving up at `until`.
    async fn read_to(&mut self, head: &str, until: Instant) -> bool {
        let mut delays = backoff(&self.cfg.tuning);
        loop {
            let Some(cursor) = self.cursor.clone() else {
                return false; // a bootstrap in progress is not finished by a fence
            };
            if cursor == head {
                return true;
            }
            if Instant::now() >= until || !self.room_until(until).await {
                return false;
            }
            let limit = self.cfg.tuning.feed_batch;
            let read = tokio::time::timeout_at(
                until,
                self.provider.changes(Some(&cursor), limit, Duration::ZERO),
            )
            .await;
            match read {
                Err(_) => return false,
                Ok(Ok(batch)) => {
                    let empty = batch.changes.is_empty();
                    self.produce_batch(batch.changes, Some(batch.cursor.clone()), Some(until))
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
                    if tokio::time::timeout_at(until, tokio::time::sleep(d))
                        .await
                        .is_err()
                    {
                        return false;
                    }
                }
            }
        }
    }

    pub(super) fn clear_feed_error(&self) {
        self.feed_error
            .send_if_modified(|f| f.error.take().is_some());
    }

    /// One failed read that found the account unusable: one observation, timed now.
    fn observe_feed_error(&self, e: ProviderError) {
        let at = chrono::Utc::now();
        self.feed_error.send_modify(|f| {
            f.error = Some(e);
            f.seq += 1;
            f.at = Some(at);
        });
    }

    /// Handle a failed feed read; returns how long to wait before the next try. An
    /// unusable account (frozen, banned, …) is read again every `retry_max`, not faster:
    /// each read is an observation the detector counts, and a frozen account must not be
    /// hammered.
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
                self.observe_feed_error(e);
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
    pub(super) async fn wait_for_room(&mut self) -> bool {
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
                msg = self.ctrl.recv() => { self.pending_ctrl = Some(msg.unwrap_or_else(|| self.orphaned())); return false; }
            }
        }
    }

    /// Like [`wait_for_room`](Self::wait_for_room) while fencing: false at `until`.
    async fn room_until(&self, until: Instant) -> bool {
        loop {
            let notified = self.shared.acked.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if lock(&self.shared.tracker).outstanding() < self.cfg.tuning.max_in_flight {
                return true;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return false;
            }
        }
    }

    /// A batch failed in Kafka: wait for every answer (a control message interrupts the
    /// wait; the loop comes back here), then read again from the last acknowledged
    /// position, recreating the producer if it is in a fatal state.
    async fn rewind(&mut self) {
        if !self.wait_until_answered().await {
            return;
        }
        {
            let mut t = lock(&self.shared.tracker);
            self.cursor = t.safe().map(str::to_string);
            t.reset();
        }
        tracing::warn!(cursor = ?self.cursor, "Kafka refused records; re-reading the feed from the last acknowledged position");
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            tracing::warn!(%code, %reason, "the producer is in a fatal state; taking a new one");
            match crate::replication::clients::source_producer(
                &self.cfg.producer_config(),
                &self.cfg.namespace,
                &self.cfg.pair,
            ) {
                Ok(p) => {
                    let mut gate = lock(&self.shared.gate);
                    if gate.is_some() {
                        *gate = Some(p.clone());
                    }
                    self.producer = p;
                }
                Err(e) => *lock(&self.shared.kafka_error) = Some(e.to_string()),
            }
        }
    }
}
