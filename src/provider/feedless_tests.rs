//! `SyntheticFeed` over the simulator's in-process provider, whose store the tests
//! change behind the feed's back (as a corp's own users and admins do).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::*;
use crate::model::EntityKey;
use crate::provider::sim::store::Payload;
use crate::provider::sim::{SimProvider, SimStore};

fn key(k: &str) -> EntityKey {
    k.to_string().try_into().unwrap()
}

fn write(store: &SimStore, k: &str, v: Option<serde_json::Value>) {
    let payload = v.map(|v| Payload::new(v).unwrap());
    store
        .account("corp")
        .apply_batch(vec![(key(k), payload)], None);
}

async fn seeded() -> (SimStore, Arc<SyntheticFeed<SimProvider>>, String) {
    let store = SimStore::new();
    write(&store, "member/a", Some(json!({"name": "甲"})));
    write(&store, "member/b", Some(json!({"name": "乙"})));
    write(&store, "tag/1", Some(json!({"tagname": "VIP客户"})));
    let feed = SyntheticFeed::new(SimProvider::new(store.clone(), "corp"), 100);
    let head = feed.head_cursor().await.unwrap();
    (store, feed, head)
}

fn ops(batch: &ChangeBatch) -> Vec<(String, bool)> {
    batch
        .changes
        .iter()
        .map(|c| (c.key.to_string(), matches!(c.op, ChangeOp::Upsert { .. })))
        .collect()
}

#[tokio::test]
async fn what_a_lost_callback_missed_the_next_scan_records() {
    let (store, feed, head) = seeded().await;
    write(&store, "member/a", Some(json!({"name": "甲二"})));
    write(&store, "member/c", Some(json!({"name": "丙"})));
    write(&store, "member/b", None);
    // No callback came: nothing yet.
    let none = feed
        .changes(Some(&head), 100, Duration::ZERO)
        .await
        .unwrap();
    assert!(none.changes.is_empty());

    let report = feed.scan().await.unwrap();
    assert_eq!((report.listed, report.upserts, report.deletes), (3, 2, 1));
    let batch = feed
        .changes(Some(&head), 100, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        ops(&batch),
        [
            ("member/a".to_string(), true),
            ("member/c".to_string(), true),
            ("member/b".to_string(), false)
        ]
    );
    match &batch.changes[0].op {
        ChangeOp::Upsert { payload } => assert_eq!(payload["name"], "甲二"),
        other => panic!("{other:?}"),
    }
    // Nothing more changed: the next scan records nothing.
    assert_eq!(feed.scan().await.unwrap().upserts, 0);
    let after = feed
        .changes(Some(&batch.cursor), 100, Duration::ZERO)
        .await
        .unwrap();
    assert!(after.changes.is_empty());
    assert_eq!(after.remaining, 0);
}

#[tokio::test]
async fn repeated_and_late_hints_record_each_state_once() {
    let (store, feed, head) = seeded().await;
    write(&store, "member/a", Some(json!({"name": "甲二"})));
    assert_eq!(feed.hint(&[key("member/a")]).await.unwrap(), 1);
    // The same callback delivered twice, and a late one for a state already recorded.
    assert_eq!(feed.hint(&[key("member/a")]).await.unwrap(), 0);
    write(&store, "member/a", None);
    assert_eq!(
        feed.hint(&[key("member/a"), key("member/a")])
            .await
            .unwrap(),
        1
    );
    // A hint for an entity that never existed records nothing.
    assert_eq!(feed.hint(&[key("member/zz")]).await.unwrap(), 0);
    // And the scan agrees with what the hints recorded.
    assert_eq!(
        feed.scan().await.unwrap(),
        ScanReport {
            listed: 2,
            upserts: 0,
            deletes: 0
        }
    );
    let batch = feed
        .changes(Some(&head), 100, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        ops(&batch),
        [
            ("member/a".to_string(), true),
            ("member/a".to_string(), false)
        ]
    );
}

#[tokio::test]
async fn a_cursor_from_before_a_restart_or_past_retention_is_expired() {
    let (store, feed, head) = seeded().await;
    // Another feed over the same account: what an operator restart makes.
    let restarted = SyntheticFeed::new(SimProvider::new(store.clone(), "corp"), 2);
    assert!(matches!(
        restarted.changes(Some(&head), 10, Duration::ZERO).await,
        Err(ProviderError::CursorExpired(_))
    ));
    let head2 = restarted.head_cursor().await.unwrap();
    for i in 0..4 {
        write(&store, "member/a", Some(json!({"name": format!("v{i}")})));
        restarted.hint(&[key("member/a")]).await.unwrap();
    }
    assert!(matches!(
        restarted.changes(Some(&head2), 10, Duration::ZERO).await,
        Err(ProviderError::CursorExpired(_))
    ));
    // The original feed still serves its own cursor.
    assert!(feed.changes(Some(&head), 10, Duration::ZERO).await.is_ok());
}

#[tokio::test]
async fn a_long_poll_answers_when_a_hint_records_a_change() {
    let (store, feed, head) = seeded().await;
    let reader = {
        let feed = feed.clone();
        tokio::spawn(async move { feed.changes(Some(&head), 10, Duration::from_secs(30)).await })
    };
    tokio::task::yield_now().await;
    write(&store, "tag/1", Some(json!({"tagname": "VIP客户二"})));
    feed.hint(&[key("tag/1")]).await.unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the long poll answered before its 30 s wait")
        .unwrap()
        .unwrap();
    assert_eq!(ops(&batch), [("tag/1".to_string(), true)]);
}

/// A provider whose listing is older than its entity reads: what a scan sees when the
/// account changes while it lists.
struct StaleListing {
    inner: SimProvider,
    listing: SimProvider,
}

#[async_trait]
impl AccountProvider for StaleListing {
    fn account_id(&self) -> &str {
        self.inner.account_id()
    }
    async fn status(&self) -> Result<StatusReport, ProviderError> {
        self.inner.status().await
    }
    async fn list_entities(
        &self,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<EntityPage, ProviderError> {
        self.listing.list_entities(after, limit).await
    }
    async fn read_entity(&self, key: &EntityKey) -> Result<Option<Entity>, ProviderError> {
        self.inner.read_entity(key).await
    }
    async fn changes(
        &self,
        c: Option<&str>,
        l: usize,
        w: Duration,
    ) -> Result<ChangeBatch, ProviderError> {
        self.inner.changes(c, l, w).await
    }
    async fn head_cursor(&self) -> Result<String, ProviderError> {
        self.inner.head_cursor().await
    }
    async fn put_entity(&self, e: &Entity, o: Option<&str>) -> Result<(), ProviderError> {
        self.inner.put_entity(e, o).await
    }
    async fn delete_entity(&self, k: &EntityKey, o: Option<&str>) -> Result<(), ProviderError> {
        self.inner.delete_entity(k, o).await
    }
    async fn probe(&self) -> Result<ProbeResult, ProviderError> {
        self.inner.probe().await
    }
    async fn activity(&self, s: &str) -> Result<Vec<ActivityEvent>, ProviderError> {
        self.inner.activity(s).await
    }
}

#[tokio::test]
async fn a_scan_never_records_an_older_state_than_a_hint_did() {
    let live = SimStore::new();
    let old = SimStore::new();
    for store in [&live, &old] {
        write(store, "member/a", Some(json!({"name": "甲"})));
    }
    let feed = SyntheticFeed::new(
        StaleListing {
            inner: SimProvider::new(live.clone(), "corp"),
            listing: SimProvider::new(old.clone(), "corp"),
        },
        100,
    );
    let head = feed.head_cursor().await.unwrap();
    // Created and renamed after the listing was taken; the callbacks' hints record them.
    write(&live, "member/new", Some(json!({"name": "新"})));
    write(&live, "member/a", Some(json!({"name": "甲二"})));
    assert_eq!(
        feed.hint(&[key("member/new"), key("member/a")])
            .await
            .unwrap(),
        2
    );
    // The scan's (older) listing lacks member/new and holds the old member/a: read
    // again, both are as the hints recorded, so nothing is recorded.
    assert_eq!(
        feed.scan().await.unwrap(),
        ScanReport {
            listed: 1,
            upserts: 0,
            deletes: 0
        }
    );
    let batch = feed
        .changes(Some(&head), 100, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        ops(&batch),
        [
            ("member/new".to_string(), true),
            ("member/a".to_string(), true)
        ]
    );
}

/// A fixed baseline (what a pair's compacted topic would say), or a failing one.
struct Fixed(Result<Option<BTreeMap<EntityKey, Digest>>, String>);

#[async_trait]
impl Baseline for Fixed {
    async fn read(&self) -> Result<Option<BTreeMap<EntityKey, Digest>>, String> {
        self.0.clone()
    }
}

#[tokio::test]
async fn what_changed_while_nobody_watched_is_on_the_feed_after_the_first_head() {
    let store = SimStore::new();
    // Replicated last: a (as now), b (deleted since), t (renamed since).
    let replicated: BTreeMap<EntityKey, Digest> = [
        ("member/a", json!({"name": "甲"})),
        ("member/b", json!({"name": "乙"})),
        ("tag/1", json!({"tagname": "VIP"})),
    ]
    .into_iter()
    .map(|(k, v)| (key(k), Digest::of_payload(&v)))
    .collect();
    write(&store, "member/a", Some(json!({"name": "甲"})));
    write(&store, "tag/1", Some(json!({"tagname": "VIP客户"})));
    write(&store, "member/c", Some(json!({"name": "丙"})));
    let feed = SyntheticFeed::with_baseline(
        SimProvider::new(store.clone(), "corp"),
        100,
        Some(Box::new(Fixed(Ok(Some(replicated))))),
    );
    let head = feed.head_cursor().await.unwrap();
    let batch = feed
        .changes(Some(&head), 100, Duration::ZERO)
        .await
        .unwrap();
    let mut got = ops(&batch);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("member/b".to_string(), false),
            ("member/c".to_string(), true),
            ("tag/1".to_string(), true),
        ],
        "the delete, the new member and the rename; member/a is unchanged"
    );
    // Once seeded, a later head starts after them.
    let later = feed.head_cursor().await.unwrap();
    assert!(
        feed.changes(Some(&later), 100, Duration::ZERO)
            .await
            .unwrap()
            .changes
            .is_empty()
    );
}

#[tokio::test]
async fn without_a_readable_baseline_the_feed_starts_from_the_account_as_it_is() {
    for baseline in [Fixed(Ok(None)), Fixed(Err("broker down".into()))] {
        let store = SimStore::new();
        write(&store, "member/a", Some(json!({"name": "甲"})));
        let feed = SyntheticFeed::with_baseline(
            SimProvider::new(store.clone(), "corp"),
            100,
            Some(Box::new(baseline)),
        );
        let head = feed.head_cursor().await.unwrap();
        let batch = feed
            .changes(Some(&head), 100, Duration::ZERO)
            .await
            .unwrap();
        assert!(batch.changes.is_empty(), "{:?}", ops(&batch));
        write(&store, "member/a", None);
        assert_eq!(feed.scan().await.unwrap().deletes, 1);
    }
}
