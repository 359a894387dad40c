//! WeCom (企业微信) corps, natively: the callback encryption WeCom uses
//! ([`crypto`], WXBizMsgCrypt), the change callbacks it sends ([`callback`]) and what
//! its error codes mean ([`errcode`]).
//!
//! Every fact about WeCom's wire format here comes from WeCom's server API
//! documentation or from independent clients (wechatpy, go-workwx, WxJava); each module
//! cites its sources.

use std::time::Duration;

use super::cgibin::Dialect;

pub mod callback;
mod corp_tags;
pub mod crypto;
pub mod entities;
pub mod errcode;
pub mod provider;

#[cfg(test)]
mod provider_tests;

pub use provider::WecomProvider;

/// The public WeCom API.
pub const DEFAULT_API_BASE: &str = "https://qyapi.weixin.qq.com";

/// WeCom's limit per corp and API: 10,000 calls a minute ("访问频率限制",
/// developer.work.weixin.qq.com/document/path/90454).
pub const CALLS_PER_MINUTE: u32 = 10_000;

fn quota(_api: &str) -> u32 {
    CALLS_PER_MINUTE
}

/// WeCom's `cgi-bin`: `gettoken?corpid=&corpsecret=`, its errcode table, a minute's quota
/// (a call waits for it rather than drawing 45009).
pub static DIALECT: Dialect = Dialect {
    name: "WeCom",
    default_base: DEFAULT_API_BASE,
    token_api: "gettoken",
    token_fixed: &[],
    id_param: "corpid",
    secret_param: "corpsecret",
    meaning: errcode::meaning,
    to_error: errcode::to_error,
    window: Duration::from_secs(60),
    quota,
    max_wait: Duration::from_secs(60),
};
