//! [`AccountProvider`] over an Official Account's API.
//!
//! Reading: a listing is the custom menu (`menu/get`), the auto-replies
//! (`get_current_autoreply_info`), the follower tags (`tags/get`, then each tag's
//! followers with `user/tag/get`, mapped to unionids) and the permanent materials (see
//! `materials.rs`), in key order, as the payloads of [`super::entities`].
//!
//! Writing: the menu with `menu/create` (a menu without buttons is `menu/delete`); a tag
//! by name (`tags/create` when missing), then its followers: this account's openids for
//! the payload's unionids, tagged and untagged 50 at a time
//! (`tags/members/batchtagging` / `batchuntagging`); a material with `add_material`.
//! Followers the payload names who do not follow this account (or have no unionid here)
//! are left out and the write is refused for the DLQ, naming how many, as WeCom tags
//! naming absent members are. Auto-replies have no write API: they are
//! [not replicable](AccountProvider::not_replicable).
//!
//! Official Accounts have no change feed and no change callbacks for these kinds:
//! [`changes`](AccountProvider::changes) is refused with a message saying so; changes
//! come from reconciliation scans.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};

use super::entities::{
    RESERVED_TAG_MAX, autoreply_key, autoreply_payload, menu_key, menu_payload, tag_followers,
    tag_key, tag_payload,
};
use super::followers::{Followers, all_openids};
use super::materials::Materials;
use crate::model::{AccountState, Entity, EntityKey, EntityKind};
use crate::provider::cgibin::client::{ApiClient, ClientOptions, Req, errcode_of};
use crate::provider::snapshot::Snapshot;
use crate::provider::{
    AccountProvider, ActivityEvent, ChangeBatch, EntityPage, NotReplicable, ProbeResult,
    ProviderError, StatusReport,
};

/// batchtagging's largest batch (40032).
const TAGGING_BATCH: usize = 50;

/// Why auto-replies do not replicate.
pub const AUTOREPLY_NOT_REPLICABLE: &str = "Official Accounts have no API that writes auto-replies (get_current_autoreply_info only reads them): set them on the standby by hand in the console; drills compare them";

/// An Official Account.
pub struct OfficialAccountProvider {
    pub(super) client: ApiClient,
    pub(super) followers: Followers,
    pub(super) materials: Materials,
    listing: Snapshot,
}

impl std::fmt::Debug for OfficialAccountProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfficialAccountProvider")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl OfficialAccountProvider {
    /// `secret` is the account's AppSecret.
    pub fn new(app_id: &str, secret: &str, options: &ClientOptions) -> Result<Self, ProviderError> {
        Ok(OfficialAccountProvider {
            client: ApiClient::new(&super::DIALECT, app_id, secret, options)?,
            followers: Followers::default(),
            materials: Materials::default(),
            listing: Snapshot::default(),
        })
    }

    async fn menu(&self) -> Result<Option<Value>, ProviderError> {
        let a = self.client.answer("menu/get", Req::Get(&[])).await?;
        match errcode_of(&a) {
            0 => Ok(menu_payload(&a)),
            46003 => Ok(None),
            _ => Err(self.client.error_of(&a)),
        }
    }

    async fn autoreply(&self) -> Result<Value, ProviderError> {
        let a = self
            .client
            .call("get_current_autoreply_info", Req::Get(&[]))
            .await?;
        Ok(autoreply_payload(&a))
    }

    /// The account's own tags by name → id (the system tags left out).
    async fn tags(&self) -> Result<BTreeMap<String, u64>, ProviderError> {
        let a = self.client.call("tags/get", Req::Get(&[])).await?;
        Ok(a["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| Some((t["name"].as_str()?.to_string(), t["id"].as_u64()?)))
            .filter(|(_, id)| *id > RESERVED_TAG_MAX)
            .collect())
    }

    /// A tag's payload: its followers' unionids.
    async fn tag(&self, id: u64) -> Result<Value, ProviderError> {
        let openids = all_openids(&self.client, "user/tag/get", Some(id)).await?;
        let unionids = self.followers.unionids(&self.client, &openids).await?;
        Ok(tag_payload(unionids.into_values().flatten()))
    }

    /// Everything, read now.
    async fn everything(&self) -> Result<BTreeMap<EntityKey, Value>, ProviderError> {
        let mut out = BTreeMap::new();
        if let Some(m) = self.menu().await? {
            out.insert(menu_key(), m);
        }
        out.insert(autoreply_key(), self.autoreply().await?);
        for (name, id) in self.tags().await? {
            if let Some(key) = tag_key(&name) {
                out.insert(key, self.tag(id).await?);
            }
        }
        for (key, (_, payload)) in self.materials.list(&self.client).await? {
            out.insert(key, payload);
        }
        Ok(out)
    }

    async fn put_tag(&self, key: &EntityKey, payload: &Value) -> Result<(), ProviderError> {
        let name = key.name();
        let id = match self.tags().await?.get(&name) {
            Some(id) => *id,
            None => {
                let a = self
                    .client
                    .call("tags/create", Req::Post(&json!({"tag": {"name": name}})))
                    .await?;
                a["tag"]["id"].as_u64().ok_or_else(|| {
                    ProviderError::Protocol(format!("tags/create {name:?}: no id in the answer"))
                })?
            }
        };
        let want_unionids = tag_followers(payload);
        let (want, absent) = self.followers.openids(&self.client, &want_unionids).await?;
        let have: std::collections::BTreeSet<String> =
            all_openids(&self.client, "user/tag/get", Some(id))
                .await?
                .into_iter()
                .collect();
        for (api, openids) in [
            (
                "tags/members/batchtagging",
                want.difference(&have).collect::<Vec<_>>(),
            ),
            (
                "tags/members/batchuntagging",
                have.difference(&want).collect(),
            ),
        ] {
            for batch in openids.chunks(TAGGING_BATCH) {
                let body = json!({ "tagid": id, "openid_list": batch });
                self.client.call(api, Req::Post(&body)).await?;
            }
        }
        if absent.is_empty() {
            Ok(())
        } else {
            let shown: Vec<&str> = absent.iter().take(5).map(String::as_str).collect();
            Err(ProviderError::Rejected(format!(
                "tag {name:?}: {} of its followers do not follow this account (unionids {}{}); the rest are tagged, and a replay tags them once they follow",
                absent.len(),
                shown.join(", "),
                if absent.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            )))
        }
    }

    async fn delete_tag(&self, key: &EntityKey) -> Result<(), ProviderError> {
        let Some(id) = self.tags().await?.remove(&key.name()) else {
            return Ok(());
        };
        let a = self
            .client
            .answer("tags/delete", Req::Post(&json!({"tag": {"id": id}})))
            .await?;
        match errcode_of(&a) {
            0 | 45159 => Ok(()),
            _ => Err(self.client.error_of(&a)),
        }
    }
}

fn no_feed() -> ProviderError {
    ProviderError::Protocol(
        "Official Accounts have no change feed: an Official Account's changes come from reconciliation scans"
            .into(),
    )
}

fn read_only(key: &EntityKey) -> ProviderError {
    ProviderError::Rejected(format!("{key}: {AUTOREPLY_NOT_REPLICABLE}"))
}

#[async_trait]
impl AccountProvider for OfficialAccountProvider {
    fn account_id(&self) -> &str {
        self.client.account_id()
    }

    fn not_replicable(&self) -> Vec<NotReplicable> {
        vec![NotReplicable {
            kind: EntityKind::AutoReply,
            reason: AUTOREPLY_NOT_REPLICABLE,
        }]
    }

    /// No status API: a cheap read that answers (the auto-reply settings; no published
    /// quota) is an active account; a freeze errcode is the error the detector reads.
    async fn status(&self) -> Result<StatusReport, ProviderError> {
        self.client
            .call("get_current_autoreply_info", Req::Get(&[]))
            .await?;
        Ok(StatusReport {
            status: AccountState::Active,
            reason: String::new(),
            since: None,
        })
    }

    async fn list_entities(
        &self,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<EntityPage, ProviderError> {
        self.listing.page(after, limit, || self.everything()).await
    }

    async fn read_entity(&self, key: &EntityKey) -> Result<Option<Entity>, ProviderError> {
        let payload = match key.kind() {
            EntityKind::Menu => self.menu().await?,
            EntityKind::AutoReply => Some(self.autoreply().await?),
            EntityKind::Tag => match self.tags().await?.get(&key.name()) {
                Some(id) => Some(self.tag(*id).await?),
                None => None,
            },
            EntityKind::Content => self
                .materials
                .list(&self.client)
                .await?
                .remove(key)
                .map(|(_, p)| p),
            _ => None,
        };
        Ok(payload.map(|p| Entity::new(key.clone(), p)))
    }

    async fn changes(
        &self,
        _cursor: Option<&str>,
        _limit: usize,
        _wait: Duration,
    ) -> Result<ChangeBatch, ProviderError> {
        Err(no_feed())
    }

    async fn head_cursor(&self) -> Result<String, ProviderError> {
        Err(no_feed())
    }

    async fn put_entity(
        &self,
        entity: &Entity,
        _origin: Option<&str>,
    ) -> Result<(), ProviderError> {
        let key = &entity.key;
        match key.kind() {
            EntityKind::Menu => {
                let buttons = entity.payload["button"].as_array().map_or(0, Vec::len);
                if buttons == 0 {
                    return self.delete_entity(key, None).await;
                }
                let body = json!({ "button": entity.payload["button"] });
                self.client.call("menu/create", Req::Post(&body)).await?;
                Ok(())
            }
            EntityKind::Tag => self.put_tag(key, &entity.payload).await,
            EntityKind::Content => self.materials.put(&self.client, key, &entity.payload).await,
            EntityKind::AutoReply => Err(read_only(key)),
            other => Err(ProviderError::Rejected(format!(
                "{key}: an Official Account holds no {other} entities"
            ))),
        }
    }

    async fn delete_entity(
        &self,
        key: &EntityKey,
        _origin: Option<&str>,
    ) -> Result<(), ProviderError> {
        match key.kind() {
            EntityKind::Menu => {
                let a = self.client.answer("menu/delete", Req::Get(&[])).await?;
                match errcode_of(&a) {
                    0 | 46003 => Ok(()),
                    _ => Err(self.client.error_of(&a)),
                }
            }
            EntityKind::Tag => self.delete_tag(key).await,
            EntityKind::Content => self.materials.delete(&self.client, key).await,
            EntityKind::AutoReply => Err(read_only(key)),
            other => Err(ProviderError::Rejected(format!(
                "{key}: an Official Account holds no {other} entities"
            ))),
        }
    }

    async fn probe(&self) -> Result<ProbeResult, ProviderError> {
        let start = Instant::now();
        self.status().await?;
        Ok(ProbeResult {
            ok: true,
            latency_ms: start.elapsed().as_millis() as u64,
            detail: "get_current_autoreply_info answered".into(),
        })
    }

    /// The platform offers no operation log of the account to an API caller.
    async fn activity(&self, _since: &str) -> Result<Vec<ActivityEvent>, ProviderError> {
        Ok(Vec::new())
    }
}
