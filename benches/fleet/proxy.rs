//! The counting HTTP proxy between the operator and the simulator (the simulator has no
//! request counters): each request is forwarded upstream as it came and counted, in total
//! and by "METHOD kind"; the bench's own admin calls bypass it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;

pub struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    total: AtomicU64,
    /// "METHOD kind" (kind: the path's part after the account, e.g. `changes`, `status`).
    kinds: Mutex<BTreeMap<String, u64>>,
}

pub struct Proxy {
    pub url: String,
    pub state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(upstream: &str) -> Proxy {
        let state = Arc::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            total: AtomicU64::new(0),
            kinds: Mutex::new(BTreeMap::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Proxy {
            url: format!("http://127.0.0.1:{port}"),
            state,
            task,
        }
    }
}

impl ProxyState {
    pub fn snapshot(&self) -> (u64, BTreeMap<String, u64>) {
        (
            self.total.load(Ordering::Relaxed),
            self.kinds.lock().unwrap().clone(),
        )
    }
}

/// `/v1/accounts/ID/changes/head` → `changes/head`, `/v1/accounts/ID/entities/K/E` →
/// `entities`, anything else → its path.
fn request_kind(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["", "v1", "accounts", _, "changes", "head", ..] => "changes/head".into(),
        ["", "v1", "accounts", _, kind, ..] => (*kind).into(),
        _ => path.into(),
    }
}

async fn forward(
    axum::extract::State(p): axum::extract::State<Arc<ProxyState>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    p.total.fetch_add(1, Ordering::Relaxed);
    *p.kinds
        .lock()
        .unwrap()
        .entry(format!(
            "{} {}",
            req.method(),
            request_kind(req.uri().path())
        ))
        .or_default() += 1;
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 64 << 20).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let url = format!(
        "{}{}",
        p.upstream,
        parts.uri.path_and_query().map_or("/", |x| x.as_str())
    );
    let mut headers = parts.headers;
    for h in [HOST, CONTENT_LENGTH, TRANSFER_ENCODING, CONNECTION] {
        headers.remove(h);
    }
    match p
        .http
        .request(parts.method, url)
        .headers(headers)
        .body(body)
        .send()
        .await
    {
        Ok(resp) => {
            let status = resp.status();
            let mut headers: HeaderMap = resp.headers().clone();
            for h in [CONTENT_LENGTH, TRANSFER_ENCODING, CONNECTION] {
                headers.remove(h);
            }
            match resp.bytes().await {
                Ok(bytes) => (status, headers, bytes).into_response(),
                Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
            }
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
