//! Unit tests of the store's semantics, through `SimProvider` where the trait is the
//! contract and through `SimAccount` where the admin side is.

use std::time::{Duration, Instant};

use serde_json::json;

use super::store::{MAX_LIMIT, Payload, REJECT_MARKER, SimStore};
use super::{FailureMode, Faults, SimProvider};
use crate::model::{AccountState, ChangeOp, Digest, Entity, EntityKey, EntityKind};
use crate::provider::{AccountProvider, ActivityEvent, ProviderError};

fn key(kind: EntityKind, id: &str) -> EntityKey {
    EntityKey::new(kind, id).unwrap()
}

fn ent(kind: EntityKind, id: &str, v: serde_json::Value) -> Entity {
    Entity::new(key(kind, id), v)
}

#[tokio::test]
async fn entities_page_in_key_order() {
    let p = SimProvider::new(SimStore::new(), "corp-a");
    // Inserted out of order, across kinds whose names sort differently from the enum.
    for (kind, id) in [
        (EntityKind::Menu, "m1"),
        (EntityKind::Member, "u2"),
        (EntityKind::AutoReply, "r1"),
        (EntityKind::Member, "u1"),
        (EntityKind::Tag, "t1"),
    ] {
        p.put_entity(&ent(kind, id, json!({"id": id})), None)
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut after: Option<EntityKey> = None;
    loop {
        let page = p.list_entities(after.as_ref(), 2).await.unwrap();
        assert!(page.entities.len() <= 2);
        seen.extend(page.entities.iter().map(|e| e.key.to_string()));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "auto-reply/r1",
            "member/u1",
            "member/u2",
            "menu/m1",
            "tag/t1"
        ]
    );
    // The digest served is the model's digest of the payload.
    let page = p.list_entities(None, 1).await.unwrap();
    assert_eq!(
        page.entities[0].digest,
        Digest::of_payload(&page.entities[0].payload)
    );
    // Exact fit: a page ending on the last key says there is nothing next.
    let page = p.list_entities(None, 5).await.unwrap();
    assert_eq!(page.entities.len(), 5);
    assert_eq!(page.next, None);
}

#[tokio::test]
async fn feed_cursors_equal_puts_and_missing_deletes() {
    let p = SimProvider::new(SimStore::new(), "corp-a");
    assert_eq!(p.head_cursor().await.unwrap(), "0");
    let a = ent(EntityKind::Tag, "t1", json!({"name": "VIP", "n": 1}));
    p.put_entity(&a, Some("understudy:standby")).await.unwrap();
    // Same payload, different key order in the source text: no change recorded.
    let same: serde_json::Value = serde_json::from_str(r#"{"n":1,"name":"VIP"}"#).unwrap();
    p.put_entity(&ent(EntityKind::Tag, "t1", same), None)
        .await
        .unwrap();
    p.put_entity(
        &ent(EntityKind::Tag, "t1", json!({"name": "VIP", "n": 2})),
        None,
    )
    .await
    .unwrap();
    p.delete_entity(&key(EntityKind::Tag, "nope"), None)
        .await
        .unwrap();
    p.delete_entity(&key(EntityKind::Tag, "t1"), None)
        .await
        .unwrap();
    p.delete_entity(&key(EntityKind::Tag, "t1"), None)
        .await
        .unwrap();
    assert_eq!(p.head_cursor().await.unwrap(), "3");

    let b = p.changes(None, 2, Duration::ZERO).await.unwrap();
    assert_eq!(b.changes.len(), 2);
    assert_eq!(b.changes[0].seq, 1);
    assert_eq!(b.changes[0].origin.as_deref(), Some("understudy:standby"));
    assert_eq!(b.changes[1].origin, None);
    assert_eq!(b.cursor, "2");
    assert_eq!(b.remaining, 1);
    let c = p
        .changes(Some(&b.cursor), 100, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(c.changes.len(), 1);
    assert_eq!(c.changes[0].op, ChangeOp::Delete);
    assert_eq!(c.cursor, "3");
    assert_eq!(c.remaining, 0);
    // At the head: empty batch, cursor unchanged.
    let d = p.changes(Some("3"), 100, Duration::ZERO).await.unwrap();
    assert!(d.changes.is_empty());
    assert_eq!(d.cursor, "3");
    // From "0" is from the start.
    assert_eq!(
        p.changes(Some("0"), 10, Duration::ZERO)
            .await
            .unwrap()
            .changes
            .len(),
        3
    );
    // A cursor ahead of the head or malformed is expired, never silently accepted.
    for bad in ["9", "x", "-1"] {
        assert!(matches!(
            p.changes(Some(bad), 10, Duration::ZERO).await,
            Err(ProviderError::CursorExpired(_))
        ));
    }
}

#[tokio::test]
async fn retention_expires_old_cursors() {
    let store = SimStore::with_retention(3);
    let p = SimProvider::new(store, "corp-a");
    for i in 0..5 {
        p.put_entity(
            &ent(EntityKind::Member, &format!("u{i}"), json!({"i": i})),
            None,
        )
        .await
        .unwrap();
    }
    // Seqs 3..=5 retained: cursor 2 still works, cursor 1 does not.
    let b = p.changes(Some("2"), 10, Duration::ZERO).await.unwrap();
    assert_eq!(
        b.changes.iter().map(|c| c.seq).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    let err = p.changes(Some("1"), 10, Duration::ZERO).await.unwrap_err();
    assert_eq!(err.code(), "cursor_expired");
    // No cursor: from the oldest retained.
    let b = p.changes(None, 10, Duration::ZERO).await.unwrap();
    assert_eq!(b.changes[0].seq, 3);
}

#[tokio::test]
async fn long_poll_wakes_on_a_change() {
    let store = SimStore::new();
    let p = SimProvider::new(store.clone(), "corp-a");
    let writer = SimProvider::new(store, "corp-a");
    let started = Instant::now();
    let poll = tokio::spawn(async move { p.changes(Some("0"), 10, Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    writer
        .put_entity(
            &ent(EntityKind::Group, "g1", json!({"name": "客服群"})),
            None,
        )
        .await
        .unwrap();
    let b = poll.await.unwrap().unwrap();
    assert_eq!(b.changes.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(5), "woke early");
}

#[tokio::test]
async fn long_poll_times_out_empty_and_wakes_on_freeze() {
    let store = SimStore::new();
    let p = SimProvider::new(store.clone(), "corp-a");
    let started = Instant::now();
    let b = p
        .changes(None, 10, Duration::from_millis(100))
        .await
        .unwrap();
    assert!(b.changes.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(100));

    let acct = store.account("corp-a");
    let poll = tokio::spawn(async move { p.changes(None, 10, Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    acct.set_status(AccountState::Frozen, "content report");
    let err = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, ProviderError::AccountFrozen { .. }));
}

#[tokio::test]
async fn frozen_and_banned_answer_status_only() {
    let p = SimProvider::new(SimStore::new(), "corp-a");
    let e = ent(EntityKind::Setting, "s1", json!({"k": "v"}));
    p.put_entity(&e, None).await.unwrap();
    p.account()
        .set_status(AccountState::Frozen, "abnormal logins");
    let st = p.status().await.unwrap();
    assert_eq!(st.status, AccountState::Frozen);
    assert_eq!(st.reason, "abnormal logins");
    assert!(st.since.is_some());
    let frozen = |r: Result<(), ProviderError>| {
        assert!(
            matches!(r, Err(ProviderError::AccountFrozen { ref reason }) if reason == "abnormal logins"),
            "{r:?}"
        )
    };
    frozen(p.put_entity(&e, None).await);
    frozen(p.delete_entity(&e.key, None).await);
    frozen(p.list_entities(None, 10).await.map(|_| ()));
    frozen(p.changes(None, 10, Duration::ZERO).await.map(|_| ()));
    frozen(p.head_cursor().await.map(|_| ()));
    frozen(p.probe().await.map(|_| ()));
    frozen(p.activity("2020-01-01T00:00:00Z").await.map(|_| ()));

    p.account().set_status(AccountState::Banned, "fraud");
    assert!(matches!(
        p.put_entity(&e, None).await,
        Err(ProviderError::AccountBanned { .. })
    ));
    p.account()
        .set_status(AccountState::Active, "appeal granted");
    p.put_entity(&e, None).await.unwrap();
    assert!(p.probe().await.unwrap().ok);
}

#[tokio::test]
async fn invalid_payloads_are_rejected() {
    let p = SimProvider::new(SimStore::new(), "corp-a");
    for bad in [
        json!([1, 2]),
        json!({REJECT_MARKER: true}),
        json!({"x": "y".repeat(300_000)}),
    ] {
        let r = p
            .put_entity(&ent(EntityKind::Content, "c1", bad), None)
            .await;
        assert!(matches!(r, Err(ProviderError::Rejected(_))), "{r:?}");
    }
    assert_eq!(p.head_cursor().await.unwrap(), "0");
}

#[tokio::test]
async fn faults_fail_deterministically_and_add_latency() {
    let store = SimStore::new();
    let p = SimProvider::new(store.clone(), "corp-a");
    let faults = Faults {
        failure: FailureMode::ServerError,
        rate: 0.5,
        seed: 7,
        ..Faults::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        p.account().set_faults(faults.clone());
        let mut outcomes = Vec::new();
        for _ in 0..64 {
            outcomes.push(p.status().await.is_ok());
        }
        runs.push(outcomes);
    }
    assert_eq!(runs[0], runs[1], "same seed, same failures");
    let failures = runs[0].iter().filter(|ok| !**ok).count();
    assert!((16..=48).contains(&failures), "{failures}");
    assert!(matches!(
        {
            p.account().set_faults(Faults {
                failure: FailureMode::ServerError,
                rate: 1.0,
                ..Faults::default()
            });
            p.status().await
        },
        Err(ProviderError::Unavailable(_))
    ));
    p.account().set_faults(Faults {
        failure: FailureMode::RateLimit,
        rate: 1.0,
        ..Faults::default()
    });
    assert!(matches!(
        p.probe().await,
        Err(ProviderError::RateLimited { .. })
    ));
    p.account().set_faults(Faults {
        failure: FailureMode::Timeout,
        rate: 1.0,
        hang_ms: 20,
        ..Faults::default()
    });
    assert!(matches!(
        p.head_cursor().await,
        Err(ProviderError::Unavailable(_))
    ));
    p.account().set_faults(Faults {
        latency_ms: 30,
        ..Faults::default()
    });
    let started = Instant::now();
    let probe = p.probe().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert!(probe.latency_ms >= 30);
}

#[tokio::test]
async fn activity_filters_by_time() {
    let p = SimProvider::new(SimStore::new(), "corp-a");
    p.account()
        .record_activity(vec![
            ActivityEvent::MemberAdd {
                at: "2026-01-01T10:00:00Z".into(),
                count: 60,
            },
            ActivityEvent::Login {
                at: "2026-01-01T09:00:00Z".into(),
                device: "iPhone 15".into(),
                location: "深圳".into(),
            },
            ActivityEvent::Message {
                at: "2026-01-01T11:00:00Z".into(),
                moderation_hits: 12,
            },
        ])
        .unwrap();
    let got = p.activity("2026-01-01T09:30:00Z").await.unwrap();
    assert_eq!(got.len(), 2);
    assert!(matches!(got[0], ActivityEvent::MemberAdd { count: 60, .. }));
    assert!(p.activity("yesterday").await.is_err());
    assert!(
        p.account()
            .record_activity(vec![ActivityEvent::MemberAdd {
                at: "bad".into(),
                count: 1
            }])
            .is_err()
    );
    let v = serde_json::to_value(&got[1]).unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["moderationHits"], 12);
}

#[tokio::test]
async fn batches_and_limits() {
    let store = SimStore::new();
    let acct = store.account("corp-a");
    let ops: Vec<_> = (0..12_000)
        .map(|i| {
            (
                key(EntityKind::Member, &format!("u{i:05}")),
                Some(Payload::new(json!({"i": i})).unwrap()),
            )
        })
        .collect();
    assert_eq!(acct.apply_batch(ops, None), 12_000);
    let p = SimProvider::new(store.clone(), "corp-a");
    let b = p.changes(None, 50_000, Duration::ZERO).await.unwrap();
    assert_eq!(b.changes.len(), MAX_LIMIT);
    assert_eq!(b.remaining, 2_000);
    let page = p.list_entities(None, 50_000).await.unwrap();
    assert_eq!(page.entities.len(), MAX_LIMIT);
    assert!(page.next.is_some());
    assert_eq!(store.account_ids(), ["corp-a"]);
}
