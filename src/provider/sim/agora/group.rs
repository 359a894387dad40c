//! A simulated group's record (its operations are in `groups.rs` and `members.rs`). A
//! leaf: it imports none of its siblings but the error module.

use serde_json::{Value, json};

use super::errors::Millis;

/// A group.
#[derive(Clone, Debug)]
pub struct Group {
    pub id: u64,
    pub name: String,
    pub description: String,
    pub avatar: String,
    pub custom: String,
    pub public: bool,
    pub maxusers: u64,
    pub allowinvites: bool,
    pub membersonly: bool,
    pub invite_need_confirm: bool,
    pub owner: String,
    /// Not the owner; in joining order.
    pub members: Vec<String>,
    pub created: Millis,
    pub modified: Millis,
}

impl Group {
    pub(super) fn size(&self) -> usize {
        1 + self.members.len()
    }

    pub(super) fn affiliations(&self) -> Vec<Value> {
        std::iter::once(json!({ "owner": self.owner }))
            .chain(self.members.iter().map(|m| json!({ "member": m })))
            .collect()
    }

    pub(super) fn details(&self) -> Value {
        json!({
            "id": self.id.to_string(), "name": self.name, "avatar": self.avatar,
            "description": self.description, "membersonly": self.membersonly,
            "allowinvites": self.allowinvites, "maxusers": self.maxusers, "owner": self.owner,
            "created": self.created, "custom": self.custom, "mute": false,
            "affiliations_count": self.size(), "disabled": false,
            "affiliations": self.affiliations(), "public": self.public,
        })
    }
}

/// A group operation, as the answer of the call that made it carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupOp {
    pub id: u64,
    pub operation: &'static str,
    pub members: Vec<String>,
}
