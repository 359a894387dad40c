//! Harness of the operator end-to-end tests: the simulator and the operator as real
//! child processes (so a test can SIGKILL the operator), an AccountPair wired to the
//! test bed's BIND, HAProxy and a Service, and condition waits.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use understudy::api::switchover::SwitchoverPhase;
use understudy::api::{AccountPair, Switchover};

use crate::support::{Testbed, suffix, wait_until};

/// Tests that move the shared HAProxy backend or BIND zone run one at a time.
mod pairs;
mod traffic;
#[allow(unused_imports)]
pub use pairs::*;
pub use traffic::*;

pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const BIN: &str = env!("CARGO_BIN_EXE_understudy");

/// A child process killed (SIGKILL) on drop.
pub struct Proc {
    pub child: Child,
    /// The operator's webhook listener (`--listen`: POST /webhooks/notices/…), or the
    /// simulator's one listener.
    pub url: String,
    /// Where /metrics, /healthz and /readyz answer: the operator's health listener
    /// (`--health-listen`); for the simulator the same as `url`.
    pub health_url: String,
    pub log: std::path::PathBuf,
}

impl Proc {
    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Send a signal (`TERM`, `STOP`, `CONT`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {}", self.child.id());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            self.report_failure();
        }
    }
}

/// Lines of a process's log printed when its test fails.
const FAILURE_TAIL: usize = 60;

impl Proc {
    /// The test failed while this process ran: print the end of its log with the failure
    /// (CI shows only the test output) and keep the log as `NAME.failed.log`, which the
    /// next run of the same test does not overwrite.
    fn report_failure(&self) {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(FAILURE_TAIL)..];
        eprintln!(
            "--- the last {} of {} lines of {} ---",
            tail.len(),
            lines.len(),
            self.log.display()
        );
        for l in tail {
            eprintln!("{}", strip_ansi(l));
        }
        let _ = std::fs::copy(&self.log, self.log.with_extension("failed.log"));
    }
}

/// `line` without its ANSI colour sequences (ESC `[` … letter).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Start `understudy ARGS` and wait until it printed one line starting with each of
/// `prefixes` (in any order); their URLs (the last word) are returned in that order.
fn spawn(
    args: &[&str],
    envs: &[(&str, String)],
    prefixes: &[&str],
    log_name: &str,
) -> (Child, Vec<String>, std::path::PathBuf) {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/testbed/logs");
    std::fs::create_dir_all(&dir).ok();
    let log = dir.join(format!("{log_name}.log"));
    let stderr = std::fs::File::create(&log).expect("log file");
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdout(Stdio::piped()).stderr(stderr);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn understudy");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut urls: Vec<Option<String>> = vec![None; prefixes.len()];
    while urls.iter().any(Option::is_none) {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(i) = prefixes.iter().position(|p| line.starts_with(p)) {
                    urls[i] = Some(line.rsplit(' ').next().unwrap_or_default().to_string());
                }
            }
            _ => panic!(
                "{} {:?} exited before listening; see {}",
                BIN,
                args,
                log.display()
            ),
        }
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, urls.into_iter().flatten().collect(), log)
}

/// The Provider API simulator.
pub fn start_sim(name: &str) -> Proc {
    start_sim_seeded(name, "corp-a=300,corp-b=0")
}

/// The simulator with the given `--seed-accounts` (e.g. `a=10,b=0`).
pub fn start_sim_seeded(name: &str, seed: &str) -> Proc {
    let (child, urls, log) = spawn(
        &["sim", "--listen", "127.0.0.1:0", "--seed-accounts", seed],
        &[],
        &["listening on"],
        &format!("sim-{name}"),
    );
    Proc {
        child,
        url: urls[0].clone(),
        health_url: urls[0].clone(),
        log,
    }
}

/// An operator watching `namespace`.
pub fn start_operator(
    tb: &Testbed,
    namespace: &str,
    name: &str,
    extra_args: &[&str],
    envs: &[(&str, String)],
) -> Proc {
    let mut args = vec![
        "operator",
        "--listen",
        "127.0.0.1:0",
        "--health-listen",
        "127.0.0.1:0",
        "--namespace",
        namespace,
        "--drain-bound",
        "2s",
    ];
    args.extend_from_slice(extra_args);
    let mut env = vec![
        ("KUBECONFIG", tb.var("TESTBED_KUBECONFIG")),
        (
            "RUST_LOG",
            "info,kube_runtime=warn,rdkafka=warn".to_string(),
        ),
    ];
    env.extend(envs.iter().cloned());
    let (child, urls, log) = spawn(
        &args,
        &env,
        &[
            understudy::http::WEBHOOK_LINE,
            understudy::http::HEALTH_LINE,
        ],
        &format!("operator-{name}"),
    );
    Proc {
        child,
        url: urls[0].clone(),
        health_url: urls[1].clone(),
        log,
    }
}

/// One of two or more operator replicas watching `namespace` that elect a leader on a
/// Lease there lasting `lease` (e.g. `4s`), as pod `replica` (e.g. `replica-a`).
pub fn start_replica(
    tb: &Testbed,
    namespace: &str,
    (name, replica): (&str, &str),
    lease: &str,
    envs: &[(&str, String)],
) -> Proc {
    start_replica_with(tb, namespace, (name, replica), lease, &[], envs)
}

/// [`start_replica`] with more operator arguments (e.g. `--shards 8`).
pub fn start_replica_with(
    tb: &Testbed,
    namespace: &str,
    (name, replica): (&str, &str),
    lease: &str,
    extra_args: &[&str],
    envs: &[(&str, String)],
) -> Proc {
    let mut args = vec![
        "--leader-elect",
        "--lease-namespace",
        namespace,
        "--lease-duration",
        lease,
    ];
    args.extend_from_slice(extra_args);
    let mut env = vec![("POD_NAME", replica.to_string())];
    env.extend(envs.iter().cloned());
    start_operator(tb, namespace, name, &args, &env)
}

pub async fn admin(
    sim: &Proc,
    path: &str,
    method: reqwest::Method,
    body: serde_json::Value,
) -> serde_json::Value {
    let resp = reqwest::Client::new()
        .request(method, format!("{}{path}", sim.url))
        .json(&body)
        .send()
        .await
        .expect("simulator admin call");
    assert!(
        resp.status().is_success(),
        "admin {path}: {}",
        resp.status()
    );
    resp.json().await.unwrap_or_default()
}

pub async fn set_status(sim: &Proc, account: &str, status: &str, reason: &str) {
    admin(
        sim,
        &format!("/admin/accounts/{account}/status"),
        reqwest::Method::POST,
        json!({ "status": status, "reason": reason }),
    )
    .await;
}

pub async fn set_faults(sim: &Proc, account: &str, failure: &str, rate: f64) {
    admin(
        sim,
        &format!("/admin/accounts/{account}/faults"),
        reqwest::Method::PUT,
        json!({ "failure": failure, "rate": rate, "hangMs": 3000 }),
    )
    .await;
}

/// Every Provider API call of `account` answered `ms` later (0: at once again).
pub async fn set_latency(sim: &Proc, account: &str, ms: u64) {
    admin(
        sim,
        &format!("/admin/accounts/{account}/faults"),
        reqwest::Method::PUT,
        json!({ "latencyMs": ms }),
    )
    .await;
}

/// What one failover test needs in its namespace.
pub struct Scene {
    pub namespace: String,
    pub pair: String,
    pub dns_name: String,
    pub service: String,
    pub notice_secret: String,
}

/// Create the Secrets, a Service, a fresh DNS record and the AccountPair of the
/// simulator's accounts `corp-a` and `corp-b`.
pub async fn scene(
    tb: &Testbed,
    client: &Client,
    sim: &Proc,
    prefix: &str,
    detection: serde_json::Value,
) -> Scene {
    let account = |id: &str| json!({ "endpoint": sim.url, "accountId": id, "credentialsSecretRef": { "name": "token" } });
    scene_of(
        tb,
        client,
        prefix,
        [account("corp-a"), account("corp-b")],
        json!({}),
        detection,
    )
    .await
}

/// [`scene`] with these `spec.primary` and `spec.standby`, and `replication` merged
/// into the pair's `spec.replication` (Secrets the accounts name are the caller's to
/// create).
pub async fn scene_of(
    tb: &Testbed,
    client: &Client,
    prefix: &str,
    [primary, standby]: [serde_json::Value; 2],
    replication: serde_json::Value,
    detection: serde_json::Value,
) -> Scene {
    let namespace = crate::support::fresh_namespace(client, prefix).await;
    let pair = "wecom".to_string();
    let notice_secret = format!("notice-{}", suffix());
    for (name, data) in [
        ("token", json!({ "token": "t0ken" })),
        (
            "tsig",
            json!({ "name": tb.var("TESTBED_TSIG_KEY_NAME"), "algorithm": tb.var("TESTBED_TSIG_ALGORITHM"), "secret": tb.var("TESTBED_TSIG_SECRET") }),
        ),
        ("notices", json!({ "secret": notice_secret })),
    ] {
        create_secret(client, &namespace, name, data).await;
    }
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let svc: Service = serde_json::from_value(json!({
        "metadata": { "name": "app" },
        "spec": { "selector": { "app.kubernetes.io/instance": "wecom-primary" }, "ports": [{ "port": 80 }] }
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &svc)
        .await
        .expect("create service");

    // A fresh record per test, created on the primary's value.
    let dns_name = format!("e2e-{}", suffix());
    let record = dns_record(tb, &dns_name);
    record
        .ensure_values(&[], &["10.1.0.1".to_string()])
        .await
        .expect("create the test record");
    // HAProxy starts on the primary.
    haproxy(tb)
        .ensure_active(
            &tb.var("TESTBED_HAPROXY_BACKEND"),
            &tb.var("TESTBED_HAPROXY_PRIMARY_SERVER"),
            &tb.var("TESTBED_HAPROXY_STANDBY_SERVER"),
        )
        .await
        .expect("reset haproxy");

    let mut replication_spec = json!({ "kafka": { "bootstrapServers": tb.var("TESTBED_KAFKA_BOOTSTRAP") }, "partitions": 2 });
    if let (Some(spec), Some(extra)) = (replication_spec.as_object_mut(), replication.as_object()) {
        spec.extend(extra.clone());
    }
    let replication = replication_spec;
    let ap: AccountPair = serde_json::from_value(json!({
        "apiVersion": "understudy.dev/v1alpha1",
        "kind": "AccountPair",
        "metadata": { "name": pair },
        "spec": {
            "primary": primary,
            "standby": standby,
            "replication": replication,
            "detection": detection,
            "traffic": {
                "dns": [{ "servers": [tb.var("TESTBED_DNS_SERVER")], "zone": tb.var("TESTBED_DNS_ZONE"), "name": dns_name,
                          "type": "A", "ttl": 5, "tsigSecretRef": { "name": "tsig" },
                          "primary": ["10.1.0.1"], "standby": ["10.2.0.1"] }],
                "loadBalancers": [
                    { "service": { "name": "app", "selectorKey": "app.kubernetes.io/instance", "primary": "wecom-primary", "standby": "wecom-standby" } },
                    { "haproxy": { "runtimeApi": tb.var("TESTBED_HAPROXY_RUNTIME_API"), "backend": tb.var("TESTBED_HAPROXY_BACKEND"),
                                   "primaryServer": tb.var("TESTBED_HAPROXY_PRIMARY_SERVER"), "standbyServer": tb.var("TESTBED_HAPROXY_STANDBY_SERVER") } }
                ]
            }
        }
    }))
    .unwrap();
    Api::<AccountPair>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), &ap)
        .await
        .expect("create pair");
    Scene {
        namespace,
        pair,
        dns_name,
        service: "app".into(),
        notice_secret,
    }
}

/// A Secret of `data` (string values) in `namespace`.
pub async fn create_secret(client: &Client, namespace: &str, name: &str, data: serde_json::Value) {
    let s: Secret =
        serde_json::from_value(json!({ "metadata": { "name": name }, "stringData": data }))
            .unwrap();
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &s)
        .await
        .expect("create secret");
}

/// Detection tuned for tests: fast polls, two confirmations.
pub fn fast_detection() -> serde_json::Value {
    json!({ "pollInterval": "500ms", "confirmations": 2, "failoverDelay": "1s", "holdDown": "1h",
            "notices": { "secretRef": { "name": "notices" } } })
}

/// Detection that only a notice can trigger within a test: polls every 30 s, three
/// confirmations, a minute's delay.
pub fn notice_detection() -> serde_json::Value {
    json!({ "pollInterval": "30s", "confirmations": 3, "failoverDelay": "60s",
            "notices": { "secretRef": { "name": "notices" } } })
}

/// Give the pair a rehearsal DNS record of its own (`spec.drills.rehearsalTraffic`), on
/// the primary's value; returns its name.
pub async fn with_rehearsal_record(tb: &Testbed, client: &Client, scene: &Scene) -> String {
    let record = format!("e2e-drill-{}", suffix());
    dns_record(tb, &record)
        .ensure_values(&[], &["10.1.0.9".to_string()])
        .await
        .expect("create the rehearsal record");
    let patch = json!({ "spec": { "drills": { "rehearsalTraffic": {
        "dns": [{ "servers": [tb.var("TESTBED_DNS_SERVER")], "zone": tb.var("TESTBED_DNS_ZONE"), "name": record,
                  "type": "A", "ttl": 5, "tsigSecretRef": { "name": "tsig" },
                  "primary": ["10.1.0.9"], "standby": ["10.2.0.9"] }]
    } } } });
    Api::<AccountPair>::namespaced(client.clone(), &scene.namespace)
        .patch(
            &scene.pair,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("give the pair a rehearsal record");
    record
}

pub async fn switchovers(client: &Client, ns: &str) -> Vec<Switchover> {
    Api::<Switchover>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
}

pub async fn pair(client: &Client, scene: &Scene) -> AccountPair {
    Api::<AccountPair>::namespaced(client.clone(), &scene.namespace)
        .get(&scene.pair)
        .await
        .unwrap()
}

/// Wait until the pair replicates (Replicating condition True).
pub async fn wait_replicating(client: &Client, scene: &Scene) {
    wait_until(Duration::from_secs(60), "the pair replicates", || async {
        let p = pair(client, scene).await;
        let c = p.status?.conditions;
        c.iter()
            .any(|c| c.type_ == "Replicating" && c.status == "True")
            .then_some(())
    })
    .await;
}

/// Wait until the pair's status shows a known lag in `direction` (e.g.
/// `primary-to-standby`): unknown while the source reads its feed's backlog, as after a
/// start or a switchover. Returns the replication status.
pub async fn wait_lag_known(
    client: &Client,
    scene: &Scene,
    direction: &str,
) -> understudy::api::account_pair::ReplicationStatus {
    wait_until(Duration::from_secs(30), "the lag is known", || async {
        let repl = pair(client, scene).await.status?.replication?;
        (repl.direction.as_deref() == Some(direction)
            && repl.lag_records.is_some()
            && repl.lag_seconds.is_some())
        .then_some(repl)
    })
    .await
}

/// Wait until the standby (corp-b) holds exactly what the primary (corp-a) holds now.
pub async fn wait_standby_level(sim: &Proc) {
    let primary = read_all(sim, "corp-a").await;
    wait_until(Duration::from_secs(60), "the standby is level", || async {
        (read_all(sim, "corp-b").await == primary).then_some(())
    })
    .await;
}

/// Wait for the pair's single Switchover to finish; returns it.
pub async fn wait_switchover_finished(client: &Client, ns: &str, timeout: Duration) -> Switchover {
    wait_until(timeout, "a switchover finishes", || async {
        switchovers(client, ns)
            .await
            .into_iter()
            .find(|s| s.status.as_ref().is_some_and(|st| st.phase.is_finished()))
    })
    .await
}

pub fn phase(so: &Switchover) -> SwitchoverPhase {
    so.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

/// The operator's /metrics text (from its health listener).
pub async fn metrics(op: &Proc) -> String {
    reqwest::get(format!("{}/metrics", op.health_url))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .unwrap()
}

/// Text of the Events on objects in `ns`.
pub async fn events(client: &Client, ns: &str) -> Vec<(String, String, String)> {
    use k8s_openapi::api::events::v1::Event;
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect()
}

/// Write a tag `id` on an account of the simulator, as its users would.
pub async fn put_tag(sim: &Proc, account: &str, id: &str) {
    put_tag_named(&sim.url, account, id, id).await;
}

/// Write a tag `id` named `name` (a new version of the tag when it exists) on an
/// account of the simulator at `sim_url`.
pub async fn put_tag_named(sim_url: &str, account: &str, id: &str, name: &str) {
    use understudy::provider::AccountProvider;
    let key =
        understudy::model::EntityKey::new(understudy::model::EntityKind::Tag, id).expect("tag key");
    understudy::provider::http::HttpProvider::new(sim_url, account, Some("t0ken"))
        .expect("client")
        .put_entity(
            &understudy::model::Entity::new(key, json!({ "name": name })),
            None,
        )
        .await
        .expect("put the tag");
}

fn sim_account(sim: &Proc, account: &str) -> understudy::provider::http::HttpProvider {
    understudy::provider::http::HttpProvider::new(&sim.url, account, Some("t0ken")).expect("client")
}

/// The cursor of an account's change feed head now.
pub async fn feed_head(sim: &Proc, account: &str) -> String {
    use understudy::provider::AccountProvider;
    sim_account(sim, account)
        .head_cursor()
        .await
        .expect("read the feed head")
}

/// The changes recorded on an account after `cursor` (who wrote them and when).
pub async fn changes_after(
    sim: &Proc,
    account: &str,
    cursor: &str,
) -> Vec<understudy::model::Change> {
    use understudy::provider::AccountProvider;
    sim_account(sim, account)
        .changes(Some(cursor), 1000, Duration::ZERO)
        .await
        .expect("read the feed")
        .changes
}

/// Every entity of an account, as (key, digest), read page by page over HTTP.
pub async fn read_all(sim: &Proc, account: &str) -> Vec<(String, String)> {
    use understudy::provider::AccountProvider;
    let p = understudy::provider::http::HttpProvider::new(&sim.url, account, Some("t0ken"))
        .expect("client");
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = p
            .list_entities(after.as_ref(), 1000)
            .await
            .expect("list entities");
        out.extend(
            page.entities
                .iter()
                .map(|e| (e.key.to_string(), e.digest.to_hex())),
        );
        match page.next {
            Some(k) => after = Some(k),
            None => return out,
        }
    }
}

/// A condition of the pair, if set.
pub async fn condition(
    client: &Client,
    scene: &Scene,
    type_: &str,
) -> Option<understudy::api::Condition> {
    pair(client, scene)
        .await
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)
}

/// The operator's webhook URL for the scene's pair.
pub fn notice_hook(op: &Proc, scene: &Scene) -> String {
    format!(
        "{}/webhooks/notices/{}/{}",
        op.url, scene.namespace, scene.pair
    )
}

/// Post a notice signed with `secret` (dated `at`, signed now) to `hook`; returns the
/// HTTP status and body.
pub async fn post_notice(
    hook: &str,
    secret: &str,
    account: &str,
    event: understudy::provider::notice::NoticeEvent,
    id: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> (u16, String) {
    let notice = understudy::provider::notice::Notice {
        account: account.into(),
        event,
        reason: "e2e".into(),
        at: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        id: id.into(),
    };
    let signed = notice
        .sign(secret.as_bytes(), chrono::Utc::now())
        .expect("sign");
    let resp = reqwest::Client::new()
        .post(hook)
        .header("content-type", "application/json")
        .header(
            understudy::provider::notice::TIMESTAMP_HEADER,
            &signed.timestamp,
        )
        .header(
            understudy::provider::notice::SIGNATURE_HEADER,
            &signed.signature,
        )
        .body(signed.body)
        .send()
        .await
        .expect("post the notice");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// The simulator posts a signed `frozen` notice for `account` to `hook` and freezes the
/// account (its admin API); returns its report (`status` is the webhook's answer).
pub async fn sim_frozen_notice(
    sim: &Proc,
    account: &str,
    hook: &str,
    secret: &str,
) -> serde_json::Value {
    admin(
        sim,
        &format!("/admin/accounts/{account}/notice"),
        reqwest::Method::POST,
        json!({ "url": hook, "secret": secret, "event": { "type": "frozen", "reason": "mass freeze" }, "applyStatus": true }),
    )
    .await
}

/// A condition of a pair as listed.
pub fn pair_condition<'a>(
    p: &'a AccountPair,
    type_: &str,
) -> Option<&'a understudy::api::Condition> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// `kubectl ARGS` against the test bed, as an administrator would type it; its stdout.
pub fn kubectl(tb: &Testbed, args: &[&str]) -> String {
    let out = Command::new(tb.var("TESTBED_KUBECTL"))
        .args(args)
        .env("KUBECONFIG", tb.var("TESTBED_KUBECONFIG"))
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sum of a metric's samples whose line contains every one of `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
