//! The Agora Chat apps' pure state: tokens, the per-second budgets, users with cursor
//! paging, groups and their members.

use serde_json::{Value, json};

use super::apps::{AgoraConfig, Apps};
use super::chat::Chat;
use crate::provider::agora::token::{build_chat_app_token, build_chat_user_token};

const T0: u64 = 1_700_000_000;
const APP_ID: &str = "0123456789abcdef0123456789abcdef";
const CERT: &str = "fedcba9876543210fedcba9876543210";

fn apps(rate: u32) -> Apps {
    let mut a = Apps::default();
    let config: AgoraConfig = serde_json::from_value(json!({
        "appId": APP_ID, "appCertificate": CERT, "ratePerSecond": rate,
    }))
    .unwrap();
    config.validate().unwrap();
    a.configure("org1", "app1", config);
    a
}

fn err<T: std::fmt::Debug>(r: Result<T, super::ChatError>) -> (u16, &'static str) {
    let e = r.unwrap_err();
    (e.status, e.error)
}

fn with_users(names: &[&str]) -> Chat {
    let mut c = Chat::new("org1#app1");
    let body: Vec<Value> = names
        .iter()
        .map(|n| json!({"username": n, "password": "p"}))
        .collect();
    c.register(&Value::Array(body), T0 * 1000).unwrap();
    c
}

#[test]
fn tokens_are_checked_app_privilege_expiry_and_app() {
    let mut a = apps(100);
    let auth =
        |a: &mut Apps, t: Option<&str>, now| a.authenticate("org1", "app1", "/users", t, now);
    let good = build_chat_app_token(APP_ID, CERT, T0 as u32, 3600, 7);
    auth(&mut a, Some(&good), T0 + 10).unwrap();
    assert_eq!(
        err(auth(&mut a, Some(&good), T0 + 3600)),
        (401, "unauthorized")
    );
    assert_eq!(err(auth(&mut a, None, T0)), (401, "unauthorized"));
    assert_eq!(
        err(auth(&mut a, Some("007garbage"), T0)),
        (401, "auth_bad_access_token")
    );
    let other_cert = build_chat_app_token(APP_ID, &"1".repeat(32), T0 as u32, 3600, 7);
    assert_eq!(
        err(auth(&mut a, Some(&other_cert), T0)),
        (401, "auth_bad_access_token")
    );
    let other_app = build_chat_app_token(&"2".repeat(32), CERT, T0 as u32, 3600, 7);
    assert_eq!(
        err(auth(&mut a, Some(&other_app), T0)),
        (401, "auth_bad_access_token")
    );
    let user = build_chat_user_token(APP_ID, CERT, "alice", T0 as u32, 3600, 7);
    let e = auth(&mut a, Some(&user), T0).unwrap_err();
    assert_eq!((e.status, e.error), (401, "unauthorized"));
    assert!(e.description.contains("does not have permission"), "{e:?}");
    assert_eq!(
        err(a.authenticate("org1", "nope", "/users", Some(&good), T0)),
        (404, "organization_application_not_found")
    );
    assert_eq!(a.app("org1", "app1").unwrap().stats.unauthorized, 6);
}

#[test]
fn the_rate_is_per_second_per_budget_and_configurable() {
    let mut a = apps(3);
    let ms = T0 * 1000;
    for i in 0..3 {
        a.admit("org1", "app1", "users", "users/get", ms + i)
            .unwrap();
    }
    assert_eq!(
        err(a.admit("org1", "app1", "users", "users/list", ms + 999)),
        (429, "reach_limit")
    );
    // Another budget has its own count; the next second starts afresh.
    a.admit(
        "org1",
        "app1",
        "chatgroups/create",
        "chatgroups/create",
        ms + 999,
    )
    .unwrap();
    a.admit("org1", "app1", "users", "users/get", ms + 1000)
        .unwrap();
    let stats = &a.app("org1", "app1").unwrap().stats;
    assert_eq!((stats.rate_limited, stats.calls["users/get"]), (1, 4));
    assert!(
        AgoraConfig {
            rate_per_second: 0,
            ..a.app("org1", "app1").unwrap().config.clone()
        }
        .validate()
        .is_err()
    );
}

#[test]
fn users_page_with_a_cursor_absent_on_the_last_page() {
    let names: Vec<String> = (0..5).map(|i| format!("u{i}")).collect();
    let c = with_users(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let p1 = c.users_list(Some("2"), None).unwrap();
    assert_eq!(
        (p1.count, p1.entities[0]["username"].clone()),
        (Some(2), json!("u0"))
    );
    let p2 = c.users_list(Some("2"), p1.cursor.as_deref()).unwrap();
    assert_eq!(p2.entities[0]["username"], "u2");
    let p3 = c.users_list(Some("2"), p2.cursor.as_deref()).unwrap();
    assert_eq!((p3.count, p3.cursor), (Some(1), None));
    // Exactly a page left: no cursor either; the default page is 10.
    assert_eq!(c.users_list(Some("5"), None).unwrap().cursor, None);
    assert_eq!(c.users_list(None, None).unwrap().count, Some(5));
    assert_eq!(
        err(c.users_list(None, Some("bogus"))),
        (400, "illegal_argument")
    );
}

#[test]
fn registering_checks_names_and_duplicates_and_folds_case() {
    let mut c = with_users(&["alice"]);
    let one = c
        .register(
            &json!({"username": "Bob", "password": "x", "nickname": "B"}),
            5,
        )
        .unwrap();
    assert_eq!(one.entities[0]["username"], "bob");
    assert_eq!(one.entities[0]["activated"], true);
    assert_eq!(one.data, None);
    let dup =
        json!([{"username": "carol", "password": "x"}, {"username": "alice", "password": "x"}]);
    assert_eq!(
        err(c.register(&dup, 6)),
        (400, "duplicate_unique_property_exists")
    );
    assert!(c.user("carol").is_none(), "a failed batch registers nobody");
    assert_eq!(
        err(c.register(&json!({"username": "a b", "password": "x"}), 6)),
        (400, "illegal_argument")
    );
    assert_eq!(
        err(c.register(&json!({"username": "dave"}), 6)),
        (400, "illegal_argument")
    );
    let many: Vec<Value> = (0..61)
        .map(|i| json!({"username": format!("m{i}"), "password": "x"}))
        .collect();
    assert_eq!(
        err(c.register(&Value::Array(many), 6)),
        (400, "illegal_argument")
    );
    assert_eq!(c.user_get("BOB").unwrap().count, Some(1));
    assert_eq!(
        err(c.user_get("nobody")),
        (404, "service_resource_not_found")
    );
}

#[test]
fn deactivate_and_activate_flip_activated() {
    let mut c = with_users(&["alice"]);
    let off = c.set_activated("alice", false, 9).unwrap();
    assert_eq!(
        (off.action, off.entities[0]["activated"].clone()),
        ("Deactivate user", json!(false))
    );
    assert_eq!(c.user_get("alice").unwrap().entities[0]["activated"], false);
    let on = c.set_activated("alice", true, 10).unwrap();
    assert_eq!((on.action, on.entities.len()), ("activate user", 0));
    assert!(c.user("alice").unwrap().activated);
    assert_eq!(
        err(c.set_activated("ghost", false, 1)),
        (404, "service_resource_not_found")
    );
}

fn group(c: &mut Chat, owner: &str, members: &[&str], now: u64) -> String {
    let body = json!({"groupname": "g", "description": "d", "public": true, "maxusers": 4,
        "owner": owner, "members": members});
    let a = c.group_create(&body, now).unwrap();
    a.data.unwrap()["groupid"].as_str().unwrap().to_string()
}

#[test]
fn creating_a_group_assigns_increasing_ids_and_checks_the_body() {
    let mut c = with_users(&["o", "a", "b"]);
    let g1 = group(&mut c, "o", &["a"], T0 * 1000);
    let g2 = group(&mut c, "o", &[], T0 * 1000);
    assert!(
        g1.parse::<u64>().unwrap() < g2.parse::<u64>().unwrap() && g1.len() >= 14,
        "{g1} {g2}"
    );
    let details = c.groups_get(&format!("{g1},{g2},999")).unwrap();
    assert_eq!(details.count, Some(2));
    let d = &details.data.unwrap()[0];
    assert_eq!(d["affiliations"], json!([{"owner": "o"}, {"member": "a"}]));
    assert_eq!(d["maxusers"], 4);
    let no_public = json!({"owner": "o"});
    assert_eq!(
        err(c.group_create(&no_public, 1)),
        (400, "invalid_parameter")
    );
    let ghost = json!({"owner": "o", "public": false, "members": ["ghost"]});
    assert_eq!(err(c.group_create(&ghost, 1)), (404, "resource_not_found"));
    let full = json!({"owner": "o", "public": false, "maxusers": 2, "members": ["a", "b"]});
    assert_eq!(err(c.group_create(&full, 1)), (403, "exceed_limit"));
    // Newest first, with a cursor while groups remain.
    let page = c.groups_list(Some("1"), None).unwrap();
    assert_eq!(page.data.unwrap()[0]["groupid"], g2.as_str());
    let last = c.groups_list(Some("1"), page.cursor.as_deref()).unwrap();
    assert_eq!(
        (last.data.unwrap()[0]["owner"].clone(), last.cursor),
        (json!("org1#app1_o"), None)
    );
    // Update, bad field, delete.
    let upd = c
        .group_update(&g1, &json!({"groupname": "new", "maxusers": "10"}), 2)
        .unwrap();
    assert_eq!(
        upd.data.unwrap(),
        json!({"groupname": true, "maxusers": true})
    );
    assert_eq!(
        err(c.group_update(&g1, &json!({"groupid": "1"}), 2)),
        (400, "invalid_parameter")
    );
    c.group_delete(&g2).unwrap();
    assert_eq!(
        err(c.group_delete(&g2)),
        (404, "service_resource_not_found")
    );
    // Deleting the owner deletes its groups.
    c.user_delete("o").unwrap();
    assert_eq!(c.group_count(), 0);
}

#[test]
fn members_are_added_listed_and_removed() {
    let mut c = with_users(&["o", "a", "b", "c", "d"]);
    let g = group(&mut c, "o", &["a"], T0 * 1000);
    let added = c
        .members_add(&g, &json!({"usernames": ["a", "b", "c"]}))
        .unwrap();
    assert_eq!(added.data.unwrap()["newmembers"], json!(["b", "c"]));
    assert_eq!(
        err(c.members_add(&g, &json!({"usernames": ["a"]}))),
        (403, "forbidden_op")
    );
    assert_eq!(
        err(c.members_add(&g, &json!({"usernames": ["d"]}))),
        (403, "forbidden_op"),
        "full"
    );
    assert_eq!(
        err(c.members_add(&g, &json!({"usernames": ["zz"]}))),
        (400, "illegal_argument")
    );
    let page2 = c.members_list(&g, Some("2"), Some("3")).unwrap();
    assert_eq!(page2.data.unwrap(), json!([{"member": "c"}]));
    let one = c.members_remove(&g, "b").unwrap();
    assert_eq!(one.data.unwrap()["result"], true);
    assert_eq!(err(c.members_remove(&g, "b")), (403, "forbidden_op"));
    assert_eq!(err(c.members_remove(&g, "o")), (403, "forbidden_op"));
    let many = c.members_remove(&g, "c,zz").unwrap().data.unwrap();
    assert_eq!(
        (many[0]["result"].clone(), many[1]["result"].clone()),
        (json!(true), json!(false))
    );
    let left = c.members_list(&g, None, None).unwrap();
    assert_eq!(left.data.unwrap(), json!([{"owner": "o"}, {"member": "a"}]));
    assert_eq!(
        err(c.members_list("42", None, None)),
        (404, "service_resource_not_found")
    );
}
