//! The Agora Chat apps' admin API (behind the simulator's bearer token):
//!
//! - `PUT /admin/agora/apps/{org}/{app}` with an [`AgoraConfig`] (`{"appId","appCertificate",
//!   "ratePerSecond"?}`) — creates or reconfigures the app and its store account
//!   `{org}#{app}` (the App Key, which carries the status and faults); users and groups
//!   are kept. Answers `{"appKey","orgName","appName"}`.
//! - `GET /admin/agora/apps/{org}/{app}` — [`AgoraStats`](super::AgoraStats)
//!   (`{"calls":{api:n},"rateLimited":n,"unauthorized":n}`) and `"users"`, `"groups"`
//!   (how many there are), `"callbacksSent"`, `"callbacksFailed"`.
//! - `POST /admin/agora/apps/{org}/{app}/login` `{"username","os"?}` — a device of the
//!   user logs in: the app's `login` callback is sent (400 without a callback rule).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{post, put};
use serde_json::json;

use super::apps::{AgoraConfig, app_key};
use super::callbacks;
use crate::provider::ProviderError;
use crate::provider::sim::state::{ApiResult, Shared, bad_request, json_of};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/admin/agora/apps/{org}/{app}", put(configure).get(stats))
        .route("/admin/agora/apps/{org}/{app}/login", post(login))
}

async fn configure(
    State(s): State<Shared>,
    Path((org, app)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult {
    let config: AgoraConfig =
        serde_json::from_slice(&raw).map_err(|e| bad_request(format!("agora app config: {e}")))?;
    config
        .validate()
        .map_err(|e| bad_request(format!("agora app config: {e}")))?;
    let key = app_key(&org, &app);
    s.store.account(&key);
    s.agora.apps().configure(&org, &app, config);
    json_of(
        StatusCode::OK,
        &json!({ "appKey": key, "orgName": org, "appName": app }),
    )
}

async fn stats(State(s): State<Shared>, Path((org, app)): Path<(String, String)>) -> ApiResult {
    let apps = s.agora.apps();
    let a = apps
        .app(&org, &app)
        .ok_or_else(|| ProviderError::NotFound(format!("no agora app {org}#{app}")))?;
    let mut out = serde_json::to_value(&a.stats)
        .map_err(|e| ProviderError::Unavailable(format!("stats: {e}")))?;
    out["users"] = json!(a.chat.user_count());
    out["groups"] = json!(a.chat.group_count());
    out["callbacksSent"] = json!(a.delivered.sent());
    out["callbacksFailed"] = json!(a.delivered.failed());
    json_of(StatusCode::OK, &out)
}

/// A device of `username` logs in: the app sends its `login` callback.
async fn login(
    State(s): State<Shared>,
    Path((org, app)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult {
    #[derive(serde::Deserialize)]
    struct Login {
        username: String,
        #[serde(default = "ios")]
        os: String,
    }
    fn ios() -> String {
        "ios".into()
    }
    let l: Login =
        serde_json::from_slice(&raw).map_err(|e| bad_request(format!("agora login: {e}")))?;
    let apps = s.agora.apps();
    let a = apps
        .app(&org, &app)
        .ok_or_else(|| ProviderError::NotFound(format!("no agora app {org}#{app}")))?;
    let Some(rule) = &a.config.callback else {
        return Err(bad_request(format!(
            "agora app {org}#{app} has no callback rule"
        )));
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let body = callbacks::login_body(
        &a.key(),
        &l.username,
        &l.os,
        &rule.secret,
        now,
        &a.delivered,
    );
    callbacks::send(&s.http, &rule.url, body, a.delivered.clone());
    json_of(StatusCode::OK, &json!({ "sent": true }))
}
