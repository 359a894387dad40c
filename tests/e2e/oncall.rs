//! The on-call engineer's `kubectl understudy`, end to end on the real test bed: the
//! plugin runs as a process named `kubectl-understudy`; the operator and the simulator
//! run as processes; the API server, Kafka, BIND and HAProxy are real.

mod harness;
mod oncall_failback;
mod oncall_kit;
mod oncall_pause;
mod oncall_people;
mod support;

use std::time::{Duration, Instant};

use harness::*;
use kube::api::Api;
use oncall_kit::*;
use serde_json::json;
use support::{Testbed, wait_until};
use understudy::api::switchover::{SwitchoverMode, Trigger};
use understudy::api::{AccountPair, Side};
use understudy::cli::exit;
use understudy::provider::AccountProvider;

fn admin_oncall(tb: &Testbed, topic: &str) -> Oncall {
    Oncall {
        kubeconfig: tb.var("TESTBED_KUBECONFIG").into(),
        audit_topic: topic.to_string(),
    }
}

fn code(c: u8) -> i32 {
    i32::from(c)
}

async fn head(sim: &Proc, account: &str) -> u64 {
    let p =
        understudy::provider::http::HttpProvider::new(&sim.url, account, Some("t0ken")).unwrap();
    p.head_cursor().await.unwrap().parse().unwrap()
}

#[tokio::test]
async fn help_explains_every_verb_with_an_example_and_the_exit_codes() {
    let started = Instant::now();
    let tb = Testbed::load();
    let oc = admin_oncall(&tb, "unused");
    let top = oc.run(&["--help"]).await;
    top.expect(0, "--help");
    for verb in [
        "status",
        "switchover",
        "failback",
        "cancel",
        "pause",
        "resume",
        "history",
        "evidence",
        "audit",
    ] {
        assert!(top.stdout.contains(verb), "{verb} listed:\n{}", top.stdout);
        let args: Vec<&str> = if verb == "audit" {
            vec!["audit", "verify", "--help"]
        } else {
            vec![verb, "--help"]
        };
        let h = oc.run(&args).await;
        h.expect(0, &format!("{verb} --help"));
        assert!(
            h.stdout.contains("Example: kubectl understudy"),
            "{verb}:\n{}",
            h.stdout
        );
    }
    for line in [
        "0  done",
        "1  failed",
        "2  wrong or refused input",
        "3  not found",
        "4  conflict",
    ] {
        assert!(top.stdout.contains(line), "exit code {line:?} documented");
    }
    // The real plugin path: kubectl finds `kubectl-understudy` on PATH.
    let path = format!(
        "{}:{}",
        PLUGIN_DIR.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new(tb.var("TESTBED_KUBECTL"))
        .args(["understudy", "--help"])
        .env("PATH", path)
        .output()
        .expect("kubectl understudy");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Exit codes"));
    eprintln!("help: {:?}", started.elapsed());
}

#[tokio::test]
async fn wrong_input_is_refused_with_a_clear_message_and_changes_nothing() {
    let started = Instant::now();
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let ns = support::fresh_namespace(&client, "e2e-oncall-refuse").await;
    bare_pair(&tb, &client, &ns).await;
    let oc = admin_oncall(&tb, &audit_topic());
    let n = ["-n", ns.as_str()];
    let run = |args: Vec<&str>| {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(n.iter().map(|s| s.to_string()));
        let oc = oc.clone();
        async move {
            oc.run(&all.iter().map(String::as_str).collect::<Vec<_>>())
                .await
        }
    };

    // Unknown pair / switchover: 3, naming what is missing and where.
    for args in [
        vec!["status", "nope"],
        vec![
            "switchover",
            "nope",
            "--to",
            "standby",
            "--reason",
            "x",
            "--yes",
        ],
        vec!["failback", "nope", "--reason", "x", "--yes"],
        vec!["pause", "nope", "--reason", "x", "--yes"],
        vec!["history", "nope"],
        vec!["cancel", "nope-switchover-x", "--yes"],
    ] {
        let r = run(args.clone()).await;
        r.expect(code(exit::NOT_FOUND), &format!("{args:?}"));
        assert!(
            r.stderr.contains("\"nope") && r.stderr.contains(&ns),
            "{args:?}: {}",
            r.stderr
        );
    }
    // A reason is required: missing (clap) or blank.
    let r = run(vec!["switchover", "wecom", "--to", "standby", "--yes"]).await;
    r.expect(code(exit::USAGE), "no --reason");
    assert!(r.stderr.contains("--reason"), "{}", r.stderr);
    let r = run(vec![
        "switchover",
        "wecom",
        "--to",
        "standby",
        "--reason",
        " ",
        "--yes",
    ])
    .await;
    r.expect(code(exit::USAGE), "blank reason");
    assert!(r.stderr.contains("reason is required"), "{}", r.stderr);
    run(vec!["pause", "wecom", "--yes"])
        .await
        .expect(code(exit::USAGE), "pause without reason");
    // The side already active; a failback while the primary is active.
    let r = run(vec![
        "switchover",
        "wecom",
        "--to",
        "primary",
        "--reason",
        "x",
        "--yes",
    ])
    .await;
    r.expect(code(exit::USAGE), "to the active side");
    assert!(
        r.stderr
            .contains("primary is already the active side of wecom"),
        "{}",
        r.stderr
    );
    let r = run(vec!["failback", "wecom", "--reason", "x", "--yes"]).await;
    r.expect(code(exit::USAGE), "failback on the primary");
    assert!(r.stderr.contains("nothing to fail back"));
    // Nonsense values.
    run(vec![
        "switchover",
        "wecom",
        "--to",
        "sideways",
        "--reason",
        "x",
        "--yes",
    ])
    .await
    .expect(code(exit::USAGE), "bad side");
    let r = run(vec![
        "switchover",
        "wecom",
        "--to",
        "standby",
        "--reason",
        "x",
        "--at",
        "soon",
        "--yes",
    ])
    .await;
    r.expect(code(exit::USAGE), "bad --at");
    assert!(r.stderr.contains("RFC 3339"));
    // A time in the past would run at once: refused, for a failback too.
    let an_hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for verb in [
        vec!["switchover", "wecom", "--to", "standby"],
        vec!["failback", "wecom"],
    ] {
        let mut args = verb.clone();
        args.extend(["--reason", "x", "--at", &an_hour_ago, "--yes"]);
        let r = run(args).await;
        r.expect(code(exit::USAGE), &format!("{verb:?} --at in the past"));
        assert!(
            r.stderr
                .contains(&format!("--at {an_hour_ago} is in the past (now is "))
                && r.stderr.contains("nothing was created"),
            "{}",
            r.stderr
        );
    }
    // No terminal and no --yes: refused.
    let r = run(vec![
        "switchover",
        "wecom",
        "--to",
        "standby",
        "--reason",
        "x",
    ])
    .await;
    r.expect(code(exit::USAGE), "no terminal, no --yes");
    assert!(r.stderr.contains("pass --yes"), "{}", r.stderr);
    run(vec!["pause", "wecom", "--reason", "x"])
        .await
        .expect(code(exit::USAGE), "pause, no --yes");

    // --kubeconfig wins over $KUBECONFIG.
    let elsewhere = Oncall {
        kubeconfig: "/nonexistent/kubeconfig".into(),
        audit_topic: oc.audit_topic.clone(),
    };
    let r = elsewhere.run(&["status", "wecom", "-n", &ns]).await;
    assert_ne!(r.code, 0, "a missing kubeconfig is an error: {}", r.text());
    let path = tb.var("TESTBED_KUBECONFIG");
    elsewhere
        .run(&["status", "wecom", "-n", &ns, "--kubeconfig", &path])
        .await
        .expect(0, "status with --kubeconfig");

    // Nothing changed.
    assert!(
        switchovers(&client, &ns).await.is_empty(),
        "no Switchover created"
    );
    let p = Api::<AccountPair>::namespaced(client.clone(), &ns)
        .get("wecom")
        .await
        .unwrap();
    assert!(!p.spec.paused);
    assert_eq!(p.metadata.generation, Some(1), "the pair is untouched");
    eprintln!("wrong input: {:?}", started.elapsed());
}

#[tokio::test]
async fn planned_switchover_under_load_loses_nothing_and_an_uneven_primary_blocks_the_failback() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("oncall-load");
    let scene = scene(&tb, &client, &sim, "e2e-oncall-load", fast_detection()).await;
    let topic = audit_topic();
    let _op = start_operator(
        &tb,
        &scene.namespace,
        "oncall-load",
        &[],
        &[("UNDERSTUDY_AUDIT_TOPIC", topic.clone())],
    );
    wait_replicating(&client, &scene).await;
    let ns = scene.namespace.clone();
    // The kubeconfig's context namespace is used when -n is not given.
    let oc = Oncall {
        kubeconfig: kubeconfig_in_namespace(&tb, &ns),
        audit_topic: topic.clone(),
    };

    let st = oc.run(&["status"]).await;
    st.expect(0, "status");
    assert!(
        st.stdout.contains("wecom") && st.stdout.contains("Healthy (corp-a)"),
        "{}",
        st.stdout
    );
    let js = oc.run(&["status", "wecom", "-o", "json"]).await;
    js.expect(0, "status -o json");
    let rows: serde_json::Value = serde_json::from_str(&js.stdout).unwrap();
    assert_eq!(rows[0]["active"], "primary");

    // A dry run prints the plan and every gate's verdict, and changes nothing.
    let dry = oc
        .run(&[
            "switchover",
            "wecom",
            "--to",
            "standby",
            "--reason",
            "check before maintenance",
            "--dry-run",
        ])
        .await;
    dry.expect(0, "dry run");
    for needle in [
        "precheck → fence → drain",
        "target-healthy: pass",
        "lag: pass",
        "nothing was changed",
    ] {
        assert!(dry.stdout.contains(needle), "{needle}:\n{}", dry.stdout);
    }
    // Each gate is skipped only by its own flag, and the skip is recorded.
    let forced = oc
        .run(&[
            "switchover",
            "wecom",
            "--to",
            "standby",
            "--reason",
            "forced check",
            "--dry-run",
            "--force-skip-lag-gate",
            "-o",
            "json",
        ])
        .await;
    forced.expect(0, "dry run with a forced gate");
    assert!(
        forced.stderr.contains("SKIPPED by --force-skip-lag-gate"),
        "{}",
        forced.stderr
    );
    let so: understudy::api::Switchover = serde_json::from_str(&forced.stdout).unwrap();
    let force = so.spec.force.clone().unwrap();
    assert!(
        force.skip_lag_gate && !force.skip_standby_health,
        "{force:?}"
    );
    assert!(so.spec.dry_run);
    let recs = audit_records(&tb.var("TESTBED_KAFKA_BOOTSTRAP"), &topic).await;
    assert!(
        recs.iter().any(|(_, r, _)| r.kind == "switchover.created"
            && r.data["spec"]["force"]["skipLagGate"] == json!(true)
            && r.data["name"] == json!(so.metadata.name)),
        "the forced gate is in the audit trail"
    );
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.1.0.1"]);
    assert_eq!(
        pair(&client, &scene).await.status.unwrap().active_side,
        Some(Side::Primary)
    );

    // At rest both accounts are equal; remember where the primary's feed is.
    let base = read_all(&sim, "corp-a").await;
    wait_until(
        Duration::from_secs(30),
        "the standby equals the primary at rest",
        || async { (read_all(&sim, "corp-b").await == base).then_some(()) },
    )
    .await;
    let from = head(&sim, "corp-a").await;
    admin(
        &sim,
        "/admin/accounts/corp-a/load",
        reqwest::Method::POST,
        json!({ "rate": 400, "durationSecs": 120, "seed": 11 }),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let requested_at = head(&sim, "corp-a").await;
    assert!(requested_at > from + 100, "the load is running");

    let t0 = Instant::now();
    let sw = oc
        .run(&[
            "switchover",
            "wecom",
            "--to",
            "standby",
            "--reason",
            "provider maintenance window",
            "--yes",
            "--wait",
        ])
        .await;
    let took = t0.elapsed();
    sw.expect(0, "planned switchover under load");
    for needle in [
        "precheck      Succeeded",
        "drain         Succeeded — every change the feed delivered was acknowledged by Kafka and applied (recordsLost 0)",
        "flip-dns      Succeeded",
        "Succeeded, recordsLost 0",
    ] {
        assert!(sw.stdout.contains(needle), "{needle}:\n{}", sw.stdout);
    }
    let load = admin(
        &sim,
        "/admin/accounts/corp-a/load",
        reqwest::Method::GET,
        json!({}),
    )
    .await;
    assert_eq!(
        load["running"],
        json!(true),
        "the load ran through the whole switchover"
    );
    admin(
        &sim,
        "/admin/accounts/corp-a/load",
        reqwest::Method::DELETE,
        json!({}),
    )
    .await;

    let sos = switchovers(&client, &ns).await;
    let so = sos
        .iter()
        .find(|s| !s.spec.dry_run)
        .expect("the switchover");
    assert_eq!(
        (so.spec.mode, so.spec.trigger),
        (SwitchoverMode::Planned, Trigger::Manual)
    );
    let by = so.spec.requested_by.clone().unwrap_or_default();
    assert!(
        !by.is_empty() && by != "unknown",
        "requestedBy from SelfSubjectReview: {by}"
    );
    assert_eq!(so.status.as_ref().unwrap().records_lost, Some(0));
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.2.0.1"]);
    assert!(haproxy_verified(so, "standby"), "{:?}", so.status);
    assert_eq!(service_selector(&client, &scene).await, "wecom-standby");
    assert_eq!(
        pair(&client, &scene).await.status.unwrap().active_side,
        Some(Side::Standby)
    );

    // Nothing acknowledged was lost: the standby is exactly the primary's state at one
    // point of its feed at or after the moment the switchover was asked for.
    let standby = read_all(&sim, "corp-b").await;
    let point = first_equal_point(&sim, "corp-a", &base, from, requested_at, &standby).await;
    let point = point.expect(
        "the standby equals the primary's state at a feed position at or after the request",
    );
    let after = head(&sim, "corp-a").await;
    eprintln!(
        "standby = primary at feed {point} (request at {requested_at}, load ended at {after}); switchover {took:?}"
    );

    // History: newest first, with trigger, result, loss and duration (the switchovers
    // among the pair's other entries: verdicts, drills, pauses).
    let h = oc.run(&["history", "wecom"]).await;
    h.expect(0, "history");
    assert!(h.stdout.starts_with("TIME"), "{}", h.stdout);
    let lines: Vec<&str> = std::iter::once("")
        .chain(
            h.stdout
                .lines()
                .filter(|l| l.split_whitespace().nth(1) == Some("switchover")),
        )
        .collect();
    assert!(lines.len() == 4, "{}", h.stdout);
    assert!(
        lines[1].contains("Manual") && lines[1].contains("Succeeded") && lines[1].contains(" 0 "),
        "{}",
        h.stdout
    );
    assert!(
        lines[2].contains("(dry run)") && lines[3].contains("(dry run)"),
        "{}",
        h.stdout
    );

    // Someone wrote to the old primary after the flip: it is not level, so a failback
    // must not return traffic to it.
    let now_a = read_all(&sim, "corp-a").await.len();
    let now_b = read_all(&sim, "corp-b").await.len();
    if now_a == now_b {
        let p = understudy::provider::http::HttpProvider::new(&sim.url, "corp-a", Some("t0ken"))
            .unwrap();
        let key = understudy::model::EntityKey::new(
            understudy::model::EntityKind::Tag,
            "written-after-the-flip",
        )
        .unwrap();
        p.put_entity(
            &understudy::model::Entity::new(key, json!({ "name": "stray" })),
            None,
        )
        .await
        .unwrap();
    }
    let fb = oc
        .run(&[
            "failback",
            "wecom",
            "--reason",
            "back after maintenance",
            "--yes",
            "--wait",
        ])
        .await;
    fb.expect(code(exit::FAILED), "failback to an uneven primary");
    assert!(
        fb.says("verify-level  Failed") && fb.says("not level"),
        "{}",
        fb.text()
    );
    assert_eq!(
        dig(&tb, &scene.dns_name),
        vec!["10.2.0.1"],
        "traffic stays on the standby"
    );
    assert!(
        !fb.says("flip-lb       Succeeded"),
        "the load balancers were not touched"
    );
    wait_until(
        Duration::from_secs(30),
        "the pair replicates again, not moving",
        || async {
            let st = pair(&client, &scene).await.status?;
            (st.target_side.is_none()
                && st
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Replicating" && c.status == "True"))
            .then_some(())
        },
    )
    .await;
    let v = oc.run(&["audit", "verify"]).await;
    v.expect(0, "audit verify");
    let bootstrap = tb.var("TESTBED_KAFKA_BOOTSTRAP");
    assert_eq!(
        topic_config(&bootstrap, &topic).await,
        (
            1,
            "delete".to_string(),
            (730u64 * 24 * 3600 * 1000).to_string()
        ),
        "one partition, deleted by age after 730 days"
    );
    assert!(v.stdout.contains("audit chain whole"), "{}", v.stdout);
    eprintln!("planned switchover under load: {:?}", started.elapsed());
}
