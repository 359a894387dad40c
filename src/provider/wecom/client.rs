//! One corp's WeCom API client: the access token, the rate limit, errcodes.
//!
//! - `gettoken?corpid=&corpsecret=` gives a token valid `expires_in` seconds (7200). It
//!   is cached and fetched again [`REFRESH_MARGIN`] before it expires, once for all
//!   concurrent callers (the fetch holds the cache's lock).
//! - A call answered 40014 / 42001 (token invalid or expired) or 40001 (secret refused:
//!   it may have been rotated) drops that token, fetches a new one and repeats the call
//!   once; a second refusal is the answer (wechatpy repeats without a bound; we do not).
//! - Every API goes through the client-side [`Limiter`] (10,000 calls a minute each,
//!   WeCom's per-corp limit), waiting rather than drawing 45009.
//! - Any other errcode becomes a [`ProviderError`] by [`errcode::to_error`]. No answer
//!   (connection refused, timeout, HTTP 5xx) is `Unavailable`, never a freeze.
//!
//! The secret and tokens never reach a log or an error message.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

use super::errcode::{self, Meaning};
use super::limiter::Limiter;
use crate::provider::ProviderError;

/// The public WeCom API.
pub const DEFAULT_API_BASE: &str = "https://qyapi.weixin.qq.com";
/// A token is fetched again this long before WeCom says it expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Options of a [`WecomClient`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// `https://qyapi.weixin.qq.com`, a proxy, or the simulator; no trailing `/`.
    pub api_base: String,
    /// Calls a minute per API; `None` turns the client-side limit off.
    pub calls_per_minute: Option<u32>,
    pub request_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            api_base: DEFAULT_API_BASE.into(),
            calls_per_minute: Some(super::limiter::WECOM_CALLS_PER_MINUTE),
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

/// A corp's API client, for one secret.
pub struct WecomClient {
    http: reqwest::Client,
    base: String,
    corp_id: String,
    secret: String,
    token: Mutex<Option<Token>>,
    limiter: std::sync::Mutex<Limiter>,
}

impl std::fmt::Debug for WecomClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WecomClient")
            .field("base", &self.base)
            .field("corp_id", &self.corp_id)
            .finish_non_exhaustive()
    }
}

/// How a call is sent.
pub enum Req<'a> {
    Get(&'a [(&'a str, &'a str)]),
    Post(&'a Value),
}

impl WecomClient {
    pub fn new(
        corp_id: &str,
        secret: &str,
        options: &ClientOptions,
    ) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .build()
            .map_err(|e| ProviderError::Unavailable(format!("HTTP client: {e}")))?;
        Ok(WecomClient {
            http,
            base: options.api_base.trim_end_matches('/').to_string(),
            corp_id: corp_id.to_string(),
            secret: secret.to_string(),
            token: Mutex::new(None),
            limiter: std::sync::Mutex::new(Limiter::new(options.calls_per_minute)),
        })
    }

    pub fn corp_id(&self) -> &str {
        &self.corp_id
    }

    /// Calls `api` (e.g. `user/get`) and returns the answer of errcode 0.
    pub async fn call(&self, api: &str, send: Req<'_>) -> Result<Value, ProviderError> {
        let answer = self.answer(api, send).await?;
        match errcode_of(&answer) {
            0 => Ok(answer),
            _ => Err(error_of(&answer)),
        }
    }

    /// Calls `api` and returns WeCom's answer whatever its errcode (for a caller that
    /// acts on particular codes), after refreshing a refused token once. No answer is
    /// an error.
    pub async fn answer(&self, api: &str, send: Req<'_>) -> Result<Value, ProviderError> {
        let mut refreshed = false;
        loop {
            self.wait_for_limit(api).await;
            let token = self.token().await?;
            let answer = self.send(api, &token, &send).await?;
            match errcode::meaning(errcode_of(&answer)) {
                Meaning::RefreshToken | Meaning::BadSecret if !refreshed => {
                    refreshed = true;
                    self.drop_token(&token).await;
                }
                _ => return Ok(answer),
            }
        }
    }

    async fn wait_for_limit(&self, api: &str) {
        loop {
            let wait = {
                let mut l = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
                l.admit(api, Instant::now())
            };
            match wait {
                Ok(()) => return,
                Err(d) => tokio::time::sleep(d.max(Duration::from_millis(1))).await,
            }
        }
    }

    async fn send(&self, api: &str, token: &str, send: &Req<'_>) -> Result<Value, ProviderError> {
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
        };
        let resp = req
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(format!("{api}: {}", without_url(&e))))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ProviderError::Unavailable(format!("{api}: HTTP {status}")));
        }
        resp.json::<Value>()
            .await
            .map_err(|e| ProviderError::Protocol(format!("{api}: not JSON: {}", without_url(&e))))
    }

    /// The cached token, or a new one (one fetch for all waiting callers).
    async fn token(&self) -> Result<String, ProviderError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(t.value.clone());
        }
        let fetched = Instant::now();
        let resp = self
            .http
            .get(format!("{}/cgi-bin/gettoken", self.base))
            .query(&[
                ("corpid", self.corp_id.as_str()),
                ("corpsecret", self.secret.as_str()),
            ])
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(format!("gettoken: {}", without_url(&e))))?;
        if !resp.status().is_success() {
            return Err(ProviderError::Unavailable(format!(
                "gettoken: HTTP {}",
                resp.status()
            )));
        }
        let answer: Value = resp.json().await.map_err(|e| {
            ProviderError::Protocol(format!("gettoken: not JSON: {}", without_url(&e)))
        })?;
        if errcode_of(&answer) != 0 {
            return Err(error_of(&answer));
        }
        let value = answer["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ProviderError::Protocol("gettoken: no access_token".into()))?
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

/// The errcode of an answer (absent: 0, as WeCom's successful answers of some APIs).
pub fn errcode_of(answer: &Value) -> i64 {
    answer["errcode"].as_i64().unwrap_or(0)
}

/// The error a non-zero answer stands for (its errcode and WeCom's errmsg).
pub fn error_of(answer: &Value) -> ProviderError {
    errcode::to_error(errcode_of(answer), answer["errmsg"].as_str().unwrap_or(""))
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
