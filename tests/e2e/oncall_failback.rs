//! Failback, by hand and automatic; the audit trail across an operator restart,
//! verified and tampered with; the evidence export.

use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use understudy::api::switchover::{StepState, SwitchoverMode, SwitchoverPhase, Trigger};
use understudy::api::{AccountPair, Side};
use understudy::audit::chain::hash_of_value;
use understudy::cli::exit;

use crate::harness::*;
use crate::oncall_kit::*;
use crate::support::{self, Testbed, wait_until};

const SWITCH: Duration = Duration::from_secs(90);

async fn primary_healthy_and_level(client: &kube::Client, scene: &Scene, sim: &Proc) {
    wait_until(
        Duration::from_secs(60),
        "the primary is Healthy and level",
        || async {
            let st = pair(client, scene).await.status?;
            let healthy = st.primary?.status == "Healthy";
            let lag_ok = st
                .replication
                .and_then(|r| r.lag_seconds)
                .is_some_and(|l| l < 2.0);
            let level = read_all(sim, "corp-a").await == read_all(sim, "corp-b").await;
            (healthy && lag_ok && level).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn failback_by_hand_returns_traffic_once_the_primary_is_level_and_the_audit_chain_survives_a_restart()
 {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("oncall-fb");
    let scene = scene(&tb, &client, &sim, "e2e-oncall-fb", fast_detection()).await;
    let ns = scene.namespace.clone();
    let topic = audit_topic();
    let env = [("UNDERSTUDY_AUDIT_TOPIC", topic.clone())];
    let mut op_a = start_operator(&tb, &ns, "oncall-fb-a", &["--identity", "oncall-a"], &env);
    wait_replicating(&client, &scene).await;
    let oc = Oncall {
        kubeconfig: tb.var("TESTBED_KUBECONFIG").into(),
        audit_topic: topic.clone(),
    };

    // A signed provider notice freezes the primary: automatic failover.
    let hook = format!("{}/webhooks/notices/{ns}/{}", op_a.url, scene.pair);
    admin(&sim, "/admin/accounts/corp-a/notice", reqwest::Method::POST,
        json!({ "url": hook, "secret": scene.notice_secret, "event": { "type": "frozen", "reason": "abnormal login" }, "applyStatus": true })).await;
    let failover = wait_switchover_finished(&client, &ns, SWITCH).await;
    assert_eq!(
        phase(&failover),
        SwitchoverPhase::Succeeded,
        "{:?}",
        failover.status
    );
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.2.0.1"]);
    put_tag(&sim, "corp-b", "made-on-standby").await;

    // Too early: the primary is still frozen, the failback's precheck refuses it.
    let early = oc
        .run(&[
            "failback",
            "wecom",
            "-n",
            &ns,
            "--reason",
            "too early",
            "--yes",
            "--wait",
        ])
        .await;
    early.expect(i32::from(exit::FAILED), "failback to a frozen primary");
    assert!(
        early.says("target-healthy: FAIL") && early.says("primary is Frozen"),
        "{}",
        early.text()
    );
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.2.0.1"]);
    let bootstrap = tb.var("TESTBED_KAFKA_BOOTSTRAP");
    wait_until(
        Duration::from_secs(30),
        "the refused failback is audited",
        || async {
            let r = audit_records(&bootstrap, &topic).await;
            (r.iter()
                .filter(|(_, r, _)| r.kind == "switchover.finished")
                .count()
                >= 2)
                .then_some(())
        },
    )
    .await;

    // The operator restarts (a new replica); the primary is unfrozen.
    op_a.kill();
    let _op_b = start_operator(&tb, &ns, "oncall-fb-b", &["--identity", "oncall-b"], &env);
    set_status(&sim, "corp-a", "active", "appeal granted").await;
    primary_healthy_and_level(&client, &scene, &sim).await;
    assert!(
        read_all(&sim, "corp-a")
            .await
            .iter()
            .any(|(k, _)| k == "tag/made-on-standby"),
        "replication ran standby → primary once the primary was readable"
    );

    let t0 = Instant::now();
    let fb = oc
        .run(&[
            "failback",
            "wecom",
            "-n",
            &ns,
            "--reason",
            "appeal granted",
            "--yes",
            "--wait",
        ])
        .await;
    fb.expect(0, "failback");
    assert!(
        fb.says("verify-level  Succeeded — level: primary and standby both hold"),
        "{}",
        fb.text()
    );
    eprintln!("failback by hand: {:?}", t0.elapsed());
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.1.0.1"]);
    assert!(
        fb.says("haproxy 127.0.0.1") && fb.says("backend app → primary"),
        "{}",
        fb.text()
    );
    assert_eq!(service_selector(&client, &scene).await, "wecom-primary");
    let p = pair(&client, &scene).await.status.unwrap();
    assert_eq!(p.active_side, Some(Side::Primary));
    let last = switchovers(&client, &ns)
        .await
        .into_iter()
        .find(|s| s.spec.reason == "appeal granted")
        .unwrap();
    assert_eq!(last.status.as_ref().unwrap().records_lost, Some(0));
    assert!(
        last.status
            .as_ref()
            .unwrap()
            .steps
            .iter()
            .any(|s| s.name == "verify-level" && s.state == StepState::Succeeded)
    );

    // The audit trail: one chain from genesis across both operators and the CLI.
    let recs = wait_until(
        Duration::from_secs(30),
        "the failback's end is audited",
        || async {
            let r = audit_records(&bootstrap, &topic).await;
            r.iter()
                .any(|(_, r, _)| {
                    r.kind == "switchover.finished" && r.data["name"] == json!(last.metadata.name)
                })
                .then_some(r)
        },
    )
    .await;
    for (i, (_, r, _)) in recs.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "consecutive seqs");
        assert_eq!(r.namespace, ns);
    }
    let by = |actor: &str, kind: &str| {
        recs.iter()
            .filter(|(_, r, _)| r.actor == actor && r.kind == kind)
            .count()
    };
    assert!(by("understudy/oncall-a", "notice") >= 1);
    assert!(recs.iter().any(|(_, r, _)| r.kind == "verdict"
        && r.data["to"] == "Frozen"
        && r.data["side"] == "primary"));
    assert_eq!(
        by("understudy/oncall-a", "switchover.created"),
        1,
        "the automatic failover"
    );
    assert_eq!(
        by("understudy/oncall-a", "switchover.step"),
        7 + 1,
        "the failover's, the refused precheck"
    );
    let user = last.spec.requested_by.clone().unwrap();
    assert_eq!(
        by(&user, "switchover.created"),
        2,
        "both failbacks, by the person"
    );
    assert!(
        by("understudy/oncall-b", "switchover.step") >= 8,
        "the failback, with verify-level"
    );
    let mut finished: Vec<String> = recs
        .iter()
        .filter(|(_, r, _)| r.kind == "switchover.finished")
        .map(|(_, r, _)| r.data["name"].as_str().unwrap_or_default().to_string())
        .collect();
    let all = finished.len();
    finished.sort();
    finished.dedup();
    assert_eq!(
        (all, finished.len()),
        (3, 3),
        "each switchover finished once: {finished:?}"
    );
    let last_a = recs
        .iter()
        .filter(|(_, r, _)| r.actor == "understudy/oncall-a")
        .map(|(_, r, _)| r.seq)
        .max()
        .unwrap();
    let first_b = recs
        .iter()
        .filter(|(_, r, _)| r.actor == "understudy/oncall-b")
        .map(|(_, r, _)| r.seq)
        .min()
        .unwrap();
    assert!(
        first_b > last_a,
        "the restarted operator continued the chain"
    );
    let v = oc.run(&["audit", "verify", "-n", &ns]).await;
    v.expect(0, "audit verify");
    assert!(
        v.says(&format!("audit chain whole: {} records", recs.len()))
            || v.says("audit chain whole"),
        "{}",
        v.text()
    );

    // Tampering with a copy of the chain is caught, naming the first bad record.
    let raw: Vec<Vec<u8>> = recs.iter().map(|(_, _, b)| b.clone()).collect();
    assert!(raw.len() >= 6);
    let copy = |tag: &str| format!("{topic}.{tag}");
    let verify = |t: String| {
        let oc = oc.clone();
        let bootstrap = bootstrap.clone();
        async move {
            oc.run(&["audit", "verify", "--kafka", &bootstrap, "--topic", &t])
                .await
        }
    };
    write_copy(&bootstrap, &copy("intact"), &raw).await;
    verify(copy("intact"))
        .await
        .expect(0, "an intact copy verifies");
    let mut changed = raw.clone();
    let mut v3: serde_json::Value = serde_json::from_slice(&raw[2]).unwrap();
    v3["data"]["tampered"] = json!(true);
    changed[2] = serde_json::to_vec(&v3).unwrap();
    write_copy(&bootstrap, &copy("changed"), &changed).await;
    let r = verify(copy("changed")).await;
    r.expect(i32::from(exit::FAILED), "a changed record");
    assert!(
        r.stderr.contains("seq 3 at offset 2") && r.stderr.contains("changed after it was written"),
        "{}",
        r.stderr
    );
    let removed: Vec<Vec<u8>> = raw
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, b)| b.clone())
        .collect();
    write_copy(&bootstrap, &copy("removed"), &removed).await;
    let r = verify(copy("removed")).await;
    r.expect(i32::from(exit::FAILED), "a removed record");
    assert!(
        r.stderr.contains("seq 4 at offset 2") && r.stderr.contains("records 3..3 are missing"),
        "{}",
        r.stderr
    );
    let mut rehashed = raw.clone();
    let mut v3: serde_json::Value = serde_json::from_slice(&raw[2]).unwrap();
    v3["actor"] = json!("mallory");
    v3["hash"] = json!(hash_of_value(&v3));
    rehashed[2] = serde_json::to_vec(&v3).unwrap();
    write_copy(&bootstrap, &copy("rehashed"), &rehashed).await;
    let r = verify(copy("rehashed")).await;
    r.expect(
        i32::from(exit::FAILED),
        "a changed record with a recomputed hash",
    );
    assert!(
        r.stderr.contains("seq 4 at offset 3") && r.stderr.contains("prevHash"),
        "{}",
        r.stderr
    );
    let r = verify(copy("missing")).await;
    r.expect(i32::from(exit::NOT_FOUND), "a topic that does not exist");
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);

    // Evidence for the appeal. Who operates the accounts is said on the pair; the
    // provider's activity API holds the primary's operations from before the freeze
    // (older than the running operator, so its risk control does not read them again),
    // one of them with a credential in it.
    Api::<AccountPair>::namespaced(client.clone(), &ns)
        .patch(
            "wecom",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "annotations": {
                "understudy.dev/operated-by": "IM team <im-ops@example.com>" } } })),
        )
        .await
        .unwrap();
    let before = chrono::Utc::now() - chrono::Duration::minutes(20);
    let at = |s: i64| {
        (before + chrono::Duration::seconds(s)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    admin(&sim, "/admin/accounts/corp-a/activity", reqwest::Method::POST, json!({ "events": [
        { "type": "login", "at": at(0), "device": "iPhone 15 Pro", "location": "Shenzhen, CN" },
        { "type": "member-add", "at": at(1), "count": 40 },
        { "type": "login", "at": at(2), "device": format!("build-bot {}", scene.notice_secret), "location": "CI" },
    ] })).await;
    let dir = evidence_dir(&ns);
    let archive = dir.with_extension("tar.gz");
    let _ = std::fs::remove_dir_all(&dir);
    for out in [&dir, &archive] {
        oc.run(&[
            "evidence",
            "wecom",
            "-n",
            &ns,
            "--since",
            "1h",
            "-o",
            out.to_str().unwrap(),
        ])
        .await
        .expect(0, "evidence");
    }
    let layout: std::collections::BTreeSet<String> =
        EVIDENCE_FILES.iter().map(|f| f.to_string()).collect();
    assert_eq!(files_under(&dir), layout);
    let readme = read(&dir, "README.txt");
    for f in EVIDENCE_FILES.iter().filter(|f| **f != "README.txt") {
        assert!(readme.contains(f), "README explains {f}:\n{readme}");
    }
    assert!(!readme.contains("Not included"), "{readme}");
    let accounts = read(&dir, "account_info/accounts.txt");
    for needle in [
        "account id:      corp-a  (spec.primary.accountId)",
        "account id:      corp-b  (spec.standby.accountId)",
        "serves traffic:  yes (status.activeSide)",
        "IM team <im-ops@example.com>  (annotation understudy.dev/operated-by)",
    ] {
        assert!(accounts.contains(needle), "{needle:?} in:\n{accounts}");
    }
    // The provider's activity, row for row; the credential redacted.
    let activity = read(&dir, "operation_logs/primary_activity.csv");
    let rows: Vec<&str> = activity.lines().collect();
    assert_eq!(
        rows,
        [
            "time,account,side,operation,device,location,count,moderation_hits",
            &format!(
                "{},corp-a,primary,login,iPhone 15 Pro,\"Shenzhen, CN\",,",
                at(0)
            ),
            &format!("{},corp-a,primary,member-add,,,40,", at(1)),
            &format!("{},corp-a,primary,login,build-bot <redacted>,CI,,", at(2)),
        ]
    );
    assert_eq!(
        read(&dir, "operation_logs/standby_activity.csv")
            .lines()
            .count(),
        1,
        "corp-b did nothing: the header alone"
    );
    // The provider's notice verbatim, as the audit trail stored it.
    let alerts = read(&dir, "system_alert/freeze_signals.jsonl");
    let stored_notice: serde_json::Value = recs
        .iter()
        .find(|(_, r, _)| r.kind == "notice")
        .map(|(_, _, raw)| serde_json::from_slice(raw).unwrap())
        .unwrap();
    let mut exported: Vec<serde_json::Value> = alerts
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for v in &mut exported {
        v.as_object_mut().unwrap().remove("kafkaOffset");
    }
    assert!(
        exported.contains(&stored_notice),
        "the notice {stored_notice} in:\n{alerts}"
    );
    assert_eq!(stored_notice["data"]["reason"], "abnormal login");
    let timeline = read(&dir, "system_alert/timeline.txt");
    // The verdict reaches Frozen from Healthy, or through Suspect when a poll saw the
    // freeze before the notice arrived (the notice, older than that poll, is then only
    // recorded): both are in the evidence.
    for needle in ["notice", "abnormal login", " -> Frozen", "PrimaryFrozen"] {
        assert!(
            timeline.contains(needle),
            "{needle} in timeline.txt:\n{timeline}"
        );
    }
    let changes = read(&dir, "operation_logs/replicated_changes.csv");
    assert!(
        changes.lines().count() > 300,
        "the seeded entities at least: {}",
        changes.lines().count()
    );
    assert!(
        changes
            .lines()
            .any(|l| l.contains(",upsert,tag/made-on-standby,standby,corp-b,")),
        "{changes}"
    );
    let chain = read(&dir, "audit_chain/verification.txt");
    assert!(chain.contains("Result: WHOLE: "), "{chain}");
    let audit = read(&dir, "audit_chain/records.jsonl");
    assert_eq!(audit.lines().count(), recs.len());
    assert!(audit.lines().all(|l| l.contains("\"kafkaOffset\"")));
    assert!(read(&dir, "system_alert/events.txt").contains("FailoverStarted"));
    assert!(
        read(&dir, "system_alert/switchovers.yaml")
            .contains(failover.metadata.name.as_deref().unwrap())
    );
    // The archive holds the same files; no Secret value is anywhere in either.
    let unpacked = untar(&archive, &dir.with_extension("unpacked"));
    assert_eq!(files_under(&unpacked), layout);
    for f in [
        "operation_logs/primary_activity.csv",
        "system_alert/freeze_signals.jsonl",
    ] {
        assert_eq!(read(&unpacked, f), read(&dir, f), "{f}");
    }
    // The TSIG key's name and algorithm are identifiers, not credentials (the test bed's
    // key is named `understudy`, an ordinary word of the bundle).
    let secrets = secret_values(&client, &ns, &["name", "algorithm"]).await;
    assert!(
        secrets.contains(&scene.notice_secret)
            && secrets.contains(&"t0ken".to_string())
            && secrets.contains(&tb.var("TESTBED_TSIG_SECRET")),
        "the notice, provider and TSIG secrets are checked"
    );
    assert_holds_none(&dir, &secrets);
    assert_holds_none(&unpacked, &secrets);
    let _ = std::fs::remove_file(&archive);
    let _ = std::fs::remove_dir_all(dir.with_extension("unpacked"));
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("failback by hand, audit, evidence: {:?}", started.elapsed());
}

#[tokio::test]
async fn automatic_failback_after_the_hold_down() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("oncall-autofb");
    let scene = scene(&tb, &client, &sim, "e2e-oncall-autofb", fast_detection()).await;
    let ns = scene.namespace.clone();
    Api::<AccountPair>::namespaced(client.clone(), &ns)
        .patch(
            &scene.pair,
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "spec": { "failback": { "mode": "Automatic", "holdDown": "3s" } } }),
            ),
        )
        .await
        .unwrap();
    let topic = audit_topic();
    let _op = start_operator(
        &tb,
        &ns,
        "oncall-autofb",
        &["--audit-retention", "90d"],
        &[("UNDERSTUDY_AUDIT_TOPIC", topic.clone())],
    );
    wait_replicating(&client, &scene).await;
    set_status(&sim, "corp-a", "frozen", "content report").await;
    let failover = wait_switchover_finished(&client, &ns, SWITCH).await;
    assert_eq!(phase(&failover), SwitchoverPhase::Succeeded);
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.2.0.1"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        switchovers(&client, &ns).await.len(),
        1,
        "no failback while the primary is frozen"
    );

    let unfrozen = chrono::Utc::now();
    set_status(&sim, "corp-a", "active", "unfrozen").await;
    let back = wait_until(SWITCH, "the automatic failback succeeds", || async {
        switchovers(&client, &ns)
            .await
            .into_iter()
            .find(|s| s.spec.to == Side::Primary && phase(s) == SwitchoverPhase::Succeeded)
    })
    .await;
    assert_eq!(
        (back.spec.trigger, back.spec.mode),
        (Trigger::Automatic, SwitchoverMode::Planned)
    );
    let created = back
        .metadata
        .creation_timestamp
        .as_ref()
        .unwrap()
        .0
        .as_second();
    assert!(
        created - unfrozen.timestamp() >= 3,
        "not before the hold-down: {}s",
        created - unfrozen.timestamp()
    );
    let st = back.status.clone().unwrap();
    assert_eq!(st.records_lost, Some(0));
    assert!(
        st.steps
            .iter()
            .any(|s| s.name == "verify-level" && s.state == StepState::Succeeded),
        "{st:?}"
    );
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.1.0.1"]);
    assert!(haproxy_verified(&back, "primary"), "{:?}", back.status);
    assert_eq!(
        pair(&client, &scene).await.status.unwrap().active_side,
        Some(Side::Primary)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        switchovers(&client, &ns).await.len(),
        2,
        "one failover, one failback"
    );
    let oc = Oncall {
        kubeconfig: tb.var("TESTBED_KUBECONFIG").into(),
        audit_topic: topic,
    };
    let h = oc.run(&["history", "wecom", "-n", &ns]).await;
    h.expect(0, "history");
    // The switchovers among the pair's other entries (verdicts, pages), newest first.
    let lines: Vec<&str> = std::iter::once("")
        .chain(
            h.stdout
                .lines()
                .filter(|l| l.split_whitespace().nth(1) == Some("switchover")),
        )
        .collect();
    assert!(
        lines[1].contains("failback")
            && lines[1].contains("Automatic")
            && lines[1].contains("Planned"),
        "{}",
        h.stdout
    );
    assert!(lines[2].contains("Emergency"), "{}", h.stdout);
    oc.run(&["audit", "verify", "-n", &ns])
        .await
        .expect(0, "audit verify");
    let (partitions, policy, retention) =
        topic_config(&tb.var("TESTBED_KAFKA_BOOTSTRAP"), &oc.audit_topic).await;
    assert_eq!(
        (partitions, policy.as_str(), retention),
        (1, "delete", (90u64 * 24 * 3600 * 1000).to_string()),
        "--audit-retention 90d"
    );
    eprintln!("automatic failback: {:?}", started.elapsed());
}
