//! Freeze detection, automatic failover and verified flips, end to end on the real test
//! bed: the operator and the simulator run as processes; BIND, HAProxy, the API server
//! and Kafka are real.

mod harness;
mod support;

use std::time::Duration;

use harness::*;
use kube::api::{Api, DeleteParams};
use support::{Testbed, wait_until};
use understudy::api::switchover::{StepState, SwitchoverMode, SwitchoverPhase, Trigger};
use understudy::api::{AccountPair, Side, Switchover};

const FAILOVER: Duration = Duration::from_secs(60);

#[tokio::test]
async fn frozen_primary_fails_over_dns_lb_and_service_to_the_standby() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("freeze");
    let scene = scene(&tb, &client, &sim, "e2e-freeze", fast_detection()).await;
    let _op = start_operator(&tb, &scene.namespace, "freeze", &[], &[]);
    wait_replicating(&client, &scene).await;
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.1.0.1"]);
    assert_eq!(through_haproxy(&tb).await, "primary");

    set_status(&sim, "corp-a", "frozen", "content report").await;
    let so = wait_switchover_finished(&client, &scene.namespace, FAILOVER).await;
    assert_eq!(phase(&so), SwitchoverPhase::Succeeded, "{:?}", so.status);
    assert_eq!(so.spec.mode, SwitchoverMode::Emergency);
    assert_eq!(so.spec.trigger, Trigger::Automatic);
    assert_eq!(so.spec.to, Side::Standby);
    assert!(
        so.status
            .as_ref()
            .unwrap()
            .steps
            .iter()
            .all(|s| s.state == StepState::Succeeded)
    );

    assert_eq!(
        dig(&tb, &scene.dns_name),
        vec!["10.2.0.1"],
        "BIND answers the standby's values"
    );
    for _ in 0..3 {
        assert_eq!(
            through_haproxy(&tb).await,
            "standby",
            "requests through HAProxy reach the standby"
        );
    }
    assert_eq!(service_selector(&client, &scene).await, "wecom-standby");
    let p = pair(&client, &scene).await;
    assert_eq!(p.status.as_ref().unwrap().active_side, Some(Side::Standby));
    assert_eq!(
        switchovers(&client, &scene.namespace).await.len(),
        1,
        "exactly one switchover"
    );
}

#[tokio::test]
async fn api_error_storm_and_timeouts_cause_no_failover() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("storm");
    let scene = scene(&tb, &client, &sim, "e2e-storm", fast_detection()).await;
    let _op = start_operator(&tb, &scene.namespace, "storm", &[], &[]);
    wait_replicating(&client, &scene).await;

    set_faults(&sim, "corp-a", "5xx", 1.0).await;
    wait_until(
        Duration::from_secs(30),
        "the primary's verdict becomes Unknown",
        || async {
            let p = pair(&client, &scene).await;
            (p.status?.primary?.status == "Unknown").then_some(())
        },
    )
    .await;
    // Many polls of 5xx, then of timeouts: still no failover.
    let storm_until = std::time::Instant::now() + Duration::from_secs(6);
    while std::time::Instant::now() < storm_until {
        assert!(
            switchovers(&client, &scene.namespace).await.is_empty(),
            "no switchover during a 5xx storm"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    set_faults(&sim, "corp-a", "timeout", 1.0).await;
    let storm_until = std::time::Instant::now() + Duration::from_secs(6);
    while std::time::Instant::now() < storm_until {
        assert!(
            switchovers(&client, &scene.namespace).await.is_empty(),
            "no switchover during a timeout storm"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    set_faults(&sim, "corp-a", "none", 0.0).await;
    wait_until(
        Duration::from_secs(30),
        "the primary is Healthy again",
        || async {
            let p = pair(&client, &scene).await;
            (p.status?.primary?.status == "Healthy").then_some(())
        },
    )
    .await;
    assert!(switchovers(&client, &scene.namespace).await.is_empty());
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.1.0.1"]);
    assert_eq!(through_haproxy(&tb).await, "primary");
}

#[tokio::test]
async fn a_dns_record_changed_by_hand_refuses_the_flip_and_says_so() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("byhand");
    let scene = scene(&tb, &client, &sim, "e2e-byhand", fast_detection()).await;
    let _op = start_operator(&tb, &scene.namespace, "byhand", &[], &[]);
    wait_replicating(&client, &scene).await;

    // Someone edits the record by hand.
    dns_record(&tb, &scene.dns_name)
        .ensure_values(&["10.1.0.1".into()], &["10.9.9.9".into()])
        .await
        .unwrap();
    set_status(&sim, "corp-a", "frozen", "content report").await;
    let so = wait_switchover_finished(&client, &scene.namespace, FAILOVER).await;
    assert_eq!(phase(&so), SwitchoverPhase::Failed);
    let st = so.status.unwrap();
    let msg = st.message.unwrap_or_default();
    assert!(msg.contains("changed by someone else"), "{msg}");
    assert!(msg.contains("Nothing was moved"), "{msg}");
    let flip = st.steps.iter().find(|s| s.name == "flip-dns").unwrap();
    assert_eq!(flip.state, StepState::Failed);
    assert!(
        st.steps
            .iter()
            .filter(|s| s.name == "flip-lb" || s.name == "record")
            .all(|s| s.state == StepState::Pending)
    );
    assert_eq!(
        dig(&tb, &scene.dns_name),
        vec!["10.9.9.9"],
        "the hand-made value is left alone"
    );
    assert_eq!(
        through_haproxy(&tb).await,
        "primary",
        "nothing half-flipped: HAProxy untouched"
    );
    assert_eq!(service_selector(&client, &scene).await, "wecom-primary");
    let p = pair(&client, &scene).await;
    assert_eq!(p.status.unwrap().active_side, Some(Side::Primary));
    let evs = events(&client, &scene.namespace).await;
    assert!(
        evs.iter()
            .any(|(t, r, n)| t == "Warning" && r == "StepFailed" && n.contains("someone else")),
        "{evs:?}"
    );
}

#[tokio::test]
async fn sigkill_at_each_step_resumes_with_exactly_one_flip() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    for step in [
        "precheck", "fence", "drain", "flip-dns", "flip-lb", "reverse", "record",
    ] {
        let sim = start_sim(&format!("kill-{step}"));
        let scene = scene(
            &tb,
            &client,
            &sim,
            &format!("e2e-kill-{step}"),
            fast_detection(),
        )
        .await;
        let mut op = start_operator(
            &tb,
            &scene.namespace,
            &format!("kill-{step}-1"),
            &[],
            &[("UNDERSTUDY_FAILPOINT", format!("pause-after-intent:{step}"))],
        );
        wait_replicating(&client, &scene).await;
        let serial_before = soa_serial(&tb);
        set_status(&sim, "corp-a", "frozen", "content report").await;
        wait_until(FAILOVER, &format!("step {step} is Running"), || async {
            let sos = switchovers(&client, &scene.namespace).await;
            let so = sos.first()?;
            so.status
                .as_ref()?
                .steps
                .iter()
                .find(|s| s.name == step && s.state == StepState::Running)
                .map(|_| ())
        })
        .await;
        op.kill();
        let _op2 = start_operator(&tb, &scene.namespace, &format!("kill-{step}-2"), &[], &[]);
        let so = wait_switchover_finished(&client, &scene.namespace, FAILOVER).await;
        assert_eq!(
            phase(&so),
            SwitchoverPhase::Succeeded,
            "killed at {step}: {:?}",
            so.status
        );
        assert_eq!(
            switchovers(&client, &scene.namespace).await.len(),
            1,
            "killed at {step}: one switchover"
        );
        assert_eq!(
            dig(&tb, &scene.dns_name),
            vec!["10.2.0.1"],
            "killed at {step}"
        );
        assert_eq!(
            soa_serial(&tb) - serial_before,
            1,
            "killed at {step}: exactly one DNS update"
        );
        assert_eq!(through_haproxy(&tb).await, "standby", "killed at {step}");
        assert_eq!(
            service_selector(&client, &scene).await,
            "wecom-standby",
            "killed at {step}"
        );
        assert_eq!(
            pair(&client, &scene).await.status.unwrap().active_side,
            Some(Side::Standby),
            "killed at {step}"
        );
        let resumed = so
            .status
            .unwrap()
            .steps
            .iter()
            .find(|s| s.name == step)
            .and_then(|s| s.message.clone())
            .unwrap_or_default();
        assert!(
            !resumed.is_empty(),
            "killed at {step}: the resumed step reports its result"
        );
    }
}

#[tokio::test]
async fn of_two_replicas_only_the_lease_holder_acts() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("ha");
    let scene = scene(&tb, &client, &sim, "e2e-ha", fast_detection()).await;
    let a = start_replica(&tb, &scene.namespace, ("ha-a", "replica-a"), "4s", &[]);
    let b = start_replica(&tb, &scene.namespace, ("ha-b", "replica-b"), "4s", &[]);
    wait_replicating(&client, &scene).await;
    set_status(&sim, "corp-a", "frozen", "content report").await;
    let so = wait_switchover_finished(&client, &scene.namespace, FAILOVER).await;
    assert_eq!(phase(&so), SwitchoverPhase::Succeeded);
    assert_eq!(switchovers(&client, &scene.namespace).await.len(), 1);
    let (la, lb) = (a.log_text(), b.log_text());
    let acted = |l: &str| l.contains("switchover step");
    assert!(
        acted(&la) != acted(&lb),
        "exactly one replica executed the switchover"
    );
    // The other replica dropped work and counted it.
    let idle = if acted(&la) { &b } else { &a };
    let metrics = metrics(idle).await;
    let dropped: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("understudy_dropped_work_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        dropped > 0.0,
        "the standby replica counts the work it dropped:\n{metrics}"
    );
    assert!(
        metrics.contains("understudy_leader{pod=\"replica-") && metrics.contains("} 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn standby_frozen_too_means_no_flip_and_a_page() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("both");
    let scene = scene(&tb, &client, &sim, "e2e-both", fast_detection()).await;
    let op = start_operator(&tb, &scene.namespace, "both", &[], &[]);
    wait_replicating(&client, &scene).await;
    set_status(&sim, "corp-b", "frozen", "mass report").await;
    wait_until(Duration::from_secs(30), "the standby is Frozen", || async {
        (pair(&client, &scene).await.status?.standby?.status == "Frozen").then_some(())
    })
    .await;
    set_status(&sim, "corp-a", "frozen", "mass report").await;
    let cond = wait_until(Duration::from_secs(30), "NeedsHuman is raised", || async {
        let p = pair(&client, &scene).await;
        p.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "NeedsHuman" && c.status == "True")
    })
    .await;
    assert!(
        cond.message.to_lowercase().contains("both"),
        "{}",
        cond.message
    );
    wait_until(
        Duration::from_secs(10),
        "a Warning Event pages a human",
        || async {
            events(&client, &scene.namespace)
                .await
                .into_iter()
                .find(|(t, r, _)| t == "Warning" && r == "NeedsHuman")
        },
    )
    .await;
    // The brake is named where people and alerts look.
    let af = condition(&client, &scene, "AutomaticFailover")
        .await
        .unwrap();
    assert_eq!(
        (af.status.as_str(), af.reason.as_str()),
        ("False", "BothSidesDown"),
        "{af:?}"
    );
    let text = metrics(&op).await;
    assert_eq!(
        metric_sum(
            &text,
            "understudy_failover_brakes_total",
            &["brake=\"both_sides_down\""]
        ),
        1.0,
        "counted once, however often it is decided again:\n{text}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        switchovers(&client, &scene.namespace).await.is_empty(),
        "no flip to a frozen standby"
    );
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.1.0.1"]);
    assert_eq!(through_haproxy(&tb).await, "primary");
}

#[tokio::test]
async fn signed_notice_fails_over_and_bad_notices_change_nothing() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("notice");
    // Polls are slow here: only the notice can cause the failover within the test.
    let detection = notice_detection();
    let scene = scene(&tb, &client, &sim, "e2e-notice", detection).await;
    let op = start_operator(&tb, &scene.namespace, "notice", &[], &[]);
    wait_replicating(&client, &scene).await;
    let hook = format!(
        "{}/webhooks/notices/{}/{}",
        op.url, scene.namespace, scene.pair
    );
    let http = reqwest::Client::new();

    // Unsigned and wrongly signed: 401. Signed garbage: 400. Nothing changes.
    let body = br#"{"account":"corp-a","event":"frozen","reason":"x","at":"2026-01-01T00:00:00Z","id":"n1"}"#.to_vec();
    let now = chrono::Utc::now().timestamp();
    let r = http.post(&hook).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let bad_sig = understudy::provider::notice::sign(b"wrong-secret", now, &body).unwrap();
    let r = http
        .post(&hook)
        .header("X-Understudy-Timestamp", now.to_string())
        .header("X-Understudy-Signature", bad_sig)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let garbage = b"{not json".to_vec();
    let sig =
        understudy::provider::notice::sign(scene.notice_secret.as_bytes(), now, &garbage).unwrap();
    let r = http
        .post(&hook)
        .header("X-Understudy-Timestamp", now.to_string())
        .header("X-Understudy-Signature", sig)
        .body(garbage)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let stale =
        understudy::provider::notice::sign(scene.notice_secret.as_bytes(), now - 3600, &body)
            .unwrap();
    let r = http
        .post(&hook)
        .header("X-Understudy-Timestamp", (now - 3600).to_string())
        .header("X-Understudy-Signature", stale)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a notice outside the window is a replay");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(switchovers(&client, &scene.namespace).await.is_empty());
    assert_eq!(
        pair(&client, &scene)
            .await
            .status
            .unwrap()
            .primary
            .unwrap()
            .status,
        "Healthy"
    );

    // The simulator sends a properly signed notice: failover without waiting for polls.
    admin(
        &sim,
        "/admin/accounts/corp-a/notice",
        reqwest::Method::POST,
        serde_json::json!({ "url": hook, "secret": scene.notice_secret, "event": { "type": "frozen", "reason": "abnormal login" }, "applyStatus": true }),
    )
    .await;
    let so = wait_switchover_finished(&client, &scene.namespace, Duration::from_secs(20)).await;
    assert_eq!(phase(&so), SwitchoverPhase::Succeeded, "{:?}", so.status);
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.2.0.1"]);
    assert_eq!(through_haproxy(&tb).await, "standby");
}

#[tokio::test]
async fn a_pair_replicates_while_it_exists_and_deletion_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("lifecycle");
    let scene = scene(&tb, &client, &sim, "e2e-life", fast_detection()).await;
    let op = start_operator(&tb, &scene.namespace, "life", &[], &[]);
    wait_replicating(&client, &scene).await;
    // The lag is known once the source first reached the feed's head (until then the
    // status says it is reading the backlog).
    wait_lag_known(&client, &scene, "primary-to-standby").await;
    let finalizers = pair(&client, &scene)
        .await
        .metadata
        .finalizers
        .unwrap_or_default();
    assert!(
        finalizers.iter().any(|f| f == "understudy.dev/replication"),
        "{finalizers:?}"
    );

    // Changes under load; delete the pair in the middle.
    admin(
        &sim,
        "/admin/accounts/corp-a/load",
        reqwest::Method::POST,
        serde_json::json!({ "rate": 500, "count": 3000, "seed": 7 }),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let api: Api<AccountPair> = Api::namespaced(client.clone(), &scene.namespace);
    api.delete(&scene.pair, &DeleteParams::default())
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(30),
        "the pair is gone (finalizer ran)",
        || async {
            api.get_opt(&scene.pair)
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert!(
        op.log_text().contains("replication pipeline stopped"),
        "the pipeline stopped cleanly"
    );
    // A switchover of the pair that is gone fails at once, saying which pair is missing
    // where, and moves nothing.
    let sos: Api<Switchover> = Api::namespaced(client.clone(), &scene.namespace);
    let orphan: Switchover = serde_json::from_value(serde_json::json!({
        "apiVersion": "understudy.dev/v1alpha1",
        "kind": "Switchover",
        "metadata": { "name": "of-a-deleted-pair" },
        "spec": { "pair": scene.pair, "to": "Standby", "reason": "e2e: the pair is gone" }
    }))
    .unwrap();
    sos.create(&Default::default(), &orphan).await.unwrap();
    let failed = wait_until(
        Duration::from_secs(30),
        "the switchover of the deleted pair failed",
        || async {
            let so = sos.get("of-a-deleted-pair").await.unwrap();
            (phase(&so) == SwitchoverPhase::Failed).then_some(so)
        },
    )
    .await;
    let msg = failed.status.unwrap().message.unwrap_or_default();
    assert!(
        msg.contains(&format!(
            "AccountPair \"{}\" not found in namespace {}",
            scene.pair, scene.namespace
        )),
        "{msg}"
    );
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.1.0.1"]);
    sos.delete("of-a-deleted-pair", &DeleteParams::default())
        .await
        .unwrap();
    // Let the load finish, then recreate the pair: it resumes where it stopped and the
    // standby ends equal to the primary.
    wait_until(Duration::from_secs(30), "the load finished", || async {
        let v = admin(
            &sim,
            "/admin/accounts/corp-a/load",
            reqwest::Method::GET,
            serde_json::json!({}),
        )
        .await;
        (v["running"] == serde_json::json!(false)).then_some(())
    })
    .await;
    drop(op);
    api.create(&Default::default(), &p_template(&tb, &sim))
        .await
        .unwrap();
    let _op = start_operator(&tb, &scene.namespace, "life-2", &[], &[]);
    let primary = read_all(&sim, "corp-a").await;
    assert!(primary.len() > 300, "the load changed the primary");
    wait_until(
        Duration::from_secs(60),
        "the standby equals the primary, entity by entity",
        || async { (read_all(&sim, "corp-b").await == primary).then_some(()) },
    )
    .await;
}

fn p_template(tb: &Testbed, sim: &Proc) -> AccountPair {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "understudy.dev/v1alpha1",
        "kind": "AccountPair",
        "metadata": { "name": "wecom" },
        "spec": {
            "primary": { "endpoint": sim.url, "accountId": "corp-a", "credentialsSecretRef": { "name": "token" } },
            "standby": { "endpoint": sim.url, "accountId": "corp-b", "credentialsSecretRef": { "name": "token" } },
            "replication": { "kafka": { "bootstrapServers": tb.var("TESTBED_KAFKA_BOOTSTRAP") }, "partitions": 2 },
            "detection": fast_detection()
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn mass_member_adds_raise_a_risk_warning_and_never_a_failover() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("risk");
    let scene = scene(&tb, &client, &sim, "e2e-risk", fast_detection()).await;
    let op = start_operator(&tb, &scene.namespace, "risk", &[], &[]);
    wait_replicating(&client, &scene).await;
    let now = chrono::Utc::now();
    let activity: Vec<serde_json::Value> = (0..6)
        .map(|i| serde_json::json!({ "type": "member-add", "at": (now + chrono::Duration::seconds(i)).to_rfc3339(), "count": 10 }))
        .collect();
    admin(
        &sim,
        "/admin/accounts/corp-a/activity",
        reqwest::Method::POST,
        serde_json::json!({ "events": activity }),
    )
    .await;
    let cond = wait_until(Duration::from_secs(30), "RiskWarning is raised", || async {
        pair(&client, &scene)
            .await
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "RiskWarning" && c.status == "True")
    })
    .await;
    assert_eq!(cond.reason, "mass_adds", "{cond:?}");
    wait_until(Duration::from_secs(10), "a RiskWarning Event", || async {
        events(&client, &scene.namespace)
            .await
            .into_iter()
            .find(|(t, r, _)| t == "Warning" && r == "RiskWarning")
    })
    .await;
    let metrics = metrics(&op).await;
    assert!(
        metrics.contains("understudy_risk_warning{kind=\"mass_adds\""),
        "{metrics}"
    );
    assert!(
        switchovers(&client, &scene.namespace).await.is_empty(),
        "a risk warning never fails over"
    );
    assert_eq!(through_haproxy(&tb).await, "primary");
}
