//! One Agora Chat app's groups and their members. Pure, like `chat.rs`.
//!
//! Sources: AgoraIO/Docs-Source `shared/chat-sdk/restful-api/chat-group-management/
//! _create-delete-retrieve-groups.mdx`, `_manage-group-members.mdx`; easemob/easemob-doc
//! `docs/document/server-side/group_create.md`, `group.md`, `error.md`:
//! - `POST /chatgroups` `{groupname, description, public, maxusers, owner, members, …}`
//!   answers `data.groupid`: the server names groups (numeric strings, 14–15 digits in
//!   the examples). `owner` missing → 400 `invalid_parameter` "owner must be provided";
//!   `public` missing → 400 `invalid_parameter` "group must contain public field!"
//!   (Easemob; Agora marks it optional); more members than `maxusers` (default 200,
//!   owner included) → 403 `exceed_limit` "members size is greater than max user size !";
//!   an unknown owner or member → 404 `resource_not_found` "username X doesn't exist!".
//!   Name ≤128, description ≤512, avatar ≤1024 characters, custom ≤8 KB →
//!   400 `invalid_parameter` "X length is too big" (Easemob's avatar text, the others
//!   [UNCONFIRMED]).
//! - `GET /chatgroups?limit=&cursor=`: newest first, `limit` default 10 in [1,1000],
//!   `data[]` `{owner:"{appkey}_{owner}", groupid, affiliations, type:"group",
//!   lastModified:"ms", groupname}`, `cursor` while groups remain.
//! - `GET /chatgroups/{id1,id2}`: up to 100 ids, the existing ones' details; none exists
//!   → 404 `service_resource_not_found` "group id doesn't exist" (status [UNCONFIRMED]).
//! - `PUT /chatgroups/{id}`: only groupname, avatar, description, maxusers, membersonly,
//!   allowinvites, public, invite_need_confirm, custom (and `newowner`, the transfer);
//!   anything else → 400 `invalid_parameter` "some of [f] are not valid fields"; answers
//!   `data.{field}: true`. Transfer to a non-member → 403 `forbidden_op` "user: X doesn't
//!   exist in group: G"; to the owner → "new owner and old owner are the same".
//! - `DELETE /chatgroups/{id}` → `data {success:true, groupid}`.
//! - `GET /chatgroups/{id}/users?pagenum=&pagesize=`: owner first, then members in joining
//!   order, `pagesize` default 10 in [1,100], `data[] {owner}|{member}`, `count`.
//! - `POST /chatgroups/{id}/users {"usernames":[…]}`: ≤60; an unknown user → 400
//!   `illegal_argument` "group member X doesn't exist"; members already in are skipped and
//!   only when all are already in → 403 `forbidden_op` "can not join this group,
//!   reason:user: X already in group: G"; answers `data {newmembers, groupid, action:
//!   "add_member"}`. A full group → 403 `forbidden_op` [UNCONFIRMED text].
//! - `DELETE /chatgroups/{id}/users/{u}` → `data {result, action:"remove_member", user,
//!   groupid}`; not a member → 403 `forbidden_op` "users [u] are not members of this
//!   group!"; the owner → "forbidden operation on group owner!". With commas, `data[]`
//!   per user, failures as `result:false, reason`; only when all fail → the 403.
//! - An unknown group → 404 `service_resource_not_found`.

use serde_json::{Value, json};

use super::chat::{Answer, Chat, cursor_of, page_size, parse_cursor};
use super::errors::{ChatError, Millis};
use super::group::{Group, GroupOp};

pub const MAX_BATCH_MEMBERS: usize = 60;
pub const MAX_IDS: usize = 100;
pub(super) const FLAGS: [&str; 4] = [
    "public",
    "allowinvites",
    "membersonly",
    "invite_need_confirm",
];
pub(super) const UPDATABLE: [&str; 10] = [
    "groupname",
    "avatar",
    "description",
    "maxusers",
    "membersonly",
    "allowinvites",
    "public",
    "invite_need_confirm",
    "custom",
    "newowner",
];

pub(super) fn text(body: &Value, field: &str, max: usize) -> Result<Option<String>, ChatError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(ChatError::invalid_parameter(format!(
            "{field} length is too big"
        ))),
        Some(_) => Err(ChatError::invalid_parameter(format!(
            "{field} must be a string"
        ))),
    }
}

pub(super) fn flag(body: &Value, field: &str) -> Result<Option<bool>, ChatError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
        Some(_) => Err(ChatError::invalid_parameter(format!(
            "{field} must be a boolean"
        ))),
    }
}

/// `maxusers` is a number or a numeric string (Agora's table says String).
pub(super) fn max_users(body: &Value) -> Result<Option<u64>, ChatError> {
    let bad = || ChatError::invalid_parameter("maxusers must be a positive number");
    match body.get("maxusers") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().filter(|&n| n >= 1).map(Some).ok_or_else(bad),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .ok()
            .filter(|&n| n >= 1)
            .map(Some)
            .ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

fn names(v: Option<&Value>) -> Result<Vec<String>, ChatError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|m| {
                m.as_str()
                    .map(str::to_ascii_lowercase)
                    .ok_or_else(|| ChatError::invalid_parameter("usernames must be strings"))
            })
            .collect(),
        Some(_) => Err(ChatError::invalid_parameter("members must be an array")),
    }
}

impl Chat {
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        id.trim()
            .parse()
            .ok()
            .and_then(|id: u64| self.groups.get(&id))
    }

    pub(super) fn group_mut(&mut self, id: &str) -> Result<&mut Group, ChatError> {
        let id: u64 = id.trim().parse().map_err(|_| ChatError::not_found())?;
        self.groups.get_mut(&id).ok_or_else(ChatError::not_found)
    }

    fn must_exist(&self, user: &str) -> Result<(), ChatError> {
        match self.user(user) {
            Some(_) => Ok(()),
            None => Err(ChatError::resource_not_found(format!(
                "username {user} doesn't exist!"
            ))),
        }
    }

    /// `POST /chatgroups`.
    pub fn group_create(&mut self, body: &Value, now: Millis) -> Result<Answer, ChatError> {
        if !body.is_object() {
            return Err(ChatError::illegal_argument("This is an invalid request."));
        }
        let owner = match body.get("owner") {
            Some(Value::String(o)) if !o.is_empty() => o.to_ascii_lowercase(),
            _ => return Err(ChatError::invalid_parameter("owner must be provided")),
        };
        let public = flag(body, "public")?
            .ok_or_else(|| ChatError::invalid_parameter("group must contain public field!"))?;
        let maxusers = max_users(body)?.unwrap_or(200);
        let mut members = names(body.get("members"))?;
        members.retain(|m| *m != owner);
        members.dedup();
        if members.len() as u64 + 1 > maxusers {
            return Err(ChatError::exceed_limit(
                "members size is greater than max user size !",
            ));
        }
        self.must_exist(&owner)?;
        for m in &members {
            self.must_exist(m)?;
        }
        let group = Group {
            id: (self.last_group_id + 1).max(now << 7),
            name: text(body, "groupname", 128)?.unwrap_or_default(),
            description: text(body, "description", 512)?.unwrap_or_default(),
            avatar: text(body, "avatar", 1024)?.unwrap_or_default(),
            custom: text(body, "custom", 8 * 1024)?.unwrap_or_default(),
            public,
            maxusers,
            // "when creating a public group … allowinvites … is automatically false".
            allowinvites: !public && flag(body, "allowinvites")?.unwrap_or(false),
            membersonly: flag(body, "membersonly")?.unwrap_or(false),
            invite_need_confirm: flag(body, "invite_need_confirm")?.unwrap_or(true),
            owner,
            members,
            created: now,
            modified: now,
        };
        let id = group.id;
        let op = GroupOp {
            id,
            operation: "CREATE",
            members: group.members.clone(),
        };
        self.last_group_id = id;
        self.groups.insert(id, group);
        Ok(Answer {
            action: "post",
            data: Some(json!({ "groupid": id.to_string() })),
            group_op: Some(op),
            ..Answer::default()
        })
    }

    /// `GET /chatgroups?limit=&cursor=`: newest first.
    pub fn groups_list(
        &self,
        limit: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<Answer, ChatError> {
        let limit_n = page_size(limit, 10, 1000, "limit")?;
        let before = match cursor.filter(|c| !c.is_empty()) {
            Some(c) => parse_cursor("chatgroups", &self.key, c)?,
            None => u64::MAX,
        };
        let mut rest = self.groups.range(..before).rev();
        let page: Vec<&Group> = rest.by_ref().take(limit_n).map(|(_, g)| g).collect();
        let more = rest.next().is_some();
        let data: Vec<Value> = page
            .iter()
            .map(|g| {
                json!({
                    "owner": format!("{}_{}", self.key, g.owner), "groupid": g.id.to_string(),
                    "affiliations": g.size(), "type": "group",
                    "lastModified": g.modified.to_string(), "groupname": g.name,
                })
            })
            .collect();
        Ok(Answer {
            action: "get",
            count: Some(data.len()),
            data: Some(Value::Array(data)),
            cursor: page
                .last()
                .filter(|_| more)
                .map(|g| cursor_of("chatgroups", &self.key, g.id)),
            params: limit.map(|l| json!({ "limit": [l] })),
            ..Answer::default()
        })
    }

    /// `GET /chatgroups/{ids}` (comma-separated).
    pub fn groups_get(&self, ids: &str) -> Result<Answer, ChatError> {
        let ids: Vec<&str> = ids
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if ids.len() > MAX_IDS {
            return Err(ChatError::illegal_argument(format!(
                "at most {MAX_IDS} group ids"
            )));
        }
        let found: Vec<Value> = ids
            .iter()
            .filter_map(|id| self.group(id))
            .map(Group::details)
            .collect();
        if found.is_empty() {
            let mut e = ChatError::not_found();
            e.description = "group id doesn't exist".into();
            return Err(e);
        }
        Ok(Answer {
            action: "get",
            count: Some(found.len()),
            data: Some(Value::Array(found)),
            ..Answer::default()
        })
    }

    /// `DELETE /chatgroups/{id}`.
    pub fn group_delete(&mut self, id: &str) -> Result<Answer, ChatError> {
        let gid = self.group_mut(id)?.id;
        self.groups.remove(&gid);
        Ok(Answer {
            action: "delete",
            data: Some(json!({ "success": true, "groupid": gid.to_string() })),
            group_op: Some(GroupOp {
                id: gid,
                operation: "DESTROY",
                members: Vec::new(),
            }),
            ..Answer::default()
        })
    }
}
