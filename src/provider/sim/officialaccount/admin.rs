//! The official accounts' admin API (behind the simulator's bearer token):
//!
//! - `PUT /admin/oa/accounts/{appid}` with an [`OaConfig`] — creates or reconfigures the
//!   account (and its store account, which carries the status); content is kept.
//! - `GET /admin/oa/accounts/{appid}` — [`OaStats`] and the followers
//!   (`[{openid, unionid?}]`).
//! - `POST /admin/oa/accounts/{appid}/expire-tokens` — every token answers 42001 now.
//! - `POST /admin/oa/accounts/{appid}/follow` `{"unionids":[…], "anonymous": n}` — more
//!   followers; answers `{"openids": {unionid: openid}, "anonymous": [openid…]}`.
//! - `POST /admin/oa/accounts/{appid}/news` `{"articles":[…]}` — a news material (the
//!   public API to make one is withdrawn); answers `{"media_id"}`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::HOST;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{post, put};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::apps::{Apps, OaConfig};
use super::now_secs;
use crate::provider::ProviderError;
use crate::provider::sim::state::{ApiError, ApiResult, Shared, bad_request, json_of};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/admin/oa/accounts/{appid}", put(configure).get(stats))
        .route("/admin/oa/accounts/{appid}/expire-tokens", post(expire))
        .route("/admin/oa/accounts/{appid}/follow", post(follow))
        .route("/admin/oa/accounts/{appid}/news", post(news))
}

fn not_found(appid: &str) -> ApiError {
    ProviderError::NotFound(format!("no official account {appid:?}")).into()
}

fn followers(apps: &Apps, appid: &str) -> Vec<Value> {
    apps.app(appid)
        .map(|a| {
            a.content
                .followers()
                .iter()
                .map(|f| match &f.unionid {
                    Some(u) => json!({ "openid": f.openid, "unionid": u }),
                    None => json!({ "openid": f.openid }),
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn configure(State(s): State<Shared>, Path(appid): Path<String>, raw: Bytes) -> ApiResult {
    let config: OaConfig = serde_json::from_slice(&raw)
        .map_err(|e| bad_request(format!("official account config: {e}")))?;
    if config.secret.is_empty() {
        return Err(bad_request(
            "official account config: secret must not be empty",
        ));
    }
    s.store.account(&appid);
    let mut apps = s.officialaccount.apps();
    apps.configure(&appid, config, now_secs());
    let out = json!({ "appid": appid, "followers": followers(&apps, &appid) });
    json_of(StatusCode::OK, &out)
}

async fn stats(State(s): State<Shared>, Path(appid): Path<String>) -> ApiResult {
    let apps = s.officialaccount.apps();
    let app = apps.app(&appid).ok_or_else(|| not_found(&appid))?;
    let mut out = serde_json::to_value(&app.stats)
        .map_err(|e| ProviderError::Unavailable(format!("stats: {e}")))?;
    out["followers"] = json!(followers(&apps, &appid));
    json_of(StatusCode::OK, &out)
}

async fn expire(State(s): State<Shared>, Path(appid): Path<String>) -> ApiResult {
    let mut apps = s.officialaccount.apps();
    if apps.app(&appid).is_none() {
        return Err(not_found(&appid));
    }
    apps.expire_tokens(&appid, now_secs());
    json_of(StatusCode::OK, &json!({ "expired": true }))
}

#[derive(Deserialize)]
struct FollowRequest {
    #[serde(default)]
    unionids: Vec<String>,
    #[serde(default)]
    anonymous: u32,
}

async fn follow(State(s): State<Shared>, Path(appid): Path<String>, raw: Bytes) -> ApiResult {
    let req: FollowRequest =
        serde_json::from_slice(&raw).map_err(|e| bad_request(format!("follow: {e}")))?;
    let mut apps = s.officialaccount.apps();
    let app = apps.app_mut(&appid).ok_or_else(|| not_found(&appid))?;
    let now = now_secs();
    let mut openids = Map::new();
    for u in &req.unionids {
        openids.insert(u.clone(), json!(app.content.follow(Some(u), now)));
    }
    let anonymous: Vec<String> = (0..req.anonymous)
        .map(|_| app.content.follow(None, now))
        .collect();
    json_of(
        StatusCode::OK,
        &json!({ "openids": openids, "anonymous": anonymous }),
    )
}

async fn news(
    State(s): State<Shared>,
    Path(appid): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> ApiResult {
    let body: Value =
        serde_json::from_slice(&raw).map_err(|e| bad_request(format!("news: {e}")))?;
    let articles = body["articles"]
        .as_array()
        .filter(|a| !a.is_empty())
        .cloned()
        .ok_or_else(|| bad_request("news: {\"articles\": [...]} expected"))?;
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let mut apps = s.officialaccount.apps();
    let app = apps.app_mut(&appid).ok_or_else(|| not_found(&appid))?;
    let media_id = app
        .content
        .news_add(articles, &format!("http://{host}"), now_secs());
    json_of(StatusCode::OK, &json!({ "media_id": media_id }))
}
