//! Agora Chat post-delivery callbacks (发送后回调): what one names, and whether the app
//! signed it. Pure.
//!
//! Sources: Agora "Callbacks and events" (docs.agora.io/en/agora-chat/reference/
//! callbacks-events) for the envelope and the login/logout events; Easemob, whose
//! service Agora Chat is, for group operations ("创建群组/聊天室事件",
//! doc.easemob.com/product/callback/callback_group_room_create.html, and
//! "群组/聊天室加人事件", …/callback_group_room_join.html).
//!
//! - Every callback is a JSON POST carrying `callId` (`{appKey}_{uuid}`), `timestamp`
//!   (milliseconds) and `security` = MD5 hex of `callId + secret + timestamp`, where
//!   `secret` is the callback rule's secret from the console. The app's `appkey` is in
//!   the body too.
//! - A user logs in or out: `"reason": "login" | "logout"`, `"user":
//!   "{appKey}_{username}/{os}_{deviceId}"`. The username part is documented only by
//!   example (masked: `XXXX#XXXXtstXXXX/ios_…`) [UNCONFIRMED]; a `user` without one names
//!   nothing.
//! - A group operation: `"event": "group_op_event"`, `"type": "GROUP"` (`"CHATROOM"` for
//!   chat rooms, which are not replicated), `"id"` the group id, `"operation"` (`CREATE`,
//!   `JOIN`, `UPDATE`, `DESTROY`, …). Every operation is taken as "this group may have
//!   changed": the group is read again, so an operation name this code does not know
//!   still counts.
//! - Anything else (messages, chat rooms, contacts) names nothing replicated; it is
//!   still checked and answered.
//!
//! Agora does not act on the answer to a post-delivery callback ("does not validate the
//! response content"), so a callback whose read fails is left to the reconciliation
//! scan.

use md5::{Digest, Md5};
use serde_json::Value;

use crate::model::{EntityKey, EntityKind};

/// What a callback names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Named {
    /// Users by username (a login or logout).
    Users(Vec<String>),
    /// Groups by id (a group operation).
    Groups(Vec<String>),
    /// Nothing replicated (a message, a chat room, a contact).
    Nothing,
}

/// A callback whose signature checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub call_id: String,
    /// The app's App Key, from the body.
    pub app_key: String,
    /// When the event happened, Unix milliseconds.
    pub timestamp_ms: i64,
    pub named: Named,
}

/// Why a callback was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    /// Not an Agora Chat callback at all (400).
    #[error("not an Agora Chat callback: {0}")]
    Body(String),
    /// The signature does not check with this secret (401).
    #[error("the callback's security does not match MD5(callId + secret + timestamp)")]
    Signature,
}

/// `MD5(callId + secret + timestamp)`, lower-case hex.
pub fn security(call_id: &str, secret: &str, timestamp: &str) -> String {
    let mut h = Md5::new();
    h.update(call_id.as_bytes());
    h.update(secret.as_bytes());
    h.update(timestamp.as_bytes());
    hex::encode(h.finalize())
}

/// The fields every callback carries, before the signature is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub call_id: String,
    pub security: String,
    /// As written in the body (what was signed).
    pub timestamp: String,
    pub timestamp_ms: i64,
    pub app_key: String,
    body: Value,
}

/// Reads the envelope of a callback body.
pub fn envelope(body: &[u8]) -> Result<Envelope, Refused> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| Refused::Body(format!("not JSON: {e}")))?;
    let text = |field: &str| {
        v[field]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(String::from)
            .ok_or_else(|| Refused::Body(format!("no {field}")))
    };
    let call_id = text("callId")?;
    let security = text("security")?;
    let app_key = text("appkey")?;
    let timestamp_ms = v["timestamp"]
        .as_i64()
        .ok_or_else(|| Refused::Body("timestamp is not a number of milliseconds".into()))?;
    Ok(Envelope {
        call_id,
        security,
        timestamp: timestamp_ms.to_string(),
        timestamp_ms,
        app_key,
        body: v,
    })
}

impl Envelope {
    /// Checks the signature with the callback rule's `secret`, then reads what the
    /// callback names.
    pub fn open(self, secret: &str) -> Result<Received, Refused> {
        let want = security(&self.call_id, secret, &self.timestamp);
        if !same(&want, &self.security.to_ascii_lowercase()) {
            return Err(Refused::Signature);
        }
        let named = named(&self.body, &self.app_key);
        Ok(Received {
            call_id: self.call_id,
            app_key: self.app_key,
            timestamp_ms: self.timestamp_ms,
            named,
        })
    }
}

/// Equal strings, compared in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn named(v: &Value, app_key: &str) -> Named {
    if v["event"].as_str() == Some("group_op_event") {
        if v["type"].as_str() != Some("GROUP") {
            return Named::Nothing;
        }
        return match v["id"].as_str().filter(|id| !id.is_empty()) {
            Some(id) => Named::Groups(vec![id.to_string()]),
            None => Named::Nothing,
        };
    }
    if matches!(v["reason"].as_str(), Some("login" | "logout")) {
        let username = v["user"]
            .as_str()
            .and_then(|u| u.split('/').next())
            .and_then(|u| u.strip_prefix(app_key))
            .and_then(|u| u.strip_prefix('_'))
            .filter(|u| EntityKey::new(EntityKind::Member, u).is_ok());
        return match username {
            Some(u) => Named::Users(vec![u.to_string()]),
            None => Named::Nothing,
        };
    }
    Named::Nothing
}

#[cfg(test)]
#[path = "callback_tests.rs"]
mod tests;
