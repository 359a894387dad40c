//! The gated body against a real HTTP server on loopback: a write whose permit goes after
//! the hand-over never reaches the server whole.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use serde_json::json;

use crate::model::{Entity, EntityKey, EntityKind};
use crate::provider::http::{HttpOptions, HttpProvider, RetryPolicy};
use crate::provider::{AccountProvider, ProviderError, WritePermit, permitted_write};

const GONE: &str = "the claim is gone";

/// A server that records the bodies it received whole (a request whose body never came
/// is not a write) and answers 200.
async fn server() -> (String, Arc<Mutex<Vec<String>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .fallback(
            |State(got): State<Arc<Mutex<Vec<String>>>>, req: Request| async move {
                match axum::body::to_bytes(req.into_body(), 1 << 20).await {
                    Ok(b) => {
                        got.lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&b).into_owned());
                        (
                            axum::http::StatusCode::OK,
                            [("content-type", "application/json")],
                            "{}",
                        )
                    }
                    Err(_) => (
                        axum::http::StatusCode::BAD_REQUEST,
                        [("content-type", "application/json")],
                        "{}",
                    ),
                }
            },
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), received)
}

fn provider(url: &str) -> HttpProvider {
    let options = HttpOptions {
        retry: RetryPolicy {
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
        ..HttpOptions::default()
    };
    HttpProvider::with_options(url, "corp-b", Some("t"), options).unwrap()
}

/// A permit that allows its first `allowed` asks and refuses the rest.
fn permit_for(allowed: usize) -> (WritePermit, Arc<AtomicUsize>) {
    let asks = Arc::new(AtomicUsize::new(0));
    let counted = asks.clone();
    let permit = WritePermit::new(move || {
        if counted.fetch_add(1, Ordering::AcqRel) < allowed {
            Ok(())
        } else {
            Err(ProviderError::Unavailable(GONE.into()))
        }
    });
    (permit, asks)
}

fn tag() -> Entity {
    Entity::new(
        EntityKey::new(EntityKind::Tag, "hot").unwrap(),
        json!({"name": "v19"}),
    )
}

/// The claim lapses after the client handed the request over and before the connection
/// sent its body (a process stopped in between): the write is refused with the permit's
/// reason, and the server never gets it whole.
#[tokio::test]
async fn a_write_whose_permit_goes_before_its_body_leaves_is_never_received() {
    let (url, received) = server().await;
    let p = provider(&url);
    let (permit, asks) = permit_for(1);
    let err = permitted_write(permit, p.put_entity(&tag(), Some("origin")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(GONE), "{err}");
    assert!(
        asks.load(Ordering::Acquire) >= 2,
        "asked before the hand-over and again when the body left"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        received.lock().unwrap().is_empty(),
        "the server got the write: {:?}",
        received.lock().unwrap()
    );
    // With the permit held throughout, the same write arrives once, whole.
    let (permit, _) = permit_for(usize::MAX);
    permitted_write(permit, p.put_entity(&tag(), Some("origin")))
        .await
        .unwrap();
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("v19"), "{got:?}");
}

/// Outside a guarded write (reads, the operator's own calls) nothing is gated.
#[tokio::test]
async fn a_write_outside_any_permit_is_sent_as_before() {
    let (url, received) = server().await;
    provider(&url)
        .put_entity(&tag(), Some("origin"))
        .await
        .unwrap();
    assert_eq!(received.lock().unwrap().len(), 1);
}
