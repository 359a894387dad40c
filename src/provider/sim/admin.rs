//! The simulator's admin API (`/admin/…`, simulator only; see `openapi.yaml`): create and
//! seed accounts, set their status and faults, run loads, inject activity, and send
//! signed provider notices to a webhook.
//!
//! Contract: admin calls act on the store directly — faults and the account status do
//! not apply to them — and create the account they name if it does not exist yet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::load::{LoadGen, Until, seed_account};
use super::state::{ApiError, ApiResult, Shared, bad_request, json_of};
use super::store::{Faults, now_ms};
use crate::model::AccountState;
use crate::provider::notice::{Notice, NoticeEvent, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::provider::{ActivityEvent, ProviderError};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/admin/accounts", get(list_accounts))
        .route("/admin/accounts/{id}", get(summary).put(create))
        .route("/admin/accounts/{id}/seed", post(seed))
        .route("/admin/accounts/{id}/status", post(set_status))
        .route(
            "/admin/accounts/{id}/faults",
            put(set_faults).get(get_faults),
        )
        .route(
            "/admin/accounts/{id}/load",
            post(start_load).get(load_status).delete(stop_load),
        )
        .route("/admin/accounts/{id}/activity", post(add_activity))
        .route("/admin/accounts/{id}/notice", post(send_notice))
}

/// Parses a JSON body, answering 400 with serde's message when it does not fit.
fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| bad_request(format!("request body: {e}")))
}

async fn list_accounts(State(s): State<Shared>) -> ApiResult {
    let summaries: Vec<_> = s
        .store
        .account_ids()
        .iter()
        .filter_map(|id| s.store.get(id))
        .map(|a| a.summary())
        .collect();
    json_of(StatusCode::OK, &summaries)
}

async fn summary(State(s): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let acct = s
        .store
        .get(&id)
        .ok_or_else(|| ApiError(ProviderError::NotFound(format!("no account {id:?}"))))?;
    json_of(StatusCode::OK, &acct.summary())
}

async fn create(State(s): State<Shared>, Path(id): Path<String>) -> ApiResult {
    json_of(StatusCode::OK, &s.store.account(&id).summary())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeedRequest {
    count: u64,
    #[serde(default)]
    seed: u64,
    /// Record the creates in the change feed (default) or load them silently.
    #[serde(default = "yes")]
    record: bool,
}

fn yes() -> bool {
    true
}

async fn seed(State(s): State<Shared>, Path(id): Path<String>, raw: Bytes) -> ApiResult {
    let req: SeedRequest = body(&raw)?;
    let acct = s.store.account(&id);
    let added = seed_account(acct.clone(), req.count, req.seed, req.record).await;
    #[derive(Serialize)]
    struct Seeded {
        added: u64,
        #[serde(flatten)]
        account: super::store::AccountSummary,
    }
    json_of(
        StatusCode::OK,
        &Seeded {
            added,
            account: acct.summary(),
        },
    )
}

#[derive(Deserialize)]
struct StatusRequest {
    status: AccountState,
    #[serde(default)]
    reason: String,
}

async fn set_status(State(s): State<Shared>, Path(id): Path<String>, raw: Bytes) -> ApiResult {
    let req: StatusRequest = body(&raw)?;
    let acct = s.store.account(&id);
    acct.set_status(req.status, &req.reason);
    json_of(StatusCode::OK, &acct.status())
}

async fn set_faults(State(s): State<Shared>, Path(id): Path<String>, raw: Bytes) -> ApiResult {
    let faults: Faults = body(&raw)?;
    if !(0.0..=1.0).contains(&faults.rate) {
        return Err(bad_request("rate must be within 0..1"));
    }
    let acct = s.store.account(&id);
    acct.set_faults(faults);
    json_of(StatusCode::OK, &acct.faults())
}

async fn get_faults(State(s): State<Shared>, Path(id): Path<String>) -> ApiResult {
    json_of(StatusCode::OK, &s.store.account(&id).faults())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoadRequest {
    /// Changes a second; 0 = unpaced.
    rate: u64,
    count: Option<u64>,
    duration_secs: Option<f64>,
    #[serde(default)]
    seed: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoadStatus {
    running: bool,
    produced: u64,
}

async fn start_load(State(s): State<Shared>, Path(id): Path<String>, raw: Bytes) -> ApiResult {
    let req: LoadRequest = body(&raw)?;
    let until = match (req.count, req.duration_secs) {
        (Some(n), None) => Until::Count(n),
        (None, Some(d)) if d.is_finite() && d > 0.0 => Until::Elapsed(Duration::from_secs_f64(d)),
        _ => {
            return Err(bad_request(
                "give exactly one of count or durationSecs (> 0): a load must stop by itself",
            ));
        }
    };
    let acct = s.store.account(&id);
    let (control, _task) = LoadGen::spawn(acct, req.rate, until, req.seed);
    let previous = s
        .loads
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, control);
    // One load per account: a new one replaces the old.
    if let Some(old) = previous {
        old.stop();
    }
    json_of(
        StatusCode::ACCEPTED,
        &LoadStatus {
            running: true,
            produced: 0,
        },
    )
}

fn current_load(s: &Shared, id: &str) -> LoadStatus {
    let loads = s.loads.lock().unwrap_or_else(|p| p.into_inner());
    match loads.get(id) {
        Some(c) => LoadStatus {
            running: !c.is_done(),
            produced: c.produced(),
        },
        None => LoadStatus {
            running: false,
            produced: 0,
        },
    }
}

async fn load_status(State(s): State<Shared>, Path(id): Path<String>) -> ApiResult {
    json_of(StatusCode::OK, &current_load(&s, &id))
}

async fn stop_load(State(s): State<Shared>, Path(id): Path<String>) -> ApiResult {
    if let Some(c) = s.loads.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
        c.stop();
    }
    json_of(StatusCode::OK, &current_load(&s, &id))
}

#[derive(Deserialize)]
struct ActivityRequest {
    events: Vec<ActivityEvent>,
}

async fn add_activity(State(s): State<Shared>, Path(id): Path<String>, raw: Bytes) -> ApiResult {
    let req: ActivityRequest = body(&raw)?;
    let n = s.store.account(&id).record_activity(req.events)?;
    json_of(StatusCode::OK, &serde_json::json!({ "recorded": n }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NoticeRequest {
    url: String,
    secret: Option<String>,
    secret_base64: Option<String>,
    event: NoticeEventBody,
    /// Also set the account's status to match the event.
    #[serde(default)]
    apply_status: bool,
}

#[derive(Deserialize)]
struct NoticeEventBody {
    #[serde(rename = "type")]
    kind: NoticeEvent,
    #[serde(default)]
    reason: String,
}

/// Makes notice ids unique within a process even within one millisecond.
static NOTICE_SEQ: AtomicU64 = AtomicU64::new(0);

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NoticeSent {
    id: String,
    delivered: bool,
    status: u16,
}

async fn send_notice(State(s): State<Shared>, Path(id): Path<String>, raw: Bytes) -> ApiResult {
    let req: NoticeRequest = body(&raw)?;
    let secret = match (&req.secret, &req.secret_base64) {
        (Some(t), None) => t.as_bytes().to_vec(),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .map_err(|e| bad_request(format!("secretBase64: {e}")))?,
        _ => return Err(bad_request("give exactly one of secret or secretBase64")),
    };
    let acct = s.store.account(&id);
    if req.apply_status {
        let state = match req.event.kind {
            NoticeEvent::Frozen => AccountState::Frozen,
            NoticeEvent::Banned => AccountState::Banned,
            NoticeEvent::Restricted => AccountState::Restricted,
            NoticeEvent::Unfrozen => AccountState::Active,
        };
        acct.set_status(state, &req.event.reason);
    }
    let now = chrono::Utc::now();
    let notice = Notice {
        account: id.clone(),
        event: req.event.kind,
        reason: req.event.reason,
        at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        id: format!(
            "ntc-{id}-{}-{}",
            now_ms(),
            NOTICE_SEQ.fetch_add(1, Ordering::Relaxed)
        ),
    };
    let signed = notice
        .sign(&secret, now)
        .map_err(|e| bad_request(e.to_string()))?;
    let resp = s
        .http
        .post(&req.url)
        .header("content-type", "application/json")
        .header(TIMESTAMP_HEADER, &signed.timestamp)
        .header(SIGNATURE_HEADER, &signed.signature)
        .body(signed.body)
        .send()
        .await
        .map_err(|e| {
            ApiError(ProviderError::Unavailable(format!(
                "cannot deliver the notice to the webhook: {e}"
            )))
        })?;
    let status = resp.status();
    json_of(
        StatusCode::OK,
        &NoticeSent {
            id: notice.id,
            delivered: status.is_success(),
            status: status.as_u16(),
        },
    )
}
