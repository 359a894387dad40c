//! The WeChat Official Account (公众号) server API (`/cgi-bin/…`): tokens, the custom
//! menu, permanent materials, follower tags, followers and the auto-reply rules, as
//! wechatpy's `WeChatClient` calls them (facts and their sources in `apps.rs`,
//! `content.rs`, `fans.rs`, `materials.rs`).
//!
//! Unlike the WeCom corps, an official account's content is not in the entity store:
//! its ids (tag ids, media_ids, openids) are the server's, and materials are binary. The
//! store account of the same id only carries the status and the injected faults, so
//! `POST /admin/accounts/{appid}/status` freezes (its `freezeErrcode`, default 48004) or
//! bans (50002 "user limited") an account, and `…/faults` make calls fail.
//!
//! Wire format as the real one: HTTP 200 and `{"errcode": N, "errmsg": "… rid: …"}` for
//! every error; successes without errcode, or `{"errcode":0,"errmsg":"ok"}` for the calls
//! that answer nothing else; `access_token` in the query; POST bodies are JSON without a
//! Content-Type (wechatpy sends raw bytes, notes §1.4). What it must satisfy is an
//! independent client: `e2e_oa_sim` drives it with wechatpy.
//!
//! `/cgi-bin/user/get` is also WeCom's member read: `server.rs` sends a call there by
//! its token (see [`is_oa_call`]).
//!
//! Admin (bearer-protected like the rest of `/admin`): `PUT /admin/oa/accounts/{appid}`
//! (an [`OaConfig`]), `GET` the same path (counters and followers), `POST …/expire-tokens`,
//! `POST …/follow`, `POST …/news`.

mod admin;
mod api;
pub mod apps;
pub mod content;
#[cfg(test)]
mod content_tests;
pub mod fans;
pub mod materials;
pub mod records;
pub(in crate::provider::sim) mod state;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::state::Shared;
use crate::model::AccountState;
use crate::provider::ProviderError;
pub use apps::{Apps, OaConfig, OaError, OaResult, OaStats, Secs};
pub use state::OaSim;

/// The `/cgi-bin` routes but `user/get` (authenticated by access token, not by the
/// simulator's bearer token), and `/oa-media/{media_id}` (the materials' URLs, open).
pub(super) fn api_routes() -> Router<Shared> {
    Router::new()
        .route("/cgi-bin/token", get(token))
        .merge(api::routes())
}

/// The admin routes (behind the simulator's bearer token).
pub(super) fn admin_routes() -> Router<Shared> {
    admin::routes()
}

/// `GET /cgi-bin/user/get` of an official account (dispatched by `server.rs`).
pub(super) use api::user_get;

/// Whether a `/cgi-bin/user/get` call is an official account's: its token is one, or it
/// names no WeCom `userid` and `wecom_knows` does not claim the token.
pub(super) fn is_oa_call(
    s: &Shared,
    q: &HashMap<String, String>,
    wecom_knows: impl FnOnce(&str) -> bool,
) -> bool {
    let token = q.get("access_token").map(String::as_str).unwrap_or("");
    let ours = s.officialaccount.apps().knows_token(token);
    ours || (!q.contains_key("userid") && !wecom_knows(token))
}

pub(super) fn now_secs() -> Secs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A request id like the real ones (`rid: 6523a6d4-2b3e0d4f-3c1f6b0a`), which end every
/// real errmsg (notes §1.1).
fn rid() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut x = n;
    let mixed = crate::provider::sim::rng::splitmix64(&mut x);
    format!(
        "{:08x}-{:08x}-{:08x}",
        now_secs() as u32,
        (mixed >> 32) as u32,
        n as u32
    )
}

/// An official-account answer, always HTTP 200.
pub(super) fn answer(result: OaResult) -> Response {
    let body = match result {
        Ok(v) => v,
        Err(e) => json!({ "errcode": e.code, "errmsg": format!("{} rid: {}", e.msg, rid()) }),
    };
    axum::Json(body).into_response()
}

/// What a frozen account answers: its freeze errcode and that code's text.
fn frozen(code: i64) -> OaError {
    let text = match code {
        48004 => "api forbidden for irregularities, view detail on mp.weixin.qq.com",
        50002 => "user limited",
        48001 => "api unauthorized",
        50001 => "user unauthorized",
        _ => "account restricted",
    };
    OaError::new(code, text)
}

/// What a failed store admission answers on the wire.
fn store_error(freeze: i64, e: ProviderError) -> OaError {
    match e {
        ProviderError::AccountFrozen { .. } => frozen(freeze),
        ProviderError::AccountBanned { .. } => frozen(50002),
        // An injected rate limit is the per-minute one (45011), not the daily quota.
        ProviderError::RateLimited { .. } => OaError::new(
            45011,
            "api minute-quota reach limit, must slower, retry next minute",
        ),
        _ => OaError::new(-1, "system error"),
    }
}

/// Checks a call to `api`: the token, the day's quota, the injected faults and the
/// account's status. Returns the appid.
pub(super) async fn enter(
    s: &Shared,
    q: &HashMap<String, String>,
    api: &str,
) -> Result<String, OaError> {
    let token = q.get("access_token").map(String::as_str).unwrap_or("");
    let (appid, freeze) = {
        let mut apps = s.officialaccount.apps();
        let now = now_secs();
        let appid = apps.check_token(token, now)?;
        apps.admit(&appid, api, now)?;
        let freeze = apps.app(&appid).map_or(48004, |a| a.config.freeze_errcode);
        (appid, freeze)
    };
    let account = s.store.account(&appid);
    account.admit().await.map_err(|e| store_error(freeze, e))?;
    match account.status().status {
        AccountState::Frozen => Err(frozen(freeze)),
        AccountState::Banned => Err(frozen(50002)),
        AccountState::Active | AccountState::Restricted => Ok(appid),
    }
}

/// `GET /cgi-bin/token?grant_type=client_credential&appid=&secret=`.
async fn token(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let arg = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let issued =
        s.officialaccount
            .apps()
            .token(arg("grant_type"), arg("appid"), arg("secret"), now_secs());
    answer(issued.map(|(token, ttl)| json!({ "access_token": token, "expires_in": ttl })))
}
