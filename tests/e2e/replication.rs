//! Replication end to end on the REAL Kafka broker of the test bed, with two in-process
//! simulator accounts (`SimStore`): bulk changes of every kind, a broker restart, a sink
//! crash, an expired feed cursor, poison records, a frozen source, and a reversal that
//! must not echo.
//!
//! Every wait polls a condition with a timeout; none sleeps for synchronisation. The test
//! restarting the broker holds the write side of a lock every other test holds the read
//! side of, so no other test of this binary sees the restart.

#[path = "replication_support.rs"]
mod rs;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rs::{Bed, all_entities, broker_lock, diff, dlq_records, kafka_script, kinds_of, wait_same};
use serde_json::json;
use support::{Testbed, suffix, wait_until};
use understudy::api::Side;
use understudy::model::{AccountState, Digest, EntityKey};
use understudy::provider::AccountProvider;
use understudy::provider::sim::Payload;
use understudy::provider::sim::load::{LoadGen, Until};
use understudy::replication::Start;
use understudy::replication::codec::header;
use understudy::replication::pipeline::{self, Pipeline};
use understudy::replication::sink::Sink;
use understudy::replication::source::Source;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_changes_replicate_with_zero_differences() {
    let _g = broker_lock().read().await;
    let tb = Testbed::load();
    let bed = Bed::new(&tb);
    let started = Instant::now();
    let p = Pipeline::start(
        bed.config(Side::Primary),
        bed.primary.clone(),
        bed.standby.clone(),
    )
    .await
    .expect("pipeline starts");
    let changes = bed.load("corp-a", 100_000, 0, 1).await;
    assert_eq!(changes, 100_000);
    wait_same(
        &bed.store,
        "corp-a",
        "corp-b",
        Duration::from_secs(240),
        "standby equals primary",
    )
    .await;
    let d = diff(bed.primary.as_ref(), bed.standby.as_ref()).await;
    assert!(d.is_empty(), "differences: {d:?}");
    let entities = all_entities(bed.primary.as_ref()).await;
    assert_eq!(
        kinds_of(&entities),
        understudy::provider::sim::r#gen::generated_kinds().count(),
        "every kind the load generates replicated"
    );
    assert!(d.compared > 20_000, "{}", d.compared);
    let snap = p.snapshot();
    assert_eq!(snap.dlq, 0);
    assert!(snap.applied >= 100_000, "{snap:?}");
    let stop = p.stop().await.expect("clean stop");
    assert_eq!(
        stop.source_cursor.as_deref(),
        Some("100000"),
        "checkpoint at the feed head"
    );
    eprintln!(
        "100k changes: {} entities compared, {:.1}s end to end",
        d.compared,
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_nothing() {
    let _g = broker_lock().write().await;
    rs::log_to_file("e2e-replication-broker-restart");
    let tb = Testbed::load();
    let bed = Bed::new(&tb);
    let p = Pipeline::start(
        bed.config(Side::Primary),
        bed.primary.clone(),
        bed.standby.clone(),
    )
    .await
    .expect("pipeline starts");
    let (load, task) = LoadGen::spawn(bed.store.account("corp-a"), 2_000, Until::Count(40_000), 2);
    wait_until(Duration::from_secs(60), "some records applied", || async {
        (p.snapshot().applied > 2_000).then_some(())
    })
    .await;
    let t = Instant::now();
    assert!(
        kafka_script("stop")
            .status()
            .await
            .expect("kafka.sh stop")
            .success()
    );
    let applied_when_down = p.snapshot().applied;
    assert!(
        kafka_script("start")
            .status()
            .await
            .expect("kafka.sh start")
            .success()
    );
    eprintln!(
        "broker down and up again in {:.1}s; load at {}",
        t.elapsed().as_secs_f64(),
        load.produced()
    );
    let report = task.await.expect("load");
    assert_eq!(report.changes, 40_000);
    support::wait_until_said(
        Duration::from_secs(180),
        "standby equals primary after the restart",
        || async {
            rs::state_difference(&bed.store, "corp-a", "corp-b").map_or(Ok(()), |d| {
                Err(format!("{d}; the pipeline: {:?}", p.snapshot()))
            })
        },
    )
    .await;
    let d = diff(bed.primary.as_ref(), bed.standby.as_ref()).await;
    assert!(d.is_empty(), "differences: {d:?}");
    assert!(p.snapshot().applied > applied_when_down);
    eprintln!(
        "sink partitions woken by a second look (lost wake-ups): {}",
        understudy::metrics::metrics().sink_lost_wakeups_total.get()
    );
    p.stop().await.expect("clean stop");
}

/// The pipeline is down long enough that its checkpoint falls out of the feed's retention,
/// and entities are deleted meanwhile: the new source bootstraps from a full listing, and
/// the standby loses the deleted entities too (the feed will never say they went).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_cursor_bootstraps_and_the_standby_loses_what_the_primary_deleted() {
    let _g = broker_lock().read().await;
    let tb = Testbed::load();
    let bed = Bed::with_retention(&tb, 1_000);
    let cfg = bed.config(Side::Primary);
    bed.load("corp-a", 3_000, 0, 41).await;
    let p = Pipeline::start(cfg.clone(), bed.primary.clone(), bed.standby.clone())
        .await
        .expect("pipeline starts");
    wait_same(
        &bed.store,
        "corp-a",
        "corp-b",
        Duration::from_secs(60),
        "the first copy",
    )
    .await;
    let stop = p.stop().await.expect("clean stop");
    assert!(stop.clean, "{stop:?}");

    // While the pipeline is down: more changes than the feed keeps, then deletes.
    bed.load("corp-a", 2_000, 0, 42).await;
    let (page, _) = bed.store.account("corp-a").list(None, 25).expect("list");
    for (k, _) in &page {
        bed.store.account("corp-a").delete(k, None).expect("delete");
    }
    let p = Pipeline::start(cfg, bed.primary.clone(), bed.standby.clone())
        .await
        .expect("pipeline restarts");
    wait_same(
        &bed.store,
        "corp-a",
        "corp-b",
        Duration::from_secs(60),
        "standby equals primary after the resynchronisation",
    )
    .await;
    for (k, _) in &page {
        assert!(
            bed.store.account("corp-b").get(k).expect("read").is_none(),
            "{k} was deleted on the primary"
        );
    }
    p.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_crash_and_restart_loses_nothing() {
    let _g = broker_lock().read().await;
    let tb = Testbed::load();
    let bed = Bed::new(&tb);
    let cfg = bed.config(Side::Primary);
    pipeline::ensure_topics(&cfg).await.expect("topics");
    let sink = Sink::start(cfg.clone(), bed.standby.clone())
        .await
        .expect("sink");
    let source = Source::start(cfg.clone(), bed.primary.clone())
        .await
        .expect("source");
    let (_load, task) = LoadGen::spawn(bed.store.account("corp-a"), 5_000, Until::Count(30_000), 3);
    wait_until(
        Duration::from_secs(60),
        "the sink applied some records",
        || async { (sink.status().applied > 5_000).then_some(()) },
    )
    .await;
    let committed: u64 = sink
        .status()
        .committed_offsets
        .values()
        .map(|o| *o as u64)
        .sum();
    // Crash: no stop, no final commit; the chunk in hand is abandoned mid-apply.
    sink.abort();
    let sink = Sink::start(cfg.clone(), bed.standby.clone())
        .await
        .expect("sink restarts");
    let resumed: u64 = sink
        .status()
        .applied_offsets
        .values()
        .map(|o| *o as u64)
        .sum();
    assert!(resumed >= committed, "resumes from the committed offsets");
    task.await.expect("load");
    wait_same(
        &bed.store,
        "corp-a",
        "corp-b",
        Duration::from_secs(120),
        "standby equals primary after the sink crash",
    )
    .await;

    // Then the whole process crashes (source too) and comes back as a new pipeline.
    source.abort();
    sink.abort();
    LoadGen::run(&bed.store, "corp-a", 0, Until::Count(10_000), 4).await;
    let p = Pipeline::start(cfg, bed.primary.clone(), bed.standby.clone())
        .await
        .expect("pipeline restarts");
    wait_same(
        &bed.store,
        "corp-a",
        "corp-b",
        Duration::from_secs(120),
        "standby equals primary after a full crash",
    )
    .await;
    let d = diff(bed.primary.as_ref(), bed.standby.as_ref()).await;
    assert!(d.is_empty(), "differences: {d:?}");
    p.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_go_to_the_dlq_and_the_rest_flows() {
    let _g = broker_lock().read().await;
    let tb = Testbed::load();
    let bed = Bed::new(&tb);
    let cfg = bed.config(Side::Primary);
    let p = Pipeline::start(cfg.clone(), bed.primary.clone(), bed.standby.clone())
        .await
        .expect("pipeline starts");
    bed.load("corp-a", 3_000, 0, 5).await;

    // An entity the primary holds but the standby refuses (the simulator's marker),
    // written past the primary's own validation as a provider quirk would. A foreign id,
    // so the load generator never updates it.
    let bad_key: EntityKey = "content/poison-1".parse().unwrap();
    let value = json!({"title": "坏的", "$invalid": true});
    let text = serde_json::to_string(&value).unwrap();
    let bad = Arc::new(Payload {
        digest: Digest::of_payload(&value),
        json: text.into_boxed_str(),
        version: 0,
    });
    bed.store
        .account("corp-a")
        .apply_batch(vec![(bad_key.clone(), Some(bad))], None);

    // Garbage produced straight to the state topic.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bed.bootstrap)
        .create()
        .expect("producer");
    producer
        .send(
            FutureRecord::to(&cfg.state_topic())
                .key("member/garbage")
                .payload("not an envelope"),
            Duration::from_secs(10),
        )
        .await
        .expect("garbage produced");
    bed.load("corp-a", 3_000, 0, 6).await;

    wait_until(
        Duration::from_secs(60),
        "two records dead-lettered",
        || async { (p.snapshot().dlq >= 2).then_some(()) },
    )
    .await;
    wait_until(
        Duration::from_secs(60),
        "everything else applied",
        || async {
            let d = diff(bed.primary.as_ref(), bed.standby.as_ref()).await;
            (d.missing == vec![bad_key.clone()] && d.extra.is_empty() && d.mismatched.is_empty())
                .then_some(())
        },
    )
    .await;
    let dlq = dlq_records(&bed.bootstrap, &cfg.dlq_topic(), 2);
    let reason = |key: &str| {
        dlq.iter()
            .find(|(k, _)| k.as_deref() == Some(key))
            .unwrap_or_else(|| panic!("{key} not in the DLQ: {dlq:?}"))
            .1
            .clone()
    };
    let rejected = reason(bad_key.as_str());
    assert_eq!(rejected[header::DLQ_REASON], "rejected");
    assert!(
        rejected[header::DLQ_ERROR].contains("$invalid"),
        "{rejected:?}"
    );
    let garbage = reason("member/garbage");
    assert_eq!(garbage[header::DLQ_REASON], "undecodable");
    assert!(
        garbage[header::DLQ_ORIGIN].starts_with(&cfg.state_topic()),
        "{garbage:?}"
    );
    assert_eq!(p.snapshot().dlq, 2);
    p.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_source_is_reported_and_fencing_drains_what_was_read() {
    let _g = broker_lock().read().await;
    let tb = Testbed::load();
    let bed = Bed::new(&tb);
    let p = Pipeline::start(
        bed.config(Side::Primary),
        bed.primary.clone(),
        bed.standby.clone(),
    )
    .await
    .expect("pipeline starts");
    let mut errors = p.source_errors();
    bed.load("corp-a", 5_000, 0, 7).await;
    wait_same(
        &bed.store,
        "corp-a",
        "corp-b",
        Duration::from_secs(60),
        "in sync before the freeze",
    )
    .await;
    bed.store
        .account("corp-a")
        .set_status(AccountState::Frozen, "content report");
    let err = wait_until(Duration::from_secs(10), "the freeze reported", || {
        let e = errors.borrow_and_update().error.clone();
        async move { e }
    })
    .await;
    assert_eq!(err.code(), "account_frozen");
    assert_eq!(
        p.snapshot().source_error.map(|e| e.code()),
        Some("account_frozen")
    );
    let t = Instant::now();
    let fence = p.fence(Duration::from_secs(2)).await;
    assert!(!fence.reached_head);
    assert_eq!(
        fence.source_error.as_ref().map(|e| e.code()),
        Some("account_frozen")
    );
    let drain = p
        .drain(
            &fence.end_offsets,
            std::time::Instant::now() + Duration::from_secs(2),
        )
        .await;
    assert_eq!(drain.records_lost, 0, "{drain:?}");
    eprintln!("fence + drain of a frozen source: {:?}", t.elapsed());
    p.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reversing_the_direction_does_not_echo() {
    let _g = broker_lock().read().await;
    let tb = Testbed::load();
    let bed = Bed::new(&tb);
    let p = Pipeline::start(
        bed.config(Side::Primary),
        bed.primary.clone(),
        bed.standby.clone(),
    )
    .await
    .expect("pipeline starts");
    bed.load("corp-a", 20_000, 0, 8).await;
    wait_same(
        &bed.store,
        "corp-a",
        "corp-b",
        Duration::from_secs(120),
        "standby equals primary",
    )
    .await;
    let a_head_before: u64 = bed.primary.head_cursor().await.unwrap().parse().unwrap();
    let b_head_before: u64 = bed.standby.head_cursor().await.unwrap().parse().unwrap();
    let fence = p.fence(Duration::from_secs(5)).await;
    assert!(fence.reached_head);
    let drain = p
        .drain(
            &fence.end_offsets,
            std::time::Instant::now() + Duration::from_secs(5),
        )
        .await;
    assert_eq!(drain.records_lost, 0);
    let (rev, flip) = p.reverse("so-e2e-1").await.expect("reverse");
    assert_eq!(
        flip.source_cursor,
        b_head_before.to_string(),
        "new source starts at the standby's head"
    );
    assert_eq!(rev.snapshot().direction, "standby-to-primary");

    // The new source starts at the standby's head: with the standby quiet it has nothing
    // to read, so the old sink's writes never come back.
    wait_until(
        Duration::from_secs(30),
        "the new source checkpointed the flip head",
        || async {
            (rev.snapshot().source_checkpoint.as_deref() == Some(flip.source_cursor.as_str()))
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        rev.snapshot().produced,
        0,
        "nothing the old sink wrote comes back"
    );
    assert_eq!(
        bed.primary.head_cursor().await.unwrap(),
        a_head_before.to_string()
    );

    // New changes on the standby flow back, and only those.
    let n = bed.load("corp-b", 5_000, 0, 9).await;
    wait_same(
        &bed.store,
        "corp-a",
        "corp-b",
        Duration::from_secs(120),
        "old primary equals standby",
    )
    .await;
    let d = diff(bed.standby.as_ref(), bed.primary.as_ref()).await;
    assert!(d.is_empty(), "{d:?}");
    let snap = rev.snapshot();
    assert_eq!(
        snap.produced, n,
        "exactly the standby's own changes were produced: {snap:?}"
    );
    let tag = rev.config().origin_tag();
    let gained = bed
        .primary
        .changes(Some(&a_head_before.to_string()), 10_000, Duration::ZERO)
        .await
        .unwrap();
    assert!(gained.changes.len() as u64 <= n);
    assert!(
        gained
            .changes
            .iter()
            .all(|c| c.origin.as_deref() == Some(tag.as_str())),
        "every change the old primary gained is the reverse sink's"
    );
    // And a source on the old primary reading those changes skips every one (origin tag).
    let mut probe_cfg = bed.config(Side::Primary);
    probe_cfg.start = Start::AfterFlip(understudy::replication::Flip {
        epoch: format!("probe-{}", suffix()),
        source_cursor: a_head_before.to_string(),
        sink_offsets: BTreeMap::new(),
    });
    let probe = Source::start(probe_cfg, bed.primary.clone())
        .await
        .expect("probe source");
    wait_until(
        Duration::from_secs(30),
        "the probe source read the tagged changes",
        || async { (probe.status().skipped == gained.changes.len() as u64).then_some(()) },
    )
    .await;
    assert_eq!(probe.status().produced, 0);
    assert!(probe.stop().await.clean(), "the probe source stops cleanly");
    rev.stop().await.expect("clean stop");
}
