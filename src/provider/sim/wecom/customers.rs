//! The simulated corp's customer-contact tags (企业客户标签): `externalcontact/
//! get_corp_tag_list`, `add_corp_tag`, `edit_corp_tag`, `del_corp_tag`, as WeCom
//! documents them ("管理企业标签", document/path/92117) and wechatpy calls them. Only a
//! token of the customer-contact secret may call them (48002 otherwise).
//!
//! A group is the account's `corp-tag/<encoded name>` entity, holding the ids WeCom
//! assigns: `{"group_id", "create_time", "order", "tags": [{"id", "name", "order",
//! "create_time"}]}`. Ids stay when a group or tag is renamed, as on WeCom. A group
//! whose last tag is deleted is deleted too.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::{Call, Scope, WecomError, answer, store_error};
use crate::model::{EntityKey, EntityKind};
use crate::provider::sim::state::Shared;
use crate::provider::sim::store::{Payload, SimAccount};
use crate::provider::wecom::entities::{corp_tag_key, corp_tag_name};

type Q = Query<HashMap<String, String>>;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/cgi-bin/externalcontact/get_corp_tag_list", post(list))
        .route("/cgi-bin/externalcontact/add_corp_tag", post(add))
        .route("/cgi-bin/externalcontact/edit_corp_tag", post(edit))
        .route("/cgi-bin/externalcontact/del_corp_tag", post(del))
}

/// A new id, WeCom-like (`et` and 20 characters), unique in this process.
fn new_id(corp: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let h = Sha256::digest(format!("{corp}/{n}").as_bytes());
    format!("et{}", &hex::encode(h)[..20])
}

fn now_secs() -> u64 {
    chrono::Utc::now().timestamp().max(0) as u64
}

struct Groups {
    account: Arc<SimAccount>,
    freeze: i64,
    /// (group name, stored group) in name order.
    all: Vec<(String, Value)>,
}

impl Groups {
    async fn load(
        s: &Shared,
        q: &HashMap<String, String>,
        api: &str,
    ) -> Result<Groups, WecomError> {
        let (Call { account }, freeze) = Call::enter(s, q, api, Scope::ExternalContact).await?;
        let all = account
            .of_kind(EntityKind::CorpTag)
            .map_err(|e| store_error(freeze, e))?
            .into_iter()
            .map(|(k, p)| (corp_tag_name(&k), p.value()))
            .collect();
        Ok(Groups {
            account,
            freeze,
            all,
        })
    }

    fn by_group_id(&self, id: &str) -> Option<usize> {
        self.all.iter().position(|(_, g)| g["group_id"] == id)
    }

    fn by_tag_id(&self, id: &str) -> Option<(usize, usize)> {
        self.all.iter().enumerate().find_map(|(gi, (_, g))| {
            g["tags"]
                .as_array()?
                .iter()
                .position(|t| t["id"] == id)
                .map(|ti| (gi, ti))
        })
    }

    fn key(name: &str) -> Result<EntityKey, WecomError> {
        corp_tag_key(name).ok_or(WecomError::new(40058, "invalid group_name"))
    }

    fn put(&self, name: &str, group: &Value) -> Result<(), WecomError> {
        let p = Payload::new(group.clone()).map_err(|e| store_error(self.freeze, e))?;
        self.account
            .put(Self::key(name)?, p, Some("wecom-api"))
            .map(|_| ())
            .map_err(|e| store_error(self.freeze, e))
    }

    fn delete(&self, name: &str) -> Result<(), WecomError> {
        self.account
            .delete(&Self::key(name)?, Some("wecom-api"))
            .map(|_| ())
            .map_err(|e| store_error(self.freeze, e))
    }
}

/// A stored group as the API shows it.
fn view(name: &str, g: &Value, only: Option<&[String]>) -> Value {
    let tags: Vec<Value> = g["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| only.is_none_or(|ids| ids.iter().any(|i| t["id"] == i.as_str())))
        .cloned()
        .collect();
    json!({"group_id": g["group_id"], "group_name": name, "create_time": g["create_time"],
        "order": g["order"], "tag": tags})
}

fn body(raw: &Bytes) -> Result<Map<String, Value>, WecomError> {
    match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(m)) => Ok(m),
        _ if raw.is_empty() => Ok(Map::new()),
        _ => Err(WecomError::new(40058, "invalid json")),
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn name_ok(name: &str) -> Result<(), WecomError> {
    if name.is_empty() || name.chars().count() > 30 {
        return Err(WecomError::new(40058, "invalid name length"));
    }
    Ok(())
}

async fn list(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    answer(
        async {
            let g = Groups::load(&s, &q, "externalcontact/get_corp_tag_list").await?;
            let b = body(&raw)?;
            let (tag_ids, group_ids) = (strings(b.get("tag_id")), strings(b.get("group_id")));
            // group_id wins over tag_id when both are given, as WeCom documents.
            let out: Vec<Value> = g
                .all
                .iter()
                .filter_map(|(name, grp)| {
                    if !group_ids.is_empty() {
                        return group_ids
                            .iter()
                            .any(|i| grp["group_id"] == i.as_str())
                            .then(|| view(name, grp, None));
                    }
                    if !tag_ids.is_empty() {
                        let v = view(name, grp, Some(&tag_ids));
                        return (!v["tag"].as_array()?.is_empty()).then_some(v);
                    }
                    Some(view(name, grp, None))
                })
                .collect();
            Ok(json!({ "tag_group": out }))
        }
        .await,
    )
}

async fn add(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    answer(
        async {
            let g = Groups::load(&s, &q, "externalcontact/add_corp_tag").await?;
            let b = body(&raw)?;
            let wanted: Vec<(String, u64)> = b
                .get("tag")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|t| {
                            Some((t["name"].as_str()?.to_string(), t["order"].as_u64().unwrap_or(0)))
                        })
                        .collect()
                })
                .unwrap_or_default();
            if wanted.is_empty() {
                return Err(WecomError::new(40058, "tag missing"));
            }
            for (name, _) in &wanted {
                name_ok(name)?;
            }
            // The group: by id, else by name (an existing name adds to that group).
            let (name, mut group) = match b.get("group_id").and_then(Value::as_str) {
                Some(id) => {
                    let i = g
                        .by_group_id(id)
                        .ok_or(WecomError::new(40068, "invalid group_id"))?;
                    g.all[i].clone()
                }
                None => {
                    let name = b
                        .get("group_name")
                        .and_then(Value::as_str)
                        .ok_or(WecomError::new(40058, "group_id or group_name required"))?;
                    name_ok(name)?;
                    match g.all.iter().find(|(n, _)| n == name) {
                        Some(found) => found.clone(),
                        None => (
                            name.to_string(),
                            json!({"group_id": new_id(g.account.id()), "create_time": now_secs(),
                                "order": b.get("order").and_then(Value::as_u64).unwrap_or(0), "tags": []}),
                        ),
                    }
                }
            };
            let mut created = Vec::new();
            for (tag, order) in wanted {
                let tags = group["tags"].as_array_mut().expect("stored groups hold a tag array");
                if tags.iter().any(|t| t["name"] == tag.as_str()) {
                    return Err(WecomError::new(40071, "tag name existed"));
                }
                let t = json!({"id": new_id(g.account.id()), "name": tag, "order": order,
                    "create_time": now_secs()});
                tags.push(t.clone());
                created.push(t.clone());
            }
            g.put(&name, &group)?;
            let mut shown = view(&name, &group, None);
            shown["tag"] = json!(created);
            Ok(json!({ "tag_group": shown }))
        }
        .await,
    )
}

async fn edit(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    answer(
        async {
            let g = Groups::load(&s, &q, "externalcontact/edit_corp_tag").await?;
            let b = body(&raw)?;
            let id = b
                .get("id")
                .and_then(Value::as_str)
                .ok_or(WecomError::new(40068, "invalid id"))?;
            let new_name = b.get("name").and_then(Value::as_str);
            let order = b.get("order").and_then(Value::as_u64);
            if let Some(n) = new_name {
                name_ok(n)?;
            }
            if let Some(i) = g.by_group_id(id) {
                let (name, mut group) = g.all[i].clone();
                if let Some(o) = order {
                    group["order"] = json!(o);
                }
                match new_name.filter(|n| *n != name) {
                    Some(n) if g.all.iter().any(|(other, _)| other == n) => {
                        return Err(WecomError::new(40071, "group name existed"));
                    }
                    // A rename moves the group to its new key; its ids stay.
                    Some(n) => {
                        g.put(n, &group)?;
                        g.delete(&name)?;
                    }
                    None => g.put(&name, &group)?,
                }
                return Ok(json!({}));
            }
            let (gi, ti) = g
                .by_tag_id(id)
                .ok_or(WecomError::new(40068, "invalid id"))?;
            let (name, mut group) = g.all[gi].clone();
            let tags = group["tags"]
                .as_array_mut()
                .expect("stored groups hold a tag array");
            if let Some(n) = new_name {
                if tags
                    .iter()
                    .enumerate()
                    .any(|(i, t)| i != ti && t["name"] == n)
                {
                    return Err(WecomError::new(40071, "tag name existed"));
                }
                tags[ti]["name"] = json!(n);
            }
            if let Some(o) = order {
                tags[ti]["order"] = json!(o);
            }
            g.put(&name, &group)?;
            Ok(json!({}))
        }
        .await,
    )
}

async fn del(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    answer(
        async {
            let g = Groups::load(&s, &q, "externalcontact/del_corp_tag").await?;
            let b = body(&raw)?;
            let (tag_ids, group_ids) = (strings(b.get("tag_id")), strings(b.get("group_id")));
            if tag_ids.is_empty() && group_ids.is_empty() {
                return Err(WecomError::new(40058, "tag_id and group_id are both empty"));
            }
            for (name, group) in &g.all {
                if group_ids.iter().any(|i| group["group_id"] == i.as_str()) {
                    g.delete(name)?;
                    continue;
                }
                let tags = group["tags"].as_array().cloned().unwrap_or_default();
                let kept: Vec<Value> = tags
                    .iter()
                    .filter(|t| !tag_ids.iter().any(|i| t["id"] == i.as_str()))
                    .cloned()
                    .collect();
                if kept.len() == tags.len() {
                    continue;
                }
                if kept.is_empty() {
                    // A group without tags does not exist on WeCom.
                    g.delete(name)?;
                } else {
                    let mut group = group.clone();
                    group["tags"] = json!(kept);
                    g.put(name, &group)?;
                }
            }
            Ok(json!({}))
        }
        .await,
    )
}
