//! A WeCom corp's contacts as understudy entities: what replicates, under which key, and
//! which fields the server owns (and so neither replicate nor count in a drill's digest).
//!
//! - `department/<id>`: `name`, `name_en`, `parentid`, `order` (department/create and
//!   department/update take exactly these; the id is WeCom's and is kept on the standby
//!   by passing it to department/create).
//! - `member/<userid>`: what user/create and user/update take. Read-only (the server
//!   sets them): `status` (activation), `avatar`, `thumb_avatar`, `qr_code`,
//!   `open_userid`, and the answer's `errcode`/`errmsg`.
//! - `tag/<tagid>`: `tagname` and the members and departments tagged, sorted (tag/get's
//!   `userlist` entries are reduced to their userids: the names there are the members').
//!
//! Sources: WeCom server API "通讯录管理" (document/path/90205 department/create, 90208
//! department/list, 90195 user/create, 90196 user/get, 90210–90215 tags) and wechatpy's
//! `wechatpy/work/client/api/{department,user,tag}.py`.

use serde_json::{Map, Value, json};

use crate::model::{EntityKey, EntityKind};

/// Department fields that replicate.
pub const DEPARTMENT_FIELDS: [&str; 4] = ["name", "name_en", "parentid", "order"];

/// Member fields the server owns: excluded from the payload and from digests.
pub const MEMBER_READ_ONLY: [&str; 7] = [
    "status",
    "avatar",
    "thumb_avatar",
    "qr_code",
    "open_userid",
    "errcode",
    "errmsg",
];

/// The replicated payload of a department, from a department/list entry (or a
/// department/create body): only [`DEPARTMENT_FIELDS`], absent or empty ones left out
/// (department/list answers an unset `name_en` as `""`, so "unset" has one form).
pub fn department_payload(item: &Value) -> Value {
    let mut out = Map::new();
    for f in DEPARTMENT_FIELDS {
        if let Some(v) = item
            .get(f)
            .filter(|v| !v.is_null() && v.as_str() != Some(""))
        {
            out.insert(f.to_string(), v.clone());
        }
    }
    Value::Object(out)
}

/// Member fields a member may lack. WeCom answers an unset one as `""`; an update
/// clears one by sending `""`.
pub const MEMBER_CLEARABLE: [&str; 7] = [
    "alias",
    "position",
    "mobile",
    "email",
    "telephone",
    "external_position",
    "address",
];

/// The replicated payload of a member, from user/get's answer (or a user/create body):
/// everything but the key and the server's fields. An empty field (`""`, `[]`, `null`)
/// is left out: WeCom answers an unset field as `""`, so "unset" has one form and two
/// corps that agree compare equal.
pub fn member_payload(user: &Value) -> Value {
    let mut out = user.as_object().cloned().unwrap_or_default();
    out.remove("userid");
    for f in MEMBER_READ_ONLY {
        out.remove(f);
    }
    out.retain(|_, v| match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    });
    Value::Object(out)
}

/// The user/update body that makes a member exactly `payload`: its fields, and `""` for
/// every clearable field it lacks (an update only changes the fields it names).
pub fn member_update(userid: &str, payload: &Value) -> Value {
    let mut body = member_payload(payload);
    for f in MEMBER_CLEARABLE {
        body.as_object_mut()
            .expect("a payload is an object")
            .entry(f)
            .or_insert(json!(""));
    }
    body["userid"] = json!(userid);
    body
}

/// The replicated payload of a tag: its name and who is tagged, sorted.
pub fn tag_payload(tagname: &str, mut userids: Vec<String>, mut partyids: Vec<u64>) -> Value {
    userids.sort();
    userids.dedup();
    partyids.sort_unstable();
    partyids.dedup();
    json!({ "tagname": tagname, "userlist": userids, "partylist": partyids })
}

/// A customer-contact tag group's key: `corp-tag/<group name>`, with `%` and `/`
/// percent-encoded (a key's id holds no `/`).
///
/// WeCom assigns group and tag ids itself (`add_corp_tag` takes none), so the two corps
/// of a pair can never share them. The group's name is what both corps share and
/// what `add_corp_tag` itself treats as the group's identity ("如果填写的groupname已经存在，
/// 则会在此标签组下新建标签"); so the key is the name, and each corp's own ids are looked up
/// by name when a write needs them. That lookup is the id mapping, and it holds in both
/// directions after a failover. A renamed group is a delete and a create on the other
/// corp (new ids there).
pub fn corp_tag_key(group_name: &str) -> Option<EntityKey> {
    EntityKey::named(EntityKind::CorpTag, group_name)
}

/// The group name a [`corp_tag_key`] stands for.
pub fn corp_tag_name(key: &EntityKey) -> String {
    key.name()
}

/// A tag group's replicated payload, from a `get_corp_tag_list` group: its order and its
/// tags (name and order, sorted by name). Server fields — `group_id`, `create_time`,
/// each tag's `id` and `create_time`, and tags marked `deleted` — are left out.
pub fn corp_tag_payload(group: &Value) -> Value {
    let mut tags: Vec<(String, Value)> = group["tag"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| !t["deleted"].as_bool().unwrap_or(false))
        .filter_map(|t| {
            let name = t["name"].as_str()?.to_string();
            Some((
                name.clone(),
                json!({"name": name, "order": t["order"].as_u64().unwrap_or(0)}),
            ))
        })
        .collect();
    tags.sort_by(|a, b| a.0.cmp(&b.0));
    json!({
        "order": group["order"].as_u64().unwrap_or(0),
        "tags": tags.into_iter().map(|(_, t)| t).collect::<Vec<_>>(),
    })
}

pub fn department_key(id: u64) -> EntityKey {
    EntityKey::new(EntityKind::Department, &id.to_string()).expect("a number is a valid id")
}

/// A member's key; `None` for a userid a key cannot hold (WeCom's userids are 1–64
/// letters, digits, `-`, `_`, `.` and `@`, so this only refuses garbage).
pub fn member_key(userid: &str) -> Option<EntityKey> {
    EntityKey::new(EntityKind::Member, userid).ok()
}

pub fn tag_key(id: u64) -> EntityKey {
    EntityKey::new(EntityKind::Tag, &id.to_string()).expect("a number is a valid id")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Digest;

    #[test]
    fn server_fields_never_reach_the_payload_or_the_digest() {
        let on_primary = json!({"errcode": 0, "errmsg": "ok", "userid": "zhangsan", "name": "张三",
            "department": [1, 2], "status": 1, "avatar": "http://a/1", "qr_code": "q1", "position": "经理"});
        let on_standby = json!({"errcode": 0, "errmsg": "ok", "userid": "zhangsan", "name": "张三",
            "department": [1, 2], "status": 4, "avatar": "http://b/9", "qr_code": "q9", "position": "经理"});
        let (a, b) = (member_payload(&on_primary), member_payload(&on_standby));
        assert_eq!(a, b);
        assert_eq!(Digest::of_payload(&a), Digest::of_payload(&b));
        assert_eq!(
            a,
            json!({"name": "张三", "department": [1, 2], "position": "经理"})
        );
        // A field both sides own does count.
        let moved =
            json!({"userid": "zhangsan", "name": "张三", "department": [3], "position": "经理"});
        assert_ne!(
            Digest::of_payload(&member_payload(&moved)),
            Digest::of_payload(&a)
        );
    }

    #[test]
    fn unset_has_one_form_and_an_update_clears_what_the_payload_lacks() {
        let answered = json!({"userid": "li", "name": "李", "alias": "", "position": "",
            "department": [1], "telephone": null, "is_leader_in_dept": []});
        assert_eq!(
            member_payload(&answered),
            json!({"name": "李", "department": [1]})
        );
        let body = member_update(
            "li",
            &json!({"name": "李", "department": [1], "mobile": "+86 1"}),
        );
        assert_eq!(body["position"], "");
        assert_eq!(body["mobile"], "+86 1");
        assert_eq!(body["userid"], "li");
        // Applied and read back, the body is the payload again.
        let mut read_back = body.clone();
        read_back["status"] = json!(1);
        assert_eq!(
            member_payload(&read_back),
            json!({"name": "李", "department": [1], "mobile": "+86 1"})
        );
    }

    #[test]
    fn corp_tag_groups_are_keyed_by_name_and_lose_their_ids() {
        let group = json!({"group_id": "etA", "group_name": "客户等级/VIP", "create_time": 1, "order": 2,
            "tag": [{"id": "et1", "name": "金卡", "create_time": 1, "order": 1},
                    {"id": "et2", "name": "银卡", "create_time": 1, "order": 2},
                    {"id": "et3", "name": "旧卡", "create_time": 1, "order": 3, "deleted": true}]});
        let other_corp = json!({"group_id": "etZ", "group_name": "客户等级/VIP", "create_time": 9, "order": 2,
            "tag": [{"id": "et8", "name": "银卡", "create_time": 9, "order": 2},
                    {"id": "et9", "name": "金卡", "create_time": 9, "order": 1}]});
        assert_eq!(corp_tag_payload(&group), corp_tag_payload(&other_corp));
        assert_eq!(
            corp_tag_payload(&group),
            json!({"order": 2, "tags": [{"name": "金卡", "order": 1}, {"name": "银卡", "order": 2}]})
        );
        let key = corp_tag_key("客户等级/VIP 100%").unwrap();
        assert_eq!(key.as_str(), "corp-tag/客户等级%2FVIP 100%25");
        assert_eq!(corp_tag_name(&key), "客户等级/VIP 100%");
    }

    #[test]
    fn departments_keep_only_what_create_takes() {
        let item = json!({"id": 2, "name": "市场二组", "name_en": "RDGZ", "department_leader": ["zhangsan"],
            "parentid": 1, "order": 10});
        assert_eq!(
            department_payload(&item),
            json!({"name": "市场二组", "name_en": "RDGZ", "parentid": 1, "order": 10})
        );
        assert_eq!(department_key(2).as_str(), "department/2");
        // department/list answers an unset English name as "": the same department as
        // one without it.
        let unset = json!({"id": 3, "name": "🚀团队", "name_en": "", "parentid": 2, "order": 0});
        assert_eq!(
            department_payload(&unset),
            json!({"name": "🚀团队", "parentid": 2, "order": 0})
        );
    }

    #[test]
    fn tag_membership_is_order_free() {
        assert_eq!(
            tag_payload(
                "VIP客户",
                vec!["b".into(), "a".into(), "b".into()],
                vec![3, 1]
            ),
            tag_payload("VIP客户", vec!["a".into(), "b".into()], vec![1, 3, 3])
        );
        assert_eq!(member_key("li.si@x").unwrap().as_str(), "member/li.si@x");
        assert!(member_key("a/b").is_none());
    }
}
