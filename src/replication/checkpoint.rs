//! Durable source checkpoints: the feed cursor up to which Kafka acknowledged every
//! record, in the pair's small compacted topic `understudy.<ns>.<pair>.checkpoint`.
//!
//! Contract: one record per source (key `<side>/<account>`, value a JSON
//! [`StoredCheckpoint`]); the last value of the key wins, so compaction keeps exactly the
//! current checkpoint. Kafka is already the pipeline's durable store, so the checkpoint
//! lives next to the data it describes and needs no other system (and no Kubernetes
//! write per checkpoint). A write is complete only once Kafka acknowledged it.

use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureRecord;

use crate::replication::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};

use crate::api::Side;
use crate::replication::config::PipelineConfig;
use crate::replication::decide::StoredCheckpoint;
use crate::replication::watermarks;

/// Errors reading or writing checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("reading checkpoint topic {topic} failed: {source}; check that Kafka is reachable")]
    Read { topic: String, source: KafkaError },
    #[error("reading checkpoint topic {topic} did not finish within {timeout:?}; check Kafka")]
    ReadTimeout { topic: String, timeout: Duration },
    #[error("writing the checkpoint to {topic} failed: {source}; the source will retry")]
    Write { topic: String, source: KafkaError },
    #[error("the checkpoint reader task failed: {0}")]
    Task(String),
}

/// The checkpoint record's key.
pub fn checkpoint_key(side: Side, account: &str) -> String {
    format!("{}/{account}", side.as_str())
}

/// The newest checkpoint of `key`, or `None` if the source never checkpointed.
pub async fn read(
    cfg: &PipelineConfig,
    key: &str,
    timeout: Duration,
) -> Result<Option<StoredCheckpoint>, CheckpointError> {
    let topic = cfg.checkpoint_topic();
    let reader = cfg.reader_config();
    let key = key.to_string();
    tokio::task::spawn_blocking(move || read_blocking(reader, &topic, &key, timeout))
        .await
        .map_err(|e| CheckpointError::Task(e.to_string()))?
}

fn read_blocking(
    reader: rdkafka::ClientConfig,
    topic: &str,
    key: &str,
    timeout: Duration,
) -> Result<Option<StoredCheckpoint>, CheckpointError> {
    let err = |source| CheckpointError::Read {
        topic: topic.to_string(),
        source,
    };
    let consumer: BaseConsumer = reader.create().map_err(err)?;
    let deadline = Instant::now() + timeout;
    let (low, high) = watermarks::watermarks_by(&consumer, topic, 0, deadline).map_err(err)?;
    if high <= low {
        return Ok(None);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(err)?;
    consumer.assign(&tpl).map_err(err)?;
    let mut found = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CheckpointError::ReadTimeout {
                topic: topic.to_string(),
                timeout,
            });
        }
        match consumer.poll(left.min(Duration::from_millis(200))) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(found),
            Some(Err(e)) => return Err(err(e)),
            Some(Ok(m)) => {
                if m.key() == Some(key.as_bytes()) {
                    // A record we cannot parse is ignored: an older valid checkpoint or
                    // a bootstrap is always safe (records are full states).
                    found = match m.payload() {
                        Some(v) => serde_json::from_slice(v).ok().or(found),
                        None => None,
                    };
                }
                if m.offset() + 1 >= high {
                    return Ok(found);
                }
            }
        }
    }
}

/// Writes `cp` under `key` and waits for Kafka's acknowledgement.
pub async fn write(
    producer: &Producer,
    topic: &str,
    key: &str,
    cp: &StoredCheckpoint,
    timeout: Duration,
) -> Result<(), CheckpointError> {
    let value = serde_json::to_vec(cp).unwrap_or_default();
    producer
        .send(FutureRecord::to(topic).key(key).payload(&value), timeout)
        .await
        .map(|_| ())
        .map_err(|source| CheckpointError::Write {
            topic: topic.to_string(),
            source,
        })
}
