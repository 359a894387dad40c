//! The plugin's operations kit end to end on the test bed's real API server: shell
//! completion, `version`, the kube flags (`--as`, `--as-group`, `--request-timeout`) and
//! the support bundle (`report`). The plugin runs as a process named
//! `kubectl-understudy`; the operator "Deployment" is an object only (the test bed has
//! no kubelet), which is how a bundle must cope with logs it cannot read.

mod harness;
mod oncall_kit;
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use harness::bare_pair;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use oncall_kit::*;
use serde_json::json;
use support::{Testbed, suffix};
use understudy::api::{AccountPair, Switchover};
use understudy::cli::exit;

fn admin(tb: &Testbed) -> Oncall {
    Oncall {
        kubeconfig: tb.var("TESTBED_KUBECONFIG").into(),
        audit_topic: "unused".into(),
    }
}

/// An operator Deployment as the chart labels it (version label, image, --lease-name),
/// its Lease held by `leader`, and optionally a pod of it (whose log cannot be read: no
/// kubelet) with a literal credential in its environment.
async fn operator_objects(
    client: &kube::Client,
    ns: &str,
    lease: &str,
    leader: &str,
    env_secret: &str,
) {
    let labels =
        json!({ "app.kubernetes.io/name": "understudy", "app.kubernetes.io/instance": "e2e" });
    let d: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "understudy", "labels": {
            "app.kubernetes.io/part-of": "understudy", "app.kubernetes.io/component": "operator",
            "app.kubernetes.io/version": "9.8.7-e2e" } },
        "spec": { "selector": { "matchLabels": labels }, "template": {
            "metadata": { "labels": labels },
            "spec": { "containers": [{ "name": "operator", "image": "registry.example.test/understudy:9.8.7-e2e",
                "args": ["operator", "--leader-elect", "--lease-name", lease],
                "env": [{ "name": "KAFKA_PASSWORD", "value": env_secret }, { "name": "RUST_LOG", "value": "info" }] }] } } }
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let l: Lease = serde_json::from_value(json!({
        "metadata": { "name": lease },
        "spec": { "holderIdentity": leader, "leaseDurationSeconds": 15 }
    }))
    .unwrap();
    Api::<Lease>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &l)
        .await
        .unwrap();
    // Pods need their ServiceAccount (no controller-manager makes `default` here).
    let sa: ServiceAccount =
        serde_json::from_value(json!({ "metadata": { "name": "default" } })).unwrap();
    let _ = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await;
    let p: Pod = serde_json::from_value(json!({
        "metadata": { "name": "understudy-7d9f-e2e", "labels": labels },
        "spec": { "nodeName": "e2e-no-such-node", "automountServiceAccountToken": false,
                  "containers": [{ "name": "operator", "image": "registry.example.test/understudy:9.8.7-e2e" }] }
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &p)
        .await
        .unwrap();
}

/// The fake operator Deployment goes: other runs that look for operators in every
/// namespace should not find it.
async fn remove_operator_objects(client: &kube::Client, ns: &str) {
    let _ = Api::<Deployment>::namespaced(client.clone(), ns)
        .delete("understudy", &Default::default())
        .await;
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn yaml_list(dir: &Path, file: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::from_str(&read(dir, file)).unwrap_or_else(|e| panic!("{file} parses: {e}"))
}

#[tokio::test]
async fn completion_scripts_load_and_name_the_verbs() {
    let tb = Testbed::load();
    let oc = admin(&tb);
    for shell in ["bash", "zsh", "fish"] {
        let r = oc.run(&["completion", shell]).await;
        r.expect(0, shell);
        for verb in ["status", "switchover", "report", "version", "evidence"] {
            assert!(r.stdout.contains(verb), "{shell} names {verb}");
        }
    }
    oc.run(&["completion", "tcsh"])
        .await
        .expect(i32::from(exit::USAGE), "unknown shell");
    if std::process::Command::new("bash")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("no bash: loading the script skipped");
        return;
    }
    // What a user puts in ~/.bashrc: `source <(kubectl understudy completion bash)`.
    let exe = PLUGIN_DIR.join("kubectl-understudy");
    let program = format!(
        "source <({exe} completion bash) && complete -p kubectl-understudy && \
         f=$(complete -p kubectl-understudy | sed -E 's/.*-F ([^ ]+).*/\\1/') && \
         COMP_WORDS=(kubectl-understudy report --) && COMP_CWORD=2 && \
         \"$f\" kubectl-understudy -- report && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        exe = exe.display()
    );
    let out = std::process::Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("-F") && text.contains("kubectl-understudy"),
        "{text}"
    );
    for flag in ["--output", "--since", "--operator-namespace", "--as"] {
        assert!(
            text.lines().any(|l| l == flag),
            "report -- completes {flag}: {text}"
        );
    }
}

#[tokio::test]
async fn version_names_client_server_and_operator_and_survives_no_cluster() {
    let started = Instant::now();
    let tb = Testbed::load();
    let client = tb.kube().await;
    let ns = support::fresh_namespace(&client, "e2e-ops-version").await;
    operator_objects(
        &client,
        &ns,
        "e2e-leader",
        "understudy-7d9f-e2e",
        "unused-value",
    )
    .await;
    let oc = admin(&tb);
    let r = oc
        .run(&["version", "--operator-namespace", &ns, "-o", "json"])
        .await;
    r.expect(0, "version -o json");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    assert_eq!(v["client"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["server"]["gitVersion"], tb.var("TESTBED_KUBE_VERSION"));
    assert_eq!(v["operatorVersion"], "9.8.7-e2e");
    let op = &v["operators"][0];
    assert_eq!(op["namespace"], ns.as_str());
    assert_eq!(op["lease"], "e2e-leader");
    assert_eq!(op["leader"], "understudy-7d9f-e2e");
    assert_eq!(op["image"], "registry.example.test/understudy:9.8.7-e2e");
    let text = oc.run(&["version", "--operator-namespace", &ns]).await;
    text.expect(0, "version");
    for line in [
        format!("Client Version: {}", env!("CARGO_PKG_VERSION")),
        format!("Server Version: {}", tb.var("TESTBED_KUBE_VERSION")),
        "Operator Version: 9.8.7-e2e".to_string(),
        "leader understudy-7d9f-e2e (Lease e2e-leader)".to_string(),
    ] {
        assert!(text.stdout.contains(&line), "{line}:\n{}", text.stdout);
    }
    let empty = support::fresh_namespace(&client, "e2e-ops-noop").await;
    let none = oc.run(&["version", "--operator-namespace", &empty]).await;
    none.expect(0, "no operator");
    assert!(
        none.stdout
            .contains("Operator Version: unknown (no operator Deployment found"),
        "{}",
        none.stdout
    );

    // No cluster: a kubeconfig whose server refuses connections, and no kubeconfig.
    let text = std::fs::read_to_string(tb.var("TESTBED_KUBECONFIG")).unwrap();
    let mut cfg: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    for c in cfg["clusters"].as_sequence_mut().unwrap() {
        c["cluster"]["server"] = "https://127.0.0.1:1".into();
    }
    let dead = std::env::temp_dir().join(format!("understudy-dead-{}.kubeconfig", suffix()));
    std::fs::write(&dead, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    for kubeconfig in [dead.clone(), PathBuf::from("/nonexistent/kubeconfig")] {
        let gone = Oncall {
            kubeconfig: kubeconfig.clone(),
            audit_topic: "unused".into(),
        };
        let r = gone.run(&["version"]).await;
        r.expect(
            0,
            &format!("version without a cluster ({})", kubeconfig.display()),
        );
        assert!(
            r.stdout
                .contains(&format!("Client Version: {}", env!("CARGO_PKG_VERSION")))
        );
        assert!(
            r.stdout.contains("Server Version: unknown ("),
            "{}",
            r.stdout
        );
        let j = gone.run(&["version", "-o", "json"]).await;
        j.expect(0, "version -o json without a cluster");
        let v: serde_json::Value = serde_json::from_str(&j.stdout).expect("JSON");
        assert!(v["server"].is_null() && v["serverError"].is_string(), "{v}");
        assert!(v["operatorVersion"].is_null(), "{v}");
    }
    let _ = std::fs::remove_file(&dead);
    remove_operator_objects(&client, &ns).await;
    eprintln!("version: {:?}", started.elapsed());
}

/// With `--shards` there is no one leader: `version` says who holds how many of the shard
/// Leases (their set is labelled with the `--lease-name`), in JSON and in text, and the
/// support bundle holds those Leases.
#[tokio::test]
async fn version_of_a_sharded_operator_counts_the_shards_each_replica_holds() {
    let tb = Testbed::load();
    let client = tb.kube().await;
    let ns = support::fresh_namespace(&client, "e2e-ops-shards").await;
    let labels = json!({ "app.kubernetes.io/name": "understudy", "app.kubernetes.io/instance": "e2e-shards" });
    let d: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "understudy", "labels": {
            "app.kubernetes.io/part-of": "understudy", "app.kubernetes.io/component": "operator",
            "app.kubernetes.io/version": "9.8.7-e2e" } },
        "spec": { "replicas": 3, "selector": { "matchLabels": labels }, "template": {
            "metadata": { "labels": labels },
            "spec": { "containers": [{ "name": "operator", "image": "registry.example.test/understudy:9.8.7-e2e",
                "args": ["operator", "--leader-elect", "--lease-name", "e2e-set", "--shards", "4"] }] } } }
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let leases = Api::<Lease>::namespaced(client.clone(), &ns);
    for (shard, holder) in [(0, "op-b"), (1, "op-a"), (2, "op-b"), (3, "")] {
        let l: Lease = serde_json::from_value(json!({
            "metadata": { "name": understudy::controller::shards::lease_name("e2e-set", shard),
                "labels": { "understudy.dev/lease-set": "e2e-set", "understudy.dev/shard": shard.to_string() } },
            "spec": { "holderIdentity": holder, "leaseDurationSeconds": 15 }
        }))
        .unwrap();
        leases.create(&PostParams::default(), &l).await.unwrap();
    }
    let oc = admin(&tb);
    let r = oc
        .run(&["version", "--operator-namespace", &ns, "-o", "json"])
        .await;
    r.expect(0, "version -o json");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    let op = &v["operators"][0];
    assert_eq!(op["lease"], "e2e-set");
    assert_eq!(op["leader"], serde_json::Value::Null);
    assert_eq!(op["shards"], 4);
    assert_eq!(
        op["shardHolders"],
        json!([{ "identity": "op-b", "shards": 2 }, { "identity": "op-a", "shards": 1 }])
    );
    let text = oc.run(&["version", "--operator-namespace", &ns]).await;
    text.expect(0, "version");
    let line = "shards held op-b 2, op-a 1 of 4 (Leases e2e-set-shard-*)";
    assert!(text.stdout.contains(line), "{line}:\n{}", text.stdout);
    // The support bundle holds the shard Leases (their names do not start with the
    // release's: they are found by their label).
    let dir = std::env::temp_dir().join(format!("understudy-report-{ns}"));
    let _ = std::fs::remove_dir_all(&dir);
    oc.run(&[
        "report",
        "-n",
        &ns,
        "--operator-namespace",
        &ns,
        "-o",
        dir.to_str().unwrap(),
    ])
    .await
    .expect(0, "report");
    let mut names: Vec<String> = yaml_list(&dir, "leases.yaml")
        .iter()
        .filter_map(|l| l["metadata"]["name"].as_str().map(String::from))
        .collect();
    names.sort();
    assert_eq!(
        names,
        (0..4)
            .map(|s| understudy::controller::shards::lease_name("e2e-set", s))
            .collect::<Vec<_>>()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn impersonation_reaches_the_api_server_and_a_user_without_rights_changes_nothing() {
    let started = Instant::now();
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let ns = support::fresh_namespace(&client, "e2e-ops-as").await;
    bare_pair(&tb, &client, &ns).await;
    let oc = admin(&tb);
    let n = ["-n", ns.as_str()];
    let with_ns = |args: &[&str]| -> Vec<String> {
        args.iter().chain(n.iter()).map(|s| s.to_string()).collect()
    };
    let run = |args: Vec<String>| {
        let oc = oc.clone();
        async move {
            oc.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
                .await
        }
    };
    run(with_ns(&["status", "wecom"]))
        .await
        .expect(0, "status as admin");

    // A user without any role: refused by the API server, said so, nothing changed.
    let r = run(with_ns(&[
        "pause",
        "wecom",
        "--reason",
        "x",
        "--yes",
        "--as",
        "e2e-nobody",
    ]))
    .await;
    r.expect(i32::from(exit::FAILED), "pause as a user without rights");
    assert!(
        r.stderr.contains("forbidden") && r.stderr.contains("e2e-nobody"),
        "{}",
        r.stderr
    );
    let p = Api::<AccountPair>::namespaced(client.clone(), &ns)
        .get("wecom")
        .await
        .unwrap();
    assert!(!p.spec.paused, "the pair is not paused");
    run(with_ns(&["status", "wecom", "--as", "e2e-nobody"]))
        .await
        .expect(i32::from(exit::FAILED), "status as nobody");
    // The group is sent too: the same user in system:masters may read the pair.
    run(with_ns(&[
        "status",
        "wecom",
        "--as",
        "e2e-nobody",
        "--as-group",
        "system:masters",
    ]))
    .await
    .expect(0, "status as nobody in system:masters");
    let r = run(with_ns(&[
        "status",
        "wecom",
        "--as-group",
        "system:masters",
    ]))
    .await;
    r.expect(i32::from(exit::USAGE), "--as-group alone");
    assert!(r.stderr.contains("--as-group needs --as"), "{}", r.stderr);

    // --request-timeout: parsed, and a server that never answers is given up on.
    let r = run(with_ns(&["status", "--request-timeout", "soon"])).await;
    r.expect(i32::from(exit::USAGE), "a bad --request-timeout");
    assert!(r.stderr.contains("not a duration"), "{}", r.stderr);
    run(with_ns(&["status", "wecom", "--request-timeout", "30s"]))
        .await
        .expect(0, "status with a request timeout");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let held = std::thread::spawn(move || {
        // Accept and hold connections without a byte of answer.
        let mut open = Vec::new();
        for s in silent.incoming().take(8) {
            open.push(s);
        }
    });
    let text = std::fs::read_to_string(tb.var("TESTBED_KUBECONFIG")).unwrap();
    let mut cfg: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    for c in cfg["clusters"].as_sequence_mut().unwrap() {
        c["cluster"]["server"] = format!("https://{addr}").into();
    }
    let mute = std::env::temp_dir().join(format!("understudy-mute-{}.kubeconfig", suffix()));
    std::fs::write(&mute, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    let stuck = Oncall {
        kubeconfig: mute.clone(),
        audit_topic: "unused".into(),
    };
    let t = Instant::now();
    let r = stuck
        .run(&["status", "-n", &ns, "--request-timeout", "2s"])
        .await;
    let took = t.elapsed();
    r.expect(i32::from(exit::FAILED), "a server that does not answer");
    // Without the flag the client waits 30 s to connect; with it, the 2 s asked.
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "given up after {took:?}: {}",
        r.stderr
    );
    drop(held);
    let _ = std::fs::remove_file(&mute);
    eprintln!("impersonation and timeouts: {:?}", started.elapsed());
}

#[tokio::test]
async fn report_bundles_the_namespace_and_never_a_secret_value() {
    let started = Instant::now();
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let ns = support::fresh_namespace(&client, "e2e-ops-report").await;
    bare_pair(&tb, &client, &ns).await;
    let s = suffix();
    let secret_value = format!("Sup3r-{s}-v4lue");
    let env_value = format!("Env-{s}-pass");
    let shaped = format!("Tok{s}x9q");
    harness::create_secret(
        &client,
        &ns,
        "kafka-sasl",
        json!({ "sasl.password": secret_value }),
    )
    .await;
    operator_objects(
        &client,
        &ns,
        "understudy-leader",
        "understudy-7d9f-e2e",
        &env_value,
    )
    .await;
    // The Secret's value pasted where a bundle looks: a switchover's reason, an
    // annotation of the pair, an Event's note; and a token-shaped one that is in no Secret.
    let so: Switchover = serde_json::from_value(json!({
        "apiVersion": "understudy.dev/v1alpha1", "kind": "Switchover",
        "metadata": { "name": "wecom-switchover-e2e" },
        "spec": { "pair": "wecom", "to": "Standby", "mode": "Planned", "trigger": "Manual",
                  "reason": format!("provider maintenance; kafka password is {secret_value}") }
    }))
    .unwrap();
    Api::<Switchover>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &so)
        .await
        .unwrap();
    Api::<AccountPair>::namespaced(client.clone(), &ns)
        .patch(
            "wecom",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "annotations": {
                "example.test/note": format!("rotated to {secret_value}; vault token={shaped}") } } })),
        )
        .await
        .unwrap();
    let ev: Event = serde_json::from_value(json!({
        "metadata": { "name": format!("wecom.e2e-{s}") },
        "eventTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "reportingController": "example.test/e2e", "reportingInstance": "e2e",
        "action": "Probe", "reason": "E2EProbe", "type": "Warning",
        "regarding": { "apiVersion": "understudy.dev/v1alpha1", "kind": "AccountPair", "name": "wecom", "namespace": ns },
        "note": format!("login with {secret_value} failed")
    }))
    .unwrap();
    Api::<Event>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &ev)
        .await
        .unwrap();

    let oc = admin(&tb);
    let dir = std::env::temp_dir().join(format!("understudy-report-{ns}"));
    let _ = std::fs::remove_dir_all(&dir);
    let r = oc
        .run(&[
            "report",
            "-n",
            &ns,
            "--operator-namespace",
            &ns,
            "-o",
            dir.to_str().unwrap(),
        ])
        .await;
    r.expect(0, "report to a directory");
    assert!(
        r.stdout.contains("see README.txt"),
        "the missing log is pointed at: {}",
        r.stdout
    );
    check_bundle(&dir, &ns, &[&secret_value, &env_value, &shaped]);

    // The archive form holds the same files under one top directory.
    let archive = std::env::temp_dir().join(format!("understudy-report-{ns}.tar.gz"));
    oc.run(&[
        "report",
        "-n",
        &ns,
        "--operator-namespace",
        &ns,
        "-o",
        archive.to_str().unwrap(),
    ])
    .await
    .expect(0, "report to an archive");
    let out = std::env::temp_dir().join(format!("understudy-report-{ns}-x"));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let tar = std::process::Command::new("tar")
        .args([
            "-xzf",
            archive.to_str().unwrap(),
            "-C",
            out.to_str().unwrap(),
        ])
        .output()
        .expect("tar");
    assert!(
        tar.status.success(),
        "tar -xzf: {}",
        String::from_utf8_lossy(&tar.stderr)
    );
    let root = out.join(format!("understudy-report-{ns}"));
    check_bundle(&root, &ns, &[&secret_value, &env_value, &shaped]);
    let names = |d: &Path| -> Vec<String> {
        files_under(d)
            .iter()
            .map(|p| p.strip_prefix(d).unwrap().display().to_string())
            .collect()
    };
    assert_eq!(
        names(&dir),
        names(&root),
        "the directory and the archive hold the same files"
    );
    for p in [&dir, &out] {
        let _ = std::fs::remove_dir_all(p);
    }
    let _ = std::fs::remove_file(&archive);
    remove_operator_objects(&client, &ns).await;
    eprintln!("report: {:?}", started.elapsed());
}

/// Every file exists and parses, README.txt lists them all, and none holds a secret.
fn check_bundle(dir: &Path, ns: &str, secrets: &[&str]) {
    let v: serde_json::Value =
        serde_json::from_str(&read(dir, "versions.json")).expect("versions.json");
    assert_eq!(v["operatorVersion"], "9.8.7-e2e");
    let pairs = yaml_list(dir, "accountpairs.yaml");
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0]["metadata"]["name"].as_str(), Some("wecom"));
    let sos = yaml_list(dir, "switchovers.yaml");
    assert_eq!(sos.len(), 1);
    let reason = sos[0]["spec"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("provider maintenance") && reason.contains("<redacted>"),
        "{reason}"
    );
    assert!(yaml_list(dir, "drills.yaml").is_empty());
    let leases = yaml_list(dir, "leases.yaml");
    assert!(
        leases
            .iter()
            .any(|l| l["spec"]["holderIdentity"].as_str() == Some("understudy-7d9f-e2e")),
        "{leases:?}"
    );
    let events = yaml_list(dir, "events.yaml");
    assert!(
        events
            .iter()
            .any(|e| e["reason"].as_str() == Some("E2EProbe")),
        "{events:?}"
    );
    let deployments = yaml_list(dir, "operator/deployments.yaml");
    assert_eq!(deployments.len(), 1);
    let readme = read(dir, "README.txt");
    for f in files_under(dir) {
        let name = f.strip_prefix(dir).unwrap().display().to_string();
        assert!(
            readme.lines().any(|l| l.starts_with(&name)),
            "README.txt lists {name}:\n{readme}"
        );
        let bytes = std::fs::read(&f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("kind: Secret"),
            "{name} holds a Secret object"
        );
        for s in secrets {
            let b64 = base64::engine::general_purpose::STANDARD.encode(s);
            assert!(
                !text.contains(s) && !text.contains(&b64),
                "{name} holds {s}:\n{text}"
            );
        }
    }
    assert!(
        readme.contains("Not included")
            && readme.contains(&format!(
                "operator log of {ns}/understudy-7d9f-e2e container operator"
            )),
        "{readme}"
    );
    assert!(
        readme.contains(&format!("every Secret in namespace(s) {ns}")),
        "{readme}"
    );
}
