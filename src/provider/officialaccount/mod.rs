//! WeChat Official Accounts (公众号), natively: the custom menu, permanent materials,
//! follower tags and their members, and the auto-replies (read only), over the
//! platform's `cgi-bin` API ([`provider::OfficialAccountProvider`]); what its error codes
//! mean ([`errcode`]); its daily quotas ([`quota`]).
//!
//! Facts about the wire format come from Tencent's Official Account documentation and
//! from independent clients (wechatpy, silenceper/wechat, WxJava); each module cites its
//! sources.

use std::time::Duration;

use super::cgibin::Dialect;

pub mod entities;
pub mod errcode;
mod followers;
mod materials;
pub mod provider;

#[cfg(test)]
mod provider_tests;

pub use provider::OfficialAccountProvider;

/// The public Official Account API.
pub const DEFAULT_API_BASE: &str = "https://api.weixin.qq.com";

/// An API's documented daily quota for a new account ("接口调用频次限制说明",
/// developers.weixin.qq.com/doc/service/Message_Management/API_Call_Limits.html; they
/// grow with the follower count, so these are the floor). APIs whose quota is not
/// published (materials, tags, auto-replies, `user/info/batchget`) get no client-side
/// limit: the platform's own 45009 is a rate limit, never a freeze, and is backed off.
pub fn quota(api: &str) -> u32 {
    match api {
        "token" => 2_000,
        "menu/create" | "menu/delete" => 1_000,
        "menu/get" => 10_000,
        "user/get" => 500,
        "user/info" => 5_000_000,
        _ => u32::MAX,
    }
}

/// The Official Account `cgi-bin`: `token?grant_type=client_credential&appid=&secret=`,
/// its own errcode table, daily quotas (a call past one is answered `RateLimited` at
/// once: waiting for midnight would park a scan for hours).
pub static DIALECT: Dialect = Dialect {
    name: "Official Account",
    default_base: DEFAULT_API_BASE,
    token_api: "token",
    token_fixed: &[("grant_type", "client_credential")],
    id_param: "appid",
    secret_param: "secret",
    meaning: errcode::meaning,
    to_error: errcode::to_error,
    window: Duration::from_secs(86_400),
    quota,
    max_wait: Duration::from_secs(1),
};
