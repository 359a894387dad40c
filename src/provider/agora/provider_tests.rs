//! `AgoraChatProvider` against the simulator's Agora Chat API (whose tokens
//! `e2e_agora_token` holds to Agora's `agora-token`), in process on 127.0.0.1:0.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::AgoraChatProvider;
use crate::model::{Entity, EntityKey};
use crate::provider::cgibin::Limit;
use crate::provider::sim::{ServerConfig, SimStore, router};
use crate::provider::{AccountProvider, EntityWrite, ProviderError};

const APP_ID: &str = "0123456789abcdef0123456789abcdef";
const CERT: &str = "fedcba9876543210fedcba9876543210";

async fn start() -> String {
    let app = router(SimStore::new(), ServerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn admin(base: &str, method: reqwest::Method, path: &str, body: Value) {
    let r = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
}

async fn app(base: &str, name: &str, rate: u32) -> AgoraChatProvider {
    admin(
        base,
        reqwest::Method::PUT,
        &format!("/admin/agora/apps/org1/{name}"),
        json!({"appId": APP_ID, "appCertificate": CERT, "ratePerSecond": rate}),
    )
    .await;
    AgoraChatProvider::new(base, &format!("org1#{name}"), APP_ID, CERT, Limit::Off).unwrap()
}

async fn listing(p: &AgoraChatProvider) -> BTreeMap<EntityKey, Entity> {
    p.list_entities(None, 10_000)
        .await
        .unwrap()
        .entities
        .into_iter()
        .map(|e| (e.key.clone(), e))
        .collect()
}

fn entity(key: &str, payload: Value) -> Entity {
    let key = match key.split_once('/') {
        // A group's name may hold `/`: its key encodes it.
        Some(("group", name)) => EntityKey::named(crate::model::EntityKind::Group, name).unwrap(),
        _ => key.to_string().try_into().unwrap(),
    };
    Entity::new(key, payload)
}

#[tokio::test]
async fn users_and_groups_replicate_to_another_app_and_read_back_equal() {
    let base = start().await;
    let primary = app(&base, "primary", 1000).await;
    let standby = app(&base, "standby", 1000).await;
    // The primary's own server writes users and a group (through the same adapter's
    // writes here; the simulator is held to Agora's wire format by its own tests).
    let seed = vec![
        EntityWrite::Put(entity(
            "member/alice",
            json!({"activated": true, "nickname": "爱丽丝"}),
        )),
        EntityWrite::Put(entity("member/bob", json!({"activated": false}))),
        EntityWrite::Put(entity("member/carol", json!({"activated": true}))),
        EntityWrite::Put(entity(
            "group/客服 1/2",
            json!({"description": "support", "public": true, "maxusers": 200,
                   "owner": "alice", "members": ["bob", "carol"]}),
        )),
    ];
    let out = primary.apply_batch(&seed, None).await.unwrap();
    assert_eq!((out.applied, out.rejected.len()), (4, 0), "{out:?}");
    let read = listing(&primary).await;
    assert_eq!(read.len(), 4, "{:?}", read.keys().collect::<Vec<_>>());
    assert_eq!(
        read[&"member/bob".to_string().try_into().unwrap()].payload,
        json!({"activated": false})
    );

    // What a sink writes, in key order: the group (group/ < member/) comes before its
    // owner and members exist on the standby; it registers them, and their own records
    // then set the rest (bob is deactivated).
    let writes: Vec<EntityWrite> = read.values().map(|e| EntityWrite::Put(e.clone())).collect();
    let first = standby.apply_batch(&writes, Some("pair")).await.unwrap();
    assert_eq!((first.applied, first.rejected.len()), (4, 0), "{first:?}");
    // Idempotent.
    let again = standby.apply_batch(&writes, Some("pair")).await.unwrap();
    assert_eq!(again.rejected.len(), 0, "{again:?}");
    let back = listing(&standby).await;
    for (k, e) in &read {
        assert_eq!(back[k].payload, e.payload, "{k}");
    }
    assert_eq!(back.len(), read.len());

    // Membership and activation move; deletes leave.
    let moved = entity(
        "group/客服 1/2",
        json!({"description": "support", "public": true, "maxusers": 200,
               "owner": "alice", "members": ["carol"]}),
    );
    standby.put_entity(&moved, None).await.unwrap();
    standby
        .put_entity(&entity("member/bob", json!({"activated": true})), None)
        .await
        .unwrap();
    let now = listing(&standby).await;
    assert_eq!(now[&moved.key].payload["members"], json!(["carol"]));
    assert_eq!(
        now[&"member/bob".to_string().try_into().unwrap()].payload,
        json!({"activated": true})
    );
    standby.delete_entity(&moved.key, None).await.unwrap();
    standby.delete_entity(&moved.key, None).await.unwrap();
    assert!(!listing(&standby).await.contains_key(&moved.key));
}

#[tokio::test]
async fn a_suspended_app_is_freeze_evidence_and_429_only_a_rate_limit() {
    let base = start().await;
    let p = app(&base, "limited", 1).await;
    p.status().await.unwrap();
    // The app's own limit (1 a second here, the client's off): 429.
    let mut limited = false;
    for _ in 0..5 {
        if let Err(ProviderError::RateLimited { .. }) = p.status().await {
            limited = true;
        }
    }
    assert!(limited, "the simulator's per-second budget answers 429");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    admin(
        &base,
        reqwest::Method::POST,
        "/admin/accounts/org1%23limited/status",
        json!({"status": "frozen", "reason": "suspended"}),
    )
    .await;
    match p.status().await {
        Err(ProviderError::AccountFrozen { reason }) => {
            assert!(reason.contains("unconfirmed"), "{reason}")
        }
        other => panic!("expected freeze evidence, got {other:?}"),
    }
    // A wrong certificate from the start is a credential problem, not a freeze.
    let wrong = AgoraChatProvider::new(
        &base,
        "org1#limited",
        APP_ID,
        "00000000000000000000000000000000",
        Limit::Off,
    )
    .unwrap();
    match wrong.status().await {
        Err(ProviderError::Unauthorized(m)) => assert!(!m.contains(CERT), "{m}"),
        other => panic!("expected unauthorized, got {other:?}"),
    }
}

#[tokio::test]
async fn writing_one_group_reads_the_details_of_that_group_only() {
    let base = start().await;
    let p = app(&base, "many", 1000).await;
    p.put_entity(&entity("member/owner", json!({"activated": true})), None)
        .await
        .unwrap();
    for i in 0..150 {
        let g = entity(
            &format!("group/g{i:03}"),
            json!({"description": "", "public": true, "maxusers": 200,
                   "owner": "owner", "members": []}),
        );
        p.put_entity(&g, None).await.unwrap();
    }
    let gets = || async {
        let stats: Value = reqwest::get(format!("{base}/admin/agora/apps/org1/many"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stats["calls"]["chatgroups/get"].as_u64().unwrap_or(0)
    };
    let before = gets().await;
    let g = entity(
        "group/g042",
        json!({"description": "changed", "public": true, "maxusers": 200,
               "owner": "owner", "members": []}),
    );
    p.put_entity(&g, None).await.unwrap();
    assert_eq!(
        gets().await - before,
        1,
        "one details call, not one per 100 groups"
    );
    assert_eq!(
        p.read_entity(&g.key).await.unwrap().unwrap().payload["description"],
        "changed"
    );
}
