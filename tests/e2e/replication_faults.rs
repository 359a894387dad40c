//! Replication when Kafka fails, on a PRIVATE real broker ([`PrivateKafka`]) each test
//! kills and starts again, with two in-process simulator accounts: fence, drain, stop and
//! start stay within their bounds whatever Kafka does, the fence counts every change it
//! read that Kafka did not acknowledge, nothing is produced after a fence, and a new
//! pipeline resumes from the checkpoint without losing anything Kafka acknowledged.
//!
//! Every wait polls a condition with a timeout; none sleeps for synchronisation. The
//! shared test-bed broker is not touched.

#[path = "replication_support.rs"]
mod rs;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rs::Bed;
use support::private_kafka::PrivateKafka;
use support::wait_until;
use understudy::api::Side;
use understudy::provider::AccountProvider;
use understudy::provider::sim::load::{LoadGen, Until};
use understudy::replication::checkpoint;
use understudy::replication::pipeline::{self, Pipeline};
use understudy::replication::source::SourceState;
use understudy::replication::{EndOffsetsFrom, PipelineConfig, PipelineError, records_lost_total};

fn sum(offsets: &BTreeMap<i32, i64>) -> u64 {
    offsets.values().map(|o| *o as u64).sum()
}

async fn head(p: &dyn AccountProvider) -> u64 {
    let h = p.head_cursor().await.expect("feed head");
    h.parse().expect("the simulator's cursors are numbers")
}

/// The state topic's end offsets once the broker answers again.
async fn end_offsets_when_back(cfg: &PipelineConfig) -> BTreeMap<i32, i64> {
    wait_until(
        Duration::from_secs(60),
        "the state topic's end offsets after the restart",
        || async {
            pipeline::end_offsets(cfg, Duration::from_secs(2))
                .await
                .ok()
                .filter(|o| o.len() as i32 == cfg.partitions)
        },
    )
    .await
}

/// The source's stored checkpoint (`None`: no checkpoint reached Kafka).
async fn stored_checkpoint(bed: &Bed, cfg: &PipelineConfig) -> Option<u64> {
    let key = checkpoint::checkpoint_key(Side::Primary, bed.primary.account_id());
    let stored = checkpoint::read(cfg, &key, Duration::from_secs(10))
        .await
        .expect("checkpoint readable");
    stored.map(|c| c.cursor.parse().unwrap())
}

/// A new pipeline resumes from the checkpoint (not from a full listing) and the standby
/// ends equal to the primary: nothing is lost. `stored` is the checkpoint read before the
/// start, `safe` the old source's acknowledged cursor: its final checkpoint may still land
/// in the background meanwhile, so the new source starts from one of the two. Without a
/// stored checkpoint (the broker died before the first one reached it) the new source
/// bootstraps from a full listing, and the standby still ends equal: what was deleted
/// meanwhile is deleted there too.
async fn resume_and_converge(bed: &Bed, cfg: &PipelineConfig, stored: Option<u64>, safe: u64) {
    let p = Pipeline::start(cfg.clone(), bed.primary.clone(), bed.standby.clone())
        .await
        .expect("pipeline restarts");
    let end = head(bed.primary.as_ref()).await;
    let t = Instant::now();
    while !rs::same_state(&bed.store, "corp-a", "corp-b") {
        if t.elapsed() > Duration::from_secs(120) {
            let d = rs::diff(bed.primary.as_ref(), bed.standby.as_ref()).await;
            panic!(
                "the standby is not equal to the primary 120 s after the broker came back: \
                 {} missing, {} extra, {} different (first: {:?}); stored checkpoint {stored:?}, \
                 safe cursor {safe}; the new pipeline: {:?}",
                d.missing.len(),
                d.extra.len(),
                d.mismatched.len(),
                d.missing.iter().chain(&d.extra).chain(&d.mismatched).next(),
                p.snapshot()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_until(
        Duration::from_secs(60),
        "the new source checkpointed the feed head",
        || async {
            (p.snapshot().source_checkpoint.as_deref() == Some(end.to_string().as_str()))
                .then_some(())
        },
    )
    .await;
    let produced = p.snapshot().produced;
    match stored {
        Some(stored) => assert!(
            end - safe <= produced && produced <= end - stored,
            "the new source read the changes after the checkpoint ({stored}..{safe}) to {end}, no more: {produced}"
        ),
        None => {
            let entities = rs::all_entities(bed.primary.as_ref()).await.len() as u64;
            assert!(
                produced >= entities,
                "without a checkpoint the new source produced a full listing: {produced} < {entities} entities"
            );
            eprintln!(
                "no checkpoint had reached Kafka: the new source bootstrapped ({produced} records)"
            );
        }
    }
    p.stop().await.expect("clean stop");
}

/// Changes flow; the broker dies; the source goes on reading changes Kafka cannot take.
async fn broker_killed_under_load(
    kafka: &mut PrivateKafka,
    bed: &Bed,
    p: &Pipeline,
    seed: u64,
) -> (
    understudy::provider::sim::load::LoadControl,
    tokio::task::JoinHandle<understudy::provider::sim::load::LoadReport>,
) {
    // The bootstrap (of an empty account) is over before the load starts: every record
    // produced from then on is one change of the feed, which the fence's count relies on.
    wait_until(
        Duration::from_secs(60),
        "the source follows the feed",
        || async { (p.snapshot().source_state == SourceState::Following).then_some(()) },
    )
    .await;
    let (load, task) = LoadGen::spawn(
        bed.store.account("corp-a"),
        2_000,
        Until::Elapsed(Duration::from_secs(600)),
        seed,
    );
    wait_until(Duration::from_secs(60), "some records applied", || async {
        (p.snapshot().applied > 2_000).then_some(())
    })
    .await;
    kafka.stop().await;
    let at_kill = head(bed.primary.as_ref()).await;
    wait_until(
        Duration::from_secs(30),
        "changes made while the broker is down",
        || async { (head(bed.primary.as_ref()).await > at_kill + 2_000).then_some(()) },
    )
    .await;
    (load, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_down_fence_and_drain_return_in_bound_and_count_every_change_kafka_did_not_acknowledge()
 {
    let mut kafka = PrivateKafka::start().await;
    let bed = Bed::with_bootstrap(kafka.bootstrap());
    let cfg = bed.config(Side::Primary);
    let p = Pipeline::start(cfg.clone(), bed.primary.clone(), bed.standby.clone())
        .await
        .expect("pipeline starts");
    let (load, task) = broker_killed_under_load(&mut kafka, &bed, &p, 21).await;
    // The changes read while the broker is away count as lag: it grows, it does not show 0.
    wait_until(
        Duration::from_secs(20),
        "lag to count the 2,000 changes read since the broker died",
        || async { (p.snapshot().lag_records >= 2_000).then_some(()) },
    )
    .await;

    let t = Instant::now();
    let fence = p.fence(Duration::from_secs(2)).await;
    let fence_took = t.elapsed();
    eprintln!("fence with the broker down: {fence_took:?}, {fence:?}");
    assert!(
        fence_took <= Duration::from_secs(3),
        "fence(2s) took {fence_took:?}"
    );
    let snap = p.snapshot();
    assert_eq!(snap.source_state, SourceState::Fenced);
    assert_eq!(fence.end_offsets_from, EndOffsetsFrom::Acknowledged);
    let read: u64 = fence
        .read_cursor
        .as_deref()
        .expect("the source read the feed")
        .parse()
        .unwrap();
    let acked = snap.produced;
    assert!(
        fence.unacknowledged > 0,
        "changes read after the kill cannot be acknowledged: {fence:?}"
    );
    assert_eq!(
        acked + fence.unacknowledged,
        read,
        "every change read (the feed from 0 to the read cursor) is acknowledged or counted"
    );
    let safe: u64 = fence.source_cursor.as_deref().unwrap().parse().unwrap();
    assert!(safe <= read);

    // The sink cannot fetch more: the drain gives up at its deadline.
    let t = Instant::now();
    let drain = p
        .drain(
            &fence.end_offsets,
            std::time::Instant::now() + Duration::from_secs(2),
        )
        .await;
    let drain_took = t.elapsed();
    assert!(
        drain_took <= Duration::from_millis(2_500),
        "drain(2s) took {drain_took:?}"
    );
    let applied = sum(&drain.applied_offsets);
    let lost = records_lost_total(Some(fence.unacknowledged), Some(drain.records_lost))
        .expect("both known");
    eprintln!("drain: {drain:?}; read {read}, acked {acked}, applied {applied}, lost {lost}");
    assert!(
        lost >= read - applied,
        "recordsLost never undercounts: {lost} < {read} read - {applied} applied"
    );
    assert!(lost > 0);

    // The broker comes back: it holds what it acknowledged, and at most what was read.
    load.stop();
    let load = task.await.expect("load");
    kafka.start_again().await;
    let back = end_offsets_when_back(&cfg).await;
    let in_topic = sum(&back);
    assert!(
        acked <= in_topic && in_topic <= acked + fence.unacknowledged,
        "the topic holds {in_topic} records: {acked} acknowledged + at most {} not",
        fence.unacknowledged
    );
    // The fenced pipeline's sink reconnects and applies all of it, meanwhile its source
    // produces nothing: nothing unacknowledged was left queued in its producer.
    wait_until(
        Duration::from_secs(60),
        "the fenced pipeline's sink applied the whole topic",
        || async {
            let d = p
                .drain(
                    &back,
                    std::time::Instant::now() + Duration::from_millis(200),
                )
                .await;
            (d.records_lost == 0).then_some(())
        },
    )
    .await;
    assert_eq!(
        p.snapshot().produced,
        acked,
        "nothing produced after the fence"
    );
    assert_eq!(
        sum(&pipeline::end_offsets(&cfg, Duration::from_secs(10))
            .await
            .unwrap()),
        in_topic,
        "no record reached the topic after the fence"
    );
    let stop = p.stop_within(Duration::from_secs(5)).await.expect("stop");
    eprintln!("stop after the broker came back: clean {}", stop.clean);

    // A checkpoint written late is never past what Kafka acknowledged; a new pipeline
    // resumes from it and loses nothing.
    let stored = stored_checkpoint(&bed, &cfg).await;
    assert!(
        stored.is_none_or(|s| s <= safe),
        "checkpoint {stored:?} past the safe cursor {safe}"
    );
    resume_and_converge(&bed, &cfg, stored, safe).await;
    eprintln!(
        "{} changes in all; resumed from cursor {stored:?}",
        load.changes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_down_stop_and_start_return_in_bound_and_a_new_pipeline_loses_nothing() {
    let mut kafka = PrivateKafka::start().await;
    let bed = Bed::with_bootstrap(kafka.bootstrap());
    let cfg = bed.config(Side::Primary);
    let p = Pipeline::start(cfg.clone(), bed.primary.clone(), bed.standby.clone())
        .await
        .expect("pipeline starts");
    let (load, task) = broker_killed_under_load(&mut kafka, &bed, &p, 22).await;

    let t = Instant::now();
    let stop = p
        .stop_within(Duration::from_secs(2))
        .await
        .expect("stop runs");
    let stop_took = t.elapsed();
    eprintln!(
        "stop with the broker down: {stop_took:?}; clean {}, unacknowledged {}, checkpoint written {}, committed {} ({:?})",
        stop.clean, stop.unacknowledged, stop.checkpoint_written, stop.committed, stop.commit_error
    );
    assert!(
        stop_took <= Duration::from_millis(3_500),
        "stop_within(2s) took {stop_took:?}"
    );
    assert!(!stop.clean, "a stop with the broker down is not clean");
    assert!(stop.unacknowledged > 0);
    assert!(!stop.committed);

    let mut down = cfg.clone();
    down.tuning.start_timeout = Duration::from_secs(5);
    let t = Instant::now();
    let err = Pipeline::start(down, bed.primary.clone(), bed.standby.clone())
        .await
        .err()
        .expect("no pipeline starts without Kafka");
    let start_took = t.elapsed();
    eprintln!("start with the broker down: {start_took:?}: {err}");
    assert!(
        start_took <= Duration::from_millis(6_500),
        "start (bound 5s) took {start_took:?}"
    );
    assert!(
        matches!(err, PipelineError::KafkaUnreachable { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("did not answer"), "{err}");

    load.stop();
    task.await.expect("load");
    kafka.start_again().await;
    let stored = stored_checkpoint(&bed, &cfg).await;
    let safe: u64 = stop
        .source_cursor
        .as_deref()
        .map_or(0, |c| c.parse().unwrap());
    assert!(
        stored.is_none_or(|s| s <= safe),
        "checkpoint {stored:?} past the safe cursor {safe}"
    );
    resume_and_converge(&bed, &cfg, stored, safe).await;
}
