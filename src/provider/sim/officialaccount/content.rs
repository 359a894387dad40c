//! One official account's content: its custom menu, auto-reply rules and permanent
//! materials (followers and tags are in `fans.rs`). Pure: answers are the JSON the real
//! API sends; every call that needs the time takes `now`.
//!
//! Sources, beyond each function's own:
//! - menu/get answers `{"menu":{"button":[…]}}` with `"sub_button": []` on every leaf
//!   (Tencent `doc/service/api/custommenu/api_getmenu`; wechatpy fixture
//!   `tests/fixtures/menu_get.json`); 46003 "menu no exist" without a menu (WxJava
//!   `WxOpenErrorMsgEnum`; wechatpy `menu.get` turns 46003 into `None`).
//! - menu/create: 1–3 buttons, ≤5 sub buttons, names ≤16 bytes (sub ≤60), key ≤128 bytes,
//!   url ≤1024 bytes (Tencent custom-menu docs); errcodes 40016–40027 "invalid button
//!   size / type / name size / key size / url size", "invalid sub button …" (WxJava
//!   `WxOpenErrorMsgEnum`).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::records::{Follower, Material, OaError, OaResult};

/// `get_current_autoreply_info`'s default answer: Tencent's example, identical to
/// wechatpy's fixture `tests/fixtures/get_current_autoreply_info.json`.
pub fn default_autoreply() -> Value {
    json!({
        "is_add_friend_reply_open": 1,
        "is_autoreply_open": 1,
        "add_friend_autoreply_info": {"type": "text", "content": "Thanks for your attention!"},
        "message_default_autoreply_info": {"type": "text", "content": "Hello, this is autoreply!"},
        "keyword_autoreply_info": {"list": [
            {"rule_name": "autoreply-news", "create_time": 1423028166, "reply_mode": "reply_all",
             "keyword_list_info": [{"type": "text", "match_mode": "contain", "content": "news测试"}],
             "reply_list_info": [{"type": "news", "news_info": {"list": [
                 {"title": "it's news", "author": "jim", "digest": "it's digest", "show_cover": 1,
                  "cover_url": "http://mmbiz.qpic.cn/mmbiz/GE7et87vE9vicuCibqXsX9GPPLuEtBfXfKbE8sWdt2DDcL0dMfQWJWTVn1N8DxI0gcRmrtqBOuwQHeuPKmFLK0ZQ/0",
                  "content_url": "http://mp.weixin.qq.com/s?__biz=MjM5ODUwNTM3Ng==&mid=203929886&idx=1&sn=628f964cf0c6d84c026881b6959aea8b#rd",
                  "source_url": "http://www.url.com"}]}}]},
            {"rule_name": "autoreply-voice", "create_time": 1423027971, "reply_mode": "random_one",
             "keyword_list_info": [{"type": "text", "match_mode": "contain", "content": "voice测试"}],
             "reply_list_info": [{"type": "voice", "content": "NESsxgHEvAcg3egJTtYj4uG1PTL6iPhratdWKDLAXYErhN6oEEfMdVyblWtBY5vp"}]},
            {"rule_name": "autoreply-text", "create_time": 1423027926, "reply_mode": "random_one",
             "keyword_list_info": [{"type": "text", "match_mode": "contain", "content": "text测试"}],
             "reply_list_info": [{"type": "text", "content": "hello!text!"}]}
        ]}
    })
}

/// One official account's content.
pub struct OaAccount {
    pub appid: String,
    pub menu: Option<Value>,
    pub autoreply: Value,
    pub materials: Vec<Material>,
    pub(super) next_media: u64,
    pub(super) followers: Vec<Follower>,
    pub(super) by_openid: HashMap<String, usize>,
    pub(super) anonymous: u32,
    /// User tags: id → name (system tag 2 is implied).
    pub(super) tags: BTreeMap<u32, String>,
    pub(super) next_tag: u32,
}

fn size_err(code: i64, what: &str) -> OaError {
    OaError::new(code, what)
}

/// Checks one button: `top` selects the top-level errcodes (40017–40020) or the sub
/// button ones (40024–40027).
fn check_button(b: &Value, top: bool) -> Result<(), OaError> {
    let (ty, name, key, url) = if top {
        (
            (40017, "invalid button type"),
            (40018, "invalid button name size"),
            (40019, "invalid button key size"),
            (40020, "invalid button url size"),
        )
    } else {
        (
            (40024, "invalid sub button type"),
            (40025, "invalid sub button name size"),
            (40026, "invalid sub button key size"),
            (40027, "invalid sub button url size"),
        )
    };
    let name_len = b["name"].as_str().map_or(0, str::len);
    if name_len == 0 || name_len > if top { 16 } else { 60 } {
        return Err(size_err(name.0, name.1));
    }
    let subs = b["sub_button"].as_array().map_or(&[][..], Vec::as_slice);
    if top && !subs.is_empty() {
        if subs.len() > 5 {
            return Err(size_err(40023, "invalid sub button size"));
        }
        return subs.iter().try_for_each(|s| check_button(s, false));
    }
    let field = |f: &str| b[f].as_str().map_or(0, str::len);
    match b["type"].as_str().unwrap_or("") {
        "click" | "scancode_push" | "scancode_waitmsg" | "pic_sysphoto" | "pic_photo_or_album"
        | "pic_weixin" | "location_select" => {
            if !(1..=128).contains(&field("key")) {
                return Err(size_err(key.0, key.1));
            }
        }
        "view" | "miniprogram" => {
            if !(1..=1024).contains(&field("url")) {
                return Err(size_err(url.0, url.1));
            }
        }
        "media_id" | "view_limited" => {
            if field("media_id") == 0 {
                return Err(size_err(ty.0, ty.1));
            }
        }
        "article_id" | "article_view_limited" => {
            if field("article_id") == 0 {
                return Err(size_err(ty.0, ty.1));
            }
        }
        _ => return Err(size_err(ty.0, ty.1)),
    }
    Ok(())
}

/// A button as menu/get shows it: every button has a `sub_button` list.
fn shown(b: &Value) -> Value {
    let mut v = b.clone();
    let subs: Vec<Value> = b["sub_button"]
        .as_array()
        .map(|a| a.iter().map(shown).collect())
        .unwrap_or_default();
    v["sub_button"] = Value::Array(subs);
    v
}

fn ok() -> Value {
    json!({"errcode": 0, "errmsg": "ok"})
}

impl OaAccount {
    pub fn new(appid: &str) -> Self {
        OaAccount {
            appid: appid.to_string(),
            menu: None,
            autoreply: default_autoreply(),
            materials: Vec::new(),
            next_media: 0,
            followers: Vec::new(),
            by_openid: HashMap::new(),
            anonymous: 0,
            tags: BTreeMap::new(),
            next_tag: 100,
        }
    }

    // ---- menu ----

    pub fn menu_create(&mut self, body: &Value) -> OaResult {
        let buttons = body["button"].as_array().map_or(&[][..], Vec::as_slice);
        if !(1..=3).contains(&buttons.len()) {
            return Err(OaError::new(40016, "invalid button size"));
        }
        buttons.iter().try_for_each(|b| check_button(b, true))?;
        self.menu = Some(json!({ "button": buttons }));
        Ok(ok())
    }

    pub fn menu_get(&self) -> OaResult {
        let menu = self
            .menu
            .as_ref()
            .ok_or_else(|| OaError::new(46003, "menu no exist"))?;
        let buttons: Vec<Value> = menu["button"]
            .as_array()
            .map(|a| a.iter().map(shown).collect())
            .unwrap_or_default();
        Ok(json!({"menu": {"button": buttons}}))
    }

    pub fn menu_delete(&mut self) -> OaResult {
        self.menu = None;
        Ok(ok())
    }
}
