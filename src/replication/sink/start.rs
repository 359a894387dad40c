//! Where the sink starts in each partition: the shared group's committed offsets, else
//! (once, after an upgrade) the pair's former group's, or the flip's, or the beginning —
//! every Kafka call bounded by the start's deadline.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

use super::SinkError;
use crate::replication::config::PipelineConfig;
use crate::replication::decide::{self, Committed, PartitionStart};
use crate::replication::watermarks::watermarks_by;

/// One partition's start.
pub(super) struct Resolved {
    pub start: PartitionStart,
    /// The offset progress counts from (the start, or the low watermark).
    pub first: i64,
    /// Whether the shared group already holds this position.
    pub stored: bool,
}

/// How long the sink's start waits before asking a coordinator that was not ready again.
const COORDINATOR_RETRY: Duration = Duration::from_millis(200);

/// The broker answered that the group coordinator is not (yet) there: worth asking again.
fn coordinator_not_ready(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::NotCoordinator | C::CoordinatorLoadInProgress | C::CoordinatorNotAvailable)
    )
}

fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// The committed offsets of `parts` of `topic` in `consumer`'s group, by `deadline`. A
/// broker that just started may not have its group coordinator yet: asked again until
/// the deadline rather than failing the start.
fn committed<C: Consumer>(
    consumer: &C,
    topic: &str,
    parts: &[i32],
    deadline: Instant,
) -> Result<BTreeMap<i32, Committed>, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for p in parts {
        tpl.add_partition(topic, *p);
    }
    let got = loop {
        match consumer.committed_offsets(tpl.clone(), left(deadline)) {
            Ok(c) => break c,
            Err(e) if coordinator_not_ready(&e) && left(deadline) > COORDINATOR_RETRY => {
                tracing::debug!(error = %e, "the group coordinator is not ready; asking again");
                std::thread::sleep(COORDINATOR_RETRY);
            }
            Err(e) => return Err(e),
        }
    };
    Ok(parts
        .iter()
        .map(|p| {
            let c = got
                .find_partition(topic, *p)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some((o, e.metadata().to_string())),
                    _ => None,
                });
            (*p, c)
        })
        .collect())
}

/// The committed offsets of the pair's former per-pair group, read with a short-lived
/// client of that group (closed off the runtime: closing may wait for the broker).
fn pair_group_committed(
    cfg: &PipelineConfig,
    topic: &str,
    parts: &[i32],
    deadline: Instant,
) -> Result<BTreeMap<i32, Committed>, SinkError> {
    let reader: BaseConsumer =
        cfg.pair_group_config()
            .create()
            .map_err(|source| SinkError::Client {
                what: "reader of the pair's former consumer group",
                source,
            })?;
    let got = committed(&reader, topic, parts, deadline);
    drop(crate::replication::off_runtime("close", move || {
        drop(reader)
    }));
    let got = got.map_err(|source| SinkError::Metadata {
        what: "committed offsets of the pair's former consumer group",
        topic: topic.to_string(),
        source,
    })?;
    let found = got.values().filter(|c| c.is_some()).count();
    if found > 0 {
        tracing::info!(
            topic,
            group = %cfg.pair_group_id(),
            partitions = found,
            "resuming from the pair's former consumer group (upgrade)"
        );
    }
    Ok(got)
}

/// The pause between two metadata reads of a topic that shows no partitions yet.
const METADATA_SETTLE: std::time::Duration = std::time::Duration::from_millis(100);

/// Each partition's start and the offset its progress counts from.
pub(super) fn resolve_starts(
    consumer: &StreamConsumer,
    cfg: &PipelineConfig,
    topic: &str,
    deadline: Instant,
) -> Result<BTreeMap<i32, Resolved>, SinkError> {
    let meta_err = |what, source| SinkError::Metadata {
        what,
        topic: topic.to_string(),
        source,
    };
    // A topic created an instant ago can be in the broker's metadata without its
    // partitions yet: asked again until the deadline before it counts as having none.
    let parts = loop {
        let md = consumer
            .fetch_metadata(Some(topic), left(deadline))
            .map_err(|e| meta_err("metadata", e))?;
        let parts = crate::replication::topics::partitions_in(&md, topic);
        if !parts.is_empty() {
            break parts;
        }
        if Instant::now() + METADATA_SETTLE >= deadline {
            return Err(SinkError::NoPartitions(topic.to_string()));
        }
        std::thread::sleep(METADATA_SETTLE);
    };
    let shared = committed(consumer, topic, &parts, deadline)
        .map_err(|e| meta_err("committed offsets", e))?;
    let missing = decide::needs_pair_group(&shared);
    let mut former = if missing.is_empty() {
        BTreeMap::new()
    } else {
        pair_group_committed(cfg, topic, &missing, deadline)?
    };
    let mut out = BTreeMap::new();
    for (p, c) in shared {
        let (c, stored) = decide::upgrade_committed(c, former.remove(&p).flatten());
        let start = decide::sink_position(&cfg.start, p, c.as_ref().map(|(o, m)| (*o, m.as_str())));
        let first = match start {
            PartitionStart::Offset(o) => o,
            PartitionStart::Beginning => {
                watermarks_by(consumer, topic, p, deadline.into_std())
                    .map_err(|e| meta_err("watermarks", e))?
                    .0
            }
        };
        out.insert(
            p,
            Resolved {
                start,
                first,
                stored,
            },
        );
    }
    Ok(out)
}

/// High watermarks of `parts` of `topic`, all asked by `deadline`.
pub(crate) fn watermarks_until(
    c: &BaseConsumer,
    topic: &str,
    parts: &[i32],
    deadline: Instant,
) -> Result<BTreeMap<i32, i64>, SinkError> {
    parts
        .iter()
        .map(|p| {
            watermarks_by(c, topic, *p, deadline.into_std())
                .map(|(_, high)| (*p, high))
                .map_err(|source| SinkError::Metadata {
                    what: "end offsets",
                    topic: topic.to_string(),
                    source,
                })
        })
        .collect()
}
