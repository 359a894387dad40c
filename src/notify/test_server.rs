//! A scripted HTTP receiver on loopback for the delivery tests: it records every request
//! and answers from a script (the last answer repeats), optionally holding each request
//! until a gate opens.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{TimeZone, Utc};
use tokio::sync::Semaphore;

use crate::api::Side;
use crate::notify::config::{NotificationSink, ResolvedSink, SinkKind};
use crate::notify::event::{Event, Notification};

/// One answer of the script.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
    /// Sleep this long before answering.
    pub delay: Duration,
}

pub fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status,
        body: body.into(),
        headers: vec![],
        delay: Duration::ZERO,
    }
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

#[derive(Clone)]
struct Script {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    gate: Option<Arc<Semaphore>>,
}

/// A running receiver.
pub struct Receiver {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    gate: Option<Arc<Semaphore>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Answers from `answers` in order, the last one repeating.
    pub async fn start(answers: Vec<Answer>) -> Receiver {
        Self::launch(answers, None).await
    }

    /// Like [`Receiver::start`], but each request waits for [`Receiver::open`] first.
    pub async fn gated(answers: Vec<Answer>) -> Receiver {
        Self::launch(answers, Some(Arc::new(Semaphore::new(0)))).await
    }

    async fn launch(answers: Vec<Answer>, gate: Option<Arc<Semaphore>>) -> Receiver {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Script {
            answers: Arc::new(Mutex::new(answers.into())),
            seen: seen.clone(),
            gate: gate.clone(),
        };
        let app = Router::new().fallback(handle).with_state(script);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            addr,
            seen,
            gate,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Let `n` held requests through.
    pub fn open(&self, n: usize) {
        if let Some(gate) = &self.gate {
            gate.add_permits(n);
        }
    }

    /// Wait (at most 3 s) until `n` requests have arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Seen> {
        let until = Instant::now() + Duration::from_secs(3);
        loop {
            let seen = self.seen();
            if seen.len() >= n || Instant::now() > until {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(s): State<Script>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    s.seen.lock().unwrap().push(Seen {
        uri: uri.to_string(),
        headers,
        body,
        at: Instant::now(),
    });
    if let Some(gate) = &s.gate {
        gate.acquire().await.unwrap().forget();
    }
    let a = {
        let mut answers = s.answers.lock().unwrap();
        if answers.len() > 1 {
            answers.pop_front().unwrap()
        } else {
            answers
                .front()
                .cloned()
                .unwrap_or_else(|| answer(200, "ok"))
        }
    };
    tokio::time::sleep(a.delay).await;
    let mut out = (StatusCode::from_u16(a.status).unwrap(), a.body).into_response();
    for (k, v) in a.headers {
        out.headers_mut().insert(k, v.parse().unwrap());
    }
    out
}

/// A client that never goes through a proxy (loopback receivers).
pub fn client(timeout: Duration) -> reqwest::Client {
    crate::notify::deliver::client_builder(timeout)
        .no_proxy()
        .build()
        .unwrap()
}

/// A sink of `kind` posting to `url` (the Secret's value for WeCom and Slack).
pub fn sink(kind: SinkKind, url: &str, secret: &str) -> ResolvedSink {
    let plain_url = matches!(kind, SinkKind::PagerDuty | SinkKind::Webhook);
    let config = NotificationSink {
        name: format!("{}-sink", kind.as_str()),
        kind,
        secret_ref: crate::api::SecretKeyRef {
            name: "s".into(),
            key: None,
        },
        url: plain_url.then(|| url.to_string()),
        min_severity: None,
        events: vec![],
    };
    let secret = if plain_url { secret } else { url };
    ResolvedSink::resolve(&config, secret.as_bytes()).unwrap()
}

pub fn freeze(pair: &str) -> Notification {
    Notification {
        namespace: "payments".into(),
        pair: pair.into(),
        event: Event::SideFrozen {
            side: Side::Primary,
            state: crate::notify::event::StoppedState::Frozen,
            evidence: "provider notice n-1".into(),
        },
        serving: Side::Primary,
        at: Utc.with_ymd_and_hms(2026, 3, 1, 2, 0, 0).unwrap(),
    }
}
