//! The keys the pair's state topic holds a live record for (its last record is not a
//! tombstone): what a source's bootstrap compares with its listing, so that an entity
//! deleted while no feed position was kept (no checkpoint, an expired cursor) is deleted
//! from the topic and the passive account too, instead of staying there for ever.
//!
//! Contract: the end offsets are asked on the shared offsets reader; a topic that holds
//! nothing costs that one question. Otherwise a consumer of its own (no group offsets,
//! `enable.partition.eof`) reads every partition from the beginning up to the end offsets
//! seen first, within one deadline. Records with a key that is not an entity key are not
//! counted (the sink dead-letters them).

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::model::EntityKey;
use crate::replication::clients;
use crate::replication::config::PipelineConfig;
use crate::replication::watermarks::watermarks_by;

/// Why the state topic's keys could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StateKeysError {
    #[error("reading state topic {topic} failed: {source}; check that Kafka is reachable")]
    Kafka { topic: String, source: KafkaError },
    #[error(
        "reading state topic {topic} did not finish within {timeout:?} ({read} records read); check Kafka"
    )]
    Timeout {
        topic: String,
        timeout: Duration,
        read: u64,
    },
    #[error("the state topic reader task failed: {0}")]
    Task(String),
}

/// What the state topic holds.
#[derive(Debug, Default, PartialEq)]
pub struct StateKeys {
    /// Keys whose last record is a full state.
    pub live: BTreeSet<EntityKey>,
    /// Records read (0 when the topic was empty).
    pub records: u64,
}

/// The live keys of `cfg`'s state topic, read within `timeout`.
pub async fn live_keys(
    cfg: &PipelineConfig,
    timeout: Duration,
) -> Result<StateKeys, StateKeysError> {
    let (meta, reader) = (cfg.metadata_config(), cfg.reader_config());
    let topic = cfg.state_topic();
    let partitions = cfg.partitions;
    tokio::task::spawn_blocking(move || read_blocking(&meta, &reader, &topic, partitions, timeout))
        .await
        .map_err(|e| StateKeysError::Task(e.to_string()))?
}

/// Whether `cfg`'s state topic holds no record at all, asked of the shared offsets reader
/// within `timeout` (no client of its own).
pub async fn is_empty(cfg: &PipelineConfig, timeout: Duration) -> Result<bool, StateKeysError> {
    let meta = cfg.metadata_config();
    let topic = cfg.state_topic();
    let partitions = cfg.partitions;
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + timeout;
        let err = |source| StateKeysError::Kafka {
            topic: topic.clone(),
            source,
        };
        let offsets = clients::offsets_reader(&meta).map_err(err)?;
        Ok(last_offsets(&offsets, &topic, partitions, deadline)
            .map_err(err)?
            .is_empty())
    })
    .await
    .map_err(|e| StateKeysError::Task(e.to_string()))?
}

/// Partition → the offset of its last record, for the partitions of `topic` that hold
/// any (empty: the topic holds nothing), each asked by `deadline`.
fn last_offsets(
    offsets: &BaseConsumer,
    topic: &str,
    partitions: i32,
    deadline: Instant,
) -> Result<BTreeMap<i32, i64>, KafkaError> {
    let mut last = BTreeMap::new();
    for p in 0..partitions {
        let (low, high) = watermarks_by(offsets, topic, p, deadline)?;
        if high > low {
            last.insert(p, high - 1);
        }
    }
    Ok(last)
}

fn read_blocking(
    meta: &rdkafka::ClientConfig,
    reader: &rdkafka::ClientConfig,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<StateKeys, StateKeysError> {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let err = |source| StateKeysError::Kafka {
        topic: topic.to_string(),
        source,
    };
    let offsets = clients::offsets_reader(meta).map_err(err)?;
    let mut last = last_offsets(&offsets, topic, partitions, deadline).map_err(err)?;
    let mut keys = StateKeys::default();
    if last.is_empty() {
        return Ok(keys);
    }
    let consumer: BaseConsumer = reader.create().map_err(err)?;
    let mut tpl = TopicPartitionList::new();
    for p in last.keys() {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .map_err(err)?;
    }
    consumer.assign(&tpl).map_err(err)?;
    let mut alive: BTreeMap<EntityKey, bool> = BTreeMap::new();
    while !last.is_empty() {
        if left().is_zero() {
            return Err(StateKeysError::Timeout {
                topic: topic.to_string(),
                timeout,
                read: keys.records,
            });
        }
        match consumer.poll(left().min(Duration::from_millis(200))) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                last.remove(&p);
            }
            Some(Err(e)) => return Err(err(e)),
            Some(Ok(m)) => {
                keys.records += 1;
                if let Some(key) = m
                    .key()
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .and_then(|k| EntityKey::from_str(k).ok())
                {
                    alive.insert(key, m.payload().is_some());
                }
                if last.get(&m.partition()).is_some_and(|l| m.offset() >= *l) {
                    last.remove(&m.partition());
                }
            }
        }
    }
    keys.live = alive
        .into_iter()
        .filter_map(|(k, live)| live.then_some(k))
        .collect();
    Ok(keys)
}
