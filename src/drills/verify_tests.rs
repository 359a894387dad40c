use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::*;
use crate::drills::recheck::AtRest;
use crate::model::{AccountState, Entity, EntityKind};
use crate::provider::sim::{FailureMode, Faults, Payload, SimProvider, SimStore};

fn key(s: &str) -> EntityKey {
    s.parse().unwrap()
}

fn member(i: usize) -> EntityKey {
    EntityKey::new(EntityKind::Member, &format!("u{i:07}")).unwrap()
}

fn payload(i: usize, version: u32) -> serde_json::Value {
    json!({"name": format!("成员{i}"), "mobile": format!("138{i:08}"), "version": version})
}

/// Two sim accounts with the same `n` members (shared payloads).
fn pair(n: usize) -> (SimStore, Arc<SimProvider>, Arc<SimProvider>) {
    let store = SimStore::new();
    let p = SimProvider::new(store.clone(), "corp-a");
    let s = SimProvider::new(store.clone(), "corp-b");
    let ops: Vec<_> = (0..n)
        .map(|i| (member(i), Some(Payload::new(payload(i, 1)).unwrap())))
        .collect();
    p.account().apply_batch(ops.clone(), None);
    s.account().apply_batch(ops, Some("understudy"));
    (store, Arc::new(p), Arc::new(s))
}

fn opts(page: usize) -> VerifyOptions {
    VerifyOptions {
        page_size: page,
        ..Default::default()
    }
}

async fn put(p: &SimProvider, k: EntityKey, v: serde_json::Value) {
    p.put_entity(&Entity::new(k, v), None).await.unwrap();
}

#[tokio::test]
async fn a_clean_pair_matches_entirely() {
    let (_st, p, s) = pair(12_345);
    let out = verify_accounts(p, s, &AtRest, &opts(1_000)).await.unwrap();
    assert_eq!(out.tally.primary, 12_345);
    assert_eq!(out.tally.standby, 12_345);
    assert_eq!(out.tally.matched, 12_345);
    assert!(out.is_clean());
    assert!(out.settled);
    assert!(out.samples.is_empty());
    assert_eq!(out.rechecked, 0);
    let st = out.status();
    assert_eq!(st.matched, 12_345);
    assert_eq!(
        st.missing_on_standby + st.extra_on_standby + st.mismatched,
        0
    );
}

#[tokio::test]
async fn empty_accounts_match() {
    let (_st, p, s) = pair(0);
    let out = verify_accounts(p, s, &AtRest, &opts(10)).await.unwrap();
    assert_eq!(out.tally, Tally::default());
    assert!(out.is_clean());
}

#[tokio::test]
async fn divergence_is_found_with_exact_counts_and_keys() {
    let (_st, p, s) = pair(5_000);
    s.delete_entity(&member(10), None).await.unwrap();
    s.delete_entity(&member(4_999), None).await.unwrap();
    put(&s, key("tag/t-extra"), json!({"name": "多余"})).await;
    put(&s, member(2_500), payload(2_500, 2)).await;
    let out = verify_accounts(p, s, &AtRest, &opts(700)).await.unwrap();
    let t = out.tally;
    assert_eq!(t.primary, 5_000);
    assert_eq!(t.standby, 4_999);
    assert_eq!(t.matched, 4_997);
    assert_eq!(t.missing_on_standby, 2);
    assert_eq!(t.extra_on_standby, 1);
    assert_eq!(t.mismatched, 1);
    assert_eq!(out.rechecked, 4);
    assert!(out.settled);
    assert_eq!(out.samples.len(), 4);
    assert!(
        out.samples[0].starts_with("member/u0000010: missing on standby"),
        "{:?}",
        out.samples
    );
    assert!(
        out.samples[1].starts_with("member/u0002500: fields differ: version"),
        "{:?}",
        out.samples
    );
    assert!(
        out.samples[2].starts_with("member/u0004999: missing on standby"),
        "{:?}",
        out.samples
    );
    assert!(
        out.samples[3].starts_with("tag/t-extra: only on standby"),
        "{:?}",
        out.samples
    );
}

/// A settle hook that plays replication catching up: it applies the primary's state of
/// the given keys to the standby.
struct CatchUp {
    primary: Arc<SimProvider>,
    standby: Arc<SimProvider>,
    keys: Vec<EntityKey>,
    called: Mutex<u32>,
}

#[async_trait]
impl Settle for CatchUp {
    async fn settle(&self) -> bool {
        *self.called.lock().unwrap() += 1;
        for k in &self.keys {
            let page = self.primary.list_entities(None, 10_000).await.unwrap();
            match page.entities.into_iter().find(|e| &e.key == k) {
                Some(e) => self
                    .standby
                    .put_entity(&e, Some("understudy"))
                    .await
                    .unwrap(),
                None => self
                    .standby
                    .delete_entity(k, Some("understudy"))
                    .await
                    .unwrap(),
            }
        }
        true
    }
}

#[tokio::test]
async fn changes_in_flight_are_not_reported_as_loss() {
    let (_st, p, s) = pair(2_000);
    // The primary changed, deleted and created entities the sink has not applied yet.
    put(&p, member(7), payload(7, 2)).await;
    p.delete_entity(&member(8), None).await.unwrap();
    put(&p, key("menu/m-new"), json!({"name": "新菜单"})).await;
    let settle = CatchUp {
        primary: p.clone(),
        standby: s.clone(),
        keys: vec![member(7), member(8), key("menu/m-new")],
        called: Mutex::new(0),
    };
    let out = verify_accounts(p, s, &settle, &opts(300)).await.unwrap();
    assert_eq!(*settle.called.lock().unwrap(), 1);
    assert_eq!(out.first_pass.differences(), 3);
    assert_eq!(out.first_pass.mismatched, 1);
    assert_eq!(out.first_pass.extra_on_standby, 1);
    assert_eq!(out.first_pass.missing_on_standby, 1);
    assert!(out.is_clean(), "{:?}", out.tally);
    assert_eq!(out.tally.matched, 2_000);
    assert_eq!(out.tally.primary, 2_000);
    assert_eq!(out.tally.standby, 2_000);
    assert_eq!(out.rechecked, 3);
    assert!(out.settled);
    assert!(out.samples.is_empty());
}

struct NeverSettles;

#[async_trait]
impl Settle for NeverSettles {
    async fn settle(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn unsettled_differences_stay_and_say_so() {
    let (_st, p, s) = pair(100);
    s.delete_entity(&member(3), None).await.unwrap();
    let out = verify_accounts(p, s, &NeverSettles, &opts(10))
        .await
        .unwrap();
    assert!(!out.settled);
    assert_eq!(out.tally.missing_on_standby, 1);
    assert!(!out.status().settled);
}

#[tokio::test]
async fn too_many_differences_are_reported_unchecked() {
    let (_st, p, _s) = pair(50);
    let empty = Arc::new(SimProvider::new(p.store().clone(), "corp-empty"));
    let o = VerifyOptions {
        page_size: 7,
        max_samples: 3,
        max_recheck: 20,
    };
    let out = verify_accounts(p, empty, &AtRest, &o).await.unwrap();
    assert!(out.too_many_to_recheck);
    assert!(!out.settled);
    assert_eq!(out.rechecked, 0);
    assert_eq!(out.tally.missing_on_standby, 50);
    assert_eq!(out.samples.len(), 3);
}

#[tokio::test]
async fn many_adjacent_differences_are_rechecked_in_few_calls() {
    let (_st, p, _s) = pair(3_000);
    let empty = Arc::new(SimProvider::new(p.store().clone(), "corp-empty"));
    let out = verify_accounts(p, empty, &AtRest, &opts(1_000))
        .await
        .unwrap();
    assert_eq!(out.rechecked, 3_000);
    assert_eq!(out.tally.missing_on_standby, 3_000);
    assert!(out.settled);
    assert_eq!(out.samples.len(), 20);
}

#[tokio::test]
async fn a_frozen_account_fails_the_verification() {
    let (_st, p, s) = pair(10);
    s.account().set_status(AccountState::Frozen, "test");
    let e = verify_accounts(p, s, &AtRest, &opts(3)).await.unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::Provider {
                side: "standby",
                source: ProviderError::AccountFrozen { .. }
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn transient_errors_are_retried() {
    let (_st, p, s) = pair(2_000);
    p.account().set_faults(Faults {
        failure: FailureMode::ServerError,
        rate: 0.3,
        seed: 7,
        ..Default::default()
    });
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        verify_accounts(p, s, &AtRest, &opts(100)),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out.tally.matched, 2_000);
}
