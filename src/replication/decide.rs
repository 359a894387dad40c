//! The decisions of replication as pure functions over plain data (no I/O, clock passed
//! in), so they are unit-tested exhaustively:
//!
//! - **What to checkpoint**: [`CheckpointTracker`] — a feed cursor becomes checkpointable
//!   only when Kafka acknowledged every record produced from it and from every batch
//!   before it; it also counts what was read and not acknowledged.
//! - **How fence and drain are bounded and what they report**: [`fence_read_budget`],
//!   [`drain_target`] (with [`EndOffsetsFrom`]) and [`records_lost_total`], the one place
//!   a switchover's `recordsLost` is computed.
//! - **Where to start**: [`source_position`] / [`sink_position`] — resume from stored
//!   positions, or start from the positions captured at a flip unless the stored ones
//!   already belong to that flip; [`upgrade_committed`] — the shared sink group's
//!   offsets, else (once, after an upgrade) the pair's former group's.
//! - **What to replicate**: [`replicate`] — echo prevention (origin tag) and kind filter;
//!   [`stale_keys`] — what a bootstrap deletes: keys the state topic holds that the
//!   listing no longer has.
//! - **What counts as lag**: [`lag_records`], [`lag_seconds`], [`records_lost`].
//! - **When a record is poison**: [`classify_apply_error`] — only a provider rejection
//!   (and, in the codec, an undecodable record) is poison, and a record naming what the
//!   passive account does not hold yet once it has waited long enough; everything else
//!   is retried.
//! - **What to write**: [`coalesce`] — within one in-order run of a partition only the
//!   last full state of each key needs applying.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use crate::model::{Change, EntityKey, EntityKind};
use crate::provider::ProviderError;

mod bounds;
mod tracker;
mod upgrade;
mod versions;

pub use bounds::{
    EndOffsetsFrom, MAX_SETTLE_RESERVE, UNUSABLE_HEAD_READ, drain_target, end_offsets_due,
    fence_read_budget, head_read_budget, records_lost_total,
};
pub use tracker::CheckpointTracker;
pub use upgrade::{Committed, commit_due, needs_pair_group, upgrade_committed};
pub use versions::{Chosen, Coalesced, Version, choose, remember};

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

/// The keys a bootstrap deletes: those the state topic holds a full state of (`in_topic`)
/// that its complete listing of the account did not return (`listed`), among the kinds
/// replicated. Such an entity was deleted while no feed position was kept (no checkpoint,
/// an expired cursor), so no delete will ever come from the feed; a key deleted after the
/// head the bootstrap follows from gets a second, harmless tombstone from the feed. Keys
/// of kinds no longer replicated are left alone: the pair no longer speaks for them.
pub fn stale_keys(
    in_topic: &BTreeSet<EntityKey>,
    listed: &HashSet<EntityKey>,
    kinds: &[EntityKind],
) -> Vec<EntityKey> {
    in_topic
        .iter()
        .filter(|k| !listed.contains(*k))
        .filter(|k| kinds.is_empty() || kinds.contains(&k.kind()))
        .cloned()
        .collect()
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
    /// Names what the passive account does not hold yet (another record, applied
    /// concurrently or from another partition, brings it): retry with backoff.
    Pending,
}

/// `waited`: since the record's first attempt. A record naming what the passive account
/// does not hold yet is retried for `reference_wait`, then it is poison: what it names
/// is not coming (its own record was refused, or the change that brings it is lost).
pub fn classify_apply_error(
    err: &ProviderError,
    waited: std::time::Duration,
    reference_wait: std::time::Duration,
) -> ApplyVerdict {
    match err {
        ProviderError::Rejected(_) => ApplyVerdict::Poison,
        ProviderError::MissingReference(_) if waited >= reference_wait => ApplyVerdict::Poison,
        ProviderError::MissingReference(_) => ApplyVerdict::Pending,
        ProviderError::Unavailable(_) | ProviderError::RateLimited { .. } => ApplyVerdict::Retry,
        ProviderError::AccountFrozen { .. }
        | ProviderError::AccountBanned { .. }
        | ProviderError::Unauthorized(_)
        | ProviderError::Misconfigured(_)
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
        | ProviderError::Misconfigured(_)
        | ProviderError::NotFound(_) => FeedVerdict::AccountUnusable,
        ProviderError::CursorExpired(_) => FeedVerdict::Resync,
        ProviderError::Rejected(_)
        | ProviderError::MissingReference(_)
        | ProviderError::Unavailable(_)
        | ProviderError::RateLimited { .. }
        | ProviderError::Protocol(_) => FeedVerdict::Retry,
    }
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
    fn a_bootstrap_deletes_what_the_topic_holds_and_the_listing_does_not() {
        let keys =
            |ks: &[&str]| -> Vec<EntityKey> { ks.iter().map(|k| k.parse().unwrap()).collect() };
        let in_topic: BTreeSet<EntityKey> =
            keys(&["member/a", "member/b", "tag/t1", "tag/t2", "menu/m"])
                .into_iter()
                .collect();
        let listed: HashSet<EntityKey> = keys(&["member/a", "tag/t2", "member/new"])
            .into_iter()
            .collect();
        assert_eq!(
            stale_keys(&in_topic, &listed, &[]),
            keys(&["member/b", "menu/m", "tag/t1"]),
            "every kind replicated: all three are gone from the account"
        );
        assert_eq!(
            stale_keys(&in_topic, &listed, &[EntityKind::Member, EntityKind::Tag]),
            keys(&["member/b", "tag/t1"]),
            "menus are no longer replicated: the pair leaves them alone"
        );
        assert!(stale_keys(&in_topic, &in_topic.iter().cloned().collect(), &[]).is_empty());
        assert!(
            stale_keys(&BTreeSet::new(), &listed, &[]).is_empty(),
            "an empty topic: nothing"
        );
    }

    #[test]
    fn only_rejections_are_poison_and_a_missing_reference_after_its_wait() {
        use ProviderError as E;
        use std::time::Duration;
        let wait = Duration::from_secs(30);
        let classify =
            |e: &E, waited: u64| classify_apply_error(e, Duration::from_secs(waited), wait);
        assert_eq!(classify(&E::Rejected("x".into()), 0), ApplyVerdict::Poison);
        assert_eq!(
            classify(&E::Unavailable("x".into()), 0),
            ApplyVerdict::Retry
        );
        assert_eq!(
            classify(
                &E::RateLimited {
                    retry_after: Duration::from_secs(1)
                },
                0
            ),
            ApplyVerdict::Retry
        );
        // A tag naming a member whose own record has not been applied yet: waits for it,
        // but not for ever.
        let missing = E::MissingReference("tag 7: member li.si".into());
        assert_eq!(classify(&missing, 0), ApplyVerdict::Pending);
        assert_eq!(classify(&missing, 29), ApplyVerdict::Pending);
        assert_eq!(classify(&missing, 30), ApplyVerdict::Poison);
        for e in [
            E::AccountFrozen { reason: "r".into() },
            E::AccountBanned { reason: "r".into() },
            E::Unauthorized("x".into()),
            E::NotFound("x".into()),
            E::Protocol("x".into()),
        ] {
            // However long it has been refused: never poison.
            assert_eq!(classify(&e, 3600), ApplyVerdict::Blocked, "{e}");
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
