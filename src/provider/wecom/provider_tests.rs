//! `WecomProvider` against the simulator's WeCom API (which `e2e_wecom_sim` holds to
//! wechatpy), in process on 127.0.0.1:0.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::WecomProvider;
use crate::model::{AccountState, Digest, Entity, EntityKey};
use crate::provider::cgibin::Limit;
use crate::provider::cgibin::client::ClientOptions;
use crate::provider::sim::store::Payload;
use crate::provider::sim::{ServerConfig, SimStore, router};
use crate::provider::{AccountProvider, EntityWrite, ProviderError};

pub(super) struct Sim {
    base: String,
    store: SimStore,
}

impl Sim {
    async fn start() -> Sim {
        let store = SimStore::new();
        let app = router(store.clone(), ServerConfig::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Sim {
            base: format!("http://{addr}"),
            store,
        }
    }

    async fn corp(&self, corp: &str, config: Value) {
        let r = reqwest::Client::new()
            .put(format!("{}/admin/wecom/corps/{corp}", self.base))
            .json(&config)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    async fn admin(&self, path: &str) -> Value {
        reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_default()
    }

    fn provider(&self, corp: &str, secret: &str, limit: Option<u32>) -> WecomProvider {
        let options = ClientOptions {
            api_base: Some(self.base.clone()),
            limit: limit.map_or(Limit::Off, Limit::PerWindow),
            request_timeout: Duration::from_secs(5),
        };
        WecomProvider::new(corp, secret, &options).unwrap()
    }

    /// Writes entities straight into a corp, as its own administrators would.
    fn seed(&self, corp: &str, entities: &[(&str, Value)]) {
        let ops = entities
            .iter()
            .map(|(k, v)| {
                let key: EntityKey = k.to_string().try_into().unwrap();
                (key, Some(Payload::new(v.clone()).unwrap()))
            })
            .collect();
        self.store.account(corp).apply_batch(ops, Some("admin"));
    }
}

pub(super) async fn digests(p: &WecomProvider) -> BTreeMap<String, Digest> {
    let mut out = BTreeMap::new();
    let mut after = None;
    loop {
        let page = p.list_entities(after.as_ref(), 2).await.unwrap();
        for e in page.entities {
            out.insert(e.key.to_string(), e.digest);
        }
        match page.next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

pub(super) fn primary_contacts() -> Vec<(&'static str, Value)> {
    vec![
        (
            "department/1",
            json!({"name": "总部", "parentid": 0, "order": 100000000}),
        ),
        (
            "department/2",
            json!({"name": "市场二组", "parentid": 1, "order": 3}),
        ),
        // Lists before its parent (department/2): the standby gets a placeholder first.
        (
            "department/10",
            json!({"name": "🚀团队", "name_en": "Rocket", "parentid": 2, "order": 1}),
        ),
        (
            "member/zhang.san",
            json!({"name": "张三", "department": [10], "position": "经理", "mobile": "+86 13800000000"}),
        ),
        (
            "member/rtl",
            json!({"name": "مرحبا بالعالم", "department": [2, 10]}),
        ),
        (
            "tag/7",
            json!({"tagname": "VIP客户", "userlist": ["rtl", "zhang.san"], "partylist": [10]}),
        ),
    ]
}

#[tokio::test]
async fn a_corp_copied_through_the_provider_is_the_same_corp_record_by_record() {
    let sim = Sim::start().await;
    sim.corp("wwprimary", json!({"secret": "p"})).await;
    sim.corp("wwstandby", json!({"secret": "s"})).await;
    sim.seed("wwprimary", &primary_contacts());
    let primary = sim.provider("wwprimary", "p", None);
    let standby = sim.provider("wwstandby", "s", None);

    // A bootstrap: every entity of the primary, in key order, written to the standby.
    let mut writes = Vec::new();
    let mut after = None;
    loop {
        let page = primary.list_entities(after.as_ref(), 2).await.unwrap();
        writes.extend(page.entities.into_iter().map(EntityWrite::Put));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(writes.len(), 6, "every department, member and tag listed");
    let outcome = standby
        .apply_batch(&writes, Some("understudy"))
        .await
        .unwrap();
    assert_eq!(outcome.applied, 6, "{:?}", outcome.rejected);

    let (a, b) = (digests(&primary).await, digests(&standby).await);
    assert_eq!(a, b, "the two corps differ record by record");
    // Ids were kept, names byte-exact, the placeholder filled in by its own write.
    let dept = standby.list_entities(None, 10).await.unwrap();
    let by_key: BTreeMap<String, Value> = dept
        .entities
        .into_iter()
        .map(|e| (e.key.to_string(), e.payload))
        .collect();
    assert_eq!(by_key["department/2"]["name"], "市场二组");
    assert_eq!(by_key["department/10"]["name"], "🚀团队");
    assert_eq!(by_key["department/10"]["parentid"], 2);

    // Writing the same again changes nothing (update-else-create is idempotent).
    standby.apply_batch(&writes, None).await.unwrap();
    assert_eq!(digests(&standby).await, a);

    // A field removed on the primary is removed on the standby (not left behind).
    sim.seed(
        "wwprimary",
        &[(
            "member/zhang.san",
            json!({"name": "张三", "department": [10]}),
        )],
    );
    let page = primary.list_entities(None, 100).await.unwrap();
    let changed: Vec<EntityWrite> = page
        .entities
        .into_iter()
        .filter(|e| e.key.as_str() == "member/zhang.san")
        .map(EntityWrite::Put)
        .collect();
    standby.apply_batch(&changed, None).await.unwrap();
    let a = digests(&primary).await;
    assert_eq!(
        digests(&standby).await,
        a,
        "position and mobile cleared on the standby"
    );

    // Deletes, twice: the second finds nothing and succeeds.
    let gone: EntityKey = "member/rtl".to_string().try_into().unwrap();
    standby.delete_entity(&gone, None).await.unwrap();
    standby.delete_entity(&gone, None).await.unwrap();
    assert!(!digests(&standby).await.contains_key("member/rtl"));
}

#[tokio::test]
async fn a_tag_naming_members_the_corp_lacks_applies_the_rest_and_names_them() {
    let sim = Sim::start().await;
    sim.corp("wwstandby", json!({"secret": "s"})).await;
    sim.seed(
        "wwstandby",
        &[("member/here", json!({"name": "在", "department": [1]}))],
    );
    let standby = sim.provider("wwstandby", "s", None);
    let key: EntityKey = "tag/3".to_string().try_into().unwrap();
    let held_tag = || async { standby.read_entity(&key).await.unwrap().unwrap().payload };
    let tag = Entity::new(
        key.clone(),
        json!({"tagname": "VIP客户", "userlist": ["absent", "here"], "partylist": [5]}),
    );
    // Not a rejection: what it names may be on its way (the sink waits for it).
    match standby.put_entity(&tag, None).await {
        Err(ProviderError::MissingReference(m)) => {
            assert!(
                m.contains("member absent") && m.contains("department 5"),
                "{m}"
            )
        }
        other => panic!("expected an error naming the absent member, got {other:?}"),
    }
    assert_eq!(held_tag().await["userlist"], json!(["here"]));

    // The member's and the department's own records arrive: the same write, tried
    // again, completes the tag.
    let member = Entity::new(
        "member/absent".to_string().try_into().unwrap(),
        json!({"name": "缺", "department": [1]}),
    );
    let department = Entity::new(
        "department/5".to_string().try_into().unwrap(),
        json!({"name": "五部", "parentid": 1}),
    );
    standby.put_entity(&member, None).await.unwrap();
    standby.put_entity(&department, None).await.unwrap();
    standby.put_entity(&tag, None).await.unwrap();
    let held = held_tag().await;
    assert_eq!(held["userlist"], json!(["absent", "here"]));
    assert_eq!(held["partylist"], json!([5]));
}

#[tokio::test]
async fn an_expired_token_is_fetched_again_and_the_call_succeeds() {
    let sim = Sim::start().await;
    sim.corp("ww1", json!({"secret": "s"})).await;
    let p = sim.provider("ww1", "s", None);
    p.status().await.unwrap();
    sim.admin("/admin/wecom/corps/ww1/expire-tokens").await;
    assert_eq!(p.status().await.unwrap().status, AccountState::Active);
    let stats: Value = reqwest::get(format!("{}/admin/wecom/corps/ww1", sim.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["tokensIssued"], 2, "one refresh, not one per call");
}

#[tokio::test]
async fn wecom_answers_become_typed_errors_and_no_secret_leaks() {
    let sim = Sim::start().await;
    sim.corp(
        "ww1",
        json!({"secret": "topsecret", "freezeErrcode": 48006, "ratePerMinute": 2}),
    )
    .await;
    let p = sim.provider("ww1", "topsecret", None);
    p.status().await.unwrap();
    p.status().await.unwrap();
    // Past WeCom's rate (the client-side limit is off here): a rate limit, never a freeze.
    assert!(matches!(
        p.status().await,
        Err(ProviderError::RateLimited { .. })
    ));

    sim.corp(
        "ww2",
        json!({"secret": "topsecret", "freezeErrcode": 48006}),
    )
    .await;
    sim.store
        .account("ww2")
        .set_status(AccountState::Frozen, "revoked");
    match sim.provider("ww2", "topsecret", None).status().await {
        Err(ProviderError::AccountFrozen { reason }) => {
            assert!(reason.contains("48006"), "{reason}")
        }
        other => panic!("expected a freeze, got {other:?}"),
    }

    let wrong = sim.provider("ww2", "not-the-secret", None).status().await;
    match wrong {
        Err(ProviderError::Unauthorized(m)) => {
            assert!(m.contains("40001"), "{m}");
            assert!(!m.contains("not-the-secret"), "{m}");
        }
        other => panic!("expected the secret refused, got {other:?}"),
    }
    let unknown = sim.provider("wwnobody", "topsecret", None).status().await;
    assert!(matches!(unknown, Err(ProviderError::Misconfigured(m)) if m.contains("40013")));

    // No answer at all: unavailable, and the secret is not in the message.
    let closed = WecomProvider::new(
        "ww1",
        "topsecret",
        &ClientOptions {
            api_base: Some("http://127.0.0.1:9".into()),
            limit: Limit::Off,
            request_timeout: Duration::from_secs(2),
        },
    )
    .unwrap();
    match closed.status().await {
        Err(ProviderError::Unavailable(m)) => assert!(!m.contains("topsecret"), "{m}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
}

mod callbacks;
mod corp_tags;

#[tokio::test]
async fn a_department_delete_waits_for_its_members_to_leave_and_then_gives_up_with_why() {
    let sim = Sim::start().await;
    sim.corp("wwstandby", json!({"secret": "s"})).await;
    sim.seed(
        "wwstandby",
        &[
            (
                "department/2",
                json!({"name": "市场二组", "parentid": 1, "order": 0}),
            ),
            (
                "department/3",
                json!({"name": "留下", "parentid": 1, "order": 0}),
            ),
            (
                "member/zhang.san",
                json!({"name": "张三", "department": [2]}),
            ),
            ("member/li.si", json!({"name": "李四", "department": [3]})),
        ],
    );
    let p = sim.provider("wwstandby", "s", None);
    // The member's move is another record, applied a moment later in parallel.
    let mover = {
        let p = sim.provider("wwstandby", "s", None);
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let moved = Entity::new(
                "member/zhang.san".to_string().try_into().unwrap(),
                json!({"name": "张三", "department": [1]}),
            );
            p.put_entity(&moved, None).await.unwrap();
        }
    };
    let dept2: EntityKey = "department/2".to_string().try_into().unwrap();
    let (deleted, ()) = tokio::join!(p.delete_entity(&dept2, None), mover);
    deleted.expect("deleted once its member had moved");
    assert!(!digests(&p).await.contains_key("department/2"));

    // A member that never leaves: refused (to the DLQ) with what to do.
    let dept3: EntityKey = "department/3".to_string().try_into().unwrap();
    match p.delete_entity(&dept3, None).await {
        Err(ProviderError::Rejected(m)) => {
            assert!(m.contains("still has members or child departments"), "{m}");
            assert!(m.contains("60005"), "{m}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(digests(&p).await.contains_key("department/3"));
}
