//! An Official Account pair on the real test bed: two simulated Official Accounts
//! (`understudy sim`'s Official Account API, which `e2e_oa_sim` holds to wechatpy), the
//! operator as a process, Kafka, the API server, BIND and HAProxy real. The primary is
//! edited over the platform's own API as its administrators' backend would; the
//! operator sees the changes by reconciliation scans and writes the standby over the
//! same API.

mod harness;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use harness::*;
use kube::Client;
use serde_json::{Value, json};
use support::{Testbed, wait_until};
use understudy::api::drill::DrillResult;
use understudy::provider::AccountProvider;
use understudy::provider::cgibin::client::{ApiClient, ClientOptions, Req};
use understudy::provider::officialaccount::{DIALECT, OfficialAccountProvider};

const PRIMARY: &str = "wx00000000000e2ea1";
const STANDBY: &str = "wx00000000000e2eb2";

fn secret(app: &str) -> String {
    format!("{app}-appsecret")
}

fn options(sim: &Proc) -> ClientOptions {
    ClientOptions {
        api_base: Some(sim.url.clone()),
        ..ClientOptions::default()
    }
}

/// The account's own backend, calling the platform's API.
fn backend(sim: &Proc, app: &str) -> ApiClient {
    ApiClient::new(&DIALECT, app, &secret(app), &options(sim)).unwrap()
}

/// key → digest of an account as the adapter reads it over the platform's API.
async fn held(sim: &Proc, app: &str) -> BTreeMap<String, String> {
    let p = OfficialAccountProvider::new(app, &secret(app), &options(sim)).unwrap();
    let page = p.list_entities(None, 10_000).await.unwrap();
    page.entities
        .into_iter()
        .map(|e| (e.key.to_string(), e.digest.to_hex()))
        .collect()
}

/// Both accounts' replicable entities (the auto-replies are each account's own).
async fn replicable(sim: &Proc, app: &str) -> BTreeMap<String, String> {
    let mut all = held(sim, app).await;
    all.retain(|k, _| !k.starts_with("auto-reply/"));
    all
}

async fn wait_same(sim: &Proc, what: &str) -> BTreeMap<String, String> {
    wait_until(Duration::from_secs(90), what, || async {
        let p = replicable(sim, PRIMARY).await;
        (p == replicable(sim, STANDBY).await).then_some(p)
    })
    .await
}

async fn accounts(sim: &Proc) {
    for (app, autoreply) in [
        (
            PRIMARY,
            json!({"is_autoreply_open": 1, "message_default_autoreply_info": {"type": "text", "content": "您好"}}),
        ),
        (STANDBY, json!({"is_autoreply_open": 0})),
    ] {
        admin(
            sim,
            &format!("/admin/oa/accounts/{app}"),
            reqwest::Method::PUT,
            json!({ "secret": secret(app), "followers": ["union-a", "union-b", "union-c"],
                    "anonymousFollowers": 1, "autoreply": autoreply }),
        )
        .await;
    }
}

/// What the primary's administrators set up: a menu, a tag on two followers, an image.
async fn seed(sim: &Proc) {
    let b = backend(sim, PRIMARY);
    b.call(
        "menu/create",
        Req::Post(&json!({"button": [{"type": "click", "name": "今日歌曲", "key": "V1001"},
            {"name": "服务", "sub_button": [{"type": "view", "name": "官网", "url": "https://example.com/"}]}]})),
    )
    .await
    .unwrap();
    let tag = b
        .call(
            "tags/create",
            Req::Post(&json!({"tag": {"name": "VIP客户"}})),
        )
        .await
        .unwrap();
    let fans = admin(
        sim,
        &format!("/admin/oa/accounts/{PRIMARY}/follow"),
        reqwest::Method::POST,
        json!({"unionids": ["union-a", "union-b"]}),
    )
    .await;
    let openids: Vec<&Value> = fans["openids"].as_object().unwrap().values().collect();
    b.call(
        "tags/members/batchtagging",
        Req::Post(&json!({"tagid": tag["tag"]["id"], "openid_list": openids})),
    )
    .await
    .unwrap();
    let image: Vec<u8> = (0..20_000u32).map(|i| (i * 31 % 253) as u8).collect();
    b.call(
        "material/add_material",
        Req::Upload {
            query: &[("type", "image")],
            file_name: "banner.png",
            bytes: &image,
            fields: &[],
        },
    )
    .await
    .unwrap();
}

async fn oa_scene(tb: &Testbed, client: &Client, sim: &Proc, prefix: &str) -> Scene {
    let account = |app: &str, side: &str| {
        json!({ "provider": "officialAccount", "appId": app, "apiBase": sim.url,
                "credentialsSecretRef": { "name": format!("oa-{side}") } })
    };
    let scene = scene_of(
        tb,
        client,
        prefix,
        [account(PRIMARY, "primary"), account(STANDBY, "standby")],
        json!({ "reconcileInterval": "2s" }),
        fast_detection(),
    )
    .await;
    for (side, app) in [("primary", PRIMARY), ("standby", STANDBY)] {
        create_secret(
            client,
            &scene.namespace,
            &format!("oa-{side}"),
            json!({ "secret": secret(app) }),
        )
        .await;
    }
    scene
}

#[tokio::test]
async fn an_official_account_pair_replicates_by_scan_drills_and_fails_over_on_48004_not_on_a_quota_storm()
 {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim_seeded("oa-pair", "unused=0");
    accounts(&sim).await;
    seed(&sim).await;
    let scene = oa_scene(&tb, &client, &sim, "e2e-oa").await;
    let _op = start_operator(&tb, &scene.namespace, "oa", &[], &[]);
    wait_replicating(&client, &scene).await;

    // The bootstrap copies menu, tag (by unionid) and image to the standby.
    let same = wait_same(&sim, "the standby holds the primary's menu, tag and image").await;
    let keys: Vec<&str> = same.keys().map(String::as_str).collect();
    assert!(
        keys.contains(&"menu/default") && keys.contains(&"tag/VIP客户"),
        "{keys:?}"
    );
    assert_eq!(
        keys.iter()
            .filter(|k| k.starts_with("content/image-"))
            .count(),
        1
    );
    // Read back over the standby's own API: the tag holds the standby's openids of the
    // same two people.
    let standby = backend(&sim, STANDBY);
    let tags = standby.call("tags/get", Req::Get(&[])).await.unwrap();
    let vip = tags["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "VIP客户")
        .unwrap()
        .clone();
    assert_eq!(vip["count"], 2, "{vip}");
    let menu = standby.call("menu/get", Req::Get(&[])).await.unwrap();
    assert_eq!(
        menu["menu"]["button"][1]["sub_button"][0]["url"],
        "https://example.com/"
    );

    // The auto-replies cannot be written: a condition says so and what to do.
    let c = wait_until(Duration::from_secs(30), "NotReplicable", || async {
        condition(&client, &scene, "NotReplicable").await
    })
    .await;
    assert_eq!(c.status, "True");
    assert!(
        c.message.contains("auto-reply") && c.message.contains("by hand"),
        "{}",
        c.message
    );

    // A change on the primary is seen by the next scan (every 2 s here).
    let b = backend(&sim, PRIMARY);
    let changed = Instant::now();
    b.call(
        "menu/create",
        Req::Post(&json!({"button": [{"type": "click", "name": "新菜单", "key": "V2"}]})),
    )
    .await
    .unwrap();
    b.call(
        "tags/create",
        Req::Post(&json!({"tag": {"name": "新客户"}})),
    )
    .await
    .unwrap();
    let after = wait_same(&sim, "the changed menu and the new tag reach the standby").await;
    eprintln!(
        "Official Account change → on the standby: {:?} (scan every 2 s)",
        changed.elapsed()
    );
    assert!(after.contains_key("tag/新客户"));
    assert_ne!(after["menu/default"], same["menu/default"]);

    // A drill: every replicable record matches; the auto-replies differ and are
    // reported apart, without failing it.
    let st = drill_to_the_end(&client, &scene, "oa-drill").await;
    assert_eq!(st.result, Some(DrillResult::Passed), "{st:?}");
    let v = st.verification.clone().unwrap();
    assert_eq!(v.matched, after.len() as i64, "{v:?}");
    assert_eq!(st.not_replicable.len(), 1, "{st:?}");
    let nr = &st.not_replicable[0];
    assert_eq!(
        (nr.kind.as_str(), nr.primary, nr.standby, nr.matched),
        ("auto-reply", 1, 1, 0)
    );
    assert_eq!(nr.differing, ["auto-reply/current: differs"]);

    // A rate-limit storm on the primary (45011 on every call): Unknown, no failover.
    rate_limit_storm_moves_nothing(&client, &scene, &sim, PRIMARY).await;

    // Banned after a violation (48004): a failover, DNS and LB flipped.
    freeze_fails_over(
        &tb,
        &client,
        &scene,
        &sim,
        PRIMARY,
        "api forbidden for irregularities",
    )
    .await;
}
