//! The sink's tasks: one worker per partition reading its partition's queue and applying
//! chunks in order, dead-lettering poison, and committing applied offsets (see the parent
//! module for the contract).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use futures::StreamExt;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::{Ctx, Part, Shared, lock};
use crate::model::EntityKey;
use crate::provider::ProviderError;
use crate::replication::codec::{self, DlqReason, RecordMeta, StateRecord};
use crate::replication::commit_lane::{CommitLane, commit_retriable};
use crate::replication::config::backoff;
use crate::replication::decide::{self, ApplyVerdict};
use crate::replication::shared_consumer::PartitionQueue;

/// Applies one partition's records in order, a chunk (the records ready, at most
/// `Tuning::sink_chunk`) at a time; takes the next chunk only when the last is applied,
/// so records wait in the partition's queue (bounded by librdkafka), not here. A chunk
/// holds one record per key however many it took: each record is decoded as it is taken
/// and replaces the key's older state (`decide::Coalesced`), so a backlog of changes to
/// the same entities costs the memory of the entities, not of the backlog.
///
/// A waiting worker also looks at its queue every [`WAKE_FALLBACK`]: librdkafka wakes a
/// waiting stream only when its queue turns from empty to non-empty, and that edge can be
/// lost (an error event taken by the same poll, e.g. while the broker restarts), which
/// left the partition stalled for good with its records in the queue.
pub(super) async fn worker(
    p: i32,
    queue: Arc<PartitionQueue>,
    ctx: Arc<Ctx>,
    stop: watch::Receiver<bool>,
) {
    let Some(part) = ctx.shared.parts.get(&p) else {
        return;
    };
    let cap = ctx.cfg.tuning.sink_chunk.max(1);
    let mut stream = queue.stream();
    loop {
        let mut stop_w = stop.clone();
        if *stop_w.borrow() {
            return;
        }
        let first = tokio::select! {
            biased; // a record ready at the same time as the fallback is no lost wake-up
            m = stream.next() => m,
            _ = stop_w.changed() => return,
            _ = tokio::time::sleep(WAKE_FALLBACK) => match ready(&mut stream).await {
                Some(m) => {
                    crate::metrics::metrics().sink_lost_wakeups_total.inc();
                    tracing::debug!(partition = p, "records waited in the queue without a wake-up");
                    Some(m)
                }
                None => continue,
            },
        };
        let mut next = first;
        let mut chunk = Chunk::default();
        let mut taken = 0;
        while let Some(m) = next.take() {
            taken += 1;
            match m {
                Ok(m) => chunk.take(&m),
                Err(e) => {
                    tracing::warn!(error = %e, partition = p, "consuming the state topic");
                    *lock(&ctx.shared.kafka_error) = Some(e.to_string());
                }
            }
            if taken < cap {
                next = ready(&mut stream).await;
            }
        }
        if taken == 0 {
            return; // the queue ended
        }
        let Some(last) = chunk.last_offset else {
            continue;
        };
        lock(&part.pending).push_back(chunk.first_ts);
        if !parked_while_slow(&ctx, p, apply_chunk(&ctx, part, p, chunk, &stop)).await {
            return; // stopped mid-chunk: nothing of it counts as applied
        }
        part.applied.store(last + 1, Ordering::Release);
        lock(&part.pending).pop_front();
        ctx.shared.progress.notify_waiters();
    }
}

/// The next record if one is ready now (`None` if none is, or the queue ended).
async fn ready<S: futures::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| match stream.poll_next_unpin(cx) {
        Poll::Ready(item) => Poll::Ready(item),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// A record taken into a chunk: its bytes, decoded when it is written (so a chunk waiting
/// for write slots holds records as compact as Kafka sent them), and kept for the
/// dead-letter topic should the passive account reject it.
struct Taken {
    msg: OwnedMessage,
    version: Option<decide::Version>,
}

/// The records of one chunk: per key the newest state, and those that could not be
/// decoded (in offset order).
#[derive(Default)]
struct Chunk {
    records: decide::Coalesced<EntityKey, Taken>,
    undecodable: Vec<(OwnedMessage, String)>,
    /// When the first record taken was produced (epoch ms): how old the oldest record
    /// the sink holds is.
    first_ts: i64,
    last_offset: Option<i64>,
}

impl Chunk {
    fn take(&mut self, m: &BorrowedMessage<'_>) {
        if self.last_offset.is_none() {
            self.first_ts = m
                .timestamp()
                .to_millis()
                .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        }
        self.last_offset = Some(m.offset());
        match codec::peek_message(m) {
            Ok((key, meta)) => {
                let version = meta.as_ref().and_then(version_of);
                let msg = m.detach();
                self.records.push(key, version, Taken { msg, version });
            }
            Err(e) => self.undecodable.push((m.detach(), e.to_string())),
        }
    }
}

/// How long a chunk may take before its partition is parked.
const PARK_AFTER: Duration = Duration::from_secs(1);
/// How long a worker waits for a wake-up before it looks at its queue anyway.
const WAKE_FALLBACK: Duration = Duration::from_secs(1);

/// A parked partition, unparked when dropped (the chunk applied, or the worker stopped or
/// aborted).
struct Parked<'a> {
    ctx: &'a Ctx,
    p: i32,
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.ctx.consumer.unpark(&self.ctx.topic, self.p);
        crate::metrics::metrics().sink_partitions_parked.dec();
    }
}

/// Runs `apply`; once it has taken [`PARK_AFTER`], parks the partition until it ends:
/// librdkafka drops the records it fetched ahead, and fetches again from after the chunk.
async fn parked_while_slow(ctx: &Ctx, p: i32, apply: impl Future<Output = bool>) -> bool {
    tokio::pin!(apply);
    tokio::select! {
        done = &mut apply => return done,
        _ = tokio::time::sleep(PARK_AFTER) => {}
    }
    ctx.consumer.park(&ctx.topic, p);
    crate::metrics::metrics().sink_partitions_parked.inc();
    let _parked = Parked { ctx, p };
    apply.await
}

enum Applied {
    Done,
    Poison(DlqReason, String),
    /// Names what the passive account does not hold yet; tried again once the rest of
    /// the chunk is applied.
    Deferred,
    Stopped,
}

/// When a record naming what the passive account lacks is tried again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnMissing {
    /// At once: it is deferred to after the rest of the chunk, which may bring it.
    Defer,
    /// Retried with backoff until `Tuning::reference_wait`, then to the DLQ.
    Wait,
}

/// Applies one chunk; false when stopped before it was complete.
async fn apply_chunk(
    ctx: &Ctx,
    part: &Part,
    p: i32,
    chunk: Chunk,
    stop: &watch::Receiver<bool>,
) -> bool {
    let n_decoded = chunk.records.taken();
    let mut dead: Vec<(OwnedMessage, DlqReason, String)> = chunk
        .undecodable
        .into_iter()
        .map(|(m, e)| (m, DlqReason::Undecodable, e))
        .collect();
    let chosen = chunk.records.choose(&lock(&part.written));
    if chosen.stale > 0 {
        tracing::info!(
            partition = p,
            stale = chosen.stale,
            "records older than what the passive account already holds were not written (a late copy from a replica that lost the pair, or a feed read again)"
        );
    }
    let writes = chosen.writes;
    let n_writes = writes.len();
    let conc = ctx.cfg.tuning.apply_concurrency.max(1);
    let pass = |writes: Vec<(EntityKey, Taken)>, on_missing| {
        futures::stream::iter(writes)
            .map(move |(key, t)| async move {
                let r = apply_one(ctx, &key, &t.msg, stop.clone(), on_missing).await;
                (r, key, t)
            })
            .buffer_unordered(conc)
            .collect::<Vec<(Applied, EntityKey, Taken)>>()
    };
    // A record naming another (a tag its members) may be tried while that other's record
    // is still in flight beside it: deferred, it is tried again after the rest of the
    // chunk, so it does not hold a write slot the record it needs is waiting for.
    let (deferred, mut results): (Vec<_>, Vec<_>) = pass(writes, OnMissing::Defer)
        .await
        .into_iter()
        .partition(|(r, _, _)| matches!(r, Applied::Deferred));
    if !deferred.is_empty() {
        let deferred = deferred.into_iter().map(|(_, key, t)| (key, t)).collect();
        results.extend(pass(deferred, OnMissing::Wait).await);
    }
    let mut rejected = 0;
    {
        // One lock for the chunk's results, released before the DLQ's awaits.
        let mut written = lock(&part.written);
        for (r, key, t) in results {
            match r {
                Applied::Done => decide::remember(&mut written, key, t.version),
                Applied::Poison(reason, e) => {
                    rejected += 1;
                    dead.push((t.msg, reason, e));
                }
                // Never: the second pass waits instead of deferring.
                Applied::Deferred | Applied::Stopped => return false,
            }
        }
    }
    dead.sort_by_key(|(m, _, _)| m.offset());
    for (m, reason, err) in &dead {
        if !dead_letter(ctx, m, *reason, err, stop).await {
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

/// The version of a record's change (see `decide::choose`).
fn version_of(m: &RecordMeta) -> Option<decide::Version> {
    decide::Version::of(
        &m.source_account,
        m.seq,
        codec::parse_rfc3339_ms(&m.observed_at),
    )
}

/// Writes one record to the passive account, retrying until it succeeds, is poison, or
/// the sink stops (or, with [`OnMissing::Defer`], names what the account lacks). The
/// record is decoded for each attempt once it holds a write slot, so only the writes in
/// flight hold decoded entities.
async fn apply_one(
    ctx: &Ctx,
    key: &EntityKey,
    msg: &OwnedMessage,
    mut stop: watch::Receiver<bool>,
    on_missing: OnMissing,
) -> Applied {
    let kind = key.kind();
    if let Some(nr) = ctx
        .provider
        .not_replicable()
        .into_iter()
        .find(|n| n.kind == kind)
    {
        // Read, recorded in the topic and compared by drills, but no API writes it: not
        // a poison record, nothing for the DLQ (the pair's NotReplicable condition says so).
        tracing::debug!(%key, reason = nr.reason, "not replicable; skipped");
        return Applied::Done;
    }
    let mut delays = backoff(&ctx.cfg.tuning);
    let first_attempt = tokio::time::Instant::now();
    loop {
        // One of the operator-wide write slots, held until the provider answered; halted
        // or stopping, no new write starts (one already sent finishes).
        let Some(slot) = crate::replication::writes::global().slot(&mut stop).await else {
            return Applied::Stopped;
        };
        // Decoded for this attempt only: a write backing off holds no decoded entity.
        let rec = match codec::decode_message(msg) {
            Ok(r) => r,
            Err(e) => return Applied::Poison(DlqReason::Undecodable, e.to_string()),
        };
        let result = match &rec {
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
        drop(slot);
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
        let verdict = decide::classify_apply_error(
            &err,
            first_attempt.elapsed(),
            ctx.cfg.tuning.reference_wait,
        );
        match verdict {
            ApplyVerdict::Poison => return Applied::Poison(DlqReason::Rejected, err.to_string()),
            ApplyVerdict::Pending if on_missing == OnMissing::Defer => return Applied::Deferred,
            ApplyVerdict::Pending => {
                tracing::debug!(error = %err, %key, "waiting for what the record names")
            }
            ApplyVerdict::Retry | ApplyVerdict::Blocked => {}
        }
        let mut delay = delays.next().unwrap_or(ctx.cfg.tuning.retry_max);
        if let ProviderError::RateLimited { retry_after } = &err {
            delay = delay.max(*retry_after);
        }
        if verdict == ApplyVerdict::Blocked {
            tracing::warn!(error = %err, %key, "the passive account refuses writes; retrying");
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
            Err(e) => {
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
pub(super) async fn committer(
    commits: CommitLane,
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
        if let Err(e) = commit_now(&commits, &shared, &topic).await {
            tracing::warn!(error = %e, "committing the sink's offsets; retrying");
        }
    }
}

/// A commit that did not go through.
#[derive(Debug)]
pub(super) struct CommitFailed {
    pub message: String,
    /// The group's coordinator moved, is loading or did not answer (a broker restarted):
    /// the same commit can succeed a moment later.
    pub retriable: bool,
}

impl From<String> for CommitFailed {
    fn from(message: String) -> Self {
        CommitFailed {
            message,
            retriable: false,
        }
    }
}

impl std::fmt::Display for CommitFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Commits every partition whose applied offset moved past the committed one, or whose
/// position the shared group does not hold yet, with the pipeline's epoch as the offsets'
/// metadata.
pub(super) async fn commit_now(
    commits: &CommitLane,
    shared: &Arc<Shared>,
    topic: &str,
) -> Result<(), CommitFailed> {
    let mut tpl = TopicPartitionList::new();
    let mut moved = Vec::new();
    for (p, st) in &shared.parts {
        let a = st.applied.load(Ordering::Acquire);
        let stored = st.stored.load(Ordering::Acquire);
        if decide::commit_due(a, st.committed.load(Ordering::Acquire), stored) {
            let mut e = tpl.add_partition(topic, *p);
            e.set_offset(Offset::Offset(a)).map_err(|e| e.to_string())?;
            e.set_metadata(&shared.epoch);
            moved.push((*p, a));
        }
    }
    if moved.is_empty() {
        return Ok(());
    }
    // A synchronous commit waits for the coordinator with no bound: on the consumer's
    // commit thread, so a broker that never answers cannot hold the runtime (callers
    // bound the wait).
    let r = commits
        .commit(tpl)
        .await
        .map_err(|_| "the commit thread ended without an answer".to_string())?;
    match r {
        Ok(()) => {
            for (p, a) in moved {
                if let Some(st) = shared.parts.get(&p) {
                    st.committed.fetch_max(a, Ordering::AcqRel);
                    st.stored.store(true, Ordering::Release);
                }
            }
            Ok(())
        }
        Err(e) => {
            *lock(&shared.kafka_error) = Some(e.to_string());
            Err(CommitFailed {
                message: e.to_string(),
                retriable: commit_retriable(e.rdkafka_error_code()),
            })
        }
    }
}
