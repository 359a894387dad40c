//! The post-delivery callbacks a simulated app sends, as Agora Chat does when the app has
//! a callback rule: a JSON POST per group operation (Easemob's `group_op_event`: `CREATE`,
//! `UPDATE`, `JOIN`, `LEAVE`, `DESTROY`) and per user login (`POST /admin/agora/apps/
//! {org}/{app}/login`, since no REST call logs a device in), each signed
//! `security = MD5(callId + secret + timestamp)` ([`crate::provider::agora::callback`]
//! reads them).
//!
//! Sent once, answer ignored: Agora "does not validate the response content" of a
//! post-delivery callback. The operation name for members removed by the REST API is
//! `LEAVE` here [UNCONFIRMED: Easemob documents `KICK`/`LEAVE` pages by event, not the
//! REST removal's name]; the receiver treats every operation alike.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::chat::uuid_of;
pub use super::group::GroupOp;
use crate::provider::agora::callback::security;

/// How long a delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// An app's callback rule: where to send and the rule's secret.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CallbackRule {
    pub url: String,
    pub secret: String,
}

/// Never prints the secret.
impl std::fmt::Debug for CallbackRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackRule")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Counters an e2e test reads.
#[derive(Debug, Default)]
pub struct Delivered {
    sent: AtomicU64,
    failed: AtomicU64,
    seq: AtomicU64,
}

impl Delivered {
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }

    /// A fresh `callId` for the app.
    fn call_id(&self, app_key: &str) -> String {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!(
            "{app_key}_{}",
            uuid_of(&[app_key, &n.to_string(), &nanos.to_string()])
        )
    }
}

fn sign(mut body: Value, secret: &str) -> Value {
    let ts = body["timestamp"].to_string();
    let call_id = body["callId"].as_str().unwrap_or_default().to_string();
    body["security"] = json!(security(&call_id, secret, &ts));
    body
}

/// The callback of a group operation.
pub fn group_op_body(
    app_key: &str,
    op: &GroupOp,
    secret: &str,
    now_ms: u64,
    counters: &Delivered,
) -> Value {
    sign(
        json!({
            "callId": counters.call_id(app_key),
            "payload": { "member": op.members },
            "appkey": app_key,
            "id": op.id.to_string(),
            "type": "GROUP",
            "event": "group_op_event",
            "operation": op.operation,
            "operator": "@ppAdmin",
            "timestamp": now_ms,
        }),
        secret,
    )
}

/// The callback of a user's login.
pub fn login_body(
    app_key: &str,
    username: &str,
    os: &str,
    secret: &str,
    now_ms: u64,
    counters: &Delivered,
) -> Value {
    sign(
        json!({
            "callId": counters.call_id(app_key),
            "reason": "login",
            "os": os,
            "ip": "127.0.0.1",
            "host": "127.0.0.1",
            "appkey": app_key,
            "user": format!("{app_key}_{username}/{os}_{}", uuid_of(&[username, os])),
            "version": "1.3.0",
            "timestamp": now_ms,
            "status": "online",
        }),
        secret,
    )
}

/// Sends `body` to the rule's URL in the background, once.
pub fn send(http: &reqwest::Client, url: &str, body: Value, counters: Arc<Delivered>) {
    let request = http.post(url).timeout(DELIVERY_TIMEOUT).json(&body);
    tokio::spawn(async move {
        let ok = matches!(request.send().await, Ok(r) if r.status().is_success());
        let counter = if ok { &counters.sent } else { &counters.failed };
        counter.fetch_add(1, Ordering::SeqCst);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::agora::callback::{Named, envelope};

    #[test]
    fn what_the_simulator_sends_opens_with_the_rule_secret_only() {
        let c = Delivered::default();
        let op = GroupOp {
            id: 262246968131585,
            operation: "CREATE",
            members: vec!["u1".into()],
        };
        let body = serde_json::to_vec(&group_op_body("o#a", &op, "s3cret", 1_700_000_000_123, &c))
            .unwrap();
        let r = envelope(&body).unwrap().open("s3cret").unwrap();
        assert_eq!(r.named, Named::Groups(vec!["262246968131585".into()]));
        assert!(envelope(&body).unwrap().open("other").is_err());

        let login =
            serde_json::to_vec(&login_body("o#a", "alice", "ios", "s3cret", 5, &c)).unwrap();
        let r2 = envelope(&login).unwrap().open("s3cret").unwrap();
        assert_eq!(r2.named, Named::Users(vec!["alice".into()]));
        assert_ne!(r.call_id, r2.call_id, "every callback has its own callId");
    }

    #[test]
    fn the_rule_secret_is_not_printed() {
        let rule = CallbackRule {
            url: "http://127.0.0.1:1/x".into(),
            secret: "s3cret".into(),
        };
        assert!(!format!("{rule:?}").contains("s3cret"));
    }
}
