//! A corp's customer-contact tag groups (企业客户标签) on [`WecomProvider`]: listed with
//! `get_corp_tag_list`, written by name with each corp's own ids (see
//! [`corp_tag_key`](super::entities::corp_tag_key) for why the name is the key), with the
//! customer-contact (客户联系) secret only.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::entities::{corp_tag_name, corp_tag_payload};
use super::provider::WecomProvider;
use crate::model::EntityKey;
use crate::provider::ProviderError;
use crate::provider::cgibin::client::{ApiClient, Req};

impl WecomProvider {
    /// The corp's tag groups by name (`get_corp_tag_list`), as WeCom answers them.
    pub(super) async fn corp_tag_groups(&self) -> Result<BTreeMap<String, Value>, ProviderError> {
        let Some(c) = &self.customers else {
            return Ok(BTreeMap::new());
        };
        let list = c
            .call("externalcontact/get_corp_tag_list", Req::Post(&json!({})))
            .await?;
        Ok(list["tag_group"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| Some((g["group_name"].as_str()?.to_string(), g.clone())))
            .collect())
    }

    fn customers(&self, key: &EntityKey) -> Result<&ApiClient, ProviderError> {
        self.customers.as_ref().ok_or_else(|| {
            ProviderError::Rejected(format!(
                "{key}: corp tags need the corp's customer-contact (客户联系) secret, which this corp was not given"
            ))
        })
    }

    pub(super) async fn put_corp_tag(
        &self,
        key: &EntityKey,
        payload: &Value,
    ) -> Result<(), ProviderError> {
        let c = self.customers(key)?;
        let name = corp_tag_name(key);
        let want = corp_tag_payload(&json!({"order": payload["order"], "tag": payload["tags"]}));
        let wanted: BTreeMap<String, u64> = want["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| Some((t["name"].as_str()?.to_string(), t["order"].as_u64()?)))
            .collect();
        let tag_list = |names: Vec<(&String, &u64)>| -> Value {
            json!(
                names
                    .into_iter()
                    .map(|(n, o)| json!({"name": n, "order": o}))
                    .collect::<Vec<_>>()
            )
        };
        let Some(group) = self.corp_tag_groups().await?.remove(&name) else {
            let body = json!({"group_name": name, "order": want["order"], "tag": tag_list(wanted.iter().collect())});
            c.call("externalcontact/add_corp_tag", Req::Post(&body))
                .await?;
            return Ok(());
        };
        let group_id = group["group_id"].as_str().unwrap_or("").to_string();
        if group["order"].as_u64().unwrap_or(0) != want["order"].as_u64().unwrap_or(0) {
            let body = json!({"id": group_id, "order": want["order"]});
            c.call("externalcontact/edit_corp_tag", Req::Post(&body))
                .await?;
        }
        // This corp's tags: name → (id, order).
        let have: BTreeMap<String, (String, u64)> = group["tag"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| !t["deleted"].as_bool().unwrap_or(false))
            .filter_map(|t| {
                let id = t["id"].as_str()?.to_string();
                Some((
                    t["name"].as_str()?.to_string(),
                    (id, t["order"].as_u64().unwrap_or(0)),
                ))
            })
            .collect();
        // Added before any is deleted: a group left without tags would be deleted.
        let missing: Vec<(&String, &u64)> = wanted
            .iter()
            .filter(|(n, _)| !have.contains_key(*n))
            .collect();
        if !missing.is_empty() {
            let body = json!({"group_id": group_id, "tag": tag_list(missing)});
            c.call("externalcontact/add_corp_tag", Req::Post(&body))
                .await?;
        }
        for (n, (id, order)) in &have {
            if let Some(o) = wanted.get(n).filter(|o| *o != order) {
                let body = json!({"id": id, "order": o});
                c.call("externalcontact/edit_corp_tag", Req::Post(&body))
                    .await?;
            }
        }
        let extra: Vec<&String> = have
            .iter()
            .filter(|(n, _)| !wanted.contains_key(*n))
            .map(|(_, (id, _))| id)
            .collect();
        if !extra.is_empty() {
            let body = json!({"tag_id": extra});
            c.call("externalcontact/del_corp_tag", Req::Post(&body))
                .await?;
        }
        Ok(())
    }

    pub(super) async fn delete_corp_tag(&self, key: &EntityKey) -> Result<(), ProviderError> {
        let c = self.customers(key)?;
        match self.corp_tag_groups().await?.remove(&corp_tag_name(key)) {
            None => Ok(()),
            Some(group) => {
                let body = json!({"group_id": [group["group_id"]]});
                c.call("externalcontact/del_corp_tag", Req::Post(&body))
                    .await?;
                Ok(())
            }
        }
    }
}
