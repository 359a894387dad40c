//! Sending one notification to one sink: one attempt ([`deliver`]), and attempts until
//! delivered, final, out of attempts or past the deadline ([`deliver_with_retry`]).
//!
//! Contract:
//! - The request is a `POST` of the sink's body ([`request`], pure) with
//!   `Content-Type: application/json`; the generic webhook's is signed at the time of
//!   each attempt, so a retry carries a fresh timestamp.
//! - Retries: only [`DeliveryError::is_retryable`] errors (408, 429, 5xx, WeCom busy or
//!   rate-limited codes, no answer). The wait after attempt `n` is
//!   [`RetryPolicy::backoff`] (capped exponential, "equal jitter": between half and all
//!   of `min(cap, base·2ⁿ⁻¹)`), or the sink's `Retry-After` when longer. A wait that
//!   would end past the deadline ends the retries instead. An attempt waits for its
//!   answer at most the request timeout or what is left before the deadline; when the
//!   deadline cuts it short, the previous attempt's error is the one reported.
//! - Error texts never hold a secret: reqwest's errors lose their URL, and every text
//!   (including quoted answers) has the sink's secret fragments replaced by `<redacted>`.
//! - Redirects are not followed ([`client`]): a 3xx is a final error.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};

use super::answer::{Verdict, judge};
use super::config::{ResolvedSink, Target};
use super::event::Notification;
use super::formats::{
    SIGNATURE_HEADER, TIMESTAMP_HEADER, pagerduty_body, sign, slack_body, webhook_body, wecom_body,
};
use super::message::{Message, render};

/// Most bytes of an answer read (answers of these APIs are a few dozen bytes).
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Extra request headers: name and value.
pub type Headers = Vec<(&'static str, String)>;

/// How hard to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub attempts: u32,
    /// Wait before the second attempt (before jitter).
    pub base: Duration,
    /// Longest wait between attempts (before jitter).
    pub cap: Duration,
    /// No attempt starts, and no wait ends, later than this after the first attempt.
    pub deadline: Duration,
    /// Longest wait for one answer.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            deadline: Duration::from_secs(120),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based), given `jitter` in
    /// [0, 1]: `d/2 + d/2·jitter` with `d = min(cap, base·2^(attempt-1))`.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(31);
        let full = self.base.saturating_mul(1u32 << exp).min(self.cap);
        let half = full / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// A delivered notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// HTTP status of the answer.
    pub status: u16,
    /// Attempts it took (1 with [`deliver`]).
    pub attempts: u32,
}

/// Why a notification was not delivered. No variant ever holds a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The sink refused it; trying again cannot help.
    #[error("refused: {detail}")]
    Permanent { status: u16, detail: String },
    /// The sink failed or is rate limiting; another try may succeed.
    #[error("failed, worth retrying: {detail}")]
    Retryable {
        status: u16,
        detail: String,
        retry_after: Option<Duration>,
    },
    /// No answer: connection, TLS or timeout.
    #[error("no answer: {detail}")]
    Transport { detail: String },
    /// The request could not be built (e.g. a header value the secret makes invalid).
    #[error("cannot build the request: {detail}")]
    Invalid { detail: String },
}

impl DeliveryError {
    /// Label for metrics: `permanent`, `retryable`, `transport` or `invalid`.
    pub fn category(&self) -> &'static str {
        match self {
            DeliveryError::Permanent { .. } => "permanent",
            DeliveryError::Retryable { .. } => "retryable",
            DeliveryError::Transport { .. } => "transport",
            DeliveryError::Invalid { .. } => "invalid",
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            DeliveryError::Retryable { .. } | DeliveryError::Transport { .. }
        )
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            DeliveryError::Retryable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// What [`deliver_with_retry`] gives up with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{error} (attempts: {attempts})")]
pub struct Undelivered {
    /// The last attempt's error.
    pub error: DeliveryError,
    pub attempts: u32,
}

/// A client for notifications: no redirects, bounded connect and request times.
pub fn client(request_timeout: Duration) -> Result<reqwest::Client, DeliveryError> {
    client_builder(request_timeout)
        .build()
        .map_err(|e| DeliveryError::Invalid {
            detail: chain(&e.without_url()),
        })
}

/// The settings of [`client`], to add to (a proxy, a resolver).
pub fn client_builder(request_timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5).min(request_timeout))
        .timeout(request_timeout)
        .user_agent(concat!("understudy/", env!("CARGO_PKG_VERSION")))
}

/// The body and extra headers of `sink`'s request for `n`, at Unix time `now` (pure).
pub fn request(
    sink: &ResolvedSink,
    n: &Notification,
    message: &Message,
    now: i64,
) -> Result<(Vec<u8>, Headers), DeliveryError> {
    Ok(match &sink.target {
        Target::SecretUrl(_) => match sink.kind {
            super::config::SinkKind::Slack => (slack_body(message), vec![]),
            _ => (wecom_body(message), vec![]),
        },
        Target::PagerDuty { routing_key, .. } => {
            (pagerduty_body(routing_key.expose(), n, message), vec![])
        }
        Target::Webhook { hmac, .. } => {
            let body = webhook_body(n, message);
            let signature = sign(hmac.expose().as_bytes(), now, &body).ok_or_else(|| {
                DeliveryError::Invalid {
                    detail: "the webhook's HMAC secret is empty".into(),
                }
            })?;
            let headers = vec![
                (TIMESTAMP_HEADER, now.to_string()),
                (SIGNATURE_HEADER, signature),
            ];
            (body, headers)
        }
    })
}

/// One attempt to deliver `n` to `sink`.
pub async fn deliver(
    client: &reqwest::Client,
    sink: &ResolvedSink,
    n: &Notification,
) -> Result<Delivered, DeliveryError> {
    let message = render(n);
    let (body, headers) = request(sink, n, &message, Utc::now().timestamp())?;
    let mut req = client
        .post(sink.post_url())
        .header(CONTENT_TYPE, "application/json")
        .body(body);
    for (name, value) in headers {
        req = req.header(name, value);
    }
    let secrets = sink.secret_fragments();
    let mut answer = req.send().await.map_err(|e| DeliveryError::Transport {
        detail: scrub(&transport_text(e), &secrets),
    })?;
    let status = answer.status().as_u16();
    let retry_after = answer
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = Vec::new();
    // A cut or unreadable answer body is judged on what arrived.
    while let Ok(Some(chunk)) = answer.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ANSWER_BYTES {
            body.truncate(MAX_ANSWER_BYTES);
            break;
        }
    }
    match judge(sink.kind, status, retry_after.as_deref(), &body) {
        Verdict::Delivered => Ok(Delivered {
            status,
            attempts: 1,
        }),
        Verdict::Retry { detail, after } => Err(DeliveryError::Retryable {
            status,
            detail: scrub(&detail, &secrets),
            retry_after: after,
        }),
        Verdict::GiveUp { detail } => Err(DeliveryError::Permanent {
            status,
            detail: scrub(&detail, &secrets),
        }),
    }
}

/// Attempts to deliver `n` to `sink` under `policy` (see the module docs).
pub async fn deliver_with_retry(
    client: &reqwest::Client,
    sink: &ResolvedSink,
    n: &Notification,
    policy: &RetryPolicy,
) -> Result<Delivered, Undelivered> {
    let start = Instant::now();
    let mut attempt = 0;
    let mut previous: Option<DeliveryError> = None;
    loop {
        attempt += 1;
        let remaining = policy.deadline.saturating_sub(start.elapsed());
        let per_try = policy.request_timeout.min(remaining);
        let result = match tokio::time::timeout(per_try, deliver(client, sink, n)).await {
            Ok(result) => result,
            Err(_) => match previous.take() {
                // Cut short by the deadline: the previous attempt's error says more.
                Some(error) if per_try < policy.request_timeout => {
                    return Err(Undelivered {
                        error,
                        attempts: attempt,
                    });
                }
                _ => Err(DeliveryError::Transport {
                    detail: format!("timed out after {} ms", per_try.as_millis()),
                }),
            },
        };
        let error = match result {
            Ok(delivered) => {
                return Ok(Delivered {
                    attempts: attempt,
                    ..delivered
                });
            }
            Err(error) => error,
        };
        let wait = policy
            .backoff(attempt, jitter())
            .max(error.retry_after().unwrap_or_default());
        if !error.is_retryable()
            || attempt >= policy.attempts
            || start.elapsed() + wait >= policy.deadline
        {
            return Err(Undelivered {
                error,
                attempts: attempt,
            });
        }
        previous = Some(error);
        tokio::time::sleep(wait).await;
    }
}

/// `text` with every fragment replaced by `<redacted>`.
pub(crate) fn scrub(text: &str, fragments: &[String]) -> String {
    fragments.iter().fold(text.to_string(), |acc, f| {
        acc.replace(f.as_str(), "<redacted>")
    })
}

/// A reqwest error without its URL, with its causes.
fn transport_text(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let text = chain(&e.without_url());
    if timeout {
        format!("timed out: {text}")
    } else {
        text
    }
}

/// An error with its causes, each after a colon (reqwest says what failed only in them).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// A number in [0, 1): the clock hashed with the standard library's randomly keyed
/// hasher (fresh keys on every call).
fn jitter() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    h.write_u128(now.map(|d| d.as_nanos()).unwrap_or_default());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
#[path = "deliver_tests.rs"]
mod tests;
