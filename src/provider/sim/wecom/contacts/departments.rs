//! department/list, get, create, update, delete.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::*;
use crate::provider::sim::state::Shared;
use crate::provider::sim::wecom::{WecomError, answer};
use crate::provider::wecom::entities::{department_key, department_payload};

pub(super) async fn department_list(State(s): State<Shared>, Query(q): Q) -> Response {
    answer(
        async {
            let c = corp(&s, &q, "department/list").await?;
            let all = c.departments()?;
            let wanted: Vec<&(u64, Value)> = match query_id(&q, "id") {
                None => all.iter().collect(),
                Some(root) => {
                    if !all.iter().any(|(id, _)| *id == root) {
                        return Err(WecomError::new(60123, "invalid party id"));
                    }
                    let keep = descendants(&all, root);
                    all.iter().filter(|(id, _)| keep.contains(id)).collect()
                }
            };
            let list: Vec<Value> = wanted
                .iter()
                .map(|(id, d)| department_view(*id, d))
                .collect();
            Ok(json!({ "department": list }))
        }
        .await,
    )
}

pub(super) async fn department_get(State(s): State<Shared>, Query(q): Q) -> Response {
    answer(
        async {
            let c = corp(&s, &q, "department/get").await?;
            let id = query_id(&q, "id").ok_or(WecomError::new(60123, "invalid party id"))?;
            let d = c
                .get(&department_key(id))?
                .ok_or(WecomError::new(60123, "invalid party id"))?;
            Ok(json!({ "department": department_view(id, &d) }))
        }
        .await,
    )
}

pub(super) async fn department_create(
    State(s): State<Shared>,
    Query(q): Q,
    raw: Bytes,
) -> Response {
    answer(
        async {
            let c = corp(&s, &q, "department/create").await?;
            let b = body(&raw)?;
            let name = b.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() || name.chars().count() > 64 {
                return Err(WecomError::new(60001, "invalid department name length"));
            }
            let parent = as_id(b.get("parentid"))
                .ok_or(WecomError::new(60004, "parent department not found"))?;
            if !c.department_exists(parent)? {
                return Err(WecomError::new(60004, "parent department not found"));
            }
            let all = c.departments()?;
            if all
                .iter()
                .any(|(_, d)| d["name"] == name && as_id(d.get("parentid")) == Some(parent))
            {
                return Err(WecomError::new(60008, "department existed"));
            }
            let id = match as_id(b.get("id")) {
                Some(id) if all.iter().any(|(i, _)| *i == id) => {
                    return Err(WecomError::new(60008, "department existed"));
                }
                Some(id) => id,
                None => all.iter().map(|(i, _)| *i).max().unwrap_or(1) + 1,
            };
            let mut d = Map::new();
            d.insert("name".into(), json!(name));
            d.insert("parentid".into(), json!(parent));
            d.insert("order".into(), b.get("order").cloned().unwrap_or(json!(0)));
            if let Some(en) = b.get("name_en").filter(|v| !v.is_null()) {
                d.insert("name_en".into(), en.clone());
            }
            c.put(department_key(id), department_payload(&Value::Object(d)))?;
            Ok(json!({ "errmsg": "created", "id": id }))
        }
        .await,
    )
}

pub(super) async fn department_update(
    State(s): State<Shared>,
    Query(q): Q,
    raw: Bytes,
) -> Response {
    answer(
        async {
            let c = corp(&s, &q, "department/update").await?;
            let b = body(&raw)?;
            let id = as_id(b.get("id")).ok_or(WecomError::new(60003, "department not found"))?;
            let mut d = c
                .get(&department_key(id))?
                .ok_or(WecomError::new(60003, "department not found"))?;
            // The root department (1) has parent 0; no other department may.
            if let Some(parent) = as_id(b.get("parentid"))
                && !(id == 1 && parent == 0)
                && (parent == id || parent == 0 || !c.department_exists(parent)?)
            {
                return Err(WecomError::new(60004, "parent department not found"));
            }
            for f in ["name", "name_en", "parentid", "order"] {
                if let Some(v) = b.get(f).filter(|v| !v.is_null()) {
                    d[f] = v.clone();
                }
            }
            c.put(department_key(id), department_payload(&d))?;
            Ok(json!({ "errmsg": "updated" }))
        }
        .await,
    )
}

pub(super) async fn department_delete(State(s): State<Shared>, Query(q): Q) -> Response {
    answer(
        async {
            let c = corp(&s, &q, "department/delete").await?;
            let id = query_id(&q, "id").ok_or(WecomError::new(60003, "department not found"))?;
            if id == 1 {
                return Err(WecomError::new(
                    60007,
                    "not allow to delete root department",
                ));
            }
            if !c.department_exists(id)? {
                return Err(WecomError::new(60003, "department not found"));
            }
            if c.departments()?
                .iter()
                .any(|(_, d)| as_id(d.get("parentid")) == Some(id))
            {
                return Err(WecomError::new(60006, "department contains sub-department"));
            }
            if c.members()?
                .iter()
                .any(|(_, m)| member_departments(m).contains(&id))
            {
                return Err(WecomError::new(60005, "department contains user"));
            }
            c.delete(&department_key(id))?;
            Ok(json!({ "errmsg": "deleted" }))
        }
        .await,
    )
}
