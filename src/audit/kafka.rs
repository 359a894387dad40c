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
//!
//! Every client (admin, producer, reader) is made with the target's [`AuditKafka`]
//! properties (the pair's SASL/TLS settings) and an [`AuditContext`]: when the brokers
//! refuse the credentials or TLS, the operation stops with [`AuditError::Refused`] and the
//! brokers' reason instead of waiting for a timeout.

use std::time::{Duration, Instant};

use rdkafka::admin::AdminClient;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::access::AuditKafka;
use super::chain::{AuditRecord, Draft, Tail, seal};
use super::context::{AuditContext, ClientErrors};
pub use super::reader::{
    drain_events, offset_for_time_blocking, read_tail, scan_blocking, watermarks,
    watermarks_blocking,
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
    /// The last error the target's clients reported (shared by clones).
    pub errors: ClientErrors,
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
            errors: ClientErrors::default(),
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

    /// One transactional id per topic: every writer of a chain fences the others.
    pub fn transactional_id(&self) -> String {
        format!("understudy-audit-{}", self.topic)
    }
}

/// Create the topic if missing: one partition, `cleanup.policy=delete`, the retention.
pub async fn ensure_audit_topic(target: &AuditTarget) -> Result<(), AuditError> {
    let since = Instant::now();
    let admin: AdminClient<AuditContext> = target
        .base()
        .create_with_context(target.context())
        .map_err(target.create_failed("audit admin client"))?;
    let retention_ms = i64::try_from(target.retention.as_millis()).unwrap_or(i64::MAX);
    let spec = TopicSpec::retained(target.topic.clone(), 1, retention_ms);
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

/// Appends records to the chain (see the module docs for how writers coordinate).
pub struct ChainWriter {
    target: AuditTarget,
    producer: Option<FutureProducer<AuditContext>>,
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

    async fn connect(&mut self) -> Result<FutureProducer<AuditContext>, AuditError> {
        let since = Instant::now();
        let mut cfg = self.target.base();
        cfg.set("transactional.id", self.target.transactional_id())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.timeout.ms", "10000")
            .set("transaction.timeout.ms", "60000");
        let producer: FutureProducer<AuditContext> = cfg
            .create_with_context(self.target.context())
            .map_err(self.target.create_failed("audit producer"))?;
        // The producer first: its own thread serves its events, so a refusal of the
        // credentials is seen at once, also while the admin request below waits.
        if !self.topic_checked {
            ensure_audit_topic(&self.target).await?;
            self.topic_checked = true;
        }
        let p = producer.clone();
        let target = &self.target;
        watch_refusal(target, since, async {
            blocking(move || p.init_transactions(CALL_TIMEOUT))
                .await?
                .map_err(target.fail("initialising the audit transactions", since))
        })
        .await?;
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

    async fn commit(
        &self,
        p: &FutureProducer<AuditContext>,
        record: &AuditRecord,
    ) -> Result<i64, AuditError> {
        let since = Instant::now();
        p.begin_transaction()
            .map_err(self.target.fail("beginning an audit transaction", since))?;
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
                    Err((e, _)) => return Err(self.target.fail("producing the audit record", since)(e)),
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
            .map_err(self.target.fail("committing the audit record", since))?;
        Ok(offset)
    }
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AuditError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AuditError::Internal(e.to_string()))
}
