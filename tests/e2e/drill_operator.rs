//! Drills run by the operator on the real test bed: an on-demand drill of a clean pair
//! passes; divergence made behind the operator's back fails it with the right counts;
//! the schedule creates one Drill per slot in a non-UTC time zone; `kubectl understudy
//! drill --rehearse --wait` flips the drill's own DNS record and Service to the standby
//! and back, never production, and `drill report` shows it.

mod harness;
mod oncall_kit;
mod support;

use std::time::Duration;

use harness::*;
use kube::api::{Api, Patch, PatchParams, PostParams};
use support::{Testbed, wait_until};
use understudy::api::Drill;
use understudy::api::drill::{DrillPhase, DrillResult};
use understudy::provider::AccountProvider;

async fn run_drill(client: &kube::Client, ns: &str, name: &str) -> Drill {
    let api: Api<Drill> = Api::namespaced(client.clone(), ns);
    let d: Drill = serde_json::from_value(
        serde_json::json!({ "apiVersion": "understudy.dev/v1alpha1", "kind": "Drill",
        "metadata": { "name": name }, "spec": { "pair": "wecom" } }),
    )
    .unwrap();
    api.create(&PostParams::default(), &d).await.unwrap();
    wait_until(
        Duration::from_secs(120),
        &format!("drill {name} finishes"),
        || async {
            api.get(name).await.ok().filter(|d| {
                d.status
                    .as_ref()
                    .is_some_and(|s| s.phase == DrillPhase::Finished)
            })
        },
    )
    .await
}

#[tokio::test]
async fn on_demand_drills_pass_on_a_clean_pair_and_find_divergence() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("drill");
    let scene = scene(&tb, &client, &sim, "e2e-drill", fast_detection()).await;
    let op = start_operator(&tb, &scene.namespace, "drill", &[], &[]);
    wait_replicating(&client, &scene).await;
    let primary = read_all(&sim, "corp-a").await;
    wait_until(Duration::from_secs(60), "the standby caught up", || async {
        (read_all(&sim, "corp-b").await == primary).then_some(())
    })
    .await;

    let d = run_drill(&client, &scene.namespace, "clean").await;
    let st = d.status.unwrap();
    assert_eq!(st.result, Some(DrillResult::Passed), "{st:?}");
    let v = st.verification.unwrap();
    assert_eq!((v.primary, v.standby, v.matched), (300, 300, 300));
    assert_eq!(st.kafka_copy.unwrap().missing, 0);
    let labels = format!("{{namespace=\"{}\",pair=\"wecom\"}}", scene.namespace);
    let m = metrics(&op).await;
    assert_eq!(
        metric(&m, "understudy_drill_mismatches", &labels),
        Some(0.0)
    );
    assert_eq!(
        metric(&m, "understudy_drill_last_result", &labels),
        Some(1.0)
    );
    let passed_at = metric(
        &m,
        "understudy_drill_last_success_timestamp_seconds",
        &labels,
    )
    .expect("last success timestamp");
    assert!((chrono::Utc::now().timestamp() as f64 - passed_at).abs() < 300.0);
    assert_eq!(
        metric(&m, "understudy_drill_duration_seconds_count", &labels),
        Some(1.0)
    );
    wait_until(Duration::from_secs(30), "a DrillPassed Event", || async {
        events(&client, &scene.namespace)
            .await
            .into_iter()
            .find(|(t, r, n)| t == "Normal" && r == "DrillPassed" && n.contains("clean"))
    })
    .await;

    // Behind the operator's back, on the standby: one entity deleted, one added, one
    // changed.
    use understudy::model::{Entity, EntityKey};
    let standby =
        understudy::provider::http::HttpProvider::new(&sim.url, "corp-b", Some("t0ken")).unwrap();
    let victim: EntityKey = primary[7].0.parse().unwrap();
    standby.delete_entity(&victim, None).await.unwrap();
    let page = standby.list_entities(None, 1000).await.unwrap().entities;
    let mut edited = page[20].clone();
    edited.payload["note"] = serde_json::json!("edited by hand on the standby");
    let edited = Entity::new(edited.key, edited.payload);
    standby.put_entity(&edited, None).await.unwrap();
    let template = &page[30];
    let extra_key = EntityKey::new(template.key.kind(), "zz-added-by-hand").unwrap();
    standby
        .put_entity(
            &Entity::new(extra_key.clone(), template.payload.clone()),
            None,
        )
        .await
        .unwrap();
    let d = run_drill(&client, &scene.namespace, "diverged").await;
    let st = d.status.unwrap();
    assert_eq!(st.result, Some(DrillResult::Failed));
    let v = st.verification.unwrap();
    assert_eq!((v.primary, v.standby, v.matched), (300, 300, 298), "{v:?}");
    assert_eq!(
        (v.missing_on_standby, v.extra_on_standby, v.mismatched),
        (1, 1, 1),
        "{v:?}"
    );
    for (key, what) in [
        (&victim, "missing"),
        (&extra_key, "extra"),
        (&edited.key, "mismatched"),
    ] {
        assert!(
            v.samples.iter().any(|s| s.contains(key.as_str())),
            "the {what} key {key} in {:?}",
            v.samples
        );
    }
    let m = metrics(&op).await;
    assert_eq!(
        metric(&m, "understudy_drill_mismatches", &labels),
        Some(3.0)
    );
    assert_eq!(
        metric(&m, "understudy_drill_last_result", &labels),
        Some(0.0)
    );
    // A failed drill leaves the last success where it was (the overdue alert counts from it).
    assert_eq!(
        metric(
            &m,
            "understudy_drill_last_success_timestamp_seconds",
            &labels
        ),
        Some(passed_at)
    );
    wait_until(
        Duration::from_secs(30),
        "a DrillFailed Warning Event",
        || async {
            events(&client, &scene.namespace)
                .await
                .into_iter()
                .find(|(t, r, n)| t == "Warning" && r == "DrillFailed" && n.contains("diverged"))
        },
    )
    .await;
    wait_until(
        Duration::from_secs(30),
        "DrillsPassing=False on the pair",
        || async {
            pair(&client, &scene)
                .await
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "DrillsPassing" && c.status == "False")
        },
    )
    .await;
}

#[tokio::test]
async fn the_schedule_creates_one_drill_per_slot_in_the_pairs_time_zone() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("schedule");
    let scene = scene(&tb, &client, &sim, "e2e-schedule", fast_detection()).await;
    let pairs: Api<understudy::api::AccountPair> =
        Api::namespaced(client.clone(), &scene.namespace);
    // Every minute of this hour and the next in Shanghai (UTC+8): a slot exists only if the
    // schedule is evaluated in that zone (those hours are not now in UTC).
    let sh = chrono::Utc::now() + chrono::Duration::hours(8);
    let hours = [
        sh.format("%H").to_string(),
        (sh + chrono::Duration::hours(1)).format("%H").to_string(),
    ];
    let schedule = format!(
        "* {},{} * * *",
        hours[0].trim_start_matches('0').parse::<u32>().unwrap_or(0),
        hours[1].trim_start_matches('0').parse::<u32>().unwrap_or(0)
    );
    let patch = serde_json::json!({ "spec": { "drills": { "schedule": schedule, "timeZone": "Asia/Shanghai" } } });
    pairs
        .patch(&scene.pair, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let _op = start_operator(&tb, &scene.namespace, "schedule", &[], &[]);
    let drills: Api<Drill> = Api::namespaced(client.clone(), &scene.namespace);
    let d = wait_until(Duration::from_secs(120), "a scheduled drill", || async {
        drills
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|d| d.spec.slot.is_some())
    })
    .await;
    let slot = chrono::DateTime::parse_from_rfc3339(d.spec.slot.as_deref().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert_eq!(
        slot.format("%S").to_string(),
        "00",
        "a slot is a wall-clock minute"
    );
    let in_shanghai = slot.with_timezone(&chrono_tz::Asia::Shanghai);
    assert!(
        hours.contains(&in_shanghai.format("%H").to_string()),
        "evaluated in Asia/Shanghai: {in_shanghai}"
    );
    assert_eq!(
        d.metadata.name.as_deref(),
        Some(understudy::drills::slot_name("wecom", slot).as_str())
    );
    // A second operator (a restart) does not duplicate the slot's drill.
    drop(_op);
    let _op2 = start_operator(&tb, &scene.namespace, "schedule-2", &[], &[]);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let same_slot = drills
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|x| x.spec.slot == d.spec.slot)
        .count();
    assert_eq!(same_slot, 1);
}

/// The value of `name{labels}` in a Prometheus text exposition.
fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{labels} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// The drill name in the plugin's "drill NAME of PAIR created" line.
fn created_name(run: &oncall_kit::Run) -> String {
    run.text()
        .lines()
        .find_map(|l| l.strip_prefix("drill ")?.split(" of ").next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no drill name in {}", run.text()))
}

#[tokio::test]
async fn a_rehearsal_from_the_plugin_flips_only_the_drills_own_traffic() {
    use k8s_openapi::api::core::v1::Service;
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("rehearsal");
    let scene = scene(&tb, &client, &sim, "e2e-rehearsal", fast_detection()).await;
    let oncall = oncall_kit::Oncall {
        kubeconfig: oncall_kit::kubeconfig_in_namespace(&tb, &scene.namespace),
        audit_topic: oncall_kit::audit_topic(),
    };
    let drills: Api<Drill> = Api::namespaced(client.clone(), &scene.namespace);

    // Refusals change nothing: no rehearsal traffic yet, an unknown pair or drill.
    let r = oncall.run(&["drill", "wecom", "--rehearse"]).await;
    r.expect(2, "rehearsal without rehearsalTraffic");
    assert!(r.says("spec.drills.rehearsalTraffic"), "{}", r.text());
    oncall
        .run(&["drill", "nosuch"])
        .await
        .expect(3, "unknown pair");
    oncall
        .run(&["drill", "report", "nosuch"])
        .await
        .expect(3, "unknown drill");
    assert!(
        drills
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // No operator runs yet, so the first drill stays Pending: a second one is a conflict.
    let first = oncall.run(&["drill", "wecom"]).await;
    first.expect(0, "on-demand drill");
    let first = created_name(&first);
    let r = oncall.run(&["drill", "wecom"]).await;
    r.expect(4, "a second drill while one is unfinished");
    assert!(
        r.says(&format!("drill {first} of wecom is not finished")),
        "{}",
        r.text()
    );
    let r = oncall.run(&["drill", "report", &first]).await;
    r.expect(0, "report of a pending drill");
    assert!(r.says("Result:    pending"), "{}", r.text());

    // The drill's own traffic: a record and a Service of its own, both on the primary.
    let drill_record = format!("drill-{}", support::suffix());
    dns_record(&tb, &drill_record)
        .ensure_values(&[], &["10.1.0.9".to_string()])
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), &scene.namespace);
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "app-drill" },
        "spec": { "selector": { "app.kubernetes.io/instance": "drill-primary" }, "ports": [{ "port": 80 }] }
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    let patch = serde_json::json!({ "spec": { "drills": { "rehearsalTraffic": {
        "dns": [{ "servers": [tb.var("TESTBED_DNS_SERVER")], "zone": tb.var("TESTBED_DNS_ZONE"), "name": drill_record,
                  "type": "A", "ttl": 5, "tsigSecretRef": { "name": "tsig" },
                  "primary": ["10.1.0.9"], "standby": ["10.2.0.9"] }],
        "loadBalancers": [{ "service": { "name": "app-drill", "selectorKey": "app.kubernetes.io/instance",
                                         "primary": "drill-primary", "standby": "drill-standby" } }]
    } } } });
    Api::<understudy::api::AccountPair>::namespaced(client.clone(), &scene.namespace)
        .patch(&scene.pair, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();

    let _op = start_operator(&tb, &scene.namespace, "rehearsal", &[], &[]);
    wait_replicating(&client, &scene).await;
    let primary = read_all(&sim, "corp-a").await;
    wait_until(Duration::from_secs(60), "the standby caught up", || async {
        (read_all(&sim, "corp-b").await == primary).then_some(())
    })
    .await;
    wait_until(
        Duration::from_secs(120),
        "the first drill finishes",
        || async {
            drills.get(&first).await.ok().filter(|d| {
                d.status
                    .as_ref()
                    .is_some_and(|s| s.phase == DrillPhase::Finished)
            })
        },
    )
    .await;

    let serial = soa_serial(&tb);
    let run = oncall
        .run(&["drill", "wecom", "--rehearse", "--wait", "--timeout", "3m"])
        .await;
    run.expect(0, "drill --rehearse --wait");
    for line in ["Result:    PASSED", "flip to standby", "restore"] {
        assert!(run.stdout.contains(line), "{line:?} in\n{}", run.stdout);
    }
    let name = created_name(&run);

    let r = oncall.run(&["drill", "report", &name, "-o", "json"]).await;
    r.expect(0, "drill report -o json");
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["result"], "Passed", "{report:#}");
    assert_eq!(report["rehearse"], true);
    assert_eq!(report["verification"]["matched"], 300, "{report:#}");
    assert_eq!(report["kafkaCopy"]["missing"], 0, "{report:#}");
    let flip = report["rehearsal"]["flipMs"].as_i64().unwrap();
    let restore = report["rehearsal"]["restoreMs"].as_i64().unwrap();
    assert!(flip > 0 && restore > 0, "each move timed: {report:#}");

    // The rehearsal ran as a Drill-trigger Switchover through the executor, every step verified.
    let so = Api::<understudy::api::Switchover>::namespaced(client.clone(), &scene.namespace)
        .get(&format!("{name}-rehearsal"))
        .await
        .unwrap();
    assert_eq!(so.spec.trigger, understudy::api::switchover::Trigger::Drill);
    let st = so.status.unwrap();
    assert_eq!(
        st.phase,
        understudy::api::switchover::SwitchoverPhase::Succeeded
    );
    let steps: Vec<(String, understudy::api::switchover::StepState)> =
        st.steps.iter().map(|s| (s.name.clone(), s.state)).collect();
    assert_eq!(
        steps,
        [
            "precheck",
            "flip-dns",
            "flip-lb",
            "restore-dns",
            "restore-lb"
        ]
        .map(|n| (
            n.to_string(),
            understudy::api::switchover::StepState::Succeeded
        ))
        .to_vec()
    );
    // Exactly two DNS UPDATEs (flip, restore) reached the zone, both on the drill's record,
    // which is back on the primary; so is the drill's Service.
    assert_eq!(soa_serial(&tb), serial + 2, "one flip and one restore");
    assert_eq!(dig(&tb, &drill_record), vec!["10.1.0.9".to_string()]);
    let drill_svc = services.get("app-drill").await.unwrap();
    assert_eq!(
        drill_svc.spec.unwrap().selector.unwrap()["app.kubernetes.io/instance"],
        "drill-primary"
    );
    // Production never moved.
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.1.0.1".to_string()]);
    assert_eq!(service_selector(&client, &scene).await, "wecom-primary");
    assert_eq!(through_haproxy(&tb).await, "primary");
    let p = pair(&client, &scene).await.status.unwrap();
    assert_eq!(p.active_side, Some(understudy::api::Side::Primary));
    // The request is in the audit trail with who asked.
    let records =
        oncall_kit::audit_records(&tb.var("TESTBED_KAFKA_BOOTSTRAP"), &oncall.audit_topic).await;
    assert!(
        records
            .iter()
            .any(|(_, r, _)| r.kind == "drill.requested" && r.data["name"] == name.as_str()),
        "{records:?}"
    );
}
