//! The source's Kafka side: producing batches through the gate, tracking their
//! acknowledgements, the periodic checkpointer, and the bounded end (settle, purge, final
//! checkpoint) — see the parent module for the contract.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use crate::replication::producer::DeliveryFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{EndTimings, PURGE_GRACE, Run, Shared, SourceEnd, lock};
use crate::model::Change;
use crate::replication::checkpoint;
use crate::replication::codec::{self, EncodedRecord};
use crate::replication::decide::{self, StoredCheckpoint};

/// Why a record was not handed to the producer.
enum NotEnqueued {
    /// The source ended (the gate is closed).
    Ended,
    /// librdkafka's queue stayed full until the fence's reading deadline.
    QueueFull,
    Kafka(KafkaError),
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Purged records fail by design when the source ends: not a Kafka problem to report.
fn purged(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight
        )
    )
}

impl Run {
    pub(super) async fn produce_batch(
        &mut self,
        changes: Vec<Change>,
        cursor: Option<String>,
        until: Option<Instant>,
    ) {
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
        self.produce(records, cursor, until).await;
    }

    /// Register `records` as one batch checkpointable at `cursor`, then enqueue them. The
    /// batch is registered first, so records read but never handed to the producer (the
    /// source ended, or the queue stayed full until `until`) count as unacknowledged.
    pub(super) async fn produce(
        &mut self,
        records: Vec<EncodedRecord>,
        cursor: Option<String>,
        until: Option<Instant>,
    ) {
        if records.is_empty() {
            lock(&self.shared.tracker).push(cursor, 0, None);
            return;
        }
        let oldest = records.iter().map(|r| r.timestamp_ms).min();
        let id = lock(&self.shared.tracker).push(cursor, records.len(), oldest);
        let handed = Instant::now();
        let mut futs: Vec<DeliveryFuture> = Vec::with_capacity(records.len());
        let mut ok = true;
        for r in &records {
            match self.enqueue(r, until).await {
                Ok(f) => futs.push(f),
                Err(e) => {
                    if let NotEnqueued::Kafka(e) = e {
                        *lock(&self.shared.kafka_error) = Some(e.to_string());
                    }
                    ok = false;
                    break;
                }
            }
        }
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
            let mut acked = 0;
            let mut err = None;
            for f in futs {
                match f.await {
                    Ok(Ok(d)) => {
                        acked += 1;
                        let e = offsets.entry(d.partition).or_insert(0);
                        *e = (*e).max(d.offset + 1);
                    }
                    Ok(Err((e, _))) => {
                        ok = false;
                        if !purged(&e) {
                            err = Some(e.to_string());
                        }
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
            if acked > 0 {
                crate::metrics::metrics()
                    .source_kafka_ack_seconds
                    .observe(handed.elapsed().as_secs_f64());
            }
            shared.produced.fetch_add(acked as u64, Ordering::Relaxed);
            if ok {
                *lock(&shared.kafka_error) = None;
            } else if let Some(e) = err {
                *lock(&shared.kafka_error) = Some(e);
            }
            lock(&shared.tracker).complete(id, acked);
            shared.acked.notify_waiters();
        });
    }

    /// Hand one record to librdkafka through the gate, waiting for room in its queue if
    /// needed (not past `until`).
    async fn enqueue(
        &self,
        r: &EncodedRecord,
        until: Option<Instant>,
    ) -> Result<DeliveryFuture, NotEnqueued> {
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
            let sent = {
                let gate = lock(&self.shared.gate);
                let Some(p) = gate.as_ref() else {
                    return Err(NotEnqueued::Ended);
                };
                p.send_result(rec).map_err(|(e, _)| e)
            };
            match sent {
                Ok(f) => return Ok(f),
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    if until.is_some_and(|u| Instant::now() >= u) {
                        return Err(NotEnqueued::QueueFull);
                    }
                    let notified = self.shared.acked.notified();
                    let _ = tokio::time::timeout(Duration::from_millis(10), notified).await;
                }
                Err(e) => return Err(NotEnqueued::Kafka(e)),
            }
        }
    }

    /// End the source by `deadline`: wait for Kafka's answers until then, stop the
    /// checkpointer, close the gate and purge what is unanswered, count what Kafka did not
    /// acknowledge, and write the final checkpoint if Kafka takes it in time.
    pub(super) async fn finish(
        &mut self,
        reached_head: bool,
        deadline: Instant,
        cp_stop: watch::Sender<bool>,
        mut checkpointer: JoinHandle<()>,
    ) -> SourceEnd {
        let t = Instant::now();
        self.shared.answered(deadline).await;
        let settle_ms = millis(t.elapsed());
        let _ = cp_stop.send(true);
        if tokio::time::timeout(PURGE_GRACE, &mut checkpointer)
            .await
            .is_err()
        {
            checkpointer.abort();
        }
        self.shared.close_and_purge();
        self.shared.answered(Instant::now() + PURGE_GRACE).await;
        let (checkpoint, read_cursor, unacknowledged) = {
            let tr = lock(&self.shared.tracker);
            let c = |x: Option<&str>| x.map(str::to_string);
            (c(tr.safe()), c(tr.read()), tr.unacknowledged())
        };
        let t_cp = Instant::now();
        let checkpoint_written = self.final_checkpoint(checkpoint.clone(), deadline).await;
        SourceEnd {
            checkpoint,
            checkpoint_written,
            read_cursor,
            reached_head,
            unacknowledged,
            feed_error: self.feed_error.borrow().error.clone(),
            timings: EndTimings {
                settle_ms,
                checkpoint_ms: millis(t_cp.elapsed()),
                ..EndTimings::default()
            },
        }
    }

    /// Write `cursor` as the final checkpoint; true if it is durable by `deadline` (or
    /// already was). Otherwise the write goes on in the background for at most
    /// `stop_timeout` — it is a cursor Kafka acknowledged everything before, so late is
    /// never wrong — and the next start re-reads from the previous one until it lands.
    async fn final_checkpoint(&self, cursor: Option<String>, deadline: Instant) -> bool {
        let Some(cursor) = cursor else {
            return true; // nothing checkpointable yet (a bootstrap that did not finish)
        };
        if lock(&self.shared.checkpoint).as_deref() == Some(cursor.as_str()) {
            return true;
        }
        let cp = StoredCheckpoint {
            cursor,
            epoch: self.epoch.clone(),
            at: now_rfc3339(),
        };
        let (producer, shared) = (self.producer.clone(), self.shared.clone());
        let (topic, key) = (self.cp_topic.clone(), self.cp_key.clone());
        let mut write = Box::pin(async move {
            let r = checkpoint::write(&producer, &topic, &key, &cp, Duration::ZERO).await;
            if r.is_ok() {
                *lock(&shared.checkpoint) = Some(cp.cursor.clone());
            }
            (r, producer)
        });
        match tokio::time::timeout_at(deadline, &mut write).await {
            Ok((Ok(()), _)) => true,
            Ok((Err(e), _)) => {
                tracing::warn!(error = %e, "final checkpoint not written; the next start re-reads from the previous one");
                false
            }
            Err(_) => {
                let bound = self.cfg.tuning.stop_timeout;
                tracing::info!(
                    ?bound,
                    "Kafka did not take the final checkpoint in time; writing it in the background"
                );
                tokio::spawn(async move {
                    let producer = match tokio::time::timeout(bound, &mut write).await {
                        Ok((r, producer)) => {
                            match r {
                                Ok(()) => tracing::info!("final checkpoint written late"),
                                Err(e) => {
                                    tracing::warn!(error = %e, "final checkpoint not written; the next start re-reads from the previous one")
                                }
                            }
                            Some(producer)
                        }
                        Err(_) => {
                            tracing::warn!(
                                ?bound,
                                "final checkpoint not written in time; the next start re-reads from the previous one"
                            );
                            None
                        }
                    };
                    // This may hold the last reference to the producer: dropping it waits
                    // for librdkafka, off the runtime's threads.
                    drop(crate::replication::off_runtime("close", move || {
                        drop((producer, write))
                    }));
                });
                false
            }
        }
    }
}

/// Writes the checkpoint every `interval` when it moved, through the current producer.
pub(super) async fn checkpointer(
    shared: Arc<Shared>,
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
        let Some(producer) = lock(&shared.gate).clone() else {
            return;
        };
        let cp = StoredCheckpoint {
            cursor: cursor.clone(),
            epoch: epoch.clone(),
            at: now_rfc3339(),
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

/// Whole milliseconds of `d` (saturating).
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
