//! The sink against librdkafka's mock cluster and the in-process simulator: records of a
//! key that arrive out of the order of their changes.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use tokio::time::Instant;

use super::Sink;
use crate::api::Side;
use crate::model::{Change, ChangeOp, EntityKey, EntityKind};
use crate::provider::sim::{SimProvider, SimStore};
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
    let change = Change {
        seq,
        key: hot(),
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
    let topic = b.cfg.state_topic();
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
        b.producer
            .send(rec, Duration::from_secs(10))
            .await
            .expect("produced");
    }
}

async fn applied(sink: &Sink, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.status().applied < n {
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
