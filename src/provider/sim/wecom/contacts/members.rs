//! user/list_id, get, simplelist, list, create, update, delete.

use std::collections::{BTreeSet, HashMap};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::tags::{tag_parties, tag_users};
use super::*;
use crate::model::EntityKind;
use crate::provider::sim::state::Shared;
use crate::provider::sim::wecom::{WecomError, answer};
use crate::provider::wecom::entities::{member_key, member_payload, tag_payload};

/// user/list_id's cursor: the hex of the last userid returned (opaque to clients).
fn decode_cursor(cursor: &str) -> Option<String> {
    let bytes = hex::decode(cursor).ok()?;
    String::from_utf8(bytes).ok().filter(|u| valid_userid(u))
}

pub(super) async fn user_list_id(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    answer(
        async {
            let c = corp(&s, &q, "user/list_id").await?;
            let b = if raw.is_empty() {
                Map::new()
            } else {
                body(&raw)?
            };
            let limit = match b.get("limit").and_then(Value::as_u64) {
                None => LIST_ID_MAX,
                Some(n) if (1..=LIST_ID_MAX as u64).contains(&n) => n as usize,
                Some(_) => return Err(WecomError::new(40058, "invalid limit")),
            };
            let after = match b
                .get("cursor")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                None => None,
                Some(cur) => {
                    Some(decode_cursor(cur).ok_or(WecomError::new(50100, "invalid cursor"))?)
                }
            };
            // Only the page's payloads are parsed (a corp may hold 100k members).
            let members = c
                .account
                .of_kind(EntityKind::Member)
                .map_err(|e| c.err(e))?;
            let page: Vec<_> = members
                .iter()
                .filter(|(k, _)| after.as_deref().is_none_or(|a| k.id() > a))
                .take(limit + 1)
                .collect();
            let more = page.len() > limit;
            let page = &page[..page.len().min(limit)];
            let rows: Vec<Value> = page
                .iter()
                .flat_map(|(k, p)| {
                    member_departments(&p.value())
                        .into_iter()
                        .map(move |d| json!({ "userid": k.id(), "department": d }))
                })
                .collect();
            let next = match (more, page.last()) {
                (true, Some((k, _))) => hex::encode(k.id()),
                _ => String::new(),
            };
            Ok(json!({ "next_cursor": next, "dept_user": rows }))
        }
        .await,
    )
}

fn member_view(userid: &str, m: &Value) -> Value {
    let mut v = m.as_object().cloned().unwrap_or_default();
    v.insert("userid".into(), json!(userid));
    // Server-owned fields, as a real corp answers them.
    v.insert("status".into(), json!(1));
    v.insert("avatar".into(), json!(""));
    v.insert("thumb_avatar".into(), json!(""));
    Value::Object(v)
}

pub(in crate::provider::sim) async fn user_get(State(s): State<Shared>, Query(q): Q) -> Response {
    answer(
        async {
            let c = corp(&s, &q, "user/get").await?;
            let userid = q.get("userid").map(String::as_str).unwrap_or("");
            let m = member_key(userid)
                .map(|k| c.get(&k))
                .transpose()?
                .flatten()
                .ok_or(WecomError::new(60111, "userid not found"))?;
            Ok(member_view(userid, &m))
        }
        .await,
    )
}

/// user/simplelist and user/list: the members of a department (and its children).
pub(super) async fn department_users(
    s: Shared,
    q: HashMap<String, String>,
    api: &str,
    full: bool,
) -> Answer {
    let c = corp(&s, &q, api).await?;
    let dept = query_id(&q, "department_id").ok_or(WecomError::new(60123, "invalid party id"))?;
    if !c.department_exists(dept)? {
        return Err(WecomError::new(60123, "invalid party id"));
    }
    let depts = if q.get("fetch_child").map(String::as_str) == Some("1") {
        descendants(&c.departments()?, dept)
    } else {
        BTreeSet::from([dept])
    };
    let list: Vec<Value> = c
        .members()?
        .iter()
        .filter(|(_, m)| member_departments(m).iter().any(|d| depts.contains(d)))
        .map(|(u, m)| {
            if full {
                member_view(u, m)
            } else {
                json!({ "userid": u, "name": m["name"], "department": m["department"] })
            }
        })
        .collect();
    Ok(json!({ "userlist": list }))
}

pub(super) async fn user_simplelist(State(s): State<Shared>, Query(q): Q) -> Response {
    answer(department_users(s, q, "user/simplelist", false).await)
}

pub(super) async fn user_list(State(s): State<Shared>, Query(q): Q) -> Response {
    answer(department_users(s, q, "user/list", true).await)
}

/// Checks a member's departments exist; WeCom answers 60003 otherwise.
fn check_departments(c: &Corp, m: &Value) -> Result<(), WecomError> {
    let depts = member_departments(m);
    if depts.is_empty() {
        return Err(WecomError::new(60127, "missing department"));
    }
    for d in depts {
        if !c.department_exists(d)? {
            return Err(WecomError::new(60003, "department not found"));
        }
    }
    Ok(())
}

pub(super) async fn user_create(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    answer(
        async {
            let c = corp(&s, &q, "user/create").await?;
            let b = Value::Object(body(&raw)?);
            let userid = b["userid"].as_str().unwrap_or("");
            let key = member_key(userid)
                .filter(|_| valid_userid(userid))
                .ok_or(WecomError::new(40003, "invalid userid"))?;
            let name = b["name"].as_str().unwrap_or("");
            if name.is_empty() || name.chars().count() > 64 {
                return Err(WecomError::new(60112, "invalid name"));
            }
            if c.get(&key)?.is_some() {
                return Err(WecomError::new(60102, "userid existed"));
            }
            check_departments(&c, &b)?;
            c.put(key, member_payload(&b))?;
            Ok(json!({ "errmsg": "created" }))
        }
        .await,
    )
}

pub(super) async fn user_update(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    answer(
        async {
            let c = corp(&s, &q, "user/update").await?;
            let b = body(&raw)?;
            let userid = b.get("userid").and_then(Value::as_str).unwrap_or("");
            let key = member_key(userid).ok_or(WecomError::new(60111, "userid not found"))?;
            let mut m = c
                .get(&key)?
                .ok_or(WecomError::new(60111, "userid not found"))?;
            for (f, v) in &b {
                if f != "userid" && !v.is_null() {
                    m[f.as_str()] = v.clone();
                }
            }
            if let Some(name) = m["name"].as_str()
                && (name.is_empty() || name.chars().count() > 64)
            {
                return Err(WecomError::new(60112, "invalid name"));
            }
            check_departments(&c, &m)?;
            c.put(key, member_payload(&m))?;
            Ok(json!({ "errmsg": "updated" }))
        }
        .await,
    )
}

pub(super) async fn user_delete(State(s): State<Shared>, Query(q): Q) -> Response {
    answer(
        async {
            let c = corp(&s, &q, "user/delete").await?;
            let userid = q.get("userid").map(String::as_str).unwrap_or("");
            let key = member_key(userid).ok_or(WecomError::new(60111, "userid not found"))?;
            if c.get(&key)?.is_none() {
                return Err(WecomError::new(60111, "userid not found"));
            }
            // A deleted member leaves every tag too.
            for (tk, t) in c.all(EntityKind::Tag)? {
                let users = tag_users(&t);
                if users.iter().any(|u| u == userid) {
                    let rest = users.into_iter().filter(|u| u != userid).collect();
                    let parties = tag_parties(&t);
                    c.put(
                        tk,
                        tag_payload(t["tagname"].as_str().unwrap_or(""), rest, parties),
                    )?;
                }
            }
            c.delete(&key)?;
            Ok(json!({ "errmsg": "deleted" }))
        }
        .await,
    )
}
