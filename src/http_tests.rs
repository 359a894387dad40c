//! Tests of the operator's listeners, in process on loopback: the health routes, the
//! separation of the two listeners, and every bound of the webhook listener.

use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use axum::routing::post;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A webhook route answering 202 with the length of the body it received.
fn echo_len() -> Router {
    Router::new().route(
        "/webhooks/notices/{ns}/{pair}",
        post(|body: Bytes| async move { (StatusCode::ACCEPTED, body.len().to_string()) }),
    )
}

/// Send `request` as raw bytes, return the whole answer (the server closes or answers).
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // The first response is enough; do not wait for a keep-alive close.
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn health_ready_and_metrics_answer() {
    let ready = Readiness::default();
    let (addr, task) = serve(loopback(), router(ready.clone())).await.unwrap();
    let get = |p: &str| reqwest::get(format!("http://{addr}{p}"));
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 503);
    ready.set_ready(true);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    crate::metrics::metrics()
        .replication_dlq_total
        .with_label_values(&["n", "p", "d"])
        .inc();
    let body = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        body.contains("understudy_replication_dlq_records_total"),
        "{body}"
    );
    task.abort();
}

#[tokio::test]
async fn health_and_metrics_are_served_on_their_own_listener() {
    let listeners = Listeners {
        webhook: loopback(),
        health: loopback(),
        limits: WebhookLimits::default(),
    };
    let served = serve_operator(&listeners, Readiness::default(), echo_len())
        .await
        .unwrap();
    assert_ne!(served.webhook, served.health);
    let http = reqwest::Client::new();
    let get = |addr: SocketAddr, p: &str| http.get(format!("http://{addr}{p}")).send();
    for p in ["/healthz", "/readyz", "/metrics"] {
        assert_ne!(get(served.health, p).await.unwrap().status(), 404, "{p}");
        assert_eq!(
            get(served.webhook, p).await.unwrap().status(),
            404,
            "{p} is not on the webhook listener"
        );
    }
    let hook = "/webhooks/notices/ns/pair";
    let r = http
        .post(format!("http://{}{hook}", served.webhook))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http
        .post(format!("http://{}{hook}", served.health))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the webhook is not on the health listener");
    served.tasks.iter().for_each(|t| t.abort());
}

#[tokio::test]
async fn a_webhook_body_over_64_kib_is_refused_with_413() {
    let (addr, task) = serve_webhooks(loopback(), echo_len(), &WebhookLimits::default())
        .await
        .unwrap();
    let url = format!("http://{addr}/webhooks/notices/ns/pair");
    let http = reqwest::Client::new();
    // Exactly the limit passes, whole.
    let r = http
        .post(&url)
        .body(vec![b'x'; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.text().await.unwrap(), "65536");
    // One byte more, declared in Content-Length: refused before it is read.
    let r = http
        .post(&url)
        .body(vec![b'x'; 64 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("larger than 65536 bytes"));
    // One byte more, streamed without a length (chunked): refused once it passes.
    let mut chunked =
        b"POST /webhooks/notices/ns/pair HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    for size in [32 * 1024, 32 * 1024, 1] {
        chunked.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        chunked.extend(std::iter::repeat_n(b'x', size));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = raw(addr, &chunked).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    task.abort();
}

#[tokio::test]
async fn a_trickled_webhook_body_gets_408_and_frees_its_slot() {
    let limits = WebhookLimits {
        max_in_flight: 1,
        read_timeout: Duration::from_millis(300),
        ..WebhookLimits::default()
    };
    let (addr, task) = serve_webhooks(loopback(), echo_len(), &limits)
        .await
        .unwrap();
    // Declares 100 bytes, sends 10, then nothing (the connection stays open).
    let started = Instant::now();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        b"POST /webhooks/notices/ns/pair HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut answer))
        .await
        .expect("the server answers a trickled body instead of waiting for it")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 300ms"), "{answer}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "not before the timeout"
    );
    // The only slot is free again.
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/webhooks/notices/ns/pair"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    task.abort();
}

#[tokio::test]
async fn webhook_requests_beyond_the_in_flight_limit_are_refused_at_once_not_queued() {
    // The handler holds its slot until released.
    let release = Arc::new(tokio::sync::Notify::new());
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel::<()>();
    let hold = {
        let release = release.clone();
        Router::new().route(
            "/webhooks/notices/{ns}/{pair}",
            post(move || {
                let release = release.clone();
                let entered_tx = entered_tx.clone();
                async move {
                    let _ = entered_tx.send(());
                    release.notified().await;
                    StatusCode::ACCEPTED
                }
            }),
        )
    };
    let limits = WebhookLimits::new(2, Duration::from_secs(5));
    let (addr, task) = serve_webhooks(loopback(), hold, &limits).await.unwrap();
    let url = format!("http://{addr}/webhooks/notices/ns/pair");
    let http = reqwest::Client::new();
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(http.post(&url).body("{}").send()))
        .collect();
    for _ in 0..2 {
        entered.recv().await.unwrap();
    }
    let started = Instant::now();
    let r = http.post(&url).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused at once, not after waiting for a slot: {:?}",
        started.elapsed()
    );
    release.notify_waiters();
    for h in held {
        assert_eq!(h.await.unwrap().unwrap().status(), 202);
    }
    task.abort();
}

/// Hundreds of concurrent webhook requests and slow connections, for about two seconds:
/// `/healthz` on the health listener answers every time, quickly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_flood_cannot_fail_health_checks() {
    // A webhook that takes its time, like one waiting on a busy pair worker.
    let slow_hook = Router::new().route(
        "/webhooks/notices/{ns}/{pair}",
        post(|| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            StatusCode::ACCEPTED
        }),
    );
    let listeners = Listeners {
        webhook: loopback(),
        health: loopback(),
        limits: WebhookLimits::new(8, Duration::from_millis(500)),
    };
    let served = serve_operator(&listeners, Readiness::default(), slow_hook)
        .await
        .unwrap();
    let url = format!("http://{}/webhooks/notices/ns/pair", served.webhook);
    let flood_until = Instant::now() + Duration::from_secs(2);
    let (accepted, refused, failed) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut flood = Vec::new();
    for _ in 0..64 {
        let (url, accepted, refused, failed) = (
            url.clone(),
            accepted.clone(),
            refused.clone(),
            failed.clone(),
        );
        flood.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            while Instant::now() < flood_until {
                match http.post(&url).body("{}").send().await {
                    Ok(r) if r.status() == 202 => accepted.fetch_add(1, Ordering::Relaxed),
                    Ok(r) if r.status() == 503 => refused.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    // Connections that send half a header and then nothing.
    let webhook = served.webhook;
    for _ in 0..64 {
        flood.push(tokio::spawn(async move {
            while Instant::now() < flood_until {
                if let Ok(mut s) = TcpStream::connect(webhook).await {
                    let _ = s
                        .write_all(b"POST /webhooks/notices/ns/pair HTTP/1.1\r\nho")
                        .await;
                    let mut buf = [0u8; 64];
                    let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
                }
            }
        }));
    }
    let health = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut slowest = Duration::ZERO;
    let mut probes = 0;
    while Instant::now() < flood_until {
        let t = Instant::now();
        let r = health
            .get(format!("http://{}/healthz", served.health))
            .send()
            .await
            .expect("/healthz answers during the flood");
        assert_eq!(r.status(), 200);
        slowest = slowest.max(t.elapsed());
        probes += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for t in flood {
        t.await.unwrap();
    }
    let (accepted, refused) = (
        accepted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    assert!(probes >= 10, "{probes} health probes");
    assert!(
        slowest < Duration::from_millis(500),
        "slowest /healthz during the flood: {slowest:?}"
    );
    assert!(accepted > 0, "the webhook still served within its bounds");
    assert!(refused > 0, "excess webhook load was refused with 503");
    served.tasks.iter().for_each(|t| t.abort());
}
