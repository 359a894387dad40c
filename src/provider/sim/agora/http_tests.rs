//! The Agora Chat API over HTTP, in process on 127.0.0.1:0, with a token built by
//! `build_chat_app_token`; and the simulator's other routes still answer beside it.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::provider::agora::token::build_chat_app_token;
use crate::provider::sim::{ServerConfig, SimStore, router};

const APP_ID: &str = "0123456789abcdef0123456789abcdef";
const CERT: &str = "fedcba9876543210fedcba9876543210";

async fn start() -> String {
    let app = router(SimStore::new(), ServerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn token() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    build_chat_app_token(APP_ID, CERT, now - 5, 3600, 42)
}

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = Client::new().request(method, url).bearer_auth(token());
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or_default())
}

#[tokio::test]
async fn users_groups_and_members_over_http() {
    let base = start().await;
    let http = Client::new();
    let cfg = json!({"appId": APP_ID, "appCertificate": CERT, "ratePerSecond": 1000});
    let r = http
        .put(format!("{base}/admin/agora/apps/org1/app1"))
        .json(&cfg)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let bad = json!({"appId": "xyz", "appCertificate": CERT});
    let r = http
        .put(format!("{base}/admin/agora/apps/org1/app2"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let users = format!("{base}/org1/app1/users");
    let batch: Vec<Value> = (0..3)
        .map(|i| json!({"username": format!("u{i}"), "password": "p"}))
        .collect();
    let (st, v) = call(reqwest::Method::POST, users.clone(), Some(json!(batch))).await;
    assert_eq!(
        (st, v["entities"].as_array().unwrap().len()),
        (StatusCode::OK, 3),
        "{v}"
    );
    assert_eq!(
        (v["organization"].clone(), v["applicationName"].clone()),
        (json!("org1"), json!("app1"))
    );
    let (st, v) = call(
        reqwest::Method::POST,
        users.clone(),
        Some(json!({"username": "u1", "password": "p"})),
    )
    .await;
    assert_eq!(
        (st, v["error"].clone()),
        (
            StatusCode::BAD_REQUEST,
            json!("duplicate_unique_property_exists")
        )
    );
    assert!(
        v["exception"].is_string() && v["error_description"].is_string(),
        "{v}"
    );

    let (_, p1) = call(reqwest::Method::GET, format!("{users}?limit=2"), None).await;
    let cursor = p1["cursor"].as_str().unwrap().to_string();
    let (_, p2) = call(
        reqwest::Method::GET,
        format!("{users}?limit=2&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(
        (p2["count"].clone(), p2.get("cursor")),
        (json!(1), None),
        "{p2}"
    );

    let (st, v) = call(
        reqwest::Method::POST,
        format!("{users}/u2/deactivate"),
        None,
    )
    .await;
    assert_eq!(
        (st, v["entities"][0]["activated"].clone()),
        (StatusCode::OK, json!(false))
    );
    let (_, v) = call(reqwest::Method::GET, format!("{users}/u2"), None).await;
    assert_eq!(v["entities"][0]["activated"], false);

    let groups = format!("{base}/org1/app1/chatgroups");
    let body = json!({"groupname": "g", "description": "d", "public": true, "maxusers": 50,
        "owner": "u0", "members": ["u1"]});
    let (st, v) = call(reqwest::Method::POST, groups.clone(), Some(body)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let gid = v["data"]["groupid"].as_str().unwrap().to_string();
    let (st, _) = call(
        reqwest::Method::POST,
        format!("{groups}/{gid}/users"),
        Some(json!({"usernames": ["u2"]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = call(
        reqwest::Method::GET,
        format!("{groups}/{gid}/users?pagenum=1&pagesize=10"),
        None,
    )
    .await;
    assert_eq!(
        v["data"],
        json!([{"owner": "u0"}, {"member": "u1"}, {"member": "u2"}])
    );
    let (st, v) = call(
        reqwest::Method::DELETE,
        format!("{groups}/{gid}/users/u1,u2"),
        None,
    )
    .await;
    assert_eq!(
        (st, v["data"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(2))
    );
    let (st, v) = call(
        reqwest::Method::PUT,
        format!("{groups}/{gid}"),
        Some(json!({"groupname": "h"})),
    )
    .await;
    assert_eq!(
        (st, v["data"]["groupname"].clone()),
        (StatusCode::OK, json!(true))
    );
    let (_, v) = call(reqwest::Method::GET, format!("{groups}/{gid}"), None).await;
    assert_eq!(v["data"][0]["name"], "h");
    let (st, v) = call(reqwest::Method::DELETE, format!("{groups}/{gid}"), None).await;
    assert_eq!(
        (st, v["data"]["success"].clone()),
        (StatusCode::OK, json!(true))
    );

    // Authentication and unknown apps.
    let r = http.get(&users).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http
        .get(&users)
        .bearer_auth("007nonsense")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "auth_bad_access_token");
    let (st, v) = call(
        reqwest::Method::GET,
        format!("{base}/org1/nope/users"),
        None,
    )
    .await;
    assert_eq!(
        (st, v["error"].clone()),
        (
            StatusCode::NOT_FOUND,
            json!("organization_application_not_found")
        )
    );

    let stats: Value = http
        .get(format!("{base}/admin/agora/apps/org1/app1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (stats["unauthorized"].clone(), stats["users"].clone()),
        (json!(2), json!(3)),
        "{stats}"
    );
    assert!(stats["calls"]["users/register"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn rate_limits_and_suspended_apps_and_other_routes() {
    let base = start().await;
    let http = Client::new();
    let cfg = json!({"appId": APP_ID, "appCertificate": CERT, "ratePerSecond": 2});
    http.put(format!("{base}/admin/agora/apps/org1/app1"))
        .json(&cfg)
        .send()
        .await
        .unwrap();
    let users = format!("{base}/org1/app1/users");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(call(reqwest::Method::GET, users.clone(), None).await);
    }
    let limited: Vec<&(StatusCode, Value)> = statuses
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(!limited.is_empty(), "4 calls at 2/s must meet a 429");
    assert_eq!(limited[0].1["error"], "reach_limit");

    let status = |state: &str| json!({"status": state, "reason": "test"});
    let set = format!("{base}/admin/accounts/org1%23app1/status");
    let r = http
        .post(&set)
        .json(&status("frozen"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (st, v) = call(reqwest::Method::GET, users.clone(), None).await;
    assert_eq!(
        (st, v["error"].clone()),
        (StatusCode::FORBIDDEN, json!("forbidden_service_operation"))
    );
    http.post(&set)
        .json(&status("banned"))
        .send()
        .await
        .unwrap();
    let (st, v) = call(reqwest::Method::GET, users.clone(), None).await;
    assert_eq!(
        (st, v["error"].clone()),
        (StatusCode::UNAUTHORIZED, json!("unauthorized"))
    );

    // The simulator's other routes are not shadowed by `/{org}/{app}/…`.
    let get = |p: &str| http.get(format!("{base}{p}")).send();
    assert_eq!(get("/healthz").await.unwrap().text().await.unwrap(), "ok\n");
    assert!(
        get("/openapi.yaml")
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("openapi")
    );
    let v: Value = get("/v1/accounts/org1%23app1/status")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "banned", "{v}");
    assert!(get("/admin/accounts").await.unwrap().status().is_success());
    let v: Value = get("/cgi-bin/gettoken?corpid=x&corpsecret=y")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["errcode"].as_i64().unwrap() != 0, "{v}");
    let v: Value = get("/cgi-bin/user/get?access_token=x")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v.get("errcode").is_some(), "{v}");
    assert_eq!(
        get("/oa-media/none").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}
