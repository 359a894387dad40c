//! The sinks' shared consumer end to end on the REAL Kafka broker of the test bed, with
//! in-process simulator accounts: three pairs replicate through one consumer, a standby
//! that refuses writes stalls only its own pair, and an upgrade from the per-pair
//! consumer groups resumes where the former group stopped.
//!
//! Both tests count the shared clients of this process: they take turns (a lock), and no
//! other test binary shares the process.

#[path = "replication_support.rs"]
mod rs;
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use rs::wait_same;
use support::{Testbed, suffix, wait_until};
use tokio::sync::Mutex;
use understudy::api::Side;
use understudy::model::AccountState;
use understudy::provider::sim::load::{LoadGen, Until};
use understudy::provider::sim::{SimProvider, SimStore};
use understudy::replication::pipeline::{self, Pipeline};
use understudy::replication::sink::Sink;
use understudy::replication::source::Source;
use understudy::replication::{KafkaConfig, PipelineConfig, clients};

fn turns() -> &'static Mutex<()> {
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| Mutex::new(()))
}

fn config(bootstrap: &str, ns: &str, pair: &str) -> PipelineConfig {
    let mut c = PipelineConfig::new(ns, pair, Side::Primary, KafkaConfig::new(bootstrap));
    c.partitions = 6;
    c.tuning.retry_max = Duration::from_millis(500);
    c
}

fn sum(offsets: &BTreeMap<i32, i64>) -> i64 {
    offsets.values().sum()
}

/// Committed offsets of `topic` in `group`, asked with a client of that group.
fn committed_in(bootstrap: &str, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..6 {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// What a sink of the former version left: `offsets` committed in the pair's own group.
fn commit_in(bootstrap: &str, group: &str, topic: &str, offsets: &BTreeMap<i32, i64>) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
            .expect("offset");
    }
    c.commit(&tpl, CommitMode::Sync).expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_pairs_share_one_consumer_and_a_frozen_standby_stalls_only_its_own_pair() {
    let _t = turns().lock().await;
    let tb = Testbed::load();
    let bootstrap = tb.var("TESTBED_KAFKA_BOOTSTRAP");
    let ns = format!("e2e{}", suffix());
    let store = SimStore::new();
    let mut pipes = Vec::new();
    for i in 0..3 {
        let primary = Arc::new(SimProvider::new(store.clone(), &format!("p{i}")));
        let standby = Arc::new(SimProvider::new(store.clone(), &format!("s{i}")));
        let cfg = config(&bootstrap, &ns, &format!("pair{i}"));
        pipes.push(
            Pipeline::start(cfg, primary, standby)
                .await
                .expect("pipeline starts"),
        );
    }
    assert_eq!(
        clients::live_clients().sink_consumers,
        1,
        "three pairs of one direction and settings: one sink consumer"
    );
    // The standby of pair1 stops taking writes; every pair's primary keeps changing.
    store
        .account("s1")
        .set_status(AccountState::Frozen, "content report");
    let loads: Vec<_> = (0..3)
        .map(|i| {
            LoadGen::spawn(
                store.account(&format!("p{i}")),
                1_000,
                Until::Count(8_000),
                40 + i,
            )
        })
        .collect();
    let started = Instant::now();
    let mut worst = [0f64; 3];
    for (_, task) in loads {
        while !task.is_finished() {
            for (i, p) in pipes.iter().enumerate() {
                worst[i] = worst[i].max(p.snapshot().lag_seconds);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(task.await.expect("load").changes, 8_000);
    }
    for i in [0, 2] {
        wait_same(
            &store,
            &format!("p{i}"),
            &format!("s{i}"),
            Duration::from_secs(30),
            "a pair whose standby takes writes keeps up",
        )
        .await;
    }
    let caught_up = started.elapsed();
    let frozen = pipes[1].snapshot();
    assert_eq!(
        frozen.sink_error.as_ref().map(|e| e.code()),
        Some("account_frozen"),
        "{frozen:?}"
    );
    assert!(
        frozen.lag_records > 1_000,
        "the frozen standby's pair is behind: {frozen:?}"
    );
    // Its worker has waited on the same chunk for seconds: the partition is parked, so
    // its backlog waits in Kafka rather than in the operator's memory.
    let parked = || understudy::metrics::metrics().sink_partitions_parked.get();
    assert!(parked() >= 1, "the frozen standby's partition is parked");
    eprintln!(
        "8,000 changes a pair, one standby frozen: the others caught up after {caught_up:?}; \
         worst lag seconds {worst:?}; frozen pair {} records behind",
        frozen.lag_records
    );
    for i in [0, 2] {
        assert!(
            worst[i] < 10.0,
            "pair{i} lagged {}s behind while pair1 was stuck",
            worst[i]
        );
    }
    // Once it takes writes again, the stalled pair catches up from where it stopped.
    store.account("s1").set_status(AccountState::Active, "");
    wait_same(
        &store,
        "p1",
        "s1",
        Duration::from_secs(60),
        "the unfrozen standby catches up",
    )
    .await;
    assert_eq!(
        pipes[1].snapshot().dlq,
        0,
        "refused writes are retried, not poison"
    );
    // Caught up after being parked and fetched again from after its last chunk: nothing
    // fetched ahead and dropped was lost (the states above are equal).
    assert_eq!(parked(), 0, "no partition stays parked once caught up");
    for p in pipes {
        p.stop().await.expect("clean stop");
    }
    // Stopped sinks let go of their clients off the runtime: a moment later.
    wait_until(
        Duration::from_secs(10),
        "the last sink closes the shared consumer",
        || async { (clients::live_clients().sink_consumers == 0).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_resumes_from_the_pairs_former_consumer_group_once() {
    let _t = turns().lock().await;
    rs::log_to_file("e2e-replication-shared");
    let tb = Testbed::load();
    let bootstrap = tb.var("TESTBED_KAFKA_BOOTSTRAP");
    let ns = format!("e2e{}", suffix());
    let store = SimStore::new();
    let primary = Arc::new(SimProvider::new(store.clone(), "corp-a"));
    let standby = Arc::new(SimProvider::new(store.clone(), "corp-b"));
    let cfg = config(&bootstrap, &ns, "wecom");
    let topic = cfg.state_topic();
    pipeline::ensure_topics(&cfg).await.expect("topics");
    let source = Source::start(cfg.clone(), primary.clone())
        .await
        .expect("source");
    // The account is empty: once the source has read the feed's head, every change
    // below becomes one record. A bootstrap still listing while the changes are written
    // would produce one full state per entity instead (fewer records than changes).
    wait_until(
        Duration::from_secs(30),
        "the source follows the feed",
        || async { source.status().caught_up.then_some(()) },
    )
    .await;
    let produced = |want: i64| {
        let cfg = cfg.clone();
        async move {
            let end = pipeline::end_offsets(&cfg, Duration::from_secs(5))
                .await
                .ok()?;
            (sum(&end) >= want).then_some(end)
        }
    };
    let answers = || {
        understudy::metrics::metrics()
            .source_kafka_ack_seconds
            .get_sample_count()
    };
    let answered_before = answers();
    LoadGen::run(&store, "corp-a", 0, Until::Count(3_000), 51).await;
    let before = wait_until(Duration::from_secs(60), "3,000 records produced", || {
        produced(3_000)
    })
    .await;
    // Kafka's answers to the source's batches show in the operator's metrics.
    wait_until(
        Duration::from_secs(10),
        "the source's acknowledged batches timed in understudy_source_kafka_ack_seconds",
        || async { (answers() > answered_before).then_some(()) },
    )
    .await;
    // The former version's sink applied everything up to `before` and committed it in
    // the pair's own group; the standby holds nothing of it (so a re-applied record
    // would show as a write).
    commit_in(&bootstrap, &cfg.pair_group_id(), &topic, &before);
    LoadGen::run(&store, "corp-a", 0, Until::Count(1_000), 52).await;
    wait_until(
        Duration::from_secs(60),
        "1,000 more records produced",
        || produced(sum(&before) + 1_000),
    )
    .await;
    assert!(source.stop().await.clean(), "every record acknowledged");
    let after = pipeline::end_offsets(&cfg, Duration::from_secs(10))
        .await
        .expect("end offsets");

    let sink = Sink::start(cfg.clone(), standby.clone())
        .await
        .expect("sink starts");
    assert_eq!(
        sink.status().applied_offsets,
        before,
        "resumes where the former group stopped, not from the beginning"
    );
    wait_until(
        Duration::from_secs(60),
        "the new records applied",
        || async { (sink.status().applied_offsets == after).then_some(()) },
    )
    .await;
    let status = sink.status();
    assert_eq!(
        status.applied as i64,
        sum(&after) - sum(&before),
        "every record after the former group's offsets applied once, none before: {status:?}"
    );
    sink.stop().await.expect("clean stop");
    let shared = committed_in(&bootstrap, &cfg.group_id(), &topic);
    assert_eq!(
        shared, after,
        "every partition's position is in the shared group now"
    );

    // The former group is not read again: moving it back changes nothing.
    commit_in(
        &bootstrap,
        &cfg.pair_group_id(),
        &topic,
        &after.keys().map(|p| (*p, 0)).collect(),
    );
    let sink = Sink::start(cfg.clone(), standby.clone())
        .await
        .expect("sink restarts");
    assert_eq!(sink.status().applied_offsets, after);
    assert_eq!(sink.status().applied, 0);
    sink.stop().await.expect("clean stop");
}
