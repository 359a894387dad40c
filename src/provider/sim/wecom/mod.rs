//! The WeCom server API (`/cgi-bin/…`) over the simulator's accounts: a corp is an
//! account whose id is the corp id, and its departments, members and tags are the
//! account's `department/…`, `member/…` and `tag/…` entities (payloads as in
//! [`crate::provider::wecom::entities`]). So the admin API seeds, freezes and loads a
//! corp as any account, and the Provider API's feed sees what WeCom clients change.
//!
//! Wire format as WeCom's: HTTP 200 with `{"errcode": N, "errmsg": "…"}` for every
//! outcome; `access_token` in the query; tokens from `gettoken` that expire; 45009 past
//! the per-API rate; a frozen corp answers its `freezeErrcode` (default 50003), a
//! banned one 40141. What it must satisfy is an independent client: `e2e_wecom_sim`
//! drives it with wechatpy.
//!
//! Admin (bearer-protected like the rest of `/admin`): `PUT /admin/wecom/corps/{corpid}`
//! (a [`CorpConfig`]), `GET` the same path (counters), `POST …/expire-tokens`.

pub mod callbacks;
mod contacts;
pub mod corp;
mod customers;
pub(super) mod state;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use super::state::{ApiResult, Shared, bad_request, json_of};
use super::store::SimAccount;
use crate::model::AccountState;
use crate::provider::ProviderError;
use crate::provider::wecom::entities::{department_key, department_payload};
use callbacks::CallbackControl;
/// `GET /cgi-bin/user/get` (routed by `server.rs`, which shares the path with official
/// accounts).
pub(super) use contacts::user_get as member_get;
pub use corp::{CallbackTarget, CorpConfig, Corps, Scope, WecomError};

/// The `/cgi-bin` routes (authenticated by access token, not by the simulator's bearer
/// token).
pub(super) fn api_routes() -> Router<Shared> {
    Router::new()
        .route("/cgi-bin/gettoken", get(gettoken))
        .merge(contacts::routes())
        .merge(customers::routes())
}

/// The admin routes (behind the simulator's bearer token).
pub(super) fn admin_routes() -> Router<Shared> {
    Router::new()
        .route("/admin/wecom/corps/{corp}", put(configure).get(stats))
        .route("/admin/wecom/corps/{corp}/expire-tokens", post(expire))
        .route(
            "/admin/wecom/corps/{corp}/drop-callbacks",
            post(drop_callbacks),
        )
}

/// A WeCom answer: errcode 0 and `fields`, or the error, always HTTP 200.
pub(super) fn answer(result: Result<Value, WecomError>) -> Response {
    let body = match result {
        Ok(mut v) => {
            let obj = v.as_object_mut().expect("answers are objects");
            obj.insert("errcode".into(), json!(0));
            obj.entry("errmsg").or_insert(json!("ok"));
            v
        }
        Err(e) => json!({ "errcode": e.code, "errmsg": e.msg }),
    };
    axum::Json(body).into_response()
}

/// A checked call: the corp's account, once the token, the rate, injected faults and
/// the corp's status let it through.
pub(super) struct Call {
    pub account: Arc<SimAccount>,
}

/// What a failed store operation answers on the wire.
pub(super) fn store_error(freeze_errcode: i64, e: ProviderError) -> WecomError {
    match e {
        ProviderError::AccountFrozen { .. } => frozen(freeze_errcode),
        ProviderError::AccountBanned { .. } => WecomError::new(40141, "corp account abnormal"),
        ProviderError::RateLimited { .. } => WecomError::new(45009, "api freq out of limit"),
        ProviderError::Rejected(m) => WecomError::new(40058, &format!("invalid parameter: {m}")),
        _ => WecomError::new(-1, "system busy"),
    }
}

fn frozen(code: i64) -> WecomError {
    let text = match code {
        50003 => "app is disabled",
        48006 => "api forbidden, app permission revoked",
        40141 => "corp account abnormal",
        _ => "account restricted",
    };
    WecomError::new(code, text)
}

impl Call {
    /// Checks a call to `api` needing `scope`.
    pub async fn enter(
        s: &Shared,
        q: &HashMap<String, String>,
        api: &str,
        scope: Scope,
    ) -> Result<(Call, i64), WecomError> {
        let token = q.get("access_token").map(String::as_str).unwrap_or("");
        let (corp, freeze_errcode) = {
            let mut corps = s.wecom.corps();
            let now = Instant::now();
            let (corp, granted) = corps.check_token(token, now)?;
            corps.admit(&corp, api, now)?;
            if granted != scope {
                return Err(WecomError::new(48002, "api forbidden"));
            }
            let freeze = corps.config(&corp).map_or(50003, |c| c.freeze_errcode);
            (corp, freeze)
        };
        let account = s.store.account(&corp);
        account
            .admit()
            .await
            .map_err(|e| store_error(freeze_errcode, e))?;
        match account.status().status {
            AccountState::Frozen => return Err(frozen(freeze_errcode)),
            AccountState::Banned => return Err(WecomError::new(40141, "corp account abnormal")),
            AccountState::Active | AccountState::Restricted => {}
        }
        Ok((Call { account }, freeze_errcode))
    }
}

async fn gettoken(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let corp = q.get("corpid").map(String::as_str).unwrap_or("");
    let secret = q.get("corpsecret").map(String::as_str).unwrap_or("");
    if corp.is_empty() {
        return answer(Err(WecomError::new(41002, "corpid missing")));
    }
    let issued = s.wecom.corps().gettoken(corp, secret, Instant::now());
    answer(issued.map(|(token, ttl)| json!({ "access_token": token, "expires_in": ttl })))
}

async fn configure(State(s): State<Shared>, Path(corp): Path<String>, raw: Bytes) -> ApiResult {
    let config: CorpConfig =
        serde_json::from_slice(&raw).map_err(|e| bad_request(format!("corp config: {e}")))?;
    if config.secret.is_empty() {
        return Err(bad_request("corp config: secret must not be empty"));
    }
    // Every corp has its root department, id 1, named after the corp.
    let account = s.store.account(&corp);
    let root = department_key(1);
    if account.get(&root)?.is_none() {
        let payload = department_payload(&json!({"name": corp, "parentid": 0, "order": 100000000}));
        account.apply_batch(
            vec![(root, Some(super::store::Payload::new(payload)?))],
            Some("wecom-admin"),
        );
    }
    // A new configuration replaces the corp's callback sender.
    let mut senders = s.wecom.callbacks();
    if let Some((task, _)) = senders.remove(&corp) {
        task.abort();
    }
    if let Some(target) = config.callback.clone() {
        let control = Arc::new(CallbackControl::default());
        let task = callbacks::spawn(account, target, control.clone(), s.http.clone())
            .map_err(|e| bad_request(format!("corp config: callback: {e}")))?;
        senders.insert(corp.clone(), (task, control));
    }
    drop(senders);
    s.wecom.corps().configure(&corp, config);
    json_of(axum::http::StatusCode::OK, &json!({ "corp": corp }))
}

async fn stats(State(s): State<Shared>, Path(corp): Path<String>) -> ApiResult {
    let corps = s.wecom.corps();
    if corps.config(&corp).is_none() {
        return Err(ProviderError::NotFound(format!("no WeCom corp {corp:?}")).into());
    }
    let callbacks = s
        .wecom
        .callbacks()
        .get(&corp)
        .map(|(_, c)| c.stats())
        .unwrap_or_default();
    let mut out = serde_json::to_value(corps.stats(&corp))
        .map_err(|e| ProviderError::Unavailable(format!("stats: {e}")))?;
    out["callbacks"] = serde_json::to_value(callbacks).unwrap_or_default();
    json_of(axum::http::StatusCode::OK, &out)
}

async fn drop_callbacks(
    State(s): State<Shared>,
    Path(corp): Path<String>,
    raw: Bytes,
) -> ApiResult {
    let body: Value =
        serde_json::from_slice(&raw).map_err(|e| bad_request(format!("drop-callbacks: {e}")))?;
    let count = body["count"]
        .as_u64()
        .ok_or_else(|| bad_request("drop-callbacks: {\"count\": N} expected"))?;
    match s.wecom.callbacks().get(&corp) {
        Some((_, control)) => control.drop_next(count),
        None => {
            return Err(ProviderError::NotFound(format!(
                "corp {corp:?} has no callback configured"
            ))
            .into());
        }
    }
    json_of(axum::http::StatusCode::OK, &json!({ "dropNext": count }))
}

async fn expire(State(s): State<Shared>, Path(corp): Path<String>) -> ApiResult {
    s.wecom.corps().expire_tokens(&corp, Instant::now());
    json_of(axum::http::StatusCode::OK, &json!({ "expired": true }))
}
