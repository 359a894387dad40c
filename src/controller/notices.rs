//! The provider-notice webhook: `POST /webhooks/notices/{namespace}/{pair}`. A notice
//! is accepted only with a valid HMAC-SHA256 signature over `<timestamp>.<body>` made
//! with the pair's notice secret, a timestamp inside the window, and an id not seen
//! before. Bad or missing signature → 401; a signed but malformed body → 400; neither
//! changes anything. Accepted notices become authoritative detector signals.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::Utc;

use super::context::{Context, lock};
use crate::api::Side;
use crate::detection::signal::{Notice as NoticeSignal, Signal};
use crate::provider::notice::{
    NoticeError, NoticeEvent, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_notice,
};

pub fn router(ctx: Arc<Context>) -> Router {
    Router::new()
        .route("/webhooks/notices/{namespace}/{pair}", post(receive))
        .with_state(ctx)
}

async fn receive(
    State(ctx): State<Arc<Context>>,
    Path((namespace, pair)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    if !ctx.leader.is_leader() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not the leader; retry".into(),
        );
    }
    let Some(worker) = ctx.worker(&namespace, &pair) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no AccountPair {namespace}/{pair} is managed here"),
        );
    };
    let Some(secret) = worker.notice_secret.clone() else {
        return (
            StatusCode::UNAUTHORIZED,
            "the pair has no notices secret (spec.detection.notices); notice refused".into(),
        );
    };
    let header = |h: &str| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let now = Utc::now();
    let notice = match verify_notice(
        &secret,
        &header(TIMESTAMP_HEADER),
        &header(SIGNATURE_HEADER),
        &body,
        now,
        ctx.opts.notice_window,
    ) {
        Ok(n) => n,
        Err(NoticeError::BadBody(e)) => {
            return (StatusCode::BAD_REQUEST, format!("malformed notice: {e}"));
        }
        Err(e) => return (StatusCode::UNAUTHORIZED, e.to_string()),
    };
    let side = if notice.account == worker.spec.primary.account_id {
        Side::Primary
    } else if notice.account == worker.spec.standby.account_id {
        Side::Standby
    } else {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "account {:?} is neither side of pair {pair}",
                notice.account
            ),
        );
    };
    {
        let mut seen = lock(&ctx.seen_notices);
        let window = chrono::Duration::from_std(ctx.opts.notice_window)
            .unwrap_or(chrono::Duration::minutes(5))
            * 2;
        seen.retain(|_, t| now - *t < window);
        let key = format!("{namespace}/{pair}/{}", notice.id);
        if seen.contains_key(&key) {
            return (
                StatusCode::CONFLICT,
                format!("notice {} was already received (replay refused)", notice.id),
            );
        }
        seen.insert(key, now);
    }
    tracing::info!(pair = %pair, side = side.as_str(), event = ?notice.event, "verified provider notice");
    let event = match notice.event {
        NoticeEvent::Frozen => NoticeSignal::Frozen,
        NoticeEvent::Banned => NoticeSignal::Banned,
        NoticeEvent::Restricted => NoticeSignal::Restricted,
        NoticeEvent::Unfrozen => NoticeSignal::Unfrozen,
    };
    worker
        .observe(Signal::notice(side, now, event, &notice.reason))
        .await;
    (StatusCode::ACCEPTED, "accepted".into())
}
