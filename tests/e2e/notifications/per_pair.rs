//! Per-pair sinks and rotated Secrets, end to end: two pairs under one operator; pair
//! `wecom` says `spec.notifications: {operatorSinks: [], sinks: [team-hook]}` (its own
//! signed webhook, its Secret in the pair's namespace), pair `other` says nothing (every
//! operator sink). Each receiver gets only its pair's messages. Then both webhook
//! Secrets are rotated: the next messages verify with the new secrets only, and the
//! operator was not restarted.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use understudy::api::AccountPair;

use super::harness::*;
use super::support::{Testbed, wait_until};
use super::{Got, Log, notify_file, notifying_operator, of, receivers};

const OPS_SECRET: &str = "ops-hmac-1";
const OPS_SECRET_2: &str = "ops-hmac-2-rotated";
const TEAM_SECRET: &str = "team-hmac-1";
const TEAM_SECRET_2: &str = "team-hmac-2-rotated";

fn verifies(g: &Got, secret: &str) -> bool {
    let ts = g.headers["x-understudy-timestamp"].to_str().unwrap();
    let sig = g.headers["x-understudy-signature"].to_str().unwrap();
    understudy::notify::verify(secret.as_bytes(), ts, &g.raw, sig)
}

/// The messages of `kind` at `sink`.
fn got(log: &Log, sink: &str, kind: &str) -> Vec<Got> {
    of(log, sink)
        .into_iter()
        .filter(|g| g.body["kind"] == kind)
        .collect()
}

async fn wait_got(log: &Log, sink: &str, kind: &str, n: usize) -> Got {
    wait_until(
        Duration::from_secs(60),
        &format!("{n}× {kind} at {sink}"),
        || async { got(log, sink, kind).get(n - 1).cloned() },
    )
    .await
}

async fn set_secret(client: &Client, ns: &str, name: &str, key: &str, value: &str) {
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "stringData": { key: value } })),
        )
        .await
        .expect("rotate the secret");
}

/// A second pair, `other`, of the simulator's accounts corp-c and corp-d, without
/// traffic and without `spec.notifications`.
async fn other_pair(tb: &Testbed, client: &Client, sim: &Proc, ns: &str) -> Scene {
    let account = |id: &str| json!({ "endpoint": sim.url, "accountId": id, "credentialsSecretRef": { "name": "token" } });
    let ap: AccountPair = serde_json::from_value(json!({
        "apiVersion": "understudy.dev/v1alpha1",
        "kind": "AccountPair",
        "metadata": { "name": "other" },
        "spec": {
            "primary": account("corp-c"),
            "standby": account("corp-d"),
            "replication": { "kafka": { "bootstrapServers": tb.var("TESTBED_KAFKA_BOOTSTRAP") }, "partitions": 2 },
            "detection": fast_detection(),
        }
    }))
    .unwrap();
    Api::<AccountPair>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &ap)
        .await
        .expect("create the second pair");
    Scene {
        namespace: ns.to_string(),
        pair: "other".into(),
        dns_name: String::new(),
        service: String::new(),
        notice_secret: String::new(),
    }
}

#[tokio::test]
async fn a_pairs_own_sink_gets_only_its_messages_and_rotated_secrets_apply_without_a_restart() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    super::support::install_crds(&client).await;
    let (base, log) = receivers().await;
    let sim = start_sim_seeded("notify-pairs", "corp-a=20,corp-b=0,corp-c=20,corp-d=0");
    let scene = scene(&tb, &client, &sim, "e2e-notify-pairs", fast_detection()).await;
    let ns = scene.namespace.clone();
    create_secret(&client, &ns, "notify", json!({ "hookSecret": OPS_SECRET })).await;
    create_secret(
        &client,
        &ns,
        "team-notify",
        json!({ "secret": TEAM_SECRET }),
    )
    .await;
    // Pair wecom: none of the operator's sinks, its own webhook instead.
    Api::<AccountPair>::namespaced(client.clone(), &ns)
        .patch(
            &scene.pair,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "notifications": {
                "operatorSinks": [],
                "sinks": [{ "name": "team-hook", "kind": "Webhook", "url": format!("{base}/team-hook"),
                            "secretRef": { "name": "team-notify" } }]
            } } })),
        )
        .await
        .expect("give the pair its own sink");
    let other = other_pair(&tb, &client, &sim, &ns).await;
    let config = json!({
        "sinks": [{ "name": "ops-hook", "kind": "Webhook", "url": format!("{base}/hook"),
                    "secretRef": { "name": "notify", "key": "hookSecret" } }],
        "secretRefreshSeconds": 1,
    });
    let op = notifying_operator(&tb, &ns, "notify-pairs", &config, &[]);
    wait_replicating(&client, &scene).await;
    wait_replicating(&client, &other).await;

    // Each pair's standby freezes and thaws: each receiver hears of its pair only.
    for (standby, sink) in [("corp-b", "team-hook"), ("corp-d", "webhook")] {
        set_status(&sim, standby, "frozen", "under review").await;
        wait_got(&log, sink, "SideFrozen", 1).await;
        set_status(&sim, standby, "active", "").await;
        wait_got(&log, sink, "Resolved", 1).await;
    }
    let team = of(&log, "team-hook");
    let ops = of(&log, "webhook");
    assert!(team.len() >= 2 && ops.len() >= 2, "{team:?} {ops:?}");
    assert!(
        team.iter().all(|g| g.body["pair"] == "wecom"),
        "the pair's own sink got another pair's message"
    );
    assert!(
        ops.iter().all(|g| g.body["pair"] == "other"),
        "an operator sink got a message of the pair that chose none"
    );
    assert!(team.iter().all(|g| verifies(g, TEAM_SECRET)));
    assert!(ops.iter().all(|g| verifies(g, OPS_SECRET)));
    let team_label = format!("sink=\"{ns}/wecom/team-hook\"");
    let team_sent = wait_until(
        Duration::from_secs(10),
        "the pair's sink counted",
        || async {
            let m = metrics(&op).await;
            let sent = metric_sum(
                &m,
                "understudy_notifications_total",
                &[&team_label, "result=\"sent\""],
            );
            (sent >= team.len() as f64).then_some(sent)
        },
    )
    .await;
    assert_eq!(team_sent, team.len() as f64);

    // Both Secrets rotated; once the operator has read them again, the next messages
    // verify with the new secrets only.
    set_secret(&client, &ns, "team-notify", "secret", TEAM_SECRET_2).await;
    set_secret(&client, &ns, "notify", "hookSecret", OPS_SECRET_2).await;
    wait_until(Duration::from_secs(30), "both rotations taken", || async {
        let text = op.log_text();
        let changed: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("notification sink credentials changed"))
            .collect();
        let both = changed.iter().any(|l| l.contains("team-hook"))
            && changed.iter().any(|l| l.contains("ops-hook"));
        both.then_some(())
    })
    .await;
    for (standby, sink, old, new) in [
        ("corp-b", "team-hook", TEAM_SECRET, TEAM_SECRET_2),
        ("corp-d", "webhook", OPS_SECRET, OPS_SECRET_2),
    ] {
        set_status(&sim, standby, "frozen", "under review again").await;
        let g = wait_got(&log, sink, "SideFrozen", 2).await;
        assert!(verifies(&g, new), "{sink}: signed with the rotated secret");
        assert!(
            !verifies(&g, old),
            "{sink}: the old secret no longer verifies"
        );
        set_status(&sim, standby, "active", "").await;
        wait_got(&log, sink, "Resolved", 2).await;
    }
    assert!(
        of(&log, "team-hook")
            .iter()
            .all(|g| g.body["pair"] == "wecom")
    );
    assert!(
        of(&log, "webhook")
            .iter()
            .all(|g| g.body["pair"] == "other")
    );
    let log_text = op.log_text();
    for secret in [OPS_SECRET, OPS_SECRET_2, TEAM_SECRET, TEAM_SECRET_2] {
        assert!(
            !log_text.contains(secret),
            "the operator log shows {secret}"
        );
    }
    let _ = std::fs::remove_file(notify_file(&ns));
}
