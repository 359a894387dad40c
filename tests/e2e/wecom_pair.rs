//! A WeCom pair on the real test bed: two simulated corps (`understudy sim`'s WeCom API),
//! the operator as a process, Kafka, the API server, BIND and HAProxy real. The primary
//! corp is written by wechatpy (a client nobody on this project wrote); its callbacks,
//! sealed as WeCom seals them, reach the operator's `/webhooks/wecom/…`; the standby
//! corp is written by the operator over WeCom's wire format.

mod harness;
#[path = "wecom/kit.rs"]
mod kit;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use harness::*;
use kit::{
    Corp, adapter_digests, configure, corp_stats, percentile, stored_digest, stored_keys, wechatpy,
    wechatpy_crypto,
};
use kube::Client;
use serde_json::json;
use support::{Testbed, wait_until, wait_until_said};
use understudy::api::drill::{DrillPhase, DrillResult};
use understudy::api::switchover::SwitchoverMode;

const PRIMARY: &str = "wwprimary0001";
const STANDBY: &str = "wwstandby0002";
// The wechatpy scenarios use SECRET for customer contacts and SECRET-contacts for the
// contacts-sync app.
const P_EXT: &str = "p-ext";
const S_EXT: &str = "s-ext";
const P_TOKEN: &str = "primaryCallbackToken";
const S_TOKEN: &str = "standbyCallbackToken";
// 43 characters of base64 each, as the admin console generates them.
const P_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const S_KEY: &str = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut";

fn contacts_secret(ext: &str) -> String {
    format!("{ext}-contacts")
}

/// Both corps in the simulator, with their callbacks sent to `hook` when given.
async fn corps(sim: &Proc, hook: Option<&str>, primary_rate: u32) {
    for (corp, ext, token, key, rate) in [
        (PRIMARY, P_EXT, P_TOKEN, P_KEY, primary_rate),
        (STANDBY, S_EXT, S_TOKEN, S_KEY, 10_000),
    ] {
        let mut config = json!({ "secret": contacts_secret(ext), "externalContactSecret": ext,
                                 "ratePerMinute": rate });
        if let Some(url) = hook {
            config["callback"] = json!({ "url": url, "token": token, "encodingAesKey": key });
        }
        configure(sim, corp, config).await;
    }
}

/// The pair's Secrets and a `provider: wecom` scene reaching the simulator.
async fn wecom_scene(
    tb: &Testbed,
    client: &Client,
    sim: &Proc,
    prefix: &str,
    reconcile: &str,
) -> Scene {
    let account = |corp: &str, side: &str| {
        json!({ "provider": "wecom", "corpId": corp, "apiBase": sim.url,
                "credentialsSecretRef": { "name": format!("wecom-{side}") },
                "externalContactSecretRef": { "name": format!("wecom-{side}"), "key": "customerContact" },
                "callback": { "secretRef": { "name": format!("callback-{side}") } } })
    };
    let scene = scene_of(
        tb,
        client,
        prefix,
        [account(PRIMARY, "primary"), account(STANDBY, "standby")],
        json!({ "reconcileInterval": reconcile }),
        fast_detection(),
    )
    .await;
    for (side, ext, token, key) in [
        ("primary", P_EXT, P_TOKEN, P_KEY),
        ("standby", S_EXT, S_TOKEN, S_KEY),
    ] {
        create_secret(
            client,
            &scene.namespace,
            &format!("wecom-{side}"),
            json!({ "secret": contacts_secret(ext), "customerContact": ext }),
        )
        .await;
        create_secret(
            client,
            &scene.namespace,
            &format!("callback-{side}"),
            json!({ "token": token, "encodingAESKey": key }),
        )
        .await;
    }
    scene
}

fn hook(op: &Proc, scene: &Scene) -> String {
    format!(
        "{}/webhooks/wecom/{}/{}",
        op.url, scene.namespace, scene.pair
    )
}

/// key → digest of one of the two corps, as the adapter reads them over WeCom's API.
async fn held(sim: &Proc, corp: &str) -> BTreeMap<String, String> {
    let ext = if corp == PRIMARY { P_EXT } else { S_EXT };
    adapter_digests(sim, corp, &contacts_secret(ext), ext).await
}

async fn wait_same(sim: &Proc, what: &str) -> BTreeMap<String, String> {
    wait_until_said(Duration::from_secs(90), what, || async {
        let p = held(sim, PRIMARY).await;
        let s = held(sim, STANDBY).await;
        if p == s {
            return Ok(p);
        }
        let differ: std::collections::BTreeSet<&String> = p
            .keys()
            .chain(s.keys())
            .filter(|k| p.get(*k) != s.get(*k))
            .collect();
        Err(format!(
            "the primary holds {} entities, the standby {}; {} keys differ, e.g. {:?}",
            p.len(),
            s.len(),
            differ.len(),
            differ.iter().take(5).collect::<Vec<_>>()
        ))
    })
    .await
}

#[tokio::test]
async fn a_wecom_pair_replicates_byte_exact_from_callbacks_and_a_drill_finds_a_difference() {
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim_seeded("wecom-pair", "unused=0");
    corps(&sim, None, 10_000).await;
    // No reconciliation scan within the test: only callbacks move changes.
    let scene = wecom_scene(&tb, &client, &sim, "e2e-wecom", "1h").await;
    let op = start_operator(&tb, &scene.namespace, "wecom", &[], &[]);
    let url = hook(&op, &scene);
    corps(&sim, Some(&url), 10_000).await;
    wait_replicating(&client, &scene).await;

    // The URL verification the admin console makes when the URL is saved: wechatpy's
    // echostr, opened by the operator.
    let now = chrono::Utc::now().timestamp().to_string();
    let sealed = wechatpy_crypto(
        "seal",
        P_TOKEN,
        P_KEY,
        PRIMARY,
        json!([{ "message": "echo-4711", "timestamp": now, "nonce": "n1" }]),
    );
    let resp = reqwest::Client::new()
        .get(&url)
        .query(&[
            (
                "msg_signature",
                sealed[0]["msg_signature"].as_str().unwrap(),
            ),
            ("timestamp", now.as_str()),
            ("nonce", "n1"),
            ("echostr", sealed[0]["encrypt"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "echo-4711");

    // wechatpy writes the primary corp; its callbacks carry every change across.
    wechatpy(&sim, "contacts", PRIMARY, &contacts_secret(P_EXT));
    wechatpy(&sim, "corp_tags", PRIMARY, P_EXT);
    let same = wait_same(&sim, "the standby corp holds what wechatpy wrote").await;
    for key in [
        "department/2",
        "department/3",
        "member/zhang.san",
        "member/rtl.user",
        "tag/7",
    ] {
        assert!(same.contains_key(key), "{key} in {same:?}");
    }
    assert!(same.keys().filter(|k| k.starts_with("corp-tag/")).count() >= 2);
    // Byte-exact, read back from the standby over WeCom's own API.
    let standby = Corp::new(&sim, STANDBY, &contacts_secret(S_EXT));
    let depts = standby.call("department/list", &[], None).await;
    let names: Vec<&str> = depts["department"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"市场二组") && names.contains(&"🚀团队"),
        "{names:?}"
    );
    let rtl = standby
        .call("user/get", &[("userid", "rtl.user")], None)
        .await;
    assert_eq!(rtl["name"], "مرحبا بالعالم");
    let tag = standby.call("tag/get", &[("tagid", "7")], None).await;
    assert_eq!(tag["tagname"], "VIP客户");
    let customers = Corp::new(&sim, STANDBY, S_EXT);
    let groups = customers
        .call("externalcontact/get_corp_tag_list", &[], Some(json!({})))
        .await;
    let mut group_names: Vec<&str> = groups["tag_group"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group_name"].as_str().unwrap())
        .collect();
    group_names.sort();
    assert_eq!(group_names, ["客户等级", "来源/渠道"]);

    // Callback → applied on the standby, 20 times.
    let primary = Corp::new(&sim, PRIMARY, &contacts_secret(P_EXT));
    let mut took = Vec::new();
    for i in 0..20 {
        let position = format!("岗位-{i}");
        primary
            .call(
                "user/update",
                &[],
                Some(json!({ "userid": "zhang.san", "position": position })),
            )
            .await;
        let written = Instant::now();
        let want = stored_digest(&sim, PRIMARY, "member/zhang.san").await;
        wait_until(
            Duration::from_secs(30),
            "the update reaches the standby",
            || async {
                (stored_digest(&sim, STANDBY, "member/zhang.san").await == want).then_some(())
            },
        )
        .await;
        took.push(written.elapsed());
    }
    took.sort();
    eprintln!(
        "WeCom callback → applied on the standby: p50 {:?}, p99 {:?} ({} changes)",
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        took.len()
    );
    let stats = corp_stats(&sim, PRIMARY).await;
    assert!(
        stats["callbacks"]["sent"].as_u64().unwrap() >= 20,
        "{stats}"
    );

    // Forged, misaddressed, stale and replayed callbacks change nothing.
    let before_forgery = held(&sim, STANDBY).await;
    let ts = chrono::Utc::now().timestamp();
    let event = |corp: &str, userid: &str| {
        understudy::provider::wecom::callback::event_xml(
            corp,
            ts,
            &understudy::provider::wecom::callback::SimEvent::User {
                change: "update_user",
                userid: userid.into(),
            },
        )
    };
    let stale = (ts - 3600).to_string();
    let items = json!([
        { "message": event(PRIMARY, "zhang.san"), "timestamp": ts.to_string(), "nonce": "a" },
        { "message": event("wwsomeoneelse", "zhang.san"), "timestamp": ts.to_string(), "nonce": "b" },
        { "message": event(PRIMARY, "zhang.san"), "timestamp": stale, "nonce": "c" },
    ]);
    let mut sealed = wechatpy_crypto("seal", P_TOKEN, P_KEY, PRIMARY, items.clone());
    // The primary's Token and key, but sealed for another corp (WXBizMsgCrypt's receiver).
    sealed[1] = wechatpy_crypto(
        "seal",
        P_TOKEN,
        P_KEY,
        "wwsomeoneelse",
        json!([items[1].clone()]),
    )
    .remove(0);
    let post = |i: usize, signature: &str| {
        let body = sealed[i]["body"].as_str().unwrap().to_string();
        let (ts, nonce) = (
            items[i]["timestamp"].as_str().unwrap().to_string(),
            items[i]["nonce"].as_str().unwrap().to_string(),
        );
        let url = url.clone();
        let signature = signature.to_string();
        async move {
            reqwest::Client::new()
                .post(url)
                .query(&[
                    ("msg_signature", signature.as_str()),
                    ("timestamp", ts.as_str()),
                    ("nonce", nonce.as_str()),
                ])
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let good = sealed[0]["msg_signature"].as_str().unwrap();
    let mut forged = good.to_string();
    forged.replace_range(0..1, if good.starts_with('0') { "1" } else { "0" });
    assert_eq!(post(0, &forged).await, 401, "a forged signature");
    assert_eq!(
        post(1, sealed[1]["msg_signature"].as_str().unwrap()).await,
        401,
        "sealed for another corp"
    );
    assert_eq!(
        post(2, sealed[2]["msg_signature"].as_str().unwrap()).await,
        401,
        "an hour old"
    );
    assert_eq!(post(0, good).await, 200, "the genuine callback");
    assert_eq!(post(0, good).await, 409, "its replay");
    assert_eq!(held(&sim, STANDBY).await, before_forgery);
    let m = metrics(&op).await;
    let labels = [
        format!("namespace=\"{}\"", scene.namespace),
        "pair=\"wecom\"".to_string(),
    ];
    let with = |result: &str| {
        let mut l: Vec<&str> = labels.iter().map(String::as_str).collect();
        let r = format!("result=\"{result}\"");
        l.push(&r);
        metric_sum(&m, "understudy_provider_callbacks_total", &l)
    };
    assert_eq!(with("refused"), 3.0);
    assert_eq!(with("replay"), 1.0);
    assert!(with("taken") >= 21.0, "{}", with("taken"));

    // Edited by hand on the standby, behind the operator's back: a drill, reading both
    // corps over WeCom's API, finds exactly that member.
    standby
        .call(
            "user/update",
            &[],
            Some(json!({ "userid": "zhang.san", "position": "edited on the standby" })),
        )
        .await;
    let drills: kube::Api<understudy::api::Drill> =
        kube::Api::namespaced(client.clone(), &scene.namespace);
    let d: understudy::api::Drill = serde_json::from_value(json!({
        "apiVersion": "understudy.dev/v1alpha1", "kind": "Drill",
        "metadata": { "name": "wecom-diverged" }, "spec": { "pair": "wecom" } }))
    .unwrap();
    drills.create(&Default::default(), &d).await.unwrap();
    let d = wait_until(Duration::from_secs(120), "the drill finishes", || async {
        drills.get("wecom-diverged").await.ok().filter(|d| {
            d.status
                .as_ref()
                .is_some_and(|s| s.phase == DrillPhase::Finished)
        })
    })
    .await;
    let st = d.status.unwrap();
    assert_eq!(st.result, Some(DrillResult::Failed), "{st:?}");
    let v = st.verification.unwrap();
    assert_eq!(
        (v.missing_on_standby, v.extra_on_standby, v.mismatched),
        (0, 0, 1),
        "{v:?}"
    );
    assert_eq!(v.primary, same.len() as i64, "{v:?}");
    assert!(
        v.samples.iter().any(|s| s.contains("member/zhang.san")),
        "{:?}",
        v.samples
    );

    // The standby corp refuses every call with 60020 (the operator's IP is not one of
    // the app's trusted IPs): a Misconfigured condition says what to fix; no failover.
    configure(
        &sim,
        STANDBY,
        json!({ "secret": contacts_secret(S_EXT), "externalContactSecret": S_EXT,
                "freezeErrcode": 60020,
                "callback": { "url": url, "token": S_TOKEN, "encodingAesKey": S_KEY } }),
    )
    .await;
    set_status(&sim, STANDBY, "frozen", "IP not allowed").await;
    let c = wait_until(
        Duration::from_secs(30),
        "the pair shows Misconfigured",
        || async {
            condition(&client, &scene, "Misconfigured")
                .await
                .filter(|c| c.status == "True")
        },
    )
    .await;
    assert!(
        c.message.contains("standby account") && c.message.contains("60020"),
        "{}",
        c.message
    );
    assert!(
        c.message.contains("企业可信IP"),
        "says where to fix it: {}",
        c.message
    );
    let p = pair(&client, &scene).await;
    assert_eq!(p.status.unwrap().standby.unwrap().status, "Unknown");
    set_status(&sim, STANDBY, "active", "").await;
    wait_until(
        Duration::from_secs(30),
        "Misconfigured clears once the corp answers",
        || async {
            condition(&client, &scene, "Misconfigured")
                .await
                .filter(|c| c.status == "False")
        },
    )
    .await;
    assert!(switchovers(&client, &scene.namespace).await.is_empty());
}

#[tokio::test]
async fn a_lost_callback_is_caught_by_the_scan_a_45009_storm_moves_nothing_and_a_freeze_fails_over()
{
    let _serial = SERIAL.lock().await;
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim_seeded("wecom-faults", "unused=0");
    corps(&sim, None, 10_000).await;
    // Written before the operator starts: the bootstrap carries it.
    wechatpy(&sim, "contacts", PRIMARY, &contacts_secret(P_EXT));
    let scene = wecom_scene(&tb, &client, &sim, "e2e-wecom-faults", "2s").await;
    let op = start_operator(&tb, &scene.namespace, "wecom-faults", &[], &[]);
    let url = hook(&op, &scene);
    corps(&sim, Some(&url), 10_000).await;
    wait_replicating(&client, &scene).await;
    wait_same(&sim, "the bootstrap copied the primary corp").await;

    // The next callback is lost: the reconciliation scan finds the change.
    admin(
        &sim,
        &format!("/admin/wecom/corps/{PRIMARY}/drop-callbacks"),
        reqwest::Method::POST,
        json!({ "count": 1 }),
    )
    .await;
    let primary = Corp::new(&sim, PRIMARY, &contacts_secret(P_EXT));
    primary
        .call(
            "user/create",
            &[],
            Some(json!({ "userid": "li.si", "name": "李四", "department": [2] })),
        )
        .await;
    wait_until(
        Duration::from_secs(60),
        "the member whose callback was lost reaches the standby",
        || async {
            held(&sim, STANDBY)
                .await
                .contains_key("member/li.si")
                .then_some(())
        },
    )
    .await;
    assert_eq!(corp_stats(&sim, PRIMARY).await["callbacks"]["dropped"], 1);
    let found = metric_sum(
        &metrics(&op).await,
        "understudy_reconcile_changes_total",
        &["side=\"primary\""],
    );
    assert!(found >= 1.0, "the scan counted what it found: {found}");

    // The operator dies; meanwhile a member is deleted on the primary (its callbacks go
    // nowhere). The restarted operator compares the corp with the pair's compacted topic
    // and carries the delete over.
    drop(op);
    primary
        .call("user/delete", &[("userid", "li.si")], None)
        .await;
    let op = start_operator(&tb, &scene.namespace, "wecom-faults-2", &[], &[]);
    let url = hook(&op, &scene);
    corps(&sim, Some(&url), 10_000).await;
    wait_until(
        Duration::from_secs(60),
        "the delete made while the operator was down reaches the standby",
        || async {
            (!stored_keys(&sim, STANDBY)
                .await
                .contains(&"member/li.si".to_string()))
            .then_some(())
        },
    )
    .await;
    wait_same(&sim, "the corps agree after the restart").await;

    // A 45009 storm on the primary: every WeCom call refused as rate limited. The
    // primary's verdict is Unknown, nothing fails over, and a change made meanwhile waits.
    corps(&sim, Some(&url), 0).await;
    wait_until(
        Duration::from_secs(30),
        "the rate-limited primary's verdict becomes Unknown",
        || async {
            let p = pair(&client, &scene).await;
            (p.status?.primary?.status == "Unknown").then_some(())
        },
    )
    .await;
    // Made through the simulator's own API (its WeCom API refuses everyone now).
    use understudy::provider::AccountProvider;
    let behind_the_storm =
        understudy::provider::http::HttpProvider::new(&sim.url, PRIMARY, Some("t0ken")).unwrap();
    let key: understudy::model::EntityKey = "member/wang.wu".parse().unwrap();
    let payload = understudy::provider::wecom::entities::member_payload(
        &json!({ "userid": "wang.wu", "name": "王五", "department": [1] }),
    );
    behind_the_storm
        .put_entity(&understudy::model::Entity::new(key, payload), None)
        .await
        .unwrap();
    let storm_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < storm_until {
        assert!(
            switchovers(&client, &scene.namespace).await.is_empty(),
            "no switchover during a 45009 storm"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        !stored_keys(&sim, STANDBY)
            .await
            .contains(&"member/wang.wu".to_string()),
        "nothing can be read from the primary during the storm"
    );
    assert!(
        corp_stats(&sim, PRIMARY).await["rateLimited"]
            .as_u64()
            .unwrap()
            > 0
    );
    corps(&sim, Some(&url), 10_000).await;
    wait_until(
        Duration::from_secs(60),
        "after the storm the change reaches the standby",
        || async {
            held(&sim, STANDBY)
                .await
                .contains_key("member/wang.wu")
                .then_some(())
        },
    )
    .await;
    wait_until(
        Duration::from_secs(30),
        "the primary is Healthy again",
        || async {
            let p = pair(&client, &scene).await;
            (p.status?.primary?.status == "Healthy").then_some(())
        },
    )
    .await;
    assert!(switchovers(&client, &scene.namespace).await.is_empty());
    assert_eq!(dig(&tb, &scene.dns_name), vec!["10.1.0.1"]);

    // The primary corp's app is disabled (50003): a failover, DNS and LB flipped, and the
    // pair says so (on its next status tick, which a fast switchover can beat).
    freeze_fails_over(&tb, &client, &scene, &sim, PRIMARY, "应用已禁用").await;
    let so = &switchovers(&client, &scene.namespace).await[0];
    assert_eq!(so.spec.mode, SwitchoverMode::Emergency);
}
