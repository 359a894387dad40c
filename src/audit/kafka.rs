//! The audit chain on Kafka: one single-partition topic (so the chain has one order),
//! appended by a transactional, idempotent producer with `acks=all`, read back with
//! `isolation.level=read_committed`.
//!
//! Several writers (the operator, each `kubectl understudy` invocation) share one
//! `transactional.id` per topic. A writer initialises its producer (which fences every
//! earlier producer of that id and completes or aborts its open transaction), then
//! reads the last committed record and links its record to it, inside a transaction.
//! A writer that was fenced meanwhile cannot commit: it starts over with a fresh
//! producer and re-reads the tail. So two writers can never both link to the same
//! record, and a restarted operator resumes the chain from the last record on the topic.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::chain::{AuditRecord, Draft, Tail, seal};
use crate::replication::topics::{TopicSpec, admin_client, ensure_topic};

/// The audit topic's default name.
pub const DEFAULT_TOPIC: &str = "understudy.audit";
/// Default retention of the audit topic: 730 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(730 * 24 * 3600);

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("Kafka ({what}) failed: {source}; check that the brokers at {bootstrap} are reachable")]
    Kafka {
        what: &'static str,
        bootstrap: String,
        source: KafkaError,
    },
    #[error("creating or checking the audit topic failed: {0}")]
    Topic(#[from] crate::replication::topics::TopicError),
    #[error(
        "the last record of {topic} (offset {offset}) is not an audit record: {reason}; run `kubectl understudy audit verify` and repair the topic before appending"
    )]
    BadTail {
        topic: String,
        offset: i64,
        reason: String,
    },
    #[error("reading {topic} timed out after {timeout:?}")]
    Timeout { topic: String, timeout: Duration },
    #[error(
        "another writer took over the audit chain meanwhile ({0}); retrying with a fresh producer"
    )]
    Fenced(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl AuditError {
    /// The topic (or its partition) does not exist.
    pub fn is_missing_topic(&self) -> bool {
        use rdkafka::types::RDKafkaErrorCode as C;
        match self {
            AuditError::Kafka { source, .. } => matches!(
                source.rdkafka_error_code(),
                Some(C::UnknownPartition | C::UnknownTopic | C::UnknownTopicOrPartition)
            ),
            _ => false,
        }
    }
}

/// Where the chain lives. `Debug` redacts credential properties of `extra`.
#[derive(Clone)]
pub struct AuditTarget {
    pub bootstrap: String,
    pub topic: String,
    /// Retention of the topic when understudy creates it.
    pub retention: Duration,
    /// Extra librdkafka properties (SASL/TLS).
    pub extra: BTreeMap<String, String>,
}

impl std::fmt::Debug for AuditTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditTarget")
            .field("bootstrap", &self.bootstrap)
            .field("topic", &self.topic)
            .field("retention", &self.retention)
            .field(
                "extra",
                &crate::replication::config::RedactedProperties(&self.extra),
            )
            .finish()
    }
}

impl AuditTarget {
    pub fn new(bootstrap: &str, topic: &str, retention: Duration) -> Self {
        AuditTarget {
            bootstrap: bootstrap.to_string(),
            topic: topic.to_string(),
            retention,
            extra: BTreeMap::new(),
        }
    }

    fn base(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in &self.extra {
            cfg.set(k, v);
        }
        cfg
    }

    fn err(&self, what: &'static str) -> impl Fn(KafkaError) -> AuditError + '_ {
        move |source| AuditError::Kafka {
            what,
            bootstrap: self.bootstrap.clone(),
            source,
        }
    }

    /// One transactional id per topic: every writer of a chain fences the others.
    pub fn transactional_id(&self) -> String {
        format!("understudy-audit-{}", self.topic)
    }
}

/// Create the topic if missing: one partition, `cleanup.policy=delete`, the retention.
pub async fn ensure_audit_topic(target: &AuditTarget) -> Result<(), AuditError> {
    let extra = target.extra.clone().into_iter().collect();
    let admin = admin_client(&target.bootstrap, &extra)?;
    let retention_ms = i64::try_from(target.retention.as_millis()).unwrap_or(i64::MAX);
    ensure_topic(
        &admin,
        &TopicSpec::retained(target.topic.clone(), 1, retention_ms),
    )
    .await?;
    Ok(())
}

/// A record appended, and where.
#[derive(Clone, Debug)]
pub struct Appended {
    pub record: AuditRecord,
    pub offset: i64,
}

/// Appends records to the chain (see the module docs for how writers coordinate).
pub struct ChainWriter {
    target: AuditTarget,
    producer: Option<FutureProducer>,
    tail: Option<Tail>,
    topic_checked: bool,
}

impl ChainWriter {
    pub fn new(target: AuditTarget) -> Self {
        ChainWriter {
            target,
            producer: None,
            tail: None,
            topic_checked: false,
        }
    }

    pub fn target(&self) -> &AuditTarget {
        &self.target
    }

    async fn connect(&mut self) -> Result<FutureProducer, AuditError> {
        if !self.topic_checked {
            ensure_audit_topic(&self.target).await?;
            self.topic_checked = true;
        }
        let mut cfg = self.target.base();
        cfg.set("transactional.id", self.target.transactional_id())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.timeout.ms", "10000")
            .set("transaction.timeout.ms", "60000");
        let producer: FutureProducer = cfg.create().map_err(self.target.err("audit producer"))?;
        let p = producer.clone();
        blocking(move || p.init_transactions(CALL_TIMEOUT))
            .await?
            .map_err(self.target.err("initialising the audit transactions"))?;
        // After the init no other writer's transaction is open: the tail is final.
        self.tail = read_tail(&self.target).await?.map(|(_, r)| Tail::of(&r));
        self.producer = Some(producer.clone());
        Ok(producer)
    }

    /// Append one record, linked to the last one on the topic. Retries a few times when
    /// another writer got in between; the error says why it finally failed.
    pub async fn append(&mut self, draft: &Draft) -> Result<Appended, AuditError> {
        let mut last = None;
        for attempt in 0..6u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(attempt.min(5)))).await;
            }
            let producer = match self.producer.clone() {
                Some(p) => p,
                None => match self.connect().await {
                    Ok(p) => p,
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                },
            };
            let record = seal(self.tail.as_ref(), draft);
            match self.commit(&producer, &record).await {
                Ok(offset) => {
                    self.tail = Some(Tail::of(&record));
                    return Ok(Appended { record, offset });
                }
                Err(e) => {
                    // Fenced, or the transaction failed: start over with a fresh producer
                    // (its init aborts what this one left open) and a re-read tail.
                    tracing::debug!(error = %e, attempt, "audit append retried");
                    self.producer = None;
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| AuditError::Internal("append gave up".into())))
    }

    async fn commit(&self, p: &FutureProducer, record: &AuditRecord) -> Result<i64, AuditError> {
        p.begin_transaction()
            .map_err(self.target.err("beginning an audit transaction"))?;
        let payload =
            serde_json::to_vec(record).map_err(|e| AuditError::Internal(e.to_string()))?;
        let key = format!("{}/{}", record.namespace, record.pair);
        let send = p.send(
            FutureRecord::to(&self.target.topic)
                .partition(0)
                .key(&key)
                .payload(&payload),
            Duration::from_secs(5),
        );
        tokio::pin!(send);
        // A producer fenced by another writer does not fail its queued record at once:
        // notice the fatal error instead of waiting for the message timeout.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let offset = loop {
            tokio::select! {
                delivered = &mut send => match delivered {
                    Ok(d) => break d.offset,
                    Err((e, _)) => return Err(self.target.err("producing the audit record")(e)),
                },
                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                    if let Some((code, reason)) = p.client().fatal_error() {
                        return Err(AuditError::Fenced(format!("{code:?}: {reason}")));
                    }
                    if tokio::time::Instant::now() > deadline {
                        return Err(AuditError::Fenced("no delivery within 15s".into()));
                    }
                }
            }
        };
        let q = p.clone();
        blocking(move || q.commit_transaction(CALL_TIMEOUT))
            .await?
            .map_err(self.target.err("committing the audit record"))?;
        Ok(offset)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AuditError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AuditError::Internal(e.to_string()))
}

/// The last committed record on the topic and its offset (`None`: the chain is empty).
pub async fn read_tail(target: &AuditTarget) -> Result<Option<(i64, AuditRecord)>, AuditError> {
    let t = target.clone();
    blocking(move || read_tail_blocking(&t)).await?
}

fn read_tail_blocking(t: &AuditTarget) -> Result<Option<(i64, AuditRecord)>, AuditError> {
    let (low, high) = watermarks_blocking(t)?;
    if high <= low {
        return Ok(None);
    }
    // Aborted transactions and commit markers take offsets too: look further back until
    // a committed record turns up.
    let mut back = 16i64;
    loop {
        let from = (high - back).max(low);
        let mut last: Option<(i64, Vec<u8>)> = None;
        scan_blocking(t, from, |offset, bytes| {
            last = Some((offset, bytes.to_vec()));
            true
        })?;
        if let Some((offset, bytes)) = last {
            let record = serde_json::from_slice(&bytes).map_err(|e| AuditError::BadTail {
                topic: t.topic.clone(),
                offset,
                reason: e.to_string(),
            })?;
            return Ok(Some((offset, record)));
        }
        if from == low {
            return Ok(None);
        }
        back = back.saturating_mul(8);
    }
}

/// The topic's (earliest, end) offsets of its single partition.
pub async fn watermarks(target: &AuditTarget) -> Result<(i64, i64), AuditError> {
    let t = target.clone();
    blocking(move || watermarks_blocking(&t)).await?
}

fn reader(t: &AuditTarget) -> Result<BaseConsumer, AuditError> {
    let mut cfg = t.base();
    cfg.set("group.id", "understudy-audit-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest");
    cfg.create().map_err(t.err("audit reader"))
}

/// Blocking form of [`watermarks`].
pub fn watermarks_blocking(t: &AuditTarget) -> Result<(i64, i64), AuditError> {
    let c = reader(t)?;
    c.fetch_watermarks(&t.topic, 0, Duration::from_secs(10))
        .map_err(t.err("reading the audit topic's offsets"))
}

/// Read committed records from `from` to the end of the partition, calling `f` with each
/// record's offset and value; `f` returns false to stop early.
pub fn scan_blocking(
    t: &AuditTarget,
    from: i64,
    mut f: impl FnMut(i64, &[u8]) -> bool,
) -> Result<(), AuditError> {
    let c = reader(t)?;
    let (low, high) = c
        .fetch_watermarks(&t.topic, 0, Duration::from_secs(10))
        .map_err(t.err("reading the audit topic's offsets"))?;
    if high <= low || from >= high {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&t.topic, 0, Offset::Offset(from.max(low)))
        .map_err(t.err("assigning the audit partition"))?;
    c.assign(&tpl)
        .map_err(t.err("assigning the audit partition"))?;
    let idle = Duration::from_secs(30);
    let mut last_progress = Instant::now();
    loop {
        match c.poll(Duration::from_millis(200)) {
            None => {
                if last_progress.elapsed() > idle {
                    return Err(AuditError::Timeout {
                        topic: t.topic.clone(),
                        timeout: idle,
                    });
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(()),
            Some(Err(e)) => return Err(t.err("reading the audit topic")(e)),
            Some(Ok(m)) => {
                last_progress = Instant::now();
                if !f(m.offset(), m.payload().unwrap_or_default()) {
                    return Ok(());
                }
            }
        }
    }
}

/// Offset of the first record written at or after `at_ms` (epoch ms), or the end.
pub fn offset_for_time_blocking(t: &AuditTarget, at_ms: i64) -> Result<i64, AuditError> {
    let c = reader(t)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&t.topic, 0, Offset::Offset(at_ms))
        .map_err(t.err("looking up offsets by time"))?;
    let found = c
        .offsets_for_times(tpl, Duration::from_secs(10))
        .map_err(t.err("looking up offsets by time"))?;
    let offset = found
        .elements()
        .first()
        .map(|e| e.offset())
        .unwrap_or(Offset::End);
    match offset {
        Offset::Offset(o) => Ok(o),
        _ => {
            let (_, high) = c
                .fetch_watermarks(&t.topic, 0, Duration::from_secs(10))
                .map_err(t.err("reading the audit topic's offsets"))?;
            Ok(high)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_an_audit_target_never_shows_a_credential() {
        let mut t = AuditTarget::new("kafka-0:9093", "understudy.audit", DEFAULT_RETENTION);
        t.extra
            .insert("sasl.username".into(), "understudy-audit".into());
        t.extra
            .insert("sasl.password".into(), "pw-sasl-hunter2".into());
        t.extra
            .insert("ssl.key.password".into(), "pw-sslkey-hunter2".into());
        for dbg in [format!("{t:?}"), format!("{t:#?}")] {
            assert!(!dbg.contains("hunter2"), "{dbg}");
            assert!(
                dbg.contains("sasl.password") && dbg.contains("<redacted>"),
                "{dbg}"
            );
            assert!(
                dbg.contains("understudy-audit") && dbg.contains("kafka-0:9093"),
                "{dbg}"
            );
        }
        assert_eq!(t.base().get("sasl.password"), Some("pw-sasl-hunter2"));
    }
}
