//! A bootstrap over a state topic that already holds the account's former state: what the
//! account no longer has is deleted from the topic, not left there for ever.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{Bed, bed, head, wait_for};
use crate::model::EntityKey;
use crate::provider::sim::load::{LoadGen, Until};
use crate::provider::sim::{SimProvider, SimStore};
use crate::replication::source::{Source, SourceState};

/// The keys whose last record in the state topic is a full state, read independently of
/// the code under test: every partition from the beginning to its end offset.
fn live_in_topic(b: &Bed) -> BTreeSet<String> {
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", b.mock.bootstrap_servers())
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let topic = b.cfg.state_topic();
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..b.cfg.partitions {
        let (_, high) = c
            .fetch_watermarks(&topic, p, Duration::from_secs(5))
            .expect("watermarks");
        if high > 0 {
            ends.insert(p, high - 1);
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
        }
    }
    c.assign(&tpl).expect("assign");
    let mut last: BTreeMap<String, bool> = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !ends.is_empty() {
        assert!(std::time::Instant::now() < deadline, "topic read timed out");
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            last.insert(key, m.payload().is_some());
            if ends.get(&m.partition()) == Some(&m.offset()) {
                ends.remove(&m.partition());
            }
        }
    }
    last.into_iter()
        .filter_map(|(k, v)| v.then_some(k))
        .collect()
}

fn keys_of(store: &SimStore, account: &str) -> BTreeSet<String> {
    let (page, _) = store.account(account).list(None, 10_000).expect("list");
    page.into_iter().map(|(k, _)| k.to_string()).collect()
}

/// A source that follows the feed to its head, then stops with its checkpoint written.
async fn run_to_head(b: &Bed, primary: &Arc<SimProvider>) {
    let src = Source::start(b.cfg.clone(), primary.clone())
        .await
        .expect("source starts");
    let h = head(primary).await;
    wait_for(
        Duration::from_secs(20),
        "the checkpoint at the head",
        || {
            let s = src.status();
            s.checkpoint.as_deref() == Some(h.as_str()) && s.state == SourceState::Following
        },
    )
    .await;
    assert!(src.stop().await.clean(), "a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_cursor_bootstraps_and_deletes_what_the_account_no_longer_has() {
    let mut b = bed();
    // A feed that keeps 50 changes: the checkpoint below is older than that after the
    // deletes and the load that follow.
    b.store = SimStore::with_retention(50);
    let primary = Arc::new(SimProvider::new(b.store.clone(), "corp-a"));
    LoadGen::run(&b.store, "corp-a", 0, Until::Count(300), 31).await;
    run_to_head(&b, &primary).await;
    assert_eq!(
        live_in_topic(&b),
        keys_of(&b.store, "corp-a"),
        "the first copy"
    );

    // While no source runs: enough changes that the stored cursor expires, then ten
    // entities deleted. The feed will never say those ten were deleted.
    LoadGen::run(&b.store, "corp-a", 0, Until::Count(200), 32).await;
    let gone: Vec<EntityKey> = b
        .store
        .account("corp-a")
        .list(None, 10)
        .expect("list")
        .0
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for k in &gone {
        b.store.account("corp-a").delete(k, None).expect("delete");
    }

    run_to_head(&b, &primary).await;
    let live = live_in_topic(&b);
    for k in &gone {
        assert!(
            !live.contains(&k.to_string()),
            "{k} was deleted on the account"
        );
    }
    assert_eq!(
        live,
        keys_of(&b.store, "corp-a"),
        "the topic holds exactly the account's entities"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_topic_read_that_fails_is_asked_again_and_its_error_clears() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let mut b = bed();
    b.cfg.tuning.retry_min = Duration::from_millis(200);
    b.cfg.tuning.retry_max = Duration::from_millis(400);
    // A topic that already holds one of the account's keys: the bootstrap reads the topic
    // and finds nothing to delete, so it produces nothing after the read (a record
    // acknowledged would clear the error anyway).
    LoadGen::run(&b.store, "corp-a", 0, Until::Count(50), 33).await;
    let (first, _) = b.store.account("corp-a").list(None, 1).expect("list");
    {
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        let p: BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", b.mock.bootstrap_servers())
            .create()
            .expect("producer");
        let key = first[0].0.to_string();
        p.send(BaseRecord::to(&b.cfg.state_topic()).key(&key).payload("{}"))
            .map_err(|(e, _)| e)
            .expect("send");
        p.flush(Duration::from_secs(5)).expect("flush");
    }
    // A slow account: the start returns well before the bootstrap reads the state topic.
    b.store
        .account("corp-a")
        .set_faults(crate::provider::sim::Faults {
            latency_ms: 300,
            ..Default::default()
        });
    let src = Source::start(b.cfg.clone(), b.primary.clone())
        .await
        .expect("source starts");
    // Kafka refuses end offsets six times, then answers.
    b.mock.request_errors(
        RDKafkaApiKey::ListOffsets,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 6],
    );
    let mut reported = false;
    wait_for(
        Duration::from_secs(20),
        "following the feed with no Kafka error left",
        || {
            let s = src.status();
            reported |= s.kafka_error.is_some();
            s.state == SourceState::Following && s.kafka_error.is_none()
        },
    )
    .await;
    assert!(
        reported,
        "the refused reads were reported while they lasted"
    );
    assert_eq!(
        live_in_topic(&b),
        keys_of(&b.store, "corp-a"),
        "the bootstrap finished: the topic holds the account"
    );
    assert_eq!(
        src.status().produced,
        keys_of(&b.store, "corp-a").len() as u64,
        "the listing and nothing after it"
    );
    src.stop().await;
}
