//! The account's recent operations for `evidence`: the pair's compacted state topic read
//! from the first record at or after `since` to its end, each record decoded into the
//! change it carries (upsert or delete of one entity, with the provider's timestamp).
//! Compaction may have dropped older versions of an entity; the newest of each is kept.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::audit::AuditKafka;
use crate::audit::context::AuditContext;
use crate::replication::codec::{self, StateRecord};
use crate::replication::topics::state_topic;

/// One operation on the account, as the state topic recorded it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// When the provider recorded the change (the change feed's time), RFC 3339.
    pub at: String,
    pub op: &'static str,
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_side: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub partition: i32,
    pub offset: i64,
    /// Set when the record could not be decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Operations since `since_ms`, oldest first, at most `cap` (true when cut). Kafka is
/// reached with the pair's client properties (SASL/TLS).
pub async fn operations(
    kafka: &AuditKafka,
    namespace: &str,
    pair: &str,
    since_ms: i64,
    cap: usize,
) -> Result<(Vec<Operation>, bool), String> {
    let topic = state_topic(namespace, pair);
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || read_blocking(&kafka, &topic, since_ms, cap))
        .await
        .map_err(|e| e.to_string())?
}

fn read_blocking(
    kafka: &AuditKafka,
    topic: &str,
    since_ms: i64,
    cap: usize,
) -> Result<(Vec<Operation>, bool), String> {
    let bootstrap = &kafka.bootstrap;
    let started = std::time::Instant::now();
    let context = AuditContext::default();
    let errors = context.errors.clone();
    // A refusal of the credentials, reported by the client, says more than the timeout
    // of the call that needed the connection.
    let err = |what: &str, e: KafkaError| {
        let why = match errors.refused_since(started) {
            Some(r) => format!("the brokers refused the connection: {}", r.reason),
            None => e.to_string(),
        };
        // Not scrubbed here: the bundle's redaction covers every text, this one too.
        format!("{what} ({topic} at {bootstrap}): {why}")
    };
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap);
    for (k, v) in &kafka.properties {
        cfg.set(k, v);
    }
    let consumer: BaseConsumer<AuditContext> = cfg
        .set("group.id", "understudy-evidence")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create_with_context(context)
        .map_err(|e| err("Kafka client", e))?;
    let timeout = Duration::from_secs(10);
    let md = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| {
        // Serve the client's events: a refusal of the credentials arrives there.
        crate::audit::kafka::drain_events(&consumer);
        err("reading the topic's metadata", e)
    })?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(format!(
            "the state topic {topic} does not exist at {bootstrap}"
        ));
    }
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut query = TopicPartitionList::new();
    for p in &partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, *p, timeout)
            .map_err(|e| err("reading offsets", e))?;
        ends.insert(*p, high);
        query
            .add_partition_offset(topic, *p, Offset::Offset(since_ms))
            .map_err(|e| err("looking up offsets by time", e))?;
    }
    let starts = consumer
        .offsets_for_times(query, timeout)
        .map_err(|e| err("looking up offsets by time", e))?;
    let mut assign = TopicPartitionList::new();
    let mut open = 0usize;
    for e in starts.elements() {
        let high = ends.get(&e.partition()).copied().unwrap_or(0);
        if let Offset::Offset(o) = e.offset()
            && o < high
        {
            assign
                .add_partition_offset(topic, e.partition(), Offset::Offset(o))
                .map_err(|e| err("assigning", e))?;
            open += 1;
        }
    }
    let mut out = Vec::new();
    if open == 0 {
        return Ok((out, false));
    }
    consumer.assign(&assign).map_err(|e| err("assigning", e))?;
    let mut done: HashMap<i32, bool> = HashMap::new();
    let mut last_progress = Instant::now();
    let mut truncated = false;
    while done.len() < open {
        match consumer.poll(Duration::from_millis(200)) {
            None => {
                if last_progress.elapsed() > Duration::from_secs(30) {
                    return Err(format!("reading {topic} stalled for 30s"));
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                done.insert(p, true);
            }
            Some(Err(e)) => return Err(err("reading", e)),
            Some(Ok(m)) => {
                last_progress = Instant::now();
                let p = m.partition();
                if m.offset() + 1 >= ends.get(&p).copied().unwrap_or(0) {
                    done.insert(p, true);
                }
                if out.len() >= cap {
                    truncated = true;
                    continue;
                }
                out.push(to_operation(
                    codec::decode_message(&m),
                    m.key(),
                    p,
                    m.offset(),
                    m.timestamp().to_millis(),
                ));
            }
        }
    }
    out.sort_by(|a, b| a.at.cmp(&b.at).then(a.offset.cmp(&b.offset)));
    Ok((out, truncated))
}

fn to_operation(
    decoded: Result<StateRecord, codec::CodecError>,
    raw_key: Option<&[u8]>,
    partition: i32,
    offset: i64,
    kafka_ms: Option<i64>,
) -> Operation {
    let fallback_at = kafka_ms
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    let base = Operation {
        at: fallback_at,
        op: "unknown",
        key: raw_key
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default(),
        origin_side: None,
        source_account: None,
        feed_seq: None,
        digest: None,
        partition,
        offset,
        error: None,
    };
    match decoded {
        Ok(StateRecord::Upsert { entity, meta }) => Operation {
            at: meta.observed_at,
            op: "upsert",
            key: entity.key.to_string(),
            origin_side: Some(meta.origin_side.to_string()),
            source_account: Some(meta.source_account),
            feed_seq: Some(meta.seq),
            digest: Some(entity.digest.to_hex()),
            ..base
        },
        Ok(StateRecord::Delete { key, meta }) => {
            let mut op = Operation {
                op: "delete",
                key: key.to_string(),
                ..base
            };
            if let Some(m) = meta {
                op.at = m.observed_at;
                op.origin_side = Some(m.origin_side.to_string());
                op.source_account = Some(m.source_account);
                op.feed_seq = Some(m.seq);
            }
            op
        }
        Err(e) => Operation {
            error: Some(e.to_string()),
            ..base
        },
    }
}
