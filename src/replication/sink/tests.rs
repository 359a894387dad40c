//! The sink against librdkafka's mock cluster and the in-process simulator: records of a
//! key that arrive out of the order of their changes, and records naming others that
//! the passive account does not hold yet.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use tokio::time::Instant;

use super::Sink;
use crate::api::Side;
use crate::model::{Change, ChangeOp, Entity, EntityKey, EntityKind};
use crate::provider::sim::{SimProvider, SimStore};
use crate::provider::{AccountProvider, ProviderError};
use crate::replication::codec::{self, EncodedRecord};
use crate::replication::config::{KafkaConfig, PipelineConfig};

struct Bed {
    _mock: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    producer: FutureProducer,
    store: SimStore,
    cfg: PipelineConfig,
}

fn bed() -> Bed {
    let mock = MockCluster::new(1).expect("mock cluster");
    let mut cfg = PipelineConfig::new(
        "ns",
        "pair",
        Side::Primary,
        KafkaConfig::new(mock.bootstrap_servers()),
    );
    cfg.partitions = 1;
    mock.create_topic(&cfg.state_topic(), 1, 1)
        .expect("state topic");
    mock.create_topic(&cfg.dlq_topic(), 1, 1)
        .expect("dlq topic");
    cfg.tuning.start_timeout = Duration::from_secs(10);
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        // Records sent together go out as one batch (see `produce_together`).
        .set("linger.ms", "20")
        .create()
        .expect("producer");
    Bed {
        _mock: mock,
        producer,
        store: SimStore::new(),
        cfg,
    }
}

fn hot() -> EntityKey {
    EntityKey::new(EntityKind::Tag, "hot").unwrap()
}

/// The record of change `seq` of corp-a's feed: tag `hot` named `v{seq}`.
fn version(seq: u64) -> EncodedRecord {
    change_of(hot(), seq)
}

fn tag(id: &str) -> EntityKey {
    EntityKey::new(EntityKind::Tag, id).unwrap()
}

/// The record of change `seq` of corp-a's feed: `key` named `v{seq}`.
fn change_of(key: EntityKey, seq: u64) -> EncodedRecord {
    let change = Change {
        seq,
        key,
        op: ChangeOp::Upsert {
            payload: json!({"name": format!("v{seq}")}),
        },
        origin: None,
        // Observed 55 ms apart, as the load of the e2e writes them.
        at: chrono::DateTime::from_timestamp_millis(1_796_000_000_000 + seq as i64 * 55)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    };
    codec::encode_change(&change, Side::Primary, "corp-a", 0).expect("encode")
}

async fn produce(b: &Bed, records: &[EncodedRecord]) {
    for r in records {
        produce_together(b, std::slice::from_ref(r)).await;
    }
}

/// Produces the records at once (one batch, as the producer lingers).
async fn produce_together(b: &Bed, records: &[EncodedRecord]) {
    let topic = b.cfg.state_topic();
    let mut sends = Vec::new();
    for r in records {
        let mut rec = FutureRecord::to(&topic).key(r.key.as_bytes());
        let mut headers = rdkafka::message::OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(rdkafka::message::Header {
                key: k,
                value: Some(v.as_slice()),
            });
        }
        rec = rec.headers(headers);
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_slice());
        }
        sends.push(b.producer.send(rec, Duration::from_secs(10)));
    }
    for r in futures::future::join_all(sends).await {
        r.expect("produced");
    }
}

async fn applied(sink: &Sink, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.status().applied < n {
        assert!(Instant::now() < deadline, "{:?}", sink.status());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Records applied or dead-lettered, at least `n`.
async fn settled(sink: &Sink, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.status().applied + sink.status().dlq < n {
        assert!(Instant::now() < deadline, "{:?}", sink.status());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What the standby holds for tag `hot`, and the names written to it in order.
fn standby(b: &Bed) -> (Option<String>, Vec<String>) {
    let acc = b.store.account("corp-b");
    let now = acc
        .get(&hot())
        .unwrap()
        .map(|p| p.value()["name"].as_str().unwrap_or_default().to_string());
    let written = acc
        .read_changes(None, 1_000)
        .unwrap()
        .entries
        .iter()
        .filter_map(|e| e.payload.as_ref().map(|p| p.value()["name"].to_string()))
        .collect();
    (now, written)
}

/// A stalled replica's late copy of change 18 lands after the other replica's change 53
/// (in one chunk or another), and a re-read sends 53 again: the standby keeps v53, v18 is
/// never written to it, nor v53 twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_older_record_of_a_key_never_overwrites_its_newer_state() {
    let b = bed();
    produce(&b, &[version(53), version(18)]).await;
    let passive = Arc::new(SimProvider::new(b.store.clone(), "corp-b"));
    let sink = Sink::start(b.cfg.clone(), passive).await.expect("sink");
    applied(&sink, 2).await;
    assert_eq!(standby(&b), (Some("v53".into()), vec!["\"v53\"".into()]));
    // Later, in a chunk of its own: not newer than what the standby holds.
    produce(&b, &[version(18), version(53)]).await;
    applied(&sink, 4).await;
    assert_eq!(standby(&b), (Some("v53".into()), vec!["\"v53\"".into()]));
    // A newer change is written.
    produce(&b, &[version(54)]).await;
    applied(&sink, 5).await;
    assert_eq!(
        standby(&b),
        (Some("v54".into()), vec!["\"v53\"".into(), "\"v54\"".into()])
    );
    sink.stop().await.expect("stopped");
}

/// The standby as WeCom answers a tag naming a member it does not hold yet: `needing`
/// is refused with `MissingReference` until the account holds `needed`.
struct Needs {
    inner: SimProvider,
    store: SimStore,
    needing: EntityKey,
    needed: EntityKey,
    /// Told when the write of tag `gate` begins (it then holds the worker for 500 ms).
    gate: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl AccountProvider for Needs {
    fn account_id(&self) -> &str {
        self.inner.account_id()
    }
    async fn status(&self) -> Result<crate::provider::StatusReport, ProviderError> {
        self.inner.status().await
    }
    async fn list_entities(
        &self,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<crate::provider::EntityPage, ProviderError> {
        self.inner.list_entities(after, limit).await
    }
    async fn changes(
        &self,
        cursor: Option<&str>,
        limit: usize,
        wait: Duration,
    ) -> Result<crate::provider::ChangeBatch, ProviderError> {
        self.inner.changes(cursor, limit, wait).await
    }
    async fn head_cursor(&self) -> Result<String, ProviderError> {
        self.inner.head_cursor().await
    }
    async fn put_entity(&self, entity: &Entity, origin: Option<&str>) -> Result<(), ProviderError> {
        if entity.key == tag("gate") {
            // Holds the worker while the records after it reach the partition's queue,
            // so they are taken as one chunk.
            self.gate.notify_one();
            // Shorter than the worker's PARK_AFTER (a parked partition is not fetched).
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let held = self.store.account("corp-b").get(&self.needed).unwrap();
        if entity.key == self.needing && held.is_none() {
            return Err(ProviderError::MissingReference(format!(
                "{}: {} is not on this account",
                self.needing, self.needed
            )));
        }
        self.inner.put_entity(entity, origin).await
    }
    async fn delete_entity(
        &self,
        key: &EntityKey,
        origin: Option<&str>,
    ) -> Result<(), ProviderError> {
        self.inner.delete_entity(key, origin).await
    }
    async fn probe(&self) -> Result<crate::provider::ProbeResult, ProviderError> {
        self.inner.probe().await
    }
    async fn activity(
        &self,
        since: &str,
    ) -> Result<Vec<crate::provider::ActivityEvent>, ProviderError> {
        self.inner.activity(since).await
    }
}

fn needs(b: &Bed, needing: &str, needed: &str) -> Arc<Needs> {
    Arc::new(Needs {
        inner: SimProvider::new(b.store.clone(), "corp-b"),
        store: b.store.clone(),
        needing: tag(needing),
        needed: tag(needed),
        gate: Arc::default(),
    })
}

fn held(b: &Bed, id: &str) -> bool {
    b.store.account("corp-b").get(&tag(id)).unwrap().is_some()
}

/// A tag's record comes before the member it names, in one chunk (both reach the queue
/// while the worker writes a record before them), and the sink writes one record at a
/// time: the tag is tried again after the member, not sent to the DLQ nor
/// left holding the only write slot while the member waits behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_naming_one_later_in_its_chunk_is_applied_after_it() {
    let mut b = bed();
    b.cfg.tuning.apply_concurrency = 1;
    b.cfg.tuning.reference_wait = Duration::from_secs(60);
    produce(&b, &[change_of(tag("gate"), 1)]).await;
    let passive = needs(&b, "vip", "member");
    let started = Instant::now();
    let sink = Sink::start(b.cfg.clone(), passive.clone())
        .await
        .expect("sink");
    passive.gate.notified().await;
    produce_together(&b, &[change_of(tag("vip"), 2), change_of(tag("member"), 3)]).await;
    settled(&sink, 3).await;
    assert_eq!(sink.status().dlq, 0, "{:?}", sink.status());
    assert!(held(&b, "vip") && held(&b, "member"));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "not after the wait: {:?}",
        started.elapsed()
    );
    sink.stop().await.expect("stopped");
}

/// What a record names arrives from elsewhere (another partition) while it waits: it
/// is applied then. What never arrives sends it to the DLQ after `reference_wait`, and
/// the partition's later records are applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_waits_for_what_it_names_then_goes_to_the_dlq() {
    let mut b = bed();
    b.cfg.tuning.reference_wait = Duration::from_secs(2);
    b.cfg.tuning.retry_max = Duration::from_millis(100);
    produce(&b, &[change_of(tag("vip"), 1)]).await;
    let sink = Sink::start(b.cfg.clone(), needs(&b, "vip", "member"))
        .await
        .expect("sink");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((sink.status().applied, sink.status().dlq), (0, 0));
    // Written by another partition's worker meanwhile.
    SimProvider::new(b.store.clone(), "corp-b")
        .put_entity(&Entity::new(tag("member"), json!({"name": "m"})), None)
        .await
        .unwrap();
    settled(&sink, 1).await;
    assert_eq!((sink.status().applied, sink.status().dlq), (1, 0));
    assert!(held(&b, "vip"));

    // Names what never comes.
    let b2 = bed();
    let mut cfg = b2.cfg.clone();
    cfg.tuning.reference_wait = Duration::from_millis(800);
    cfg.tuning.retry_max = Duration::from_millis(100);
    produce(&b2, &[change_of(tag("vip"), 1), change_of(tag("other"), 2)]).await;
    let started = Instant::now();
    let sink2 = Sink::start(cfg, needs(&b2, "vip", "absent"))
        .await
        .expect("sink");
    settled(&sink2, 2).await;
    assert!(started.elapsed() >= Duration::from_millis(800));
    assert_eq!((sink2.status().applied, sink2.status().dlq), (1, 1));
    assert!(!held(&b2, "vip") && held(&b2, "other"));
    sink.stop().await.expect("stopped");
    sink2.stop().await.expect("stopped");
}
