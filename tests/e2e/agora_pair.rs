//! An Agora Chat pair on the real test bed: two simulated apps (`understudy sim`'s
//! Agora Chat REST API, whose app tokens `e2e_agora_token` holds to Agora's own
//! `agora-token`), the operator as a process, Kafka, the API server, BIND and HAProxy
//! real. The primary app is written over its REST API as the app's own server would;
//! the operator sees the changes by reconciliation scans and writes the standby app.

mod harness;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::*;
use kube::Client;
use serde_json::{Value, json};
use support::{Testbed, wait_until};
use understudy::api::drill::DrillResult;
use understudy::provider::AccountProvider;
use understudy::provider::agora::AgoraChatProvider;
use understudy::provider::agora::token::build_chat_app_token;
use understudy::provider::cgibin::Limit;

const ORG: &str = "41117440";
// (app name, App ID, App Certificate): 32 hex digits each, made up.
const PRIMARY: (&str, &str, &str) = (
    "primary",
    "6f3a9c0e2b7d41e58a0c9d2e4f1b7a35",
    "b41d7e0c92a34f6e8d15c0a7e3f29b68",
);
const STANDBY: (&str, &str, &str) = (
    "standby",
    "1a2b3c4d5e6f708192a3b4c5d6e7f809",
    "0d9e8c7b6a5f4e3d2c1b0a9f8e7d6c5b",
);

fn app_key(app: (&str, &str, &str)) -> String {
    format!("{ORG}#{}", app.0)
}

/// key → digest of an app as the adapter reads it over the REST API.
async fn held(sim: &Proc, app: (&str, &str, &str)) -> BTreeMap<String, String> {
    let p = AgoraChatProvider::new(&sim.url, &app_key(app), app.1, app.2, Limit::Off).unwrap();
    p.list_entities(None, 10_000)
        .await
        .unwrap()
        .entities
        .into_iter()
        .map(|e| (e.key.to_string(), e.digest.to_hex()))
        .collect()
}

async fn wait_same(sim: &Proc, what: &str) -> BTreeMap<String, String> {
    wait_until(Duration::from_secs(90), what, || async {
        let p = held(sim, PRIMARY).await;
        (p == held(sim, STANDBY).await).then_some(p)
    })
    .await
}

/// The primary app's own server: a REST call with an app token.
async fn rest(sim: &Proc, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let token = build_chat_app_token(PRIMARY.1, PRIMARY.2, now, 3600, 7);
    let mut req = reqwest::Client::new()
        .request(method, format!("{}/{ORG}/{}/{path}", sim.url, PRIMARY.0))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

async fn agora_scene(tb: &Testbed, client: &Client, sim: &Proc) -> Scene {
    let account = |app: (&str, &str, &str)| {
        json!({ "provider": "agoraChat", "appKey": app_key(app), "apiBase": sim.url,
                "credentialsSecretRef": { "name": format!("agora-{}", app.0) } })
    };
    let scene = scene_of(
        tb,
        client,
        "e2e-agora",
        [account(PRIMARY), account(STANDBY)],
        json!({ "reconcileInterval": "2s" }),
        fast_detection(),
    )
    .await;
    for app in [PRIMARY, STANDBY] {
        create_secret(
            client,
            &scene.namespace,
            &format!("agora-{}", app.0),
            json!({ "appId": app.1, "appCertificate": app.2 }),
        )
        .await;
    }
    scene
}

#[tokio::test]
async fn an_agora_chat_pair_replicates_users_and_groups_and_fails_over_on_a_suspension_not_on_429s()
{
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim_seeded("agora-pair", "unused=0");
    for app in [PRIMARY, STANDBY] {
        admin(
            &sim,
            &format!("/admin/agora/apps/{ORG}/{}", app.0),
            reqwest::Method::PUT,
            json!({ "appId": app.1, "appCertificate": app.2 }),
        )
        .await;
    }
    // The app's server registers users and a group.
    rest(
        &sim,
        reqwest::Method::POST,
        "users",
        Some(json!([{"username": "alice", "password": "p1", "nickname": "爱丽丝"},
                    {"username": "bob", "password": "p2"}, {"username": "carol", "password": "p3"}])),
    )
    .await;
    rest(&sim, reqwest::Method::POST, "users/bob/deactivate", None).await;
    rest(
        &sim,
        reqwest::Method::POST,
        "chatgroups",
        Some(
            json!({"groupname": "客服", "description": "support", "public": true,
                    "maxusers": 200, "owner": "alice", "members": ["carol"]}),
        ),
    )
    .await;
    let scene = agora_scene(&tb, &client, &sim).await;
    let _op = start_operator(&tb, &scene.namespace, "agora", &[], &[]);
    wait_replicating(&client, &scene).await;

    let same = wait_same(&sim, "the standby app holds the primary's users and group").await;
    let keys: Vec<&str> = same.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["group/客服", "member/alice", "member/bob", "member/carol"]
    );

    // A change on the primary is seen by the next scan (every 2 s here).
    let changed = Instant::now();
    let groups = rest(&sim, reqwest::Method::GET, "chatgroups?limit=10", None).await;
    let id = groups["data"][0]["groupid"].as_str().unwrap().to_string();
    rest(
        &sim,
        reqwest::Method::POST,
        &format!("chatgroups/{id}/users"),
        Some(json!({"usernames": ["bob"]})),
    )
    .await;
    rest(&sim, reqwest::Method::DELETE, "users/carol", None).await;
    let after = wait_same(
        &sim,
        "the new member and the deleted user reach the standby",
    )
    .await;
    eprintln!(
        "Agora Chat change → on the standby: {:?} (scan every 2 s)",
        changed.elapsed()
    );
    assert!(!after.contains_key("member/carol"));
    assert_ne!(after["group/客服"], same["group/客服"]);

    // A drill compares both apps record by record and passes.
    let st = drill_to_the_end(&client, &scene, "agora-drill").await;
    assert_eq!(st.result, Some(DrillResult::Passed), "{st:?}");
    assert_eq!(st.verification.unwrap().matched, after.len() as i64);

    // 429 on every call of the primary: Unknown, no failover.
    let account = app_key(PRIMARY).replace('#', "%23");
    rate_limit_storm_moves_nothing(&client, &scene, &sim, &account).await;

    // The primary app is suspended (403 to every call): a failover, DNS and LB flipped.
    freeze_fails_over(&tb, &client, &scene, &sim, &account, "app suspended").await;
}

const P_SECRET: &str = "primary-callback-rule-secret";
const S_SECRET: &str = "standby-callback-rule-secret";

/// Both apps in the simulator, with their callback rules sent to `hook` when given.
async fn apps(sim: &Proc, hook: Option<&str>) {
    for (app, secret) in [(PRIMARY, P_SECRET), (STANDBY, S_SECRET)] {
        let mut config = json!({ "appId": app.1, "appCertificate": app.2 });
        if let Some(url) = hook {
            config["callback"] = json!({ "url": url, "secret": secret });
        }
        admin(
            sim,
            &format!("/admin/agora/apps/{ORG}/{}", app.0),
            reqwest::Method::PUT,
            config,
        )
        .await;
    }
}

/// A callback body as Agora signs it, with `secret`.
fn signed(app: (&str, &str, &str), call: &str, ts_ms: i64, group: &str, secret: &str) -> Value {
    let call_id = format!("{}_{call}", app_key(app));
    json!({
        "callId": call_id, "appkey": app_key(app), "id": group, "type": "GROUP",
        "event": "group_op_event", "operation": "UPDATE", "operator": "admin",
        "payload": {}, "timestamp": ts_ms,
        "security": understudy::provider::agora::callback::security(&call_id, secret, &ts_ms.to_string()),
    })
}

#[tokio::test]
async fn agora_chat_callbacks_carry_group_and_login_changes_and_forged_ones_change_nothing() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim_seeded("agora-callbacks", "unused=0");
    apps(&sim, None).await;
    rest(
        &sim,
        reqwest::Method::POST,
        "users",
        Some(
            json!([{"username": "alice", "password": "p1"}, {"username": "bob", "password": "p2"}]),
        ),
    )
    .await;
    let account = |app: (&str, &str, &str)| {
        json!({ "provider": "agoraChat", "appKey": app_key(app), "apiBase": sim.url,
                "credentialsSecretRef": { "name": format!("agora-{}", app.0) },
                "callback": { "secretRef": { "name": format!("agora-callback-{}", app.0) } } })
    };
    // No reconciliation scan within the test: only callbacks move changes.
    let scene = scene_of(
        &tb,
        &client,
        "e2e-agora-cb",
        [account(PRIMARY), account(STANDBY)],
        json!({ "reconcileInterval": "1h" }),
        fast_detection(),
    )
    .await;
    for (app, secret) in [(PRIMARY, P_SECRET), (STANDBY, S_SECRET)] {
        let ns = &scene.namespace;
        let creds = json!({ "appId": app.1, "appCertificate": app.2 });
        create_secret(&client, ns, &format!("agora-{}", app.0), creds).await;
        let rule = json!({ "secret": secret });
        create_secret(&client, ns, &format!("agora-callback-{}", app.0), rule).await;
    }
    let op = start_operator(&tb, &scene.namespace, "agora-cb", &[], &[]);
    let url = format!(
        "{}/webhooks/agora/{}/{}",
        op.url, scene.namespace, scene.pair
    );
    apps(&sim, Some(&url)).await;
    wait_replicating(&client, &scene).await;
    wait_same(&sim, "the standby app holds the primary's users").await;

    // A group created, joined and renamed on the primary: each operation's callback
    // carries it across (the next scan is an hour away).
    let changed = Instant::now();
    let created = rest(
        &sim,
        reqwest::Method::POST,
        "chatgroups",
        Some(
            json!({"groupname": "售后", "description": "after-sales", "public": false,
                    "maxusers": 50, "owner": "alice"}),
        ),
    )
    .await;
    let id = created["data"]["groupid"].as_str().unwrap().to_string();
    let first = wait_same(&sim, "the new group reaches the standby by its callback").await;
    let latency = changed.elapsed();
    assert!(first.contains_key("group/售后"), "{first:?}");
    rest(
        &sim,
        reqwest::Method::POST,
        &format!("chatgroups/{id}/users"),
        Some(json!({"usernames": ["bob"]})),
    )
    .await;
    wait_until(
        Duration::from_secs(30),
        "bob's joining reaches the standby",
        || async {
            let s = held(&sim, STANDBY).await;
            (s.get("group/售后") != first.get("group/售后") && s == held(&sim, PRIMARY).await)
                .then_some(())
        },
    )
    .await;
    rest(
        &sim,
        reqwest::Method::PUT,
        &format!("chatgroups/{id}"),
        Some(json!({"groupname": "售后服务"})),
    )
    .await;
    let renamed = wait_same(&sim, "the rename reaches the standby").await;
    assert!(renamed.contains_key("group/售后服务") && !renamed.contains_key("group/售后"));
    // Destroyed: the callback names only the id, which no longer exists.
    rest(
        &sim,
        reqwest::Method::DELETE,
        &format!("chatgroups/{id}"),
        None,
    )
    .await;
    let destroyed = wait_same(&sim, "the destroyed group leaves the standby").await;
    assert!(
        !destroyed.keys().any(|k| k.starts_with("group/")),
        "{destroyed:?}"
    );

    // A user registered on the primary is carried by their first login's callback (a
    // registration sends none).
    rest(
        &sim,
        reqwest::Method::POST,
        "users",
        Some(json!([{"username": "dave", "password": "p4", "nickname": "Dave"}])),
    )
    .await;
    admin(
        &sim,
        &format!("/admin/agora/apps/{ORG}/{}/login", PRIMARY.0),
        reqwest::Method::POST,
        json!({ "username": "dave", "os": "android" }),
    )
    .await;
    let with_dave = wait_same(&sim, "dave reaches the standby by his login's callback").await;
    assert!(with_dave.contains_key("member/dave"));
    eprintln!("Agora Chat callback → group on the standby: {latency:?} (no scan within the test)");
    let stats = admin(
        &sim,
        &format!("/admin/agora/apps/{ORG}/{}", PRIMARY.0),
        reqwest::Method::GET,
        json!(null),
    )
    .await;
    assert!(stats["callbacksSent"].as_u64().unwrap() >= 5, "{stats}");

    // Forged, misaddressed, stale and replayed callbacks change nothing. Each names a
    // group that exists on the primary only (made while the apps send no callbacks), so
    // taking one would copy it.
    apps(&sim, None).await;
    let g = rest(
        &sim,
        reqwest::Method::POST,
        "chatgroups",
        Some(
            json!({"groupname": "secret-plans", "public": true, "maxusers": 10, "owner": "alice"}),
        ),
    )
    .await;
    let gid = g["data"]["groupid"].as_str().unwrap().to_string();
    let before = held(&sim, STANDBY).await;
    let now = chrono::Utc::now().timestamp_millis();
    let post = |body: Value| {
        let url = url.clone();
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };
    let mut other_app = signed(PRIMARY, "c2", now, &gid, P_SECRET);
    other_app["appkey"] = json!(format!("{ORG}#someoneelse"));
    assert_eq!(
        post(signed(PRIMARY, "c1", now, &gid, "guessed")).await,
        401,
        "a wrong secret"
    );
    assert_eq!(post(other_app).await, 401, "an app that is not a side");
    assert_eq!(
        post(signed(PRIMARY, "c3", now - 3_600_000, &gid, P_SECRET)).await,
        401,
        "an hour old"
    );
    assert_eq!(post(json!({"hello": "world"})).await, 400, "not a callback");
    assert_eq!(held(&sim, STANDBY).await, before);
    let genuine = signed(PRIMARY, "c4", now, &gid, P_SECRET);
    assert_eq!(post(genuine.clone()).await, 200, "the genuine callback");
    assert_eq!(post(genuine).await, 409, "its replay");
    let taken = wait_same(
        &sim,
        "the group the genuine callback named reaches the standby",
    )
    .await;
    assert!(taken.contains_key("group/secret-plans"));

    let m = metrics(&op).await;
    let with = |result: &str| {
        let ns = format!("namespace=\"{}\"", scene.namespace);
        let r = format!("result=\"{result}\"");
        metric_sum(&m, "understudy_provider_callbacks_total", &[&ns, &r])
    };
    assert_eq!(with("refused"), 3.0);
    assert_eq!(with("invalid"), 1.0);
    assert_eq!(with("replay"), 1.0);
    assert!(with("taken") >= 6.0, "{}", with("taken"));
}
