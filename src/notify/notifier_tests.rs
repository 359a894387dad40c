//! Tests of the notifier: it never blocks, drops and counts when a queue is full, keeps
//! each sink's order, isolates a dead sink, and reports failures without secrets.

use std::time::{Duration, Instant};

use super::*;
use crate::notify::event::{Event, Severity};
use crate::notify::test_server::{Receiver, answer, client, freeze, sink};

fn options(queue: usize) -> NotifierOptions {
    NotifierOptions {
        queue_capacity: queue,
        retry: RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(5),
            cap: Duration::from_millis(20),
            deadline: Duration::from_secs(2),
            request_timeout: Duration::from_secs(1),
        },
    }
}

fn start(sinks: Vec<ResolvedSink>, queue: usize) -> Notifier {
    Notifier::start(client(Duration::from_secs(1)), sinks, options(queue))
}

/// Wait (at most 3 s) until `f` holds for the notifier's stats.
async fn until(notifier: &Notifier, f: impl Fn(&[SinkStats]) -> bool) -> Vec<SinkStats> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let stats = notifier.stats();
        if f(&stats) || Instant::now() > deadline {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn drill_overdue() -> crate::notify::Notification {
    let mut n = freeze("wecom");
    n.event = Event::DrillOverdue { last: None };
    n
}

#[tokio::test]
async fn a_freeze_reaches_the_receiver_within_a_second_and_is_counted() {
    let rx = Receiver::start(vec![answer(200, "ok")]).await;
    let mut critical_only = sink(
        SinkKind::Slack,
        &rx.url("/services/T0/B0/XXXXXXXXSECRET"),
        "",
    );
    critical_only.min_severity = Some(Severity::Critical);
    let notifier = start(vec![critical_only], 8);
    let handed = Instant::now();
    assert_eq!(
        notifier.notify(&freeze("wecom")),
        Enqueued {
            queued: 1,
            dropped: 0,
            filtered: 0
        }
    );
    assert!(
        handed.elapsed() < Duration::from_millis(50),
        "notify does not wait"
    );
    let seen = rx.wait_for(1).await;
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].at - handed < Duration::from_secs(1),
        "{:?}",
        seen[0].at - handed
    );
    assert_eq!(
        notifier.notify(&drill_overdue()),
        Enqueued {
            queued: 0,
            dropped: 0,
            filtered: 1
        }
    );
    let stats = until(&notifier, |s| s[0].sent == 1).await;
    assert_eq!(
        (stats[0].sent, stats[0].failed, stats[0].dropped),
        (1, 0, 0)
    );
    assert_eq!(stats[0].name, "slack-sink");
    assert_eq!(stats[0].endpoint, format!("http://{}", rx.addr));
    assert!(notifier.last_failure().is_none());
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let rx = Receiver::gated(vec![answer(200, "ok")]).await;
    let notifier = start(vec![sink(SinkKind::Webhook, &rx.url("/hook"), "whsec")], 1);
    assert_eq!(notifier.notify(&freeze("a")).queued, 1);
    // The worker holds the first one (its request waits at the gate).
    assert_eq!(rx.wait_for(1).await.len(), 1);
    let handed = Instant::now();
    let second = notifier.notify(&freeze("b"));
    let rest: Vec<Enqueued> = ["c", "d", "e"]
        .iter()
        .map(|p| notifier.notify(&freeze(p)))
        .collect();
    assert!(handed.elapsed() < Duration::from_millis(50), "never blocks");
    assert_eq!(
        second,
        Enqueued {
            queued: 1,
            dropped: 0,
            filtered: 0
        }
    );
    assert!(rest.iter().all(|e| *e
        == Enqueued {
            queued: 0,
            dropped: 1,
            filtered: 0
        }));
    assert_eq!(notifier.stats()[0].dropped, 3);
    rx.open(10);
    let stats = until(&notifier, |s| s[0].sent == 2).await;
    assert_eq!(
        (stats[0].sent, stats[0].dropped, stats[0].failed),
        (2, 3, 0)
    );
    let pairs: Vec<String> = rx
        .seen()
        .iter()
        .map(|s| serde_json::from_slice::<serde_json::Value>(&s.body).unwrap()["pair"].to_string())
        .collect();
    assert_eq!(pairs, ["\"a\"", "\"b\""]);
}

#[tokio::test]
async fn failures_are_counted_and_shown_until_a_delivery_succeeds() {
    let body = r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#;
    let rx = Receiver::start(vec![answer(200, body), answer(200, r#"{"errcode":0}"#)]).await;
    let s = sink(
        SinkKind::WecomRobot,
        &rx.url("/cgi-bin/webhook/send?key=SECRET"),
        "",
    );
    let notifier = start(vec![s], 8);
    notifier.notify(&freeze("wecom"));
    let stats = until(&notifier, |s| s[0].failed == 1).await;
    assert_eq!((stats[0].sent, stats[0].failed), (0, 1));
    assert!(stats[0].failing);
    let failure = notifier.last_failure().unwrap();
    assert_eq!(failure.category, "permanent");
    assert_eq!(failure.attempts, 1);
    assert_eq!(failure.kind, SinkKind::WecomRobot);
    assert_eq!(failure.incident_key, "understudy/payments/wecom/freeze");
    assert!(failure.detail.contains("93000"), "{}", failure.detail);
    assert!(!format!("{failure:?}").contains("SECRET"));
    assert_eq!(notifier.failing(), vec![failure.clone()]);
    notifier.notify(&freeze("wecom"));
    let stats = until(&notifier, |s| s[0].sent == 1).await;
    assert!(!stats[0].failing);
    assert!(notifier.failing().is_empty());
    assert_eq!(
        notifier.last_failure(),
        Some(failure),
        "kept for the record"
    );
}

#[tokio::test]
async fn a_sink_keeps_its_order_through_retries() {
    let rx = Receiver::start(vec![answer(500, ""), answer(202, "{}")]).await;
    let notifier = start(
        vec![sink(SinkKind::PagerDuty, &rx.url("/v2/enqueue"), "R")],
        8,
    );
    let mut resolved = freeze("wecom");
    resolved.event = Event::Resolved {
        detail: "failback succeeded".into(),
    };
    notifier.notify(&freeze("wecom"));
    notifier.notify(&resolved);
    let stats = until(&notifier, |s| s[0].sent == 2).await;
    assert_eq!(stats[0].retries, 1);
    let actions: Vec<String> = rx
        .seen()
        .iter()
        .map(|s| {
            serde_json::from_slice::<serde_json::Value>(&s.body).unwrap()["event_action"]
                .to_string()
        })
        .collect();
    assert_eq!(actions, ["\"trigger\"", "\"trigger\"", "\"resolve\""]);
}

#[tokio::test]
async fn a_dead_sink_delays_only_itself() {
    let dead = Receiver::gated(vec![answer(200, "ok")]).await;
    let alive = Receiver::start(vec![answer(200, "ok")]).await;
    let notifier = start(
        vec![
            sink(SinkKind::Webhook, &dead.url("/hook"), "whsec"),
            sink(
                SinkKind::Slack,
                &alive.url("/services/T0/B0/XXXXXXXXSECRET"),
                "",
            ),
        ],
        8,
    );
    for p in ["a", "b", "c"] {
        notifier.notify(&freeze(p));
    }
    assert_eq!(alive.wait_for(3).await.len(), 3);
    let stats = until(&notifier, |s| s[1].sent == 3).await;
    assert_eq!((stats[0].sent, stats[1].sent), (0, 3));
    assert_eq!(
        dead.wait_for(1).await.len(),
        1,
        "the first one is still held"
    );
}

#[tokio::test]
async fn shutdown_lets_queued_notifications_out_within_the_grace() {
    let rx = Receiver::start(vec![answer(204, "")]).await;
    let notifier = start(vec![sink(SinkKind::Webhook, &rx.url("/hook"), "whsec")], 8);
    for p in ["a", "b", "c"] {
        notifier.notify(&freeze(p));
    }
    notifier.shutdown(Duration::from_secs(2)).await;
    assert_eq!(rx.seen().len(), 3);
    let held = Receiver::gated(vec![answer(204, "")]).await;
    let notifier = start(
        vec![sink(SinkKind::Webhook, &held.url("/hook"), "whsec")],
        8,
    );
    notifier.notify(&freeze("a"));
    let started = Instant::now();
    notifier.shutdown(Duration::from_millis(100)).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a stuck sink is abandoned"
    );
}

/// The webhook signature of one request the receiver saw, checked with `secret`.
fn signed_with(seen: &crate::notify::test_server::Seen, secret: &str) -> bool {
    let ts = seen.headers["x-understudy-timestamp"].to_str().unwrap();
    let sig = seen.headers["x-understudy-signature"].to_str().unwrap();
    crate::notify::verify(secret.as_bytes(), ts, &seen.body, sig)
}

#[tokio::test]
async fn a_rotated_secret_signs_the_next_message_and_the_old_one_no_longer_does() {
    let rx = Receiver::gated(vec![answer(204, "")]).await;
    let old = sink(SinkKind::Webhook, &rx.url("/hook"), "old-secret");
    let notifier = start(vec![old.clone()], 8);
    // One message in flight (held at the receiver) when the secret changes.
    notifier.notify(&freeze("wecom"));
    assert_eq!(rx.wait_for(1).await.len(), 1);
    assert!(
        !notifier.replace(old.clone()),
        "the same credentials: nothing to swap"
    );
    let new = sink(SinkKind::Webhook, &rx.url("/hook"), "new-secret");
    assert!(notifier.replace(new));
    notifier.notify(&freeze("wecom"));
    rx.open(2);
    let seen = rx.wait_for(2).await;
    assert_eq!(seen.len(), 2);
    assert!(
        signed_with(&seen[0], "old-secret"),
        "the message in flight keeps its signature"
    );
    assert!(signed_with(&seen[1], "new-secret"));
    assert!(
        !signed_with(&seen[1], "old-secret"),
        "the old secret no longer verifies"
    );
    let stats = until(&notifier, |s| s[0].sent == 2).await;
    assert_eq!(stats[0].sent, 2, "the counters survive the swap");
    let mut other = sink(SinkKind::Webhook, &rx.url("/hook"), "x");
    other.name = "unknown".into();
    assert!(!notifier.replace(other), "no sink of that name");
}

#[tokio::test]
async fn a_pair_that_chose_some_sinks_reaches_only_those() {
    let rx = Receiver::start(vec![answer(204, "")]).await;
    let mut a = sink(SinkKind::Webhook, &rx.url("/a"), "s");
    a.name = "a".into();
    let mut b = sink(SinkKind::Webhook, &rx.url("/b"), "s");
    b.name = "b".into();
    let notifier = start(vec![a, b], 8);
    assert_eq!(notifier.sink_names(), ["a", "b"]);
    let e = notifier.notify_where(&freeze("wecom"), |name| name == "b");
    assert_eq!(
        e,
        Enqueued {
            queued: 1,
            dropped: 0,
            filtered: 0
        }
    );
    let seen = rx.wait_for(1).await;
    assert_eq!(seen[0].uri, "/b");
    let stats = until(&notifier, |s| s[1].sent == 1).await;
    assert_eq!((stats[0].sent, stats[1].sent), (0, 1));
    assert_eq!(rx.seen().len(), 1, "sink a got nothing");
}
