//! Tests of delivery against real HTTP receivers on loopback: each sink's request as its
//! provider documents it, which answers are retried, the deadline, and that no failure
//! text ever shows a secret.

use std::time::{Duration, Instant};

use super::*;
use crate::notify::WebhookDocument;
use crate::notify::config::SinkKind;
use crate::notify::formats::{self, verify};
use crate::notify::test_server::{Receiver, answer, client, freeze, sink};

const WECOM_PATH: &str = "/cgi-bin/webhook/send?key=SECRET";
const WECOM_OK: &str = r#"{"errcode":0,"errmsg":"ok"}"#;

fn fast() -> RetryPolicy {
    RetryPolicy {
        attempts: 5,
        base: Duration::from_millis(5),
        cap: Duration::from_millis(20),
        deadline: Duration::from_secs(2),
        request_timeout: Duration::from_secs(1),
    }
}

fn http() -> reqwest::Client {
    client(Duration::from_secs(1))
}

fn json_content(seen: &crate::notify::test_server::Seen) {
    assert_eq!(seen.headers["content-type"], "application/json");
}

#[tokio::test]
async fn wecom_robot_gets_its_markdown_message() {
    let rx = Receiver::start(vec![answer(200, WECOM_OK)]).await;
    let s = sink(SinkKind::WecomRobot, &rx.url(WECOM_PATH), "");
    let n = freeze("wecom");
    let done = deliver(&http(), &s, &n).await.unwrap();
    assert_eq!(
        done,
        Delivered {
            status: 200,
            attempts: 1
        }
    );
    let seen = rx.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, WECOM_PATH);
    json_content(&seen[0]);
    assert_eq!(seen[0].body, formats::wecom_body(&render(&n)));
}

#[tokio::test]
async fn slack_gets_text_and_blocks() {
    let rx = Receiver::start(vec![answer(200, "ok")]).await;
    let s = sink(
        SinkKind::Slack,
        &rx.url("/services/T0/B0/XXXXXXXXSECRET"),
        "",
    );
    let n = freeze("wecom");
    deliver(&http(), &s, &n).await.unwrap();
    let seen = rx.seen();
    json_content(&seen[0]);
    assert_eq!(seen[0].body, formats::slack_body(&render(&n)));
}

#[tokio::test]
async fn pagerduty_gets_an_events_v2_trigger() {
    let rx = Receiver::start(vec![answer(
        202,
        r#"{"status":"success","message":"Event processed","dedup_key":"k"}"#,
    )])
    .await;
    let s = sink(SinkKind::PagerDuty, &rx.url("/v2/enqueue"), "R0UTINGKEY");
    let n = freeze("wecom");
    let done = deliver(&http(), &s, &n).await.unwrap();
    assert_eq!(done.status, 202);
    let seen = rx.seen();
    assert_eq!(seen[0].uri, "/v2/enqueue");
    json_content(&seen[0]);
    assert_eq!(
        seen[0].body,
        formats::pagerduty_body("R0UTINGKEY", &n, &render(&n))
    );
}

#[tokio::test]
async fn webhook_gets_a_signed_document() {
    let rx = Receiver::start(vec![answer(204, "")]).await;
    let s = sink(SinkKind::Webhook, &rx.url("/hook"), "whsec-right");
    let n = freeze("wecom");
    deliver(&http(), &s, &n).await.unwrap();
    let seen = &rx.seen()[0];
    json_content(seen);
    let ts = seen.headers[formats::TIMESTAMP_HEADER].to_str().unwrap();
    let sig = seen.headers[formats::SIGNATURE_HEADER].to_str().unwrap();
    assert!(verify(b"whsec-right", ts, &seen.body, sig));
    assert!(!verify(b"whsec-wrong", ts, &seen.body, sig));
    let signed_at: i64 = ts.parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - signed_at).abs() <= 5);
    let doc: WebhookDocument = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(doc, WebhookDocument::new(&n, &render(&n)));
}

#[tokio::test]
async fn two_500s_then_200_take_exactly_three_tries() {
    let rx = Receiver::start(vec![answer(500, ""), answer(500, ""), answer(200, "ok")]).await;
    let s = sink(
        SinkKind::Slack,
        &rx.url("/services/T0/B0/XXXXXXXXSECRET"),
        "",
    );
    let done = deliver_with_retry(&http(), &s, &freeze("p"), &fast())
        .await
        .unwrap();
    assert_eq!(
        done,
        Delivered {
            status: 200,
            attempts: 3
        }
    );
    assert_eq!(rx.seen().len(), 3);
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let rx = Receiver::start(vec![answer(400, "invalid_payload")]).await;
    let s = sink(
        SinkKind::Slack,
        &rx.url("/services/T0/B0/XXXXXXXXSECRET"),
        "",
    );
    let gave_up = deliver_with_retry(&http(), &s, &freeze("p"), &fast())
        .await
        .unwrap_err();
    assert_eq!(gave_up.attempts, 1);
    assert_eq!(
        gave_up.error,
        DeliveryError::Permanent {
            status: 400,
            detail: "HTTP 400: invalid_payload".into()
        }
    );
    assert_eq!(gave_up.error.category(), "permanent");
    assert_eq!(rx.seen().len(), 1);
}

#[tokio::test]
async fn pagerduty_429_is_retried() {
    let mut limited = answer(429, r#"{"status":"throttle event"}"#);
    limited.headers.push(("retry-after", "0".into()));
    let rx = Receiver::start(vec![limited, answer(202, "{}")]).await;
    let s = sink(SinkKind::PagerDuty, &rx.url("/v2/enqueue"), "R0UTINGKEY");
    let done = deliver_with_retry(&http(), &s, &freeze("p"), &fast())
        .await
        .unwrap();
    assert_eq!(
        done,
        Delivered {
            status: 202,
            attempts: 2
        }
    );
    let seen = rx.seen();
    assert_eq!(seen[0].body, seen[1].body, "the same event again");
}

#[tokio::test]
async fn a_retry_after_past_the_deadline_ends_the_retries_at_once() {
    let mut limited = answer(429, "");
    limited.headers.push(("retry-after", "3600".into()));
    let rx = Receiver::start(vec![limited]).await;
    let s = sink(SinkKind::PagerDuty, &rx.url("/v2/enqueue"), "R0UTINGKEY");
    let started = Instant::now();
    let gave_up = deliver_with_retry(&http(), &s, &freeze("p"), &fast())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(gave_up.attempts, 1);
    assert!(matches!(
        gave_up.error,
        DeliveryError::Retryable { status: 429, retry_after: Some(d), .. } if d == Duration::from_secs(3600)
    ));
}

#[tokio::test]
async fn wecom_errcode_93000_is_a_failure_and_45009_a_retry() {
    let rx = Receiver::start(vec![answer(
        200,
        r#"{"errcode":93000,"errmsg":"invalid webhook url, hint: [1755605200], key=SECRET"}"#,
    )])
    .await;
    let s = sink(SinkKind::WecomRobot, &rx.url(WECOM_PATH), "");
    let gave_up = deliver_with_retry(&http(), &s, &freeze("p"), &fast())
        .await
        .unwrap_err();
    assert_eq!(gave_up.attempts, 1);
    assert_eq!(gave_up.error.category(), "permanent");
    let text = gave_up.to_string();
    assert!(text.contains("WeCom errcode 93000"), "{text}");
    assert!(!text.contains("SECRET"), "{text}");

    let busy = r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#;
    let rx = Receiver::start(vec![answer(200, busy), answer(200, WECOM_OK)]).await;
    let s = sink(SinkKind::WecomRobot, &rx.url(WECOM_PATH), "");
    let done = deliver_with_retry(&http(), &s, &freeze("p"), &fast())
        .await
        .unwrap();
    assert_eq!(done.attempts, 2);
}

/// Every way a WeCom delivery can fail, for the URL of the robot's documentation.
#[tokio::test]
async fn no_failure_text_shows_the_robot_key() {
    let doc_url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=SECRET";
    let mut texts = Vec::new();
    // TLS to a receiver that speaks plain HTTP: the handshake fails.
    let rx = Receiver::start(vec![answer(200, WECOM_OK)]).await;
    let tls = client_builder(Duration::from_secs(1))
        .no_proxy()
        .resolve("qyapi.weixin.qq.com", rx.addr)
        .build()
        .unwrap();
    let s = sink(SinkKind::WecomRobot, doc_url, "");
    let e = deliver(&tls, &s, &freeze("p")).await.unwrap_err();
    assert_eq!(e.category(), "transport", "{e}");
    texts.push(format!("{e} {e:?}"));
    // Nobody listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let s = sink(
        SinkKind::WecomRobot,
        &format!("http://{closed}{WECOM_PATH}"),
        "",
    );
    let e = deliver(&http(), &s, &freeze("p")).await.unwrap_err();
    assert_eq!(e.category(), "transport", "{e}");
    texts.push(format!("{e} {e:?}"));
    // A receiver that echoes the request line into its error.
    let rx = Receiver::start(vec![answer(400, &format!("bad request {WECOM_PATH}"))]).await;
    let s = sink(SinkKind::WecomRobot, &rx.url(WECOM_PATH), "");
    let e = deliver(&http(), &s, &freeze("p")).await.unwrap_err();
    texts.push(format!("{e} {e:?}"));
    // No answer in time.
    let mut slow = answer(200, WECOM_OK);
    slow.delay = Duration::from_secs(3);
    let rx = Receiver::start(vec![slow]).await;
    let s = sink(SinkKind::WecomRobot, &rx.url(WECOM_PATH), "");
    let policy = RetryPolicy {
        attempts: 1,
        request_timeout: Duration::from_millis(100),
        ..fast()
    };
    let e = deliver_with_retry(&http(), &s, &freeze("p"), &policy)
        .await
        .unwrap_err();
    texts.push(format!("{e} {e:?}"));
    for t in &texts {
        assert!(!t.contains("SECRET") && !t.contains("key="), "{t}");
    }
}

#[tokio::test]
async fn the_deadline_bounds_all_attempts() {
    let rx = Receiver::start(vec![answer(503, "")]).await;
    let s = sink(SinkKind::Webhook, &rx.url("/hook"), "whsec");
    let policy = RetryPolicy {
        attempts: 1000,
        deadline: Duration::from_millis(300),
        ..fast()
    };
    let started = Instant::now();
    let gave_up = deliver_with_retry(&http(), &s, &freeze("p"), &policy)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    assert!(gave_up.attempts > 2, "{}", gave_up.attempts);
    // The last attempt may be cut by the deadline before its request arrives; the
    // error reported is then the one before it.
    let seen = rx.seen().len() as u32;
    assert!(seen == gave_up.attempts || seen + 1 == gave_up.attempts);
    assert_eq!(gave_up.error.category(), "retryable", "{}", gave_up.error);
}

#[tokio::test]
async fn an_attempt_cut_by_the_deadline_reports_the_error_before_it() {
    let mut slow = answer(200, "ok");
    slow.delay = Duration::from_secs(3);
    let rx = Receiver::start(vec![answer(503, "rollup_error"), slow]).await;
    let s = sink(
        SinkKind::Slack,
        &rx.url("/services/T0/B0/XXXXXXXXSECRET"),
        "",
    );
    let policy = RetryPolicy {
        deadline: Duration::from_millis(300),
        ..fast()
    };
    let started = Instant::now();
    let gave_up = deliver_with_retry(&http(), &s, &freeze("p"), &policy)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(800));
    assert_eq!(gave_up.attempts, 2);
    assert_eq!(
        gave_up.error.to_string(),
        "failed, worth retrying: HTTP 503: rollup_error"
    );
}

#[tokio::test]
async fn a_slow_answer_is_cut_by_the_request_timeout() {
    let mut slow = answer(200, "ok");
    slow.delay = Duration::from_secs(3);
    let rx = Receiver::start(vec![slow]).await;
    let s = sink(SinkKind::Webhook, &rx.url("/hook"), "whsec");
    let policy = RetryPolicy {
        attempts: 2,
        request_timeout: Duration::from_millis(150),
        ..fast()
    };
    let started = Instant::now();
    let gave_up = deliver_with_retry(&http(), &s, &freeze("p"), &policy)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(gave_up.attempts, 2);
    assert_eq!(gave_up.error.category(), "transport");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let mut moved = answer(302, "");
    moved.headers.push(("location", "/elsewhere".into()));
    let rx = Receiver::start(vec![moved, answer(200, "ok")]).await;
    let s = sink(SinkKind::Webhook, &rx.url("/hook"), "whsec");
    let gave_up = deliver_with_retry(&http(), &s, &freeze("p"), &fast())
        .await
        .unwrap_err();
    assert!(matches!(
        gave_up.error,
        DeliveryError::Permanent { status: 302, .. }
    ));
    assert_eq!(rx.seen().len(), 1);
}

#[test]
fn backoff_doubles_up_to_the_cap_with_equal_jitter() {
    let p = RetryPolicy {
        base: Duration::from_millis(100),
        cap: Duration::from_millis(1000),
        ..RetryPolicy::default()
    };
    let ms = |attempt, jitter| p.backoff(attempt, jitter).as_millis();
    assert_eq!([ms(1, 0.0), ms(1, 1.0)], [50, 100]);
    assert_eq!([ms(2, 0.0), ms(2, 1.0)], [100, 200]);
    assert_eq!([ms(3, 0.5), ms(4, 0.5)], [300, 600]);
    assert_eq!([ms(5, 0.0), ms(5, 1.0)], [500, 1000], "capped");
    assert_eq!(ms(40, 1.0), 1000, "no overflow");
    assert_eq!(ms(2, -3.0), 100, "jitter clamped");
    assert_eq!(ms(2, 7.0), 200, "jitter clamped");
    assert_eq!(ms(0, 1.0), 100, "attempt 0 counts as the first");
    for _ in 0..100 {
        let j = jitter();
        assert!((0.0..1.0).contains(&j), "{j}");
    }
}

#[test]
fn scrub_removes_every_fragment() {
    let f = vec!["https://h/x?key=SECRET".to_string(), "SECRET".to_string()];
    assert_eq!(
        scrub("posting https://h/x?key=SECRET failed; SECRET", &f),
        "posting <redacted> failed; <redacted>"
    );
}
