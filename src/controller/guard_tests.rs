use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;

use super::*;
use crate::model::{EntityKey, EntityKind};
use crate::provider::sim::{SimProvider, SimStore};

fn key(id: &str) -> EntityKey {
    EntityKey::new(EntityKind::Member, id).unwrap()
}

/// A guard that allows while `held` is true.
fn guard() -> (WriteGuard, Arc<AtomicBool>) {
    let held = Arc::new(AtomicBool::new(true));
    let h = held.clone();
    (
        WriteGuard::new("ns/p", move || h.load(Ordering::Acquire)),
        held,
    )
}

#[tokio::test]
async fn no_provider_write_is_sent_once_the_lease_is_not_held_and_reads_still_work() {
    let store = SimStore::new();
    let raw = Arc::new(SimProvider::new(store.clone(), "corp-b"));
    let (g, held) = guard();
    let p = g.provider(raw.clone());
    p.put_entity(&Entity::new(key("u1"), json!({"n": 1})), None)
        .await
        .unwrap();
    held.store(false, Ordering::Release);
    // Each of the three writes is refused before anything reaches the account.
    let put = p
        .put_entity(&Entity::new(key("u2"), json!({"n": 2})), None)
        .await
        .unwrap_err();
    assert!(put.to_string().contains(NOT_HOLDER), "{put}");
    assert!(
        put.is_transient(),
        "the sink retries, then its pair is stopped"
    );
    p.delete_entity(&key("u1"), None).await.unwrap_err();
    let batch = [
        EntityWrite::Put(Entity::new(key("u3"), json!({"n": 3}))),
        EntityWrite::Delete(key("u1")),
    ];
    p.apply_batch(&batch, None).await.unwrap_err();
    let keys: Vec<String> = raw
        .list_entities(None, 10)
        .await
        .unwrap()
        .entities
        .iter()
        .map(|e| e.key.to_string())
        .collect();
    assert_eq!(
        keys,
        ["member/u1"],
        "a write went through without the Lease"
    );
    // Reads are not guarded (detection and drills read either side).
    assert_eq!(p.list_entities(None, 10).await.unwrap().entities.len(), 1);
    p.status().await.unwrap();
    // Held again (the shard taken back): writes go through.
    held.store(true, Ordering::Release);
    p.apply_batch(&batch, None).await.unwrap();
    assert_eq!(raw.list_entities(None, 10).await.unwrap().entities.len(), 1);
}

/// A target that counts the moves that reach it.
#[derive(Default)]
struct Counting {
    moves: std::sync::atomic::AtomicU32,
}

#[async_trait]
impl TrafficTarget for Counting {
    fn describe(&self) -> String {
        "dns api.example.com. A".into()
    }
    async fn observe(&self) -> Result<TargetState, TrafficError> {
        Ok(TargetState::On {
            side: Side::Primary,
            holds: "10.1.0.1".into(),
        })
    }
    async fn ensure_side(&self, _from: Side, _to: Side) -> Result<Moved, TrafficError> {
        self.moves.fetch_add(1, Ordering::AcqRel);
        Ok(Moved::Changed)
    }
    async fn verify_side(&self, _side: Side, _within: Duration) -> Result<(), TrafficError> {
        Ok(())
    }
}

#[tokio::test]
async fn no_traffic_move_is_sent_once_the_lease_is_not_held() {
    let inner = Arc::new(Counting::default());
    let (g, held) = guard();
    let t = g.target(inner.clone());
    t.ensure_side(Side::Primary, Side::Standby).await.unwrap();
    held.store(false, Ordering::Release);
    for r in [
        t.ensure_side(Side::Standby, Side::Primary).await,
        t.resume_side(Side::Standby, Side::Primary).await,
    ] {
        let e = r.unwrap_err();
        assert!(e.message().contains(NOT_HOLDER), "{e}");
        assert_eq!(
            e.to_string(),
            format!("dns api.example.com. A: {NOT_HOLDER}")
        );
    }
    assert_eq!(
        inner.moves.load(Ordering::Acquire),
        1,
        "a move reached the target"
    );
    // Reads and read-backs still reach it.
    assert_eq!(t.current_side().await.unwrap(), Some(Side::Primary));
    t.verify_side(Side::Primary, Duration::from_secs(1))
        .await
        .unwrap();
}

/// The provider's client retries a failed attempt by itself (a 503, or a request that
/// timed out while the process was stopped): the retry is not sent once the claim is gone.
#[tokio::test]
async fn a_write_the_client_retries_is_not_sent_again_once_the_lease_is_not_held() {
    use crate::provider::http::{HttpOptions, HttpProvider, RetryPolicy};
    let (g, held) = guard();
    let requests = Arc::new(std::sync::atomic::AtomicU32::new(0));
    // The first attempt reaches the provider, which answers 503 — and meanwhile the
    // claim lapses (as it does for a replica stopped while its request was in flight).
    let app = {
        let (requests, held) = (requests.clone(), held.clone());
        axum::Router::new().fallback(move || {
            let (requests, held) = (requests.clone(), held.clone());
            async move {
                requests.fetch_add(1, Ordering::AcqRel);
                held.store(false, Ordering::Release);
                (
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    [("content-type", "application/json")],
                    r#"{"error":{"code":"unavailable","message":"busy"}}"#,
                )
            }
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let options = HttpOptions {
        retry: RetryPolicy {
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
        ..HttpOptions::default()
    };
    let raw = HttpProvider::with_options(&format!("http://{addr}"), "corp-b", Some("t"), options)
        .unwrap();
    let p = g.provider(Arc::new(raw));
    let batch = [EntityWrite::Put(Entity::new(key("u1"), json!({"n": 1})))];
    let err = p.apply_batch(&batch, None).await.unwrap_err();
    assert!(err.to_string().contains(NOT_HOLDER), "{err}");
    assert_eq!(
        requests.load(Ordering::Acquire),
        1,
        "the client sent its retry after the claim was gone"
    );
    // Outside a guarded write the same client retries as before (3 attempts).
    held.store(true, Ordering::Release);
    let before = requests.load(Ordering::Acquire);
    let p2 = HttpProvider::with_options(
        &format!("http://{addr}"),
        "corp-b",
        Some("t"),
        HttpOptions {
            retry: RetryPolicy {
                min_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
                ..RetryPolicy::default()
            },
            ..HttpOptions::default()
        },
    )
    .unwrap();
    p2.status().await.unwrap_err();
    assert_eq!(requests.load(Ordering::Acquire) - before, 3);
}

/// What a source reads from the feed it sends to Kafka: once the claim is gone the feed
/// answers nothing, also to a long poll that was waiting when the claim lapsed.
#[tokio::test]
async fn the_feed_gives_no_changes_once_the_lease_is_not_held() {
    let store = SimStore::new();
    let raw = Arc::new(SimProvider::new(store.clone(), "corp-a"));
    let (g, held) = guard();
    let p = g.provider(raw.clone());
    let head = p.head_cursor().await.unwrap();
    let waiting = {
        let (p, head) = (p.clone(), head.clone());
        tokio::spawn(async move { p.changes(Some(&head), 100, Duration::from_secs(5)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    held.store(false, Ordering::Release);
    raw.put_entity(&Entity::new(key("u1"), json!({"n": 1})), None)
        .await
        .unwrap();
    let err = waiting.await.unwrap().unwrap_err();
    assert!(err.to_string().contains(NOT_HOLDER), "{err}");
    let err = p
        .changes(Some(&head), 100, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(err.to_string().contains(NOT_HOLDER), "{err}");
    // The change is there for whoever holds the pair.
    held.store(true, Ordering::Release);
    let batch = p.changes(Some(&head), 100, Duration::ZERO).await.unwrap();
    assert_eq!(batch.changes.len(), 1);
}
