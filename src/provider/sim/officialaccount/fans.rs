//! One official account's followers and follower tags. Pure, like `content.rs`.
//!
//! Sources:
//! - user/get (Tencent `doc/service/User_Management/Getting_a_User_List.html`,
//!   `doc/service/api/usermanage/userinfo/api_getfans`): ≤10000 openids a call, in
//!   following order; `next_openid` is the last openid of the page even on the last page
//!   (wechatpy `iter_followers`: "没有下一页，也返回next_openid这个字段"); past the end
//!   `{"total":N,"count":0,"next_openid":""}` without `data` (wechatpy
//!   `test_iter_followers`).
//! - user/info/batchget (Tencent `doc/service/api/usermanage/userinfo/api_batchuserinfo`):
//!   ≤100 users a call, each "必须是已关注的用户的 openid"; `unionid` only when the
//!   account is bound to an open platform; nickname and avatar are no longer sent.
//! - tags (Tencent `doc/service/api/usermanage/tag/api_*`, w3cschool mirror
//!   `1f8r1qef.html`): tags/get lists system tag 2 "星标组"; ids 0/1/2 are reserved
//!   (45058 "can't modify sys tag"); ≤100 tags (45056 "too many tag now, no need to add
//!   new"); names ≤30 bytes (45158 "tag name too long") and unique (45157 "invalid tag
//!   name"); unknown ids 45159 "invalid tag id"; a tag with >100000 fans cannot be
//!   deleted (45057); batch(un)tagging ≤50 openids (40032 "invalid openid list size"),
//!   every openid this app's (49003, English text [UNCONFIRMED]), ≤20 tags a fan (45059
//!   "can not tagging one user too much") — errmsgs from WxJava `WxOpenErrorMsgEnum`.
//! - user/tag/get: `next_openid` is the page's last openid, also on the last page; the
//!   call after the end answers `{"count":0}` without `data` and `next_openid` (wechatpy
//!   `test_iter_tag_users`, "根据拿到的第二页请求响应 是没有data和next_openid的"); ≤10000 a
//!   page [UNCONFIRMED in Tencent's doc].

use serde_json::{Value, json};

use super::content::OaAccount;
use super::records::{Follower, OaError, OaResult, Secs, anonymous_openid, openid_for};

pub const PAGE: usize = 10_000;
pub const STAR_TAG: u32 = 2;
pub const MAX_TAGS: usize = 100;
pub const MAX_TAGS_PER_FAN: usize = 20;
pub const MAX_BATCH_TAGGING: usize = 50;
pub const MAX_BATCH_INFO: usize = 100;

fn ok() -> Value {
    json!({"errcode": 0, "errmsg": "ok"})
}

fn invalid_openid() -> OaError {
    OaError::new(40003, "invalid openid")
}

fn tag_id(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl OaAccount {
    // ---- followers ----

    /// Adds a follower (a person by unionid, or an anonymous one); returns the openid
    /// this app sees. Following again changes nothing.
    pub fn follow(&mut self, unionid: Option<&str>, now: Secs) -> String {
        let openid = match unionid {
            Some(u) => openid_for(&self.appid, u),
            None => {
                self.anonymous += 1;
                anonymous_openid(&self.appid, self.anonymous)
            }
        };
        if !self.by_openid.contains_key(&openid) {
            self.by_openid.insert(openid.clone(), self.followers.len());
            self.followers.push(Follower {
                openid: openid.clone(),
                unionid: unionid.map(String::from),
                subscribe_time: now,
                tags: Vec::new(),
            });
        }
        openid
    }

    /// Makes sure at least `n` anonymous followers follow.
    pub fn ensure_anonymous(&mut self, n: u32, now: Secs) {
        while self.anonymous < n {
            self.follow(None, now);
        }
    }

    pub fn followers(&self) -> &[Follower] {
        &self.followers
    }

    fn follower(&self, openid: &str) -> Option<&Follower> {
        self.by_openid.get(openid).map(|i| &self.followers[*i])
    }

    /// Where a page starting after `next_openid` begins ("" = the start).
    fn start_after(&self, next_openid: &str) -> Result<usize, OaError> {
        if next_openid.is_empty() {
            return Ok(0);
        }
        self.by_openid
            .get(next_openid)
            .map(|i| i + 1)
            .ok_or_else(invalid_openid)
    }

    /// user/get?next_openid=
    pub fn user_get(&self, next_openid: &str) -> OaResult {
        let start = self.start_after(next_openid)?;
        let page: Vec<&str> = self.followers[start.min(self.followers.len())..]
            .iter()
            .take(PAGE)
            .map(|f| f.openid.as_str())
            .collect();
        let mut out = json!({
            "total": self.followers.len(),
            "count": page.len(),
            "next_openid": page.last().copied().unwrap_or(""),
        });
        if !page.is_empty() {
            out["data"] = json!({ "openid": page });
        }
        Ok(out)
    }

    /// user/info/batchget `{"user_list":[{"openid","lang"}]}`.
    pub fn user_batchget(&self, body: &Value) -> OaResult {
        let list = body["user_list"].as_array().map_or(&[][..], Vec::as_slice);
        if list.is_empty() || list.len() > MAX_BATCH_INFO {
            // [UNCONFIRMED] errcode for an empty or too long user_list.
            return Err(OaError::new(40097, "invalid args"));
        }
        let mut out = Vec::new();
        for u in list {
            let openid = u["openid"].as_str().unwrap_or("");
            let f = self.follower(openid).ok_or_else(invalid_openid)?;
            let lang = u["lang"].as_str().unwrap_or("zh_CN");
            let mut v = json!({
                "subscribe": 1,
                "openid": f.openid,
                "language": lang,
                "subscribe_time": f.subscribe_time,
                "remark": "",
                "groupid": 0,
                "tagid_list": f.tags,
                "subscribe_scene": "ADD_SCENE_OTHERS",
                "qr_scene": 0,
                "qr_scene_str": "",
            });
            if let Some(unionid) = &f.unionid {
                v["unionid"] = json!(unionid);
            }
            out.push(v);
        }
        Ok(json!({ "user_info_list": out }))
    }

    // ---- tags ----

    fn tag_count(&self, id: u32) -> usize {
        self.followers
            .iter()
            .filter(|f| f.tags.contains(&id))
            .count()
    }

    fn tag_exists(&self, id: u32) -> bool {
        id == STAR_TAG || self.tags.contains_key(&id)
    }

    /// tags/get: the star tag, then the account's tags, each with its fan count.
    pub fn tags_get(&self) -> OaResult {
        let mut tags =
            vec![json!({"id": STAR_TAG, "name": "星标组", "count": self.tag_count(STAR_TAG)})];
        tags.extend(
            self.tags
                .iter()
                .map(|(id, name)| json!({"id": id, "name": name, "count": self.tag_count(*id)})),
        );
        Ok(json!({ "tags": tags }))
    }

    fn check_name(&self, name: &str, except: Option<u32>) -> Result<(), OaError> {
        if name.len() > 30 {
            return Err(OaError::new(45158, "tag name too long"));
        }
        let taken = name == "星标组"
            || self
                .tags
                .iter()
                .any(|(id, n)| n == name && Some(*id) != except);
        if name.is_empty() || taken {
            return Err(OaError::new(45157, "invalid tag name"));
        }
        Ok(())
    }

    /// tags/create `{"tag":{"name"}}` → `{"tag":{"id","name"}}`; ids from 100 up, never
    /// reused (Tencent's examples: 100, 127, 134).
    pub fn tag_create(&mut self, body: &Value) -> OaResult {
        let name = body["tag"]["name"].as_str().unwrap_or("");
        self.check_name(name, None)?;
        if self.tags.len() >= MAX_TAGS {
            return Err(OaError::new(45056, "too many tag now, no need to add new"));
        }
        let id = self.next_tag;
        self.next_tag += 1;
        self.tags.insert(id, name.to_string());
        Ok(json!({"tag": {"id": id, "name": name}}))
    }

    /// A tag id the account may change: 45058 for 0/1/2, 45159 for one that does not exist.
    fn own_tag(&self, v: &Value) -> Result<u32, OaError> {
        let id = tag_id(v).ok_or_else(|| OaError::new(45159, "invalid tag id"))?;
        if id <= STAR_TAG {
            return Err(OaError::new(45058, "can't modify sys tag"));
        }
        if !self.tags.contains_key(&id) {
            return Err(OaError::new(45159, "invalid tag id"));
        }
        Ok(id)
    }

    /// tags/update `{"tag":{"id","name"}}`.
    pub fn tag_update(&mut self, body: &Value) -> OaResult {
        let id = self.own_tag(&body["tag"]["id"])?;
        let name = body["tag"]["name"].as_str().unwrap_or("");
        self.check_name(name, Some(id))?;
        self.tags.insert(id, name.to_string());
        Ok(ok())
    }

    /// tags/delete `{"tag":{"id"}}`: the tag leaves every fan too.
    pub fn tag_delete(&mut self, body: &Value) -> OaResult {
        let id = self.own_tag(&body["tag"]["id"])?;
        if self.tag_count(id) > 100_000 {
            return Err(OaError::new(
                45057,
                "can't delete the tag that has too many fans",
            ));
        }
        self.tags.remove(&id);
        for f in &mut self.followers {
            f.tags.retain(|t| *t != id);
        }
        Ok(ok())
    }

    /// tags/members/batchtagging and batchuntagging `{"openid_list":[…],"tagid"}`: all
    /// or nothing.
    pub fn tagging(&mut self, body: &Value, add: bool) -> OaResult {
        let id = tag_id(&body["tagid"]).ok_or_else(|| OaError::new(45159, "invalid tag id"))?;
        if !self.tag_exists(id) {
            return Err(OaError::new(45159, "invalid tag id"));
        }
        let list = body["openid_list"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        if list.is_empty() || list.len() > MAX_BATCH_TAGGING {
            return Err(OaError::new(40032, "invalid openid list size"));
        }
        let mut at = Vec::with_capacity(list.len());
        for o in list {
            let i = o
                .as_str()
                .and_then(|o| self.by_openid.get(o))
                .ok_or_else(|| OaError::new(49003, "invalid openid"))?;
            let tags = &self.followers[*i].tags;
            if add && !tags.contains(&id) && tags.len() >= MAX_TAGS_PER_FAN {
                return Err(OaError::new(45059, "can not tagging one user too much"));
            }
            at.push(*i);
        }
        for i in at {
            let tags = &mut self.followers[i].tags;
            if !add {
                tags.retain(|t| *t != id);
            } else if !tags.contains(&id) {
                tags.push(id);
            }
        }
        Ok(ok())
    }

    /// user/tag/get `{"tagid","next_openid"}`.
    pub fn tag_users(&self, body: &Value) -> OaResult {
        let id = tag_id(&body["tagid"]).ok_or_else(|| OaError::new(45159, "invalid tag id"))?;
        if !self.tag_exists(id) {
            return Err(OaError::new(45159, "invalid tag id"));
        }
        let start = self.start_after(body["next_openid"].as_str().unwrap_or(""))?;
        let page: Vec<&str> = self.followers[start.min(self.followers.len())..]
            .iter()
            .filter(|f| f.tags.contains(&id))
            .take(PAGE)
            .map(|f| f.openid.as_str())
            .collect();
        let Some(last) = page.last() else {
            return Ok(json!({ "count": 0 }));
        };
        Ok(json!({"count": page.len(), "data": {"openid": page}, "next_openid": last}))
    }

    /// tags/getidlist `{"openid"}` → `{"tagid_list":[…]}`.
    pub fn tag_ids(&self, body: &Value) -> OaResult {
        let f = self
            .follower(body["openid"].as_str().unwrap_or(""))
            .ok_or_else(invalid_openid)?;
        Ok(json!({ "tagid_list": f.tags }))
    }
}
