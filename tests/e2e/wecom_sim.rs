//! The simulator's WeCom API driven by a client nobody on this project wrote: wechatpy's
//! `wechatpy.work.WeChatClient` (installed by the test bed). Departments, members and
//! tags written through wechatpy land in the simulated corp byte-exact; wechatpy reads
//! them back; an expired token is refreshed; 45009 is wechatpy's rate-limit exception; a
//! frozen corp answers its freeze errcode. If the simulator and wechatpy disagree, the
//! simulator is wrong.

mod harness;
#[path = "wecom/kit.rs"]
mod kit;
mod support;

use std::collections::BTreeMap;

use harness::{Proc, set_status, start_sim_seeded};
use kit::{configure as corp, wechatpy};
use serde_json::{Value, json};

/// The corp's entities as the Provider API lists them: key → canonical payload text.
async fn stored(sim: &Proc, account: &str) -> BTreeMap<String, Value> {
    let page: Value = reqwest::get(format!(
        "{}/v1/accounts/{account}/entities?limit=1000",
        sim.url
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    page["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["key"].as_str().unwrap().to_string(), e["payload"].clone()))
        .collect()
}

#[tokio::test]
async fn wechatpy_writes_and_reads_a_corp_and_its_errors_are_wecoms() {
    let sim = start_sim_seeded("wecom-wechatpy", "unused=0");
    corp(&sim, "wwcontacts", json!({ "secret": "contacts-secret" })).await;
    let seen = wechatpy(&sim, "contacts", "wwcontacts", "contacts-secret");

    // What wechatpy reads back.
    let names: Vec<&str> = seen["departments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["wwcontacts", "市场二组", "🚀团队"]);
    assert_eq!(seen["subtree"].as_array().unwrap().len(), 2);
    assert_eq!(seen["user"]["name"], "张三");
    assert_eq!(seen["user"]["department"], json!([2]));
    assert_eq!(seen["add_users"]["invalidlist"], "ghost");
    assert_eq!(seen["tag"]["tagname"], "VIP客户");
    assert_eq!(seen["tag"]["partylist"], json!([3]));
    assert_eq!(seen["tag"]["userlist"][0]["userid"], "zhang.san");
    let dept_users: Vec<&str> = seen["dept_users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(dept_users, ["مرحبا بالعالم", "张三"]);
    assert_eq!(
        seen["missing_user"],
        json!({"exception": "WeChatClientException", "errcode": 60111})
    );
    assert_eq!(seen["delete_parent"]["errcode"], 60006);
    assert_eq!(seen["duplicate_user"]["errcode"], 60102);
    // The expired token was refreshed by wechatpy: the call succeeded on a second token.
    assert_eq!(seen["after_expiry"][0]["tagname"], "VIP客户");
    assert_eq!(seen["stats"]["tokensIssued"], 2);

    // What the corp holds, as the Provider API (and so replication) sees it: byte-exact
    // names, server fields left out, the later update and deletes applied.
    let held = stored(&sim, "wwcontacts").await;
    assert_eq!(
        held["department/2"],
        json!({"name": "市场二组", "order": 0, "parentid": 1})
    );
    assert_eq!(
        held["department/3"],
        json!({"name": "🚀团队", "name_en": "Rocket", "order": 5, "parentid": 2})
    );
    assert_eq!(held["member/zhang.san"]["position"], "总监");
    assert_eq!(held["member/zhang.san"]["mobile"], "+86 13800000000");
    assert!(held["member/zhang.san"].get("status").is_none());
    assert_eq!(held["member/rtl.user"]["name"], "مرحبا بالعالم");
    assert!(!held.contains_key("member/temp"));
    assert_eq!(
        held["tag/7"],
        json!({"tagname": "VIP客户", "userlist": [], "partylist": [3]})
    );
}

#[tokio::test]
async fn rate_limits_freezes_and_wrong_secrets_reach_wechatpy_as_wecom_sends_them() {
    let sim = start_sim_seeded("wecom-faults", "unused=0");
    corp(&sim, "wwrate", json!({ "secret": "r", "ratePerMinute": 5 })).await;
    let calls = wechatpy(&sim, "rate_limited", "wwrate", "r");
    let calls: Vec<&str> = calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(calls[..5], ["ok"; 5]);
    assert_eq!(calls[5..], ["APILimitedException:45009"; 3]);

    corp(
        &sim,
        "wwfrozen",
        json!({ "secret": "f", "freezeErrcode": 48006 }),
    )
    .await;
    assert_eq!(
        wechatpy(&sim, "frozen", "wwfrozen", "f")["list"],
        Value::Null,
        "an active corp answers"
    );
    set_status(&sim, "wwfrozen", "frozen", "app permission revoked").await;
    assert_eq!(
        wechatpy(&sim, "frozen", "wwfrozen", "f")["list"]["errcode"],
        48006
    );
    assert_eq!(
        wechatpy(&sim, "wrong_secret", "wwfrozen", "f")["list"]["errcode"],
        40001
    );
}

#[tokio::test]
async fn wechatpy_manages_corp_tags_with_the_customer_contact_secret_only() {
    let sim = start_sim_seeded("wecom-corp-tags", "unused=0");
    corp(
        &sim,
        "wwtags",
        json!({ "secret": "customers-contacts", "externalContactSecret": "customers" }),
    )
    .await;
    let seen = wechatpy(&sim, "corp_tags", "wwtags", "customers");
    assert_eq!(seen["added"]["group_name"], "客户等级");
    assert!(
        seen["added"]["group_id"]
            .as_str()
            .unwrap()
            .starts_with("et")
    );
    let groups: BTreeMap<String, Vec<String>> = seen["all"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let tags = g["tag"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_string())
                .collect();
            (g["group_name"].as_str().unwrap().to_string(), tags)
        })
        .collect();
    assert_eq!(groups["客户等级"], ["白金卡", "铜卡"]);
    assert_eq!(groups["来源/渠道"], ["展会"]);
    // Filtered by a tag id: its group with only that tag.
    assert_eq!(seen["by_tag"][0]["tag"].as_array().unwrap().len(), 1);
    assert_eq!(seen["by_tag"][0]["tag"][0]["name"], "白金卡");
    assert_eq!(seen["duplicate"]["errcode"], 40071);
    // The contacts secret may not manage corp tags.
    assert_eq!(seen["wrong_secret"]["errcode"], 48002);

    // The corp holds them as corp-tag entities, the name's '/' encoded in the key.
    let held = stored(&sim, "wwtags").await;
    assert_eq!(held["corp-tag/客户等级"]["order"], 5);
    assert_eq!(held["corp-tag/来源%2F渠道"]["tags"][0]["name"], "展会");
}
