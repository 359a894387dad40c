//! The trait's default methods (`apply_batch`, `list_digests`) against the simulator's
//! own answers, in process and over HTTP.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Sim, key};
use crate::model::{AccountState, Entity, EntityKey, EntityKind};
use crate::provider::sim::SimProvider;
use crate::provider::{AccountProvider, ActivityEvent, DigestPage, EntityPage, ProviderError};

/// Every required method delegated: exercises the trait's defaults (`apply_batch`,
/// `list_digests`).
struct OneByOne(SimProvider);

#[async_trait::async_trait]
impl AccountProvider for OneByOne {
    fn account_id(&self) -> &str {
        self.0.account_id()
    }
    async fn status(&self) -> Result<crate::provider::StatusReport, ProviderError> {
        self.0.status().await
    }
    async fn list_entities(
        &self,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<EntityPage, ProviderError> {
        self.0.list_entities(after, limit).await
    }
    async fn changes(
        &self,
        cursor: Option<&str>,
        limit: usize,
        wait: Duration,
    ) -> Result<crate::provider::ChangeBatch, ProviderError> {
        self.0.changes(cursor, limit, wait).await
    }
    async fn head_cursor(&self) -> Result<String, ProviderError> {
        self.0.head_cursor().await
    }
    async fn put_entity(&self, entity: &Entity, origin: Option<&str>) -> Result<(), ProviderError> {
        self.0.put_entity(entity, origin).await
    }
    async fn delete_entity(
        &self,
        key: &EntityKey,
        origin: Option<&str>,
    ) -> Result<(), ProviderError> {
        self.0.delete_entity(key, origin).await
    }
    async fn probe(&self) -> Result<crate::provider::ProbeResult, ProviderError> {
        self.0.probe().await
    }
    async fn activity(&self, since: &str) -> Result<Vec<ActivityEvent>, ProviderError> {
        self.0.activity(since).await
    }
}

/// The keys and digests of a `list_entities` page: what `list_digests` must answer.
fn digests_of(page: EntityPage) -> DigestPage {
    DigestPage {
        items: page
            .entities
            .into_iter()
            .map(|e| (e.key, e.digest))
            .collect(),
        next: page.next,
    }
}

#[tokio::test]
async fn digest_listings_match_list_entities_page_by_page() {
    let sim = Sim::start().await;
    let (st, v) = sim
        .admin(
            reqwest::Method::POST,
            "/admin/accounts/corp-a/seed",
            json!({"count": 250, "seed": 5}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let http = sim.provider("corp-a");
    let local = SimProvider::new(sim.store.clone(), "corp-a");
    let default = OneByOne(SimProvider::new(sim.store.clone(), "corp-a"));
    let providers: [&dyn AccountProvider; 3] = [&http, &local, &default];
    // A short last page (7, 100), a last page ending on the last key (125), one page
    // holding everything (250) and a page larger than the account (1000).
    for limit in [7, 100, 125, 250, 1_000] {
        let mut after: Option<EntityKey> = None;
        let mut total = 0;
        let mut pages = 0;
        loop {
            let want = digests_of(http.list_entities(after.as_ref(), limit).await.unwrap());
            for p in providers {
                let got = p.list_digests(after.as_ref(), limit).await.unwrap();
                assert_eq!(got, want, "limit {limit} after {after:?}");
            }
            total += want.items.len();
            pages += 1;
            match want.next {
                Some(n) => {
                    assert_eq!(want.items.len(), limit, "only the last page is short");
                    after = Some(n);
                }
                None => break,
            }
        }
        assert_eq!(total, 250, "limit {limit}");
        assert_eq!(pages, 250usize.div_ceil(limit), "limit {limit}");
    }

    // The wire form: keys and digests, no payloads; `fields=full` is the default.
    let get = reqwest::Method::GET;
    let path = "/v1/accounts/corp-a/entities?limit=3";
    let (st, digests) = sim
        .admin(get.clone(), &format!("{path}&fields=digest"), json!({}))
        .await;
    assert_eq!(st, 200, "{digests}");
    let (_, full) = sim.admin(get.clone(), path, json!({})).await;
    let (_, explicit) = sim
        .admin(get.clone(), &format!("{path}&fields=full"), json!({}))
        .await;
    assert_eq!(full, explicit);
    assert_eq!(digests["next"], full["next"]);
    let items = digests["entities"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    for (d, f) in items.iter().zip(full["entities"].as_array().unwrap()) {
        assert_eq!(d, &json!({"key": f["key"], "digest": f["digest"]}));
    }

    // An unknown `fields` is refused, before the account is even looked up.
    for account in ["corp-a", "no-such-account"] {
        let (st, v) = sim
            .admin(
                get.clone(),
                &format!("/v1/accounts/{account}/entities?fields=payload"),
                json!({}),
            )
            .await;
        assert_eq!(st, 400, "{v}");
        assert_eq!(v["error"]["code"], "bad_request");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("fields must be"), "{message}");
    }

    // An empty account: one empty last page.
    sim.admin(reqwest::Method::PUT, "/admin/accounts/corp-e", json!({}))
        .await;
    let empty = sim.provider("corp-e");
    let local_empty = SimProvider::new(sim.store.clone(), "corp-e");
    for p in [&empty as &dyn AccountProvider, &local_empty] {
        assert_eq!(
            p.list_digests(None, 10).await.unwrap(),
            DigestPage::default()
        );
    }

    // A frozen account is typed as such.
    sim.store
        .account("corp-a")
        .set_status(AccountState::Frozen, "test");
    for p in providers {
        assert!(matches!(
            p.list_digests(None, 10).await,
            Err(ProviderError::AccountFrozen { .. })
        ));
    }
}

#[tokio::test]
async fn batches_agree_across_http_in_process_and_the_default() {
    use crate::provider::{EntityWrite, Rejection};
    let sim = Sim::start().await;
    for id in ["h", "l", "d"] {
        sim.admin(
            reqwest::Method::PUT,
            &format!("/admin/accounts/{id}"),
            json!({}),
        )
        .await;
    }
    let http = sim.provider("h");
    let local = SimProvider::new(sim.store.clone(), "l");
    let default = OneByOne(SimProvider::new(sim.store.clone(), "d"));
    let put = |id: &str, v: Value| EntityWrite::Put(Entity::new(key(EntityKind::Member, id), v));
    let writes = vec![
        put("u1", json!({"name": "王伟"})),
        put("u2", json!({"name": "李娜"})),
        put("u3", json!({"$invalid": "refused"})),
        put("u1", json!({"name": "王伟"})),
        EntityWrite::Delete(key(EntityKind::Member, "u2")),
        EntityWrite::Delete(key(EntityKind::Member, "missing")),
    ];
    let providers: [&dyn AccountProvider; 3] = [&http, &local, &default];
    let mut outcomes = Vec::new();
    let mut feeds = Vec::new();
    for p in providers {
        outcomes.push(p.apply_batch(&writes, Some("sink")).await.unwrap());
        let feed = p.changes(None, 100, Duration::ZERO).await.unwrap().changes;
        feeds.push(
            feed.into_iter()
                .map(|c| (c.seq, c.key, c.op, c.origin))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(outcomes[0].applied, 5);
    assert_eq!(
        outcomes[0].rejected,
        vec![Rejection {
            index: 2,
            key: "member/u3".into(),
            message: "the payload holds the \"$invalid\" marker".into()
        }]
    );
    assert_eq!(outcomes[0], outcomes[1]);
    assert_eq!(outcomes[0], outcomes[2]);
    assert_eq!(
        feeds[0].len(),
        3,
        "put u1, put u2, delete u2: {:?}",
        feeds[0]
    );
    assert_eq!(feeds[0], feeds[1]);
    assert_eq!(feeds[0], feeds[2]);

    // A bad key over the wire rejects only its own write.
    let (st, v) = sim
        .admin(
            reqwest::Method::POST,
            "/v1/accounts/h/writes",
            json!({"writes": [
                {"key": "nope/x", "op": "upsert", "payload": {}},
                {"key": "tag/t9", "op": "upsert"},
                {"key": "tag/t1", "op": "upsert", "payload": {"a": 1}}
            ]}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["applied"], 1);
    assert_eq!(v["rejected"].as_array().unwrap().len(), 2);

    // A frozen account refuses the whole batch.
    sim.store.account("h").set_status(AccountState::Frozen, "x");
    assert!(matches!(
        http.apply_batch(&writes, None).await,
        Err(ProviderError::AccountFrozen { .. })
    ));
    local.apply_batch(&writes, None).await.unwrap();
    sim.store.account("l").set_status(AccountState::Frozen, "x");
    assert!(matches!(
        local.apply_batch(&writes, None).await,
        Err(ProviderError::AccountFrozen { .. })
    ));
}
