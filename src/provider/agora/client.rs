//! One Agora Chat app's REST client: the app token, the per-second budgets, errors.
//!
//! - The app token is an AccessToken2 with the chat app privilege, built locally from the
//!   App ID and App Certificate ([`super::token`]), valid [`TOKEN_LIFETIME`] and built
//!   again [`REFRESH_MARGIN`] before it expires. Nothing is fetched: a token cannot fail
//!   to be issued, only be refused.
//! - Calls go to `{apiBase}/{org}/{app}/…` (the App Key `org#app`).
//! - The client keeps under Agora's documented limit of 100 calls a second per App Key
//!   (all user APIs share one budget; each group API has its own — the client keeps all
//!   group APIs within one, which is stricter), waiting instead of drawing 429.
//! - Whether the app ever answered is remembered: a 401 after that is freeze evidence,
//!   before it a wrong credential ([`super::errors`]).
//!
//! The certificate and tokens never reach a log or an error message.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::errors::{Scope, classify};
use super::token::build_chat_app_token;
use crate::provider::ProviderError;
use crate::provider::cgibin::Limit;
use crate::provider::cgibin::limiter::Limiter;

/// An app token's lifetime.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// A token is built again this long before it expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(600);
/// Agora's limit: calls a second per App Key and budget.
pub const CALLS_PER_SECOND: u32 = 100;

/// The budget an API draws on: `users` for every user API, `chatgroups` for the rest.
pub fn budget(path: &str) -> &'static str {
    if path.starts_with("users") {
        "users"
    } else {
        "chatgroups"
    }
}

/// An Agora Chat app's client.
pub struct ChatClient {
    http: reqwest::Client,
    /// `{apiBase}/{org}/{app}`.
    base: String,
    app_key: String,
    app_id: String,
    certificate: String,
    token: std::sync::Mutex<Option<(String, Instant)>>,
    limiter: std::sync::Mutex<Limiter>,
    worked: AtomicBool,
}

impl std::fmt::Debug for ChatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatClient")
            .field("base", &self.base)
            .field("app_key", &self.app_key)
            .finish_non_exhaustive()
    }
}

fn per_second(_budget: &str) -> u32 {
    CALLS_PER_SECOND
}

impl ChatClient {
    /// `app_key` is `org#app`; `api_base` the app's REST host (`https://a41.chat.agora.io`).
    pub fn new(
        api_base: &str,
        app_key: &str,
        app_id: &str,
        certificate: &str,
        limit: Limit,
        request_timeout: Duration,
    ) -> Result<Self, ProviderError> {
        let (org, app) = app_key.split_once('#').ok_or_else(|| {
            ProviderError::Misconfigured(format!(
                "appKey {app_key:?} is not ORG#APP (the console's App Key)"
            ))
        })?;
        let http = crate::provider::pool::client(crate::provider::pool::Timeouts {
            connect: None,
            request: request_timeout,
        })
        .map_err(|e| ProviderError::Unavailable(format!("HTTP client: {e}")))?;
        Ok(ChatClient {
            http,
            base: format!("{}/{org}/{app}", api_base.trim_end_matches('/')),
            app_key: app_key.to_string(),
            app_id: app_id.to_string(),
            certificate: certificate.to_string(),
            token: std::sync::Mutex::new(None),
            limiter: std::sync::Mutex::new(Limiter::new(limit, Duration::from_secs(1), per_second)),
            worked: AtomicBool::new(false),
        })
    }

    pub fn app_key(&self) -> &str {
        &self.app_key
    }

    fn token(&self) -> String {
        let mut t = self.token.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((value, renew_at)) = t.as_ref()
            && Instant::now() < *renew_at
        {
            return value.clone();
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let salt = rand_salt();
        let value = build_chat_app_token(
            &self.app_id,
            &self.certificate,
            now,
            TOKEN_LIFETIME.as_secs() as u32,
            salt,
        );
        *t = Some((
            value.clone(),
            Instant::now() + TOKEN_LIFETIME - REFRESH_MARGIN,
        ));
        value
    }

    async fn wait_for_budget(&self, path: &str) {
        let budget = budget(path);
        loop {
            let wait = {
                let mut l = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
                l.admit(budget, Instant::now())
            };
            match wait {
                Ok(()) => return,
                Err(d) => tokio::time::sleep(d.max(Duration::from_millis(1))).await,
            }
        }
    }

    /// Calls `path` (under the app, e.g. `users?limit=1`) and returns the answer's JSON.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        scope: Scope,
    ) -> Result<Value, ProviderError> {
        self.wait_for_budget(path).await;
        let mut req = self
            .http
            .request(method, format!("{}/{path}", self.base))
            .bearer_auth(self.token());
        if let Some(b) = body {
            req = req.json(b);
        }
        let failed = |e: reqwest::Error| {
            ProviderError::Unavailable(format!(
                "{}: {}",
                path.split('?').next().unwrap_or(path),
                if e.is_timeout() {
                    "timed out"
                } else {
                    "request failed"
                }
            ))
        };
        let req = req.build().map_err(failed)?;
        let resp = crate::provider::gate::send_gated(&self.http, req)
            .await?
            .map_err(failed)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            self.worked.store(true, Ordering::Relaxed);
            return Ok(answer);
        }
        Err(classify(
            status,
            answer["error"].as_str().unwrap_or(""),
            answer["error_description"].as_str().unwrap_or(""),
            self.worked.load(Ordering::Relaxed),
            scope,
            retry_after,
        ))
    }
}

/// A token's salt: random per token (the reference takes a random 32-bit number).
fn rand_salt() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    nanos
        ^ COUNT
            .fetch_add(0x9e37_79b9, Ordering::Relaxed)
            .rotate_left(7)
        | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_apis_share_one_budget_and_group_apis_have_their_own() {
        assert_eq!(budget("users?limit=100"), "users");
        assert_eq!(budget("users/alice/deactivate"), "users");
        assert_eq!(budget("chatgroups?limit=100"), "chatgroups");
        assert_eq!(budget("chatgroups/1/users"), "chatgroups");
    }
}
