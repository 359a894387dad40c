//! The Agora Chat REST API (users and groups) under `/{org_name}/{app_name}/…`, as Agora
//! documents it and as Easemob, whose API it is, documents the same paths and bodies
//! (facts and their sources in `apps.rs`, `chat.rs`, `groups.rs`).
//!
//! Like the official accounts, an app's users and groups are not in the entity store:
//! the server names groups, and users carry server state (`activated`). The store account
//! `{org}#{app}` (the App Key) only carries the status and the injected faults, so
//! `POST /admin/accounts/{org}#{app}/status` suspends an app — Frozen answers 403
//! `forbidden_service_operation` "Service operation not allowed" (Easemob's answer for a
//! banned app or user); Banned answers 401 `unauthorized` "Unable to authenticate
//! (OAuth)" to every call (how a deleted app answers is [UNCONFIRMED]) — and
//! `…/faults` make calls fail (a rate-limit fault answers 429 `reach_limit`).
//!
//! Wire format: every success is HTTP 200 and the envelope `{"action","application",
//! "path","uri","entities":[…],"data"?,"timestamp","duration","organization",
//! "applicationName","cursor"?,"count"?,"params"?}`; every error its HTTP status and
//! `{"error","exception","timestamp","duration":0,"error_description"}`.
//!
//! Checked in this order: the app exists (404), the bearer token (401), the app's status
//! (401/403), the injected faults, the per-second budget (429).
//!
//! Admin (bearer-protected like the rest of `/admin`): `PUT /admin/agora/apps/{org}/{app}`
//! (an [`AgoraConfig`], with the app's callback rule if any), `GET` the same path
//! (counters), `POST …/login` (a device login, sent as a callback).
//!
//! With a callback rule, every group operation sends its post-delivery callback
//! ([`callbacks`]).

mod admin;
mod api;
pub mod apps;
pub mod callbacks;
pub mod chat;
pub mod errors;
pub mod group;
pub mod groups;
#[cfg(test)]
mod http_tests;
mod members;
pub(in crate::provider::sim) mod state;
#[cfg(test)]
mod tests;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::header::{AUTHORIZATION, HOST};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::state::Shared;
use crate::model::AccountState;
use crate::provider::ProviderError;
pub use apps::{AgoraConfig, AgoraStats, Apps, ChatError, app_key};
pub use chat::{Answer, Chat};
pub use state::AgoraSim;

/// The REST routes (authenticated by the app token, not by the simulator's token).
pub(super) fn api_routes() -> Router<Shared> {
    api::routes()
}

/// The admin routes (behind the simulator's bearer token).
pub(super) fn admin_routes() -> Router<Shared> {
    admin::routes()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One call: which app, which path under it (`/users/u1`), where the client reached us.
pub(super) struct Call {
    pub org: String,
    pub app: String,
    /// The path under `/{org}/{app}`.
    pub rest: String,
    /// `"/users"` or `"/chatgroups"`, the envelope's `path`.
    pub kind: &'static str,
    /// The rate budget the call counts against, and the API name it is counted as.
    pub budget: &'static str,
    pub api: &'static str,
}

/// What a failed store admission (an injected fault) answers.
fn store_error(e: ProviderError) -> ChatError {
    match e {
        ProviderError::RateLimited { .. } => ChatError::reach_limit(),
        ProviderError::AccountFrozen { .. } => ChatError::forbidden_service(),
        ProviderError::AccountBanned { .. } => {
            ChatError::unauthorized("Unable to authenticate (OAuth)")
        }
        other => ChatError::unavailable(crate::provider::wire::message_of(&other)),
    }
}

/// Checks a call: the app, its token, its status, the faults, the rate.
async fn enter(s: &Shared, call: &Call, headers: &HeaderMap) -> Result<(), ChatError> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let now = now_ms();
    s.agora
        .apps()
        .authenticate(&call.org, &call.app, &call.rest, bearer, now / 1000)?;
    let account = s.store.account(&app_key(&call.org, &call.app));
    match account.status().status {
        AccountState::Banned => {
            s.agora.apps().count_unauthorized(&call.org, &call.app);
            return Err(ChatError::unauthorized("Unable to authenticate (OAuth)"));
        }
        AccountState::Frozen => return Err(ChatError::forbidden_service()),
        AccountState::Active | AccountState::Restricted => {}
    }
    account.admit().await.map_err(store_error)?;
    s.agora
        .apps()
        .admit(&call.org, &call.app, call.budget, call.api, now_ms())
}

/// The error answer.
pub(super) fn error_response(e: &ChatError) -> Response {
    let body = json!({
        "error": e.error, "exception": e.exception, "timestamp": now_ms(), "duration": 0,
        "error_description": e.description,
    });
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body)).into_response()
}

/// The envelope around an answer.
pub(super) fn envelope(call: &Call, headers: &HeaderMap, a: Answer) -> Value {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let key = app_key(&call.org, &call.app);
    let mut out = json!({
        "action": a.action,
        "application": chat::uuid_of(&["application", &key]),
        "path": call.kind,
        "uri": format!("http://{host}/{}/{}{}", call.org, call.app, call.rest),
        "entities": a.entities,
        "timestamp": now_ms(),
        "duration": 0,
        "organization": call.org,
        "applicationName": call.app,
    });
    for (field, value) in [("data", a.data), ("params", a.params)] {
        if let Some(v) = value {
            out[field] = v;
        }
    }
    if let Some(c) = a.cursor {
        out["cursor"] = json!(c);
    }
    if let Some(n) = a.count {
        out["count"] = json!(n);
    }
    out
}

/// Runs `f` on the app's users and groups once the call is admitted.
pub(super) async fn run(
    s: &Shared,
    call: Call,
    headers: &HeaderMap,
    f: impl FnOnce(&mut Chat, u64) -> Result<Answer, ChatError>,
) -> Response {
    let result = async {
        enter(s, &call, headers).await?;
        let mut apps = s.agora.apps();
        let app = apps
            .app_mut(&call.org, &call.app)
            .ok_or_else(|| ChatError::app_not_found(&call.org, &call.app, &call.rest))?;
        let now = now_ms();
        let mut answer = f(&mut app.chat, now)?;
        if let (Some(op), Some(rule)) = (answer.group_op.take(), &app.config.callback) {
            let body = callbacks::group_op_body(&app.key(), &op, &rule.secret, now, &app.delivered);
            callbacks::send(&s.http, &rule.url, body, app.delivered.clone());
        }
        Ok(answer)
    }
    .await;
    match result {
        Ok(a) => axum::Json(envelope(&call, headers, a)).into_response(),
        Err(e) => error_response(&e),
    }
}

/// A JSON request body; 400 `json_parse` otherwise.
pub(super) fn json_body(raw: &[u8]) -> Result<Value, ChatError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ChatError::json_parse(
            "No content to map due to end-of-input",
        ));
    }
    serde_json::from_slice(raw).map_err(|_| ChatError::json_parse("Unexpected character."))
}
