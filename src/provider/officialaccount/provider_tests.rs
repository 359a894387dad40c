//! `OfficialAccountProvider` against the simulator's Official Account API (which
//! `e2e_oa_sim` holds to wechatpy), in process on 127.0.0.1:0.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::OfficialAccountProvider;
use crate::model::{Entity, EntityKey, EntityKind};
use crate::provider::cgibin::Limit;
use crate::provider::cgibin::client::{ApiClient, ClientOptions, Req};
use crate::provider::sim::{ServerConfig, SimStore, router};
use crate::provider::{AccountProvider, EntityWrite, ProviderError};

const PRIMARY: &str = "wx00000000000000a1";
const STANDBY: &str = "wx00000000000000b2";

struct Sim {
    base: String,
}

impl Sim {
    async fn start() -> Sim {
        let app = router(SimStore::new(), ServerConfig::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Sim {
            base: format!("http://{addr}"),
        }
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap_or_default()
    }

    async fn account(&self, app: &str, config: Value) {
        self.admin(
            reqwest::Method::PUT,
            &format!("/admin/oa/accounts/{app}"),
            config,
        )
        .await;
    }

    fn options(&self, limit: Limit) -> ClientOptions {
        ClientOptions {
            api_base: Some(self.base.clone()),
            limit,
            request_timeout: Duration::from_secs(5),
        }
    }

    fn provider(&self, app: &str) -> OfficialAccountProvider {
        OfficialAccountProvider::new(app, &format!("{app}-secret"), &self.options(Limit::Off))
            .unwrap()
    }

    /// A raw client, as the account's own backend would call the API.
    fn raw(&self, app: &str) -> ApiClient {
        ApiClient::new(
            &super::DIALECT,
            app,
            &format!("{app}-secret"),
            &self.options(Limit::Off),
        )
        .unwrap()
    }
}

async fn listing(p: &dyn AccountProvider) -> BTreeMap<EntityKey, Entity> {
    let page = p.list_entities(None, 1000).await.unwrap();
    assert!(page.next.is_none());
    page.entities
        .into_iter()
        .map(|e| (e.key.clone(), e))
        .collect()
}

/// The primary's own administrators: a menu, a tag on two followers with a unionid and
/// one without, an image.
async fn seed_primary(sim: &Sim) -> (Vec<String>, String) {
    let raw = sim.raw(PRIMARY);
    raw.call(
        "menu/create",
        Req::Post(&json!({"button": [
            {"type": "click", "name": "今日歌曲", "key": "V1001"},
            {"name": "菜单", "sub_button": [{"type": "view", "name": "搜索", "url": "http://www.soso.com/"}]}]})),
    )
    .await
    .unwrap();
    let tag = raw
        .call(
            "tags/create",
            Req::Post(&json!({"tag": {"name": "VIP客户"}})),
        )
        .await
        .unwrap();
    let tagid = tag["tag"]["id"].as_u64().unwrap();
    let fans = raw
        .call("user/get", Req::Get(&[("next_openid", "")]))
        .await
        .unwrap();
    let openids: Vec<String> = fans["data"]["openid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap().to_string())
        .collect();
    let info = raw
        .call(
            "user/info/batchget",
            Req::Post(&json!({"user_list": openids.iter().map(|o| json!({"openid": o})).collect::<Vec<_>>()})),
        )
        .await
        .unwrap();
    let by_union: BTreeMap<String, String> = info["user_info_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| {
            Some((
                u["unionid"].as_str()?.to_string(),
                u["openid"].as_str()?.to_string(),
            ))
        })
        .collect();
    let anonymous = openids
        .iter()
        .find(|o| !by_union.values().any(|v| v == *o))
        .unwrap()
        .clone();
    let tagged = vec![
        by_union["union-a"].clone(),
        by_union["union-c"].clone(),
        anonymous,
    ];
    raw.call(
        "tags/members/batchtagging",
        Req::Post(&json!({"tagid": tagid, "openid_list": tagged})),
    )
    .await
    .unwrap();
    let image: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let added = raw
        .call(
            "material/add_material",
            Req::Upload {
                query: &[("type", "image")],
                file_name: "logo.png",
                bytes: &image,
                fields: &[],
            },
        )
        .await
        .unwrap();
    (tagged, added["media_id"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn an_account_replicates_to_another_by_unionid_and_content_and_reads_back_equal() {
    let sim = Sim::start().await;
    sim.account(
        PRIMARY,
        json!({"secret": format!("{PRIMARY}-secret"),
        "followers": ["union-a", "union-b", "union-c"], "anonymousFollowers": 2}),
    )
    .await;
    // union-c does not follow the standby (yet).
    sim.account(
        STANDBY,
        json!({"secret": format!("{STANDBY}-secret"),
        "followers": ["union-a", "union-b"], "anonymousFollowers": 1,
        "autoreply": {"is_autoreply_open": 0, "is_add_friend_reply_open": 0}}),
    )
    .await;
    seed_primary(&sim).await;
    let (primary, standby) = (sim.provider(PRIMARY), sim.provider(STANDBY));

    let read = listing(&primary).await;
    let keys: Vec<&str> = read.keys().map(EntityKey::as_str).collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert!(keys.contains(&"menu/default") && keys.contains(&"tag/VIP客户"));
    assert!(keys.contains(&"auto-reply/current"));
    let image_key = read
        .keys()
        .find(|k| k.kind() == EntityKind::Content)
        .unwrap()
        .clone();
    assert!(image_key.id().starts_with("image-"), "{image_key}");
    // The tag names people by unionid; the follower without one cannot be named.
    assert_eq!(
        read[&"tag/VIP客户".to_string().try_into().unwrap()].payload,
        json!({"followers": ["union-a", "union-c"]})
    );
    assert_eq!(standby.not_replicable()[0].kind, EntityKind::AutoReply);

    // What a sink writes: everything but the auto-replies (it skips those).
    let writes: Vec<EntityWrite> = read
        .values()
        .filter(|e| e.key.kind() != EntityKind::AutoReply)
        .map(|e| EntityWrite::Put(e.clone()))
        .collect();
    let out = standby.apply_batch(&writes, Some("pair")).await.unwrap();
    assert_eq!(out.applied, 2);
    assert_eq!(out.rejected.len(), 1, "{out:?}");
    assert!(
        out.rejected[0]
            .message
            .contains("1 of its followers do not follow this account")
            && out.rejected[0].message.contains("union-c"),
        "{}",
        out.rejected[0].message
    );
    // The person follows the standby later: a replay of the DLQ record tags them.
    sim.admin(
        reqwest::Method::POST,
        &format!("/admin/oa/accounts/{STANDBY}/follow"),
        json!({"unionids": ["union-c"]}),
    )
    .await;
    // A new process (the follower list is read again at most every REBUILD_EVERY).
    let fresh = sim.provider(STANDBY);
    let tag = &read[&"tag/VIP客户".to_string().try_into().unwrap()];
    fresh.put_entity(tag, Some("pair")).await.unwrap();

    // Read back over the standby's own API: what both sides own is equal.
    let back = listing(&fresh).await;
    for (k, e) in &read {
        if k.kind() == EntityKind::AutoReply {
            assert_ne!(back[k].digest, e.digest, "the standby's own auto-replies");
            continue;
        }
        assert_eq!(back[k].payload, e.payload, "{k}");
        assert_eq!(back[k].digest, e.digest, "{k}");
    }
    // The material's bytes arrived intact (fetched back from the standby's API).
    let material = &back[&image_key];
    let bytes = super::entities::material_bytes(&material.payload).unwrap();
    assert_eq!(bytes.len(), 5000);

    // Idempotent: the same writes again change nothing.
    let again = fresh.apply_batch(&writes, Some("pair")).await.unwrap();
    assert_eq!((again.applied, again.rejected.len()), (3, 0));
    assert_eq!(listing(&fresh).await.len(), back.len());

    // Deletes: the menu, the tag and the material leave the standby.
    for key in read.keys().filter(|k| k.kind() != EntityKind::AutoReply) {
        fresh.delete_entity(key, Some("pair")).await.unwrap();
        fresh.delete_entity(key, Some("pair")).await.unwrap();
    }
    let left: Vec<String> = listing(&fresh)
        .await
        .keys()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(left, ["auto-reply/current"]);
    // Auto-replies cannot be written, and the error says what to do.
    let e = fresh
        .put_entity(&read[&super::entities::autoreply_key()], None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("by hand"), "{e}");
}

#[tokio::test]
async fn a_ban_is_a_freeze_and_a_spent_quota_is_only_a_rate_limit() {
    let sim = Sim::start().await;
    sim.account(
        PRIMARY,
        json!({"secret": format!("{PRIMARY}-secret"),
        "dailyQuota": {"menu/get": 2}}),
    )
    .await;
    let p = sim.provider(PRIMARY);
    p.status().await.unwrap();
    // The platform's own quota: 45009, a rate limit, never a freeze.
    for _ in 0..2 {
        p.list_entities(None, 10).await.unwrap();
    }
    match p.list_entities(None, 10).await {
        Err(ProviderError::RateLimited { retry_after }) => {
            assert_eq!(retry_after, super::errcode::DAILY_QUOTA_BACKOFF)
        }
        other => panic!("expected a rate limit, got {other:?}"),
    }
    // The client's own quota answers at once instead of calling.
    let limited = OfficialAccountProvider::new(
        PRIMARY,
        &format!("{PRIMARY}-secret"),
        &sim.options(Limit::PerWindow(1)),
    )
    .unwrap();
    limited.status().await.unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(
        limited.status().await,
        Err(ProviderError::RateLimited { .. })
    ));
    assert!(started.elapsed() < Duration::from_secs(1));
    // Banned after a violation: 48004 is freeze evidence.
    sim.admin(
        reqwest::Method::POST,
        &format!("/admin/accounts/{PRIMARY}/status"),
        json!({"status": "frozen", "reason": "violation"}),
    )
    .await;
    match p.status().await {
        Err(ProviderError::AccountFrozen { reason }) => {
            assert!(reason.contains("48004"), "{reason}")
        }
        other => panic!("expected a freeze, got {other:?}"),
    }
}

#[tokio::test]
async fn an_expired_token_is_fetched_again_and_a_wrong_secret_is_refused() {
    let sim = Sim::start().await;
    sim.account(PRIMARY, json!({"secret": format!("{PRIMARY}-secret")}))
        .await;
    let p = sim.provider(PRIMARY);
    p.status().await.unwrap();
    sim.admin(
        reqwest::Method::POST,
        &format!("/admin/oa/accounts/{PRIMARY}/expire-tokens"),
        json!({}),
    )
    .await;
    p.status().await.unwrap();
    let stats = sim
        .admin(
            reqwest::Method::GET,
            &format!("/admin/oa/accounts/{PRIMARY}"),
            json!({}),
        )
        .await;
    assert_eq!(stats["tokensIssued"], 2, "{stats}");
    let wrong = OfficialAccountProvider::new(PRIMARY, "nope", &sim.options(Limit::Off)).unwrap();
    match wrong.status().await {
        Err(ProviderError::Unauthorized(m)) => assert!(!m.contains("nope"), "{m}"),
        other => panic!("expected the secret refused, got {other:?}"),
    }
}

#[tokio::test]
async fn a_scan_pages_through_materials_only_when_their_newest_page_moved() {
    let sim = Sim::start().await;
    sim.account(PRIMARY, json!({"secret": format!("{PRIMARY}-secret")}))
        .await;
    let raw = sim.raw(PRIMARY);
    let upload = |n: u32| {
        let bytes: Vec<u8> = format!("image number {n}").into_bytes();
        let raw = &raw;
        async move {
            raw.call(
                "material/add_material",
                Req::Upload {
                    query: &[("type", "image")],
                    file_name: &format!("img{n}.png"),
                    bytes: &bytes,
                    fields: &[],
                },
            )
            .await
            .unwrap()
        }
    };
    for n in 0..45 {
        upload(n).await;
    }
    let batchgets = || async {
        sim.admin(
            reqwest::Method::GET,
            &format!("/admin/oa/accounts/{PRIMARY}"),
            json!({}),
        )
        .await["calls"]["material/batchget_material"]
            .as_u64()
            .unwrap_or(0)
    };
    let p = sim.provider(PRIMARY);
    let images = |l: &BTreeMap<EntityKey, Entity>| {
        l.keys().filter(|k| k.kind() == EntityKind::Content).count()
    };
    let before = batchgets().await;
    assert_eq!(images(&listing(&p).await), 45);
    // 3 pages of images, 1 (empty) of voices, 1 of videos.
    assert_eq!(batchgets().await - before, 5);
    let before = batchgets().await;
    assert_eq!(images(&listing(&p).await), 45);
    assert_eq!(
        batchgets().await - before,
        3,
        "one page per type when nothing moved"
    );
    upload(45).await;
    assert_eq!(images(&listing(&p).await), 46, "an added image is found");
}
