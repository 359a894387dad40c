//! Adapter unit tests of `HttpProvider`: a scripted axum server on 127.0.0.1:0 answers
//! each request with the next scripted response, and the tests check the error mapping,
//! which calls are retried, and what the client sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::*;
use crate::model::{Digest, EntityKind};

#[derive(Clone)]
struct Reply {
    status: u16,
    body: &'static str,
    retry_after: Option<&'static str>,
    delay: Duration,
}

fn reply(status: u16, body: &'static str) -> Reply {
    Reply {
        status,
        body,
        retry_after: None,
        delay: Duration::ZERO,
    }
}

#[derive(Default)]
struct Script {
    replies: Vec<Reply>,
    /// (method, path+query, headers) of each request seen.
    seen: Vec<(String, String, HeaderMap)>,
}

type Shared = Arc<Mutex<Script>>;

async fn scripted(State(script): State<Shared>, req: Request) -> Response {
    let next = {
        let mut s = script.lock().unwrap();
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        s.seen
            .push((req.method().to_string(), path, req.headers().clone()));
        if s.replies.len() > 1 {
            s.replies.remove(0)
        } else {
            s.replies[0].clone()
        }
    };
    tokio::time::sleep(next.delay).await;
    let mut resp = (
        StatusCode::from_u16(next.status).unwrap(),
        [(CONTENT_TYPE, "application/json")],
        next.body,
    )
        .into_response();
    if let Some(ra) = next.retry_after {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static(ra));
    }
    resp
}

async fn start(replies: Vec<Reply>) -> (HttpProvider, Shared) {
    let script: Shared = Arc::new(Mutex::new(Script {
        replies,
        seen: Vec::new(),
    }));
    let app = Router::new().fallback(scripted).with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let options = HttpOptions {
        request_timeout: Duration::from_millis(300),
        long_poll_grace: Duration::from_millis(300),
        retry: RetryPolicy {
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
        ..HttpOptions::default()
    };
    let p = HttpProvider::with_options(
        &format!("http://{addr}"),
        "corp a/1",
        Some("s3cret-token"),
        options,
    )
    .unwrap();
    (p, script)
}

fn hits(s: &Shared) -> usize {
    s.lock().unwrap().seen.len()
}

const STATUS_OK: &str = r#"{"status":"active","reason":"","since":"2026-01-01T00:00:00.000Z"}"#;
const FROZEN: &str = r#"{"error":{"code":"account_frozen","message":"违规 content report"}}"#;

#[tokio::test]
async fn frozen_is_typed_and_not_retried() {
    let (p, s) = start(vec![reply(403, FROZEN)]).await;
    let err = p.status().await.unwrap_err();
    assert_eq!(
        err,
        ProviderError::AccountFrozen {
            reason: "违规 content report".into()
        }
    );
    assert_eq!(hits(&s), 1);
    let (method, path, headers) = s.lock().unwrap().seen[0].clone();
    assert_eq!(method, "GET");
    // The account id is one percent-encoded path segment.
    assert_eq!(path, "/v1/accounts/corp%20a%2F1/status");
    assert_eq!(headers["authorization"], "Bearer s3cret-token");
}

#[tokio::test]
async fn unavailable_then_ok_succeeds_after_a_retry() {
    let (p, s) = start(vec![
        reply(503, r#"{"error":{"code":"unavailable","message":"busy"}}"#),
        reply(200, STATUS_OK),
    ])
    .await;
    let st = p.status().await.unwrap();
    assert_eq!(st.status, crate::model::AccountState::Active);
    assert_eq!(hits(&s), 2);
}

#[tokio::test]
async fn persistent_5xx_gives_up_after_three_attempts_as_unavailable() {
    let (p, s) = start(vec![reply(502, "<html>bad gateway</html>")]).await;
    assert!(matches!(
        p.head_cursor().await,
        Err(ProviderError::Unavailable(_))
    ));
    assert_eq!(hits(&s), 3);
}

#[tokio::test]
async fn timeout_is_unavailable() {
    let mut slow = reply(200, STATUS_OK);
    slow.delay = Duration::from_secs(2);
    let (p, s) = start(vec![slow]).await;
    let err = p.status().await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Unavailable(ref m) if m.contains("timed out")),
        "{err:?}"
    );
    assert_eq!(hits(&s), 3, "a timeout is transient: retried");
}

#[tokio::test]
async fn connection_refused_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut options = HttpOptions::default();
    options.retry.attempts = 1;
    let p = HttpProvider::with_options(&format!("http://{addr}"), "a", None, options).unwrap();
    assert!(matches!(
        p.status().await,
        Err(ProviderError::Unavailable(_))
    ));
}

#[tokio::test]
async fn rejected_is_not_retried() {
    let (p, s) = start(vec![reply(
        422,
        r#"{"error":{"code":"invalid_entity","message":"payload must be an object"}}"#,
    )])
    .await;
    let e = Entity::new(
        EntityKey::new(EntityKind::Tag, "t 1").unwrap(),
        serde_json::json!({"name": "VIP"}),
    );
    let err = p
        .put_entity(&e, Some("understudy:standby"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::Rejected("payload must be an object".into())
    );
    assert_eq!(hits(&s), 1);
    let (method, path, headers) = s.lock().unwrap().seen[0].clone();
    assert_eq!(method, "PUT");
    assert_eq!(path, "/v1/accounts/corp%20a%2F1/entities/tag/t%201");
    assert_eq!(headers[ORIGIN_HEADER], "understudy:standby");
}

#[tokio::test]
async fn garbage_success_body_is_protocol() {
    let (p, s) = start(vec![reply(200, "<html>captive portal</html>")]).await;
    assert!(matches!(
        p.list_entities(None, 10).await,
        Err(ProviderError::Protocol(_))
    ));
    assert_eq!(hits(&s), 1, "a protocol error is not transient");
}

#[tokio::test]
async fn rate_limit_honours_short_retry_after_and_gives_up_on_long() {
    let mut limited = reply(
        429,
        r#"{"error":{"code":"rate_limited","message":"slow down"}}"#,
    );
    limited.retry_after = Some("0");
    let (p, s) = start(vec![limited.clone(), reply(200, r#"{"cursor":"42"}"#)]).await;
    assert_eq!(p.head_cursor().await.unwrap(), "42");
    assert_eq!(hits(&s), 2);

    limited.retry_after = Some("60");
    let (p, s) = start(vec![limited]).await;
    let started = std::time::Instant::now();
    assert_eq!(
        p.head_cursor().await.unwrap_err(),
        ProviderError::RateLimited {
            retry_after: Duration::from_secs(60)
        }
    );
    assert_eq!(hits(&s), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn probe_is_never_retried() {
    let (p, s) = start(vec![reply(503, "")]).await;
    assert!(matches!(
        p.probe().await,
        Err(ProviderError::Unavailable(_))
    ));
    assert_eq!(hits(&s), 1);
    assert_eq!(s.lock().unwrap().seen[0].0, "POST");
}

#[tokio::test]
async fn changes_query_and_cursor_expired() {
    let (p, s) = start(vec![reply(
        410,
        r#"{"error":{"code":"cursor_expired","message":"too old"}}"#,
    )])
    .await;
    let err = p
        .changes(Some("17"), 500, Duration::from_millis(250))
        .await
        .unwrap_err();
    assert_eq!(err, ProviderError::CursorExpired("too old".into()));
    let path = s.lock().unwrap().seen[0].1.clone();
    assert_eq!(
        path,
        "/v1/accounts/corp%20a%2F1/changes?cursor=17&limit=500&wait=0.250"
    );
}

#[tokio::test]
async fn digest_listing_asks_for_digests_and_retries_like_a_get() {
    let page = r#"{"entities":[{"key":"tag/t1","digest":"abababababababababababababababababababababababababababababababab"},{"key":"tag/t2","digest":"abababababababababababababababababababababababababababababababab"}],"next":"tag/t2"}"#;
    let (p, s) = start(vec![
        reply(503, r#"{"error":{"code":"unavailable","message":"busy"}}"#),
        reply(200, page),
    ])
    .await;
    let after = EntityKey::new(EntityKind::Tag, "t 0").unwrap();
    let got = p.list_digests(Some(&after), 2).await.unwrap();
    let d = Digest([0xab; 32]);
    let t = |id| EntityKey::new(EntityKind::Tag, id).unwrap();
    assert_eq!(
        got,
        DigestPage {
            items: vec![(t("t1"), d), (t("t2"), d)],
            next: Some(t("t2")),
        }
    );
    assert_eq!(hits(&s), 2, "a transient error is retried");
    let (method, path, _) = s.lock().unwrap().seen[1].clone();
    assert_eq!(method, "GET");
    assert_eq!(
        path,
        "/v1/accounts/corp%20a%2F1/entities?after=tag%2Ft+0&limit=2&fields=digest"
    );
}

#[tokio::test]
async fn digest_listing_errors_are_typed() {
    let (p, s) = start(vec![reply(
        400,
        r#"{"error":{"code":"bad_request","message":"unknown query parameter fields"}}"#,
    )])
    .await;
    let err = p.list_digests(None, 10).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Protocol(ref m) if m == "HTTP 400: unknown query parameter fields"),
        "{err:?}"
    );
    assert_eq!(hits(&s), 1, "a refused request is not retried");

    // A provider that ignores `fields` and sends payloads still reads; a bad digest does not.
    let full = r#"{"entities":[{"key":"tag/t1","payload":{"a":1},"digest":"abababababababababababababababababababababababababababababababab"}],"next":null}"#;
    let bad = r#"{"entities":[{"key":"tag/t1","digest":"00"}],"next":null}"#;
    let (p, _) = start(vec![reply(200, full), reply(200, bad)]).await;
    let page = p.list_digests(None, 10).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.next, None);
    assert!(matches!(
        p.list_digests(None, 10).await,
        Err(ProviderError::Protocol(ref m)) if m.contains("not 64 hex digits")
    ));
}

#[tokio::test]
async fn debug_redacts_the_token() {
    let (p, _) = start(vec![reply(200, STATUS_OK)]).await;
    let dbg = format!("{p:?}");
    assert!(!dbg.contains("s3cret"), "{dbg}");
    assert!(dbg.contains("<redacted>"));
    assert!(matches!(
        HttpProvider::new("not a url", "a", None),
        Err(HttpConfigError::BadEndpoint(_))
    ));
    assert!(matches!(
        HttpProvider::new("http://x", "a", Some("bad\ntoken")),
        Err(HttpConfigError::BadToken)
    ));
}

#[test]
fn an_endpoint_with_credentials_is_refused_without_repeating_them() {
    for endpoint in [
        "https://alice:hunter2@provider.example.com",
        "https://hunter2@provider.example.com/api",
        "http://:hunter2@127.0.0.1:8080",
    ] {
        let err = HttpProvider::new(endpoint, "a", None).unwrap_err();
        assert!(
            matches!(err, HttpConfigError::CredentialsInEndpoint { .. }),
            "{endpoint}: {err}"
        );
        let text = format!("{err} {err:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("credentialsSecretRef"), "{text}");
    }
    // '@' after the host is a path or query, not credentials.
    assert!(HttpProvider::new("https://provider.example.com/a@b?c=d@e", "a", None).is_ok());
}
