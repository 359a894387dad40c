//! The decisions of replication as pure functions over plain data (no I/O, clock passed
//! in), so they are unit-tested exhaustively:
//!
//! - **What to checkpoint**: [`CheckpointTracker`] — a feed cursor becomes checkpointable
//!   only when Kafka acknowledged every record produced from it and from every batch
//!   before it.
//! - **Where to start**: [`source_position`] / [`sink_position`] — resume from stored
//!   positions, or start from the positions captured at a flip unless the stored ones
//!   already belong to that flip.
//! - **What to replicate**: [`replicate`] — echo prevention (origin tag) and kind filter.
//! - **What counts as lag**: [`lag_records`], [`lag_seconds`], [`records_lost`].
//! - **When a record is poison**: [`classify_apply_error`] — only a provider rejection
//!   (and, in the codec, an undecodable record) is poison; everything else is retried.
//! - **What to write**: [`coalesce`] — within one in-order run of a partition only the
//!   last full state of each key needs applying.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;

use serde::{Deserialize, Serialize};

use crate::model::{Change, EntityKind};
use crate::provider::ProviderError;

/// Positions captured when the direction flipped: the new source starts at the feed head
/// of the new active side, the new sink at the end offsets of the state topic, so nothing
/// the old sink wrote comes back and nothing already on the new passive side is re-applied.
///
/// The controller records it (e.g. in the Switchover status) and passes the same value on
/// every start after that flip; `epoch` tells whether the stored positions are already
/// past it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Flip {
    /// Unique per flip (e.g. the Switchover's name and uid).
    pub epoch: String,
    /// Feed cursor of the new source account at the flip.
    pub source_cursor: String,
    /// End offsets of the state topic at the flip, by partition.
    pub sink_offsets: BTreeMap<i32, i64>,
}

/// Where a pipeline starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Start {
    /// The pair never flipped: resume from the stored checkpoint / committed offsets; a
    /// source without a checkpoint bootstraps from a full listing, a sink without
    /// committed offsets reads the topic from the beginning.
    #[default]
    Resume,
    /// The pair flipped (last flip given): start at its positions unless the stored
    /// positions already carry its epoch.
    AfterFlip(Flip),
}

impl Start {
    pub fn epoch(&self) -> Option<&str> {
        match self {
            Start::Resume => None,
            Start::AfterFlip(f) => Some(&f.epoch),
        }
    }
}

/// A source checkpoint as stored in the checkpoint topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredCheckpoint {
    pub cursor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// When it was written (RFC 3339), for humans.
    #[serde(default)]
    pub at: String,
}

/// Where the source reads from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourcePosition {
    /// After this feed cursor.
    Cursor(String),
    /// No usable position: list all entities, then follow the feed from the head captured
    /// before listing.
    Bootstrap,
}

/// The source's start position and the epoch its checkpoints carry from then on.
pub fn source_position(
    start: &Start,
    stored: Option<&StoredCheckpoint>,
) -> (SourcePosition, Option<String>) {
    match (start, stored) {
        (Start::Resume, Some(cp)) => (SourcePosition::Cursor(cp.cursor.clone()), cp.epoch.clone()),
        (Start::Resume, None) => (SourcePosition::Bootstrap, None),
        (Start::AfterFlip(f), Some(cp)) if cp.epoch.as_deref() == Some(f.epoch.as_str()) => {
            (SourcePosition::Cursor(cp.cursor.clone()), cp.epoch.clone())
        }
        (Start::AfterFlip(f), _) => (
            SourcePosition::Cursor(f.source_cursor.clone()),
            Some(f.epoch.clone()),
        ),
    }
}

/// Where the sink reads one partition from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionStart {
    Offset(i64),
    Beginning,
}

/// The sink's start in `partition`, given the group's committed offset and its metadata
/// (the epoch the sink writes with every commit).
pub fn sink_position(
    start: &Start,
    partition: i32,
    committed: Option<(i64, &str)>,
) -> PartitionStart {
    match (start, committed) {
        (Start::Resume, Some((off, _))) => PartitionStart::Offset(off),
        (Start::Resume, None) => PartitionStart::Beginning,
        (Start::AfterFlip(f), Some((off, meta))) if meta == f.epoch => PartitionStart::Offset(off),
        (Start::AfterFlip(f), _) => f
            .sink_offsets
            .get(&partition)
            .map_or(PartitionStart::Beginning, |o| PartitionStart::Offset(*o)),
    }
}

/// Whether a change of the source feed is replicated: not when the pair's own sink wrote
/// it (echo prevention), and not when its kind is filtered out (`kinds` empty = all).
pub fn replicate(change: &Change, origin_tag: &str, kinds: &[EntityKind]) -> bool {
    if change.origin.as_deref() == Some(origin_tag) {
        return false;
    }
    kinds.is_empty() || kinds.contains(&change.key.kind())
}

/// What the sink does after a failed apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyVerdict {
    /// Transient: retry with backoff.
    Retry,
    /// The passive account cannot take writes now (frozen, credentials, …): keep retrying
    /// with backoff and surface the error; the record is not poison.
    Blocked,
    /// Can never be applied: to the DLQ, and the rest flows.
    Poison,
}

pub fn classify_apply_error(err: &ProviderError) -> ApplyVerdict {
    match err {
        ProviderError::Rejected(_) => ApplyVerdict::Poison,
        ProviderError::Unavailable(_) | ProviderError::RateLimited { .. } => ApplyVerdict::Retry,
        ProviderError::AccountFrozen { .. }
        | ProviderError::AccountBanned { .. }
        | ProviderError::Unauthorized(_)
        | ProviderError::NotFound(_)
        | ProviderError::CursorExpired(_)
        | ProviderError::Protocol(_) => ApplyVerdict::Blocked,
    }
}

/// What the source does after a failed feed read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedVerdict {
    /// Report upward (the detector uses it) and keep retrying slowly.
    AccountUnusable,
    /// The cursor is gone: bootstrap again from a full listing.
    Resync,
    /// Retry with backoff.
    Retry,
}

pub fn classify_feed_error(err: &ProviderError) -> FeedVerdict {
    match err {
        ProviderError::AccountFrozen { .. }
        | ProviderError::AccountBanned { .. }
        | ProviderError::Unauthorized(_)
        | ProviderError::NotFound(_) => FeedVerdict::AccountUnusable,
        ProviderError::CursorExpired(_) => FeedVerdict::Resync,
        ProviderError::Rejected(_)
        | ProviderError::Unavailable(_)
        | ProviderError::RateLimited { .. }
        | ProviderError::Protocol(_) => FeedVerdict::Retry,
    }
}

/// Keeps the last item of every key, in the order of those last occurrences. Records of
/// one partition are full states applied in order, so earlier states of a key in the same
/// run are superseded and need no write.
pub fn coalesce<K: Eq + Hash + Clone, T>(items: Vec<(K, T)>) -> Vec<(K, T)> {
    let mut last: HashMap<K, usize> = HashMap::with_capacity(items.len());
    for (i, (k, _)) in items.iter().enumerate() {
        last.insert(k.clone(), i);
    }
    if last.len() == items.len() {
        return items;
    }
    items
        .into_iter()
        .enumerate()
        .filter(|(i, (k, _))| last.get(k) == Some(i))
        .map(|(_, it)| it)
        .collect()
}

/// Records produced but not applied: per partition, the end offset (or what the source
/// saw acknowledged, if newer) minus the sink's applied position.
pub fn lag_records(
    end: &BTreeMap<i32, i64>,
    produced: &BTreeMap<i32, i64>,
    applied: &BTreeMap<i32, i64>,
) -> u64 {
    let parts = end
        .keys()
        .chain(produced.keys())
        .collect::<std::collections::BTreeSet<_>>();
    parts
        .into_iter()
        .map(|p| {
            let end = end
                .get(p)
                .copied()
                .unwrap_or(0)
                .max(produced.get(p).copied().unwrap_or(0));
            let done = applied.get(p).copied().unwrap_or(0);
            (end - done).max(0) as u64
        })
        .sum()
}

/// Records of `target` the sink had not applied (recordsLost after a drain).
pub fn records_lost(target: &BTreeMap<i32, i64>, applied: &BTreeMap<i32, i64>) -> u64 {
    lag_records(target, &BTreeMap::new(), applied)
}

/// Age in seconds of the oldest change not yet applied, given the observed-at times
/// (epoch ms) of the oldest pending change at each stage; 0 when nothing is pending.
pub fn lag_seconds(now_ms: i64, oldest_pending_ms: impl IntoIterator<Item = i64>) -> f64 {
    oldest_pending_ms
        .into_iter()
        .min()
        .map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0)
}

/// One batch of the feed, produced but maybe not yet acknowledged.
#[derive(Debug)]
struct PendingBatch {
    id: u64,
    /// Checkpointable cursor once this batch and all before it are acknowledged; `None`
    /// for snapshot pages (a bootstrap is only checkpointed when complete).
    cursor: Option<String>,
    records: usize,
    /// Observed-at (epoch ms) of the batch's oldest record.
    oldest_ms: Option<i64>,
    done: Option<bool>,
}

/// Tracks produced batches and decides which feed cursor may be checkpointed.
#[derive(Debug, Default)]
pub struct CheckpointTracker {
    pending: VecDeque<PendingBatch>,
    next_id: u64,
    /// Newest cursor whose batch and every batch before it were acknowledged.
    safe: Option<String>,
    /// Whether `safe` moved since the last [`take_checkpoint`](Self::take_checkpoint).
    dirty: bool,
    failed: bool,
    outstanding: usize,
}

impl CheckpointTracker {
    /// `start` is the position the source read from (already durable).
    pub fn new(start: Option<String>) -> Self {
        CheckpointTracker {
            safe: start,
            ..Default::default()
        }
    }

    /// Registers a batch of `records` produced records read up to `cursor`; returns its id.
    pub fn push(&mut self, cursor: Option<String>, records: usize, oldest_ms: Option<i64>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.outstanding += records;
        self.pending.push_back(PendingBatch {
            id,
            cursor,
            records,
            oldest_ms,
            done: if records == 0 { Some(true) } else { None },
        });
        self.advance();
        id
    }

    /// Kafka answered for every record of batch `id`: all acknowledged (`ok`) or not.
    pub fn complete(&mut self, id: u64, ok: bool) {
        if let Some(b) = self.pending.iter_mut().find(|b| b.id == id) {
            if b.done.is_none() {
                self.outstanding -= b.records;
            }
            b.done = Some(ok);
            if !ok {
                self.failed = true;
            }
        }
        self.advance();
    }

    fn advance(&mut self) {
        while let Some(Some(true)) = self.pending.front().map(|b| b.done) {
            if let Some(b) = self.pending.pop_front()
                && let Some(c) = b.cursor
            {
                self.safe = Some(c);
                self.dirty = true;
            }
        }
    }

    /// The cursor to write now, if it moved since the last call.
    pub fn take_checkpoint(&mut self) -> Option<String> {
        if self.dirty {
            self.dirty = false;
            self.safe.clone()
        } else {
            None
        }
    }

    /// The newest checkpointable cursor (or the start position).
    pub fn safe(&self) -> Option<&str> {
        self.safe.as_deref()
    }

    /// A batch failed: the source must rewind to [`safe`](Self::safe) once
    /// [`outstanding`](Self::outstanding) is 0.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Records produced and not yet answered by Kafka.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Nothing produced is waiting for an answer or for an earlier batch.
    pub fn settled(&self) -> bool {
        self.pending.is_empty()
    }

    /// Observed-at of the oldest record not yet acknowledged (with all before it).
    pub fn oldest_pending_ms(&self) -> Option<i64> {
        self.pending
            .iter()
            .filter(|b| b.done != Some(true))
            .filter_map(|b| b.oldest_ms)
            .min()
    }

    /// Forget everything pending (after a rewind); the safe cursor stays.
    pub fn reset(&mut self) {
        self.pending.clear();
        self.failed = false;
        self.outstanding = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChangeOp;

    fn flip() -> Flip {
        Flip {
            epoch: "so-1".into(),
            source_cursor: "100".into(),
            sink_offsets: BTreeMap::from([(0, 10), (1, 20)]),
        }
    }

    fn cp(cursor: &str, epoch: Option<&str>) -> StoredCheckpoint {
        StoredCheckpoint {
            cursor: cursor.into(),
            epoch: epoch.map(str::to_string),
            at: String::new(),
        }
    }

    #[test]
    fn checkpoint_waits_for_every_earlier_batch() {
        let mut t = CheckpointTracker::new(Some("0".into()));
        let a = t.push(Some("10".into()), 10, Some(1));
        let b = t.push(Some("20".into()), 5, Some(2));
        let c = t.push(Some("30".into()), 0, None); // all skipped: nothing to wait for
        assert_eq!(t.outstanding(), 15);
        assert_eq!(t.take_checkpoint(), None);
        assert_eq!(t.oldest_pending_ms(), Some(1));
        t.complete(b, true);
        assert_eq!(t.take_checkpoint(), None, "batch a is still unacknowledged");
        assert_eq!(t.safe(), Some("0"));
        assert_eq!(t.oldest_pending_ms(), Some(1));
        t.complete(a, true);
        assert_eq!(t.take_checkpoint(), Some("30".into()));
        assert_eq!(t.take_checkpoint(), None, "only when it moves");
        assert!(t.settled());
        assert_eq!(t.outstanding(), 0);
        let _ = c;
    }

    #[test]
    fn a_failed_batch_blocks_the_checkpoint_and_asks_for_a_rewind() {
        let mut t = CheckpointTracker::new(None);
        let a = t.push(Some("1".into()), 1, None);
        let b = t.push(Some("2".into()), 1, None);
        t.complete(a, false);
        t.complete(b, true);
        assert!(t.failed());
        assert_eq!(t.safe(), None);
        assert_eq!(t.take_checkpoint(), None);
        assert_eq!(t.outstanding(), 0);
        t.reset();
        assert!(!t.failed() && t.settled());
    }

    #[test]
    fn snapshot_pages_are_not_checkpointed_until_the_head_marker() {
        let mut t = CheckpointTracker::new(None);
        let p1 = t.push(None, 3, None);
        t.complete(p1, true);
        assert_eq!(t.take_checkpoint(), None);
        let p2 = t.push(None, 3, None);
        let head = t.push(Some("500".into()), 0, None);
        let _ = head;
        assert_eq!(t.take_checkpoint(), None);
        t.complete(p2, true);
        assert_eq!(t.take_checkpoint(), Some("500".into()));
    }

    #[test]
    fn source_start_positions() {
        let f = Start::AfterFlip(flip());
        assert_eq!(
            source_position(&Start::Resume, None),
            (SourcePosition::Bootstrap, None)
        );
        assert_eq!(
            source_position(&Start::Resume, Some(&cp("7", None))),
            (SourcePosition::Cursor("7".into()), None)
        );
        // A checkpoint from before the flip (another direction period) is ignored.
        assert_eq!(
            source_position(&f, Some(&cp("7", Some("old")))),
            (SourcePosition::Cursor("100".into()), Some("so-1".into()))
        );
        assert_eq!(
            source_position(&f, None),
            (SourcePosition::Cursor("100".into()), Some("so-1".into()))
        );
        // After the flip the pipeline already ran and checkpointed: resume there.
        assert_eq!(
            source_position(&f, Some(&cp("150", Some("so-1")))),
            (SourcePosition::Cursor("150".into()), Some("so-1".into()))
        );
    }

    #[test]
    fn sink_start_positions() {
        let f = Start::AfterFlip(flip());
        assert_eq!(
            sink_position(&Start::Resume, 0, None),
            PartitionStart::Beginning
        );
        assert_eq!(
            sink_position(&Start::Resume, 0, Some((5, ""))),
            PartitionStart::Offset(5)
        );
        assert_eq!(
            sink_position(&f, 1, Some((5, "old"))),
            PartitionStart::Offset(20)
        );
        assert_eq!(sink_position(&f, 1, None), PartitionStart::Offset(20));
        assert_eq!(
            sink_position(&f, 1, Some((25, "so-1"))),
            PartitionStart::Offset(25)
        );
        assert_eq!(
            sink_position(&f, 7, None),
            PartitionStart::Beginning,
            "a partition added after the flip holds only new records"
        );
    }

    #[test]
    fn echoes_and_filtered_kinds_are_not_replicated() {
        let mut ch = Change {
            seq: 1,
            key: "tag/t".parse().unwrap(),
            op: ChangeOp::Delete,
            origin: None,
            at: String::new(),
        };
        assert!(replicate(&ch, "understudy:ns/p", &[]));
        ch.origin = Some("understudy:ns/p".into());
        assert!(!replicate(&ch, "understudy:ns/p", &[]), "our own write");
        ch.origin = Some("someone-else".into());
        assert!(replicate(&ch, "understudy:ns/p", &[]));
        assert!(!replicate(&ch, "understudy:ns/p", &[EntityKind::Member]));
        assert!(replicate(
            &ch,
            "understudy:ns/p",
            &[EntityKind::Member, EntityKind::Tag]
        ));
    }

    #[test]
    fn only_rejections_are_poison() {
        use ProviderError as E;
        assert_eq!(
            classify_apply_error(&E::Rejected("x".into())),
            ApplyVerdict::Poison
        );
        assert_eq!(
            classify_apply_error(&E::Unavailable("x".into())),
            ApplyVerdict::Retry
        );
        assert_eq!(
            classify_apply_error(&E::RateLimited {
                retry_after: std::time::Duration::from_secs(1)
            }),
            ApplyVerdict::Retry
        );
        for e in [
            E::AccountFrozen { reason: "r".into() },
            E::AccountBanned { reason: "r".into() },
            E::Unauthorized("x".into()),
            E::NotFound("x".into()),
            E::Protocol("x".into()),
        ] {
            assert_eq!(classify_apply_error(&e), ApplyVerdict::Blocked, "{e}");
        }
    }

    #[test]
    fn feed_errors() {
        use ProviderError as E;
        assert_eq!(
            classify_feed_error(&E::AccountFrozen { reason: "r".into() }),
            FeedVerdict::AccountUnusable
        );
        assert_eq!(
            classify_feed_error(&E::CursorExpired("x".into())),
            FeedVerdict::Resync
        );
        assert_eq!(
            classify_feed_error(&E::Unavailable("x".into())),
            FeedVerdict::Retry
        );
    }

    #[test]
    fn coalesce_keeps_the_last_state_per_key() {
        let items = vec![("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)];
        assert_eq!(coalesce(items), vec![("a", 3), ("c", 4), ("b", 5)]);
        let distinct = vec![("x", 1), ("y", 2)];
        assert_eq!(coalesce(distinct.clone()), distinct);
        assert!(coalesce::<&str, i32>(vec![]).is_empty());
    }

    #[test]
    fn lag_counts_what_is_produced_but_not_applied() {
        let end = BTreeMap::from([(0, 100), (1, 50)]);
        let produced = BTreeMap::from([(1, 60), (2, 5)]);
        let applied = BTreeMap::from([(0, 90), (1, 50)]);
        assert_eq!(lag_records(&end, &produced, &applied), 10 + 10 + 5);
        assert_eq!(lag_records(&end, &BTreeMap::new(), &end), 0);
        // Applied beyond a stale end offset never makes lag negative.
        assert_eq!(
            lag_records(&BTreeMap::from([(0, 1)]), &BTreeMap::new(), &applied),
            0
        );
        assert_eq!(records_lost(&end, &applied), 10);
    }

    #[test]
    fn lag_seconds_is_the_age_of_the_oldest_pending_change() {
        assert_eq!(lag_seconds(10_000, []), 0.0);
        assert_eq!(lag_seconds(10_000, [9_000, 7_500]), 2.5);
        assert_eq!(
            lag_seconds(10_000, [11_000]),
            0.0,
            "clock skew never goes negative"
        );
    }
}
