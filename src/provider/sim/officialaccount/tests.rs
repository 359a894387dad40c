//! The official accounts' pure state: tokens, quotas, paging quirks, reserved tags,
//! openids per app (menus and materials in `content_tests.rs`).

use serde_json::{Value, json};

use super::apps::{Apps, OVERLAP_SECS, OaConfig, anonymous_openid, openid_for, quota_day};

const T0: u64 = 1_700_000_000;

fn config(followers: &[&str]) -> OaConfig {
    serde_json::from_value(json!({
        "secret": "s3cret",
        "followers": followers,
        "dailyQuota": {"menu/get": 3},
    }))
    .unwrap()
}

fn apps() -> Apps {
    let mut a = Apps::default();
    a.configure("wxapp1", config(&["u-alice", "u-bob"]), T0);
    a
}

fn code<T: std::fmt::Debug>(r: Result<T, super::OaError>) -> i64 {
    r.unwrap_err().code
}

#[test]
fn tokens_are_checked_expire_and_a_new_one_cuts_the_old_to_five_minutes() {
    let mut a = apps();
    let (t1, ttl) = a
        .token("client_credential", "wxapp1", "s3cret", T0)
        .unwrap();
    assert_eq!(ttl, 7200);
    assert_eq!(a.check_token(&t1, T0).unwrap(), "wxapp1");
    assert_eq!(code(a.check_token(&t1, T0 + 7200)), 42001);
    assert_eq!(code(a.check_token("never", T0)), 40001);
    assert_eq!(code(a.check_token("", T0)), 41001);
    assert_eq!(
        code(a.token("client_credential", "wxapp1", "bad", T0)),
        40001
    );
    assert_eq!(
        code(a.token("client_credential", "wxnone", "s3cret", T0)),
        40013
    );
    assert_eq!(code(a.token("password", "wxapp1", "s3cret", T0)), 40002);
    // A second token: the first still works for five minutes, then no more.
    let (t2, _) = a
        .token("client_credential", "wxapp1", "s3cret", T0 + 10)
        .unwrap();
    assert!(a.check_token(&t1, T0 + 10 + OVERLAP_SECS - 1).is_ok());
    assert_eq!(code(a.check_token(&t1, T0 + 10 + OVERLAP_SECS)), 42001);
    assert!(a.check_token(&t2, T0 + 10 + OVERLAP_SECS).is_ok());
    a.expire_tokens("wxapp1", T0 + 20);
    assert_eq!(code(a.check_token(&t2, T0 + 20)), 42001);
    assert_eq!(a.app("wxapp1").unwrap().stats.tokens_issued, 2);
}

#[test]
fn daily_quotas_are_per_api_configurable_and_reset_with_the_day() {
    let mut a = apps();
    for _ in 0..3 {
        a.admit("wxapp1", "menu/get", T0).unwrap();
    }
    assert_eq!(code(a.admit("wxapp1", "menu/get", T0)), 45009);
    // Another API has its own count; an unlisted API has no quota.
    a.admit("wxapp1", "menu/create", T0).unwrap();
    for _ in 0..50 {
        a.admit("wxapp1", "tags/get", T0).unwrap();
    }
    // The documented default of user/get is 500 a day.
    for _ in 0..500 {
        a.admit("wxapp1", "user/get", T0).unwrap();
    }
    assert_eq!(code(a.admit("wxapp1", "user/get", T0)), 45009);
    // The next day (UTC+8) starts afresh.
    let tomorrow = (quota_day(T0) + 1) * 86_400 - 8 * 3600;
    assert_eq!(quota_day(tomorrow), quota_day(T0) + 1);
    assert_eq!(code(a.admit("wxapp1", "menu/get", tomorrow - 1)), 45009);
    a.admit("wxapp1", "menu/get", tomorrow).unwrap();
    let stats = &a.app("wxapp1").unwrap().stats;
    assert_eq!(stats.quota_limited, 3);
    assert_eq!(stats.calls["menu/get"], 4);
}

#[test]
fn the_token_call_has_its_quota_too() {
    let mut a = Apps::default();
    let mut c = config(&[]);
    c.daily_quota.insert("token".into(), 1);
    a.configure("wxq", c, T0);
    a.token("client_credential", "wxq", "s3cret", T0).unwrap();
    assert_eq!(
        code(a.token("client_credential", "wxq", "s3cret", T0)),
        45009
    );
}

#[test]
fn each_app_sees_its_own_openid_for_a_person() {
    let mut a = apps();
    a.configure("wxapp2", config(&["u-alice"]), T0);
    let one = openid_for("wxapp1", "u-alice");
    let two = openid_for("wxapp2", "u-alice");
    assert_ne!(one, two);
    assert_eq!(one, openid_for("wxapp1", "u-alice"), "deterministic");
    assert!(one.starts_with('o') && one.len() == 28, "{one}");
    assert_ne!(anonymous_openid("wxapp1", 1), anonymous_openid("wxapp2", 1));
    let first: Vec<&str> = a
        .app("wxapp1")
        .unwrap()
        .content
        .followers()
        .iter()
        .map(|f| f.openid.as_str())
        .collect();
    assert_eq!(first[0], one);
    // Re-configuring keeps the followers and adds new ones once.
    let mut c = config(&["u-alice", "u-carol"]);
    c.anonymous_followers = 2;
    a.configure("wxapp1", c.clone(), T0 + 5);
    a.configure("wxapp1", c, T0 + 6);
    assert_eq!(a.app("wxapp1").unwrap().content.followers().len(), 5);
}

#[test]
fn user_get_repeats_the_last_openid_then_answers_an_empty_page() {
    let mut a = apps();
    let c = &mut a.app_mut("wxapp1").unwrap().content;
    c.follow(None, T0);
    let page = c.user_get("").unwrap();
    assert_eq!(page["total"], 3);
    assert_eq!(page["count"], 3);
    let last = page["data"]["openid"][2].as_str().unwrap().to_string();
    assert_eq!(page["next_openid"], last.as_str());
    let after = c.user_get(&last).unwrap();
    assert_eq!(after, json!({"total": 3, "count": 0, "next_openid": ""}));
    assert_eq!(code(c.user_get("not-a-follower")), 40003);
}

#[test]
fn user_get_pages_by_ten_thousand() {
    let mut a = Apps::default();
    let mut c = config(&[]);
    c.anonymous_followers = 10_001;
    a.configure("wxbig", c, T0);
    let content = &a.app("wxbig").unwrap().content;
    let first = content.user_get("").unwrap();
    assert_eq!(first["count"], 10_000);
    let next = first["next_openid"].as_str().unwrap();
    let second = content.user_get(next).unwrap();
    assert_eq!(
        (second["total"].clone(), second["count"].clone()),
        (json!(10_001), json!(1))
    );
}

#[test]
fn tags_reserve_0_1_2_and_check_names_counts_and_members() {
    let mut a = apps();
    let c = &mut a.app_mut("wxapp1").unwrap().content;
    let made = c.tag_create(&json!({"tag": {"name": "广东"}})).unwrap();
    assert_eq!(made, json!({"tag": {"id": 100, "name": "广东"}}));
    assert_eq!(code(c.tag_create(&json!({"tag": {"name": "广东"}}))), 45157);
    assert_eq!(
        code(c.tag_create(&json!({"tag": {"name": "星标组"}}))),
        45157
    );
    assert_eq!(
        code(c.tag_create(&json!({"tag": {"name": "长".repeat(11)}}))),
        45158
    );
    for id in [0, 1, 2] {
        assert_eq!(
            code(c.tag_update(&json!({"tag": {"id": id, "name": "x"}}))),
            45058
        );
        assert_eq!(code(c.tag_delete(&json!({"tag": {"id": id}}))), 45058);
    }
    assert_eq!(code(c.tag_delete(&json!({"tag": {"id": 999}}))), 45159);
    let tags = c.tags_get().unwrap();
    assert_eq!(
        tags["tags"][0],
        json!({"id": 2, "name": "星标组", "count": 0})
    );

    let alice = openid_for("wxapp1", "u-alice");
    c.tagging(&json!({"tagid": 100, "openid_list": [alice]}), true)
        .unwrap();
    c.tagging(&json!({"tagid": 2, "openid_list": [alice]}), true)
        .unwrap();
    assert_eq!(
        c.tag_ids(&json!({"openid": alice})).unwrap(),
        json!({"tagid_list": [100, 2]})
    );
    let stranger = openid_for("wxother", "u-alice");
    assert_eq!(
        code(c.tagging(&json!({"tagid": 100, "openid_list": [stranger]}), true)),
        49003
    );
    let many: Vec<String> = (0..51).map(|_| alice.clone()).collect();
    assert_eq!(
        code(c.tagging(&json!({"tagid": 100, "openid_list": many}), true)),
        40032
    );
    assert_eq!(
        code(c.tagging(&json!({"tagid": 555, "openid_list": [alice]}), true)),
        45159
    );

    // user/tag/get: the last openid even on the last page, then {"count":0}.
    let page = c.tag_users(&json!({"tagid": 100})).unwrap();
    assert_eq!(
        page,
        json!({"count": 1, "data": {"openid": [alice]}, "next_openid": alice})
    );
    let after = c
        .tag_users(&json!({"tagid": 100, "next_openid": alice}))
        .unwrap();
    assert_eq!(after, json!({"count": 0}));

    // Deleting a tag takes it off its fans.
    c.tag_delete(&json!({"tag": {"id": 100}})).unwrap();
    assert_eq!(
        c.tag_ids(&json!({"openid": alice})).unwrap(),
        json!({"tagid_list": [2]})
    );
    // Ids are not reused.
    assert_eq!(
        c.tag_create(&json!({"tag": {"name": "新"}})).unwrap()["tag"]["id"],
        101
    );
}

#[test]
fn a_fan_carries_at_most_twenty_tags_and_an_account_a_hundred() {
    let mut a = apps();
    let c = &mut a.app_mut("wxapp1").unwrap().content;
    let alice = openid_for("wxapp1", "u-alice");
    for i in 0..100 {
        let id = c
            .tag_create(&json!({"tag": {"name": format!("t{i}")}}))
            .unwrap()["tag"]["id"]
            .as_u64()
            .unwrap();
        if i < 20 {
            c.tagging(&json!({"tagid": id, "openid_list": [alice]}), true)
                .unwrap();
        }
    }
    assert_eq!(
        code(c.tag_create(&json!({"tag": {"name": "one more"}}))),
        45056
    );
    assert_eq!(
        code(c.tagging(&json!({"tagid": 150, "openid_list": [alice]}), true)),
        45059
    );
}

#[test]
fn batchget_users_shows_unionids_only_for_bound_followers() {
    let mut a = apps();
    let c = &mut a.app_mut("wxapp1").unwrap().content;
    let anon = c.follow(None, T0);
    let alice = openid_for("wxapp1", "u-alice");
    let got = c
        .user_batchget(&json!({"user_list": [{"openid": alice}, {"openid": anon, "lang": "en"}]}))
        .unwrap();
    let list = got["user_info_list"].as_array().unwrap();
    assert_eq!(list[0]["unionid"], "u-alice");
    assert_eq!(list[0]["subscribe"], 1);
    assert!(list[1].get("unionid").is_none());
    assert_eq!(list[1]["language"], "en");
    let too_many: Vec<Value> = (0..101).map(|_| json!({"openid": alice})).collect();
    assert_eq!(
        code(c.user_batchget(&json!({"user_list": too_many}))),
        40097
    );
}
