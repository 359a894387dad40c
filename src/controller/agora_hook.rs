//! The Agora Chat callback webhook: `POST /webhooks/agora/{namespace}/{pair}`, the URL of
//! the post-delivery callback rule of each app of the pair (Agora console → the app →
//! Chat → callback rules).
//!
//! The body names its app (`appkey`); the callback is opened with that side's rule secret
//! ([`callback`]): a bad `security`, an app that is not a side of the pair or a side
//! without `callback`, a timestamp outside the window → 401; a body that is not a
//! callback → 400; a `callId` already taken → 409 (a replay); none changes anything.
//! Otherwise what it names is read again from that app and what changed is recorded in
//! its feed ([`SyntheticFeed::hint`]): a login or logout names a user; a group operation
//! names a group by id, which is read again under its name now and the name it had (a
//! rename or a destroy changes that entity); a group id never seen and gone reads every
//! group. Messages, chat rooms and contacts name nothing replicated: 200. When the read
//! fails, 503 — Agora does not send a post-delivery callback again, so the
//! reconciliation scan is what catches it.
//!
//! Both sides' callbacks are taken, as for WeCom. Any replica accepts deliveries and
//! hands them, unchanged, to the leader.
//!
//! [`SyntheticFeed::hint`]: crate::provider::feedless::SyntheticFeed::hint

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;

use super::context::Context;
use super::notices::{forward, not_running};
use super::pair::PairHandle;
use super::pair::providers::AgoraSide;
use super::wecom_hook::{count_callback, path_and_query};
use crate::model::{EntityKey, EntityKind};
use crate::provider::ProviderError;
use crate::provider::agora::callback::{self, Named, Received, Refused};
use crate::provider::wecom::callback::Refusal;

/// How long reading what a callback names may take before it is answered 503.
const READ_AGAIN: Duration = Duration::from_secs(4);

pub fn router(ctx: Arc<Context>) -> Router {
    Router::new()
        .route("/webhooks/agora/{namespace}/{pair}", post(receive))
        .with_state(ctx)
}

async fn receive(
    State(ctx): State<Arc<Context>>,
    Path((namespace, pair)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    if !ctx.leader.may_act_for(&namespace, &pair) {
        let pass = ["content-type"];
        let path = path_and_query(&uri);
        let to = (namespace.as_str(), pair.as_str());
        return forward(&ctx, to, reqwest::Method::POST, path, &headers, &pass, body).await;
    }
    let Some(handle) = ctx.pair(&namespace, &pair) else {
        return not_running(&ctx, &namespace, &pair).await;
    };
    let (code, text) = take(&ctx, &handle, &pair, &body).await;
    count_callback(&namespace, &pair, code);
    (code, text)
}

async fn take(ctx: &Context, handle: &PairHandle, pair: &str, body: &[u8]) -> (StatusCode, String) {
    let envelope = match callback::envelope(body) {
        Ok(e) => e,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Some((side, agora)) = handle
        .agora_sides()
        .find(|(_, a)| a.app_key == envelope.app_key)
    else {
        return (
            StatusCode::UNAUTHORIZED,
            format!(
                "app {} is not a side of this pair: callback refused",
                envelope.app_key
            ),
        );
    };
    let Some(secret) = &agora.callback_secret else {
        return (
            StatusCode::UNAUTHORIZED,
            format!(
                "the pair's {side} side has no callback (spec.{side}.callback): callback refused"
            ),
        );
    };
    let received = match envelope.open(secret) {
        Ok(r) => r,
        Err(e @ Refused::Signature) => return (StatusCode::UNAUTHORIZED, e.to_string()),
        Err(e @ Refused::Body(_)) => return (StatusCode::BAD_REQUEST, e.to_string()),
    };
    let now = chrono::Utc::now().timestamp();
    let sent = received.timestamp_ms.div_euclid(1000);
    let window = ctx.opts.notice_window.as_secs() as i64;
    if let Err(e) = handle
        .callbacks_seen()
        .check(&received.call_id, sent, now, window)
    {
        let code = match e {
            Refusal::Replay => StatusCode::CONFLICT,
            Refusal::OutsideWindow => StatusCode::UNAUTHORIZED,
        };
        return (code, e.to_string());
    }
    match tokio::time::timeout(READ_AGAIN, read_again(agora, &received)).await {
        Ok(Ok(changes)) => {
            handle.callbacks_seen().record(&received.call_id, sent);
            tracing::debug!(pair, %side, app = %agora.app_key, changes, "Agora Chat callback taken");
            (StatusCode::OK, "success".into())
        }
        Ok(Err(e)) => {
            tracing::warn!(pair, %side, app = %agora.app_key, error = %e, "reading again what an Agora Chat callback named failed; the reconciliation scan will find it");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("reading the {side} app again failed ({e})"),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("reading the {side} app again took longer than {READ_AGAIN:?}"),
        ),
    }
}

/// Reads again what the callback names; how many changes that recorded.
async fn read_again(agora: &AgoraSide, received: &Received) -> Result<usize, ProviderError> {
    let feed = &agora.feed;
    match &received.named {
        Named::Nothing => Ok(0),
        Named::Users(names) => {
            let keys: Vec<EntityKey> = names
                .iter()
                .filter_map(|u| EntityKey::new(EntityKind::Member, u).ok())
                .collect();
            feed.hint(&keys).await
        }
        Named::Groups(ids) => match feed.inner().group_keys(ids).await? {
            Some(keys) => feed.hint(&keys).await,
            None => feed.hint_kind(EntityKind::Group).await,
        },
    }
}
