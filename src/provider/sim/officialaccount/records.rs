//! The simulated accounts' records and errors, shared by the files that act on them: an
//! error answer, a follower, a material, and how the simulator makes the ids the
//! platform assigns (openids, media_ids). A leaf: it imports none of its siblings.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Unix seconds.
pub type Secs = u64;

/// How long a token stays usable once a newer one of the same app was issued.
pub const OVERLAP_SECS: u64 = 300;

/// An error answer: `{"errcode": code, "errmsg": msg}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OaError {
    pub code: i64,
    pub msg: String,
}

impl OaError {
    pub fn new(code: i64, msg: &str) -> Self {
        OaError {
            code,
            msg: msg.to_string(),
        }
    }
}

pub type OaResult = Result<Value, OaError>;

/// 27 URL-safe characters of a hash of `parts`.
fn hash27(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize());
    text[..27].to_string()
}

/// The openid an app sees for a person: "o" and 27 characters, fixed per (app, person)
/// and different across apps ("微信用户 + 服务号 AppID = openid", Tencent
/// `doc/service/en/guide/product/unionid.html`; real openids are 28 characters starting
/// with `o`, e.g. `otvxTs4dckWG7imySrJd6jSi0CWE` in `api_batchuserinfo`).
pub fn openid_for(appid: &str, unionid: &str) -> String {
    format!("o{}", hash27(&["openid", appid, unionid]))
}

/// The openid of an app's `n`th follower without a unionid.
pub fn anonymous_openid(appid: &str, n: u32) -> String {
    format!("o{}", hash27(&["anonymous", appid, &n.to_string()]))
}

/// A permanent media_id: 43 URL-safe characters, like the real ones.
pub fn media_id_for(appid: &str, n: u64) -> String {
    let mut h = Sha256::new();
    h.update(appid.as_bytes());
    h.update(n.to_be_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
}

/// A person following the account.
pub struct Follower {
    pub openid: String,
    pub unionid: Option<String>,
    pub subscribe_time: Secs,
    /// Tag ids in tagging order.
    pub tags: Vec<u32>,
}

/// A permanent material.
pub struct Material {
    pub media_id: String,
    /// image, voice, video, thumb or news.
    pub kind: String,
    pub name: String,
    pub bytes: Bytes,
    pub content_type: String,
    /// Where the simulator serves the file (`…/oa-media/<media_id>`).
    pub url: String,
    pub title: String,
    pub description: String,
    /// A news material's `news_item` list.
    pub news: Vec<Value>,
    pub create_time: Secs,
    pub update_time: Secs,
}
