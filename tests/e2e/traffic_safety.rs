//! Traffic flips that refuse what they do not own and say exactly what they left behind,
//! end to end on the real test bed: the `TrafficTarget`s and the switchover `Executor`
//! run in-process against the test bed's BIND, HAProxy and API server.
//!
//! Tests that change the shared HAProxy backend hold `SERIAL` and put it back on the
//! primary (primary ready, standby maint) when they end, even when they fail.

mod harness;
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use harness::{SERIAL, dig, dns_record, haproxy};
use support::{Testbed, suffix};
use understudy::api::Side;
use understudy::api::switchover::{StepState, SwitchoverPhase, SwitchoverSpec, SwitchoverStatus};
use understudy::failover::executor::{Executor, Notifier, PairView, SwitchoverStore};
use understudy::traffic::adapters::{DnsTarget, HaproxyTarget, ServiceTarget};
use understudy::traffic::haproxy::{HaproxyRuntime, ServerAdminState};
use understudy::traffic::{Moved, TrafficError, TrafficTarget};

const KEY: &str = "app.kubernetes.io/instance";

/// Puts the shared HAProxy backend back on the primary when dropped (also on a panic),
/// over a plain blocking socket because `Drop` cannot await.
struct RestoreHaproxy {
    addr: String,
    backend: String,
    primary: String,
    standby: String,
}

impl RestoreHaproxy {
    fn new(tb: &Testbed) -> Self {
        RestoreHaproxy {
            addr: tb.var("TESTBED_HAPROXY_RUNTIME_API"),
            backend: tb.var("TESTBED_HAPROXY_BACKEND"),
            primary: tb.var("TESTBED_HAPROXY_PRIMARY_SERVER"),
            standby: tb.var("TESTBED_HAPROXY_STANDBY_SERVER"),
        }
    }
}

impl Drop for RestoreHaproxy {
    fn drop(&mut self) {
        use std::io::{Read, Write};
        for cmd in [
            format!("set server {}/{} state ready", self.backend, self.primary),
            format!("set server {}/{} state maint", self.backend, self.standby),
        ] {
            if let Ok(mut s) = std::net::TcpStream::connect(&self.addr) {
                s.set_read_timeout(Some(Duration::from_secs(3))).ok();
                s.write_all(format!("{cmd}\n").as_bytes()).ok();
                let mut answer = String::new();
                s.read_to_string(&mut answer).ok();
            }
        }
    }
}

fn haproxy_target(tb: &Testbed, runtime_api: String) -> HaproxyTarget {
    HaproxyTarget {
        runtime: HaproxyRuntime::new(runtime_api),
        backend: tb.var("TESTBED_HAPROXY_BACKEND"),
        primary_server: tb.var("TESTBED_HAPROXY_PRIMARY_SERVER"),
        standby_server: tb.var("TESTBED_HAPROXY_STANDBY_SERVER"),
    }
}

async fn set_servers(tb: &Testbed, primary: ServerAdminState, standby: ServerAdminState) {
    let rt = haproxy(tb);
    let backend = tb.var("TESTBED_HAPROXY_BACKEND");
    rt.set_state(&backend, &tb.var("TESTBED_HAPROXY_PRIMARY_SERVER"), primary)
        .await
        .expect("set the primary server by hand");
    rt.set_state(&backend, &tb.var("TESTBED_HAPROXY_STANDBY_SERVER"), standby)
        .await
        .expect("set the standby server by hand");
}

async fn servers(tb: &Testbed) -> (ServerAdminState, ServerAdminState) {
    let rt = haproxy(tb);
    let backend = tb.var("TESTBED_HAPROXY_BACKEND");
    (
        rt.server_state(&backend, &tb.var("TESTBED_HAPROXY_PRIMARY_SERVER"))
            .await
            .unwrap(),
        rt.server_state(&backend, &tb.var("TESTBED_HAPROXY_STANDBY_SERVER"))
            .await
            .unwrap(),
    )
}

/// A relay in front of the real runtime API that forwards every command unchanged,
/// except `refuse`, which it sends after `user;` — so HAProxy itself, at the lowered
/// CLI level, answers "Permission denied" and does not apply it. This is how a command
/// the runtime API refuses looks to the operator, mid-flip.
async fn refusing_relay(upstream: String, refuse: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (upstream, refuse) = (upstream.clone(), refuse.clone());
            tokio::spawn(async move {
                let (r, mut w) = client.into_split();
                let mut line = String::new();
                if BufReader::new(r).read_line(&mut line).await.is_err() {
                    return;
                }
                let cmd = line.trim_end();
                let sent = if cmd == refuse {
                    format!("user; {cmd}\n")
                } else {
                    format!("{cmd}\n")
                };
                let Ok(mut up) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let mut answer = Vec::new();
                if up.write_all(sent.as_bytes()).await.is_ok() {
                    up.read_to_end(&mut answer).await.ok();
                }
                w.write_all(&answer).await.ok();
            });
        }
    });
    addr
}

/// A Service named `app` in a fresh namespace with the given selector value.
async fn service(client: &Client, value: &str) -> String {
    let ns = support::fresh_namespace(client, "e2e-traffic").await;
    let svc: Service = serde_json::from_value(json!({
        "metadata": { "name": "app" },
        "spec": { "selector": { KEY: value }, "ports": [{ "port": 80 }] }
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &svc)
        .await
        .expect("create service");
    ns
}

fn service_target(client: &Client, ns: &str) -> ServiceTarget {
    ServiceTarget {
        client: client.clone(),
        namespace: ns.into(),
        name: "app".into(),
        selector_key: KEY.into(),
        primary: "wecom-primary".into(),
        standby: "wecom-standby".into(),
    }
}

async fn selector(client: &Client, ns: &str) -> String {
    Api::<Service>::namespaced(client.clone(), ns)
        .get("app")
        .await
        .unwrap()
        .spec
        .and_then(|s| s.selector)
        .and_then(|m| m.get(KEY).cloned())
        .unwrap_or_default()
}

async fn set_selector_by_hand(client: &Client, ns: &str, value: &str) {
    Api::<Service>::namespaced(client.clone(), ns)
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "selector": { KEY: value } } })),
        )
        .await
        .expect("change the selector by hand");
}

/// A fresh record created on `primary`'s value; `servers` are the servers the target lists.
async fn dns_target(
    tb: &Testbed,
    servers: &[String],
    primary: &str,
    standby: &str,
) -> (String, DnsTarget) {
    let name = format!("ts-{}", suffix());
    let created = dns_record(tb, &name);
    created
        .ensure_values(&[], &[primary.to_string()])
        .await
        .expect("create the test record");
    let mut record = created.clone();
    record.servers = servers
        .iter()
        .map(|s| s.parse().expect("server address"))
        .collect();
    record.timeout = Duration::from_secs(1);
    let target = DnsTarget {
        record,
        primary: vec![primary.into()],
        standby: vec![standby.into()],
    };
    (name, target)
}

// The executor's collaborators, in memory: only the traffic is real here.
#[derive(Default)]
struct Store(Mutex<Option<SwitchoverStatus>>);
#[async_trait]
impl SwitchoverStore for Store {
    async fn save(&self, status: &SwitchoverStatus) -> Result<(), String> {
        *self.0.lock().unwrap() = Some(status.clone());
        Ok(())
    }
}
struct HealthyPair;
#[async_trait]
impl PairView for HealthyPair {
    fn verdict(&self, _side: Side) -> String {
        "Healthy".into()
    }
    async fn intend(&self, _to: Side, _so: &str) -> Result<(), String> {
        Ok(())
    }
    async fn record_active(&self, _to: Side, _so: &str) -> Result<(), String> {
        Ok(())
    }
}
struct Quiet;
#[async_trait]
impl Notifier for Quiet {
    async fn step(&self, _: &str, _: &str, _: StepState, _: &str) {}
}

/// An emergency switchover to the standby over these targets, without replication.
async fn switch_to_standby(
    dns: Vec<Arc<dyn TrafficTarget>>,
    lbs: Vec<Arc<dyn TrafficTarget>>,
    verify_within: Duration,
) -> SwitchoverStatus {
    let spec: SwitchoverSpec = serde_json::from_value(json!({
        "pair": "wecom", "to": Side::Standby, "mode": "Emergency", "trigger": "Manual",
        "reason": "e2e traffic safety"
    }))
    .unwrap();
    Executor {
        name: format!("so-{}", suffix()),
        spec,
        active: Side::Primary,
        store: Arc::new(Store::default()),
        pair: Arc::new(HealthyPair),
        replication: None,
        dns,
        lbs,
        notifier: Arc::new(Quiet),
        max_lag: Duration::from_secs(5),
        drain_bound: Duration::from_secs(2),
        verify_within,
        failpoint: None,
        shutdown: None,
    }
    .run(None)
    .await
    .expect("the executor runs to an end")
}

fn step<'a>(st: &'a SwitchoverStatus, name: &str) -> &'a understudy::api::switchover::StepStatus {
    st.steps.iter().find(|s| s.name == name).unwrap()
}

#[tokio::test]
async fn an_haproxy_backend_set_by_hand_to_neither_side_refuses_the_flip_and_changes_nothing() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let _restore = RestoreHaproxy::new(&tb);
    let target = haproxy_target(&tb, tb.var("TESTBED_HAPROXY_RUNTIME_API"));
    use ServerAdminState::{Maint, Ready};
    for (p, s, words) in [
        (Ready, Ready, "both servers ready"),
        (Maint, Maint, "both servers in maint"),
    ] {
        set_servers(&tb, p, s).await;
        let err = target
            .ensure_side(Side::Primary, Side::Standby)
            .await
            .expect_err("a backend on neither side is refused");
        assert!(matches!(err, TrafficError::Conflict { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("it holds {words}")), "{msg}");
        assert!(msg.contains("Nothing was written"), "{msg}");
        assert_eq!(
            servers(&tb).await,
            (p, s),
            "{words}: the backend is left as it was"
        );
    }
}

#[tokio::test]
async fn an_haproxy_flip_whose_primary_cannot_be_put_in_maint_reports_both_servers_and_the_split() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    let _restore = RestoreHaproxy::new(&tb);
    set_servers(&tb, ServerAdminState::Ready, ServerAdminState::Maint).await;
    let relay = refusing_relay(
        tb.var("TESTBED_HAPROXY_RUNTIME_API"),
        format!(
            "set server {}/{} state maint",
            tb.var("TESTBED_HAPROXY_BACKEND"),
            tb.var("TESTBED_HAPROXY_PRIMARY_SERVER")
        ),
    )
    .await;
    let ns = service(&client, "wecom-primary").await;
    let (name, dns) =
        dns_target(&tb, &[tb.var("TESTBED_DNS_SERVER")], "10.5.0.1", "10.6.0.1").await;

    let st = switch_to_standby(
        vec![Arc::new(dns)],
        vec![
            Arc::new(service_target(&client, &ns)),
            Arc::new(haproxy_target(&tb, relay)),
        ],
        Duration::from_secs(2),
    )
    .await;

    assert_eq!(st.phase, SwitchoverPhase::Failed, "{st:?}");
    let flip = step(&st, "flip-lb");
    assert_eq!(flip.state, StepState::Failed);
    let msg = st.message.clone().unwrap_or_default();
    assert!(msg.starts_with("flip-lb failed: haproxy "), "{msg}");
    assert!(
        msg.contains("standby server standby ready; primary server primary could not be put in maint (HAProxy refused `set server app/primary state maint`: Permission denied): both servers ready (primary ready, standby ready)"),
        "{msg}"
    );
    assert!(msg.contains("Traffic is split"), "{msg}");
    assert!(!msg.contains("Nothing was moved"), "{msg}");
    assert!(
        msg.contains(&format!("service {ns}/app selector {KEY}: on standby (selector {KEY}=wecom-standby) [moved by this step]")),
        "{msg}"
    );
    assert!(msg.contains("on neither side (both servers ready"), "{msg}");
    assert!(
        msg.contains("on standby (answers 10.6.0.1) [not part of this step]"),
        "{msg}"
    );
    assert_eq!(
        flip.message.as_deref(),
        msg.strip_prefix("flip-lb failed: ")
    );
    // What the message says is what the systems hold.
    assert_eq!(
        servers(&tb).await,
        (ServerAdminState::Ready, ServerAdminState::Ready)
    );
    assert_eq!(selector(&client, &ns).await, "wecom-standby");
    assert_eq!(dig(&tb, &name), vec!["10.6.0.1"]);
}

#[tokio::test]
async fn a_dns_update_applied_but_not_answered_by_a_second_server_says_which_server_answers_what() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    let server = tb.var("TESTBED_DNS_SERVER");
    // The second listed server does not answer at all (nothing listens on port 1).
    let dead = "127.0.0.1:1".to_string();
    let (name, dns) =
        dns_target(&tb, &[server.clone(), dead.clone()], "10.3.0.1", "10.4.0.1").await;
    let ns = service(&client, "wecom-primary").await;

    let st = switch_to_standby(
        vec![Arc::new(dns)],
        vec![Arc::new(service_target(&client, &ns))],
        Duration::from_secs(2),
    )
    .await;

    assert_eq!(st.phase, SwitchoverPhase::Failed, "{st:?}");
    assert_eq!(step(&st, "flip-dns").state, StepState::Failed);
    let msg = st.message.clone().unwrap_or_default();
    assert!(
        msg.contains(&format!("UPDATE applied via {server}, but not verified")),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("{server} answers 10.4.0.1 (standby)")),
        "{msg}"
    );
    assert!(msg.contains(&format!("{dead} did not answer")), "{msg}");
    assert!(msg.contains("Traffic is split"), "{msg}");
    assert!(!msg.contains("Nothing was moved"), "{msg}");
    assert!(
        msg.contains(&format!("service {ns}/app selector {KEY}: on primary (selector {KEY}=wecom-primary) [not part of this step]")),
        "{msg}"
    );
    assert_eq!(dig(&tb, &name), vec!["10.4.0.1"], "the UPDATE was applied");
    assert_eq!(step(&st, "flip-lb").state, StepState::Pending);
    assert_eq!(selector(&client, &ns).await, "wecom-primary");
}

#[tokio::test]
async fn a_service_selector_set_by_hand_to_a_third_value_refuses_the_flip_and_keeps_it() {
    let tb = Testbed::load();
    let client = tb.kube().await;
    let ns = service(&client, "maintenance-page").await;
    let err = service_target(&client, &ns)
        .ensure_side(Side::Primary, Side::Standby)
        .await
        .expect_err("a third value is refused");
    assert!(matches!(err, TrafficError::Conflict { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("it holds selector {KEY}=maintenance-page, which is neither primary's ({KEY}=wecom-primary) nor standby's ({KEY}=wecom-standby)")),
        "{msg}"
    );
    assert!(msg.contains("Nothing was written"), "{msg}");
    assert_eq!(selector(&client, &ns).await, "maintenance-page");
}

#[tokio::test]
async fn a_selector_changed_between_the_read_and_the_write_is_refused_by_the_api_server() {
    let tb = Testbed::load();
    let client = tb.kube().await;
    let ns = service(&client, "wecom-primary").await;
    let target = service_target(&client, &ns);
    let read = Api::<Service>::namespaced(client.clone(), &ns)
        .get("app")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    // Someone changes the selector after our read…
    set_selector_by_hand(&client, &ns, "maintenance-page").await;
    // …so our write, decided on what we read, is refused and writes nothing.
    assert!(
        !target
            .write_selector_at(&read, "wecom-standby")
            .await
            .unwrap(),
        "a stale write is refused"
    );
    assert_eq!(selector(&client, &ns).await, "maintenance-page");

    // Put back on the primary by hand: the compare-and-swap moves it, once.
    set_selector_by_hand(&client, &ns, "wecom-primary").await;
    assert_eq!(
        target
            .ensure_side(Side::Primary, Side::Standby)
            .await
            .unwrap(),
        Moved::Changed
    );
    assert_eq!(
        target
            .ensure_side(Side::Primary, Side::Standby)
            .await
            .unwrap(),
        Moved::AlreadyThere
    );
    assert_eq!(selector(&client, &ns).await, "wecom-standby");
}

#[tokio::test]
async fn observe_says_what_every_target_holds_and_writes_nothing() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    let _restore = RestoreHaproxy::new(&tb);
    set_servers(&tb, ServerAdminState::Ready, ServerAdminState::Maint).await;
    let (name, dns) =
        dns_target(&tb, &[tb.var("TESTBED_DNS_SERVER")], "10.7.0.1", "10.8.0.1").await;
    let ns = service(&client, "wecom-standby").await;
    let serial = harness::soa_serial(&tb);

    let seen = dns.observe().await.unwrap();
    assert_eq!(seen.side(), Some(Side::Primary));
    assert_eq!(seen.holds(), "answers 10.7.0.1");
    dns_record(&tb, &name)
        .ensure_values(&["10.7.0.1".into()], &["10.9.9.9".into()])
        .await
        .unwrap();
    let seen = dns.observe().await.unwrap();
    assert_eq!(seen.side(), None);
    assert_eq!(seen.to_string(), "on neither side (answers 10.9.9.9)");
    assert_eq!(dns.current_side().await.unwrap(), None);

    let lb = haproxy_target(&tb, tb.var("TESTBED_HAPROXY_RUNTIME_API"));
    let seen = lb.observe().await.unwrap();
    assert_eq!(seen.side(), Some(Side::Primary));
    assert_eq!(seen.holds(), "primary ready, standby maint");

    let svc = service_target(&client, &ns).observe().await.unwrap();
    assert_eq!(svc.side(), Some(Side::Standby));
    assert_eq!(svc.holds(), format!("selector {KEY}=wecom-standby"));

    assert_eq!(
        harness::soa_serial(&tb),
        serial + 1,
        "only the hand edit changed the zone"
    );
    assert_eq!(
        servers(&tb).await,
        (ServerAdminState::Ready, ServerAdminState::Maint)
    );
}
