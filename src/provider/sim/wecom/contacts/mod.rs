//! The simulated corp's contacts API: departments, members and tags, as WeCom's
//! "通讯录管理" documents them (request bodies, answers, errcodes) and wechatpy calls them.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Query;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::{Call, Scope, WecomError, store_error};
use crate::model::{EntityKey, EntityKind};
use crate::provider::sim::state::Shared;
use crate::provider::sim::store::{Payload, SimAccount};
use crate::provider::wecom::entities::department_key;

pub(super) type Q = Query<HashMap<String, String>>;
pub(super) type Answer = Result<Value, WecomError>;

pub(super) const ORIGIN: &str = "wecom-api";
/// user/list_id pages at most this many members (WeCom: "取值范围 1 ~ 10000").
pub(super) const LIST_ID_MAX: usize = 10_000;

mod departments;
mod members;
mod tags;

/// `GET /cgi-bin/user/get`, routed by `server.rs` (official accounts share the path).
pub(in crate::provider::sim) use members::user_get;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/cgi-bin/department/list",
            get(departments::department_list),
        )
        .route("/cgi-bin/department/get", get(departments::department_get))
        .route(
            "/cgi-bin/department/create",
            post(departments::department_create),
        )
        .route(
            "/cgi-bin/department/update",
            post(departments::department_update),
        )
        .route(
            "/cgi-bin/department/delete",
            get(departments::department_delete),
        )
        .route("/cgi-bin/user/list_id", post(members::user_list_id))
        .route("/cgi-bin/user/simplelist", get(members::user_simplelist))
        .route("/cgi-bin/user/list", get(members::user_list))
        .route("/cgi-bin/user/create", post(members::user_create))
        .route("/cgi-bin/user/update", post(members::user_update))
        .route("/cgi-bin/user/delete", get(members::user_delete))
        .route("/cgi-bin/tag/list", get(tags::tag_list))
        .route("/cgi-bin/tag/get", get(tags::tag_get))
        .route("/cgi-bin/tag/create", post(tags::tag_create))
        .route("/cgi-bin/tag/update", post(tags::tag_update))
        .route("/cgi-bin/tag/delete", get(tags::tag_delete))
        .route("/cgi-bin/tag/addtagusers", post(tags::tag_add_users))
        .route("/cgi-bin/tag/deltagusers", post(tags::tag_del_users))
}

// ---- plumbing ----

/// A store operation under a call: provider errors become WeCom's.
pub(super) struct Corp {
    pub(super) account: Arc<SimAccount>,
    pub(super) freeze: i64,
}

pub(super) async fn corp(
    s: &Shared,
    q: &HashMap<String, String>,
    api: &str,
) -> Result<Corp, WecomError> {
    let (Call { account }, freeze) = Call::enter(s, q, api, Scope::Contacts).await?;
    Ok(Corp { account, freeze })
}

impl Corp {
    pub(super) fn err(&self, e: crate::provider::ProviderError) -> WecomError {
        store_error(self.freeze, e)
    }

    pub(super) fn all(&self, kind: EntityKind) -> Result<Vec<(EntityKey, Value)>, WecomError> {
        let items = self.account.of_kind(kind).map_err(|e| self.err(e))?;
        Ok(items.into_iter().map(|(k, p)| (k, p.value())).collect())
    }

    pub(super) fn get(&self, key: &EntityKey) -> Result<Option<Value>, WecomError> {
        let p = self.account.get(key).map_err(|e| self.err(e))?;
        Ok(p.map(|p| p.value()))
    }

    pub(super) fn put(&self, key: EntityKey, payload: Value) -> Result<(), WecomError> {
        let p = Payload::new(payload).map_err(|e| self.err(e))?;
        self.account
            .put(key, p, Some(ORIGIN))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    pub(super) fn delete(&self, key: &EntityKey) -> Result<(), WecomError> {
        self.account
            .delete(key, Some(ORIGIN))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    pub(super) fn departments(&self) -> Result<Vec<(u64, Value)>, WecomError> {
        let mut out: Vec<(u64, Value)> = self
            .all(EntityKind::Department)?
            .into_iter()
            .filter_map(|(k, v)| k.id().parse().ok().map(|id| (id, v)))
            .collect();
        out.sort_by_key(|(id, _)| *id);
        Ok(out)
    }

    pub(super) fn department_exists(&self, id: u64) -> Result<bool, WecomError> {
        Ok(self.get(&department_key(id))?.is_some())
    }

    pub(super) fn members(&self) -> Result<Vec<(String, Value)>, WecomError> {
        Ok(self
            .all(EntityKind::Member)?
            .into_iter()
            .map(|(k, v)| (k.id().to_string(), v))
            .collect())
    }
}

pub(super) fn body(raw: &Bytes) -> Result<Map<String, Value>, WecomError> {
    match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(WecomError::new(40058, "invalid json, an object expected")),
        Err(_) if raw.is_empty() => Err(WecomError::new(44004, "empty post data")),
        Err(_) => Err(WecomError::new(40058, "invalid json")),
    }
}

/// An id as WeCom takes it: a JSON number, or a decimal string (query parameters).
pub(super) fn as_id(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn query_id(q: &HashMap<String, String>, name: &str) -> Option<u64> {
    q.get(name).and_then(|s| s.trim().parse().ok())
}

/// A department and every department under it.
pub(super) fn descendants(all: &[(u64, Value)], root: u64) -> BTreeSet<u64> {
    let mut keep = BTreeSet::from([root]);
    loop {
        let before = keep.len();
        for (id, d) in all {
            if as_id(d.get("parentid")).is_some_and(|p| keep.contains(&p)) {
                keep.insert(*id);
            }
        }
        if keep.len() == before {
            return keep;
        }
    }
}

pub(super) fn department_view(id: u64, payload: &Value) -> Value {
    let mut v = payload.as_object().cloned().unwrap_or_default();
    v.insert("id".into(), json!(id));
    v.entry("name_en").or_insert(json!(""));
    v.insert("department_leader".into(), json!([]));
    Value::Object(v)
}

pub(super) fn member_departments(member: &Value) -> Vec<u64> {
    member["department"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// Userids WeCom accepts: 1–64 of letters, digits, `-`, `_`, `.`, `@`.
pub(super) fn valid_userid(u: &str) -> bool {
    (1..=64).contains(&u.len())
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
}
