//! The change callbacks a simulated corp sends, as WeCom does: when a member or
//! department is created, updated or deleted, or a tag's members change, the corp POSTs
//! an encrypted `change_contact` event to its callback URL.
//!
//! Faithful to WeCom where it matters to understudy (sources: "通讯录回调通知",
//! document/path/90967; "接收消息与事件", document/path/90238):
//! - every change of the corp sends one, whoever made it (its API clients, its admins —
//!   here the admin API and loads — and understudy's own writes on a passive corp);
//! - tags have only `update_tag`, for membership: a tag created, renamed or deleted sends
//!   nothing, so only a reconciliation scan sees those;
//! - a customer-contact tag group created, changed or deleted sends `change_external_tag`
//!   ("企业客户标签事件", document/path/92130) with the group's id;
//! - a delivery not answered 200 within 5 s is tried again, three times in all, then
//!   given up.
//!
//! `POST /admin/wecom/corps/{corp}/drop-callbacks {"count": N}` loses the next N
//! callbacks (a lost callback, for the reconciliation scan to catch).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::corp::CallbackTarget;
use crate::model::{EntityKey, EntityKind};
use crate::provider::ProviderError;
use crate::provider::sim::rng::Rng;
use crate::provider::sim::store::SimAccount;
use crate::provider::wecom::callback::{SimEvent, event_xml};
use crate::provider::wecom::crypto::CallbackCrypto;

/// WeCom waits this long for an answer before trying again.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries per callback.
const ATTEMPTS: u32 = 3;

/// Counters and the drop switch of one corp's callbacks.
#[derive(Debug, Default)]
pub struct CallbackControl {
    drop_next: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// What the admin API shows.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackStats {
    pub sent: u64,
    pub dropped: u64,
    pub failed: u64,
}

impl CallbackControl {
    pub fn drop_next(&self, n: u64) {
        self.drop_next.store(n, Ordering::SeqCst);
    }

    pub fn stats(&self) -> CallbackStats {
        CallbackStats {
            sent: self.sent.load(Ordering::SeqCst),
            dropped: self.dropped.load(Ordering::SeqCst),
            failed: self.failed.load(Ordering::SeqCst),
        }
    }

    /// Takes one from the drop count; true when this callback is to be lost.
    fn take_drop(&self) -> bool {
        self.drop_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// The events WeCom sends for one change of `key` from `before` to `after` (`None`:
/// absent).
pub fn events_for(key: &EntityKey, before: Option<&Value>, after: Option<&Value>) -> Vec<SimEvent> {
    let change = |create, update, delete| match (before, after) {
        (None, Some(_)) => Some(create),
        (Some(_), Some(_)) => Some(update),
        (Some(_), None) => Some(delete),
        (None, None) => None,
    };
    match key.kind() {
        EntityKind::Member => change("create_user", "update_user", "delete_user")
            .map(|change| SimEvent::User {
                change,
                userid: key.id().to_string(),
            })
            .into_iter()
            .collect(),
        EntityKind::Department => match key.id().parse() {
            Ok(id) => change("create_party", "update_party", "delete_party")
                .map(|change| SimEvent::Department { change, id })
                .into_iter()
                .collect(),
            Err(_) => Vec::new(),
        },
        EntityKind::Tag => {
            let members =
                |v: Option<&Value>| v.map(|v| (v["userlist"].clone(), v["partylist"].clone()));
            match (key.id().parse(), before, after) {
                (Ok(id), Some(_), Some(_)) if members(before) != members(after) => {
                    vec![SimEvent::Tag { id }]
                }
                _ => Vec::new(),
            }
        }
        // change_external_tag ("企业客户标签事件"): per group, with its id.
        EntityKind::CorpTag => {
            let id = after
                .or(before)
                .and_then(|g| g["group_id"].as_str())
                .unwrap_or_default()
                .to_string();
            change("create", "update", "delete")
                .map(|change| SimEvent::ExternalTag {
                    id,
                    tag_type: "tag_group",
                    change,
                })
                .into_iter()
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Sends the corp's callbacks until aborted, from the corp's state now on.
pub fn spawn(
    account: Arc<SimAccount>,
    target: CallbackTarget,
    control: Arc<CallbackControl>,
    http: reqwest::Client,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let crypto = CallbackCrypto::new(&target.token, &target.encoding_aes_key, account.id())
        .map_err(|e| e.to_string())?;
    Ok(tokio::spawn(async move {
        let mut rng = Rng::new(account.head().unwrap_or(0) ^ 0x0c0ffee);
        let (mut cursor, mut last) = snapshot(&account);
        loop {
            match account.changes(cursor, 500, Duration::from_secs(30)).await {
                Ok(read) => {
                    for e in &read.entries {
                        let after = e.payload.as_ref().map(|p| p.value());
                        let events = events_for(&e.key, last.get(&e.key), after.as_ref());
                        match after {
                            Some(v) => last.insert(e.key.clone(), v),
                            None => last.remove(&e.key),
                        };
                        for event in events {
                            deliver(&http, &target.url, &crypto, &control, &mut rng, &event).await;
                        }
                    }
                    cursor = Some(read.cursor);
                }
                Err(ProviderError::CursorExpired(_)) => (cursor, last) = snapshot(&account),
                // Frozen or banned: a frozen corp sends nothing; look again later.
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }))
}

/// The corp's contacts now and the feed position they are as of.
fn snapshot(account: &SimAccount) -> (Option<u64>, HashMap<EntityKey, Value>) {
    let head = account.head().ok();
    let mut last = HashMap::new();
    for kind in [
        EntityKind::Member,
        EntityKind::Department,
        EntityKind::Tag,
        EntityKind::CorpTag,
    ] {
        for (k, p) in account.of_kind(kind).unwrap_or_default() {
            last.insert(k, p.value());
        }
    }
    (head, last)
}

async fn deliver(
    http: &reqwest::Client,
    url: &str,
    crypto: &CallbackCrypto,
    control: &CallbackControl,
    rng: &mut Rng,
    event: &SimEvent,
) {
    if control.take_drop() {
        control.dropped.fetch_add(1, Ordering::SeqCst);
        return;
    }
    let now = chrono::Utc::now().timestamp();
    let xml = event_xml(crypto.receiver_id(), now, event);
    let (timestamp, nonce) = (now.to_string(), format!("{:x}", rng.next_u64()));
    let mut random = [0u8; 16];
    random[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    random[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    let sealed = crypto.seal(&xml, &timestamp, &nonce, random);
    for _ in 0..ATTEMPTS {
        let sent = http
            .post(url)
            .query(&[
                ("msg_signature", sealed.msg_signature.as_str()),
                ("timestamp", timestamp.as_str()),
                ("nonce", nonce.as_str()),
            ])
            .body(sealed.body.clone())
            .timeout(DELIVERY_TIMEOUT)
            .send()
            .await;
        if sent.is_ok_and(|r| r.status().is_success()) {
            control.sent.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
    control.failed.fetch_add(1, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn key(k: &str) -> EntityKey {
        k.to_string().try_into().unwrap()
    }

    #[test]
    fn members_and_departments_send_create_update_and_delete() {
        let a = json!({"name": "甲"});
        assert_eq!(
            events_for(&key("member/li"), None, Some(&a)),
            [SimEvent::User {
                change: "create_user",
                userid: "li".into()
            }]
        );
        assert_eq!(
            events_for(&key("department/5"), Some(&a), None),
            [SimEvent::Department {
                change: "delete_party",
                id: 5
            }]
        );
        assert!(events_for(&key("menu/x"), None, Some(&a)).is_empty());
    }

    #[test]
    fn tags_send_only_membership_changes() {
        let t = |name: &str, users: &[&str]| json!({"tagname": name, "userlist": users, "partylist": []});
        assert!(events_for(&key("tag/1"), None, Some(&t("VIP", &[]))).is_empty());
        assert!(
            events_for(
                &key("tag/1"),
                Some(&t("VIP", &[])),
                Some(&t("VIP客户", &[]))
            )
            .is_empty()
        );
        assert!(events_for(&key("tag/1"), Some(&t("VIP", &[])), None).is_empty());
        assert_eq!(
            events_for(
                &key("tag/1"),
                Some(&t("VIP", &[])),
                Some(&t("VIP", &["li"]))
            ),
            [SimEvent::Tag { id: 1 }]
        );
    }

    #[test]
    fn a_drop_count_loses_exactly_that_many() {
        let c = CallbackControl::default();
        c.drop_next(2);
        assert!(c.take_drop());
        assert!(c.take_drop());
        assert!(!c.take_drop());
    }
}
