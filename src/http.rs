//! The operator's two HTTP listeners.
//!
//! Contract:
//! - The **health listener** (`--health-listen`) serves `/metrics` (Prometheus text),
//!   `/healthz` (the process runs) and `/readyz` (the controllers are set up), and
//!   nothing else. The **webhook listener** (`--listen`) serves the routes it is given
//!   (the provider-notice and WeCom callback webhooks) and nothing else. Separate
//!   sockets, so no load on the webhook — however large — can make a liveness or
//!   readiness probe fail or a scrape time out.
//! - The webhook listener is bounded, by layers around the routes it is given (the
//!   routes themselves know nothing of it), with [`WebhookLimits`]:
//!   - at most `max_in_flight` requests at once; one more is answered `503` with
//!     `Retry-After` at once, never queued;
//!   - a body of at most [`MAX_WEBHOOK_BODY`] (64 KiB): a larger declared
//!     `Content-Length` is answered `413` before the body is read, a larger streamed body
//!     `413` as soon as it passes the limit;
//!   - the whole body must arrive within `read_timeout`, else `408` and the slot is free
//!     again; the request headers too, else the connection is closed;
//!   - at most `max_connections` open connections; more are closed as they are accepted,
//!     so a flood cannot use up the process's file descriptors (which the Kubernetes and
//!     Kafka clients and the health listener need).
//! - The handler itself runs without a timeout once its body is read: a notice that was
//!   accepted is never cut off half-way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Printed on stdout, followed by ` http://ADDR`, once the webhook listener is bound.
/// Tests and scripts parse it.
pub const WEBHOOK_LINE: &str = "understudy operator listening on";
/// Printed on stdout, followed by ` http://ADDR`, once the health listener is bound.
pub const HEALTH_LINE: &str = "understudy operator health and metrics on";

/// Largest provider-notice body accepted (a notice is a few hundred bytes).
pub const MAX_WEBHOOK_BODY: usize = 64 * 1024;

/// Readiness flag flipped by the controller once its watches are established.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set_ready(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Bounds of the webhook listener (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookLimits {
    /// Requests handled at once; one more gets 503 with Retry-After.
    pub max_in_flight: usize,
    /// Time allowed for the request headers and, separately, for the whole body.
    pub read_timeout: Duration,
    /// Largest body, in bytes.
    pub max_body_bytes: usize,
    /// Open connections; more are closed as they are accepted.
    pub max_connections: usize,
}

impl WebhookLimits {
    /// The limits for `max_in_flight` requests: room for four connections per request
    /// slot (keep-alive connections of a few senders sit idle between notices).
    pub fn new(max_in_flight: usize, read_timeout: Duration) -> Self {
        let max_in_flight = max_in_flight.max(1);
        WebhookLimits {
            max_in_flight,
            read_timeout,
            max_body_bytes: MAX_WEBHOOK_BODY,
            max_connections: max_in_flight.saturating_mul(4),
        }
    }
}

impl Default for WebhookLimits {
    fn default() -> Self {
        WebhookLimits::new(64, Duration::from_secs(10))
    }
}

/// Where the operator listens, and the webhook's bounds.
#[derive(Clone, Debug)]
pub struct Listeners {
    /// The provider-notice webhook (`--listen`).
    pub webhook: SocketAddr,
    /// `/metrics`, `/healthz`, `/readyz` (`--health-listen`).
    pub health: SocketAddr,
    pub limits: WebhookLimits,
}

/// The bound addresses (port 0 resolved) and the serving tasks.
pub struct Serving {
    pub webhook: SocketAddr,
    pub health: SocketAddr,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Serving {
    /// Print [`WEBHOOK_LINE`] and [`HEALTH_LINE`] with the bound addresses on stdout.
    pub fn announce(&self) {
        println!("{WEBHOOK_LINE} http://{}", self.webhook);
        println!("{HEALTH_LINE} http://{}", self.health);
    }
}

/// Both listeners bound (port 0 resolved), not serving yet: the operator learns its
/// webhook address first (it is written on the Lease) and serves once its routes exist.
pub struct Bound {
    webhook: TcpListener,
    health: TcpListener,
    limits: WebhookLimits,
}

impl Bound {
    pub async fn bind(listeners: &Listeners) -> std::io::Result<Bound> {
        Ok(Bound {
            health: TcpListener::bind(listeners.health).await?,
            webhook: TcpListener::bind(listeners.webhook).await?,
            limits: listeners.limits.clone(),
        })
    }

    pub fn webhook_addr(&self) -> std::io::Result<SocketAddr> {
        self.webhook.local_addr()
    }

    /// Serve the health routes and `webhooks` (bounded by the limits) until the tasks
    /// are aborted.
    pub fn serve(self, readiness: Readiness, webhooks: Router) -> std::io::Result<Serving> {
        let webhook = self.webhook.local_addr()?;
        let health = self.health.local_addr()?;
        let health_task = serve_on(self.health, router(readiness));
        let webhook_task = serve_webhooks_on(self.webhook, webhooks, &self.limits);
        Ok(Serving {
            webhook,
            health,
            tasks: vec![health_task, webhook_task],
        })
    }
}

/// Serve the health routes on `listeners.health` and `webhooks`, bounded by
/// `listeners.limits`, on `listeners.webhook`, until the tasks are aborted.
pub async fn serve_operator(
    listeners: &Listeners,
    readiness: Readiness,
    webhooks: Router,
) -> std::io::Result<Serving> {
    Bound::bind(listeners).await?.serve(readiness, webhooks)
}

/// The health routes.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let r = readiness.clone();
                async move {
                    if r.is_ready() {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    }
                }
            }),
        )
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::metrics().render(),
    )
}

/// Serve `app` on a bound listener until the task is dropped.
pub fn serve_on(listener: tokio::net::TcpListener, app: Router) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    })
}

/// Bind and serve until the task is dropped. Returns the bound address (port 0 allowed).
pub async fn serve(
    addr: SocketAddr,
    app: Router,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    Ok((bound, task))
}

/// `routes` behind the request bounds of `limits`: the in-flight cap outermost, so a
/// request waiting for its body holds a slot until it has it or times out.
pub fn limit_webhooks(routes: Router, limits: &WebhookLimits) -> Router {
    let slots = Arc::new(Semaphore::new(limits.max_in_flight));
    routes
        .layer(middleware::from_fn_with_state(limits.clone(), read_body))
        .layer(middleware::from_fn_with_state(slots, admit))
}

/// Bind and serve `routes` with every bound of `limits` (HTTP/1.1). Returns the bound
/// address (port 0 allowed).
pub async fn serve_webhooks(
    addr: SocketAddr,
    routes: Router,
    limits: &WebhookLimits,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((bound, serve_webhooks_on(listener, routes, limits)))
}

/// Serve `routes` on a bound listener with every bound of `limits` (HTTP/1.1).
pub fn serve_webhooks_on(
    listener: TcpListener,
    routes: Router,
    limits: &WebhookLimits,
) -> tokio::task::JoinHandle<()> {
    let app = limit_webhooks(routes, limits);
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let header_timeout = limits.read_timeout;
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "webhook listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                tracing::debug!(%peer, "webhook listener: too many open connections, closed");
                drop(stream);
                continue;
            };
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(header_timeout);
                let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "webhook connection ended");
                }
            });
        }
    })
}

/// Refuse at once when every slot is taken (a queue would only make senders time out
/// later, holding connections meanwhile).
async fn admit(State(slots): State<Arc<Semaphore>>, request: Request, next: Next) -> Response {
    let Ok(_slot) = slots.try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "too many webhook requests at once; retry in a second\n",
        )
            .into_response();
    };
    next.run(request).await
}

/// Read the whole body within the limits, then hand the request on with the body in
/// memory (so the handler never waits on the client).
async fn read_body(State(limits): State<WebhookLimits>, request: Request, next: Next) -> Response {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body larger than {} bytes; a provider notice is far smaller\n",
                limits.max_body_bytes
            ),
        )
            .into_response()
    };
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return too_large();
    }
    let read = tokio::time::timeout(
        limits.read_timeout,
        collect_limited(body, limits.max_body_bytes),
    )
    .await;
    match read {
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {:?}\n",
                limits.read_timeout
            ),
        )
            .into_response(),
        Ok(Err(BodyError::TooLarge)) => too_large(),
        Ok(Err(BodyError::Read(e))) => (
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {e}\n"),
        )
            .into_response(),
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    }
}

enum BodyError {
    TooLarge,
    Read(axum::Error),
}

async fn collect_limited(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Read)?;
        if out.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
