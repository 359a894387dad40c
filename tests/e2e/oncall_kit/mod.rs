//! Helpers of the on-call end-to-end tests: the plugin run as a process named
//! `kubectl-understudy` (so the plugin path is what is tested), kubeconfigs for a
//! namespace or a ServiceAccount token, the chart's people RBAC, and raw access to an
//! audit topic for tampering.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use understudy::audit::{AuditRecord, AuditTarget, DEFAULT_RETENTION};

use crate::support::{Testbed, suffix};

const BIN: &str = env!("CARGO_BIN_EXE_understudy");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temporary directory holding `kubectl-understudy`, a symlink to the built binary.
pub static PLUGIN_DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("understudy-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("plugin dir");
    let link = dir.join("kubectl-understudy");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(BIN, &link).expect("symlink kubectl-understudy");
    dir
});

/// What one plugin run did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Panics with everything the run printed unless it exited with `code`.
    pub fn expect(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.code, code,
            "{what}: expected exit {code}, got {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    pub fn says(&self, needle: &str) -> bool {
        self.text().contains(needle)
    }
}

/// How the plugin runs: which kubeconfig, which audit topic.
#[derive(Clone, Debug)]
pub struct Oncall {
    pub kubeconfig: PathBuf,
    pub audit_topic: String,
}

impl Oncall {
    /// Run `kubectl-understudy ARGS` with stdin not a terminal; log what happened.
    pub async fn run(&self, args: &[&str]) -> Run {
        let exe = PLUGIN_DIR.join("kubectl-understudy");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let me = self.clone();
        let started = std::time::Instant::now();
        let (a, out) = tokio::task::spawn_blocking(move || {
            let out = Command::new(&exe)
                .args(&args)
                .env("KUBECONFIG", &me.kubeconfig)
                .env("UNDERSTUDY_AUDIT_TOPIC", &me.audit_topic)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .output()
                .expect("run kubectl-understudy");
            (args, out)
        })
        .await
        .expect("plugin task");
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        let log = repo().join("target/testbed/logs/oncall-plugin.log");
        let entry = format!(
            "$ kubectl understudy {} (exit {}, {:?})\n{}{}\n",
            a.join(" "),
            run.code,
            started.elapsed(),
            run.stdout,
            run.stderr
        );
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = f.write_all(entry.as_bytes());
        }
        run
    }
}

/// A fresh audit topic name, so each test proves its own chain from genesis.
pub fn audit_topic() -> String {
    format!("understudy.audit.e2e-{}", suffix())
}

/// A copy of the test bed's admin kubeconfig whose context defaults to `namespace`.
pub fn kubeconfig_in_namespace(tb: &Testbed, namespace: &str) -> PathBuf {
    let text = std::fs::read_to_string(tb.var("TESTBED_KUBECONFIG")).expect("kubeconfig");
    let mut cfg: serde_yaml::Value = serde_yaml::from_str(&text).expect("kubeconfig YAML");
    if let Some(contexts) = cfg["contexts"].as_sequence_mut() {
        for c in contexts {
            c["context"]["namespace"] = serde_yaml::Value::String(namespace.to_string());
        }
    }
    let path = std::env::temp_dir().join(format!("understudy-{namespace}.kubeconfig"));
    std::fs::write(&path, serde_yaml::to_string(&cfg).expect("yaml")).expect("write");
    path
}

/// Apply the chart's people roles (understudy-viewer, -oncall, -admin) and the on-call
/// pause-only admission policy, as rendered in manifests/install.yaml.
pub fn apply_people_rbac(tb: &Testbed) {
    let text = std::fs::read_to_string(repo().join("manifests/install.yaml"))
        .expect("manifests/install.yaml (the chart's rendered install)");
    let wanted = |kind: &str, name: &str| match kind {
        "ClusterRole" => matches!(
            name,
            "understudy-viewer" | "understudy-oncall" | "understudy-admin"
        ),
        "ValidatingAdmissionPolicy" | "ValidatingAdmissionPolicyBinding" => {
            name.ends_with("-oncall-pause-only")
        }
        _ => false,
    };
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let Ok(v) = serde_yaml::Value::deserialize(doc) else {
            continue;
        };
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if wanted(&kind, &name) {
            docs.push(serde_yaml::to_string(&v).expect("yaml"));
        }
    }
    assert_eq!(
        docs.len(),
        5,
        "three ClusterRoles and the policy with its binding"
    );
    let mut child = Command::new(tb.var("TESTBED_KUBECTL"))
        .args([
            "--kubeconfig",
            &tb.var("TESTBED_KUBECONFIG"),
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager",
            "understudy-e2e-oncall",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl apply");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(docs.join("---\n").as_bytes())
            .expect("write manifests");
    }
    let out = child.wait_with_output().expect("kubectl apply");
    assert!(
        out.status.success(),
        "kubectl apply of the people RBAC: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

use serde::Deserialize as _;

/// A ServiceAccount `who` in `ns` bound to ClusterRole `role`; a kubeconfig with its
/// token (and nothing else).
pub async fn person_kubeconfig(
    tb: &Testbed,
    admin: &Client,
    ns: &str,
    who: &str,
    role: &str,
) -> (PathBuf, String) {
    let sa: ServiceAccount =
        serde_json::from_value(json!({ "metadata": { "name": who } })).expect("sa");
    Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .expect("create ServiceAccount");
    let rb: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": who },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
        "subjects": [{ "kind": "ServiceAccount", "name": who, "namespace": ns }]
    }))
    .expect("rolebinding");
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &rb)
        .await
        .expect("create RoleBinding");
    let token = crate::support::service_account_token(admin, ns, who).await;
    let path = tb.write_token_kubeconfig(&token, &format!("oncall-{ns}-{who}"));
    (path, token)
}

/// Every committed record of an audit topic: (offset, parsed record, raw bytes).
pub async fn audit_records(bootstrap: &str, topic: &str) -> Vec<(i64, AuditRecord, Vec<u8>)> {
    let t = AuditTarget::new(bootstrap, topic, DEFAULT_RETENTION);
    tokio::task::spawn_blocking(move || {
        let (low, _) = understudy::audit::kafka::watermarks_blocking(&t).expect("watermarks");
        let mut out = Vec::new();
        understudy::audit::kafka::scan_blocking(&t, low, |offset, bytes| {
            let r: AuditRecord = serde_json::from_slice(bytes).expect("an audit record");
            out.push((offset, r, bytes.to_vec()));
            true
        })
        .expect("scan the audit topic");
        out
    })
    .await
    .expect("scan task")
}

/// Write raw records, in order, to a fresh single-partition topic (a copy to tamper).
pub async fn write_copy(bootstrap: &str, topic: &str, values: &[Vec<u8>]) {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let t = AuditTarget::new(bootstrap, topic, DEFAULT_RETENTION);
    understudy::audit::kafka::ensure_audit_topic(&t)
        .await
        .expect("create the copy topic");
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("producer");
    for v in values {
        p.send(
            FutureRecord::<(), _>::to(topic).partition(0).payload(v),
            std::time::Duration::from_secs(10),
        )
        .await
        .expect("produce a copied record");
    }
}

/// Every file the evidence export writes when everything is readable.
pub const EVIDENCE_FILES: [&str; 15] = [
    "README.txt",
    "account_info/accounts.txt",
    "account_info/pair.yaml",
    "account_info/business_licence/README.txt",
    "account_info/administrator_authorisation/README.txt",
    "system_alert/timeline.txt",
    "system_alert/freeze_signals.jsonl",
    "system_alert/events.txt",
    "system_alert/switchovers.yaml",
    "operation_logs/primary_activity.csv",
    "operation_logs/standby_activity.csv",
    "operation_logs/replicated_changes.csv",
    "audit_chain/verification.txt",
    "audit_chain/verification.json",
    "audit_chain/records.jsonl",
];

/// The files under `dir`, as paths relative to it.
pub fn files_under(dir: &Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap();
                out.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// Unpack `archive` (a .tar.gz) with the system's `tar` into `into`; the directory the
/// archive holds.
pub fn untar(archive: &Path, into: &Path) -> PathBuf {
    std::fs::create_dir_all(into).unwrap();
    let out = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "tar -xzf {}: {}",
        archive.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut tops = std::fs::read_dir(into).unwrap().map(|e| e.unwrap().path());
    let top = tops.next().expect("the archive holds one directory");
    assert!(tops.next().is_none(), "one top directory in the archive");
    top
}

/// Every value of every Secret of `ns`, as text, but those of the keys in `except`.
pub async fn secret_values(client: &kube::Client, ns: &str, except: &[&str]) -> Vec<String> {
    use k8s_openapi::api::core::v1::Secret;
    kube::api::Api::<Secret>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .expect("list Secrets")
        .items
        .into_iter()
        .flat_map(|s| s.data.unwrap_or_default())
        .filter(|(k, _)| !except.contains(&k.as_str()))
        .map(|(_, v)| String::from_utf8_lossy(&v.0).trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// No file under `dir` holds any of `values`.
pub fn assert_holds_none(dir: &Path, values: &[String]) {
    for f in files_under(dir) {
        let text = String::from_utf8_lossy(&std::fs::read(dir.join(&f)).unwrap()).into_owned();
        for v in values {
            assert!(
                !text.contains(v.as_str()),
                "{f} holds a Secret value ({} chars)",
                v.len()
            );
        }
    }
}

pub fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// (partitions, cleanup.policy, retention.ms) of a topic, from the broker.
pub async fn topic_config(bootstrap: &str, topic: &str) -> (usize, String, String) {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let res = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .expect("describe configs");
    let r = res
        .into_iter()
        .next()
        .expect("one resource")
        .expect("topic config");
    let get = |k: &str| r.get(k).and_then(|e| e.value.clone()).unwrap_or_default();
    let md = admin
        .inner()
        .fetch_metadata(Some(topic), std::time::Duration::from_secs(10))
        .expect("metadata");
    let partitions = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    (partitions, get("cleanup.policy"), get("retention.ms"))
}

/// The switchover's flip-lb step verified HAProxy on `side` (read back from the runtime
/// API by the executor). The test bed's HAProxy backend is shared with other suites that
/// may run at the same time, so its state is judged at the moment of the flip.
pub fn haproxy_verified(so: &understudy::api::Switchover, side: &str) -> bool {
    so.status.as_ref().is_some_and(|st| {
        st.steps.iter().any(|s| {
            s.name == "flip-lb"
                && s.state == understudy::api::switchover::StepState::Succeeded
                && s.message
                    .as_deref()
                    .is_some_and(|m| m.contains(&format!("backend app → {side}")))
        })
    })
}

/// A fresh temporary directory for an evidence export (removed by the caller).
pub fn evidence_dir(ns: &str) -> PathBuf {
    std::env::temp_dir().join(format!("understudy-evidence-{ns}"))
}

/// State of `account` replayed from `base` through its feed after `from`; returns the
/// first feed position at or after `at_least` where it equals `target` (key → digest).
pub async fn first_equal_point(
    sim: &crate::harness::Proc,
    account: &str,
    base: &[(String, String)],
    from: u64,
    at_least: u64,
    target: &[(String, String)],
) -> Option<u64> {
    use understudy::provider::AccountProvider;
    let p =
        understudy::provider::http::HttpProvider::new(&sim.url, account, Some("t0ken")).unwrap();
    let mut state: BTreeMap<String, String> = base.iter().cloned().collect();
    let target: BTreeMap<String, String> = target.iter().cloned().collect();
    let mut differ: std::collections::BTreeSet<String> = state
        .keys()
        .chain(target.keys())
        .filter(|k| state.get(*k) != target.get(*k))
        .cloned()
        .collect();
    if from >= at_least && differ.is_empty() {
        return Some(from);
    }
    let mut cursor = from.to_string();
    loop {
        let batch = p
            .changes(Some(&cursor), 1000, Duration::ZERO)
            .await
            .unwrap();
        if batch.changes.is_empty() {
            return None;
        }
        for c in &batch.changes {
            let key = c.key.to_string();
            match &c.op {
                understudy::model::ChangeOp::Upsert { payload } => {
                    state.insert(
                        key.clone(),
                        understudy::model::Digest::of_payload(payload).to_hex(),
                    );
                }
                understudy::model::ChangeOp::Delete => {
                    state.remove(&key);
                }
            }
            if state.get(&key) == target.get(&key) {
                differ.remove(&key);
            } else {
                differ.insert(key);
            }
            if c.seq >= at_least && differ.is_empty() {
                return Some(c.seq);
            }
        }
        cursor = batch.cursor;
    }
}
