//! The audit trail on a secured Kafka: the test bed broker's SASL_PLAINTEXT listener
//! (mechanism PLAIN, one user). The operator's writer ([`AuditSink`]) runs in process;
//! `kubectl understudy audit verify` and `evidence` run as the plugin process with the
//! pair's `spec.replication.kafka.secretRef` Secret, as on-call engineers run them.

mod harness;
mod oncall_kit;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use oncall_kit::*;
use serde_json::json;
use support::{Testbed, wait_until};
use understudy::api::AccountPair;
use understudy::audit::{
    AuditKafka, AuditRecord, AuditSettings, AuditSink, AuditTarget, DEFAULT_RETENTION, kind,
};
use understudy::cli::exit;

const PAIR: &str = "wecom";
const SECRET: &str = "kafka-sasl";
const WRONG_PASSWORD: &str = "not-the-password-31337";

fn properties(tb: &Testbed, password: &str) -> BTreeMap<String, String> {
    [
        ("security.protocol", "SASL_PLAINTEXT".to_string()),
        ("sasl.mechanism", tb.var("TESTBED_KAFKA_SASL_MECHANISM")),
        ("sasl.username", tb.var("TESTBED_KAFKA_SASL_USER")),
        ("sasl.password", password.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn sasl(tb: &Testbed, password: &str) -> AuditKafka {
    AuditKafka::new(
        tb.var("TESTBED_KAFKA_SASL_BOOTSTRAP"),
        properties(tb, password),
    )
}

/// The pair's Kafka Secret with `password`, created or replaced.
async fn put_secret(tb: &Testbed, client: &Client, ns: &str, password: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": SECRET },
        "stringData": properties(tb, password),
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            SECRET,
            &PatchParams::apply("understudy-e2e").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("apply the Kafka Secret");
}

/// A pair (no operator) whose Kafka is the SASL listener, with the Secret.
async fn secured_pair(tb: &Testbed, client: &Client, ns: &str, password: &str) {
    put_secret(tb, client, ns, password).await;
    let ap: AccountPair = serde_json::from_value(json!({
        "apiVersion": "understudy.dev/v1alpha1", "kind": "AccountPair",
        "metadata": { "name": PAIR },
        "spec": {
            "primary": { "endpoint": "http://127.0.0.1:9", "accountId": "corp-a", "credentialsSecretRef": { "name": "token" } },
            "standby": { "endpoint": "http://127.0.0.1:9", "accountId": "corp-b", "credentialsSecretRef": { "name": "token" } },
            "replication": { "kafka": {
                "bootstrapServers": tb.var("TESTBED_KAFKA_SASL_BOOTSTRAP"),
                "secretRef": { "name": SECRET }
            } }
        }
    }))
    .expect("pair");
    Api::<AccountPair>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &ap)
        .await
        .expect("create the pair");
}

/// Every committed record of `topic`, read through the SASL listener (none while the
/// topic does not exist).
async fn records(kafka: &AuditKafka, topic: &str) -> Vec<AuditRecord> {
    let t = AuditTarget::with_kafka(kafka, topic, DEFAULT_RETENTION);
    tokio::task::spawn_blocking(move || {
        let low = match understudy::audit::kafka::watermarks_blocking(&t) {
            Ok((low, _)) => low,
            Err(e) if e.is_missing_topic() => return Vec::new(),
            Err(e) => panic!("reading {}: {e}", t.topic),
        };
        let mut out = Vec::new();
        understudy::audit::kafka::scan_blocking(&t, low, |_, bytes| {
            out.push(serde_json::from_slice(bytes).expect("an audit record"));
            true
        })
        .expect("scan the audit topic");
        out
    })
    .await
    .expect("scan task")
}

/// A metric's value for the pair, from the process's registry (0 when absent).
fn metric(name: &str, ns: &str) -> f64 {
    let prefix = format!("{name}{{namespace=\"{ns}\",pair=\"{PAIR}\"}} ");
    understudy::metrics::metrics()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn sink(topic: &str, stall_after: Duration) -> AuditSink {
    AuditSink::new(AuditSettings {
        topic: topic.to_string(),
        actor: "understudy/e2e".into(),
        stall_after,
        ..AuditSettings::default()
    })
}

#[tokio::test]
async fn records_written_through_the_sasl_listener_are_verified_with_the_pairs_secret() {
    let tb = Testbed::load();
    let password = tb.var("TESTBED_KAFKA_SASL_PASSWORD");
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let ns = support::fresh_namespace(&client, "e2e-audit-sasl").await;
    secured_pair(&tb, &client, &ns, &password).await;
    let topic = audit_topic();

    let s = sink(&topic, Duration::from_secs(10));
    for n in 0..3 {
        s.record_to(
            &sasl(&tb, &password),
            kind::VERDICT,
            &ns,
            PAIR,
            json!({ "side": "primary", "n": n }),
        );
    }
    let kafka = sasl(&tb, &password);
    wait_until(Duration::from_secs(60), "3 records on the topic", || {
        let (kafka, topic) = (kafka.clone(), topic.clone());
        async move { (records(&kafka, &topic).await.len() == 3).then_some(()) }
    })
    .await;
    assert_eq!(s.problem(&ns, PAIR), None);
    assert_eq!(metric("understudy_audit_waiting_records", &ns), 0.0);
    assert_eq!(metric("understudy_audit_written_records_total", &ns), 3.0);

    // The plugin finds the Kafka and its credentials through the pair.
    let oc = Oncall {
        kubeconfig: kubeconfig_in_namespace(&tb, &ns),
        audit_topic: topic.clone(),
    };
    let v = oc.run(&["audit", "verify", "--pair", PAIR]).await;
    v.expect(i32::from(exit::OK), "audit verify --pair");
    assert!(
        v.stdout.contains("audit chain whole: 3 records")
            && v.stdout.contains(&tb.var("TESTBED_KAFKA_SASL_BOOTSTRAP")),
        "{}",
        v.text()
    );
    oc.run(&["audit", "verify"])
        .await
        .expect(i32::from(exit::OK), "audit verify (the namespace's pair)");

    let dir = evidence_dir(&ns);
    let _ = std::fs::remove_dir_all(&dir);
    let dir_s = dir.display().to_string();
    let e = oc
        .run(&["evidence", PAIR, "--since", "1h", "-o", &dir_s])
        .await;
    e.expect(i32::from(exit::OK), "evidence");
    assert_eq!(
        read(&dir, "audit_chain/records.jsonl").lines().count(),
        3,
        "{}",
        e.text()
    );
    let chain = read(&dir, "audit_chain/verification.txt");
    assert!(
        chain.contains("Result: WHOLE: 3 records")
            && chain.contains(&tb.var("TESTBED_KAFKA_SASL_BOOTSTRAP")),
        "{chain}"
    );
    // What needs the pair's other Secrets or its provider is left out and said; the
    // audit trail is not among it.
    let readme = read(&dir, "README.txt");
    let missing = readme.split("\nNot included\n").nth(1).unwrap_or_default();
    assert!(
        !missing.contains("audit_chain/") && !missing.contains("freeze_signals"),
        "{readme}"
    );
    assert!(
        missing.contains(
            "operation_logs/primary_activity.csv: cannot reach the primary account's provider"
        ) && missing.contains("token"),
        "{readme}"
    );
    // The SASL password the export read to reach Kafka is nowhere in the bundle; the
    // user name (`understudy`, an ordinary word of the bundle) is not a credential.
    assert_holds_none(&dir, std::slice::from_ref(&password));
    assert!(read(&dir, "README.txt").contains("`kubectl understudy evidence`"));
    let _ = std::fs::remove_dir_all(&dir);

    // An on-call engineer without `get` on the Secret is told which RBAC is missing...
    apply_people_rbac(&tb);
    let (kubeconfig, _) = person_kubeconfig(&tb, &client, &ns, "olivia", "understudy-oncall").await;
    let person = Oncall {
        kubeconfig,
        audit_topic: topic.clone(),
    };
    let denied = person
        .run(&["audit", "verify", "--pair", PAIR, "-n", &ns])
        .await;
    denied.expect(i32::from(exit::FAILED), "audit verify without the Secret");
    for needle in [
        "forbidden",
        "`get` on secrets named \"kafka-sasl\"",
        &format!("namespace {ns}"),
        "--kafka-properties",
    ] {
        assert!(denied.says(needle), "{needle:?} in:\n{}", denied.text());
    }
    assert!(!denied.says(&password));
    // ...and can give the settings in a file instead.
    let file = std::env::temp_dir().join(format!("understudy-{ns}.properties"));
    let text: String = properties(&tb, &password)
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    std::fs::write(&file, text).expect("properties file");
    let file_s = file.display().to_string();
    let v = person
        .run(&[
            "audit",
            "verify",
            "--pair",
            PAIR,
            "-n",
            &ns,
            "--kafka-properties",
            &file_s,
        ])
        .await;
    v.expect(i32::from(exit::OK), "audit verify --kafka-properties");
    assert!(v.stdout.contains("3 records"), "{}", v.text());
    let _ = std::fs::remove_file(&file);
}

#[tokio::test]
async fn with_a_wrong_password_records_wait_and_the_pair_says_why_until_the_credentials_are_fixed()
{
    let tb = Testbed::load();
    let password = tb.var("TESTBED_KAFKA_SASL_PASSWORD");
    let sasl_bootstrap = tb.var("TESTBED_KAFKA_SASL_BOOTSTRAP");
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let ns = support::fresh_namespace(&client, "e2e-audit-wrongpw").await;
    secured_pair(&tb, &client, &ns, WRONG_PASSWORD).await;
    let topic = audit_topic();
    let right = sasl(&tb, &password);
    let wrong = sasl(&tb, WRONG_PASSWORD);

    let s = sink(&topic, Duration::from_secs(2));
    s.record_to(&wrong, kind::VERDICT, &ns, PAIR, json!({ "n": 1 }));
    s.record_to(&wrong, kind::PAGE, &ns, PAIR, json!({ "n": 2 }));
    let problem = wait_until(
        Duration::from_secs(60),
        "the pair to report a problem",
        || {
            let p = s.problem(&ns, PAIR);
            async move { p }
        },
    )
    .await;
    for needle in [
        format!("audit records cannot be written to {topic} on {sasl_bootstrap}"),
        "refused the connection".into(),
        "SASL authentication".into(),
        "; 2 waiting, 0 dropped".into(),
    ] {
        assert!(problem.contains(&needle), "{needle:?} in {problem:?}");
    }
    assert!(!problem.contains(WRONG_PASSWORD) && !problem.contains(&password));
    assert!(metric("understudy_audit_write_failures_total", &ns) >= 1.0);
    assert_eq!(metric("understudy_audit_waiting_records", &ns), 2.0);
    assert_eq!(metric("understudy_audit_written_records_total", &ns), 0.0);
    assert!(
        records(&right, &topic).await.is_empty(),
        "nothing reached the topic"
    );

    // The plugin with the pair's (wrong) Secret says the brokers refused it.
    let oc = Oncall {
        kubeconfig: kubeconfig_in_namespace(&tb, &ns),
        audit_topic: topic.clone(),
    };
    let v = oc.run(&["audit", "verify", "--pair", PAIR]).await;
    v.expect(
        i32::from(exit::FAILED),
        "audit verify with a wrong password",
    );
    assert!(
        v.says("refused the connection") && v.says("SASL authentication"),
        "{}",
        v.text()
    );
    assert!(!v.says(WRONG_PASSWORD), "{}", v.text());

    // The Secret is fixed: the next record goes with the right password and the two
    // waiting ones follow it.
    put_secret(&tb, &client, &ns, &password).await;
    s.record_to(&right, kind::RESUMED, &ns, PAIR, json!({ "n": 3 }));
    wait_until(Duration::from_secs(60), "3 records on the topic", || {
        let (kafka, topic) = (right.clone(), topic.clone());
        async move { (records(&kafka, &topic).await.len() == 3).then_some(()) }
    })
    .await;
    wait_until(Duration::from_secs(10), "the problem to clear", || {
        let healthy = s.problem(&ns, PAIR).is_none();
        async move { healthy.then_some(()) }
    })
    .await;
    assert_eq!(metric("understudy_audit_waiting_records", &ns), 0.0);

    // A new sink (a restarted operator) continues the same chain.
    let again = sink(&topic, Duration::from_secs(2));
    again.record_to(&right, kind::VERDICT, &ns, PAIR, json!({ "n": 4 }));
    wait_until(Duration::from_secs(60), "4 records on the topic", || {
        let (kafka, topic) = (right.clone(), topic.clone());
        async move { (records(&kafka, &topic).await.len() == 4).then_some(()) }
    })
    .await;
    let all = records(&right, &topic).await;
    let mut ns_seen: Vec<i64> = all.iter().filter_map(|r| r.data["n"].as_i64()).collect();
    ns_seen.sort();
    assert_eq!(ns_seen, vec![1, 2, 3, 4], "every record written once");
    let v = oc.run(&["audit", "verify", "--pair", PAIR]).await;
    v.expect(i32::from(exit::OK), "audit verify once the Secret is fixed");
    assert!(
        v.stdout.contains("audit chain whole: 4 records"),
        "{}",
        v.text()
    );
}

#[tokio::test]
async fn the_operator_writes_a_pairs_waiting_audit_records_once_its_kafka_secret_is_fixed() {
    let _serial = harness::SERIAL.lock().await;
    let tb = Testbed::load();
    let password = tb.var("TESTBED_KAFKA_SASL_PASSWORD");
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = harness::start_sim("audit-fix");
    let scene = harness::scene(
        &tb,
        &client,
        &sim,
        "e2e-audit-fix",
        harness::fast_detection(),
    )
    .await;
    // The pair's Kafka is the SASL listener, with a wrong password in its Secret.
    put_secret(&tb, &client, &scene.namespace, WRONG_PASSWORD).await;
    Api::<AccountPair>::namespaced(client.clone(), &scene.namespace)
        .patch(
            &scene.pair,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replication": { "kafka": {
                "bootstrapServers": tb.var("TESTBED_KAFKA_SASL_BOOTSTRAP"),
                "secretRef": { "name": SECRET } } } } })),
        )
        .await
        .unwrap();
    let topic = audit_topic();
    let op = harness::start_operator(
        &tb,
        &scene.namespace,
        "audit-fix",
        &[],
        &[("UNDERSTUDY_AUDIT_TOPIC", topic.clone())],
    );
    let condition = |want: &'static str| {
        let (client, scene) = (client.clone(), &scene);
        async move {
            let c = harness::condition(&client, scene, "AuditTrail").await?;
            (c.status == want).then_some(c)
        }
    };
    // The pair's first verdicts are recorded; they cannot be written, and the pair says so.
    let failing = wait_until(
        Duration::from_secs(90),
        "AuditTrail=False with the brokers' reason",
        || condition("False"),
    )
    .await;
    assert!(
        failing.message.contains("SASL authentication")
            && !failing.message.contains(WRONG_PASSWORD),
        "{}",
        failing.message
    );

    // What the runbook (UnderstudyAuditTrailFailing) has on-call look at first.
    let oc = Oncall {
        kubeconfig: tb.var("TESTBED_KUBECONFIG").into(),
        audit_topic: topic.clone(),
    };
    let shown = oc
        .run(&["status", &scene.pair, "-n", &scene.namespace])
        .await;
    assert!(
        shown.says("AuditTrail=False") && shown.says("SASL authentication"),
        "{}",
        shown.text()
    );

    // Someone fixes the Secret; the operator is not restarted.
    put_secret(&tb, &client, &scene.namespace, &password).await;
    wait_until(
        Duration::from_secs(90),
        "AuditTrail=True once the Secret is right",
        || condition("True"),
    )
    .await;
    let written = records(&sasl(&tb, &password), &topic).await;
    assert!(
        written
            .iter()
            .any(|r| r.namespace == scene.namespace && r.pair == scene.pair),
        "the records that waited are on the topic: {} records",
        written.len()
    );
    assert!(
        !op.log_text().contains(WRONG_PASSWORD) && !op.log_text().contains(&password),
        "no password in the operator's log"
    );
}
