//! The simulator's Official Account (公众号) API driven by a client nobody on this project
//! wrote: wechatpy's `WeChatClient` (installed by the test bed). Menus, follower tags,
//! followers, permanent materials and the auto-reply rules go through wechatpy and come
//! back as it expects them; the paging quirks of the real API (next_openid repeated on
//! the last page) end wechatpy's iterators; an expired token is refreshed; 45009 is
//! wechatpy's quota exception; a frozen account answers 48004. If the simulator and
//! wechatpy disagree, the simulator is wrong.

mod harness;
mod support;

use std::process::Command;

use harness::{Proc, admin, set_status, start_sim_seeded};
use serde_json::{Value, json};
use support::Testbed;

/// Runs a scenario of `tests/e2e/oa/wechatpy_oa.py` against the simulator.
fn wechatpy(sim: &Proc, scenario: &str, appid: &str, secret: &str) -> Value {
    let python = Testbed::load().var("TESTBED_WECHATPY_PYTHON");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/oa/wechatpy_oa.py");
    let out = Command::new(&python)
        .args([script, &sim.url, scenario, appid, secret])
        .output()
        .unwrap_or_else(|e| panic!("run {python}: {e}"));
    assert!(
        out.status.success(),
        "wechatpy {scenario} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the scenario printed JSON")
}

/// `PUT /admin/oa/accounts/{appid}`.
async fn configure(sim: &Proc, appid: &str, config: Value) -> Value {
    admin(
        sim,
        &format!("/admin/oa/accounts/{appid}"),
        reqwest::Method::PUT,
        config,
    )
    .await
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array expected: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn wechatpy_manages_an_official_account_as_on_the_real_platform() {
    let sim = start_sim_seeded("oa-wechatpy", "unused=0");
    let made = configure(
        &sim,
        "wxtour0000000001",
        json!({
            "secret": "tour-secret",
            "followers": ["u-alice", "u-bob", "u-carol"],
            "anonymousFollowers": 2,
        }),
    )
    .await;
    let other = configure(
        &sim,
        "wxother000000002",
        json!({ "secret": "x", "followers": ["u-alice"] }),
    )
    .await;
    let seen = wechatpy(&sim, "tour", "wxtour0000000001", "tour-secret");

    // Menu: none (wechatpy's None for 46003), then the buttons with sub_button lists.
    assert_eq!(seen["menu_before"], Value::Null);
    let buttons = &seen["menu"]["menu"]["button"];
    assert_eq!(buttons[0]["name"], "今日歌曲");
    assert_eq!(buttons[0]["sub_button"], json!([]));
    assert_eq!(buttons[1]["sub_button"][0]["url"], "http://www.soso.com/");
    assert_eq!(seen["bad_menu"]["errcode"], 40016);
    assert_eq!(seen["menu_after_delete"], Value::Null);

    // Followers: one page with the last openid as next_openid, then an empty page.
    let openids = strs(&seen["iter_followers"]);
    assert_eq!(openids.len(), 5);
    let configured: Vec<&str> = made["followers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["openid"].as_str().unwrap())
        .collect();
    assert_eq!(openids, configured);
    assert_eq!(seen["followers"]["total"], 5);
    assert_eq!(seen["followers"]["next_openid"], openids[4]);
    assert_eq!(
        seen["followers_next"],
        json!({"total": 5, "count": 0, "next_openid": ""})
    );
    // Unionids for the persons, none for the anonymous followers; another app sees
    // another openid for the same person.
    let batch = seen["batch"].as_array().unwrap();
    assert_eq!(batch[0]["unionid"], "u-alice");
    assert_eq!(batch[0]["subscribe"], 1);
    assert!(batch[4].get("unionid").is_none());
    assert_eq!(other["followers"][0]["unionid"], "u-alice");
    assert_ne!(other["followers"][0]["openid"], openids[0]);

    // Tags.
    assert_eq!(seen["created"][0], json!({"id": 100, "name": "广东"}));
    assert_eq!(seen["dup_tag"]["errcode"], 45157);
    assert_eq!(seen["sys_tag"]["errcode"], 45058);
    assert_eq!(seen["stranger"]["errcode"], 49003);
    assert_eq!(seen["user_tags"], json!([100, 101]));
    assert_eq!(
        seen["tag_page"],
        json!({"count": 2, "data": {"openid": [openids[0], openids[2]]}, "next_openid": openids[2]})
    );
    assert_eq!(seen["tag_page_after"], json!({"count": 0}));
    assert_eq!(strs(&seen["iter_tag_users"]), [openids[0], openids[2]]);
    assert_eq!(
        seen["tags"],
        json!([
            {"id": 2, "name": "星标组", "count": 0},
            {"id": 100, "name": "广东", "count": 2},
            {"id": 101, "name": "VIP会员", "count": 1},
        ])
    );
    assert_eq!(seen["tags_after_delete"].as_array().unwrap().len(), 2);
    assert_eq!(seen["user_tags_after_delete"], json!([100]));

    // Materials: the image comes back byte for byte, from the API and from its URL.
    let image_id = seen["image"]["media_id"].as_str().unwrap();
    assert_eq!(image_id.len(), 43);
    assert!(
        seen["image"]["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/oa-media/{image_id}"))
    );
    assert!(seen["video"].get("url").is_none());
    assert_eq!(seen["batch_images"]["total_count"], 1);
    assert_eq!(seen["batch_images"]["item"][0]["name"], "logo.png");
    assert_eq!(seen["image_back_equal"], true);
    assert_eq!(seen["image_url_equal"], true);
    assert_eq!(seen["video_back"]["title"], "发布会");
    assert_eq!(seen["video_back"]["description"], "2025 春季发布会");
    assert_eq!(
        seen["count"],
        json!({"voice_count": 0, "video_count": 1, "image_count": 1, "news_count": 0})
    );
    assert_eq!(seen["count_after_delete"]["image_count"], 0);
    assert_eq!(seen["deleted_get"]["errcode"], 40007);
    assert_eq!(seen["bad_batch"]["errcode"], 40097);

    assert_eq!(seen["autoreply"]["is_autoreply_open"], 1);
    assert_eq!(
        seen["autoreply"]["keyword_autoreply_info"]["list"][2]["reply_list_info"][0]["content"],
        "hello!text!"
    );

    // The expired token was refreshed by wechatpy: the call succeeded on a second token.
    assert_eq!(seen["after_expiry"].as_array().unwrap().len(), 2);
    assert_eq!(seen["tokens_issued"], json!([1, 2]));
}

#[tokio::test]
async fn followers_page_by_ten_thousand_and_wechatpy_stops_at_the_empty_page() {
    let sim = start_sim_seeded("oa-paging", "unused=0");
    configure(
        &sim,
        "wxpaging00000001",
        json!({ "secret": "p", "anonymousFollowers": 10_001 }),
    )
    .await;
    let seen = wechatpy(&sim, "paging", "wxpaging00000001", "p");
    let pages = seen["pages"].as_array().unwrap();
    assert_eq!(pages[0]["count"], 10_000);
    assert_eq!(pages[0]["has_data"], true);
    assert_eq!(pages[1]["count"], 1);
    assert_ne!(pages[1]["next_openid"], "");
    assert_eq!(
        pages[2],
        json!({"total": 10_001, "count": 0, "next_openid": "", "has_data": false})
    );
    assert_eq!(seen["iterated"], 10_001);
}

#[tokio::test]
async fn quotas_freezes_and_wrong_secrets_reach_wechatpy_as_the_platform_sends_them() {
    let sim = start_sim_seeded("oa-faults", "unused=0");
    configure(
        &sim,
        "wxquota000000001",
        json!({ "secret": "q", "dailyQuota": {"menu/get": 2} }),
    )
    .await;
    let calls = wechatpy(&sim, "quota", "wxquota000000001", "q");
    assert_eq!(
        strs(&calls["calls"]),
        [
            "ok",
            "ok",
            "APILimitedException:45009",
            "APILimitedException:45009"
        ]
    );
    let stats = admin(
        &sim,
        "/admin/oa/accounts/wxquota000000001",
        reqwest::Method::GET,
        json!(null),
    )
    .await;
    assert_eq!(stats["quotaLimited"], 2);
    assert_eq!(stats["calls"]["menu/get"], 2);

    configure(&sim, "wxfrozen00000001", json!({ "secret": "f" })).await;
    // An active account without a menu answers 46003, which wechatpy turns into None.
    assert_eq!(
        wechatpy(&sim, "menu_get", "wxfrozen00000001", "f")["menu_get"],
        Value::Null
    );
    set_status(&sim, "wxfrozen00000001", "frozen", "violation").await;
    assert_eq!(
        wechatpy(&sim, "menu_get", "wxfrozen00000001", "f")["menu_get"],
        json!({"exception": "WeChatClientException", "errcode": 48004})
    );
    set_status(&sim, "wxfrozen00000001", "banned", "violation").await;
    assert_eq!(
        wechatpy(&sim, "menu_get", "wxfrozen00000001", "f")["menu_get"]["errcode"],
        50002
    );
    assert_eq!(
        wechatpy(&sim, "wrong_secret", "wxfrozen00000001", "f")["menu_get"]["errcode"],
        40001
    );
}
