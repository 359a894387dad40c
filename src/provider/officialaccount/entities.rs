//! An Official Account's content as understudy entities: what replicates, under which
//! key, and which fields the platform owns (and so neither replicate nor count in a
//! drill's digest).
//!
//! - `menu/default`: the custom menu's buttons (`menu/get`'s `menu.button`, what
//!   `menu/create` takes). The platform's `menuid` is left out, and so is a leaf's empty
//!   `sub_button` (menu/get answers every leaf with `"sub_button": []`).
//!   Conditional menus (`conditionalmenu`) are not replicated.
//! - `tag/<name>`: a follower tag, keyed by its name (tags/create assigns the id, so two
//!   accounts never share ids; names are unique per account, 45157). Its payload is the
//!   tagged followers' **unionids**, sorted: an openid is the follower *as seen by one
//!   account*, so the same person has another openid on the standby, and only the
//!   unionid (both accounts bound to one WeChat Open Platform account) names the person
//!   on both. Followers without a unionid cannot be named on the other account and are
//!   left out. The system tags 0/1/2 (45058) are not replicated.
//! - `content/<type>-<sha256>`: a permanent material (image, voice, video), keyed by its
//!   type and the first 128 bits of the SHA-256 of its bytes (add_material assigns the
//!   media_id). Payload: `name`, `size`, `sha256`, for videos `title` and
//!   `introduction`, and the bytes (`data`, base64) up to [`MATERIAL_INLINE_MAX`] — the
//!   largest that rides a state-topic record; a larger one is listed without bytes and
//!   refused by the standby's sink (the DLQ says to upload it by hand). Two materials of
//!   the same type and bytes are one entity. News (图文) materials are not read: add_news
//!   was withdrawn (articles are drafts and publications now).
//! - `auto-reply/current`: `get_current_autoreply_info` without the rules'
//!   `create_time`. The platform has no API that writes auto-replies: it is read and
//!   compared in drills, and reported as not replicable.
//!
//! Sources: Tencent's Official Account docs (custom menus, permanent materials, user tag
//! management, get_current_autoreply_info) and wechatpy's `client/api/{menu,material,
//! tag,message}.py`.

use base64::Engine as _;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::model::{EntityKey, EntityKind};

/// The largest material whose bytes travel in its record (base64 makes it about 700 KB
/// of the 1 MB a Kafka record holds by default).
pub const MATERIAL_INLINE_MAX: usize = 512 * 1024;

/// Tag ids up to this are the platform's own (0 未分组, 1 黑名单, 2 星标组; 45058).
pub const RESERVED_TAG_MAX: u64 = 2;

/// The material types understudy reads (`batchget_material`'s types but news).
pub const MATERIAL_TYPES: [&str; 3] = ["image", "voice", "video"];

pub fn menu_key() -> EntityKey {
    EntityKey::new(EntityKind::Menu, "default").expect("a valid id")
}

pub fn autoreply_key() -> EntityKey {
    EntityKey::new(EntityKind::AutoReply, "current").expect("a valid id")
}

/// The default menu's payload from a `menu/get` answer; `None` when the account has no
/// menu.
pub fn menu_payload(answer: &Value) -> Option<Value> {
    let buttons = answer["menu"]["button"].as_array()?;
    Some(json!({ "button": buttons.iter().map(button).collect::<Vec<_>>() }))
}

/// A button as `menu/create` takes it: no empty `sub_button`, no null fields.
fn button(b: &Value) -> Value {
    let mut out = Map::new();
    for (k, v) in b.as_object().into_iter().flatten() {
        match (k.as_str(), v) {
            (_, Value::Null) => {}
            ("sub_button", Value::Array(subs)) if subs.is_empty() => {}
            ("sub_button", Value::Array(subs)) => {
                out.insert(k.clone(), Value::Array(subs.iter().map(button).collect()));
            }
            // A newer menu/get wraps sub buttons as {"list": [...]}.
            ("sub_button", Value::Object(o)) => {
                let subs: Vec<Value> = o
                    .get("list")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(button)
                    .collect();
                if !subs.is_empty() {
                    out.insert(k.clone(), Value::Array(subs));
                }
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

pub fn tag_key(name: &str) -> Option<EntityKey> {
    EntityKey::named(EntityKind::Tag, name)
}

/// A tag's payload: the tagged followers' unionids, sorted, once each.
pub fn tag_payload(unionids: impl IntoIterator<Item = String>) -> Value {
    let mut all: Vec<String> = unionids.into_iter().collect();
    all.sort();
    all.dedup();
    json!({ "followers": all })
}

/// The unionids a tag payload names.
pub fn tag_followers(payload: &Value) -> std::collections::BTreeSet<String> {
    payload["followers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str().map(String::from))
        .collect()
}

/// A material's key: its type and the first 128 bits of its bytes' SHA-256.
pub fn material_key(kind: &str, sha256_hex: &str) -> Option<EntityKey> {
    EntityKey::new(
        EntityKind::Content,
        &format!("{kind}-{}", &sha256_hex[..32.min(sha256_hex.len())]),
    )
    .ok()
}

/// The type a material key names (`image`, `voice`, `video`).
pub fn material_type(key: &EntityKey) -> &str {
    key.id().split_once('-').map_or("", |(t, _)| t)
}

/// A material read from the account.
pub struct Material<'a> {
    pub kind: &'a str,
    pub name: &'a str,
    pub bytes: &'a [u8],
    /// A video's title and introduction.
    pub video: Option<(&'a str, &'a str)>,
}

/// A material's key and payload.
pub fn material_entity(m: &Material<'_>) -> Option<(EntityKey, Value)> {
    let sha = hex::encode(Sha256::digest(m.bytes));
    let key = material_key(m.kind, &sha)?;
    let mut p = json!({ "name": m.name, "size": m.bytes.len(), "sha256": sha });
    if let Some((title, introduction)) = m.video {
        p["title"] = json!(title);
        p["introduction"] = json!(introduction);
    }
    if m.bytes.len() <= MATERIAL_INLINE_MAX {
        p["data"] = json!(base64::engine::general_purpose::STANDARD.encode(m.bytes));
    }
    Some((key, p))
}

/// A material payload's bytes; `None` when it was too large to carry them (or they do
/// not match its `sha256`).
pub fn material_bytes(payload: &Value) -> Option<Vec<u8>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload["data"].as_str()?)
        .ok()?;
    (hex::encode(Sha256::digest(&bytes)) == payload["sha256"].as_str()?).then_some(bytes)
}

/// The auto-replies' payload: `get_current_autoreply_info` without errcode/errmsg and
/// without each keyword rule's `create_time` (the platform's).
pub fn autoreply_payload(answer: &Value) -> Value {
    let mut out = answer.as_object().cloned().unwrap_or_default();
    out.remove("errcode");
    out.remove("errmsg");
    if let Some(rules) = out
        .get_mut("keyword_autoreply_info")
        .and_then(|k| k.get_mut("list"))
        .and_then(Value::as_array_mut)
    {
        for r in rules {
            if let Some(r) = r.as_object_mut() {
                r.remove("create_time");
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Digest;

    #[test]
    fn a_menu_read_back_is_the_menu_created() {
        let created = json!({"button": [
            {"type": "click", "name": "今日歌曲", "key": "V1001_TODAY_MUSIC"},
            {"name": "菜单", "sub_button": [{"type": "view", "name": "搜索", "url": "http://www.soso.com/"}]}]});
        let answered = json!({"menu": {"menuid": 208396938, "button": [
            {"type": "click", "name": "今日歌曲", "key": "V1001_TODAY_MUSIC", "sub_button": []},
            {"name": "菜单", "sub_button": [{"type": "view", "name": "搜索", "url": "http://www.soso.com/", "sub_button": []}]}]},
            "conditionalmenu": [{"button": [], "matchrule": {"sex": "1"}, "menuid": 1}]});
        assert_eq!(menu_payload(&answered), Some(created));
        assert_eq!(menu_payload(&json!({"errcode": 46003})), None);
        // The other account's menuid does not count.
        let mut other = answered.clone();
        other["menu"]["menuid"] = json!(1);
        assert_eq!(
            Digest::of_payload(&menu_payload(&answered).unwrap()),
            Digest::of_payload(&menu_payload(&other).unwrap())
        );
    }

    #[test]
    fn tags_are_named_and_hold_unionids_in_order() {
        assert_eq!(tag_key("客户/VIP").unwrap().as_str(), "tag/客户%2FVIP");
        assert_eq!(tag_key("客户/VIP").unwrap().name(), "客户/VIP");
        assert_eq!(
            tag_payload(["u2".to_string(), "u1".into(), "u2".into()]),
            json!({"followers": ["u1", "u2"]})
        );
        assert_eq!(tag_followers(&json!({"followers": ["a", "b"]})).len(), 2);
    }

    #[test]
    fn materials_are_keyed_by_content_and_carry_their_bytes_when_they_fit() {
        let small = Material {
            kind: "image",
            name: "logo.png",
            bytes: b"\x89PNG small",
            video: None,
        };
        let (key, p) = material_entity(&small).unwrap();
        assert_eq!(material_type(&key), "image");
        assert_eq!(key.id().len(), "image-".len() + 32);
        assert_eq!(material_bytes(&p).unwrap(), b"\x89PNG small");
        // Same bytes, same key, whatever the account's media_id.
        let again = Material {
            name: "logo-2.png",
            ..small
        };
        assert_eq!(material_entity(&again).unwrap().0, key);
        let big = vec![7u8; MATERIAL_INLINE_MAX + 1];
        let (_, p) = material_entity(&Material {
            kind: "video",
            name: "intro.mp4",
            bytes: &big,
            video: Some(("介绍", "一分钟")),
        })
        .unwrap();
        assert!(p.get("data").is_none());
        assert_eq!(p["title"], "介绍");
        assert_eq!(material_bytes(&p), None);
        // Bytes that do not match the digest are not used.
        let mut forged = material_entity(&small).unwrap().1;
        forged["sha256"] = json!("00");
        assert_eq!(material_bytes(&forged), None);
    }

    #[test]
    fn auto_replies_lose_the_platforms_times() {
        let a = json!({"errcode": 0, "is_autoreply_open": 1, "keyword_autoreply_info": {"list": [
            {"rule_name": "r", "create_time": 1423028166, "reply_mode": "reply_all"}]}});
        let b = json!({"is_autoreply_open": 1, "keyword_autoreply_info": {"list": [
            {"rule_name": "r", "create_time": 1, "reply_mode": "reply_all"}]}});
        assert_eq!(autoreply_payload(&a), autoreply_payload(&b));
        assert!(
            autoreply_payload(&a)["keyword_autoreply_info"]["list"][0]
                .get("create_time")
                .is_none()
        );
    }
}
