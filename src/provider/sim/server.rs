//! The simulator's HTTP server: the Provider API (`/v1/…`, see `openapi.yaml`) for every
//! account of a [`SimStore`], the admin API (`/admin/…`, in `admin.rs`), `/healthz` and
//! `/openapi.yaml`.
//!
//! Contract: answers exactly what [`SimProvider`](super::SimProvider) answers for the
//! same store, in the wire format of `openapi.yaml`; errors as
//! `{"error":{"code","message"}}` with the status of `wire::status_and_code`. With a
//! token configured, every route but `/healthz` and `/openapi.yaml` needs
//! `Authorization: Bearer <token>`. Unknown accounts are 404 unless `auto_create`.
//!
//! Hot paths write JSON by hand around the payloads' stored canonical text, so a batch
//! of changes or a page of entities is never parsed or re-serialised on the server, and
//! a `fields=digest` listing reads the stored digests without touching the payloads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::serve::ListenerExt as _;
use serde::Deserialize;

use super::state::{ApiError, ApiResult, AppState, Shared, bad_request, json_of, json_text};
use super::store::{
    FeedRead, MAX_LIMIT, Payload, SimAccount, SimStore, fmt_ms, parse_cursor, parse_time_ms,
};
use crate::model::{Digest, EntityKey, EntityKind};
use crate::provider::wire::{
    self, HeadCursor, ListFields, ORIGIN_HEADER, PutBody, WireOp, WireWriteBatch,
};
use crate::provider::{BatchOutcome, ProviderError, Rejection};

/// Largest body of `POST …/writes` (10,000 writes of a few KB).
const MAX_WRITES_BODY: usize = 128 * 1024 * 1024;

/// The OpenAPI document served at `/openapi.yaml`.
pub const OPENAPI_YAML: &str = include_str!("../openapi.yaml");

/// Server options.
#[derive(Clone, Default)]
pub struct ServerConfig {
    /// Bearer token required on every API call; `None` accepts anyone.
    pub token: Option<String>,
    /// Create unknown accounts on first use instead of answering 404.
    pub auto_create: bool,
}

/// Never prints the token.
impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("auto_create", &self.auto_create)
            .finish()
    }
}

/// Builds the router over `store`.
pub fn router(store: SimStore, config: ServerConfig) -> Router {
    let state: Shared = Arc::new(AppState {
        store,
        token: config.token,
        auto_create: config.auto_create,
        loads: Mutex::new(HashMap::new()),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default(),
        wecom: Default::default(),
        officialaccount: Default::default(),
        agora: Default::default(),
    });
    let api = Router::new()
        .route("/v1/accounts/{id}/status", get(status))
        .route("/v1/accounts/{id}/entities", get(list_entities))
        .route(
            "/v1/accounts/{id}/entities/{kind}/{eid}",
            put(put_entity).delete(delete_entity),
        )
        .route(
            "/v1/accounts/{id}/writes",
            post(write_batch).layer(DefaultBodyLimit::max(MAX_WRITES_BODY)),
        )
        .route("/v1/accounts/{id}/changes", get(changes))
        .route("/v1/accounts/{id}/changes/head", get(head))
        .route("/v1/accounts/{id}/probe", post(probe))
        .route("/v1/accounts/{id}/activity", get(activity))
        .merge(super::admin::routes())
        .merge(super::wecom::admin_routes())
        .merge(super::officialaccount::admin_routes())
        .merge(super::agora::admin_routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/openapi.yaml",
            get(|| async { ([(CONTENT_TYPE, "application/yaml")], OPENAPI_YAML) }),
        )
        .merge(api)
        .merge(super::wecom::api_routes())
        .merge(super::officialaccount::api_routes())
        // `/{org}/{app}/users|chatgroups…`: Agora Chat, below the static prefixes above.
        .merge(super::agora::api_routes())
        .route("/cgi-bin/user/get", get(cgibin_user_get))
        .fallback(|| async {
            ApiError(ProviderError::NotFound("no such route".into())).into_response()
        })
        .with_state(state)
}

async fn auth(State(state): State<Shared>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !crate::provider::constant_time_eq(given.as_bytes(), token.as_bytes()) {
            return ApiError(ProviderError::Unauthorized(
                "missing or wrong bearer token".into(),
            ))
            .into_response();
        }
    }
    next.run(req).await
}

/// `GET /cgi-bin/user/get` is WeCom's member read and an official account's follower
/// list: an official account's token (or, for a token nobody issued, the absence of
/// WeCom's `userid`) sends it to the latter.
async fn cgibin_user_get(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let oa = super::officialaccount::is_oa_call(&s, &q, |token| {
        // 40014 and 41001 are WeCom's answers for a token it never issued.
        !matches!(
            s.wecom.corps().check_token(token, Instant::now()),
            Err(e) if e.code == 40014 || e.code == 41001
        )
    });
    if oa {
        super::officialaccount::user_get(State(s), Query(q)).await
    } else {
        super::wecom::member_get(State(s), Query(q)).await
    }
}

impl AppState {
    /// The account behind a Provider API call (created only with `auto_create`).
    fn api_account(&self, id: &str) -> Result<Arc<SimAccount>, ApiError> {
        if self.auto_create {
            return Ok(self.store.account(id));
        }
        self.store
            .get(id)
            .ok_or_else(|| ApiError(ProviderError::NotFound(format!("no account {id:?}"))))
    }
}

async fn status(State(s): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let acct = s.api_account(&id)?;
    acct.admit().await?;
    json_of(StatusCode::OK, &acct.status())
}

#[derive(Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
    fields: Option<String>,
}

async fn list_entities(
    State(s): State<Shared>,
    Path(id): Path<String>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| bad_request(e.body_text()))?;
    let fields = q
        .fields
        .as_deref()
        .map(str::parse::<ListFields>)
        .transpose()
        .map_err(bad_request)?
        .unwrap_or_default();
    let after = q
        .after
        .as_deref()
        .map(str::parse::<EntityKey>)
        .transpose()
        .map_err(|e| bad_request(format!("after: {e}")))?;
    let acct = s.api_account(&id)?;
    acct.admit().await?;
    let limit = q.limit.unwrap_or(1_000);
    let body = match fields {
        ListFields::Full => {
            let (page, next) = acct.list(after.as_ref(), limit)?;
            entity_page_json(&page, next.as_ref())
        }
        ListFields::Digest => digest_page_json(&acct, after.as_ref(), limit)?,
    };
    Ok(json_text(StatusCode::OK, body))
}

/// `{"entities":[{"key","payload","digest"}…],"next":…}` around the stored payload text.
fn entity_page_json(page: &[(EntityKey, Arc<Payload>)], next: Option<&EntityKey>) -> String {
    let size: usize = page.iter().map(|(_, p)| p.json.len() + 128).sum();
    let mut out = String::with_capacity(64 + size);
    out.push_str(r#"{"entities":["#);
    for (i, (key, p)) in page.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"key":"#);
        push_json_str(&mut out, key.as_str());
        out.push_str(r#","payload":"#);
        out.push_str(&p.json);
        out.push_str(r#","digest":"#);
        push_digest(&mut out, &p.digest);
        out.push('}');
    }
    push_next(&mut out, next);
    out
}

/// `{"entities":[{"key","digest"}…],"next":…}`: a `fields=digest` page, written straight
/// from the store (no copy of the keys, no payload touched).
fn digest_page_json(
    acct: &SimAccount,
    after: Option<&EntityKey>,
    limit: usize,
) -> Result<String, ProviderError> {
    // About 110 bytes an entity: the key, 64 hex digits and the punctuation.
    let mut out = String::with_capacity(64 + 112 * limit.clamp(1, MAX_LIMIT));
    out.push_str(r#"{"entities":["#);
    let mut first = true;
    let next = acct.visit_digests(after, limit, |key, digest| {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(r#"{"key":"#);
        push_json_str(&mut out, key.as_str());
        out.push_str(r#","digest":"#);
        push_digest(&mut out, digest);
        out.push('}');
    })?;
    push_next(&mut out, next.as_ref());
    Ok(out)
}

/// Closes a page's `entities` array and appends its `next` and the closing brace.
fn push_next(out: &mut String, next: Option<&EntityKey>) {
    out.push_str(r#"],"next":"#);
    match next {
        Some(k) => push_json_str(out, k.as_str()),
        None => out.push_str("null"),
    }
    out.push('}');
}

/// Appends a digest as a JSON string of 64 lowercase hex digits.
fn push_digest(out: &mut String, digest: &Digest) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [b'"'; 66];
    for (i, b) in digest.0.iter().enumerate() {
        buf[1 + 2 * i] = HEX[usize::from(b >> 4)];
        buf[2 + 2 * i] = HEX[usize::from(b & 0x0f)];
    }
    // Quotes and hex digits are ASCII: the buffer is always valid UTF-8.
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
}

/// Appends `s` as a JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    // Keys and origin tags are plain text almost always; escape only when needed.
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::Value::from(s).to_string());
    }
}

/// `{"changes":[…],"cursor":"…","remaining":N}` around the stored payload text.
fn changes_json(read: &FeedRead) -> String {
    let size: usize = read
        .entries
        .iter()
        .map(|e| e.payload.as_ref().map_or(0, |p| p.json.len()) + 160)
        .sum();
    let mut out = String::with_capacity(64 + size);
    out.push_str(r#"{"changes":["#);
    for (i, e) in read.entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"seq":"#);
        out.push_str(&e.seq.to_string());
        out.push_str(r#","key":"#);
        push_json_str(&mut out, e.key.as_str());
        match &e.payload {
            Some(p) => {
                out.push_str(r#","op":"upsert","payload":"#);
                out.push_str(&p.json);
            }
            None => out.push_str(r#","op":"delete""#),
        }
        if let Some(o) = &e.origin {
            out.push_str(r#","origin":"#);
            push_json_str(&mut out, o);
        }
        out.push_str(r#","at":""#);
        out.push_str(&fmt_ms(e.at_ms));
        out.push_str(r#""}"#);
    }
    out.push_str(r#"],"cursor":""#);
    out.push_str(&read.cursor.to_string());
    out.push_str(r#"","remaining":"#);
    out.push_str(&read.remaining.to_string());
    out.push('}');
    out
}

#[derive(Deserialize)]
struct ChangesQuery {
    cursor: Option<String>,
    limit: Option<usize>,
    /// Seconds (fractions allowed).
    wait: Option<f64>,
}

async fn changes(
    State(s): State<Shared>,
    Path(id): Path<String>,
    q: Result<Query<ChangesQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| bad_request(e.body_text()))?;
    let wait = q.wait.unwrap_or(0.0);
    if !wait.is_finite() || wait < 0.0 {
        return Err(bad_request("wait must be a non-negative number of seconds"));
    }
    let acct = s.api_account(&id)?;
    acct.admit().await?;
    let cursor = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let read = acct
        .changes(
            cursor,
            q.limit.unwrap_or(1_000),
            Duration::from_secs_f64(wait.min(3_600.0)),
        )
        .await?;
    Ok(json_text(StatusCode::OK, changes_json(&read)))
}

async fn head(State(s): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let acct = s.api_account(&id)?;
    acct.admit().await?;
    json_of(
        StatusCode::OK,
        &HeadCursor {
            cursor: acct.head()?.to_string(),
        },
    )
}

fn entity_key(kind: &str, eid: &str) -> Result<EntityKey, ApiError> {
    let kind: EntityKind = kind
        .parse()
        .map_err(|e| ApiError(ProviderError::Rejected(format!("{e}"))))?;
    EntityKey::new(kind, eid).map_err(|e| ApiError(ProviderError::Rejected(e.to_string())))
}

fn origin_of(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    headers
        .get(ORIGIN_HEADER)
        .map(|v| {
            v.to_str()
                .map_err(|_| bad_request(format!("{ORIGIN_HEADER} must be visible ASCII")))
        })
        .transpose()
}

async fn put_entity(
    State(s): State<Shared>,
    Path((id, kind, eid)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let key = entity_key(&kind, &eid)?;
    let origin = origin_of(&headers)?;
    let acct = s.api_account(&id)?;
    acct.admit().await?;
    let PutBody { payload } = serde_json::from_slice(&body)
        .map_err(|e| bad_request(format!("body must be {{\"payload\": {{…}}}}: {e}")))?;
    let payload = Payload::new(payload)?;
    acct.put(key, payload, origin)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_entity(
    State(s): State<Shared>,
    Path((id, kind, eid)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let key = entity_key(&kind, &eid)?;
    let origin = origin_of(&headers)?;
    let acct = s.api_account(&id)?;
    acct.admit().await?;
    acct.delete(&key, origin)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn write_batch(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let origin = origin_of(&headers)?.map(str::to_owned);
    let acct = s.api_account(&id)?;
    acct.admit().await?;
    // Parsing, canonicalising and hashing up to 10,000 payloads is tens of milliseconds
    // of CPU: keep it off the async workers that serve long-polls.
    let prepared = tokio::task::spawn_blocking(move || prepare_writes(&body))
        .await
        .map_err(|e| ProviderError::Unavailable(format!("batch worker failed: {e}")))??;
    let (ops, rejected) = prepared;
    let applied = ops.len();
    acct.apply_writes(ops, origin.as_deref())?;
    json_of(StatusCode::OK, &BatchOutcome { applied, rejected })
}

type PreparedWrites = (Vec<(EntityKey, Option<Arc<Payload>>)>, Vec<Rejection>);

/// Validates a batch: the well-formed writes, and a rejection for each other one.
fn prepare_writes(body: &[u8]) -> Result<PreparedWrites, ApiError> {
    let batch: WireWriteBatch = serde_json::from_slice(body)
        .map_err(|e| bad_request(format!("body must be {{\"writes\": [...]}}: {e}")))?;
    if batch.writes.len() > MAX_LIMIT {
        return Err(bad_request(format!(
            "{} writes in one batch; at most {MAX_LIMIT}",
            batch.writes.len()
        )));
    }
    let mut ops = Vec::with_capacity(batch.writes.len());
    let mut rejected = Vec::new();
    for (index, w) in batch.writes.into_iter().enumerate() {
        let op = w
            .key
            .parse::<EntityKey>()
            .map_err(|e| e.to_string())
            .and_then(|key| match (w.op, w.payload) {
                (WireOp::Delete, _) => Ok((key, None)),
                (WireOp::Upsert, None) => Err("an upsert needs a payload".to_string()),
                (WireOp::Upsert, Some(p)) => Payload::new(p)
                    .map(|p| (key, Some(p)))
                    .map_err(|e| wire::message_of(&e)),
            });
        match op {
            Ok(op) => ops.push(op),
            Err(message) => rejected.push(Rejection {
                index,
                key: w.key,
                message,
            }),
        }
    }
    Ok((ops, rejected))
}

async fn probe(State(s): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let started = Instant::now();
    let acct = s.api_account(&id)?;
    acct.admit().await?;
    json_of(StatusCode::OK, &acct.probe(started)?)
}

#[derive(Deserialize)]
struct ActivityQuery {
    since: Option<String>,
}

async fn activity(
    State(s): State<Shared>,
    Path(id): Path<String>,
    q: Result<Query<ActivityQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| bad_request(e.body_text()))?;
    let since = match q.since.as_deref() {
        None => 0,
        Some(t) => parse_time_ms(t)
            .ok_or_else(|| bad_request(format!("since {t:?} is not an RFC 3339 time")))?,
    };
    let acct = s.api_account(&id)?;
    acct.admit().await?;
    json_of(StatusCode::OK, &acct.activity_since(since)?)
}

/// Serves `router(store, config)` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: SimStore,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Small JSON answers must not wait for Nagle's algorithm (40 ms stalls under load).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(store, config))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_of_the_server_config_never_shows_the_token() {
        let c = super::ServerConfig {
            token: Some("tok-hunter2".into()),
            auto_create: true,
        };
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("hunter2") && dbg.contains("<redacted>"),
            "{dbg}"
        );
    }
}
