//! One Agora Chat app's users ("user system registration"). Pure: every call takes `now`
//! (Unix milliseconds). Groups are in `groups.rs`.
//!
//! Sources: AgoraIO/Docs-Source `shared/chat-sdk/restful-api/_user-system-registration.mdx`
//! (Agora) and easemob/easemob-doc `docs/document/server-side/account_*.md`, `error.md`
//! (Easemob, whose API Agora Chat is):
//! - `POST /users` takes one object or an array of at most 60; a user is `{"uuid","type":
//!   "user","created","modified","username","activated","nickname"?}`. A username is
//!   1–64 of `a-z 0-9 _ - .`; upper case is folded to lower case (Easemob: "响应中返回的用户
//!   ID 只包含小写字母"); anything else → 400 `illegal_argument` "username [X] is not
//!   legal"; no password → "password or pin must provided"; a nickname over 100 bytes →
//!   "NICKNAME_TOO_LONG".
//! - A taken username → 400 `duplicate_unique_property_exists`. In an array, Easemob's
//!   error.md says nothing of the batch is registered then; Agora's page shows a 200 with
//!   the failures in `data[].registerUserFailReason`. This follows Easemob (a third-party
//!   live probe, `Easemob REST API Validation Notes`, also saw a 400).
//! - `GET /users?limit=&cursor=`: registration order, `limit` default 10 in [1,100]
//!   (larger is clamped [UNCONFIRMED]); `cursor` present while users remain, absent on
//!   the last page. An unparsable cursor → 400 `illegal_argument` [UNCONFIRMED text].
//! - `GET /users/{u}`: `entities:[user]`, `count:1`; unknown → 404
//!   `service_resource_not_found`.
//! - `DELETE /users/{u}`: `entities:[user]`; the groups it owns are deleted with it ("If
//!   the deleted user is the admin of a chat group … the group … is also deleted").
//! - `PUT /users/{u}` `{"nickname"}` sets the push display nickname (Easemob "设置推送消息
//!   显示昵称", `account_system.md`): the user with the new nickname [UNCONFIRMED: the
//!   answer's exact action text].
//! - `POST /users/{u}/deactivate` → action "Deactivate user", the user with
//!   `activated:false`; `/activate` → action "activate user", no entities.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::errors::{ChatError, Millis};
use super::group::Group;

/// Most users one `POST /users` registers.
pub const MAX_BATCH_USERS: usize = 60;
pub const MAX_USERS_PAGE: usize = 100;
pub const DEFAULT_USERS_PAGE: usize = 10;

/// What an operation answers, without the envelope (`action` aside).
#[derive(Debug, Default, PartialEq)]
pub struct Answer {
    pub action: &'static str,
    pub entities: Vec<Value>,
    pub data: Option<Value>,
    pub cursor: Option<String>,
    pub count: Option<usize>,
    /// The query as the real server echoes it (`{"limit":["2"]}`).
    pub params: Option<Value>,
    /// The group operation made, for the app's callback rule (not in the answer).
    pub group_op: Option<super::group::GroupOp>,
}

/// A registered user.
#[derive(Clone, Debug)]
pub struct User {
    pub seq: u64,
    pub uuid: String,
    pub username: String,
    pub nickname: Option<String>,
    pub created: Millis,
    pub modified: Millis,
    pub activated: bool,
}

impl User {
    pub fn entity(&self) -> Value {
        let mut v = json!({
            "uuid": self.uuid, "type": "user", "created": self.created,
            "modified": self.modified, "username": self.username, "activated": self.activated,
        });
        if let Some(n) = &self.nickname {
            v["nickname"] = json!(n);
        }
        v
    }
}

/// One app's users and groups.
pub struct Chat {
    pub(super) key: String,
    pub(super) users: BTreeMap<u64, User>,
    pub(super) by_name: HashMap<String, u64>,
    next_seq: u64,
    pub(super) groups: BTreeMap<u64, Group>,
    pub(super) last_group_id: u64,
}

/// A UUID-shaped id, fixed for `parts`.
pub fn uuid_of(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let x: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

/// An opaque cursor for `kind` after `pos` (base64, like the real ones).
pub fn cursor_of(kind: &str, key: &str, pos: u64) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(format!("{kind}:{key}:{pos}"))
}

/// The position a cursor of `kind` names; 400 for anything this app did not hand out.
pub fn parse_cursor(kind: &str, key: &str, cursor: &str) -> Result<u64, ChatError> {
    let bad = || ChatError::illegal_argument(format!("cursor {cursor} is not valid"));
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(cursor.trim_end_matches('='))
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    text.strip_prefix(&format!("{kind}:{key}:"))
        .and_then(|n| n.parse().ok())
        .ok_or_else(bad)
}

/// A query number in `[1, max]`, `default` when absent; 400 when not a number.
pub fn page_size(
    raw: Option<&str>,
    default: usize,
    max: usize,
    name: &str,
) -> Result<usize, ChatError> {
    match raw {
        None | Some("") => Ok(default),
        Some(s) => s
            .trim()
            .parse::<usize>()
            .map(|n| n.clamp(1, max))
            .map_err(|_| ChatError::illegal_argument(format!("{name} {s} is not a number"))),
    }
}

/// The username a request names, folded to lower case, if legal.
pub fn legal_username(raw: &str) -> Result<String, ChatError> {
    let name = raw.to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        });
    if ok {
        Ok(name)
    } else {
        Err(ChatError::illegal_argument(format!(
            "username [{raw}] is not legal"
        )))
    }
}

struct NewUser {
    username: String,
    nickname: Option<String>,
}

fn new_user(v: &Value) -> Result<NewUser, ChatError> {
    let username = match v.get("username") {
        Some(Value::String(s)) => legal_username(s)?,
        _ => {
            return Err(ChatError::illegal_argument(
                "Entity 'user' requires a property named username.",
            ));
        }
    };
    match v.get("password") {
        Some(Value::String(p)) if !p.is_empty() => {}
        _ => return Err(ChatError::illegal_argument("password or pin must provided")),
    }
    let nickname = v.get("nickname").and_then(Value::as_str).map(String::from);
    if nickname.as_ref().is_some_and(|n| n.len() > 100) {
        return Err(ChatError::illegal_argument("NICKNAME_TOO_LONG"));
    }
    Ok(NewUser { username, nickname })
}

impl Chat {
    pub fn new(key: &str) -> Self {
        Chat {
            key: key.to_string(),
            users: BTreeMap::new(),
            by_name: HashMap::new(),
            next_seq: 1,
            groups: BTreeMap::new(),
            last_group_id: 0,
        }
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn user(&self, username: &str) -> Option<&User> {
        let name = username.to_ascii_lowercase();
        self.by_name.get(&name).and_then(|s| self.users.get(s))
    }

    fn user_mut(&mut self, username: &str) -> Result<&mut User, ChatError> {
        let name = username.to_ascii_lowercase();
        let seq = self.by_name.get(&name).ok_or_else(ChatError::not_found)?;
        self.users.get_mut(seq).ok_or_else(ChatError::not_found)
    }

    /// `POST /users` with one user object or an array of them.
    pub fn register(&mut self, body: &Value, now: Millis) -> Result<Answer, ChatError> {
        let (items, batch) = match body {
            Value::Array(a) => (a.iter().collect::<Vec<_>>(), true),
            v @ Value::Object(_) => (vec![v], false),
            _ => return Err(ChatError::illegal_argument("This is an invalid request.")),
        };
        if items.is_empty() || items.len() > MAX_BATCH_USERS {
            return Err(ChatError::illegal_argument(format!(
                "the number of users must be between 1 and {MAX_BATCH_USERS}"
            )));
        }
        let wanted = items
            .into_iter()
            .map(new_user)
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = std::collections::HashSet::new();
        for u in &wanted {
            if self.by_name.contains_key(&u.username) || !seen.insert(u.username.as_str()) {
                return Err(ChatError::duplicate(&u.username));
            }
        }
        let mut entities = Vec::with_capacity(wanted.len());
        for u in wanted {
            let seq = self.next_seq;
            self.next_seq += 1;
            let user = User {
                seq,
                uuid: uuid_of(&[&self.key, &u.username, &seq.to_string()]),
                username: u.username.clone(),
                nickname: u.nickname,
                created: now,
                modified: now,
                activated: true,
            };
            entities.push(user.entity());
            self.by_name.insert(u.username, seq);
            self.users.insert(seq, user);
        }
        Ok(Answer {
            action: "post",
            entities,
            data: batch.then(|| json!([])),
            ..Answer::default()
        })
    }

    /// `GET /users/{username}`.
    pub fn user_get(&self, username: &str) -> Result<Answer, ChatError> {
        let u = self.user(username).ok_or_else(ChatError::not_found)?;
        Ok(Answer {
            action: "get",
            entities: vec![u.entity()],
            count: Some(1),
            ..Answer::default()
        })
    }

    /// `GET /users?limit=&cursor=`: a page in registration order.
    pub fn users_list(
        &self,
        limit: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<Answer, ChatError> {
        let limit_n = page_size(limit, DEFAULT_USERS_PAGE, MAX_USERS_PAGE, "limit")?;
        let after = match cursor.filter(|c| !c.is_empty()) {
            Some(c) => parse_cursor("users", &self.key, c)?,
            None => 0,
        };
        let mut rest = self.users.range(after + 1..);
        let page: Vec<&User> = rest.by_ref().take(limit_n).map(|(_, u)| u).collect();
        let more = rest.next().is_some();
        let mut params = serde_json::Map::new();
        if let Some(l) = limit {
            params.insert("limit".into(), json!([l]));
        }
        if let Some(c) = cursor {
            params.insert("cursor".into(), json!([c]));
        }
        Ok(Answer {
            action: "get",
            cursor: page
                .last()
                .filter(|_| more)
                .map(|u| cursor_of("users", &self.key, u.seq)),
            count: Some(page.len()),
            entities: page.iter().map(|u| u.entity()).collect(),
            params: Some(Value::Object(params)),
            ..Answer::default()
        })
    }

    /// `DELETE /users/{username}`; its groups go with it, its memberships too.
    pub fn user_delete(&mut self, username: &str) -> Result<Answer, ChatError> {
        let name = username.to_ascii_lowercase();
        let seq = self
            .by_name
            .remove(&name)
            .ok_or_else(ChatError::not_found)?;
        let user = self.users.remove(&seq).ok_or_else(ChatError::not_found)?;
        self.groups.retain(|_, g| g.owner != name);
        for g in self.groups.values_mut() {
            g.members.retain(|m| *m != name);
        }
        Ok(Answer {
            action: "delete",
            entities: vec![user.entity()],
            ..Answer::default()
        })
    }

    /// `PUT /users/{username}` with `{"nickname"}`.
    pub fn set_nickname(
        &mut self,
        username: &str,
        body: &Value,
        now: Millis,
    ) -> Result<Answer, ChatError> {
        let nickname = match body.get("nickname") {
            Some(Value::String(n)) if n.len() <= 100 => n.clone(),
            Some(Value::String(_)) => return Err(ChatError::illegal_argument("NICKNAME_TOO_LONG")),
            _ => return Err(ChatError::illegal_argument("nickname must be a string")),
        };
        let u = self.user_mut(username)?;
        u.nickname = Some(nickname).filter(|n| !n.is_empty());
        u.modified = now;
        Ok(Answer {
            action: "put",
            entities: vec![u.entity()],
            ..Answer::default()
        })
    }

    /// `POST /users/{username}/deactivate` (or `activate` with `on`).
    pub fn set_activated(
        &mut self,
        username: &str,
        on: bool,
        now: Millis,
    ) -> Result<Answer, ChatError> {
        let u = self.user_mut(username)?;
        if u.activated != on {
            u.activated = on;
            u.modified = now;
        }
        Ok(if on {
            Answer {
                action: "activate user",
                ..Answer::default()
            }
        } else {
            Answer {
                action: "Deactivate user",
                entities: vec![u.entity()],
                ..Answer::default()
            }
        })
    }
}
