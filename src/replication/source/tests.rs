//! The source against librdkafka's mock cluster and the in-process simulator: bounded
//! ends with the broker down, honest counts, and one observation per failed feed read.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use tokio::time::Instant;

use super::{Source, SourceState};
use crate::api::Side;
use crate::model::AccountState;
use crate::provider::AccountProvider;
use crate::provider::sim::load::{LoadGen, Until};
use crate::provider::sim::{SimProvider, SimStore};
use crate::replication::config::{KafkaConfig, PipelineConfig};

mod bootstrap;

struct Bed {
    mock: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    store: SimStore,
    primary: Arc<SimProvider>,
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
    cfg.partitions = 3;
    mock.create_topic(&cfg.state_topic(), 3, 1)
        .expect("state topic");
    mock.create_topic(&cfg.checkpoint_topic(), 1, 1)
        .expect("checkpoint topic");
    let t = &mut cfg.tuning;
    t.retry_min = Duration::from_millis(10);
    t.retry_max = Duration::from_millis(200);
    t.feed_wait = Duration::from_millis(100);
    t.checkpoint_interval = Duration::from_millis(50);
    t.start_timeout = Duration::from_secs(10);
    let store = SimStore::new();
    let primary = Arc::new(SimProvider::new(store.clone(), "corp-a"));
    Bed {
        mock,
        store,
        primary,
        cfg,
    }
}

async fn head(p: &SimProvider) -> String {
    p.head_cursor().await.expect("feed head")
}

/// Poll `check` every 10 ms until it holds, or panic after `timeout`.
async fn wait_for(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A source over `changes` changes of the primary (load seeded with `seed`), started and
/// checkpointed at the feed head, which is returned with it.
async fn checkpointed_source(b: &Bed, changes: u64, seed: u64) -> (Source, String) {
    LoadGen::run(&b.store, "corp-a", 0, Until::Count(changes), seed).await;
    let src = Source::start(b.cfg.clone(), b.primary.clone())
        .await
        .expect("source starts");
    let h = head(&b.primary).await;
    wait_for(Duration::from_secs(20), "the first checkpoint", || {
        src.status().checkpoint.as_deref() == Some(h.as_str())
    })
    .await;
    (src, h)
}

/// A source that replicated 300 changes, then the broker went down and 500 more changes
/// were read that Kafka cannot acknowledge.
async fn source_with_500_unacknowledged(b: &Bed) -> (Source, String) {
    let (src, safe) = checkpointed_source(b, 300, 1).await;
    b.mock.broker_down(1).expect("broker down");
    let produced = src.status().produced;
    LoadGen::run(&b.store, "corp-a", 0, Until::Count(500), 2).await;
    wait_for(Duration::from_secs(10), "500 changes read", || {
        src.status().unacknowledged == 500
    })
    .await;
    assert_eq!(src.status().produced, produced);
    (src, safe)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fence_with_the_broker_down_ends_in_bound_and_counts_every_change_not_acknowledged() {
    let b = bed();
    let (src, safe) = source_with_500_unacknowledged(&b).await;
    let t = Instant::now();
    let end = src.fence(Duration::from_secs(1)).await;
    assert!(
        t.elapsed() <= Duration::from_millis(1_900),
        "fence(1s) took {:?}",
        t.elapsed()
    );
    assert_eq!(end.unacknowledged, 500, "{end:?}");
    assert_eq!(end.checkpoint.as_deref(), Some(safe.as_str()));
    assert!(
        end.checkpoint_written,
        "the safe cursor was already written"
    );
    assert_eq!(end.read_cursor, Some(head(&b.primary).await));
    assert!(end.reached_head);
    assert!(!end.clean());
    // The timings say where the fence waited: on Kafka's answers, not on the feed.
    let tm = end.timings;
    assert!(tm.settle_ms >= 500, "{tm:?}");
    assert!(tm.head_ms + tm.read_ms < tm.settle_ms, "{tm:?}");
    assert!(
        u128::from(tm.head_ms + tm.read_ms + tm.settle_ms + tm.checkpoint_ms)
            <= t.elapsed().as_millis(),
        "{tm:?} within {:?}",
        t.elapsed()
    );
    let status = src.status();
    assert_eq!(status.state, SourceState::Fenced);
    assert_eq!(
        status.unacknowledged, 500,
        "purged, never acknowledged later"
    );
    assert_eq!(src.fence(Duration::from_secs(1)).await, end, "idempotent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fence_of_an_account_frozen_at_its_last_read_does_not_wait_on_a_slow_provider_for_its_head()
 {
    let b = bed();
    let (src, h) = checkpointed_source(&b, 50, 4).await;
    // Frozen, and every call answered 1.5 s late (a provider under load).
    let account = b.store.account("corp-a");
    account.set_status(AccountState::Frozen, "content report");
    let mut rx = src.feed_errors();
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("the freeze seen by a feed read within 5 s")
        .expect("source alive");
    account.set_faults(crate::provider::sim::Faults {
        latency_ms: 1_500,
        ..Default::default()
    });
    let t = Instant::now();
    let end = src.fence(Duration::from_secs(2)).await;
    let took = t.elapsed();
    let tm = end.timings;
    // Asked briefly, then fenced at the position reached: nothing read was lost.
    assert!(
        tm.head_ms < 600,
        "the head read of a frozen account is short: {tm:?}"
    );
    assert!(took < Duration::from_millis(1_200), "fence took {took:?}");
    assert!(!end.reached_head);
    assert_eq!(end.unacknowledged, 0, "{end:?}");
    assert_eq!(end.checkpoint.as_deref(), Some(h.as_str()));
    assert_eq!(
        end.feed_error.as_ref().map(|e| e.code()),
        Some("account_frozen")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_the_broker_down_ends_in_bound_and_says_it_was_not_clean() {
    let b = bed();
    let (src, safe) = source_with_500_unacknowledged(&b).await;
    let t = Instant::now();
    let end = src.stop_within(Duration::from_secs(1)).await;
    assert!(
        t.elapsed() <= Duration::from_millis(1_900),
        "stop_within(1s) took {:?}",
        t.elapsed()
    );
    assert_eq!(end.unacknowledged, 500);
    assert_eq!(end.checkpoint.as_deref(), Some(safe.as_str()));
    assert!(!end.clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_feed_is_one_timed_observation_per_failed_read_paced_by_retry_max() {
    let b = bed();
    let retry_max = b.cfg.tuning.retry_max;
    let (src, _) = checkpointed_source(&b, 50, 3).await;
    assert_eq!(src.status().feed_error_seq, 0);
    let mut rx = src.feed_errors();
    let frozen_at = chrono::Utc::now();
    b.store
        .account("corp-a")
        .set_status(AccountState::Frozen, "content report");
    let mut seen = Vec::new();
    while seen.len() < 4 {
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("a failed read within 5 s")
            .expect("source alive");
        let f = rx.borrow_and_update().clone();
        assert_eq!(f.error.as_ref().map(|e| e.code()), Some("account_frozen"));
        seen.push((f.seq, f.at.expect("timed")));
    }
    for w in seen.windows(2) {
        let ((s0, t0), (s1, t1)) = (w[0], w[1]);
        assert!(s1 > s0, "a new number per observation: {seen:?}");
        let gap = (t1 - t0).to_std().expect("later");
        assert!(
            gap >= retry_max * (s1 - s0) as u32 * 9 / 10,
            "reads paced by retry_max: {seen:?}"
        );
    }
    assert!(seen[0].1 >= frozen_at, "timed when the read failed");
    // Reading the status again is not a new observation.
    let a = src.status();
    let c = src.status();
    assert_eq!(
        (a.feed_error_seq, a.feed_error_at),
        (c.feed_error_seq, c.feed_error_at)
    );
    b.store
        .account("corp-a")
        .set_status(AccountState::Active, "");
    wait_for(Duration::from_secs(5), "the feed readable again", || {
        src.status().feed_error.is_none()
    })
    .await;
    assert!(
        src.status().feed_error_seq >= seen[3].0,
        "numbers never go back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_checkpoint_kafka_did_not_take_in_time_is_written_once_it_answers() {
    let mut b = bed();
    // No periodic checkpoint: only the final one can carry the acknowledged cursor.
    b.cfg.tuning.checkpoint_interval = Duration::from_secs(3600);
    LoadGen::run(&b.store, "corp-a", 0, Until::Count(300), 4).await;
    let src = Source::start(b.cfg.clone(), b.primary.clone())
        .await
        .expect("source starts");
    wait_for(
        Duration::from_secs(20),
        "the bootstrap acknowledged",
        || {
            let s = src.status();
            s.state == SourceState::Following && s.produced > 0 && s.unacknowledged == 0
        },
    )
    .await;
    b.mock.broker_down(1).expect("broker down");
    LoadGen::run(&b.store, "corp-a", 0, Until::Count(100), 5).await;
    wait_for(Duration::from_secs(10), "100 changes read", || {
        src.status().unacknowledged == 100
    })
    .await;
    let end = src.fence(Duration::from_millis(500)).await;
    assert!(!end.checkpoint_written);
    assert_eq!(end.unacknowledged, 100);
    let safe = end.checkpoint.clone().expect("a safe cursor");
    b.mock.broker_up(1).expect("broker up");
    let key = crate::replication::checkpoint::checkpoint_key(Side::Primary, "corp-a");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stored = crate::replication::checkpoint::read(&b.cfg, &key, Duration::from_secs(2))
            .await
            .ok()
            .flatten();
        if stored.as_ref().map(|c| c.cursor.as_str()) == Some(safe.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the final checkpoint {safe} was not written once Kafka answered: {stored:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_is_caught_up_only_once_a_read_reaches_the_feeds_head() {
    let mut b = bed();
    // A backlog of three full batches: the first reads return full batches, so the
    // source cannot know how far behind it is until a read returns less.
    b.cfg.tuning.feed_batch = 100;
    LoadGen::run(&b.store, "corp-a", 0, Until::Count(300), 1).await;
    let src = Source::start(b.cfg.clone(), b.primary.clone())
        .await
        .expect("source starts");
    // Reads do not wait until one reaches the head (the fourth, which finds nothing).
    assert!(!src.status().caught_up, "{:?}", src.status());
    let deadline = Instant::now() + Duration::from_secs(20);
    let counted = loop {
        let s = src.status();
        if s.caught_up {
            break s.produced + s.unacknowledged;
        }
        assert!(Instant::now() < deadline, "never caught up: {s:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    // Everything up to the head had been read and counted by then: once Kafka took it
    // all, nothing more was produced.
    let safe = head(&b.primary).await;
    wait_for(
        Duration::from_secs(20),
        "the checkpoint at the head",
        || src.status().checkpoint.as_deref() == Some(safe.as_str()),
    )
    .await;
    assert_eq!(src.status().produced, counted, "{:?}", src.status());
    src.stop().await;
}

/// Total records in `topic` (sum of its partitions' high watermarks), asked of the mock.
fn topic_records(b: &Bed, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", b.mock.bootstrap_servers())
        .create()
        .expect("reader");
    (0..b.cfg.partitions)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(5))
                .expect("watermarks")
                .1
        })
        .sum()
}

/// A second pair on the same mock cluster and Kafka settings as `b`'s whose source takes
/// the same shared producer (the sources are spread over several producers by pair name).
fn second_pair(b: &Bed) -> (PipelineConfig, Arc<SimProvider>) {
    use crate::replication::clients::source_producer_slot;
    let mut cfg = b.cfg.clone();
    let first = source_producer_slot(&cfg.namespace, &cfg.pair);
    cfg.pair = (0..)
        .map(|i| format!("pair-b{i}"))
        .find(|p| source_producer_slot(&cfg.namespace, p) == first)
        .expect("a name in the same slot");
    b.mock
        .create_topic(&cfg.state_topic(), 3, 1)
        .expect("state topic");
    b.mock
        .create_topic(&cfg.checkpoint_topic(), 1, 1)
        .expect("checkpoint topic");
    (cfg, Arc::new(SimProvider::new(b.store.clone(), "corp-b")))
}

async fn at_head(src: &Source, p: &SimProvider, what: &str) {
    let h = head(p).await;
    wait_for(Duration::from_secs(20), what, || {
        let s = src.status();
        s.checkpoint.as_deref() == Some(h.as_str()) && s.unacknowledged == 0
    })
    .await;
}

/// Pair `b`'s source and a second pair's on the same producer, each with 200
/// changes (load seeds `seed`, `seed + 1`), both started and acknowledged to the head.
async fn two_pairs_at_head(
    b: &Bed,
    seed: u64,
) -> (Source, Source, PipelineConfig, Arc<SimProvider>) {
    let (cfg_b, corp_b) = second_pair(b);
    LoadGen::run(&b.store, "corp-a", 0, Until::Count(200), seed).await;
    LoadGen::run(&b.store, "corp-b", 0, Until::Count(200), seed + 1).await;
    let a = Source::start(b.cfg.clone(), b.primary.clone())
        .await
        .expect("source a");
    let src_b = Source::start(cfg_b.clone(), corp_b.clone())
        .await
        .expect("source b");
    at_head(&a, &b.primary, "pair a acknowledged").await;
    at_head(&src_b, &corp_b, "pair b acknowledged").await;
    (a, src_b, cfg_b, corp_b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_of_two_pairs_share_one_producer_and_a_clean_end_leaves_the_other_alone() {
    let b = bed();
    let (a, src_b, _, corp_b) = two_pairs_at_head(&b, 6).await;
    let (pa, pb) = (a.producer().expect("open"), src_b.producer().expect("open"));
    assert!(Arc::ptr_eq(&pa, &pb), "one producer for both pairs");
    drop((pa, pb));
    let before = src_b.status().produced;
    // Pair b's changes keep flowing, each batch in flight for 100 ms, while pair a stops
    // with nothing unanswered.
    b.mock
        .broker_round_trip_time(1, Duration::from_millis(100))
        .expect("rtt");
    let load = tokio::spawn({
        let store = b.store.clone();
        async move { LoadGen::run(&store, "corp-b", 2_000, Until::Count(1_000), 8).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let end = a.stop_within(Duration::from_secs(2)).await;
    assert!(end.clean(), "{end:?}");
    load.await.expect("load");
    at_head(&src_b, &corp_b, "pair b acknowledged after the load").await;
    assert_eq!(
        src_b.status().produced - before,
        1_000,
        "every change of pair b produced once: nothing purged, nothing re-read"
    );
    src_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fence_with_records_unanswered_purges_the_shared_producer_and_only_the_other_pair_sends_again()
 {
    let b = bed();
    let (a, src_b, cfg_b, corp_b) = two_pairs_at_head(&b, 9).await;
    let (topic_a, topic_b) = (b.cfg.state_topic(), cfg_b.state_topic());
    let in_topic_a = topic_records(&b, &topic_a);
    assert_eq!(in_topic_a, a.status().produced as i64);
    b.mock.broker_down(1).expect("broker down");
    LoadGen::run(&b.store, "corp-a", 0, Until::Count(500), 11).await;
    LoadGen::run(&b.store, "corp-b", 0, Until::Count(300), 12).await;
    wait_for(Duration::from_secs(10), "both pairs' changes read", || {
        a.status().unacknowledged == 500 && src_b.status().unacknowledged == 300
    })
    .await;
    let end = a.fence(Duration::from_secs(1)).await;
    assert_eq!(end.unacknowledged, 500, "{end:?}");
    b.mock.broker_up(1).expect("broker up");
    // Pair b's purged records are read again and sent once Kafka is back.
    at_head(
        &src_b,
        &corp_b,
        "pair b's changes acknowledged after the purge",
    )
    .await;
    assert!(topic_records(&b, &topic_b) >= src_b.status().produced as i64);
    // Nothing of the fenced pair reaches its topic afterwards.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        topic_records(&b, &topic_a),
        in_topic_a,
        "records of the fenced pair written after its fence"
    );
    assert_eq!(a.status().unacknowledged, 500);
    src_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_long_poll_of_thirty_seconds_an_idle_feed_is_caught_up_at_once_and_a_change_sent_at_once()
 {
    let mut b = bed();
    b.cfg.tuning.feed_wait = Duration::from_secs(30);
    LoadGen::run(&b.store, "corp-a", 0, Until::Count(50), 13).await;
    let src = Source::start(b.cfg.clone(), b.primary.clone())
        .await
        .expect("source starts");
    let t = Instant::now();
    wait_for(Duration::from_secs(5), "caught up", || {
        src.status().caught_up
    })
    .await;
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "caught up only after {:?}: the read at the head waited",
        t.elapsed()
    );
    at_head(&src, &b.primary, "the backlog acknowledged").await;
    // The source now waits in a 30 s long poll: a change ends it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let produced = src.status().produced;
    let t = Instant::now();
    LoadGen::run(&b.store, "corp-a", 0, Until::Count(1), 14).await;
    wait_for(Duration::from_secs(5), "the change produced", || {
        src.status().produced > produced
    })
    .await;
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "a change waited {:?} behind the long poll",
        t.elapsed()
    );
    let t = Instant::now();
    let end = src.stop_within(Duration::from_secs(2)).await;
    assert!(end.clean(), "{end:?}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "a stop waited {:?} for the long poll",
        t.elapsed()
    );
}
