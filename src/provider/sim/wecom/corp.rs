//! The simulated WeCom corps' own state, apart from their contacts: which secrets they
//! accept, the access tokens they issued and when those expire, per-API call counts for
//! the rate limit, and the callback each corp sends. Pure: every call takes `now`.
//!
//! WeCom behaviour modelled (sources: "获取access_token" document/path/91039 —
//! `expires_in` 7200, a token is invalid after it; "访问频率限制" document/path/90454 —
//! per corp, per API 10,000 calls a minute, blocked until the minute ends, errcode 45009;
//! the global error-code page for 40001, 40013, 40014, 41001, 42001).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::provider::sim::rng::Rng;

/// WeCom's documented default: 10,000 calls a minute per corp and API.
pub const DEFAULT_RATE_PER_MINUTE: u32 = 10_000;

/// A WeCom error answer: `{"errcode": code, "errmsg": msg}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WecomError {
    pub code: i64,
    pub msg: String,
}

impl WecomError {
    pub fn new(code: i64, text: &str) -> Self {
        WecomError {
            code,
            msg: format!(
                "{text}, more info at https://open.work.weixin.qq.com/devtool/query?e={code}"
            ),
        }
    }
}

/// The callback a corp sends when its contacts change.
#[derive(Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackTarget {
    pub url: String,
    pub token: String,
    pub encoding_aes_key: String,
}

/// How a corp behaves (`PUT /admin/wecom/corps/{corpid}`).
#[derive(Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CorpConfig {
    /// The contacts-sync secret (通讯录同步).
    pub secret: String,
    /// The customer-contact secret (客户联系), for corp tags.
    #[serde(default)]
    pub external_contact_secret: Option<String>,
    /// Lifetime of an access token; WeCom's is 7200 s.
    #[serde(default = "default_ttl")]
    pub token_ttl_secs: u64,
    /// Calls a minute per API before 45009.
    #[serde(default = "default_rate")]
    pub rate_per_minute: u32,
    /// The errcode a frozen corp answers (default 50003, 应用已禁用).
    #[serde(default = "default_freeze")]
    pub freeze_errcode: i64,
    #[serde(default)]
    pub callback: Option<CallbackTarget>,
}

fn default_ttl() -> u64 {
    7200
}
fn default_rate() -> u32 {
    DEFAULT_RATE_PER_MINUTE
}
fn default_freeze() -> i64 {
    50003
}

/// Never prints a secret.
impl std::fmt::Debug for CorpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CorpConfig")
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("rate_per_minute", &self.rate_per_minute)
            .field("freeze_errcode", &self.freeze_errcode)
            .field("callback_url", &self.callback.as_ref().map(|c| &c.url))
            .finish_non_exhaustive()
    }
}

/// Which secret a token was issued for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Contacts,
    ExternalContact,
}

struct Issued {
    corp: String,
    scope: Scope,
    expires: Instant,
}

/// Counters an e2e test reads (`GET /admin/wecom/corps/{corpid}`).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CorpStats {
    pub tokens_issued: u64,
    pub rate_limited: u64,
}

/// Every simulated corp's secrets, tokens and counters.
pub struct Corps {
    configs: HashMap<String, CorpConfig>,
    tokens: HashMap<String, Issued>,
    /// (corp, api) → (start of the current minute, calls in it).
    windows: HashMap<(String, String), (Instant, u32)>,
    stats: HashMap<String, CorpStats>,
    rng: Rng,
}

impl Default for Corps {
    fn default() -> Self {
        Corps {
            configs: HashMap::new(),
            tokens: HashMap::new(),
            windows: HashMap::new(),
            stats: HashMap::new(),
            rng: Rng::new(0x5eed_c0de),
        }
    }
}

impl Corps {
    pub fn configure(&mut self, corp: &str, config: CorpConfig) {
        self.configs.insert(corp.to_string(), config);
    }

    pub fn config(&self, corp: &str) -> Option<&CorpConfig> {
        self.configs.get(corp)
    }

    pub fn stats(&self, corp: &str) -> CorpStats {
        self.stats.get(corp).cloned().unwrap_or_default()
    }

    /// `gettoken`: a new token for the secret, and its lifetime in seconds.
    pub fn gettoken(
        &mut self,
        corp: &str,
        secret: &str,
        now: Instant,
    ) -> Result<(String, u64), WecomError> {
        let Some(cfg) = self.configs.get(corp) else {
            return Err(WecomError::new(40013, "invalid corpid"));
        };
        if secret.is_empty() {
            return Err(WecomError::new(41004, "corpsecret missing"));
        }
        let scope = if secret == cfg.secret {
            Scope::Contacts
        } else if cfg.external_contact_secret.as_deref() == Some(secret) {
            Scope::ExternalContact
        } else {
            return Err(WecomError::new(40001, "invalid credential"));
        };
        let ttl = cfg.token_ttl_secs;
        let token = format!("{:016x}{:016x}", self.rng.next_u64(), self.rng.next_u64());
        self.tokens.insert(
            token.clone(),
            Issued {
                corp: corp.to_string(),
                scope,
                expires: now + Duration::from_secs(ttl),
            },
        );
        self.stats
            .entry(corp.to_string())
            .or_default()
            .tokens_issued += 1;
        Ok((token, ttl))
    }

    /// The corp and scope of a token; 41001 when none was given, 40014 for one never
    /// issued, 42001 for one past its lifetime.
    pub fn check_token(&self, token: &str, now: Instant) -> Result<(String, Scope), WecomError> {
        if token.is_empty() {
            return Err(WecomError::new(41001, "access_token missing"));
        }
        match self.tokens.get(token) {
            None => Err(WecomError::new(40014, "invalid access_token")),
            Some(t) if now >= t.expires => Err(WecomError::new(42001, "access_token expired")),
            Some(t) => Ok((t.corp.clone(), t.scope)),
        }
    }

    /// Ends every token of a corp now (admin: a test of the client's refresh).
    pub fn expire_tokens(&mut self, corp: &str, now: Instant) {
        for t in self.tokens.values_mut().filter(|t| t.corp == corp) {
            t.expires = now;
        }
    }

    /// Counts a call to `api`; 45009 once the minute's calls exceed the corp's rate,
    /// until that minute ends.
    pub fn admit(&mut self, corp: &str, api: &str, now: Instant) -> Result<(), WecomError> {
        let rate = self
            .configs
            .get(corp)
            .map_or(DEFAULT_RATE_PER_MINUTE, |c| c.rate_per_minute);
        let w = self
            .windows
            .entry((corp.to_string(), api.to_string()))
            .or_insert((now, 0));
        if now.duration_since(w.0) >= Duration::from_secs(60) {
            *w = (now, 0);
        }
        w.1 = w.1.saturating_add(1);
        if w.1 > rate {
            self.stats.entry(corp.to_string()).or_default().rate_limited += 1;
            return Err(WecomError::new(45009, "api freq out of limit"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corps() -> Corps {
        let mut c = Corps::default();
        c.configure(
            "ww1",
            CorpConfig {
                secret: "contacts".into(),
                external_contact_secret: Some("customers".into()),
                token_ttl_secs: 7200,
                rate_per_minute: 3,
                freeze_errcode: 50003,
                callback: None,
            },
        );
        c
    }

    #[test]
    fn tokens_are_issued_per_secret_and_expire() {
        let mut c = corps();
        let t0 = Instant::now();
        let (tok, ttl) = c.gettoken("ww1", "contacts", t0).unwrap();
        assert_eq!(ttl, 7200);
        assert_eq!(
            c.check_token(&tok, t0).unwrap(),
            ("ww1".to_string(), Scope::Contacts)
        );
        let (ext, _) = c.gettoken("ww1", "customers", t0).unwrap();
        assert_eq!(c.check_token(&ext, t0).unwrap().1, Scope::ExternalContact);
        assert_eq!(
            c.check_token(&tok, t0 + Duration::from_secs(7200))
                .unwrap_err()
                .code,
            42001
        );
        assert_eq!(c.check_token("nope", t0).unwrap_err().code, 40014);
        assert_eq!(c.check_token("", t0).unwrap_err().code, 41001);
        assert_eq!(c.gettoken("ww1", "wrong", t0).unwrap_err().code, 40001);
        assert_eq!(c.gettoken("ww2", "contacts", t0).unwrap_err().code, 40013);
        c.expire_tokens("ww1", t0);
        assert_eq!(c.check_token(&ext, t0).unwrap_err().code, 42001);
        assert_eq!(c.stats("ww1").tokens_issued, 2);
    }

    #[test]
    fn the_rate_limit_is_per_api_and_clears_after_the_minute() {
        let mut c = corps();
        let t0 = Instant::now();
        for _ in 0..3 {
            c.admit("ww1", "user/get", t0).unwrap();
        }
        assert_eq!(c.admit("ww1", "user/get", t0).unwrap_err().code, 45009);
        // Another API has its own count.
        c.admit("ww1", "tag/list", t0).unwrap();
        assert_eq!(
            c.admit("ww1", "user/get", t0 + Duration::from_secs(59))
                .unwrap_err()
                .code,
            45009
        );
        c.admit("ww1", "user/get", t0 + Duration::from_secs(60))
            .unwrap();
        assert_eq!(c.stats("ww1").rate_limited, 2);
    }

    #[test]
    fn secrets_are_never_printed() {
        let c = corps();
        let shown = format!("{:?}", c.config("ww1").unwrap());
        assert!(
            !shown.contains("contacts") && !shown.contains("customers"),
            "{shown}"
        );
    }
}
