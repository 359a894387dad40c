//! Tencent's `cgi-bin` JSON APIs, which WeCom corps and WeChat Official Accounts share in
//! shape: an access token fetched with the account's id and secret and passed as
//! `access_token`, HTTP 200 answers carrying `{"errcode": N, "errmsg": "…"}`, and call
//! quotas per API. [`client::ApiClient`] speaks that shape; a [`Dialect`] says what
//! differs between the two: the token call, what each errcode means (the same number
//! means different things on each: 50002 is a member outside the app's scope on WeCom
//! and an API ban on an Official Account), and the quotas.

use std::time::Duration;

use super::ProviderError;

pub mod client;
pub mod limiter;

/// What an errcode means for the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meaning {
    Ok,
    /// The access token is invalid or expired: fetch a new one and repeat the call once.
    RefreshToken,
    /// The secret was refused: on an API call, refresh the token once (the secret may
    /// have been rotated); from the token call itself, the secret is wrong.
    BadSecret,
    /// Evidence that the account or its app can no longer be used.
    Frozen(&'static str),
    /// Back off and retry; never a freeze.
    RateLimited,
    /// The provider was busy; retry.
    Transient,
    /// Something the account's administrator must change; never a failover.
    Misconfigured(&'static str),
    /// The paging cursor is invalid: start the listing again.
    CursorExpired,
    /// The entity does not exist.
    NotFound,
    /// The write was refused as invalid or conflicting (goes to the DLQ).
    Rejected,
    /// A code the table does not know.
    Unknown,
}

/// What differs between the `cgi-bin` APIs of WeCom and of Official Accounts.
#[derive(Debug)]
pub struct Dialect {
    /// The provider's name in messages ("WeCom", "Official Account").
    pub name: &'static str,
    /// The public API, without a trailing `/`.
    pub default_base: &'static str,
    /// The token call under `cgi-bin/` (`gettoken`, `token`).
    pub token_api: &'static str,
    /// The token call's fixed parameters (`grant_type=client_credential`).
    pub token_fixed: &'static [(&'static str, &'static str)],
    /// The token call's names for the account id and the secret.
    pub id_param: &'static str,
    pub secret_param: &'static str,
    /// The errcode table.
    pub meaning: fn(i64) -> Meaning,
    /// The error a non-zero errcode stands for.
    pub to_error: fn(i64, &str) -> ProviderError,
    /// The quotas' window (a minute on WeCom, a day on Official Accounts).
    pub window: Duration,
    /// The calls of an API (`user/get`) the client makes in any window.
    pub quota: fn(&str) -> u32,
    /// A call the quota holds back longer than this is answered `RateLimited` at once
    /// instead of waiting (a day's quota must not park a scan for hours).
    pub max_wait: Duration,
}

/// The client-side limit a client keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Limit {
    /// The dialect's quotas.
    #[default]
    Documented,
    /// No client-side limit (benchmarks, simulators that do not limit).
    Off,
    /// This many calls of each API in the dialect's window.
    PerWindow(u32),
}

impl Meaning {
    /// The words an errcode runbook's table uses for this meaning.
    pub fn runbook_word(self) -> &'static str {
        match self {
            Meaning::Ok => "ok",
            Meaning::Transient => "transient",
            Meaning::BadSecret => "secret refused",
            Meaning::RefreshToken => "token refresh",
            Meaning::RateLimited => "rate limit",
            Meaning::Frozen(_) => "freeze evidence",
            Meaning::Misconfigured(_) => "misconfigured",
            Meaning::CursorExpired => "cursor expired",
            Meaning::NotFound => "not found",
            Meaning::Rejected => "rejected",
            Meaning::Unknown => "unknown",
        }
    }
}

/// Checks every `| code | … | meaning |` row of an errcode runbook against `meaning`;
/// returns how many rows it read.
#[cfg(test)]
pub(crate) fn runbook_rows(page: &str, meaning: fn(i64) -> Meaning) -> usize {
    let mut rows = 0;
    for line in page.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(code) = cells.get(1).and_then(|c| c.parse::<i64>().ok()) else {
            continue;
        };
        let said = cells[3].trim_matches('*');
        assert_eq!(
            said,
            meaning(code).runbook_word(),
            "errcode {code}: the runbook says {said:?}"
        );
        rows += 1;
    }
    rows
}
