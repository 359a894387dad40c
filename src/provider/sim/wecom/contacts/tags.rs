//! tag/list, get, create, update, delete, addtagusers, deltagusers.

use std::collections::{BTreeSet, HashMap};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Response;
use serde_json::{Value, json};

use super::*;
use crate::model::EntityKind;
use crate::provider::sim::state::Shared;
use crate::provider::sim::wecom::{WecomError, answer};
use crate::provider::wecom::entities::{member_key, tag_key, tag_payload};

pub(super) fn tag_users(t: &Value) -> Vec<String> {
    t["userlist"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn tag_parties(t: &Value) -> Vec<u64> {
    t["partylist"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

fn tags(c: &Corp) -> Result<Vec<(u64, Value)>, WecomError> {
    let mut out: Vec<(u64, Value)> = c
        .all(EntityKind::Tag)?
        .into_iter()
        .filter_map(|(k, v)| k.id().parse().ok().map(|id| (id, v)))
        .collect();
    out.sort_by_key(|(id, _)| *id);
    Ok(out)
}

fn tag_name_ok(name: &str) -> Result<(), WecomError> {
    if name.is_empty() || name.chars().count() > 32 {
        return Err(WecomError::new(40072, "invalid tag name length"));
    }
    Ok(())
}

pub(super) async fn tag_list(State(s): State<Shared>, Query(q): Q) -> Response {
    answer(
        async {
            let c = corp(&s, &q, "tag/list").await?;
            let list: Vec<Value> = tags(&c)?
                .iter()
                .map(|(id, t)| json!({ "tagid": id, "tagname": t["tagname"] }))
                .collect();
            Ok(json!({ "taglist": list }))
        }
        .await,
    )
}

pub(super) async fn tag_get(State(s): State<Shared>, Query(q): Q) -> Response {
    answer(
        async {
            let c = corp(&s, &q, "tag/get").await?;
            let id = query_id(&q, "tagid").ok_or(WecomError::new(40068, "invalid tagid"))?;
            let t = c
                .get(&tag_key(id))?
                .ok_or(WecomError::new(40068, "invalid tagid"))?;
            let mut users = Vec::new();
            for u in tag_users(&t) {
                let name = match member_key(&u) {
                    Some(k) => c.get(&k)?.map(|m| m["name"].clone()),
                    None => None,
                };
                users.push(json!({ "userid": u, "name": name.unwrap_or(json!("")) }));
            }
            Ok(json!({ "tagname": t["tagname"], "userlist": users, "partylist": tag_parties(&t) }))
        }
        .await,
    )
}

pub(super) async fn tag_create(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    answer(
        async {
            let c = corp(&s, &q, "tag/create").await?;
            let b = body(&raw)?;
            let name = b.get("tagname").and_then(Value::as_str).unwrap_or("");
            tag_name_ok(name)?;
            let all = tags(&c)?;
            if all.iter().any(|(_, t)| t["tagname"] == name) {
                return Err(WecomError::new(40071, "tag name existed"));
            }
            let id = match as_id(b.get("tagid")).filter(|id| *id > 0) {
                Some(id) if all.iter().any(|(i, _)| *i == id) => {
                    return Err(WecomError::new(40068, "tagid existed"));
                }
                Some(id) => id,
                None => all.iter().map(|(i, _)| *i).max().unwrap_or(0) + 1,
            };
            c.put(tag_key(id), tag_payload(name, Vec::new(), Vec::new()))?;
            Ok(json!({ "errmsg": "created", "tagid": id }))
        }
        .await,
    )
}

pub(super) async fn tag_update(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    answer(
        async {
            let c = corp(&s, &q, "tag/update").await?;
            let b = body(&raw)?;
            let id = as_id(b.get("tagid")).ok_or(WecomError::new(40068, "invalid tagid"))?;
            let name = b.get("tagname").and_then(Value::as_str).unwrap_or("");
            tag_name_ok(name)?;
            let t = c
                .get(&tag_key(id))?
                .ok_or(WecomError::new(40068, "invalid tagid"))?;
            if tags(&c)?
                .iter()
                .any(|(i, other)| *i != id && other["tagname"] == name)
            {
                return Err(WecomError::new(40071, "tag name existed"));
            }
            c.put(
                tag_key(id),
                tag_payload(name, tag_users(&t), tag_parties(&t)),
            )?;
            Ok(json!({ "errmsg": "updated" }))
        }
        .await,
    )
}

pub(super) async fn tag_delete(State(s): State<Shared>, Query(q): Q) -> Response {
    answer(
        async {
            let c = corp(&s, &q, "tag/delete").await?;
            let id = query_id(&q, "tagid").ok_or(WecomError::new(40068, "invalid tagid"))?;
            if c.get(&tag_key(id))?.is_none() {
                return Err(WecomError::new(40068, "invalid tagid"));
            }
            c.delete(&tag_key(id))?;
            Ok(json!({ "errmsg": "deleted" }))
        }
        .await,
    )
}

/// addtagusers / deltagusers: applies the valid part and names the invalid part
/// (`invalidlist` "a|b", `invalidparty` [ids]); all invalid is errcode 40070.
pub(super) async fn tag_members(
    s: Shared,
    q: HashMap<String, String>,
    raw: Bytes,
    add: bool,
) -> Answer {
    let api = if add {
        "tag/addtagusers"
    } else {
        "tag/deltagusers"
    };
    let c = corp(&s, &q, api).await?;
    let b = body(&raw)?;
    let id = as_id(b.get("tagid")).ok_or(WecomError::new(40068, "invalid tagid"))?;
    let t = c
        .get(&tag_key(id))?
        .ok_or(WecomError::new(40068, "invalid tagid"))?;
    let users: Vec<String> = b
        .get("userlist")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let parties: Vec<u64> = b
        .get("partylist")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| as_id(Some(v))).collect())
        .unwrap_or_default();
    if users.is_empty() && parties.is_empty() {
        return Err(WecomError::new(
            40031,
            "userlist and partylist are both empty",
        ));
    }
    let (mut bad_users, mut bad_parties) = (Vec::new(), Vec::new());
    let mut cur_users: BTreeSet<String> = tag_users(&t).into_iter().collect();
    let mut cur_parties: BTreeSet<u64> = tag_parties(&t).into_iter().collect();
    for u in users {
        let exists = match member_key(&u) {
            Some(k) => c.get(&k)?.is_some(),
            None => false,
        };
        if !exists {
            bad_users.push(u);
        } else if add {
            cur_users.insert(u);
        } else {
            cur_users.remove(&u);
        }
    }
    for p in parties {
        if !c.department_exists(p)? {
            bad_parties.push(p);
        } else if add {
            cur_parties.insert(p);
        } else {
            cur_parties.remove(&p);
        }
    }
    let given = b
        .get("userlist")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
        + b.get("partylist")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
    if bad_users.len() + bad_parties.len() == given {
        return Err(WecomError::new(40070, "all list invalid"));
    }
    let name = t["tagname"].as_str().unwrap_or("").to_string();
    c.put(
        tag_key(id),
        tag_payload(
            &name,
            cur_users.into_iter().collect(),
            cur_parties.into_iter().collect(),
        ),
    )?;
    let mut out = json!({ "errmsg": if add { "ok" } else { "deleted" } });
    if !bad_users.is_empty() {
        out["invalidlist"] = json!(bad_users.join("|"));
    }
    if !bad_parties.is_empty() {
        out["invalidparty"] = json!(bad_parties);
    }
    Ok(out)
}

pub(super) async fn tag_add_users(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    answer(tag_members(s, q, raw, true).await)
}

pub(super) async fn tag_del_users(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    answer(tag_members(s, q, raw, false).await)
}
