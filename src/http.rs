//! The operator's HTTP server: `/metrics` (Prometheus text), `/healthz` (the process
//! runs), `/readyz` (the controller is watching). Other modules merge their routes in
//! (the provider-notice webhook).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

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

/// The base routes.
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
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn health_ready_and_metrics_answer() {
        let ready = Readiness::default();
        let (addr, task) = serve("127.0.0.1:0".parse().unwrap(), router(ready.clone()))
            .await
            .unwrap();
        let get = |p: &str| reqwest::get(format!("http://{addr}{p}"));
        assert_eq!(get("/healthz").await.unwrap().status(), 200);
        assert_eq!(get("/readyz").await.unwrap().status(), 503);
        ready.set_ready(true);
        assert_eq!(get("/readyz").await.unwrap().status(), 200);
        crate::metrics::metrics()
            .replication_dlq_total
            .with_label_values(&["n", "p", "d"])
            .inc();
        let body = get("/metrics").await.unwrap().text().await.unwrap();
        assert!(body.contains("understudy_replication_dlq_total"), "{body}");
        task.abort();
    }
}
