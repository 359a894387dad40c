//! The WeCom callback webhook: `/webhooks/wecom/{namespace}/{pair}`, the URL registered
//! as the contacts-sync app's 接收事件服务器 (event server) of each corp of the pair.
//!
//! - `GET ?msg_signature&timestamp&nonce&echostr`: WeCom's URL verification. The
//!   `echostr` is opened (signature checked, decrypted, addressed to the corp) with
//!   either side's callback Token and EncodingAESKey, and its plaintext answered.
//! - `POST ?msg_signature&timestamp&nonce` with `<xml><Encrypt>…</Encrypt></xml>`: a
//!   change callback, opened the same way ([`callback::receive`]). A bad signature, a
//!   message for another corp or a timestamp outside the window → 401; a body that is not
//!   a callback → 400; a callback already taken → 409 (a replay); none changes anything.
//!   Otherwise the entities it names are read again from that corp and what changed is
//!   recorded in its feed ([`SyntheticFeed::hint`]), which replication carries to the
//!   other side; then `200 success`. When the read fails, 503: WeCom sends the callback
//!   again, and the reconciliation scan catches it if every try fails.
//!
//! Both sides' callbacks are taken: a passive side's feed then knows the state
//! replication wrote there, so after a switchover its scans find only real changes.
//!
//! Any replica accepts deliveries and hands them, unchanged, to the leader.
//!
//! [`SyntheticFeed::hint`]: crate::provider::feedless::SyntheticFeed::hint

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::get;
use serde::Deserialize;

use super::context::Context;
use super::notices::{forward, not_running};
use crate::provider::wecom::callback::{self, Refusal, Refused};

/// How long reading the changed entities may take before WeCom is answered 503 (it
/// gives up on an answer after 5 s and sends the callback again).
const READ_AGAIN: Duration = Duration::from_secs(4);

#[derive(Debug, Deserialize)]
pub struct Signed {
    msg_signature: String,
    timestamp: String,
    nonce: String,
    echostr: Option<String>,
}

pub fn router(ctx: Arc<Context>) -> Router {
    Router::new()
        .route(
            "/webhooks/wecom/{namespace}/{pair}",
            get(verify).post(receive),
        )
        .with_state(ctx)
}

/// The request's path and query, as forwarded to the leader.
pub(super) fn path_and_query(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}

const NO_CALLBACK: &str = "the pair has no WeCom callback (spec.primary.callback / spec.standby.callback): callback refused";

/// URL verification.
async fn verify(
    State(ctx): State<Arc<Context>>,
    Path((namespace, pair)): Path<(String, String)>,
    Query(q): Query<Signed>,
    uri: Uri,
    headers: HeaderMap,
) -> (StatusCode, String) {
    if !ctx.leader.may_act_for(&namespace, &pair) {
        let path = path_and_query(&uri);
        return forward(
            &ctx,
            (namespace.as_str(), pair.as_str()),
            reqwest::Method::GET,
            path,
            &headers,
            &[],
            Bytes::new(),
        )
        .await;
    }
    let Some(handle) = ctx.pair(&namespace, &pair) else {
        return not_running(&ctx, &namespace, &pair).await;
    };
    let Some(echostr) = &q.echostr else {
        return (
            StatusCode::BAD_REQUEST,
            "a URL verification carries echostr".into(),
        );
    };
    let mut refusal = NO_CALLBACK.to_string();
    for (side, w) in handle.wecom_sides() {
        let Some(crypto) = &w.crypto else { continue };
        match crypto.open(&q.msg_signature, &q.timestamp, &q.nonce, echostr) {
            Ok(plain) => {
                tracing::info!(pair = %pair, %side, corp = %w.corp_id, "WeCom callback URL verified");
                return (StatusCode::OK, plain);
            }
            Err(e) => refusal = e.to_string(),
        }
    }
    (StatusCode::UNAUTHORIZED, refusal)
}

/// A change callback, counted by what became of it.
async fn receive(
    State(ctx): State<Arc<Context>>,
    Path((namespace, pair)): Path<(String, String)>,
    Query(q): Query<Signed>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let forwarded = !ctx.leader.may_act_for(&namespace, &pair);
    let ctx_has_pair = ctx.pair(&namespace, &pair).is_some();
    let (code, text) = take(
        State(ctx),
        Path((namespace.clone(), pair.clone())),
        Query(q),
        uri,
        headers,
        body,
    )
    .await;
    if !forwarded && ctx_has_pair {
        count_callback(&namespace, &pair, code);
    }
    (code, text)
}

/// Counts a provider callback by what became of it. Only for a pair that runs here and
/// a callback not handed over to the leader (which counts it): the path is the
/// sender's, so no label for just any name.
pub(super) fn count_callback(namespace: &str, pair: &str, code: StatusCode) {
    let result = match code {
        StatusCode::OK => "taken",
        StatusCode::CONFLICT => "replay",
        StatusCode::UNAUTHORIZED => "refused",
        StatusCode::BAD_REQUEST => "invalid",
        _ => "failed",
    };
    crate::controller::metrics::metrics()
        .provider_callbacks_total
        .with_label_values(&[namespace, pair, result])
        .inc();
}

async fn take(
    State(ctx): State<Arc<Context>>,
    Path((namespace, pair)): Path<(String, String)>,
    Query(q): Query<Signed>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    if !ctx.leader.may_act_for(&namespace, &pair) {
        let path = path_and_query(&uri);
        let pass = ["content-type"];
        let to = (namespace.as_str(), pair.as_str());
        return forward(&ctx, to, reqwest::Method::POST, path, &headers, &pass, body).await;
    }
    let Some(handle) = ctx.pair(&namespace, &pair) else {
        return not_running(&ctx, &namespace, &pair).await;
    };
    let Ok(body) = std::str::from_utf8(&body) else {
        return (StatusCode::BAD_REQUEST, "the body is not UTF-8".into());
    };
    let now = chrono::Utc::now().timestamp();
    let window = ctx.opts.notice_window.as_secs() as i64;
    let Ok(sent) = q.timestamp.trim().parse::<i64>() else {
        return (
            StatusCode::BAD_REQUEST,
            "timestamp is not a number of seconds".into(),
        );
    };
    let mut refusal = NO_CALLBACK.to_string();
    let mut opened = None;
    for (side, w) in handle.wecom_sides() {
        let Some(crypto) = &w.crypto else { continue };
        match callback::receive(crypto, &q.msg_signature, &q.timestamp, &q.nonce, body) {
            Ok(r) => {
                opened = Some((side, w, r));
                break;
            }
            Err(Refused::Body(e)) => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("not a WeCom callback: {e}"),
                );
            }
            Err(Refused::Crypto(e)) => refusal = e.to_string(),
        }
    }
    let Some((side, w, received)) = opened else {
        return (StatusCode::UNAUTHORIZED, refusal);
    };
    if let Err(e) = handle
        .callbacks_seen()
        .check(&q.msg_signature, sent, now, window)
    {
        let code = match e {
            Refusal::Replay => StatusCode::CONFLICT,
            Refusal::OutsideWindow => StatusCode::UNAUTHORIZED,
        };
        return (code, e.to_string());
    }
    let feed = &w.feed;
    let read = async {
        let mut changes = feed.hint(&received.keys).await?;
        for kind in &received.kinds {
            changes += feed.hint_kind(*kind).await?;
        }
        Ok::<usize, crate::provider::ProviderError>(changes)
    };
    match tokio::time::timeout(READ_AGAIN, read).await {
        Ok(Ok(changes)) => {
            handle.callbacks_seen().record(&q.msg_signature, sent);
            tracing::debug!(pair = %pair, %side, corp = %w.corp_id, changes, "WeCom callback taken");
            (StatusCode::OK, "success".into())
        }
        Ok(Err(e)) => {
            tracing::warn!(pair = %pair, %side, corp = %w.corp_id, error = %e, "reading again what a WeCom callback named failed; answered 503 so WeCom sends it again");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("reading the {side} corp again failed ({e}); send the callback again"),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "reading the {side} corp again took longer than {READ_AGAIN:?}; send the callback again"
            ),
        ),
    }
}
