use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::routing::get;

use crate::provider::AccountProvider;
use crate::provider::http::{HttpOptions, HttpProvider};

type Peers = Arc<Mutex<BTreeSet<SocketAddr>>>;

async fn status(State(peers): State<Peers>, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> String {
    peers.lock().unwrap().insert(peer);
    r#"{"status":"active","reason":"","since":"2026-01-01T00:00:00.000Z"}"#.into()
}

#[tokio::test]
async fn adapters_of_different_accounts_reuse_one_connection_to_their_provider() {
    let peers: Peers = Arc::default();
    let app = Router::new()
        .route("/v1/accounts/{account}/status", get(status))
        .with_state(peers.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    // Timeouts of their own, so no other test's pool is involved.
    let options = HttpOptions {
        request_timeout: Duration::from_millis(1_777),
        ..HttpOptions::default()
    };
    let endpoint = format!("http://{addr}");
    let accounts: Vec<HttpProvider> = ["corp-a", "corp-b", "corp-c"]
        .iter()
        .map(|a| HttpProvider::with_options(&endpoint, a, Some("t"), options.clone()).unwrap())
        .collect();
    for round in 0..2 {
        for p in &accounts {
            p.status()
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
    }
    let seen = peers.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        1,
        "six status reads of three accounts came over {} connections: {seen:?}",
        seen.len()
    );
}
