//! The pipeline's bounded questions to Kafka and to the new active account: whether Kafka
//! answers at all, the pair's topics, the state topic's end offsets, and the two halves
//! of a flip's positions (the new active account's feed head, the topic's end offsets),
//! each callable alone so the head can be captured at the flip and the offsets later,
//! once Kafka answers again.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use tokio::time::Instant;

use super::PipelineError;
use crate::provider::AccountProvider;
use crate::replication::clients;
use crate::replication::config::PipelineConfig;
use crate::replication::decide::Flip;
use crate::replication::sink::{self, SinkError};
use crate::replication::topics::{self, TopicSpec};

/// Retention of the DLQ topic.
const DLQ_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;

fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// `err` as it should be reported: Kafka unreachable when the deadline has passed (a
/// librdkafka call that runs out of time says so in many ways), else as it is.
pub(super) fn late_or(
    cfg: &PipelineConfig,
    deadline: Instant,
    within: Duration,
    err: impl Into<PipelineError> + std::fmt::Display,
) -> PipelineError {
    if Instant::now() >= deadline {
        PipelineError::KafkaUnreachable {
            bootstrap: cfg.kafka.bootstrap_servers.clone(),
            within,
            detail: err.to_string(),
        }
    } else {
        err.into()
    }
}

/// Kafka answers a metadata request by `deadline`, or the start fails saying it is
/// unreachable. The request names the pair's state topic alone (a missing topic is an
/// answer too, and is not created): the metadata of every topic, with three topics a
/// pair, took 1.3 s a start on a cluster of a few thousand topics, most of it parsing.
pub(super) async fn probe(
    cfg: &PipelineConfig,
    deadline: Instant,
    within: Duration,
) -> Result<(), PipelineError> {
    let client = cfg.metadata_config();
    let topic = cfg.state_topic();
    let r = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let c = clients::offsets_reader(&client).map_err(|e| e.to_string())?;
        c.fetch_metadata(Some(&topic), left(deadline))
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    r.map_err(|detail| PipelineError::KafkaUnreachable {
        bootstrap: cfg.kafka.bootstrap_servers.clone(),
        within,
        detail,
    })
}

/// Creates (or checks) the pair's state, checkpoint and DLQ topics, within
/// `Tuning::start_timeout`.
pub async fn ensure_topics(cfg: &PipelineConfig) -> Result<(), PipelineError> {
    let within = cfg.tuning.start_timeout;
    ensure_topics_until(cfg, Instant::now() + within, within).await
}

pub(super) async fn ensure_topics_until(
    cfg: &PipelineConfig,
    deadline: Instant,
    within: Duration,
) -> Result<(), PipelineError> {
    let extra: HashMap<String, String> = cfg.kafka.extra.clone().into_iter().collect();
    let admin = topics::admin_client(&cfg.kafka.bootstrap_servers, &extra)?;
    let specs = [
        TopicSpec::compacted(cfg.state_topic(), cfg.partitions),
        TopicSpec::compacted(cfg.checkpoint_topic(), 1),
        TopicSpec::retained(cfg.dlq_topic(), 1, DLQ_RETENTION_MS),
    ];
    // With an admin client of the pipeline's own: asked over one client shared by all
    // pipelines, a topic just created could be read back without its config ("exists
    // with cleanup.policy=delete") while a thousand pairs started. The three topics go
    // in one CreateTopics request and, those that existed, one DescribeConfigs request:
    // two round trips instead of six for a pair whose topics are there (a restart, a
    // shard taken over from a replica that died).
    topics::ensure_topics_within(&admin, &specs, left(deadline))
        .await
        .map_err(|e| late_or(cfg, deadline, within, e))?;
    Ok(())
}

/// End offsets of the pair's state topic, asked of the broker; every request within
/// `timeout` (then: [`PipelineError::KafkaUnreachable`]).
pub async fn end_offsets(
    cfg: &PipelineConfig,
    timeout: Duration,
) -> Result<BTreeMap<i32, i64>, PipelineError> {
    let deadline = Instant::now() + timeout;
    let reader = cfg.metadata_config();
    let topic = cfg.state_topic();
    let r = tokio::task::spawn_blocking(move || -> Result<BTreeMap<i32, i64>, SinkError> {
        let c = clients::offsets_reader(&reader).map_err(|source| SinkError::Client {
            what: "reader",
            source,
        })?;
        let md = c
            .fetch_metadata(Some(&topic), left(deadline))
            .map_err(|source| SinkError::Metadata {
                what: "metadata",
                topic: topic.clone(),
                source,
            })?;
        let parts = topics::partitions_in(&md, &topic);
        sink::watermarks_until(&c, &topic, &parts, deadline)
    })
    .await
    .map_err(|e| SinkError::Task(e.to_string()))?;
    r.map_err(|e| late_or(cfg, deadline, timeout, e))
}

/// The new active account's feed head: the flip's source position, to capture at the
/// flip (before the new active side takes traffic), within `timeout`.
pub async fn flip_head(
    new_source: &dyn AccountProvider,
    timeout: Duration,
) -> Result<String, PipelineError> {
    match tokio::time::timeout(timeout, new_source.head_cursor()).await {
        Ok(r) => r.map_err(PipelineError::FlipHead),
        Err(_) => Err(PipelineError::FlipHeadTimeout(timeout)),
    }
}

/// The positions of a flip: the feed head of the new active account and the state
/// topic's end offsets, read now, each within `timeout`. Call it after the old direction
/// stopped. The halves are [`flip_head`] and [`end_offsets`]: the end offsets may be
/// captured later (once Kafka answers), as long as the new direction has not produced.
pub async fn flip_positions(
    cfg: &PipelineConfig,
    new_source: &dyn AccountProvider,
    epoch: &str,
    timeout: Duration,
) -> Result<Flip, PipelineError> {
    let head = flip_head(new_source, timeout).await?;
    let offsets = end_offsets(cfg, timeout).await?;
    Ok(Flip {
        epoch: epoch.to_string(),
        source_cursor: head,
        sink_offsets: offsets,
    })
}
