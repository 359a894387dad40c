//! The simulated official accounts' own state: which secrets they accept, the access
//! tokens they issued and when those end, per-API daily call counts, the counters an
//! e2e test reads, and each account's content ([`OaAccount`]). Pure: every call takes
//! `now` (Unix seconds).
//!
//! Behaviour modelled, with its source:
//! - `GET /cgi-bin/token` answers `{"access_token","expires_in":7200}` (wechatpy fixture
//!   `tests/fixtures/token.json`; Tencent `doc/channels/api/basic/api_getaccesstoken.html`).
//! - "Repeated acquisition will invalidate the access_token obtained last time … both new
//!   and old access_token values are available within five minutes" (Tencent
//!   `doc/service/en/Basic_Information/Get_access_token.html`): a new token cuts every
//!   older one of the app to at most 300 s more.
//! - Errcodes and errmsgs: 40001 "invalid credential, access_token is invalid or not
//!   latest" (wrong AppSecret or a token never issued), 40002 "invalid grant_type", 40013
//!   "invalid appid", 41001 "access_token missing", 41002 "appid missing", 41004
//!   "appsecret missing", 42001 "access_token expired", 45009 "reach max api daily quota
//!   limit" (WxJava `WxMpErrorMsgEnum` / `WxOpenErrorMsgEnum`; Tencent
//!   `doc/store/API/basics/commErrCode.html`).
//! - Daily quotas per API for a new account (Tencent
//!   `doc/service/Message_Management/API_Call_Limits.html`): token 2000, menu/create
//!   1000, menu/get 10000, menu/delete 1000, user/get 500, user/info 5,000,000. APIs the
//!   page does not list are unlimited unless configured (`dailyQuota`). The day is a
//!   calendar day in China Standard Time (UTC+8) — the reset hour is [UNCONFIRMED].

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::content::OaAccount;
pub use super::records::{
    OVERLAP_SECS, OaError, OaResult, Secs, anonymous_openid, media_id_for, openid_for,
};
use crate::provider::sim::rng::Rng;

/// How an official account behaves (`PUT /admin/oa/accounts/{appid}`).
#[derive(Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OaConfig {
    pub secret: String,
    /// Lifetime of an access token; the real one is 7200 s.
    #[serde(default = "default_ttl")]
    pub token_ttl_secs: u64,
    /// Calls a day per API (keyed like `menu/get`, `token`), over the defaults.
    #[serde(default)]
    pub daily_quota: BTreeMap<String, u64>,
    /// What a frozen account answers (default 48004, api forbidden for irregularities).
    #[serde(default = "default_freeze")]
    pub freeze_errcode: i64,
    /// Persons following the account, by unionid.
    #[serde(default)]
    pub followers: Vec<String>,
    /// Followers without a unionid (the account is bound to no open platform for them).
    #[serde(default)]
    pub anonymous_followers: u32,
    /// `get_current_autoreply_info`'s answer (default: Tencent's example).
    #[serde(default)]
    pub autoreply: Option<Value>,
}

fn default_ttl() -> u64 {
    7200
}
fn default_freeze() -> i64 {
    48004
}

/// Never prints the secret.
impl std::fmt::Debug for OaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OaConfig")
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("daily_quota", &self.daily_quota)
            .field("freeze_errcode", &self.freeze_errcode)
            .finish_non_exhaustive()
    }
}

/// The documented daily quota of `api`, if the quota page lists it.
pub fn default_quota(api: &str) -> Option<u64> {
    match api {
        "token" => Some(2000),
        "menu/create" | "menu/delete" => Some(1000),
        "menu/get" => Some(10_000),
        "user/get" => Some(500),
        "user/info" => Some(5_000_000),
        _ => None,
    }
}

/// Counters an e2e test reads (`GET /admin/oa/accounts/{appid}`).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OaStats {
    pub tokens_issued: u64,
    /// Calls refused with 45009.
    pub quota_limited: u64,
    /// Calls each API's quota let through (`token` included).
    pub calls: BTreeMap<String, u64>,
}

/// One official account.
pub struct App {
    pub config: OaConfig,
    pub content: OaAccount,
    pub stats: OaStats,
    /// api → (day, calls that day).
    used: HashMap<String, (u64, u64)>,
}

struct Issued {
    appid: String,
    expires: Secs,
}

/// Every simulated official account.
pub struct Apps {
    apps: HashMap<String, App>,
    tokens: HashMap<String, Issued>,
    rng: Rng,
}

impl Default for Apps {
    fn default() -> Self {
        Apps {
            apps: HashMap::new(),
            tokens: HashMap::new(),
            rng: Rng::new(0x0a5e_ed00),
        }
    }
}

/// The quota day of `now`: the calendar day in UTC+8.
pub fn quota_day(now: Secs) -> u64 {
    (now + 8 * 3600) / 86_400
}

impl Apps {
    /// Creates or reconfigures an app; its content (menu, tags, materials, followers)
    /// is kept, the configured followers are added, the autoreply replaced if given.
    pub fn configure(&mut self, appid: &str, config: OaConfig, now: Secs) -> &App {
        let app = self.apps.entry(appid.to_string()).or_insert_with(|| App {
            config: config.clone(),
            content: OaAccount::new(appid),
            stats: OaStats::default(),
            used: HashMap::new(),
        });
        for unionid in &config.followers {
            app.content.follow(Some(unionid), now);
        }
        app.content
            .ensure_anonymous(config.anonymous_followers, now);
        if let Some(reply) = &config.autoreply {
            app.content.autoreply = reply.clone();
        }
        app.config = config;
        app
    }

    pub fn app(&self, appid: &str) -> Option<&App> {
        self.apps.get(appid)
    }

    pub fn app_mut(&mut self, appid: &str) -> Option<&mut App> {
        self.apps.get_mut(appid)
    }

    pub fn apps(&self) -> impl Iterator<Item = &App> {
        self.apps.values()
    }

    /// `GET /cgi-bin/token`: a new token and its lifetime in seconds.
    pub fn token(
        &mut self,
        grant_type: &str,
        appid: &str,
        secret: &str,
        now: Secs,
    ) -> Result<(String, u64), OaError> {
        if appid.is_empty() {
            return Err(OaError::new(41002, "appid missing"));
        }
        if grant_type != "client_credential" {
            return Err(OaError::new(40002, "invalid grant_type"));
        }
        let Some(app) = self.apps.get(appid) else {
            return Err(OaError::new(40013, "invalid appid"));
        };
        if secret.is_empty() {
            return Err(OaError::new(41004, "appsecret missing"));
        }
        if secret != app.config.secret {
            return Err(OaError::new(40001, "invalid credential"));
        }
        let ttl = app.config.token_ttl_secs;
        self.admit(appid, "token", now)?;
        for t in self.tokens.values_mut().filter(|t| t.appid == appid) {
            t.expires = t.expires.min(now + OVERLAP_SECS);
        }
        let bytes: Vec<u8> = (0..12)
            .flat_map(|_| self.rng.next_u64().to_be_bytes())
            .collect();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        self.tokens.insert(
            token.clone(),
            Issued {
                appid: appid.to_string(),
                expires: now + ttl,
            },
        );
        if let Some(app) = self.apps.get_mut(appid) {
            app.stats.tokens_issued += 1;
        }
        Ok((token, ttl))
    }

    /// The app of a token; 41001 when none was given, 40001 for one never issued,
    /// 42001 for one past its lifetime.
    pub fn check_token(&self, token: &str, now: Secs) -> Result<String, OaError> {
        if token.is_empty() {
            return Err(OaError::new(41001, "access_token missing"));
        }
        match self.tokens.get(token) {
            None => Err(OaError::new(
                40001,
                "invalid credential, access_token is invalid or not latest",
            )),
            Some(t) if now >= t.expires => Err(OaError::new(42001, "access_token expired")),
            Some(t) => Ok(t.appid.clone()),
        }
    }

    /// Whether `token` was ever issued here (expired or not).
    pub fn knows_token(&self, token: &str) -> bool {
        self.tokens.contains_key(token)
    }

    /// Ends every token of an app now (admin: a test of the client's refresh).
    pub fn expire_tokens(&mut self, appid: &str, now: Secs) {
        for t in self.tokens.values_mut().filter(|t| t.appid == appid) {
            t.expires = t.expires.min(now);
        }
    }

    /// Counts a call to `api`; 45009 once the day's calls exceed its quota.
    pub fn admit(&mut self, appid: &str, api: &str, now: Secs) -> Result<(), OaError> {
        let Some(app) = self.apps.get_mut(appid) else {
            return Err(OaError::new(40013, "invalid appid"));
        };
        let quota = app
            .config
            .daily_quota
            .get(api)
            .copied()
            .or_else(|| default_quota(api));
        let day = quota_day(now);
        let used = app.used.entry(api.to_string()).or_insert((day, 0));
        if used.0 != day {
            *used = (day, 0);
        }
        if quota.is_some_and(|q| used.1 >= q) {
            app.stats.quota_limited += 1;
            return Err(OaError::new(45009, "reach max api daily quota limit"));
        }
        used.1 += 1;
        *app.stats.calls.entry(api.to_string()).or_default() += 1;
        Ok(())
    }
}
