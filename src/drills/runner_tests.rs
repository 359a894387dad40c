use std::sync::Mutex;

use chrono::TimeZone;
use serde_json::json;

use super::*;
use crate::drills::join::Tally;
use crate::drills::recheck::AtRest;
use crate::model::{AccountState, Entity, EntityKey, EntityKind};
use crate::provider::sim::{Payload, SimProvider, SimStore};

#[derive(Default)]
struct MemorySink(Mutex<Vec<DrillStatus>>);

#[async_trait]
impl DrillStatusSink for MemorySink {
    async fn save(&self, status: &DrillStatus) {
        self.0.lock().unwrap().push(status.clone());
    }
}

impl MemorySink {
    fn phases(&self) -> Vec<DrillPhase> {
        self.0.lock().unwrap().iter().map(|s| s.phase).collect()
    }
}

/// A Kafka check with a fixed answer.
struct FixedCopy(Result<KafkaCopyOutcome, String>);

#[async_trait]
impl CopyCheck for FixedCopy {
    async fn check(
        &self,
        _: Arc<dyn AccountProvider>,
        _: &dyn Settle,
        _: &VerifyOptions,
    ) -> Result<KafkaCopyOutcome, KafkaCopyError> {
        self.0.clone().map_err(KafkaCopyError::NoTopic)
    }
}

fn whole(n: u64) -> FixedCopy {
    FixedCopy(Ok(KafkaCopyOutcome {
        tally: Tally {
            primary: n,
            standby: n,
            matched: n,
            ..Default::default()
        },
        settled: true,
        ..Default::default()
    }))
}

struct Flip(Result<RehearsalStatus, String>);

#[async_trait]
impl Rehearsal for Flip {
    async fn flip_and_restore(&self) -> Result<RehearsalStatus, String> {
        self.0.clone()
    }
}

fn pair(n: usize) -> (Arc<SimProvider>, Arc<SimProvider>) {
    let store = SimStore::new();
    let p = SimProvider::new(store.clone(), "corp-a");
    let s = SimProvider::new(store, "corp-b");
    let ops: Vec<_> = (0..n)
        .map(|i| {
            let k = EntityKey::new(EntityKind::Tag, &format!("t{i:05}")).unwrap();
            (
                k,
                Some(Payload::new(json!({"name": format!("标签{i}")})).unwrap()),
            )
        })
        .collect();
    p.account().apply_batch(ops.clone(), None);
    s.account().apply_batch(ops, None);
    (Arc::new(p), Arc::new(s))
}

fn clock() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 3, 0, 0).unwrap()
}

async fn run_with(
    pair_name: &str,
    p: Arc<SimProvider>,
    s: Arc<SimProvider>,
    kafka: &dyn CopyCheck,
    rehearsal: Option<&dyn Rehearsal>,
) -> (DrillStatus, MemorySink) {
    let sink = MemorySink::default();
    let st = run_drill(DrillInputs {
        namespace: "ns-runner",
        pair: pair_name,
        primary: p,
        standby: s,
        kafka,
        rehearsal,
        settle: &AtRest,
        sink: &sink,
        options: VerifyOptions {
            page_size: 100,
            ..Default::default()
        },
        clock: &clock,
    })
    .await;
    (st, sink)
}

fn gauge(name: &str, pair: &str) -> f64 {
    let m = metrics();
    match name {
        "result" => m
            .drill_last_result
            .with_label_values(&["ns-runner", pair])
            .get() as f64,
        "mismatches" => m
            .drill_mismatches
            .with_label_values(&["ns-runner", pair])
            .get() as f64,
        "success" => m
            .drill_last_success_timestamp_seconds
            .with_label_values(&["ns-runner", pair])
            .get(),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_clean_pair_passes_through_every_phase() {
    let (p, s) = pair(500);
    let flip = Flip(Ok(RehearsalStatus {
        flip_ms: 120,
        restore_ms: 130,
    }));
    let (st, sink) = run_with("clean", p, s, &whole(500), Some(&flip)).await;
    assert_eq!(st.result, Some(DrillResult::Passed), "{:?}", st.message);
    assert_eq!(st.phase, DrillPhase::Finished);
    assert_eq!(
        sink.phases(),
        vec![
            DrillPhase::Verifying,
            DrillPhase::CheckingKafka,
            DrillPhase::Rehearsing,
            DrillPhase::Finished
        ]
    );
    assert_eq!(sink.0.lock().unwrap().last(), Some(&st));
    let v = st.verification.as_ref().unwrap();
    assert_eq!((v.primary, v.standby, v.matched), (500, 500, 500));
    assert_eq!(st.kafka_copy.as_ref().unwrap().records, 500);
    assert_eq!(st.rehearsal.as_ref().unwrap().flip_ms, 120);
    assert_eq!(st.started_at.as_deref(), Some("2026-12-01T03:00:00.000Z"));
    assert_eq!(st.finished_at.as_deref(), Some("2026-12-01T03:00:00.000Z"));
    assert!(
        st.message
            .as_deref()
            .unwrap()
            .starts_with("timings: verify ")
    );
    assert_eq!(gauge("result", "clean"), 1.0);
    assert_eq!(gauge("mismatches", "clean"), 0.0);
    assert_eq!(gauge("success", "clean"), clock().timestamp() as f64);
    let text = metrics().render();
    assert!(
        text.contains(
            "understudy_drill_duration_seconds_count{namespace=\"ns-runner\",pair=\"clean\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn divergence_fails_the_drill_and_counts_mismatches() {
    let (p, s) = pair(300);
    let k = EntityKey::new(EntityKind::Tag, "t00007").unwrap();
    s.put_entity(&Entity::new(k, json!({"name": "改过"})), None)
        .await
        .unwrap();
    let (st, sink) = run_with("diverged", p, s, &whole(300), None).await;
    assert_eq!(st.result, Some(DrillResult::Failed));
    assert_eq!(
        sink.phases(),
        vec![
            DrillPhase::Verifying,
            DrillPhase::CheckingKafka,
            DrillPhase::Finished
        ]
    );
    assert_eq!(st.verification.as_ref().unwrap().mismatched, 1);
    assert!(
        st.verification.as_ref().unwrap().samples[0].starts_with("tag/t00007: fields differ: name")
    );
    assert_eq!(gauge("result", "diverged"), 0.0);
    assert_eq!(gauge("mismatches", "diverged"), 1.0);
    assert_eq!(gauge("success", "diverged"), 0.0);
}

#[tokio::test]
async fn a_gap_in_the_kafka_copy_fails_the_drill() {
    let (p, s) = pair(10);
    let gap = FixedCopy(Ok(KafkaCopyOutcome {
        tally: Tally {
            primary: 10,
            standby: 9,
            matched: 9,
            missing_on_standby: 1,
            ..Default::default()
        },
        samples: vec!["tag/t00003: missing on topic (primary digest 000000000000)".into()],
        settled: true,
        ..Default::default()
    }));
    let (st, _) = run_with("gap", p, s, &gap, None).await;
    assert_eq!(st.result, Some(DrillResult::Failed));
    assert_eq!(st.kafka_copy.as_ref().unwrap().missing, 1);
    let msg = st.message.unwrap();
    assert!(
        msg.contains("Kafka copy differences (first 1):\n  tag/t00003: missing on topic"),
        "{msg}"
    );
    assert_eq!(gauge("mismatches", "gap"), 1.0);
}

#[tokio::test]
async fn a_failed_rehearsal_fails_the_drill() {
    let (p, s) = pair(10);
    let flip = Flip(Err("DNS did not answer the standby's values".into()));
    let (st, _) = run_with("rehearsal", p, s, &whole(10), Some(&flip)).await;
    assert_eq!(st.result, Some(DrillResult::Failed));
    assert_eq!(st.rehearsal, None);
    assert!(
        st.message
            .unwrap()
            .contains("rehearsal failed: DNS did not answer")
    );
}

#[tokio::test]
async fn checks_that_cannot_complete_fail_the_drill_but_the_others_still_run() {
    let (p, s) = pair(10);
    s.account().set_status(AccountState::Frozen, "test");
    let broken = FixedCopy(Err("understudy.ns.p.state".into()));
    let (st, sink) = run_with("broken", p, s, &broken, None).await;
    assert_eq!(st.result, Some(DrillResult::Failed));
    assert_eq!(st.verification, None);
    assert_eq!(st.kafka_copy, None);
    assert_eq!(sink.phases().len(), 3);
    let msg = st.message.unwrap();
    assert!(msg.contains("accounts: verification could not complete: listing the standby account failed: the account is frozen"), "{msg}");
    assert!(
        msg.contains(
            "Kafka copy: check could not complete: topic understudy.ns.p.state does not exist"
        ),
        "{msg}"
    );
}
