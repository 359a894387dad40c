//! People at work: cancelling (only what has not started), one switchover at a time, and
//! the chart's on-call role — switch over and pause, never edit a pair.

use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use understudy::api::switchover::{StepState, SwitchoverPhase};
use understudy::api::{AccountPair, Side, Switchover};
use understudy::cli::exit;

use crate::harness::*;
use crate::oncall_kit::*;
use crate::support::{self, Testbed, api_error_code, wait_until};

const SWITCH: Duration = Duration::from_secs(90);

/// The Switchover name a `switchover` run printed.
fn created_name(r: &Run) -> String {
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix("switchover "))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no switchover name in:\n{}", r.text()))
}

async fn get_so(client: &kube::Client, ns: &str, name: &str) -> Switchover {
    Api::<Switchover>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap()
}

#[tokio::test]
async fn only_a_switchover_that_has_not_started_can_be_cancelled_and_one_runs_at_a_time() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("oncall-cancel");
    let scene = scene(&tb, &client, &sim, "e2e-oncall-cancel", fast_detection()).await;
    let ns = scene.namespace.clone();
    let topic = audit_topic();
    let env = [("UNDERSTUDY_AUDIT_TOPIC", topic.clone())];
    let mut op = start_operator(&tb, &ns, "oncall-cancel-1", &[], &env);
    wait_replicating(&client, &scene).await;
    let oc = Oncall {
        kubeconfig: tb.var("TESTBED_KUBECONFIG").into(),
        audit_topic: topic,
    };
    let n = ["-n", ns.as_str()];
    let run = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(n.iter().map(|s| s.to_string()));
        let oc = oc.clone();
        async move {
            oc.run(&all.iter().map(String::as_str).collect::<Vec<_>>())
                .await
        }
    };

    // Scheduled for later: pending, so a second one is a conflict, and it can be cancelled.
    let later = run(&[
        "switchover",
        "wecom",
        "--to",
        "standby",
        "--reason",
        "tonight",
        "--at",
        "+1h",
        "--yes",
    ])
    .await;
    later.expect(0, "scheduled switchover");
    let later = created_name(&later);
    assert!(get_so(&client, &ns, &later).await.spec.not_before.is_some());
    let second = run(&[
        "switchover",
        "wecom",
        "--to",
        "standby",
        "--reason",
        "now",
        "--yes",
    ])
    .await;
    second.expect(
        i32::from(exit::CONFLICT),
        "a second switchover while one is pending",
    );
    assert!(
        second.stderr.contains(&later) && second.stderr.contains("cancel"),
        "{}",
        second.stderr
    );
    let c = run(&["cancel", &later, "--yes"]).await;
    c.expect(0, "cancel a pending switchover");
    assert!(c.says("cancelled; it will never run"), "{}", c.text());
    let so = get_so(&client, &ns, &later).await;
    assert_eq!(phase(&so), SwitchoverPhase::Cancelled);
    assert!(
        so.status.as_ref().unwrap().steps.is_empty(),
        "never started"
    );
    assert!(
        so.metadata
            .annotations
            .unwrap()
            .contains_key("understudy.dev/cancel-requested-by")
    );
    run(&["cancel", &later, "--yes"])
        .await
        .expect(i32::from(exit::CONFLICT), "cancel twice");

    // Due in a few seconds, cancelled before: it never starts.
    let soon = run(&[
        "switchover",
        "wecom",
        "--to",
        "standby",
        "--reason",
        "soon",
        "--at",
        "+4s",
        "--yes",
    ])
    .await;
    soon.expect(0, "switchover due soon");
    let soon = created_name(&soon);
    run(&["cancel", &soon, "--yes"])
        .await
        .expect(0, "cancel before it is due");
    tokio::time::sleep(Duration::from_secs(7)).await;
    let so = get_so(&client, &ns, &soon).await;
    assert_eq!(phase(&so), SwitchoverPhase::Cancelled, "{:?}", so.status);
    assert!(
        so.status.unwrap().steps.is_empty(),
        "the executor never started it"
    );
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.1.0.1"]);

    // One that has started: held right after its precheck's intent was persisted.
    op.kill();
    let op2 = start_operator(
        &tb,
        &ns,
        "oncall-cancel-2",
        &[],
        &[
            env[0].clone(),
            ("UNDERSTUDY_FAILPOINT", "pause-after-intent:precheck".into()),
        ],
    );
    wait_replicating(&client, &scene).await;
    let run1 = run(&[
        "switchover",
        "wecom",
        "--to",
        "standby",
        "--reason",
        "held",
        "--yes",
    ])
    .await;
    run1.expect(0, "switchover");
    let held = created_name(&run1);
    let before = wait_until(SWITCH, "the switchover is running", || async {
        let so = get_so(&client, &ns, &held).await;
        so.status
            .as_ref()?
            .steps
            .iter()
            .any(|s| s.name == "precheck" && s.state == StepState::Running)
            .then_some(so)
    })
    .await;
    let again = run(&[
        "switchover",
        "wecom",
        "--to",
        "standby",
        "--reason",
        "again",
        "--yes",
    ])
    .await;
    again.expect(
        i32::from(exit::CONFLICT),
        "a second switchover while one runs",
    );
    assert!(
        again.stderr.contains(&held) && again.stderr.contains("Running, step precheck"),
        "{}",
        again.stderr
    );
    let late = run(&["cancel", &held, "--yes"]).await;
    late.expect(i32::from(exit::CONFLICT), "cancel after it started");
    assert!(
        late.stderr.contains("already started") && late.stderr.contains("nothing was changed"),
        "{}",
        late.stderr
    );
    let after = get_so(&client, &ns, &held).await;
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "nothing changed"
    );
    assert!(after.metadata.annotations.unwrap_or_default().is_empty());
    let ids: Vec<String> = switchovers(&client, &ns)
        .await
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    assert_eq!(
        ids.len(),
        3,
        "no switchover was created by the refused requests: {ids:?}"
    );

    // A new replica resumes it and it finishes.
    drop(op2);
    let _op3 = start_operator(&tb, &ns, "oncall-cancel-3", &[], &env);
    wait_until(SWITCH, "the held switchover finishes", || async {
        (phase(&get_so(&client, &ns, &held).await) == SwitchoverPhase::Succeeded).then_some(())
    })
    .await;
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.2.0.1"]);
    let h = run(&["history", "wecom"]).await;
    h.expect(0, "history");
    assert_eq!(h.stdout.matches("Cancelled").count(), 2, "{}", h.stdout);
    run(&["audit", "verify"]).await.expect(0, "audit verify");
    eprintln!("cancel and conflicts: {:?}", started.elapsed());
}

#[tokio::test]
async fn an_oncall_user_switches_over_and_pauses_but_cannot_edit_the_pair() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let tb = Testbed::load();
    let admin_client = tb.kube().await;
    support::install_crds(&admin_client).await;
    apply_people_rbac(&tb);
    let sim = start_sim("oncall-rbac");
    let scene = scene(
        &tb,
        &admin_client,
        &sim,
        "e2e-oncall-rbac",
        fast_detection(),
    )
    .await;
    let ns = scene.namespace.clone();
    let topic = audit_topic();
    let _op = start_operator(
        &tb,
        &ns,
        "oncall-rbac",
        &[],
        &[("UNDERSTUDY_AUDIT_TOPIC", topic.clone())],
    );
    wait_replicating(&admin_client, &scene).await;
    let (kubeconfig, token) =
        person_kubeconfig(&tb, &admin_client, &ns, "oscar", "understudy-oncall").await;
    let oc = Oncall {
        kubeconfig,
        audit_topic: topic,
    };
    let me = format!("system:serviceaccount:{ns}:oscar");

    wait_until(
        Duration::from_secs(20),
        "the on-call binding is effective",
        || async { (oc.run(&["status", "wecom", "-n", &ns]).await.code == 0).then_some(()) },
    )
    .await;

    // Pause and resume: spec.paused plus the reason annotation, shown in status.
    oc.run(&[
        "pause",
        "wecom",
        "-n",
        &ns,
        "--reason",
        "provider incident INC-4411",
        "--yes",
    ])
    .await
    .expect(0, "pause");
    let p = Api::<AccountPair>::namespaced(admin_client.clone(), &ns)
        .get("wecom")
        .await
        .unwrap();
    assert!(p.spec.paused);
    let ann = p.metadata.annotations.clone().unwrap();
    assert_eq!(
        ann.get("understudy.dev/pause-reason").map(String::as_str),
        Some("provider incident INC-4411")
    );
    assert_eq!(ann.get("understudy.dev/paused-by"), Some(&me));
    let st = wait_until(
        Duration::from_secs(30),
        "status shows the pause",
        || async {
            let r = oc.run(&["status", "wecom", "-n", &ns]).await;
            (r.code == 0 && r.stdout.contains("Paused") && r.stdout.contains("INC-4411"))
                .then_some(r)
        },
    )
    .await;
    assert!(
        st.stdout.contains("automatic failover suspended"),
        "{}",
        st.stdout
    );
    oc.run(&["pause", "wecom", "-n", &ns, "--reason", "again", "--yes"])
        .await
        .expect(0, "pause twice is a no-op");
    // Paused: a freeze pages humans instead of failing over.
    wait_until(
        Duration::from_secs(60),
        "the paused pair is watched again",
        || async {
            let p = pair(&admin_client, &scene).await;
            let st = p.status?;
            (st.observed_generation == p.metadata.generation && st.primary?.status == "Healthy")
                .then_some(())
        },
    )
    .await;
    set_status(&sim, "corp-a", "frozen", "content report").await;
    let page = wait_until(Duration::from_secs(30), "NeedsHuman is raised", || async {
        pair(&admin_client, &scene)
            .await
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "NeedsHuman" && c.status == "True")
    })
    .await;
    assert!(page.message.contains("paused"), "{}", page.message);
    let st = oc.run(&["status", "wecom", "-n", &ns]).await;
    assert!(st.says("NeedsHuman=True"), "{}", st.text());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        switchovers(&admin_client, &ns).await.is_empty(),
        "no automatic failover while paused"
    );
    set_status(&sim, "corp-a", "active", "false alarm").await;
    wait_until(
        Duration::from_secs(30),
        "the primary is Healthy again",
        || async {
            (pair(&admin_client, &scene).await.status?.primary?.status == "Healthy").then_some(())
        },
    )
    .await;
    oc.run(&["resume", "wecom", "-n", &ns, "--yes"])
        .await
        .expect(0, "resume");
    let p = Api::<AccountPair>::namespaced(admin_client.clone(), &ns)
        .get("wecom")
        .await
        .unwrap();
    assert!(!p.spec.paused);
    assert!(
        !p.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("understudy.dev/pause-reason")
    );
    wait_until(
        Duration::from_secs(60),
        "the restarted worker replicates",
        || async {
            let p = pair(&admin_client, &scene).await;
            let st = p.status?;
            (st.observed_generation == p.metadata.generation
                && st.phase.as_deref() == Some("Replicating"))
            .then_some(())
        },
    )
    .await;

    // A planned switchover, as the on-call user.
    let sw = oc
        .run(&[
            "switchover",
            "wecom",
            "-n",
            &ns,
            "--to",
            "standby",
            "--reason",
            "on-call move",
            "--yes",
            "--wait",
        ])
        .await;
    sw.expect(0, "on-call switchover");
    let so = switchovers(&admin_client, &ns)
        .await
        .into_iter()
        .next()
        .unwrap();
    assert_eq!(so.spec.requested_by.as_deref(), Some(me.as_str()));
    assert_eq!(phase(&so), SwitchoverPhase::Succeeded);
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.2.0.1"]);
    assert_eq!(
        pair(&admin_client, &scene)
            .await
            .status
            .unwrap()
            .active_side,
        Some(Side::Standby)
    );
    oc.run(&["history", "wecom", "-n", &ns])
        .await
        .expect(0, "history");

    // The on-call user cannot edit, replace or delete the pair, nor write a status.
    let as_oncall = tb.kube_with_token(&token).await;
    let pairs = Api::<AccountPair>::namespaced(as_oncall.clone(), &ns);
    let edit = pairs
        .patch(
            "wecom",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replication": { "maxLagForSwitchover": "1h" } } })),
        )
        .await;
    assert_eq!(api_error_code(&edit), Some(403), "edit spec: {edit:?}");
    let mut whole = pairs.get("wecom").await.unwrap();
    whole.spec.detection.hold_down = understudy::api::PositiveDuration::from_secs(1);
    let replace = pairs.replace("wecom", &Default::default(), &whole).await;
    assert_eq!(api_error_code(&replace), Some(403), "replace: {replace:?}");
    let delete = pairs.delete("wecom", &DeleteParams::default()).await;
    assert_eq!(api_error_code(&delete), Some(403), "delete: {delete:?}");
    let status = Api::<Switchover>::namespaced(as_oncall, &ns)
        .patch_status(
            so.metadata.name.as_deref().unwrap(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "phase": "Failed" } })),
        )
        .await;
    assert_eq!(api_error_code(&status), Some(403), "status: {status:?}");
    let p = Api::<AccountPair>::namespaced(admin_client.clone(), &ns)
        .get("wecom")
        .await
        .unwrap();
    assert_eq!(
        p.spec.replication.max_lag_for_switchover.to_string(),
        "5s",
        "the pair is unchanged"
    );

    // Evidence works with on-call rights; what they may not read is said in README.txt.
    let dir = evidence_dir(&ns);
    oc.run(&["evidence", "wecom", "-n", &ns, "-o", dir.to_str().unwrap()])
        .await
        .expect(0, "evidence as on-call");
    let readme = read(&dir, "README.txt");
    assert!(
        readme.contains("Not included") && readme.contains("Kubernetes Events"),
        "{readme}"
    );
    // Without `get` on the accounts' Secret, their activity is left out and said; the
    // rest of the layout is there.
    let missing = readme.split("\nNot included\n").nth(1).unwrap_or_default();
    for side in ["primary", "standby"] {
        assert!(
            missing.contains(&format!(
                "operation_logs/{side}_activity.csv: cannot reach the {side} account's provider"
            )),
            "{side} in:\n{readme}"
        );
        assert!(
            !dir.join(format!("operation_logs/{side}_activity.csv"))
                .exists()
        );
    }
    assert!(
        readme.contains("only the shapes above were redacted"),
        "{readme}"
    );
    for f in [
        "account_info/accounts.txt",
        "account_info/business_licence/README.txt",
        "system_alert/timeline.txt",
        "system_alert/switchovers.yaml",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&oc.kubeconfig);
    eprintln!("on-call RBAC: {:?}", started.elapsed());
}
