//! The provider-notice webhook: `POST /webhooks/notices/{namespace}/{pair}`. A notice
//! is accepted only with a valid HMAC-SHA256 signature over `<timestamp>.<body>` made
//! with the pair's notice secret, a timestamp inside the window, and an id the pair has
//! not accepted before (the ids are kept in the pair's status, so a restart or another
//! replica refuses a replay too). Bad or missing signature → 401; a signed but malformed
//! body → 400; a replay → 409; none changes anything. An accepted notice becomes an
//! authoritative detector signal dated by the notice's own time (bounded by receipt),
//! so a notice delivered late cannot undo a newer observation.
//!
//! Any replica accepts deliveries: one that does not hold the Lease of the pair's shard
//! (with one shard: the Lease) hands the request, unchanged, to the replica that does
//! (whose address is on that Lease) and returns its answer.

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
    if !ctx.leader.may_act_for(&namespace, &pair) {
        let path = format!("/webhooks/notices/{namespace}/{pair}");
        let pass = [TIMESTAMP_HEADER, SIGNATURE_HEADER, "content-type"];
        let to = (namespace.as_str(), pair.as_str());
        return forward(
            &ctx,
            to,
            reqwest::Method::POST,
            &path,
            &headers,
            &pass,
            body,
        )
        .await;
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

/// Hand the request to the replica holding the Lease of the pair's shard, unchanged
/// (`path` with its query, the `pass` headers and the body), and return its answer.
/// The holder is first the one the election last read (a pass ago); when it does not
/// answer, or answers 503 (it no longer holds the Lease either), the Lease is read
/// afresh and a different holder is tried once.
pub(super) async fn forward(
    ctx: &Context,
    (namespace, pair): (&str, &str),
    method: reqwest::Method,
    path: &str,
    headers: &HeaderMap,
    pass: &[&str],
    body: Bytes,
) -> (StatusCode, String) {
    let unavailable = |why: String| (StatusCode::SERVICE_UNAVAILABLE, why);
    if headers.contains_key(FORWARDED_HEADER) {
        return unavailable("handed over by another replica, but this one does not hold the pair's Lease either (it is moving); retry".into());
    }
    let send = |url: String| {
        let req = Handover {
            identity: ctx.opts.identity.as_str(),
            method: method.clone(),
            path,
            headers,
            pass,
            body: body.clone(),
        };
        async move { req.send(&url).await }
    };
    let cached = ctx.leader.holder_url_for(namespace, pair);
    let mut last = None;
    if let Some(url) = cached.clone() {
        match send(url).await {
            Ok((code, text)) if code != StatusCode::SERVICE_UNAVAILABLE => return (code, text),
            r => last = Some(r),
        }
    }
    if let Some(fresh) = fresh_holder(ctx, namespace, pair)
        .await
        .filter(|f| Some(f) != cached.as_ref())
    {
        last = Some(send(fresh).await);
    }
    match last {
        Some(Ok(answer)) => answer,
        Some(Err(e)) => unavailable(format!(
            "handing the request to the replica holding the pair's Lease failed ({e}); retry"
        )),
        None => unavailable(
            "no replica is known to hold the pair's Lease right now (it is free or moving); retry"
                .into(),
        ),
    }
}

/// One request handed to another replica.
struct Handover<'a> {
    identity: &'a str,
    method: reqwest::Method,
    path: &'a str,
    headers: &'a HeaderMap,
    pass: &'a [&'a str],
    body: Bytes,
}

impl Handover<'_> {
    async fn send(self, url: &str) -> Result<(StatusCode, String), reqwest::Error> {
        static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
        let client = CLIENT.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default()
        });
        let mut req = client
            .request(
                self.method,
                format!("{}{}", url.trim_end_matches('/'), self.path),
            )
            .header(FORWARDED_HEADER, self.identity)
            .body(self.body);
        for h in self.pass {
            if let Some(v) = self.headers.get(*h) {
                req = req.header(*h, v.as_bytes());
            }
        }
        let resp = req.send().await?;
        let status =
            StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        Ok((status, resp.text().await.unwrap_or_default()))
    }
}

/// The webhook URL on the Lease of the pair's shard, read now: `None` when nobody else
/// holds a valid claim on it (or it cannot be read within 2 s).
async fn fresh_holder(ctx: &Context, namespace: &str, pair: &str) -> Option<String> {
    use k8s_openapi::api::coordination::v1::Lease;
    let (lease_ns, name) = ctx.leader.lease_of(namespace, pair)?;
    let api: kube::Api<Lease> = kube::Api::namespaced(ctx.client.clone(), &lease_ns);
    let lease = tokio::time::timeout(Duration::from_secs(2), api.get_opt(&name))
        .await
        .ok()?
        .ok()??;
    let valid = matches!(
        super::claim::decide(lease.spec.as_ref(), &ctx.opts.identity, Utc::now()),
        super::claim::LeaseAction::Wait { .. }
    );
    if !valid {
        return None;
    }
    lease
        .metadata
        .annotations?
        .get(super::leader::WEBHOOK_URL_ANNOTATION)
        .cloned()
}
