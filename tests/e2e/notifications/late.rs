//! `SwitchoverStuck`, end to end: an automatic failover held at `flip-dns` (a failpoint
//! that pauses after the step's intent) past `switchoverStuckSeconds` is told to the
//! sinks once, naming the switchover, the step and its own incident.

use std::time::Duration;

use serde_json::json;

use super::harness::*;
use super::support::{Testbed, wait_until};
use super::{kinds, notify_file, notifying_operator, of, receivers, wait_kind};

const SECRET: &str = "stuck-hmac";

#[tokio::test]
async fn a_failover_held_at_a_step_past_the_bound_is_reported_stuck_once() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    super::support::install_crds(&client).await;
    let (base, log) = receivers().await;
    let sim = start_sim("notify-stuck");
    let scene = scene(&tb, &client, &sim, "e2e-notify-stuck", fast_detection()).await;
    let ns = scene.namespace.clone();
    create_secret(&client, &ns, "notify", json!({ "hookSecret": SECRET })).await;
    let config = json!({
        "sinks": [{ "name": "ops-hook", "kind": "Webhook", "url": format!("{base}/hook"),
                    "secretRef": { "name": "notify", "key": "hookSecret" } }],
        "switchoverStuckSeconds": 3,
    });
    let _op = notifying_operator(
        &tb,
        &ns,
        "notify-stuck",
        &config,
        &[(
            "UNDERSTUDY_FAILPOINT",
            "pause-after-intent:flip-dns".to_string(),
        )],
    );
    wait_replicating(&client, &scene).await;

    set_status(&sim, "corp-a", "frozen", "content report").await;
    wait_kind(&log, "FailoverStarted", 1).await;
    let so = wait_until(Duration::from_secs(30), "the failover started", || async {
        switchovers(&client, &ns).await.into_iter().next()
    })
    .await;
    let name = so.metadata.name.clone().unwrap();
    wait_kind(&log, "SwitchoverStuck", 1).await;
    let stuck = of(&log, "webhook")
        .into_iter()
        .find(|g| g.body["kind"] == "SwitchoverStuck")
        .unwrap();
    let d = &stuck.body["details"];
    assert_eq!(d["switchover"], name.as_str(), "{}", stuck.body);
    assert_eq!(d["step"], "flip-dns", "{}", stuck.body);
    assert!(d["forSecs"].as_u64().unwrap() >= 3, "{}", stuck.body);
    assert_eq!(stuck.body["severity"], "critical");
    assert_eq!(
        stuck.body["incidentKey"],
        format!("understudy/{ns}/{}/switchover/{name}", scene.pair).as_str()
    );
    // Still stuck as the controller looks at it again (every 5 s): no second message.
    // An absence shows only over time: two more looks.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let stucks = kinds(&log)
        .iter()
        .filter(|k| *k == "SwitchoverStuck")
        .count();
    assert_eq!(stucks, 1, "{:?}", kinds(&log));
    let _ = std::fs::remove_file(notify_file(&ns));
}
