//! The audit chain on Kafka: one single-partition topic (so the chain has one order),
//! appended by a transactional, idempotent producer with `acks=all`, read back with
//! `isolation.level=read_committed`.
//!
//! Each partition of the topic is a chain of its own; a pair's records go to the
//! partition [`chain_of`] names (one chain when the topic has one partition). An operator
//! with shards creates the topic with one partition per shard, so a shard's pairs have a
//! chain of their own, written by the shard's holder alone.
//!
//! Several writers (the operator's replicas, each `kubectl understudy` invocation) share
//! one `transactional.id` per chain. A writer initialises its producer (which fences
//! every earlier producer of that id and completes or aborts its open transaction), then
//! reads the chain's last committed record and links its record to it, inside a
//! transaction. A writer that was fenced meanwhile cannot commit: it starts over with a
//! fresh producer and re-reads the tail. So two writers can never both link to the same
//! record, a replica that stalled while it held a shard has its open transaction aborted
//! by the shard's next holder, and a restarted operator resumes each chain from its last
//! record.
//!
//! Every client (admin, producer, reader) is made with the target's [`AuditKafka`]
//! properties (the pair's SASL/TLS settings) and an [`AuditContext`]: when the brokers
//! refuse the credentials or TLS, the operation stops with [`AuditError::Refused`] and the
//! brokers' reason instead of waiting for a timeout.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::AdminClient;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::access::AuditKafka;
use super::chain::{AuditRecord, Draft, Tail, seal};
use super::context::{AuditContext, ClientErrors};
pub use super::reader::{
    drain_events, offset_for_time_blocking, partition_count, partition_count_blocking, read_tail,
    scan_blocking, watermarks, watermarks_blocking,
};
use crate::replication::topics::{TopicSpec, ensure_topic};

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
    #[error(
        "the brokers at {bootstrap} refused the connection: {reason}; check the Kafka SASL/TLS settings (the pair's spec.replication.kafka.secretRef Secret) and the user on the brokers"
    )]
    Refused { bootstrap: String, reason: String },
    #[error("cannot make a Kafka client for {bootstrap} ({what}): {message}")]
    Client {
        what: &'static str,
        bootstrap: String,
        /// librdkafka's message with every secret property value removed.
        message: String,
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

/// Where the chain lives. `Debug` shows no credential (see [`AuditKafka`]).
#[derive(Clone, Debug)]
pub struct AuditTarget {
    /// The cluster and the client properties (SASL/TLS) for producer, consumer and admin.
    pub kafka: AuditKafka,
    pub topic: String,
    /// Retention of the topic when understudy creates it.
    pub retention: Duration,
    /// Partitions (chains) of the topic when understudy creates it; a topic that exists
    /// keeps its own.
    pub chains: u16,
    /// The partition (chain) readers read.
    pub partition: i32,
    /// The last error the target's clients reported (shared by clones).
    pub errors: ClientErrors,
}

/// The chain (partition) of `namespace/pair` on a topic of `partitions` partitions: the
/// pair's shard when the topic has one partition per shard.
pub fn chain_of(namespace: &str, pair: &str, partitions: i32) -> i32 {
    let slots = u16::try_from(partitions.max(1)).unwrap_or(u16::MAX);
    i32::from(crate::model::placement::shard_of(namespace, pair, slots))
}

impl AuditTarget {
    /// A cluster reached without client properties (PLAINTEXT).
    pub fn new(bootstrap: &str, topic: &str, retention: Duration) -> Self {
        AuditTarget::with_kafka(&AuditKafka::plain(bootstrap), topic, retention)
    }

    /// A cluster reached with `kafka`'s client properties.
    pub fn with_kafka(kafka: &AuditKafka, topic: &str, retention: Duration) -> Self {
        AuditTarget {
            kafka: kafka.clone(),
            topic: topic.to_string(),
            retention,
            chains: 1,
            partition: 0,
            errors: ClientErrors::default(),
        }
    }

    /// The topic, when understudy creates it, has `chains` partitions (at least 1).
    pub fn with_chains(mut self, chains: u16) -> Self {
        self.chains = chains.max(1);
        self
    }

    /// The same topic, read at `partition` (one chain).
    pub fn at_partition(&self, partition: i32) -> Self {
        AuditTarget {
            partition,
            ..self.clone()
        }
    }

    pub fn bootstrap(&self) -> &str {
        &self.kafka.bootstrap
    }

    pub(super) fn base(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.kafka.bootstrap);
        for (k, v) in &self.kafka.properties {
            cfg.set(k, v);
        }
        cfg
    }

    pub(super) fn context(&self) -> AuditContext {
        AuditContext {
            errors: self.errors.clone(),
        }
    }

    /// A client failure: the brokers' refusal when one was reported since `since` (the
    /// operation only timed out because of it), else the failure itself.
    pub(super) fn fail(
        &self,
        what: &'static str,
        since: Instant,
    ) -> impl Fn(KafkaError) -> AuditError + '_ {
        move |source| {
            self.refusal(since).unwrap_or_else(|| AuditError::Kafka {
                what,
                bootstrap: self.kafka.bootstrap.clone(),
                source,
            })
        }
    }

    /// The refusal reported by the target's clients since `since`, as an error.
    pub fn refusal(&self, since: Instant) -> Option<AuditError> {
        self.errors
            .refused_since(since)
            .map(|e| AuditError::Refused {
                bootstrap: self.kafka.bootstrap.clone(),
                reason: self.kafka.scrub(&e.reason),
            })
    }

    /// A client could not be made (a bad property: librdkafka's message may quote it).
    pub(super) fn create_failed(
        &self,
        what: &'static str,
    ) -> impl Fn(KafkaError) -> AuditError + '_ {
        move |e| AuditError::Client {
            what,
            bootstrap: self.kafka.bootstrap.clone(),
            message: self.kafka.scrub(&e.to_string()),
        }
    }

    /// One transactional id per chain (partition): every writer of a chain fences the
    /// others. Partition 0 keeps the id of a topic with a single chain.
    pub fn transactional_id(&self) -> String {
        match self.partition {
            0 => format!("understudy-audit-{}", self.topic),
            p => format!("understudy-audit-{}-{p}", self.topic),
        }
    }
}

/// Create the topic if missing: `target.chains` partitions, `cleanup.policy=delete`, the
/// retention.
pub async fn ensure_audit_topic(target: &AuditTarget) -> Result<(), AuditError> {
    let since = Instant::now();
    let admin: AdminClient<AuditContext> = target
        .base()
        .create_with_context(target.context())
        .map_err(target.create_failed("audit admin client"))?;
    let retention_ms = i64::try_from(target.retention.as_millis()).unwrap_or(i64::MAX);
    let spec = TopicSpec::retained(
        target.topic.clone(),
        i32::from(target.chains.max(1)),
        retention_ms,
    );
    let ensured = watch_refusal(target, since, async {
        ensure_topic(&admin, &spec).await.map_err(AuditError::from)
    });
    match ensured.await {
        Ok(_) => Ok(()),
        Err(e) => Err(target.refusal(since).unwrap_or(e)),
    }
}

/// Run `op`, but stop as soon as the target's clients report that the brokers refused
/// them (credentials, TLS): waiting for `op`'s own timeout would only hide the reason.
async fn watch_refusal<T>(
    target: &AuditTarget,
    since: Instant,
    op: impl std::future::Future<Output = Result<T, AuditError>>,
) -> Result<T, AuditError> {
    tokio::pin!(op);
    loop {
        tokio::select! {
            r = &mut op => return r,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if let Some(e) = target.refusal(since) {
                    return Err(e);
                }
            }
        }
    }
}

/// A record appended, and where.
#[derive(Clone, Debug)]
pub struct Appended {
    pub record: AuditRecord,
    pub offset: i64,
}

/// Appends records to the chains (see the module docs for how writers coordinate).
pub struct ChainWriter {
    target: AuditTarget,
    /// Partitions of the topic, read once it was checked.
    partitions: Option<i32>,
    /// Per chain written to: its producer and the last record on it.
    chains: HashMap<i32, Chain>,
}

#[derive(Default)]
struct Chain {
    producer: Option<FutureProducer<AuditContext>>,
    tail: Option<Tail>,
}

impl ChainWriter {
    pub fn new(target: AuditTarget) -> Self {
        ChainWriter {
            target,
            partitions: None,
            chains: HashMap::new(),
        }
    }

    pub fn target(&self) -> &AuditTarget {
        &self.target
    }

    /// The topic's partitions, creating the topic when missing (checked once).
    async fn partitions(&mut self) -> Result<i32, AuditError> {
        if let Some(n) = self.partitions {
            return Ok(n);
        }
        // A producer first: its own thread serves its events, so the brokers' refusal of
        // the credentials is seen at once, which the admin and metadata requests below
        // would only time out on. It sends nothing.
        let since = Instant::now();
        let _watch: FutureProducer<AuditContext> = self
            .target
            .base()
            .create_with_context(self.target.context())
            .map_err(self.target.create_failed("audit producer"))?;
        let target = &self.target;
        let n = watch_refusal(target, since, async {
            ensure_audit_topic(target).await?;
            partition_count(target).await
        })
        .await?;
        self.partitions = Some(n);
        Ok(n)
    }

    async fn connect(
        &mut self,
        partition: i32,
    ) -> Result<FutureProducer<AuditContext>, AuditError> {
        let since = Instant::now();
        let target = self.target.at_partition(partition);
        let mut cfg = target.base();
        cfg.set("transactional.id", target.transactional_id())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.timeout.ms", "10000")
            .set("transaction.timeout.ms", "60000");
        let producer: FutureProducer<AuditContext> = cfg
            .create_with_context(target.context())
            .map_err(target.create_failed("audit producer"))?;
        let p = producer.clone();
        watch_refusal(&target, since, async {
            blocking(move || p.init_transactions(CALL_TIMEOUT))
                .await?
                .map_err(target.fail("initialising the audit transactions", since))
        })
        .await?;
        // After the init no other writer's transaction on this chain is open: the tail
        // is final.
        let tail = read_tail(&target).await?.map(|(_, r)| Tail::of(&r));
        self.chains.insert(
            partition,
            Chain {
                producer: Some(producer.clone()),
                tail,
            },
        );
        Ok(producer)
    }

    /// Append one record, linked to the last one on its pair's chain. Retries a few
    /// times when another writer got in between; the error says why it finally failed.
    pub async fn append(&mut self, draft: &Draft) -> Result<Appended, AuditError> {
        let mut last = None;
        for attempt in 0..6u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(attempt.min(5)))).await;
            }
            let partition = match self.partitions().await {
                Ok(n) => chain_of(&draft.namespace, &draft.pair, n),
                Err(e @ (AuditError::Refused { .. } | AuditError::Client { .. })) => {
                    return Err(e);
                }
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let held = self.chains.get(&partition).and_then(|c| c.producer.clone());
            let producer = match held {
                Some(p) => p,
                None => match self.connect(partition).await {
                    Ok(p) => p,
                    // Credentials do not fix themselves within seconds: let the caller
                    // report it now and retry later.
                    Err(e @ (AuditError::Refused { .. } | AuditError::Client { .. })) => {
                        return Err(e);
                    }
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                },
            };
            let chain = self.chains.entry(partition).or_default();
            let record = seal(chain.tail.as_ref(), draft);
            match commit(&self.target, &producer, &record, partition).await {
                Ok(offset) => {
                    chain.tail = Some(Tail::of(&record));
                    return Ok(Appended { record, offset });
                }
                Err(e) => {
                    // Fenced, or the transaction failed: start over with a fresh producer
                    // (its init aborts what this one left open) and a re-read tail.
                    tracing::debug!(error = %e, attempt, partition, "audit append retried");
                    chain.producer = None;
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| AuditError::Internal("append gave up".into())))
    }
}

/// One record in one transaction on `partition`; its offset once committed.
async fn commit(
    target: &AuditTarget,
    p: &FutureProducer<AuditContext>,
    record: &AuditRecord,
    partition: i32,
) -> Result<i64, AuditError> {
    let since = Instant::now();
    p.begin_transaction()
        .map_err(target.fail("beginning an audit transaction", since))?;
    let payload = serde_json::to_vec(record).map_err(|e| AuditError::Internal(e.to_string()))?;
    let key = format!("{}/{}", record.namespace, record.pair);
    let send = p.send(
        FutureRecord::to(&target.topic)
            .partition(partition)
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
                Err((e, _)) => return Err(target.fail("producing the audit record", since)(e)),
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
        .map_err(target.fail("committing the audit record", since))?;
    Ok(offset)
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AuditError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AuditError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_chain_has_a_transactional_id_of_its_own_and_the_first_keeps_the_old_one() {
        let t = AuditTarget::new("k:9092", "understudy.audit", DEFAULT_RETENTION).with_chains(16);
        assert_eq!(t.chains, 16);
        assert_eq!(t.transactional_id(), "understudy-audit-understudy.audit");
        let ids: std::collections::BTreeSet<String> = (0..16)
            .map(|p| t.at_partition(p).transactional_id())
            .collect();
        assert_eq!(ids.len(), 16);
        assert!(ids.contains("understudy-audit-understudy.audit-15"));
        assert_eq!(
            AuditTarget::new("k", "t", DEFAULT_RETENTION)
                .with_chains(0)
                .chains,
            1
        );
    }

    #[test]
    fn a_pairs_chain_is_its_shard_when_the_topic_has_one_partition_per_shard() {
        use crate::model::placement::shard_of;
        for i in 0..200 {
            let pair = format!("p{i}");
            assert_eq!(chain_of("ns", &pair, 1), 0);
            assert_eq!(chain_of("ns", &pair, 0), 0);
            assert_eq!(
                chain_of("ns", &pair, 64),
                i32::from(shard_of("ns", &pair, 64))
            );
        }
        let used: std::collections::BTreeSet<i32> = (0..200)
            .map(|i| chain_of("ns", &format!("p{i}"), 16))
            .collect();
        assert_eq!(used.len(), 16, "200 pairs use every one of 16 chains");
    }
}
