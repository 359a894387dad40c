//! The safety promises when things happen together: the operator-wide cap holds when
//! many pairs freeze in the same second, every brake is visible, an emergency
//! supersedes a switchover waiting for its time, and a drill rehearsal and a failover
//! never overlap. Real API server, Kafka, BIND and HAProxy; the operator and the
//! simulator run as processes.

mod harness;
mod support;

use std::time::Duration;

use harness::*;
use kube::api::{Api, PostParams};
use serde_json::json;
use support::{Testbed, wait_until};
use understudy::api::switchover::{SwitchoverMode, SwitchoverPhase, Trigger};
use understudy::api::{AccountPair, Drill, Side, Switchover};

#[tokio::test]
async fn twenty_pairs_frozen_in_the_same_second_fail_over_exactly_the_operator_cap() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    const N: usize = 20;
    let seed = (0..N)
        .map(|i| format!("a{i:02}=5,b{i:02}=0"))
        .collect::<Vec<_>>()
        .join(",");
    let sim = start_sim_seeded("cap", &seed);
    let ns = notice_pairs(&client, &tb, &sim, ("e2e-cap", "cap-secret"), N).await;
    let op = start_operator(&tb, &ns, "cap", &["--max-failovers-per-day", "3"], &[]);
    let pairs: Api<AccountPair> = Api::namespaced(client.clone(), &ns);
    wait_until(
        Duration::from_secs(240),
        "all pairs replicate with a healthy standby",
        || async {
            let all = pairs.list(&Default::default()).await.ok()?.items;
            (all.len() == N
                && all.iter().all(|p| {
                    pair_condition(p, "Replicating").is_some_and(|c| c.status == "True")
                        && pair_condition(p, "StandbyHealthy").is_some_and(|c| c.status == "True")
                }))
            .then_some(())
        },
    )
    .await;

    // Twenty signed frozen notices at once.
    let sends = (0..N).map(|i| {
        let hook = format!("{}/webhooks/notices/{ns}/p{i:02}", op.url);
        let sim = &sim;
        async move { sim_frozen_notice(sim, &format!("a{i:02}"), &hook, "cap-secret").await }
    });
    for sent in futures::future::join_all(sends).await {
        assert_eq!(sent["status"], 202, "{sent}");
    }

    // Exactly the cap fails over; every other pair shows the brake and pages.
    let (failed_over, braked) = wait_until(
        Duration::from_secs(120),
        "3 failovers done and 17 pairs braked by the operator cap",
        || async {
            let sos = switchovers(&client, &ns).await;
            let done = sos
                .iter()
                .filter(|s| phase(s) == SwitchoverPhase::Succeeded)
                .count();
            let all = pairs.list(&Default::default()).await.ok()?.items;
            let braked: Vec<AccountPair> = all
                .into_iter()
                .filter(|p| {
                    pair_condition(p, "AutomaticFailover")
                        .is_some_and(|c| c.status == "False" && c.reason == "OperatorCapReached")
                })
                .collect();
            (done == 3 && braked.len() == N - 3).then_some((sos, braked))
        },
    )
    .await;
    assert_eq!(failed_over.len(), 3, "exactly the operator cap");
    let mut moved: Vec<&str> = failed_over.iter().map(|s| s.spec.pair.as_str()).collect();
    moved.sort();
    moved.dedup();
    assert_eq!(moved.len(), 3, "three different pairs");
    for so in &failed_over {
        assert_eq!(so.spec.trigger, Trigger::Automatic);
        assert_eq!(so.spec.mode, SwitchoverMode::Emergency);
    }
    for p in &braked {
        let needs = pair_condition(p, "NeedsHuman").unwrap();
        assert_eq!(needs.status, "True", "{needs:?}");
        assert!(
            needs.message.contains("operator cap 3")
                && needs.message.contains("kubectl understudy switchover"),
            "the page says what to do: {}",
            needs.message
        );
        assert_eq!(p.status.as_ref().unwrap().active_side, Some(Side::Primary));
    }
    // A Warning Event per braked pair and the metric, once each.
    let events = events(&client, &ns).await;
    let pages = events
        .iter()
        .filter(|(t, r, n)| t == "Warning" && r == "NeedsHuman" && n.contains("operator_cap"))
        .count();
    assert_eq!(pages, N - 3, "{events:?}");
    let text = metrics(&op).await;
    assert_eq!(
        metric_sum(
            &text,
            "understudy_failover_brakes_total",
            &["brake=\"operator_cap\""]
        ),
        (N - 3) as f64,
        "{text}"
    );
    // The budget holds three claims, and later evaluations change nothing.
    // The operator's own namespace is the Lease namespace ("default" here).
    let budget =
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), "default")
            .get(&understudy::controller::budget::name_for(Some(&ns)))
            .await
            .unwrap();
    let ledger: understudy::detection::FailoverLedger =
        serde_json::from_str(&budget.data.unwrap()["ledger.json"]).unwrap();
    assert_eq!(ledger.claims().len(), 3, "{ledger:?}");
    // Braked pairs are decided again every 10 s while their primary stays frozen: wait
    // one such period and check nothing was added past the cap.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        switchovers(&client, &ns).await.len(),
        3,
        "re-evaluations never add a failover past the cap"
    );
}

#[tokio::test]
async fn a_freeze_while_a_planned_switchover_waits_for_its_time_fails_over_and_supersedes_it() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("supersede");
    let detection = notice_detection();
    let scene = scene(&tb, &client, &sim, "e2e-supersede", detection).await;
    let op = start_operator(&tb, &scene.namespace, "supersede", &[], &[]);
    wait_replicating(&client, &scene).await;
    let api: Api<Switchover> = Api::namespaced(client.clone(), &scene.namespace);
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let planned: Switchover = serde_json::from_value(json!({
        "apiVersion": "understudy.dev/v1alpha1", "kind": "Switchover",
        "metadata": { "name": "maintenance-window" },
        "spec": { "pair": scene.pair, "to": "Standby", "mode": "Planned", "trigger": "Manual",
                  "reason": "provider maintenance", "notBefore": later.to_rfc3339() }
    }))
    .unwrap();
    api.create(&PostParams::default(), &planned).await.unwrap();

    admin(
        &sim,
        "/admin/accounts/corp-a/notice",
        reqwest::Method::POST,
        json!({ "url": notice_hook(&op, &scene), "secret": scene.notice_secret, "event": { "type": "frozen", "reason": "abnormal login" }, "applyStatus": true }),
    )
    .await;
    let failover = wait_until(
        Duration::from_secs(60),
        "the automatic failover succeeds",
        || async {
            switchovers(&client, &scene.namespace)
                .await
                .into_iter()
                .find(|s| {
                    s.spec.trigger == Trigger::Automatic && phase(s) == SwitchoverPhase::Succeeded
                })
        },
    )
    .await;
    let waiting = api.get("maintenance-window").await.unwrap();
    let st = waiting.status.unwrap();
    assert_eq!(st.phase, SwitchoverPhase::Cancelled);
    let msg = st.message.unwrap();
    assert!(
        msg.contains("superseded by the automatic failover")
            && msg.contains(failover.metadata.name.as_deref().unwrap()),
        "{msg}"
    );
    assert!(st.steps.is_empty(), "it never started");
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.2.0.1"]);
    assert_eq!(through_haproxy(&tb).await, "standby");
    let needs = condition(&client, &scene, "NeedsHuman").await.unwrap();
    assert_eq!(needs.status, "False", "{needs:?}");
}

#[tokio::test]
async fn an_automatic_failover_waits_for_a_running_rehearsal_and_runs_after_it() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("rehearsal-first");
    let detection = notice_detection();
    let scene = scene(&tb, &client, &sim, "e2e-reh-first", detection).await;
    let drill_record = with_rehearsal_record(&tb, &client, &scene).await;
    // Only a rehearsal has a restore-dns step: it is held there for a while.
    let op = start_operator(
        &tb,
        &scene.namespace,
        "rehearsal-first",
        &[],
        &[(
            "UNDERSTUDY_FAILPOINT",
            "slow-step:restore-dns:5000".to_string(),
        )],
    );
    wait_replicating(&client, &scene).await;
    let drill: Drill = serde_json::from_value(json!({
        "apiVersion": "understudy.dev/v1alpha1", "kind": "Drill",
        "metadata": { "name": "rehearse-now" },
        "spec": { "pair": scene.pair, "rehearse": true }
    }))
    .unwrap();
    Api::<Drill>::namespaced(client.clone(), &scene.namespace)
        .create(&PostParams::default(), &drill)
        .await
        .unwrap();
    let api: Api<Switchover> = Api::namespaced(client.clone(), &scene.namespace);
    wait_until(
        Duration::from_secs(90),
        "the rehearsal restores its DNS record",
        || async {
            let so = api.get_opt("rehearse-now-rehearsal").await.ok()??;
            so.status?
                .steps
                .iter()
                .any(|s| {
                    s.name == "restore-dns"
                        && s.state == understudy::api::switchover::StepState::Running
                })
                .then_some(())
        },
    )
    .await;

    admin(
        &sim,
        "/admin/accounts/corp-a/notice",
        reqwest::Method::POST,
        json!({ "url": notice_hook(&op, &scene), "secret": scene.notice_secret, "event": { "type": "frozen", "reason": "abnormal login" }, "applyStatus": true }),
    )
    .await;
    let held = wait_until(
        Duration::from_secs(10),
        "the failover is held by the rehearsal",
        || async {
            condition(&client, &scene, "AutomaticFailover")
                .await
                .filter(|c| c.reason == "RehearsalRunning")
        },
    )
    .await;
    assert_eq!(held.status, "False");
    assert!(
        switchovers(&client, &scene.namespace)
            .await
            .iter()
            .all(|s| s.spec.trigger == Trigger::Drill),
        "no failover while the rehearsal runs"
    );
    let failover = wait_until(
        Duration::from_secs(60),
        "the failover runs after the rehearsal",
        || async {
            switchovers(&client, &scene.namespace)
                .await
                .into_iter()
                .find(|s| {
                    s.spec.trigger == Trigger::Automatic && phase(s) == SwitchoverPhase::Succeeded
                })
        },
    )
    .await;
    let rehearsal = api.get("rehearse-now-rehearsal").await.unwrap();
    let rehearsal_end = rehearsal.status.unwrap().finished_at.unwrap();
    let failover_start = failover.status.unwrap().started_at.unwrap();
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap();
    assert!(
        t(&failover_start) >= t(&rehearsal_end),
        "no overlap: failover started {failover_start}, rehearsal ended {rehearsal_end}"
    );
    // The pair's cap (1 a day by default) was not used up by the wait.
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.2.0.1"]);
    assert_eq!(
        dig(&tb, &drill_record),
        vec!["10.1.0.9"],
        "rehearsal restored"
    );
}

#[tokio::test]
async fn a_rehearsal_asked_for_during_a_production_switchover_is_refused_and_moves_nothing() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("switch-first");
    let scene = scene(&tb, &client, &sim, "e2e-so-first", fast_detection()).await;
    let drill_record = with_rehearsal_record(&tb, &client, &scene).await;
    let _op = start_operator(
        &tb,
        &scene.namespace,
        "switch-first",
        &[],
        &[("UNDERSTUDY_FAILPOINT", "slow-step:flip-lb:8000".to_string())],
    );
    wait_replicating(&client, &scene).await;
    let api: Api<Switchover> = Api::namespaced(client.clone(), &scene.namespace);
    let manual: Switchover = serde_json::from_value(json!({
        "apiVersion": "understudy.dev/v1alpha1", "kind": "Switchover",
        "metadata": { "name": "by-hand" },
        "spec": { "pair": scene.pair, "to": "Standby", "mode": "Planned", "trigger": "Manual", "reason": "test" }
    }))
    .unwrap();
    api.create(&PostParams::default(), &manual).await.unwrap();
    wait_until(Duration::from_secs(30), "flip-lb runs", || async {
        api.get("by-hand")
            .await
            .ok()?
            .status?
            .steps
            .iter()
            .any(|s| {
                s.name == "flip-lb" && s.state == understudy::api::switchover::StepState::Running
            })
            .then_some(())
    })
    .await;
    // The rehearsal a drill would create, during the production move.
    let rehearsal = understudy::controller::pair::switchovers::own_switchover(
        "drill-x-rehearsal",
        &scene.pair,
        Side::Standby,
        SwitchoverMode::Planned,
        Trigger::Drill,
        "rehearsal of drill drill-x",
    );
    api.create(&PostParams::default(), &rehearsal)
        .await
        .unwrap();
    let refused = wait_until(
        Duration::from_secs(10),
        "the rehearsal is refused",
        || async {
            api.get("drill-x-rehearsal")
                .await
                .ok()
                .filter(|s| phase(s) == SwitchoverPhase::Failed)
        },
    )
    .await;
    let msg = refused.status.unwrap().message.unwrap();
    assert!(msg.contains("production switchover by-hand"), "{msg}");
    assert_eq!(dig(&tb, &drill_record), vec!["10.1.0.9"], "nothing moved");
    let by_hand = wait_until(Duration::from_secs(60), "the switchover ends", || async {
        api.get("by-hand")
            .await
            .ok()
            .filter(|s| phase(s).is_finished())
    })
    .await;
    assert_eq!(phase(&by_hand), SwitchoverPhase::Succeeded);
}
