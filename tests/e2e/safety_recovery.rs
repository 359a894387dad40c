//! The safety promises when things happen late or half-way: a failed switchover never
//! leaves the pair stuck, a late or replayed notice cannot fail over (also after a
//! restart, and on any replica), SIGTERM hands over at once, the probe feeds the
//! detector, and no stale series stays behind. Real API server, Kafka, BIND and
//! HAProxy; the operator and the simulator run as processes.

mod harness;
mod support;

use std::time::Duration;

use harness::*;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use support::{Testbed, wait_until};
use understudy::api::switchover::{StepState, SwitchoverPhase, Trigger};
use understudy::api::{Side, Switchover};
use understudy::provider::notice::NoticeEvent;

fn manual(pair: &str, name: &str, to: &str) -> Switchover {
    serde_json::from_value(json!({
        "apiVersion": "understudy.dev/v1alpha1", "kind": "Switchover",
        "metadata": { "name": name },
        "spec": { "pair": pair, "to": to, "mode": "Planned", "trigger": "Manual", "reason": "e2e" }
    }))
    .unwrap()
}

#[tokio::test]
async fn a_failed_switchover_never_leaves_the_pair_stuck() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("unstuck");
    let scene = scene(&tb, &client, &sim, "e2e-unstuck", fast_detection()).await;
    let _op = start_operator(&tb, &scene.namespace, "unstuck", &[], &[]);
    wait_replicating(&client, &scene).await;
    // Someone points the record somewhere else by hand: the flip is refused.
    let record = dns_record(&tb, &scene.dns_name);
    record
        .ensure_values(&["10.1.0.1".to_string()], &["10.9.9.9".to_string()])
        .await
        .unwrap();
    let api: Api<Switchover> = Api::namespaced(client.clone(), &scene.namespace);
    api.create(
        &PostParams::default(),
        &manual(&scene.pair, "first", "Standby"),
    )
    .await
    .unwrap();
    let first = wait_switchover_finished(&client, &scene.namespace, Duration::from_secs(60)).await;
    assert_eq!(phase(&first), SwitchoverPhase::Failed, "{:?}", first.status);

    // The intent is withdrawn and the conditions say what the targets hold.
    let aligned = wait_until(
        Duration::from_secs(20),
        "the pair reconciles its intent with the targets",
        || async {
            let p = pair(&client, &scene).await;
            let st = p.status?;
            let c = st
                .conditions
                .iter()
                .find(|c| c.type_ == "TrafficAligned")?
                .clone();
            (st.target_side.is_none() && c.status == "False").then_some(c)
        },
    )
    .await;
    assert!(
        aligned.message.contains(&scene.dns_name) && aligned.message.contains("neither side"),
        "{}",
        aligned.message
    );
    let needs = condition(&client, &scene, "NeedsHuman").await.unwrap();
    assert_eq!(
        (needs.status.as_str(), needs.reason.as_str()),
        ("True", "TrafficSplit")
    );
    let p = pair(&client, &scene).await;
    assert_ne!(
        p.status.as_ref().unwrap().phase.as_deref(),
        Some("SwitchingOver")
    );
    assert_eq!(p.status.unwrap().active_side, Some(Side::Primary));

    // Put the record back: the pair sees every target on the primary again.
    record
        .ensure_values(&["10.9.9.9".to_string()], &["10.1.0.1".to_string()])
        .await
        .unwrap();
    wait_until(Duration::from_secs(30), "traffic aligned again", || async {
        condition(&client, &scene, "TrafficAligned")
            .await
            .filter(|c| c.status == "True")
    })
    .await;
    wait_replicating(&client, &scene).await;
    // A new switchover can be made, and it works.
    api.create(
        &PostParams::default(),
        &manual(&scene.pair, "second", "Standby"),
    )
    .await
    .unwrap();
    let second = wait_until(
        Duration::from_secs(60),
        "the second switchover ends",
        || async {
            api.get("second")
                .await
                .ok()
                .filter(|s| phase(s).is_finished())
        },
    )
    .await;
    assert_eq!(
        phase(&second),
        SwitchoverPhase::Succeeded,
        "{:?}",
        second.status
    );
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.2.0.1"]);
    assert_eq!(through_haproxy(&tb).await, "standby");
}

#[tokio::test]
async fn a_late_notice_cannot_undo_a_newer_one_and_a_replay_is_refused_after_a_restart() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("late");
    let detection = notice_detection();
    let scene = scene(&tb, &client, &sim, "e2e-late", detection).await;
    let mut op = start_operator(&tb, &scene.namespace, "late-1", &[], &[]);
    wait_replicating(&client, &scene).await;
    let now = chrono::Utc::now();
    // The provider unfroze the account; its older "frozen" notice arrives after that.
    let (code, _) = post_notice(
        &notice_hook(&op, &scene),
        &scene.notice_secret,
        "corp-a",
        NoticeEvent::Unfrozen,
        "newer",
        now,
    )
    .await;
    assert_eq!(code, 202);
    let (code, body) = post_notice(
        &notice_hook(&op, &scene),
        &scene.notice_secret,
        "corp-a",
        NoticeEvent::Frozen,
        "older",
        now - chrono::Duration::seconds(30),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    assert!(body.contains("does not change the verdict"), "{body}");
    let primary = pair(&client, &scene).await.status.unwrap().primary.unwrap();
    assert_ne!(primary.status, "Frozen");
    assert!(switchovers(&client, &scene.namespace).await.is_empty());

    // A replay is refused, also by a restarted operator.
    let (code, _) = post_notice(
        &notice_hook(&op, &scene),
        &scene.notice_secret,
        "corp-a",
        NoticeEvent::Frozen,
        "older",
        now - chrono::Duration::seconds(30),
    )
    .await;
    assert_eq!(code, 409);
    op.kill();
    let op = start_operator(&tb, &scene.namespace, "late-2", &[], &[]);
    // While the restarted operator starts the pair it answers 503 (retry), as a
    // provider's retry would find.
    let (code, body) = wait_until(
        Duration::from_secs(30),
        "the restarted operator answers",
        || async {
            let r = post_notice(
                &notice_hook(&op, &scene),
                &scene.notice_secret,
                "corp-a",
                NoticeEvent::Frozen,
                "newer",
                now,
            )
            .await;
            (r.0 != 503).then_some(r)
        },
    )
    .await;
    assert_eq!(code, 409, "a replay after a restart: {body}");
    assert!(switchovers(&client, &scene.namespace).await.is_empty());
}

#[tokio::test]
async fn a_notice_delivered_to_the_replica_without_the_lease_is_handed_to_the_leader() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("handover-notice");
    let detection = notice_detection();
    let scene = scene(&tb, &client, &sim, "e2e-fwd", detection).await;
    let a = start_replica(&tb, &scene.namespace, ("fwd-a", "replica-a"), "4s", &[]);
    wait_replicating(&client, &scene).await;
    let b = start_replica(&tb, &scene.namespace, ("fwd-b", "replica-b"), "4s", &[]);
    // b knows the leader once its election loop has read the Lease.
    let (code, body) = wait_until(
        Duration::from_secs(15),
        "the non-leader hands the notice over",
        || async {
            let r = post_notice(
                &notice_hook(&b, &scene),
                &scene.notice_secret,
                "corp-a",
                NoticeEvent::Frozen,
                "via-b",
                chrono::Utc::now(),
            )
            .await;
            (r.0 != 503).then_some(r)
        },
    )
    .await;
    assert_eq!(code, 202, "{body}");
    let so = wait_switchover_finished(&client, &scene.namespace, Duration::from_secs(60)).await;
    assert_eq!(phase(&so), SwitchoverPhase::Succeeded, "{:?}", so.status);
    assert!(a.log_text().contains("switchover step"), "the leader acted");
    assert!(
        !b.log_text().contains("switchover step"),
        "b only handed over"
    );
}

#[tokio::test]
async fn sigterm_during_the_drain_hands_the_switchover_to_the_other_replica_with_one_dns_update() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("sigterm");
    let scene = scene(&tb, &client, &sim, "e2e-sigterm", fast_detection()).await;
    let slow = ("UNDERSTUDY_FAILPOINT", "slow-step:drain:3000".to_string());
    let a = start_replica(
        &tb,
        &scene.namespace,
        ("sigterm-a", "replica-a"),
        "15s",
        std::slice::from_ref(&slow),
    );
    wait_replicating(&client, &scene).await;
    let b = start_replica(
        &tb,
        &scene.namespace,
        ("sigterm-b", "replica-b"),
        "15s",
        &[slow],
    );
    let serial_before = soa_serial(&tb);
    let api: Api<Switchover> = Api::namespaced(client.clone(), &scene.namespace);
    api.create(
        &PostParams::default(),
        &manual(&scene.pair, "handover", "Standby"),
    )
    .await
    .unwrap();
    wait_until(Duration::from_secs(30), "the drain step runs", || async {
        api.get("handover")
            .await
            .ok()?
            .status?
            .steps
            .iter()
            .any(|s| s.name == "drain" && s.state == StepState::Running)
            .then_some(())
    })
    .await;
    let sigterm = std::time::Instant::now();
    a.signal("TERM");
    let so = wait_until(Duration::from_secs(60), "the switchover ends", || async {
        api.get("handover")
            .await
            .ok()
            .filter(|s| phase(s).is_finished())
    })
    .await;
    let took = sigterm.elapsed();
    assert_eq!(phase(&so), SwitchoverPhase::Succeeded, "{:?}", so.status);
    let (la, lb) = (a.log_text(), b.log_text());
    assert!(la.contains("lease released"), "a freed the Lease:\n{la}");
    assert!(
        lb.contains("\"flip-dns\""),
        "b ran the rest of the switchover:\n{lb}"
    );
    assert!(!la.contains("\"flip-dns\""), "a never flipped");
    assert!(
        took < Duration::from_secs(14),
        "handed over well before the 15 s lease would have expired ({took:?})"
    );
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.2.0.1"]);
    assert_eq!(soa_serial(&tb), serial_before + 1, "exactly one DNS update");
}

#[tokio::test]
async fn the_synthetic_probe_feeds_the_detector_and_fails_over_a_frozen_primary() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("probe");
    // Polls are too slow to matter; the probe runs every 500 ms.
    let detection = json!({ "pollInterval": "1h", "confirmations": 2, "failoverDelay": "1s",
                            "probe": { "interval": "500ms", "timeout": "2s" } });
    let scene = scene(&tb, &client, &sim, "e2e-probe", detection).await;
    let _op = start_operator(&tb, &scene.namespace, "probe", &[], &[]);
    wait_replicating(&client, &scene).await;
    wait_until(Duration::from_secs(20), "probes are seen", || async {
        pair(&client, &scene)
            .await
            .status?
            .primary?
            .last_signal
            .filter(|s| s.starts_with("probe"))
    })
    .await;
    set_status(&sim, "corp-a", "frozen", "content report").await;
    let so = wait_switchover_finished(&client, &scene.namespace, Duration::from_secs(60)).await;
    assert_eq!(phase(&so), SwitchoverPhase::Succeeded, "{:?}", so.status);
    assert_eq!(so.spec.trigger, Trigger::Automatic);
    let reason = so.spec.reason;
    assert!(
        reason.contains("frozen in"),
        "confirmed by probes: {reason}"
    );
}

#[tokio::test]
async fn a_deleted_pair_and_a_lost_lease_leave_no_stale_series() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("series");
    let scene = scene(&tb, &client, &sim, "e2e-series", fast_detection()).await;
    let a = start_replica(&tb, &scene.namespace, ("series-a", "replica-a"), "3s", &[]);
    wait_replicating(&client, &scene).await;
    let series = format!(
        "understudy_account_status{{namespace=\"{}\"",
        scene.namespace
    );
    wait_until(Duration::from_secs(10), "a exports the pair", || async {
        metrics(&a).await.contains(&series).then_some(())
    })
    .await;
    // a stalls (as a paused process would): b takes the Lease; a, resumed, lets go.
    a.signal("STOP");
    let b = start_replica(&tb, &scene.namespace, ("series-b", "replica-b"), "3s", &[]);
    wait_until(Duration::from_secs(30), "b exports the pair", || async {
        metrics(&b).await.contains(&series).then_some(())
    })
    .await;
    a.signal("CONT");
    wait_until(Duration::from_secs(15), "a removed its series", || async {
        let text = metrics(&a).await;
        (!text.contains(&series) && text.contains("understudy_leader{pod=\"replica-a\"} 0"))
            .then_some(())
    })
    .await;
    // Deleting the pair removes its series on the leader too.
    Api::<understudy::api::AccountPair>::namespaced(client.clone(), &scene.namespace)
        .delete(&scene.pair, &DeleteParams::default())
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(30),
        "b removed the deleted pair's series",
        || async {
            let text = metrics(&b).await;
            (!text.contains(&format!("namespace=\"{}\"", scene.namespace))).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_replica_resuming_a_switchover_after_its_drain_never_restarts_the_old_direction() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("resume-fenced");
    let scene = scene(&tb, &client, &sim, "e2e-resume-fenced", notice_detection()).await;
    let mut op = start_operator(
        &tb,
        &scene.namespace,
        "resume-fenced-1",
        &[],
        &[(
            "UNDERSTUDY_FAILPOINT",
            "pause-after-intent:flip-dns".to_string(),
        )],
    );
    wait_replicating(&client, &scene).await;
    wait_standby_level(&sim).await;
    let api: Api<Switchover> = Api::namespaced(client.clone(), &scene.namespace);
    api.create(
        &PostParams::default(),
        &manual(&scene.pair, "resumed", "Standby"),
    )
    .await
    .unwrap();
    wait_until(
        Duration::from_secs(60),
        "flip-dns is Running (fence and drain done)",
        || async {
            let so = api.get("resumed").await.ok()?;
            so.status?
                .steps
                .iter()
                .any(|s| s.name == "flip-dns" && s.state == StepState::Running)
                .then_some(())
        },
    )
    .await;
    op.kill();
    // A change lands on the old side after its drain: it must never be written into the
    // side that is taking traffic.
    let key =
        understudy::model::EntityKey::new(understudy::model::EntityKind::Tag, "zz-after-the-drain")
            .unwrap();
    let old_side =
        understudy::provider::http::HttpProvider::new(&sim.url, "corp-a", Some("t0ken")).unwrap();
    understudy::provider::AccountProvider::put_entity(
        &old_side,
        &understudy::model::Entity::new(key.clone(), json!({ "name": "after the drain" })),
        None,
    )
    .await
    .unwrap();
    // The replica that resumes holds the last flip for a while: time enough for an old
    // direction, were it restarted, to copy the change.
    let _op2 = start_operator(
        &tb,
        &scene.namespace,
        "resume-fenced-2",
        &[],
        &[("UNDERSTUDY_FAILPOINT", "slow-step:flip-lb:5000".to_string())],
    );
    let so = wait_switchover_finished(&client, &scene.namespace, Duration::from_secs(90)).await;
    assert_eq!(phase(&so), SwitchoverPhase::Succeeded, "{:?}", so.status);
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.2.0.1"]);
    wait_until(
        Duration::from_secs(60),
        "replication runs standby-to-primary",
        || async {
            let st = pair(&client, &scene).await.status?;
            (st.replication?.direction.as_deref() == Some("standby-to-primary")).then_some(())
        },
    )
    .await;
    let new_active = read_all(&sim, "corp-b").await;
    assert!(
        !new_active.iter().any(|(k, _)| k == key.as_str()),
        "a change of the old side written after the drain reached the new active side"
    );
    assert!(
        read_all(&sim, "corp-a")
            .await
            .iter()
            .any(|(k, _)| k == key.as_str())
    );
}
