use std::collections::BTreeMap;

use super::*;
use crate::api::Side;
use crate::replication::KafkaConfig;
use crate::replication::sink::SinkStatus;
use crate::replication::source::{SourceState, SourceStatus};

fn source(produced: &[(i32, i64)], unacknowledged: u64) -> SourceStatus {
    SourceStatus {
        state: SourceState::Following,
        produced: 0,
        skipped: 0,
        checkpoint: None,
        oldest_pending_ms: None,
        produced_offsets: produced.iter().copied().collect(),
        unacknowledged,
        feed_error: None,
        feed_error_seq: 0,
        feed_error_at: None,
        kafka_error: None,
        caught_up: true,
    }
}

fn sink(applied: &[(i32, i64)]) -> SinkStatus {
    SinkStatus {
        applied_offsets: applied.iter().copied().collect(),
        ..SinkStatus::default()
    }
}

fn cfg() -> PipelineConfig {
    PipelineConfig::new("ns", "p", Side::Primary, KafkaConfig::new("k:9092"))
}

#[test]
fn lag_counts_what_kafka_has_not_acknowledged() {
    // Kafka is away: 600 changes read from the feed, none acknowledged, the topic and
    // the sink where they were. The lag is 600, not 0.
    let end: BTreeMap<i32, i64> = [(0, 10)].into();
    let snap = compute_snapshot(&cfg(), &source(&[(0, 10)], 600), &sink(&[(0, 10)]), &end, 0);
    assert_eq!(snap.lag_records, 600);
}

#[test]
fn lag_counts_records_the_sink_has_not_applied_and_is_zero_when_caught_up() {
    let end: BTreeMap<i32, i64> = [(0, 10), (1, 4)].into();
    // The source saw offset 12 acknowledged on partition 0 after the end offsets were
    // read: that counts too.
    let behind = compute_snapshot(
        &cfg(),
        &source(&[(0, 12)], 0),
        &sink(&[(0, 9), (1, 4)]),
        &end,
        0,
    );
    assert_eq!(behind.lag_records, 3);
    let caught_up = compute_snapshot(
        &cfg(),
        &source(&[(0, 12)], 0),
        &sink(&[(0, 12), (1, 4)]),
        &end,
        0,
    );
    assert_eq!(caught_up.lag_records, 0);
}

#[test]
fn lag_is_unknown_until_the_source_first_reached_the_feeds_head() {
    // A pipeline just started: nothing read yet, so every count is 0 — which says
    // nothing about the backlog still in the feed.
    let mut starting = source(&[], 0);
    starting.caught_up = false;
    let snap = compute_snapshot(&cfg(), &starting, &sink(&[]), &BTreeMap::new(), 0);
    assert_eq!(snap.known_lag_records(), None);
    assert_eq!(snap.to_status().lag_records, None);
    let read = compute_snapshot(
        &cfg(),
        &source(&[(0, 300)], 0),
        &sink(&[(0, 262)]),
        &BTreeMap::new(),
        0,
    );
    assert_eq!(read.known_lag_records(), Some(38));
    assert_eq!(read.to_status().lag_records, Some(38));
}
