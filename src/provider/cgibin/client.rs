//! One account's `cgi-bin` API client: the access token, the client-side quota, errcodes.
//!
//! - The token call (`gettoken?corpid=&corpsecret=` on WeCom,
//!   `token?grant_type=client_credential&appid=&secret=` on Official Accounts) gives a
//!   token valid `expires_in` seconds (7200). It is cached and fetched again
//!   [`REFRESH_MARGIN`] before it expires, once for all concurrent callers (the fetch
//!   holds the cache's lock).
//! - A call answered with a token errcode (40014 / 42001: invalid or expired) or a secret
//!   errcode (40001: it may have been rotated) drops that token, fetches a new one and
//!   repeats the call once; a second refusal is the answer (wechatpy repeats without a
//!   bound; we do not).
//! - Every API goes through the client-side [`Limiter`] with the dialect's quotas:
//!   waiting rather than drawing the provider's own rate-limit errcode, or answering
//!   `RateLimited` at once when the wait would be longer than the dialect allows.
//! - Any other errcode becomes a [`ProviderError`] by the dialect's table. No answer
//!   (connection refused, timeout, HTTP 5xx) is `Unavailable`, never a freeze.
//!
//! The secret and tokens never reach a log or an error message.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

use super::limiter::Limiter;
use super::{Dialect, Limit, Meaning};
use crate::provider::ProviderError;

/// A token is fetched again this long before the provider says it expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Options of an [`ApiClient`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// A proxy or the simulator instead of the dialect's public API; no trailing `/`.
    pub api_base: Option<String>,
    pub limit: Limit,
    pub request_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            api_base: None,
            limit: Limit::Documented,
            request_timeout: Duration::from_secs(10),
        }
    }
}

struct Token {
    value: String,
    refresh_at: Instant,
}

/// Whether a token fetched at some time, valid `expires_in` seconds, is still to be
/// used at `now`.
pub fn refresh_at(fetched: Instant, expires_in: Duration) -> Instant {
    fetched + expires_in.saturating_sub(REFRESH_MARGIN)
}

/// An account's API client, for one secret.
pub struct ApiClient {
    dialect: &'static Dialect,
    http: reqwest::Client,
    base: String,
    account_id: String,
    secret: String,
    token: Mutex<Option<Token>>,
    limiter: std::sync::Mutex<Limiter>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("dialect", &self.dialect.name)
            .field("base", &self.base)
            .field("account_id", &self.account_id)
            .finish_non_exhaustive()
    }
}

/// How a call is sent.
pub enum Req<'a> {
    Get(&'a [(&'a str, &'a str)]),
    Post(&'a Value),
    /// A multipart upload (`material/add_material`): query parameters, the file as the
    /// part `media`, and text parts.
    Upload {
        query: &'a [(&'a str, &'a str)],
        file_name: &'a str,
        bytes: &'a [u8],
        fields: &'a [(&'a str, &'a str)],
    },
}

/// An answer: JSON (with an errcode or not), or a file (`material/get_material` of an
/// image or a voice answers the file itself).
pub enum Body {
    Json(Value),
    File(bytes::Bytes),
}

impl ApiClient {
    /// `account_id` is the corp id or the app id.
    pub fn new(
        dialect: &'static Dialect,
        account_id: &str,
        secret: &str,
        options: &ClientOptions,
    ) -> Result<Self, ProviderError> {
        let http = crate::provider::pool::client(crate::provider::pool::Timeouts {
            connect: None,
            request: options.request_timeout,
        })
        .map_err(|e| ProviderError::Unavailable(format!("HTTP client: {e}")))?;
        let base = options.api_base.as_deref().unwrap_or(dialect.default_base);
        Ok(ApiClient {
            dialect,
            http,
            base: base.trim_end_matches('/').to_string(),
            account_id: account_id.to_string(),
            secret: secret.to_string(),
            token: Mutex::new(None),
            limiter: std::sync::Mutex::new(Limiter::new(
                options.limit,
                dialect.window,
                dialect.quota,
            )),
        })
    }

    /// The corp id or the app id.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    pub fn dialect(&self) -> &'static Dialect {
        self.dialect
    }

    /// The error a non-zero answer stands for (its errcode and the provider's errmsg).
    pub fn error_of(&self, answer: &Value) -> ProviderError {
        (self.dialect.to_error)(errcode_of(answer), answer["errmsg"].as_str().unwrap_or(""))
    }

    /// Calls `api` (e.g. `user/get`) and returns the answer of errcode 0.
    pub async fn call(&self, api: &str, send: Req<'_>) -> Result<Value, ProviderError> {
        let answer = self.answer(api, send).await?;
        match errcode_of(&answer) {
            0 => Ok(answer),
            _ => Err(self.error_of(&answer)),
        }
    }

    /// Calls `api` and returns the answer whatever its errcode (for a caller that
    /// acts on particular codes), after refreshing a refused token once. No answer is
    /// an error.
    pub async fn answer(&self, api: &str, send: Req<'_>) -> Result<Value, ProviderError> {
        match self.answer_body(api, send).await? {
            Body::Json(v) => Ok(v),
            Body::File(_) => Err(ProviderError::Protocol(format!(
                "{api}: a file where JSON was expected"
            ))),
        }
    }

    /// [`answer`](Self::answer) for an API that may answer a file.
    pub async fn answer_body(&self, api: &str, send: Req<'_>) -> Result<Body, ProviderError> {
        let mut refreshed = false;
        loop {
            self.wait_for_limit(api).await?;
            let token = self.token().await?;
            let body = self.send(api, &token, &send).await?;
            let Body::Json(answer) = &body else {
                return Ok(body);
            };
            match (self.dialect.meaning)(errcode_of(answer)) {
                Meaning::RefreshToken | Meaning::BadSecret if !refreshed => {
                    refreshed = true;
                    self.drop_token(&token).await;
                }
                _ => return Ok(body),
            }
        }
    }

    /// Fetches a URL the platform handed out (a video's `down_url`): a plain GET with
    /// no token, through the same HTTP client.
    pub async fn download(&self, url: &str) -> Result<bytes::Bytes, ProviderError> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ProviderError::Protocol(format!("not an HTTP URL: {url:?}")));
        }
        let resp =
            self.http.get(url).send().await.map_err(|e| {
                ProviderError::Unavailable(format!("download: {}", without_url(&e)))
            })?;
        if !resp.status().is_success() {
            return Err(ProviderError::Unavailable(format!(
                "download: HTTP {}",
                resp.status()
            )));
        }
        resp.bytes()
            .await
            .map_err(|e| ProviderError::Unavailable(format!("download: {}", without_url(&e))))
    }

    async fn wait_for_limit(&self, api: &str) -> Result<(), ProviderError> {
        loop {
            let wait = {
                let mut l = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
                l.admit(api, Instant::now())
            };
            match wait {
                Ok(()) => return Ok(()),
                Err(d) if d > self.dialect.max_wait => {
                    return Err(ProviderError::RateLimited { retry_after: d });
                }
                Err(d) => tokio::time::sleep(d.max(Duration::from_millis(1))).await,
            }
        }
    }

    async fn send(&self, api: &str, token: &str, send: &Req<'_>) -> Result<Body, ProviderError> {
        let url = format!("{}/cgi-bin/{api}", self.base);
        let req = match send {
            Req::Get(q) => self
                .http
                .get(&url)
                .query(&[("access_token", token)])
                .query(q),
            Req::Post(body) => self
                .http
                .post(&url)
                .query(&[("access_token", token)])
                .json(body),
            Req::Upload {
                query,
                file_name,
                bytes,
                fields,
            } => {
                let mut form = reqwest::multipart::Form::new().part(
                    "media",
                    reqwest::multipart::Part::bytes(bytes.to_vec())
                        .file_name(file_name.to_string()),
                );
                for (k, v) in fields.iter() {
                    form = form.text(k.to_string(), v.to_string());
                }
                self.http
                    .post(&url)
                    .query(&[("access_token", token)])
                    .query(query)
                    .multipart(form)
            }
        };
        let failed =
            |e: reqwest::Error| ProviderError::Unavailable(format!("{api}: {}", without_url(&e)));
        let req = req.build().map_err(failed)?;
        let resp = crate::provider::gate::send_gated(&self.http, req)
            .await?
            .map_err(failed)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ProviderError::Unavailable(format!("{api}: HTTP {status}")));
        }
        let json = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|t| t.contains("json") || t.starts_with("text/plain"));
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ProviderError::Unavailable(format!("{api}: {}", without_url(&e))))?;
        // A file is whatever is not a JSON object (the platform sends errors as JSON
        // whatever the API).
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v @ Value::Object(_)) => Ok(Body::Json(v)),
            _ if json => Err(ProviderError::Protocol(format!("{api}: not JSON"))),
            _ => Ok(Body::File(bytes)),
        }
    }

    /// The cached token, or a new one (one fetch for all waiting callers).
    async fn token(&self) -> Result<String, ProviderError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(t.value.clone());
        }
        let api = self.dialect.token_api;
        self.wait_for_limit(api).await?;
        let fetched = Instant::now();
        let resp = self
            .http
            .get(format!("{}/cgi-bin/{api}", self.base))
            .query(self.dialect.token_fixed)
            .query(&[
                (self.dialect.id_param, self.account_id.as_str()),
                (self.dialect.secret_param, self.secret.as_str()),
            ])
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(format!("{api}: {}", without_url(&e))))?;
        if !resp.status().is_success() {
            return Err(ProviderError::Unavailable(format!(
                "{api}: HTTP {}",
                resp.status()
            )));
        }
        let answer: Value = resp.json().await.map_err(|e| {
            ProviderError::Protocol(format!("{api}: not JSON: {}", without_url(&e)))
        })?;
        if errcode_of(&answer) != 0 {
            return Err(self.error_of(&answer));
        }
        let value = answer["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ProviderError::Protocol(format!("{api}: no access_token")))?
            .to_string();
        let expires_in = Duration::from_secs(answer["expires_in"].as_u64().unwrap_or(7200));
        *cached = Some(Token {
            value: value.clone(),
            refresh_at: refresh_at(fetched, expires_in),
        });
        Ok(value)
    }

    /// Forgets `used` unless another caller already replaced it.
    async fn drop_token(&self, used: &str) {
        let mut cached = self.token.lock().await;
        if cached.as_ref().is_some_and(|t| t.value == used) {
            *cached = None;
        }
    }
}

/// The errcode of an answer (absent: 0, as the successful answers of many APIs).
pub fn errcode_of(answer: &Value) -> i64 {
    answer["errcode"].as_i64().unwrap_or(0)
}

/// reqwest's error text without the URL, whose query holds the token or the secret.
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_decode() {
        "body could not be decoded"
    } else {
        "request failed"
    };
    format!(
        "{kind} ({})",
        std::error::Error::source(e).map_or(String::new(), |s| s.to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_renewed_five_minutes_before_it_expires() {
        let t0 = Instant::now();
        assert_eq!(
            refresh_at(t0, Duration::from_secs(7200)),
            t0 + Duration::from_secs(6900)
        );
        // A token shorter-lived than the margin is fetched again on every call.
        assert_eq!(refresh_at(t0, Duration::from_secs(60)), t0);
    }
}
