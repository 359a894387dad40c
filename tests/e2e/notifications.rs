//! Notifications to people, end to end on the real test bed: the operator (as a process,
//! `--notifications FILE`, its Secrets in its own namespace) tells a WeCom group robot, a
//! Slack incoming webhook, PagerDuty's Events API v2 and a signed generic webhook —
//! each a real HTTP receiver on loopback answering as that service answers — that a
//! side froze, that a failover started and that it succeeded; a sink that refuses
//! shows on the pair and in the metrics. A pair's own sinks get only that pair's
//! messages, and rotated Secrets are used without a restart ([`per_pair`]); a
//! switchover held past its bound is reported stuck once ([`late`]).

mod harness;
#[path = "notifications/late.rs"]
mod late;
#[path = "notifications/per_pair.rs"]
mod per_pair;
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use harness::*;
use serde_json::{Value, json};
use support::{Testbed, wait_until};
use understudy::api::switchover::SwitchoverPhase;

const HOOK_SECRET: &str = "hook-hmac-secret-7f3a";
const ROUTING_KEY: &str = "R0UTINGKEY0123456789abcdef012345";
const ROBOT_KEY: &str = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa";

/// One request a receiver took.
#[derive(Clone, Debug)]
struct Got {
    sink: String,
    headers: HeaderMap,
    body: Value,
    raw: Bytes,
    at: Instant,
}

type Log = Arc<Mutex<Vec<Got>>>;

fn take(log: &Log, sink: &str, headers: HeaderMap, raw: Bytes) {
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    log.lock().unwrap().push(Got {
        sink: sink.into(),
        headers,
        body,
        raw,
        at: Instant::now(),
    });
}

/// The four services on one loopback listener, each answering as it does (and a
/// second signed webhook, `/team-hook`, for a pair's own sink).
async fn receivers() -> (String, Log) {
    let log: Log = Arc::default();
    let app = Router::new()
        .route(
            "/cgi-bin/webhook/send",
            post(
                |State(log): State<Log>, headers: HeaderMap, raw: Bytes| async move {
                    take(&log, "wecom", headers, raw);
                    axum::Json(json!({ "errcode": 0, "errmsg": "ok" }))
                },
            ),
        )
        .route(
            "/services/{a}/{b}/{c}",
            post(
                |State(log): State<Log>,
                 Path((_, _, c)): Path<(String, String, String)>,
                 headers: HeaderMap,
                 raw: Bytes| async move {
                    if c == "revoked" {
                        take(&log, "revoked", headers, raw);
                        return (StatusCode::NOT_FOUND, "no_service");
                    }
                    take(&log, "slack", headers, raw);
                    (StatusCode::OK, "ok")
                },
            ),
        )
        .route(
            "/v2/enqueue",
            post(
                |State(log): State<Log>, headers: HeaderMap, raw: Bytes| async move {
                    take(&log, "pagerduty", headers, raw);
                    (
                        StatusCode::ACCEPTED,
                        axum::Json(json!({ "status": "success", "message": "Event processed" })),
                    )
                },
            ),
        )
        .route(
            "/hook",
            post(
                |State(log): State<Log>, headers: HeaderMap, raw: Bytes| async move {
                    take(&log, "webhook", headers, raw);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/team-hook",
            post(
                |State(log): State<Log>, headers: HeaderMap, raw: Bytes| async move {
                    take(&log, "team-hook", headers, raw);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, log)
}

fn of(log: &Log, sink: &str) -> Vec<Got> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|g| g.sink == sink)
        .cloned()
        .collect()
}

/// The webhook document's `kind`s, in order, from the signed webhook.
fn kinds(log: &Log) -> Vec<String> {
    of(log, "webhook")
        .iter()
        .map(|g| g.body["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn wait_kind(log: &Log, kind: &str, n: usize) {
    wait_until(
        Duration::from_secs(60),
        &format!("{n}× {kind} at the webhook"),
        || async { (kinds(log).iter().filter(|k| *k == kind).count() >= n).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_freeze_and_its_failover_reach_every_sink_in_its_format_within_seconds() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let (base, log) = receivers().await;
    let sim = start_sim("notify");
    let scene = scene(&tb, &client, &sim, "e2e-notify", fast_detection()).await;
    let ns = scene.namespace.clone();
    create_secret(
        &client,
        &ns,
        "notify",
        json!({
            "wecomUrl": format!("{base}/cgi-bin/webhook/send?key={ROBOT_KEY}"),
            "slackUrl": format!("{base}/services/T000/B000/XXXX"),
            "revokedUrl": format!("{base}/services/T000/B000/revoked"),
            "routingKey": ROUTING_KEY,
            "hookSecret": HOOK_SECRET,
        }),
    )
    .await;
    let config = json!({ "sinks": [
        { "name": "ops-robot", "kind": "WecomRobot", "secretRef": { "name": "notify", "key": "wecomUrl" } },
        { "name": "ops-slack", "kind": "Slack", "secretRef": { "name": "notify", "key": "slackUrl" } },
        { "name": "pager", "kind": "PagerDuty", "url": format!("{base}/v2/enqueue"),
          "minSeverity": "critical", "secretRef": { "name": "notify", "key": "routingKey" } },
        { "name": "audit-hook", "kind": "Webhook", "url": format!("{base}/hook"),
          "secretRef": { "name": "notify", "key": "hookSecret" } },
        { "name": "old-slack", "kind": "Slack", "secretRef": { "name": "notify", "key": "revokedUrl" } },
    ]});
    let op = notifying_operator(&tb, &ns, "notify", &config, &[]);
    wait_replicating(&client, &scene).await;

    // Freeze → first message: the standby frozen and thawed five times (no failover).
    let mut firsts = Vec::new();
    for i in 1..=5 {
        let before = of(&log, "webhook").len();
        let frozen = Instant::now();
        set_status(&sim, "corp-b", "frozen", "under review").await;
        wait_kind(&log, "SideFrozen", i).await;
        let first = log
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.at >= frozen && g.sink != "revoked")
            .map(|g| g.at)
            .min()
            .unwrap();
        firsts.push(first - frozen);
        assert!(of(&log, "webhook").len() > before);
        set_status(&sim, "corp-b", "active", "").await;
        wait_kind(&log, "Resolved", i).await;
    }
    firsts.sort();
    eprintln!(
        "freeze → first notification: p50 {:?}, max {:?} (n={}, poll 500 ms, 2 confirmations)",
        firsts[firsts.len() / 2],
        firsts[firsts.len() - 1],
        firsts.len()
    );

    // The primary freezes: SideFrozen, FailoverStarted, FailoverSucceeded, in order.
    let before = kinds(&log).len();
    set_status(&sim, "corp-a", "frozen", "违规 (violation)").await;
    let so = wait_switchover_finished(&client, &ns, Duration::from_secs(60)).await;
    assert_eq!(
        so.status.as_ref().unwrap().phase,
        SwitchoverPhase::Succeeded
    );
    wait_kind(&log, "FailoverSucceeded", 1).await;
    let after: Vec<String> = kinds(&log)[before..].to_vec();
    assert_eq!(
        after,
        ["SideFrozen", "FailoverStarted", "FailoverSucceeded"],
        "{after:?}"
    );

    // The signed webhook: verifies with its secret only; says who serves traffic now.
    let hooks = of(&log, "webhook");
    let last = hooks.last().unwrap();
    let ts = last.headers["x-understudy-timestamp"].to_str().unwrap();
    let sig = last.headers["x-understudy-signature"].to_str().unwrap();
    assert!(understudy::notify::verify(
        HOOK_SECRET.as_bytes(),
        ts,
        &last.raw,
        sig
    ));
    assert!(!understudy::notify::verify(
        b"another secret",
        ts,
        &last.raw,
        sig
    ));
    assert_eq!(last.body["serving"], "standby");
    assert_eq!(last.body["pair"], scene.pair.as_str());
    let lost = so.status.as_ref().unwrap().records_lost.unwrap_or(0);
    assert_eq!(last.body["details"]["recordsLost"], lost, "{}", last.body);
    let freeze_key = format!("understudy/{ns}/{}/freeze", scene.pair);
    assert_eq!(last.body["incidentKey"], freeze_key.as_str());

    // WeCom robot: markdown with the exact commands of both options.
    let robot = of(&log, "wecom");
    assert!(robot.len() >= 13, "{}", robot.len());
    let text = robot.last().unwrap().body["markdown"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(robot.last().unwrap().body["msgtype"], "markdown");
    let evidence = format!("kubectl understudy evidence {} -n {ns}", scene.pair);
    let failback = format!("kubectl understudy failback {} -n {ns}", scene.pair);
    assert!(
        text.contains(&evidence) && text.contains(&failback),
        "{text}"
    );

    // Slack: text plus blocks; the revoked webhook (404 no_service) is not retried.
    let slack = of(&log, "slack").pop().unwrap().body;
    assert!(
        slack["text"].as_str().unwrap().contains(&scene.pair),
        "{slack}"
    );
    assert!(slack["blocks"].as_array().is_some_and(|b| !b.is_empty()));

    // PagerDuty: only critical events (minSeverity), one dedup_key per incident.
    let pages = of(&log, "pagerduty");
    let triggers: Vec<&Value> = pages
        .iter()
        .map(|g| &g.body)
        .filter(|b| b["event_action"] == "trigger")
        .collect();
    assert!(!triggers.is_empty());
    for b in &triggers {
        assert_eq!(b["routing_key"], ROUTING_KEY);
        assert_eq!(b["payload"]["severity"], "critical");
    }
    let primary_freeze: Vec<&&Value> = triggers
        .iter()
        .filter(|b| b["dedup_key"] == freeze_key.as_str())
        .collect();
    assert!(primary_freeze.len() >= 2, "{pages:?}");

    // The revoked Slack webhook: each message tried once (404 is permanent), counted,
    // and the pair says which sink fails — never its URL.
    // Each sink has its own worker: wait until both Slack sinks got every message the
    // webhook got and the revoked one gave up on each, then count the tries.
    let messages = of(&log, "webhook").len();
    let m = wait_until(
        Duration::from_secs(20),
        "both Slack sinks settled",
        || async {
            let m = metrics(&op).await;
            let failed = metric_sum(
                &m,
                "understudy_notifications_total",
                &["sink=\"old-slack\"", "result=\"failed\""],
            );
            let sent = metric_sum(
                &m,
                "understudy_notifications_total",
                &["sink=\"ops-slack\"", "result=\"sent\""],
            );
            let settled = of(&log, "slack").len() == messages && failed == messages as f64;
            (settled && sent == messages as f64).then_some(m)
        },
    )
    .await;
    let revoked = of(&log, "revoked").len();
    let ok = of(&log, "slack").len();
    assert_eq!(revoked, ok, "one try per message at the revoked webhook");
    wait_until(
        Duration::from_secs(30),
        "NotificationsDelivered False",
        || async {
            let p = pair(&client, &scene).await;
            let c = p.status?.conditions;
            let c = c
                .into_iter()
                .find(|c| c.type_ == "NotificationsDelivered")?;
            (c.status == "False").then_some(c.message)
        },
    )
    .await;
    let p = pair(&client, &scene).await;
    let msg = serde_json::to_string(&p.status.unwrap().conditions).unwrap();
    assert!(msg.contains("old-slack"), "{msg}");
    assert!(
        !msg.contains("revoked") && !msg.contains(ROBOT_KEY),
        "{msg}"
    );
    // Which side serves traffic and whether the pair is paused, as metrics; the freeze
    // signals of this pair under its own name.
    let pair_l = [
        format!("namespace=\"{ns}\""),
        format!("pair=\"{}\"", scene.pair),
    ];
    let with = |extra: &str| {
        let mut l: Vec<&str> = pair_l.iter().map(String::as_str).collect();
        l.push(extra);
        l.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let sum = |name: &str, extra: &str| {
        let l = with(extra);
        let l: Vec<&str> = l.iter().map(String::as_str).collect();
        metric_sum(&m, name, &l)
    };
    assert_eq!(sum("understudy_active_side", "side=\"standby\""), 1.0);
    assert_eq!(sum("understudy_active_side", "side=\"primary\""), 0.0);
    assert_eq!(sum("understudy_paused", ""), 0.0);
    assert!(sum("understudy_freeze_signals_total", "verdict=\"Frozen\"") >= 1.0);
    let sent = |sink: &str| {
        let s = format!("sink=\"{sink}\"");
        metric_sum(
            &m,
            "understudy_notifications_total",
            &[&s, "result=\"sent\""],
        )
    };
    assert_eq!(sent("ops-slack"), ok as f64);
    assert_eq!(sent("pager"), pages.len() as f64);
    let log_text = std::fs::read_to_string(&op.log).unwrap();
    for secret in [ROBOT_KEY, ROUTING_KEY, HOOK_SECRET, "T000/B000"] {
        assert!(
            !log_text.contains(secret),
            "the operator log shows {secret}"
        );
    }
    let _ = std::fs::remove_file(notify_file(&ns));
}

/// An operator process (in `ns`'s Lease) whose `--notifications` file is `config`.
fn notifying_operator(
    tb: &Testbed,
    ns: &str,
    name: &str,
    config: &Value,
    envs: &[(&str, String)],
) -> Proc {
    let file = notify_file(ns);
    std::fs::write(&file, serde_yaml::to_string(config).unwrap()).unwrap();
    let args = [
        "--lease-namespace",
        ns,
        "--notifications",
        file.to_str().unwrap(),
    ];
    start_operator(tb, ns, name, &args, envs)
}

/// Where `notifying_operator` writes the operator's file for `ns`.
fn notify_file(ns: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("understudy-notify-{ns}.yaml"))
}
