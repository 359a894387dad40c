//! Failover when Kafka is away: the emergency flip completes within its bounds whatever
//! Kafka does, `recordsLost` is honest (counted when it can be known, "unknown" when it
//! cannot, never 0 for "don't know"), `lastFlip` is recorded, replication never writes into
//! the side that now serves traffic, and it resumes in the new direction once Kafka is
//! back. Real API server, BIND and HAProxy; a private real Kafka broker the test kills and
//! starts again; the operator and the simulator run as processes.

mod harness;
#[path = "oncall_kit/mod.rs"]
mod oncall_kit;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use harness::*;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::private_kafka::PrivateKafka;
use support::{Testbed, wait_until};
use understudy::api::switchover::{StepState, SwitchoverPhase, Trigger};
use understudy::api::{AccountPair, Side, Switchover};

/// The operator's drain bound in these tests (`start_operator` passes `--drain-bound 2s`);
/// an emergency switchover bounds its fence by it too.
const DRAIN_BOUND: Duration = Duration::from_secs(2);

async fn point_pair_at_kafka(client: &kube::Client, scene: &Scene, bootstrap: &str) {
    Api::<AccountPair>::namespaced(client.clone(), &scene.namespace)
        .patch(
            &scene.pair,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replication": { "kafka": { "bootstrapServers": bootstrap } } } })),
        )
        .await
        .expect("point the pair at the private broker");
}

async fn freeze_by_notice(sim: &Proc, op: &Proc, scene: &Scene) {
    admin(
        sim,
        "/admin/accounts/corp-a/notice",
        reqwest::Method::POST,
        json!({ "url": notice_hook(op, scene), "secret": scene.notice_secret,
                "event": { "type": "frozen", "reason": "abnormal login" }, "applyStatus": true }),
    )
    .await;
}

async fn automatic_switchover_finished(client: &kube::Client, scene: &Scene) -> Switchover {
    let so = wait_switchover_finished(client, &scene.namespace, Duration::from_secs(90)).await;
    assert_eq!(so.spec.trigger, Trigger::Automatic);
    assert_eq!(phase(&so), SwitchoverPhase::Succeeded, "{:?}", so.status);
    so
}

fn step_time(so: &Switchover, step: &str, finished: bool) -> DateTime<Utc> {
    let st = so.status.as_ref().unwrap();
    let s = st
        .steps
        .iter()
        .find(|s| s.name == step)
        .unwrap_or_else(|| panic!("no {step} step: {st:?}"));
    assert_eq!(s.state, StepState::Succeeded, "{s:?}");
    let t = if finished {
        s.finished_at.as_deref()
    } else {
        s.started_at.as_deref()
    };
    DateTime::parse_from_rfc3339(t.unwrap_or_else(|| panic!("{step} has no time: {s:?}")))
        .unwrap()
        .with_timezone(&Utc)
}

fn step_message(so: &Switchover, step: &str) -> String {
    so.status
        .as_ref()
        .unwrap()
        .steps
        .iter()
        .find(|s| s.name == step)
        .and_then(|s| s.message.clone())
        .unwrap_or_default()
}

/// The pair's Replicating condition as (status, message), and its direction.
async fn replicating(client: &kube::Client, scene: &Scene) -> Option<(String, String, String)> {
    let st = pair(client, scene).await.status?;
    let c = st.conditions.iter().find(|c| c.type_ == "Replicating")?;
    let direction = st.replication.and_then(|r| r.direction).unwrap_or_default();
    Some((c.status.clone(), c.message.clone(), direction))
}

fn as_map(entities: Vec<(String, String)>) -> BTreeMap<String, String> {
    entities.into_iter().collect()
}

#[tokio::test]
async fn with_kafka_down_during_a_freeze_the_flip_completes_in_bound_and_nothing_old_reaches_the_new_active_side()
 {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let mut kafka = PrivateKafka::start().await;
    let sim = start_sim("kafka-down");
    let scene = scene(&tb, &client, &sim, "e2e-kafka-down", fast_detection()).await;
    point_pair_at_kafka(&client, &scene, &kafka.bootstrap()).await;
    let op = start_operator(&tb, &scene.namespace, "kafka-down", &[], &[]);
    wait_replicating(&client, &scene).await;
    wait_standby_level(&sim).await;

    // Changes flow on the primary; the broker dies under them; then the primary freezes.
    admin(
        &sim,
        "/admin/accounts/corp-a/load",
        reqwest::Method::POST,
        json!({ "rate": 400, "count": 100000, "seed": 11 }),
    )
    .await;
    wait_until(
        Duration::from_secs(30),
        "changes replicate under load",
        || async {
            let st = pair(&client, &scene).await.status?;
            st.replication?.last_applied_at.map(|_| ())
        },
    )
    .await;
    kafka.stop().await;
    freeze_by_notice(&sim, &op, &scene).await;
    let so = automatic_switchover_finished(&client, &scene).await;
    admin(
        &sim,
        "/admin/accounts/corp-a/load",
        reqwest::Method::DELETE,
        json!({}),
    )
    .await;

    // The flip completed within the fence and drain bounds plus a few seconds.
    let took = (step_time(&so, "flip-lb", true) - step_time(&so, "fence", false))
        .to_std()
        .unwrap();
    assert!(
        took <= DRAIN_BOUND * 2 + Duration::from_secs(4),
        "fence start to flip-lb end took {took:?} with Kafka down: {:?}",
        so.status
    );
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.2.0.1"]);
    assert_eq!(through_haproxy(&tb).await, "standby");
    // recordsLost is known (a pipeline ran) and counts what Kafka never acknowledged.
    let st = so.status.clone().unwrap();
    let lost = st.records_lost.unwrap_or_else(|| {
        panic!(
            "recordsLost must be counted while a pipeline ran: {:?}",
            st.records_lost_unknown
        )
    });
    assert!(st.records_lost_unknown.is_none());
    let drain = step_message(&so, "drain");
    eprintln!(
        "kafka down: fence start to flip-lb end {took:?}, recordsLost {lost}; drain: {drain}"
    );
    assert!(
        lost > 0 && drain.contains("not acknowledged by Kafka"),
        "changes were read under load with the broker dead: recordsLost {lost}, drain: {drain}"
    );
    // The flip is recorded, with the new active side's feed position.
    let ps = pair(&client, &scene).await.status.unwrap();
    assert_eq!(ps.active_side, Some(Side::Standby));
    let flip = ps.last_flip.expect("lastFlip recorded with Kafka down");
    assert_eq!(flip.epoch, so.metadata.name.clone().unwrap());
    assert!(!flip.source_cursor.is_empty());

    // While the broker is down, the pair says replication does not run, and why.
    wait_until(
        Duration::from_secs(60),
        "Replicating=False saying the new direction cannot start while Kafka is down",
        || async {
            replicating(&client, &scene).await.filter(|r| {
                r.0 == "False" && r.1.contains("standby-to-primary") && r.1.contains("cannot start")
            })
        },
    )
    .await;
    // What the runbook (UnderstudyFailoverHappened) tells on-call to look at.
    let oncall = oncall_kit::Oncall {
        kubeconfig: tb.var("TESTBED_KUBECONFIG").into(),
        audit_topic: "understudy.audit".into(),
    };
    let shown = oncall
        .run(&["status", &scene.pair, "-n", &scene.namespace])
        .await;
    assert!(
        shown.says("Replicating=False") && shown.says("cannot start"),
        "{}",
        shown.text()
    );
    let standby_at_flip = as_map(read_all(&sim, "corp-b").await);
    // The provider lifts the freeze (so the old side can be read, and later written).
    set_status(&sim, "corp-a", "active", "unfrozen by the provider").await;
    let old_side = as_map(read_all(&sim, "corp-a").await);
    let never_copied = old_side
        .iter()
        .filter(|(k, v)| standby_at_flip.get(*k) != Some(*v))
        .count();
    assert!(
        never_copied > 0,
        "the load left changes the standby never got"
    );

    // Kafka comes back: replication resumes from the new active side, and none of the
    // old side's changes still in the topic reaches it.
    kafka.start_again().await;
    wait_until(
        Duration::from_secs(120),
        "replication resumes standby-to-primary",
        || async {
            replicating(&client, &scene)
                .await
                .filter(|r| r.0 == "True" && r.2 == "standby-to-primary")
        },
    )
    .await;
    let marker = "zz-written-after-the-flip";
    let standby =
        understudy::provider::http::HttpProvider::new(&sim.url, "corp-b", Some("t0ken")).unwrap();
    let key =
        understudy::model::EntityKey::new(understudy::model::EntityKind::Tag, marker).unwrap();
    understudy::provider::AccountProvider::put_entity(
        &standby,
        &understudy::model::Entity::new(key.clone(), json!({ "name": marker })),
        None,
    )
    .await
    .unwrap();
    let written = as_map(read_all(&sim, "corp-b").await)
        .remove(key.as_str())
        .expect("the marker is on the standby");
    wait_until(
        Duration::from_secs(60),
        "a change on the new active side reaches the old one",
        || async {
            (as_map(read_all(&sim, "corp-a").await).get(key.as_str()) == Some(&written))
                .then_some(())
        },
    )
    .await;
    let mut expected = standby_at_flip.clone();
    expected.insert(key.as_str().to_string(), written);
    assert_eq!(
        as_map(read_all(&sim, "corp-b").await),
        expected,
        "the new active side holds what it held at the flip plus its own write"
    );
    drop(op);
}

#[tokio::test]
async fn with_no_pipeline_running_a_failover_says_records_lost_is_unknown_and_records_the_flip() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    // A broker that was never there: replication cannot start at all.
    let nowhere = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let sim = start_sim("no-pipeline");
    let scene = scene(&tb, &client, &sim, "e2e-no-pipeline", fast_detection()).await;
    point_pair_at_kafka(&client, &scene, &nowhere).await;
    let op = start_operator(&tb, &scene.namespace, "no-pipeline", &[], &[]);
    wait_until(
        Duration::from_secs(60),
        "Replicating=False saying the pipeline cannot start",
        || async {
            replicating(&client, &scene)
                .await
                .filter(|r| r.0 == "False" && r.1.contains("cannot start"))
        },
    )
    .await;

    freeze_by_notice(&sim, &op, &scene).await;
    let so = automatic_switchover_finished(&client, &scene).await;
    let st = so.status.clone().unwrap();
    assert_eq!(st.records_lost, None, "never 0 when it cannot be known");
    let why = st
        .records_lost_unknown
        .expect("recordsLostUnknown says why");
    assert!(why.contains("no replication pipeline was running"), "{why}");
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.2.0.1"]);
    let ps = pair(&client, &scene).await.status.unwrap();
    assert_eq!(ps.active_side, Some(Side::Standby));
    assert_eq!(
        ps.last_flip.map(|f| f.epoch),
        so.metadata.name.clone(),
        "lastFlip is recorded even with nothing replicated"
    );
    drop(op);
}
