//! WeCom (企业微信) corps, natively: the callback encryption WeCom uses
//! ([`crypto`], WXBizMsgCrypt), the change callbacks it sends ([`callback`]) and what
//! its error codes mean ([`errcode`]).
//!
//! Every fact about WeCom's wire format here comes from WeCom's server API
//! documentation or from independent clients (wechatpy, go-workwx, WxJava); each module
//! cites its sources.

pub mod callback;
pub mod client;
mod corp_tags;
pub mod crypto;
pub mod entities;
pub mod errcode;
pub mod limiter;
pub mod provider;

#[cfg(test)]
mod provider_tests;

pub use provider::WecomProvider;
