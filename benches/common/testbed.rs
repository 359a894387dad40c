//! What the test-bed benchmarks share: the test bed's env file, `understudy` child
//! processes (simulator, operator), a Kubernetes client with the CRDs applied, the DNS
//! record and HAProxy of a pair's traffic, and percentiles.
//!
//! Included by each bench with `#[path = "common/testbed.rs"] mod testbed;` (from
//! `benches/fleet/`: `"../common/testbed.rs"`); a bench
//! uses only part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// The `understudy` binary cargo built for this bench (the bench profile under `cargo bench`).
pub const BIN: &str = env!("CARGO_BIN_EXE_understudy");

/// `target/testbed/env` (or `$UNDERSTUDY_TESTBED_ENV`), as `tests/testbed/up.sh` wrote it.
pub struct Env(std::collections::HashMap<String, String>);

impl Env {
    pub fn load() -> Env {
        let path = std::env::var("UNDERSTUDY_TESTBED_ENV")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/testbed/env").into());
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}; run `make testbed`"));
        Env(text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.into(), v.into()))
            .collect())
    }

    pub fn var(&self, k: &str) -> String {
        self.0
            .get(k)
            .cloned()
            .unwrap_or_else(|| panic!("test bed env has no {k}"))
    }
}

/// A child process (its URL from the marker line in `.1`), killed on drop.
pub struct Proc(pub Child, pub String);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start [`BIN`] with `args`; see [`spawn_bin`].
pub fn spawn(args: &[&str], envs: &[(&str, String)], marker: &str, log: &str) -> Proc {
    spawn_bin(BIN, args, envs, marker, log)
}

/// Start `bin ARGS` with its stderr in `target/bench/LOG.log` and wait for the stdout line
/// containing `marker`; its last word (the URL) is the returned `Proc`'s `.1`. Stdout
/// keeps being drained so the child never blocks on a full pipe.
pub fn spawn_bin(
    bin: &str,
    args: &[&str],
    envs: &[(&str, String)],
    marker: &str,
    log: &str,
) -> Proc {
    let log = std::fs::File::create(format!(
        "{}/target/bench/{log}.log",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.args(args).stdout(Stdio::piped()).stderr(log);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let l = lines.next().expect("process exited early").unwrap();
        if l.contains(marker) {
            break l.rsplit(' ').next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Proc(child, url)
}

/// A client of the test bed's API server (admin, from its kubeconfig).
pub async fn client(tb: &Env) -> Client {
    let kc = Kubeconfig::read_from(tb.var("TESTBED_KUBECONFIG")).unwrap();
    Client::try_from(
        Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap(),
    )
    .unwrap()
}

/// Apply understudy's CRDs (server-side apply) and give the API server a moment to serve them.
pub async fn apply_crds(client: &Client) {
    let crds: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(client.clone());
    for crd in understudy::api::crds() {
        crds.patch(
            crd.metadata.name.as_deref().unwrap(),
            &PatchParams::apply("bench").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
}

/// The A record `name` in the test bed's zone on BIND, TTL 5, with the test bed's TSIG key.
pub fn dns_record(tb: &Env, name: &str) -> understudy::traffic::dns::DnsRecord {
    use base64::Engine;
    let key = understudy::traffic::dns::TsigKey {
        name: tb.var("TESTBED_TSIG_KEY_NAME"),
        algorithm: tb.var("TESTBED_TSIG_ALGORITHM"),
        secret: base64::engine::general_purpose::STANDARD
            .decode(tb.var("TESTBED_TSIG_SECRET"))
            .unwrap(),
    };
    understudy::traffic::dns::DnsRecord::new(
        &[tb.var("TESTBED_DNS_SERVER")],
        &tb.var("TESTBED_DNS_ZONE"),
        name,
        understudy::api::account_pair::RecordType::A,
        5,
        key,
    )
    .unwrap()
}

/// A fresh namespace `ns` with the Secrets a bench's pairs name: `token` (the Provider
/// API token), `tsig` (the test bed's TSIG key) and `notices` (the notice HMAC key).
pub async fn namespace_with_secrets(client: &Client, tb: &Env, ns: &str, notice_secret: &str) {
    use k8s_openapi::api::core::v1::{Namespace, Secret};
    use kube::api::PostParams;
    use serde_json::json;
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": ns } })).unwrap(),
        )
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    for (name, data) in [
        ("token", json!({ "token": "t" })),
        (
            "tsig",
            json!({ "name": tb.var("TESTBED_TSIG_KEY_NAME"), "algorithm": tb.var("TESTBED_TSIG_ALGORITHM"), "secret": tb.var("TESTBED_TSIG_SECRET") }),
        ),
        ("notices", json!({ "secret": notice_secret })),
    ] {
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(
                    json!({ "metadata": { "name": name }, "stringData": data }),
                )
                .unwrap(),
            )
            .await
            .unwrap();
    }
}

/// Whether BIND answers `standby_value` for `record` and a request through HAProxy's
/// `frontend` is served by the standby backend (it answers `standby`).
pub async fn on_standby(
    record: &understudy::traffic::dns::DnsRecord,
    standby_value: &str,
    http: &reqwest::Client,
    frontend: &str,
) -> bool {
    let dns_ok = record
        .query(record.servers[0])
        .await
        .map(|v| v == [standby_value])
        .unwrap_or(false);
    if !dns_ok {
        return false;
    }
    match http.get(frontend).send().await {
        Ok(r) if r.status().is_success() => r
            .text()
            .await
            .map(|t| t.trim() == "standby")
            .unwrap_or(false),
        _ => false,
    }
}

/// The `p` quantile (0..=1) of sorted values, nearest rank.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
