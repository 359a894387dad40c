//! A pause and a resume made without `kubectl understudy` (a `kubectl patch` of
//! `spec.paused`) are recorded by the operator and shown by `kubectl understudy history`
//! once each, with the field manager that made them, after the pause is lifted; a pause
//! made with the plugin is in the history once, not a second time from the operator.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;
use crate::oncall_kit::*;
use crate::support::{self, Testbed, wait_until};

/// Wait until the pair's `Paused` condition has this status; its message.
async fn paused_condition(client: &kube::Client, scene: &Scene, status: &str) -> String {
    wait_until(
        Duration::from_secs(60),
        &format!("the Paused condition is {status}"),
        || async {
            let p = pair(client, scene).await;
            let generation = p.metadata.generation;
            p.status?
                .conditions
                .into_iter()
                .find(|c| {
                    c.type_ == "Paused" && c.status == status && c.observed_generation == generation
                })
                .map(|c| c.message)
        },
    )
    .await
}

/// `history -o json`'s pause and resume entries, oldest first: (kind, by, source).
async fn pauses(oc: &Oncall, scene: &Scene) -> Vec<(String, String, String)> {
    let r = oc
        .run(&["history", &scene.pair, "-n", &scene.namespace, "-o", "json"])
        .await;
    r.expect(0, "history -o json");
    let v: Value = serde_json::from_str(&r.stdout).expect("history JSON");
    assert_eq!(v["auditTrail"]["read"], true, "{}", r.text());
    let mut out: Vec<(String, String, String)> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "pause" || e["kind"] == "resume")
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (s("kind"), s("by"), s("source"))
        })
        .collect();
    out.reverse();
    out
}

#[tokio::test]
async fn a_pause_patched_with_kubectl_is_in_the_history_once_it_is_lifted() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("oncall-pause");
    let scene = scene(&tb, &client, &sim, "e2e-oncall-pause", fast_detection()).await;
    let ns = scene.namespace.clone();
    let topic = audit_topic();
    let _op = start_operator(
        &tb,
        &ns,
        "oncall-pause",
        &[],
        &[("UNDERSTUDY_AUDIT_TOPIC", topic.clone())],
    );
    wait_replicating(&client, &scene).await;
    let oc = Oncall {
        kubeconfig: tb.var("TESTBED_KUBECONFIG").into(),
        audit_topic: topic,
    };
    // The operator's first look at the pair: not paused, nothing to record.
    paused_condition(&client, &scene, "False").await;
    let patch = |paused: bool| {
        let body = format!(r#"{{"spec":{{"paused":{paused}}}}}"#);
        kubectl(
            &tb,
            &[
                "-n",
                &ns,
                "patch",
                "accountpair",
                &scene.pair,
                "--type",
                "merge",
                "-p",
                &body,
            ],
        );
    };

    // Paused and resumed with kubectl patch, not with the plugin.
    patch(true);
    let msg = paused_condition(&client, &scene, "True").await;
    assert!(msg.contains("set by kubectl-patch"), "{msg}");
    patch(false);
    paused_condition(&client, &scene, "False").await;
    let seen = wait_until(
        Duration::from_secs(30),
        "history shows the patched pause and resume",
        || async {
            let p = pauses(&oc, &scene).await;
            (p.len() >= 2).then_some(p)
        },
    )
    .await;
    let patched = |k: &str| {
        (
            k.to_string(),
            "kubectl-patch".to_string(),
            "audit".to_string(),
        )
    };
    assert_eq!(seen, vec![patched("pause"), patched("resume")]);
    let table = oc.run(&["history", &scene.pair, "-n", &ns]).await;
    table.expect(0, "history");
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.contains("pause") && l.contains("kubectl-patch") && l.contains("paused")),
        "{}",
        table.stdout
    );

    // With the plugin: its own records, the operator adds none. A last pause by kubectl
    // patch after it: the operator's records are written in order, so once that one is
    // read, a second record of the plugin's pause or resume would have been read too.
    oc.run(&[
        "pause",
        &scene.pair,
        "-n",
        &ns,
        "--reason",
        "INC-9 provider incident",
        "--yes",
    ])
    .await
    .expect(0, "pause");
    let msg = paused_condition(&client, &scene, "True").await;
    assert!(msg.contains("with kubectl understudy pause"), "{msg}");
    let me = pair(&client, &scene)
        .await
        .metadata
        .annotations
        .unwrap_or_default()
        .get("understudy.dev/paused-by")
        .cloned()
        .expect("the plugin names who paused");
    oc.run(&["resume", &scene.pair, "-n", &ns, "--yes"])
        .await
        .expect(0, "resume");
    paused_condition(&client, &scene, "False").await;
    patch(true);
    paused_condition(&client, &scene, "True").await;
    let seen = wait_until(
        Duration::from_secs(30),
        "history shows the last patched pause",
        || async {
            let p = pauses(&oc, &scene).await;
            (p.len() >= 5).then_some(p)
        },
    )
    .await;
    let by_plugin = |k: &str| (k.to_string(), me.clone(), "audit".to_string());
    assert_eq!(
        seen,
        vec![
            patched("pause"),
            patched("resume"),
            by_plugin("pause"),
            by_plugin("resume"),
            patched("pause"),
        ],
        "each change once; the pause in force from the audit trail, not again from the pair"
    );
    eprintln!("pauses by kubectl patch: {:?}", started.elapsed());
}
