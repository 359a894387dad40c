//! `HttpProvider`: the `AccountProvider` trait over the Provider API (`openapi.yaml`),
//! the adapter behind `provider: http` and the way everything reaches `understudy sim`.
//!
//! Contract:
//! - Timeouts: connect 2 s, request 10 s, a long-poll `wait + 5 s` (never less than
//!   the request timeout: a full batch with no wait still needs its time). No answer in time,
//!   a refused connection or any 5xx is `Unavailable` — never a freeze.
//! - Error answers map to typed `ProviderError`s by their code (see `wire`); a frozen
//!   account is `AccountFrozen` only when the provider says `account_frozen`.
//! - Idempotent calls (every GET, PUT, DELETE, and the batch-write POST, whose writes
//!   are full-state) are retried on transient errors only
//!   (`ProviderError::is_transient`): exponential backoff with jitter, 3 attempts by
//!   default, waiting `Retry-After` on a 429 (giving up at once when that is longer than
//!   `max_retry_after`, so a caller's own deadline is not silently overrun). The probe
//!   POST is never retried: its latency and outcome are the measurement.
//! - The bearer token is sent as a sensitive header, never logged; `Debug` redacts it.

use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;

use super::wire::{self, HeadCursor, ListFields, ORIGIN_HEADER, PutBodyRef};
use super::{
    AccountProvider, ActivityEvent, BatchOutcome, ChangeBatch, DigestPage, EntityPage, EntityWrite,
    ProbeResult, ProviderError, StatusReport,
};
use crate::model::{Entity, EntityKey};

/// Most writes the Provider API takes in one `POST …/writes`.
pub const MAX_BATCH: usize = 10_000;

/// Why an `HttpProvider` could not be built (configuration, not the provider's answer).
#[derive(Debug, thiserror::Error)]
pub enum HttpConfigError {
    #[error("provider endpoint {0:?} is not an absolute http(s) URL")]
    BadEndpoint(String),
    /// The endpoint itself is not repeated: it holds the credentials.
    #[error(
        "the provider endpoint of host {host:?} carries credentials (user:password@ or user@): remove them and put the token in the Secret named by credentialsSecretRef"
    )]
    CredentialsInEndpoint { host: String },
    #[error("the provider token holds characters not allowed in an HTTP header")]
    BadToken,
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Retry policy for idempotent calls.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Total attempts, the first included (1 = no retry).
    pub attempts: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Longest `Retry-After` honoured by waiting; longer ones return `RateLimited`.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

/// Client options.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Added to a long-poll's `wait` to give its request timeout.
    pub long_poll_grace: Duration,
    pub retry: RetryPolicy,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            long_poll_grace: Duration::from_secs(5),
            retry: RetryPolicy::default(),
        }
    }
}

/// One account behind the Provider API.
#[derive(Clone)]
pub struct HttpProvider {
    client: reqwest::Client,
    base: Url,
    account: String,
    auth: Option<HeaderValue>,
    options: HttpOptions,
}

impl std::fmt::Debug for HttpProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProvider")
            .field("base", &self.base.as_str())
            .field("account", &self.account)
            .field("token", &self.auth.as_ref().map(|_| "<redacted>"))
            .field("options", &self.options)
            .finish()
    }
}

impl HttpProvider {
    /// A client of `account` at `endpoint` (e.g. `http://127.0.0.1:8080`), with the
    /// default options.
    pub fn new(
        endpoint: &str,
        account: &str,
        token: Option<&str>,
    ) -> Result<Self, HttpConfigError> {
        Self::with_options(endpoint, account, token, HttpOptions::default())
    }

    pub fn with_options(
        endpoint: &str,
        account: &str,
        token: Option<&str>,
        options: HttpOptions,
    ) -> Result<Self, HttpConfigError> {
        let base =
            Url::parse(endpoint).map_err(|_| HttpConfigError::BadEndpoint(endpoint.to_string()))?;
        // Checked before anything may print the URL (the CRD refuses it first).
        if !base.username().is_empty() || base.password().is_some() {
            return Err(HttpConfigError::CredentialsInEndpoint {
                host: base.host_str().unwrap_or_default().to_string(),
            });
        }
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(HttpConfigError::BadEndpoint(endpoint.to_string()));
        }
        let auth = token
            .map(|t| {
                let mut v = HeaderValue::from_str(&format!("Bearer {t}"))
                    .map_err(|_| HttpConfigError::BadToken)?;
                // Keeps the value out of reqwest's and hyper's debug output.
                v.set_sensitive(true);
                Ok(v)
            })
            .transpose()?;
        let client = super::pool::client(super::pool::Timeouts {
            connect: Some(options.connect_timeout),
            request: options.request_timeout,
        })
        .map_err(|e| HttpConfigError::Client(e.to_string()))?;
        Ok(HttpProvider {
            client,
            base,
            account: account.to_string(),
            auth,
            options,
        })
    }

    /// `<base>/v1/accounts/<account>/<tail…>`, each segment percent-encoded.
    fn url(&self, tail: &[&str]) -> Result<Url, ProviderError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| ProviderError::Protocol("endpoint cannot take a path".into()))?
            .pop_if_empty()
            .extend(["v1", "accounts", &self.account])
            .extend(tail);
        Ok(url)
    }

    /// One attempt: send, read the whole body, map non-2xx answers to errors.
    async fn attempt(
        &self,
        method: Method,
        url: Url,
        body: Option<Bytes>,
        origin: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<Bytes, ProviderError> {
        let mut req = self.client.request(method, url);
        if let Some(auth) = &self.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        if let Some(origin) = origin {
            req = req.header(ORIGIN_HEADER, origin);
        }
        if let Some(body) = body {
            req = req.header(CONTENT_TYPE, "application/json").body(body);
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let req = req.build().map_err(transport_error)?;
        let resp = super::gate::send_gated(&self.client, req)
            .await?
            .map_err(transport_error)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = resp.bytes().await.map_err(transport_error)?;
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(wire::error_of_response(
                status.as_u16(),
                retry_after.as_deref(),
                &bytes,
            ))
        }
    }

    /// An idempotent call, retried on transient errors per the policy.
    async fn idempotent(
        &self,
        method: Method,
        url: Url,
        body: Option<Bytes>,
        origin: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<Bytes, ProviderError> {
        let policy = &self.options.retry;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(policy.min_delay)
            .with_max_delay(policy.max_delay)
            .with_max_times(policy.attempts.saturating_sub(1))
            .with_jitter();
        let max_retry_after = policy.max_retry_after;
        (|| self.attempt(method.clone(), url.clone(), body.clone(), origin, timeout))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(ProviderError::is_transient)
            .adjust(move |err, next| match (err, next) {
                (_, None) => None,
                (ProviderError::RateLimited { retry_after }, Some(_)) => {
                    (*retry_after <= max_retry_after).then_some(*retry_after)
                }
                (_, next) => next,
            })
            .notify(|err, wait| {
                tracing::debug!(account = %self.account, code = err.code(), ?wait, "retrying provider call");
            })
            .await
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        url: Url,
        timeout: Option<Duration>,
    ) -> Result<T, ProviderError> {
        let bytes = self
            .idempotent(Method::GET, url, None, None, timeout)
            .await?;
        decode(&bytes)
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProviderError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ProviderError::Protocol(format!("cannot decode the answer: {e}")))
}

/// A request that got no answer. The URL in reqwest's message holds no secret (the
/// token travels in a header).
fn transport_error(e: reqwest::Error) -> ProviderError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "transport error"
    };
    ProviderError::Unavailable(format!("{what}: {e}"))
}

#[async_trait]
impl AccountProvider for HttpProvider {
    fn account_id(&self) -> &str {
        &self.account
    }

    async fn status(&self) -> Result<StatusReport, ProviderError> {
        self.get_json(self.url(&["status"])?, None).await
    }

    async fn list_entities(
        &self,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<EntityPage, ProviderError> {
        let mut url = self.url(&["entities"])?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(after) = after {
                q.append_pair("after", after.as_str());
            }
            q.append_pair("limit", &limit.to_string());
        }
        self.get_json(url, None).await
    }

    /// `GET …/entities?fields=digest`: the provider sends no payloads.
    async fn list_digests(
        &self,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<DigestPage, ProviderError> {
        let mut url = self.url(&["entities"])?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(after) = after {
                q.append_pair("after", after.as_str());
            }
            q.append_pair("limit", &limit.to_string());
            q.append_pair("fields", ListFields::Digest.as_str());
        }
        let page: wire::WireDigestPage = self.get_json(url, None).await?;
        Ok(page.into())
    }

    async fn changes(
        &self,
        cursor: Option<&str>,
        limit: usize,
        wait: Duration,
    ) -> Result<ChangeBatch, ProviderError> {
        let mut url = self.url(&["changes"])?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(cursor) = cursor {
                q.append_pair("cursor", cursor);
            }
            q.append_pair("limit", &limit.to_string());
            q.append_pair("wait", &format!("{:.3}", wait.as_secs_f64()));
        }
        let timeout = (wait + self.options.long_poll_grace).max(self.options.request_timeout);
        let batch: wire::WireChangeBatch = self.get_json(url, Some(timeout)).await?;
        ChangeBatch::try_from(batch)
    }

    async fn head_cursor(&self) -> Result<String, ProviderError> {
        let head: HeadCursor = self.get_json(self.url(&["changes", "head"])?, None).await?;
        Ok(head.cursor)
    }

    async fn put_entity(&self, entity: &Entity, origin: Option<&str>) -> Result<(), ProviderError> {
        let url = self.url(&["entities", entity.key.kind().as_str(), entity.key.id()])?;
        let body = serde_json::to_vec(&PutBodyRef {
            payload: &entity.payload,
        })
        .map_err(|e| ProviderError::Rejected(format!("cannot encode the payload: {e}")))?;
        self.idempotent(Method::PUT, url, Some(Bytes::from(body)), origin, None)
            .await?;
        Ok(())
    }

    async fn delete_entity(
        &self,
        key: &EntityKey,
        origin: Option<&str>,
    ) -> Result<(), ProviderError> {
        let url = self.url(&["entities", key.kind().as_str(), key.id()])?;
        self.idempotent(Method::DELETE, url, None, origin, None)
            .await?;
        Ok(())
    }

    async fn apply_batch(
        &self,
        writes: &[EntityWrite],
        origin: Option<&str>,
    ) -> Result<BatchOutcome, ProviderError> {
        let mut outcome = BatchOutcome::default();
        // The server takes at most MAX_BATCH writes a request.
        for (n, chunk) in writes.chunks(MAX_BATCH).enumerate() {
            let url = self.url(&["writes"])?;
            let body = serde_json::to_vec(&wire::WireWriteBatchRef::of(chunk))
                .map_err(|e| ProviderError::Rejected(format!("cannot encode the batch: {e}")))?;
            // A batch of full-state writes is idempotent, so this POST may be retried.
            let bytes = self
                .idempotent(Method::POST, url, Some(Bytes::from(body)), origin, None)
                .await?;
            let part: BatchOutcome = decode(&bytes)?;
            outcome.applied += part.applied;
            outcome
                .rejected
                .extend(part.rejected.into_iter().map(|mut r| {
                    r.index += n * MAX_BATCH;
                    r
                }));
        }
        Ok(outcome)
    }

    async fn probe(&self) -> Result<ProbeResult, ProviderError> {
        let url = self.url(&["probe"])?;
        let bytes = self.attempt(Method::POST, url, None, None, None).await?;
        decode(&bytes)
    }

    async fn activity(&self, since: &str) -> Result<Vec<ActivityEvent>, ProviderError> {
        let mut url = self.url(&["activity"])?;
        url.query_pairs_mut().append_pair("since", since);
        self.get_json(url, None).await
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
