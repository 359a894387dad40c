//! The provider-notice webhook: `POST /webhooks/notices/{namespace}/{pair}`. A notice
//! is accepted only with a valid HMAC-SHA256 signature over `<timestamp>.<body>` made
//! with the pair's notice secret, a timestamp inside the window, and an id the pair has
//! not accepted before (the ids are kept in the pair's status, so a restart or another
//! replica refuses a replay too). Bad or missing signature → 401; a signed but malformed
//! body → 400; a replay → 409; none changes anything. An accepted notice becomes an
//! authoritative detector signal dated by the notice's own time (bounded by receipt),
//! so a notice delivered late cannot undo a newer observation.
//!
//! Any replica accepts deliveries: one that does not hold the Lease hands the request,
//! unchanged, to the leader (whose address is on the Lease) and returns its answer.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::Utc;

use super::context::Context;
use super::pair::{NoticeOutcome, ReceivedNotice};
use crate::api::Side;
use crate::detection::signal::Notice as NoticeSignal;
use crate::provider::notice::{
    NoticeError, NoticeEvent, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_notice,
};

/// How long a notice waits for its pair's task before it is answered 503 (retry).
const PAIR_ANSWER: Duration = Duration::from_secs(10);
/// How long looking up a pair that does not run here may take (503 after).
const LOOKUP: Duration = Duration::from_secs(3);

/// Marks a request a replica handed to the leader (never handed on twice).
pub const FORWARDED_HEADER: &str = "X-Understudy-Forwarded-By";
/// Longest notice id kept (they are stored in the pair's status).
const MAX_ID: usize = 256;

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
        let path = format!("/webhooks/notices/{namespace}/{pair}");
        let pass = [TIMESTAMP_HEADER, SIGNATURE_HEADER, "content-type"];
        return forward(&ctx, reqwest::Method::POST, &path, &headers, &pass, body).await;
    }
    let Some(handle) = ctx.pair(&namespace, &pair) else {
        return not_running(&ctx, &namespace, &pair).await;
    };
    let Some(secret) = handle.notice_secret() else {
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
    let received = Utc::now();
    let notice = match verify_notice(
        secret,
        &header(TIMESTAMP_HEADER),
        &header(SIGNATURE_HEADER),
        &body,
        received,
        ctx.opts.notice_window,
    ) {
        Ok(n) => n,
        Err(NoticeError::BadBody(e)) => {
            return (StatusCode::BAD_REQUEST, format!("malformed notice: {e}"));
        }
        Err(e) => return (StatusCode::UNAUTHORIZED, e.to_string()),
    };
    if notice.id.is_empty() || notice.id.len() > MAX_ID {
        return (
            StatusCode::BAD_REQUEST,
            format!("a notice id must be 1 to {MAX_ID} characters long"),
        );
    }
    let at = match chrono::DateTime::parse_from_rfc3339(&notice.at) {
        // Never later than it arrived: a notice from the future cannot outrank what is
        // observed after it.
        Ok(t) => t.with_timezone(&Utc).min(received),
        Err(_) => {
            return (
                StatusCode::BAD_REQUEST,
                format!(
                    "malformed notice: at {:?} is not an RFC 3339 time",
                    notice.at
                ),
            );
        }
    };
    let side = if notice.account == handle.spec.primary.id() {
        Side::Primary
    } else if notice.account == handle.spec.standby.id() {
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
    let event = match notice.event {
        NoticeEvent::Frozen => NoticeSignal::Frozen,
        NoticeEvent::Banned => NoticeSignal::Banned,
        NoticeEvent::Restricted => NoticeSignal::Restricted,
        NoticeEvent::Unfrozen => NoticeSignal::Unfrozen,
    };
    let outcome = tokio::time::timeout(
        PAIR_ANSWER,
        handle.notice(ReceivedNotice {
            id: notice.id,
            side,
            event,
            reason: notice.reason,
            at,
            received,
        }),
    )
    .await
    .unwrap_or_else(|_| {
        NoticeOutcome::Failed(format!(
            "the pair did not answer within {PAIR_ANSWER:?}; retry (a notice it took meanwhile is answered as seen)"
        ))
    });
    match outcome {
        NoticeOutcome::Accepted(msg) => (StatusCode::ACCEPTED, msg),
        NoticeOutcome::Replay(msg) => (StatusCode::CONFLICT, msg),
        NoticeOutcome::Failed(msg) => (StatusCode::SERVICE_UNAVAILABLE, msg),
    }
}

/// The pair is not running here: 503 (retry) while it exists and is starting, 404 when
/// there is no such pair or its namespace is not the one watched (`--namespace`; the
/// operator may not even read there, so it does not ask).
pub(super) async fn not_running(
    ctx: &Context,
    namespace: &str,
    pair: &str,
) -> (StatusCode, String) {
    let watched = ctx
        .opts
        .namespace
        .as_deref()
        .is_none_or(|ns| ns == namespace);
    if !watched {
        return (
            StatusCode::NOT_FOUND,
            format!("no AccountPair {namespace}/{pair} is managed here"),
        );
    }
    let api: kube::Api<crate::api::AccountPair> =
        kube::Api::namespaced(ctx.client.clone(), namespace);
    let found = tokio::time::timeout(LOOKUP, api.get_opt(pair))
        .await
        .unwrap_or_else(|_| {
            Err(kube::Error::Service(
                format!("no answer from the API server within {LOOKUP:?}").into(),
            ))
        });
    match found {
        Ok(Some(_)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "AccountPair {namespace}/{pair} is starting (or its configuration is invalid, see its Ready condition); retry"
            ),
        ),
        Ok(_) => (
            StatusCode::NOT_FOUND,
            format!("no AccountPair {namespace}/{pair} is managed here"),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot look the pair up ({e}); retry"),
        ),
    }
}

/// Hand the request to the leader, unchanged (`path` with its query, the `pass`
/// headers and the body), and return its answer.
pub(super) async fn forward(
    ctx: &Context,
    method: reqwest::Method,
    path: &str,
    headers: &HeaderMap,
    pass: &[&str],
    body: Bytes,
) -> (StatusCode, String) {
    let unavailable = |why: String| (StatusCode::SERVICE_UNAVAILABLE, why);
    if headers.contains_key(FORWARDED_HEADER) {
        return unavailable("handed over by another replica, but this one is not the leader either (the Lease is moving); retry".into());
    }
    let Some(url) = ctx.leader.holder_url() else {
        return unavailable(
            "no leader is known right now (the Lease is free or moving); retry".into(),
        );
    };
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default()
    });
    let mut req = client
        .request(method, format!("{}{path}", url.trim_end_matches('/')))
        .header(FORWARDED_HEADER, ctx.opts.identity.as_str())
        .body(body);
    for h in pass {
        if let Some(v) = headers.get(*h) {
            req = req.header(*h, v.as_bytes());
        }
    }
    match req.send().await {
        Ok(resp) => {
            let status =
                StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let text = resp.text().await.unwrap_or_default();
            (status, text)
        }
        Err(e) => unavailable(format!(
            "handing the request to the leader failed ({e}); retry"
        )),
    }
}
