//! Drills run by the operator on the real test bed: an on-demand drill of a clean pair
//! passes; divergence made behind the operator's back fails it with the right counts;
//! the schedule creates one Drill per slot in a non-UTC time zone.

mod harness;
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
    let _op = start_operator(&tb, &scene.namespace, "drill", &[], &[]);
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

    // Behind the operator's back: delete one entity on the standby.
    let standby =
        understudy::provider::http::HttpProvider::new(&sim.url, "corp-b", Some("t0ken")).unwrap();
    let victim: understudy::model::EntityKey = primary[7].0.parse().unwrap();
    standby.delete_entity(&victim, None).await.unwrap();
    let d = run_drill(&client, &scene.namespace, "diverged").await;
    let st = d.status.unwrap();
    assert_eq!(st.result, Some(DrillResult::Failed));
    let v = st.verification.unwrap();
    assert_eq!(
        (v.missing_on_standby, v.extra_on_standby, v.mismatched),
        (1, 0, 0),
        "{v:?}"
    );
    assert!(
        v.samples.iter().any(|s| s.contains(victim.as_str())),
        "{:?}",
        v.samples
    );
    wait_until(
        Duration::from_secs(10),
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
