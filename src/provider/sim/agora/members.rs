//! One Agora Chat group's settings and members: update (and transfer), list, add,
//! remove. Pure; facts and sources in `groups.rs`.

use serde_json::{Map, Value, json};

use super::chat::{Answer, Chat, page_size};
use super::errors::{ChatError, Millis};
use super::group::GroupOp;
use super::groups::{FLAGS, MAX_BATCH_MEMBERS, UPDATABLE, flag, max_users, text};

impl Chat {
    /// `PUT /chatgroups/{id}`.
    pub fn group_update(
        &mut self,
        id: &str,
        body: &Value,
        now: Millis,
    ) -> Result<Answer, ChatError> {
        let Some(obj) = body.as_object() else {
            return Err(ChatError::illegal_argument("This is an invalid request."));
        };
        let invalid: Vec<&str> = obj
            .keys()
            .map(String::as_str)
            .filter(|k| !UPDATABLE.contains(k))
            .collect();
        if !invalid.is_empty() {
            return Err(ChatError::invalid_parameter(format!(
                "some of [{}] are not valid fields",
                invalid.join(", ")
            )));
        }
        let newowner = match body.get("newowner") {
            Some(Value::String(o)) => Some(o.to_ascii_lowercase()),
            _ => None,
        };
        let (name, description) = (
            text(body, "groupname", 128)?,
            text(body, "description", 512)?,
        );
        let (avatar, custom) = (text(body, "avatar", 1024)?, text(body, "custom", 1024)?);
        let maxusers = max_users(body)?;
        let mut flags = [None; 4];
        for (slot, field) in flags.iter_mut().zip(FLAGS) {
            *slot = flag(body, field)?;
        }
        let g = self.group_mut(id)?;
        if let Some(o) = &newowner {
            if *o == g.owner {
                return Err(ChatError::forbidden_op(
                    "new owner and old owner are the same",
                ));
            }
            if !g.members.contains(o) {
                return Err(ChatError::forbidden_op(format!(
                    "user: {o} doesn't exist in group: {}",
                    g.id
                )));
            }
        }
        if maxusers.is_some_and(|m| (g.size() as u64) > m) {
            return Err(ChatError::exceed_limit(
                "members size is greater than max user size !",
            ));
        }
        let mut data = Map::new();
        if let Some(o) = newowner {
            g.members.retain(|m| *m != o);
            let old = std::mem::replace(&mut g.owner, o);
            g.members.push(old);
            data.insert("newowner".into(), json!(true));
        }
        for (field, value) in [
            ("groupname", name),
            ("description", description),
            ("avatar", avatar),
            ("custom", custom),
        ] {
            if let Some(v) = value {
                match field {
                    "groupname" => g.name = v,
                    "description" => g.description = v,
                    "avatar" => g.avatar = v,
                    _ => g.custom = v,
                }
                data.insert(field.into(), json!(true));
            }
        }
        if let Some(m) = maxusers {
            g.maxusers = m;
            data.insert("maxusers".into(), json!(true));
        }
        for (field, value) in FLAGS.into_iter().zip(flags) {
            if let Some(v) = value {
                match field {
                    "public" => g.public = v,
                    "allowinvites" => g.allowinvites = v,
                    "membersonly" => g.membersonly = v,
                    _ => g.invite_need_confirm = v,
                }
                data.insert(field.into(), json!(true));
            }
        }
        g.modified = now;
        Ok(Answer {
            action: "put",
            data: Some(Value::Object(data)),
            group_op: Some(GroupOp {
                id: g.id,
                operation: "UPDATE",
                members: Vec::new(),
            }),
            ..Answer::default()
        })
    }

    /// `GET /chatgroups/{id}/users?pagenum=&pagesize=`: owner first, then members.
    pub fn members_list(
        &self,
        id: &str,
        pagenum: Option<&str>,
        pagesize: Option<&str>,
    ) -> Result<Answer, ChatError> {
        let g = self.group(id).ok_or_else(ChatError::not_found)?;
        let size = page_size(pagesize, 10, 100, "pagesize")?;
        let num = page_size(pagenum, 1, usize::MAX, "pagenum")?;
        let all = std::iter::once(json!({ "owner": g.owner }))
            .chain(g.members.iter().map(|m| json!({ "member": m })));
        let page: Vec<Value> = all
            .skip((num - 1).saturating_mul(size))
            .take(size)
            .collect();
        let mut params = serde_json::Map::new();
        if let Some(s) = pagesize {
            params.insert("pagesize".into(), json!([s]));
        }
        if let Some(n) = pagenum {
            params.insert("pagenum".into(), json!([n]));
        }
        Ok(Answer {
            action: "get",
            count: Some(page.len()),
            data: Some(Value::Array(page)),
            params: Some(Value::Object(params)),
            ..Answer::default()
        })
    }

    /// `POST /chatgroups/{id}/users` `{"usernames": [...]}`.
    pub fn members_add(&mut self, id: &str, body: &Value) -> Result<Answer, ChatError> {
        let usernames: Vec<String> = match body.get("usernames") {
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|u| {
                    u.as_str()
                        .map(str::to_ascii_lowercase)
                        .ok_or_else(|| ChatError::illegal_argument("usernames must be strings"))
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(ChatError::illegal_argument("usernames must be provided")),
        };
        if usernames.len() > MAX_BATCH_MEMBERS {
            return Err(ChatError::illegal_argument(format!(
                "at most {MAX_BATCH_MEMBERS} usernames at a time"
            )));
        }
        self.group(id).ok_or_else(ChatError::not_found)?;
        if let Some(u) = usernames.iter().find(|u| self.user(u).is_none()) {
            return Err(ChatError::illegal_argument(format!(
                "group member {u} doesn't exist"
            )));
        }
        let g = self
            .groups
            .values_mut()
            .find(|g| g.id.to_string() == id.trim())
            .ok_or_else(ChatError::not_found)?;
        let mut new: Vec<String> = Vec::new();
        for u in usernames {
            if u != g.owner && !g.members.contains(&u) && !new.contains(&u) {
                new.push(u);
            }
        }
        if new.is_empty() {
            let first = body["usernames"][0].as_str().unwrap_or_default();
            return Err(ChatError::forbidden_op(format!(
                "can not join this group, reason:user: {} already in group: {}",
                first.to_ascii_lowercase(),
                g.id
            )));
        }
        if (1 + g.members.len() + new.len()) as u64 > g.maxusers {
            return Err(ChatError::forbidden_op(format!(
                "can not join this group, reason:group: {} members size is greater than max user size",
                g.id
            )));
        }
        g.members.extend(new.iter().cloned());
        Ok(Answer {
            action: "post",
            data: Some(json!({
                "newmembers": new, "groupid": g.id.to_string(), "action": "add_member",
            })),
            group_op: Some(GroupOp {
                id: g.id,
                operation: "JOIN",
                members: new,
            }),
            ..Answer::default()
        })
    }

    /// `DELETE /chatgroups/{id}/users/{u1,u2,…}`.
    pub fn members_remove(&mut self, id: &str, list: &str) -> Result<Answer, ChatError> {
        let names: Vec<String> = list
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        if names.is_empty() {
            return Err(ChatError::illegal_argument("This is an invalid request."));
        }
        let known: Vec<bool> = names.iter().map(|n| self.user(n).is_some()).collect();
        let g = self
            .groups
            .values_mut()
            .find(|g| g.id.to_string() == id.trim())
            .ok_or_else(ChatError::not_found)?;
        let gid = g.id.to_string();
        let mut results = Vec::with_capacity(names.len());
        let mut failed: Vec<String> = Vec::new();
        for (name, known) in names.iter().zip(known) {
            let reason = if *name == g.owner {
                Some("forbidden operation on group owner!".to_string())
            } else if !known {
                Some(format!("user {name} doesn't exist."))
            } else if !g.members.contains(name) {
                Some(format!("user {name} is not a member of this group."))
            } else {
                None
            };
            match reason {
                None => {
                    g.members.retain(|m| m != name);
                    results.push(json!({
                        "result": true, "action": "remove_member", "user": name, "groupid": gid,
                    }));
                }
                Some(reason) => {
                    failed.push(name.clone());
                    results.push(json!({
                        "result": false, "action": "remove_member", "reason": reason,
                        "user": name, "groupid": gid,
                    }));
                }
            }
        }
        if failed.len() == names.len() {
            return Err(if names.len() == 1 && names[0] == g.owner {
                ChatError::forbidden_op("forbidden operation on group owner!")
            } else {
                ChatError::forbidden_op(format!(
                    "users [{}] are not members of this group!",
                    failed.join(", ")
                ))
            });
        }
        let removed: Vec<String> = names.into_iter().filter(|n| !failed.contains(n)).collect();
        let data = if results.len() == 1 {
            results.remove(0)
        } else {
            Value::Array(results)
        };
        Ok(Answer {
            action: "delete",
            data: Some(data),
            group_op: Some(GroupOp {
                id: g.id,
                operation: "LEAVE",
                members: removed,
            }),
            ..Answer::default()
        })
    }
}
