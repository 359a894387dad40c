//! The simulated Agora Chat apps' own state: their credentials, which tokens they take,
//! the per-second call windows, the counters an e2e test reads, and each app's users and
//! groups ([`Chat`]). Pure: every call takes `now`.
//!
//! Behaviour modelled, with its source:
//! - Every call carries `Authorization: Bearer <app token>`; "Chat RESTful APIs only
//!   support authenticating users using app tokens" (AgoraIO/Docs-Source
//!   `shared/chat-sdk/restful-api/shared/authorization.mdx`). The token is an
//!   AccessToken2 with the chat app privilege ([`crate::provider::agora::token`]).
//! - Authentication errors (Docs-Source `shared/chat-sdk/reference/_http-status-codes.mdx`;
//!   Easemob `docs/document/server-side/error.md`): no token or an expired one → 401
//!   `unauthorized` "Unable to authenticate due to expired access token" (Easemob: "token
//!   过期或未传 token"); a corrupt token → 401 `auth_bad_access_token` "Unable to
//!   authenticate due to corrupt access token"; a well-formed token this app did not issue
//!   (other App ID, wrong certificate) → 401 `auth_bad_access_token` "Unable to
//!   authenticate". A token without the app privilege (a user token) → 401 `unauthorized`
//!   "Subject does not have permission […]" (Easemob REST doc, 401 example with
//!   `org.apache.shiro.authz.UnauthorizedException`).
//! - Unknown org/app → 404 `organization_application_not_found` "Could not find
//!   application for {org}/{app} from URI: …" (both status-code pages).
//! - Rate limits (Easemob `docs/document/server-side/limitationapi.md`,
//!   `account_register_authorized_single.md`): the user-account APIs share one budget of
//!   100 calls/s per App Key; every group API listed here has its own 100/s. Over it →
//!   429 `reach_limit` "This request has reached api limit". The window is a calendar
//!   second (the real one's shape is [UNCONFIRMED]); `ratePerSecond` replaces 100.
//! - Error body `{"error","exception","timestamp","duration","error_description"}`
//!   (Easemob REST doc examples). Exception class names are the documented ones where a
//!   page shows them, otherwise [UNCONFIRMED] (marked at each constructor).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::callbacks::{CallbackRule, Delivered};
use super::chat::Chat;
pub use super::errors::{ChatError, DEFAULT_RATE, Millis};
use crate::provider::agora::token::{self, PRIVILEGE_CHAT_APP, TokenError};

/// How an app behaves (`PUT /admin/agora/apps/{org}/{app}`).
#[derive(Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgoraConfig {
    pub app_id: String,
    pub app_certificate: String,
    /// Calls a second per API budget (default 100).
    #[serde(default = "default_rate")]
    pub rate_per_second: u32,
    /// The app's post-delivery callback rule (`{"url","secret"}`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackRule>,
}

fn default_rate() -> u32 {
    DEFAULT_RATE
}

/// Never prints the certificate.
impl std::fmt::Debug for AgoraConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgoraConfig")
            .field("app_id", &self.app_id)
            .field("rate_per_second", &self.rate_per_second)
            .field("callback", &self.callback)
            .finish_non_exhaustive()
    }
}

impl AgoraConfig {
    /// App IDs and certificates are 32 hex digits.
    pub fn validate(&self) -> Result<(), String> {
        let hex32 = |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex32(&self.app_id) {
            return Err("appId must be 32 hex digits".into());
        }
        if !hex32(&self.app_certificate) {
            return Err("appCertificate must be 32 hex digits".into());
        }
        if self.rate_per_second == 0 {
            return Err("ratePerSecond must be at least 1".into());
        }
        Ok(())
    }
}

/// Counters an e2e test reads (`GET /admin/agora/apps/{org}/{app}`).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgoraStats {
    /// Calls let through, per API.
    pub calls: BTreeMap<String, u64>,
    /// Calls refused with 429.
    pub rate_limited: u64,
    /// Calls refused with 401.
    pub unauthorized: u64,
}

/// One app.
pub struct App {
    pub org: String,
    pub app: String,
    pub config: AgoraConfig,
    pub stats: AgoraStats,
    pub chat: Chat,
    /// The callbacks sent and failed.
    pub delivered: std::sync::Arc<Delivered>,
    /// budget → (second, calls in it).
    window: HashMap<&'static str, (u64, u32)>,
}

impl App {
    /// `{org}#{app}`, the App Key.
    pub fn key(&self) -> String {
        app_key(&self.org, &self.app)
    }
}

pub fn app_key(org: &str, app: &str) -> String {
    format!("{org}#{app}")
}

/// Every simulated app, by App Key.
#[derive(Default)]
pub struct Apps {
    apps: HashMap<String, App>,
}

impl Apps {
    /// Creates or reconfigures an app; its users and groups are kept.
    pub fn configure(&mut self, org: &str, app: &str, config: AgoraConfig) {
        let key = app_key(org, app);
        let entry = self.apps.entry(key.clone()).or_insert_with(|| App {
            org: org.to_string(),
            app: app.to_string(),
            config: config.clone(),
            stats: AgoraStats::default(),
            chat: Chat::new(&key),
            delivered: Default::default(),
            window: HashMap::new(),
        });
        entry.config = config;
    }

    pub fn app(&self, org: &str, app: &str) -> Option<&App> {
        self.apps.get(&app_key(org, app))
    }

    pub fn app_mut(&mut self, org: &str, app: &str) -> Option<&mut App> {
        self.apps.get_mut(&app_key(org, app))
    }

    /// Checks the bearer token of a call to `{org}/{app}{path}` at `now` (Unix seconds).
    pub fn authenticate(
        &mut self,
        org: &str,
        app: &str,
        path: &str,
        bearer: Option<&str>,
        now: u64,
    ) -> Result<(), ChatError> {
        let a = self
            .app_mut(org, app)
            .ok_or_else(|| ChatError::app_not_found(org, app, path))?;
        let checked = check_token(&a.config, bearer, now);
        if checked.is_err() {
            a.stats.unauthorized += 1;
        }
        checked
    }

    /// Counts a 401 answered for another reason (a banned app).
    pub fn count_unauthorized(&mut self, org: &str, app: &str) {
        if let Some(a) = self.app_mut(org, app) {
            a.stats.unauthorized += 1;
        }
    }

    /// Counts a call to `api` against `budget` in the second of `now_ms`; 429 once the
    /// second's calls reach the app's rate.
    pub fn admit(
        &mut self,
        org: &str,
        app: &str,
        budget: &'static str,
        api: &str,
        now_ms: Millis,
    ) -> Result<(), ChatError> {
        let a = self
            .app_mut(org, app)
            .ok_or_else(|| ChatError::app_not_found(org, app, ""))?;
        let second = now_ms / 1000;
        let used = a.window.entry(budget).or_insert((second, 0));
        if used.0 != second {
            *used = (second, 0);
        }
        if used.1 >= a.config.rate_per_second {
            a.stats.rate_limited += 1;
            return Err(ChatError::reach_limit());
        }
        used.1 += 1;
        *a.stats.calls.entry(api.to_string()).or_default() += 1;
        Ok(())
    }
}

fn check_token(config: &AgoraConfig, bearer: Option<&str>, now: u64) -> Result<(), ChatError> {
    let expired = || ChatError::unauthorized("Unable to authenticate due to expired access token");
    let Some(token) = bearer.map(str::trim).filter(|t| !t.is_empty()) else {
        return Err(expired());
    };
    let now = u32::try_from(now).unwrap_or(u32::MAX);
    match token::verify(token, &config.app_id, &config.app_certificate, now) {
        Ok(v) if v.chat_privileges.contains_key(&PRIVILEGE_CHAT_APP) => Ok(()),
        Ok(v) => Err(ChatError::unauthorized(format!(
            "Subject does not have permission [applications:{}:user:{}]",
            config.app_id, v.chat_user_id
        ))),
        Err(TokenError::Expired) => Err(expired()),
        Err(TokenError::Malformed(_)) => Err(ChatError::bad_token(
            "Unable to authenticate due to corrupt access token",
        )),
        Err(TokenError::BadSignature | TokenError::WrongApp) => {
            Err(ChatError::bad_token("Unable to authenticate"))
        }
    }
}
