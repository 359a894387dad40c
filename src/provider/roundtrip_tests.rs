//! HTTP round trip: the simulator's router on 127.0.0.1:0, driven by `HttpProvider`
//! through every trait method, compared with `SimProvider` on the same store (and with
//! the trait's default methods), plus the admin API (seed, status, faults, load,
//! activity, signed notices) and token auth.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

use super::notice::{self, Notice, NoticeEvent};
use super::sim::{ServerConfig, SimProvider, SimStore, router};
use super::{
    AccountProvider, ActivityEvent, HttpOptions, HttpProvider, ProviderError, RetryPolicy,
};
use crate::model::{AccountState, ChangeOp, Entity, EntityKey, EntityKind};

const TOKEN: &str = "sim-token";

struct Sim {
    base: String,
    store: SimStore,
    admin: reqwest::Client,
}

impl Sim {
    async fn start() -> Sim {
        let store = SimStore::new();
        let app = router(
            store.clone(),
            ServerConfig {
                token: Some(TOKEN.into()),
                auto_create: false,
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Sim {
            base: format!("http://{addr}"),
            store,
            admin: reqwest::Client::new(),
        }
    }

    fn provider(&self, account: &str) -> HttpProvider {
        let options = HttpOptions {
            retry: RetryPolicy {
                attempts: 2,
                min_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(10),
                ..RetryPolicy::default()
            },
            ..HttpOptions::default()
        };
        HttpProvider::with_options(&self.base, account, Some(TOKEN), options).unwrap()
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .admin
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

fn key(kind: EntityKind, id: &str) -> EntityKey {
    EntityKey::new(kind, id).unwrap()
}

#[tokio::test]
async fn every_trait_method_over_http_matches_the_in_process_provider() {
    let sim = Sim::start().await;
    let post = reqwest::Method::POST;
    let (st, v) = sim
        .admin(
            post.clone(),
            "/admin/accounts/corp-a/seed",
            json!({"count": 250, "seed": 3}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["added"], 250);
    let http = sim.provider("corp-a");
    let local = SimProvider::new(sim.store.clone(), "corp-a");

    let status = http.status().await.unwrap();
    assert_eq!(status.status, AccountState::Active);

    // Paged listing equals the in-process one, page by page.
    let mut after: Option<EntityKey> = None;
    let mut total = 0;
    loop {
        let a = http.list_entities(after.as_ref(), 100).await.unwrap();
        let b = local.list_entities(after.as_ref(), 100).await.unwrap();
        assert_eq!(a, b);
        total += a.entities.len();
        match a.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(total, 250);

    // Writes with an origin tag, with Chinese text, and an id needing escaping.
    let e = Entity::new(
        key(EntityKind::Member, "张 三?#%"),
        json!({"name": "张三", "quote": "say \"hi\"\n"}),
    );
    http.put_entity(&e, Some("understudy:standby"))
        .await
        .unwrap();
    http.put_entity(&e, Some("understudy:standby"))
        .await
        .unwrap();
    assert_eq!(
        http.head_cursor().await.unwrap(),
        "251",
        "an equal PUT records nothing"
    );
    http.delete_entity(&e.key, None).await.unwrap();
    http.delete_entity(&e.key, None).await.unwrap();
    assert_eq!(http.head_cursor().await.unwrap(), "252");

    let a = http.changes(Some("249"), 10, Duration::ZERO).await.unwrap();
    let b = local
        .changes(Some("249"), 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.changes.len(), 3);
    assert_eq!(a.changes[1].key, e.key);
    assert_eq!(a.changes[1].origin.as_deref(), Some("understudy:standby"));
    assert_eq!(
        a.changes[1].op,
        ChangeOp::Upsert {
            payload: e.payload.clone()
        }
    );
    assert_eq!(a.changes[2].op, ChangeOp::Delete);
    assert_eq!((a.cursor.as_str(), a.remaining), ("252", 0));

    // Long-poll over HTTP wakes on a write.
    let poller = sim.provider("corp-a");
    let poll = tokio::spawn(async move {
        poller
            .changes(Some("252"), 10, Duration::from_secs(10))
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Entity::new(key(EntityKind::Tag, "t1"), json!({"tagname": "VIP"}));
    http.put_entity(&t, None).await.unwrap();
    let woke = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(woke.changes[0].key, t.key);

    let probe = http.probe().await.unwrap();
    assert!(probe.ok);
    sim.admin(
        post.clone(),
        "/admin/accounts/corp-a/activity",
        json!({"events": [
            {"type": "login", "at": "2026-03-01T08:00:00Z", "device": "Android", "location": "成都"},
            {"type": "message", "at": "2026-03-01T09:00:00Z", "moderationHits": 11}
        ]}),
    )
    .await;
    let act = http.activity("2026-03-01T08:30:00Z").await.unwrap();
    assert_eq!(
        act,
        vec![ActivityEvent::Message {
            at: "2026-03-01T09:00:00Z".into(),
            moderation_hits: 11
        }]
    );

    // Errors that are the caller's: expired cursor, invalid entity.
    assert!(matches!(
        http.changes(Some("999999"), 10, Duration::ZERO).await,
        Err(ProviderError::CursorExpired(_))
    ));
    let bad = Entity::new(key(EntityKind::Content, "c1"), json!({"$invalid": true}));
    assert!(matches!(
        http.put_entity(&bad, None).await,
        Err(ProviderError::Rejected(_))
    ));
}

#[tokio::test]
async fn a_frozen_account_is_typed_over_http_and_a_long_poll_learns_at_once() {
    let sim = Sim::start().await;
    let post = reqwest::Method::POST;
    sim.admin(reqwest::Method::PUT, "/admin/accounts/corp-b", json!({}))
        .await;
    let http = sim.provider("corp-b");
    let poller = sim.provider("corp-b");
    let poll = tokio::spawn(async move { poller.changes(None, 10, Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (st, v) = sim
        .admin(
            post,
            "/admin/accounts/corp-b/status",
            json!({"status": "frozen", "reason": "异常登录 abnormal login"}),
        )
        .await;
    assert_eq!((st, v["status"].as_str()), (200, Some("frozen")));
    let frozen = ProviderError::AccountFrozen {
        reason: "异常登录 abnormal login".into(),
    };
    let polled = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(polled.unwrap_err(), frozen);

    let st = http.status().await.unwrap();
    assert_eq!(
        (st.status, st.reason.as_str()),
        (AccountState::Frozen, "异常登录 abnormal login")
    );
    let e = Entity::new(key(EntityKind::Tag, "t1"), json!({"x": 1}));
    assert_eq!(http.put_entity(&e, None).await.unwrap_err(), frozen);
    assert_eq!(http.delete_entity(&e.key, None).await.unwrap_err(), frozen);
    assert_eq!(http.list_entities(None, 5).await.unwrap_err(), frozen);
    assert_eq!(
        http.changes(None, 5, Duration::ZERO).await.unwrap_err(),
        frozen
    );
    assert_eq!(http.head_cursor().await.unwrap_err(), frozen);
    assert_eq!(http.probe().await.unwrap_err(), frozen);
    assert_eq!(
        http.activity("2026-01-01T00:00:00Z").await.unwrap_err(),
        frozen
    );

    sim.admin(
        reqwest::Method::POST,
        "/admin/accounts/corp-b/status",
        json!({"status": "banned", "reason": "fraud"}),
    )
    .await;
    assert!(matches!(
        http.head_cursor().await,
        Err(ProviderError::AccountBanned { .. })
    ));
}

#[tokio::test]
async fn faults_auth_and_unknown_accounts_are_not_freezes() {
    let sim = Sim::start().await;
    sim.admin(reqwest::Method::PUT, "/admin/accounts/corp-c", json!({}))
        .await;
    let (st, _) = sim
        .admin(
            reqwest::Method::PUT,
            "/admin/accounts/corp-c/faults",
            json!({"failure": "5xx", "rate": 1.0}),
        )
        .await;
    assert_eq!(st, 200);
    let http = sim.provider("corp-c");
    assert!(matches!(
        http.status().await,
        Err(ProviderError::Unavailable(_))
    ));
    sim.admin(
        reqwest::Method::PUT,
        "/admin/accounts/corp-c/faults",
        json!({"failure": "rate-limit", "rate": 1.0}),
    )
    .await;
    assert!(matches!(
        http.probe().await,
        Err(ProviderError::RateLimited { .. })
    ));
    sim.admin(
        reqwest::Method::PUT,
        "/admin/accounts/corp-c/faults",
        json!({}),
    )
    .await;
    http.status().await.unwrap();

    let wrong = HttpProvider::new(&sim.base, "corp-c", Some("nope")).unwrap();
    assert!(matches!(
        wrong.status().await,
        Err(ProviderError::Unauthorized(_))
    ));
    assert!(matches!(
        sim.provider("ghost").status().await,
        Err(ProviderError::NotFound(_))
    ));
    let (st, body) = sim
        .admin(reqwest::Method::GET, "/openapi.yaml", Value::Null)
        .await;
    assert_eq!(st, 200);
    assert!(body.as_str().unwrap().starts_with("openapi: 3.0"));
}

#[tokio::test]
async fn admin_load_runs_and_stops_by_itself() {
    let sim = Sim::start().await;
    let (st, v) = sim
        .admin(
            reqwest::Method::POST,
            "/admin/accounts/corp-d/load",
            json!({"rate": 5000, "count": 500, "seed": 1}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    let (st, _) = sim
        .admin(
            reqwest::Method::POST,
            "/admin/accounts/corp-d/load",
            json!({"rate": 5000}),
        )
        .await;
    assert_eq!(st, 400, "a load without an end is refused");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = sim
            .admin(
                reqwest::Method::GET,
                "/admin/accounts/corp-d/load",
                Value::Null,
            )
            .await;
        if v["running"] == false {
            assert_eq!(v["produced"], 500);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "load did not finish: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sim.provider("corp-d").head_cursor().await.unwrap(), "500");
}

type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

#[tokio::test]
async fn admin_sends_a_notice_the_shared_verifier_accepts() {
    let sim = Sim::start().await;
    let received: Received = Arc::default();
    let hook = Router::new()
        .route(
            "/hook",
            post(
                |State(r): State<Received>, headers: HeaderMap, body: Bytes| async move {
                    r.lock().unwrap().push((headers, body));
                    StatusCode::ACCEPTED
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, hook).await });

    let (st, v) = sim
        .admin(
            reqwest::Method::POST,
            "/admin/accounts/corp-e/notice",
            json!({
                "url": format!("http://{addr}/hook"),
                "secretBase64": "c2VjcmV0LWtleQ==",
                "applyStatus": true,
                "event": {"type": "frozen", "reason": "内容违规"}
            }),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["delivered"].as_bool(), v["status"].as_u64()),
        (Some(true), Some(202))
    );
    let (headers, body) = received.lock().unwrap()[0].clone();
    let ts = headers[notice::TIMESTAMP_HEADER].to_str().unwrap();
    let sig = headers[notice::SIGNATURE_HEADER].to_str().unwrap();
    let n: Notice = notice::verify_notice(
        b"secret-key",
        ts,
        sig,
        &body,
        chrono::Utc::now(),
        notice::DEFAULT_WINDOW,
    )
    .unwrap();
    assert_eq!(
        (n.account.as_str(), n.event),
        ("corp-e", NoticeEvent::Frozen)
    );
    assert_eq!(n.id, v["id"].as_str().unwrap());
    assert!(
        notice::verify(
            b"wrong",
            ts,
            sig,
            &body,
            chrono::Utc::now(),
            notice::DEFAULT_WINDOW
        )
        .is_err()
    );
    // applyStatus froze the account too.
    assert!(matches!(
        sim.provider("corp-e").head_cursor().await,
        Err(ProviderError::AccountFrozen { .. })
    ));
}

mod defaults;
