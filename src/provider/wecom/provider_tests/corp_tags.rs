//! Customer-contact tag groups between two corps, and their callbacks.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::callbacks::receiver;
use super::*;
use crate::model::EntityKey;
use crate::provider::AccountProvider;

/// The corp-tag part of [`digests`] (each corp's root department is named after it).
async fn corp_tag_digests(p: &WecomProvider) -> BTreeMap<String, Digest> {
    let mut all = digests(p).await;
    all.retain(|k, _| k.starts_with("corp-tag/"));
    all
}

/// A tag group as the simulated corp stores it (with the ids WeCom assigns).
fn stored_group(id: &str, order: u64, tags: &[(&str, &str, u64)]) -> Value {
    json!({"group_id": id, "create_time": 1, "order": order,
        "tags": tags.iter().map(|(tid, n, o)| json!({"id": tid, "name": n, "order": o, "create_time": 1})).collect::<Vec<_>>()})
}

#[tokio::test]
async fn corp_tags_copy_by_name_and_each_corp_keeps_its_own_ids() {
    let sim = Sim::start().await;
    for corp in ["wwprimary", "wwstandby"] {
        sim.corp(corp, json!({"secret": "c", "externalContactSecret": "x"}))
            .await;
    }
    sim.seed(
        "wwprimary",
        &[
            (
                "corp-tag/客户等级",
                stored_group("etP1", 5, &[("etP11", "金卡", 1), ("etP12", "银卡", 2)]),
            ),
            (
                "corp-tag/来源%2F渠道",
                stored_group("etP2", 1, &[("etP21", "展会", 0)]),
            ),
        ],
    );
    let options = ClientOptions {
        api_base: Some(sim.base.clone()),
        limit: crate::provider::cgibin::Limit::Off,
        request_timeout: Duration::from_secs(5),
    };
    let with_tags = |corp: &str| {
        sim.provider(corp, "c", None)
            .with_customer_contact("x", &options)
            .unwrap()
    };
    let (primary, standby) = (with_tags("wwprimary"), with_tags("wwstandby"));
    let page = primary.list_entities(None, 100).await.unwrap();
    let writes: Vec<EntityWrite> = page
        .entities
        .into_iter()
        .filter(|e| e.key.as_str().starts_with("corp-tag/"))
        .map(EntityWrite::Put)
        .collect();
    assert_eq!(
        writes.len(),
        2,
        "both groups listed, the '/' in a name encoded"
    );
    let out = standby.apply_batch(&writes, None).await.unwrap();
    assert_eq!(out.applied, 2, "{:?}", out.rejected);
    assert_eq!(
        corp_tag_digests(&standby).await,
        corp_tag_digests(&primary).await
    );
    // The standby's ids are its own.
    let held = sim
        .store
        .account("wwstandby")
        .of_kind(crate::model::EntityKind::CorpTag)
        .unwrap();
    assert_eq!(held.len(), 2);
    assert!(held.iter().all(|(_, p)| !p.json.contains("etP")));

    // On the primary: a tag renamed, one removed, one added, the group reordered.
    sim.seed(
        "wwprimary",
        &[(
            "corp-tag/客户等级",
            stored_group("etP1", 9, &[("etP11", "白金卡", 1), ("etP13", "铜卡", 3)]),
        )],
    );
    let changed = primary
        .read_entity(&"corp-tag/客户等级".to_string().try_into().unwrap())
        .await
        .unwrap()
        .unwrap();
    standby.put_entity(&changed, None).await.unwrap();
    assert_eq!(
        corp_tag_digests(&standby).await,
        corp_tag_digests(&primary).await
    );

    // Deleted on the primary: deleted on the standby, and again is no error.
    let gone: EntityKey = "corp-tag/来源%2F渠道".to_string().try_into().unwrap();
    standby.delete_entity(&gone, None).await.unwrap();
    standby.delete_entity(&gone, None).await.unwrap();
    assert!(standby.read_entity(&gone).await.unwrap().is_none());

    // A corp given no customer-contact secret lists no corp tags and refuses to write one.
    let plain = sim.provider("wwstandby", "c", None);
    assert!(
        plain
            .list_entities(None, 100)
            .await
            .unwrap()
            .entities
            .iter()
            .all(|e| !e.key.as_str().starts_with("corp-tag/"))
    );
    match plain.put_entity(&changed, None).await {
        Err(ProviderError::Rejected(m)) => assert!(m.contains("客户联系"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_corp_tag_callback_reads_the_corps_tags_again() {
    use crate::model::EntityKind;
    use crate::provider::feedless::SyntheticFeed;
    use crate::provider::wecom::callback::receive;
    use crate::provider::wecom::crypto::CallbackCrypto;

    const AES: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    let (url, got) = receiver().await;
    let sim = Sim::start().await;
    sim.corp(
        "wwprimary",
        json!({"secret": "c", "externalContactSecret": "x",
            "callback": {"url": url, "token": "tok", "encodingAesKey": AES}}),
    )
    .await;
    let options = ClientOptions {
        api_base: Some(sim.base.clone()),
        limit: crate::provider::cgibin::Limit::Off,
        request_timeout: Duration::from_secs(5),
    };
    let feed = SyntheticFeed::new(
        sim.provider("wwprimary", "c", None)
            .with_customer_contact("x", &options)
            .unwrap(),
        100,
    );
    let head = feed.head_cursor().await.unwrap();
    sim.seed(
        "wwprimary",
        &[(
            "corp-tag/客户等级",
            stored_group("etP1", 1, &[("etP11", "金卡", 1)]),
        )],
    );
    let mut tries = 0;
    let (q, body) = loop {
        if let Some(first) = got.lock().unwrap().first().cloned() {
            break first;
        }
        tries += 1;
        assert!(tries < 200, "no change_external_tag callback in 5 s");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let crypto = CallbackCrypto::new("tok", AES, "wwprimary").unwrap();
    let received = receive(
        &crypto,
        &q["msg_signature"],
        &q["timestamp"],
        &q["nonce"],
        &body,
    )
    .unwrap();
    assert!(received.keys.is_empty());
    assert_eq!(received.kinds, [EntityKind::CorpTag]);
    assert_eq!(feed.hint_kind(EntityKind::CorpTag).await.unwrap(), 1);
    let batch = feed.changes(Some(&head), 10, Duration::ZERO).await.unwrap();
    assert_eq!(batch.changes[0].key.as_str(), "corp-tag/客户等级");
    // The group deleted: the next read of the kind records its delete.
    let key: EntityKey = "corp-tag/客户等级".to_string().try_into().unwrap();
    sim.store
        .account("wwprimary")
        .apply_batch(vec![(key, None)], None);
    assert_eq!(feed.hint_kind(EntityKind::CorpTag).await.unwrap(), 1);
}
